//! The two sides of the comparison, prepared once: Cedar's `is_authorized` over a 20-policy
//! set equivalent to Warden's built-in tiers, and Warden's in-process decision pipeline with
//! the three reference plugins loaded. `benches/compare.rs` times them.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use cedar_policy::{
    Authorizer, Context, Decision, Entities, EntityUid, PolicySet, Request, Response,
};
use serde_json::json;
use warden_core::decision::{DecisionRequest, Inputs, Judgement, Subject, judge, validate};
use warden_core::identity::{Agent, Caller, Role};
use warden_core::plugin::{AnomalyContext, Assessment, PluginAction, RecentActivity};
use warden_core::policy::{CompiledPolicy, Policy};
use warden_core::quotas::QuotaPlan;
use warden_core::records::Baseline;
use warden_plugin_host::{MemoryReset, PluginHost};

/// Warden's default tiers and guard rails as Cedar: tier grants as permits on the principal's
/// tier, the action, the environment and the risk; suspensions, on-behalf-of limits, approvals,
/// team ownership and cost as forbids. Twenty policies.
pub const POLICIES: &str = r#"
permit(principal, action == Action::"read", resource);
permit(principal, action in [Action::"run_tests", Action::"docs_update"], resource) when { principal.tier >= 1 && context.risk <= 0 };
permit(principal, action, resource) when { principal.tier >= 1 && context.environment == "dev" && context.risk <= 1 };
permit(principal, action, resource) when { principal.tier >= 1 && context.environment == "staging" && context.approved };
permit(principal, action, resource) when { principal.tier >= 2 && context.environment == "dev" && context.risk <= 2 };
permit(principal, action, resource) when { principal.tier >= 2 && context.environment == "staging" && context.risk <= 1 };
permit(principal, action, resource) when { principal.tier >= 2 && context.approved };
permit(principal, action, resource) when { principal.tier >= 3 && context.environment == "production" && context.risk <= 0 };
permit(principal, action, resource) when { principal.tier >= 4 && context.environment == "production" && context.risk <= 1 };
permit(principal in Team::"platform", action == Action::"config_change", resource) when { context.environment == "staging" };
forbid(principal, action, resource) when { principal.status == "suspended" };
forbid(principal, action, resource) when { principal has parent_status && principal.parent_status == "suspended" };
forbid(principal, action, resource) when { principal has parent_tier && principal.parent_tier < principal.tier && context.risk >= 2 && !context.approved };
forbid(principal, action, resource) when { context.has_human && !context.human_allows };
forbid(principal, action == Action::"security_policy_change", resource) when { context.environment == "production" && !context.approved };
forbid(principal, action == Action::"db_migration", resource) when { context.environment == "production" && !context.approved };
forbid(principal, action == Action::"infra_delete", resource) when { context.environment == "production" && !context.approved };
forbid(principal, action, resource) when { context.breaking && principal.tier < 3 && !context.approved };
forbid(principal, action, resource) when { context.estimated_cost_cents > 100000 };
forbid(principal, action, resource) when { resource.owner_team != principal.team && context.environment == "production" && !context.approved };
"#;

/// Cedar's side: the policies, entities and request, parsed and built once.
pub struct Cedar {
    policies: PolicySet,
    entities: Entities,
    request: Request,
    authorizer: Authorizer,
}

