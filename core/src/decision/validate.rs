//! Stages 1 and 2: whose request it is, and whether the action is well formed and within limits.

use super::{Action, DecisionRequest};
use crate::error::{Error, Result};
use crate::identity::{Caller, Role};
use crate::policy::CompiledPolicy;

/// Which agent a request is for, given who calls.
pub fn resolve_agent(caller: &Caller, request: &DecisionRequest) -> Result<String> {
    match caller.role {
        Role::Agent => {
            let own = caller
                .subject
                .clone()
                .ok_or_else(|| Error::internal("agent token without a subject"))?;
            match &request.agent {
                Some(named) if *named != own => Err(Error::forbidden(
                    "acting_for_another_agent",
                    format!("agent `{own}` may not ask for agent `{named}`"),
                )
                .at("agent")),
                _ => Ok(own),
            }
        }
        Role::Service | Role::Admin => request.agent.clone().ok_or_else(|| {
            Error::field("agent", "required when the caller is not the agent itself")
        }),
        Role::Approver => Err(Error::forbidden(
            "forbidden_role",
            "approver tokens may not ask for decisions",
        )),
    }
}

/// The request's names of other things (the agent, the human, the approval) are bounded: an
/// id past these lengths exists nowhere, and it would be copied into what is stored.
pub fn validate_references(request: &DecisionRequest) -> Result<()> {
    for (field, value) in [
        ("agent", &request.agent),
        ("on_behalf_of", &request.on_behalf_of),
    ] {
        if let Some(v) = value {
            check_len(field, v, 128)?;
        }
    }
    if let Some(id) = &request.approval_id {
        check_name("approval_id", id, 128)?;
    }
    Ok(())
}

/// A 400 naming `field` when `value` is over `max` bytes.
pub fn check_len(field: &str, value: &str, max: usize) -> Result<()> {
    if value.len() > max {
        Err(Error::field(
            field,
            format!("is {} bytes, over the limit of {max}", value.len()),
        ))
    } else {
        Ok(())
    }
}

/// Every item of a list within `max` bytes; the error names the first item that is not.
pub(crate) fn check_each(field: &str, values: &[String], max: usize) -> Result<()> {
    match values.iter().enumerate().find(|(_, v)| v.len() > max) {
        Some((i, v)) => check_len(&format!("{field}[{i}]"), v, max),
        None => Ok(()),
    }
}

pub(crate) fn check_name(field: &str, value: &str, max: usize) -> Result<()> {
    if value.is_empty() {
        return Err(Error::field(field, "must not be empty"));
    }
    check_len(field, value, max)?;
    if !value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./:".contains(c))
    {
        return Err(Error::field(
            field,
            format!("`{value}` may only contain letters, digits and - _ . / :"),
        ));
    }
    Ok(())
}

/// How deep `action.plan` may nest (objects and arrays).
pub(crate) const MAX_PLAN_DEPTH: usize = 32;

/// How deep a JSON value nests: 0 for a scalar, 1 for a flat array or object. Iterative, so a
/// hostile value cannot exhaust the stack.
fn nesting(value: &serde_json::Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(value, 0usize)];
    while let Some((v, depth)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &serde_json::Value>> = match v {
            serde_json::Value::Array(items) => Box::new(items.iter()),
            serde_json::Value::Object(map) => Box::new(map.values()),
            _ => continue,
        };
        deepest = deepest.max(depth + 1);
        stack.extend(children.map(|c| (c, depth + 1)));
    }
    deepest
}

