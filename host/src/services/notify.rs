//! The notification outbox. An event (`approval.requested`, `violation.flagged`, …) becomes one
//! delivery row per matching webhook endpoint, written in the same transaction as the change
//! that caused it, so an event exists exactly when its change does. A worker in every replica
//! claims due deliveries, POSTs them signed with HMAC-SHA256, and retries failures with
//! exponential backoff and jitter; a delivery that keeps failing is parked (visible in
//! `GET /v1/webhooks/deliveries`) and never holds up the others. Nothing lives only in memory:
//! a restart picks up where the rows say.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng as _;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::Notify;

use crate::clock::SharedClock;
use serde::Deserialize;

use crate::records::{Delivery, DeliveryStatus};
use crate::records::{Event, EventAction, EventData, EventType};
use crate::store::{Change, DeliveryWrite, Store, Write};

/// `[notifications]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotificationsConfig {
    /// Base URL people reach Warden at, for links in messages (e.g. `https://warden.example.com`).
    pub public_url: String,
    /// Attempts before a delivery is parked.
    pub max_attempts: u32,
    /// First retry delay, ms; doubles each attempt (with jitter) up to `max_backoff_ms`.
    pub initial_backoff_ms: u64,
    /// Longest retry delay, ms.
    pub max_backoff_ms: u64,
    /// How often a replica looks for due deliveries (it is also woken by its own events), ms.
    pub poll_interval_ms: u64,
    /// Per-request timeout, ms.
    pub timeout_ms: u64,
}

impl Default for NotificationsConfig {
    fn default() -> Self {
        NotificationsConfig {
            public_url: "http://127.0.0.1:8080".into(),
            max_attempts: 12,
            initial_backoff_ms: 1000,
            max_backoff_ms: 600_000,
            poll_interval_ms: 1000,
            timeout_ms: 5000,
        }
    }
}

/// One `[[webhooks]]` endpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Name, shown in deliveries.
    pub name: String,
    /// Where to POST.
    pub url: String,
    /// `warden` (Warden's JSON event) or `slack` (an incoming-webhook message).
    #[serde(default)]
    pub format: WebhookFormat,
    /// Event types to send (`approval.requested`, …); empty for all.
    #[serde(default)]
    pub events: Vec<EventType>,
    /// Environment variable holding the HMAC-SHA256 signing secret (preferred over `secret`).
    #[serde(default)]
    pub secret_env: Option<String>,
    /// The signing secret itself (keep it out of files you share; prefer `secret_env`).
    #[serde(default, skip_serializing)]
    pub secret: Option<String>,
}

/// A webhook's body format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookFormat {
    /// `{"id", "type", "at", "data"}`.
    #[default]
    Warden,
    /// Slack incoming-webhook: `text` and `blocks`.
    Slack,
}

/// The configured endpoints, and the bell that wakes this replica's worker.
#[derive(Debug)]
pub struct Outbox {
    endpoints: Vec<WebhookConfig>,
    settings: NotificationsConfig,
    wake: Notify,
}

impl Outbox {
    /// An outbox for these endpoints.
    pub fn new(endpoints: Vec<WebhookConfig>, settings: NotificationsConfig) -> Outbox {
        Outbox {
            endpoints,
            settings,
            wake: Notify::new(),
        }
    }

    /// The delivery rows for an event, one per endpoint that wants it; add them to the change
    /// that caused the event.
    pub fn writes(&self, event: &Event, now: i64) -> Vec<Write> {
        self.endpoints
            .iter()
            .filter(|e| e.events.is_empty() || e.events.contains(&event.event_type))
            .map(|e| {
                Write::Delivery(DeliveryWrite::InsertDelivery(Delivery {
                    id: uuid::Uuid::now_v7().to_string(),
                    event_id: event.id.clone(),
                    event_type: event.event_type,
                    endpoint: e.name.clone(),
                    body: render(event, e.format, &self.settings.public_url),
                    status: DeliveryStatus::Pending,
                    attempts: 0,
                    next_attempt_at: now,
                    last_error: None,
                    created_at: now,
                    delivered_at: None,
                }))
            })
            .collect()
    }

