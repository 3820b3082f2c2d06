//! A database written by the release before the crates split (`fixtures/before-crates.sqlite`,
//! made by `fixtures/make-before-crates.sh` with that release's binary through its API) opens
//! with this store: the schema and every stored name read back, the audit chain it wrote
//! verifies, and new changes extend it.

use std::time::Duration;

use warden_core::audit::{Actor, AuditRecord};
use warden_core::decision::Verdict;
use warden_core::policy::{RiskLevel, ViolationMode};
use warden_core::records::{ApprovalStatus, DecisionRow, OutcomeStatus, ViolationStatus};
use warden_store::{
    AuditFilter, AuditPageRequest, Change, DecisionWrite, Store, StoreOptions, ViolationFilter,
    Write,
};

#[tokio::test]
async fn a_database_from_the_previous_release_opens_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("warden.db");
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/before-crates.sqlite");
    std::fs::copy(&fixture, &file).unwrap();
    let url = format!("sqlite://{}?mode=rwc", file.display());
    let options = StoreOptions {
        url,
        max_connections: 2,
        max_batch: 16,
        cache_ttl: Duration::ZERO,
        share_writer_core: true,
        coalesce_wal_writes: true,
    };
    let s = Store::open(&options).await.unwrap();

    let bot = s.agent("fixture-bot").await.unwrap().unwrap();
    assert_eq!(
        (bot.tier, bot.team.as_str(), bot.sponsor.as_str()),
        (2, "payments", "alice")
    );
    assert!(
        bot.trust_score.is_some(),
        "the reported outcome moved its noted score"
    );
    let alice = s.human("alice").await.unwrap().unwrap();
    assert!(alice.covers("deploy", "production", "payments", RiskLevel::Critical));
    assert_eq!(
        s.tokens().await.unwrap().len(),
        4,
        "the bootstrap admin, two agents' and an approver's"
    );

    let approvals = s
        .approvals(None, Some("fixture-bot"), None, 10, 0)
        .await
        .unwrap()
        .items;
    let statuses: Vec<ApprovalStatus> = approvals.iter().map(|a| a.status).collect();
    assert_eq!(
        statuses,
        [ApprovalStatus::Consumed, ApprovalStatus::Pending]
    );
    let used = &approvals[0];
    assert_eq!(
        (used.approved_by.as_slice(), used.decided_by.as_deref()),
        (&["alice".to_string()][..], Some("alice"))
    );
    let consumed_by = used.consumed_by.clone().expect("the approval was used");
    let (agent, answer) = s.decision(&consumed_by).await.unwrap().unwrap();
    assert_eq!(agent, "fixture-bot");
    assert!(answer.contains(r#""verdict":"allow""#), "{answer}");

    let violations = s
        .violations(&ViolationFilter {
            agent: Some("observer".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(violations.len(), 1);
    assert_eq!(
        (
            violations[0].mode,
            violations[0].status,
            violations[0].reason.as_str()
        ),
        (ViolationMode::Block, ViolationStatus::Open, "no_grant")
    );

    let reported = s
        .audit(&AuditPageRequest {
            filter: AuditFilter {
                event_type: Some("outcome.reported".into()),
                ..Default::default()
            },
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    let decision_id = reported[0].record.decision_id.clone().unwrap();
    let outcome = s.outcome(&decision_id).await.unwrap().unwrap();
    assert_eq!(
        (outcome.outcome, outcome.actual_cost_usd),
        (Some(OutcomeStatus::Succeeded), Some(1.0))
    );
    assert!(!s.trust_totals("fixture-bot").await.unwrap().is_empty());

    // The chain the previous release wrote verifies, and this store extends it.
    let all = s
        .audit(&AuditPageRequest {
            filter: AuditFilter {
                ..Default::default()
            },
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    let written = all.len() as i64;
    assert!(written >= 12, "{written} records");
    assert_eq!(s.verify_audit().await.unwrap(), Ok(written));
    let decision = DecisionRow {
        id: "after-the-split".into(),
        at: 1_900_000_000_000_000,
        agent_id: "fixture-bot".into(),
        on_behalf_of: None,
        class: "read".into(),
        environment: "dev".into(),
        service: "payments".into(),
        verdict: Verdict::Allow,
        shadow_verdict: None,
        risk_level: RiskLevel::Low,
        tier: 2,
        policy_version: "p-new".into(),
        request: "{}".into(),
        answer: "{}".into(),
        outcome_due_at: None,
        notable: false,
    };
    let mut record = AuditRecord::change(
        Actor::warden(),
        "decision",
        "service:payments".into(),
        serde_json::json!({}),
        1_900_000_000_000_000,
    );
    record.decision_id = Some("after-the-split".into());
    s.commit(Change {
        writes: vec![Write::Decision(DecisionWrite::InsertDecision(decision))],
        audit: vec![record],
    })
    .await
    .unwrap();
    assert_eq!(s.verify_audit().await.unwrap(), Ok(written + 1));
    s.close().await;
}
