//! Deciding (DESIGN.md, "The decision pipeline"): loads what a decision needs (the agent, its
//! parent chain, the on-behalf-of human, the presented approval, the plugins' assessment, the
//! quota counts), runs the pure stages of [`warden_core::decision::judge`], and commits the
//! decision with its audit record, events and evidence in one transaction before answering.

use std::sync::Arc;
use std::time::Duration;

use crate::approvals;
use crate::baseline::activity_cap;
use crate::clock::SharedClock;
use crate::decision::{
    Action, DecisionAnswer, DecisionRequest, DecisionWrites, Inputs, Judgement, MAX_PARENT_DEPTH,
    Subject, bound, judge, resolve_agent, validate, validate_references,
};
use crate::delegation::OnBehalfOf;
use crate::error::{Error, Kind, Result};
use crate::identity::{Agent, Caller, Role};
use crate::metrics::{Metrics, Phase, Phases};
use crate::plugin::{AnomalyContext, PluginAction, RecentActivity};
use crate::plugins::PluginHost;
use crate::policy::{CompiledPolicy, PolicyMode, ViolationMode};
use crate::quotas::{QuotaPlan, Unit};
use crate::records::ViolationReason;
use crate::services::baselines::Baselines;
use crate::services::cutoffs::{Cutoffs, HOLD};
use crate::services::delegations::{self, DelegationConfig};
use crate::services::idempotency::Claim;
use crate::services::lanes::Lanes;
use crate::services::notify::Outbox;
use crate::services::overruns::Overruns;
use crate::services::presented::Presentations;
use crate::services::repeats::Repeats;
use crate::services::tiering::Controller;
use crate::store::{
    AgentActivity, ApprovalWrite, Change, Conflict, DecisionWrite, GuardWrite, QuotaWrite, Store,
    StoreError, TrustWrite, ViolationWrite, Write,
};

/// The decision service: what `POST /v1/decisions` and the AuthZEN endpoints call.
#[derive(Debug, Clone)]
pub struct Decisions {
    store: Store,
    policy: Arc<CompiledPolicy>,
    clock: SharedClock,
    metrics: Arc<Metrics>,
    plugins: Arc<PluginHost>,
    outbox: Arc<Outbox>,
    tiers: Controller,
    baselines: Baselines,
    delegation: Arc<DelegationConfig>,
    cutoffs: Cutoffs,
    lanes: Lanes,
    overruns: Overruns,
    repeats: Repeats,
    presentations: Presentations,
}

/// A decision slower than this is logged with where its time went.
const SLOW: Duration = Duration::from_secs(1);

/// Logs a slow decision's phases: which of them to look at (the writer's commit, a plugin, a
/// read) is what an operator needs, and the histograms only say it in aggregate.
fn slow(phases: &Phases, decision_id: &str) {
    let took = phases.elapsed();
    if took < SLOW {
        return;
    }
    let ms = |p: Phase| phases.took(p).as_secs_f64() * 1e3;
    tracing::warn!(
        decision_id,
        took_ms = took.as_secs_f64() * 1e3,
        lane_ms = ms(Phase::Lane),
        read_ms = ms(Phase::Read),
        plugins_ms = ms(Phase::Plugins),
        quota_ms = ms(Phase::Quota),
        judge_ms = ms(Phase::Judge),
        commit_ms = ms(Phase::Commit),
        review_ms = ms(Phase::Review),
        "slow decision"
    );
}

/// A committed decision: the answer, and its JSON as recorded, which is the body to send.
#[derive(Debug)]
pub struct Decided {
    /// The answer.
    pub answer: DecisionAnswer,
    /// The answer as JSON, exactly as the decision row holds it.
    pub body: String,
}

/// How the decision service is put together.
#[derive(Debug, Clone)]
pub struct Parts {
    /// The store.
    pub store: Store,
    /// The effective policy.
    pub policy: Arc<CompiledPolicy>,
    /// Time.
    pub clock: SharedClock,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The loaded plugins.
    pub plugins: Arc<PluginHost>,
    /// The notification outbox.
    pub outbox: Arc<Outbox>,
    /// The tier controller.
    pub tiers: Controller,
    /// Human baselines.
    pub baselines: Baselines,
    /// Who may vouch for a human.
    pub delegation: Arc<DelegationConfig>,
    /// How many of one agent's decisions are judged at once (`server.agent_concurrency`).
    pub agent_concurrency: usize,
}

impl Decisions {
    /// The service over its parts.
    pub fn new(parts: Parts) -> Decisions {
        let Parts {
            store,
            policy,
            clock,
            metrics,
            plugins,
            outbox,
            tiers,
            baselines,
            delegation,
            agent_concurrency,
        } = parts;
        let cutoffs = Cutoffs::new(store.clone(), tiers.clone(), clock.clone(), metrics.clone());
        Decisions {
            store,
            policy,
            clock,
            metrics,
            plugins,
            outbox,
            tiers,
            baselines,
            delegation,
            cutoffs,
            lanes: Lanes::new(agent_concurrency),
            overruns: Overruns::default(),
            repeats: Repeats::default(),
            presentations: Presentations::default(),
        }
    }