    /// Tells this replica's worker that deliveries were committed.
    pub fn notify(&self) {
        self.wake.notify_one();
    }
}

/// The secret an endpoint signs with, from its `secret_env` variable or its `secret`.
fn secret_of(e: &WebhookConfig) -> Option<String> {
    match &e.secret_env {
        Some(var) => std::env::var(var).ok(),
        None => e.secret.clone(),
    }
    .filter(|s| !s.is_empty())
}

/// Refuses a webhook configuration that would fail quietly: unnamed or duplicate endpoints, a URL
/// that is not http(s), a `warden`-format endpoint without a signing secret (its receiver could
/// not tell forged events), or settings that cannot deliver. (An unknown event type does not
/// parse.)
pub fn check(endpoints: &[WebhookConfig], settings: &NotificationsConfig) -> anyhow::Result<()> {
    let mut names = std::collections::HashSet::new();
    for e in endpoints {
        anyhow::ensure!(
            !e.name.is_empty() && names.insert(e.name.as_str()),
            "webhooks: every endpoint needs a unique name (`{}`)",
            e.name
        );
        anyhow::ensure!(
            e.url.starts_with("http://") || e.url.starts_with("https://"),
            "webhooks.{}.url must be an http(s) URL, not `{}`",
            e.name,
            e.url
        );
        // Warden's own format is for receivers that verify it; Slack checks its URL instead.
        anyhow::ensure!(
            e.format == WebhookFormat::Slack || secret_of(e).is_some(),
            "webhooks.{}: no signing secret (set secret_env to an environment variable that holds one, or secret)",
            e.name
        );
    }
    anyhow::ensure!(
        settings.max_attempts >= 1,
        "notifications.max_attempts must be at least 1"
    );
    anyhow::ensure!(
        settings.timeout_ms >= 100,
        "notifications.timeout_ms must be at least 100"
    );
    anyhow::ensure!(
        settings.initial_backoff_ms >= 1 && settings.max_backoff_ms >= settings.initial_backoff_ms,
        "notifications: 1 ≤ initial_backoff_ms ≤ max_backoff_ms"
    );
    Ok(())
}

