//! `GET /v1/audit`, `/v1/audit/summary`, `/v1/audit/verify`: the audit trail, filtered,
//! counted and checked.

use super::auth::{Admins, Allowed, Staff};
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{AppState, Query};
use crate::api::error::{ApiError as Error, ErrorBody, Result};
use crate::clock::parse_moment;
use crate::error::Kind;
use crate::identity::Caller;
use crate::services::audit as service;
use crate::services::checkpoints;
use crate::store::{AuditFilter, AuditGroup, AuditOrder};

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_audit))
        .routes(routes!(audit_summary))
        .routes(routes!(verify_audit))
        .routes(routes!(latest_checkpoint, make_checkpoint))
        .routes(routes!(inclusion_proof))
        .routes(routes!(consistency_proof))
}

/// The parameters of every audit read (one struct, so unknown ones are refused).
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct Filters {
    /// `agent`, `human`, `service` or `admin`.
    actor_kind: Option<String>,
    /// Records concerning this agent.
    agent: Option<String>,
    /// Records naming this human: acting, acted for, authorising or approving.
    human: Option<String>,
    /// The agent's owning team.
    team: Option<String>,
    /// Environment of the action.
    environment: Option<String>,
    /// Service acted on.
    service: Option<String>,
    /// Action class.
    action_class: Option<String>,
    /// A decision's verdict: `allow`, `require_approval` or `deny`.
    verdict: Option<String>,
    /// An outcome: `succeeded`, `failed`, `rolled_back` or `unknown`.
    outcome: Option<String>,
    /// Risk level: `low`, `medium`, `high` or `critical`.
    risk: Option<String>,
    /// Event type (`decision`, `approval.approved`, `outcome.reported`, …).
    event_type: Option<String>,
    /// At or after this time (RFC 3339, or a span before now: `30d`, `12h`, `15m`).
    since: Option<String>,
    /// Before this time (RFC 3339, or a span before now).
    until: Option<String>,
    /// Case-insensitive text in the agent's reasoning or plan.
    q: Option<String>,
    /// Pages: `oldest` first (the chain's order, the default) or `newest` first.
    order: Option<String>,
    /// Pages: the previous page's `next_cursor` (with the same filters and order).
    cursor: Option<String>,
    /// Pages: page size, 1–1000 (default 100).
    limit: Option<i64>,
    /// Summaries: `agent`, `day` (the default), `class`, `environment`, `verdict` or `event_type`.
    group_by: Option<String>,
}

/// An optional time query parameter (RFC 3339, or a span before now: `30d`, `12h`, `15m`) as
/// Unix microseconds; 400 naming the field if malformed.
pub(super) fn time(field: &str, value: &Option<String>, now: i64) -> Result<Option<i64>> {
    value
        .as_deref()
        .map(|v| {
            parse_moment(v, now).ok_or_else(|| {
                Error::field(
                    field,
                    format!("`{v}` is neither an RFC 3339 time nor a span such as 30d, 12h or 15m"),
                )
            })
        })
        .transpose()
}

/// The store filter for `GET /v1/audit`'s filter parameters, checked as that endpoint checks
/// them: an offline export reads the store directly, and must refuse what the API refuses
/// rather than sign an empty file for `--risk High`.
pub(crate) fn filter_of(params: Vec<(&str, String)>, now: i64) -> Result<AuditFilter> {
    let params: serde_json::Map<String, serde_json::Value> = params
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.into()))
        .collect();
    let filters: Filters = serde_json::from_value(params.into())
        .map_err(|e| Error::new(Kind::BadRequest, "invalid_filter", e.to_string()))?;
    filters.parse(now)
}

impl Filters {
    /// Checks every value; a bad one is a 400 naming its parameter.
    fn parse(self, now: i64) -> Result<AuditFilter> {
        use super::one_of;
        one_of(
            "actor_kind",
            &self.actor_kind,
            &["agent", "human", "service", "admin"],
        )?;
        one_of(
            "verdict",
            &self.verdict,
            &["allow", "require_approval", "deny"],
        )?;
        one_of(
            "outcome",
            &self.outcome,
            &["succeeded", "failed", "rolled_back", "unknown"],
        )?;
        one_of("risk", &self.risk, &["low", "medium", "high", "critical"])?;
        if let Some(q) = &self.q {
            crate::decision::check_len("q", q, 200)?;
        }
        Ok(AuditFilter {
            actor_kind: self.actor_kind,
            agent: self.agent,
            human: self.human,
            team: self.team,
            environment: self.environment,
            service: self.service,
            action_class: self.action_class,
            verdict: self.verdict,
            outcome: self.outcome,
            risk: self.risk,
            event_type: self.event_type,
            since: time("since", &self.since, now)?,
            until: time("until", &self.until, now)?,
            text: self.q.filter(|q| !q.is_empty()),
            scope: Default::default(),
            ..Default::default()
        })
    }
}

