//! The decision pipeline (DESIGN.md, "The decision pipeline").
//!
//! [`Engine::decide`] loads what a decision needs (the agent, its parent chain, the on-behalf-of
//! human), runs the pure [`judge`] stage, and commits the decision with its audit record in one
//! transaction before answering. `judge` does no I/O, so it is what the in-process benchmark
//! measures.
//!
//! Stages: 1 resolve the caller's agent · 2 validate · 3 classify (built-in table and classifier
//! plugins) · 4 anomaly (anomaly-detector plugins against the human baseline) · 5 permission (tier grants ∩
//! on-behalf-of human) · 6 quotas (later) · 7 violation handling · 8 approval (later) · 9 commit.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::approvals::{self, Presented};
use crate::audit::{Actor, AuditRecord, RawJson};
use crate::clock::{SharedClock, format_micros};
use crate::error::{Error, Kind, Result};
use crate::identity::{Agent, AgentStatus, Caller, Human, Role};
use crate::metrics::Metrics;
use crate::outbox::{Event, Outbox};
use crate::plugins::{AnomalyContext, AnomalyFinding, Assessment, PluginHost, PluginReport, runtime::bindings::types as wit};
use crate::policy::{CompiledPolicy, Permission, PolicyMode, RiskLevel, ViolationMode};
use crate::quotas::{Headroom, QuotaPlan};
use crate::store::{ApprovalRow, Baseline, Change, DecisionRow, EvidenceDelta, Store, ViolationRow, Write};
use crate::tiers::{Controller, Trigger};

/// How deep a parent chain may go before Warden refuses it.
pub const MAX_PARENT_DEPTH: usize = 8;

/// `POST /v1/decisions`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionRequest {
    /// The agent; may be omitted when an agent's own token calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// The human the agent acts for (ChatOps): the agent gets at most that human's rights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_behalf_of: Option<String>,
    /// An approval to consume for this exact action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_id: Option<String>,
    /// What the agent wants to do.
    pub action: Action,
}

/// The action an agent asks about.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Action {
    /// Action class (`deploy`, `db_migration`, …); see `GET /v1/policy`.
    pub class: String,
    /// Target environment (`dev`, `staging`, `production`, …).
    pub environment: String,
    /// Target service.
    pub service: String,
    /// Resources touched.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    /// The change, for code and config changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change: Option<ChangeSummary>,
    /// Estimated cost in US dollars.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_cost_usd: Option<f64>,
    /// Why the agent wants to do this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<String>,
    /// The agent's plan (text or structured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub plan: Option<serde_json::Value>,
    /// Free-form labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

/// The size and shape of a code or config change.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeSummary {
    /// Files changed.
    pub files_changed: u32,
    /// Lines added.
    pub lines_added: u32,
    /// Lines deleted.
    pub lines_deleted: u32,
    /// Paths changed.
    #[serde(default)]
    pub paths: Vec<String>,
    /// Whether the change breaks other services' contracts.
    #[serde(default)]
    pub breaking: bool,
}

/// The verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Go ahead.
    Allow,
    /// Wait for a human's approval.
    RequireApproval,
    /// Do not.
    Deny,
}

impl Verdict {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::RequireApproval => "require_approval",
            Verdict::Deny => "deny",
        }
    }
}

/// Merged risk.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Risk {
    /// Highest level of the built-in table and every classifier.
    pub level: RiskLevel,
    /// 0–100.
    pub score: u8,
    /// What made it risky.
    pub categories: Vec<String>,
}

/// Where to wait for a human's approval.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ApprovalRef {
    /// Approval id: re-submit the same action with `approval_id` once it is approved.
    pub id: String,
    /// When it lapses undecided (RFC 3339).
    pub expires_at: String,
    /// Where to watch it.
    pub url: String,
}

/// The anomaly stage's result.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Anomaly {
    /// The highest finding's severity, 0–100 (0 when nothing is unusual).
    pub severity: u8,
    /// Every finding of every detector.
    pub findings: Vec<AnomalyFinding>,
}

/// One reason behind a verdict.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Reason {
    /// Stable code.
    pub code: String,
    /// For humans.
    pub text: String,
}

/// Something the agent or platform must do after an allowed action.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Obligation {
    /// `report_outcome`, `await_approval`, `rollback_guard`, …
    pub kind: String,
    /// For humans.
    pub detail: String,
    /// When it is due (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_at: Option<String>,
}

/// The answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DecisionAnswer {
    /// Id of the recorded decision.
    pub decision_id: String,
    /// The verdict to act on.
    pub verdict: Verdict,
    /// In shadow mode: the verdict enforcement would have given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow_verdict: Option<Verdict>,
    /// Merged risk.
    pub risk: Risk,
    /// What the anomaly detectors found, when any ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anomaly: Option<Anomaly>,
    /// Why.
    pub reasons: Vec<Reason>,
    /// What must follow.
    pub obligations: Vec<Obligation>,
    /// The approval to wait for, with a `require_approval` verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalRef>,
    /// Effective tier at decision time.
    pub tier: u8,
    /// The agent's own tier (the effective one may be capped by a parent).
    pub agent_tier: u8,
    /// Trust score at decision time, once the trust engine has evidence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_score: Option<f64>,
    /// The quotas the action drew on (or would have): limit, use and what is left in the window.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quotas: Vec<Headroom>,
    /// Policy version.
    pub policy_version: String,
    /// Each plugin that ran: `name@version`, its verdict, fuel used and duration.
    pub plugins: Vec<PluginReport>,
    /// Decision time (RFC 3339).
    pub decided_at: String,
}

/// Everything `judge` needs, loaded by `decide`.
#[derive(Debug, Clone)]
pub struct Subject {
    /// The agent.
    pub agent: Agent,
    /// Its parents, nearest first.
    pub parents: Vec<Agent>,
    /// The on-behalf-of human.
    pub human: Option<Human>,
    /// The approval presented with the request, checked against it.
    pub approval: Option<Presented>,
}

