//! Decisions (DESIGN.md, "The decision pipeline"): the request and answer types, and [`judge`],
//! the pure stages of the pipeline.
//!
//! `judge` does no I/O: the decisions service loads what it needs (the agent, its parent chain,
//! the on-behalf-of human, the presented approval, the plugins' assessment, the quota counts),
//! calls it, and commits what it returns before answering. That is also what the in-process
//! benchmark measures.
//!
//! Stages: 1 resolve the caller's agent ([`resolve_agent`]) · 2 validate ([`validate`]) ·
//! 3 classify (built-in table and classifier plugins) · 4 anomaly (detector findings) ·
//! 5 permission (effective tier, grants, on-behalf-of human) · 6 quotas · 7 violation handling ·
//! 8 approval · 9 the record.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::baseline::BaselineScope;
use crate::plugin::{AnomalyFinding, PluginReport};
use crate::policy::RiskLevel;
use crate::quotas::Headroom;

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
    /// Target environment (`dev`, `staging`, `production`, …); case-insensitive, kept in
    /// lower case.
    #[serde(deserialize_with = "crate::policy::environment_name")]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
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

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Verdict> {
        [Verdict::Allow, Verdict::RequireApproval, Verdict::Deny]
            .into_iter()
            .find(|v| v.as_str() == s)
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

/// The anomaly stage's result: checked against a human baseline, or said not to be computed.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Anomaly {
    /// Whether the action was compared with a human baseline at all.
    pub status: AnomalyStatus,
    /// The highest finding's severity, 0–100 (0 when nothing is unusual); null when not
    /// computed, which is not the same as normal.
    pub severity: Option<u8>,
    /// Why it was not computed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Every finding of every detector.
    #[serde(default)]
    pub findings: Vec<AnomalyFinding>,
    /// The baseline the action was compared with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<BaselineRef>,
}

/// Whether the anomaly stage compared the action with a human baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyStatus {
    /// Detectors judged it against a warm baseline.
    Checked,
    /// No detector sees the class, or no warm baseline exists yet.
    NotComputed,
}

/// Which human baseline an action was compared with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BaselineRef {
    /// Team, service and class it is for.
    pub team: String,
    /// Service.
    pub service: String,
    /// Class.
    pub class: String,
    /// Whether the organisation's humans stood in for a small team's.
    pub scope: BaselineScope,
    /// Humans in the reference.
    pub humans: u32,
    /// Human actions in it.
    pub events: u32,
}

/// One reason behind a verdict.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Reason {
    /// Stable code.
    pub code: String,
    /// For humans.
    pub text: String,
    /// For `quota_exceeded`: the quota that was spent (the weekly report counts hits by it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<String>,
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

mod judge;
mod record;
pub(crate) mod validate;

pub use judge::{DecisionWrites, Inputs, Judgement, Subject, bound, judge};
pub use validate::{check_len, resolve_agent, validate, validate_references};
