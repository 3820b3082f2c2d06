//! The in-process decision pipeline, without HTTP or storage: validation, classification,
//! permission, violation handling, and building the answer, decision row and audit record.
//!
//! Run: `cargo bench -p warden --bench pipeline`
#![allow(missing_docs)] // criterion_main! writes an undocumented `main`.

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;
use warden::decision::{DecisionRequest, Inputs, Judgement, Subject, judge, validate};
use warden::delegation::{HumanProof, OnBehalfOf};
use warden::identity::{Agent, Caller, Human, Role};
use warden::plugin::{Assessment, PluginAction};
use warden::policy::{CompiledPolicy, Policy};
use warden::quotas::QuotaPlan;

fn agent(id: &str, tier: u8) -> Agent {
    Agent::new(id, "payments", tier)
}

/// The pure stages for one request at a fixed time.
fn run(
    policy: &CompiledPolicy,
    caller: &Caller,
    subject: &Subject,
    request: &DecisionRequest,
    plugins: Assessment,
) -> Judgement {
    let quotas = QuotaPlan::default();
    let (now, decision_id) = (1_764_000_000_000_000, uuid::Uuid::now_v7().to_string());
    judge(Inputs {
        policy,
        caller,
        subject,
        request,
        now,
        decision_id,
        plugins,
        quotas: &quotas,
        on_record: &[],
    })
    .unwrap()
}

fn pipeline(c: &mut Criterion) {
    let policy = CompiledPolicy::new(Policy::default()).unwrap();
    let caller = Caller {
        token_id: "tok_1".into(),
        role: Role::Agent,
        subject: Some("deploy-bot".into()),
    };
    let request: DecisionRequest = serde_json::from_value(json!({
        "action": {
            "class": "deploy", "environment": "production", "service": "payments",
            "resources": ["k8s/payments/deployment"],
            "change": {"files_changed": 4, "lines_added": 120, "lines_deleted": 30, "paths": ["src/api.rs", "src/db.rs"]},
            "estimated_cost_usd": 0.4, "reasoning": "roll out the retry fix"
        }
    }))
    .unwrap();
    let alone = Subject {
        agent: Arc::new(agent("deploy-bot", 3)),
        parents: vec![],
        human: None,
        approval: None,
    };
    let human: Human =
        serde_json::from_value(json!({"id": "bob", "team": "payments", "grants": [{"class": "*", "environment": "*", "max_risk": "high"}]})).unwrap();
    let chatops = Subject {
        agent: Arc::new(agent("deploy-bot", 4)),
        parents: vec![Arc::new(agent("orchestrator", 4))],
        human: Some(OnBehalfOf {
            human: Arc::new(human),
            proof: HumanProof::Delegated("d1".into()),
        }),
        approval: None,
    };

    c.bench_function("decide_in_process/agent_alone", |b| {
        b.iter(|| {
            validate(&policy, &request.action).unwrap();
            run(&policy, &caller, &alone, &request, Default::default())
        })
    });
    c.bench_function("decide_in_process/on_behalf_with_parent", |b| {
        b.iter(|| {
            validate(&policy, &request.action).unwrap();
            run(&policy, &caller, &chatops, &request, Default::default())
        })
    });
}

/// The reference classifier in the real runtime: a fresh instance and one call per iteration,
/// then the pure pipeline with its opinion merged.
fn with_plugins(c: &mut Criterion) {
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| workspace.join("target"))
        .join("plugins");
    let component = warden::plugins::build::build_crate(
        &workspace.join("plugins/action-classifier"),
        Some(&target),
    )
    .expect("build the reference classifier");
    let bytes = std::fs::read(component).unwrap();
    let host = warden::plugins::PluginHost::new().unwrap();
    let manifest =
        toml::from_str("name = \"action-classifier\"\nversion = \"0.1.0\"\nkind = \"classifier\"")
            .unwrap();
    host.install(host.runtime().load(manifest, &bytes).unwrap());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let policy = CompiledPolicy::new(Policy::default()).unwrap();
    let caller = Caller {
        token_id: "tok_1".into(),
        role: Role::Agent,
        subject: Some("deploy-bot".into()),
    };
    let request: DecisionRequest = serde_json::from_value(json!({
        "action": {"class": "deploy", "environment": "production", "service": "payments",
            "change": {"files_changed": 4, "lines_added": 120, "lines_deleted": 30, "paths": ["src/api.rs", "db/migrations/0042.sql"]}}
    }))
    .unwrap();
    let subject = Subject {
        agent: Arc::new(agent("deploy-bot", 3)),
        parents: vec![],
        human: None,
        approval: None,
    };
    let plugin_action = PluginAction::new(
        &request.action,
        &subject.agent,
        warden::policy::RiskLevel::Low,
        1_764_000_000_000_000,
        &jiff::tz::TimeZone::UTC,
    );
    // Only a classifier is loaded, so the anomaly context is never asked for.
    let assess = || {
        host.assess(
            "deploy",
            || plugin_action.clone(),
            || std::future::ready(Err(warden::error::Error::internal("no detector loaded"))),
        )
    };
    c.bench_function("plugin/fresh_instance_and_classify", |b| {
        b.iter(|| rt.block_on(assess()).unwrap())
    });
    c.bench_function("decide_in_process/with_reference_classifier", |b| {
        b.iter(|| {
            validate(&policy, &request.action).unwrap();
            let assessment = rt.block_on(assess()).unwrap();
            run(&policy, &caller, &subject, &request, assessment)
        })
    });
}

/// A decision request's body read into a request, as the API reads it, against the same body
/// read with the field path tracked (how every body was read before: the path is kept now only
/// for a body that fails). The bodies are `scripts/bench-http`'s mix.
fn parse(c: &mut Criterion) {
    let mix = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scripts/bench/mix.lua"
    ))
    .expect("the benchmark mix");
    let bodies: Vec<String> = mix
        .lines()
        .filter_map(|l| {
            l.trim()
                .strip_prefix('\'')?
                .strip_suffix("',")
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(bodies.len(), 6, "the mix's bodies");
    c.bench_function("parse/decision_request_mix", |b| {
        b.iter(|| {
            for body in &bodies {
                warden::api::parse_json::<DecisionRequest>(body.as_bytes()).unwrap();
            }
        })
    });
    c.bench_function("parse/decision_request_mix_path_tracked", |b| {
        b.iter(|| {
            for body in &bodies {
                let mut de = serde_json::Deserializer::from_slice(body.as_bytes());
                let r: DecisionRequest = serde_path_to_error::deserialize(&mut de).unwrap();
                de.end().unwrap();
                std::hint::black_box(r);
            }
        })
    });
}

criterion_group!(benches, pipeline, with_plugins, parse);
criterion_main!(benches);