/// What `judge` produces: the answer and the change that records it.
#[derive(Debug, Clone)]
pub struct Judgement {
    /// The answer to send once `change` is committed.
    pub answer: DecisionAnswer,
    /// The decision row, the violation if any, and the audit record.
    pub change: Change,
    /// Events for the outbox, to be written with `change`.
    pub events: Vec<Event>,
}

/// The decision engine.
#[derive(Debug, Clone)]
pub struct Engine {
    store: Store,
    policy: Arc<CompiledPolicy>,
    clock: SharedClock,
    metrics: Arc<Metrics>,
    plugins: Arc<PluginHost>,
    outbox: Arc<Outbox>,
    tiers: Controller,
}

impl Engine {
    /// An engine over a store and a policy.
    pub fn new(store: Store, policy: Arc<CompiledPolicy>, clock: SharedClock, metrics: Arc<Metrics>, plugins: Arc<PluginHost>, outbox: Arc<Outbox>) -> Engine {
        let tiers = Controller::new(store.clone(), policy.clone(), clock.clone(), outbox.clone());
        Engine { store, policy, clock, metrics, plugins, outbox, tiers }
    }

    /// The tier controller.
    pub fn tiers(&self) -> &Controller {
        &self.tiers
    }

    /// The notification outbox.
    pub fn outbox(&self) -> &Arc<Outbox> {
        &self.outbox
    }

    /// The loaded plugins.
    pub fn plugins(&self) -> &Arc<PluginHost> {
        &self.plugins
    }

    /// The effective policy.
    pub fn policy(&self) -> &Arc<CompiledPolicy> {
        &self.policy
    }

    /// Decides, records durably, and answers.
    pub async fn decide(&self, caller: &Caller, request: DecisionRequest) -> Result<DecisionAnswer> {
        let started = Instant::now();
        let agent_id = resolve_agent(caller, &request)?;
        // Validate before touching the store: bad input is the caller's problem, whatever the store's state.
        validate(&self.policy, &request.action)?;
        let agent = self.store.agent(&agent_id).await?.ok_or_else(|| Error::not_found("unknown_agent", format!("no agent `{agent_id}`")).at("agent"))?;
        let parents = self.parents(&agent).await?;
        let human = match &request.on_behalf_of {
            Some(id) => Some(self.store.human(id).await?.ok_or_else(|| Error::not_found("unknown_human", format!("no human `{id}`")).at("on_behalf_of"))?),
            None => None,
        };
        let now = self.clock.now_micros();
        let approval = match &request.approval_id {
            Some(id) => {
                let hash = approvals::action_hash(&bound(&request.action, request.on_behalf_of.as_deref()));
                Some(approvals::present(self.store.approval(id, now).await?, id, &agent.id, &hash))
            }
            None => None,
        };
        // Stages 3 and 4 (plugins): classifiers, then anomaly detectors, in fresh instances.
        let action = &request.action;
        let breaking = action.change.as_ref().is_some_and(|c| c.breaking);
        let table = self.policy.table_risk(&action.class, &action.environment, breaking);
        let assessment = self.plugins.assess(&action.class, || plugin_action(action, &agent, table, now), || self.anomaly_context(action, &agent, now)).await?;
        let subject = Subject { agent, parents, human, approval };
        let decision_id = uuid::Uuid::now_v7().to_string();
        // Stage 6 needs the quotas' counts; the charge re-checks them when it commits.
        let mut plan = self.quota_plan(&subject.agent, &request.action, now).await?;
        let mut again = (!plan.charges.is_empty()).then(|| (request.clone(), assessment.clone()));
        let mut judgement = judge(&self.policy, caller, &subject, request, now, decision_id.clone(), assessment, &plan)?;
        for attempt in 1.. {
            match self.record(&subject, judgement, now).await {
                // Other decisions took what was left of a quota meanwhile: judge again on the counts now.
                Err(e) if e.code == "quota_exceeded" && attempt < 3 && again.is_some() => {
                    let (request, assessment) = again.take().expect("checked");
                    plan.used = self.store.quota_used_fresh(&subject.agent.id, &plan.charges).await?;
                    if plan.charges.iter().zip(&plan.used).all(|(c, used)| c.fits(*used)) {
                        // Counts can fall (an actual cost below its estimate): the action may fit after all.
                        again = Some((request.clone(), assessment.clone()));
                    }
                    judgement = judge(&self.policy, caller, &subject, request, now, decision_id.clone(), assessment, &plan)?;
                }
                Err(e) => return Err(e),
                Ok(answer) => {
                    self.metrics.decision(answer.verdict, started.elapsed());
                    return Ok(answer);
                }
            }
        }
        unreachable!("the loop returns")
    }

    /// The quotas an action draws on, with their counts now (none in shadow mode, or when quotas are off).
    async fn quota_plan(&self, agent: &Agent, action: &Action, now: i64) -> Result<QuotaPlan> {
        let q = &self.policy.policy.quotas;
        if !q.enabled || agent.shadow || self.policy.policy.mode == PolicyMode::Shadow {
            return Ok(QuotaPlan::default());
        }
        let what = (action.class.as_str(), action.environment.as_str(), action.service.as_str());
        let charges = crate::quotas::charges(q, &self.policy.quota_zone, agent, what, action.estimated_cost_usd, now);
        let mut used = self.store.quota_used(&agent.id, &charges).await?;
        // Never deny on a hint: another replica may have corrected a count downwards.
        if charges.iter().zip(&used).any(|(c, u)| !c.fits(*u)) {
            used = self.store.quota_used_fresh(&agent.id, &charges).await?;
        }
        Ok(QuotaPlan { charges, used })
    }

