//! Kubernetes audit webhook batches as activity: a pure function from one `audit.k8s.io/v1`
//! `EventList` (the body the API server's webhook backend POSTs) to [`ActivityEvent`]s.
//! Authentication of the caller and storage are the receiver's.
//!
//! Only a batch that is not an `EventList` is an error; within one, an event is skipped
//! (never a panic) when it is not a finished write or lacks what an activity needs (an audit
//! id, a user, an object, a time). Kept are events at stage `ResponseComplete` (each request
//! has exactly one, so the other stages would count it twice) whose verb writes: `create`,
//! `update`, `patch`, `delete`, `deletecollection`.
//!
//! # Class
//!
//! By the resource written, in the tables at the top of this file:
//!
//! | resource | class |
//! |---|---|
//! | `configmaps`, `secrets` | `config_change` |
//! | RBAC, network policies, service accounts, admission webhooks | `security_policy_change` |
//! | workloads (`deployments`, `pods`, `jobs`, …) | `deploy`; deleted: `infra_delete` |
//! | anything else | created: `infra_create`; deleted: `infra_delete`; else `config_change` |
//!
//! A write to a workload changes what runs (a rollout, a scale); deleting one removes it.
//! Some writes are not changes and are skipped: a `status` subresource (controllers
//! reporting), interactive access (`exec`, `attach`, `portforward`, `proxy`), reviews that
//! only ask a question (`tokenreviews`, `subjectaccessreviews`, …), `leases` (heartbeats and
//! leader election) and `events`.
//!
//! # Who and where
//!
//! The actor is the impersonated user when there is one (`kubectl --as`), else the
//! authenticated user. It is a Warden agent when listed in [`KubernetesSettings::agents`];
//! an agent (automation) when it is a service account (`system:serviceaccount:…`), any other
//! `system:` identity (nodes, controllers), or listed in [`KubernetesSettings::bots`]; else a
//! human. Team, service and environment come from the object's namespace; a write in an
//! unlisted namespace, or to a cluster-scoped object, takes [`KubernetesSettings::default`],
//! and without one is skipped: the cluster's own churn is not anyone's baseline.
//!
//! The outcome is `failed` for a response code of 400 or more (a forbidden or conflicting
//! write was attempted, and did not happen), else `succeeded`.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{ActivityEvent, ActorKind};
use crate::clock::parse_micros;
use crate::error::{Error, Result};
use crate::records::OutcomeStatus;

const SOURCE: &str = "kubernetes";
const KIND: &str = "EventList";
const API_VERSION: &str = "audit.k8s.io/v1";
const WRITE_VERBS: [&str; 5] = ["create", "update", "patch", "delete", "deletecollection"];

/// Resources whose every write is a configuration change.
const CONFIG: [&str; 2] = ["configmaps", "secrets"];
/// Resources that decide who may do what.
const SECURITY: [&str; 11] = [
    "roles",
    "rolebindings",
    "clusterroles",
    "clusterrolebindings",
    "networkpolicies",
    "podsecuritypolicies",
    "serviceaccounts",
    "validatingwebhookconfigurations",
    "mutatingwebhookconfigurations",
    "validatingadmissionpolicies",
    "validatingadmissionpolicybindings",
];
/// What runs: writing one is a deploy, deleting one an `infra_delete`.
const WORKLOADS: [&str; 7] = [
    "deployments",
    "statefulsets",
    "daemonsets",
    "replicasets",
    "jobs",
    "cronjobs",
    "pods",
];
const CONFIG_CLASS: &str = "config_change";
const SECURITY_CLASS: &str = "security_policy_change";
const DEPLOY_CLASS: &str = "deploy";
const CREATE_CLASS: &str = "infra_create";
const DELETE_CLASS: &str = "infra_delete";

/// Writes that are not changes: questions, heartbeats, the cluster's own event stream.
const NOT_CHANGES: [&str; 8] = [
    "tokenreviews",
    "subjectaccessreviews",
    "selfsubjectaccessreviews",
    "localsubjectaccessreviews",
    "selfsubjectrulesreviews",
    "selfsubjectreviews",
    "leases",
    "events",
];
/// Subresources that report or give interactive access rather than change the object.
const NOT_CHANGE_SUBRESOURCES: [&str; 5] = ["status", "exec", "attach", "portforward", "proxy"];

/// Where a namespace's activity belongs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamespacePlacement {
    /// The team that owns the namespace.
    pub team: String,
    /// The service that runs in it.
    pub service: String,
    /// The environment it is part of.
    #[serde(deserialize_with = "crate::policy::environment_name")]
    pub environment: String,
}

