//! GitHub webhook deliveries as activity: a pure function from one delivery (the
//! `X-GitHub-Event` and `X-GitHub-Delivery` headers, the JSON body as GitHub sends it, the time
//! it arrived) to zero or more [`ActivityEvent`]s. Signature checks and storage are the
//! receiver's; nothing here reads a clock, and no payload, however malformed, makes it panic:
//! a delivery maps as far as its fields go, or to nothing.
//!
//! # What is kept
//!
//! | event | kept when | class |
//! |---|---|---|
//! | `deployment` | `created` (GHES sends no action) | `deploy` |
//! | `deployment_status` | `success`; `failure` or `error` | `deploy`, with the outcome |
//! | `push` | to the default branch | `config_change` |
//! | `pull_request` | `closed`, merged into the default branch | `config_change` |
//! | `workflow_run` | `completed` | `run_tests`, with the outcome |
//! | `release` | `published` | `deploy` |
//! | `branch_protection_rule` | `created`, `edited`, `deleted` | `security_policy_change` |
//! | `repository_ruleset` | `created`, `edited`, `deleted` | `security_policy_change` |
//! | `repository` | settings: `edited`, `renamed`, `privatized`, … | `security_policy_change` |
//!
//! The environment is the deployment's (`production` when GitHub marks it a production
//! environment), `ci` for workflow runs, and [`GithubSettings::default_environment`] for the
//! rest. The actor is a deployment's creator, whoever merged a pull request, a workflow run's
//! triggering actor, and otherwise the sender.
//!
//! Everything else (other events, other actions, pending deployment statuses, pushes to other
//! branches or tags, closed but unmerged pull requests, requested workflow runs, deliveries
//! without a repository) maps to nothing. The classes live in the constants at the top of this
//! file, so that changing one is a one-line change:
//!
//! - A push or a merge to the default branch changes what the service will run, but is not the
//!   rollout itself (that arrives as `deployment` events), so it is a `config_change`, not a
//!   `deploy`. A merged pull request is also a push to the default branch: both are kept, the
//!   pull request for its size and who merged it, the push for changes landed without one.
//! - A workflow run is CI (`run_tests`) in the `ci` environment; a workflow that deploys
//!   shows up again through the deployments it creates.
//! - A published release ships an artifact: `deploy`.
//! - Only a completed workflow run counts (the `requested` delivery of the same run would count
//!   it twice); `cancelled`, `skipped` and `neutral` runs carry no outcome.
//!
//! # Who
//!
//! The actor is a Warden agent when its login, the `[bot]` login's App slug, or the App the
//! action was performed through is listed in [`GithubSettings::agents`] (the actor id is then
//! the agent's id); otherwise an agent when GitHub calls it a `Bot`, its login ends in `[bot]`,
//! or it is listed in [`GithubSettings::bots`]; otherwise a human, by login.
//!
//! # Decision ids
//!
//! A deployment created by an agent Warden allowed may carry the decision in its payload:
//! `POST /repos/{owner}/{repo}/deployments` with `"payload": {"warden_decision_id": "…"}` (an
//! object, or a JSON string holding one). Both the deployment and its statuses then carry the
//! decision id, so a `success` or `failure` from GitHub confirms or contradicts the agent's own
//! outcome report. An id that is not a valid name (1–64 of letters, digits and `- _ . / :`) is
//! ignored rather than stored.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{ActivityEvent, ActorKind};
use crate::clock::parse_micros;
use crate::decision::validate::check_name;
use crate::records::OutcomeStatus;

const SOURCE: &str = "github";
/// Deployments and their final statuses: the rollout itself.
const DEPLOY_CLASS: &str = "deploy";
/// Code landing on the default branch (push or merged pull request).
const CODE_CLASS: &str = "config_change";
/// A completed workflow run.
const WORKFLOW_CLASS: &str = "run_tests";
/// A published release.
const RELEASE_CLASS: &str = "deploy";
/// Branch protection, rulesets and repository settings.
const SETTINGS_CLASS: &str = "security_policy_change";
/// Where workflow runs happen.
const CI_ENVIRONMENT: &str = "ci";
/// The key in a deployment's payload that names the Warden decision behind it.
pub const DECISION_KEY: &str = "warden_decision_id";
/// `repository` actions that change its settings or visibility.
const REPOSITORY_SETTINGS_ACTIONS: [&str; 7] = [
    "edited",
    "renamed",
    "privatized",
    "publicized",
    "archived",
    "unarchived",
    "transferred",
];

/// Where a repository's activity belongs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Placement {
    /// The team that owns the repository.
    pub team: String,
    /// The service the repository builds.
    pub service: String,
}

/// The receiver's settings (from configuration).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GithubSettings {
    /// Team for repositories not listed.
    pub default_team: String,
    /// Per repository full name (`org/repo`): its team and service. An unlisted repository
    /// belongs to `default_team`, and its service is the repository's name.
    pub repositories: BTreeMap<String, Placement>,
    /// Logins that are automation though GitHub calls them `User` (machine accounts).
    pub bots: BTreeSet<String>,
    /// GitHub logins (`my-app[bot]`, a machine user) or App slugs (`my-app`) that are Warden
    /// agents, to the agent's id.
    pub agents: BTreeMap<String, String>,
    /// Environment of what names none: pushes and merges to the default branch, releases and
    /// settings changes (default `production`: the default branch is what production runs).
    #[serde(deserialize_with = "crate::policy::environment_name")]
    pub default_environment: String,
}

