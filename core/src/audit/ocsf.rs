//! One audit record as an OCSF **API Activity** event (class 6003, category 6 Application
//! Activity), OCSF schema 1.9.0, for SIEMs and data lakes that speak OCSF.
//!
//! Sources (OCSF 1.9.0, released 2026-08-03, <https://github.com/ocsf/ocsf-schema/releases>):
//! `events/application/api_activity.json` (the class: `actor`, `api`, `src_endpoint`
//! required), `events/base_event.json` and `dictionary.json` (the base attributes and enums),
//! `profiles/security_control.json` (`action_id`, `disposition_id`, `policy`, `risk_level_id`),
//! `profiles/record_integrity.json` with `objects/attestation.json`, `objects/prev_event.json`
//! and `objects/fingerprint.json` (the chain), `profiles/ai_operation.json` with
//! `objects/ai_agent.json`, and `objects/actor.json`, `user.json`, `api.json`, `request.json`,
//! `metadata.json`, `product.json`, `resource_details.json`, `network_endpoint.json`.
//!
//! Warden's record keeps everything; the event carries what OCSF has a place for, puts the rest
//! under `unmapped`, and carries the record's exact text in `raw_data` so an offline verifier
//! can recompute the chain (see [`api_activity`]). Absent values are left out, never `null`.

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::{AuditEntry, AuditRecord, GENESIS};

/// The OCSF schema version the events follow (`metadata.version`).
pub const OCSF_VERSION: &str = "1.9.0";
/// OCSF class API Activity.
pub const CLASS_UID: i64 = 6003;
/// OCSF category Application Activity.
pub const CATEGORY_UID: i64 = 6;
/// The `attestation.chain_uid` of every event: Warden's one audit chain.
pub const CHAIN_UID: &str = "warden-audit";

/// `fingerprint.algorithm_id` SHA-256.
const SHA_256: i64 = 3;
/// `fingerprint.serialization_id` Flat: a hash over a raw byte sequence (added in 1.9.0).
const FLAT: i64 = 1;

