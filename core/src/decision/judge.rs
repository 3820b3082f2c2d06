//! The pure stages of a decision, from classification to the record, over one [`Inputs`].

use std::collections::BTreeMap;
use std::sync::Arc;

use super::record::{Consumed, Recorded, record};
use super::{
    Action, Anomaly, AnomalyStatus, ApprovalRef, ChangeSummary, DecisionAnswer, DecisionRequest,
    Obligation, Reason, Risk, Verdict,
};
use crate::approvals::{self, Presented};
use crate::audit::AuditRecord;
use crate::clock::format_micros;
use crate::delegation::{HumanProof, OnBehalfOf};
use crate::error::Result;
use crate::identity::{Agent, AgentStatus, Caller};
use crate::plugin::{AnomalyCheck, Assessment, CallStatus, PluginReport};
use crate::policy::{CompiledPolicy, Permission, PolicyMode, RiskLevel, ViolationMode};
use crate::quotas::{Charge, Headroom, QuotaPlan};
use crate::records::{
    Approval, ApprovalRow, DecisionRow, Event, EvidenceDelta, Guard, GuardStatus, ViolationReason,
    ViolationRow,
};

/// Everything `judge` needs, loaded by the decisions service.
#[derive(Debug, Clone)]
pub struct Subject {
    /// The agent (shared with the store's read cache: not copied per decision).
    pub agent: Arc<Agent>,
    /// Its parents, nearest first.
    pub parents: Vec<Arc<Agent>>,
    /// The on-behalf-of human, and what proves the agent may act for them.
    pub human: Option<OnBehalfOf>,
    /// The approval presented with the request, checked against it.
    pub approval: Option<Presented>,
}

/// The inputs of [`judge`], each loaded by its own stage of the service.
#[derive(Debug)]
pub struct Inputs<'a> {
    /// The effective policy.
    pub policy: &'a CompiledPolicy,
    /// Who asks.
    pub caller: &'a Caller,
    /// The agent, its parents, the on-behalf-of human and the presented approval.
    pub subject: &'a Subject,
    /// The request, validated (recorded as the agent's, whoever's token asked).
    pub request: &'a DecisionRequest,
    /// Decision time, Unix microseconds.
    pub now: i64,
    /// The id the decision is recorded under.
    pub decision_id: String,
    /// The plugins' merged opinion (stages 3 and 4).
    pub plugins: Assessment,
    /// The quotas the action draws on, with their counts.
    pub quotas: &'a QuotaPlan,
    /// The agent's blocked violations of this class, environment and service already on
    /// record in their window (`policy.same_violation_secs`), by reason, as far as the
    /// deciding process knows: the same attempt again is denied, but is not another violation.
    pub on_record: &'a [ViolationReason],
}

/// What a decision writes, in the order it must be written: the writes that may fail come
/// first (using the approval, then charging the quotas), so a failed change has written nothing.
#[derive(Debug, Clone)]
pub struct DecisionWrites {
    /// An approval this decision uses up; if another decision used it meanwhile, the whole
    /// change fails and nothing is recorded (single use, on every replica).
    pub consume_approval: Option<String>,
    /// What the action is charged to its quotas: rate limits always, the others when allowed.
    pub charge: Option<Vec<Charge>>,
    /// The decision itself.
    pub decision: DecisionRow,
    /// A violation, with the trust evidence it is.
    pub violation: Option<(ViolationRow, EvidenceDelta)>,
    /// When the violation is a spent quota's overrun: that charge's place in the quota plan
    /// (the caller notes the window's overrun as on record once this commits).
    pub overrun: Option<usize>,
    /// A new approval request.
    pub approval: Option<ApprovalRow>,
    /// The watch a guarded action arms.
    pub guard: Option<Guard>,
}

/// What `judge` produces: the answer and what records it.
#[derive(Debug, Clone)]
pub struct Judgement {
    /// The answer to send once the writes are committed.
    pub answer: DecisionAnswer,
    /// The rows to write, in one transaction with `audit`.
    pub writes: DecisionWrites,
    /// The audit records: the decision's first, then its approval and violation records.
    pub audit: Vec<AuditRecord>,
    /// Events for the outbox, to be written with the rest.
    pub events: Vec<Event>,
}

fn reason(code: &str, text: String) -> Reason {
    Reason {
        code: code.to_string(),
        text,
        quota: None,
    }
}

/// The verdict as it forms, stage by stage.
struct Draft {
    verdict: Verdict,
    reasons: Vec<Reason>,
    obligations: Vec<Obligation>,
    /// The reason code of a violation the verdict amounts to.
    violation: Option<ViolationReason>,
    /// A forged, reused or misapplied approval: always blocked.
    approval_violation: bool,
    consume: Option<Consumed>,
    pending: Option<ApprovalRef>,
    violation_row: Option<ViolationRow>,
    /// The quota charge whose overrun `violation_row` is.
    overrun: Option<usize>,
    /// A violation the class's flag or guard mode lets through, unless a quota stops the action.
    let_through: Option<ViolationMode>,
    charge: Option<Vec<Charge>>,
    headroom: Vec<Headroom>,
}