    /// Commits a judgement with its outbox deliveries and trust evidence, then lets the tier
    /// controller react to a violation.
    async fn record(&self, subject: &Subject, mut judgement: Judgement, now: i64) -> Result<DecisionAnswer> {
        let deliveries: Vec<Write> = judgement.events.iter().flat_map(|e| self.outbox.writes(e, now)).collect();
        let notify = !deliveries.is_empty();
        judgement.change.writes.extend(deliveries);
        // (A quota overrun is minor: evidence, but nothing for the controller to act on at once.)
        let violation = judgement.change.writes.iter().find_map(|w| match w {
            Write::InsertViolation(v) if v.reason != "quota_exceeded" => Some(Trigger::Violation { reason: v.reason.clone(), class: v.class.clone() }),
            _ => None,
        });
        // A violation is trust evidence: the agent's noted score moves with it.
        if judgement.change.writes.iter().any(|w| matches!(w, Write::AddEvidence(_))) {
            judgement.change.writes.push(self.tiers.note(&subject.agent));
        }
        self.store.commit(judgement.change).await?;
        if notify {
            self.outbox.notify();
        }
        // A violation may be a hard trigger: the tier narrows before the agent's next request.
        if let Some(trigger) = violation
            && let Err(e) = self.tiers.review(&subject.agent.id, trigger).await
        {
            tracing::warn!(agent = %subject.agent.id, error = %e.message, "tier review after a violation failed");
        }
        Ok(judgement.answer)
    }

    /// What anomaly detectors compare the action with: the human baseline of the agent's team
    /// for this kind of action (cold when none is computed yet) and the agent's last hour.
    async fn anomaly_context(&self, action: &Action, agent: &Agent, now: i64) -> Result<AnomalyContext> {
        let (class, env, service) = (&action.class, &action.environment, &action.service);
        let combination = format!("{class}/{env}/{service}");
        let activity = self.store.activity(&agent.id, class, env, service, now - 3_600_000_000).await?;
        let baseline = self.store.baseline(&agent.team, service, class, env).await?.unwrap_or_else(|| Baseline {
            team: agent.team.clone(),
            service: service.clone(),
            class: class.clone(),
            environment: env.clone(),
            ..Baseline::default()
        });
        Ok(AnomalyContext {
            baseline: wit::Baseline {
                team: baseline.team,
                service: baseline.service,
                class: baseline.class,
                environment: baseline.environment,
                sample_size: baseline.sample_size,
                warm: baseline.warm,
                rate_per_hour: baseline.rate_per_hour,
                change_size_median: baseline.change_size_median,
                change_size_mad: baseline.change_size_mad,
                hour_of_week_counts: baseline.hour_of_week_counts,
                seen_combinations: baseline.seen_combinations,
            },
            activity: wit::Activity {
                // Including this one.
                actions_last_hour: activity.recent.saturating_add(1),
                seen_combinations: if activity.done_before { vec![combination] } else { Vec::new() },
            },
        })
    }

    async fn parents(&self, agent: &Agent) -> Result<Vec<Agent>> {
        let mut parents: Vec<Agent> = Vec::new();
        let mut next = agent.parent.clone();
        while let Some(id) = next {
            if parents.len() >= MAX_PARENT_DEPTH || id == agent.id || parents.iter().any(|p| p.id == id) {
                return Err(Error::new(Kind::Conflict, "parent_chain_invalid", format!("agent `{}` has a parent chain that is too deep or loops", agent.id)));
            }
            let parent = self.store.agent(&id).await?.ok_or_else(|| Error::internal(format!("parent `{id}` of `{}` is missing", agent.id)))?;
            next = parent.parent.clone();
            parents.push(parent);
        }
        Ok(parents)
    }
}

/// The action as plugins see it.
pub fn plugin_action(action: &Action, agent: &Agent, table_risk: RiskLevel, now: i64) -> wit::Action {
    // Plugins have no clock: they get the hour of the week (Monday 00:00 UTC = 0; 1970-01-01 was a Thursday).
    let hours = now.div_euclid(3_600_000_000);
    let hour_of_week = ((hours + 3 * 24).rem_euclid(168)) as u16;
    wit::Action {
        agent: agent.id.clone(),
        team: agent.team.clone(),
        class: action.class.clone(),
        environment: action.environment.clone(),
        service: action.service.clone(),
        resources: action.resources.clone(),
        change: action.change.as_ref().map(|c| wit::ChangeSummary {
            files_changed: c.files_changed,
            lines_added: c.lines_added,
            lines_deleted: c.lines_deleted,
            paths: c.paths.clone(),
            breaking: c.breaking,
        }),
        estimated_cost_usd: action.estimated_cost_usd,
        reasoning: action.reasoning.clone(),
        labels: action.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        hour_of_week,
        table_risk: crate::plugins::wit_level(table_risk),
    }
}

/// Which agent a request is for, given who calls.
pub fn resolve_agent(caller: &Caller, request: &DecisionRequest) -> Result<String> {
    match caller.role {
        Role::Agent => {
            let own = caller.subject.clone().ok_or_else(|| Error::internal("agent token without a subject"))?;
            match &request.agent {
                Some(named) if *named != own => {
                    Err(Error::forbidden("acting_for_another_agent", format!("agent `{own}` may not ask for agent `{named}`")).at("agent"))
                }
                _ => Ok(own),
            }
        }
        Role::Service | Role::Admin => request.agent.clone().ok_or_else(|| Error::field("agent", "required when the caller is not the agent itself")),
        Role::Approver => Err(Error::forbidden("forbidden_role", "approver tokens may not ask for decisions")),
    }
}

fn check_len(field: &str, value: &str, max: usize) -> Result<()> {
    if value.len() > max { Err(Error::field(field, format!("is {} bytes, over the limit of {max}", value.len()))) } else { Ok(()) }
}

/// Every item of a list within `max` bytes; the error names the first item that is not.
fn check_each(field: &str, values: &[String], max: usize) -> Result<()> {
    match values.iter().enumerate().find(|(_, v)| v.len() > max) {
        Some((i, v)) => check_len(&format!("{field}[{i}]"), v, max),
        None => Ok(()),
    }
}

fn check_name(field: &str, value: &str, max: usize) -> Result<()> {
    if value.is_empty() {
        return Err(Error::field(field, "must not be empty"));
    }
    check_len(field, value, max)?;
    if !value.chars().all(|c| c.is_ascii_alphanumeric() || "-_./:".contains(c)) {
        return Err(Error::field(field, format!("`{value}` may only contain letters, digits and - _ . / :")));
    }
    Ok(())
}

