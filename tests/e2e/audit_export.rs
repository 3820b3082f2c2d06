//! The audit trail others can verify: tampering with the database in four ways, signed
//! checkpoints and their proofs, exports that verify with the public key alone, retention,
//! and one tree from several replicas.

use std::path::Path;

use serde_json::{Value, json};
use sqlx::Executor as _;
use warden::audit::checkpoint::NoteVerifier;
use warden::audit::merkle;
use warden::audit::{Actor, AuditRecord, Tamper, chain_hash};
use warden::services::export::{self, ExportRequest, Format};
use warden::store::{AuditFilter, Change};

use crate::both_backends;
use crate::support::{Backend, Replica, TestDb, TestServer, assert_error};

both_backends!(
    tampering_four_ways_is_named,
    checkpoints_prove_inclusion_and_consistency,
    exports_verify_with_the_public_key_alone,
    archived_records_are_pruned_and_the_rest_verifies,
    replicas_make_one_chain_and_one_tree
);

/// Removes the database's append-only guard, as someone with raw access could.
async fn drop_guards(s: &TestServer) -> sqlx::AnyPool {
    let pool = s.db.pool().await;
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
    pool
}

async fn broken(s: &TestServer) -> (i64, Tamper) {
    let b = s
        .warden
        .state
        .store
        .verify_audit()
        .await
        .unwrap()
        .unwrap_err();
    (b.seq, b.tamper)
}

async fn tampering_four_ways_is_named(backend: Backend) {
    let s = TestServer::start(backend).await;
    let bot = s.agent("bot", 2, json!({})).await;
    for _ in 0..4 {
        s.verdict(&bot, "deploy", "staging").await;
    }
    let (_, v) = s.get("/v1/audit/verify", &s.admin).await;
    assert_eq!(
        (v["intact"].as_bool(), v["from"].as_i64()),
        (Some(true), Some(1)),
        "{v}"
    );
    let n = v["through"].as_i64().unwrap();
    assert_eq!(n, 8, "policy, admin token, agent, its token, 4 decisions");
    let (status, _) = s.post("/v1/audit/checkpoints", &s.admin, json!({})).await;
    assert_eq!(status, 200);
    // Append-only is enforced by the database too.
    let pool = s.db.pool().await;
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
    let pool = drop_guards(&s).await;

    // Edited: a verdict rewritten in place.
    pool.execute(
        "UPDATE audit_events SET record = replace(record, '\"allow\"', '\"deny\"') WHERE seq = 6",
    )
    .await
    .unwrap();
    let (_, v) = s.get("/v1/audit/verify", &s.admin).await;
    assert_eq!(v["intact"], false, "{v}");
    assert_eq!(
        (v["broken"]["seq"].as_i64(), v["broken"]["tamper"].as_str()),
        (Some(6), Some("edited")),
        "{v}"
    );
    pool.execute(
        "UPDATE audit_events SET record = replace(record, '\"deny\"', '\"allow\"') WHERE seq = 6",
    )
    .await
    .unwrap();
    // The edit and the query columns must agree too.
    pool.execute("UPDATE audit_events SET verdict = 'deny' WHERE seq = 6")
        .await
        .unwrap();
    assert_eq!(broken(&s).await, (6, Tamper::ColumnsEdited));
    pool.execute("UPDATE audit_events SET verdict = 'allow' WHERE seq = 6")
        .await
        .unwrap();
    assert!(s.warden.state.store.verify_audit().await.unwrap().is_ok());

    // Reordered: records 6 and 7 swap places.
    let swap = "UPDATE audit_events SET seq = -6 WHERE seq = 6; UPDATE audit_events SET seq = 6 WHERE seq = 7; UPDATE audit_events SET seq = 7 WHERE seq = -6;";
    pool.execute(swap).await.unwrap();
    assert_eq!(broken(&s).await, (6, Tamper::Reordered));
    pool.execute(swap).await.unwrap();
    assert!(s.warden.state.store.verify_audit().await.unwrap().is_ok());

    // Inserted: a forged record at 6 that links to 5, the rest moved up by one.
    let row = sqlx::query("SELECT record, hash FROM audit_events WHERE seq = 5")
        .fetch_one(&pool)
        .await
        .unwrap();
    let (record, prev): (String, String) =
        (sqlx::Row::get(&row, "record"), sqlx::Row::get(&row, "hash"));
    let forged: AuditRecord =
        serde_json::from_str(&record.replace("staging", "production")).unwrap();
    let forged_json = serde_json::to_string(&forged).unwrap();
    let c = forged.columns().unwrap();
    pool.execute("UPDATE audit_events SET seq = seq + 1000 WHERE seq >= 6")
        .await
        .unwrap();
    pool.execute("UPDATE audit_events SET seq = seq - 999 WHERE seq >= 1006")
        .await
        .unwrap();
    sqlx::query("INSERT INTO audit_events (seq, at, event_type, actor_kind, actor_id, agent_id, environment, action_class, decision_id, service, team, verdict, outcome, risk, on_behalf_of, record, prev_hash, hash) \
                 VALUES (6, $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)")
        .bind(c.at).bind(&c.event_type).bind(&c.actor_kind).bind(&c.actor_id).bind(&c.agent_id)
        .bind(&c.environment).bind(&c.action_class).bind(&c.decision_id).bind(&c.service).bind(&c.team)
        .bind(&c.verdict).bind(&c.outcome).bind(&c.risk).bind(&c.on_behalf_of)
        .bind(&forged_json).bind(&prev).bind(chain_hash(&prev, 6, &forged_json))
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(broken(&s).await, (6, Tamper::Inserted));
    pool.execute("DELETE FROM audit_events WHERE seq = 6")
        .await
        .unwrap();
    pool.execute("UPDATE audit_events SET seq = seq + 1000 WHERE seq >= 7")
        .await
        .unwrap();
    pool.execute("UPDATE audit_events SET seq = seq - 1001 WHERE seq >= 1007")
        .await
        .unwrap();
    assert!(s.warden.state.store.verify_audit().await.unwrap().is_ok());

    // Deleted: a record in the middle, then the last ones.
    pool.execute("DELETE FROM audit_events WHERE seq = 7")
        .await
        .unwrap();
    let (_, v) = s.get("/v1/audit/verify", &s.admin).await;
    assert_eq!(
        (v["broken"]["seq"].as_i64(), v["broken"]["tamper"].as_str()),
        (Some(7), Some("deleted")),
        "{v}"
    );
    pool.execute("DELETE FROM audit_events WHERE seq >= 7")
        .await
        .unwrap();
    assert_eq!(broken(&s).await.1, Tamper::Truncated);
    // The head rewritten to match: the signed checkpoint still remembers the records.
    let hash6 = record_hash(&s, 6).await;
    pool.execute(format!("UPDATE audit_head SET seq = 6, hash = '{hash6}' WHERE id = 1").as_str())
        .await
        .unwrap();
    assert_eq!(broken(&s).await, (7, Tamper::Truncated));
}