/// Stages 3, 4, 5, 6, 7 and 8, and the record of stage 9, without I/O.
pub fn judge(inputs: Inputs<'_>) -> Result<Judgement> {
    let Inputs {
        policy,
        caller,
        subject,
        request,
        now,
        decision_id,
        plugins,
        quotas,
        on_record,
    } = inputs;
    let agent = &subject.agent;
    let action = &request.action;
    let (class, env, service) = (
        action.class.as_str(),
        action.environment.as_str(),
        action.service.as_str(),
    );
    let mut draft = Draft {
        verdict: Verdict::Deny,
        reasons: Vec::new(),
        obligations: Vec::new(),
        violation: None,
        approval_violation: false,
        consume: None,
        pending: None,
        violation_row: None,
        overrun: None,
        charge: None,
        headroom: Vec::new(),
        let_through: None,
    };
    let (risk, anomaly, reports) = classify(policy, action, plugins, &mut draft.reasons);
    let level = risk.level;
    let tier = effective_tier(policy, subject, anomaly.as_ref(), &mut draft.reasons);
    permit(
        policy,
        subject,
        tier,
        (class, env, service),
        level,
        &mut draft,
    );
    present_approval(subject, level, &mut draft);
    let violation_of = |mode: ViolationMode, reason: ViolationReason| ViolationRow {
        id: uuid::Uuid::now_v7().to_string(),
        at: now,
        decision_id: decision_id.clone(),
        agent_id: agent.id.clone(),
        class: class.to_string(),
        environment: env.to_string(),
        service: service.to_string(),
        mode,
        reason,
    };
    let shadow = agent.shadow || policy.policy.mode == PolicyMode::Shadow;
    if !shadow {
        handle_violation(policy, class, on_record, &mut draft, &violation_of);
        charge_quotas(quotas, &mut draft, &violation_of);
        let_through(class, &mut draft);
    }
    let shadow_verdict = shadow.then(|| {
        let would = draft.verdict;
        draft.reasons.push(reason(
            "shadow_mode",
            format!(
                "shadow mode: enforcement would answer {}; nothing is blocked",
                would.as_str()
            ),
        ));
        draft.verdict = Verdict::Allow;
        would
    });
    let new_approval = request_approval(policy, request, agent, &decision_id, now, &mut draft);
    // Every allowed write owes its outcome by a deadline (reads change nothing).
    let outcome_due_at = (draft.verdict == Verdict::Allow && class != "read")
        .then(|| now.saturating_add(policy.outcome_deadline_micros(class)));
    // A guarded action that goes ahead is watched until its deadline.
    let guard_deadline = now.saturating_add(policy.guard_watch_micros(class));
    let guarded =
        draft.verdict == Verdict::Allow && draft.let_through == Some(ViolationMode::Guard);
    if guarded {
        // The watch is the answer's first obligation.
        draft.obligations.insert(0, Obligation {
            kind: "rollback_guard".into(),
            detail: format!(
                "an automatic-rollback watch is armed until the deadline: send metric windows to /v1/decisions/{decision_id}/signals; a failed judgement rolls the action back, and so does silence unless the policy asks a human"
            ),
            due_at: Some(format_micros(guard_deadline)),
        });
    }
    if let Some(due) = outcome_due_at {
        draft.obligations.push(Obligation {
            kind: "report_outcome".into(),
            detail: format!("report what happened (succeeded, failed, rolled_back) to /v1/decisions/{decision_id}/outcome"),
            due_at: Some(format_micros(due)),
        });
    }
    let answer = DecisionAnswer {
        decision_id: decision_id.clone(),
        verdict: draft.verdict,
        shadow_verdict,
        risk,
        anomaly,
        reasons: draft.reasons,
        obligations: draft.obligations,
        approval: draft.pending,
        tier,
        agent_tier: agent.tier,
        trust_score: agent.trust_score,
        quotas: draft.headroom,
        policy_version: policy.version.clone(),
        plugins: reports,
        decided_at: format_micros(now),
    };
    let guard = guarded.then(|| Guard {
        decision_id: decision_id.clone(),
        agent: agent.id.clone(),
        class: class.to_string(),
        environment: env.to_string(),
        service: service.to_string(),
        armed_at: now,
        deadline: guard_deadline,
        status: GuardStatus::Watching,
        signals: 0,
        errors: 0,
        last_verdict: None,
        review: None,
    });
    let rest = Recorded {
        consume: draft.consume,
        charge: draft.charge,
        violation: draft.violation_row,
        overrun: draft.overrun,
        approval: new_approval,
        outcome_due_at,
        guard,
        proof: subject.human.as_ref().map(|h| h.proof.clone()),
    };
    record(policy, caller, agent, request, answer, rest, now)
}

