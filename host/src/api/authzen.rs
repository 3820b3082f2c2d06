//! OpenID AuthZEN 1.0: `POST /access/v1/evaluation` and `POST /access/v1/evaluations`, mapped
//! onto the same pipeline as `POST /v1/decisions`.
//!
//! Mapping: `subject {type: "agent", id, properties: {on_behalf_of?}}`, `action {name: <class>}`,
//! `resource {type: "service", id: <service>, properties: {environment, …the rest of the
//! action}}`, `context {approval_id?}`. `require_approval` answers `decision: false` with the
//! verdict in `context`.

use super::auth::{Acting, Allowed};
use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{AppState, Json};
use crate::api::error::{ApiError as Error, ErrorBody, Result};
use crate::decision::{DecisionRequest, Reason, Verdict};
use crate::error::Kind;
use crate::identity::Caller;

/// Most evaluations in one batch request.
pub(super) const MAX_EVALUATIONS: usize = 100;

pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(evaluation))
        .routes(routes!(evaluations))
}

/// AuthZEN subject.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub(super) struct Subject {
    /// Must be `agent`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The agent's id.
    pub id: String,
    /// `on_behalf_of`: the human the agent acts for.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub properties: Map<String, Value>,
}

/// AuthZEN action.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub(super) struct ActionName {
    /// The action class.
    pub name: String,
}

/// AuthZEN resource.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub(super) struct Resource {
    /// Must be `service`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The service.
    pub id: String,
    /// `environment` and the rest of the action (`resources`, `change`, `estimated_cost_usd`, `reasoning`, `plan`, `labels`).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub properties: Map<String, Value>,
}

/// One AuthZEN evaluation request.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
pub(super) struct EvaluationRequest {
    /// Who.
    pub subject: Option<Subject>,
    /// Does what.
    pub action: Option<ActionName>,
    /// To what.
    pub resource: Option<Resource>,
    /// `approval_id`, optionally.
    #[schema(value_type = Option<Object>)]
    pub context: Option<Map<String, Value>>,
}

/// A batch: top-level fields are defaults for each item.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub(super) struct EvaluationsRequest {
    /// Default subject.
    pub subject: Option<Subject>,
    /// Default action.
    pub action: Option<ActionName>,
    /// Default resource.
    pub resource: Option<Resource>,
    /// Default context.
    #[schema(value_type = Option<Object>)]
    pub context: Option<Map<String, Value>>,
    /// The evaluations; absent or empty means one evaluation of the defaults.
    #[serde(default)]
    pub evaluations: Vec<EvaluationRequest>,
    /// `evaluations_semantic`: `execute_all` (default), `deny_on_first_deny` or `permit_on_first_permit`.
    #[schema(value_type = Option<Object>)]
    pub options: Option<Map<String, Value>>,
}

/// The answer to one evaluation.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub(super) struct EvaluationResponse {
    /// True only for `allow`.
    pub decision: bool,
    /// `verdict`, `decision_id`, `reasons`; or `error` for a failed item in a batch.
    #[schema(value_type = Object)]
    pub context: Value,
}

/// The answer to a batch.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub(super) struct EvaluationsResponse {
    /// One per evaluation run, in order.
    pub evaluations: Vec<EvaluationResponse>,
}

/// Renames a native field path to the AuthZEN one the client sent.
fn authzen_field(native: &str) -> String {
    match native {
        "agent" => "subject.id".into(),
        "on_behalf_of" => "subject.properties.on_behalf_of".into(),
        "approval_id" => "context.approval_id".into(),
        "action.class" => "action.name".into(),
        "action.service" => "resource.id".into(),
        other => match other.strip_prefix("action.") {
            Some(rest) => format!("resource.properties.{rest}"),
            None => other.into(),
        },
    }
}

