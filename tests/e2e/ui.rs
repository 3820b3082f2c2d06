//! The approvals web page (server-rendered, no script) in real headless Chromium, driven over
//! the DevTools protocol on a pipe (`--remote-debugging-pipe`: JSON messages separated by NUL
//! bytes on fds 3 and 4).

use std::io::{BufRead as _, BufReader, Write as _};
use std::os::fd::{AsRawFd as _, OwnedFd};
use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{Backend, TestServer};

/// A headless Chromium with one page attached.
struct Browser {
    child: Child,
    to: std::io::PipeWriter,
    from: BufReader<std::io::PipeReader>,
    next: u64,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn launch() -> Browser {
        let binary = std::env::var("WARDEN_CHROMIUM").unwrap_or_else(|_| {
            ["chromium", "chromium-browser", "google-chrome"]
                .into_iter()
                .find(|b| Command::new(b).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success()))
                .expect("headless Chromium is needed for the web page tests (apt-get install chromium, or set WARDEN_CHROMIUM)")
                .to_string()
        });
        let profile = tempfile::tempdir().unwrap();
        // Chromium reads commands from fd 3 and writes answers to fd 4.
        let (commands_r, commands_w) = std::io::pipe().unwrap();
        let (answers_r, answers_w) = std::io::pipe().unwrap();
        let (cr, aw): (OwnedFd, OwnedFd) = (commands_r.into(), answers_w.into());
        let (cr_fd, aw_fd) = (cr.as_raw_fd(), aw.as_raw_fd());
        let mut cmd = Command::new(binary);
        cmd.args([
            "--headless=new",
            "--remote-debugging-pipe",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        // SAFETY: between fork and exec only async-signal-safe calls (dup2) are made.
        unsafe {
            cmd.pre_exec(move || {
                if libc::dup2(cr_fd, 3) < 0 || libc::dup2(aw_fd, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("start chromium");
        drop((cr, aw));
        let mut browser = Browser {
            child,
            to: commands_w,
            from: BufReader::new(answers_r),
            next: 0,
            session: String::new(),
            _profile: profile,
        };
        let target = browser.call(None, "Target.createTarget", json!({"url": "about:blank"}));
        let attached = browser.call(
            None,
            "Target.attachToTarget",
            json!({"targetId": target["targetId"], "flatten": true}),
        );
        browser.session = attached["sessionId"].as_str().unwrap().to_string();
        browser
    }

    /// Sends a command and waits for its answer (skipping events).
    fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        let answer = self.try_call(session, method, params);
        assert!(answer.get("error").is_none(), "{method}: {answer}");
        answer["result"].clone()
    }

    /// Like `call`, returning the whole answer, errors included.
    fn try_call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next += 1;
        let mut message = json!({"id": self.next, "method": method, "params": params});
        if let Some(s) = session {
            message["sessionId"] = json!(s);
        }
        let mut bytes = serde_json::to_vec(&message).unwrap();
        bytes.push(0);
        self.to.write_all(&bytes).unwrap();
        loop {
            let mut buf = Vec::new();
            assert!(
                self.from.read_until(0, &mut buf).unwrap() > 0,
                "chromium closed the pipe"
            );
            buf.pop();
            let answer: Value = serde_json::from_slice(&buf).unwrap();
            if answer["id"] == json!(self.next) {
                return answer;
            }
        }
    }

    fn navigate(&mut self, url: &str) {
        let session = self.session.clone();
        self.call(Some(&session), "Page.navigate", json!({"url": url}));
    }

    /// Evaluates JavaScript in the page and returns its value.
    fn eval(&mut self, expression: &str) -> Value {
        let session = self.session.clone();
        let result = self.call(
            Some(&session),
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
        );
        assert!(
            result.get("exceptionDetails").is_none(),
            "{expression}: {result}"
        );
        result["result"]["value"].clone()
    }

    /// Waits until `expression` is truthy in the page (across navigations).
    fn wait_for(&mut self, expression: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let session = self.session.clone();
            let params = json!({"expression": format!("!!({expression})"), "returnByValue": true});
            let answer = self.try_call(Some(&session), "Runtime.evaluate", params);
            if answer["result"]["result"]["value"] == json!(true) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for `{expression}`; page: {}",
                self.eval("document.body ? document.body.innerText : ''")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An approver signs in, reads the agent's plan, change and risk, and approves with a comment;
/// the agent's re-submission then goes through. A forged post is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approver_approves_in_the_browser() {
    let s = TestServer::start(Backend::Sqlite).await;
    let bot = s.agent("migrator", 2, json!({})).await;
    let grants =
        json!([{"class": "*", "environment": "*", "service": "*", "max_risk": "critical"}]);
    s.post(
        "/v1/humans",
        &s.admin,
        json!({"id": "carol", "team": "platform", "grants": grants}),
    )
    .await;
    let carol = s.token("approver", Some("carol")).await;
    let action = json!({"class": "db_migration", "environment": "production", "service": "payments",
        "reasoning": "the payments query needs an index", "plan": {"steps": ["create index concurrently", "analyze payments"]},
        "change": {"files_changed": 1, "lines_added": 12, "lines_deleted": 0, "paths": ["db/migrations/0042_payments_index.sql"]}});
    let (_, asked) = s
        .post("/v1/decisions", &bot, json!({"action": action}))
        .await;
    let id = asked["approval"]["id"].as_str().unwrap().to_string();

    let (url, token) = (format!("{}/ui/approvals", s.base), carol.clone());
    let (text, scripts, decided) = tokio::task::spawn_blocking(move || {
        let mut b = Browser::launch();
        b.navigate(&url);
        b.wait_for("document.querySelector('input[name=token]')");
        b.eval(&format!("document.querySelector('input[name=token]').value = {}; document.querySelector('form').submit(); true", json!(token)));
        b.wait_for("document.querySelectorAll('.approval').length === 1");
        let text = b.eval("document.querySelector('.approval').innerText").as_str().unwrap().to_string();
        let scripts = b.eval("document.scripts.length");
        b.eval("document.querySelector('.approval .comment').value = 'index reviewed'; document.querySelector('.approval button.approve').click(); true");
        b.wait_for("document.getElementById('notice')");
        let decided = b.eval("document.getElementById('notice').innerText + ' / ' + document.getElementById('count').innerText").as_str().unwrap().to_string();
        (text, scripts, decided)
    })
    .await
    .unwrap();
    assert!(
        text.contains("migrator wants to db_migration payments in production"),
        "{text}"
    );
    assert!(
        text.contains("create index concurrently")
            && text.contains("the payments query needs an index"),
        "{text}"
    );
    assert!(
        text.contains("Change: 1 files, +12 −0")
            && text.contains("db/migrations/0042_payments_index.sql"),
        "{text}"
    );
    assert!(text.to_lowercase().contains("high"), "{text}");
    assert_eq!(scripts, json!(0), "the page needs no script");
    assert!(
        decided.contains("approved by carol") && decided.contains("0 pending"),
        "{decided}"
    );

    let (_, approval) = s.get(&format!("/v1/approvals/{id}"), &carol).await;
    assert_eq!(
        (approval["status"].as_str(), approval["comment"].as_str()),
        (Some("approved"), Some("index reviewed")),
        "{approval}"
    );
    let (status, done) = s
        .post(
            "/v1/decisions",
            &bot,
            json!({"action": action, "approval_id": id}),
        )
        .await;
    assert_eq!(
        (status, done["verdict"].as_str()),
        (StatusCode::OK, Some("allow")),
        "{done}"
    );

    // A post from another page: with the session cookie but without this page's CSRF token.
    let (_, asked) = s.post("/v1/decisions", &bot, json!({"action": {"class": "deploy", "environment": "production", "service": "payments"}})).await;
    let other = asked["approval"]["id"].as_str().unwrap().to_string();
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let forged = no_redirects
        .post(format!("{}/ui/approvals/{other}", s.base))
        .header("cookie", format!("warden_session={carol}"))
        .form(&[
            ("decision", "approve"),
            ("csrf", "guessed"),
            ("comment", ""),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let anonymous = no_redirects
        .post(format!("{}/ui/approvals/{other}", s.base))
        .form(&[("decision", "approve"), ("csrf", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::SEE_OTHER);
    let (_, still) = s.get(&format!("/v1/approvals/{other}"), &carol).await;
    assert_eq!(still["status"], "pending");
}

/// A guarded action the canary could not judge goes to a human in the same inbox; rejecting it
/// there rolls it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guard_review_in_the_browser() {
    let db = crate::support::TestDb::new(Backend::Sqlite).await;
    let mut config = db.config();
    config.plugins.reference = true;
    config
        .policy
        .violation_modes
        .insert("deploy".into(), warden::policy::ViolationMode::Guard);
    let s = TestServer::start_with(db, config).await;
    let bot = s.agent("shipper", 1, json!({})).await;
    let grants =
        json!([{"class": "*", "environment": "*", "service": "*", "max_risk": "critical"}]);
    s.post(
        "/v1/humans",
        &s.admin,
        json!({"id": "carol", "team": "platform", "grants": grants}),
    )
    .await;
    let carol = s.token("approver", Some("carol")).await;
    let (_, answer) = s.decide(&bot, "deploy", "production", json!({})).await;
    assert_eq!(answer["verdict"], "allow", "{answer}");
    let id = answer["decision_id"].as_str().unwrap().to_string();
    let few = json!({"name": "latency_ms", "canary": [100.0, 101.0], "baseline": [100.0, 99.0]});
    let (_, judged) = s
        .post(
            &format!("/v1/decisions/{id}/signals"),
            &bot,
            json!({"windows": [few]}),
        )
        .await;
    assert_eq!(judged["verdict"], "inconclusive", "{judged}");

    let (url, token) = (format!("{}/ui/approvals", s.base), carol.clone());
    let (text, decided) = tokio::task::spawn_blocking(move || {
        let mut b = Browser::launch();
        b.navigate(&url);
        b.wait_for("document.querySelector('input[name=token]')");
        b.eval(&format!("document.querySelector('input[name=token]').value = {}; document.querySelector('form').submit(); true", json!(token)));
        b.wait_for("document.querySelectorAll('.approval').length === 1");
        let text = b.eval("document.querySelector('.approval').innerText").as_str().unwrap().to_string();
        b.eval("document.querySelector('.approval .comment').value = 'error rate looks off'; document.querySelector('.approval button.reject').click(); true");
        b.wait_for("document.getElementById('notice')");
        let decided = b.eval("document.getElementById('notice').innerText").as_str().unwrap().to_string();
        (text, decided)
    })
    .await
    .unwrap();
    assert!(
        text.contains("Keep shipper's guarded deploy of payments in production?"),
        "{text}"
    );
    assert!(text.contains("inconclusive"), "{text}");
    assert!(decided.contains("rejected by carol"), "{decided}");
    let (_, outcome) = s
        .get(&format!("/v1/decisions/{id}/outcome"), &s.admin)
        .await;
    assert_eq!(
        (
            outcome["guard"]["status"].as_str(),
            outcome["outcome"].as_str()
        ),
        (Some("rolled_back"), Some("rolled_back")),
        "{outcome}"
    );
}

/// Signing in takes only live approver tokens, and the cookie is locked down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_takes_only_approvers() {
    let s = TestServer::start(Backend::Sqlite).await;
    let bot = s.agent("migrator", 2, json!({})).await;
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let login = |token: String| {
        no_redirects
            .post(format!("{}/ui/login", s.base))
            .form(&[("token", token)])
            .send()
    };
    let refused = login(bot.clone()).await.unwrap();
    assert_eq!(refused.status(), StatusCode::SEE_OTHER);
    assert!(refused.headers().get("set-cookie").is_none());
    assert!(
        refused.headers()["location"]
            .to_str()
            .unwrap()
            .contains("error=")
    );
    let unknown = login("wdn_nope".into()).await.unwrap();
    assert!(unknown.headers().get("set-cookie").is_none());
    s.post(
        "/v1/humans",
        &s.admin,
        json!({"id": "carol", "team": "platform", "grants": []}),
    )
    .await;
    let carol = s.token("approver", Some("carol")).await;
    let ok = login(carol).await.unwrap();
    let cookie = ok.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict")
            && cookie.contains("Path=/ui"),
        "{cookie}"
    );

    // In the browser: a bad token shows the error on the sign-in page.
    let url = format!("{}/ui/approvals", s.base);
    let shown = tokio::task::spawn_blocking(move || {
        let mut b = Browser::launch();
        b.navigate(&url);
        b.wait_for("document.querySelector('input[name=token]')");
        b.eval("document.querySelector('input[name=token]').value = 'wdn_wrong'; document.querySelector('form').submit(); true");
        b.wait_for("document.querySelector('.error')");
        b.eval("document.querySelector('.error').innerText")
    })
    .await
    .unwrap();
    assert_eq!(shown, json!("unknown or revoked token"));
}
