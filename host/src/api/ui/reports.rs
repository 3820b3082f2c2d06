//! `/ui/reports` and `/ui/agents`: the weekly reports and a page per agent, beside the
//! approvals inbox. Server-rendered, no script, for signed-in approvers and admins.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::{AppState, page, signed_in_page};
use crate::clock::format_micros;
use crate::report::{IsoWeek, Scope};
use crate::services::reports::AgentOverview;
use crate::services::reports::html;
use crate::services::reports::svg::{esc, line_chart};

/// The UI header's look inside a report page, which has its own stylesheet.
const NAV_STYLE: &str = "<style>header.warden-ui { background: #1d2330; color: #fff; padding: 12px 24px; display: flex; gap: 16px; align-items: center; font: 15px/1.45 system-ui, sans-serif; } header.warden-ui h1 { font-size: 17px; margin: 0; flex: 1; } header.warden-ui form { margin: 0; } header.warden-ui nav a { color: #cfd6e4; margin-right: 12px; text-decoration: none; } @media print { header.warden-ui { display: none; } }</style>";

fn problem(status: StatusCode, message: &str) -> Response {
    (
        status,
        page(
            "not shown",
            &format!(
                r#"<main><div class="card error">{}</div></main>"#,
                esc(message)
            ),
        ),
    )
        .into_response()
}