/// The OCSF event for `entry`, as `product_version` of Warden exports it.
///
/// `record_json` is the record's canonical text as stored (the text its hash covers); without
/// it the record is serialised again, which gives the same text for records this version wrote.
///
/// Integrity: the chain rides in the `record_integrity` profile's `attestation` (OCSF 1.9.0),
/// the schema's place for a tamper-evident chain of events:
/// - `attestation.fingerprint.value` is the record's chain hash (`entry.hash`);
/// - `attestation.prev_event.fingerprint.value` is the previous record's hash
///   (`entry.prev_hash`), with `prev_event.uid` the previous event's `metadata.uid`; the first
///   record has no `prev_event` (the schema leaves it out on a chain's genesis event, and the
///   hash before it is [`GENESIS`]);
/// - both fingerprints are SHA-256 (`algorithm_id` 3) with `serialization_id` 1 Flat, because
///   Warden's hash is not over the OCSF event: it is `SHA-256(prev_hash "\n" seq "\n"
///   raw_data)` over raw bytes (see [`super::chain_hash`]), `seq` being `metadata.sequence`;
/// - `attestation.chain_uid` is [`CHAIN_UID`];
/// - `raw_data` is the record's exact text and `raw_data_hash` its plain SHA-256, so a verifier
///   checks one event alone (`raw_data_hash`) or the chain (`attestation`) without Warden.
pub fn api_activity(entry: &AuditEntry, record_json: Option<&str>, product_version: &str) -> Value {
    let r = &entry.record;
    let raw = record_json.map_or_else(
        || serde_json::to_string(r).unwrap_or_default(),
        str::to_string,
    );
    let (activity_id, activity_name) = activity(&r.event_type);
    let mut event = Map::new();
    let mut profiles = vec!["datetime", "record_integrity"];

    event.insert("activity_id".into(), json!(activity_id));
    event.insert("activity_name".into(), json!(activity_name));
    event.insert("category_uid".into(), json!(CATEGORY_UID));
    event.insert("category_name".into(), json!("Application Activity"));
    event.insert("class_uid".into(), json!(CLASS_UID));
    event.insert("class_name".into(), json!("API Activity"));
    event.insert("type_uid".into(), json!(CLASS_UID * 100 + activity_id));
    event.insert(
        "type_name".into(),
        json!(format!(
            "API Activity: {}",
            caption(activity_id, activity_name)
        )),
    );
    // The time is always valid RFC 3339 for a stored record (the verifier checks it).
    if let Some(micros) = crate::clock::parse_micros(&r.at) {
        event.insert("time".into(), json!(micros.div_euclid(1_000)));
    }
    event.insert("time_dt".into(), json!(r.at));
    event.insert("timezone_offset".into(), json!(0));

    let (severity_id, severity) = severity(r.risk.as_deref());
    event.insert("severity_id".into(), json!(severity_id));
    event.insert("severity".into(), json!(severity));

    let (status_id, status) = status(r);
    event.insert("status_id".into(), json!(status_id));
    event.insert("status".into(), json!(status));
    put(
        &mut event,
        "status_detail",
        r.outcome.as_deref().map(Value::from),
    );

    // Security Control profile: what Warden, as the control, did about the request.
    if let Some((action_id, action, disposition_id, disposition)) = control(r) {
        event.insert("action_id".into(), json!(action_id));
        event.insert("action".into(), json!(action));
        event.insert("disposition_id".into(), json!(disposition_id));
        event.insert("disposition".into(), json!(disposition));
        profiles.push("security_control");
    }
    if let Some((risk_level_id, risk_level)) = r.risk.as_deref().map(risk_level) {
        event.insert("risk_level_id".into(), json!(risk_level_id));
        event.insert("risk_level".into(), json!(risk_level));
        if !profiles.contains(&"security_control") {
            profiles.push("security_control");
        }
    }
    if let Some(version) = &r.policy_version {
        event.insert(
            "policy".into(),
            json!({"name": "Warden policy", "version": version}),
        );
        if !profiles.contains(&"security_control") {
            profiles.push("security_control");
        }
    }

    event.insert("actor".into(), actor(r));
    // AI Operation profile: the agent as an AI agent, beside the actor's user account.
    if r.actor.kind == "agent" {
        event.insert(
            "ai_agent".into(),
            json!({"uid": r.actor.id, "name": r.actor.id}),
        );
        profiles.push("ai_operation");
    }
    // API Activity requires a source endpoint; Warden keeps no network address of its callers,
    // so the caller's identity names it.
    event.insert("src_endpoint".into(), json!({"name": r.actor.id}));
    event.insert("api".into(), api(r));
    event.insert("resources".into(), Value::Array(resources(r)));
    event.insert("message".into(), json!(message(r)));

    let mut metadata = Map::new();
    metadata.insert("version".into(), json!(OCSF_VERSION));
    metadata.insert(
        "product".into(),
        json!({"name": "Warden", "vendor_name": "Warden", "version": product_version}),
    );
    metadata.insert("uid".into(), json!(event_uid(entry.seq)));
    metadata.insert("original_event_uid".into(), json!(entry.seq.to_string()));
    metadata.insert("sequence".into(), json!(entry.seq));
    metadata.insert("log_name".into(), json!("audit"));
    metadata.insert("event_code".into(), json!(r.event_type));
    metadata.insert("original_time".into(), json!(r.at));
    put(
        &mut metadata,
        "correlation_uid",
        r.decision_id.as_deref().map(Value::from),
    );
    metadata.insert("profiles".into(), json!(profiles));
    event.insert("metadata".into(), Value::Object(metadata));

    let mut attestation = Map::new();
    attestation.insert("chain_uid".into(), json!(CHAIN_UID));
    attestation.insert("fingerprint".into(), chain_fingerprint(&entry.hash));
    if !(entry.seq <= 1 && entry.prev_hash == GENESIS) {
        attestation.insert(
            "prev_event".into(),
            json!({
                "uid": event_uid(entry.seq - 1),
                "fingerprint": chain_fingerprint(&entry.prev_hash),
            }),
        );
    }
    event.insert("attestation".into(), Value::Object(attestation));

    event.insert(
        "raw_data_hash".into(),
        json!({
            "algorithm_id": SHA_256,
            "algorithm": "SHA-256",
            "value": hex::encode(Sha256::digest(raw.as_bytes())),
        }),
    );
    event.insert("raw_data_size".into(), json!(raw.len()));
    event.insert("raw_data".into(), json!(raw));

    let unmapped = unmapped(r);
    if !unmapped.is_empty() {
        event.insert("unmapped".into(), Value::Object(unmapped));
    }
    Value::Object(event)
}

/// `metadata.uid` of the event exported for the record at `seq`.
fn event_uid(seq: i64) -> String {
    format!("warden-audit-{seq}")
}

/// A chain hash as an OCSF fingerprint.
fn chain_fingerprint(hash: &str) -> Value {
    json!({
        "algorithm_id": SHA_256,
        "algorithm": "SHA-256",
        "value": hash,
        "serialization_id": FLAT,
        "serialization": "Flat",
    })
}

