//! `/ui/delegations`: the signed-in human lets an agent act for them, sees what they gave and
//! revokes it (admins see and revoke everyone's). Forms carry the session's CSRF token.

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::{AppState, Flash, csrf, header, page, refused, signed_in};
use crate::delegation::DelegationRequest;
use crate::identity::Role;
use crate::services::delegations;
use crate::services::reports::svg::esc;

/// Back to the page with a notice or an error.
fn back(key: &str, message: &str) -> Response {
    let q = serde_urlencoded::to_string([(key, message)]).unwrap_or_default();
    Redirect::to(&format!("/ui/delegations?{q}")).into_response()
}

pub(super) async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(flash): Query<Flash>,
) -> Response {
    let Some((caller, secret)) = signed_in(&state, &headers).await else {
        return super::back("error", "sign in first");
    };
    let token = csrf(&secret);
    let mut body = format!("{}<main>", header(&caller, &secret, "delegations"));
    for (class, text) in [("notice", flash.notice), ("error", flash.error)] {
        if let Some(t) = text {
            body.push_str(&format!(
                r#"<div class="card {class}" id="{class}">{}</div>"#,
                esc(&t)
            ));
        }
    }
    if caller.role == Role::Approver {
        body.push_str(&format!(
            r#"<form class="card" id="give" method="post" action="/ui/delegations"><input type="hidden" name="csrf" value="{token}">
<p>Let an agent act on your behalf. It gets at most your own rights, within this scope, until the time runs out or you revoke it. Leave a field empty for all; separate patterns with commas.</p>
<div class="row"><input type="text" name="agent" placeholder="agent id" required><input type="text" name="classes" placeholder="classes (deploy, read)"></div>
<div class="row"><input type="text" name="environments" placeholder="environments (staging, prod*)"><input type="text" name="services" placeholder="services (payments)">
<input type="text" name="hours" value="8" size="4" aria-label="hours"><button type="submit">Delegate</button></div></form>"#
        ));
    }
    let Ok(list) = delegations::list(&state.store, &caller, None, None, None).await else {
        return back("error", "the store is unavailable");
    };
    body.push_str(
        r#"<table class="card" id="delegations"><thead><tr><th>human</th><th>agent</th><th>classes</th><th>environments</th><th>services</th><th>until</th><th></th></tr></thead><tbody>"#,
    );
    let now = state.clock.now_micros();
    for d in &list {
        let all = |v: &Vec<String>| {
            if v.is_empty() {
                "all".to_string()
            } else {
                esc(&v.join(", "))
            }
        };
        let state_cell = match &d.revoked_at {
            Some(at) => format!("revoked {}", esc(at)),
            None if d.expires_at_micros <= now => "lapsed".to_string(),
            None => format!(
                r#"<form method="post" action="/ui/delegations/{id}/revoke"><input type="hidden" name="csrf" value="{token}"><button type="submit" class="reject">Revoke</button></form>"#,
                id = esc(&d.id)
            ),
        };
        body.push_str(&format!(
            r#"<tr class="delegation"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{state_cell}</td></tr>"#,
            esc(&d.human),
            esc(&d.agent),
            all(&d.classes),
            all(&d.environments),
            all(&d.services),
            esc(&d.expires_at),
        ));
    }
    body.push_str("</tbody></table></main>");
    page("delegations", &body).into_response()
}

#[derive(Debug, Deserialize)]
pub(super) struct Give {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    agent: String,
    #[serde(default)]
    classes: String,
    #[serde(default)]
    environments: String,
    #[serde(default)]
    services: String,
    #[serde(default)]
    hours: String,
}

fn patterns(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(String::from)
        .collect()
}

pub(super) async fn give(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<Give>,
) -> Response {
    let Some((caller, secret)) = signed_in(&state, &headers).await else {
        return super::back("error", "sign in first");
    };
    if form.csrf != csrf(&secret) {
        return refused();
    }
    let Ok(hours) = form.hours.trim().parse::<i64>() else {
        return back("error", "hours: a whole number of hours");
    };
    let request = DelegationRequest {
        agent: form.agent.trim().to_string(),
        classes: patterns(&form.classes),
        environments: patterns(&form.environments),
        services: patterns(&form.services),
        hours,
    };
    let now = state.clock.now_micros();
    match delegations::give(&state.store, &caller, request, now).await {
        Ok(d) => back(
            "notice",
            &format!("{} may act for you until {}", d.agent, d.expires_at),
        ),
        Err(e) => back(
            "error",
            &match e.field {
                Some(f) => format!("{f}: {}", e.message),
                None => e.message,
            },
        ),
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct Revoke {
    #[serde(default)]
    csrf: String,
}

pub(super) async fn revoke(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<Revoke>,
) -> Response {
    let Some((caller, secret)) = signed_in(&state, &headers).await else {
        return super::back("error", "sign in first");
    };
    if form.csrf != csrf(&secret) {
        return refused();
    }
    let now = state.clock.now_micros();
    match delegations::revoke(&state.store, &caller, &id, now).await {
        Ok(d) => back(
            "notice",
            &format!("{} may no longer act for {}", d.agent, d.human),
        ),
        Err(e) => back("error", &e.message),
    }
}