/// Maps an AuthZEN evaluation onto a native decision request.
pub(super) fn to_decision_request(e: &EvaluationRequest) -> Result<DecisionRequest> {
    let subject = e
        .subject
        .as_ref()
        .ok_or_else(|| Error::field("subject", "required"))?;
    if subject.kind != "agent" {
        return Err(Error::field(
            "subject.type",
            format!(
                "`{}` is not supported; Warden decides for subjects of type `agent`",
                subject.kind
            ),
        ));
    }
    let action = e
        .action
        .as_ref()
        .ok_or_else(|| Error::field("action", "required"))?;
    let resource = e
        .resource
        .as_ref()
        .ok_or_else(|| Error::field("resource", "required"))?;
    if resource.kind != "service" {
        return Err(Error::field(
            "resource.type",
            format!("`{}` is not supported; use `service`", resource.kind),
        ));
    }
    let mut native_action = resource.properties.clone();
    native_action.insert("class".into(), json!(action.name));
    native_action.insert("service".into(), json!(resource.id));
    let mut native = json!({ "agent": subject.id, "action": native_action });
    if let Some(h) = subject.properties.get("on_behalf_of") {
        native["on_behalf_of"] = h.clone();
    }
    if let Some(a) = e.context.as_ref().and_then(|c| c.get("approval_id")) {
        native["approval_id"] = a.clone();
    }
    serde_path_to_error::deserialize(native).map_err(|err| {
        let path = err.path().to_string();
        let message = err.into_inner().to_string();
        let native_field = match message
            .strip_prefix("missing field `")
            .and_then(|m| m.split('`').next())
        {
            Some(missing) => format!("{path}.{missing}"),
            None => path,
        };
        Error::field(authzen_field(&native_field), message)
    })
}

async fn evaluate_one(
    state: &AppState,
    caller: &Caller,
    e: &EvaluationRequest,
) -> Result<EvaluationResponse> {
    let request = to_decision_request(e)?;
    let answer = state
        .decisions
        .decide(caller, request)
        .await
        .map_err(|err| match err.field.as_deref() {
            Some(f) => {
                let renamed = authzen_field(f);
                err.at(renamed)
            }
            None => err,
        })?;
    Ok(response(
        answer.verdict,
        &answer.decision_id,
        &answer.reasons,
    ))
}

fn response(verdict: Verdict, decision_id: &str, reasons: &[Reason]) -> EvaluationResponse {
    EvaluationResponse {
        decision: verdict == Verdict::Allow,
        context: json!({ "verdict": verdict, "decision_id": decision_id, "reasons": reasons }),
    }
}

/// AuthZEN access evaluation.
#[utoipa::path(post, path = "/access/v1/evaluation", tag = "authzen", request_body = EvaluationRequest, security(("bearer" = [])),
    responses((status = 200, body = EvaluationResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn evaluation(
    State(state): State<AppState>,
    caller: Allowed<Acting>,
    Json(e): Json<EvaluationRequest>,
) -> Result<axum::Json<EvaluationResponse>> {
    Ok(axum::Json(evaluate_one(&state, &caller, &e).await?))
}

#[derive(PartialEq)]
enum Semantic {
    ExecuteAll,
    DenyOnFirstDeny,
    PermitOnFirstPermit,
}

/// AuthZEN access evaluations (batch). A failed item answers `decision: false` with
/// `context.error`; authentication and store failures fail the whole request.
#[utoipa::path(post, path = "/access/v1/evaluations", tag = "authzen", request_body = EvaluationsRequest, security(("bearer" = [])),
    responses((status = 200, body = EvaluationsResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 503, body = ErrorBody)))]