    /// The agents cut off for flooding (their windows are recorded as they close).
    pub fn cutoffs(&self) -> &Cutoffs {
        &self.cutoffs
    }

    /// The 429 for a caller whose agent is cut off now (an agent's own token): what the edge
    /// can answer before it reads the body or claims an idempotency key. The answer is held
    /// for up to [`HOLD`] first: a runaway loop that waits for its answers slows to one
    /// request a second per connection, and a held answer costs a timer, not a core.
    pub async fn refused(&self, caller: &Caller) -> Option<Error> {
        let agent = caller
            .subject
            .as_deref()
            .filter(|_| caller.role == Role::Agent)?;
        let (refusal, until) = self.cutoffs.refused(agent, self.clock.now_micros())?;
        tokio::time::sleep(HOLD.min(until)).await;
        Some(refusal)
    }

    /// Decides, records durably, and answers.
    pub async fn decide(
        &self,
        caller: &Caller,
        request: DecisionRequest,
    ) -> Result<DecisionAnswer> {
        Ok(self.decide_once(caller, request, None).await?.answer)
    }

    /// Decides under an idempotency key's claim: the answer is kept under the key in the same
    /// transaction as the decision, so a retry finds one exactly when the other is there.
    pub async fn decide_once(
        &self,
        caller: &Caller,
        request: DecisionRequest,
        claim: Option<&Claim>,
    ) -> Result<Decided> {
        let mut phases = Phases::start();
        let agent_id = resolve_agent(caller, &request)?;
        // A flooding agent is refused before anything is read or judged.
        if let Some((refusal, _)) = self.cutoffs.refused(&agent_id, self.clock.now_micros()) {
            return Err(refusal);
        }
        // One agent's burst waits in its own lane instead of filling the writer's batches.
        let turn = self.lanes.enter(&agent_id).await;
        if turn.waited() {
            self.metrics.lane_wait();
        }
        phases.mark(Phase::Lane);
        if let Some((refusal, _)) = self.cutoffs.refused(&agent_id, self.clock.now_micros()) {
            return Err(refusal);
        }
        // Validate before touching the store: bad input is the caller's problem, whatever the store's state.
        validate_references(&request)?;
        validate(&self.policy, &request.action)?;
        let agent = self.store.agent(&agent_id).await?.ok_or_else(|| {
            Error::not_found("unknown_agent", format!("no agent `{agent_id}`")).at("agent")
        })?;
        let parents = self.parents(&agent).await?;
        let now = self.clock.now_micros();
        let human = match &request.on_behalf_of {
            Some(id) => {
                let human = self.store.human(id).await?.ok_or_else(|| {
                    Error::not_found("unknown_human", format!("no human `{id}`")).at("on_behalf_of")
                })?;
                let a = &request.action;
                let proof = delegations::prove(
                    &self.store,
                    &self.delegation,
                    caller,
                    (id, &agent.id),
                    (&a.class, &a.environment, &a.service),
                    now,
                )
                .await?;
                Some(OnBehalfOf { human, proof })
            }
            None => None,
        };
        let approval = match &request.approval_id {
            Some(id) => {
                let hash = approvals::action_hash(&bound(
                    &request.action,
                    request.on_behalf_of.as_deref(),
                ));
                let found = match self.presentations.settled(id, &agent.id, &hash) {
                    Some(kept) => kept,
                    None => {
                        let found = self.store.approval(id, now).await?;
                        self.presentations.keep(id, found.as_ref());
                        found
                    }
                };
                Some(approvals::present(found, id, &agent.id, &hash))
            }
            None => None,
        };
        phases.mark(Phase::Read);
        // Stages 3 and 4 (plugins): classifiers, then anomaly detectors, in fresh instances.
        let action = &request.action;
        let breaking = action.change.as_ref().is_some_and(|c| c.breaking);
        let table = self
            .policy
            .table_risk(&action.class, &action.environment, breaking);
        let assessment = self
            .plugins
            .assess(
                &action.class,
                || PluginAction::new(action, &agent, table, now, self.baselines.zone()),
                || self.anomaly_context(action, &agent, now),
            )
            .await?;
        phases.mark(Phase::Plugins);
        let subject = Subject {
            agent,
            parents,
            human,
            approval,
        };
        let decision_id = uuid::Uuid::now_v7().to_string();
        // Stage 6 needs the quotas' counts; the charge re-checks them when it commits.
        let mut plan = self
            .quota_plan(&subject.agent, &request.action, now)
            .await?;
        phases.mark(Phase::Quota);
        if let Some((charge, _)) = plan.over_rate_limit() {
            return Err(self
                .cutoffs
                .cut(&subject.agent, charge, &request.action.environment, now));
        }
        let policy = &self.policy;
        // Other decisions may fill a quota between the counts read and the commit: the charge
        // is then refused at commit, and the action judged again on the counts as they are. A
        // refusal follows someone else's commit, so retries make progress; the bound is a
        // backstop.
        const ATTEMPTS: usize = 8;
        let judged = |plan: &QuotaPlan, on_record: &[ViolationReason]| {
            judge(Inputs {
                policy,
                caller,
                subject: &subject,
                request: &request,
                now,
                decision_id: decision_id.clone(),
                plugins: assessment.clone(),
                quotas: plan,
                on_record,
            })
        };
        let agent = &subject.agent.id;
        let attempt_of = (
            action.class.as_str(),
            action.environment.as_str(),
            action.service.as_str(),
        );
        let window = policy.same_violation_micros();
        let mut on_record = self.repeats.on_record(agent, attempt_of, now);
        for attempt in 1..=ATTEMPTS {
            let mut judgement = judged(&plan, &on_record)?;
            // One decision per window records a spent quota's overrun, and one the same
            // blocked attempt's violation; the others know.
            let mut claimed = None;
            let mut repeated = None;
            let overrun = judgement.writes.overrun;
            if let Some(charge) = overrun.and_then(|i| plan.charges.get(i)).cloned() {
                if self.overruns.claim(agent, &charge, now) {
                    claimed = Some(charge);
                } else {
                    plan.overrun_recorded = self.overruns.recorded(agent, &plan.charges);
                    judgement = judged(&plan, &on_record)?;
                }
            } else if let Some((v, _)) = &judgement.writes.violation
                && v.mode == ViolationMode::Block
                && window > 0
            {
                if self.repeats.claim(v, window, now) {
                    repeated = Some(v.clone());
                } else {
                    on_record = self.repeats.on_record(agent, attempt_of, now);
                    judgement = judged(&plan, &on_record)?;
                }
            }
            phases.mark(Phase::Judge);
            let recorded = self
                .record(&subject, judgement, now, claim, &mut phases)
                .await;
            if recorded.is_err() {
                if let Some(charge) = &claimed {
                    self.overruns.release(agent, charge);
                }
                if let Some(v) = &repeated {
                    self.repeats.release(v);
                }
            }
            match recorded {
                Err(e) if e.conflict() == Some(Conflict::QuotaExceeded) && attempt < ATTEMPTS => {
                    plan.used = self.store.quota_used_fresh(agent, &plan.charges).await?;
                    phases.mark(Phase::Quota);
                    if let Some((charge, _)) = plan.over_rate_limit() {
                        let environment = &request.action.environment;
                        return Err(self.cutoffs.cut(&subject.agent, charge, environment, now));
                    }
                }
                Err(e) => return Err(e.into()),
                Ok(decided) => {
                    self.metrics.decision(decided.answer.verdict, &phases);
                    slow(&phases, &decided.answer.decision_id);
                    return Ok(decided);
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
        let what = (
            action.class.as_str(),
            action.environment.as_str(),
            action.service.as_str(),
        );
        let charges = crate::quotas::charges(
            q,
            &self.policy.quota_zone,
            agent,
            what,
            action.estimated_cost_usd,
            now,
        );
        let mut used = self.store.quota_used(&agent.id, &charges).await?;
        // Never deny on a hint that can have fallen: another replica may have corrected a cost
        // downwards. Counts of calls only grow within their window, so a full one is full.
        if charges
            .iter()
            .zip(&used)
            .any(|(c, u)| !c.fits(*u) && c.unit == Unit::Usd)
        {
            used = self.store.quota_used_fresh(&agent.id, &charges).await?;
        }
        let overrun_recorded = self.overruns.recorded(&agent.id, &charges);
        Ok(QuotaPlan {
            charges,
            used,
            overrun_recorded,
        })
    }

    /// Commits a judgement with its outbox deliveries and trust evidence, then lets the tier
    /// controller react to a violation.
    async fn record(
        &self,
        subject: &Subject,
        judgement: Judgement,
        now: i64,
        claim: Option<&Claim>,
        phases: &mut Phases,
    ) -> std::result::Result<Decided, StoreError> {
        let Judgement {
            answer,
            writes,
            audit,
            events,
        } = judgement;
        // The row holds the answer as the API sends it: `axum::Json` serializes the same way.
        let body = writes.decision.answer.clone();
        // (A quota overrun is minor: evidence, but nothing for the controller to act on at once.)
        let violation = writes
            .violation
            .as_ref()
            .filter(|_| writes.overrun.is_none())
            .map(|(v, _)| (v.reason, v.class.clone(), v.mode));
        let evidence = writes.violation.is_some();
        let mut change = Change {
            writes: decision_writes(writes),
            audit,
        };
        let deliveries: Vec<Write> = events
            .iter()
            .flat_map(|e| self.outbox.writes(e, now))
            .collect();
        let notify = !deliveries.is_empty();
        change.writes.extend(deliveries);
        // A violation is trust evidence: the agent's noted score moves with it.
        if evidence {
            change.writes.push(self.tiers.note(&subject.agent));
        }
        if let Some(claim) = claim {
            change.writes.push(claim.answer(200, body.clone()));
        }
        // Building the change is the judgement's; from here it is the writer's.
        phases.mark(Phase::Judge);
        self.store.commit(change).await?;
        phases.mark(Phase::Commit);
        if notify {
            self.outbox.notify();
        }
        // A violation may be a hard trigger: the tier narrows before the agent's next request.
        if let Some((reason, class, mode)) = violation {
            self.tiers
                .review_violation(&subject.agent, reason, &class, mode)
                .await;
        }
        phases.mark(Phase::Review);
        Ok(Decided { answer, body })
    }

    /// What anomaly detectors compare the action with: the human baseline of the agent's team
    /// for this kind of action, and the agent's last hour in Warden's decisions and in the
    /// platform's events. Nothing when no warm baseline exists yet ("not computed").
    async fn anomaly_context(
        &self,
        action: &Action,
        agent: &Agent,
        now: i64,
    ) -> Result<Option<AnomalyContext>> {
        let (class, env, service) = (&action.class, &action.environment, &action.service);
        let Some(entry) = self.baselines.get(&agent.team, service, class) else {
            return Ok(None);
        };
        if !entry.baseline.warm() {
            return Ok(None);
        }
        let since = now - 3_600_000_000;
        let baseline = entry.for_action(env, &action.resources);
        let cap = activity_cap(baseline.rate_per_hour);
        let AgentActivity { decided, done } = self
            .store
            .activity(&agent.id, class, env, service, since, cap)
            .await?;
        Ok(Some(AnomalyContext {
            baseline,
            activity: RecentActivity {
                // Including this one.
                actions_last_hour: decided
                    .recent
                    .saturating_add(done.recent)
                    .saturating_add(1)
                    .min(cap),
                seen_combinations: if decided.done_before || done.done_before {
                    vec![format!("{class}/{env}/{service}")]
                } else {
                    Vec::new()
                },
            },
        }))
    }

    async fn parents(&self, agent: &Agent) -> Result<Vec<Arc<Agent>>> {
        let mut parents: Vec<Arc<Agent>> = Vec::new();
        let mut next = agent.parent.clone();
        while let Some(id) = next {
            if parents.len() >= MAX_PARENT_DEPTH
                || id == agent.id
                || parents.iter().any(|p| p.id == id)
            {
                return Err(Error::new(
                    Kind::Conflict,
                    "parent_chain_invalid",
                    format!(
                        "agent `{}` has a parent chain that is too deep or loops",
                        agent.id
                    ),
                ));
            }
            let parent = self.store.agent(&id).await?.ok_or_else(|| {
                Error::internal(format!("parent `{id}` of `{}` is missing", agent.id))
            })?;
            next = parent.parent.clone();
            parents.push(parent);
        }
        Ok(parents)
    }
}

/// A judgement's rows as the store's writes, in the order that makes a failed change write
/// nothing: using the approval, then charging the quotas, can fail; the rest cannot.
pub fn decision_writes(w: DecisionWrites) -> Vec<Write> {
    let DecisionWrites {
        consume_approval,
        charge,
        decision,
        violation,
        overrun: _,
        approval,
        guard,
    } = w;
    let mut writes = Vec::with_capacity(5);
    if let Some(id) = consume_approval {
        writes.push(Write::Approval(ApprovalWrite::ConsumeApproval {
            id,
            decision_id: decision.id.clone(),
            at: decision.at,
        }));
    }
    if let Some(charges) = charge {
        writes.push(Write::Quota(QuotaWrite::ChargeQuotas {
            agent_id: decision.agent_id.clone(),
            charges,
        }));
    }
    writes.push(Write::Decision(DecisionWrite::InsertDecision(decision)));
    if let Some((v, evidence)) = violation {
        writes.push(Write::Violation(ViolationWrite::InsertViolation(v)));
        writes.push(Write::Trust(TrustWrite::AddEvidence(evidence)));
    }
    if let Some(a) = approval {
        writes.push(Write::Approval(ApprovalWrite::InsertApproval(a)));
    }
    if let Some(g) = guard {
        writes.push(Write::Guard(GuardWrite::Arm(g)));
    }
    writes
}