impl Cedar {
    /// Parses the policy set and builds the request (a tier-3 agent deploying its team's
    /// service to production at low risk: allowed).
    pub fn new() -> Cedar {
        let policies = PolicySet::from_str(POLICIES).expect("policies parse");
        assert_eq!(policies.policies().count(), 20);
        let entities = Entities::from_json_value(
            json!([
                {"uid": {"type": "Agent", "id": "deploy-bot"}, "attrs": {"tier": 3, "team": "payments", "status": "active"}, "parents": [{"type": "Team", "id": "payments"}]},
                {"uid": {"type": "Team", "id": "payments"}, "attrs": {}, "parents": []},
                {"uid": {"type": "Service", "id": "payments"}, "attrs": {"owner_team": "payments"}, "parents": []}
            ]),
            None,
        )
        .expect("entities");
        let context = Context::from_json_value(
            json!({"environment": "production", "risk": 0, "breaking": false, "approved": false, "estimated_cost_cents": 40, "has_human": false, "human_allows": true}),
            None,
        )
        .expect("context");
        let uid = |s: &str| EntityUid::from_str(s).expect("uid");
        let request = Request::new(
            uid(r#"Agent::"deploy-bot""#),
            uid(r#"Action::"deploy""#),
            uid(r#"Service::"payments""#),
            context,
            None,
        )
        .expect("request");
        let authorizer = Authorizer::new();
        assert_eq!(
            authorizer
                .is_authorized(&request, &policies, &entities)
                .decision(),
            Decision::Allow
        );
        Cedar {
            policies,
            entities,
            request,
            authorizer,
        }
    }

    /// One check.
    pub fn is_authorized(&self) -> Response {
        self.authorizer
            .is_authorized(&self.request, &self.policies, &self.entities)
    }
}

impl Default for Cedar {
    fn default() -> Cedar {
        Cedar::new()
    }
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

/// Loads one reference plugin, built from the workspace, into the host.
fn load(host: &PluginHost, krate: &str, kind: &str) {
    let target = workspace().join("target/plugins");
    let component = warden_plugin_host::build::build_crate(
        &workspace().join("plugins").join(krate),
        Some(&target),
    )
    .expect("build a reference plugin");
    let manifest = toml::from_str(&format!(
        "name = \"{krate}\"\nversion = \"0.1.0\"\nkind = \"{kind}\""
    ))
    .expect("manifest");
    host.install(
        host.runtime()
            .load(manifest, &std::fs::read(component).expect("component"))
            .expect("load"),
    );
}

/// Warden's side: the reference plugins built and loaded, and a prepared request.
pub struct Warden {
    host: PluginHost,
    rt: tokio::runtime::Runtime,
    policy: CompiledPolicy,
    caller: Caller,
    request: DecisionRequest,
    subject: Subject,
    context: AnomalyContext,
    now: i64,
}

impl Warden {
    /// How used plugin memories are reset (`auto` resolved).
    pub fn memory_reset(&self) -> MemoryReset {
        self.host.runtime().memory_reset()
    }

    /// Builds the three reference plugins from the workspace and loads them, with the
    /// default number of spare instances.
    pub fn new() -> Warden {
        Warden::with_spares(warden_plugin_host::spares::DEFAULT_PER_PLUGIN)
    }

    /// As [`Warden::new`], keeping `per_plugin` spare instances (0: every call instantiates).
    /// `WARDEN_BENCH_MEMORY_RESET=copy|scan` sets `[plugins] memory_reset` (default `auto`), to
    /// compare the two ways in one build.
    pub fn with_spares(per_plugin: usize) -> Warden {
        let reset = match std::env::var("WARDEN_BENCH_MEMORY_RESET").as_deref() {
            Ok("copy") => MemoryReset::Copy,
            Ok("scan") => MemoryReset::Scan,
            _ => MemoryReset::Auto,
        };
        let host = PluginHost::configured(per_plugin, reset).expect("plugin host");
        load(&host, "action-classifier", "classifier");
        load(&host, "baseline-anomaly", "anomaly_detector");
        load(&host, "canary-rollback", "rollback_trigger");
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let policy = CompiledPolicy::new(Policy::default()).expect("policy");
        let caller = Caller {
            token_id: "tok_1".into(),
            role: Role::Agent,
            subject: Some("deploy-bot".into()),
        };
        let request: DecisionRequest = serde_json::from_value(json!({
            "action": {"class": "deploy", "environment": "production", "service": "payments", "estimated_cost_usd": 0.4,
                "change": {"files_changed": 4, "lines_added": 120, "lines_deleted": 30, "paths": ["src/api.rs", "src/retry.rs"]},
                "reasoning": "roll out the retry fix"}
        }))
        .expect("request");
        let subject = Subject {
            agent: std::sync::Arc::new(Agent::new("deploy-bot", "payments", 3)),
            parents: vec![],
            human: None,
            approval: None,
        };
        let now = 1_764_000_000_000_000;
        let context = AnomalyContext {
            baseline: Baseline {
                team: "payments".into(),
                service: "payments".into(),
                class: "deploy".into(),
                environment: "production".into(),
                sample_size: 800,
                warm: true,
                rate_per_hour: 1.5,
                change_size_median: 140.0,
                change_size_mad: 60.0,
                hour_of_week_counts: (0..168)
                    .map(|h| if (h % 24) >= 8 && (h % 24) < 19 { 9 } else { 1 })
                    .collect(),
                seen_combinations: vec![
                    "deploy/production/payments".into(),
                    "deploy/staging/payments".into(),
                ],
                targets_tracked: false,
                targets_seen: vec![],
                humans: 6,
                organisation: false,
                updated_at: 0,
            },
            activity: RecentActivity {
                actions_last_hour: 2,
                seen_combinations: vec!["deploy/production/payments".into()],
            },
        };
        Warden {
            host,
            rt,
            policy,
            caller,
            request,
            subject,
            context,
            now,
        }
    }

    /// The whole pipeline: validate, the plugins (classifier and anomaly detector, each in a
    /// fresh instance), permission, violation handling, the answer, the decision row and
    /// audit record.
    pub fn decide(&self) -> Judgement {
        validate(&self.policy, &self.request.action).expect("valid");
        let assessment = self.assess();
        self.judge(assessment)
    }

    /// Plugin calls so far that ran in a spare instance, and that instantiated on the spot.
    pub fn instances(&self) -> (u64, u64) {
        let c = self.host.runtime().instance_counters();
        (c.spare.get(), c.on_demand.get())
    }

    /// The plugins' part alone.
    pub fn assess(&self) -> Assessment {
        let table = self.policy.table_risk("deploy", "production", false);
        let build = || {
            PluginAction::new(
                &self.request.action,
                &self.subject.agent,
                table,
                self.now,
                &jiff::tz::TimeZone::UTC,
            )
        };
        self.rt
            .block_on(self.host.assess("deploy", build, || {
                std::future::ready(Ok::<_, std::convert::Infallible>(Some(
                    self.context.clone(),
                )))
            }))
            .expect("assess")
    }

    /// The pipeline around the plugins, given their assessment.
    pub fn judge(&self, assessment: Assessment) -> Judgement {
        let quotas = QuotaPlan::default();
        judge(Inputs {
            policy: &self.policy,
            caller: &self.caller,
            subject: &self.subject,
            request: &self.request,
            now: self.now,
            decision_id: uuid::Uuid::now_v7().to_string(),
            plugins: assessment,
            quotas: &quotas,
            on_record: &[],
        })
        .expect("judge")
    }
}

impl Default for Warden {
    fn default() -> Warden {
        Warden::new()
    }
}