async fn evaluations(
    State(state): State<AppState>,
    caller: Allowed<Acting>,
    Json(batch): Json<EvaluationsRequest>,
) -> Result<axum::response::Response> {
    use axum::response::IntoResponse as _;
    let defaults = EvaluationRequest {
        subject: batch.subject,
        action: batch.action,
        resource: batch.resource,
        context: batch.context,
    };
    if batch.evaluations.is_empty() {
        return Ok(axum::Json(evaluate_one(&state, &caller, &defaults).await?).into_response());
    }
    if batch.evaluations.len() > MAX_EVALUATIONS {
        return Err(Error::field(
            "evaluations",
            format!(
                "{} evaluations, over the limit of {MAX_EVALUATIONS}",
                batch.evaluations.len()
            ),
        ));
    }
    let semantic = match batch
        .options
        .as_ref()
        .and_then(|o| o.get("evaluations_semantic"))
    {
        None => Semantic::ExecuteAll,
        Some(v) => match v.as_str() {
            Some("execute_all") => Semantic::ExecuteAll,
            Some("deny_on_first_deny") => Semantic::DenyOnFirstDeny,
            Some("permit_on_first_permit") => Semantic::PermitOnFirstPermit,
            _ => {
                return Err(Error::field(
                    "options.evaluations_semantic",
                    "must be execute_all, deny_on_first_deny or permit_on_first_permit",
                ));
            }
        },
    };
    let mut out = Vec::with_capacity(batch.evaluations.len());
    for (i, item) in batch.evaluations.iter().enumerate() {
        let merged = EvaluationRequest {
            subject: item.subject.clone().or_else(|| defaults.subject.clone()),
            action: item.action.clone().or_else(|| defaults.action.clone()),
            resource: item.resource.clone().or_else(|| defaults.resource.clone()),
            context: item.context.clone().or_else(|| defaults.context.clone()),
        };
        let result = match evaluate_one(&state, &caller, &merged).await {
            Ok(r) => r,
            Err(e)
                if matches!(
                    e.kind,
                    Kind::Unauthorized | Kind::Unavailable | Kind::Internal
                ) =>
            {
                return Err(e);
            }
            Err(e) => EvaluationResponse {
                decision: false,
                context: json!({ "error": { "status": super::error::status(e.kind).as_u16(), "code": e.code, "message": e.message, "field": e.field.as_ref().map(|f| format!("evaluations[{i}].{f}")) } }),
            },
        };
        let stop = (semantic == Semantic::DenyOnFirstDeny && !result.decision)
            || (semantic == Semantic::PermitOnFirstPermit && result.decision);
        out.push(result);
        if stop {
            break;
        }
    }
    Ok(axum::Json(EvaluationsResponse { evaluations: out }).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(v: Value) -> EvaluationRequest {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn maps_onto_the_native_request() {
        let r = to_decision_request(&eval(json!({
            "subject": {"type": "agent", "id": "bot", "properties": {"on_behalf_of": "alice"}},
            "action": {"name": "deploy"},
            "resource": {"type": "service", "id": "payments", "properties": {"environment": "production", "resources": ["svc/payments"]}},
            "context": {"approval_id": "ap1"}
        })))
        .unwrap();
        assert_eq!(
            (
                r.agent.as_deref(),
                r.on_behalf_of.as_deref(),
                r.approval_id.as_deref()
            ),
            (Some("bot"), Some("alice"), Some("ap1"))
        );
        assert_eq!(
            (
                r.action.class.as_str(),
                r.action.service.as_str(),
                r.action.environment.as_str()
            ),
            ("deploy", "payments", "production")
        );
        assert_eq!(r.action.resources, vec!["svc/payments"]);
    }

    #[test]
    fn errors_name_authzen_fields() {
        let base = json!({"subject": {"type": "agent", "id": "bot"}, "action": {"name": "deploy"}, "resource": {"type": "service", "id": "p", "properties": {}}});
        assert_eq!(
            to_decision_request(&eval(base.clone()))
                .unwrap_err()
                .field
                .as_deref(),
            Some("resource.properties.environment")
        );
        let mut user = base.clone();
        user["subject"]["type"] = json!("user");
        assert_eq!(
            to_decision_request(&eval(user))
                .unwrap_err()
                .field
                .as_deref(),
            Some("subject.type")
        );
        let mut cost = base;
        cost["resource"]["properties"] =
            json!({"environment": "dev", "estimated_cost_usd": "lots"});
        assert_eq!(
            to_decision_request(&eval(cost))
                .unwrap_err()
                .field
                .as_deref(),
            Some("resource.properties.estimated_cost_usd")
        );
        assert_eq!(authzen_field("action.class"), "action.name");
    }
}