/// Stage 3: the built-in table's risk, raised (never lowered) by the classifiers; and the
/// anomaly detectors' findings (stage 4).
fn classify(
    policy: &CompiledPolicy,
    action: &Action,
    plugins: Assessment,
    reasons: &mut Vec<Reason>,
) -> (Risk, Option<Anomaly>, Vec<PluginReport>) {
    let (class, env) = (action.class.as_str(), action.environment.as_str());
    let breaking = action.change.as_ref().is_some_and(|c| c.breaking);
    let table_level = policy.table_risk(class, env, breaking);
    let mut categories = vec![["class:", class].concat(), ["environment:", env].concat()];
    if breaking {
        categories.push("breaking_change".to_string());
    }
    let level = table_level.max(plugins.level.unwrap_or(table_level));
    let score = table_level
        .base_score()
        .max(plugins.score)
        .max(level.base_score());
    categories.extend(plugins.categories);
    for (plugin, text) in plugins.reasons {
        let failed = plugins
            .reports
            .iter()
            .any(|r| r.plugin == plugin && r.outcome != CallStatus::Ok);
        reasons.push(reason(
            if failed {
                "plugin_failed"
            } else {
                "plugin_risk"
            },
            format!("{plugin}: {text}"),
        ));
    }
    let not_computed = |reason: String| Anomaly {
        status: AnomalyStatus::NotComputed,
        severity: None,
        reason: Some(reason),
        findings: Vec::new(),
        baseline: None,
    };
    let anomaly = match plugins.anomaly {
        AnomalyCheck::NoDetector => {
            not_computed(format!("no anomaly detector is loaded for class `{class}`"))
        }
        AnomalyCheck::NoBaseline => not_computed(format!(
            "no human baseline with enough history for this team, service and class `{class}` yet"
        )),
        AnomalyCheck::Checked(baseline) => Anomaly {
            status: AnomalyStatus::Checked,
            severity: Some(plugins.anomaly_severity),
            reason: None,
            findings: plugins.findings,
            baseline: Some(baseline),
        },
    };
    let anomaly = Some(anomaly);
    (
        Risk {
            level,
            score,
            categories,
        },
        anomaly,
        plugins.reports,
    )
}

/// Stage 5, first half: effective tier = min(agent tier, parent caps, anomaly cap).
fn effective_tier(
    policy: &CompiledPolicy,
    subject: &Subject,
    anomaly: Option<&Anomaly>,
    reasons: &mut Vec<Reason>,
) -> u8 {
    let mut tier = subject.agent.tier;
    for parent in &subject.parents {
        if parent.tier < tier {
            tier = parent.tier;
            reasons.push(reason(
                "parent_cap",
                format!(
                    "parent agent `{}` is at tier {}, which caps this agent",
                    parent.id, parent.tier
                ),
            ));
        }
    }
    if let Some(a) = anomaly
        && let Some(severity) = a.severity
        && severity >= policy.policy.severe_anomaly
        && tier > policy.policy.severe_anomaly_tier_cap
    {
        tier = policy.policy.severe_anomaly_tier_cap;
        let worst = a
            .findings
            .iter()
            .max_by_key(|f| f.severity)
            .map(|f| format!(" ({}: {})", f.detector, f.message))
            .unwrap_or_default();
        reasons.push(reason(
            "anomaly_cap",
            format!("a severe anomaly (severity {severity}){worst} caps the tier at {tier}"),
        ));
    }
    tier
}

/// Stage 5, second half: suspension, the tier's grant, and the on-behalf-of human's rights.
fn permit(
    policy: &CompiledPolicy,
    subject: &Subject,
    tier: u8,
    (class, env, service): (&str, &str, &str),
    level: RiskLevel,
    draft: &mut Draft,
) {
    let agent = &subject.agent;
    let tier_label = format!("tier {tier} ({})", policy.tier_name(tier));
    let suspended = if agent.status == AgentStatus::Suspended {
        Some(reason(
            "agent_suspended",
            format!("agent `{}` is suspended", agent.id),
        ))
    } else {
        subject
            .parents
            .iter()
            .find(|p| p.status == AgentStatus::Suspended)
            .map(|p| {
                reason(
                    "parent_suspended",
                    format!("parent agent `{}` is suspended", p.id),
                )
            })
    };
    let (verdict, r, violation) = match suspended {
        Some(r) => (Verdict::Deny, r, None),
        None => match policy.permission(tier, class, env, service, level) {
            Permission::Allowed
                if let Some(t) = unearned(policy, agent, tier, (class, env, service), level) =>
            {
                (
                    Verdict::RequireApproval,
                    reason(
                        "class_not_earned",
                        format!(
                            "tier {t} ({}) lets this agent {class} alone only after {} successes done under approval; until then a human approves",
                            policy.tier_name(t),
                            policy.policy.tiering.min_class_successes
                        ),
                    ),
                    None,
                )
            }
            Permission::Allowed => (
                Verdict::Allow,
                reason(
                    "grant_allows",
                    format!("{tier_label} may {class} in {env} at {level} risk"),
                ),
                None,
            ),
            Permission::NeedsApproval => (
                Verdict::RequireApproval,
                reason(
                    "approval_required",
                    format!(
                        "{tier_label} needs a human's approval to {class} in {env} at {level} risk"
                    ),
                ),
                None,
            ),
            Permission::ExplicitDeny => (
                Verdict::Deny,
                reason(
                    ViolationReason::ExplicitDeny.as_str(),
                    format!("a grant of {tier_label} denies {class} in {env} for {service}"),
                ),
                Some(ViolationReason::ExplicitDeny),
            ),
            Permission::NoGrant => (
                Verdict::Deny,
                reason(
                    ViolationReason::NoGrant.as_str(),
                    format!("{tier_label} has no grant to {class} in {env} at {level} risk"),
                ),
                Some(ViolationReason::NoGrant),
            ),
        },
    };
    draft.verdict = verdict;
    draft.reasons.push(r);
    draft.violation = violation;
    // On behalf of a human: only one who said so, and the agent gets at most their rights.
    let Some(OnBehalfOf { human, proof }) = &subject.human else {
        return;
    };
    if *proof == HumanProof::Unproven {
        draft.reasons.push(reason(
            ViolationReason::OnBehalfOfUnproven.as_str(),
            format!(
                "`{}` has not delegated {class} in {env} for {service} to agent `{}`, and no trusted service vouched for them",
                human.id, agent.id
            ),
        ));
        draft.violation = Some(ViolationReason::OnBehalfOfUnproven);
        draft.verdict = Verdict::Deny;
    } else if draft.verdict != Verdict::Deny && !human.covers(class, env, service, level) {
        draft.reasons.push(reason(
            ViolationReason::OnBehalfOfNotPermitted.as_str(),
            format!("`{}`, on whose behalf the agent acts, may not {class} in {env} for {service} at {level} risk", human.id),
        ));
        draft.violation = Some(ViolationReason::OnBehalfOfNotPermitted);
        draft.verdict = Verdict::Deny;
    }
}