/// `count` records appended in one change (for trees past one block of 256).
async fn append(s: &TestServer, count: usize) {
    let now = s.warden.state.clock.now_micros();
    let audit = (0..count)
        .map(|i| {
            AuditRecord::change(
                Actor::warden(),
                "test.filler",
                format!("filler:{i}"),
                json!({"i": i}),
                now,
            )
        })
        .collect();
    s.warden
        .state
        .store
        .commit(Change {
            writes: Vec::new(),
            audit,
        })
        .await
        .unwrap();
}

fn hashes(v: &Value) -> Vec<merkle::Hash> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|h| merkle::from_hex(h.as_str().unwrap()).unwrap())
        .collect()
}

async fn checkpoints_prove_inclusion_and_consistency(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (status, none) = s.get("/v1/audit/checkpoints", &s.admin).await;
    assert_eq!(
        (status.as_u16(), none["error"]["code"].as_str()),
        (404, Some("no_checkpoint"))
    );
    append(&s, 600).await;
    let (_, first) = s.post("/v1/audit/checkpoints", &s.admin, json!({})).await;
    let old = first["size"].as_i64().unwrap();
    assert!(old > 600, "{first}");
    append(&s, 300).await;
    let (_, second) = s.post("/v1/audit/checkpoints", &s.admin, json!({})).await;
    let new = second["size"].as_i64().unwrap();
    assert_eq!(new, old + 300);
    // The note verifies with the published key and says what the API says.
    let key = NoteVerifier::parse(second["public_key"].as_str().unwrap()).unwrap();
    let cp = key.open(second["note"].as_str().unwrap()).unwrap();
    assert_eq!(
        (cp.size as i64, merkle::to_hex(&cp.root)),
        (new, second["root"].as_str().unwrap().to_string())
    );
    let (_, latest) = s.get("/v1/audit/checkpoints", &s.admin).await;
    assert!(latest["size"].as_i64().unwrap() >= new);

    // Inclusion: records in the first block, in a stored subtree, and near the edge.
    for seq in [1, 5, 300, 599, new - 1, new] {
        let (status, p) = s
            .get(
                &format!("/v1/audit/proofs/inclusion?seq={seq}&size={new}"),
                &s.admin,
            )
            .await;
        assert_eq!(status, 200, "{p}");
        let hash = record_hash(&s, seq).await;
        let leaf = merkle::leaf_hash(&hash).unwrap();
        assert!(
            merkle::verify_inclusion(
                &leaf,
                seq as u64 - 1,
                new as u64,
                &hashes(&p["proof"]),
                &cp.root
            ),
            "seq {seq}"
        );
        let other =
            merkle::leaf_hash(&record_hash(&s, if seq == 1 { 2 } else { 1 }).await).unwrap();
        assert!(!merkle::verify_inclusion(
            &other,
            seq as u64 - 1,
            new as u64,
            &hashes(&p["proof"]),
            &cp.root
        ));
    }
    // Consistency: the second tree only appended to the first.
    let (_, c) = s
        .get(
            &format!("/v1/audit/proofs/consistency?old={old}&new={new}"),
            &s.admin,
        )
        .await;
    let old_root = merkle::from_hex(first["root"].as_str().unwrap()).unwrap();
    assert!(
        merkle::verify_consistency(
            old as u64,
            new as u64,
            &old_root,
            &cp.root,
            &hashes(&c["proof"])
        ),
        "{c}"
    );
    assert!(!merkle::verify_consistency(
        old as u64,
        new as u64,
        &cp.root,
        &cp.root,
        &hashes(&c["proof"])
    ));
    // Bad input names its parameter.
    let (status, bad) = s
        .get(
            &format!("/v1/audit/proofs/inclusion?seq={}&size={new}", new + 1),
            &s.admin,
        )
        .await;
    assert_eq!(
        (status.as_u16(), bad["error"]["field"].as_str()),
        (400, Some("seq")),
        "{bad}"
    );
    let (status, bad) = s
        .get("/v1/audit/proofs/inclusion?seq=1&size=3", &s.admin)
        .await;
    assert_eq!(
        (status.as_u16(), bad["error"]["field"].as_str()),
        (400, Some("size")),
        "{bad}"
    );
    assert_eq!(
        assert_error(
            &s.get("/v1/audit/proofs/consistency?old=7", &s.admin).await,
            400,
            "invalid_field"
        )
        .as_deref(),
        Some("old")
    );
    // The whole check: chain, tree against every checkpoint, and their signatures.
    let (_, v) = s.get("/v1/audit/verify", &s.admin).await;
    assert_eq!(v["intact"], true, "{v}");
    // A stored checkpoint whose note no longer matches is caught.
    let pool = s.db.pool().await;
    assert!(
        pool.execute("DELETE FROM audit_checkpoints").await.is_err(),
        "checkpoints are append-only"
    );
    pool.execute(match s.db.backend {
        Backend::Sqlite => "DROP TRIGGER audit_checkpoints_fixed",
        Backend::Postgres => "DROP TRIGGER audit_checkpoints_append_only ON audit_checkpoints",
    })
    .await
    .unwrap();
    pool.execute(
        format!(
            "UPDATE audit_checkpoints SET root = '{}' WHERE size = {old}",
            "00".repeat(32)
        )
        .as_str(),
    )
    .await
    .unwrap();
    let (_, v) = s.get("/v1/audit/verify", &s.admin).await;
    assert_eq!(
        (v["broken"]["tamper"].as_str(), v["broken"]["seq"].as_i64()),
        (Some("checkpoint_mismatch"), Some(1)),
        "{v}"
    );
}

