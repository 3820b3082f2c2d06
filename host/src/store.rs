//! Persistence on SQLite (the embedded default) or PostgreSQL (several replicas), through one
//! SQL dialect on sqlx's `Any` driver.
//!
//! Reads go straight to the pool. Every write goes through one writer task per process that
//! commits whole batches of changes in one transaction (group commit): each change's rows and
//! its audit records land together or not at all, and a caller hears back only after the
//! transaction is durable. The writer also extends the audit hash chain; on PostgreSQL it locks
//! the chain's head row, so replicas append one batch at a time and the chain stays linear.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Executor as _, Row as _};
use tokio::sync::{mpsc, oneshot};
use utoipa::ToSchema;

use crate::audit::{self, AuditEntry, AuditRecord, StoredRow};
use crate::clock::format_micros;
use crate::error::{Error, Kind, Result};
use crate::identity::{Agent, AgentStatus, Human, Role, TokenRecord};
use crate::policy::RiskLevel;

/// Which database is behind the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// One file under the data directory.
    Sqlite,
    /// A shared server, for several replicas.
    Postgres,
}

/// How to open the store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// `sqlite://…` or `postgres://…`.
    pub url: String,
    /// Connections in the read pool (the writer takes one more).
    pub max_connections: u32,
    /// Most changes committed in one transaction.
    pub max_batch: usize,
    /// How long found tokens, agents and humans are cached; zero disables the cache.
    pub cache_ttl: Duration,
}

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
    pub verdict: String,
    /// In shadow mode, the verdict that would have been enforced.
    pub shadow_verdict: Option<String>,
    /// Merged risk level.
    pub risk_level: String,
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
    /// `succeeded`, `failed`, `rolled_back`, `unknown` (overdue), or absent while none is reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
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
    /// `block`, `flag` or `guard`.
    pub mode: String,
    /// Reason code.
    pub reason: String,
}

/// One row-level write. Only a change's first write may fail for a logical reason (exists
/// already, changed underneath, not found), so a failed change has written nothing.
#[derive(Debug, Clone)]
pub enum Write {
    /// Create an agent; 409 if the id exists.
    InsertAgent(Agent),
    /// Replace an agent if its version is still `expected_version`; 409 otherwise.
    UpdateAgent {
        /// The new state (its `version` is ignored).
        agent: Agent,
        /// The version the change was computed from.
        expected_version: i64,
        /// Change time, Unix microseconds.
        at: i64,
    },
    /// Create a human; 409 if the id exists.
    InsertHuman(Human, i64),
    /// Store a token; 409 if the same secret exists.
    InsertToken(TokenRecord),
    /// Revoke a token; 404 if unknown or already revoked.
    RevokeToken {
        /// Token id.
        id: String,
        /// Revocation time, Unix microseconds.
        at: i64,
    },
    /// Record a decision.
    InsertDecision(DecisionRow),
    /// Record a violation.
    InsertViolation(ViolationRow),
    /// Create or replace a plugin.
    UpsertPlugin(PluginRow),
    /// Remove a plugin; 404 if unknown.
    DeletePlugin {
        /// Plugin name.
        name: String,
    },
    /// Create or replace the human baseline of one team, service, class and environment.
    UpsertBaseline(Baseline),
    /// Record a new pending approval.
    InsertApproval(ApprovalRow),
    /// Approve or reject a pending, unexpired approval; 409 otherwise.
    DecideApproval {
        /// Approval id.
        id: String,
        /// Approve (true) or reject.
        approve: bool,
        /// Who decided.
        by: String,
        /// When, Unix microseconds (must be before expiry).
        at: i64,
        /// The approver's comment.
        comment: Option<String>,
    },
    /// Add an approver to a pending approval, approving it once enough have; 409 if another
    /// approver changed it meanwhile (compare-and-set on the list) or it is no longer pending.
    AddApprover {
        /// Approval id.
        id: String,
        /// The approver.
        by: String,
        /// When, Unix microseconds (must be before expiry).
        at: i64,
        /// The approver's comment.
        comment: Option<String>,
        /// The approvers before (JSON list), as read.
        before: String,
        /// The approvers after (JSON list).
        after: String,
        /// Whether this approver completes the approval.
        complete: bool,
    },
    /// Use an approved, unexpired approval for a decision; 409 if it is not (already used:
    /// approvals are single-use, and this write is what makes them so on every replica).
    ConsumeApproval {
        /// Approval id.
        id: String,
        /// The decision that uses it.
        decision_id: String,
        /// When, Unix microseconds.
        at: i64,
    },
    /// Mark a lapsed approval's expiry as announced; 409 if another replica did.
    NoteApprovalExpired {
        /// Approval id.
        id: String,
    },
    /// Queue a webhook delivery (written with the change that caused its event).
    InsertDelivery(Delivery),
    /// Take a due delivery for an attempt until `until`; 409 if another worker has it or it is not due.
    ClaimDelivery {
        /// Delivery id.
        id: String,
        /// Now, Unix microseconds.
        now: i64,
        /// End of the claim, Unix microseconds.
        until: i64,
    },
    /// Record an attempt's result.
    DeliveryAttempted {
        /// Delivery id.
        id: String,
        /// `pending` (retry at `next_attempt_at`), `delivered` or `parked`.
        status: String,
        /// Attempts so far.
        attempts: i64,
        /// When to retry, Unix microseconds.
        next_attempt_at: i64,
        /// What went wrong, if it did.
        last_error: Option<String>,
        /// When, Unix microseconds.
        at: i64,
        /// The claim this attempt was made under; a result from a lapsed claim is dropped.
        claim: i64,
    },
    /// Record a decision's outcome; 409 if a real one (not `unknown`) is there already.
    ReportOutcome {
        /// The decision.
        decision_id: String,
        /// `succeeded`, `failed` or `rolled_back`.
        outcome: String,
        /// When, Unix microseconds.
        at: i64,
        /// Who reported it.
        by: String,
        /// Detail.
        detail: Option<String>,
        /// Actual cost, US dollars.
        actual_cost_usd: Option<f64>,
        /// The outcome it replaces, as read (none, `unknown`, or a report being corrected);
        /// 409 if it is no longer what is there, so evidence is never counted twice.
        expected: Option<String>,
    },
    /// Record an overdue outcome as `unknown`; 409 if one arrived meanwhile.
    OutcomeOverdue {
        /// The decision.
        decision_id: String,
        /// When, Unix microseconds.
        at: i64,
    },
    /// Record metric samples for a decision, with the judgement they led to.
    InsertSignal {
        /// Signal id (grows with time).
        id: String,
        /// The decision.
        decision_id: String,
        /// When, Unix microseconds.
        at: i64,
        /// The metric windows, as JSON.
        windows: String,
        /// The judgement after them.
        verdict: String,
    },
    /// Mark a decision's rollback requested; 409 if it already was.
    RequestRollback {
        /// The decision.
        decision_id: String,
        /// When, Unix microseconds.
        at: i64,
    },
    /// Add (or, with a negative `delta`, take back) trust evidence to the agent's running
    /// totals; never fails for a logical reason.
    AddEvidence(EvidenceDelta),
    /// Note an agent's trust score after new evidence (and its day in the trust history),
    /// computed from its running totals inside the transaction, after the evidence written
    /// before it.
    NoteTrust {
        /// The agent.
        agent_id: String,
        /// Its tier.
        tier: u8,
        /// When, Unix microseconds.
        at: i64,
        /// How evidence weighs.
        policy: crate::trust::TrustPolicy,
    },
    /// Record a tier change in the agent's history (written with the `UpdateAgent` that makes it).
    RecordTierChange(TierChange),
    /// Charge an allowed action to the agent's quotas, all or none: 409 `quota_exceeded` if any
    /// would pass its limit. Counted per batch in memory under the writers' lock (see
    /// `QuotaCounts`), so it holds across replicas. Written before the decision's other rows.
    ChargeQuotas {
        /// The agent.
        agent_id: String,
        /// What the action draws on.
        charges: Vec<crate::quotas::Charge>,
    },
    /// Correct a quota's count (an outcome's actual cost replacing the estimate); never fails.
    AdjustQuota {
        /// The agent.
        agent_id: String,
        /// Quota name.
        quota: String,
        /// Its scope.
        scope: String,
        /// The window's start, Unix microseconds.
        window_start: i64,
        /// What to add (negative to take back).
        delta: i64,
    },
    /// Acknowledge an open violation; 409 if it is not open any more.
    AckViolation {
        /// Violation id.
        id: String,
        /// Who acknowledged it.
        by: String,
        /// When, Unix microseconds.
        at: i64,
        /// The reviewer's comment.
        comment: Option<String>,
    },
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
    /// `pending`, `approved`, `rejected`, `expired` or `consumed` (approved and used).
    pub status: String,
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
    pub event_type: String,
    /// The endpoint's name.
    pub endpoint: String,
    /// The body sent, in the endpoint's format.
    #[serde(skip_serializing)]
    pub body: String,
    /// `pending`, `delivered` or `parked` (gave up; see `last_error`).
    pub status: String,
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
    /// The class's violation mode then: `block`, `flag` or `guard`.
    pub mode: String,
    /// Reason code (`no_grant`, `explicit_deny`, …).
    pub reason: String,
    /// `open` or `acknowledged`.
    pub status: String,
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

/// Which violations to list: every field narrows.
#[derive(Debug, Clone, Default)]
pub struct ViolationFilter {
    /// The agent.
    pub agent: Option<String>,
    /// `open` or `acknowledged`.
    pub status: Option<String>,
    /// Action class.
    pub class: Option<String>,
    /// Environment.
    pub environment: Option<String>,
    /// Violation mode.
    pub mode: Option<String>,
    /// At or after (Unix microseconds).
    pub since: Option<i64>,
    /// Before (Unix microseconds).
    pub until: Option<i64>,
    /// Page after this violation id (ids grow with time).
    pub after: Option<String>,
    /// Rows to return.
    pub limit: i64,
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

/// A row of the `plugins` table.
#[derive(Debug, Clone)]
pub struct PluginRow {
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Kind (`classifier`, …).
    pub kind: String,
    /// The manifest, as JSON.
    pub manifest: String,
    /// The component.
    pub component: Arc<Vec<u8>>,
    /// Hex SHA-256 of the component.
    pub sha256: String,
    /// Unix microseconds.
    pub updated_at: i64,
}

/// A unit of change: rows and the audit records that describe them, committed together.
#[derive(Debug, Clone, Default)]
pub struct Change {
    /// Row writes, in order.
    pub writes: Vec<Write>,
    /// Audit records appended to the chain in the same transaction.
    pub audit: Vec<AuditRecord>,
}

struct Job {
    change: Change,
    reply: oneshot::Sender<Result<()>>,
}

enum Msg {
    Job(Job),
    /// Commit what is queued, release the connection, and stop.
    Stop(oneshot::Sender<()>),
}

/// Filters for audit queries.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// `agent`, `human`, `service` or `admin`.
    pub actor_kind: Option<String>,
    /// The agent concerned.
    pub agent: Option<String>,
    /// Environment of the action.
    pub environment: Option<String>,
    /// Action class.
    pub action_class: Option<String>,
    /// Event type.
    pub event_type: Option<String>,
    /// At or after, Unix microseconds.
    pub since: Option<i64>,
    /// Before, Unix microseconds.
    pub until: Option<i64>,
    /// Only records after this sequence number (for paging).
    pub after_seq: Option<i64>,
    /// At most this many records.
    pub limit: i64,
}

/// The store: a read pool, a handle on the writer task, and a short-lived read cache.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    writer: mpsc::Sender<Msg>,
    cache: Arc<ReadCache>,
}

