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
use crate::records::{Event, EventType};
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
                    event_type: event.event_type.as_str().to_string(),
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

/// An event's `reasons`, a list of texts, for a message.
fn reasons(d: &serde_json::Value) -> String {
    let text = match d.get("reasons").and_then(|r| r.as_array()) {
        Some(items) => items
            .iter()
            .map(|r| r.as_str().map_or_else(|| r.to_string(), String::from))
            .collect::<Vec<_>>()
            .join("; "),
        None => "?".into(),
    };
    slack_text(&text)
}

/// The body for an endpoint's format.
fn render(event: &Event, format: WebhookFormat, public_url: &str) -> String {
    match format {
        WebhookFormat::Warden => serde_json::to_string(event).unwrap_or_default(),
        WebhookFormat::Slack => {
            let d = &event.data;
            let s = |k: &str| slack_text(d.get(k).and_then(|v| v.as_str()).unwrap_or("?"));
            let title = match event.event_type {
                EventType::ApprovalRequested => format!(
                    "Approval needed: *{}* wants to {} `{}` in *{}*",
                    s("agent"),
                    s("class"),
                    s("service"),
                    s("environment")
                ),
                EventType::ApprovalDecided => {
                    format!(
                        "Approval {} by {}: {} {} `{}` in {}",
                        s("status"),
                        s("decided_by"),
                        s("agent"),
                        s("class"),
                        s("service"),
                        s("environment")
                    )
                }
                EventType::ApprovalExpired => format!(
                    "Approval expired undecided: {} {} `{}` in {}",
                    s("agent"),
                    s("class"),
                    s("service"),
                    s("environment")
                ),
                EventType::ViolationFlagged => {
                    format!(
                        "Policy violation ({}): *{}* {} `{}` in {} — {}",
                        s("mode"),
                        s("agent"),
                        s("class"),
                        s("service"),
                        s("environment"),
                        s("reason")
                    )
                }
                EventType::TierChanged => {
                    let n = |k: &str| {
                        d.get(k)
                            .and_then(|v| v.as_u64())
                            .map_or("?".into(), |t| t.to_string())
                    };
                    format!(
                        "Tier change: *{}* tier {} → {} ({}) — {}",
                        s("agent"),
                        n("from"),
                        n("to"),
                        s("reason"),
                        s("text")
                    )
                }
                EventType::ReportReady => format!(
                    "Weekly report {} ({}): {}",
                    s("week"),
                    s("scope"),
                    s("summary")
                ),
                EventType::RollbackRequested => format!(
                    "Rollback requested: {} {} `{}` in *{}* — {}",
                    s("agent"),
                    s("class"),
                    s("service"),
                    s("environment"),
                    reasons(d)
                ),
                EventType::GuardReviewRequested => format!(
                    "Review needed: *{}*'s {} of `{}` in *{}* is held — {}",
                    s("agent"),
                    s("class"),
                    s("service"),
                    s("environment"),
                    s("why")
                ),
                EventType::RollbackTriggerFailing => format!(
                    "Rollback trigger failing: the watch of {} {} `{}` in {} — {}",
                    s("agent"),
                    s("class"),
                    s("service"),
                    s("environment"),
                    reasons(d)
                ),
            };
            let mut detail = Vec::new();
            if let Some(r) = d.get("reasoning").and_then(|v| v.as_str()) {
                detail.push(format!("*Reasoning:* {}", slack_text(r)));
            }
            if let Some(p) = d.get("plan").filter(|p| !p.is_null()) {
                let plan = p
                    .as_str()
                    .map(String::from)
                    .unwrap_or_else(|| p.to_string());
                detail.push(format!(
                    "*Plan:* {}",
                    slack_text(&plan.chars().take(1500).collect::<String>())
                ));
            }
            if let Some(level) = d.pointer("/risk/level").and_then(|v| v.as_str()) {
                detail.push(format!("*Risk:* {}", slack_text(level)));
            }
            if event.event_type == EventType::ReportReady
                && let Some(url) = d.get("url").and_then(|v| v.as_str())
            {
                detail.push(format!("<{}|Open the report>", slack_text(url)));
            }
            if let Some(id) = d.get("approval_id").and_then(|v| v.as_str()) {
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
        .header("x-warden-event", &d.event_type)
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
        let event = Event::new(
            EventType::ReportReady,
            0,
            serde_json::json!({"week": "2027-W01", "scope": "team:web", "summary": "In 2027-W01, AI agents made 4 production changes (failure rate 25.0%) and humans made 3 (failure rate 33.3%).",
                "url": "https://warden.example/ui/reports/2027-W01?scope=team:web"}),
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
        let event = Event::new(
            EventType::ApprovalRequested,
            0,
            serde_json::json!({"agent": "bot", "reasoning": "<!channel> see <https://evil|here> & act"}),
        );
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

    /// Each event reads as itself in Slack, from its own fields.
    #[test]
    fn every_event_has_its_own_slack_message() {
        let data = serde_json::json!({"agent": "bot", "class": "deploy", "service": "payments",
            "environment": "production", "status": "approved", "decided_by": "alice", "mode": "flag",
            "reason": "tier_too_low", "from": 2, "to": 1, "text": "two rollbacks", "week": "2027-W01",
            "scope": "all", "summary": "4 changes", "why": "inconclusive canary",
            "reasons": ["error rate 4% over 1%", "p99 up 3x"]});
        let mut titles = std::collections::HashSet::new();
        for &t in EventType::ALL {
            let body: serde_json::Value = serde_json::from_str(&render(
                &Event::new(t, 0, data.clone()),
                WebhookFormat::Slack,
                "https://w",
            ))
            .unwrap();
            let title = body["text"].as_str().unwrap().to_string();
            assert!(!title.contains('?'), "{t}: {title}");
            assert!(titles.insert(title.clone()), "{t} repeats {title}");
        }
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
        let event = Event::new(
            EventType::ApprovalRequested,
            0,
            serde_json::json!({"approval_id": "a1", "agent": "bot", "class": "deploy", "service": "payments", "environment": "production",
                "reasoning": "retry fix", "risk": {"level": "high"}}),
        );
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
        let other = Event::new(EventType::ViolationFlagged, 0, serde_json::json!({}));
        assert_eq!(outbox.writes(&other, 0).len(), 1);
    }
}