/// Stage 2: checks the action against size limits and the policy's known classes.
pub fn validate(policy: &CompiledPolicy, action: &Action) -> Result<()> {
    if !policy.knows_class(&action.class) {
        let known: Vec<&str> = policy.policy.risk.keys().map(String::as_str).collect();
        return Err(Error::field("action.class", format!("unknown action class `{}`; known: {}", action.class, known.join(", "))));
    }
    check_name("action.environment", &action.environment, 64)?;
    check_name("action.service", &action.service, 128)?;
    if action.resources.len() > 256 {
        return Err(Error::field("action.resources", format!("{} resources, over the limit of 256", action.resources.len())));
    }
    check_each("action.resources", &action.resources, 512)?;
    if let Some(change) = &action.change {
        if change.paths.len() > 10_000 {
            return Err(Error::field("action.change.paths", format!("{} paths, over the limit of 10000", change.paths.len())));
        }
        check_each("action.change.paths", &change.paths, 1024)?;
    }
    if let Some(cost) = action.estimated_cost_usd
        && !(cost.is_finite() && (0.0..=1e9).contains(&cost))
    {
        return Err(Error::field("action.estimated_cost_usd", "must be a number from 0 to 1e9"));
    }
    if let Some(r) = &action.reasoning {
        check_len("action.reasoning", r, 16 * 1024)?;
    }
    if let Some(plan) = &action.plan {
        check_len("action.plan", &plan.to_string(), 64 * 1024)?;
    }
    if action.labels.len() > 64 {
        return Err(Error::field("action.labels", "at most 64 labels"));
    }
    // The field's name is formatted only for the label that is too long.
    if let Some((k, v)) = action.labels.iter().find(|(k, v)| k.len() > 64 || v.len() > 256) {
        let field = format!("action.labels.{k}");
        check_len(&field, k, 64)?;
        check_len(&field, v, 256)?;
    }
    Ok(())
}

fn reason(code: &str, text: String) -> Reason {
    Reason { code: code.to_string(), text }
}