/// Stage 2: checks the action against size limits and the policy's known classes.
pub fn validate(policy: &CompiledPolicy, action: &Action) -> Result<()> {
    if !policy.knows_class(&action.class) {
        let known: Vec<&str> = policy.policy.risk.keys().map(String::as_str).collect();
        return Err(Error::field(
            "action.class",
            format!(
                "unknown action class `{}`; known: {}",
                action.class,
                known.join(", ")
            ),
        ));
    }
    check_name("action.environment", &action.environment, 64)?;
    check_name("action.service", &action.service, 128)?;
    if action.resources.len() > 256 {
        return Err(Error::field(
            "action.resources",
            format!(
                "{} resources, over the limit of 256",
                action.resources.len()
            ),
        ));
    }
    check_each("action.resources", &action.resources, 512)?;
    if let Some(change) = &action.change {
        if change.paths.len() > 10_000 {
            return Err(Error::field(
                "action.change.paths",
                format!("{} paths, over the limit of 10000", change.paths.len()),
            ));
        }
        check_each("action.change.paths", &change.paths, 1024)?;
    }
    if let Some(cost) = action.estimated_cost_usd
        && !(cost.is_finite() && (0.0..=1e9).contains(&cost))
    {
        return Err(Error::field(
            "action.estimated_cost_usd",
            "must be a number from 0 to 1e9",
        ));
    }
    if let Some(r) = &action.reasoning {
        check_len("action.reasoning", r, 16 * 1024)?;
    }
    if let Some(plan) = &action.plan {
        check_len("action.plan", &plan.to_string(), 64 * 1024)?;
        // A stored approval nests the plan in its summary, and every reader of approvals parses
        // it back under serde_json's recursion limit (128): a deeper plan would be accepted and
        // then make the approvals list, the inbox and the expiry sweeper unreadable (#19).
        let depth = nesting(plan);
        if depth > MAX_PLAN_DEPTH {
            return Err(Error::field(
                "action.plan",
                format!("nests {depth} levels deep, over the limit of {MAX_PLAN_DEPTH}"),
            ));
        }
    }
    if action.labels.len() > 64 {
        return Err(Error::field("action.labels", "at most 64 labels"));
    }
    // The field's name is formatted only for the label that is too long.
    if let Some((k, v)) = action
        .labels
        .iter()
        .find(|(k, v)| k.len() > 64 || v.len() > 256)
    {
        let field = format!("action.labels.{k}");
        check_len(&field, k, 64)?;
        check_len(&field, v, 256)?;
    }
    Ok(())
}

/// The risk level an approval was given at.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;

    fn policy() -> CompiledPolicy {
        CompiledPolicy::new(Policy::default()).unwrap()
    }

    fn caller() -> Caller {
        Caller {
            token_id: "tok_1".into(),
            role: Role::Service,
            subject: None,
        }
    }

    fn request(class: &str, env: &str) -> DecisionRequest {
        let json = serde_json::json!({"agent": "a", "action": {"class": class, "environment": env, "service": "payments"}});
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn a_plan_nests_at_most_so_deep() {
        let p = policy();
        let nested = |levels: usize| {
            let mut v = serde_json::json!("step");
            for _ in 0..levels {
                v = serde_json::json!([v]);
            }
            v
        };
        assert_eq!(nesting(&serde_json::json!("flat")), 0);
        assert_eq!(nesting(&serde_json::json!({"steps": ["a", {"b": 1}]})), 3);
        let mut a = request("deploy", "prod").action;
        a.plan = Some(nested(MAX_PLAN_DEPTH));
        assert!(validate(&p, &a).is_ok());
        a.plan = Some(nested(MAX_PLAN_DEPTH + 1));
        let e = validate(&p, &a).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("action.plan"));
        assert!(e.message.contains("33 levels"), "{}", e.message);
    }

    #[test]
    fn validation_names_the_field() {
        let p = policy();
        let mut a = request("deploy", "prod").action;
        a.class = "teleport".into();
        assert_eq!(
            validate(&p, &a).unwrap_err().field.as_deref(),
            Some("action.class")
        );
        let mut a = request("deploy", "prod").action;
        a.resources = vec!["x".repeat(600)];
        assert_eq!(
            validate(&p, &a).unwrap_err().field.as_deref(),
            Some("action.resources[0]")
        );
        let mut a = request("deploy", "prod").action;
        a.estimated_cost_usd = Some(-1.0);
        assert_eq!(
            validate(&p, &a).unwrap_err().field.as_deref(),
            Some("action.estimated_cost_usd")
        );
        let mut a = request("deploy", "prod").action;
        a.service = "pay ments".into();
        assert_eq!(
            validate(&p, &a).unwrap_err().field.as_deref(),
            Some("action.service")
        );
    }

    #[test]
    fn agents_may_only_ask_for_themselves() {
        let me = Caller {
            token_id: "t".into(),
            role: Role::Agent,
            subject: Some("me".into()),
        };
        let mut r = request("read", "dev");
        assert_eq!(
            resolve_agent(&me, &r).unwrap_err().code,
            "acting_for_another_agent"
        );
        r.agent = None;
        assert_eq!(resolve_agent(&me, &r).unwrap(), "me");
        assert_eq!(
            resolve_agent(&caller(), &r).unwrap_err().field.as_deref(),
            Some("agent")
        );
    }
}