/// The receiver's settings (from configuration).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KubernetesSettings {
    /// Per namespace: its team, service and environment.
    pub namespaces: BTreeMap<String, NamespacePlacement>,
    /// For unlisted namespaces and cluster-scoped objects; without it, writes there are skipped.
    pub default: Option<NamespacePlacement>,
    /// Kubernetes user names that are Warden agents, to the agent's id.
    pub agents: BTreeMap<String, String>,
    /// User names that are automation though they are not `system:` identities.
    pub bots: BTreeSet<String>,
}

/// Maps one webhook batch. Errors only when `list` is not an `audit.k8s.io/v1` `EventList`
/// with an `items` array (`null`, as Go encodes an empty list, is no items).
pub fn map(list: &Value, settings: &KubernetesSettings) -> Result<Vec<ActivityEvent>> {
    check_list(list)?;
    let items = match list.get("items") {
        Some(Value::Array(items)) => items.as_slice(),
        Some(Value::Null) => &[],
        _ => return Err(Error::field("items", "must be an array of audit events")),
    };
    Ok(items
        .iter()
        .filter_map(|item| event(item, settings))
        .collect())
}

fn check_list(list: &Value) -> Result<()> {
    let kind = list.get("kind").and_then(Value::as_str);
    if kind != Some(KIND) {
        return Err(Error::field(
            "kind",
            format!(
                "expected `{KIND}`, the audit webhook's batch, got {}",
                shown(kind)
            ),
        ));
    }
    let version = list.get("apiVersion").and_then(Value::as_str);
    if version != Some(API_VERSION) {
        return Err(Error::field(
            "apiVersion",
            format!(
                "expected `{API_VERSION}`, got {}; set the webhook's version to {API_VERSION} \
                 (--audit-webhook-version)",
                shown(version)
            ),
        ));
    }
    Ok(())
}

fn shown(value: Option<&str>) -> String {
    value.map_or_else(|| "nothing".to_string(), |v| format!("`{v}`"))
}

/// One audit event as activity, or `None` when it is not a finished write or lacks a field.
fn event(item: &Value, settings: &KubernetesSettings) -> Option<ActivityEvent> {
    if text(item.get("stage")) != Some("ResponseComplete") {
        return None;
    }
    let verb = text(item.get("verb"))?;
    if !WRITE_VERBS.contains(&verb) {
        return None;
    }
    let object = Object::of(item.get("objectRef")?)?;
    let class = class(verb, &object)?;
    let placement = object
        .namespace
        .and_then(|ns| settings.namespaces.get(ns))
        .or(settings.default.as_ref())?;
    let (actor_kind, actor_id) = actor(item, settings)?;
    let at =
        time(item.get("stageTimestamp")).or_else(|| time(item.get("requestReceivedTimestamp")))?;
    Some(ActivityEvent {
        source: SOURCE.to_string(),
        source_id: text(item.get("auditID"))?.to_string(),
        actor_kind,
        actor_id,
        team: placement.team.clone(),
        class: class.to_string(),
        environment: placement.environment.clone(),
        service: placement.service.clone(),
        targets: vec![object.target()],
        change_size: None,
        at,
        outcome: outcome(item),
        decision_id: None,
    })
}

/// The object an event wrote.
struct Object<'a> {
    resource: &'a str,
    subresource: Option<&'a str>,
    namespace: Option<&'a str>,
    name: Option<&'a str>,
}

