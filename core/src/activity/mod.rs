//! Activity: what humans and agents did on the platform outside Warden (a deploy from a
//! pipeline, a merged pull request, a `kubectl apply`), the raw material of human baselines and
//! drift (DESIGN.md, "Human baselines, anomaly and drift").
//!
//! An [`ActivityEvent`] arrives from `POST /v1/events`, a bulk import, or one of the platform
//! receivers ([`github`], [`kubernetes`]), each of which maps the platform's own payloads to
//! events here, without I/O. Every event keeps its source and the source's id for it, so that
//! a redelivered webhook or a re-imported file is stored once.

pub mod github;
pub mod kubernetes;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::clock::{format_micros, parse_micros};
use crate::decision::validate::{check_each, check_len, check_name};
use crate::error::{Error, Result};
use crate::records::{OutcomeStatus, wire_names};

/// Who did it: the line the baselines draw (humans are the reference; agents are compared).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    /// A person.
    Human,
    /// Software acting on its own: a Warden agent, a bot account, a service account.
    Agent,
}

wire_names!(ActorKind { Human => "human", Agent => "agent" });

/// One thing done on the platform, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ActivityEvent {
    /// Where it came from (`github`, `kubernetes`, `api`, a pipeline's name).
    pub source: String,
    /// The source's id for it (a delivery id, an audit id); unique per source.
    pub source_id: String,
    /// Human or agent.
    pub actor_kind: ActorKind,
    /// Who: a login, a user name, or a Warden agent id.
    pub actor_id: String,
    /// The actor's team.
    pub team: String,
    /// Action class (a class the policy knows).
    pub class: String,
    /// Environment (case-insensitive; kept in lower case).
    #[serde(deserialize_with = "crate::policy::environment_name")]
    pub environment: String,
    /// Service.
    pub service: String,
    /// What it touched (a deployment, a table, a branch).
    #[serde(default)]
    pub targets: Vec<String>,
    /// Lines added plus deleted, where the source knows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change_size: Option<u32>,
    /// When it happened, Unix microseconds.
    pub at: i64,
    /// How it ended, where the source knows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<OutcomeStatus>,
    /// The Warden decision that allowed it, when the platform carries one (confirms or
    /// contradicts the agent's own outcome report).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision_id: Option<String>,
}

/// One event as `POST /v1/events` and `warden events import` take it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventInput {
    /// Where it came from; 1–64 of letters, digits and `- _ . / :`.
    pub source: String,
    /// The source's id for it; (source, source_id) is stored once.
    pub source_id: String,
    /// `human` or `agent`.
    pub actor_kind: ActorKind,
    /// Who did it.
    pub actor_id: String,
    /// The actor's team.
    pub team: String,
    /// Action class, one the policy knows (`deploy`, `db_migration`, …).
    pub class: String,
    /// Environment.
    pub environment: String,
    /// Service.
    pub service: String,
    /// What it touched; at most 256.
    #[serde(default)]
    pub targets: Vec<String>,
    /// Lines added plus deleted.
    #[serde(default)]
    pub change_size: Option<u32>,
    /// When it happened (RFC 3339).
    pub time: String,
    /// `succeeded`, `failed` or `rolled_back`.
    #[serde(default)]
    pub outcome: Option<OutcomeStatus>,
    /// The Warden decision that allowed it.
    #[serde(default)]
    pub decision_id: Option<String>,
}

impl EventInput {
    /// Every field's name, so that an unknown field can be named before serde sees it.
    pub const FIELDS: &'static [&'static str] = &[
        "source",
        "source_id",
        "actor_kind",
        "actor_id",
        "team",
        "class",
        "environment",
        "service",
        "targets",
        "change_size",
        "time",
        "outcome",
        "decision_id",
    ];
}

/// How far ahead of the receiver's clock an event may be dated (clocks drift).
pub const MAX_FUTURE_US: i64 = 5 * 60 * 1_000_000;

/// Checks one event and turns it into its stored form. `known_class` says whether the policy
/// knows a class; `now` bounds how far in the future the event may be.
pub fn validate(
    input: EventInput,
    known_class: impl Fn(&str) -> bool,
    now: i64,
) -> Result<ActivityEvent> {
    check_name("source", &input.source, 64)?;
    if input.source_id.is_empty() {
        return Err(Error::field("source_id", "must not be empty"));
    }
    check_len("source_id", &input.source_id, 256)?;
    if input.actor_id.is_empty() {
        return Err(Error::field("actor_id", "must not be empty"));
    }
    check_len("actor_id", &input.actor_id, 256)?;
    check_name("team", &input.team, 128)?;
    if !known_class(&input.class) {
        return Err(Error::field(
            "class",
            format!("unknown action class `{}`", input.class),
        ));
    }
    check_name("environment", &input.environment, 64)?;
    check_name("service", &input.service, 128)?;
    if input.targets.len() > 256 {
        return Err(Error::field(
            "targets",
            format!("{} targets, over the limit of 256", input.targets.len()),
        ));
    }
    check_each("targets", &input.targets, 512)?;
    let at = parse_micros(&input.time)
        .ok_or_else(|| Error::field("time", format!("`{}` is not an RFC 3339 time", input.time)))?;
    if at > now + MAX_FUTURE_US {
        return Err(Error::field(
            "time",
            format!("{} is in the future", input.time),
        ));
    }
    if input.outcome == Some(OutcomeStatus::Unknown) {
        return Err(Error::field(
            "outcome",
            "must be succeeded, failed or rolled_back",
        ));
    }
    if let Some(id) = &input.decision_id {
        check_name("decision_id", id, 64)?;
    }
    Ok(ActivityEvent {
        source: input.source,
        source_id: input.source_id,
        actor_kind: input.actor_kind,
        actor_id: input.actor_id,
        team: input.team,
        class: input.class,
        environment: input.environment,
        service: input.service,
        targets: input.targets,
        change_size: input.change_size,
        at,
        outcome: input.outcome,
        decision_id: input.decision_id,
    })
}

