//! Stage 9 of a decision: its row, audit records and events. The parts that the answer, the
//! audit record and an approval's summary share are serialized once: this runs on every
//! decision, and serializing was a third of its time.

use serde::Serialize;

use super::judge::{DecisionWrites, Judgement};
use super::{Action, ApprovalRef, DecisionAnswer, DecisionRequest, Obligation, Verdict};
use crate::audit::{Actor, AuditRecord, RawJson};
use crate::clock::format_micros;
use crate::delegation::HumanProof;
use crate::error::{Error, Result};
use crate::identity::{Agent, Caller};
use crate::policy::{CompiledPolicy, ViolationMode};
use crate::quotas::{Charge, Headroom};
use crate::records::{
    ApprovalRow, DecisionRow, Event, EventAction, EventData, EvidenceDelta, Guard, ViolationRow,
};

/// The approval a decision used, and who gave it (the decision's record names them).
pub(super) struct Consumed {
    pub(super) id: String,
    pub(super) approvers: Vec<String>,
}

/// What the stages decided to write besides the decision itself.
pub(super) struct Recorded {
    pub(super) consume: Option<Consumed>,
    pub(super) charge: Option<Vec<Charge>>,
    pub(super) violation: Option<ViolationRow>,
    pub(super) overrun: Option<usize>,
    pub(super) approval: Option<ApprovalRow>,
    pub(super) outcome_due_at: Option<i64>,
    pub(super) guard: Option<Guard>,
    /// What proved the on-behalf-of claim, for the record.
    pub(super) proof: Option<HumanProof>,
}