impl<'a> Object<'a> {
    fn of(object_ref: &'a Value) -> Option<Object<'a>> {
        Some(Object {
            resource: text(object_ref.get("resource"))?,
            subresource: text(object_ref.get("subresource")),
            namespace: text(object_ref.get("namespace")),
            name: text(object_ref.get("name")),
        })
    }

    /// `<resource>/<namespace>/<name>[/<subresource>]`, leaving out what the event lacks
    /// (a cluster-scoped object has no namespace; a `deletecollection` no name).
    fn target(&self) -> String {
        [
            Some(self.resource),
            self.namespace,
            self.name,
            self.subresource,
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join("/")
    }
}

/// The class of a write, per the tables above; `None` for writes that are not changes.
fn class(verb: &str, object: &Object<'_>) -> Option<&'static str> {
    let resource = object.resource;
    let not_change = NOT_CHANGES.contains(&resource)
        || object
            .subresource
            .is_some_and(|s| NOT_CHANGE_SUBRESOURCES.contains(&s));
    if not_change {
        return None;
    }
    let deletes = matches!(verb, "delete" | "deletecollection");
    Some(if CONFIG.contains(&resource) {
        CONFIG_CLASS
    } else if SECURITY.contains(&resource) {
        SECURITY_CLASS
    } else if deletes {
        DELETE_CLASS
    } else if WORKLOADS.contains(&resource) {
        DEPLOY_CLASS
    } else if verb == "create" {
        CREATE_CLASS
    } else {
        CONFIG_CLASS
    })
}

/// Who acted: the impersonated user if any, and whether it is an agent.
fn actor(item: &Value, settings: &KubernetesSettings) -> Option<(ActorKind, String)> {
    let name = text(item.pointer("/impersonatedUser/username"))
        .or_else(|| text(item.pointer("/user/username")))?;
    if let Some(agent) = settings.agents.get(name) {
        return Some((ActorKind::Agent, agent.clone()));
    }
    // Service accounts and the control plane's own identities (`system:node:…`,
    // `system:kube-controller-manager`) are software.
    let automation = name.starts_with("system:") || settings.bots.contains(name);
    let kind = if automation {
        ActorKind::Agent
    } else {
        ActorKind::Human
    };
    Some((kind, name.to_string()))
}

fn outcome(item: &Value) -> Option<OutcomeStatus> {
    let code = item.pointer("/responseStatus/code")?.as_i64()?;
    Some(if code >= 400 {
        OutcomeStatus::Failed
    } else {
        OutcomeStatus::Succeeded
    })
}

/// A non-empty string field.
fn text(v: Option<&Value>) -> Option<&str> {
    v.and_then(Value::as_str).filter(|s| !s.is_empty())
}

fn time(v: Option<&Value>) -> Option<i64> {
    parse_micros(v?.as_str()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fixture() -> Value {
        serde_json::from_str(include_str!(
            "../../../tests/fixtures/kubernetes/eventlist.json"
        ))
        .expect("eventlist.json")
    }

    fn place(team: &str, service: &str, environment: &str) -> NamespacePlacement {
        NamespacePlacement {
            team: team.to_string(),
            service: service.to_string(),
            environment: environment.to_string(),
        }
    }

    fn settings() -> KubernetesSettings {
        KubernetesSettings {
            namespaces: BTreeMap::from([
                ("htlogs".to_string(), place("web", "htlogs", "production")),
                (
                    "default".to_string(),
                    place("platform", "sandbox", "staging"),
                ),
                (
                    "citadel".to_string(),
                    place("security", "webapp", "production"),
                ),
                (
                    "openshift-logging".to_string(),
                    place("logging", "clo", "production"),
                ),
            ]),
            default: None,
            agents: BTreeMap::from([(
                "system:serviceaccount:openshift-logging:cluster-logging-operator".to_string(),
                "clo-agent".to_string(),
            )]),
            bots: BTreeSet::new(),
        }
    }

    fn by_id<'a>(events: &'a [ActivityEvent], audit_id: &str) -> &'a ActivityEvent {
        events
            .iter()
            .find(|e| e.source_id.starts_with(audit_id))
            .unwrap_or_else(|| panic!("no event {audit_id}"))
    }

    #[test]
    fn the_real_batch_keeps_finished_writes_in_known_namespaces() {
        let events = map(&fixture(), &settings()).unwrap();
        let summary: Vec<(&str, &str, &str)> = events
            .iter()
            .map(|e| (&e.source_id[..8], e.actor_id.as_str(), e.class.as_str()))
            .collect();
        assert_eq!(
            summary,
            [
                ("b603178c", "kube:admin", "deploy"),
                ("5cbd26ec", "kubernetes-admin", "config_change"),
                ("75380586", "agent-smith", "config_change"),
                ("7876496f", "agent-smith", "infra_delete"),
                ("d1df3fa9", "minikube-user", "config_change"),
                (
                    "f777f446",
                    "system:serviceaccount:openshift-operators-redhat:elasticsearch-operator",
                    "config_change"
                ),
                ("daffa6ef", "clo-agent", "config_change"),
            ]
        );
        assert!(
            events
                .iter()
                .all(|e| e.source == "kubernetes" && e.decision_id.is_none())
        );
    }

    #[test]
    fn a_human_scales_a_deployment() {
        let events = map(&fixture(), &settings()).unwrap();
        let e = by_id(&events, "b603178c");
        assert_eq!(e.source_id, "b603178c-ecbf-4fc4-a9a6-126d2dd9e6c1");
        assert_eq!(e.actor_kind, ActorKind::Human);
        assert_eq!(
            (e.team.as_str(), e.service.as_str(), e.environment.as_str()),
            ("web", "htlogs", "production")
        );
        assert_eq!(e.targets, ["deployments/htlogs/htlogsdeployment/scale"]);
        assert_eq!(e.at, parse_micros("2020-10-12T22:44:12.643025Z").unwrap());
        assert_eq!(e.outcome, Some(OutcomeStatus::Succeeded));
    }

    #[test]
    fn the_impersonated_user_is_the_actor() {
        let events = map(&fixture(), &settings()).unwrap();
        let e = by_id(&events, "75380586");
        assert_eq!(
            (e.actor_kind, e.actor_id.as_str()),
            (ActorKind::Human, "agent-smith")
        );
        assert_eq!(e.targets, ["configmaps/citadel/webapp-config-map"]);
        assert_eq!(e.environment, "production");
    }

    #[test]
    fn service_accounts_and_listed_names_are_agents() {
        let events = map(&fixture(), &settings()).unwrap();
        let sa = by_id(&events, "f777f446");
        assert_eq!(
            (sa.actor_kind, sa.team.as_str()),
            (ActorKind::Agent, "logging")
        );
        let listed = by_id(&events, "daffa6ef");
        assert_eq!(
            (listed.actor_kind, listed.actor_id.as_str()),
            (ActorKind::Agent, "clo-agent")
        );
        // A 409 AlreadyExists: the write was attempted and did not happen.
        assert_eq!(listed.outcome, Some(OutcomeStatus::Failed));

        let mut s = settings();
        s.bots.insert("minikube-user".to_string());
        let events = map(&fixture(), &s).unwrap();
        assert_eq!(by_id(&events, "d1df3fa9").actor_kind, ActorKind::Agent);
    }

    #[test]
    fn other_stages_reads_and_noise_are_skipped() {
        let events = map(&fixture(), &settings()).unwrap();
        // The kubectl edit's RequestReceived and ResponseComplete share an audit id: one event.
        assert_eq!(
            events
                .iter()
                .filter(|e| e.source_id.starts_with("5cbd26ec"))
                .count(),
            1
        );
        // get, list, a forbidden watch (ResponseStarted and ResponseComplete).
        for read in ["78c3e91f", "ba763a8e", "cb5c6bfd"] {
            assert!(
                events.iter().all(|e| !e.source_id.starts_with(read)),
                "{read}"
            );
        }
        // A node's lease renewal is skipped even where a default placement applies.
        let mut s = settings();
        s.default = Some(place("platform", "cluster", "production"));
        let events = map(&fixture(), &s).unwrap();
        assert!(events.iter().all(|e| !e.source_id.starts_with("36dc2d61")));
        // ...and the project deletion in an unlisted namespace now counts.
        let e = by_id(&events, "39382d96");
        assert_eq!(
            (e.class.as_str(), e.actor_kind, e.service.as_str()),
            ("infra_delete", ActorKind::Human, "cluster")
        );
    }

    #[test]
    fn a_forbidden_write_failed() {
        let mut list = fixture();
        let item = &mut list["items"][4];
        assert_eq!(item["auditID"], "75380586-f62d-4bfc-9fa7-5c62f59233b1");
        item["responseStatus"] = json!({"status": "Failure", "reason": "Forbidden", "code": 403});
        let events = map(&list, &settings()).unwrap();
        assert_eq!(
            by_id(&events, "75380586").outcome,
            Some(OutcomeStatus::Failed)
        );

        list["items"][4]["responseStatus"] = Value::Null;
        let events = map(&list, &settings()).unwrap();
        assert_eq!(by_id(&events, "75380586").outcome, None);
    }

    #[test]
    fn classes_follow_the_resource_table() {
        let cases = [
            ("create", "deployments", None, Some("deploy")),
            ("patch", "statefulsets", None, Some("deploy")),
            ("delete", "deployments", None, Some("infra_delete")),
            ("patch", "deployments", Some("scale"), Some("deploy")),
            ("update", "deployments", Some("status"), None),
            ("create", "pods", Some("exec"), None),
            ("delete", "configmaps", None, Some("config_change")),
            ("deletecollection", "secrets", None, Some("config_change")),
            (
                "create",
                "clusterrolebindings",
                None,
                Some("security_policy_change"),
            ),
            (
                "delete",
                "networkpolicies",
                None,
                Some("security_policy_change"),
            ),
            ("create", "services", None, Some("infra_create")),
            (
                "delete",
                "persistentvolumeclaims",
                None,
                Some("infra_delete"),
            ),
            ("patch", "ingresses", None, Some("config_change")),
            ("create", "tokenreviews", None, None),
            ("update", "leases", None, None),
        ];
        for (verb, resource, subresource, expected) in cases {
            let object = Object {
                resource,
                subresource,
                namespace: Some("default"),
                name: Some("x"),
            };
            assert_eq!(
                class(verb, &object),
                expected,
                "{verb} {resource} {subresource:?}"
            );
        }
    }

    #[test]
    fn cluster_scoped_objects_and_missing_times() {
        let mut list = fixture();
        let item = list["items"][0].clone();
        let mut cluster_scoped = item.clone();
        cluster_scoped["objectRef"] = json!({
            "resource": "clusterroles",
            "name": "view",
            "apiGroup": "rbac.authorization.k8s.io",
        });
        let mut no_stage_time = item.clone();
        no_stage_time
            .as_object_mut()
            .unwrap()
            .remove("stageTimestamp");
        no_stage_time["auditID"] = json!("no-stage-time");
        let mut no_time = item;
        no_time["stageTimestamp"] = Value::Null;
        no_time["requestReceivedTimestamp"] = json!("yesterday");
        no_time["auditID"] = json!("no-time");
        list["items"] = json!([cluster_scoped, no_stage_time, no_time]);

        // Without a default, the cluster-scoped write has nowhere to go.
        let events = map(&list, &settings()).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(
            events[0].at,
            parse_micros("2020-10-12T22:44:12.631166Z").unwrap()
        );

        let mut s = settings();
        s.default = Some(place("platform", "cluster", "production"));
        let events = map(&list, &s).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(
            (events[0].class.as_str(), events[0].targets[0].as_str()),
            ("security_policy_change", "clusterroles/view")
        );
    }

    #[test]
    fn only_an_audit_event_list_is_accepted() {
        let cases = [
            (
                json!({"kind": "Event", "apiVersion": "audit.k8s.io/v1", "items": []}),
                "kind",
            ),
            (
                json!({"apiVersion": "audit.k8s.io/v1", "items": []}),
                "kind",
            ),
            (
                json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1beta1", "items": []}),
                "apiVersion",
            ),
            (
                json!({"kind": "EventList", "apiVersion": "v1", "items": []}),
                "apiVersion",
            ),
            (
                json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1"}),
                "items",
            ),
            (
                json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": {}}),
                "items",
            ),
            (json!([]), "kind"),
            (Value::Null, "kind"),
        ];
        for (list, field) in cases {
            let e = map(&list, &settings()).unwrap_err();
            assert_eq!(e.field.as_deref(), Some(field), "{list}: {e}");
            assert_eq!(e.code, "invalid_field");
        }
        let empty = json!({
            "kind": "EventList",
            "apiVersion": "audit.k8s.io/v1",
            "metadata": {},
            "items": null,
        });
        assert!(map(&empty, &settings()).unwrap().is_empty());
    }

    #[test]
    fn every_event_from_the_fixture_is_a_valid_stored_event() {
        let policy = crate::policy::Policy::default();
        let mut s = settings();
        s.default = Some(place("platform", "cluster", "production"));
        let events = map(&fixture(), &s).unwrap();
        assert_eq!(events.len(), 8);
        let now = parse_micros("2030-01-01T00:00:00Z").unwrap();
        for e in events {
            let again =
                crate::activity::validate(e.to_input(), |c| policy.risk.contains_key(c), now)
                    .unwrap_or_else(|err| panic!("{err}: {e:?}"));
            assert_eq!(again, e);
        }
    }

    #[test]
    fn damaged_events_are_skipped_without_panic() {
        let list = fixture();
        let items = list["items"].as_array().unwrap();
        let mut s = settings();
        s.default = Some(place("platform", "cluster", "production"));
        for (i, item) in items.iter().enumerate() {
            for variant in crate::activity::damaged(item) {
                let mut damaged = list.clone();
                damaged["items"][i] = variant;
                let events = map(&damaged, &s).unwrap();
                assert!(
                    events
                        .iter()
                        .all(|e| !e.source_id.is_empty() && !e.actor_id.is_empty())
                );
            }
        }
    }
}
