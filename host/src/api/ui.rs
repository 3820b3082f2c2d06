//! `/ui/approvals`: the approver's inbox, server-rendered HTML and CSS with no script; beside
//! it the weekly reports and a page per agent (`reports`).
//!
//! Sign-in posts an approver token once and opens a server-side session
//! ([`crate::services::sessions`]): the cookie (`HttpOnly`, `SameSite=Strict`, scoped to `/ui`,
//! `Secure` behind TLS) holds the session's random id, never the token. Every form that
//! changes something carries a CSRF token derived from the session id (SHA-256 of a label and
//! the id), which a page on another site can neither read nor compute; the sign-in form itself
//! carries a nonce that must match a cookie set with the form (login CSRF). Together with
//! `SameSite=Strict` a forged post is refused.

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::header::{CACHE_CONTROL, COOKIE, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::AppState;
use crate::identity::Caller;
use crate::records::{Approval, ApprovalStatus};
use crate::services::reports::svg::esc;
use crate::services::sessions;

mod delegations;
mod reports;

const COOKIE_NAME: &str = "warden_session";
/// The sign-in form's nonce, matched against the form's field (double submit).
const LOGIN_COOKIE: &str = "warden_login";

pub(super) fn router() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/ui/approvals", get(inbox))
        .route("/ui/reports", get(reports::list))
        .route("/ui/reports/view", get(reports::pick))
        .route("/ui/reports/{week}", get(reports::report))
        .route("/ui/agents", get(reports::agents))
        .route("/ui/agents/{id}", get(reports::agent))
        .route("/ui/approvals/{id}", post(decide))
        .route(
            "/ui/delegations",
            get(delegations::list).post(delegations::give),
        )
        .route("/ui/delegations/{id}/revoke", post(delegations::revoke))
        .route("/ui/login", post(login))
        .route("/ui/logout", post(logout))
}

fn csrf(secret: &str) -> String {
    hex::encode(Sha256::digest(
        format!("warden-ui-csrf:{secret}").as_bytes(),
    ))
}

/// A cookie's value.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
        .filter(|v| !v.is_empty() && v.len() <= 512)
}

/// The session id, from the cookie.
fn session(headers: &HeaderMap) -> Option<String> {
    cookie(headers, COOKIE_NAME)
}

/// The signed-in human and their session id, if the cookie names a live session.
async fn signed_in(state: &AppState, headers: &HeaderMap) -> Option<(Caller, String)> {
    let id = session(headers)?;
    let now = state.clock.now_micros();
    let caller = sessions::find(&state.store, &id, now).await.ok()??;
    Some((caller, id))
}

/// A `Set-Cookie` value scoped to the UI; `max_age` 0 deletes it.
fn set_cookie(state: &AppState, name: &str, value: &str, max_age: u64) -> Option<HeaderValue> {
    let secure = if state.ui.secure_cookie {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    ))
    .ok()
}