/// Found tokens, agents and humans, kept for `ttl` so the decision hot path skips its reads.
/// This process's own writes evict what they change at once; another replica's change (or an
/// offline `warden token revoke`) is seen here within `ttl`.
#[derive(Debug)]
struct ReadCache {
    ttl: Duration,
    tokens: Mutex<HashMap<String, (Instant, TokenRecord)>>,
    agents: Mutex<HashMap<String, (Instant, Agent)>>,
    humans: Mutex<HashMap<String, (Instant, Human)>>,
    /// Last known quota counts (agent, quota, scope, window start): a hint for the decision's
    /// pre-check and its answer, kept up to date by this process's own charges. The charge
    /// itself is checked against the database when it commits, so a stale hint costs at most a
    /// second judgement, never a wrong count.
    quotas: Mutex<HashMap<QuotaKey, i64>>,
}

/// Entries kept per map before it is cleared (a crude bound; the TTL keeps entries fresh).
const CACHE_CAPACITY: usize = 100_000;

impl ReadCache {
    fn get<V: Clone>(&self, map: &Mutex<HashMap<String, (Instant, V)>>, key: &str) -> Option<V> {
        if self.ttl.is_zero() {
            return None;
        }
        let map = map.lock().expect("cache lock");
        map.get(key).filter(|(at, _)| at.elapsed() < self.ttl).map(|(_, v)| v.clone())
    }

    fn put<V>(&self, map: &Mutex<HashMap<String, (Instant, V)>>, key: &str, value: V) {
        if self.ttl.is_zero() {
            return;
        }
        let mut map = map.lock().expect("cache lock");
        if map.len() >= CACHE_CAPACITY {
            map.clear();
        }
        map.insert(key.to_string(), (Instant::now(), value));
    }

    fn evict(&self, change: &Change) {
        for write in &change.writes {
            match write {
                Write::InsertAgent(a) | Write::UpdateAgent { agent: a, .. } => {
                    self.agents.lock().expect("cache lock").remove(&a.id);
                }
                Write::NoteTrust { agent_id, .. } => {
                    self.agents.lock().expect("cache lock").remove(agent_id);
                }
                Write::InsertHuman(h, _) => {
                    self.humans.lock().expect("cache lock").remove(&h.id);
                }
                // Tokens are cached by hash; revocation is rare, so drop them all.
                Write::RevokeToken { .. } => self.tokens.lock().expect("cache lock").clear(),
                Write::InsertToken(_)
                | Write::InsertDecision(_)
                | Write::InsertViolation(_)
                | Write::UpsertPlugin(_)
                | Write::DeletePlugin { .. }
                | Write::AckViolation { .. }
                | Write::AddEvidence(_)
                | Write::RecordTierChange(_)
                | Write::ChargeQuotas { .. }
                | Write::AdjustQuota { .. }
                | Write::ReportOutcome { .. }
                | Write::OutcomeOverdue { .. }
                | Write::InsertSignal { .. }
                | Write::RequestRollback { .. }
                | Write::InsertDelivery(_)
                | Write::NoteApprovalExpired { .. }
                | Write::ClaimDelivery { .. }
                | Write::DeliveryAttempted { .. }
                | Write::InsertApproval(_)
                | Write::DecideApproval { .. }
                | Write::AddApprover { .. }
                | Write::ConsumeApproval { .. }
                | Write::UpsertBaseline(_) => {}
            }
        }
    }
}

const APPROVAL_COLUMNS: &str = "SELECT id, decision_id, agent_id, on_behalf_of, class, environment, service, action_hash, summary, status, \
     created_at, expires_at, decided_by, decided_at, comment, consumed_by, consumed_at, approvals_needed, approved_by FROM approvals";

fn approval_of(r: &AnyRow, now: i64) -> Result<Approval> {
    let expires_at: i64 = r.try_get("expires_at")?;
    let mut status: String = r.try_get("status")?;
    // Undecided or unused, an approval lapses at its expiry (a used one stays `consumed`).
    if (status == "pending" || status == "approved") && expires_at <= now {
        status = "expired".into();
    }
    let summary: String = r.try_get("summary")?;
    let approved_by: String = r.try_get("approved_by")?;
    let time = |column: &str| -> Result<Option<String>> { Ok(r.try_get::<Option<i64>, _>(column)?.map(format_micros)) };
    Ok(Approval {
        id: r.try_get("id")?,
        status,
        decision_id: r.try_get("decision_id")?,
        agent: r.try_get("agent_id")?,
        on_behalf_of: r.try_get("on_behalf_of")?,
        class: r.try_get("class")?,
        environment: r.try_get("environment")?,
        service: r.try_get("service")?,
        action_hash: r.try_get("action_hash")?,
        summary: serde_json::from_str(&summary).map_err(Error::internal)?,
        created_at: format_micros(r.try_get("created_at")?),
        expires_at: format_micros(expires_at),
        approvals_needed: r.try_get("approvals_needed")?,
        approved_by: serde_json::from_str(&approved_by).map_err(Error::internal)?,
        decided_by: r.try_get("decided_by")?,
        decided_at: time("decided_at")?,
        comment: r.try_get("comment")?,
        consumed_by: r.try_get("consumed_by")?,
        consumed_at: time("consumed_at")?,
        expires_at_micros: expires_at,
    })
}

const OUTCOME_COLUMNS: &str = "SELECT id, agent_id, verdict, class, environment, service, risk_level, outcome, outcome_due_at, outcome_at, outcome_by, \
     outcome_detail, actual_cost_usd, rollback_requested_at FROM decisions";

const TOTALS_SQL: &str = "SELECT environment, risk_level, kind, amount, as_of, count FROM trust_totals WHERE agent_id = $1";

/// One running total (none for a kind this version does not know).
fn total_of(r: &AnyRow) -> std::result::Result<Option<crate::trust::Total>, sqlx::Error> {
    let Some(kind) = crate::trust::Kind::parse(&r.try_get::<String, _>("kind")?) else { return Ok(None) };
    Ok(Some(crate::trust::Total {
        environment: r.try_get("environment")?,
        risk: risk_of(&r.try_get::<String, _>("risk_level")?),
        kind,
        decayed: crate::trust::Decayed { amount: r.try_get("amount")?, as_of: r.try_get("as_of")? },
        count: r.try_get("count")?,
    }))
}

/// A stored risk level (the decision's merged risk).
fn risk_of(s: &str) -> RiskLevel {
    [RiskLevel::Low, RiskLevel::Medium, RiskLevel::High, RiskLevel::Critical].into_iter().find(|r| r.as_str() == s).unwrap_or(RiskLevel::Critical)
}

fn outcome_of(r: &AnyRow) -> Result<Outcome> {
    let time = |column: &str| -> Result<Option<String>> { Ok(r.try_get::<Option<i64>, _>(column)?.map(format_micros)) };
    Ok(Outcome {
        decision_id: r.try_get("id")?,
        agent: r.try_get("agent_id")?,
        verdict: r.try_get("verdict")?,
        class: r.try_get("class")?,
        environment: r.try_get("environment")?,
        service: r.try_get("service")?,
        risk: risk_of(&r.try_get::<String, _>("risk_level")?),
        outcome: r.try_get("outcome")?,
        due_at: time("outcome_due_at")?,
        reported_at: time("outcome_at")?,
        reported_by: r.try_get("outcome_by")?,
        detail: r.try_get("outcome_detail")?,
        actual_cost_usd: r.try_get("actual_cost_usd")?,
        rollback_requested: r.try_get::<Option<i64>, _>("rollback_requested_at")?.is_some(),
    })
}

const DELIVERY_COLUMNS: &str =
    "SELECT id, event_id, event_type, endpoint, body, status, attempts, next_attempt_at, last_error, created_at, delivered_at FROM deliveries";

fn delivery_of(r: &AnyRow) -> Result<Delivery> {
    Ok(Delivery {
        id: r.try_get("id")?,
        event_id: r.try_get("event_id")?,
        event_type: r.try_get("event_type")?,
        endpoint: r.try_get("endpoint")?,
        body: r.try_get("body")?,
        status: r.try_get("status")?,
        attempts: r.try_get("attempts")?,
        next_attempt_at: r.try_get("next_attempt_at")?,
        last_error: r.try_get("last_error")?,
        created_at: r.try_get("created_at")?,
        delivered_at: r.try_get("delivered_at")?,
    })
}

const VIOLATION_COLUMNS: &str =
    "SELECT id, at, decision_id, agent_id, class, environment, service, mode, reason, status, acknowledged_by, acknowledged_at, comment FROM violations";

fn violation_of(r: &AnyRow) -> Result<Violation> {
    let acknowledged_at: Option<i64> = r.try_get("acknowledged_at")?;
    Ok(Violation {
        id: r.try_get("id")?,
        at: format_micros(r.try_get("at")?),
        decision_id: r.try_get("decision_id")?,
        agent: r.try_get("agent_id")?,
        class: r.try_get("class")?,
        environment: r.try_get("environment")?,
        service: r.try_get("service")?,
        mode: r.try_get("mode")?,
        reason: r.try_get("reason")?,
        status: r.try_get("status")?,
        acknowledged_by: r.try_get("acknowledged_by")?,
        acknowledged_at: acknowledged_at.map(format_micros),
        comment: r.try_get("comment")?,
    })
}

/// A SELECT narrowed by optional filters, with its bound arguments in order.
struct Filters {
    sql: String,
    args: Vec<Arg>,
}

impl Filters {
    fn new(select: &str) -> Filters {
        Filters { sql: format!("{select} WHERE 1 = 1"), args: Vec::new() }
    }

    fn cond(&mut self, column: &str, op: &str, arg: Arg) {
        self.args.push(arg);
        self.sql.push_str(&format!(" AND {column} {op} ${}", self.args.len()));
    }

    fn text(&mut self, column: &str, value: &Option<String>) {
        if let Some(v) = value {
            self.cond(column, "=", Arg::Text(v.clone()));
        }
    }

    fn text_op(&mut self, column: &str, op: &str, value: Option<&str>) {
        if let Some(v) = value {
            self.cond(column, op, Arg::Text(v.to_string()));
        }
    }

    fn int(&mut self, column: &str, op: &str, value: Option<i64>) {
        if let Some(v) = value {
            self.cond(column, op, Arg::Int(v));
        }
    }