/// Stages 3, 5 and 7 and the record of stage 9, without I/O.
#[allow(clippy::too_many_arguments)] // the pipeline's inputs, each loaded by its own stage
pub fn judge(
    policy: &CompiledPolicy,
    caller: &Caller,
    subject: &Subject,
    mut request: DecisionRequest,
    now: i64,
    decision_id: String,
    plugins: Assessment,
    quotas: &QuotaPlan,
) -> Result<Judgement> {
    let agent = &subject.agent;
    request.agent = Some(agent.id.clone());
    let action = &request.action;
    let (class, env, service) = (action.class.as_str(), action.environment.as_str(), action.service.as_str());
    let mut reasons = Vec::new();

    // Stage 3: classification from the built-in table (classifier plugins may only raise it).
    let breaking = action.change.as_ref().is_some_and(|c| c.breaking);
    let table_level = policy.table_risk(class, env, breaking);
    let mut categories = vec![["class:", class].concat(), ["environment:", env].concat()];
    if breaking {
        categories.push("breaking_change".to_string());
    }
    // The merged risk is the highest of the table and every classifier: plugins only raise it.
    let level = table_level.max(plugins.level.unwrap_or(table_level));
    let score = table_level.base_score().max(plugins.score).max(level.base_score());
    categories.extend(plugins.categories);
    for (plugin, text) in plugins.reasons {
        let failed = plugins.reports.iter().any(|r| r.plugin == plugin && r.outcome != "ok");
        reasons.push(reason(if failed { "plugin_failed" } else { "plugin_risk" }, format!("{plugin}: {text}")));
    }
    let risk = Risk { level, score, categories };

    // Stage 4: anomaly findings; a severe one caps the tier below.
    let anomaly = plugins.anomaly_checked.then_some(Anomaly { severity: plugins.anomaly_severity, findings: plugins.findings });

    // Stage 5: effective tier = min(agent tier, parent caps, anomaly cap); the grant decides.
    let mut tier = agent.tier;
    for parent in &subject.parents {
        if parent.tier < tier {
            tier = parent.tier;
            reasons.push(reason("parent_cap", format!("parent agent `{}` is at tier {}, which caps this agent", parent.id, parent.tier)));
        }
    }
    if let Some(a) = &anomaly
        && a.severity >= policy.policy.severe_anomaly
        && tier > policy.policy.severe_anomaly_tier_cap
    {
        tier = policy.policy.severe_anomaly_tier_cap;
        let worst = a.findings.iter().max_by_key(|f| f.severity).map(|f| format!(" ({}: {})", f.detector, f.message)).unwrap_or_default();
        reasons.push(reason("anomaly_cap", format!("a severe anomaly (severity {}){worst} caps the tier at {tier}", a.severity)));
    }
    let tier_label = format!("tier {tier} ({})", policy.tier_name(tier));
    let suspended = if agent.status == AgentStatus::Suspended {
        Some(reason("agent_suspended", format!("agent `{}` is suspended", agent.id)))
    } else {
        subject.parents.iter().find(|p| p.status == AgentStatus::Suspended).map(|p| reason("parent_suspended", format!("parent agent `{}` is suspended", p.id)))
    };
    let mut violation: Option<&'static str> = None;
    let mut verdict = if let Some(r) = suspended {
        reasons.push(r);
        Verdict::Deny
    } else {
        match policy.permission(tier, class, env, service, level) {
            Permission::Allowed => {
                reasons.push(reason("grant_allows", format!("{tier_label} may {class} in {env} at {level} risk")));
                Verdict::Allow
            }
            Permission::NeedsApproval => {
                reasons.push(reason("approval_required", format!("{tier_label} needs a human's approval to {class} in {env} at {level} risk")));
                Verdict::RequireApproval
            }
            Permission::ExplicitDeny => {
                reasons.push(reason("explicit_deny", format!("a grant of {tier_label} denies {class} in {env} for {service}")));
                violation = Some("explicit_deny");
                Verdict::Deny
            }
            Permission::NoGrant => {
                reasons.push(reason("no_grant", format!("{tier_label} has no grant to {class} in {env} at {level} risk")));
                violation = Some("no_grant");
                Verdict::Deny
            }
        }
    };
    // On behalf of a human: the agent gets at most the human's rights.
    if let Some(human) = &subject.human
        && verdict != Verdict::Deny
        && !human.covers(class, env, service, level)
    {
        reasons.push(reason(
            "on_behalf_of_not_permitted",
            format!("`{}`, on whose behalf the agent acts, may not {class} in {env} for {service} at {level} risk", human.id),
        ));
        violation = Some("on_behalf_of_not_permitted");
        verdict = Verdict::Deny;
    }

    // Stage 8, an approval presented: it allows exactly the action it was given for, once.
    let mut consume: Option<String> = None;
    let mut pending: Option<ApprovalRef> = None;
    let mut approval_violation = false;
    match &subject.approval {
        // Plugins or policy may judge the same action riskier now than when it was approved:
        // then the approval no longer covers it, and a new request is made.
        Some(Presented::Valid(a)) if verdict != Verdict::Deny && approved_risk(a).is_some_and(|approved| level > approved) => {
            reasons.push(reason(
                "approval_outdated",
                format!("approval `{}` was given at {} risk; the action is now {level}", a.id, approved_risk(a).map(|r| r.as_str()).unwrap_or("?")),
            ));
        }
        Some(Presented::Valid(a)) if verdict != Verdict::Deny => {
            let by = a.decided_by.as_deref().unwrap_or("a human");
            reasons.push(reason("approved", format!("approval `{}` by {by} allows exactly this action, once", a.id)));
            verdict = Verdict::Allow;
            consume = Some(a.id.clone());
        }
        Some(Presented::Pending(a)) if verdict == Verdict::RequireApproval => {
            reasons.push(reason("approval_pending", format!("approval `{}` is still waiting for a human", a.id)));
            pending = Some(ApprovalRef { id: a.id.clone(), expires_at: a.expires_at.clone(), url: format!("/v1/approvals/{}", a.id) });
        }
        Some(Presented::Rejected(text)) if verdict != Verdict::Deny => {
            reasons.push(reason("approval_rejected", text.clone()));
            verdict = Verdict::Deny;
        }
        Some(Presented::Expired(text)) => reasons.push(reason("approval_expired", text.clone())),
        Some(Presented::Violation { code, text }) => {
            reasons.push(reason(code, text.clone()));
            violation = Some(code);
            approval_violation = true;
            verdict = Verdict::Deny;
        }
        _ => {}
    }

    // Stage 7: violation handling for the class.
    let violation_of = |mode: &str, reason: &str| ViolationRow {
        id: uuid::Uuid::now_v7().to_string(),
        at: now,
        decision_id: decision_id.clone(),
        agent_id: agent.id.clone(),
        class: class.to_string(),
        environment: env.to_string(),
        service: service.to_string(),
        mode: mode.to_string(),
        reason: reason.to_string(),
    };
    let shadow = agent.shadow || policy.policy.mode == PolicyMode::Shadow;
    let mut obligations = Vec::new();
    let mut violation_row = None;
    if let Some(code) = violation
        && !shadow
    {
        // A forged, reused or misapplied approval is always blocked, whatever the class's mode.
        let mode = if approval_violation { ViolationMode::Block } else { policy.violation_mode(class) };
        match mode {
            ViolationMode::Block => {}
            ViolationMode::Flag => {
                reasons.push(reason("violation_flagged", format!("{class} is in flag mode: allowed, and recorded as a violation for review")));
                verdict = Verdict::Allow;
            }
            ViolationMode::Guard => {
                reasons.push(reason(
                    "violation_guarded",
                    format!("{class} is in guard mode: allowed under an automatic-rollback watch, and recorded as a violation"),
                ));
                obligations.push(Obligation {
                    kind: "rollback_guard".into(),
                    detail: "an automatic-rollback watch is armed; send metric samples to /v1/decisions/{id}/signals".into(),
                    due_at: None,
                });
                verdict = Verdict::Allow;
            }
        }
        let mode = match mode {
            ViolationMode::Block => "block",
            ViolationMode::Flag => "flag",
            ViolationMode::Guard => "guard",
        };
        violation_row = Some(violation_of(mode, code));
    }
    // Stage 6: quotas, for an action about to go ahead (an approved one is charged when its
    // approval is used, not when it was asked for). The charge is the change's first write.
    let mut charge = None;
    let mut headroom = Vec::new();
    if verdict == Verdict::Allow && !shadow && !quotas.charges.is_empty() {
        let counts = quotas.charges.iter().zip(&quotas.used);
        match counts.clone().find(|(c, used)| !c.fits(**used)) {
            Some((c, used)) => {
                headroom = counts.map(|(c, used)| c.headroom(*used)).collect();
                let h = c.headroom(*used);
                let scope = if c.scope == "*" { String::new() } else { format!(" for {}", c.scope) };
                let needs = c.headroom(c.amount).used;
                reasons.push(reason(
                    "quota_exceeded",
                    format!(
                        "quota `{}`{scope}: {} of {} {} used, this action needs {needs}; resets at {}",
                        c.quota,
                        h.used,
                        h.limit,
                        c.unit.label(),
                        h.resets_at
                    ),
                ));
                verdict = Verdict::Deny;
                // The approval (if any) stays unused: the agent may try again once the quota resets.
                consume = None;
                // A class in flag or guard mode let the action through; the quota stops it: the
                // violation on record is the quota's (blocked), not a flagged one.
                obligations.retain(|o| o.kind != "rollback_guard");
                reasons.retain(|r| r.code != "violation_flagged" && r.code != "violation_guarded");
                violation_row = Some(violation_of("block", "quota_exceeded"));
            }
            None => {
                headroom = counts.map(|(c, used)| c.headroom(used + c.amount)).collect();
                // Nothing to add (a free action) needs no write; its limit was checked above.
                let charges: Vec<_> = quotas.charges.iter().filter(|c| c.amount > 0).cloned().collect();
                charge = (!charges.is_empty()).then(|| Write::ChargeQuotas { agent_id: agent.id.clone(), charges });
            }
        }
    }
    let shadow_verdict = if shadow {
        let would = verdict;
        reasons.push(reason("shadow_mode", format!("shadow mode: enforcement would answer {}; nothing is blocked", would.as_str())));
        verdict = Verdict::Allow;
        Some(would)
    } else {
        None
    };

    // Stage 8, a new request: a human decides; the agent re-submits the same action with its id.
    let mut new_approval: Option<ApprovalRow> = None;
    if verdict == Verdict::RequireApproval && pending.is_none() {
        let id = uuid::Uuid::now_v7().to_string();
        let expires_at = now.saturating_add(policy.approval_ttl_micros(class));
        pending = Some(ApprovalRef { id: id.clone(), expires_at: format_micros(expires_at), url: format!("/v1/approvals/{id}") });
        new_approval = Some(ApprovalRow {
            id,
            decision_id: decision_id.clone(),
            agent_id: agent.id.clone(),
            on_behalf_of: request.on_behalf_of.clone(),
            class: class.to_string(),
            environment: env.to_string(),
            service: service.to_string(),
            action_hash: approvals::action_hash(&bound(&request.action, request.on_behalf_of.as_deref())),
            summary: String::new(),
            created_at: now,
            expires_at,
            approvals_needed: i64::from(policy.approvers_required(class)),
        });
    }
    if let Some(p) = &pending {
        obligations.push(Obligation {
            kind: "await_approval".into(),
            detail: format!("wait for approval {} (until {}), then re-submit this exact action with \"approval_id\"", p.id, p.expires_at),
            due_at: Some(p.expires_at.clone()),
        });
    }
    // Every allowed write owes its outcome by a deadline (reads change nothing).
    let outcome_due_at = (verdict == Verdict::Allow && class != "read").then(|| now.saturating_add(policy.outcome_deadline_micros(class)));
    if let Some(due) = outcome_due_at {
        obligations.push(Obligation {
            kind: "report_outcome".into(),
            detail: format!("report what happened (succeeded, failed, rolled_back) to /v1/decisions/{decision_id}/outcome"),
            due_at: Some(format_micros(due)),
        });
    }

    let decided_at = format_micros(now);
    let answer = DecisionAnswer {
        decision_id: decision_id.clone(),
        verdict,
        shadow_verdict,
        risk,
        anomaly,
        reasons,
        obligations,
        approval: pending,
        tier,
        agent_tier: agent.tier,
        trust_score: agent.trust_score,
        quotas: headroom,
        policy_version: policy.version.clone(),
        plugins: plugins.reports,
        decided_at: decided_at.clone(),
    };

    // Stage 9: the record, committed by the caller before the answer leaves.
    let caller_id = caller.subject.as_deref().unwrap_or(&caller.token_id);
    let details = DecisionDetails {
        shadow_verdict,
        risk: &answer.risk,
        anomaly: &answer.anomaly,
        reasons: &answer.reasons,
        tier,
        plugins: &answer.plugins,
        caller: CallerBrief { role: caller.role.as_str(), id: caller_id },
    };
    let audit = AuditRecord {
        event_type: "decision".into(),
        at: decided_at,
        actor: Actor {
            kind: "agent".into(),
            id: agent.id.clone(),
            tool: Some(agent.tool.clone()),
            model: Some(agent.model.clone()),
            token_id: Some(caller.token_id.clone()),
        },
        agent: Some(agent.id.clone()),
        on_behalf_of: request.on_behalf_of.clone(),
        authorizing_human: None,
        action_class: Some(class.to_string()),
        environment: Some(env.to_string()),
        target: ["service:", service].concat(),
        action: Some(RawJson::of(&request.action).map_err(Error::internal)?),
        outcome: Some(verdict.as_str().to_string()),
        reasoning: request.action.reasoning.clone(),
        policy_version: Some(policy.version.clone()),
        decision_id: Some(decision_id.clone()),
        details: Some(RawJson::of(&details).map_err(Error::internal)?),
    };
    let row = DecisionRow {
        id: decision_id.clone(),
        at: now,
        agent_id: agent.id.clone(),
        on_behalf_of: request.on_behalf_of.clone(),
        class: class.to_string(),
        environment: env.to_string(),
        service: service.to_string(),
        verdict: verdict.as_str().to_string(),
        shadow_verdict: shadow_verdict.map(|v| v.as_str().to_string()),
        risk_level: level.as_str().to_string(),
        tier,
        policy_version: policy.version.clone(),
        request: serde_json::to_string(&request).map_err(Error::internal)?,
        answer: serde_json::to_string(&answer).map_err(Error::internal)?,
        outcome_due_at,
    };
    // The writes that may fail come first: using the approval (if another decision used it
    // meanwhile, the whole change fails and nothing is recorded: single use, on every replica),
    // then charging the quotas.
    let mut writes = Vec::new();
    let mut records = vec![audit];
    let mut events = Vec::new();
    if let Some(id) = consume {
        writes.push(Write::ConsumeApproval { id: id.clone(), decision_id: decision_id.clone(), at: now });
        let details = serde_json::json!({"approval_id": id});
        records.push(approval_record(&records[0], "approval.consumed", &id, details, now));
    }
    writes.extend(charge);
    writes.push(Write::InsertDecision(row));
    if let Some(v) = violation_row {
        // Every violation is an audit event of its own, so reviewers can follow them alone.
        let details = serde_json::json!({"violation_id": v.id, "mode": v.mode, "reason": v.reason, "service": v.service});
        let mut record = AuditRecord::change(records[0].actor.clone(), "violation.recorded", format!("service:{}", v.service), details, now);
        record.agent = Some(v.agent_id.clone());
        record.action_class = Some(v.class.clone());
        record.environment = Some(v.environment.clone());
        record.decision_id = Some(v.decision_id.clone());
        records.push(record);
        if v.mode != "block" {
            let data = serde_json::json!({"violation_id": v.id, "decision_id": v.decision_id, "agent": v.agent_id, "class": v.class,
                "environment": v.environment, "service": v.service, "mode": v.mode, "reason": v.reason});
            events.push(Event::new("violation.flagged", now, data));
        }
        // The violation is trust evidence, counted in the same transaction.
        let kind = crate::trust::Kind::of_violation(&v.mode, &v.reason);
        let half_life_us = crate::trust::half_life_us(&policy.policy.trust);
        let evidence = EvidenceDelta { agent_id: v.agent_id.clone(), environment: v.environment.clone(), risk: level, kind, at: now, delta: 1, half_life_us };
        writes.push(Write::InsertViolation(v));
        writes.push(Write::AddEvidence(evidence));
    }
    if let Some(mut a) = new_approval {
        // What the approver sees: the plan and reasoning with everything Warden judged.
        let summary = ApprovalSummary {
            request: &request,
            agent: AgentBrief { id: &agent.id, tool: &agent.tool, model: &agent.model, team: &agent.team, sponsor: &agent.sponsor },
            risk: &answer.risk,
            anomaly: &answer.anomaly,
            reasons: &answer.reasons,
            tier,
            agent_tier: agent.tier,
            trust_score: answer.trust_score,
        };
        a.summary = serde_json::to_string(&summary).map_err(Error::internal)?;
        let details = serde_json::json!({"approval_id": a.id, "expires_at": format_micros(a.expires_at), "action_hash": a.action_hash});
        records.push(approval_record(&records[0], "approval.requested", &a.id, details, now));
        let data = serde_json::json!({"approval_id": a.id, "expires_at": format_micros(a.expires_at), "decision_id": a.decision_id, "agent": a.agent_id,
            "on_behalf_of": a.on_behalf_of, "class": a.class, "environment": a.environment, "service": a.service, "risk": answer.risk,
            "anomaly": answer.anomaly, "reasoning": request.action.reasoning, "plan": request.action.plan, "tier": tier});
        events.push(Event::new("approval.requested", now, data));
        writes.push(Write::InsertApproval(a));
    }
    Ok(Judgement { answer, change: Change { writes, audit: records }, events })
}

