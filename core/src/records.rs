//! Records: what Warden writes down and reads back (decisions, violations, approvals, outcomes,
//! evidence, tier changes, deliveries, baselines, events), as plain data with typed statuses.
//!
//! The store maps them to rows; the API shows them as JSON. Times are Unix microseconds where
//! the record is written, RFC 3339 where it is shown.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::clock::format_micros;
use crate::decision::Verdict;
use crate::policy::{RiskLevel, ViolationMode};

/// A row of the `decisions` table.
#[derive(Debug, Clone)]
pub struct DecisionRow {
    /// Decision id.
    pub id: String,
    /// When, Unix microseconds.
    pub at: i64,
    /// The agent.
    pub agent_id: String,
    /// The human it acted for.
    pub on_behalf_of: Option<String>,
    /// Action class.
    pub class: String,
    /// Environment.
    pub environment: String,
    /// Service.
    pub service: String,
    /// The verdict returned.
    pub verdict: Verdict,
    /// In shadow mode, the verdict that would have been enforced.
    pub shadow_verdict: Option<Verdict>,
    /// Merged risk level.
    pub risk_level: RiskLevel,
    /// Effective tier.
    pub tier: u8,
    /// Policy version.
    pub policy_version: String,
    /// The request, as JSON.
    pub request: String,
    /// The answer, as JSON.
    pub answer: String,
    /// When the outcome must be reported by (allowed writes), Unix microseconds.
    pub outcome_due_at: Option<i64>,
    /// Whether the answer holds what the weekly report lists (an anomaly finding, a failed
    /// plugin call, a quota denial), so the report reads only those answers.
    pub notable: bool,
}

/// What happened after a decision, as reported (or found overdue).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Outcome {
    /// The decision.
    pub decision_id: String,
    /// The agent.
    pub agent: String,
    /// The decision's verdict.
    pub verdict: String,
    /// Action class.
    pub class: String,
    /// Environment.
    pub environment: String,
    /// Service.
    pub service: String,
    /// The action's risk as decided.
    pub risk: RiskLevel,
    /// What happened, or absent while none is reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<OutcomeStatus>,
    /// When the outcome is due (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_at: Option<String>,
    /// When it was reported or found overdue (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reported_at: Option<String>,
    /// Who reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reported_by: Option<String>,
    /// The reporter's detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The actual cost, US dollars.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actual_cost_usd: Option<f64>,
    /// Whether a rollback was requested (its canary judgement failed).
    pub rollback_requested: bool,
    /// What the platform said about it, if it said anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmation: Option<Confirmation>,
    /// The watch over it, for a guarded action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guard: Option<Guard>,
}

/// Where the watch over a guarded action stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GuardStatus {
    /// Signals are judged until the deadline.
    Watching,
    /// Waiting for a human: a judgement was inconclusive, or the watch ended silent and the
    /// policy asks.
    Held,
    /// Ended with the action healthy: its success counts.
    Clean,
    /// A human looked and kept the action: its success counts.
    Kept,
    /// Rolled back: a failed judgement, silence, or a human's call.
    RolledBack,
}

wire_names!(GuardStatus { Watching => "watching", Held => "held", Clean => "clean", Kept => "kept", RolledBack => "rolled_back" });

impl GuardStatus {
    /// Whether the watch is over.
    pub fn closed(self) -> bool {
        !matches!(self, GuardStatus::Watching | GuardStatus::Held)
    }
}

/// The watch over a guarded action (a row of `guards`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Guard {
    /// The guarded decision.
    pub decision_id: String,
    /// The agent.
    pub agent: String,
    /// Action class.
    pub class: String,
    /// Environment.
    pub environment: String,
    /// Service.
    pub service: String,
    /// Armed at, Unix microseconds.
    #[serde(skip)]
    pub armed_at: i64,
    /// The watch ends at, Unix microseconds.
    #[serde(skip)]
    pub deadline: i64,
    /// Where it stands.
    pub status: GuardStatus,
    /// Batches of signals judged.
    pub signals: i64,
    /// Trigger errors in a row.
    pub errors: i64,
    /// The latest judgement (`successful`, `failed`, `inconclusive`, `error`).
    pub last_verdict: Option<String>,
    /// The human review asked for, when held (an approval id).
    pub review: Option<String>,
}