    /// Appends `tail` (ORDER BY, LIMIT) and runs the query.
    async fn fetch_all(mut self, tail: &str, pool: &AnyPool) -> std::result::Result<Vec<AnyRow>, sqlx::Error> {
        self.sql.push_str(tail);
        let mut query = sqlx::query(&self.sql);
        for arg in self.args {
            query = match arg {
                Arg::Text(s) => query.bind(s),
                Arg::Int(i) => query.bind(i),
            };
        }
        query.fetch_all(pool).await
    }
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

impl Store {
    /// Connects, applies migrations and starts the writer.
    pub async fn open(options: &StoreOptions) -> anyhow::Result<Store> {
        sqlx::any::install_default_drivers();
        let url = options.url.as_str();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            anyhow::bail!("unsupported database URL `{}`: use sqlite://… or postgres://…", redact(url));
        };
        let pool = AnyPoolOptions::new()
            .max_connections(options.max_connections.max(1) + 1)
            .acquire_timeout(Duration::from_secs(5))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets readers run beside the writer; FULL makes every commit durable.
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA synchronous = FULL").await?;
                        conn.execute("PRAGMA busy_timeout = 5000").await?;
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                        // Checkpoints run in the background (below), not inside the writer's commits.
                        conn.execute("PRAGMA wal_autocheckpoint = 0").await?;
                    }
                    Ok(())
                })
            })
            .connect(url)
            .await
            .with_context(|| format!("cannot open the database at {}", redact(url)))?;
        let migrator = match backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator.run(&pool).await.context("cannot apply database migrations")?;
        let (tx, rx) = mpsc::channel(8192);
        tokio::spawn(Writer { pool: pool.clone(), backend, conn: None, max_batch: options.max_batch.max(1) }.run(rx));
        if backend == Backend::Sqlite {
            tokio::spawn(checkpoint_wal(pool.clone()));
        }
        let cache = Arc::new(ReadCache {
            ttl: options.cache_ttl,
            tokens: Default::default(),
            agents: Default::default(),
            humans: Default::default(),
            quotas: Default::default(),
        });
        Ok(Store { pool, backend, writer: tx, cache })
    }

    /// Whether the store has been closed.
    pub fn is_closed(&self) -> bool {
        self.pool.is_closed()
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Commits a change and its audit records; returns once durable.
    pub async fn commit(&self, change: Change) -> Result<()> {
        let counted: Vec<(QuotaKey, i64)> = change
            .writes
            .iter()
            .flat_map(|w| match w {
                Write::ChargeQuotas { agent_id, charges } => {
                    charges.iter().map(|c| ((agent_id.clone(), c.quota.clone(), c.scope.clone(), c.window.0), c.amount)).collect::<Vec<_>>()
                }
                Write::AdjustQuota { agent_id, quota, scope, window_start, delta } => {
                    vec![((agent_id.clone(), quota.clone(), scope.clone(), *window_start), *delta)]
                }
                _ => Vec::new(),
            })
            .collect();
        let result = self.commit_change(change).await;
        if result.is_ok() && !counted.is_empty() {
            let mut hints = self.cache.quotas.lock().expect("cache lock");
            for (key, amount) in counted {
                if let Some(used) = hints.get_mut(&key) {
                    *used += amount;
                }
            }
        }
        result
    }

    async fn commit_change(&self, change: Change) -> Result<()> {
        // Identity changes evict the cache before and after: a read racing the commit cannot
        // keep the old row for long. Decisions (the hot path) change nothing cached.
        let evicts = change.writes.iter().any(|w| !matches!(w, Write::InsertDecision(_) | Write::InsertViolation(_) | Write::InsertToken(_)));
        let copy = evicts.then(|| change.clone());
        if let Some(c) = &copy {
            self.cache.evict(c);
        }
        let (reply, rx) = oneshot::channel();
        self.writer.send(Msg::Job(Job { change, reply })).await.map_err(|_| Error::unavailable("the writer has stopped"))?;
        let result = rx.await.map_err(|_| Error::unavailable("the writer has stopped"))?;
        if let Some(c) = &copy {
            self.cache.evict(c);
        }
        result
    }

    /// Checks that the database answers and holds Warden's schema.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT seq FROM audit_head WHERE id = 1").fetch_one(&self.pool).await?;
        Ok(())
    }

    /// Drains and stops the writer, then closes the pool. Later writes fail with 503.
    pub async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.writer.send(Msg::Stop(tx)).await.is_ok() {
            let _ = rx.await;
        }
        self.pool.close().await;
    }

    /// Looks a token up by the hash of its secret.
    pub async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>> {
        if let Some(t) = self.cache.get(&self.cache.tokens, hash) {
            return Ok(Some(t));
        }
        let row = sqlx::query("SELECT id, hash, role, subject, note, created_at, revoked_at FROM tokens WHERE hash = $1")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?;
        let token = row.map(|r| token_from_row(&r)).transpose()?;
        if let Some(t) = &token {
            self.cache.put(&self.cache.tokens, hash, t.clone());
        }
        Ok(token)
    }

    /// One token by its public id.
    pub async fn token_by_id(&self, id: &str) -> Result<Option<TokenRecord>> {
        let row =
            sqlx::query("SELECT id, hash, role, subject, note, created_at, revoked_at FROM tokens WHERE id = $1").bind(id).fetch_optional(&self.pool).await?;
        row.map(|r| token_from_row(&r)).transpose()
    }

    /// Every token, newest first.
    pub async fn tokens(&self) -> Result<Vec<TokenRecord>> {
        let rows =
            sqlx::query("SELECT id, hash, role, subject, note, created_at, revoked_at FROM tokens ORDER BY created_at DESC").fetch_all(&self.pool).await?;
        rows.iter().map(token_from_row).collect()
    }

    /// One agent.
    pub async fn agent(&self, id: &str) -> Result<Option<Agent>> {
        if let Some(a) = self.cache.get(&self.cache.agents, id) {
            return Ok(Some(a));
        }
        let agent = self.agent_fresh(id).await?;
        if let Some(a) = &agent {
            self.cache.put(&self.cache.agents, id, a.clone());
        }
        Ok(agent)
    }

    /// One agent from the database, never from the cache (for read-modify-write).
    pub async fn agent_fresh(&self, id: &str) -> Result<Option<Agent>> {
        let row = sqlx::query(&format!("SELECT {AGENT_COLUMNS} FROM agents WHERE id = $1")).bind(id).fetch_optional(&self.pool).await?;
        row.map(|r| agent_from_row(&r)).transpose()
    }

    /// Agents, optionally of one team, by id.
    pub async fn agents(&self, team: Option<&str>) -> Result<Vec<Agent>> {
        let rows = match team {
            Some(team) => sqlx::query(&format!("SELECT {AGENT_COLUMNS} FROM agents WHERE team = $1 ORDER BY id")).bind(team).fetch_all(&self.pool).await?,
            None => sqlx::query(&format!("SELECT {AGENT_COLUMNS} FROM agents ORDER BY id")).fetch_all(&self.pool).await?,
        };
        rows.iter().map(agent_from_row).collect()
    }

    /// One human.
    pub async fn human(&self, id: &str) -> Result<Option<Human>> {
        if let Some(h) = self.cache.get(&self.cache.humans, id) {
            return Ok(Some(h));
        }
        let row = sqlx::query("SELECT id, team, grants, created_at FROM humans WHERE id = $1").bind(id).fetch_optional(&self.pool).await?;
        let human = row.map(|r| human_from_row(&r)).transpose()?;
        if let Some(h) = &human {
            self.cache.put(&self.cache.humans, id, h.clone());
        }
        Ok(human)
    }

    /// Every human, by id.
    pub async fn humans(&self) -> Result<Vec<Human>> {
        let rows = sqlx::query("SELECT id, team, grants, created_at FROM humans ORDER BY id").fetch_all(&self.pool).await?;
        rows.iter().map(human_from_row).collect()
    }

    /// A recorded decision: its agent and its answer as JSON.
    pub async fn decision(&self, id: &str) -> Result<Option<(String, String)>> {
        let row = sqlx::query("SELECT agent_id, answer FROM decisions WHERE id = $1").bind(id).fetch_optional(&self.pool).await?;
        Ok(row.map(|r| Ok::<_, sqlx::Error>((r.try_get("agent_id")?, r.try_get("answer")?))).transpose()?)
    }

    /// A decision's outcome (reported, overdue or still due).
    pub async fn outcome(&self, decision_id: &str) -> Result<Option<Outcome>> {
        let row = sqlx::query(&format!("{OUTCOME_COLUMNS} WHERE id = $1")).bind(decision_id).fetch_optional(&self.pool).await?;
        row.as_ref().map(outcome_of).transpose()
    }

    /// A decision's request (JSON), verdict, agent and whether a rollback was requested.
    pub async fn decision_for_signals(&self, id: &str) -> Result<Option<(String, String, String, bool)>> {
        let row =
            sqlx::query("SELECT agent_id, verdict, request, rollback_requested_at FROM decisions WHERE id = $1").bind(id).fetch_optional(&self.pool).await?;
        let Some(r) = row else { return Ok(None) };
        Ok(Some((r.try_get("agent_id")?, r.try_get("verdict")?, r.try_get("request")?, r.try_get::<Option<i64>, _>("rollback_requested_at")?.is_some())))
    }

    /// The latest `limit` batches of metric windows received for a decision (each a JSON list),
    /// newest first, and how many batches there are in all.
    pub async fn signal_windows(&self, decision_id: &str, limit: i64) -> Result<(Vec<String>, i64)> {
        let sql = format!("SELECT windows FROM signals WHERE decision_id = $1 ORDER BY id DESC LIMIT {}", limit.clamp(1, 1000));
        let rows = sqlx::query(&sql).bind(decision_id).fetch_all(&self.pool).await?;
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM signals WHERE decision_id = $1").bind(decision_id).fetch_one(&self.pool).await?;
        Ok((rows.iter().map(|r| r.try_get("windows")).collect::<std::result::Result<_, _>>()?, count))
    }

    /// An agent's running trust totals.
    pub async fn trust_totals(&self, agent: &str) -> Result<Vec<crate::trust::Total>> {
        let rows = sqlx::query(TOTALS_SQL).bind(agent).fetch_all(&self.pool).await?;
        let totals = rows.iter().map(total_of).collect::<std::result::Result<Vec<_>, sqlx::Error>>()?;
        Ok(totals.into_iter().flatten().collect())
    }

    /// An agent's outcomes since `since`: how many, and how many failed, rolled back or went
    /// unreported (the error budget).
    pub async fn outcome_window(&self, agent: &str, since: i64) -> Result<crate::tiers::Window> {
        let r = sqlx::query(
            "SELECT COUNT(*) AS n, COALESCE(SUM(CASE WHEN outcome = 'succeeded' THEN 0 ELSE 1 END), 0) AS bad FROM decisions \
             WHERE agent_id = $1 AND outcome IS NOT NULL AND outcome_at >= $2",
        )
        .bind(agent)
        .bind(since)
        .fetch_one(&self.pool)
        .await?;
        Ok(crate::tiers::Window { outcomes: r.try_get::<i64, _>("n")?.max(0) as u64, bad: r.try_get::<i64, _>("bad")?.max(0) as u64 })
    }

    /// Blocked violations of an agent since `since` (quota overruns are minor and left out).
    pub async fn blocked_violations(&self, agent: &str, since: i64) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM violations WHERE agent_id = $1 AND mode = 'block' AND reason <> 'quota_exceeded' AND at >= $2")
            .bind(agent)
            .bind(since)
            .fetch_one(&self.pool)
            .await?;
        Ok(n.max(0) as u64)
    }

    /// Distinct days and targets of an agent's successes since `since` in environments matching
    /// `environment` (a pattern) at `risks`.
    pub async fn success_spread(&self, agent: &str, since: i64, environment: &str, risks: &[RiskLevel]) -> Result<crate::tiers::Spread> {
        // Patterns use only [a-z0-9-_.*/:]; `_` is LIKE's own wildcard, so escape it.
        let like = environment.replace('_', "\\_").replace('*', "%");
        let list = risks.iter().map(|r| format!("'{}'", r.as_str())).collect::<Vec<_>>().join(", ");
        let sql = format!(
            "SELECT COUNT(DISTINCT outcome_at / {DAY_US}) AS days, COUNT(DISTINCT service) AS targets FROM decisions \
             WHERE agent_id = $1 AND outcome = 'succeeded' AND outcome_at >= $2 AND environment LIKE $3 ESCAPE '\\' AND risk_level IN ({list})"
        );
        let r = sqlx::query(&sql).bind(agent).bind(since).bind(like).fetch_one(&self.pool).await?;
        let n = |c: &str| -> Result<u32> { Ok(u32::try_from(r.try_get::<i64, _>(c)?.max(0)).unwrap_or(u32::MAX)) };
        Ok(crate::tiers::Spread { days: n("days")?, targets: n("targets")? })
    }

    /// An agent's tier changes, newest first.
    pub async fn tier_changes(&self, agent: &str, since: i64, limit: i64) -> Result<Vec<TierChange>> {
        let sql = format!(
            "SELECT id, agent_id, at, from_tier, to_tier, reason, text, actor, score, evidence FROM tier_changes WHERE agent_id = $1 AND at >= $2 \
             ORDER BY at DESC, id DESC LIMIT {}",
            limit.clamp(1, 1000)
        );
        let rows = sqlx::query(&sql).bind(agent).bind(since).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(TierChange {
                    id: r.try_get("id")?,
                    agent: r.try_get("agent_id")?,
                    at: format_micros(r.try_get("at")?),
                    from: small(r.try_get("from_tier")?)?,
                    to: small(r.try_get("to_tier")?)?,
                    reason: r.try_get("reason")?,
                    text: r.try_get("text")?,
                    actor: r.try_get("actor")?,
                    score: r.try_get("score")?,
                    evidence: serde_json::from_str(&r.try_get::<String, _>("evidence")?).map_err(Error::internal)?,
                })
            })
            .collect()
    }

    /// An agent's daily score and tier since `since`, oldest first.
    pub async fn trust_daily(&self, agent: &str, since: i64) -> Result<Vec<DailyTrust>> {
        let rows = sqlx::query("SELECT day, score, tier FROM trust_daily WHERE agent_id = $1 AND day >= $2 ORDER BY day")
            .bind(agent)
            .bind(since.div_euclid(DAY_US))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let day = format_micros(r.try_get::<i64, _>("day")? * DAY_US);
                Ok(DailyTrust { day: day[..10].to_string(), score: r.try_get("score")?, tier: small(r.try_get("tier")?)? })
            })
            .collect()
    }

    /// What each charge's count holds, as far as this process knows (see `ReadCache::quotas`);
    /// read from the database when it does not know.
    pub async fn quota_used(&self, agent: &str, charges: &[crate::quotas::Charge]) -> Result<Vec<i64>> {
        {
            let hints = self.cache.quotas.lock().expect("cache lock");
            let known: Option<Vec<i64>> =
                charges.iter().map(|c| hints.get(&(agent.to_string(), c.quota.clone(), c.scope.clone(), c.window.0)).copied()).collect();
            if let Some(used) = known {
                return Ok(used);
            }
        }
        self.quota_used_fresh(agent, charges).await
    }

    /// What each charge's count holds now in the database (0 where there is none yet).
    pub async fn quota_used_fresh(&self, agent: &str, charges: &[crate::quotas::Charge]) -> Result<Vec<i64>> {
        if charges.is_empty() {
            return Ok(Vec::new());
        }
        let mut sql = String::from("SELECT quota, scope, window_start, used FROM quota_usage WHERE agent_id = $1 AND (");
        for i in 0..charges.len() {
            let n = 2 + i * 3;
            sql.push_str(&format!("{}(quota = ${n} AND scope = ${} AND window_start = ${})", if i > 0 { " OR " } else { "" }, n + 1, n + 2));
        }
        sql.push(')');
        let mut q = sqlx::query(&sql).bind(agent);
        for c in charges {
            q = q.bind(&c.quota).bind(&c.scope).bind(c.window.0);
        }
        let rows = q.fetch_all(&self.pool).await?;
        let mut used = vec![0; charges.len()];
        for r in &rows {
            let (quota, scope, start): (String, String, i64) = (r.try_get("quota")?, r.try_get("scope")?, r.try_get("window_start")?);
            if let Some(i) = charges.iter().position(|c| c.quota == quota && c.scope == scope && c.window.0 == start) {
                used[i] = r.try_get("used")?;
            }
        }
        let mut hints = self.cache.quotas.lock().expect("cache lock");
        if hints.len() >= CACHE_CAPACITY {
            hints.clear();
        }
        for (c, used) in charges.iter().zip(&used) {
            hints.insert((agent.to_string(), c.quota.clone(), c.scope.clone(), c.window.0), *used);
        }
        Ok(used)
    }

    /// An agent's counts of one quota in the window starting at `window_start`, per scope.
    pub async fn quota_scopes(&self, agent: &str, quota: &str, window_start: i64) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query("SELECT scope, used FROM quota_usage WHERE agent_id = $1 AND quota = $2 AND window_start = $3 ORDER BY scope")
            .bind(agent)
            .bind(quota)
            .bind(window_start)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| Ok((r.try_get("scope")?, r.try_get("used")?))).collect()
    }

    /// Deletes quota counts of windows that started before `before`; returns how many.
    pub async fn prune_quota_usage(&self, before: i64) -> Result<u64> {
        Ok(sqlx::query("DELETE FROM quota_usage WHERE window_start < $1").bind(before).execute(&self.pool).await?.rows_affected())
    }

    /// A decision's time and request (JSON).
    pub async fn decision_request(&self, id: &str) -> Result<Option<(i64, String, String)>> {
        let row = sqlx::query("SELECT at, request, answer FROM decisions WHERE id = $1").bind(id).fetch_optional(&self.pool).await?;
        Ok(row.map(|r| Ok::<_, sqlx::Error>((r.try_get("at")?, r.try_get("request")?, r.try_get("answer")?))).transpose()?)
    }

    /// Ids of active agents, for the tier controller's periodic review.
    pub async fn active_agent_ids(&self) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar("SELECT id FROM agents WHERE status = 'active' ORDER BY id").fetch_all(&self.pool).await?)
    }

    /// Rebuilds every agent's running trust totals from the recorded evidence when they were
    /// computed with another half-life (or never): in one transaction, so replicas starting
    /// together rebuild once and writers wait. Returns whether it rebuilt.
    pub async fn ensure_trust_totals(&self, half_life_us: f64) -> anyhow::Result<bool> {
        let mut tx = self.pool.begin().await?;
        // One SQLite database has one Warden. On PostgreSQL, replicas starting together take turns,
        // and evidence another replica adds meanwhile waits, then lands on the rebuilt totals.
        if self.backend == Backend::Postgres {
            sqlx::query("LOCK TABLE trust_meta, trust_totals IN EXCLUSIVE MODE").execute(&mut *tx).await?;
        }
        let current: Option<f64> = sqlx::query_scalar("SELECT half_life_us FROM trust_meta WHERE id = 1").fetch_optional(&mut *tx).await?;
        if current.is_some_and(|h| (h - half_life_us).abs() < 1.0) {
            tx.rollback().await?;
            return Ok(false);
        }
        let mut totals: HashMap<(String, String, String, &'static str), (crate::trust::Decayed, i64)> = HashMap::new();
        let mut add = |agent: String, env: String, risk: String, kind: crate::trust::Kind, at: i64| {
            let entry = totals.entry((agent, env, risk, kind.as_str())).or_insert((crate::trust::Decayed { amount: 0.0, as_of: at }, 0));
            entry.0 = entry.0.add(1.0, at, half_life_us);
            entry.1 += 1;
        };
        // In pages by primary key, so memory stays flat however much evidence there is.
        let mut after = String::new();
        loop {
            let page = sqlx::query(
                "SELECT id, agent_id, environment, risk_level, outcome, outcome_at FROM decisions WHERE outcome IS NOT NULL AND id > $1 ORDER BY id LIMIT 20000",
            )
            .bind(&after)
            .fetch_all(&mut *tx)
            .await?;
            for r in &page {
                if let Some(kind) = crate::trust::Kind::of_outcome(&r.try_get::<String, _>("outcome")?) {
                    add(
                        r.try_get("agent_id")?,
                        r.try_get("environment")?,
                        r.try_get("risk_level")?,
                        kind,
                        r.try_get::<Option<i64>, _>("outcome_at")?.unwrap_or(0),
                    );
                }
            }
            match page.last() {
                Some(r) => after = r.try_get("id")?,
                None => break,
            }
        }
        let mut after = String::new();
        loop {
            let page = sqlx::query(
                "SELECT v.id, v.agent_id, v.environment, d.risk_level, v.mode, v.reason, v.at FROM violations v JOIN decisions d ON d.id = v.decision_id \
                 WHERE v.id > $1 ORDER BY v.id LIMIT 20000",
            )
            .bind(&after)
            .fetch_all(&mut *tx)
            .await?;
            for r in &page {
                let kind = crate::trust::Kind::of_violation(&r.try_get::<String, _>("mode")?, &r.try_get::<String, _>("reason")?);
                add(r.try_get("agent_id")?, r.try_get("environment")?, r.try_get("risk_level")?, kind, r.try_get("at")?);
            }
            match page.last() {
                Some(r) => after = r.try_get("id")?,
                None => break,
            }
        }
        sqlx::query("DELETE FROM trust_totals").execute(&mut *tx).await?;
        let rows: Vec<_> = totals.into_iter().collect();
        for chunk in rows.chunks(ROWS_PER_INSERT) {
            let sql = multi_insert("trust_totals (agent_id, environment, risk_level, kind, amount, as_of, count)", 7, chunk.len());
            let mut q = sqlx::query(&sql);
            for ((agent, env, risk, kind), (d, count)) in chunk {
                q = q.bind(agent).bind(env).bind(risk).bind(*kind).bind(d.amount).bind(d.as_of).bind(*count);
            }
            q.execute(&mut *tx).await?;
        }
        sqlx::query("DELETE FROM trust_meta").execute(&mut *tx).await?;
        sqlx::query("INSERT INTO trust_meta (id, half_life_us) VALUES (1, $1)").bind(half_life_us).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Decisions whose outcome was due before `now` and never came, oldest first.
    pub async fn overdue_outcomes(&self, now: i64, limit: i64) -> Result<Vec<Outcome>> {
        let sql = format!("{OUTCOME_COLUMNS} WHERE outcome IS NULL AND outcome_due_at <= $1 ORDER BY outcome_due_at LIMIT {}", limit.clamp(1, 1000));
        let rows = sqlx::query(&sql).bind(now).fetch_all(&self.pool).await?;
        rows.iter().map(outcome_of).collect()
    }

    /// How many `decision` audit records a decision has (its own record; approvals and
    /// violations it caused are records of their own).
    pub async fn count_audit_for_decision(&self, decision_id: &str) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM audit_events WHERE decision_id = $1 AND event_type = 'decision'")
            .bind(decision_id)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<i64, _>("n")?)
    }

    /// The policy version of the newest `policy.loaded` audit record.
    pub async fn last_policy_version(&self) -> Result<Option<String>> {
        let row =
            sqlx::query("SELECT record FROM audit_events WHERE event_type = 'policy.loaded' ORDER BY seq DESC LIMIT 1").fetch_optional(&self.pool).await?;
        let Some(row) = row else { return Ok(None) };
        let record: AuditRecord = serde_json::from_str(&row.try_get::<String, _>("record")?).map_err(Error::internal)?;
        Ok(record.policy_version)
    }

    /// Every stored plugin's name and SHA-256 (cheap: for replicas to notice changes).
    pub async fn plugin_hashes(&self) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query("SELECT name, sha256 FROM plugins ORDER BY name").fetch_all(&self.pool).await?;
        rows.iter().map(|r| Ok((r.try_get("name")?, r.try_get("sha256")?))).collect()
    }

    /// One stored plugin: its manifest (JSON) and component.
    pub async fn plugin(&self, name: &str) -> Result<Option<(String, Vec<u8>)>> {
        let row = sqlx::query("SELECT manifest, component FROM plugins WHERE name = $1").bind(name).fetch_optional(&self.pool).await?;
        Ok(row.map(|r| Ok::<_, sqlx::Error>((r.try_get("manifest")?, r.try_get("component")?))).transpose()?)
    }

    /// The human baseline for one kind of action, if one has been computed.
    pub async fn baseline(&self, team: &str, service: &str, class: &str, environment: &str) -> Result<Option<Baseline>> {
        let row = sqlx::query("SELECT record FROM baselines WHERE team = $1 AND service = $2 AND class = $3 AND environment = $4")
            .bind(team)
            .bind(service)
            .bind(class)
            .bind(environment)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let record: String = row.try_get("record")?;
        Ok(Some(serde_json::from_str(&record).map_err(Error::internal)?))
    }

    /// An agent's decisions of one kind since `since` (Unix microseconds), and whether it was
    /// ever allowed that kind of action; both answered from one index.
    pub async fn activity(&self, agent: &str, class: &str, environment: &str, service: &str, since: i64) -> Result<Activity> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM decisions WHERE agent_id = $1 AND class = $2 AND environment = $3 AND service = $4 AND at >= $5) AS recent, \
                    (SELECT COUNT(*) FROM (SELECT 1 FROM decisions WHERE agent_id = $1 AND class = $2 AND environment = $3 AND service = $4 \
                     AND verdict = 'allow' LIMIT 1) AS d) AS done",
        )
        .bind(agent)
        .bind(class)
        .bind(environment)
        .bind(service)
        .bind(since)
        .fetch_one(&self.pool)
        .await?;
        let (recent, done): (i64, i64) = (row.try_get("recent")?, row.try_get("done")?);
        Ok(Activity { recent: u32::try_from(recent).unwrap_or(u32::MAX), done_before: done > 0 })
    }

    /// Audit records matching a filter, in chain order.
    pub async fn audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>> {
        let mut w = Filters::new("SELECT seq, record, prev_hash, hash FROM audit_events");
        w.text("actor_kind", &filter.actor_kind);
        w.text("agent_id", &filter.agent);
        w.text("environment", &filter.environment);
        w.text("action_class", &filter.action_class);
        w.text("event_type", &filter.event_type);
        w.int("at", ">=", filter.since);
        w.int("at", "<", filter.until);
        w.int("seq", ">", filter.after_seq);
        let rows = w.fetch_all(&format!(" ORDER BY seq LIMIT {}", filter.limit.clamp(1, 1001)), &self.pool).await?;
        rows.iter()
            .map(|r| {
                let record: String = r.try_get("record")?;
                Ok(AuditEntry {
                    seq: r.try_get("seq")?,
                    prev_hash: r.try_get("prev_hash")?,
                    hash: r.try_get("hash")?,
                    record: serde_json::from_str(&record).map_err(Error::internal)?,
                })
            })
            .collect()
    }

    /// One approval, with `pending` or `approved` shown as `expired` once `now` (Unix microseconds) is past its expiry.
    pub async fn approval(&self, id: &str, now: i64) -> Result<Option<Approval>> {
        let row = sqlx::query(&format!("{APPROVAL_COLUMNS} WHERE id = $1")).bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(|r| approval_of(r, now)).transpose()
    }

    /// Approvals by status (as of `now`) and agent, oldest first, after an id.
    pub async fn approvals(&self, status: Option<&str>, agent: Option<&str>, after: Option<&str>, limit: i64, now: i64) -> Result<Vec<Approval>> {
        let mut w = Filters::new(APPROVAL_COLUMNS);
        match status {
            Some("pending") => {
                w.cond("status", "=", Arg::Text("pending".into()));
                w.int("expires_at", ">", Some(now));
            }
            Some("approved") => {
                w.cond("status", "=", Arg::Text("approved".into()));
                w.int("expires_at", ">", Some(now));
            }
            Some("expired") => {
                w.sql.push_str(" AND status IN ('pending', 'approved')");
                w.int("expires_at", "<=", Some(now));
            }
            other => w.text("status", &other.map(String::from)),
        }
        w.text("agent_id", &agent.map(String::from));
        w.text_op("id", ">", after);
        let rows = w.fetch_all(&format!(" ORDER BY id LIMIT {}", limit.clamp(1, 1001)), &self.pool).await?;
        rows.iter().map(|r| approval_of(r, now)).collect()
    }

    /// Approvals that lapsed undecided before `now` and whose expiry is not yet announced.
    pub async fn unannounced_expiries(&self, now: i64, limit: i64) -> Result<Vec<Approval>> {
        let sql =
            format!("{APPROVAL_COLUMNS} WHERE status = 'pending' AND expires_at <= $1 AND expiry_notified = 0 ORDER BY id LIMIT {}", limit.clamp(1, 1000));
        let rows = sqlx::query(&sql).bind(now).fetch_all(&self.pool).await?;
        rows.iter().map(|r| approval_of(r, now)).collect()
    }

    /// Deliveries to `endpoints` due now (pending, retry time reached, not claimed), oldest first.
    pub async fn due_deliveries(&self, now: i64, endpoints: &[String], limit: i64) -> Result<Vec<Delivery>> {
        if endpoints.is_empty() {
            return Ok(Vec::new());
        }
        let mut w = Filters::new(DELIVERY_COLUMNS);
        w.cond("status", "=", Arg::Text("pending".into()));
        w.int("next_attempt_at", "<=", Some(now));
        w.int("claimed_until", "<=", Some(now));
        let first = w.args.len() + 1;
        let placeholders: Vec<String> = (first..first + endpoints.len()).map(|i| format!("${i}")).collect();
        w.sql.push_str(&format!(" AND endpoint IN ({})", placeholders.join(", ")));
        w.args.extend(endpoints.iter().cloned().map(Arg::Text));
        let rows = w.fetch_all(&format!(" ORDER BY id LIMIT {}", limit.clamp(1, 1000)), &self.pool).await?;
        rows.iter().map(delivery_of).collect()
    }

    /// Deliveries by status and endpoint, oldest first, after an id.
    pub async fn deliveries(&self, status: Option<&str>, endpoint: Option<&str>, after: Option<&str>, limit: i64) -> Result<Vec<Delivery>> {
        let mut w = Filters::new(DELIVERY_COLUMNS);
        w.text("status", &status.map(String::from));
        w.text("endpoint", &endpoint.map(String::from));
        w.text_op("id", ">", after);
        let rows = w.fetch_all(&format!(" ORDER BY id LIMIT {}", limit.clamp(1, 1001)), &self.pool).await?;
        rows.iter().map(delivery_of).collect()
    }

    /// One violation.
    pub async fn violation(&self, id: &str) -> Result<Option<Violation>> {
        let row = sqlx::query(&format!("{VIOLATION_COLUMNS} WHERE id = $1")).bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(violation_of).transpose()
    }

    /// Violations matching a filter, oldest first.
    pub async fn violations(&self, filter: &ViolationFilter) -> Result<Vec<Violation>> {
        let mut w = Filters::new(VIOLATION_COLUMNS);
        w.text("agent_id", &filter.agent);
        w.text("status", &filter.status);
        w.text("class", &filter.class);
        w.text("environment", &filter.environment);
        w.text("mode", &filter.mode);
        w.int("at", ">=", filter.since);
        w.int("at", "<", filter.until);
        w.text_op("id", ">", filter.after.as_deref());
        let rows = w.fetch_all(&format!(" ORDER BY id LIMIT {}", filter.limit.clamp(1, 1001)), &self.pool).await?;
        rows.iter().map(violation_of).collect()
    }

    /// Verifies the whole audit chain; returns the number of records, or what is wrong.
    pub async fn verify_audit(&self) -> Result<std::result::Result<i64, String>> {
        let mut verifier = audit::Verifier::default();
        let mut after = 0i64;
        loop {
            let rows = sqlx::query(
                "SELECT seq, at, event_type, actor_kind, actor_id, agent_id, environment, action_class, decision_id, record, prev_hash, hash \
                 FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT 5000",
            )
            .bind(after)
            .fetch_all(&self.pool)
            .await?;
            if rows.is_empty() {
                break;
            }
            for r in &rows {
                let row = StoredRow {
                    seq: r.try_get("seq")?,
                    at: r.try_get("at")?,
                    event_type: r.try_get("event_type")?,
                    actor_kind: r.try_get("actor_kind")?,
                    actor_id: r.try_get("actor_id")?,
                    agent_id: r.try_get("agent_id")?,
                    environment: r.try_get("environment")?,
                    action_class: r.try_get("action_class")?,
                    decision_id: r.try_get("decision_id")?,
                    record: r.try_get("record")?,
                    prev_hash: r.try_get("prev_hash")?,
                    hash: r.try_get("hash")?,
                };
                if let Err(problem) = verifier.check(&row) {
                    return Ok(Err(problem));
                }
                after = row.seq;
            }
        }
        let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1").fetch_one(&self.pool).await?;
        Ok(verifier.finish(head.try_get("seq")?, &head.try_get::<String, _>("hash")?))
    }
}