/// Stage 9: the rows, audit records and events, committed by the caller before the answer leaves.
pub(super) fn record(
    policy: &CompiledPolicy,
    caller: &Caller,
    agent: &Agent,
    request: &DecisionRequest,
    answer: DecisionAnswer,
    rest: Recorded,
    now: i64,
) -> Result<Judgement> {
    let action = &request.action;
    let (class, env, service) = (
        action.class.as_str(),
        action.environment.as_str(),
        action.service.as_str(),
    );
    let decision_id = answer.decision_id.clone();
    let caller_id = caller.subject.as_deref().unwrap_or(&caller.token_id);
    let shared = Shared::of(&answer, action)?;
    let details = DecisionDetails {
        shadow_verdict: answer.shadow_verdict,
        risk: &shared.risk,
        anomaly: shared.anomaly.as_ref(),
        reasons: &shared.reasons,
        tier: answer.tier,
        plugins: &shared.plugins,
        caller: CallerBrief {
            role: caller.role.as_str(),
            id: caller_id,
        },
        on_behalf_of_proof: rest.proof.as_ref().map(|p| match p {
            HumanProof::Delegated(id) => serde_json::json!({"delegation": id}),
            HumanProof::Vouched(service) => serde_json::json!({"vouched_by": service}),
            HumanProof::Unproven => serde_json::json!("unproven"),
        }),
    };
    let audit = AuditRecord {
        event_type: "decision".into(),
        at: answer.decided_at.clone(),
        actor: Actor {
            kind: "agent".into(),
            id: agent.id.clone(),
            tool: Some(agent.tool.clone()),
            model: Some(agent.model.clone()),
            token_id: Some(caller.token_id.clone()),
            team: Some(agent.team.clone()),
            sponsor: Some(agent.sponsor.clone()),
        },
        agent: Some(agent.id.clone()),
        service: Some(service.to_string()),
        team: Some(agent.team.clone()),
        risk: Some(answer.risk.level.as_str().to_string()),
        approval_id: rest.consume.as_ref().map(|c| c.id.clone()),
        approvers: rest
            .consume
            .as_ref()
            .map(|c| c.approvers.clone())
            .unwrap_or_default(),
        on_behalf_of: request.on_behalf_of.clone(),
        authorizing_human: None,
        action_class: Some(class.to_string()),
        environment: Some(env.to_string()),
        target: ["service:", service].concat(),
        action: None,
        outcome: Some(answer.verdict.as_str().to_string()),
        reasoning: action.reasoning.clone(),
        policy_version: Some(policy.version.clone()),
        decision_id: Some(decision_id.clone()),
        details: Some(RawJson::of(&details).map_err(Error::internal)?),
    };
    let level = answer.risk.level;
    let notable = answer
        .anomaly
        .as_ref()
        .and_then(|a| a.severity)
        .is_some_and(|s| s > 0)
        || answer
            .plugins
            .iter()
            .any(|p| p.outcome != crate::plugin::CallStatus::Ok)
        || answer.reasons.iter().any(|r| r.quota.is_some());
    let decision = DecisionRow {
        id: decision_id.clone(),
        at: now,
        agent_id: agent.id.clone(),
        on_behalf_of: request.on_behalf_of.clone(),
        class: class.to_string(),
        environment: env.to_string(),
        service: service.to_string(),
        verdict: answer.verdict,
        shadow_verdict: answer.shadow_verdict,
        risk_level: level,
        tier: answer.tier,
        policy_version: policy.version.clone(),
        request: shared.request(request, &agent.id)?,
        answer: shared.answer(&answer)?,
        outcome_due_at: rest.outcome_due_at,
        notable,
    };
    let mut records = vec![audit];
    let mut events = Vec::new();
    if let Some(Consumed { id, .. }) = &rest.consume {
        let details = serde_json::json!({"approval_id": id});
        records.push(approval_record(
            &records[0],
            "approval.consumed",
            id,
            details,
            now,
        ));
    }
    let violation = match rest.violation {
        Some(v) => {
            // Every violation is an audit event of its own, so reviewers can follow them alone.
            let details = serde_json::json!({"violation_id": v.id, "mode": v.mode, "reason": v.reason, "service": v.service});
            let mut record = AuditRecord::change(
                records[0].actor.clone(),
                "violation.recorded",
                format!("service:{}", v.service),
                details,
                now,
            );
            record.agent = Some(v.agent_id.clone());
            record.action_class = Some(v.class.clone());
            record.environment = Some(v.environment.clone());
            record.decision_id = Some(v.decision_id.clone());
            records.push(record);
            if v.mode != ViolationMode::Block {
                let data = EventData::ViolationFlagged {
                    violation_id: v.id.clone(),
                    action: EventAction::from(&v),
                    mode: v.mode,
                    reason: v.reason,
                };
                events.push(Event::new(now, data));
            }
            // The violation is trust evidence, counted in the same transaction.
            let kind = crate::trust::Kind::of_violation(v.mode, v.reason);
            let half_life_us = crate::trust::half_life_us(&policy.policy.trust);
            let evidence = EvidenceDelta {
                agent_id: v.agent_id.clone(),
                environment: v.environment.clone(),
                risk: level,
                kind,
                at: now,
                delta: 1,
                half_life_us,
            };
            Some((v, evidence))
        }
        None => None,
    };
    let approval = match rest.approval {
        Some(mut a) => {
            // What the approver sees: the plan and reasoning with everything Warden judged.
            let summary = ApprovalSummary {
                request: shared.request_wire(request, &agent.id),
                agent: AgentBrief {
                    id: &agent.id,
                    tool: &agent.tool,
                    model: &agent.model,
                    team: &agent.team,
                    sponsor: &agent.sponsor,
                },
                risk: &shared.risk,
                anomaly: shared.anomaly.as_ref(),
                reasons: &shared.reasons,
                tier: answer.tier,
                agent_tier: agent.tier,
                trust_score: answer.trust_score,
            };
            a.summary = serde_json::to_string(&summary).map_err(Error::internal)?;
            let details = serde_json::json!({"approval_id": a.id, "expires_at": format_micros(a.expires_at), "action_hash": a.action_hash});
            records.push(approval_record(
                &records[0],
                "approval.requested",
                &a.id,
                details,
                now,
            ));
            let data = EventData::ApprovalRequested {
                approval_id: a.id.clone(),
                expires_at: format_micros(a.expires_at),
                action: EventAction::from(&a),
                on_behalf_of: a.on_behalf_of.clone(),
                risk: answer.risk.clone(),
                anomaly: answer.anomaly.clone().map(Box::new),
                reasoning: request.action.reasoning.clone(),
                plan: request.action.plan.clone(),
                tier: answer.tier,
            };
            events.push(Event::new(now, data));
            Some(a)
        }
        None => None,
    };
    let writes = DecisionWrites {
        consume_approval: rest.consume.map(|c| c.id),
        charge: rest.charge,
        decision,
        violation,
        overrun: rest.overrun,
        approval,
        guard: rest.guard,
    };
    // Last: the request's JSON and the approval's summary embed it first.
    records[0].action = Some(shared.action);
    Ok(Judgement {
        answer,
        writes,
        audit: records,
        events,
    })
}