/// The weeks to pick from, the teams, and the reports the schedule kept.
pub(super) async fn list(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let (header, _) = match signed_in_page(&state, &headers, "reports").await {
        Ok(h) => h,
        Err(r) => return r,
    };
    let reports = &state.reports;
    let now = reports.current_week();
    let (kept, agents) = match (reports.kept(100).await, state.store.agents(None).await) {
        (Ok(k), Ok(a)) => (k, a),
        _ => return problem(StatusCode::SERVICE_UNAVAILABLE, "the store is unavailable"),
    };
    let mut teams: Vec<&str> = agents.iter().map(|a| a.team.as_str()).collect();
    teams.sort_unstable();
    teams.dedup();
    let link = |week: IsoWeek, scope: &Scope| {
        format!(
            r#"<a href="/ui/reports/{week}?scope={}">{}</a>"#,
            esc(&urlencode(&scope.key())),
            esc(&scope.title())
        )
    };
    let mut body = format!("{header}<main>");
    for (label, week) in [
        ("Last week", now.previous()),
        ("This week so far", now),
        ("The week before", now.previous().previous()),
    ] {
        let mut links = vec![link(week, &Scope::Organisation)];
        links.extend(
            teams
                .iter()
                .map(|t| link(week, &Scope::Team((*t).to_string()))),
        );
        body.push_str(&format!(
            r#"<div class="card week"><strong>{label}: {week}</strong><div class="meta">{}</div></div>"#,
            links.join(" · ")
        ));
    }
    body.push_str(
        r#"<form class="card row" method="get" action="/ui/reports/view"><input type="text" name="week" placeholder="2026-W48" required pattern="[0-9]{4}-W[0-9]{2}">
<input type="text" name="scope" placeholder="organisation, team:payments or agent:deploy-bot" value="organisation"><button type="submit">Show</button></form>"#,
    );
    body.push_str(r#"<div class="card"><strong>Kept by the schedule</strong>"#);
    if kept.is_empty() {
        body.push_str(r#"<p class="meta" id="kept">none yet</p>"#);
    } else {
        body.push_str(r#"<ul id="kept">"#);
        for (week, scope, at) in &kept {
            body.push_str(&format!(
                r#"<li><a href="/ui/reports/{w}?scope={s}">{w} · {t}</a> <span class="meta">made {at}</span></li>"#,
                w = esc(week),
                s = esc(&urlencode(scope)),
                t = esc(&Scope::from_key(scope).map_or_else(|| scope.clone(), |s| s.title())),
                at = esc(&format_micros(*at)),
            ));
        }
        body.push_str("</ul>");
    }
    body.push_str("</div></main>");
    page("reports", &body).into_response()
}

fn urlencode(s: &str) -> String {
    serde_urlencoded::to_string([("", s)])
        .map(|q| q.trim_start_matches('=').to_string())
        .unwrap_or_default()
}

#[derive(Debug, Deserialize)]
pub(super) struct Pick {
    week: String,
    #[serde(default)]
    scope: Option<String>,
}

/// The picker's form: on to the week's page.
pub(super) async fn pick(Query(p): Query<Pick>) -> Response {
    let scope = p.scope.unwrap_or_else(|| "organisation".into());
    Redirect::to(&format!(
        "/ui/reports/{}?scope={}",
        urlencode(p.week.trim()),
        urlencode(scope.trim())
    ))
    .into_response()
}

#[derive(Debug, Deserialize)]
pub(super) struct ReportScope {
    #[serde(default)]
    scope: Option<String>,
}

/// One week's report, the same page `format=html` gives, under the UI's header.
pub(super) async fn report(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(week): Path<String>,
    Query(q): Query<ReportScope>,
) -> Response {
    let (header, _) = match signed_in_page(&state, &headers, "reports").await {
        Ok(h) => h,
        Err(r) => return r,
    };
    let week = match IsoWeek::parse(&week) {
        Ok(w) => w,
        Err(e) => return problem(StatusCode::BAD_REQUEST, &e),
    };
    let key = q.scope.unwrap_or_else(|| "organisation".into());
    let Some(scope) = Scope::from_key(&key) else {
        return problem(
            StatusCode::BAD_REQUEST,
            &format!("`{key}` is not a scope: organisation, team:<team> or agent:<agent>"),
        );
    };
    match state.reports.report(week, &scope).await {
        Ok(r) => {
            let nav = format!("{NAV_STYLE}{header}");
            let mut response = axum::response::Html(html::document(&r, Some(&nav))).into_response();
            response.headers_mut().insert(
                axum::http::header::CACHE_CONTROL,
                "no-store".parse().expect("a header value"),
            );
            response
        }
        Err(e) if e.kind == crate::error::Kind::NotFound => {
            problem(StatusCode::NOT_FOUND, &e.message)
        }
        Err(e) => problem(StatusCode::SERVICE_UNAVAILABLE, &e.message),
    }
}

/// Every agent, lowest score first, each linking to its page.
pub(super) async fn agents(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let (header, _) = match signed_in_page(&state, &headers, "agents").await {
        Ok(h) => h,
        Err(r) => return r,
    };
    let Ok(mut agents) = state.store.agents(None).await else {
        return problem(StatusCode::SERVICE_UNAVAILABLE, "the store is unavailable");
    };
    agents.sort_by(|a, b| {
        a.trust_score
            .unwrap_or(0.0)
            .total_cmp(&b.trust_score.unwrap_or(0.0))
            .then_with(|| a.id.cmp(&b.id))
    });
    let mut body = format!(
        r#"{header}<main><table class="card" id="agents"><thead><tr><th>agent</th><th>team</th><th>tier</th><th>ceiling</th><th>trust</th><th>status</th></tr></thead><tbody>"#
    );
    for a in &agents {
        body.push_str(&format!(
            r#"<tr><td><a href="/ui/agents/{id}">{id}</a></td><td>{team}</td><td>{tier}</td><td>{ceiling}</td><td>{score}</td><td>{status}</td></tr>"#,
            id = esc(&a.id),
            team = esc(&a.team),
            tier = a.tier,
            ceiling = a.ceiling,
            score = a.trust_score.map_or_else(|| "not computed".into(), |s| format!("{s:.3}")),
            status = esc(a.status.as_str()),
        ));
    }
    body.push_str("</tbody></table></main>");
    page("agents", &body).into_response()
}

/// One agent: trust and tier over time, the gates to its next tier, its latest decisions and
/// violations.
pub(super) async fn agent(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let (header, _) = match signed_in_page(&state, &headers, "agents").await {
        Ok(h) => h,
        Err(r) => return r,
    };
    match state.reports.agent_overview(&id).await {
        Ok(o) => page(
            &format!("agent {id}"),
            &format!("{header}{}", agent_body(&o)),
        )
        .into_response(),
        Err(e) if e.kind == crate::error::Kind::NotFound => {
            problem(StatusCode::NOT_FOUND, &e.message)
        }
        Err(e) => problem(StatusCode::SERVICE_UNAVAILABLE, &e.message),
    }
}

fn agent_body(o: &AgentOverview) -> String {
    let a = &o.agent;
    let mut html = format!(
        r#"<main><div class="card" id="agent"><h2>{id}</h2><div class="meta">team {team} · {tool} / {model} · sponsor {sponsor} · tier <strong id="tier">{tier}</strong> of ceiling {ceiling} · {status}{shadow} · trust <strong id="score">{score:.3}</strong></div></div>"#,
        id = esc(&a.id),
        team = esc(&a.team),
        tool = esc(&a.tool),
        model = esc(&a.model),
        sponsor = esc(&a.sponsor),
        tier = a.tier,
        ceiling = a.ceiling,
        status = esc(a.status.as_str()),
        shadow = if a.shadow { " · shadow mode" } else { "" },
        score = o.score,
    );
    let days: Vec<String> = o.daily.iter().map(|d| d.day.clone()).collect();
    let scores = vec![(
        "score".to_string(),
        o.daily.iter().map(|d| Some(d.score)).collect(),
    )];
    let tiers = vec![(
        "tier".to_string(),
        o.daily.iter().map(|d| Some(f64::from(d.tier))).collect(),
    )];
    html.push_str(r#"<div class="card charts">"#);
    html.push_str(&line_chart(
        "chart-trust-history",
        "Trust score, last 90 days",
        &days,
        &scores,
        1.0,
    ));
    html.push_str(&line_chart(
        "chart-tier-history",
        "Tier, last 90 days",
        &days,
        &tiers,
        4.0,
    ));
    html.push_str("</div>");
    html.push_str(r#"<div class="card" id="gates"><strong>Next tier</strong>"#);
    match &o.next {
        Some(next) => {
            html.push_str(&format!(
                "<p>Tier {} needs every gate below{}.</p><table><thead><tr><th>gate</th><th>needs</th><th>has</th><th>met</th></tr></thead><tbody>",
                next.tier,
                if next.ready() { " — all are met; the next review promotes it" } else { "" }
            ));
            for g in &next.gates {
                html.push_str(&format!(
                    r#"<tr class="{cls}"><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
                    esc(&g.gate),
                    esc(&g.needs),
                    esc(&g.has),
                    if g.met { "yes" } else { "no" },
                    cls = if g.met { "met" } else { "unmet" },
                ));
            }
            html.push_str("</tbody></table>");
        }
        None => html.push_str(r#"<p class="meta">No promotion ahead: at its ceiling, pinned, suspended or at the top tier.</p>"#),
    }
    if let Some(w) = &o.demotion {
        html.push_str(&format!(
            r#"<p class="error" id="demotion">Close to a demotion: {}</p>"#,
            esc(w)
        ));
    }
    html.push_str("</div>");
    html.push_str(r#"<div class="card" id="changes"><strong>Tier changes</strong>"#);
    if o.changes.is_empty() {
        html.push_str(r#"<p class="meta">none in 90 days</p>"#);
    } else {
        html.push_str("<table><thead><tr><th>when</th><th>from → to</th><th>reason</th><th>why</th></tr></thead><tbody>");
        for c in &o.changes {
            html.push_str(&format!(
                "<tr><td>{}</td><td>{} → {}</td><td>{}</td><td>{}</td></tr>",
                esc(&c.at),
                c.from,
                c.to,
                esc(&c.reason),
                esc(&c.text)
            ));
        }
        html.push_str("</tbody></table>");
    }
    html.push_str("</div>");
    html.push_str(r#"<div class="card" id="decisions"><strong>Latest decisions</strong>"#);
    if o.decisions.is_empty() {
        html.push_str(r#"<p class="meta">none</p>"#);
    } else {
        html.push_str("<table><thead><tr><th>when</th><th>action</th><th>risk</th><th>verdict</th><th>outcome</th></tr></thead><tbody>");
        for d in &o.decisions {
            html.push_str(&format!(
                r#"<tr class="decision"><td>{}</td><td>{} {} in {}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
                esc(&format_micros(d.at)),
                esc(&d.class),
                esc(&d.service),
                esc(&d.environment),
                esc(&d.risk),
                d.verdict.as_str(),
                d.outcome.map_or("—", |o| o.as_str()),
            ));
        }
        html.push_str("</tbody></table>");
    }
    html.push_str("</div>");
    html.push_str(r#"<div class="card" id="violations"><strong>Violations, last 30 days</strong>"#);
    if o.violations.is_empty() {
        html.push_str(r#"<p class="meta">none</p>"#);
    } else {
        html.push_str("<table><thead><tr><th>when</th><th>action</th><th>reason</th><th>mode</th><th>status</th></tr></thead><tbody>");
        for v in &o.violations {
            html.push_str(&format!(
                r#"<tr class="violation"><td>{}</td><td>{} {} in {}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
                esc(&v.at),
                esc(&v.class),
                esc(&v.service),
                esc(&v.environment),
                esc(&v.reason),
                v.mode.as_str(),
                v.status,
            ));
        }
        html.push_str("</tbody></table>");
    }
    html.push_str("</div></main>");
    html
}