impl Default for GithubSettings {
    fn default() -> Self {
        GithubSettings {
            default_team: "unassigned".to_string(),
            repositories: BTreeMap::new(),
            bots: BTreeSet::new(),
            agents: BTreeMap::new(),
            default_environment: "production".to_string(),
        }
    }
}

/// Maps one delivery. `event` is the `X-GitHub-Event` header, `delivery` the
/// `X-GitHub-Delivery` header (the events' `source_id`; several events from one delivery get
/// `#1`, `#2`, …), `received_at` when it arrived (Unix microseconds), used where the payload
/// carries no time. A delivery without an id maps to nothing: it could not be stored once.
pub fn map(
    event: &str,
    delivery: &str,
    payload: &Value,
    settings: &GithubSettings,
    received_at: i64,
) -> Vec<ActivityEvent> {
    if delivery.is_empty() {
        return Vec::new();
    }
    let Some(repo) = Repo::of(payload, settings) else {
        return Vec::new();
    };
    let ctx = Ctx {
        payload,
        settings,
        repo,
        received_at,
    };
    let drafts: Vec<Draft> = match event {
        "deployment" => deployment(&ctx).into_iter().collect(),
        "deployment_status" => deployment_status(&ctx).into_iter().collect(),
        "push" => push(&ctx).into_iter().collect(),
        "pull_request" => pull_request(&ctx).into_iter().collect(),
        "workflow_run" => workflow_run(&ctx).into_iter().collect(),
        "release" => release(&ctx).into_iter().collect(),
        "branch_protection_rule" => rule(&ctx, "rule", "branch_protection_rule")
            .into_iter()
            .collect(),
        "repository_ruleset" => rule(&ctx, "repository_ruleset", "ruleset")
            .into_iter()
            .collect(),
        "repository" => repository(&ctx).into_iter().collect(),
        _ => Vec::new(),
    };
    finish(drafts, delivery, &ctx)
}

/// The repository a delivery is about, placed.
struct Repo {
    full_name: String,
    default_branch: Option<String>,
    team: String,
    service: String,
}

impl Repo {
    fn of(payload: &Value, settings: &GithubSettings) -> Option<Repo> {
        let repository = payload.get("repository")?;
        let full_name = text(repository.get("full_name"))?;
        let name = text(repository.get("name"))
            .or_else(|| full_name.rsplit('/').next())
            .filter(|n| !n.is_empty())?;
        let placement = settings.repositories.get(full_name).or_else(|| {
            // GitHub's names are case-insensitive; configuration may spell them differently.
            settings
                .repositories
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(full_name))
                .map(|(_, p)| p)
        });
        let (team, service) = match placement {
            Some(p) => (p.team.clone(), p.service.clone()),
            None => (settings.default_team.clone(), name.to_string()),
        };
        Some(Repo {
            full_name: full_name.to_string(),
            default_branch: text(repository.get("default_branch")).map(str::to_string),
            team,
            service,
        })
    }

    fn target(&self) -> String {
        format!("repo:{}", self.full_name)
    }

    fn is_default_branch(&self, branch: &str) -> bool {
        self.default_branch.as_deref() == Some(branch)
    }
}

/// One delivery and what it is read against.
struct Ctx<'a> {
    payload: &'a Value,
    settings: &'a GithubSettings,
    repo: Repo,
    received_at: i64,
}

impl Ctx<'_> {
    fn action(&self) -> Option<&str> {
        text(self.payload.get("action"))
    }

    fn sender(&self) -> Option<Actor> {
        actor(self.payload.get("sender"), None, self.settings)
    }

    /// The first of `candidates` that is a time, else the time of arrival.
    fn at(&self, candidates: &[Option<&Value>]) -> i64 {
        candidates
            .iter()
            .find_map(|v| time(*v))
            .unwrap_or(self.received_at)
    }

    fn default_environment(&self) -> String {
        self.settings.default_environment.clone()
    }
}

/// An event before the parts every event of the delivery shares.
struct Draft {
    actor: Actor,
    class: &'static str,
    environment: String,
    targets: Vec<String>,
    change_size: Option<u32>,
    at: i64,
    outcome: Option<OutcomeStatus>,
    decision_id: Option<String>,
}

impl Draft {
    /// A draft with no size, outcome or decision.
    fn new(actor: Actor, class: &'static str, environment: String, at: i64) -> Draft {
        Draft {
            actor,
            class,
            environment,
            targets: Vec::new(),
            change_size: None,
            at,
            outcome: None,
            decision_id: None,
        }
    }
}

struct Actor {
    kind: ActorKind,
    id: String,
}