/// What an approver sees of a request (stored with the approval).
#[derive(Serialize)]
struct ApprovalSummary<'a> {
    request: RequestWire<'a>,
    agent: AgentBrief<'a>,
    risk: &'a RawJson,
    anomaly: Option<&'a RawJson>,
    reasons: &'a RawJson,
    tier: u8,
    agent_tier: u8,
    trust_score: Option<f64>,
}

/// What a decision's audit record says beyond its columns, serialized straight from the answer.
#[derive(Serialize)]
struct DecisionDetails<'a> {
    shadow_verdict: Option<Verdict>,
    risk: &'a RawJson,
    anomaly: Option<&'a RawJson>,
    reasons: &'a RawJson,
    tier: u8,
    plugins: &'a RawJson,
    caller: CallerBrief<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    on_behalf_of_proof: Option<serde_json::Value>,
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
fn approval_record(
    decision: &AuditRecord,
    event: &str,
    id: &str,
    details: serde_json::Value,
    now: i64,
) -> AuditRecord {
    AuditRecord {
        agent: decision.agent.clone(),
        on_behalf_of: decision.on_behalf_of.clone(),
        action_class: decision.action_class.clone(),
        environment: decision.environment.clone(),
        service: decision.service.clone(),
        team: decision.team.clone(),
        risk: decision.risk.clone(),
        approval_id: Some(id.to_string()),
        approvers: decision.approvers.clone(),
        decision_id: decision.decision_id.clone(),
        ..AuditRecord::change(
            decision.actor.clone(),
            event,
            format!("approval:{id}"),
            details,
            now,
        )
    }
}

/// What the answer, the audit record and an approval's summary all hold, as JSON once.
struct Shared {
    action: RawJson,
    risk: RawJson,
    anomaly: Option<RawJson>,
    reasons: RawJson,
    plugins: RawJson,
}

fn raw(value: &impl Serialize) -> Result<RawJson> {
    RawJson::of(value).map_err(Error::internal)
}

impl Shared {
    fn of(answer: &DecisionAnswer, action: &Action) -> Result<Shared> {
        Ok(Shared {
            action: raw(action)?,
            risk: raw(&answer.risk)?,
            anomaly: answer.anomaly.as_ref().map(raw).transpose()?,
            reasons: raw(&answer.reasons)?,
            plugins: raw(&answer.plugins)?,
        })
    }

    /// The request as `agent`'s: it is recorded under the agent, whoever's token asked.
    fn request_wire<'a>(&'a self, request: &'a DecisionRequest, agent: &'a str) -> RequestWire<'a> {
        RequestWire {
            agent: Some(agent),
            on_behalf_of: request.on_behalf_of.as_deref(),
            approval_id: request.approval_id.as_deref(),
            action: &self.action,
        }
    }

    /// The request as `agent`'s, as JSON: what `serde_json::to_string` gives of it with
    /// `agent` set.
    fn request(&self, request: &DecisionRequest, agent: &str) -> Result<String> {
        serde_json::to_string(&self.request_wire(request, agent)).map_err(Error::internal)
    }

    /// The answer as JSON: what `serde_json::to_string(answer)` gives, and so the body the API
    /// sends.
    fn answer(&self, a: &DecisionAnswer) -> Result<String> {
        let wire = AnswerWire {
            decision_id: &a.decision_id,
            verdict: a.verdict,
            shadow_verdict: a.shadow_verdict,
            risk: &self.risk,
            anomaly: self.anomaly.as_ref(),
            reasons: &self.reasons,
            obligations: &a.obligations,
            approval: a.approval.as_ref(),
            tier: a.tier,
            agent_tier: a.agent_tier,
            trust_score: a.trust_score,
            quotas: &a.quotas,
            policy_version: &a.policy_version,
            plugins: &self.plugins,
            decided_at: &a.decided_at,
        };
        serde_json::to_string(&wire).map_err(Error::internal)
    }
}

/// [`DecisionRequest`] as it serializes, with the action already JSON.
#[derive(Serialize)]
struct RequestWire<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    agent: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    on_behalf_of: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    approval_id: Option<&'a str>,
    action: &'a RawJson,
}