/// The tier whose new right this is, when the agent was promoted into it without earning the
/// class yet (see [`Agent::earned_classes`]).
fn unearned(
    policy: &CompiledPolicy,
    agent: &Agent,
    tier: u8,
    (class, env, service): (&str, &str, &str),
    level: RiskLevel,
) -> Option<u8> {
    if agent.earned_classes.is_empty() {
        return None;
    }
    // Tier 0's rights are nobody's new right: never restricted.
    let first = (0..=tier)
        .find(|t| policy.permission(*t, class, env, service, level) == Permission::Allowed)
        .filter(|t| *t > 0)?;
    let earned = agent.earned_classes.get(&first)?;
    (!earned.contains(class)).then_some(first)
}

/// Stage 8, an approval presented: it allows exactly the action it was given for, once.
fn present_approval(subject: &Subject, level: RiskLevel, draft: &mut Draft) {
    let verdict = draft.verdict;
    match &subject.approval {
        // Plugins or policy may judge the same action riskier now than when it was approved:
        // then the approval no longer covers it, and a new request is made.
        Some(Presented::Valid(a))
            if verdict != Verdict::Deny
                && approved_risk(a).is_some_and(|approved| level > approved) =>
        {
            draft.reasons.push(reason(
                "approval_outdated",
                format!(
                    "approval `{}` was given at {} risk; the action is now {level}",
                    a.id,
                    approved_risk(a).map(|r| r.as_str()).unwrap_or("?")
                ),
            ));
        }
        Some(Presented::Valid(a)) if verdict != Verdict::Deny => {
            let by = a.decided_by.as_deref().unwrap_or("a human");
            draft.reasons.push(reason(
                "approved",
                format!(
                    "approval `{}` by {by} allows exactly this action, once",
                    a.id
                ),
            ));
            draft.verdict = Verdict::Allow;
            draft.consume = Some(Consumed {
                id: a.id.clone(),
                approvers: a.approved_by.clone(),
            });
        }
        Some(Presented::Pending(a)) if verdict == Verdict::RequireApproval => {
            draft.reasons.push(reason(
                "approval_pending",
                format!("approval `{}` is still waiting for a human", a.id),
            ));
            draft.pending = Some(ApprovalRef {
                id: a.id.clone(),
                expires_at: a.expires_at.clone(),
                url: format!("/v1/approvals/{}", a.id),
            });
        }
        Some(Presented::Rejected(text)) if verdict != Verdict::Deny => {
            draft
                .reasons
                .push(reason("approval_rejected", text.clone()));
            draft.verdict = Verdict::Deny;
        }
        Some(Presented::Expired(text)) => {
            draft.reasons.push(reason("approval_expired", text.clone()))
        }
        Some(Presented::Violation { code, text }) => {
            draft.reasons.push(reason(code.as_str(), text.clone()));
            draft.violation = Some(*code);
            draft.approval_violation = true;
            draft.verdict = Verdict::Deny;
        }
        _ => {}
    }
}

/// Stage 7: the class's violation mode decides what a violation does.
fn handle_violation(
    policy: &CompiledPolicy,
    class: &str,
    on_record: &[ViolationReason],
    draft: &mut Draft,
    violation_of: &impl Fn(ViolationMode, ViolationReason) -> ViolationRow,
) {
    let Some(code) = draft.violation else { return };
    // A forged, reused or misapplied approval is always blocked, whatever the class's mode.
    let mode = if draft.approval_violation {
        ViolationMode::Block
    } else {
        policy.violation_mode(class)
    };
    if mode != ViolationMode::Block {
        draft.let_through = Some(mode);
        draft.verdict = Verdict::Allow;
    } else if on_record.contains(&code) {
        // The same attempt again within its window: denied, but the violation is on record.
        return;
    }
    draft.violation_row = Some(violation_of(mode, code));
}

/// What a violation let through says, once the quotas have had their say (a quota that stops
/// the action takes the let-through back); in guard mode the watch is armed at the end.
fn let_through(class: &str, draft: &mut Draft) {
    match draft.let_through {
        None | Some(ViolationMode::Block) => {}
        Some(ViolationMode::Flag) => draft.reasons.push(reason(
            "violation_flagged",
            format!("{class} is in flag mode: allowed, and recorded as a violation for review"),
        )),
        Some(ViolationMode::Guard) => {
            draft.reasons.push(reason(
                "violation_guarded",
                format!("{class} is in guard mode: allowed under an automatic-rollback watch, and recorded as a violation"),
            ))
        }
    }
}