fn finish(drafts: Vec<Draft>, delivery: &str, ctx: &Ctx<'_>) -> Vec<ActivityEvent> {
    let several = drafts.len() > 1;
    drafts
        .into_iter()
        .enumerate()
        .map(|(i, d)| ActivityEvent {
            source: SOURCE.to_string(),
            source_id: if several {
                format!("{delivery}#{}", i + 1)
            } else {
                delivery.to_string()
            },
            actor_kind: d.actor.kind,
            actor_id: d.actor.id,
            team: ctx.repo.team.clone(),
            class: d.class.to_string(),
            environment: d.environment,
            service: ctx.repo.service.clone(),
            targets: d.targets,
            change_size: d.change_size,
            at: d.at,
            outcome: d.outcome,
            decision_id: d.decision_id,
        })
        .collect()
}

fn deployment(ctx: &Ctx<'_>) -> Option<Draft> {
    // GitHub Enterprise Server sends deployment deliveries without an `action`.
    if !matches!(ctx.action(), None | Some("created")) {
        return None;
    }
    let d = ctx.payload.get("deployment")?;
    let mut draft = deploy_draft(ctx, d, ctx.at(&[d.get("created_at")]))?;
    draft.decision_id = decision_id(d);
    Some(draft)
}

fn deployment_status(ctx: &Ctx<'_>) -> Option<Draft> {
    if !matches!(ctx.action(), None | Some("created")) {
        return None;
    }
    let status = ctx.payload.get("deployment_status")?;
    // Only final states are outcomes; `inactive` means a later deployment replaced this one.
    let outcome = match text(status.get("state"))? {
        "success" => OutcomeStatus::Succeeded,
        "failure" | "error" => OutcomeStatus::Failed,
        _ => return None,
    };
    let d = ctx.payload.get("deployment")?;
    let at = ctx.at(&[status.get("created_at"), status.get("updated_at")]);
    let mut draft = deploy_draft(ctx, d, at)?;
    draft.outcome = Some(outcome);
    draft.decision_id = decision_id(d);
    Some(draft)
}

/// A deploy by the deployment's creator (the status's creator is usually the CD system).
fn deploy_draft(ctx: &Ctx<'_>, d: &Value, at: i64) -> Option<Draft> {
    let who = actor(
        d.get("creator"),
        d.get("performed_via_github_app"),
        ctx.settings,
    )
    .or_else(|| ctx.sender())?;
    let mut draft = Draft::new(who, DEPLOY_CLASS, deployment_environment(ctx, d), at);
    draft.targets.push(ctx.repo.target());
    if let Some(r) = text(d.get("ref")) {
        draft.targets.push(format!("ref:{r}"));
    }
    if let Some(id) = d.get("id").and_then(Value::as_u64) {
        // The id ties a status to its deployment.
        draft.targets.push(format!("deployment:{id}"));
    }
    Some(draft)
}

fn deployment_environment(ctx: &Ctx<'_>, d: &Value) -> String {
    if d.get("production_environment").and_then(Value::as_bool) == Some(true) {
        return "production".to_string();
    }
    text(d.get("environment"))
        .and_then(environment_name)
        .unwrap_or_else(|| ctx.default_environment())
}

fn push(ctx: &Ctx<'_>) -> Option<Draft> {
    let git_ref = text(ctx.payload.get("ref"))?;
    let branch = git_ref.strip_prefix("refs/heads/")?;
    let deleted = ctx.payload.get("deleted").and_then(Value::as_bool) == Some(true);
    if deleted || !ctx.repo.is_default_branch(branch) {
        return None;
    }
    // `pushed_at` is when this push landed; a commit's timestamp is when it was written.
    let at = ctx.at(&[
        ctx.payload.pointer("/repository/pushed_at"),
        ctx.payload.pointer("/head_commit/timestamp"),
    ]);
    let mut draft = Draft::new(ctx.sender()?, CODE_CLASS, ctx.default_environment(), at);
    draft.targets = vec![ctx.repo.target(), format!("ref:{git_ref}")];
    Some(draft)
}

fn pull_request(ctx: &Ctx<'_>) -> Option<Draft> {
    let pr = ctx.payload.get("pull_request")?;
    let merged = pr.get("merged").and_then(Value::as_bool) == Some(true);
    if ctx.action() != Some("closed") || !merged {
        return None;
    }
    let base = text(pr.pointer("/base/ref"))?;
    if !ctx.repo.is_default_branch(base) {
        return None;
    }
    let who = actor(pr.get("merged_by"), None, ctx.settings).or_else(|| ctx.sender())?;
    let at = ctx.at(&[pr.get("merged_at"), pr.get("closed_at")]);
    let mut draft = Draft::new(who, CODE_CLASS, ctx.default_environment(), at);
    draft.change_size = change_size(pr);
    draft.targets = vec![ctx.repo.target(), format!("ref:refs/heads/{base}")];
    if let Some(n) = pr.get("number").and_then(Value::as_u64) {
        draft.targets.push(format!("pull_request:{n}"));
    }
    Some(draft)
}

/// Lines added plus deleted, where the payload has both.
fn change_size(pr: &Value) -> Option<u32> {
    let added = pr.get("additions")?.as_u64()?;
    let deleted = pr.get("deletions")?.as_u64()?;
    Some(u32::try_from(added.saturating_add(deleted)).unwrap_or(u32::MAX))
}