/// Copies the SQLite WAL back into the database once a second without blocking the writer
/// (PASSIVE), so that commits never pay for a checkpoint. Ends when the pool closes.
async fn checkpoint_wal(pool: AnyPool) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        if pool.is_closed() {
            return;
        }
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&pool).await {
            tracing::debug!(error = %e, "WAL checkpoint skipped");
        }
    }
}

enum Arg {
    Text(String),
    Int(i64),
}

/// Hides the password in a database URL.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!("{}{}:***{}", &url[..scheme + 3], &userinfo[..colon], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

const AGENT_COLUMNS: &str = "id, tool, model, team, sponsor, tier, ceiling, parent, status, shadow, version, created_at, updated_at, pinned, tier_since, trust_score, hold_until, last_hard_at, \
     quota_overrides";

fn agent_from_row(r: &AnyRow) -> Result<Agent> {
    let status: String = r.try_get("status")?;
    Ok(Agent {
        id: r.try_get("id")?,
        tool: r.try_get("tool")?,
        model: r.try_get("model")?,
        team: r.try_get("team")?,
        sponsor: r.try_get("sponsor")?,
        tier: small(r.try_get("tier")?)?,
        ceiling: small(r.try_get("ceiling")?)?,
        parent: r.try_get("parent")?,
        status: if status == "suspended" { AgentStatus::Suspended } else { AgentStatus::Active },
        shadow: r.try_get::<i64, _>("shadow")? != 0,
        pinned: r.try_get::<i64, _>("pinned")? != 0,
        tier_since: format_micros(r.try_get::<Option<i64>, _>("tier_since")?.unwrap_or(r.try_get("created_at")?)),
        trust_score: r.try_get("trust_score")?,
        hold_until: r.try_get("hold_until")?,
        last_hard_at: r.try_get("last_hard_at")?,
        quota_overrides: serde_json::from_str(&r.try_get::<String, _>("quota_overrides")?).map_err(Error::internal)?,
        version: r.try_get("version")?,
        created_at: format_micros(r.try_get("created_at")?),
        updated_at: format_micros(r.try_get("updated_at")?),
    })
}