/// Parses one event from a JSON value, naming an unknown or malformed field.
pub fn parse_json(value: serde_json::Value) -> Result<EventInput> {
    let serde_json::Value::Object(map) = &value else {
        return Err(Error::new(
            crate::error::Kind::BadRequest,
            "invalid_event",
            "an event must be a JSON object",
        ));
    };
    if let Some(unknown) = map
        .keys()
        .find(|k| !EventInput::FIELDS.contains(&k.as_str()))
    {
        return Err(Error::field(
            unknown.clone(),
            format!("unknown field; known: {}", EventInput::FIELDS.join(", ")),
        ));
    }
    for required in [
        "source",
        "source_id",
        "actor_kind",
        "actor_id",
        "team",
        "class",
        "environment",
        "service",
        "time",
    ] {
        if !map.contains_key(required) {
            return Err(Error::field(required, "missing"));
        }
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let field = e.path().to_string();
        Error::field(field, e.inner().to_string())
    })
}

impl ActivityEvent {
    /// The event as it was given (the inverse of [`validate`]).
    pub fn to_input(&self) -> EventInput {
        EventInput {
            source: self.source.clone(),
            source_id: self.source_id.clone(),
            actor_kind: self.actor_kind,
            actor_id: self.actor_id.clone(),
            team: self.team.clone(),
            class: self.class.clone(),
            environment: self.environment.clone(),
            service: self.service.clone(),
            targets: self.targets.clone(),
            change_size: self.change_size,
            time: format_micros(self.at),
            outcome: self.outcome,
            decision_id: self.decision_id.clone(),
        }
    }
}

/// One event turned away from a batch: its index (or line) and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Rejected {
    /// Position in the batch, from 0 (for an import: the line, from 1).
    pub index: usize,
    /// Stable code.
    pub code: String,
    /// The field at fault.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl Rejected {
    /// The rejection of the event at `index` for `error`.
    pub fn new(index: usize, error: Error) -> Rejected {
        Rejected {
            index,
            code: error.code.to_string(),
            field: error.field,
            message: error.message,
        }
    }
}

/// Damaged copies of a payload, for the mappers' no-panic tests: not an object at all, and each
/// top-level field removed or replaced by null, a number, an empty string or an empty object.
#[cfg(test)]
pub(crate) fn damaged(value: &serde_json::Value) -> Vec<serde_json::Value> {
    use serde_json::{Value, json};
    let mut out = vec![Value::Null, json!([]), json!("x"), json!(1)];
    let Value::Object(map) = value else {
        return out;
    };
    for key in map.keys() {
        for replacement in [
            None,
            Some(Value::Null),
            Some(json!(17)),
            Some(json!("")),
            Some(json!({})),
        ] {
            let mut copy = value.clone();
            match replacement {
                None => {
                    if let Some(m) = copy.as_object_mut() {
                        m.remove(key);
                    }
                }
                Some(r) => copy[key] = r,
            }
            out.push(copy);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_780_000_000_000_000;

    fn event() -> serde_json::Value {
        json!({
            "source": "pipeline", "source_id": "run-1", "actor_kind": "human", "actor_id": "alice",
            "team": "payments", "class": "deploy", "environment": "production", "service": "payments",
            "targets": ["deployment/payments"], "change_size": 40, "time": "2026-05-28T10:00:00Z"
        })
    }

    fn check(v: serde_json::Value) -> Result<ActivityEvent> {
        validate(parse_json(v)?, |c| c == "deploy", NOW)
    }

    #[test]
    fn a_valid_event_round_trips() {
        let e = check(event()).unwrap();
        assert_eq!(e.actor_kind, ActorKind::Human);
        assert_eq!(e.at, parse_micros("2026-05-28T10:00:00Z").unwrap());
        let again = validate(e.to_input(), |_| true, NOW).unwrap();
        assert_eq!(again, e);
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            ("bogus", json!(1), "bogus"),
            ("actor_kind", json!("robot"), "actor_kind"),
            ("class", json!("deplyo"), "class"),
            ("time", json!("yesterday"), "time"),
            ("time", json!("2099-01-01T00:00:00Z"), "time"),
            ("change_size", json!(-3), "change_size"),
            ("targets", json!(["ok", "x".repeat(600)]), "targets[1]"),
            ("outcome", json!("unknown"), "outcome"),
            ("team", json!("a team"), "team"),
        ];
        for (key, value, field) in cases {
            let mut v = event();
            v[key] = value;
            let e = check(v).unwrap_err();
            assert_eq!(e.field.as_deref(), Some(field), "{key}: {e}");
        }
        let mut v = event();
        v.as_object_mut().unwrap().remove("source_id");
        assert_eq!(check(v).unwrap_err().field.as_deref(), Some("source_id"));
        assert_eq!(check(json!([1])).unwrap_err().code, "invalid_event");
    }
}