fn workflow_run(ctx: &Ctx<'_>) -> Option<Draft> {
    if ctx.action() != Some("completed") {
        return None;
    }
    let run = ctx.payload.get("workflow_run")?;
    // A re-run is triggered by someone other than the run's original actor.
    let who = actor(run.get("triggering_actor"), None, ctx.settings)
        .or_else(|| actor(run.get("actor"), None, ctx.settings))
        .or_else(|| ctx.sender())?;
    let outcome = match text(run.get("conclusion")) {
        Some("success") => Some(OutcomeStatus::Succeeded),
        Some("failure" | "timed_out" | "startup_failure") => Some(OutcomeStatus::Failed),
        _ => None,
    };
    let at = ctx.at(&[run.get("updated_at"), run.get("run_started_at")]);
    let mut draft = Draft::new(who, WORKFLOW_CLASS, CI_ENVIRONMENT.to_string(), at);
    draft.outcome = outcome;
    draft.targets.push(ctx.repo.target());
    let workflow = text(run.get("path")).or_else(|| text(run.get("name")));
    if let Some(w) = workflow {
        draft.targets.push(format!("workflow:{w}"));
    }
    if let Some(b) = text(run.get("head_branch")) {
        draft.targets.push(format!("ref:refs/heads/{b}"));
    }
    Some(draft)
}

fn release(ctx: &Ctx<'_>) -> Option<Draft> {
    if ctx.action() != Some("published") {
        return None;
    }
    let rel = ctx.payload.get("release")?;
    let at = ctx.at(&[rel.get("published_at"), rel.get("created_at")]);
    let mut draft = Draft::new(ctx.sender()?, RELEASE_CLASS, ctx.default_environment(), at);
    draft.targets.push(ctx.repo.target());
    if let Some(tag) = text(rel.get("tag_name")) {
        draft.targets.push(format!("release:{tag}"));
    }
    Some(draft)
}

/// A branch protection rule or a ruleset: `key` is where the payload holds it, `kind` the
/// target's prefix.
fn rule(ctx: &Ctx<'_>, key: &str, kind: &str) -> Option<Draft> {
    let action = ctx.action()?;
    if !matches!(action, "created" | "edited" | "deleted") {
        return None;
    }
    let rule = ctx.payload.get(key)?;
    // A deleted rule's `updated_at` is its last edit, not the deletion.
    let at = if action == "deleted" {
        ctx.received_at
    } else {
        ctx.at(&[rule.get("updated_at"), rule.get("created_at")])
    };
    let mut draft = Draft::new(ctx.sender()?, SETTINGS_CLASS, ctx.default_environment(), at);
    draft.targets.push(ctx.repo.target());
    if let Some(name) = text(rule.get("name")) {
        draft.targets.push(format!("{kind}:{name}"));
    }
    Some(draft)
}

fn repository(ctx: &Ctx<'_>) -> Option<Draft> {
    let action = ctx.action()?;
    if !REPOSITORY_SETTINGS_ACTIONS.contains(&action) {
        return None;
    }
    let at = ctx.at(&[ctx.payload.pointer("/repository/updated_at")]);
    let mut draft = Draft::new(ctx.sender()?, SETTINGS_CLASS, ctx.default_environment(), at);
    draft.targets.push(ctx.repo.target());
    Some(draft)
}

/// Who a GitHub user object is; `app` is the App an action was performed through, if any.
fn actor(user: Option<&Value>, app: Option<&Value>, settings: &GithubSettings) -> Option<Actor> {
    let user = user?;
    let login = text(user.get("login"))?;
    let app_slug = app.and_then(|a| text(a.get("slug")));
    let bot_slug = login.strip_suffix("[bot]");
    let agent = [Some(login), bot_slug, app_slug]
        .into_iter()
        .flatten()
        .find_map(|name| settings.agents.get(name));
    if let Some(id) = agent {
        return Some(Actor {
            kind: ActorKind::Agent,
            id: id.clone(),
        });
    }
    let is_bot = text(user.get("type")) == Some("Bot")
        || bot_slug.is_some()
        || settings.bots.contains(login);
    Some(Actor {
        kind: if is_bot {
            ActorKind::Agent
        } else {
            ActorKind::Human
        },
        id: login.to_string(),
    })
}

/// The decision id in a deployment's payload, per the convention in the module docs.
fn decision_id(deployment: &Value) -> Option<String> {
    let payload = deployment.get("payload")?;
    // The API takes the payload as an object or as a string of JSON, and echoes either.
    let parsed;
    let object = match payload {
        Value::String(s) => {
            parsed = serde_json::from_str::<Value>(s).ok()?;
            &parsed
        }
        other => other,
    };
    let id = text(object.get(DECISION_KEY))?;
    check_name("decision_id", id, 64).ok()?;
    Some(id.to_string())
}

/// A GitHub environment name as a Warden name: GitHub allows spaces and more; characters
/// outside letters, digits and `- _ . / :` become `-`.
fn environment_name(raw: &str) -> Option<String> {
    let name: String = raw
        .trim()
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_./:".contains(c) {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    (!name.is_empty()).then_some(name)
}

