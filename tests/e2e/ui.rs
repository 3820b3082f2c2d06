//! The approvals web page in real headless Chromium, driven over the DevTools protocol on a
//! pipe (`--remote-debugging-pipe`: JSON messages separated by NUL bytes on fds 3 and 4).

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
        cmd.args(["--headless=new", "--remote-debugging-pipe", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions"])
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
        let mut browser = Browser { child, to: commands_w, from: BufReader::new(answers_r), next: 0, session: String::new(), _profile: profile };
        let target = browser.call(None, "Target.createTarget", json!({"url": "about:blank"}));
        let attached = browser.call(None, "Target.attachToTarget", json!({"targetId": target["targetId"], "flatten": true}));
        browser.session = attached["sessionId"].as_str().unwrap().to_string();
        browser
    }

    /// Sends a command and waits for its answer (skipping events).
    fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
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
            assert!(self.from.read_until(0, &mut buf).unwrap() > 0, "chromium closed the pipe");
            buf.pop();
            let answer: Value = serde_json::from_slice(&buf).unwrap();
            if answer["id"] == json!(self.next) {
                assert!(answer.get("error").is_none(), "{method}: {answer}");
                return answer["result"].clone();
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
        let result = self.call(Some(&session), "Runtime.evaluate", json!({"expression": expression, "returnByValue": true, "awaitPromise": true}));
        assert!(result.get("exceptionDetails").is_none(), "{expression}: {result}");
        result["result"]["value"].clone()
    }

    /// Waits until `expression` is truthy in the page.
    fn wait_for(&mut self, expression: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if self.eval(&format!("!!({expression})")) == json!(true) {
                return;
            }
            assert!(Instant::now() < deadline, "timed out waiting for `{expression}`; page: {}", self.eval("document.body.innerText"));
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

/// An approver opens the page, reads the agent's plan and risk, and approves with a comment;
/// the agent's re-submission then goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approver_approves_in_the_browser() {
    let s = TestServer::start(Backend::Sqlite).await;
    let bot = s.agent("migrator", 2, json!({})).await;
    s.post(
        "/v1/humans",
        &s.admin,
        json!({"id": "carol", "team": "platform", "grants": [{"class": "*", "environment": "*", "service": "*", "max_risk": "critical"}]}),
    )
    .await;
    let carol = s.token("approver", Some("carol")).await;
    let action = json!({"class": "db_migration", "environment": "production", "service": "payments",
        "reasoning": "the payments query needs an index", "plan": {"steps": ["create index concurrently", "analyze payments"]},
        "change": {"files_changed": 1, "lines_added": 12, "lines_deleted": 0, "paths": ["db/migrations/0042_payments_index.sql"]}});
    let (_, asked) = s.post("/v1/decisions", &bot, json!({"action": action})).await;
    let id = asked["approval"]["id"].as_str().unwrap().to_string();

    let url = format!("{}/ui/approvals#token={carol}", s.base);
    let page = tokio::task::spawn_blocking(move || {
        let mut b = Browser::launch();
        b.navigate(&url);
        b.wait_for("document.querySelectorAll('.approval').length === 1");
        let text = b.eval("document.querySelector('.approval').innerText").as_str().unwrap().to_string();
        let token_left_in_url = b.eval("location.hash");
        b.eval("document.querySelector('.approval .comment').value = 'index reviewed'; document.querySelector('.approval button.approve').click(); true");
        b.wait_for("document.querySelector('.decided')");
        let decided = b.eval("document.querySelector('.decided').innerText").as_str().unwrap().to_string();
        (text, token_left_in_url, decided)
    })
    .await
    .unwrap();
    let (text, hash, decided) = page;
    assert!(text.contains("migrator wants to db_migration payments in production"), "{text}");
    assert!(text.contains("create index concurrently") && text.contains("the payments query needs an index"), "{text}");
    assert!(text.to_lowercase().contains("high"), "{text}");
    assert!(text.contains("Change: 1 files, +12 −0") && text.contains("db/migrations/0042_payments_index.sql"), "{text}");
    assert_eq!(hash, json!(""), "the token must not stay in the address bar");
    assert!(decided.contains("approved by carol"), "{decided}");

    let (_, approval) = s.get(&format!("/v1/approvals/{id}"), &carol).await;
    assert_eq!((approval["status"].as_str(), approval["comment"].as_str()), (Some("approved"), Some("index reviewed")), "{approval}");
    let (status, done) = s.post("/v1/decisions", &bot, json!({"action": action, "approval_id": id})).await;
    assert_eq!((status, done["verdict"].as_str()), (StatusCode::OK, Some("allow")), "{done}");
}

/// Without a token the page asks for one instead of failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_asks_for_a_token() {
    let s = TestServer::start(Backend::Sqlite).await;
    let (status, html) = {
        let r = s.client.get(format!("{}/ui/approvals", s.base)).send().await.unwrap();
        (r.status(), r.text().await.unwrap())
    };
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("<title>Warden · approvals</title>"));
    let url = format!("{}/ui/approvals", s.base);
    let login_shown = tokio::task::spawn_blocking(move || {
        let mut b = Browser::launch();
        b.navigate(&url);
        b.wait_for("document.readyState === 'complete'");
        b.wait_for("!document.getElementById('login').hidden");
        b.eval("document.getElementById('status').textContent === ''")
    })
    .await
    .unwrap();
    assert_eq!(login_shown, json!(true));
}