/// How much of an agent's outcome evidence the platform stood behind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Confirmations {
    /// Outcomes the platform confirmed (or reported itself).
    pub confirmed: u64,
    /// Outcomes the platform contradicted (each also a violation).
    pub contradicted: u64,
    /// Outcomes only the agent itself reported.
    pub self_reported: u64,
}

/// The platform's word on an outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Confirmation {
    /// Confirmed or contradicted.
    pub status: ConfirmationStatus,
    /// The event that said it (`github:<delivery>`).
    pub by: String,
    /// When it came (RFC 3339).
    pub at: String,
}

/// Whether the platform agrees with the reported outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConfirmationStatus {
    /// The platform reports the same outcome (or reported it first).
    Confirmed,
    /// The platform reports another outcome than the agent did; the platform's stands.
    Contradicted,
}

wire_names!(ConfirmationStatus { Confirmed => "confirmed", Contradicted => "contradicted" });

/// Why an agent's action was a violation: the `reason` of its row and audit record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ViolationReason {
    /// No grant of the agent's tier covers the action.
    NoGrant,
    /// A grant denies the action outright.
    ExplicitDeny,
    /// A quota was spent (minor: never a hard trigger).
    QuotaExceeded,
    /// An on-behalf-of claim without a delegation or a trusted voucher.
    OnBehalfOfUnproven,
    /// The human acted for may not do this themselves.
    OnBehalfOfNotPermitted,
    /// The presented approval does not exist.
    ApprovalUnknown,
    /// The presented approval was given to another agent.
    ApprovalWrongAgent,
    /// The presented approval was given for another action.
    ApprovalMismatch,
    /// The presented approval was already used.
    ApprovalReused,
    /// An outcome reported that the platform contradicted.
    OutcomeContradicted,
}

wire_names!(ViolationReason {
    NoGrant => "no_grant",
    ExplicitDeny => "explicit_deny",
    QuotaExceeded => "quota_exceeded",
    OnBehalfOfUnproven => "on_behalf_of_unproven",
    OnBehalfOfNotPermitted => "on_behalf_of_not_permitted",
    ApprovalUnknown => "approval_unknown",
    ApprovalWrongAgent => "approval_wrong_agent",
    ApprovalMismatch => "approval_mismatch",
    ApprovalReused => "approval_reused",
    OutcomeContradicted => "outcome_contradicted",
});

impl ViolationReason {
    /// Consent claimed that nobody gave: an approval that does not fit, or a human's consent
    /// without proof (as forged as an approval would be).
    pub fn is_forged_consent(self) -> bool {
        matches!(
            self,
            ViolationReason::ApprovalUnknown
                | ViolationReason::ApprovalReused
                | ViolationReason::ApprovalWrongAgent
                | ViolationReason::ApprovalMismatch
                | ViolationReason::OnBehalfOfUnproven
        )
    }
}

/// A row of the `violations` table.
#[derive(Debug, Clone)]
pub struct ViolationRow {
    /// Violation id.
    pub id: String,
    /// When, Unix microseconds.
    pub at: i64,
    /// The decision it came from.
    pub decision_id: String,
    /// The agent.
    pub agent_id: String,
    /// Action class.
    pub class: String,
    /// Environment.
    pub environment: String,
    /// Service.
    pub service: String,
    /// The class's violation mode then.
    pub mode: ViolationMode,
    /// Why it was one.
    pub reason: ViolationReason,
}

/// One change to an agent's trust evidence.
#[derive(Debug, Clone, PartialEq)]
pub struct EvidenceDelta {
    /// The agent.
    pub agent_id: String,
    /// Environment of the action.
    pub environment: String,
    /// Its risk.
    pub risk: RiskLevel,
    /// What the evidence says.
    pub kind: crate::trust::Kind,
    /// When, Unix microseconds.
    pub at: i64,
    /// +1 to add, -1 to take back.
    pub delta: i64,
    /// The half-life it decays with, microseconds.
    pub half_life_us: f64,
}

/// A tier change, as the history shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TierChange {
    /// Change id.
    pub id: String,
    /// The agent.
    pub agent: String,
    /// When (RFC 3339).
    pub at: String,
    /// The tier before.
    pub from: u8,
    /// The tier after (the same for a suspension).
    pub to: u8,
    /// Reason code: `promotion`, `below_low_water`, `error_budget_exhausted`, `fast_burn`,
    /// a hard trigger (`critical_rollback`, `forged_approval`, …), or `admin`.
    pub reason: String,
    /// Why, for humans.
    pub text: String,
    /// Who: `warden` (the controller) or the admin.
    pub actor: String,
    /// The trust score then.
    pub score: Option<f64>,
    /// The evidence behind it (score components and counts).
    #[schema(value_type = Object)]
    pub evidence: serde_json::Value,
}