fn small(v: i64) -> Result<u8> {
    u8::try_from(v).map_err(|_| Error::internal(format!("stored tier {v} is out of range")))
}

fn human_from_row(r: &AnyRow) -> Result<Human> {
    let grants: String = r.try_get("grants")?;
    Ok(Human {
        id: r.try_get("id")?,
        team: r.try_get("team")?,
        grants: serde_json::from_str(&grants).map_err(Error::internal)?,
        created_at: format_micros(r.try_get("created_at")?),
    })
}

fn token_from_row(r: &AnyRow) -> Result<TokenRecord> {
    let role: String = r.try_get("role")?;
    Ok(TokenRecord {
        id: r.try_get("id")?,
        hash: r.try_get("hash")?,
        role: Role::parse(&role).ok_or_else(|| Error::internal(format!("stored role `{role}` is unknown")))?,
        subject: r.try_get("subject")?,
        note: r.try_get("note")?,
        created_at: r.try_get("created_at")?,
        revoked_at: r.try_get("revoked_at")?,
    })
}

/// The group-commit writer.
struct Writer {
    pool: AnyPool,
    backend: Backend,
    conn: Option<PoolConnection<Any>>,
    max_batch: usize,
}

/// A write's result: the outer error is the database's, the inner one is logical (409/404).
type Applied = std::result::Result<Result<()>, sqlx::Error>;

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        let mut msgs = Vec::with_capacity(self.max_batch);
        let mut batch = Vec::with_capacity(self.max_batch);
        // Whatever queued up while the last transaction was committing goes into the next one.
        while rx.recv_many(&mut msgs, self.max_batch).await > 0 {
            let mut stop = None;
            for msg in msgs.drain(..) {
                match msg {
                    Msg::Job(job) if stop.is_none() => batch.push(job),
                    Msg::Job(job) => {
                        let _ = job.reply.send(Err(Error::unavailable("the store is closing")));
                    }
                    Msg::Stop(ack) => stop = Some(ack),
                }
            }
            if !batch.is_empty() {
                let results = self.commit(&batch).await;
                for (job, result) in batch.drain(..).zip(results) {
                    let _ = job.reply.send(result);
                }
            }
            if let Some(ack) = stop {
                rx.close();
                while let Ok(Msg::Job(job)) = rx.try_recv() {
                    let _ = job.reply.send(Err(Error::unavailable("the store is closing")));
                }
                self.conn = None;
                let _ = ack.send(());
                return;
            }
        }
    }

    async fn commit(&mut self, jobs: &[Job]) -> Vec<Result<()>> {
        // A connection that died while idle (failover, restart) fails the first attempt; the
        // second runs on a fresh one. A failed transaction wrote nothing, so retrying is safe.
        // A change alone needs no batch semantics: a logical failure at any write rolls it back.
        let batch = jobs.len() > 1;
        let mut outcome = self.try_commit(jobs.iter().map(|j| &j.change), batch).await;
        // A change that failed past its first write fails the same way again: go one by one.
        let logical = matches!(&outcome, Err(sqlx::Error::Protocol(m)) if m.starts_with(FAILED_PAST_FIRST));
        if outcome.is_err() && !logical {
            self.conn = None;
            outcome = self.try_commit(jobs.iter().map(|j| &j.change), batch).await;
        }
        match outcome {
            Ok(results) => results,
            Err(e) if jobs.len() == 1 => {
                self.conn = None;
                vec![Err(Error::unavailable(e))]
            }
            Err(e) => {
                // One bad change must not sink the others: retry each in its own transaction.
                if logical {
                    tracing::debug!(error = %e, batch = jobs.len(), "a change in the batch failed; committing one by one");
                } else {
                    tracing::warn!(error = %e, batch = jobs.len(), "batch commit failed; retrying changes one by one");
                    self.conn = None;
                }
                let mut results = Vec::with_capacity(jobs.len());
                for job in jobs {
                    results.push(match self.try_commit(std::iter::once(&job.change), false).await {
                        Ok(mut r) => r.remove(0),
                        Err(e) => {
                            self.conn = None;
                            Err(Error::unavailable(e))
                        }
                    });
                }
                results
            }
        }
    }

    async fn try_commit<'a>(&mut self, changes: impl Iterator<Item = &'a Change>, batch: bool) -> std::result::Result<Vec<Result<()>>, sqlx::Error> {
        let backend = self.backend;
        let conn = self.connection().await?;
        commit_batch(conn, backend, changes, batch).await
    }

    async fn connection(&mut self) -> std::result::Result<&mut AnyConnection, sqlx::Error> {
        if self.conn.is_none() {
            self.conn = Some(self.pool.acquire().await?);
        }
        Ok(self.conn.as_mut().expect("just set"))
    }
}