/// Escapes text for Slack's mrkdwn, so an agent's words cannot become links or mentions.
fn slack_text(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A list of texts (a rollback's reasons) for a message.
fn joined(texts: &[String]) -> String {
    slack_text(&texts.join("; "))
}

/// The body for an endpoint's format.
fn render(event: &Event, format: WebhookFormat, public_url: &str) -> String {
    match format {
        WebhookFormat::Warden => serde_json::to_string(event).unwrap_or_default(),
        WebhookFormat::Slack => {
            let title = slack_title(&event.data);
            let mut detail = Vec::new();
            if let EventData::ApprovalRequested {
                reasoning,
                plan,
                risk,
                ..
            } = &event.data
            {
                if let Some(r) = reasoning {
                    detail.push(format!("*Reasoning:* {}", slack_text(r)));
                }
                if let Some(p) = plan.as_ref().filter(|p| !p.is_null()) {
                    let plan = p
                        .as_str()
                        .map(String::from)
                        .unwrap_or_else(|| p.to_string());
                    detail.push(format!(
                        "*Plan:* {}",
                        slack_text(&plan.chars().take(1500).collect::<String>())
                    ));
                }
                detail.push(format!("*Risk:* {}", risk.level.as_str()));
            }
            if let EventData::ReportReady { url, .. } = &event.data {
                detail.push(format!("<{}|Open the report>", slack_text(url)));
            }
            let approval = match &event.data {
                EventData::ApprovalRequested { approval_id, .. }
                | EventData::ApprovalDecided { approval_id, .. }
                | EventData::ApprovalExpired { approval_id, .. } => Some(approval_id),
                // A guard's review is an approval request too.
                EventData::GuardReviewRequested { review_id, .. } => Some(review_id),
                _ => None,
            };
            if let Some(id) = approval {
                // Approval ids are Warden's own UUIDs; the page lists pending requests.
                detail.push(format!(
                    "<{}/ui/approvals#{}|Open the approvals page>",
                    public_url.trim_end_matches('/'),
                    slack_text(id)
                ));
            }
            let mut blocks = vec![
                serde_json::json!({"type": "section", "text": {"type": "mrkdwn", "text": title}}),
            ];
            if !detail.is_empty() {
                blocks.push(serde_json::json!({"type": "section", "text": {"type": "mrkdwn", "text": detail.join("\n")}}));
            }
            blocks.push(serde_json::json!({"type": "context", "elements": [{"type": "mrkdwn", "text": format!("{} · {}", event.event_type, event.at)}]}));
            serde_json::json!({"text": title, "blocks": blocks}).to_string()
        }
    }
}

/// A Slack message's first line, from the event's own fields.
fn slack_title(data: &EventData) -> String {
    let t = slack_text;
    // Every event but two is about an action: who did what, on what, where.
    let what = |a: &EventAction| (t(&a.agent), t(&a.class), t(&a.service), t(&a.environment));
    match data {
        EventData::ApprovalRequested { action, .. } => {
            let (agent, class, service, env) = what(action);
            format!("Approval needed: *{agent}* wants to {class} `{service}` in *{env}*")
        }
        EventData::ApprovalDecided {
            status,
            decided_by,
            action,
            ..
        } => {
            let (agent, class, service, env) = what(action);
            format!(
                "Approval {status} by {}: {agent} {class} `{service}` in {env}",
                t(decided_by)
            )
        }
        EventData::ApprovalExpired { action, .. } => {
            let (agent, class, service, env) = what(action);
            format!("Approval expired undecided: {agent} {class} `{service}` in {env}")
        }
        EventData::ViolationFlagged {
            action,
            mode,
            reason,
            ..
        } => {
            let (agent, class, service, env) = what(action);
            format!(
                "Policy violation ({}): *{agent}* {class} `{service}` in {env} — {reason}",
                mode.as_str()
            )
        }
        EventData::RollbackRequested { action, reasons } => {
            let (agent, class, service, env) = what(action);
            format!(
                "Rollback requested: {agent} {class} `{service}` in *{env}* — {}",
                joined(reasons)
            )
        }
        EventData::GuardReviewRequested { action, why, .. } => {
            let (agent, class, service, env) = what(action);
            format!(
                "Review needed: *{agent}*'s {class} of `{service}` in *{env}* is held — {}",
                t(why)
            )
        }
        EventData::RollbackTriggerFailing {
            action, reasons, ..
        } => {
            let (agent, class, service, env) = what(action);
            format!(
                "Rollback trigger failing: the watch of {agent} {class} `{service}` in {env} — {}",
                joined(reasons)
            )
        }
        EventData::TierChanged { change: c, .. } => format!(
            "Tier change: *{}* tier {} → {} ({}) — {}",
            t(&c.agent),
            c.from,
            c.to,
            t(&c.reason),
            t(&c.text)
        ),
        EventData::ReportReady {
            week,
            scope,
            summary,
            ..
        } => format!("Weekly report {} ({}): {}", t(week), t(scope), t(summary)),
    }
}

/// HMAC-SHA256 (RFC 2104).
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// The `x-warden-signature` value: `v1=` and the hex HMAC of `"{timestamp}.{body}"`, so a
/// receiver can check both the body and its freshness.
pub fn signature(secret: &str, timestamp: i64, body: &str) -> String {
    format!(
        "v1={}",
        hex::encode(hmac_sha256(
            secret.as_bytes(),
            format!("{timestamp}.{body}").as_bytes()
        ))
    )
}

/// Delay before attempt `attempts + 1`: exponential, capped, with jitter (50–100%) so that
/// retries from many deliveries do not arrive together.
fn backoff(settings: &NotificationsConfig, attempts: i64) -> Duration {
    let exp = settings
        .initial_backoff_ms
        .saturating_mul(1u64 << attempts.clamp(0, 30));
    let capped = exp.min(settings.max_backoff_ms);
    let jittered = capped / 2 + rand::rng().random_range(0..=capped / 2);
    Duration::from_millis(jittered)
}

/// Delivers due deliveries until the store closes.
pub async fn run(outbox: Arc<Outbox>, store: Store, clock: SharedClock) {
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_millis(outbox.settings.timeout_ms))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            return tracing::error!(error = %e, "cannot build the webhook client; notifications are off");
        }
    };
    let poll = Duration::from_millis(outbox.settings.poll_interval_ms.max(10));
    while !store.is_closed() {
        // Only endpoints this replica knows: during a rolling configuration change, another
        // replica's new endpoint waits for a replica that has it.
        let names: Vec<String> = outbox.endpoints.iter().map(|e| e.name.clone()).collect();
        match store.due_deliveries(clock.now_micros(), &names, 256).await {
            Ok(due) => {
                // Each attempt on its own task: a slow endpoint never holds up the others' rounds.
                let mut attempts = tokio::task::JoinSet::new();
                for d in due {
                    attempts.spawn(attempt(
                        outbox.clone(),
                        store.clone(),
                        client.clone(),
                        clock.clone(),
                        d,
                    ));
                }
                while attempts.join_next().await.is_some() {}
            }
            Err(e) if !store.is_closed() => {
                tracing::warn!(error = %e, "cannot read due deliveries")
            }
            Err(_) => return,
        }
        let _ = tokio::time::timeout(poll, outbox.wake.notified()).await;
    }
}