/// An agent's score and tier at the end of a day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DailyTrust {
    /// The day (UTC), `YYYY-MM-DD`.
    pub day: String,
    /// The score.
    pub score: f64,
    /// The tier.
    pub tier: u8,
}

/// A new approval request (the `approvals` row written with a `require_approval` decision).
#[derive(Debug, Clone)]
pub struct ApprovalRow {
    /// Approval id.
    pub id: String,
    /// The decision that asked for it.
    pub decision_id: String,
    /// The agent.
    pub agent_id: String,
    /// The human the agent acts for.
    pub on_behalf_of: Option<String>,
    /// Action class.
    pub class: String,
    /// Environment.
    pub environment: String,
    /// Service.
    pub service: String,
    /// SHA-256 (hex) of the exact action it allows.
    pub action_hash: String,
    /// What the approver sees, as JSON: request (plan, reasoning), risk, anomaly, reasons, tier.
    pub summary: String,
    /// Unix microseconds.
    pub created_at: i64,
    /// Unix microseconds.
    pub expires_at: i64,
    /// Distinct approvers needed.
    pub approvals_needed: i64,
}

/// An approval as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Approval {
    /// Approval id.
    pub id: String,
    /// Where it stands (lapsed undecided or unused: `expired`).
    pub status: ApprovalStatus,
    /// The decision that asked for it.
    pub decision_id: String,
    /// The agent.
    pub agent: String,
    /// The human the agent acts for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_behalf_of: Option<String>,
    /// Action class.
    pub class: String,
    /// Environment.
    pub environment: String,
    /// Service.
    pub service: String,
    /// SHA-256 (hex) of the exact action it allows.
    pub action_hash: String,
    /// The request (action, plan, reasoning), risk, anomaly findings, reasons and tier.
    #[schema(value_type = Object)]
    pub summary: serde_json::Value,
    /// When it was asked for (RFC 3339).
    pub created_at: String,
    /// When it lapses unless decided (RFC 3339).
    pub expires_at: String,
    /// Distinct approvers it needs.
    pub approvals_needed: i64,
    /// Who has approved so far.
    pub approved_by: Vec<String>,
    /// Who completed the approval, or rejected it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    /// When (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<String>,
    /// The approver's comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// The decision that used it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumed_by: Option<String>,
    /// When (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumed_at: Option<String>,
    /// Expiry, Unix microseconds.
    #[serde(skip)]
    pub expires_at_micros: i64,
}

/// One event's delivery to one webhook endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Delivery {
    /// Delivery id.
    pub id: String,
    /// The event's id (the same for every endpoint).
    pub event_id: String,
    /// `approval.requested`, …
    pub event_type: EventType,
    /// The endpoint's name.
    pub endpoint: String,
    /// The body sent, in the endpoint's format.
    #[serde(skip_serializing)]
    pub body: String,
    /// Where it stands (`parked`: given up; see `last_error`).
    pub status: DeliveryStatus,
    /// Attempts so far.
    pub attempts: i64,
    /// Next attempt, Unix microseconds.
    pub next_attempt_at: i64,
    /// What went wrong last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Unix microseconds.
    pub created_at: i64,
    /// Unix microseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<i64>,
}

/// A violation as the review API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Violation {
    /// Violation id.
    pub id: String,
    /// When (RFC 3339).
    pub at: String,
    /// The decision it came from.
    pub decision_id: String,
    /// The agent.
    pub agent: String,
    /// Action class.
    pub class: String,
    /// Environment.
    pub environment: String,
    /// Service.
    pub service: String,
    /// The class's violation mode then.
    pub mode: ViolationMode,
    /// Reason code (`no_grant`, `explicit_deny`, …).
    pub reason: String,
    /// Open, or acknowledged by a reviewer.
    pub status: ViolationStatus,
    /// Who acknowledged it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged_by: Option<String>,
    /// When (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged_at: Option<String>,
    /// The reviewer's comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// How humans of a team do one kind of action: the anomaly detectors' reference (the WIT
