//! The store's repository suite: every domain's reads and writes, and the writer's guarantees,
//! run on each backend (a fresh SQLite file, and a fresh schema on the PostgreSQL server at
//! `WARDEN_TEST_POSTGRES_URL`). One suite, every driver: a difference between the two dialects
//! shows up here before it shows up in the service.

use std::time::Duration;

use sqlx::Executor as _;
use warden_core::activity::{ActivityEvent, ActorKind};
use warden_core::audit::{Actor, AuditRecord};
use warden_core::baseline::{BaselineScope, HumanBaseline, Summary};
use warden_core::clock::format_micros;
use warden_core::decision::Verdict;
use warden_core::identity::{Agent, Human, Role, mint_token};
use warden_core::policy::{Effect, Grant, RiskLevel, ViolationMode};
use warden_core::quotas::{Charge, Counting, Unit};
use warden_core::records::{
    Activity, ApprovalRow, ApprovalStatus, ConfirmationStatus, DecisionRow, Delivery,
    DeliveryStatus, EventType, EvidenceDelta, Guard, GuardStatus, OutcomeStatus, TierChange,
    ViolationReason, ViolationRow,
};
use warden_core::trust::{Kind, Source, TrustPolicy, half_life_us};
use warden_store::{
    AgentActivity, ApprovalWrite, AuditFilter, AuditPageRequest, AuditWrite, Backend,
    BaselineFilter, BaselineWrite, Change, Conflict, DecisionWrite, DeliveryWrite, EventActivity,
    EventWrite, ExpiryCursor, GuardWrite, IdentityWrite, Missing, OutcomeWrite, PluginRow,
    PluginWrite, QuotaWrite, Store, StoreError, StoreOptions, TrustWrite, ViolationFilter,
    ViolationWrite, Write,
};

/// Runs each named test on SQLite and on PostgreSQL.
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::Backend::Sqlite).await })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::Backend::Postgres).await })*
        }
    };
}

both_backends!(
    guards,
    identities,
    decisions_and_violations,
    approvals,
    outcomes_and_signals,
    trust,
    a_batch_of_evidence_sums_as_one_by_one,
    two_replicas_add_to_one_total_and_one_chain,
    quotas,
    idempotency_keys,
    audit_chain,
    audit_tree,
    a_long_tree_extends_and_verifies_across_reads,
    deliveries,
    plugins_and_baselines,
    events,
    kept_activity_answers_as_the_database,
    one_failed_change_does_not_sink_its_batch,
    a_batch_charges_its_quotas_exactly,
    a_batch_too_large_for_one_statement,
    a_closed_store_is_unavailable,
    the_writer_commits_while_the_stores_runtime_is_busy,
);

const NOW: i64 = 1_764_000_000_000_000;
const MINUTE: i64 = 60_000_000;

/// A fresh database of the backend, dropped with it.
struct TestDb {
    store: Store,
    url: String,
    _dir: Option<tempfile::TempDir>,
    schema: Option<String>,
}

fn postgres_base_url() -> String {
    std::env::var("WARDEN_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

async fn admin_pool() -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(&postgres_base_url())
        .await
        .expect("PostgreSQL at WARDEN_TEST_POSTGRES_URL must be reachable")
}

impl TestDb {
    async fn new(backend: Backend) -> TestDb {
        let (url, dir, schema) = match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                (
                    format!(
                        "sqlite://{}?mode=rwc",
                        dir.path().join("warden.db").display()
                    ),
                    Some(dir),
                    None,
                )
            }
            Backend::Postgres => {
                let schema = format!("warden_r_{}", uuid::Uuid::now_v7().simple());
                let admin = admin_pool().await;
                admin
                    .execute(format!("CREATE SCHEMA {schema}").as_str())
                    .await
                    .unwrap();
                admin.close().await;
                let base = postgres_base_url();
                let sep = if base.contains('?') { '&' } else { '?' };
                (
                    format!("{base}{sep}options=-csearch_path%3D{schema}"),
                    None,
                    Some(schema),
                )
            }
        };
        let options = StoreOptions {
            url: url.clone(),
            max_connections: 4,
            max_batch: 64,
            cache_ttl: Duration::ZERO,
            share_writer_core: true,
            coalesce_wal_writes: true,
        };
        let store = Store::open(&options).await.unwrap();
        assert_eq!(store.backend(), backend);
        TestDb {
            store,
            url,
            _dir: dir,
            schema,
        }
    }
}

impl TestDb {
    /// One connection to the database, beside the store, for what its API does not do.
    async fn raw_pool(&self) -> sqlx::AnyPool {
        sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .connect(&self.url)
            .await
            .unwrap()
    }

    /// Another store on the same database (another replica, or one with other settings).
    async fn another_store(&self, max_batch: usize, cache_ttl: Duration) -> Store {
        Store::open(&StoreOptions {
            url: self.url.clone(),
            max_connections: 4,
            max_batch,
            cache_ttl,
            share_writer_core: true,
            coalesce_wal_writes: true,
        })
        .await
        .unwrap()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(schema) = self.schema.take() {
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    let admin = admin_pool().await;
                    let _ = admin
                        .execute(format!("DROP SCHEMA IF EXISTS {schema} CASCADE").as_str())
                        .await;
                    admin.close().await;
                });
            })
            .join();
        }
    }
}

fn agent(id: &str, tier: u8) -> Agent {
    Agent {
        tier_since: format_micros(NOW),
        created_at: format_micros(NOW),
        updated_at: format_micros(NOW),
        ..Agent::new(id, "payments", tier)
    }
}

fn record(event: &str, agent: &str) -> AuditRecord {
    AuditRecord {
        agent: Some(agent.into()),
        ..AuditRecord::change(
            Actor::warden(),
            event,
            format!("agent:{agent}"),
            serde_json::json!({}),
            NOW,
        )
    }
}

/// Commits a change of `writes` with one decision's audit record, in a task of its own (so
/// that several of them share the writer's batches).
fn spawn_decided(
    store: &Store,
    writes: Vec<Write>,
) -> tokio::task::JoinHandle<Result<(), StoreError>> {
    let store = store.clone();
    tokio::spawn(async move {
        store
            .commit(Change {
                writes,
                audit: vec![record("decision", "bot")],
            })
            .await
    })
}

async fn commit(store: &Store, writes: Vec<Write>) -> Result<(), StoreError> {
    store
        .commit(Change {
            writes,
            audit: vec![],
        })
        .await
}

fn decision(id: &str, agent: &str, verdict: Verdict, at: i64) -> DecisionRow {
    DecisionRow {
        id: id.into(),
        at,
        agent_id: agent.into(),
        on_behalf_of: None,
        class: "deploy".into(),
        environment: "staging".into(),
        service: "payments".into(),
        verdict,
        shadow_verdict: None,
        risk_level: RiskLevel::Medium,
        tier: 2,
        policy_version: "p-test".into(),
        request: r#"{"action":{"class":"deploy","environment":"staging","service":"payments","estimated_cost_usd":1.5}}"#.into(),
        answer: r#"{"verdict":"allow"}"#.into(),
        outcome_due_at: (verdict == Verdict::Allow).then_some(at + 10 * MINUTE),
        notable: false,
    }
}

async fn identities(backend: Backend) {
    let db = TestDb::new(backend).await;
    let s = &db.store;
    commit(
        s,
        vec![Write::Identity(IdentityWrite::InsertAgent(agent("bot", 2)))],
    )
    .await
    .unwrap();
    let again = commit(
        s,
        vec![Write::Identity(IdentityWrite::InsertAgent(agent("bot", 1)))],
    )
    .await
    .unwrap_err();
    assert_eq!(again.conflict(), Some(Conflict::AgentExists), "{again}");
    let stored = s.agent("bot").await.unwrap().unwrap();
    assert_eq!(
        (stored.tier, stored.version, stored.team.as_str()),
        (2, 1, "payments")
    );
    assert_eq!(s.agents(Some("payments")).await.unwrap().len(), 1);
    assert!(s.agents(Some("ledger")).await.unwrap().is_empty());
    // Compare-and-set on the version: a stale update is refused and writes nothing.
    let changed = Agent {
        tier: 3,
        ..(*stored).clone()
    };
    commit(
        s,
        vec![Write::Identity(IdentityWrite::UpdateAgent {
            agent: changed.clone(),
            expected_version: 1,
            at: NOW,
        })],
    )
    .await
    .unwrap();
    let stale = commit(
        s,
        vec![Write::Identity(IdentityWrite::UpdateAgent {
            agent: Agent { tier: 0, ..changed },
            expected_version: 1,
            at: NOW,
        })],
    )
    .await;
    assert_eq!(
        stale.unwrap_err().conflict(),
        Some(Conflict::ChangedConcurrently)
    );
    let fresh = s.agent_fresh("bot").await.unwrap().unwrap();
    assert_eq!((fresh.tier, fresh.version), (3, 2));
    assert_eq!(s.active_agent_ids().await.unwrap(), vec!["bot".to_string()]);

    let grant = Grant {
        class: "*".into(),
        environment: "staging".into(),
        service: "*".into(),
        max_risk: RiskLevel::High,
        effect: Effect::Allow,
    };
    let alice = Human {
        id: "alice".into(),
        team: "payments".into(),
        grants: vec![grant],
        created_at: String::new(),
    };
    commit(
        s,
        vec![Write::Identity(IdentityWrite::InsertHuman(
            alice.clone(),
            NOW,
        ))],
    )
    .await
    .unwrap();
    let err = commit(
        s,
        vec![Write::Identity(IdentityWrite::InsertHuman(alice, NOW))],
    )
    .await
    .unwrap_err();
    assert_eq!(err.conflict(), Some(Conflict::HumanExists));
    let read = s.human("alice").await.unwrap().unwrap();
    assert!(
        read.covers("deploy", "staging", "payments", RiskLevel::High)
            && !read.covers("deploy", "production", "payments", RiskLevel::Low)
    );
    assert_eq!(s.humans().await.unwrap().len(), 1);

    let token = mint_token(Role::Agent, Some("bot".into()), "ci".into(), NOW);
    commit(
        s,
        vec![Write::Identity(IdentityWrite::InsertToken(
            token.record.clone(),
        ))],
    )
    .await
    .unwrap();
    let found = s.token_by_hash(&token.record.hash).await.unwrap().unwrap();
    assert_eq!(
        (found.id.as_str(), found.role, found.subject.as_deref()),
        (token.record.id.as_str(), Role::Agent, Some("bot"))
    );
    commit(
        s,
        vec![Write::Identity(IdentityWrite::RevokeToken {
            id: token.record.id.clone(),
            at: NOW,
        })],
    )
    .await
    .unwrap();
    assert!(
        s.token_by_id(&token.record.id)
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_some()
    );
    let twice = commit(
        s,
        vec![Write::Identity(IdentityWrite::RevokeToken {
            id: token.record.id.clone(),
            at: NOW,
        })],
    )
    .await
    .unwrap_err();
    assert!(
        matches!(twice, StoreError::NotFound(Missing::Token, _)),
        "{twice:?}"
    );
    assert_eq!(s.tokens().await.unwrap().len(), 1);
}