/// The risk level an approval was given at.
fn approved_risk(a: &crate::store::Approval) -> Option<RiskLevel> {
    serde_json::from_value(a.summary["risk"]["level"].clone()).ok()
}

/// What an approval for `action` is bound to.
fn bound<'a>(action: &'a Action, on_behalf_of: Option<&'a str>) -> approvals::Bound<'a, ChangeSummary, BTreeMap<String, String>> {
    approvals::Bound {
        class: &action.class,
        environment: &action.environment,
        service: &action.service,
        resources: &action.resources,
        change: &action.change,
        on_behalf_of,
        estimated_cost_usd: action.estimated_cost_usd,
        labels: &action.labels,
    }
}

/// What an approver sees of a request (stored with the approval).
#[derive(Serialize)]
struct ApprovalSummary<'a> {
    request: &'a DecisionRequest,
    agent: AgentBrief<'a>,
    risk: &'a Risk,
    anomaly: &'a Option<Anomaly>,
    reasons: &'a [Reason],
    tier: u8,
    agent_tier: u8,
    trust_score: Option<f64>,
}

/// What a decision's audit record says beyond its columns, serialized straight from the answer.
#[derive(Serialize)]
struct DecisionDetails<'a> {
    shadow_verdict: Option<Verdict>,
    risk: &'a Risk,
    anomaly: &'a Option<Anomaly>,
    reasons: &'a [Reason],
    tier: u8,
    plugins: &'a [PluginReport],
    caller: CallerBrief<'a>,
}

