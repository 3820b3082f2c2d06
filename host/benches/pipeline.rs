//! The in-process decision pipeline, without HTTP or storage: validation, classification,
//! permission, violation handling, and building the answer, decision row and audit record.
//!
//! Run: `cargo bench -p warden --bench pipeline`

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;
use warden::engine::{DecisionRequest, Subject, judge, validate};
use warden::identity::{Agent, AgentStatus, Caller, Human, Role};
use warden::policy::{CompiledPolicy, Policy};

fn agent(id: &str, tier: u8) -> Agent {
    Agent {
        id: id.into(),
        tool: "claude-code".into(),
        model: "claude-opus".into(),
        team: "payments".into(),
        sponsor: "alice".into(),
        tier,
        ceiling: 4,
        parent: None,
        status: AgentStatus::Active,
        shadow: false,
        created_at: String::new(),
        updated_at: String::new(),
        version: 1,
    }
}

fn pipeline(c: &mut Criterion) {
    let policy = CompiledPolicy::new(Policy::default()).unwrap();
    let caller = Caller { token_id: "tok_1".into(), role: Role::Agent, subject: Some("deploy-bot".into()) };
    let request: DecisionRequest = serde_json::from_value(json!({
        "action": {
            "class": "deploy", "environment": "production", "service": "payments",
            "resources": ["k8s/payments/deployment"],
            "change": {"files_changed": 4, "lines_added": 120, "lines_deleted": 30, "paths": ["src/api.rs", "src/db.rs"]},
            "estimated_cost_usd": 0.4, "reasoning": "roll out the retry fix"
        }
    }))
    .unwrap();
    let alone = Subject { agent: agent("deploy-bot", 3), parents: vec![], human: None };
    let human: Human =
        serde_json::from_value(json!({"id": "bob", "team": "payments", "grants": [{"class": "*", "environment": "*", "max_risk": "high"}]})).unwrap();
    let chatops = Subject { agent: agent("deploy-bot", 4), parents: vec![agent("orchestrator", 4)], human: Some(human) };

    c.bench_function("decide_in_process/agent_alone", |b| {
        b.iter(|| {
            validate(&policy, &request.action).unwrap();
            judge(&policy, &caller, &alone, request.clone(), 1_764_000_000_000_000, uuid::Uuid::now_v7().to_string()).unwrap()
        })
    });
    c.bench_function("decide_in_process/on_behalf_with_parent", |b| {
        b.iter(|| {
            validate(&policy, &request.action).unwrap();
            judge(&policy, &caller, &chatops, request.clone(), 1_764_000_000_000_000, uuid::Uuid::now_v7().to_string()).unwrap()
        })
    });
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