/// Inserts `value` under `key` when there is one.
fn put(map: &mut Map<String, Value>, key: &str, value: Option<Value>) {
    if let Some(v) = value {
        map.insert(key.into(), v);
    }
}

/// `activity_id` and `activity_name`, by what the record's event did to the thing it names.
///
/// A `decision` is an agent's request to act, and answering it creates a decision (and, when a
/// human must decide, an approval request): Create. `approval.requested` creates an approval;
/// `approval.approved`, `.rejected`, `.consumed` and `.expired` change its state: Update. An
/// outcome report changes its decision: Update. `*.created`, `*.loaded`, `*.recorded` and the
/// like are Create, `*.updated`, `*.changed` and the like Update, `*.revoked` and `*.removed`
/// Delete. Anything else is Other (99), named by its event type, as OCSF asks for Other.
fn activity(event_type: &str) -> (i64, &str) {
    if event_type == "decision" {
        return (1, "Create");
    }
    let verb = event_type.rsplit('.').next().unwrap_or(event_type);
    match verb {
        "created" | "requested" | "review_requested" | "recorded" | "loaded" | "ingested" => {
            (1, "Create")
        }
        "updated" | "changed" | "replaced" | "approved" | "rejected" | "consumed" | "expired"
        | "reported" | "overdue" | "confirmed" | "contradicted" | "acknowledged"
        | "classes_earned" | "held" | "rolled_back" | "hard_trigger" | "failing" => (3, "Update"),
        "revoked" | "removed" | "deleted" => (4, "Delete"),
        _ => (99, event_type),
    }
}

/// The caption of an `activity_id` (for `type_name`, which names Other as Other).
fn caption(activity_id: i64, name: &str) -> &str {
    if activity_id == 99 { "Other" } else { name }
}

/// `severity_id` and `severity` from Warden's risk level; no risk is Informational.
fn severity(risk: Option<&str>) -> (i64, &str) {
    match risk {
        None => (1, "Informational"),
        Some("low") => (2, "Low"),
        Some("medium") => (3, "Medium"),
        Some("high") => (4, "High"),
        Some("critical") => (5, "Critical"),
        Some(other) => (99, other),
    }
}

/// `risk_level_id` and `risk_level` (Security Control profile) from Warden's risk level.
fn risk_level(risk: &str) -> (i64, &str) {
    match risk {
        "low" => (1, "Low"),
        "medium" => (2, "Medium"),
        "high" => (3, "High"),
        "critical" => (4, "Critical"),
        other => (99, other),
    }
}

/// `status_id` and `status`.
///
/// A decision's request succeeded when it was allowed and failed when it was denied (as a
/// denied call does in other API logs); one waiting for a human is Other, "Pending Approval".
/// An outcome record carries the outcome (`rolled_back` is a failure; `status_detail` keeps the
/// word). Any other record is a change Warden committed with it: Success.
fn status(r: &AuditRecord) -> (i64, String) {
    let outcome = r.outcome.as_deref();
    if r.event_type == "decision" {
        return match outcome {
            Some("allow") => (1, "Success".into()),
            Some("deny") => (2, "Failure".into()),
            Some("require_approval") => (99, "Pending Approval".into()),
            Some(other) => (99, other.into()),
            None => (0, "Unknown".into()),
        };
    }
    match outcome {
        None | Some("succeeded" | "success") => (1, "Success".into()),
        Some("failed" | "failure" | "rolled_back") => (2, "Failure".into()),
        Some("unknown") => (0, "Unknown".into()),
        Some(other) => (99, other.into()),
    }
}

/// `action_id`, `action`, `disposition_id`, `disposition` (Security Control profile), for the
/// records where Warden, or a human through it, let an agent's action through or stopped it.
///
/// - `allow`: Allowed / Allowed (1 / 1), also when it was allowed by an approval.
/// - `deny`: Denied / Blocked (2 / 2).
/// - `require_approval`: Modified / Delayed (4 / 14). The action is neither allowed nor refused
///   but held until a human decides; the schema names Delayed ("an operation was delayed")
///   among the dispositions of action Modified (added in 1.5.0), which fits better than
///   Allowed (it is not allowed yet) or Blocked (it is not refused).
/// - `approval.approved`: Allowed / Approved (1 / 8), "a request or submission was approved".
/// - `approval.rejected`: Denied / Rejected (2 / 25), "a request or submission was rejected".
fn control(r: &AuditRecord) -> Option<(i64, &'static str, i64, &'static str)> {
    match (r.event_type.as_str(), r.outcome.as_deref()) {
        ("decision", Some("allow")) => Some((1, "Allowed", 1, "Allowed")),
        ("decision", Some("deny")) => Some((2, "Denied", 2, "Blocked")),
        ("decision", Some("require_approval")) => Some((4, "Modified", 14, "Delayed")),
        ("approval.approved", _) => Some((1, "Allowed", 8, "Approved")),
        ("approval.rejected", _) => Some((2, "Denied", 25, "Rejected")),
        _ => None,
    }
}

