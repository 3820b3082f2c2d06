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
    tampering_is_detected,
    audit_filters,
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
    // 60 decisions, the 20 production ones each with an approval request, and 5 set-up records.
    assert_eq!(
        s.warden.state.store.verify_audit().await.unwrap(),
        Ok(60 + 20 + 5)
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

async fn tampering_is_detected(backend: Backend) {
    let s = TestServer::start(backend).await;
    let bot = s.agent("bot", 2, json!({})).await;
    for _ in 0..3 {
        s.verdict(&bot, "deploy", "staging").await;
    }
    let store = &s.warden.state.store;
    assert_eq!(store.verify_audit().await.unwrap(), Ok(7));
    let pool = s.db.pool().await;
    // Append-only is enforced by the database too.
    assert!(
        pool.execute("UPDATE audit_events SET record = record WHERE seq = 4")
            .await
            .is_err()
    );
    assert!(
        pool.execute("DELETE FROM audit_events WHERE seq = 4")
            .await
            .is_err()
    );
    // Someone with raw access removes the guard and rewrites history.
    match s.db.backend {
        Backend::Sqlite => pool
            .execute("DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;")
            .await
            .unwrap(),
        Backend::Postgres => pool
            .execute("DROP TRIGGER audit_append_only ON audit_events")
            .await
            .unwrap(),
    };
    pool.execute(
        "UPDATE audit_events SET record = replace(record, '\"allow\"', '\"deny\"') WHERE seq = 5",
    )
    .await
    .unwrap();
    let problem = store.verify_audit().await.unwrap().unwrap_err();
    assert!(
        problem.contains("record 5") && problem.contains("edited"),
        "{problem}"
    );
    pool.execute(
        "UPDATE audit_events SET record = replace(record, '\"deny\"', '\"allow\"') WHERE seq = 5",
    )
    .await
    .unwrap();
    assert_eq!(store.verify_audit().await.unwrap(), Ok(7));
    pool.execute("DELETE FROM audit_events WHERE seq = 6")
        .await
        .unwrap();
    assert!(
        store
            .verify_audit()
            .await
            .unwrap()
            .unwrap_err()
            .contains("record 6")
    );
}

async fn audit_filters(backend: Backend) {
    let s = TestServer::start(backend).await;
    let bot = s.agent("bot", 2, json!({})).await;
    s.agent("other", 2, json!({})).await;
    s.verdict(&bot, "deploy", "staging").await;
    s.verdict(&bot, "deploy", "production").await;
    let s = &s;
    let get = |q: &'static str| async move {
        s.get(&format!("/v1/audit?{q}"), &s.admin).await.1["records"]
            .as_array()
            .unwrap()
            .clone()
    };
    // Two decisions, and the approval the production deploy asks for.
    assert_eq!(get("actor_kind=agent").await.len(), 3);
    assert_eq!(
        get("actor_kind=admin").await.len(),
        6,
        "the policy, the test's admin token, 2 agents and their 2 tokens"
    );
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
    let (status, bad) = s.get("/v1/audit?since=yesterday", &s.admin).await;
    assert_eq!(
        (status.as_u16(), bad["error"]["field"].as_str()),
        (400, Some("since")),
        "{bad}"
    );
    // Paging follows the chain.
    let (_, first) = s.get("/v1/audit?limit=5", &s.admin).await;
    assert_eq!(first["records"].as_array().unwrap().len(), 5);
    let after = first["next_after"].as_i64().unwrap();
    let (_, rest) = s
        .get(&format!("/v1/audit?limit=5&after={after}"), &s.admin)
        .await;
    assert_eq!(rest["records"].as_array().unwrap().len(), 4);
    assert_eq!(rest["records"][0]["prev_hash"], first["records"][4]["hash"]);
    assert!(rest["next_after"].is_null());
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