/// `baseline` record), kept per team, service, action class and environment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Baseline {
    /// Team.
    pub team: String,
    /// Service.
    pub service: String,
    /// Action class.
    pub class: String,
    /// Environment.
    pub environment: String,
    /// Human actions observed in the baseline period.
    pub sample_size: u32,
    /// Whether there is enough history to judge against.
    pub warm: bool,
    /// Mean human actions of this kind per hour.
    pub rate_per_hour: f64,
    /// Median human change size (lines added + deleted).
    pub change_size_median: f64,
    /// Median absolute deviation of the human change size.
    pub change_size_mad: f64,
    /// Human actions per hour of the week (168 buckets, Monday 00:00 UTC first).
    pub hour_of_week_counts: Vec<u32>,
    /// `class/environment/service` combinations the team's humans have done.
    pub seen_combinations: Vec<String>,
    /// Whether the humans' activity names its targets at all.
    #[serde(default)]
    pub targets_tracked: bool,
    /// Of the action's targets, those the humans have touched before.
    #[serde(default)]
    pub targets_seen: Vec<String>,
    /// Humans in the reference group.
    #[serde(default)]
    pub humans: u32,
    /// Whether the reference is the organisation's humans (the team has too few).
    #[serde(default)]
    pub organisation: bool,
    /// When it was computed, Unix microseconds.
    #[serde(default)]
    pub updated_at: i64,
}

/// An agent's recent activity of one kind (class, environment and service).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Activity {
    /// Decisions of this kind since the window start.
    pub recent: u32,
    /// Whether the agent was ever allowed this kind of action before.
    pub done_before: bool,
}

/// Wire names for a closed set: `as_str` for SQL and JSON, `parse` back from a stored row.
macro_rules! wire_names {
    ($ty:ident { $($variant:ident => $name:literal),* $(,)? }) => {
        impl $ty {
            /// Every value, in order.
            pub const ALL: &'static [$ty] = &[$($ty::$variant),*];

            /// The wire name.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $name),*
                }
            }

            /// Parses a wire name.
            pub fn parse(s: &str) -> Option<$ty> {
                match s {
                    $($name => Some($ty::$variant),)*
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
pub(crate) use wire_names;

/// Where an approval request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalStatus {
    /// Waiting for (enough) humans.
    Pending,
    /// Approved, not yet used.
    Approved,
    /// A human said no.
    Rejected,
    /// Lapsed undecided, or approved and never used.
    Expired,
    /// Approved and used by a decision (once).
    Consumed,
}

wire_names!(ApprovalStatus { Pending => "pending", Approved => "approved", Rejected => "rejected", Expired => "expired", Consumed => "consumed" });

/// What happened after an allowed action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeStatus {
    /// It worked.
    Succeeded,
    /// It did not.
    Failed,
    /// It was undone.
    RolledBack,
    /// Nobody reported it by its deadline (recorded by Warden, never reported).
    Unknown,
}

wire_names!(OutcomeStatus { Succeeded => "succeeded", Failed => "failed", RolledBack => "rolled_back", Unknown => "unknown" });

impl OutcomeStatus {
    /// What an agent or the platform may report (`unknown` is Warden's to record).
    pub const REPORTABLE: [OutcomeStatus; 3] = [
        OutcomeStatus::Succeeded,
        OutcomeStatus::Failed,
        OutcomeStatus::RolledBack,
    ];
}

/// Where a webhook delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Due now or at its next attempt.
    Pending,
    /// The endpoint took it.
    Delivered,
    /// Given up after too many failures.
    Parked,
}

wire_names!(DeliveryStatus { Pending => "pending", Delivered => "delivered", Parked => "parked" });

/// Where a violation's review stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ViolationStatus {
    /// Waiting for a reviewer.
    Open,
    /// A reviewer has seen it.
    Acknowledged,
}

wire_names!(ViolationStatus { Open => "open", Acknowledged => "acknowledged" });