/// `actor`: the caller's account as `actor.user`, with its tool as the application.
///
/// An agent is not a person: its user `type_id` is Other (99), `type` "AI Agent". Humans are
/// User (1), admins Admin (2), Warden and integrations Service (4). The agent's team is its
/// group and its token the user's `credential_uid`.
fn actor(r: &AuditRecord) -> Value {
    let a = &r.actor;
    let (type_id, kind) = match a.kind.as_str() {
        "agent" => (99, "AI Agent"),
        "human" => (1, "User"),
        "admin" => (2, "Admin"),
        "service" => (4, "Service"),
        other => (99, other),
    };
    let mut user = Map::new();
    user.insert("uid".into(), json!(a.id));
    user.insert("name".into(), json!(a.id));
    user.insert("type_id".into(), json!(type_id));
    user.insert("type".into(), json!(kind));
    put(
        &mut user,
        "credential_uid",
        a.token_id.as_deref().map(Value::from),
    );
    put(
        &mut user,
        "groups",
        a.team
            .as_deref()
            .map(|team| json!([{"name": team, "type": "team"}])),
    );
    let mut actor = Map::new();
    actor.insert("user".into(), Value::Object(user));
    if let Some(tool) = &a.tool {
        // `app_name` for consumers before 1.9.0, `application` (which replaces it) after.
        actor.insert("app_name".into(), json!(tool));
        actor.insert("application".into(), json!({"name": tool}));
    }
    Value::Object(actor)
}

/// `api`: the operation and the service it was on, and the decision as the request.
///
/// A decision's operation is the action class on the service acted on, the way a cloud audit
/// log names the call and the service it went to; any other record's operation is its event
/// type, on Warden itself. The requested action (class, environment, service, resources,
/// reasoning, plan) is the request's `data`.
fn api(r: &AuditRecord) -> Value {
    let operation = match (&r.action_class, r.event_type.as_str()) {
        (Some(class), "decision") => class.as_str(),
        _ => r.event_type.as_str(),
    };
    let service = match (&r.service, r.event_type.as_str()) {
        (Some(s), "decision") => s.as_str(),
        _ => "warden",
    };
    let mut api = Map::new();
    api.insert("operation".into(), json!(operation));
    api.insert("service".into(), json!({"name": service}));
    if let Some(id) = &r.decision_id {
        let mut request = Map::new();
        request.insert("uid".into(), json!(id));
        put(
            &mut request,
            "data",
            r.action.as_ref().and_then(|a| without_nulls(a.value())),
        );
        api.insert("request".into(), Value::Object(request));
    }
    Value::Object(api)
}

/// `resources`: the target, then the service, the environment and the agent the record
/// concerns when they are not the target or the actor. `type` is Warden's kind of thing.
fn resources(r: &AuditRecord) -> Vec<Value> {
    fn add(out: &mut Vec<Value>, kind: &str, name: &str) {
        let uid = format!("{kind}:{name}");
        if !out.iter().any(|v| v["uid"] == uid.as_str()) {
            out.push(json!({"uid": uid, "name": name, "type": kind}));
        }
    }
    let mut out = Vec::new();
    match r.target.split_once(':') {
        Some((kind, name)) => add(&mut out, kind, name),
        None => out.push(json!({"uid": r.target, "name": r.target})),
    }
    if let Some(s) = &r.service {
        add(&mut out, "service", s);
    }
    if let Some(e) = &r.environment {
        add(&mut out, "environment", e);
    }
    if let Some(agent) = r.agent.as_ref().filter(|a| **a != r.actor.id) {
        add(&mut out, "agent", agent);
    }
    out
}

/// `message`: one sentence for a person reading the SIEM.
fn message(r: &AuditRecord) -> String {
    let a = &r.actor;
    if r.event_type == "decision" {
        let mut m = format!(
            "{} {} asked to {} on {}",
            a.kind,
            a.id,
            r.action_class.as_deref().unwrap_or("act"),
            r.target
        );
        if let Some(env) = &r.environment {
            m.push_str(&format!(" in {env}"));
        }
        if let Some(human) = &r.on_behalf_of {
            m.push_str(&format!(" for {human}"));
        }
        m.push_str(&format!(
            ": {}",
            r.outcome.as_deref().unwrap_or("no verdict")
        ));
        if let Some(approval) = &r.approval_id {
            m.push_str(&format!(" (approval {approval}"));
            if !r.approvers.is_empty() {
                m.push_str(&format!(" by {}", r.approvers.join(", ")));
            }
            m.push(')');
        }
        return m;
    }
    let mut m = format!("{} {}: {} {}", a.kind, a.id, r.event_type, r.target);
    if let Some(outcome) = &r.outcome {
        m.push_str(&format!(" ({outcome})"));
    }
    m
}