/// A non-empty string field.
fn text(v: Option<&Value>) -> Option<&str> {
    v.and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// An RFC 3339 string, or Unix seconds (push payloads' `pushed_at`), as microseconds.
fn time(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::String(s) => parse_micros(s),
        Value::Number(n) => n.as_i64()?.checked_mul(1_000_000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const RECEIVED: i64 = 1_780_000_000_000_000;

    macro_rules! fixture {
        ($name:literal) => {
            serde_json::from_str::<Value>(include_str!(concat!(
                "../../../tests/fixtures/github/",
                $name
            )))
            .expect($name)
        };
    }

    /// Every fixture with the event header GitHub sends it under.
    fn fixtures() -> Vec<(&'static str, Value)> {
        vec![
            ("deployment", fixture!("deployment.created.json")),
            (
                "deployment",
                fixture!("deployment.created.github-pages.json"),
            ),
            (
                "deployment_status",
                fixture!("deployment_status.created.success.json"),
            ),
            (
                "deployment_status",
                fixture!("deployment_status.created.in_progress.json"),
            ),
            ("push", fixture!("push.default-branch.json")),
            ("push", fixture!("push.tag-created.json")),
            ("push", fixture!("push.tag-deleted.json")),
            (
                "pull_request",
                fixture!("pull_request.closed.unmerged.json"),
            ),
            (
                "workflow_run",
                fixture!("workflow_run.completed.success.json"),
            ),
            (
                "workflow_run",
                fixture!("workflow_run.completed.queued.json"),
            ),
            ("workflow_run", fixture!("workflow_run.requested.json")),
            ("release", fixture!("release.published.json")),
            ("release", fixture!("release.created.json")),
            (
                "branch_protection_rule",
                fixture!("branch_protection_rule.created.json"),
            ),
            (
                "branch_protection_rule",
                fixture!("branch_protection_rule.edited.json"),
            ),
            (
                "branch_protection_rule",
                fixture!("branch_protection_rule.deleted.json"),
            ),
            ("repository", fixture!("repository.edited.json")),
            ("repository", fixture!("repository.privatized.json")),
            ("repository", fixture!("repository.publicized.json")),
            ("repository", fixture!("repository.renamed.json")),
            ("repository", fixture!("repository.created.json")),
            ("star", fixture!("star.created.json")),
            ("deployment", fixture!("ghes-3.5.deployment.json")),
            (
                "deployment_status",
                fixture!("ghes-3.5.deployment_status.json"),
            ),
            ("push", fixture!("ghes-3.5.push.tag-created.json")),
            (
                "pull_request",
                fixture!("ghes-3.5.pull_request.closed.json"),
            ),
            ("release", fixture!("ghes-3.5.release.published.json")),
            (
                "repository",
                fixture!("ghes-3.5.repository.privatized.json"),
            ),
        ]
    }

    fn settings() -> GithubSettings {
        GithubSettings {
            default_team: "platform".to_string(),
            repositories: BTreeMap::from([(
                "Codertocat/Hello-World".to_string(),
                Placement {
                    team: "payments".to_string(),
                    service: "hello".to_string(),
                },
            )]),
            ..GithubSettings::default()
        }
    }

    fn one(event: &str, payload: &Value, settings: &GithubSettings) -> ActivityEvent {
        let mut events = map(event, "d-1", payload, settings, RECEIVED);
        assert_eq!(events.len(), 1, "{event}: {events:?}");
        events.remove(0)
    }

    fn none(event: &str, payload: &Value) {
        let events = map(event, "d-1", payload, &settings(), RECEIVED);
        assert!(events.is_empty(), "{event}: {events:?}");
    }

    fn at(s: &str) -> i64 {
        parse_micros(s).unwrap()
    }

    #[test]
    fn a_deployment_is_a_deploy_by_its_creator() {
        let e = one(
            "deployment",
            &fixture!("deployment.created.json"),
            &settings(),
        );
        assert_eq!(e.source, "github");
        assert_eq!(e.source_id, "d-1");
        assert_eq!(
            (e.actor_kind, e.actor_id.as_str()),
            (ActorKind::Human, "Codertocat")
        );
        assert_eq!((e.team.as_str(), e.service.as_str()), ("payments", "hello"));
        assert_eq!(
            (e.class.as_str(), e.environment.as_str()),
            ("deploy", "production")
        );
        assert_eq!(
            e.targets,
            [
                "repo:Codertocat/Hello-World",
                "ref:master",
                "deployment:145988746"
            ]
        );
        assert_eq!(e.at, at("2019-05-15T15:20:53Z"));
        assert_eq!((e.outcome, e.decision_id), (None, None));
    }

    #[test]
    fn a_bot_deployment_is_an_agent_and_production_environment_wins() {
        let mut payload = fixture!("deployment.created.github-pages.json");
        let e = one("deployment", &payload, &settings());
        assert_eq!(
            (e.actor_kind, e.actor_id.as_str()),
            (ActorKind::Agent, "github-pages[bot]")
        );
        assert_eq!(e.environment, "github-pages");

        payload["deployment"]["production_environment"] = json!(true);
        assert_eq!(
            one("deployment", &payload, &settings()).environment,
            "production"
        );

        payload["deployment"]["production_environment"] = json!(false);
        payload["deployment"]["environment"] = json!("Staging EU");
        assert_eq!(
            one("deployment", &payload, &settings()).environment,
            "staging-eu"
        );
    }

    #[test]
    fn listed_logins_and_app_slugs_are_warden_agents() {
        let payload = fixture!("deployment.created.github-pages.json");
        for name in ["github-pages[bot]", "github-pages"] {
            let mut s = settings();
            s.agents.insert(name.to_string(), "pages-agent".to_string());
            let e = one("deployment", &payload, &s);
            assert_eq!(
                (e.actor_kind, e.actor_id.as_str()),
                (ActorKind::Agent, "pages-agent")
            );
        }

        let mut via_app = fixture!("deployment.created.json");
        via_app["deployment"]["performed_via_github_app"] = json!({"slug": "deployer"});
        let mut s = settings();
        s.agents
            .insert("deployer".to_string(), "agent-7".to_string());
        assert_eq!(one("deployment", &via_app, &s).actor_id, "agent-7");

        // A machine user GitHub calls `User`.
        let mut s = settings();
        s.bots.insert("Codertocat".to_string());
        let e = one("deployment", &fixture!("deployment.created.json"), &s);
        assert_eq!(
            (e.actor_kind, e.actor_id.as_str()),
            (ActorKind::Agent, "Codertocat")
        );
    }

    #[test]
    fn a_deployment_payload_carries_the_decision_id() {
        let mut payload = fixture!("deployment.created.json");
        payload["deployment"]["payload"] = json!({ "warden_decision_id": "dec_01J9" });
        assert_eq!(
            one("deployment", &payload, &settings())
                .decision_id
                .as_deref(),
            Some("dec_01J9")
        );

        // The API also takes the payload as a string of JSON.
        payload["deployment"]["payload"] = json!(r#"{"warden_decision_id":"dec_01J9"}"#);
        assert_eq!(
            one("deployment", &payload, &settings())
                .decision_id
                .as_deref(),
            Some("dec_01J9")
        );

        for bad in [
            json!("not json"),
            json!({"warden_decision_id": 7}),
            json!({"warden_decision_id": "a b"}),
        ] {
            payload["deployment"]["payload"] = bad;
            assert_eq!(one("deployment", &payload, &settings()).decision_id, None);
        }

        let mut status = fixture!("deployment_status.created.success.json");
        status["deployment"]["payload"] = json!({ "warden_decision_id": "dec_01J9" });
        let e = one("deployment_status", &status, &settings());
        assert_eq!(
            (e.decision_id.as_deref(), e.outcome),
            (Some("dec_01J9"), Some(OutcomeStatus::Succeeded))
        );
    }

    #[test]
    fn final_deployment_statuses_are_outcomes() {
        let mut payload = fixture!("deployment_status.created.success.json");
        let e = one("deployment_status", &payload, &settings());
        assert_eq!(
            (e.class.as_str(), e.outcome),
            ("deploy", Some(OutcomeStatus::Succeeded))
        );
        assert_eq!(e.at, at("2019-05-15T15:20:55Z"));
        assert!(e.targets.contains(&"deployment:145988746".to_string()));

        for (state, outcome) in [
            ("failure", OutcomeStatus::Failed),
            ("error", OutcomeStatus::Failed),
        ] {
            payload["deployment_status"]["state"] = json!(state);
            assert_eq!(
                one("deployment_status", &payload, &settings()).outcome,
                Some(outcome)
            );
        }
        for state in ["pending", "queued", "in_progress", "inactive", "exploded"] {
            payload["deployment_status"]["state"] = json!(state);
            none("deployment_status", &payload);
        }
        none(
            "deployment_status",
            &fixture!("deployment_status.created.in_progress.json"),
        );
    }

    #[test]
    fn enterprise_server_deliveries_without_an_action_map() {
        let e = one(
            "deployment",
            &fixture!("ghes-3.5.deployment.json"),
            &settings(),
        );
        assert_eq!(
            (e.class.as_str(), e.at),
            ("deploy", at("2019-05-15T19:38:20Z"))
        );
        let e = one(
            "deployment_status",
            &fixture!("ghes-3.5.deployment_status.json"),
            &settings(),
        );
        assert_eq!(e.outcome, Some(OutcomeStatus::Succeeded));
        let e = one(
            "release",
            &fixture!("ghes-3.5.release.published.json"),
            &settings(),
        );
        assert_eq!(e.at, at("2019-05-15T19:38:20Z"));
        let e = one(
            "repository",
            &fixture!("ghes-3.5.repository.privatized.json"),
            &settings(),
        );
        assert_eq!(e.class, "security_policy_change");
        none("push", &fixture!("ghes-3.5.push.tag-created.json"));
        none(
            "pull_request",
            &fixture!("ghes-3.5.pull_request.closed.json"),
        );
    }

    #[test]
    fn only_pushes_to_the_default_branch_count() {
        let mut payload = fixture!("push.default-branch.json");
        let e = one("push", &payload, &settings());
        assert_eq!(
            (e.class.as_str(), e.environment.as_str()),
            ("config_change", "production")
        );
        assert_eq!(
            e.targets,
            ["repo:Codertocat/Hello-World", "ref:refs/heads/master"]
        );
        assert_eq!(e.at, 1_557_933_657_000_000);
        assert_eq!(e.change_size, None);

        none("push", &fixture!("push.tag-created.json"));
        none("push", &fixture!("push.tag-deleted.json"));
        payload["ref"] = json!("refs/heads/feature");
        none("push", &payload);
        payload["ref"] = json!("refs/heads/master");
        payload["deleted"] = json!(true);
        none("push", &payload);

        // Without `pushed_at`, the head commit's time; without either, the arrival.
        let mut payload = fixture!("push.default-branch.json");
        payload["repository"]["pushed_at"] = Value::Null;
        assert_eq!(
            one("push", &payload, &settings()).at,
            at("2019-05-15T15:19:25Z")
        );
        payload["head_commit"] = Value::Null;
        assert_eq!(one("push", &payload, &settings()).at, RECEIVED);
    }

    #[test]
    fn a_merged_pull_request_counts_its_size_and_merger() {
        let closed = fixture!("pull_request.closed.unmerged.json");
        none("pull_request", &closed);

        let mut merged = closed.clone();
        merged["pull_request"]["merged"] = json!(true);
        merged["pull_request"]["merged_at"] = json!("2019-05-15T15:21:17Z");
        merged["pull_request"]["merged_by"] = json!({"login": "merge-queue[bot]", "type": "Bot"});
        let e = one("pull_request", &merged, &settings());
        assert_eq!(
            (e.actor_kind, e.actor_id.as_str()),
            (ActorKind::Agent, "merge-queue[bot]")
        );
        assert_eq!(
            (e.class.as_str(), e.change_size),
            ("config_change", Some(2))
        );
        assert_eq!(e.at, at("2019-05-15T15:21:17Z"));
        assert_eq!(
            e.targets,
            [
                "repo:Codertocat/Hello-World",
                "ref:refs/heads/master",
                "pull_request:2"
            ]
        );

        // Without `merged_by`, the sender; without sizes, no size.
        merged["pull_request"]["merged_by"] = Value::Null;
        merged["pull_request"]["additions"] = Value::Null;
        let e = one("pull_request", &merged, &settings());
        assert_eq!((e.actor_id.as_str(), e.change_size), ("Codertocat", None));

        merged["pull_request"]["base"]["ref"] = json!("release-1.x");
        none("pull_request", &merged);
    }

    #[test]
    fn a_completed_workflow_run_is_a_test_run_with_its_conclusion() {
        let mut payload = fixture!("workflow_run.completed.success.json");
        let e = one("workflow_run", &payload, &settings());
        assert_eq!(
            (e.class.as_str(), e.environment.as_str()),
            ("run_tests", "ci")
        );
        assert_eq!(
            (e.team.as_str(), e.service.as_str()),
            ("platform", "octo-repo")
        );
        assert_eq!(e.outcome, Some(OutcomeStatus::Succeeded));
        assert_eq!(e.at, at("2020-10-05T16:33:49Z"));
        assert!(
            e.targets
                .contains(&"workflow:.github/workflows/test.yml".to_string())
        );

        for (conclusion, outcome) in [
            (json!("failure"), Some(OutcomeStatus::Failed)),
            (json!("timed_out"), Some(OutcomeStatus::Failed)),
            (json!("cancelled"), None),
            (Value::Null, None),
        ] {
            payload["workflow_run"]["conclusion"] = conclusion;
            assert_eq!(one("workflow_run", &payload, &settings()).outcome, outcome);
        }

        // A re-run belongs to whoever triggered it.
        payload["workflow_run"]["triggering_actor"] = json!({"login": "alice", "type": "User"});
        assert_eq!(one("workflow_run", &payload, &settings()).actor_id, "alice");

        // An older payload with neither actor field falls back to the sender.
        let e = one(
            "workflow_run",
            &fixture!("workflow_run.completed.queued.json"),
            &settings(),
        );
        assert_eq!((e.actor_id.as_str(), e.outcome), ("Codertocat", None));

        none("workflow_run", &fixture!("workflow_run.requested.json"));
    }

    #[test]
    fn a_published_release_is_a_deploy() {
        let e = one("release", &fixture!("release.published.json"), &settings());
        assert_eq!(
            (e.class.as_str(), e.environment.as_str()),
            ("deploy", "production")
        );
        assert_eq!(e.targets, ["repo:Codertocat/Hello-World", "release:0.0.1"]);
        assert_eq!(e.at, at("2019-05-15T15:20:53Z"));
        none("release", &fixture!("release.created.json"));

        let mut s = settings();
        s.default_environment = "prod".to_string();
        assert_eq!(
            one("release", &fixture!("release.published.json"), &s).environment,
            "prod"
        );
    }

    #[test]
    fn protection_rules_and_repository_settings_are_security_policy_changes() {
        for (name, payload) in [
            ("created", fixture!("branch_protection_rule.created.json")),
            ("edited", fixture!("branch_protection_rule.edited.json")),
            ("deleted", fixture!("branch_protection_rule.deleted.json")),
        ] {
            let e = one("branch_protection_rule", &payload, &settings());
            assert_eq!(e.class, "security_policy_change", "{name}");
            assert_eq!(
                e.targets,
                [
                    "repo:octo-org/octo-repo",
                    "branch_protection_rule:production"
                ]
            );
            let expected = if name == "deleted" {
                RECEIVED
            } else {
                at("2021-08-19T16:16:32Z")
            };
            assert_eq!(e.at, expected, "{name}");
        }

        for payload in [
            fixture!("repository.edited.json"),
            fixture!("repository.privatized.json"),
            fixture!("repository.publicized.json"),
            fixture!("repository.renamed.json"),
        ] {
            let e = one("repository", &payload, &settings());
            assert_eq!(
                (e.class.as_str(), e.actor_id.as_str()),
                ("security_policy_change", "Codertocat")
            );
        }
        none("repository", &fixture!("repository.created.json"));
    }

    #[test]
    fn a_repository_ruleset_change_maps_like_a_protection_rule() {
        // The package has no `repository_ruleset` example: a real `repository` delivery with the
        // ruleset object GitHub documents for the event.
        let mut payload = fixture!("repository.edited.json");
        payload["action"] = json!("edited");
        payload["repository_ruleset"] =
            json!({"id": 42, "name": "main", "updated_at": "2024-05-01T10:00:00.000+02:00"});
        let e = one("repository_ruleset", &payload, &settings());
        assert_eq!(e.class, "security_policy_change");
        assert_eq!(e.targets, ["repo:Octocoders/Hello-World", "ruleset:main"]);
        assert_eq!(e.at, at("2024-05-01T08:00:00Z"));

        // An organisation's ruleset has no repository to place it in.
        payload.as_object_mut().unwrap().remove("repository");
        none("repository_ruleset", &payload);
    }

    #[test]
    fn other_events_and_actions_map_to_nothing() {
        none("star", &fixture!("star.created.json"));
        none("issues", &fixture!("star.created.json"));
        none("", &fixture!("deployment.created.json"));
        let mut payload = fixture!("deployment.created.json");
        payload["action"] = json!("deleted");
        none("deployment", &payload);
        assert!(
            map(
                "deployment",
                "",
                &fixture!("deployment.created.json"),
                &settings(),
                RECEIVED
            )
            .is_empty()
        );
    }

    #[test]
    fn several_events_from_one_delivery_get_numbered_ids() {
        let payload = fixture!("deployment.created.json");
        let ctx = Ctx {
            payload: &payload,
            settings: &settings(),
            repo: Repo::of(&payload, &settings()).unwrap(),
            received_at: RECEIVED,
        };
        let draft = || deployment(&ctx).unwrap();
        let ids: Vec<String> = finish(vec![draft(), draft()], "d-9", &ctx)
            .into_iter()
            .map(|e| e.source_id)
            .collect();
        assert_eq!(ids, ["d-9#1", "d-9#2"]);
    }

    #[test]
    fn every_event_from_the_fixtures_is_a_valid_stored_event() {
        let policy = crate::policy::Policy::default();
        let mut s = settings();
        s.agents
            .insert("github-pages[bot]".to_string(), "pages-agent".to_string());
        let mut mapped = 0;
        for (event, payload) in fixtures() {
            for e in map(
                event,
                "72d3162e-cc78-11e3-81ab-4c9367dc0958",
                &payload,
                &s,
                RECEIVED,
            ) {
                let again = crate::activity::validate(
                    e.to_input(),
                    |c| policy.risk.contains_key(c),
                    RECEIVED,
                )
                .unwrap_or_else(|err| panic!("{event}: {err}: {e:?}"));
                assert_eq!(again, e);
                mapped += 1;
            }
        }
        assert_eq!(mapped, 18);
    }

    #[test]
    fn damaged_payloads_never_panic() {
        let events = [
            "deployment",
            "deployment_status",
            "push",
            "pull_request",
            "workflow_run",
            "release",
            "branch_protection_rule",
            "repository_ruleset",
            "repository",
            "star",
        ];
        for (event, payload) in fixtures() {
            let mut variants = crate::activity::damaged(&payload);
            // One level down too: the object each event reads from.
            if let Value::Object(top) = &payload {
                for (key, inner) in top {
                    for broken in crate::activity::damaged(inner) {
                        let mut copy = payload.clone();
                        copy[key] = broken;
                        variants.push(copy);
                    }
                }
            }
            for variant in &variants {
                for e in map(event, "d-1", variant, &settings(), RECEIVED) {
                    assert!(!e.actor_id.is_empty() && !e.team.is_empty() && !e.service.is_empty());
                }
            }
            for other in events {
                map(other, "d-1", &payload, &settings(), RECEIVED);
            }
        }
    }
}