/// A page of audit records.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(super) struct AuditPage {
    /// Records, each with its place in the chain (`seq`, `prev_hash`, `hash`).
    pub records: Vec<serde_json::Value>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Query the audit trail. Admins read everything, approvers what names them and what is
/// pending, an agent its own records. The read is itself recorded (`audit.read`).
#[utoipa::path(get, path = "/v1/audit", tag = "audit", params(Filters), security(("bearer" = [])),
    responses((status = 200, body = AuditPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn list_audit(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<Filters>,
) -> Result<axum::Json<AuditPage>> {
    super::one_of("order", &q.order, &["oldest", "newest"])?;
    if q.group_by.is_some() {
        return Err(Error::field(
            "group_by",
            "only GET /v1/audit/summary groups",
        ));
    }
    let order = match q.order.as_deref() {
        Some("newest") => AuditOrder::Newest,
        _ => AuditOrder::Oldest,
    };
    let (cursor, limit) = (q.cursor.clone(), super::page_limit(q.limit)?);
    let times_as_given = [q.since.clone(), q.until.clone()];
    let query = service::PageQuery {
        filter: q.parse(state.clock.now_micros())?,
        order,
        cursor,
        limit,
        times_as_given,
    };
    let page = service::page(&state.store, &state.clock, &caller, query).await?;
    let records = page
        .records
        .into_iter()
        .map(|e| serde_json::to_value(e).map_err(Error::internal))
        .collect::<Result<_>>()?;
    Ok(axum::Json(AuditPage {
        records,
        next_cursor: page.next_cursor,
    }))
}

/// Counts of matching records by one field.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(super) struct AuditSummary {
    /// What the counts are grouped by.
    pub group_by: String,
    /// Every matching record.
    pub total: i64,
    /// One row per value (`null` where records have none), largest first; by date for `day`.
    pub groups: Vec<SummaryGroup>,
}

/// One group's count.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(super) struct SummaryGroup {
    /// The value.
    pub key: Option<String>,
    /// Records with it.
    pub count: i64,
}

/// Counts of audit records grouped by agent, day, class, environment, verdict or event type
/// (for dashboards), with the same filters and scopes as `GET /v1/audit`.
#[utoipa::path(get, path = "/v1/audit/summary", tag = "audit", params(Filters), security(("bearer" = [])),
    responses((status = 200, body = AuditSummary), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn audit_summary(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<Filters>,
) -> Result<axum::Json<AuditSummary>> {
    let name = q.group_by.clone().unwrap_or_else(|| "day".into());
    let group = match name.as_str() {
        "agent" => AuditGroup::Agent,
        "day" => AuditGroup::Day,
        "class" => AuditGroup::Class,
        "environment" => AuditGroup::Environment,
        "verdict" => AuditGroup::Verdict,
        "event_type" => AuditGroup::EventType,
        other => {
            return Err(Error::field(
                "group_by",
                format!(
                    "`{other}` is not one of agent, day, class, environment, verdict, event_type"
                ),
            ));
        }
    };
    for (field, given) in [
        ("order", q.order.is_some()),
        ("cursor", q.cursor.is_some()),
        ("limit", q.limit.is_some()),
    ] {
        if given {
            return Err(Error::field(field, "a summary has no pages"));
        }
    }
    let filter = q.parse(state.clock.now_micros())?;
    let counts =
        service::summary(&state.store, &state.clock, &caller, filter, group, &name).await?;
    Ok(axum::Json(AuditSummary {
        group_by: name,
        total: counts.iter().map(|(_, n)| n).sum(),
        groups: counts
            .into_iter()
            .map(|(key, count)| SummaryGroup { key, count })
            .collect(),
    }))
}

/// What verifying the chain found.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(super) struct Verification {
    /// Whether every stored record is where it was appended, as it was appended.
    pub intact: bool,
    /// The first record still stored (records before it were archived and pruned).
    pub from: i64,
    /// The last record checked.
    pub through: i64,
    /// The first break: the record and how (`edited`, `deleted`, `inserted`, `reordered`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broken: Option<BreakBody>,
}

/// Where and how the chain is broken.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(super) struct BreakBody {
    /// The record at fault.
    pub seq: i64,
    /// `edited`, `rewritten`, `columns_edited`, `deleted`, `inserted`, `reordered`,
    /// `truncated`, `appended`, `unreadable` or `checkpoint_mismatch`.
    pub tamper: String,
    /// What the verifier saw.
    pub detail: String,
}