/// `unmapped`: what Warden records and OCSF has no attribute for, under Warden's names.
///
/// The humans an agent acts for and who approved it have no place once `actor.user` is the
/// agent: API Activity has no second user, `actor.invoked_by` is deprecated (and names a
/// service), `actor.authorizations` carries outcomes and policies, not people, and 1.9.0's
/// `delegation` names its principal in `actor.user`. They stay here, as do the approval, the
/// agent's stated reasoning, its model and sponsor, the record's details, the requested action
/// when no decision carries it, and a team other than the actor's.
fn unmapped(r: &AuditRecord) -> Map<String, Value> {
    let mut m = Map::new();
    put(
        &mut m,
        "on_behalf_of",
        r.on_behalf_of.as_deref().map(Value::from),
    );
    put(
        &mut m,
        "authorizing_human",
        r.authorizing_human.as_deref().map(Value::from),
    );
    if !r.approvers.is_empty() {
        m.insert("approvers".into(), json!(r.approvers));
    }
    put(
        &mut m,
        "approval_id",
        r.approval_id.as_deref().map(Value::from),
    );
    put(&mut m, "reasoning", r.reasoning.as_deref().map(Value::from));
    let mut actor = Map::new();
    put(
        &mut actor,
        "model",
        r.actor.model.as_deref().map(Value::from),
    );
    put(
        &mut actor,
        "sponsor",
        r.actor.sponsor.as_deref().map(Value::from),
    );
    if !actor.is_empty() {
        m.insert("actor".into(), Value::Object(actor));
    }
    if r.team.is_some() && r.team != r.actor.team {
        put(&mut m, "team", r.team.as_deref().map(Value::from));
    }
    if r.decision_id.is_none() {
        put(
            &mut m,
            "action",
            r.action.as_ref().and_then(|a| without_nulls(a.value())),
        );
    }
    put(
        &mut m,
        "details",
        r.details.as_ref().and_then(|d| without_nulls(d.value())),
    );
    m
}