/// Commits changes in one transaction. With `batch`, a logical failure past a change's first
/// write fails the whole batch (so the caller retries one by one); alone, it rolls back.
async fn commit_batch<'a>(
    conn: &mut AnyConnection,
    backend: Backend,
    changes: impl Iterator<Item = &'a Change>,
    batch: bool,
) -> std::result::Result<Vec<Result<()>>, sqlx::Error> {
    conn.execute(if backend == Backend::Sqlite { "BEGIN IMMEDIATE" } else { "BEGIN" }).await?;
    let result = apply_all(conn, backend, changes, batch).await;
    match result {
        Ok((results, true)) => {
            conn.execute("COMMIT").await?;
            Ok(results)
        }
        Ok((results, false)) => {
            conn.execute("ROLLBACK").await?;
            Ok(results)
        }
        Err(e) => {
            let _ = conn.execute("ROLLBACK").await;
            Err(e)
        }
    }
}

const FAILED_PAST_FIRST: &str = "change failed after its first write";

/// Applies changes inside an open transaction; the flag says whether to commit.
async fn apply_all<'a>(
    conn: &mut AnyConnection,
    backend: Backend,
    changes: impl Iterator<Item = &'a Change>,
    batch: bool,
) -> std::result::Result<(Vec<Result<()>>, bool), sqlx::Error> {
    let head_sql = match backend {
        Backend::Sqlite => "SELECT seq, hash FROM audit_head WHERE id = 1",
        Backend::Postgres => "SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE",
    };
    let head = sqlx::query(head_sql).fetch_one(&mut *conn).await?;
    let (mut seq, mut hash): (i64, String) = (head.try_get("seq")?, head.try_get("hash")?);
    let start_seq = seq;
    let mut results = Vec::new();
    // Rows that cannot fail for a logical reason are gathered and written with one multi-row
    // INSERT per table: a batch costs a few statements, not a few per decision.
    let (mut decisions, mut violations, mut audit_rows) = (Vec::new(), Vec::new(), Vec::new());
    let mut quotas = QuotaCounts::default();
    for change in changes {
        let mut outcome = Ok(());
        for (i, write) in change.writes.iter().enumerate() {
            match write {
                Write::InsertDecision(d) => decisions.push(d),
                Write::InsertViolation(v) => violations.push(v),
                other => {
                    let applied = match other {
                        Write::ChargeQuotas { agent_id, charges } => {
                            quotas.charge(agent_id, charges);
                            Ok(())
                        }
                        Write::AdjustQuota { agent_id, quota, scope, window_start, delta } => {
                            quotas.adjust(agent_id, quota, scope, *window_start, *delta);
                            Ok(())
                        }
                        _ => apply(conn, other).await?,
                    };
                    if let Err(e) = applied {
                        if i > 0 {
                            if batch {
                                return Err(sqlx::Error::Protocol(format!("{FAILED_PAST_FIRST}: {e}")));
                            }
                            return Ok((vec![Err(e)], false));
                        }
                        outcome = Err(e);
                        break;
                    }
                }
            }
        }
        if outcome.is_ok() {
            for record in &change.audit {
                seq += 1;
                let json = serde_json::to_string(record).map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
                let next = audit::chain_hash(&hash, seq, &json);
                let at = crate::clock::parse_micros(&record.at).ok_or_else(|| sqlx::Error::Protocol(format!("audit time `{}` is not RFC 3339", record.at)))?;
                audit_rows.push(AuditRow { seq, at, record, json, prev_hash: std::mem::replace(&mut hash, next.clone()), hash: next });
            }
        }
        results.push(outcome);
    }
    if let Err(e) = quotas.flush(conn).await? {
        if batch {
            return Err(sqlx::Error::Protocol(format!("{FAILED_PAST_FIRST}: {e}")));
        }
        return Ok((vec![Err(e)], false));
    }
    insert_decisions(conn, &decisions).await?;
    insert_violations(conn, &violations).await?;
    insert_audit(conn, &audit_rows).await?;
    if seq != start_seq {
        sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1").bind(seq).bind(&hash).execute(&mut *conn).await?;
    }
    Ok((results, true))
}

struct AuditRow<'a> {
    seq: i64,
    at: i64,
    record: &'a AuditRecord,
    json: String,
    prev_hash: String,
    hash: String,
}

/// Rows per multi-row INSERT: well under SQLite's 32,766 and PostgreSQL's 65,535 parameters.
const ROWS_PER_INSERT: usize = 256;

/// `INSERT INTO table (columns) VALUES ($1, …), ($n+1, …), …` for `rows` rows.
fn multi_insert(table_and_columns: &str, columns: usize, rows: usize) -> String {
    let mut sql = format!("INSERT INTO {table_and_columns} VALUES ");
    for r in 0..rows {
        sql.push_str(if r == 0 { "(" } else { ", (" });
        for c in 0..columns {
            if c > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("${}", r * columns + c + 1));
        }
        sql.push(')');
    }
    sql
}

