//! The audit trail: one record per decision, atomic with its change, tamper-evident.

use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::json;
use sqlx::Executor as _;

use crate::both_backends;
use crate::support::{Backend, TestServer, assert_error};

both_backends!(
    every_decision_has_exactly_one_record,
    change_and_record_commit_together,
    audit_filters,
    complete_records_name_who_approved,
    reads_are_scoped_and_recorded,
    store_down_fails_closed
);

async fn every_decision_has_exactly_one_record(backend: Backend) {
    let s = TestServer::start(backend).await;
    let bot = s.agent("bot", 2, json!({})).await;
    s.lift_quotas("bot").await;
    // Concurrent decisions land in shared group-commit batches; each still gets one record.
    let mut tasks = Vec::new();
    for i in 0..60 {
        let (client, base, bot) = (s.client.clone(), s.base.clone(), bot.clone());
        tasks.push(tokio::spawn(async move {
            let env = ["dev", "staging", "production"][i % 3];
            let resp = client
                .post(format!("{base}/v1/decisions"))
                .bearer_auth(bot)
                .json(&json!({"action": {"class": "deploy", "environment": env, "service": "payments"}}))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            resp.json::<serde_json::Value>().await.unwrap()["decision_id"].as_str().unwrap().to_string()
        }));
    }
    let mut ids = HashSet::new();
    for t in tasks {
        ids.insert(t.await.unwrap());
    }
    assert_eq!(ids.len(), 60);
    for id in &ids {
        assert_eq!(
            s.warden
                .state
                .store
                .count_audit_for_decision(id)
                .await
                .unwrap(),
            1,
            "decision {id}"
        );
    }
    let (_, page) = s
        .get("/v1/audit?event_type=decision&limit=1000", &s.admin)
        .await;
    let audited: HashSet<String> = page["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["decision_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(audited, ids);
    // 60 decisions, the 20 production ones each with an approval request, 5 set-up records,
    // and the read of the trail above.
    assert_eq!(
        s.warden.state.store.verify_audit().await.unwrap(),
        Ok(60 + 20 + 5 + 1)
    );
}

async fn inject_fault(s: &TestServer, table: &str, column: &str, value: &str) {
    let pool = s.db.pool().await;
    match s.db.backend {
        Backend::Sqlite => {
            pool.execute(
                format!(
                    "CREATE TRIGGER fault_{table} BEFORE INSERT ON {table} WHEN NEW.{column} = '{value}' BEGIN SELECT RAISE(ABORT, 'injected fault'); END;"
                )
                .as_str(),
            )
            .await
            .unwrap();
        }
        Backend::Postgres => {
            pool.execute(format!("CREATE FUNCTION fault_{table}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN IF NEW.{column} = '{value}' THEN RAISE EXCEPTION 'injected fault'; END IF; RETURN NEW; END $$").as_str()).await.unwrap();
            pool.execute(format!("CREATE TRIGGER fault_{table} BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION fault_{table}()").as_str())
                .await
                .unwrap();
        }
    }
    pool.close().await;
}

async fn change_and_record_commit_together(backend: Backend) {
    let s = TestServer::start(backend).await;
    let bot = s.agent("bot", 2, json!({})).await;
    // The audit insert for agent `doomed` fails: the agent row must not be written either.
    inject_fault(&s, "audit_events", "agent_id", "doomed").await;
    // Concurrent good decisions share batches with the doomed change and are unaffected.
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (client, base, bot) = (s.client.clone(), s.base.clone(), bot.clone());
        tasks.push(tokio::spawn(async move {
            client
                .post(format!("{base}/v1/decisions"))
                .bearer_auth(bot)
                .json(&json!({"action": {"class": "read", "environment": "dev", "service": "p"}}))
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    let doomed = json!({"id": "doomed", "tool": "t", "model": "m", "team": "core", "sponsor": "s"});
    assert_error(
        &s.post("/v1/agents", &s.admin, doomed).await,
        503,
        "store_unavailable",
    );
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::OK);
    }
    assert_error(
        &s.get("/v1/agents/doomed", &s.admin).await,
        404,
        "unknown_agent",
    );
    // The same on the decision path: the decision row fails, so no audit record and no answer.
    inject_fault(&s, "decisions", "service", "cursed").await;
    let (status, body) = s
        .post(
            "/v1/decisions",
            &bot,
            json!({"action": {"class": "read", "environment": "dev", "service": "cursed"}}),
        )
        .await;
    assert_eq!(
        (status.as_u16(), body["error"]["code"].as_str()),
        (503, Some("store_unavailable")),
        "{body}"
    );
    let (_, page) = s
        .get("/v1/audit?event_type=decision&limit=1000", &s.admin)
        .await;
    assert_eq!(page["records"].as_array().unwrap().len(), 20);
    assert!(
        page["records"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["target"] != "service:cursed")
    );
    assert!(s.warden.state.store.verify_audit().await.unwrap().is_ok());
}

async fn audit_filters(backend: Backend) {
    let s = TestServer::start(backend).await;
    let bot = s.agent("bot", 2, json!({})).await;
    s.agent("other", 2, json!({})).await;
    s.verdict(&bot, "deploy", "staging").await;
    s.verdict(&bot, "deploy", "production").await;
    let s = &s;
    // Every read is recorded (`audit.read`): count what the reads are about, not the reads.
    let get = |q: &'static str| async move {
        let (status, page) = s.get(&format!("/v1/audit?{q}"), &s.admin).await;
        assert_eq!(status, 200, "{q}: {page}");
        page["records"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["event_type"] != "audit.read")
            .cloned()
            .collect::<Vec<_>>()
    };
    // Two decisions, and the approval the production deploy asks for.
    assert_eq!(get("actor_kind=agent").await.len(), 3);
    assert_eq!(
        get("actor_kind=admin").await.len(),
        6,
        "the policy, the test's admin token, 2 agents and their 2 tokens (reads aside)"
    );
    assert_eq!(get("verdict=allow").await.len(), 1);
    assert_eq!(get("verdict=require_approval").await.len(), 1);
    assert_eq!(get("risk=low&event_type=decision").await.len(), 2);
    assert_eq!(get("risk=high").await.len(), 0);
    assert_eq!(get("team=payments&event_type=decision").await.len(), 2);
    assert_eq!(get("service=payments&event_type=decision").await.len(), 2);
    assert_eq!(get("agent=bot&environment=production").await.len(), 2);
    assert_eq!(
        get("agent=bot&environment=production&event_type=decision")
            .await
            .len(),
        1
    );
    assert_eq!(get("action_class=deploy").await.len(), 3);
    assert_eq!(get("since=2999-01-01T00:00:00Z").await.len(), 0);
    assert_eq!(get("until=2000-01-01T00:00:00Z").await.len(), 0);
    // Spans before now: everything here happened within the last hour, nothing an hour ago.
    let all = get("").await.len();
    assert_eq!(get("since=1h").await.len(), all);
    assert_eq!(get("since=30d&until=1h").await.len(), 0);
    assert_eq!(
        assert_error(
            &s.get("/v1/audit?since=yesterday", &s.admin).await,
            400,
            "invalid_field"
        )
        .as_deref(),
        Some("since")
    );
    // Paging follows the chain, with a cursor tied to its query.
    let (_, first) = s.get("/v1/audit?actor_kind=admin&limit=5", &s.admin).await;
    assert_eq!(first["records"].as_array().unwrap().len(), 5);
    let cursor = first["next_cursor"].as_str().unwrap().to_string();
    let (_, rest) = s
        .get(
            &format!("/v1/audit?actor_kind=admin&limit=5&cursor={cursor}"),
            &s.admin,
        )
        .await;
    assert_eq!(rest["records"][0]["prev_hash"], first["records"][4]["hash"]);
    assert_eq!(
        rest["records"][0]["seq"],
        first["records"][4]["seq"].as_i64().unwrap() + 1
    );
    let (status, other) = s
        .get(
            &format!("/v1/audit?actor_kind=agent&limit=5&cursor={cursor}"),
            &s.admin,
        )
        .await;
    assert_eq!(
        (status.as_u16(), other["error"]["field"].as_str()),
        (400, Some("cursor")),
        "{other}"
    );
    assert_eq!(
        assert_error(
            &s.get("/v1/audit?cursor=garbage", &s.admin).await,
            400,
            "invalid_field"
        )
        .as_deref(),
        Some("cursor")
    );
    // A span such as 30d means the first page's moment on every page after it.
    let (_, first) = s.get("/v1/audit?since=30d&limit=2", &s.admin).await;
    let cursor = first["next_cursor"].as_str().unwrap().to_string();
    let (status, second) = s
        .get(
            &format!("/v1/audit?since=30d&limit=2&cursor={cursor}"),
            &s.admin,
        )
        .await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(
        second["records"][0]["seq"],
        first["records"][1]["seq"].as_i64().unwrap() + 1
    );
    let (status, _) = s
        .get(
            &format!("/v1/audit?since=7d&limit=2&cursor={cursor}"),
            &s.admin,
        )
        .await;
    assert_eq!(status, 400);
    // Newest first walks the other way.
    let (_, newest) = s.get("/v1/audit?order=newest&limit=2", &s.admin).await;
    let (a, b) = (
        newest["records"][0]["seq"].as_i64().unwrap(),
        newest["records"][1]["seq"].as_i64().unwrap(),
    );
    assert!(a > b, "{newest}");
    // Every bad value is a 400 naming its parameter.
    for (q, field) in [
        ("verdict=maybe", "verdict"),
        ("outcome=fine", "outcome"),
        ("risk=extreme", "risk"),
        ("actor_kind=robot", "actor_kind"),
        ("until=tomorrow", "until"),
        ("order=sideways", "order"),
        ("limit=0", "limit"),
        ("group_by=agent", "group_by"),
        ("colour=red", "colour"),
    ] {
        let (status, bad) = s.get(&format!("/v1/audit?{q}"), &s.admin).await;
        assert_eq!(status, 400, "{q}: {bad}");
        assert!(
            bad["error"]["field"].as_str() == Some(field)
                || bad["error"]["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains(field),
            "{q}: {bad}"
        );
    }
    // Approvers may read the trail.
    s.post(
        "/v1/humans",
        &s.admin,
        json!({"id": "carol", "team": "core", "grants": []}),
    )
    .await;
    let approver = s.token("approver", Some("carol")).await;
    assert_eq!(s.get("/v1/audit", &approver).await.0, 200);
}

async fn store_down_fails_closed(backend: Backend) {
    let s = TestServer::start(backend).await;
    let bot = s.agent("bot", 2, json!({})).await;
    assert_eq!(s.verdict(&bot, "deploy", "staging").await, "allow");
    let pool = s.db.pool().await;
    let mut conn = pool.acquire().await.unwrap();
    let admin = crate::support::admin_pool().await;
    match s.db.schema() {
        // Another process holds the write lock past the busy timeout.
        None => {
            conn.execute("BEGIN EXCLUSIVE").await.unwrap();
        }
        // The database goes away underneath the server: its schema vanishes and its sessions die.
        Some(schema) => {
            admin
                .execute(format!("ALTER SCHEMA {schema} RENAME TO {schema}_gone").as_str())
                .await
                .unwrap();
            admin.execute(format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '{schema}'").as_str()).await.unwrap();
            // Termination is asynchronous: wait until the sessions are gone.
            for _ in 0..100 {
                let alive: i64 = sqlx::query_scalar(&format!(
                    "SELECT COUNT(*) FROM pg_stat_activity WHERE application_name = '{schema}'"
                ))
                .fetch_one(&admin)
                .await
                .unwrap();
                if alive == 0 {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
    let result = s.decide(&bot, "deploy", "staging", json!({})).await;
    assert_error(&result, 503, "store_unavailable");
    assert_eq!(
        s.call(reqwest::Method::GET, "/readyz", None, None)
            .await
            .0
            .as_u16(),
        if s.db.backend == Backend::Sqlite {
            200
        } else {
            503
        }
    );
    match s.db.schema() {
        None => {
            conn.execute("ROLLBACK").await.unwrap();
        }
        Some(schema) => {
            admin
                .execute(format!("ALTER SCHEMA {schema}_gone RENAME TO {schema}").as_str())
                .await
                .unwrap();
        }
    }
    // It recovers by itself (a pooled session killed during the outage may fail one more
    // request), and the failed decision left nothing behind.
    let mut recovered = false;
    for _ in 0..20 {
        if s.decide(&bot, "deploy", "staging", json!({})).await.0 == 200 {
            recovered = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(recovered, "the server did not recover");
    let (_, page) = s.get("/v1/audit?event_type=decision", &s.admin).await;
    assert_eq!(page["records"].as_array().unwrap().len(), 2);
}

fn migration() -> serde_json::Value {
    json!({"class": "db_migration", "environment": "production", "service": "payments",
        "reasoning": "add an index for the slow refunds query", "plan": {"steps": ["create index concurrently"]}})
}

/// "Who, for whom, approved by whom, did what, where, with what result, and why": the record
/// of a decision allowed through an approval answers all of it, and its outcome links to it.
async fn complete_records_name_who_approved(backend: Backend) {
    let s = TestServer::start(backend).await;
    let bot = s
        .agent(
            "migrator",
            3,
            json!({"tool": "claude-code", "model": "opus", "team": "payments", "sponsor": "erin"}),
        )
        .await;
    let carol = s.approver("carol").await;
    let (_, asked) = s
        .post("/v1/decisions", &bot, json!({"action": migration()}))
        .await;
    assert_eq!(asked["verdict"], "require_approval", "{asked}");
    let approval = asked["approval"]["id"].as_str().unwrap().to_string();
    let (status, body) = s
        .post(
            &format!("/v1/approvals/{approval}/approve"),
            &carol,
            json!({"comment": "ok"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, allowed) = s
        .post(
            "/v1/decisions",
            &bot,
            json!({"action": migration(), "approval_id": approval}),
        )
        .await;
    assert_eq!(allowed["verdict"], "allow", "{allowed}");
    let id = allowed["decision_id"].as_str().unwrap();
    let (status, body) = s
        .post(
            &format!("/v1/decisions/{id}/outcome"),
            &bot,
            json!({"status": "succeeded"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    let (_, page) = s
        .get(
            "/v1/audit?event_type=decision&verdict=allow&agent=migrator",
            &s.admin,
        )
        .await;
    let r = &page["records"][0];
    assert_eq!(r["decision_id"], id, "{page}");
    assert_eq!(r["actor"]["kind"], "agent");
    assert_eq!(r["actor"]["tool"], "claude-code");
    assert_eq!(r["actor"]["model"], "opus");
    assert_eq!(r["actor"]["team"], "payments");
    assert_eq!(r["actor"]["sponsor"], "erin");
    assert_eq!(r["team"], "payments");
    assert_eq!(r["service"], "payments");
    assert_eq!(r["approval_id"], approval.as_str());
    assert_eq!(r["approvers"], json!(["carol"]));
    assert_eq!(r["outcome"], "allow");
    assert_eq!(r["risk"], "high");
    assert_eq!(r["reasoning"], "add an index for the slow refunds query");
    assert_eq!(r["action"]["plan"]["steps"][0], "create index concurrently");
    assert!(r["policy_version"].is_string());
    assert!(
        r["details"]["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["code"] == "approved"),
        "{r}"
    );
    assert!(r["details"]["plugins"].is_array());
    // The approval's own record names the approver and the human is findable in all of them.
    let (_, approved) = s
        .get("/v1/audit?event_type=approval.approved", &s.admin)
        .await;
    assert_eq!(approved["records"][0]["approvers"], json!(["carol"]));
    assert_eq!(approved["records"][0]["actor"]["id"], "carol");
    let (_, carols) = s.get("/v1/audit?human=carol", &s.admin).await;
    let kinds: HashSet<&str> = carols["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["event_type"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains("approval.approved")
            && kinds.contains("decision")
            && kinds.contains("approval.consumed"),
        "{kinds:?}"
    );
    // The outcome links its decision, and is found by outcome.
    let (_, outcomes) = s.get("/v1/audit?outcome=succeeded", &s.admin).await;
    assert_eq!(outcomes["records"][0]["decision_id"], id);
    assert_eq!(outcomes["records"][0]["event_type"], "outcome.reported");
    // Free text over reasoning and plan.
    let (_, found) = s
        .get("/v1/audit?q=REFUNDS%20query&event_type=decision", &s.admin)
        .await;
    assert_eq!(found["records"].as_array().unwrap().len(), 2);
    let (_, found) = s
        .get("/v1/audit?q=concurrently&event_type=decision", &s.admin)
        .await;
    assert_eq!(found["records"].as_array().unwrap().len(), 2);
    let (_, none) = s.get("/v1/audit?q=50%25_off", &s.admin).await;
    assert_eq!(
        none["records"].as_array().unwrap().len(),
        0,
        "LIKE wildcards are literal"
    );
    // A NUL in an agent's text is data, not a way to break the search.
    let nul = json!({"action": {"class": "read", "environment": "dev", "service": "payments", "reasoning": "nul\u{0}byte"}});
    assert_eq!(s.post("/v1/decisions", &bot, nul).await.0, 200);
    let (status, found) = s.get("/v1/audit?q=nul", &s.admin).await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["records"].as_array().unwrap().len(), 1);
    // Summaries for dashboards.
    let (_, by_verdict) = s
        .get(
            "/v1/audit/summary?group_by=verdict&event_type=decision",
            &s.admin,
        )
        .await;
    assert_eq!(by_verdict["total"], 3, "{by_verdict}");
    let groups: HashSet<(String, i64)> = by_verdict["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["key"].as_str().unwrap().to_string(),
                g["count"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        groups,
        HashSet::from([
            ("allow".to_string(), 2),
            ("require_approval".to_string(), 1)
        ])
    );
    let (_, by_day) = s
        .get("/v1/audit/summary?group_by=day&since=1h", &s.admin)
        .await;
    assert_eq!(by_day["groups"].as_array().unwrap().len(), 1, "{by_day}");
    assert!(
        by_day["groups"][0]["key"]
            .as_str()
            .unwrap()
            .starts_with("20")
    );
    assert_eq!(
        assert_error(
            &s.get("/v1/audit/summary?group_by=colour", &s.admin).await,
            400,
            "invalid_field"
        )
        .as_deref(),
        Some("group_by")
    );
    assert_eq!(
        assert_error(
            &s.get("/v1/audit/summary?cursor=x", &s.admin).await,
            400,
            "invalid_field"
        )
        .as_deref(),
        Some("cursor")
    );
}

/// Admins read everything; an approver what names them and what is pending; an agent its own
/// records; and every read is itself a record of who asked with which filter.
async fn reads_are_scoped_and_recorded(backend: Backend) {
    let s = TestServer::start(backend).await;
    let bot = s.agent("migrator", 3, json!({})).await;
    let other = s.agent("other", 2, json!({})).await;
    s.verdict(&other, "deploy", "staging").await;
    let carol = s.approver("carol").await;
    let dave = s.approver("dave").await;
    let (_, asked) = s
        .post("/v1/decisions", &bot, json!({"action": migration()}))
        .await;
    let pending_decision = asked["decision_id"].as_str().unwrap().to_string();

    // Dave approved nothing yet: he sees the pending request's records only.
    let (status, page) = s.get("/v1/audit", &dave).await;
    assert_eq!(status, 200);
    let seen: Vec<&serde_json::Value> = page["records"].as_array().unwrap().iter().collect();
    assert!(!seen.is_empty());
    assert!(
        seen.iter()
            .all(|r| r["decision_id"] == pending_decision.as_str()),
        "{page}"
    );

    // Carol approves: now the approval's records name her, and they stay hers to read.
    let approval = asked["approval"]["id"].as_str().unwrap();
    s.post(
        &format!("/v1/approvals/{approval}/approve"),
        &carol,
        json!({}),
    )
    .await;
    let (_, page) = s
        .get("/v1/audit?event_type=approval.approved", &carol)
        .await;
    assert_eq!(page["records"].as_array().unwrap().len(), 1);
    let (_, page) = s.get("/v1/audit?agent=other", &carol).await;
    assert_eq!(page["records"].as_array().unwrap().len(), 0, "{page}");

    // An agent reads its own records, and a filter cannot widen that.
    let (status, page) = s.get("/v1/audit?agent=other", &bot).await;
    assert_eq!(status, 200);
    assert_eq!(page["records"].as_array().unwrap().len(), 0);
    let (_, page) = s.get("/v1/audit", &bot).await;
    assert!(
        page["records"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["agent"] == "migrator"),
        "{page}"
    );

    // Platform services ask for decisions; they do not read the trail.
    let service = s.token("service", None).await;
    assert_error(&s.get("/v1/audit", &service).await, 403, "forbidden_role");

    // Each read above is on record, with its reader and filter.
    let (_, reads) = s
        .get("/v1/audit?event_type=audit.read&human=carol", &s.admin)
        .await;
    let reads = reads["records"].as_array().unwrap();
    assert_eq!(reads.len(), 2, "{reads:?}");
    assert_eq!(reads[1]["details"]["filter"]["agent"], "other");
    assert_eq!(reads[1]["details"]["filter"]["scope"]["approver"], "carol");
    let (_, mine) = s
        .get("/v1/audit?event_type=audit.read&agent=migrator", &s.admin)
        .await;
    assert_eq!(mine["records"].as_array().unwrap().len(), 2);
}