/// The events Warden sends to webhooks: a closed set, so that a webhook's filter can name only
/// events that exist and every event has its own message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum EventType {
    /// An action waits for human approval.
    #[serde(rename = "approval.requested")]
    ApprovalRequested,
    /// Approvers approved or rejected it.
    #[serde(rename = "approval.decided")]
    ApprovalDecided,
    /// Its approval expired undecided.
    #[serde(rename = "approval.expired")]
    ApprovalExpired,
    /// A violation was let through in `flag` or `guard` mode.
    #[serde(rename = "violation.flagged")]
    ViolationFlagged,
    /// A guarded or reported action should be rolled back.
    #[serde(rename = "rollback.requested")]
    RollbackRequested,
    /// A guarded action's watch needs a human.
    #[serde(rename = "guard.review_requested")]
    GuardReviewRequested,
    /// A rollback trigger erred too many times in a row.
    #[serde(rename = "rollback_trigger.failing")]
    RollbackTriggerFailing,
    /// An agent's tier moved, or it was suspended.
    #[serde(rename = "tier.changed")]
    TierChanged,
    /// A weekly report is ready.
    #[serde(rename = "report.ready")]
    ReportReady,
}

wire_names!(EventType {
    ApprovalRequested => "approval.requested",
    ApprovalDecided => "approval.decided",
    ApprovalExpired => "approval.expired",
    ViolationFlagged => "violation.flagged",
    RollbackRequested => "rollback.requested",
    GuardReviewRequested => "guard.review_requested",
    RollbackTriggerFailing => "rollback_trigger.failing",
    TierChanged => "tier.changed",
    ReportReady => "report.ready",
});

/// Something that happened that people outside Warden should hear about.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Event id (the same in every endpoint's delivery).
    pub id: String,
    /// What happened: always `data`'s own type.
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// RFC 3339.
    pub at: String,
    /// The event's data.
    pub data: EventData,
}

impl Event {
    /// A new event at `now` (Unix microseconds); its type is its data's.
    pub fn new(now: i64, data: EventData) -> Event {
        Event {
            id: uuid::Uuid::now_v7().to_string(),
            event_type: data.event_type(),
            at: format_micros(now),
            data,
        }
    }
}

/// The action an event is about, named the same way in every event that has one.
#[derive(Debug, Clone, Serialize)]
pub struct EventAction {
    /// The decision that allowed or asked about it.
    pub decision_id: String,
    /// The agent.
    pub agent: String,
    /// Its class.
    pub class: String,
    /// Where.
    pub environment: String,
    /// On what.
    pub service: String,
}

/// `From<&record>` for each record an event can be about: each names the same five things,
/// only the agent's field is spelt two ways.
macro_rules! event_action_from {
    ($($record:ty => $agent:ident),* $(,)?) => {$(
        impl From<&$record> for EventAction {
            fn from(r: &$record) -> EventAction {
                EventAction {
                    decision_id: r.decision_id.clone(),
                    agent: r.$agent.clone(),
                    class: r.class.clone(),
                    environment: r.environment.clone(),
                    service: r.service.clone(),
                }
            }
        }
    )*};
}

event_action_from!(Guard => agent, Approval => agent, ViolationRow => agent_id, ApprovalRow => agent_id);