async fn attempt(
    outbox: Arc<Outbox>,
    store: Store,
    client: reqwest::Client,
    clock: SharedClock,
    d: Delivery,
) {
    let now = clock.now_micros();
    // Long enough for the request; if this replica dies mid-attempt, another retries after it.
    let claim_for = (outbox.settings.timeout_ms as i64 + 1_000) * 1000;
    let claim = now + claim_for;
    if store
        .commit(Change {
            writes: vec![Write::Delivery(DeliveryWrite::ClaimDelivery {
                id: d.id.clone(),
                now,
                until: claim,
            })],
            audit: vec![],
        })
        .await
        .is_err()
    {
        return; // Another replica has it, or it was just delivered.
    }
    let Some(endpoint) = outbox.endpoints.iter().find(|e| e.name == d.endpoint) else {
        return; // Not selected (see `run`); the claim lapses.
    };
    let timestamp = now / 1_000_000;
    let mut request = client
        .post(&endpoint.url)
        .header("content-type", "application/json")
        .header("user-agent", concat!("warden/", env!("CARGO_PKG_VERSION")))
        .header("x-warden-event", d.event_type.as_str())
        .header("x-warden-event-id", &d.event_id)
        .header("x-warden-delivery", &d.id)
        .header("x-warden-timestamp", timestamp.to_string());
    // Only a Slack endpoint may have no secret; it gets no signature rather than one anyone
    // could make.
    if let Some(secret) = secret_of(endpoint) {
        request = request.header("x-warden-signature", signature(&secret, timestamp, &d.body));
    }
    let result = request.body(d.body.clone()).send().await;
    let attempts = d.attempts + 1;
    let error = match result {
        Ok(r) if r.status().is_success() => None,
        Ok(r) => Some(format!("HTTP {}", r.status())),
        Err(e) => Some(format!("{e}")),
    };
    let status = match &error {
        None => DeliveryStatus::Delivered,
        Some(e) if attempts >= i64::from(outbox.settings.max_attempts) => {
            tracing::warn!(delivery = %d.id, endpoint = %d.endpoint, error = %e, attempts, "webhook delivery parked");
            DeliveryStatus::Parked
        }
        Some(e) => {
            tracing::debug!(delivery = %d.id, endpoint = %d.endpoint, error = %e, attempts, "webhook delivery failed; will retry");
            DeliveryStatus::Pending
        }
    };
    let now = clock.now_micros();
    let wait = if status == DeliveryStatus::Pending {
        backoff(&outbox.settings, attempts - 1).as_micros() as i64
    } else {
        0
    };
    let write = Write::Delivery(DeliveryWrite::DeliveryAttempted {
        id: d.id.clone(),
        status,
        attempts,
        next_attempt_at: now + wait,
        last_error: error,
        at: now,
        claim,
    });
    if let Err(e) = store
        .commit(Change {
            writes: vec![write],
            audit: vec![],
        })
        .await
    {
        // The claim lapses and another attempt follows: delivery is at least once.
        tracing::warn!(delivery = %d.id, error = %e, "cannot record a webhook attempt");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        // RFC 4231, test cases 1 and 2.
        let one = hmac_sha256(&[0x0b; 20], b"Hi There");
        assert_eq!(
            hex::encode(one),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        let two = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(two),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn a_ready_report_reaches_slack_as_its_headline_and_a_link() {
        let EventData::ReportReady { agents, humans, .. } = sample(EventType::ReportReady) else {
            unreachable!()
        };
        let event = Event::new(
            0,
            EventData::ReportReady {
                week: "2027-W01".into(),
                scope: "team:web".into(),
                summary: "In 2027-W01, AI agents made 4 production changes (failure rate 25.0%) and humans made 3 (failure rate 33.3%).".into(),
                activity: true,
                agents,
                humans,
                url: "https://warden.example/ui/reports/2027-W01?scope=team:web".into(),
            },
        );
        let body: serde_json::Value =
            serde_json::from_str(&render(&event, WebhookFormat::Slack, "https://w")).unwrap();
        let text = body["text"].as_str().unwrap();
        assert!(
            text.starts_with("Weekly report 2027-W01 (team:web): In 2027-W01, AI agents made 4"),
            "{text}"
        );
        let detail = body["blocks"][1]["text"]["text"].as_str().unwrap();
        assert_eq!(
            detail,
            "<https://warden.example/ui/reports/2027-W01?scope=team:web|Open the report>"
        );
    }

    #[test]
    fn slack_messages_escape_what_agents_write() {
        let mut data = sample(EventType::ApprovalRequested);
        if let EventData::ApprovalRequested { reasoning, .. } = &mut data {
            *reasoning = Some("<!channel> see <https://evil|here> & act".into());
        }
        let event = Event::new(0, data);
        let body = render(&event, WebhookFormat::Slack, "https://w");
        assert!(
            !body.contains("<!channel>") && !body.contains("<https://evil"),
            "{body}"
        );
        assert!(
            body.contains("&lt;!channel&gt;") && body.contains("&amp; act"),
            "{body}"
        );
    }

    #[test]
    fn webhook_settings_are_checked() {
        let hook = |name: &str, secret: Option<&str>| WebhookConfig {
            name: name.into(),
            url: "https://hooks.example.com/x".into(),
            format: WebhookFormat::Warden,
            events: vec![],
            secret_env: None,
            secret: secret.map(String::from),
        };
        let settings = NotificationsConfig::default();
        assert!(check(&[hook("a", Some("s"))], &settings).is_ok());
        assert!(
            check(&[hook("a", None)], &settings)
                .unwrap_err()
                .to_string()
                .contains("no signing secret")
        );
        let slack = WebhookConfig {
            format: WebhookFormat::Slack,
            ..hook("s", None)
        };
        assert!(check(&[slack], &settings).is_ok());
        assert!(
            check(&[hook("a", Some("s")), hook("a", Some("t"))], &settings)
                .unwrap_err()
                .to_string()
                .contains("unique name")
        );
        let mut ftp = hook("a", Some("s"));
        ftp.url = "ftp://x".into();
        assert!(check(&[ftp], &settings).is_err());
        let mut missing_env = hook("a", None);
        missing_env.secret_env = Some("WARDEN_TEST_NO_SUCH_VARIABLE".into());
        assert!(check(&[missing_env], &settings).is_err());
    }

    /// A filter may name every event Warden sends (`report.ready` was once refused), and a
    /// misspelt one stops the configuration from loading, naming what it could have been.
    #[test]
    fn a_webhook_filter_names_events_that_exist() {
        let names: Vec<String> = EventType::ALL.iter().map(|t| format!("\"{t}\"")).collect();
        let every: WebhookConfig = toml::from_str(&format!(
            "name = \"all\"\nurl = \"https://x\"\nsecret = \"s\"\nevents = [{}]",
            names.join(", ")
        ))
        .unwrap();
        assert_eq!(every.events, EventType::ALL);
        assert!(check(&[every], &NotificationsConfig::default()).is_ok());
        let typo = toml::from_str::<WebhookConfig>(
            "name = \"a\"\nurl = \"https://x\"\nevents = [\"approval.requestd\"]",
        )
        .unwrap_err()
        .to_string();
        assert!(
            typo.contains("approval.requestd") && typo.contains("report.ready"),
            "{typo}"
        );
    }

    /// An event of each type, about the same action.
    fn sample(t: EventType) -> EventData {
        let action = EventAction {
            decision_id: "d1".into(),
            agent: "bot".into(),
            class: "deploy".into(),
            environment: "production".into(),
            service: "payments".into(),
        };
        let reasons = vec!["error rate 4% over 1%".to_string(), "p99 up 3x".to_string()];
        match t {
            EventType::ApprovalRequested => EventData::ApprovalRequested {
                approval_id: "a1".into(),
                expires_at: "2027-01-01T00:00:00Z".into(),
                action,
                on_behalf_of: None,
                risk: crate::decision::Risk {
                    level: crate::policy::RiskLevel::High,
                    score: 80,
                    categories: vec![],
                },
                anomaly: None,
                reasoning: Some("retry <fix>".into()),
                plan: None,
                tier: 2,
            },
            EventType::ApprovalDecided => EventData::ApprovalDecided {
                approval_id: "a1".into(),
                status: crate::records::ApprovalStatus::Approved,
                decided_by: "alice".into(),
                approved_by: vec!["alice".into()],
                comment: None,
                action,
            },
            EventType::ApprovalExpired => EventData::ApprovalExpired {
                approval_id: "a1".into(),
                action,
                expires_at: "2027-01-01T00:00:00Z".into(),
            },
            EventType::ViolationFlagged => EventData::ViolationFlagged {
                violation_id: "v1".into(),
                action,
                mode: crate::policy::ViolationMode::Flag,
                reason: crate::records::ViolationReason::ALL[0],
            },
            EventType::RollbackRequested => EventData::RollbackRequested { action, reasons },
            EventType::GuardReviewRequested => EventData::GuardReviewRequested {
                review_id: "r1".into(),
                action,
                why: "inconclusive canary".into(),
            },
            EventType::RollbackTriggerFailing => EventData::RollbackTriggerFailing {
                action,
                errors_in_a_row: 3,
                reasons,
            },
            EventType::TierChanged => EventData::TierChanged {
                change: crate::records::TierChange {
                    id: "t1".into(),
                    agent: "bot".into(),
                    at: "2027-01-01T00:00:00Z".into(),
                    from: 2,
                    to: 1,
                    reason: "rollbacks".into(),
                    text: "two rollbacks".into(),
                    actor: "warden".into(),
                    score: Some(0.4),
                    evidence: serde_json::json!({}),
                },
                status: crate::identity::AgentStatus::Active,
            },
            EventType::ReportReady => EventData::ReportReady {
                week: "2027-W01".into(),
                scope: "all".into(),
                summary: "4 changes".into(),
                activity: true,
                agents: crate::records::ReportFigures {
                    changes: 4,
                    failure_rate: None,
                },
                humans: crate::records::ReportFigures {
                    changes: 9,
                    failure_rate: Some(0.1),
                },
                url: "https://w/ui/reports/2027-W01?scope=all".into(),
            },
        }
    }

    /// Each event is sent as its own type, and reads as itself in Slack, from its own fields.
    #[test]
    fn every_event_has_its_own_slack_message() {
        let mut titles = std::collections::HashSet::new();
        for &t in EventType::ALL {
            let event = Event::new(0, sample(t));
            assert_eq!(event.event_type, t);
            let warden: serde_json::Value =
                serde_json::from_str(&render(&event, WebhookFormat::Warden, "https://w")).unwrap();
            assert_eq!(warden["type"], t.as_str());
            let body: serde_json::Value =
                serde_json::from_str(&render(&event, WebhookFormat::Slack, "https://w")).unwrap();
            let title = body["text"].as_str().unwrap().to_string();
            assert!(!title.contains('?'), "{t}: {title}");
            assert!(titles.insert(title.clone()), "{t} repeats {title}");
        }
        let failing = Event::new(0, sample(EventType::RollbackTriggerFailing));
        let body = render(&failing, WebhookFormat::Slack, "https://w");
        assert!(body.contains("error rate 4% over 1%; p99 up 3x"), "{body}");
        let asked = Event::new(0, sample(EventType::ApprovalRequested));
        let body = render(&asked, WebhookFormat::Slack, "https://w/");
        for part in [
            "*Reasoning:* retry &lt;fix&gt;",
            "*Risk:* high",
            "https://w/ui/approvals#a1",
        ] {
            assert!(body.contains(part), "{part}: {body}");
        }
        // A guard's review is decided on the approvals page too.
        let held = Event::new(0, sample(EventType::GuardReviewRequested));
        let body = render(&held, WebhookFormat::Slack, "https://w");
        assert!(body.contains("https://w/ui/approvals#r1"), "{body}");
    }

    /// Absent values are sent as `null`: a receiver sees every documented field, always.
    #[test]
    fn absent_values_are_sent_as_null() {
        let event = Event::new(0, sample(EventType::ApprovalRequested));
        let body: serde_json::Value =
            serde_json::from_str(&render(&event, WebhookFormat::Warden, "https://w")).unwrap();
        let data = body["data"].as_object().unwrap();
        for key in ["on_behalf_of", "anomaly", "plan"] {
            assert_eq!(data.get(key), Some(&serde_json::Value::Null), "{key}");
        }
        assert_eq!(data["agent"], "bot");
        assert_eq!(data["risk"]["level"], "high");
    }

    #[test]
    fn backoff_grows_and_is_capped_with_jitter() {
        let s = NotificationsConfig {
            initial_backoff_ms: 100,
            max_backoff_ms: 1000,
            ..NotificationsConfig::default()
        };
        for _ in 0..50 {
            let first = backoff(&s, 0).as_millis();
            assert!((50..=100).contains(&first), "{first}");
            let later = backoff(&s, 10).as_millis();
            assert!((500..=1000).contains(&later), "{later}");
        }
    }

    #[test]
    fn endpoints_get_the_events_they_want_in_their_format() {
        let hook = |name: &str, format, events: &[EventType]| WebhookConfig {
            name: name.into(),
            url: "http://127.0.0.1:1/".into(),
            format,
            events: events.to_vec(),
            secret_env: None,
            secret: Some("s".into()),
        };
        let outbox = Outbox::new(
            vec![
                hook("all", WebhookFormat::Warden, &[]),
                hook(
                    "slack",
                    WebhookFormat::Slack,
                    &[EventType::ApprovalRequested],
                ),
            ],
            NotificationsConfig {
                public_url: "https://warden.example.com/".into(),
                ..NotificationsConfig::default()
            },
        );
        let event = Event::new(0, sample(EventType::ApprovalRequested));
        let writes = outbox.writes(&event, 0);
        assert_eq!(writes.len(), 2);
        let bodies: Vec<&str> = writes
            .iter()
            .map(|w| {
                if let Write::Delivery(DeliveryWrite::InsertDelivery(d)) = w {
                    d.body.as_str()
                } else {
                    ""
                }
            })
            .collect();
        let warden: serde_json::Value = serde_json::from_str(bodies[0]).unwrap();
        assert_eq!(
            (warden["type"].as_str(), warden["data"]["agent"].as_str()),
            (Some("approval.requested"), Some("bot"))
        );
        let slack: serde_json::Value = serde_json::from_str(bodies[1]).unwrap();
        assert!(
            slack["text"].as_str().unwrap().contains("Approval needed"),
            "{slack}"
        );
        assert!(
            slack
                .to_string()
                .contains("https://warden.example.com/ui/approvals#a1"),
            "{slack}"
        );
        let other = Event::new(0, sample(EventType::ViolationFlagged));
        assert_eq!(outbox.writes(&other, 0).len(), 1);
    }
}
