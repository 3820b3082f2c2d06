//! The role matrix: every route of the OpenAPI document, asked by every role. A role a route
//! does not let in gets a 403 before anything else happens; a role it lets in never does.
//! A route missing from the table fails the test, so the table grows with the API.

use reqwest::Method;
use serde_json::json;

use crate::support::{Backend, TestServer};

/// Per route, the roles it lets in (a: admin, p: approver, s: service, g: agent). Some of them
/// then see only their own records (an agent its own decisions): that is a 404, not a 403.
const MATRIX: &[(&str, &str)] = &[
    ("GET /healthz", "public"),
    ("GET /readyz", "public"),
    ("GET /metrics", "public"),
    // Signed with the webhook's secret, not a token.
    ("POST /v1/integrations/github", "public"),
    ("POST /access/v1/evaluation", "asg"),
    ("POST /access/v1/evaluations", "asg"),
    ("GET /v1/agents", "aps"),
    ("POST /v1/agents", "a"),
    ("GET /v1/agents/{id}", "apsg"),
    ("PATCH /v1/agents/{id}", "a"),
    ("GET /v1/agents/{id}/quotas", "apsg"),
    ("PUT /v1/agents/{id}/quotas", "a"),
    ("GET /v1/agents/{id}/trust", "apsg"),
    ("GET /v1/agents/{id}/trust/history", "apsg"),
    ("GET /v1/approvals", "ap"),
    ("GET /v1/approvals/quarantined", "a"),
    // An agent may watch its own; an unknown id is a 404 to everyone.
    ("GET /v1/approvals/{id}", "apsg"),
    ("POST /v1/approvals/{id}/approve", "p"),
    ("POST /v1/approvals/{id}/reject", "p"),
    ("POST /v1/approvals/{id}/quarantine", "a"),
    ("GET /v1/audit", "apg"),
    ("GET /v1/audit/summary", "apg"),
    ("GET /v1/audit/verify", "a"),
    ("GET /v1/audit/checkpoints", "ap"),
    ("POST /v1/audit/checkpoints", "a"),
    ("GET /v1/audit/proofs/inclusion", "ap"),
    ("GET /v1/audit/proofs/consistency", "ap"),
    ("GET /v1/baselines", "aps"),
    ("POST /v1/baselines/recompute", "a"),
    ("POST /v1/decisions", "asg"),
    ("GET /v1/decisions/{id}", "apsg"),
    ("POST /v1/decisions/{id}/anomaly/confirm", "ap"),
    ("GET /v1/decisions/{id}/outcome", "apsg"),
    ("POST /v1/decisions/{id}/outcome", "asg"),
    ("POST /v1/decisions/{id}/signals", "asg"),
    ("GET /v1/delegations", "apg"),
    ("POST /v1/delegations", "p"),
    ("POST /v1/delegations/{id}/revoke", "ap"),
    ("POST /v1/events", "as"),
    ("POST /v1/integrations/kubernetes", "as"),
    ("GET /v1/humans", "aps"),
    ("POST /v1/humans", "a"),
    ("GET /v1/humans/{id}", "aps"),
    ("GET /v1/plugins", "aps"),
    ("POST /v1/plugins", "a"),
    ("DELETE /v1/plugins/{name}", "a"),
    ("GET /v1/policy", "apsg"),
    ("GET /v1/reports", "aps"),
    ("GET /v1/reports/weekly", "aps"),
    ("GET /v1/tokens", "a"),
    ("POST /v1/tokens", "a"),
    ("DELETE /v1/tokens/{id}", "a"),
    ("GET /v1/trust", "aps"),
    ("GET /v1/violations", "ap"),
    ("GET /v1/violations/{id}", "ap"),
    ("POST /v1/violations/{id}/ack", "ap"),
    ("GET /v1/webhooks/deliveries", "a"),
];

#[tokio::test]
async fn every_role_on_every_route() {
    let s = TestServer::start(Backend::Sqlite).await;
    let tokens = [
        ('a', s.admin.clone()),
        ('p', s.approver("pat").await),
        ('s', s.token("service", Some("svc")).await),
        ('g', s.agent("bot", 2, json!({})).await),
    ];
    let (_, doc) = s.call(Method::GET, "/openapi.json", None, None).await;
    let (mut missing, mut wrong) = (Vec::new(), Vec::new());
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let route = format!("{} {path}", method.to_uppercase());
            let Some((_, allowed)) = MATRIX.iter().find(|(r, _)| *r == route) else {
                missing.push(route);
                continue;
            };
            if *allowed == "public" {
                continue;
            }
            let concrete = path.replace("{week}", "2026-W01").replace(['{', '}'], "");
            for (role, token) in &tokens {
                let m: Method = method.to_uppercase().parse().unwrap();
                let body = (m != Method::GET && m != Method::DELETE).then(|| json!({}));
                let (status, answer) = s.call(m, &concrete, Some(token), body).await;
                let refused = status == 403 && answer["error"]["code"] == "forbidden_role";
                if refused == allowed.contains(*role) || status == 401 || status.as_u16() >= 500 {
                    wrong.push(format!("{route} as {role}: {status} {answer}"));
                }
                checked += 1;
            }
        }
    }
    assert!(
        missing.is_empty(),
        "routes missing from the matrix: {missing:#?}"
    );
    assert!(wrong.is_empty(), "{wrong:#?}");
    assert!(checked > 100, "{checked}");
}

/// docs/api.md lists every route of the OpenAPI document (the matrix above, which the test
/// above holds to the document) with the roles the matrix lets in, and nothing else outside
/// its web pages.
#[test]
fn the_api_page_names_every_route_and_who_may_call_it() {
    let page =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/api.md")).unwrap();
    // The web pages come last and are not in the OpenAPI document.
    let (api, pages) = page.split_once("\n## Web pages").unwrap();
    assert!(pages.contains("`GET /ui/approvals`"), "{pages}");
    let mut listed = Vec::new();
    for row in api.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let route = cells[1].trim_matches('`');
        let who = cells[2];
        let said: String = if who.starts_with("public") {
            "public".into()
        } else if who.starts_with("any token") {
            "apsg".into()
        } else {
            [
                ("admin", 'a'),
                ("approver", 'p'),
                ("service", 's'),
                ("agent", 'g'),
            ]
            .iter()
            .filter(|(word, _)| who.contains(word))
            .map(|(_, c)| *c)
            .collect()
        };
        let Some((_, allowed)) = MATRIX.iter().find(|(r, _)| *r == route) else {
            panic!("docs/api.md lists {route}, which the OpenAPI document does not have");
        };
        let mut allowed: Vec<char> = allowed.chars().collect();
        let mut said_roles: Vec<char> = said.chars().collect();
        allowed.sort_unstable();
        said_roles.sort_unstable();
        assert_eq!(said_roles, allowed, "{route}: docs/api.md says `{who}`");
        listed.push(route);
    }
    let missing: Vec<&str> = MATRIX
        .iter()
        .map(|(r, _)| *r)
        .filter(|r| !listed.contains(r))
        .collect();
    assert!(missing.is_empty(), "missing from docs/api.md: {missing:?}");
    assert_eq!(listed.len(), MATRIX.len(), "a route listed twice");
}