/// Stage 6: quotas. Rate limits (quotas counting every request) are charged whatever the
/// verdict; the others only for an action about to go ahead (an approved one is charged when
/// its approval is used, not when it was asked for).
fn charge_quotas(
    quotas: &QuotaPlan,
    draft: &mut Draft,
    violation_of: &impl Fn(ViolationMode, ViolationReason) -> ViolationRow,
) {
    if quotas.charges.is_empty() {
        return;
    }
    let counts = quotas.charges.iter().zip(&quotas.used);
    let over = counts.clone().enumerate().find(|(_, (c, used))| {
        (draft.verdict == Verdict::Allow || c.every_request()) && !c.fits(**used)
    });
    if let Some((i, (c, used))) = over {
        draft.headroom = counts.clone().map(|(c, used)| c.headroom(*used)).collect();
        let h = c.headroom(*used);
        let scope = if c.scope == "*" {
            String::new()
        } else {
            format!(" for {}", c.scope)
        };
        let needs = c.headroom(c.amount).used;
        draft.reasons.push(Reason {
            quota: Some(c.quota.clone()),
            ..reason(
                ViolationReason::QuotaExceeded.as_str(),
                format!(
                    "quota `{}`{scope}: {} of {} {} used, this action needs {needs}; resets at {}",
                    c.quota,
                    h.used,
                    h.limit,
                    c.unit.label(),
                    h.resets_at
                ),
            )
        });
        draft.verdict = Verdict::Deny;
        // The approval (if any) stays unused: the agent may try again once the quota resets.
        draft.consume = None;
        // A class in flag or guard mode let the action through; the quota stops it: the
        // violation on record is the quota's (blocked), not a flagged one.
        draft.let_through = None;
        // Once per window: the agent retrying a spent quota is the same overrun.
        draft.overrun = (!quotas.overrun_recorded(i)).then_some(i);
        draft.violation_row = draft
            .overrun
            .map(|_| violation_of(ViolationMode::Block, ViolationReason::QuotaExceeded));
    }
    // What the decision draws on: everything when it goes ahead, otherwise the rate limits
    // (none when a rate limit itself is what it is over: the service cuts such a caller off
    // before judging, see `QuotaPlan::over_rate_limit`).
    let allowed = draft.verdict == Verdict::Allow;
    let rate_limited = over.is_some_and(|(_, (c, _))| c.every_request());
    let charged = |c: &Charge| !rate_limited && (allowed || c.every_request());
    if over.is_none() {
        draft.headroom = counts
            .map(|(c, used)| c.headroom(if charged(c) { used + c.amount } else { *used }))
            .collect();
    }
    // Nothing to add (a free action) needs no write; its limit was checked above.
    let charges: Vec<_> = quotas
        .charges
        .iter()
        .filter(|c| charged(c) && c.amount > 0)
        .cloned()
        .collect();
    draft.charge = (!charges.is_empty()).then_some(charges);
}

/// Stage 8, a new request: a human decides; the agent re-submits the same action with its id.
fn request_approval(
    policy: &CompiledPolicy,
    request: &DecisionRequest,
    agent: &Agent,
    decision_id: &str,
    now: i64,
    draft: &mut Draft,
) -> Option<ApprovalRow> {
    let class = request.action.class.as_str();
    let mut new_approval = None;
    if draft.verdict == Verdict::RequireApproval && draft.pending.is_none() {
        let id = uuid::Uuid::now_v7().to_string();
        let expires_at = now.saturating_add(policy.approval_ttl_micros(class));
        draft.pending = Some(ApprovalRef {
            id: id.clone(),
            expires_at: format_micros(expires_at),
            url: format!("/v1/approvals/{id}"),
        });
        new_approval = Some(ApprovalRow {
            id,
            decision_id: decision_id.to_string(),
            agent_id: agent.id.clone(),
            on_behalf_of: request.on_behalf_of.clone(),
            class: class.to_string(),
            environment: request.action.environment.clone(),
            service: request.action.service.clone(),
            action_hash: approvals::action_hash(&bound(
                &request.action,
                request.on_behalf_of.as_deref(),
            )),
            summary: String::new(),
            created_at: now,
            expires_at,
            approvals_needed: i64::from(policy.approvers_required(class)),
        });
    }
    if let Some(p) = &draft.pending {
        draft.obligations.push(Obligation {
            kind: "await_approval".into(),
            detail: format!("wait for approval {} (until {}), then re-submit this exact action with \"approval_id\"", p.id, p.expires_at),
            due_at: Some(p.expires_at.clone()),
        });
    }
    new_approval
}

fn approved_risk(a: &Approval) -> Option<RiskLevel> {
    serde_json::from_value(a.summary["risk"]["level"].clone()).ok()
}