/// The signed-in header: the pages, who is signed in, and sign-out.
fn header(caller: &Caller, secret: &str, current: &str) -> String {
    let links: Vec<String> = [
        ("approvals", "/ui/approvals"),
        ("reports", "/ui/reports"),
        ("agents", "/ui/agents"),
        ("delegations", "/ui/delegations"),
    ]
    .iter()
    .map(|(name, href)| {
        let class = if *name == current {
            r#" class="current""#
        } else {
            ""
        };
        format!(r#"<a href="{href}"{class}>{name}</a>"#)
    })
    .collect();
    format!(
        r#"<header class="warden-ui"><h1>Warden · {current}</h1><nav>{}</nav><span>{}</span><form method="post" action="/ui/logout">
<input type="hidden" name="csrf" value="{}"><button type="submit">Sign out</button></form></header>"#,
        links.join(" "),
        esc(caller.subject.as_deref().unwrap_or(&caller.token_id)),
        csrf(secret)
    )
}

/// The header of a page for signed-in humans, or the way to the sign-in form.
async fn signed_in_page(
    state: &AppState,
    headers: &HeaderMap,
    current: &str,
) -> Result<(String, Caller), Response> {
    match signed_in(state, headers).await {
        Some((caller, secret)) => Ok((header(&caller, &secret, current), caller)),
        None => Err(back("error", "sign in first")),
    }
}

/// A page; never cached (it shows pending requests and carries the session's CSRF token).
fn page(title: &str, body: &str) -> impl IntoResponse + use<> {
    let html = Html(format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">
<title>Warden · {title}</title>
<style>
body {{ font: 15px/1.45 system-ui, sans-serif; margin: 0; background: #f6f7f9; color: #1d2330; }}
header {{ background: #1d2330; color: #fff; padding: 12px 24px; display: flex; gap: 16px; align-items: center; }}
header h1 {{ font-size: 17px; margin: 0; flex: 1; }} header form {{ margin: 0; }}
header nav a {{ color: #cfd6e4; margin-right: 12px; text-decoration: none; }} header nav a.current {{ color: #fff; font-weight: 600; }}
table {{ border-collapse: collapse; width: 100%; }} th, td {{ text-align: left; padding: 4px 8px; border-bottom: 1px solid #e6e9ef; font-size: 14px; }}
tr.unmet td {{ color: #a8262f; }} .charts {{ display: flex; flex-wrap: wrap; gap: 16px; }} .charts figure {{ flex: 1 1 420px; margin: 0; }}
main {{ max-width: 980px; margin: 24px auto; padding: 0 16px; }}
.card {{ background: #fff; border: 1px solid #dde1e8; border-radius: 8px; padding: 16px 20px; margin-bottom: 16px; }}
.meta {{ color: #5b6478; font-size: 13px; }} .notice {{ background: #e3f5e8; }} .error {{ background: #ffd4d8; }}
.risk {{ display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600; text-transform: uppercase; background: #eef0f4; }}
.risk.high {{ background: #ffe1d2; }} .risk.critical {{ background: #ffd4d8; }} .risk.medium {{ background: #fff3d6; }}
pre {{ background: #f0f2f5; padding: 8px 12px; border-radius: 6px; white-space: pre-wrap; word-break: break-word; }}
button {{ font: inherit; padding: 6px 14px; border-radius: 6px; border: 1px solid #b9c0cc; background: #fff; cursor: pointer; }}
button.approve {{ background: #1f7a3d; color: #fff; border-color: #1f7a3d; }} button.reject {{ background: #a8262f; color: #fff; border-color: #a8262f; }}
input[type=text], input[type=password] {{ font: inherit; padding: 6px 8px; border: 1px solid #b9c0cc; border-radius: 6px; flex: 1; }}
.row {{ display: flex; gap: 8px; margin-top: 12px; }}
</style></head>
<body>{body}</body></html>"#
    ));
    ([(CACHE_CONTROL, "no-store")], html)
}

#[derive(Debug, Deserialize)]
struct Flash {
    notice: Option<String>,
    error: Option<String>,
}

async fn inbox(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(flash): Query<Flash>,
) -> Response {
    let Some((caller, secret)) = signed_in(&state, &headers).await else {
        let error = flash
            .error
            .map(|e| format!(r#"<div class="card error">{}</div>"#, esc(&e)))
            .unwrap_or_default();
        let nonce = sessions::random_id();
        let body = format!(
            r#"<header><h1>Warden · approvals</h1></header><main>{error}<form class="card" method="post" action="/ui/login">
<input type="hidden" name="login_csrf" value="{nonce}">
<p>Sign in with your approver token.</p><div class="row"><input type="password" name="token" placeholder="wdn_…" autocomplete="off" required>
<button type="submit">Sign in</button></div></form></main>"#
        );
        let mut response = page("sign in", &body).into_response();
        if let Some(v) = set_cookie(&state, LOGIN_COOKIE, &nonce, 600) {
            response.headers_mut().append(SET_COOKIE, v);
        }
        return response;
    };
    let now = state.clock.now_micros();
    let pending = match state
        .store
        .approvals(Some(ApprovalStatus::Pending), None, None, 200, now)
        .await
    {
        Ok(p) => p,
        Err(e) => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                page("unavailable", &esc(&e.to_string())),
            )
                .into_response();
        }
    };
    let token = csrf(&secret);
    let mut body = format!("{}<main>", header(&caller, &secret, "approvals"));
    if let Some(n) = flash.notice {
        body.push_str(&format!(
            r#"<div class="card notice" id="notice">{}</div>"#,
            esc(&n)
        ));
    }
    if let Some(e) = flash.error {
        body.push_str(&format!(
            r#"<div class="card error" id="error">{}</div>"#,
            esc(&e)
        ));
    }
    if !pending.unreadable.is_empty() {
        body.push_str(&format!(
            r#"<div class="card error" id="unreadable">{} pending approval(s) are stored in a form that does not read back and are not shown: {}. An admin can quarantine them (<code>POST /v1/approvals/{{id}}/quarantine</code>).</div>"#,
            pending.unreadable.len(),
            esc(&pending.unreadable.join(", "))
        ));
    }
    body.push_str(&format!(
        r#"<p class="meta" id="count">{} pending</p>"#,
        pending.items.len()
    ));
    for a in &pending.items {
        body.push_str(&card(a, &token));
    }
    body.push_str("</main>");
    page("approvals", &body).into_response()
}

fn card(a: &Approval, csrf: &str) -> String {
    let s = &a.summary;
    let action = &s["request"]["action"];
    let text = |v: &serde_json::Value| {
        v.as_str()
            .map(String::from)
            .unwrap_or_else(|| serde_json::to_string_pretty(v).unwrap_or_default())
    };
    let level = s["risk"]["level"].as_str().unwrap_or("?");
    // A guarded action's review asks whether to keep what was done, not to allow it.
    let title = if s["guard_review"].is_object() {
        format!(
            "Keep {}'s guarded {} of {} in {}? (approve keeps it, reject rolls it back)",
            esc(&a.agent),
            esc(&a.class),
            esc(&a.service),
            esc(&a.environment)
        )
    } else {
        format!(
            "{} wants to {} {} in {}",
            esc(&a.agent),
            esc(&a.class),
            esc(&a.service),
            esc(&a.environment)
        )
    };
    let mut html = format!(
        r#"<div class="card approval" id="a-{id}"><div><strong>{title}</strong> <span class="risk {level}">{level}</span></div>
<div class="meta">requested {created} · expires {expires}{obo} · tier {tier}{progress}</div>"#,
        id = esc(&a.id),
        level = esc(level),
        created = esc(&a.created_at),
        expires = esc(&a.expires_at),
        obo = a
            .on_behalf_of
            .as_ref()
            .map(|h| format!(" · on behalf of {}", esc(h)))
            .unwrap_or_default(),
        tier = s["tier"],
        progress = if a.approvals_needed > 1 {
            format!(
                " · approvals {} of {}",
                a.approved_by.len(),
                a.approvals_needed
            )
        } else {
            String::new()
        },
    );
    if let Some(r) = action["reasoning"].as_str() {
        html.push_str(&format!("<p><strong>Reasoning:</strong> {}</p>", esc(r)));
    }
    if !action["plan"].is_null() {
        html.push_str(&format!(
            r#"<div><strong>Plan</strong><pre class="plan">{}</pre></div>"#,
            esc(&text(&action["plan"]))
        ));
    }
    if let Some(c) = action.get("change").filter(|c| !c.is_null()) {
        let paths: Vec<String> = c["paths"]
            .as_array()
            .map(|p| p.iter().take(20).map(text).collect())
            .unwrap_or_default();
        html.push_str(&format!(
            r#"<div><strong>Change: {} files, +{} −{}{}</strong><pre class="diff">{}</pre></div>"#,
            c["files_changed"],
            c["lines_added"],
            c["lines_deleted"],
            if c["breaking"] == true {
                " · BREAKING"
            } else {
                ""
            },
            esc(&paths.join("\n"))
        ));
    }
    let reasons: Vec<String> = s["reasons"]
        .as_array()
        .map(|r| {
            r.iter()
                .map(|r| format!("{}: {}", text(&r["code"]), text(&r["text"])))
                .collect()
        })
        .unwrap_or_default();
    if !reasons.is_empty() {
        html.push_str(&format!(
            "<div><strong>Why it needs you</strong><pre>{}</pre></div>",
            esc(&reasons.join("\n"))
        ));
    }
    if let Some(findings) = s["anomaly"]["findings"]
        .as_array()
        .filter(|f| !f.is_empty())
    {
        let lines: Vec<String> = findings
            .iter()
            .map(|f| {
                format!(
                    "{} {}: {}",
                    text(&f["detector"]),
                    f["severity"],
                    text(&f["message"])
                )
            })
            .collect();
        html.push_str(&format!(
            "<div><strong>Anomaly (severity {})</strong><pre>{}</pre></div>",
            s["anomaly"]["severity"],
            esc(&lines.join("\n"))
        ));
    }
    html.push_str(&format!(
        r#"<form class="row" method="post" action="/ui/approvals/{id}"><input type="hidden" name="csrf" value="{csrf}">
<input type="text" name="comment" class="comment" placeholder="comment (optional)" maxlength="4096">
<button type="submit" name="decision" value="approve" class="approve">Approve</button>
<button type="submit" name="decision" value="reject" class="reject">Reject</button></form></div>"#,
        id = esc(&a.id)
    ));
    html
}

fn back(key: &str, message: &str) -> Response {
    let q = serde_urlencoded::to_string([(key, message)]).unwrap_or_default();
    Redirect::to(&format!("/ui/approvals?{q}")).into_response()
}

#[derive(Debug, Deserialize)]
struct Login {
    #[serde(default)]
    token: String,
    #[serde(default)]
    login_csrf: String,
}

async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<Login>,
) -> Response {
    // Login CSRF: a page elsewhere cannot sign this browser in to someone else's account, since
    // it can neither read the form's nonce nor set the cookie it must match.
    if cookie(&headers, LOGIN_COOKIE).is_none_or(|nonce| nonce != form.login_csrf) {
        return refused();
    }
    let secret = form.token.trim();
    if secret.is_empty() || secret.len() > 512 {
        return back("error", "unknown or revoked token");
    }
    let ttl = std::time::Duration::from_secs(state.ui.session_ttl_secs);
    let now = state.clock.now_micros();
    match sessions::open(&state.store, secret, now, ttl).await {
        Ok((id, _)) => {
            let mut response = Redirect::to("/ui/approvals").into_response();
            let headers = response.headers_mut();
            for v in [
                set_cookie(&state, COOKIE_NAME, &id, state.ui.session_ttl_secs),
                set_cookie(&state, LOGIN_COOKIE, "", 0),
            ]
            .into_iter()
            .flatten()
            {
                headers.append(SET_COOKIE, v);
            }
            response
        }
        Err(sessions::Refused::RoleCannotSignIn) => back(
            "error",
            "that token is neither an approver's nor an admin's",
        ),
        Err(sessions::Refused::UnknownToken) => back("error", "unknown or revoked token"),
        Err(sessions::Refused::Store(e)) => back("error", &e.message),
    }
}

#[derive(Debug, Deserialize)]
struct SignOut {
    // Absent is refused like wrong (a 403), not rejected as a malformed form (a 422).
    #[serde(default)]
    csrf: String,
}

async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<SignOut>,
) -> Response {
    let Some(id) = session(&headers).filter(|id| csrf(id) == form.csrf) else {
        return refused();
    };
    // The session ends on the server: a copy of the cookie is worth nothing after this.
    if let Err(e) = sessions::close(&state.store, &id, state.clock.now_micros()).await {
        return back("error", &e.message);
    }
    let mut response = Redirect::to("/ui/approvals").into_response();
    if let Some(v) = set_cookie(&state, COOKIE_NAME, "", 0) {
        response.headers_mut().insert(SET_COOKIE, v);
    }
    response
}

/// A post that does not carry this session's CSRF token did not come from Warden's page.
fn refused() -> Response {
    (
        StatusCode::FORBIDDEN,
        page(
            "refused",
            "<main><p>Refused: the form did not come from Warden's page.</p></main>",
        ),
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
struct Decision {
    #[serde(default)]
    csrf: String,
    decision: String,
    #[serde(default)]
    comment: String,
}

async fn decide(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<Decision>,
) -> Response {
    let Some((caller, secret)) = signed_in(&state, &headers).await else {
        return back("error", "sign in first");
    };
    // A post that does not carry this session's token did not come from this page.
    if form.csrf != csrf(&secret) {
        return refused();
    }
    let approve = match form.decision.as_str() {
        "approve" => true,
        "reject" => false,
        _ => return back("error", "choose approve or reject"),
    };
    let comment = Some(form.comment.trim().to_string()).filter(|c| !c.is_empty());
    match crate::services::approvals::decide(
        &super::approvals::deciding(&state),
        &caller,
        &id,
        comment,
        approve,
    )
    .await
    {
        Ok(a) if a.status == ApprovalStatus::Pending => back(
            "notice",
            &format!(
                "you approved {} · {} {}; {} more approver(s) needed",
                a.agent,
                a.class,
                a.service,
                a.approvals_needed - a.approved_by.len() as i64
            ),
        ),
        Ok(a) => back(
            "notice",
            &format!(
                "{} · {} {} in {}: {} by {}",
                a.agent,
                a.class,
                a.service,
                a.environment,
                a.status,
                a.decided_by.unwrap_or_default()
            ),
        ),
        Err(e) => back("error", &e.message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_and_cookies() {
        assert_eq!(
            esc(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
        let mut headers = HeaderMap::new();
        headers.insert(
            COOKIE,
            HeaderValue::from_static("theme=dark; warden_session=wdn_abc; other=1"),
        );
        assert_eq!(session(&headers).as_deref(), Some("wdn_abc"));
        assert_ne!(csrf("wdn_abc"), csrf("wdn_abd"));
        assert_eq!(session(&HeaderMap::new()), None);
    }
}