/// What an event says: one variant per [`EventType`], with the fields docs/configuration.md
/// lists for it, so that a missing or misspelt field is a compile error rather than a receiver's
/// surprise. Absent values are sent as `null`, never left out.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum EventData {
    /// `approval.requested`.
    ApprovalRequested {
        /// The approval to decide.
        approval_id: String,
        /// When it lapses, RFC 3339.
        expires_at: String,
        /// The action.
        #[serde(flatten)]
        action: EventAction,
        /// The human the agent acts for, if it said.
        on_behalf_of: Option<String>,
        /// The decision's risk.
        risk: crate::decision::Risk,
        /// What the anomaly detectors found, when any ran.
        anomaly: Option<Box<crate::decision::Anomaly>>,
        /// The agent's reasoning.
        reasoning: Option<String>,
        /// The agent's plan.
        plan: Option<serde_json::Value>,
        /// The effective tier.
        tier: u8,
    },
    /// `approval.decided`.
    ApprovalDecided {
        /// The approval.
        approval_id: String,
        /// `approved` or `rejected`.
        status: ApprovalStatus,
        /// Who gave the last word.
        decided_by: String,
        /// Everyone who approved.
        approved_by: Vec<String>,
        /// The decider's comment.
        comment: Option<String>,
        /// The action.
        #[serde(flatten)]
        action: EventAction,
    },
    /// `approval.expired`.
    ApprovalExpired {
        /// The approval.
        approval_id: String,
        /// The action.
        #[serde(flatten)]
        action: EventAction,
        /// When it lapsed, RFC 3339.
        expires_at: String,
    },
    /// `violation.flagged`.
    ViolationFlagged {
        /// The violation.
        violation_id: String,
        /// The action.
        #[serde(flatten)]
        action: EventAction,
        /// `flag` or `guard` (a blocked violation is not an event).
        mode: ViolationMode,
        /// What was violated.
        reason: ViolationReason,
    },
    /// `rollback.requested`.
    RollbackRequested {
        /// The action.
        #[serde(flatten)]
        action: EventAction,
        /// Why, as texts.
        reasons: Vec<String>,
    },
    /// `guard.review_requested`.
    GuardReviewRequested {
        /// The review (an approval) to decide.
        review_id: String,
        /// The action.
        #[serde(flatten)]
        action: EventAction,
        /// Why a human must look.
        why: String,
    },
    /// `rollback_trigger.failing`.
    RollbackTriggerFailing {
        /// The action.
        #[serde(flatten)]
        action: EventAction,
        /// How many errors in a row made it page.
        errors_in_a_row: u32,
        /// The last error, as texts.
        reasons: Vec<String>,
    },
    /// `tier.changed`.
    TierChanged {
        /// The change, as `/v1/agents/{id}/trust/history` shows it.
        #[serde(flatten)]
        change: TierChange,
        /// The agent's status after it.
        status: crate::identity::AgentStatus,
    },
    /// `report.ready`.
    ReportReady {
        /// ISO week, `2027-W01`.
        week: String,
        /// Whose report.
        scope: String,
        /// Its one-sentence headline.
        summary: String,
        /// Whether anything happened in either week.
        activity: bool,
        /// Agents' production changes this week.
        agents: ReportFigures,
        /// Humans' production changes this week.
        humans: ReportFigures,
        /// Where to read it.
        url: String,
    },
}

/// A side's headline figures in `report.ready`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ReportFigures {
    /// Production changes this week.
    pub changes: u64,
    /// Their failure rate this week; `null` without changes.
    pub failure_rate: Option<f64>,
}

impl EventData {
    /// The type this data is sent as.
    pub fn event_type(&self) -> EventType {
        match self {
            EventData::ApprovalRequested { .. } => EventType::ApprovalRequested,
            EventData::ApprovalDecided { .. } => EventType::ApprovalDecided,
            EventData::ApprovalExpired { .. } => EventType::ApprovalExpired,
            EventData::ViolationFlagged { .. } => EventType::ViolationFlagged,
            EventData::RollbackRequested { .. } => EventType::RollbackRequested,
            EventData::GuardReviewRequested { .. } => EventType::GuardReviewRequested,
            EventData::RollbackTriggerFailing { .. } => EventType::RollbackTriggerFailing,
            EventData::TierChanged { .. } => EventType::TierChanged,
            EventData::ReportReady { .. } => EventType::ReportReady,
        }
    }

    /// As a JSON value, for an audit record's details.
    pub fn to_value(&self) -> serde_json::Value {
        // Every field is a string, number, list or map with string keys: this cannot fail.
        serde_json::to_value(self).unwrap_or_default()
    }
}

/// An approval moved out of the way, as it was stored.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct QuarantinedApproval {
    /// Approval id.
    pub id: String,
    /// Its columns as stored, every text one as text (its summary is not parsed, so that
    /// whatever made it unreadable cannot make this unreadable too).
    #[schema(value_type = Object)]
    pub raw: serde_json::Value,
    /// Why it was moved.
    pub reason: String,
    /// Who moved it.
    pub quarantined_by: String,
    /// When, RFC 3339.
    pub quarantined_at: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn violation_reasons_are_stored_as_they_serialize() {
        for &reason in ViolationReason::ALL {
            assert_eq!(ViolationReason::parse(reason.as_str()), Some(reason));
            assert_eq!(serde_json::to_value(reason).unwrap(), reason.as_str());
        }
        assert_eq!(ViolationReason::parse("no_such_reason"), None);
    }

    #[test]
    fn event_types_are_sent_as_they_are_named() {
        for &t in EventType::ALL {
            assert_eq!(serde_json::to_value(t).unwrap(), t.as_str());
            assert_eq!(
                serde_json::from_value::<EventType>(t.as_str().into()).unwrap(),
                t
            );
        }
        assert!(serde_json::from_value::<EventType>("approval.requestd".into()).is_err());
    }
}