async fn record_hash(s: &TestServer, seq: i64) -> String {
    let rows = s.warden.state.store.audit_chain(seq - 1, 1).await.unwrap();
    rows[0].hash.clone()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

async fn exports_verify_with_the_public_key_alone(backend: Backend) {
    let s = TestServer::start(backend).await;
    let bot = s.agent("bot", 2, json!({})).await;
    for env in ["dev", "staging", "production", "staging"] {
        s.verdict(&bot, "deploy", env).await;
    }
    append(&s, 300).await;
    s.verdict(&bot, "deploy", "staging").await;
    let state = &s.warden.state;
    let key = NoteVerifier::parse(&state.signer.vkey()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let filter = AuditFilter {
        actor_kind: Some("agent".into()),
        ..Default::default()
    };
    for format in [Format::Jsonl, Format::Csv, Format::Parquet, Format::Ocsf] {
        let path = dir.path().join(format!("audit.{}", format.as_str()));
        let request = ExportRequest {
            filter: filter.clone(),
            through: None,
            format,
            path: path.clone(),
            replace: true,
        };
        let done = export::export(
            &state.store,
            &state.clock,
            &state.signer,
            Actor::warden(),
            &request,
        )
        .await
        .unwrap();
        assert_eq!(
            done.records, 6,
            "{format:?}: 5 decisions and one approval request"
        );
        assert_eq!(
            export::verify_file(&path, None, &key).unwrap(),
            Ok((6, done.checkpoint.size as u64)),
            "{format:?}"
        );
    }
    // OCSF events: API Activity with the disposition and the chain in the integrity fields.
    let ocsf = read(&dir.path().join("audit.ocsf"));
    let events: Vec<Value> = ocsf
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(events.iter().all(|e| e["class_uid"] == 6003));
    assert!(events.iter().any(|e| e["disposition_id"] == 1));
    assert!(
        events
            .iter()
            .all(|e| e["attestation"]["fingerprint"]["value"].is_string())
    );

    // Tampering with an export file: an edited record, a dropped one, a re-hashed one.
    let jsonl = dir.path().join("audit.jsonl");
    let text = read(&jsonl);
    let lines: Vec<&str> = text.lines().collect();
    let edited = dir.path().join("edited.jsonl");
    std::fs::write(&edited, text.replacen("staging", "prod", 1)).unwrap();
    let b = export::verify_file(&edited, None, &key)
        .unwrap()
        .unwrap_err();
    assert_eq!(b.tamper, Tamper::Edited, "{b}");
    let mut dropped = lines.clone();
    dropped.remove(2);
    let dropped_path = dir.path().join("dropped.jsonl");
    std::fs::write(&dropped_path, dropped.join("\n") + "\n").unwrap();
    assert_eq!(
        export::verify_file(&dropped_path, None, &key)
            .unwrap()
            .unwrap_err()
            .tamper,
        Tamper::Deleted
    );
    let mut rehashed: Value = serde_json::from_str(lines[1]).unwrap();
    let record = rehashed["record"]
        .as_str()
        .unwrap()
        .replace("staging", "prod");
    rehashed["hash"] = json!(chain_hash(
        rehashed["prev_hash"].as_str().unwrap(),
        rehashed["seq"].as_i64().unwrap(),
        &record
    ));
    rehashed["record"] = json!(record);
    let mut forged = lines.clone();
    let forged_line = rehashed.to_string();
    forged[1] = &forged_line;
    let forged_path = dir.path().join("forged.jsonl");
    std::fs::write(&forged_path, forged.join("\n") + "\n").unwrap();
    assert_eq!(
        export::verify_file(&forged_path, None, &key)
            .unwrap()
            .unwrap_err()
            .tamper,
        Tamper::Inserted
    );
    // Another key proves nothing.
    let stranger = warden::audit::checkpoint::Signer::generate("warden-audit").unwrap();
    let b = export::verify_file(
        &jsonl,
        None,
        &NoteVerifier::parse(&stranger.vkey()).unwrap(),
    )
    .unwrap()
    .unwrap_err();
    assert_eq!(b.tamper, Tamper::CheckpointMismatch);
    // A CSV record edited, or only a column beside it.
    let csv = dir.path().join("audit.csv");
    let original = read(&csv);
    std::fs::write(&csv, original.replacen("\"\"allow\"\"", "\"\"deny\"\"", 1)).unwrap();
    assert_eq!(
        export::verify_file(&csv, None, &key)
            .unwrap()
            .unwrap_err()
            .tamper,
        Tamper::Edited
    );
    assert!(original.contains(",allow,"));
    std::fs::write(&csv, original.replacen(",allow,", ",deny,", 1)).unwrap();
    assert_eq!(
        export::verify_file(&csv, None, &key)
            .unwrap()
            .unwrap_err()
            .tamper,
        Tamper::ColumnsEdited
    );

    // An unwritable output is an error before any work: no file, no export record.
    let before = state.store.audit_head().await.unwrap().0;
    let request = ExportRequest {
        filter: AuditFilter::default(),
        through: None,
        format: Format::Jsonl,
        path: dir.path().join("missing-dir/audit.jsonl"),
        replace: true,
    };
    let err = export::export(
        &state.store,
        &state.clock,
        &state.signer,
        Actor::warden(),
        &request,
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("missing-dir"), "{err}");
    assert_eq!(state.store.audit_head().await.unwrap().0, before);
    let (_, exported) = s.get("/v1/audit?event_type=audit.exported", &s.admin).await;
    assert_eq!(exported["records"].as_array().unwrap().len(), 4);
}

async fn archived_records_are_pruned_and_the_rest_verifies(backend: Backend) {
    let s = TestServer::start(backend).await;
    let bot = s.agent("bot", 2, json!({})).await;
    for _ in 0..3 {
        s.verdict(&bot, "deploy", "staging").await;
    }
    let state = &s.warden.state;
    let key = NoteVerifier::parse(&state.signer.vkey()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("archive-1.jsonl");
    // Everything signed into a checkpoint before now is archived and pruned.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let now = state.clock.now_micros() + 60_000_000;
    let done = export::archive(
        &state.store,
        &state.clock,
        &state.signer,
        Actor::warden(),
        now,
        &archive,
    )
    .await
    .unwrap()
    .expect("something to archive");
    let through = done.checkpoint.size;
    assert_eq!(
        export::verify_file(&archive, None, &key).unwrap(),
        Ok((through as u64, through as u64))
    );
    let (start, _) = state.store.audit_start().await.unwrap();
    assert_eq!(start, through);
    assert!(state.store.audit_chain(0, 1).await.unwrap()[0].seq > through);
    // What remains verifies from the checkpoint, and goes on verifying as records are added.
    s.verdict(&bot, "deploy", "staging").await;
    let (_, v) = s.get("/v1/audit/verify", &s.admin).await;
    assert_eq!(
        (v["intact"].as_bool(), v["from"].as_i64()),
        (Some(true), Some(through + 1)),
        "{v}"
    );
    // Records beside the pruned ones still prove their place: the pruned leaves are stood for
    // by the subtrees their checkpoint kept.
    let (_, cp) = s.post("/v1/audit/checkpoints", &s.admin, json!({})).await;
    let size = cp["size"].as_i64().unwrap();
    let root = merkle::from_hex(cp["root"].as_str().unwrap()).unwrap();
    for seq in [through + 1, size] {
        let (status, p) = s
            .get(&format!("/v1/audit/proofs/inclusion?seq={seq}"), &s.admin)
            .await;
        assert_eq!(status, 200, "{p}");
        let leaf = merkle::leaf_hash(&record_hash(&s, seq).await).unwrap();
        assert!(
            merkle::verify_inclusion(
                &leaf,
                seq as u64 - 1,
                size as u64,
                &hashes(&p["proof"]),
                &root
            ),
            "seq {seq}"
        );
    }
    let (_, c) = s
        .get(
            &format!("/v1/audit/proofs/consistency?old={through}&new={size}"),
            &s.admin,
        )
        .await;
    assert!(
        merkle::verify_consistency(
            through as u64,
            size as u64,
            &done.checkpoint.root,
            &root,
            &hashes(&c["proof"])
        ),
        "{c}"
    );
    // A pruned record's proof is in its archive, not here.
    let (status, gone) = s.get("/v1/audit/proofs/inclusion?seq=1", &s.admin).await;
    assert_eq!(
        (status.as_u16(), gone["error"]["code"].as_str()),
        (409, Some("pruned")),
        "{gone}"
    );
    // Records after the archived range still may not be deleted.
    let pool = s.db.pool().await;
    assert!(
        pool.execute(format!("DELETE FROM audit_events WHERE seq = {}", through + 1).as_str())
            .await
            .is_err()
    );
    // A second archive carries on from the first.
    let second = dir.path().join("archive-2.jsonl");
    let now = state.clock.now_micros() + 60_000_000;
    let done2 = export::archive(
        &state.store,
        &state.clock,
        &state.signer,
        Actor::warden(),
        now,
        &second,
    )
    .await
    .unwrap()
    .unwrap();
    assert!(done2.checkpoint.size > through);
    let first_line: Value = serde_json::from_str(read(&second).lines().next().unwrap()).unwrap();
    assert_eq!(first_line["seq"], through + 1);
    assert!(s.warden.state.store.verify_audit().await.unwrap().is_ok());
    // An archive never replaces a file: the records in it are gone from the database.
    s.verdict(&bot, "deploy", "staging").await;
    let later = state.clock.now_micros() + 60_000_000;
    let err = export::archive(
        &state.store,
        &state.clock,
        &state.signer,
        Actor::warden(),
        later,
        &second,
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("exists"), "{err}");
    assert_eq!(
        export::verify_file(&second, None, &key)
            .unwrap()
            .map(|(n, _)| n),
        Ok(done2.records)
    );
}

async fn replicas_make_one_chain_and_one_tree(backend: Backend) {
    let db = TestDb::new(backend).await;
    let config = db.config();
    let s = TestServer::start_with(db, config.clone()).await;
    let replica_warden = warden::server::Warden::open(
        config.clone(),
        std::sync::Arc::new(warden::clock::SystemClock),
    )
    .await
    .unwrap();
    let other = replica_warden.state.clone();
    let replica = Replica::start(config).await;
    let bot = s.agent("bot", 2, json!({})).await;
    s.lift_quotas("bot").await;
    // Decisions through both replicas while both sign checkpoints.
    let asks = (0..40).map(|i| {
        let (client, base, bot) = (s.client.clone(), if i % 2 == 0 { s.base.clone() } else { replica.base.clone() }, bot.clone());
        async move {
            let r = client.post(format!("{base}/v1/decisions")).bearer_auth(bot)
                .json(&json!({"action": {"class": "deploy", "environment": "staging", "service": "payments"}}))
                .send().await.unwrap();
            assert_eq!(r.status(), 200);
        }
    });
    let state = &s.warden.state;
    let signing = async {
        for i in 0..8 {
            tokio::time::sleep(std::time::Duration::from_millis(15)).await;
            let st = if i % 2 == 0 { state } else { &other };
            warden::services::checkpoints::checkpoint(&st.store, &st.clock, &st.signer)
                .await
                .unwrap();
        }
    };
    futures::future::join(futures::future::join_all(asks), signing).await;
    // One more record, so that the last checkpoint is of a larger tree than any before it,
    // however fast the decisions above outran the signing.
    let (status, _) = s
        .post(
            "/v1/decisions",
            &bot,
            json!({"action": {"class": "read", "environment": "dev", "service": "payments"}}),
        )
        .await;
    assert_eq!(status, 200);
    warden::services::checkpoints::checkpoint(&other.store, &other.clock, &other.signer)
        .await
        .unwrap();
    assert_eq!(
        state.signer.vkey(),
        other.signer.vkey(),
        "replicas share the key"
    );
    let (_, v) = s.get("/v1/audit/verify", &s.admin).await;
    assert_eq!(v["intact"], true, "{v}");
    // Every pair of checkpoints is consistent: one tree.
    let cps = state.store.checkpoints_after(0, 100).await.unwrap();
    assert!(cps.len() >= 2, "{cps:?}");
    for pair in cps.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        let proof = state
            .store
            .proofs()
            .consistency(a.size, b.size)
            .await
            .unwrap()
            .unwrap();
        assert!(merkle::verify_consistency(
            a.size as u64,
            b.size as u64,
            &a.root,
            &b.root,
            &proof
        ));
    }
    replica.stop().await;
    other.store.close().await;
    // A replica with a key of its own is refused: checkpoints have one signer.
    let mut stranger = s.warden.config.clone();
    let elsewhere = tempfile::tempdir().unwrap();
    stranger.storage.data_dir = elsewhere.path().to_path_buf();
    let Err(err) =
        warden::server::Warden::open(stranger, std::sync::Arc::new(warden::clock::SystemClock))
            .await
    else {
        panic!("a second key is refused");
    };
    assert!(err.to_string().contains("signing_key_file"), "{err}");
}