/// `value` without its `null`s (members and items), as OCSF leaves absent values out; `None`
/// when nothing is left of it. The record's own text, nulls and all, is in `raw_data`.
fn without_nulls(value: Value) -> Option<Value> {
    match value {
        Value::Null => None,
        Value::Array(items) => Some(Value::Array(
            items.into_iter().filter_map(without_nulls).collect(),
        )),
        Value::Object(map) => Some(Value::Object(
            map.into_iter()
                .filter_map(|(k, v)| without_nulls(v).map(|v| (k, v)))
                .collect(),
        )),
        other => Some(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Actor, RawJson, chain_hash};

    fn entry(seq: i64, prev_hash: &str, record: AuditRecord) -> (AuditEntry, String) {
        let json = serde_json::to_string(&record).unwrap();
        let entry = AuditEntry {
            seq,
            prev_hash: prev_hash.into(),
            hash: chain_hash(prev_hash, seq, &json),
            record,
        };
        (entry, json)
    }

    fn decision(verdict: &str, risk: &str) -> AuditRecord {
        AuditRecord {
            event_type: "decision".into(),
            at: "2026-11-30T12:00:00.123456Z".into(),
            actor: Actor {
                kind: "agent".into(),
                id: "deploy-bot".into(),
                tool: Some("claude-code".into()),
                model: Some("claude-opus".into()),
                token_id: Some("tok_1".into()),
                team: Some("payments-team".into()),
                sponsor: Some("bob".into()),
            },
            agent: Some("deploy-bot".into()),
            on_behalf_of: Some("alice".into()),
            action_class: Some("deploy".into()),
            environment: Some("production".into()),
            service: Some("payments".into()),
            team: Some("payments-team".into()),
            target: "service:payments".into(),
            action: Some(RawJson::from(json!({
                "class": "deploy", "environment": "production", "service": "payments",
                "reasoning": "ship the fix", "plan": ["build", "roll out"]
            }))),
            outcome: Some(verdict.into()),
            risk: Some(risk.into()),
            reasoning: Some("ship the fix".into()),
            policy_version: Some("v7".into()),
            decision_id: Some("dec_1".into()),
            details: Some(RawJson::from(json!({"reasons": ["tier allows deploy"]}))),
            ..Default::default()
        }
    }

    /// Every `null` in `v`, by path.
    fn nulls(v: &Value, path: &str, out: &mut Vec<String>) {
        match v {
            Value::Null => out.push(path.to_string()),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    nulls(item, &format!("{path}[{i}]"), out);
                }
            }
            Value::Object(map) => {
                for (k, item) in map {
                    nulls(item, &format!("{path}.{k}"), out);
                }
            }
            _ => {}
        }
    }

    fn assert_no_nulls(v: &Value) {
        let mut found = Vec::new();
        nulls(v, "$", &mut found);
        assert!(found.is_empty(), "nulls at {found:?}");
    }

    #[test]
    fn decision_allowed_by_approval() {
        let mut record = decision("allow", "high");
        record.approval_id = Some("apr_1".into());
        record.approvers = vec!["carol".into(), "dave".into()];
        let prev = "ab".repeat(32);
        let (entry, json) = entry(42, &prev, record);
        let e = api_activity(&entry, Some(&json), "0.9.0");

        assert_eq!(e["class_uid"], 6003);
        assert_eq!(e["category_uid"], 6);
        assert_eq!(e["activity_id"], 1);
        assert_eq!(e["type_uid"], 600301);
        assert_eq!(e["type_name"], "API Activity: Create");
        assert_eq!(e["disposition_id"], 1);
        assert_eq!(e["disposition"], "Allowed");
        assert_eq!(e["action_id"], 1);
        assert_eq!(e["status_id"], 1);
        assert_eq!(e["severity_id"], 4);
        assert_eq!(e["severity"], "High");
        assert_eq!(e["risk_level_id"], 3);
        assert_eq!(e["time"], 1_796_040_000_123_i64);
        assert_eq!(e["time_dt"], "2026-11-30T12:00:00.123456Z");

        let user = &e["actor"]["user"];
        assert_eq!(user["uid"], "deploy-bot");
        assert_eq!(user["type_id"], 99);
        assert_eq!(user["type"], "AI Agent");
        assert_eq!(user["credential_uid"], "tok_1");
        assert_eq!(user["groups"][0]["name"], "payments-team");
        assert_eq!(e["actor"]["app_name"], "claude-code");
        assert_eq!(e["actor"]["application"]["name"], "claude-code");
        assert_eq!(e["ai_agent"]["uid"], "deploy-bot");

        assert_eq!(e["unmapped"]["on_behalf_of"], "alice");
        assert_eq!(e["unmapped"]["approvers"], json!(["carol", "dave"]));
        assert_eq!(e["unmapped"]["approval_id"], "apr_1");
        assert_eq!(e["unmapped"]["reasoning"], "ship the fix");
        assert_eq!(e["unmapped"]["actor"]["model"], "claude-opus");
        assert_eq!(e["unmapped"]["actor"]["sponsor"], "bob");
        assert!(e["unmapped"].get("team").is_none());

        assert_eq!(e["api"]["operation"], "deploy");
        assert_eq!(e["api"]["service"]["name"], "payments");
        assert_eq!(e["api"]["request"]["uid"], "dec_1");
        assert_eq!(e["api"]["request"]["data"]["plan"][1], "roll out");
        assert_eq!(e["policy"]["version"], "v7");
        let uids: Vec<&str> = e["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["uid"].as_str().unwrap())
            .collect();
        assert_eq!(uids, ["service:payments", "environment:production"]);

        let m = &e["metadata"];
        assert_eq!(m["version"], OCSF_VERSION);
        assert_eq!(m["product"]["name"], "Warden");
        assert_eq!(m["product"]["vendor_name"], "Warden");
        assert_eq!(m["product"]["version"], "0.9.0");
        assert_eq!(m["uid"], "warden-audit-42");
        assert_eq!(m["sequence"], 42);
        assert_eq!(m["log_name"], "audit");
        assert_eq!(m["correlation_uid"], "dec_1");
        assert_eq!(m["original_time"], "2026-11-30T12:00:00.123456Z");
        for p in [
            "security_control",
            "record_integrity",
            "ai_operation",
            "datetime",
        ] {
            assert!(m["profiles"].as_array().unwrap().contains(&json!(p)), "{p}");
        }

        // Integrity: the record's chain hash and the one before it, checkable offline.
        let att = &e["attestation"];
        assert_eq!(att["fingerprint"]["value"], entry.hash.as_str());
        assert_eq!(att["fingerprint"]["algorithm_id"], 3);
        assert_eq!(att["prev_event"]["fingerprint"]["value"], prev.as_str());
        assert_eq!(att["prev_event"]["uid"], "warden-audit-41");
        assert_eq!(att["chain_uid"], CHAIN_UID);
        let raw = e["raw_data"].as_str().unwrap();
        assert_eq!(raw, json);
        let seq = e["metadata"]["sequence"].as_i64().unwrap();
        let prev_hash = att["prev_event"]["fingerprint"]["value"].as_str().unwrap();
        assert_eq!(
            chain_hash(prev_hash, seq, raw),
            att["fingerprint"]["value"].as_str().unwrap()
        );
        assert_eq!(
            e["raw_data_hash"]["value"],
            hex::encode(Sha256::digest(raw.as_bytes())).as_str()
        );
        let back: AuditRecord = serde_json::from_str(raw).unwrap();
        assert_eq!(back, entry.record);
        assert_no_nulls(&e);
    }

    #[test]
    fn denied_decision_is_blocked() {
        let (entry, _) = entry(7, &"cd".repeat(32), decision("deny", "critical"));
        let e = api_activity(&entry, None, "0.9.0");
        assert_eq!(e["disposition_id"], 2);
        assert_eq!(e["disposition"], "Blocked");
        assert_eq!(e["action_id"], 2);
        assert_eq!(e["action"], "Denied");
        assert_eq!(e["status_id"], 2);
        assert_eq!(e["severity_id"], 5);
        assert_eq!(e["status_detail"], "deny");
        // Without the stored text the record is serialised again, to the same text.
        let raw = e["raw_data"].as_str().unwrap();
        assert_eq!(chain_hash(&entry.prev_hash, 7, raw), entry.hash);
        assert_no_nulls(&e);
    }

    #[test]
    fn decision_waiting_for_a_human_is_delayed() {
        let (entry, _) = entry(8, &"cd".repeat(32), decision("require_approval", "medium"));
        let e = api_activity(&entry, None, "0.9.0");
        assert_eq!(e["disposition_id"], 14);
        assert_eq!(e["disposition"], "Delayed");
        assert_eq!(e["action_id"], 4);
        assert_eq!(e["status_id"], 99);
        assert_eq!(e["status"], "Pending Approval");
        assert_eq!(e["severity_id"], 3);
        assert_no_nulls(&e);
    }

    #[test]
    fn human_approval_is_a_user_update() {
        let record = AuditRecord {
            event_type: "approval.approved".into(),
            at: "2026-11-30T12:05:00.000000Z".into(),
            actor: Actor {
                kind: "human".into(),
                id: "carol".into(),
                token_id: Some("tok_carol".into()),
                ..Default::default()
            },
            agent: Some("deploy-bot".into()),
            on_behalf_of: Some("alice".into()),
            authorizing_human: Some("carol".into()),
            action_class: Some("deploy".into()),
            environment: Some("production".into()),
            service: Some("payments".into()),
            target: "approval:apr_1".into(),
            approval_id: Some("apr_1".into()),
            approvers: vec!["carol".into()],
            decision_id: Some("dec_0".into()),
            details: Some(RawJson::from(
                json!({"status": "approved", "comment": null}),
            )),
            ..Default::default()
        };
        let (entry, json) = entry(1, GENESIS, record);
        let e = api_activity(&entry, Some(&json), "0.9.0");
        assert_eq!(e["actor"]["user"]["uid"], "carol");
        assert_eq!(e["actor"]["user"]["type_id"], 1);
        assert_eq!(e["actor"]["user"]["type"], "User");
        assert!(e["actor"].get("app_name").is_none());
        assert!(e.get("ai_agent").is_none());
        assert_eq!(e["activity_id"], 3);
        assert_eq!(e["type_uid"], 600303);
        assert_eq!(e["disposition_id"], 8);
        assert_eq!(e["disposition"], "Approved");
        assert_eq!(e["severity_id"], 1);
        assert_eq!(e["status_id"], 1);
        assert_eq!(e["api"]["operation"], "approval.approved");
        assert_eq!(e["api"]["service"]["name"], "warden");
        assert_eq!(e["unmapped"]["approvers"], json!(["carol"]));
        assert_eq!(e["unmapped"]["authorizing_human"], "carol");
        let uids: Vec<&str> = e["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["uid"].as_str().unwrap())
            .collect();
        assert_eq!(
            uids,
            [
                "approval:apr_1",
                "service:payments",
                "environment:production",
                "agent:deploy-bot"
            ]
        );
        // The first record of the chain has no previous event.
        assert!(e["attestation"].get("prev_event").is_none());
        assert_eq!(
            e["attestation"]["fingerprint"]["value"],
            entry.hash.as_str()
        );
        // The details' `null` comment is left out of the parsed copy; `raw_data` keeps the text.
        assert_eq!(e["unmapped"]["details"], json!({"status": "approved"}));
        assert!(
            e["raw_data"]
                .as_str()
                .unwrap()
                .contains(r#""comment":null"#)
        );
        assert_no_nulls(&e);
    }

    #[test]
    fn change_records_map_by_their_verb() {
        let cases = [
            ("agent.created", 1),
            ("approval.requested", 1),
            ("policy.loaded", 1),
            ("violation.recorded", 1),
            ("agent.updated", 3),
            ("tier.changed", 3),
            ("approval.consumed", 3),
            ("outcome.reported", 3),
            ("token.revoked", 4),
            ("plugin.removed", 4),
            ("something.else", 99),
        ];
        for (event, id) in cases {
            let record = AuditRecord::change(
                Actor::configuration(),
                event,
                "agent:x".into(),
                json!({"k": 1}),
                1_764_504_000_000_000,
            );
            let (entry, _) = entry(3, &"ef".repeat(32), record);
            let e = api_activity(&entry, None, "0.9.0");
            assert_eq!(e["activity_id"], id, "{event}");
            assert_eq!(e["type_uid"], 600300 + id, "{event}");
            assert_eq!(e["actor"]["user"]["type_id"], 2, "{event}");
            assert!(e.get("disposition_id").is_none(), "{event}");
            assert_no_nulls(&e);
        }
        let other =
            AuditRecord::change(Actor::warden(), "something.else", "x".into(), json!({}), 0);
        let (entry, _) = entry(2, &"ef".repeat(32), other);
        let e = api_activity(&entry, None, "0.9.0");
        assert_eq!(e["activity_name"], "something.else");
        assert_eq!(e["type_name"], "API Activity: Other");
        assert_eq!(e["actor"]["user"]["type_id"], 4);
    }

    #[test]
    fn outcomes_set_the_status() {
        for (outcome, id) in [
            ("succeeded", 1),
            ("failed", 2),
            ("rolled_back", 2),
            ("unknown", 0),
        ] {
            let record = AuditRecord {
                outcome: Some(outcome.into()),
                decision_id: Some("dec_1".into()),
                ..AuditRecord::change(
                    Actor::warden(),
                    "outcome.reported",
                    "service:payments".into(),
                    json!({}),
                    0,
                )
            };
            let (entry, _) = entry(5, &"ef".repeat(32), record);
            let e = api_activity(&entry, None, "0.9.0");
            assert_eq!(e["status_id"], id, "{outcome}");
            assert_eq!(e["status_detail"], outcome);
        }
    }

    /// The class's required attributes in OCSF 1.9.0: `actor`, `api` and `src_endpoint` from
    /// ocsf/ocsf-schema `events/application/api_activity.json`; `activity_id`, `category_uid`,
    /// `class_uid`, `metadata`, `severity_id`, `time` and `type_uid` from
    /// `events/base_event.json`; `metadata.product` and `metadata.version` from
    /// `objects/metadata.json`; `product.name` from `objects/product.json`; `api.operation` from
    /// `objects/api.json`; `request.uid` from `objects/request.json`; `fingerprint.algorithm_id`
    /// and `.value` from `objects/fingerprint.json`; `prev_event.uid` from
    /// `objects/prev_event.json`.
    #[test]
    fn required_attributes_are_present() {
        const REQUIRED: [&str; 16] = [
            "/activity_id",
            "/category_uid",
            "/class_uid",
            "/metadata",
            "/severity_id",
            "/time",
            "/type_uid",
            "/actor",
            "/api",
            "/src_endpoint",
            "/metadata/product/name",
            "/metadata/version",
            "/api/operation",
            "/api/request/uid",
            "/attestation/fingerprint/algorithm_id",
            "/attestation/prev_event/uid",
        ];
        let (entry, _) = entry(9, &"12".repeat(32), decision("allow", "low"));
        let e = api_activity(&entry, None, "0.9.0");
        for path in REQUIRED {
            assert!(e.pointer(path).is_some(), "missing {path}");
        }
        assert!(e.pointer("/attestation/fingerprint/value").is_some());
        assert!(
            e.pointer("/attestation/prev_event/fingerprint/value")
                .is_some()
        );
        // The actor object needs at least one of process, user, session, app_name, app_uid.
        assert!(e.pointer("/actor/user/uid").is_some());
    }
}