/// [`DecisionAnswer`] as it serializes, field for field, with the shared parts already JSON.
#[derive(Serialize)]
struct AnswerWire<'a> {
    decision_id: &'a str,
    verdict: Verdict,
    #[serde(skip_serializing_if = "Option::is_none")]
    shadow_verdict: Option<Verdict>,
    risk: &'a RawJson,
    #[serde(skip_serializing_if = "Option::is_none")]
    anomaly: Option<&'a RawJson>,
    reasons: &'a RawJson,
    obligations: &'a [Obligation],
    #[serde(skip_serializing_if = "Option::is_none")]
    approval: Option<&'a ApprovalRef>,
    tier: u8,
    agent_tier: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    trust_score: Option<f64>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    quotas: &'a [Headroom],
    policy_version: &'a str,
    plugins: &'a RawJson,
    decided_at: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::Reason;
    use serde_json::{from_value, json};

    /// Every optional part present, so that a field the mirrors miss shows.
    fn full() -> (DecisionRequest, DecisionAnswer) {
        let request = DecisionRequest {
            agent: Some("deploy-bot".into()),
            on_behalf_of: Some("alice".into()),
            approval_id: Some("apr-1".into()),
            action: from_value(json!({
                "class": "deploy", "environment": "production", "service": "payments",
                "resources": ["deployment/payments"], "estimated_cost_usd": 1.5,
                "reasoning": "ship \"v2\"\n", "plan": {"steps": [1, 2]}, "labels": {"k": "v"}
            }))
            .unwrap(),
        };
        let answer = DecisionAnswer {
            decision_id: "d-1".into(),
            verdict: Verdict::RequireApproval,
            shadow_verdict: Some(Verdict::Deny),
            risk: from_value(json!({"level": "high", "score": 80, "categories": ["prod"]})).unwrap(),
            anomaly: Some(
                from_value(json!({"status": "checked", "severity": 40, "reason": "r",
                    "findings": [], "baseline": {"team": "t", "service": "payments", "class": "deploy",
                    "scope": "team", "humans": 3, "events": 120}}))
                .unwrap(),
            ),
            reasons: vec![Reason {
                code: "quota_exceeded".into(),
                text: "spent".into(),
                quota: Some("deploys".into()),
            }],
            obligations: vec![Obligation {
                kind: "await_approval".into(),
                detail: "wait".into(),
                due_at: Some("2026-12-04T00:00:00Z".into()),
            }],
            approval: Some(ApprovalRef {
                id: "apr-2".into(),
                expires_at: "2026-12-04T01:00:00Z".into(),
                url: "/approvals/apr-2".into(),
            }),
            tier: 2,
            agent_tier: 3,
            trust_score: Some(0.625),
            quotas: vec![
                from_value(json!({"quota": "deploys", "scope": "payments", "unit": "calls",
                    "limit": 5.0, "used": 5.0, "remaining": 0.0, "resets_at": "2026-12-04T01:00:00Z"}))
                .unwrap(),
            ],
            policy_version: "v7".into(),
            plugins: vec![
                from_value(json!({"plugin": "risk@1.0.0", "outcome": "failed", "level": "high",
                    "categories": ["c"], "error": "fuel", "message": "m", "failure_policy": "fail_closed",
                    "fuel_used": 10, "duration_us": 20, "peak_memory": 65536}))
                .unwrap(),
            ],
            decided_at: "2026-12-04T00:00:00Z".into(),
        };
        (request, answer)
    }

    #[test]
    fn the_mirrors_serialize_as_the_request_and_answer_do() {
        let (request, answer) = full();
        let shared = Shared::of(&answer, &request.action).unwrap();
        assert_eq!(
            shared.request(&request, "deploy-bot").unwrap(),
            serde_json::to_string(&request).unwrap()
        );
        assert_eq!(
            shared.answer(&answer).unwrap(),
            serde_json::to_string(&answer).unwrap()
        );
        // And with every optional part absent: an agent's own token names no agent, and the
        // request is recorded as that agent's.
        let request = DecisionRequest {
            agent: None,
            on_behalf_of: None,
            approval_id: None,
            ..request
        };
        let answer = DecisionAnswer {
            shadow_verdict: None,
            anomaly: None,
            approval: None,
            trust_score: None,
            quotas: Vec::new(),
            ..answer
        };
        let shared = Shared::of(&answer, &request.action).unwrap();
        let named = DecisionRequest {
            agent: Some("deploy-bot".into()),
            ..request.clone()
        };
        assert_eq!(
            shared.request(&request, "deploy-bot").unwrap(),
            serde_json::to_string(&named).unwrap()
        );
        assert_eq!(
            shared.answer(&answer).unwrap(),
            serde_json::to_string(&answer).unwrap()
        );
    }
}