/// What an approval for `action` is bound to.
pub fn bound<'a>(
    action: &'a Action,
    on_behalf_of: Option<&'a str>,
) -> approvals::Bound<'a, ChangeSummary, BTreeMap<String, String>> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{Human, Role};
    use crate::policy::{Grant, Policy};

    fn policy() -> CompiledPolicy {
        CompiledPolicy::new(Policy::default()).unwrap()
    }

    fn agent(id: &str, tier: u8) -> Agent {
        Agent::new(id, "core", tier)
    }

    fn caller() -> Caller {
        Caller {
            token_id: "tok_1".into(),
            role: Role::Service,
            subject: None,
        }
    }

    fn request(class: &str, env: &str) -> DecisionRequest {
        serde_json::from_value(serde_json::json!({"agent": "a", "action": {"class": class, "environment": env, "service": "payments"}})).unwrap()
    }

    fn verdict(
        p: &CompiledPolicy,
        subject: &Subject,
        class: &str,
        env: &str,
    ) -> (Verdict, Option<Verdict>, Vec<String>) {
        let j = run(p, subject, request(class, env)).unwrap();
        (
            j.answer.verdict,
            j.answer.shadow_verdict,
            j.answer.reasons.into_iter().map(|r| r.code).collect(),
        )
    }

    fn run(
        policy: &CompiledPolicy,
        subject: &Subject,
        request: DecisionRequest,
    ) -> Result<Judgement> {
        run_on_record(policy, subject, request, &[])
    }

    /// `run`, with these of the agent's blocked violations on record.
    fn run_on_record(
        policy: &CompiledPolicy,
        subject: &Subject,
        request: DecisionRequest,
        on_record: &[ViolationReason],
    ) -> Result<Judgement> {
        let (caller, quotas) = (caller(), QuotaPlan::default());
        judge(Inputs {
            policy,
            caller: &caller,
            subject,
            request: &request,
            now: 0,
            decision_id: "d".into(),
            plugins: Assessment::default(),
            quotas: &quotas,
            on_record,
        })
    }

    fn alone(a: Agent) -> Subject {
        Subject {
            agent: Arc::new(a),
            parents: vec![],
            human: None,
            approval: None,
        }
    }

    /// A staging deploy by `subject` whose deploys-per-hour quota is spent (5 of 5), with the
    /// overruns `recorded` already on record.
    fn spent_deploy(p: &CompiledPolicy, subject: &Subject, recorded: Vec<bool>) -> Judgement {
        let charges = crate::quotas::charges(
            &p.policy.quotas,
            &jiff::tz::TimeZone::UTC,
            &subject.agent,
            ("deploy", "staging", "payments"),
            Some(1.0),
            0,
        );
        let quotas = QuotaPlan {
            used: vec![0, 0, 5],
            charges,
            overrun_recorded: recorded,
        };
        judge(Inputs {
            policy: p,
            caller: &caller(),
            subject,
            request: &request("deploy", "staging"),
            now: 0,
            decision_id: "d".into(),
            plugins: Assessment::default(),
            quotas: &quotas,
            on_record: &[],
        })
        .unwrap()
    }

    #[test]
    fn rate_limits_count_every_request_and_budgets_only_allowed_ones() {
        let p = policy();
        let s = alone(agent("a", 2));
        let judged = |class: &str, env: &str, used: [i64; 3]| {
            let charges = crate::quotas::charges(
                &p.policy.quotas,
                &jiff::tz::TimeZone::UTC,
                &s.agent,
                (class, env, "payments"),
                Some(1.0),
                0,
            );
            let quotas = QuotaPlan {
                used: used[..charges.len()].to_vec(),
                charges,
                ..QuotaPlan::default()
            };
            judge(Inputs {
                policy: &p,
                caller: &caller(),
                subject: &s,
                request: &request(class, env),
                now: 0,
                decision_id: "d".into(),
                plugins: Assessment::default(),
                quotas: &quotas,
                on_record: &[],
            })
            .unwrap()
        };
        let names = |j: &Judgement| -> Vec<String> {
            j.writes
                .charge
                .iter()
                .flatten()
                .map(|c| c.quota.clone())
                .collect()
        };
        // Allowed: every quota it touches.
        let allowed = judged("deploy", "staging", [0, 0, 0]);
        assert_eq!(allowed.answer.verdict, Verdict::Allow);
        assert_eq!(
            names(&allowed),
            [
                "cost_per_day",
                "calls_per_minute",
                "deploys_per_hour_per_service"
            ]
        );
        // Waiting for an approval: only the rate limit, and its headroom counts this request.
        let waiting = judged("deploy", "production", [0, 7, 0]);
        assert_eq!(waiting.answer.verdict, Verdict::RequireApproval);
        assert_eq!(names(&waiting), ["calls_per_minute"]);
        let calls = waiting
            .answer
            .quotas
            .iter()
            .find(|h| h.quota == "calls_per_minute")
            .unwrap();
        assert_eq!((calls.used, calls.remaining), (8.0, 92.0));
        // Over a budget: denied, and the denial still counts as a request.
        let over = judged("deploy", "staging", [0, 0, 5]);
        assert_eq!(over.answer.verdict, Verdict::Deny);
        assert_eq!(names(&over), ["calls_per_minute"]);
        // Over the rate limit itself (the service cuts such a caller off before judging): a
        // denial that charges nothing, so it can never push the count further.
        let flooded = judged("deploy", "staging", [0, 100, 0]);
        assert_eq!(flooded.answer.verdict, Verdict::Deny);
        assert!(flooded.writes.charge.is_none());
    }

    #[test]
    fn a_spent_quota_is_one_violation_per_window() {
        let p = policy();
        let s = alone(agent("a", 2));
        let judged = |recorded: Vec<bool>| spent_deploy(&p, &s, recorded);
        // The first denial in the window is the overrun: a violation with its evidence and
        // its own audit record.
        let first = judged(vec![]);
        assert_eq!(first.answer.verdict, Verdict::Deny);
        let (violation, evidence) = first.writes.violation.as_ref().unwrap();
        assert_eq!(violation.reason.as_str(), "quota_exceeded");
        assert_eq!(evidence.kind, crate::trust::Kind::QuotaOverrun);
        assert_eq!(
            first.writes.overrun,
            Some(2),
            "deploys_per_hour_per_service"
        );
        assert_eq!(first.audit.len(), 2);
        // Once it is on record, the same denial again is a decision and nothing more.
        let again = judged(vec![false, false, true]);
        assert_eq!(again.answer.verdict, Verdict::Deny);
        assert!(
            again
                .answer
                .reasons
                .iter()
                .any(|r| r.code == "quota_exceeded")
        );
        assert!(again.writes.violation.is_none());
        assert_eq!(again.writes.overrun, None);
        assert_eq!(again.audit.len(), 1);
        assert_eq!(again.answer.quotas, first.answer.quotas);
        // Another quota's overrun on record does not cover this one.
        let other = judged(vec![true, true, false]);
        assert!(other.writes.violation.is_some());
    }

    #[test]
    fn a_blocked_violation_on_record_is_not_recorded_again_in_its_window() {
        let mut policy = Policy::default();
        policy
            .violation_modes
            .insert("docs_update".into(), ViolationMode::Flag);
        let p = CompiledPolicy::new(policy).unwrap();
        let s = alone(agent("a", 0));
        let judged = |class: &str, on_record: &[ViolationReason]| {
            run_on_record(&p, &s, request(class, "staging"), on_record).unwrap()
        };
        // The first attempt is a violation with its evidence and its own audit record.
        let first = judged("deploy", &[]);
        assert_eq!(first.answer.verdict, Verdict::Deny);
        let (violation, _) = first.writes.violation.as_ref().unwrap();
        assert_eq!(violation.reason, ViolationReason::NoGrant);
        assert_eq!(first.audit.len(), 2);
        // The same attempt again while it is on record: denied for the same reason, one
        // decision and its record, and nothing more.
        let again = judged("deploy", &[ViolationReason::NoGrant]);
        assert_eq!(again.answer.verdict, Verdict::Deny);
        let codes = |j: &Judgement| {
            j.answer
                .reasons
                .iter()
                .map(|r| r.code.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(codes(&again), ["no_grant"]);
        assert_eq!(codes(&again), codes(&first));
        assert!(again.writes.violation.is_none());
        assert_eq!(again.audit.len(), 1);
        assert!(again.events.is_empty());
        // Another reason on record does not cover this one.
        let other = judged("deploy", &[ViolationReason::ExplicitDeny]);
        assert!(other.writes.violation.is_some());
        // A violation let through is an action that happened: always recorded.
        let flagged = judged("docs_update", &[ViolationReason::NoGrant]);
        assert_eq!(flagged.answer.verdict, Verdict::Allow);
        assert!(matches!(&flagged.writes.violation, Some((v, _)) if v.mode == ViolationMode::Flag));
    }

    #[test]
    fn standard_agent_seed_scenarios() {
        let p = policy();
        let s = alone(agent("a", 2));
        assert_eq!(verdict(&p, &s, "deploy", "staging").0, Verdict::Allow);
        assert_eq!(
            verdict(&p, &s, "deploy", "production").0,
            Verdict::RequireApproval
        );
        assert_eq!(
            verdict(&p, &s, "db_migration", "production").0,
            Verdict::RequireApproval
        );
        assert_eq!(
            verdict(&p, &s, "security_policy_change", "staging").0,
            Verdict::RequireApproval
        );
    }

    #[test]
    fn a_promoted_agent_uses_alone_only_the_classes_it_earned() {
        let p = policy();
        let mut a = agent("a", 3);
        a.earned_classes
            .insert(3, ["deploy".to_string()].into_iter().collect());
        a.earned_classes
            .insert(2, ["deploy".to_string()].into_iter().collect());
        let s = alone(a);
        // Tier 3's new right, earned: alone.
        assert_eq!(verdict(&p, &s, "deploy", "production").0, Verdict::Allow);
        // Tier 3's new right, not earned: a human approves.
        let (v, _, reasons) = verdict(&p, &s, "config_change", "production");
        assert_eq!(v, Verdict::RequireApproval);
        assert!(
            reasons.contains(&"class_not_earned".to_string()),
            "{reasons:?}"
        );
        // Tier 2's new right, not earned at tier 2 either: a human approves.
        assert_eq!(
            verdict(&p, &s, "config_change", "staging").0,
            Verdict::RequireApproval
        );
        // Rights of tier 1 (docs, dev) were given by humans: alone.
        assert_eq!(
            verdict(&p, &s, "docs_update", "production").0,
            Verdict::Allow
        );
        assert_eq!(verdict(&p, &s, "config_change", "dev").0, Verdict::Allow);
        // What the tier needs approval for still does.
        assert_eq!(
            verdict(&p, &s, "db_migration", "production").0,
            Verdict::RequireApproval
        );
    }

    #[test]
    fn observe_agent_is_denied_every_write_and_records_a_violation() {
        let p = policy();
        let s = alone(agent("a", 0));
        assert_eq!(verdict(&p, &s, "read", "production").0, Verdict::Allow);
        for class in [
            "docs_update",
            "deploy",
            "config_change",
            "db_migration",
            "infra_delete",
        ] {
            let j = run(&p, &s, request(class, "dev")).unwrap();
            assert_eq!(j.answer.verdict, Verdict::Deny, "{class}");
            assert!(j.writes.violation.is_some(), "{class}");
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
        let on_behalf = |proof| Subject {
            agent: Arc::new(agent("a", 4)),
            parents: vec![],
            human: Some(OnBehalfOf {
                human: Arc::new(bob.clone()),
                proof,
            }),
            approval: None,
        };
        let s = on_behalf(HumanProof::Delegated("d1".into()));
        let (v, _, codes) = verdict(&p, &s, "deploy", "production");
        assert_eq!(v, Verdict::Deny);
        assert!(codes.contains(&"on_behalf_of_not_permitted".to_string()));
        assert_eq!(verdict(&p, &s, "deploy", "staging").0, Verdict::Allow);
        let vouched = on_behalf(HumanProof::Vouched("chatops".into()));
        assert_eq!(verdict(&p, &vouched, "deploy", "staging").0, Verdict::Allow);
        // Naming a human who said nothing: refused, whatever the human may do, and a violation.
        let unproven = on_behalf(HumanProof::Unproven);
        let (v, _, codes) = verdict(&p, &unproven, "deploy", "staging");
        assert_eq!(v, Verdict::Deny);
        assert!(
            codes.contains(&"on_behalf_of_unproven".to_string()),
            "{codes:?}"
        );
        let j = run(&p, &unproven, request("deploy", "staging")).unwrap();
        assert_eq!(
            j.writes.violation.as_ref().map(|(v, _)| v.reason.as_str()),
            Some("on_behalf_of_unproven")
        );
    }

    #[test]
    fn parent_caps_and_suspension() {
        let p = policy();
        let mut parent = agent("boss", 1);
        let s = Subject {
            agent: Arc::new(agent("a", 3)),
            parents: vec![Arc::new(parent.clone())],
            human: None,
            approval: None,
        };
        let j = run(&p, &s, request("deploy", "production")).unwrap();
        assert_eq!(
            (j.answer.tier, j.answer.agent_tier, j.answer.verdict),
            (1, 3, Verdict::Deny)
        );
        parent.tier = 4;
        parent.status = AgentStatus::Suspended;
        let s = Subject {
            agent: Arc::new(agent("a", 3)),
            parents: vec![Arc::new(parent)],
            human: None,
            approval: None,
        };
        assert_eq!(verdict(&p, &s, "read", "dev").2, vec!["parent_suspended"]);
    }

    #[test]
    fn shadow_never_blocks_but_records_the_would_be_verdict() {
        let p = policy();
        let mut a = agent("a", 0);
        a.shadow = true;
        let j = run(&p, &alone(a), request("db_migration", "production")).unwrap();
        assert_eq!(
            (j.answer.verdict, j.answer.shadow_verdict),
            (Verdict::Allow, Some(Verdict::Deny))
        );
        assert_eq!(j.writes.decision.shadow_verdict, Some(Verdict::Deny));
        assert_eq!(
            j.audit[0].details.as_ref().unwrap().value()["shadow_verdict"],
            "deny"
        );
    }

    #[test]
    fn flag_and_guard_modes_allow_and_record() {
        let mut policy = Policy::default();
        policy
            .violation_modes
            .insert("deploy".into(), ViolationMode::Guard);
        policy
            .violation_modes
            .insert("docs_update".into(), ViolationMode::Flag);
        let p = CompiledPolicy::new(policy).unwrap();
        let s = alone(agent("a", 0));
        let j = run(&p, &s, request("deploy", "production")).unwrap();
        assert_eq!(j.answer.verdict, Verdict::Allow);
        let guard = &j.answer.obligations[0];
        assert_eq!(guard.kind, "rollback_guard");
        assert!(
            guard.detail.contains("/v1/decisions/d/signals"),
            "{guard:?}"
        );
        assert!(matches!(&j.writes.violation, Some((v, _)) if v.mode == ViolationMode::Guard));
        // The watch is armed with the decision, until the class's deadline (30 minutes).
        let armed = j.writes.guard.as_ref().expect("a watch is armed");
        assert_eq!(
            (armed.decision_id.as_str(), armed.status),
            ("d", GuardStatus::Watching)
        );
        assert_eq!(armed.deadline, 1_800_000_000);
        assert_eq!(
            guard.due_at.as_deref(),
            Some(format_micros(armed.deadline).as_str())
        );
        let j = run(&p, &s, request("docs_update", "dev")).unwrap();
        assert_eq!(j.answer.verdict, Verdict::Allow);
        assert!(matches!(&j.writes.violation, Some((v, _)) if v.mode == ViolationMode::Flag));
        assert!(j.writes.guard.is_none(), "flagged actions are not watched");
    }

    #[test]
    fn a_spent_quota_takes_back_what_guard_mode_let_through() {
        let mut policy = Policy::default();
        policy
            .violation_modes
            .insert("deploy".into(), ViolationMode::Guard);
        let p = CompiledPolicy::new(policy).unwrap();
        let s = alone(agent("a", 0));
        let j = spent_deploy(&p, &s, Vec::new());
        assert_eq!(j.answer.verdict, Verdict::Deny);
        let codes: Vec<&str> = j.answer.reasons.iter().map(|r| r.code.as_str()).collect();
        assert!(codes.contains(&"quota_exceeded"), "{codes:?}");
        assert!(!codes.contains(&"violation_guarded"), "{codes:?}");
        assert!(
            j.answer.obligations.is_empty(),
            "{:?}",
            j.answer.obligations
        );
        assert!(j.writes.guard.is_none());
        let (violation, _) = j.writes.violation.as_ref().unwrap();
        assert_eq!(
            (violation.reason.as_str(), violation.mode),
            ("quota_exceeded", ViolationMode::Block)
        );
    }
}