async fn decisions_and_violations(backend: Backend) {
    let db = TestDb::new(backend).await;
    let s = &db.store;
    commit(
        s,
        vec![Write::Identity(IdentityWrite::InsertAgent(agent("bot", 1)))],
    )
    .await
    .unwrap();
    commit(
        s,
        vec![Write::Decision(DecisionWrite::InsertDecision(decision(
            "d1",
            "bot",
            Verdict::Allow,
            NOW - MINUTE,
        )))],
    )
    .await
    .unwrap();
    let (agent_id, answer) = s.decision("d1").await.unwrap().unwrap();
    assert_eq!(
        (agent_id.as_str(), answer.as_str()),
        ("bot", r#"{"verdict":"allow"}"#)
    );
    let (at, request, _) = s.decision_request("d1").await.unwrap().unwrap();
    assert_eq!(at, NOW - MINUTE);
    assert!(request.contains("estimated_cost_usd"));
    let activity = s
        .activity(
            "bot",
            "deploy",
            "staging",
            "payments",
            NOW - 3_600_000_000,
            100,
        )
        .await
        .unwrap()
        .decided;
    assert_eq!((activity.recent, activity.done_before), (1, true));
    // Every verdict counts, up to the cap: a busy agent's decision does not read its whole hour.
    for (i, verdict) in [
        (2, Verdict::Deny),
        (3, Verdict::RequireApproval),
        (4, Verdict::Deny),
    ] {
        commit(
            s,
            vec![Write::Decision(DecisionWrite::InsertDecision(decision(
                &format!("d-busy-{i}"),
                "bot",
                verdict,
                NOW - MINUTE + i,
            )))],
        )
        .await
        .unwrap();
    }
    let since = NOW - 3_600_000_000;
    // A kind the agent was never allowed: counted, and not done before however many there are.
    for (i, verdict) in [
        Verdict::RequireApproval,
        Verdict::Deny,
        Verdict::RequireApproval,
    ]
    .into_iter()
    .enumerate()
    {
        let mut row = decision(&format!("d-prod-{i}"), "bot", verdict, NOW - 2 * MINUTE);
        row.environment = "production".into();
        commit(s, vec![Write::Decision(DecisionWrite::InsertDecision(row))])
            .await
            .unwrap();
    }
    let prod = s
        .activity("bot", "deploy", "production", "payments", since, 100)
        .await
        .unwrap()
        .decided;
    assert_eq!((prod.recent, prod.done_before), (3, false));
    for (at_most, recent) in [(100, 4), (4, 4), (3, 3), (1, 1)] {
        let activity = s
            .activity("bot", "deploy", "staging", "payments", since, at_most)
            .await
            .unwrap();
        assert_eq!(
            (activity.decided.recent, activity.decided.done_before),
            (recent, true)
        );
        assert_eq!(activity.done, EventActivity::default(), "no events stored");
    }
    assert!(s.decision("nope").await.unwrap().is_none());

    let violation = |id: &str, mode, at| ViolationRow {
        id: id.into(),
        at,
        decision_id: "d2".into(),
        agent_id: "bot".into(),
        class: "deploy".into(),
        environment: "production".into(),
        service: "payments".into(),
        mode,
        reason: ViolationReason::NoGrant,
    };
    let writes = vec![
        Write::Decision(DecisionWrite::InsertDecision(decision(
            "d2",
            "bot",
            Verdict::Deny,
            NOW,
        ))),
        Write::Violation(ViolationWrite::InsertViolation(violation(
            "v1",
            ViolationMode::Block,
            NOW,
        ))),
        Write::Violation(ViolationWrite::InsertViolation(violation(
            "v2",
            ViolationMode::Flag,
            NOW + 1,
        ))),
    ];
    commit(s, writes).await.unwrap();
    assert_eq!(
        s.blocked_violations("bot", NOW - MINUTE, 10).await.unwrap(),
        1,
        "only blocked violations count"
    );
    assert_eq!(
        s.blocked_violations("bot", NOW + 1, 10).await.unwrap(),
        0,
        "only since then"
    );
    // Another agent with three: counted up to the threshold asked about.
    let more = (3..6)
        .map(|i| {
            let mut v = violation(&format!("v{i}"), ViolationMode::Block, NOW + i);
            v.agent_id = "looper".into();
            Write::Violation(ViolationWrite::InsertViolation(v))
        })
        .collect();
    commit(s, more).await.unwrap();
    assert_eq!(
        s.blocked_violations("looper", NOW - MINUTE, 10)
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        s.blocked_violations("looper", NOW - MINUTE, 2)
            .await
            .unwrap(),
        2,
        "counted up to the threshold asked about"
    );
    assert_eq!(
        s.last_blocked_violation("looper").await.unwrap(),
        Some(NOW + 5)
    );
    assert_eq!(s.last_blocked_violation("bot").await.unwrap(), Some(NOW));
    assert_eq!(s.last_blocked_violation("nobody").await.unwrap(), None);
    let flagged = s.violation("v2").await.unwrap().unwrap();
    assert_eq!(
        (flagged.mode.as_str(), flagged.status.as_str()),
        ("flag", "open")
    );
    let filter = ViolationFilter {
        agent: Some("bot".into()),
        mode: Some("block".into()),
        limit: 10,
        ..Default::default()
    };
    assert_eq!(
        s.violations(&filter)
            .await
            .unwrap()
            .iter()
            .map(|v| v.id.as_str())
            .collect::<Vec<_>>(),
        ["v1"]
    );
    let ack = || {
        Write::Violation(ViolationWrite::AckViolation {
            id: "v1".into(),
            by: "alice".into(),
            at: NOW,
            comment: Some("seen".into()),
        })
    };
    commit(s, vec![ack()]).await.unwrap();
    assert_eq!(
        commit(s, vec![ack()]).await.unwrap_err().conflict(),
        Some(Conflict::ViolationNotOpen)
    );
    assert_eq!(
        s.violation("v1")
            .await
            .unwrap()
            .unwrap()
            .acknowledged_by
            .as_deref(),
        Some("alice")
    );
}

fn approval_row(id: &str, expires_at: i64, needed: i64) -> ApprovalRow {
    ApprovalRow {
        id: id.into(),
        decision_id: format!("d-{id}"),
        agent_id: "bot".into(),
        on_behalf_of: None,
        class: "deploy".into(),
        environment: "production".into(),
        service: "payments".into(),
        action_hash: "ab".repeat(32),
        summary: r#"{"risk":{"level":"low"}}"#.into(),
        created_at: NOW,
        expires_at,
        approvals_needed: needed,
    }
}

async fn approvals(backend: Backend) {
    let db = TestDb::new(backend).await;
    let s = &db.store;
    commit(
        s,
        vec![Write::Identity(IdentityWrite::InsertAgent(agent("bot", 2)))],
    )
    .await
    .unwrap();
    for (id, expires, needed) in [
        ("a1", NOW + 60 * MINUTE, 2),
        ("a2", NOW + MINUTE, 1),
        ("a3", NOW + 60 * MINUTE, 1),
    ] {
        let writes = vec![
            Write::Decision(DecisionWrite::InsertDecision(decision(
                &format!("d-{id}"),
                "bot",
                Verdict::RequireApproval,
                NOW,
            ))),
            Write::Approval(ApprovalWrite::InsertApproval(approval_row(
                id, expires, needed,
            ))),
        ];
        commit(s, writes).await.unwrap();
    }
    let pending = s
        .approvals(Some(ApprovalStatus::Pending), Some("bot"), None, 10, NOW)
        .await
        .unwrap()
        .items;
    assert_eq!(
        pending.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(),
        ["a1", "a2", "a3"]
    );
    // Two approvers, each a compare-and-set on the list as read.
    let add = |before: &str, after: &str, by: &str, complete| {
        Write::Approval(ApprovalWrite::AddApprover {
            id: "a1".into(),
            by: by.into(),
            at: NOW,
            comment: None,
            before: before.into(),
            after: after.into(),
            complete,
        })
    };
    commit(s, vec![add("[]", r#"["alice"]"#, "alice", false)])
        .await
        .unwrap();
    assert_eq!(
        commit(s, vec![add("[]", r#"["carol"]"#, "carol", false)])
            .await
            .unwrap_err()
            .conflict(),
        Some(Conflict::ApprovalChanged)
    );
    commit(
        s,
        vec![add(r#"["alice"]"#, r#"["alice","bob"]"#, "bob", true)],
    )
    .await
    .unwrap();
    let a1 = s.approval("a1", NOW).await.unwrap().unwrap();
    assert_eq!((a1.status.as_str(), a1.approved_by.len()), ("approved", 2));
    // Used once, on every replica: the second use is refused.
    let consume = || {
        Write::Approval(ApprovalWrite::ConsumeApproval {
            id: "a1".into(),
            decision_id: "d-use".into(),
            at: NOW + 1,
        })
    };
    commit(s, vec![consume()]).await.unwrap();
    assert_eq!(
        commit(s, vec![consume()]).await.unwrap_err().conflict(),
        Some(Conflict::ApprovalUsed)
    );
    assert_eq!(
        s.approval("a1", NOW).await.unwrap().unwrap().status,
        ApprovalStatus::Consumed
    );
    // A rejection, then a late decision on it.
    let reject = || {
        Write::Approval(ApprovalWrite::DecideApproval {
            id: "a3".into(),
            approve: false,
            by: "alice".into(),
            at: NOW,
            comment: None,
        })
    };
    commit(s, vec![reject()]).await.unwrap();
    assert_eq!(
        commit(s, vec![reject()]).await.unwrap_err().conflict(),
        Some(Conflict::ApprovalNotPending)
    );
    // Lapsed: read as expired, announced once.
    let later = NOW + 2 * MINUTE;
    assert_eq!(
        s.approval("a2", later).await.unwrap().unwrap().status,
        ApprovalStatus::Expired
    );
    assert_eq!(
        s.unannounced_expiries(later, &ExpiryCursor::default(), 10)
            .await
            .unwrap()
            .0
            .items
            .iter()
            .map(|a| a.id.as_str())
            .collect::<Vec<_>>(),
        ["a2"]
    );
    let note = || Write::Approval(ApprovalWrite::NoteApprovalExpired { id: "a2".into() });
    commit(s, vec![note()]).await.unwrap();
    assert_eq!(
        commit(s, vec![note()]).await.unwrap_err().conflict(),
        Some(Conflict::ExpiryNoted)
    );
    assert!(
        s.unannounced_expiries(later, &ExpiryCursor::default(), 10)
            .await
            .unwrap()
            .0
            .items
            .is_empty()
    );
    lapsed_approvals_page_by_expiry(&db).await;
    // A stored status this version does not know is a bug (500), not an outage (503).
    let pool = db.raw_pool().await;
    pool.execute("UPDATE approvals SET status = 'mislaid' WHERE id = 'a3'")
        .await
        .unwrap();
    let err = s.approval("a3", NOW).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Unreadable(m) if m.contains("mislaid") && m.contains("a3")),
        "{err:?}"
    );
    let core: warden_core::error::Error = err.into();
    assert_eq!(core.code, "unreadable_record");
    // One row that does not read back costs a list that row, named, not the list.
    let listed = s.approvals(None, Some("bot"), None, 10, NOW).await.unwrap();
    assert_eq!(listed.unreadable, ["a3"]);
    assert!(listed.items.iter().all(|a| a.id != "a3") && !listed.items.is_empty());
    // Quarantine moves it out of every reader's way, keeping what was stored, in one write.
    let quarantine = |id: &str| {
        Write::Approval(ApprovalWrite::Quarantine {
            id: id.into(),
            by: "root".into(),
            reason: "does not read back".into(),
            at: NOW,
        })
    };
    commit(s, vec![quarantine("a3")]).await.unwrap();
    assert!(s.approval("a3", NOW).await.unwrap().is_none());
    let listed = s.approvals(None, Some("bot"), None, 10, NOW).await.unwrap();
    assert!(listed.unreadable.is_empty());
    let kept = s.quarantined_approvals(10).await.unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(
        (kept[0].id.as_str(), kept[0].raw["status"].as_str()),
        ("a3", Some("mislaid"))
    );
    assert_eq!(kept[0].raw["agent_id"], "bot");
    assert!(kept[0].raw["expires_at"].is_i64());
    assert!(matches!(
        commit(s, vec![quarantine("a3")]).await.unwrap_err(),
        StoreError::NotFound(warden_store::Missing::Approval, _)
    ));
}

/// The expiry sweep's walk: lapsed approvals by expiry, pages that end between two approvals
/// of the same expiry, and none that is still pending before its time, decided or announced.
async fn lapsed_approvals_page_by_expiry(db: &TestDb) {
    let s = &db.store;
    let now = NOW + 10 * MINUTE;
    // Seven lapsed, three of them at the same time; ids out of expiry order.
    let lapsed = [
        ("l-g", NOW + MINUTE),
        ("l-a", NOW + 3 * MINUTE),
        ("l-f", NOW + 3 * MINUTE),
        ("l-b", NOW + 3 * MINUTE),
        ("l-e", NOW + 4 * MINUTE),
        ("l-c", NOW + 6 * MINUTE),
        ("l-d", now),
    ];
    let mut writes = Vec::new();
    for (id, expires) in lapsed {
        writes.push(Write::Approval(ApprovalWrite::InsertApproval(
            approval_row(id, expires, 1),
        )));
    }
    // Not lapsed yet, rejected, and announced: none of them is walked.
    writes.push(Write::Approval(ApprovalWrite::InsertApproval(
        approval_row("p-later", now + 1, 1),
    )));
    for id in ["p-rejected", "p-announced"] {
        writes.push(Write::Approval(ApprovalWrite::InsertApproval(
            approval_row(id, NOW + 2 * MINUTE, 1),
        )));
    }
    commit(s, writes).await.unwrap();
    commit(
        s,
        vec![
            Write::Approval(ApprovalWrite::DecideApproval {
                id: "p-rejected".into(),
                approve: false,
                by: "alice".into(),
                at: NOW,
                comment: None,
            }),
            Write::Approval(ApprovalWrite::NoteApprovalExpired {
                id: "p-announced".into(),
            }),
        ],
    )
    .await
    .unwrap();
    let (mut after, mut walked, mut pages) = (ExpiryCursor::default(), Vec::new(), 0);
    loop {
        let (page, next) = s.unannounced_expiries(now, &after, 2).await.unwrap();
        assert!(page.unreadable.is_empty());
        walked.extend(page.items.iter().map(|a| a.id.clone()));
        pages += 1;
        match next {
            Some(next) => {
                assert!(next > after, "the walk moves on");
                after = next;
            }
            None => break,
        }
    }
    assert_eq!(walked, ["l-g", "l-a", "l-b", "l-f", "l-e", "l-c", "l-d"]);
    assert_eq!(pages, 5, "three full pages, one of one, then an empty one");
}

async fn outcomes_and_signals(backend: Backend) {
    let db = TestDb::new(backend).await;
    let s = &db.store;
    commit(
        s,
        vec![Write::Identity(IdentityWrite::InsertAgent(agent("bot", 2)))],
    )
    .await
    .unwrap();
    for id in ["d1", "d2"] {
        commit(
            s,
            vec![Write::Decision(DecisionWrite::InsertDecision(decision(
                id,
                "bot",
                Verdict::Allow,
                NOW,
            )))],
        )
        .await
        .unwrap();
    }
    let report = |expected: Option<OutcomeStatus>, outcome: OutcomeStatus| {
        Write::Outcome(OutcomeWrite::ReportOutcome {
            decision_id: "d1".into(),
            outcome,
            at: NOW + MINUTE,
            by: "bot".into(),
            detail: Some("done".into()),
            actual_cost_usd: Some(1.0),
            expected,
        })
    };
    commit(s, vec![report(None, OutcomeStatus::Succeeded)])
        .await
        .unwrap();
    // Evidence is never counted twice: a report on a stale reading is refused.
    assert_eq!(
        commit(s, vec![report(None, OutcomeStatus::Failed)])
            .await
            .unwrap_err()
            .conflict(),
        Some(Conflict::OutcomeReported)
    );
    let o = s.outcome("d1").await.unwrap().unwrap();
    assert_eq!(
        (o.outcome, o.reported_by.as_deref(), o.actual_cost_usd),
        (Some(OutcomeStatus::Succeeded), Some("bot"), Some(1.0))
    );
    // The other one goes overdue, once.
    let due = NOW + 11 * MINUTE;
    assert_eq!(
        s.overdue_outcomes(due, 10)
            .await
            .unwrap()
            .iter()
            .map(|o| o.decision_id.as_str())
            .collect::<Vec<_>>(),
        ["d2"]
    );
    let overdue = || {
        Write::Outcome(OutcomeWrite::OutcomeOverdue {
            decision_id: "d2".into(),
            at: due,
        })
    };
    commit(s, vec![overdue()]).await.unwrap();
    assert_eq!(
        commit(s, vec![overdue()]).await.unwrap_err().conflict(),
        Some(Conflict::OutcomeReported)
    );
    assert_eq!(
        s.outcome("d2").await.unwrap().unwrap().outcome,
        Some(OutcomeStatus::Unknown)
    );
    let window = s.outcome_window("bot", NOW - MINUTE).await.unwrap();
    assert_eq!(
        (window.outcomes, window.bad),
        (2, 1),
        "an unreported outcome counts against the budget"
    );
    // Signals and a rollback requested once.
    for (i, verdict) in ["inconclusive", "failed"].iter().enumerate() {
        let signal = OutcomeWrite::InsertSignal {
            id: format!("s{i}"),
            decision_id: "d1".into(),
            at: NOW + i as i64,
            windows: format!("[{i}]"),
            verdict: verdict.to_string(),
        };
        commit(s, vec![Write::Outcome(signal)]).await.unwrap();
    }
    let (windows, batches) = s.signal_windows("d1", 10).await.unwrap();
    assert_eq!(
        (windows, batches),
        (vec!["[1]".to_string(), "[0]".to_string()], 2),
        "newest first"
    );
    let rollback = || {
        Write::Outcome(OutcomeWrite::RequestRollback {
            decision_id: "d1".into(),
            at: NOW + 2,
        })
    };
    commit(s, vec![rollback()]).await.unwrap();
    assert_eq!(
        commit(s, vec![rollback()]).await.unwrap_err().conflict(),
        Some(Conflict::RollbackRequested)
    );
    let (agent_id, verdict, _, requested) = s.decision_for_signals("d1").await.unwrap().unwrap();
    assert_eq!(
        (agent_id.as_str(), verdict.as_str(), requested),
        ("bot", "allow", true)
    );
}

async fn trust(backend: Backend) {
    let db = TestDb::new(backend).await;
    let s = &db.store;
    commit(
        s,
        vec![Write::Identity(IdentityWrite::InsertAgent(agent("bot", 1)))],
    )
    .await
    .unwrap();
    let policy = TrustPolicy::default();
    let half_life = half_life_us(&policy);
    let evidence = |kind, at, delta| EvidenceDelta {
        agent_id: "bot".into(),
        environment: "staging".into(),
        risk: RiskLevel::Low,
        kind,
        at,
        delta,
        half_life_us: half_life,
    };
    let mut writes: Vec<Write> = (0..5)
        .map(|i| Write::Trust(TrustWrite::AddEvidence(evidence(Kind::Success, NOW + i, 1))))
        .collect();
    writes.push(Write::Trust(TrustWrite::AddEvidence(evidence(
        Kind::Failure,
        NOW + 5,
        1,
    ))));
    writes.push(Write::Trust(TrustWrite::NoteTrust {
        agent_id: "bot".into(),
        tier: 1,
        at: NOW + 6,
        policy: policy.clone(),
    }));
    commit(s, writes).await.unwrap();
    let totals = s.trust_totals("bot").await.unwrap();
    let count = |kind| {
        totals
            .iter()
            .filter(|t| t.kind == kind)
            .map(|t| t.count)
            .sum::<i64>()
    };
    assert_eq!((count(Kind::Success), count(Kind::Failure)), (5, 1));
    // Taking evidence back (a corrected report) leaves the count where it was before.
    commit(
        s,
        vec![Write::Trust(TrustWrite::AddEvidence(evidence(
            Kind::Failure,
            NOW + 7,
            -1,
        )))],
    )
    .await
    .unwrap();
    assert_eq!(
        s.trust_totals("bot")
            .await
            .unwrap()
            .iter()
            .filter(|t| t.kind == Kind::Failure)
            .map(|t| t.count)
            .sum::<i64>(),
        0
    );
    let noted = s
        .agent("bot")
        .await
        .unwrap()
        .unwrap()
        .trust_score
        .expect("the score is noted in the transaction");
    assert!(noted > 0.0 && noted < 1.0, "{noted}");
    let daily = s.trust_daily("bot", NOW - 86_400_000_000).await.unwrap();
    assert_eq!(daily.len(), 1);
    assert_eq!(daily[0].score, noted);
    let change = TierChange {
        id: "t1".into(),
        agent: "bot".into(),
        at: format_micros(NOW + 8),
        from: 1,
        to: 2,
        reason: "promotion".into(),
        text: "every gate holds".into(),
        actor: "warden".into(),
        score: Some(noted),
        evidence: serde_json::json!({"successes": 5}),
    };
    commit(
        s,
        vec![Write::Trust(TrustWrite::RecordTierChange(change.clone()))],
    )
    .await
    .unwrap();
    assert_eq!(s.tier_changes("bot", NOW, 10).await.unwrap(), vec![change]);
    // Evidence from decisions with outcomes: rebuilt when the half-life changes, not otherwise.
    assert!(s.ensure_trust_totals(half_life * 2.0).await.unwrap());
    assert!(!s.ensure_trust_totals(half_life * 2.0).await.unwrap());

    // Watched work: an action allowed with a human's approval, its outcome and who vouches.
    let mut writes = Vec::new();
    for id in ["d-watched", "d-alone"] {
        writes.push(Write::Decision(DecisionWrite::InsertDecision(decision(
            id,
            "bot",
            Verdict::Allow,
            NOW,
        ))));
    }
    writes.push(Write::Decision(DecisionWrite::InsertDecision(decision(
        "d-asked",
        "bot",
        Verdict::RequireApproval,
        NOW,
    ))));
    writes.push(Write::Approval(ApprovalWrite::InsertApproval(
        ApprovalRow {
            decision_id: "d-asked".into(),
            ..approval_row("a-w", NOW + 60 * MINUTE, 1)
        },
    )));
    commit(s, writes).await.unwrap();
    let report = |id: &str, by: &str| {
        Write::Outcome(OutcomeWrite::ReportOutcome {
            decision_id: id.into(),
            outcome: OutcomeStatus::Succeeded,
            at: NOW + 2 * MINUTE,
            by: by.into(),
            detail: None,
            actual_cost_usd: None,
            expected: None,
        })
    };
    commit(
        s,
        vec![
            Write::Approval(ApprovalWrite::DecideApproval {
                id: "a-w".into(),
                approve: true,
                by: "carol".into(),
                at: NOW + 1,
                comment: None,
            }),
            Write::Approval(ApprovalWrite::ConsumeApproval {
                id: "a-w".into(),
                decision_id: "d-watched".into(),
                at: NOW + 2,
            }),
            report("d-watched", "bot"),
            report("d-alone", "ci-pipeline"),
        ],
    )
    .await
    .unwrap();
    let work = s.watched_work("bot", NOW).await.unwrap();
    assert_eq!(
        work.iter()
            .map(|w| (w.decision_id.as_str(), w.outcome, w.source))
            .collect::<Vec<_>>(),
        [("d-watched", OutcomeStatus::Succeeded, Source::SelfReported)],
        "only the approved action is watched work"
    );
    assert_eq!(
        (work[0].class.as_str(), work[0].risk),
        ("deploy", RiskLevel::Medium)
    );
    assert!(
        s.watched_work("bot", NOW + 3 * MINUTE)
            .await
            .unwrap()
            .is_empty()
    );
    commit(
        s,
        vec![Write::Outcome(OutcomeWrite::ConfirmOutcome {
            decision_id: "d-watched".into(),
            status: ConfirmationStatus::Confirmed,
            by: "github:1".into(),
            at: NOW + 3 * MINUTE,
        })],
    )
    .await
    .unwrap();
    assert_eq!(
        s.watched_work("bot", NOW).await.unwrap()[0].source,
        Source::Platform
    );
    // Rebuilt totals keep who vouched for each success.
    assert!(s.ensure_trust_totals(half_life).await.unwrap());
    let rebuilt = s.trust_totals("bot").await.unwrap();
    let count = |kind| {
        rebuilt
            .iter()
            .filter(|t| t.kind == kind)
            .map(|t| t.count)
            .sum::<i64>()
    };
    assert_eq!(
        (
            count(Kind::PlatformSuccess),
            count(Kind::Success),
            count(Kind::SelfReportedSuccess)
        ),
        (1, 1, 0)
    );

    // Classes earned at a tier, kept on the agent.
    let mut bot = s.agent_fresh("bot").await.unwrap().unwrap();
    bot.earned_classes
        .insert(2, ["deploy".to_string()].into_iter().collect());
    let version = bot.version;
    commit(
        s,
        vec![Write::Identity(IdentityWrite::UpdateAgent {
            agent: bot,
            expected_version: version,
            at: NOW + 4 * MINUTE,
        })],
    )
    .await
    .unwrap();
    assert_eq!(
        s.agent_fresh("bot").await.unwrap().unwrap().earned_classes[&2],
        ["deploy".to_string()].into_iter().collect()
    );
}

async fn guards(backend: Backend) {
    let db = TestDb::new(backend).await;
    let s = &db.store;
    commit(
        s,
        vec![Write::Identity(IdentityWrite::InsertAgent(agent("bot", 1)))],
    )
    .await
    .unwrap();
    let guard = |id: &str, deadline: i64| Guard {
        decision_id: id.into(),
        agent: "bot".into(),
        class: "deploy".into(),
        environment: "staging".into(),
        service: "payments".into(),
        armed_at: NOW,
        deadline,
        status: GuardStatus::Watching,
        signals: 0,
        errors: 0,
        last_verdict: None,
        review: None,
    };
    let mut writes = Vec::new();
    for (id, deadline) in [("g1", NOW + MINUTE), ("g2", NOW + 10 * MINUTE)] {
        writes.push(Write::Decision(DecisionWrite::InsertDecision(decision(
            id,
            "bot",
            Verdict::Allow,
            NOW,
        ))));
        writes.push(Write::Guard(GuardWrite::Arm(guard(id, deadline))));
    }
    commit(s, writes).await.unwrap();
    // Judgements count, and errors in a row reset on anything else.
    let judged = |verdict: &str, error| {
        Write::Guard(GuardWrite::Judged {
            decision_id: "g1".into(),
            verdict: verdict.into(),
            error,
        })
    };
    for (v, e) in [
        ("error", true),
        ("error", true),
        ("successful", false),
        ("error", true),
    ] {
        commit(s, vec![judged(v, e)]).await.unwrap();
    }
    let g1 = s.guard("g1").await.unwrap().unwrap();
    assert_eq!(
        (g1.signals, g1.errors, g1.last_verdict.as_deref()),
        (4, 1, Some("error"))
    );
    // Due: only what passed its deadline and is still watched.
    let due = s.due_guards(NOW + 2 * MINUTE, 10).await.unwrap();
    assert_eq!(
        due.iter()
            .map(|g| g.decision_id.as_str())
            .collect::<Vec<_>>(),
        ["g1"]
    );
    // Moves are a compare-and-set: one replica holds it for a human, the other's move fails.
    let hold = |review: &str| {
        Write::Guard(GuardWrite::Move {
            decision_id: "g1".into(),
            from: GuardStatus::Watching,
            to: GuardStatus::Held,
            review: Some(review.into()),
            at: NOW + 2 * MINUTE,
        })
    };
    commit(s, vec![hold("r1")]).await.unwrap();
    assert_eq!(
        commit(s, vec![hold("r2")]).await.unwrap_err().conflict(),
        Some(Conflict::GuardMoved)
    );
    assert_eq!(
        s.guard_of_review("r1").await.unwrap().unwrap().status,
        GuardStatus::Held
    );
    assert!(s.due_guards(NOW + 2 * MINUTE, 10).await.unwrap().is_empty());
    // A held watch's review, once decided, is found for the sweep.
    assert!(s.decided_reviews(10).await.unwrap().is_empty());
    commit(
        s,
        vec![
            Write::Decision(DecisionWrite::InsertDecision(decision(
                "d-r1",
                "bot",
                Verdict::RequireApproval,
                NOW,
            ))),
            Write::Approval(ApprovalWrite::InsertApproval(ApprovalRow {
                id: "r1".into(),
                decision_id: "g1".into(),
                ..approval_row("r1", NOW + 60 * MINUTE, 1)
            })),
        ],
    )
    .await
    .unwrap();
    commit(
        s,
        vec![Write::Approval(ApprovalWrite::DecideApproval {
            id: "r1".into(),
            approve: false,
            by: "olga".into(),
            at: NOW + 3 * MINUTE,
            comment: None,
        })],
    )
    .await
    .unwrap();
    assert_eq!(s.decided_reviews(10).await.unwrap().len(), 1);
    // Closed: judgements no longer land.
    commit(
        s,
        vec![Write::Guard(GuardWrite::Move {
            decision_id: "g1".into(),
            from: GuardStatus::Held,
            to: GuardStatus::RolledBack,
            review: None,
            at: NOW + 4 * MINUTE,
        })],
    )
    .await
    .unwrap();
    assert_eq!(
        commit(s, vec![judged("successful", false)])
            .await
            .unwrap_err()
            .conflict(),
        Some(Conflict::GuardMoved)
    );
    let g1 = s.guard("g1").await.unwrap().unwrap();
    assert_eq!(
        (g1.status, g1.review.as_deref()),
        (GuardStatus::RolledBack, Some("r1"))
    );
    assert!(s.guard("nope").await.unwrap().is_none());
}

async fn idempotency_keys(backend: Backend) {
    use warden_store::{IdempotencyKey, IdempotencyWrite, Kept};
    let db = TestDb::new(backend).await;
    let s = &db.store;
    let key = IdempotencyKey {
        principal: "agent:bot".into(),
        route: "POST /v1/decisions".into(),
        key: "k1".into(),
    };
    let claim = |at: i64| {
        Write::Idempotency(IdempotencyWrite::Claim {
            key: key.clone(),
            request_hash: "h".into(),
            at,
            expires_at: at + 60 * MINUTE,
            stale_before: at - MINUTE,
        })
    };
    let answer = |claimed_at: i64, body: &str| {
        Write::Idempotency(IdempotencyWrite::Answer {
            key: key.clone(),
            claimed_at,
            status: 200,
            response: body.into(),
        })
    };
    let taken = Some(Conflict::IdempotencyKeyTaken);
    commit(s, vec![claim(NOW)]).await.unwrap();
    // Held while in flight; taken over once the claim is stale (its process died).
    assert_eq!(
        commit(s, vec![claim(NOW + 1)])
            .await
            .unwrap_err()
            .conflict(),
        taken
    );
    let later = NOW + 2 * MINUTE;
    commit(s, vec![claim(later)]).await.unwrap();
    // The first request's answer no longer lands: one key, one action.
    assert_eq!(
        commit(s, vec![answer(NOW, "first")])
            .await
            .unwrap_err()
            .conflict(),
        taken
    );
    // Nor does its release take the key from the request that holds it now.
    let release = |claimed_at| {
        Write::Idempotency(IdempotencyWrite::Release {
            key: key.clone(),
            claimed_at,
        })
    };
    commit(s, vec![release(NOW)]).await.unwrap();
    commit(s, vec![answer(later, "second")]).await.unwrap();
    assert_eq!(
        commit(s, vec![answer(later, "again")])
            .await
            .unwrap_err()
            .conflict(),
        taken
    );
    assert_eq!(
        s.idempotency_key(&key, later).await.unwrap(),
        Some(Kept {
            request_hash: "h".into(),
            answer: Some((200, "second".into()))
        })
    );
    // A kept answer is not taken over while it lasts, and lapses with its window.
    assert_eq!(
        commit(s, vec![claim(later + 2 * MINUTE)])
            .await
            .unwrap_err()
            .conflict(),
        taken
    );
    let lapsed = later + 60 * MINUTE;
    assert_eq!(s.idempotency_key(&key, lapsed).await.unwrap(), None);
    assert_eq!(s.prune_idempotency_keys(lapsed).await.unwrap(), 1);
}

async fn quotas(backend: Backend) {
    let db = TestDb::new(backend).await;
    let s = &db.store;
    let charge = |amount, limit| Charge {
        quota: "calls_per_minute".into(),
        scope: "*".into(),
        window: (NOW, NOW + MINUTE),
        amount,
        limit,
        unit: Unit::Calls,
        counts: Counting::Requests,
    };
    let charged = |amount, limit| {
        Write::Quota(QuotaWrite::ChargeQuotas {
            agent_id: "bot".into(),
            charges: vec![charge(amount, limit)],
        })
    };
    commit(s, vec![charged(3, 5)]).await.unwrap();
    assert_eq!(
        s.quota_used_fresh("bot", &[charge(1, 5)]).await.unwrap(),
        vec![3]
    );
    // Over the limit: refused with nothing written, whatever else the change held.
    let over = vec![
        charged(3, 5),
        Write::Decision(DecisionWrite::InsertDecision(decision(
            "d1",
            "bot",
            Verdict::Allow,
            NOW,
        ))),
    ];
    assert_eq!(
        s.commit(Change {
            writes: over,
            audit: vec![record("decision", "bot")]
        })
        .await
        .unwrap_err()
        .conflict(),
        Some(Conflict::QuotaExceeded)
    );
    assert!(s.decision("d1").await.unwrap().is_none());
    assert_eq!(s.quota_used("bot", &[charge(1, 5)]).await.unwrap(), vec![3]);
    let adjust = Write::Quota(QuotaWrite::AdjustQuota {
        agent_id: "bot".into(),
        quota: "calls_per_minute".into(),
        scope: "*".into(),
        window_start: NOW,
        delta: -2,
    });
    commit(s, vec![adjust]).await.unwrap();
    assert_eq!(
        s.quota_used_fresh("bot", &[charge(1, 5)]).await.unwrap(),
        vec![1]
    );
    assert_eq!(
        s.quota_scopes("bot", "calls_per_minute", NOW)
            .await
            .unwrap(),
        vec![("*".to_string(), 1)]
    );
    assert_eq!(s.prune_quota_usage(NOW + 1).await.unwrap(), 1);
    assert_eq!(
        s.quota_used_fresh("bot", &[charge(1, 5)]).await.unwrap(),
        vec![0]
    );
}

async fn audit_chain(backend: Backend) {
    let db = TestDb::new(backend).await;
    let s = &db.store;
    commit(
        s,
        vec![Write::Identity(IdentityWrite::InsertAgent(agent("bot", 1)))],
    )
    .await
    .unwrap();
    let mut policy = AuditRecord::change(
        Actor::warden(),
        "policy.loaded",
        "policy".into(),
        serde_json::json!({}),
        NOW,
    );
    policy.policy_version = Some("p-1".into());
    s.commit(Change {
        writes: vec![],
        audit: vec![policy],
    })
    .await
    .unwrap();
    let mut with_decision = record("decision", "bot");
    with_decision.decision_id = Some("d1".into());
    let writes = vec![Write::Decision(DecisionWrite::InsertDecision(decision(
        "d1",
        "bot",
        Verdict::Allow,
        NOW,
    )))];
    s.commit(Change {
        writes,
        audit: vec![with_decision, record("violation.recorded", "bot")],
    })
    .await
    .unwrap();
    assert_eq!(
        s.last_policy_version().await.unwrap().as_deref(),
        Some("p-1")
    );
    assert_eq!(s.count_audit_for_decision("d1").await.unwrap(), 1);
    let all = s
        .audit(&AuditPageRequest {
            filter: AuditFilter {
                ..Default::default()
            },
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 3);
    assert!(
        all.windows(2).all(|w| w[0].seq < w[1].seq),
        "in chain order"
    );
    let filtered = s
        .audit(&AuditPageRequest {
            filter: AuditFilter {
                event_type: Some("decision".into()),
                agent: Some("bot".into()),
                ..Default::default()
            },
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(filtered.len(), 1);
    assert_eq!(s.verify_audit().await.unwrap(), Ok(3));
    // Append-only in the database itself (tampering past that guard is tests/e2e/audit.rs's).
    let pool = db.raw_pool().await;
    assert!(
        pool.execute("UPDATE audit_events SET record = record WHERE seq = 3")
            .await
            .is_err()
    );
    assert!(
        pool.execute("DELETE FROM audit_events WHERE seq = 3")
            .await
            .is_err()
    );
    assert_eq!(s.verify_audit().await.unwrap(), Ok(3));
}

/// The Merkle tree over the chain: checkpoints extend it from their stored edge, proofs come
/// out right across blocks of 256, and after a prune what remains still verifies and proves.
/// More records than one read of a checkpoint's extension (2,000) or of a verify (250) takes:
/// the tree and the chain come out the same as from one read.
async fn a_long_tree_extends_and_verifies_across_reads(backend: Backend) {
    use warden_core::audit::merkle;
    let db = TestDb::new(backend).await;
    let s = &db.store;
    s.commit(Change {
        writes: vec![],
        audit: (0..4321)
            .map(|i| record("test.filler", &format!("a{i}")))
            .collect(),
    })
    .await
    .unwrap();
    let tree = s.extend_tree().await.unwrap().unwrap();
    assert_eq!(tree.frontier.size(), 4321);
    s.add_checkpoint(&tree, NOW, "note-4321").await.unwrap();
    let leaves: Vec<merkle::Hash> = s
        .audit_chain(0, 5000)
        .await
        .unwrap()
        .iter()
        .map(|r| merkle::leaf_hash(&r.hash).unwrap())
        .collect();
    assert_eq!(leaves.len(), 4321);
    let cp = s.latest_checkpoint().await.unwrap().unwrap();
    assert_eq!(cp.root, merkle::root(&leaves));
    assert_eq!(s.verify_audit().await.unwrap(), Ok(4321));
}

async fn audit_tree(backend: Backend) {
    use warden_core::audit::merkle;
    let db = TestDb::new(backend).await;
    let s = &db.store;
    assert!(s.latest_checkpoint().await.unwrap().is_none());
    let append = |n: usize, from: usize| {
        (from..from + n)
            .map(|i| record("test.filler", &format!("a{i}")))
            .collect::<Vec<_>>()
    };
    s.commit(Change {
        writes: vec![],
        audit: append(700, 0),
    })
    .await
    .unwrap();
    let tree = s.extend_tree().await.unwrap().unwrap();
    assert_eq!(tree.frontier.size(), 700);
    s.add_checkpoint(&tree, NOW, "note-700").await.unwrap();
    // The same size again (another replica) keeps one row.
    s.add_checkpoint(&tree, NOW + 1, "note-700-again")
        .await
        .unwrap();
    assert!(s.extend_tree().await.unwrap().is_none(), "nothing new");
    s.commit(Change {
        writes: vec![],
        audit: append(100, 700),
    })
    .await
    .unwrap();
    let tree = s.extend_tree().await.unwrap().unwrap();
    s.add_checkpoint(&tree, NOW + MINUTE, "note-800")
        .await
        .unwrap();
    let cps = s.checkpoints_after(0, 10).await.unwrap();
    assert_eq!(
        cps.iter()
            .map(|c| (c.size, c.note.as_str()))
            .collect::<Vec<_>>(),
        [(700, "note-700"), (800, "note-800")]
    );
    let chain = s.audit_chain(0, 1000).await.unwrap();
    let leaves: Vec<merkle::Hash> = chain
        .iter()
        .map(|r| merkle::leaf_hash(&r.hash).unwrap())
        .collect();
    assert_eq!(cps[0].root, merkle::root(&leaves[..700]));
    assert_eq!(cps[1].root, merkle::root(&leaves));
    assert_eq!(cps[1].chain_hash, chain[799].hash);
    let mut proofs = s.proofs();
    for seq in [1, 256, 257, 513, 700, 799, 800] {
        let p = proofs.inclusion(seq, 800).await.unwrap().unwrap();
        assert!(
            merkle::verify_inclusion(
                &leaves[seq as usize - 1],
                seq as u64 - 1,
                800,
                &p,
                &cps[1].root
            ),
            "{seq}"
        );
    }
    let p = proofs.consistency(700, 800).await.unwrap().unwrap();
    assert!(merkle::verify_consistency(
        700,
        800,
        &cps[0].root,
        &cps[1].root,
        &p
    ));
    assert_eq!(s.verify_audit().await.unwrap(), Ok(800));
    assert!(
        s.checkpoint_before(NOW + 1)
            .await
            .unwrap()
            .is_some_and(|c| c.size == 700)
    );

    // Prune through the first checkpoint, with the record that says so.
    let mut archived = record("audit.archived", "none");
    archived.details = Some(serde_json::json!({"through": 700}).into());
    s.commit(Change {
        writes: vec![Write::Audit(AuditWrite::Prune {
            through: 700,
            hash: cps[0].chain_hash.clone(),
        })],
        audit: vec![archived],
    })
    .await
    .unwrap();
    assert_eq!(
        s.audit_start().await.unwrap(),
        (700, cps[0].chain_hash.clone())
    );
    assert_eq!(s.verify_audit().await.unwrap(), Ok(801));
    let mut proofs = s.proofs();
    assert!(matches!(
        proofs.inclusion(5, 800).await.unwrap(),
        Err(warden_store::ProofError::Pruned(_))
    ));
    for seq in [701, 800] {
        let p = proofs.inclusion(seq, 800).await.unwrap().unwrap();
        assert!(
            merkle::verify_inclusion(
                &leaves[seq as usize - 1],
                seq as u64 - 1,
                800,
                &p,
                &cps[1].root
            ),
            "{seq}"
        );
    }
    let p = proofs.consistency(700, 800).await.unwrap().unwrap();
    assert!(merkle::verify_consistency(
        700,
        800,
        &cps[0].root,
        &cps[1].root,
        &p
    ));

    // Records deleted past the guard, with no archive record saying so, do not verify.
    let db = TestDb::new(backend).await;
    let s = &db.store;
    s.commit(Change {
        writes: vec![],
        audit: append(20, 0),
    })
    .await
    .unwrap();
    let tree = s.extend_tree().await.unwrap().unwrap();
    s.add_checkpoint(&tree, NOW, "note-20").await.unwrap();
    let raw = db.raw_pool().await;
    raw.execute(
        format!(
            "UPDATE audit_retention SET through_seq = 20, through_hash = '{}'",
            tree.chain_hash
        )
        .as_str(),
    )
    .await
    .unwrap();
    raw.execute("DELETE FROM audit_events WHERE seq <= 20")
        .await
        .unwrap();
    let b = s.verify_audit().await.unwrap().unwrap_err();
    assert_eq!(
        (b.seq, b.tamper),
        (20, warden_core::audit::Tamper::Deleted),
        "{b}"
    );
    raw.close().await;
}

async fn deliveries(backend: Backend) {
    let db = TestDb::new(backend).await;
    let s = &db.store;
    let delivery = Delivery {
        id: "del1".into(),
        event_id: "ev1".into(),
        event_type: EventType::ApprovalRequested,
        endpoint: "ops".into(),
        body: "{}".into(),
        status: DeliveryStatus::Pending,
        attempts: 0,
        next_attempt_at: NOW,
        last_error: None,
        created_at: NOW,
        delivered_at: None,
    };
    commit(
        s,
        vec![Write::Delivery(DeliveryWrite::InsertDelivery(delivery))],
    )
    .await
    .unwrap();
    assert_eq!(
        s.due_deliveries(NOW, &["ops".into()], 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(
        s.due_deliveries(NOW, &["other".into()], 10)
            .await
            .unwrap()
            .is_empty()
    );
    let claim = || {
        Write::Delivery(DeliveryWrite::ClaimDelivery {
            id: "del1".into(),
            now: NOW,
            until: NOW + MINUTE,
        })
    };
    commit(s, vec![claim()]).await.unwrap();
    assert_eq!(
        commit(s, vec![claim()]).await.unwrap_err().conflict(),
        Some(Conflict::DeliveryTaken),
        "one worker at a time"
    );
    let attempted = Write::Delivery(DeliveryWrite::DeliveryAttempted {
        id: "del1".into(),
        status: DeliveryStatus::Delivered,
        attempts: 1,
        next_attempt_at: NOW,
        last_error: None,
        at: NOW + 1,
        claim: NOW + MINUTE,
    });
    commit(s, vec![attempted]).await.unwrap();
    let listed = s
        .deliveries(Some("delivered"), Some("ops"), None, 10)
        .await
        .unwrap();
    assert_eq!(
        (listed.len(), listed[0].attempts, listed[0].delivered_at),
        (1, 1, Some(NOW + 1))
    );
}

async fn plugins_and_baselines(backend: Backend) {
    let db = TestDb::new(backend).await;
    let s = &db.store;
    let row = |version: &str, sha: &str| PluginRow {
        name: "classifier".into(),
        version: version.into(),
        kind: "classifier".into(),
        manifest: "{}".into(),
        component: std::sync::Arc::new(vec![0, 97, 115, 109]),
        sha256: sha.into(),
        updated_at: NOW,
    };
    commit(
        s,
        vec![Write::Plugin(PluginWrite::UpsertPlugin(row("1.0.0", "aa")))],
    )
    .await
    .unwrap();
    commit(
        s,
        vec![Write::Plugin(PluginWrite::UpsertPlugin(row("1.1.0", "bb")))],
    )
    .await
    .unwrap();
    assert_eq!(
        s.plugin_hashes().await.unwrap(),
        vec![("classifier".to_string(), "bb".to_string())]
    );
    assert_eq!(
        s.plugin("classifier").await.unwrap().unwrap().1,
        vec![0, 97, 115, 109]
    );
    let delete = || {
        Write::Plugin(PluginWrite::DeletePlugin {
            name: "classifier".into(),
        })
    };
    commit(s, vec![delete()]).await.unwrap();
    assert!(matches!(
        commit(s, vec![delete()]).await.unwrap_err(),
        StoreError::NotFound(Missing::Plugin, _)
    ));

    // Baselines are versioned: each run is the newest version; old versions' rows are pruned.
    let baseline = |events: u64| HumanBaseline {
        team: "payments".into(),
        service: "payments".into(),
        class: "deploy".into(),
        scope: BaselineScope::Team,
        humans: 6,
        events,
        per_active_hour: Summary::default(),
        per_active_day: Summary::default(),
        rate_per_hour: 0.5,
        hour_of_week: vec![1.0 / 168.0; 168],
        hour_of_week_counts: vec![1; 168],
        change_size: None,
        environments: vec![],
        targets: vec![],
    };
    let run = |events: u64| {
        Write::Baseline(BaselineWrite::RecordRun {
            computed_at: NOW,
            from: NOW - 28 * 24 * 60 * MINUTE,
            to: NOW,
            events,
            time_zone: "UTC".into(),
            baselines: vec![baseline(events)],
            keep: 1,
        })
    };
    assert_eq!(s.latest_baseline_run().await.unwrap(), None);
    commit(s, vec![run(120)]).await.unwrap();
    let first = s.latest_baseline_run().await.unwrap().unwrap();
    commit(s, vec![run(130)]).await.unwrap();
    let second = s.latest_baseline_run().await.unwrap().unwrap();
    assert!(second.version > first.version);
    assert_eq!((second.events, second.baselines), (130, 1));
    let all = BaselineFilter::default();
    assert_eq!(
        s.baselines(second.version, &all).await.unwrap(),
        vec![baseline(130)]
    );
    // Only the newest version's rows are kept (keep = 1); both runs are remembered.
    assert!(s.baselines(first.version, &all).await.unwrap().is_empty());
    assert_eq!(s.baseline_runs(10).await.unwrap().len(), 2);
    let other = BaselineFilter {
        class: Some("db_migration".into()),
        ..BaselineFilter::default()
    };
    assert!(
        s.baselines(second.version, &other)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Events are stored once per (source, source id), read back whole, and counted per agent.
async fn events(backend: Backend) {
    let db = TestDb::new(backend).await;
    let s = &db.store;
    let event = |id: &str, kind: ActorKind, actor: &str, at: i64| ActivityEvent {
        source: "github".into(),
        source_id: id.into(),
        actor_kind: kind,
        actor_id: actor.into(),
        team: "payments".into(),
        class: "deploy".into(),
        environment: "production".into(),
        service: "payments".into(),
        targets: vec!["deployment/payments".into()],
        change_size: Some(40),
        at,
        outcome: Some(OutcomeStatus::Succeeded),
        decision_id: (actor == "bot").then(|| "dec-1".to_string()),
    };
    // 600 events cross the multi-row insert's chunk size.
    let mut batch: Vec<ActivityEvent> = (0..600)
        .map(|i| {
            event(
                &format!("d{i}"),
                ActorKind::Human,
                "alice",
                NOW - i64::from(i) * MINUTE,
            )
        })
        .collect();
    batch.push(event("b1", ActorKind::Agent, "bot", NOW - 2 * MINUTE));
    batch.push(event("b0", ActorKind::Agent, "bot", NOW - 120 * MINUTE));
    let insert = |events: Vec<ActivityEvent>| {
        Write::Event(EventWrite::InsertEvents {
            events,
            received_at: NOW,
        })
    };
    commit(s, vec![insert(batch.clone())]).await.unwrap();
    // A redelivery stores nothing new and fails nothing.
    let mut again = batch[..3].to_vec();
    again[0].actor_id = "mallory".into();
    commit(s, vec![insert(again)]).await.unwrap();
    assert_eq!(s.event_count().await.unwrap(), 602);
    let known = s
        .known_events(&[("github", "d1"), ("github", "zz"), ("gitlab", "d1")])
        .await
        .unwrap();
    assert_eq!(
        known.into_iter().collect::<Vec<_>>(),
        vec![("github".to_string(), "d1".to_string())]
    );

    let mut humans = Vec::new();
    let n = s
        .scan_events(Some(ActorKind::Human), NOW - 10 * MINUTE, NOW + 1, |e| {
            humans.push(e)
        })
        .await
        .unwrap();
    assert_eq!(n, 11);
    assert_eq!(humans.len(), 11);
    humans.sort_by_key(|e| e.at);
    assert_eq!(
        humans[10], batch[0],
        "stored whole, the first delivery wins"
    );

    // The last hour holds one of the bot's two events, the one before it counts as done before;
    // with `since` before both, nothing is before it, and the recent ones count up to the cap.
    for (since, at_most, recent, done_before) in [
        (NOW - 60 * MINUTE, 100, 1, true),
        (NOW - 600 * MINUTE, 100, 2, false),
        (NOW - 600 * MINUTE, 1, 1, false),
    ] {
        let activity = s
            .activity("bot", "deploy", "production", "payments", since, at_most)
            .await
            .unwrap();
        assert_eq!(
            activity.done,
            EventActivity {
                recent,
                done_before
            }
        );
    }
    assert_eq!(s.decision_events("dec-1").await.unwrap().len(), 2);
    assert_eq!(s.actor_events("bot", 1).await.unwrap()[0].source_id, "b1");
}

/// An event of the agent "bot" in staging payments, now.
fn bot_event(id: &str, class: &str) -> ActivityEvent {
    ActivityEvent {
        source: "github".into(),
        source_id: id.into(),
        actor_kind: ActorKind::Agent,
        actor_id: "bot".into(),
        team: "payments".into(),
        class: class.into(),
        environment: "staging".into(),
        service: "payments".into(),
        targets: vec![],
        change_size: None,
        at: NOW,
        outcome: None,
        decision_id: None,
    }
}

/// The anomaly stage's answer, kept per kind of action for the cache's TTL, is the one the
/// database gives after this process's own commits, however they interleave with its reads:
/// each commit is counted in once, whether a read's snapshot has it or not. Another store's
/// decisions come in with the next read after the TTL; this process's events at once.
async fn kept_activity_answers_as_the_database(backend: Backend) {
    let db = TestDb::new(backend).await;
    let kept = db.another_store(8, Duration::from_secs(3600)).await;
    commit(
        &kept,
        vec![Write::Identity(IdentityWrite::InsertAgent(agent("bot", 2)))],
    )
    .await
    .unwrap();
    let since = NOW - 60 * MINUTE;
    let ask = |s: &Store| {
        let s = s.clone();
        async move {
            s.activity("bot", "deploy", "staging", "payments", since, 1000)
                .await
                .unwrap()
        }
    };
    let decided = |recent, done_before| AgentActivity {
        decided: Activity {
            recent,
            done_before,
        },
        done: EventActivity::default(),
    };
    assert_eq!(ask(&kept).await, decided(0, false));
    // Denials and waits, each committed while others ask: never allowed yet. One decision
    // before the window counts for "before" only.
    let verdicts = |from: usize, n: usize, allow: bool| {
        (from..from + n).map(move |i| {
            let verdict = match i % 3 {
                0 if allow => Verdict::Allow,
                1 => Verdict::RequireApproval,
                _ => Verdict::Deny,
            };
            (i, verdict)
        })
    };
    // Each round forgets the kept answer (the agent's event of another kind), then decides
    // ten times while as many asks run, so that reads are under way as decisions land.
    let round = |r: usize, allow: bool| {
        let kept = kept.clone();
        async move {
            spawn_decided(
                &kept,
                vec![Write::Event(EventWrite::InsertEvents {
                    events: vec![bot_event(&format!("e{r}"), "config_change")],
                    received_at: NOW,
                })],
            )
            .await
            .unwrap()
            .unwrap();
            let mut tasks = Vec::new();
            for (i, verdict) in verdicts(r * 10, 10, allow) {
                let at = NOW - i as i64 * 1_000_000;
                let asking = ask(&kept);
                tasks.push(tokio::spawn(async move {
                    asking.await;
                    Ok(())
                }));
                tasks.push(spawn_decided(
                    &kept,
                    vec![Write::Decision(DecisionWrite::InsertDecision(decision(
                        &format!("d{i}"),
                        "bot",
                        verdict,
                        at,
                    )))],
                ));
            }
            for t in tasks {
                t.await.unwrap().unwrap();
            }
        }
    };
    for r in 0..9 {
        round(r, r >= 3).await;
        let n = 10 * (r as u32 + 1);
        assert_eq!(ask(&db.store).await, decided(n, r >= 3), "round {r}");
        assert_eq!(ask(&kept).await, decided(n, r >= 3), "round {r}, kept");
    }
    spawn_decided(
        &kept,
        vec![Write::Decision(DecisionWrite::InsertDecision(decision(
            "old",
            "bot",
            Verdict::Deny,
            since - MINUTE,
        )))],
    )
    .await
    .unwrap()
    .unwrap();
    let both = ask(&db.store).await;
    assert_eq!(both, decided(90, true));
    assert_eq!(
        ask(&kept).await,
        both,
        "kept after this process's own commits"
    );

    // Another store's decision (a replica's) is in the database, not yet in the kept answer.
    spawn_decided(
        &db.store,
        vec![Write::Decision(DecisionWrite::InsertDecision(decision(
            "r1",
            "bot",
            Verdict::Deny,
            NOW,
        )))],
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(ask(&db.store).await, decided(91, true));
    assert_eq!(ask(&kept).await, decided(90, true), "within the TTL");
    // This process's own events of the agent: read again, with the replica's decision too.
    commit(
        &kept,
        vec![Write::Event(EventWrite::InsertEvents {
            events: vec![bot_event("e-deploy", "deploy")],
            received_at: NOW,
        })],
    )
    .await
    .unwrap();
    let with_event = AgentActivity {
        done: EventActivity {
            recent: 1,
            done_before: false,
        },
        ..decided(91, true)
    };
    assert_eq!(ask(&db.store).await, with_event);
    assert_eq!(ask(&kept).await, with_event);
    kept.close().await;
}

/// Many changes commit in one transaction; one that fails after its first write (which the
/// batch's transaction cannot undo alone) is retried on its own and fails alone.
/// Evidence and scores committed together (the writer coalesces them per running total and per
/// agent within a batch) come to what writing them one by one would: the same counts, the same
/// decayed amount, and the score noted from all of it, also in a cached agent.
async fn a_batch_of_evidence_sums_as_one_by_one(backend: Backend) {
    let db = TestDb::new(backend).await;
    let s = db.another_store(64, Duration::from_secs(600)).await;
    for id in ["bot", "other"] {
        commit(
            &s,
            vec![Write::Identity(IdentityWrite::InsertAgent(agent(id, 2)))],
        )
        .await
        .unwrap();
    }
    let before = s.agent("bot").await.unwrap().unwrap();
    assert_eq!(before.trust_score, None, "cached before any evidence");
    let policy = TrustPolicy::default();
    let half_life = half_life_us(&policy);
    let evidence = |agent: &str, kind, at| EvidenceDelta {
        agent_id: agent.into(),
        environment: "staging".into(),
        risk: RiskLevel::Low,
        kind,
        at,
        delta: 1,
        half_life_us: half_life,
    };
    const NOTED: i64 = NOW + 100 * 3_600_000_000;
    let mut tasks = Vec::new();
    for i in 0..60i64 {
        let (s, policy) = (s.clone(), policy.clone());
        let agent = if i % 3 == 0 { "other" } else { "bot" };
        let kind = if i % 2 == 0 {
            Kind::Violation
        } else {
            Kind::Success
        };
        let at = NOW + i * 3_600_000_000;
        let e = evidence(agent, kind, at);
        tasks.push(tokio::spawn(async move {
            s.commit(Change {
                writes: vec![
                    Write::Decision(DecisionWrite::InsertDecision(decision(
                        &format!("d{i}"),
                        agent,
                        Verdict::Deny,
                        at,
                    ))),
                    Write::Trust(TrustWrite::AddEvidence(e)),
                    // All noted as of one moment: whichever batch commits last notes the
                    // score of all the evidence.
                    Write::Trust(TrustWrite::NoteTrust {
                        agent_id: agent.into(),
                        tier: 2,
                        at: NOTED,
                        policy,
                    }),
                ],
                audit: vec![record("decision", agent)],
            })
            .await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    for agent in ["bot", "other"] {
        let mine: Vec<i64> = (0..60i64)
            .filter(|i| (i % 3 == 0) == (agent == "other"))
            .collect();
        let totals = s.trust_totals(agent).await.unwrap();
        for kind in [Kind::Violation, Kind::Success] {
            let of_kind: Vec<i64> = mine
                .iter()
                .copied()
                .filter(|i| (i % 2 == 0) == (kind == Kind::Violation))
                .collect();
            let expected = of_kind
                .iter()
                .fold(warden_core::trust::Decayed::default(), |d, i| {
                    d.add(1.0, NOW + i * 3_600_000_000, half_life)
                });
            let total = totals.iter().find(|t| t.kind == kind).unwrap();
            assert_eq!(total.count, of_kind.len() as i64, "{agent} {kind:?}");
            let last = NOW + 59 * 3_600_000_000;
            let (got, want) = (
                total.decayed.at(last, half_life),
                expected.at(last, half_life),
            );
            assert!(
                (got - want).abs() < 1e-9,
                "{agent} {kind:?}: {got} against {want}"
            );
        }
        // The score noted is the one all of the agent's evidence gives.
        let want = warden_core::trust::weigh(&totals, NOTED, &policy, |_| true).score();
        let cached = s.agent(agent).await.unwrap().unwrap().trust_score;
        let stored = s.agent_fresh(agent).await.unwrap().unwrap().trust_score;
        assert_eq!(stored, Some(want), "{agent}");
        assert_eq!(
            cached, stored,
            "the cached agent has the noted score: {agent}"
        );
    }
    // The agent read before the evidence is shared with the cache, not copied: noting a score
    // replaced the cache's, and the one still held here reads as it did.
    assert_eq!(
        before.trust_score, None,
        "a reader's agent is not changed under it"
    );
    assert_eq!(s.verify_audit().await.unwrap(), Ok(60));
}

/// Two stores on one database (replicas on PostgreSQL, two processes on one SQLite file) add
/// evidence to the same new running total and extend the audit chain at once: every piece is
/// counted once and the chain stays one chain. Each writer creates the total if missing and
/// reads it back locked, and reads the chain's head inside its transaction's lock.
async fn two_replicas_add_to_one_total_and_one_chain(backend: Backend) {
    let db = TestDb::new(backend).await;
    commit(
        &db.store,
        vec![Write::Identity(IdentityWrite::InsertAgent(agent("bot", 2)))],
    )
    .await
    .unwrap();
    let other = db.another_store(8, Duration::ZERO).await;
    let half_life = half_life_us(&TrustPolicy::default());
    const EACH: i64 = 40;
    let mut tasks = Vec::new();
    for (r, s) in [db.store.clone(), other.clone()].into_iter().enumerate() {
        for i in 0..EACH {
            let s = s.clone();
            let at = NOW + (r as i64 * EACH + i) * MINUTE;
            tasks.push(tokio::spawn(async move {
                s.commit(Change {
                    writes: vec![Write::Trust(TrustWrite::AddEvidence(EvidenceDelta {
                        agent_id: "bot".into(),
                        environment: "production".into(),
                        risk: RiskLevel::High,
                        kind: Kind::Violation,
                        at,
                        delta: 1,
                        half_life_us: half_life,
                    }))],
                    audit: vec![record("violation.recorded", "bot")],
                })
                .await
            }));
        }
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    for s in [&db.store, &other] {
        let totals = s.trust_totals("bot").await.unwrap();
        assert_eq!(totals.len(), 1, "one running total: {totals:?}");
        assert_eq!(totals[0].count, 2 * EACH);
        assert_eq!(s.verify_audit().await.unwrap(), Ok(2 * EACH));
    }
    other.close().await;
}

async fn one_failed_change_does_not_sink_its_batch(backend: Backend) {
    let db = TestDb::new(backend).await;
    let s = db.store.clone();
    commit(
        &s,
        vec![Write::Identity(IdentityWrite::InsertAgent(agent("bot", 1)))],
    )
    .await
    .unwrap();
    commit(
        &s,
        vec![Write::Identity(IdentityWrite::InsertAgent(agent(
            "taken", 1,
        )))],
    )
    .await
    .unwrap();
    let mut tasks = Vec::new();
    for i in 0..40 {
        // The new decision's approval and guard are gathered into the batch's own inserts.
        let mut writes = vec![
            Write::Decision(DecisionWrite::InsertDecision(decision(
                &format!("d{i}"),
                "bot",
                Verdict::Allow,
                NOW,
            ))),
            Write::Approval(ApprovalWrite::InsertApproval(approval_row(
                &format!("a{i}"),
                NOW + MINUTE,
                1 + i % 2,
            ))),
            Write::Guard(GuardWrite::Arm(Guard {
                decision_id: format!("d{i}"),
                agent: "bot".into(),
                class: "deploy".into(),
                environment: "staging".into(),
                service: "payments".into(),
                armed_at: NOW,
                deadline: NOW + MINUTE + i,
                status: GuardStatus::Watching,
                signals: 0,
                errors: 0,
                last_verdict: None,
                review: None,
            })),
        ];
        if i == 17 {
            // Fails at its second write: the agent exists.
            writes.push(Write::Identity(IdentityWrite::InsertAgent(agent(
                "taken", 1,
            ))));
        }
        tasks.push(spawn_decided(&s, writes));
    }
    for (i, task) in tasks.into_iter().enumerate() {
        let result = task.await.unwrap();
        if i == 17 {
            assert_eq!(result.unwrap_err().conflict(), Some(Conflict::AgentExists));
            assert!(
                s.decision("d17").await.unwrap().is_none(),
                "a failed change wrote nothing"
            );
            assert!(s.approval("a17", NOW).await.unwrap().is_none());
            assert!(s.guard("d17").await.unwrap().is_none());
        } else {
            result.unwrap();
            assert!(s.decision(&format!("d{i}")).await.unwrap().is_some());
            let approval = s.approval(&format!("a{i}"), NOW).await.unwrap().unwrap();
            assert_eq!(
                (approval.status, approval.approvals_needed),
                (ApprovalStatus::Pending, 1 + i as i64 % 2),
                "a{i}"
            );
            let guard = s.guard(&format!("d{i}")).await.unwrap().unwrap();
            assert_eq!(
                (guard.status, guard.deadline),
                (GuardStatus::Watching, NOW + MINUTE + i as i64),
                "d{i}"
            );
        }
    }
    assert_eq!(
        s.verify_audit().await.unwrap(),
        Ok(39),
        "the chain holds the 39 that committed, in order"
    );
}

/// Decisions racing for a quota's last units: exactly the limit commit, the rest are refused
/// with nothing written. A change that fails at its first write charges nothing, also in a
/// batch whose other changes are decisions alone (on SQLite those add their sums in the call
/// that opens the transaction; a write applied on its own makes the batch wait for it).
async fn a_batch_charges_its_quotas_exactly(backend: Backend) {
    let db = TestDb::new(backend).await;
    let s = db.store.clone();
    commit(
        &s,
        vec![Write::Identity(IdentityWrite::InsertAgent(agent("bot", 1)))],
    )
    .await
    .unwrap();
    let charge = |quota: &str, limit| Charge {
        quota: quota.into(),
        scope: "*".into(),
        window: (NOW, NOW + MINUTE),
        amount: 1,
        limit,
        unit: Unit::Calls,
        counts: Counting::Requests,
    };
    let charged = |quota: &str, limit| {
        Write::Quota(QuotaWrite::ChargeQuotas {
            agent_id: "bot".into(),
            charges: vec![charge(quota, limit)],
        })
    };
    let decided = |id: &str| {
        Write::Decision(DecisionWrite::InsertDecision(decision(
            id,
            "bot",
            Verdict::Allow,
            NOW,
        )))
    };
    let mut tasks = Vec::new();
    for i in 0..25 {
        let writes = vec![charged("tight", 10), decided(&format!("t{i}"))];
        tasks.push(spawn_decided(&s, writes));
    }
    let mut committed = 0;
    for (i, task) in tasks.into_iter().enumerate() {
        let result = task.await.unwrap();
        let written = s.decision(&format!("t{i}")).await.unwrap().is_some();
        match result {
            Ok(()) => {
                committed += 1;
                assert!(written, "t{i}");
            }
            Err(e) => {
                assert_eq!(e.conflict(), Some(Conflict::QuotaExceeded), "t{i}");
                assert!(!written, "a refused change wrote nothing: t{i}");
            }
        }
    }
    assert_eq!(committed, 10);
    assert_eq!(
        s.quota_used_fresh("bot", &[charge("tight", 10)])
            .await
            .unwrap(),
        vec![10]
    );

    let mut tasks = Vec::new();
    for i in 0..10 {
        let mut writes = vec![charged("loose", 100), decided(&format!("l{i}"))];
        if i == 3 {
            // Fails at its first write (the agent exists): its charge is not counted.
            writes.insert(
                0,
                Write::Identity(IdentityWrite::InsertAgent(agent("bot", 1))),
            );
        }
        tasks.push(spawn_decided(&s, writes));
    }
    for (i, task) in tasks.into_iter().enumerate() {
        let result = task.await.unwrap();
        if i == 3 {
            assert_eq!(result.unwrap_err().conflict(), Some(Conflict::AgentExists));
        } else {
            result.unwrap();
        }
    }
    assert_eq!(
        s.quota_used_fresh("bot", &[charge("loose", 100)])
            .await
            .unwrap(),
        vec![9]
    );
    assert!(s.decision("l3").await.unwrap().is_none());
    assert_eq!(s.verify_audit().await.unwrap(), Ok(19));
}

/// A batch of audit records binding more values than one PostgreSQL statement takes (65,535)
/// is written statement by statement, all of it, and the chain verifies.
async fn a_batch_too_large_for_one_statement(backend: Backend) {
    let db = TestDb::new(backend).await;
    let s = &db.store;
    // 18 values a record.
    let n = 3_700;
    let audit = (0..n).map(|_| record("decision", "bot")).collect();
    s.commit(Change {
        writes: vec![],
        audit,
    })
    .await
    .unwrap();
    assert_eq!(s.verify_audit().await.unwrap(), Ok(n));
    assert_eq!(s.audit_head().await.unwrap().0, n);
}

async fn a_closed_store_is_unavailable(backend: Backend) {
    let db = TestDb::new(backend).await;
    db.store.close().await;
    assert!(db.store.is_closed());
    let err = commit(
        &db.store,
        vec![Write::Identity(IdentityWrite::InsertAgent(agent("bot", 1)))],
    )
    .await
    .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(matches!(
        db.store.agent("bot").await.unwrap_err(),
        StoreError::Unavailable(_)
    ));
    // The decision path's read, on connections outside the pool, closes with it.
    let activity = db
        .store
        .activity("bot", "deploy", "production", "payments", 0, 100)
        .await;
    assert!(
        matches!(activity, Err(StoreError::Unavailable(_))),
        "{activity:?}"
    );
}

/// The writer and its flusher run on a thread of their own, with connections of their own: a
/// commit needs nothing of the runtime the store was opened on, whose workers are the
/// requests'. Here that runtime's one thread is held up until a write made from another
/// runtime has been answered (or for 30 s, which fails the test: the write waited for it).
async fn the_writer_commits_while_the_stores_runtime_is_busy(backend: Backend) {
    let (opened, store) = std::sync::mpsc::channel();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let (finish, finished) = tokio::sync::oneshot::channel::<()>();
    let service = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let db = runtime.block_on(TestDb::new(backend));
        opened.send(db.store.clone()).unwrap();
        // Blocking inside the runtime's one thread: none of its tasks runs meanwhile.
        let on_time =
            runtime.block_on(async { released.recv_timeout(Duration::from_secs(30)).is_ok() });
        // Then it runs again (a writer on it could then commit, and the test end), and what
        // was committed is read through the store's own connections, which are this runtime's.
        runtime.block_on(async {
            finished.await.unwrap();
            assert_eq!(db.store.agent("bot").await.unwrap().unwrap().tier, 1);
            assert_eq!(db.store.verify_audit().await.unwrap().unwrap(), 1);
        });
        drop(db);
        on_time
    });
    let store = store.recv().unwrap();
    store
        .commit(Change {
            writes: vec![Write::Identity(IdentityWrite::InsertAgent(agent("bot", 1)))],
            audit: vec![record("agent.created", "bot")],
        })
        .await
        .unwrap();
    let _ = release.send(());
    drop(store);
    finish.send(()).unwrap();
    assert!(
        service.join().unwrap(),
        "the commit was answered only once the store's runtime was free"
    );
}

/// On PostgreSQL a decision's answer and an audit record, compressed once their row passes about
/// 2 KB, are compressed with lz4 (migration 0027; this server has it): pglz took 14% of the
/// database's CPU under load (BENCHMARKS.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_compresses_answers_and_records_with_lz4() {
    let db = TestDb::new(Backend::Postgres).await;
    let long = "tier 2 may deploy to staging; ".repeat(200);
    let mut d = decision("d1", "bot", Verdict::Allow, NOW);
    d.answer = serde_json::json!({ "reasons": long }).to_string();
    let mut audit = record("decision", "bot");
    audit.details = Some(serde_json::json!({ "reasons": long }).into());
    db.store
        .commit(Change {
            writes: vec![Write::Decision(DecisionWrite::InsertDecision(d))],
            audit: vec![audit],
        })
        .await
        .unwrap();
    let pool = db.raw_pool().await;
    let methods: (String, String) = sqlx::query_as(
        "SELECT pg_column_compression(answer), \
         (SELECT pg_column_compression(record) FROM audit_events ORDER BY seq DESC LIMIT 1) \
         FROM decisions WHERE id = 'd1'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(methods, ("lz4".to_string(), "lz4".to_string()));
    pool.close().await;
}

/// A checkpoint beside a writer that never stops cannot catch up with it, and SQLite's WAL
/// starts again from its beginning only once one has: the writer checkpoints the WAL itself, so
/// the log stays a few megabytes however long the load lasts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_wal_stays_bounded_while_the_writer_never_stops() {
    let db = TestDb::new(Backend::Sqlite).await;
    let wal = db._dir.as_ref().unwrap().path().join("warden.db-wal");
    let padding = "x".repeat(8 * 1024);
    // All at once, so the writer commits batch after batch with no pause between them.
    let commits = (0..4096).map(|i| {
        let mut d = decision(&format!("d-{i:05}"), "bot", Verdict::Allow, NOW + i);
        d.request = format!(r#"{{"padding":"{padding}"}}"#);
        commit(
            &db.store,
            vec![Write::Decision(DecisionWrite::InsertDecision(d))],
        )
    });
    for result in futures::future::join_all(commits).await {
        result.unwrap();
    }
    // 32 MB of requests went through the log; it restarted every 1,000 pages (4 MB).
    let size = std::fs::metadata(&wal).unwrap().len();
    assert!(size < 16 << 20, "the WAL grew to {size} bytes");
    let pool = db.raw_pool().await;
    let decisions: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM decisions")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(decisions, 4096);
}