async fn insert_decisions(conn: &mut AnyConnection, rows: &[&DecisionRow]) -> std::result::Result<(), sqlx::Error> {
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let sql = multi_insert(
            "decisions (id, at, agent_id, on_behalf_of, class, environment, service, verdict, shadow_verdict, risk_level, tier, policy_version, request, answer, \
             outcome_due_at)",
            15,
            chunk.len(),
        );
        let mut q = sqlx::query(&sql);
        for d in chunk {
            q = q
                .bind(&d.id)
                .bind(d.at)
                .bind(&d.agent_id)
                .bind(&d.on_behalf_of)
                .bind(&d.class)
                .bind(&d.environment)
                .bind(&d.service)
                .bind(&d.verdict)
                .bind(&d.shadow_verdict)
                .bind(&d.risk_level)
                .bind(i64::from(d.tier))
                .bind(&d.policy_version)
                .bind(&d.request)
                .bind(&d.answer)
                .bind(d.outcome_due_at);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

async fn insert_violations(conn: &mut AnyConnection, rows: &[&ViolationRow]) -> std::result::Result<(), sqlx::Error> {
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let sql = multi_insert("violations (id, at, decision_id, agent_id, class, environment, service, mode, reason)", 9, chunk.len());
        let mut q = sqlx::query(&sql);
        for v in chunk {
            q = q
                .bind(&v.id)
                .bind(v.at)
                .bind(&v.decision_id)
                .bind(&v.agent_id)
                .bind(&v.class)
                .bind(&v.environment)
                .bind(&v.service)
                .bind(&v.mode)
                .bind(&v.reason);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

async fn insert_audit(conn: &mut AnyConnection, rows: &[AuditRow<'_>]) -> std::result::Result<(), sqlx::Error> {
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let sql = multi_insert(
            "audit_events (seq, at, event_type, actor_kind, actor_id, agent_id, environment, action_class, decision_id, record, prev_hash, hash)",
            12,
            chunk.len(),
        );
        let mut q = sqlx::query(&sql);
        for r in chunk {
            q = q
                .bind(r.seq)
                .bind(r.at)
                .bind(&r.record.event_type)
                .bind(&r.record.actor.kind)
                .bind(&r.record.actor.id)
                .bind(&r.record.agent)
                .bind(&r.record.environment)
                .bind(&r.record.action_class)
                .bind(&r.record.decision_id)
                .bind(&r.json)
                .bind(&r.prev_hash)
                .bind(&r.hash);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

fn affected(n: u64, kind: Kind, code: &'static str, message: String) -> Result<()> {
    if n == 1 { Ok(()) } else { Err(Error::new(kind, code, message)) }
}

async fn apply(conn: &mut AnyConnection, write: &Write) -> Applied {
    Ok(match write {
        Write::InsertAgent(a) => {
            let created = crate::clock::parse_micros(&a.created_at).unwrap_or_default();
            let n = sqlx::query(
                "INSERT INTO agents (id, tool, model, team, sponsor, tier, ceiling, parent, status, shadow, version, created_at, updated_at, pinned, tier_since) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 1, $11, $11, $12, $11) ON CONFLICT (id) DO NOTHING",
            )
            .bind(&a.id)
            .bind(&a.tool)
            .bind(&a.model)
            .bind(&a.team)
            .bind(&a.sponsor)
            .bind(i64::from(a.tier))
            .bind(i64::from(a.ceiling))
            .bind(&a.parent)
            .bind(a.status.as_str())
            .bind(i64::from(a.shadow))
            .bind(created)
            .bind(i64::from(a.pinned))
            .execute(&mut *conn)
            .await?
            .rows_affected();
            affected(n, Kind::Conflict, "agent_exists", format!("agent `{}` exists already", a.id))
        }
        Write::UpdateAgent { agent: a, expected_version, at } => {
            let n = sqlx::query(
                "UPDATE agents SET tool = $1, model = $2, team = $3, sponsor = $4, tier = $5, ceiling = $6, parent = $7, status = $8, \
                 shadow = $9, version = version + 1, updated_at = $10, pinned = $13, tier_since = $14, hold_until = $15, last_hard_at = $16, \
                 quota_overrides = $17 WHERE id = $11 AND version = $12",
            )
            .bind(&a.tool)
            .bind(&a.model)
            .bind(&a.team)
            .bind(&a.sponsor)
            .bind(i64::from(a.tier))
            .bind(i64::from(a.ceiling))
            .bind(&a.parent)
            .bind(a.status.as_str())
            .bind(i64::from(a.shadow))
            .bind(*at)
            .bind(&a.id)
            .bind(*expected_version)
            .bind(i64::from(a.pinned))
            .bind(crate::clock::parse_micros(&a.tier_since).unwrap_or(*at))
            .bind(a.hold_until)
            .bind(a.last_hard_at)
            .bind(serde_json::to_string(&a.quota_overrides).map_err(|e| sqlx::Error::Encode(Box::new(e)))?)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            affected(n, Kind::Conflict, "changed_concurrently", format!("agent `{}` changed while this update was prepared; retry", a.id))
        }
        Write::InsertHuman(h, at) => {
            let grants = serde_json::to_string(&h.grants).map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
            let n = sqlx::query("INSERT INTO humans (id, team, grants, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING")
                .bind(&h.id)
                .bind(&h.team)
                .bind(grants)
                .bind(*at)
                .execute(&mut *conn)
                .await?
                .rows_affected();
            affected(n, Kind::Conflict, "human_exists", format!("human `{}` exists already", h.id))
        }
        Write::InsertToken(t) => {
            let n = sqlx::query("INSERT INTO tokens (id, hash, role, subject, note, created_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING")
                .bind(&t.id)
                .bind(&t.hash)
                .bind(t.role.as_str())
                .bind(&t.subject)
                .bind(&t.note)
                .bind(t.created_at)
                .execute(&mut *conn)
                .await?
                .rows_affected();
            affected(n, Kind::Conflict, "token_exists", "this token exists already".to_string())
        }
        Write::RevokeToken { id, at } => {
            let n = sqlx::query("UPDATE tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(*at)
                .bind(id)
                .execute(&mut *conn)
                .await?
                .rows_affected();
            affected(n, Kind::NotFound, "unknown_token", format!("no active token `{id}`"))
        }
        Write::InsertDecision(d) => {
            insert_decisions(conn, &[d]).await?;
            Ok(())
        }
        Write::UpsertPlugin(p) => {
            sqlx::query(
                "INSERT INTO plugins (name, version, kind, manifest, component, sha256, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (name) DO UPDATE SET version = excluded.version, kind = excluded.kind, manifest = excluded.manifest, \
                 component = excluded.component, sha256 = excluded.sha256, updated_at = excluded.updated_at",
            )
            .bind(&p.name)
            .bind(&p.version)
            .bind(&p.kind)
            .bind(&p.manifest)
            .bind(p.component.as_slice())
            .bind(&p.sha256)
            .bind(p.updated_at)
            .execute(&mut *conn)
            .await?;
            Ok(())
        }
        Write::DeletePlugin { name } => {
            let n = sqlx::query("DELETE FROM plugins WHERE name = $1").bind(name).execute(&mut *conn).await?.rows_affected();
            affected(n, Kind::NotFound, "unknown_plugin", format!("no plugin `{name}`"))
        }
        Write::NoteApprovalExpired { id } => {
            let n = sqlx::query("UPDATE approvals SET expiry_notified = 1 WHERE id = $1 AND expiry_notified = 0")
                .bind(id)
                .execute(&mut *conn)
                .await?
                .rows_affected();
            affected(n, Kind::Conflict, "expiry_noted", format!("the expiry of approval `{id}` was already announced"))
        }
        Write::InsertDelivery(d) => {
            sqlx::query(
                "INSERT INTO deliveries (id, event_id, event_type, endpoint, body, status, attempts, next_attempt_at, claimed_until, created_at) \
                 VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, 0, $7)",
            )
            .bind(&d.id)
            .bind(&d.event_id)
            .bind(&d.event_type)
            .bind(&d.endpoint)
            .bind(&d.body)
            .bind(d.next_attempt_at)
            .bind(d.created_at)
            .execute(&mut *conn)
            .await?;
            Ok(())
        }
        Write::ClaimDelivery { id, now, until } => {
            let n =
                sqlx::query("UPDATE deliveries SET claimed_until = $1 WHERE id = $2 AND status = 'pending' AND next_attempt_at <= $3 AND claimed_until <= $3")
                    .bind(*until)
                    .bind(id)
                    .bind(*now)
                    .execute(&mut *conn)
                    .await?
                    .rows_affected();
            affected(n, Kind::Conflict, "delivery_taken", format!("delivery `{id}` is not due or another worker has it"))
        }
        Write::DeliveryAttempted { id, status, attempts, next_attempt_at, last_error, at, claim } => {
            let n = sqlx::query(
                "UPDATE deliveries SET status = $1, attempts = $2, next_attempt_at = $3, last_error = $4, claimed_until = 0, \
                 delivered_at = CASE WHEN $1 = 'delivered' THEN $5 ELSE delivered_at END WHERE id = $6 AND claimed_until = $7",
            )
            .bind(status)
            .bind(*attempts)
            .bind(*next_attempt_at)
            .bind(last_error)
            .bind(*at)
            .bind(id)
            .bind(*claim)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            affected(n, Kind::Conflict, "claim_lost", format!("delivery `{id}` was claimed by another worker after this attempt's claim lapsed"))
        }
        Write::InsertApproval(a) => {
            sqlx::query(
                "INSERT INTO approvals (id, decision_id, agent_id, on_behalf_of, class, environment, service, action_hash, summary, status, created_at, expires_at, \
                 approvals_needed) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending', $10, $11, $12)",
            )
            .bind(&a.id)
            .bind(&a.decision_id)
            .bind(&a.agent_id)
            .bind(&a.on_behalf_of)
            .bind(&a.class)
            .bind(&a.environment)
            .bind(&a.service)
            .bind(&a.action_hash)
            .bind(&a.summary)
            .bind(a.created_at)
            .bind(a.expires_at)
            .bind(a.approvals_needed)
            .execute(&mut *conn)
            .await?;
            Ok(())
        }
        Write::DecideApproval { id, approve, by, at, comment } => {
            let n = sqlx::query(
                "UPDATE approvals SET status = $1, decided_by = $2, decided_at = $3, comment = $4 WHERE id = $5 AND status = 'pending' AND expires_at > $3",
            )
            .bind(if *approve { "approved" } else { "rejected" })
            .bind(by)
            .bind(*at)
            .bind(comment)
            .bind(id)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            affected(n, Kind::Conflict, "approval_not_pending", format!("approval `{id}` is no longer pending (decided or expired)"))
        }
        Write::AddApprover { id, by, at, comment, before, after, complete } => {
            let (decided_by, decided_at) = if *complete { (Some(by.clone()), Some(*at)) } else { (None, None) };
            let n = sqlx::query(
                "UPDATE approvals SET status = $1, approved_by = $2, decided_by = COALESCE($3, decided_by), decided_at = COALESCE($4, decided_at), \
                 comment = COALESCE($5, comment) WHERE id = $6 AND status = 'pending' AND expires_at > $7 AND approved_by = $8",
            )
            .bind(if *complete { "approved" } else { "pending" })
            .bind(after)
            .bind(decided_by)
            .bind(decided_at)
            .bind(comment)
            .bind(id)
            .bind(*at)
            .bind(before)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            affected(n, Kind::Conflict, "approval_changed", format!("approval `{id}` changed meanwhile (another approver, or decided or expired)"))
        }
        Write::ConsumeApproval { id, decision_id, at } => {
            let n = sqlx::query(
                "UPDATE approvals SET status = 'consumed', consumed_by = $1, consumed_at = $2 WHERE id = $3 AND status = 'approved' AND expires_at > $2",
            )
            .bind(decision_id)
            .bind(*at)
            .bind(id)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            affected(n, Kind::Conflict, "approval_used", format!("approval `{id}` was used by another decision at the same time, or has just expired"))
        }
        Write::ReportOutcome { decision_id, outcome, at, by, detail, actual_cost_usd, expected } => {
            let n = sqlx::query(
                "UPDATE decisions SET outcome = $1, outcome_at = $2, outcome_by = $3, outcome_detail = $4, actual_cost_usd = $5 \
                 WHERE id = $6 AND COALESCE(outcome, '') = $7",
            )
            .bind(outcome)
            .bind(*at)
            .bind(by)
            .bind(detail)
            .bind(*actual_cost_usd)
            .bind(decision_id)
            .bind(expected.as_deref().unwrap_or(""))
            .execute(&mut *conn)
            .await?
            .rows_affected();
            affected(n, Kind::Conflict, "outcome_reported", format!("decision `{decision_id}` already has an outcome"))
        }
        Write::InsertSignal { id, decision_id, at, windows, verdict } => {
            sqlx::query("INSERT INTO signals (id, decision_id, at, windows, verdict) VALUES ($1, $2, $3, $4, $5)")
                .bind(id)
                .bind(decision_id)
                .bind(*at)
                .bind(windows)
                .bind(verdict)
                .execute(&mut *conn)
                .await?;
            Ok(())
        }
        Write::RequestRollback { decision_id, at } => {
            let n = sqlx::query("UPDATE decisions SET rollback_requested_at = $1 WHERE id = $2 AND rollback_requested_at IS NULL")
                .bind(*at)
                .bind(decision_id)
                .execute(&mut *conn)
                .await?
                .rows_affected();
            affected(n, Kind::Conflict, "rollback_requested", format!("a rollback of decision `{decision_id}` was requested already"))
        }
        Write::OutcomeOverdue { decision_id, at } => {
            let n = sqlx::query("UPDATE decisions SET outcome = 'unknown', outcome_at = $1 WHERE id = $2 AND outcome IS NULL")
                .bind(*at)
                .bind(decision_id)
                .execute(&mut *conn)
                .await?
                .rows_affected();
            affected(n, Kind::Conflict, "outcome_reported", format!("decision `{decision_id}` has an outcome already"))
        }
        Write::AckViolation { id, by, at, comment } => {
            let n = sqlx::query(
                "UPDATE violations SET status = 'acknowledged', acknowledged_by = $1, acknowledged_at = $2, comment = $3 WHERE id = $4 AND status = 'open'",
            )
            .bind(by)
            .bind(*at)
            .bind(comment)
            .bind(id)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            affected(n, Kind::Conflict, "violation_not_open", format!("violation `{id}` is not open (already acknowledged, or unknown)"))
        }
        Write::UpsertBaseline(b) => {
            let record = serde_json::to_string(b).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
            sqlx::query(
                "INSERT INTO baselines (team, service, class, environment, record, updated_at) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (team, service, class, environment) DO UPDATE SET record = excluded.record, updated_at = excluded.updated_at",
            )
            .bind(&b.team)
            .bind(&b.service)
            .bind(&b.class)
            .bind(&b.environment)
            .bind(record)
            .bind(b.updated_at)
            .execute(&mut *conn)
            .await?;
            Ok(())
        }
        Write::InsertViolation(v) => {
            insert_violations(conn, &[v]).await?;
            Ok(())
        }
        Write::AddEvidence(e) => {
            add_evidence(conn, e).await?;
            Ok(())
        }
        // Counted in memory per batch (`QuotaCounts`), never applied one by one.
        Write::ChargeQuotas { .. } | Write::AdjustQuota { .. } => Ok(()),
        Write::NoteTrust { agent_id, tier, at, policy } => {
            let rows = sqlx::query(TOTALS_SQL).bind(agent_id).fetch_all(&mut *conn).await?;
            let totals = rows.iter().map(total_of).collect::<std::result::Result<Vec<_>, sqlx::Error>>()?;
            let score = crate::trust::weigh(&totals.into_iter().flatten().collect::<Vec<_>>(), *at, policy, |_| true).score();
            sqlx::query("UPDATE agents SET trust_score = $1 WHERE id = $2").bind(score).bind(agent_id).execute(&mut *conn).await?;
            sqlx::query(
                "INSERT INTO trust_daily (agent_id, day, score, tier) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (agent_id, day) DO UPDATE SET score = excluded.score, tier = excluded.tier",
            )
            .bind(agent_id)
            .bind(at.div_euclid(DAY_US))
            .bind(score)
            .bind(i64::from(*tier))
            .execute(&mut *conn)
            .await?;
            Ok(())
        }
        Write::RecordTierChange(c) => {
            sqlx::query(
                "INSERT INTO tier_changes (id, agent_id, at, from_tier, to_tier, reason, text, actor, score, evidence) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(&c.id)
            .bind(&c.agent)
            .bind(crate::clock::parse_micros(&c.at).unwrap_or_default())
            .bind(i64::from(c.from))
            .bind(i64::from(c.to))
            .bind(&c.reason)
            .bind(&c.text)
            .bind(&c.actor)
            .bind(c.score)
            .bind(c.evidence.to_string())
            .execute(&mut *conn)
            .await?;
            Ok(())
        }
    })
}

const DAY_US: i64 = 86_400_000_000;

/// The quota charges and corrections of a batch, summed per count and written with one
/// statement that returns the new counts. If a count with a charge ends over its limit, the
/// writes are refused: a batch then fails and is committed change by change, and a change alone
/// rolls back with `quota_exceeded`. Exact across replicas because every writer's transaction
/// first locks the audit chain's head, so writers take turns. (The engine checks the counts
/// before it decides, so this only refuses in a race for the last units.)
#[derive(Default)]
struct QuotaCounts {
    /// Per count: what the batch adds, and the lowest limit a charge of it carried.
    deltas: HashMap<QuotaKey, (i64, Option<i64>)>,
}

/// A quota count's key: agent, quota, scope, window start.
type QuotaKey = (String, String, String, i64);

impl QuotaCounts {
    fn charge(&mut self, agent: &str, charges: &[crate::quotas::Charge]) {
        for c in charges {
            let e = self.deltas.entry((agent.to_string(), c.quota.clone(), c.scope.clone(), c.window.0)).or_insert((0, None));
            e.0 += c.amount;
            e.1 = Some(e.1.map_or(c.limit, |l| l.min(c.limit)));
        }
    }

    fn adjust(&mut self, agent: &str, quota: &str, scope: &str, start: i64, delta: i64) {
        self.deltas.entry((agent.to_string(), quota.to_string(), scope.to_string(), start)).or_insert((0, None)).0 += delta;
    }

    /// Writes the sums; the error names a count that a charge took over its limit.
    async fn flush(self, conn: &mut AnyConnection) -> std::result::Result<Result<()>, sqlx::Error> {
        let rows: Vec<_> = self.deltas.into_iter().filter(|(_, (delta, _))| *delta != 0).collect();
        for chunk in rows.chunks(ROWS_PER_INSERT) {
            let sql = multi_insert("quota_usage (agent_id, quota, scope, window_start, used)", 5, chunk.len())
                + " ON CONFLICT (agent_id, quota, scope, window_start) DO UPDATE SET used = quota_usage.used + excluded.used \
                   RETURNING agent_id, quota, scope, window_start, used";
            let mut q = sqlx::query(&sql);
            for ((agent, quota, scope, start), (delta, _)) in chunk {
                q = q.bind(agent).bind(quota).bind(scope).bind(*start).bind(*delta);
            }
            for r in q.fetch_all(&mut *conn).await? {
                let key: QuotaKey = (r.try_get("agent_id")?, r.try_get("quota")?, r.try_get("scope")?, r.try_get("window_start")?);
                let used: i64 = r.try_get("used")?;
                let limit = chunk.iter().find(|(k, _)| *k == key).and_then(|(_, (_, limit))| *limit);
                if limit.is_some_and(|l| used > l) {
                    let scope = if key.2 == "*" { String::new() } else { format!(" for {}", key.2) };
                    return Ok(Err(Error::new(Kind::Conflict, "quota_exceeded", format!("quota `{}`{scope} would pass its limit", key.1))));
                }
            }
        }
        Ok(Ok(()))
    }
}

/// Adds one piece of evidence to its running total: create the row if missing, lock it (on
/// PostgreSQL another replica may be adding to it), decay and add.
async fn add_evidence(conn: &mut AnyConnection, e: &EvidenceDelta) -> std::result::Result<(), sqlx::Error> {
    let key = (e.agent_id.as_str(), e.environment.as_str(), e.risk.as_str(), e.kind.as_str());
    sqlx::query(
        "INSERT INTO trust_totals (agent_id, environment, risk_level, kind, amount, as_of, count) VALUES ($1, $2, $3, $4, 0, $5, 0) \
         ON CONFLICT (agent_id, environment, risk_level, kind) DO NOTHING",
    )
    .bind(key.0)
    .bind(key.1)
    .bind(key.2)
    .bind(key.3)
    .bind(e.at)
    .execute(&mut *conn)
    .await?;
    let lock = if conn.backend_name() == "PostgreSQL" { " FOR UPDATE" } else { "" };
    let row =
        sqlx::query(&format!("SELECT amount, as_of, count FROM trust_totals WHERE agent_id = $1 AND environment = $2 AND risk_level = $3 AND kind = $4{lock}"))
            .bind(key.0)
            .bind(key.1)
            .bind(key.2)
            .bind(key.3)
            .fetch_one(&mut *conn)
            .await?;
    let before = crate::trust::Decayed { amount: row.try_get("amount")?, as_of: row.try_get("as_of")? };
    let after = before.add(e.delta as f64, e.at, e.half_life_us);
    let count: i64 = row.try_get("count")?;
    sqlx::query("UPDATE trust_totals SET amount = $1, as_of = $2, count = $3 WHERE agent_id = $4 AND environment = $5 AND risk_level = $6 AND kind = $7")
        .bind(after.amount)
        .bind(after.as_of)
        .bind(count + e.delta)
        .bind(key.0)
        .bind(key.1)
        .bind(key.2)
        .bind(key.3)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_row_inserts_number_every_parameter() {
        assert_eq!(multi_insert("t (a, b)", 2, 2), "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4)");
    }

    #[test]
    fn redacts_passwords_only() {
        assert_eq!(redact("postgres://u:secret@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("sqlite://./x.db"), "sqlite://./x.db");
    }
}