#[derive(Serialize)]
struct CallerBrief<'a> {
    role: &'a str,
    id: &'a str,
}

#[derive(Serialize)]
struct AgentBrief<'a> {
    id: &'a str,
    tool: &'a str,
    model: &'a str,
    team: &'a str,
    sponsor: &'a str,
}

/// An approval event in the decision's change, attributed like the decision.
fn approval_record(decision: &AuditRecord, event: &str, id: &str, details: serde_json::Value, now: i64) -> AuditRecord {
    AuditRecord {
        agent: decision.agent.clone(),
        on_behalf_of: decision.on_behalf_of.clone(),
        action_class: decision.action_class.clone(),
        environment: decision.environment.clone(),
        decision_id: decision.decision_id.clone(),
        ..AuditRecord::change(decision.actor.clone(), event, format!("approval:{id}"), details, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Grant, Policy};

    fn policy() -> CompiledPolicy {
        CompiledPolicy::new(Policy::default()).unwrap()
    }

    fn agent(id: &str, tier: u8) -> Agent {
        Agent::new(id, "core", tier)
    }

    fn caller() -> Caller {
        Caller { token_id: "tok_1".into(), role: Role::Service, subject: None }
    }

    fn request(class: &str, env: &str) -> DecisionRequest {
        serde_json::from_value(serde_json::json!({"agent": "a", "action": {"class": class, "environment": env, "service": "payments"}})).unwrap()
    }

    fn verdict(p: &CompiledPolicy, subject: &Subject, class: &str, env: &str) -> (Verdict, Option<Verdict>, Vec<String>) {
        let j = judge(p, &caller(), subject, request(class, env), 0, "d1".into(), Assessment::default(), &QuotaPlan::default()).unwrap();
        (j.answer.verdict, j.answer.shadow_verdict, j.answer.reasons.into_iter().map(|r| r.code).collect())
    }

    fn alone(a: Agent) -> Subject {
        Subject { agent: a, parents: vec![], human: None, approval: None }
    }

    #[test]
    fn standard_agent_seed_scenarios() {
        let p = policy();
        let s = alone(agent("a", 2));
        assert_eq!(verdict(&p, &s, "deploy", "staging").0, Verdict::Allow);
        assert_eq!(verdict(&p, &s, "deploy", "production").0, Verdict::RequireApproval);
        assert_eq!(verdict(&p, &s, "db_migration", "production").0, Verdict::RequireApproval);
        assert_eq!(verdict(&p, &s, "security_policy_change", "staging").0, Verdict::RequireApproval);
    }

    #[test]
    fn observe_agent_is_denied_every_write_and_records_a_violation() {
        let p = policy();
        let s = alone(agent("a", 0));
        assert_eq!(verdict(&p, &s, "read", "production").0, Verdict::Allow);
        for class in ["docs_update", "deploy", "config_change", "db_migration", "infra_delete"] {
            let j = judge(&p, &caller(), &s, request(class, "dev"), 0, "d".into(), Assessment::default(), &QuotaPlan::default()).unwrap();
            assert_eq!(j.answer.verdict, Verdict::Deny, "{class}");
            assert!(j.change.writes.iter().any(|w| matches!(w, Write::InsertViolation(_))), "{class}");
        }
    }

    #[test]
    fn on_behalf_of_intersects_with_the_humans_grants() {
        let p = policy();
        let bob = Human {
            id: "bob".into(),
            team: "core".into(),
            grants: vec![Grant {
                class: "*".into(),
                environment: "staging".into(),
                service: "*".into(),
                max_risk: RiskLevel::Critical,
                effect: crate::policy::Effect::Allow,
            }],
            created_at: String::new(),
        };
        let s = Subject { agent: agent("a", 4), parents: vec![], human: Some(bob), approval: None };
        let (v, _, codes) = verdict(&p, &s, "deploy", "production");
        assert_eq!(v, Verdict::Deny);
        assert!(codes.contains(&"on_behalf_of_not_permitted".to_string()));
        assert_eq!(verdict(&p, &s, "deploy", "staging").0, Verdict::Allow);
    }

    #[test]
    fn parent_caps_and_suspension() {
        let p = policy();
        let mut parent = agent("boss", 1);
        let s = Subject { agent: agent("a", 3), parents: vec![parent.clone()], human: None, approval: None };
        let j = judge(&p, &caller(), &s, request("deploy", "production"), 0, "d".into(), Assessment::default(), &QuotaPlan::default()).unwrap();
        assert_eq!((j.answer.tier, j.answer.agent_tier, j.answer.verdict), (1, 3, Verdict::Deny));
        parent.tier = 4;
        parent.status = AgentStatus::Suspended;
        let s = Subject { agent: agent("a", 3), parents: vec![parent], human: None, approval: None };
        assert_eq!(verdict(&p, &s, "read", "dev").2, vec!["parent_suspended"]);
    }

    #[test]
    fn shadow_never_blocks_but_records_the_would_be_verdict() {
        let p = policy();
        let mut a = agent("a", 0);
        a.shadow = true;
        let j = judge(&p, &caller(), &alone(a), request("db_migration", "production"), 0, "d".into(), Assessment::default(), &QuotaPlan::default()).unwrap();
        assert_eq!((j.answer.verdict, j.answer.shadow_verdict), (Verdict::Allow, Some(Verdict::Deny)));
        let Write::InsertDecision(row) = &j.change.writes[0] else { panic!() };
        assert_eq!(row.shadow_verdict.as_deref(), Some("deny"));
        assert_eq!(j.change.audit[0].details.as_ref().unwrap().value()["shadow_verdict"], "deny");
    }

    #[test]
    fn flag_and_guard_modes_allow_and_record() {
        let mut policy = Policy::default();
        policy.violation_modes.insert("deploy".into(), ViolationMode::Guard);
        policy.violation_modes.insert("docs_update".into(), ViolationMode::Flag);
        let p = CompiledPolicy::new(policy).unwrap();
        let s = alone(agent("a", 0));
        let j = judge(&p, &caller(), &s, request("deploy", "production"), 0, "d".into(), Assessment::default(), &QuotaPlan::default()).unwrap();
        assert_eq!(j.answer.verdict, Verdict::Allow);
        assert_eq!(j.answer.obligations[0].kind, "rollback_guard");
        assert!(matches!(&j.change.writes[1], Write::InsertViolation(v) if v.mode == "guard"));
        let j = judge(&p, &caller(), &s, request("docs_update", "dev"), 0, "d".into(), Assessment::default(), &QuotaPlan::default()).unwrap();
        assert_eq!(j.answer.verdict, Verdict::Allow);
        assert!(matches!(&j.change.writes[1], Write::InsertViolation(v) if v.mode == "flag"));
    }

    #[test]
    fn validation_names_the_field() {
        let p = policy();
        let mut a = request("deploy", "prod").action;
        a.class = "teleport".into();
        assert_eq!(validate(&p, &a).unwrap_err().field.as_deref(), Some("action.class"));
        let mut a = request("deploy", "prod").action;
        a.resources = vec!["x".repeat(600)];
        assert_eq!(validate(&p, &a).unwrap_err().field.as_deref(), Some("action.resources[0]"));
        let mut a = request("deploy", "prod").action;
        a.estimated_cost_usd = Some(-1.0);
        assert_eq!(validate(&p, &a).unwrap_err().field.as_deref(), Some("action.estimated_cost_usd"));
        let mut a = request("deploy", "prod").action;
        a.service = "pay ments".into();
        assert_eq!(validate(&p, &a).unwrap_err().field.as_deref(), Some("action.service"));
    }

    #[test]
    fn agents_may_only_ask_for_themselves() {
        let me = Caller { token_id: "t".into(), role: Role::Agent, subject: Some("me".into()) };
        let mut r = request("read", "dev");
        assert_eq!(resolve_agent(&me, &r).unwrap_err().code, "acting_for_another_agent");
        r.agent = None;
        assert_eq!(resolve_agent(&me, &r).unwrap(), "me");
        assert_eq!(resolve_agent(&caller(), &r).unwrap_err().field.as_deref(), Some("agent"));
    }
}
