//! The approvals web page (server-rendered, no script) in real headless Chromium.

use reqwest::StatusCode;
use serde_json::json;

use crate::browser::Browser;
use crate::support::{Backend, TestServer};

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
    let session = s.sign_in(&carol).await;
    let forged = no_redirects
        .post(format!("{}/ui/approvals/{other}", s.base))
        .header("cookie", &session)
        .form(&[
            ("decision", "approve"),
            ("csrf", "guessed"),
            ("comment", ""),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    // Without any CSRF token at all: refused the same way, not taken for a malformed form.
    for path in [format!("/ui/approvals/{other}"), "/ui/logout".to_string()] {
        let bare = no_redirects
            .post(format!("{}{path}", s.base))
            .header("cookie", &session)
            .form(&[("decision", "approve")])
            .send()
            .await
            .unwrap();
        assert_eq!(bare.status(), StatusCode::FORBIDDEN, "{path}");
    }
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

/// Signing in takes only live approver tokens, opens a server-side session (the cookie holds its
/// id, never the token), is protected against login CSRF, and ends on sign-out or revocation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_takes_only_approvers() {
    let db = crate::support::TestDb::new(Backend::Sqlite).await;
    let mut config = db.config();
    config.notifications.public_url = "https://warden.example".into();
    let s = TestServer::start_with(db, config).await;
    let bot = s.agent("migrator", 2, json!({})).await;
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    // Without the sign-in form's nonce (a page elsewhere posting a token): refused.
    let forged = no_redirects
        .post(format!("{}/ui/login", s.base))
        .form(&[("token", bot.as_str()), ("login_csrf", "guessed")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert!(forged.headers().get("set-cookie").is_none());
    // With it, an agent's token and an unknown one are refused with a message.
    let form = no_redirects
        .get(format!("{}/ui/approvals", s.base))
        .send()
        .await
        .unwrap();
    let nonce_cookie = form.headers()["set-cookie"].to_str().unwrap().to_string();
    let nonce = nonce_cookie
        .strip_prefix("warden_login=")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let login = |token: String| {
        no_redirects
            .post(format!("{}/ui/login", s.base))
            .header("cookie", format!("warden_login={nonce}"))
            .form(&[("token", token), ("login_csrf", nonce.clone())])
            .send()
    };
    for token in [bot.clone(), "wdn_nope".into()] {
        let refused = login(token).await.unwrap();
        assert_eq!(refused.status(), StatusCode::SEE_OTHER);
        assert!(
            refused.headers()["location"]
                .to_str()
                .unwrap()
                .contains("error=")
        );
        let cookies: Vec<&str> = refused
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|c| c.to_str().unwrap())
            .collect();
        assert!(
            !cookies.iter().any(|c| c.starts_with("warden_session=")),
            "{cookies:?}"
        );
    }
    s.post(
        "/v1/humans",
        &s.admin,
        json!({"id": "carol", "team": "platform", "grants": []}),
    )
    .await;
    let carol = s.token("approver", Some("carol")).await;
    let ok = login(carol.clone()).await.unwrap();
    let cookie = ok
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|c| c.to_str().unwrap().to_string())
        .find(|c| c.starts_with("warden_session="))
        .expect("a session");
    assert!(
        cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict")
            && cookie.contains("Path=/ui")
            && cookie.contains("Max-Age=28800")
            && cookie.contains("Secure"),
        "{cookie}"
    );
    assert!(!cookie.contains(&carol), "the cookie never holds the token");
    let session = cookie.split(';').next().unwrap().to_string();
    let page = |cookie: String| {
        let c = no_redirects
            .get(format!("{}/ui/approvals", s.base))
            .header("cookie", cookie);
        async move { c.send().await.unwrap().text().await.unwrap() }
    };
    let inbox = page(session.clone()).await;
    assert!(inbox.contains("Sign out"), "signed in");
    assert!(
        !page(format!("warden_session={carol}"))
            .await
            .contains("Sign out"),
        "a token is not a session"
    );
    // Signing out ends the session on the server: the same cookie, replayed, is worthless.
    let csrf = inbox
        .split(r#"name="csrf" value=""#)
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let out = no_redirects
        .post(format!("{}/ui/logout", s.base))
        .header("cookie", &session)
        .form(&[("csrf", csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    assert!(!page(session).await.contains("Sign out"), "signed out");
    // Revoking the token ends its sessions.
    let session = s.sign_in(&carol).await;
    assert!(page(session.clone()).await.contains("Sign out"));
    let (_, tokens) = s.get("/v1/tokens", &s.admin).await;
    let id = tokens
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["subject"] == "carol")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, _) = s
        .call(
            reqwest::Method::DELETE,
            &format!("/v1/tokens/{id}"),
            Some(&s.admin),
            None,
        )
        .await;
    assert!(status.is_success(), "{status}");
    assert!(!page(session).await.contains("Sign out"), "revoked");

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

/// A human lets an agent act for them in the browser, sees it, and revokes it; the agent's
/// claim is proven while it lasts and refused after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_human_delegates_and_revokes_in_the_browser() {
    let s = TestServer::start(Backend::Sqlite).await;
    let bot = s.agent("chatops", 3, json!({})).await;
    s.post(
        "/v1/humans",
        &s.admin,
        json!({"id": "bob", "team": "payments", "grants": [{"class": "*", "environment": "*", "service": "*", "max_risk": "critical"}]}),
    )
    .await;
    let bob = s.token("approver", Some("bob")).await;
    let (url, token) = (format!("{}/ui/approvals", s.base), bob.clone());
    let delegations = format!("{}/ui/delegations", s.base);
    let (given, row, errors, scripts) = tokio::task::spawn_blocking(move || {
        let mut b = Browser::launch();
        b.navigate(&url);
        b.wait_for("document.querySelector('input[name=token]')");
        b.eval(&format!("document.querySelector('input[name=token]').value = {}; document.querySelector('form').submit(); true", json!(token)));
        b.wait_for("document.getElementById('count')");
        b.navigate(&delegations);
        b.wait_for("document.getElementById('give')");
        b.eval("const f = document.getElementById('give'); f.agent.value = 'chatops'; f.classes.value = 'deploy, read'; f.environments.value = 'Staging'; f.hours.value = '4'; f.submit(); true");
        b.wait_for("document.getElementById('notice')");
        let given = b.eval("document.getElementById('notice').innerText");
        let row = b.eval("document.querySelector('tr.delegation').innerText");
        let scripts = b.eval("document.scripts.length");
        let errors = b.errors();
        (given, row, errors, scripts)
    })
    .await
    .unwrap();
    assert!(
        given
            .as_str()
            .unwrap()
            .contains("chatops may act for you until"),
        "{given}"
    );
    let row = row.as_str().unwrap();
    assert!(
        row.contains("bob") && row.contains("deploy, read") && row.contains("staging"),
        "{row}"
    );
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(scripts, json!(0));
    let ask = json!({"on_behalf_of": "bob"});
    assert_eq!(
        s.decide(&bot, "deploy", "staging", ask.clone()).await.1["verdict"],
        "allow"
    );

    // Revoked in the browser: the claim is refused from then on.
    let (url, delegations) = (
        format!("{}/ui/approvals", s.base),
        format!("{}/ui/delegations", s.base),
    );
    let revoked = tokio::task::spawn_blocking(move || {
        let mut b = Browser::launch();
        b.navigate(&url);
        b.wait_for("document.querySelector('input[name=token]')");
        b.eval(&format!("document.querySelector('input[name=token]').value = {}; document.querySelector('form').submit(); true", json!(bob)));
        b.wait_for("document.getElementById('count')");
        b.navigate(&delegations);
        b.wait_for("document.querySelector('tr.delegation button.reject')");
        b.eval("document.querySelector('tr.delegation button.reject').click(); true");
        b.wait_for("document.getElementById('notice')");
        b.eval("document.getElementById('notice').innerText + ' / ' + document.querySelector('tr.delegation').innerText")
    })
    .await
    .unwrap();
    let revoked = revoked.as_str().unwrap();
    assert!(
        revoked.contains("may no longer act for bob") && revoked.contains("revoked"),
        "{revoked}"
    );
    let (_, after) = s.decide(&bot, "deploy", "staging", ask).await;
    assert_eq!(after["verdict"], "deny", "{after}");
}