/// Verify the stored chain end to end, a chunk at a time (admins).
#[utoipa::path(get, path = "/v1/audit/verify", tag = "audit", security(("bearer" = [])),
    responses((status = 200, body = Verification), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn verify_audit(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<axum::Json<Verification>> {
    let v = service::verify(&state.store, &state.clock, &caller, &state.audit_key).await?;
    Ok(axum::Json(Verification {
        intact: v.broken.is_none(),
        from: v.from,
        through: v.through,
        broken: v.broken.map(|b| BreakBody {
            seq: b.seq,
            tamper: b.tamper.as_str().to_string(),
            detail: b.detail,
        }),
    }))
}

/// A signed checkpoint of the audit trail's Merkle tree.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(super) struct CheckpointBody {
    /// Records covered.
    pub size: i64,
    /// The tree's root (hex).
    pub root: String,
    /// The chain hash of the last record covered.
    pub chain_hash: String,
    /// When it was signed (RFC 3339).
    pub at: String,
    /// The signed note (C2SP tlog-checkpoint in a signed note, Ed25519).
    pub note: String,
    /// The public key that signs the checkpoints (note verifier key format).
    pub public_key: String,
}

fn checkpoint_body(state: &AppState, cp: crate::store::StoredCheckpoint) -> CheckpointBody {
    CheckpointBody {
        size: cp.size,
        root: crate::audit::merkle::to_hex(&cp.root),
        chain_hash: cp.chain_hash,
        at: crate::clock::format_micros(cp.at),
        note: cp.note,
        public_key: state.signer.vkey(),
    }
}

/// The newest signed checkpoint and the public key (admins and approvers).
#[utoipa::path(get, path = "/v1/audit/checkpoints", tag = "audit", security(("bearer" = [])),
    responses((status = 200, body = CheckpointBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn latest_checkpoint(
    State(state): State<AppState>,
    _: Allowed<Staff>,
) -> Result<axum::Json<CheckpointBody>> {
    let cp = checkpoints::latest(&state.store).await?;
    Ok(axum::Json(checkpoint_body(&state, cp)))
}

/// Sign a checkpoint of everything appended so far (admins); returns the newest checkpoint.
#[utoipa::path(post, path = "/v1/audit/checkpoints", tag = "audit", security(("bearer" = [])),
    responses((status = 200, body = CheckpointBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn make_checkpoint(
    State(state): State<AppState>,
    _: Allowed<Admins>,
) -> Result<axum::Json<CheckpointBody>> {
    let cp = checkpoints::checkpoint(&state.store, &state.clock, &state.signer)
        .await
        .map_err(crate::error::Error::from)?
        .ok_or_else(|| Error::not_found("no_checkpoint", "the audit trail is empty"))?;
    Ok(axum::Json(checkpoint_body(&state, cp)))
}

/// A Merkle proof against a signed checkpoint.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub(super) struct ProofBody {
    /// The checkpoint the proof is against.
    pub checkpoint: CheckpointBody,
    /// The proof's hashes (hex), in RFC 9162 order.
    pub proof: Vec<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct InclusionParams {
    /// The record.
    seq: i64,
    /// The checkpoint's size (default: the newest).
    size: Option<i64>,
}

/// The inclusion proof of one record in a signed checkpoint (admins and approvers): leaf =
/// SHA-256(0x00 ‖ the record's chain hash), RFC 9162 §2.1.3.
#[utoipa::path(get, path = "/v1/audit/proofs/inclusion", tag = "audit", params(InclusionParams), security(("bearer" = [])),
    responses((status = 200, body = ProofBody), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn inclusion_proof(
    State(state): State<AppState>,
    _: Allowed<Staff>,
    Query(q): Query<InclusionParams>,
) -> Result<axum::Json<ProofBody>> {
    let p = checkpoints::inclusion(&state.store, q.seq, q.size).await?;
    Ok(axum::Json(ProofBody {
        proof: p.proof.iter().map(crate::audit::merkle::to_hex).collect(),
        checkpoint: checkpoint_body(&state, p.checkpoint),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
struct ConsistencyParams {
    /// The earlier checkpoint's size.
    old: i64,
    /// The later checkpoint's size (default: the newest).
    new: Option<i64>,
}

/// The consistency proof between two signed checkpoints (admins and approvers): the later
/// tree only appended to the earlier one, RFC 9162 §2.1.4.
#[utoipa::path(get, path = "/v1/audit/proofs/consistency", tag = "audit", params(ConsistencyParams), security(("bearer" = [])),
    responses((status = 200, body = ProofBody), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn consistency_proof(
    State(state): State<AppState>,
    _: Allowed<Staff>,
    Query(q): Query<ConsistencyParams>,
) -> Result<axum::Json<ProofBody>> {
    let p = checkpoints::consistency(&state.store, q.old, q.new).await?;
    Ok(axum::Json(ProofBody {
        proof: p.proof.iter().map(crate::audit::merkle::to_hex).collect(),
        checkpoint: checkpoint_body(&state, p.checkpoint),
    }))
}
