//! The platform's receivers: GitHub webhooks (signed with a shared secret) and the Kubernetes
//! API server's audit webhook. Each maps the platform's payload to activity events with the
//! pure mappers of `warden_core::activity` and stores them through [`Events`].

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::activity::github::{self, GithubSettings};
use crate::activity::kubernetes::{self, KubernetesSettings};
use crate::activity::{ActivityEvent, EventInput};
use crate::audit::Actor;
use crate::error::{Error, Kind, Result};
use crate::policy::CompiledPolicy;
use crate::services::events::{Events, Ingested};

/// The environment variable holding the GitHub webhook secret (secrets never sit in files).
pub const GITHUB_SECRET_ENV: &str = "WARDEN_GITHUB_WEBHOOK_SECRET";

/// `[integrations]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IntegrationsConfig {
    /// The GitHub webhook secret: never read from or written to a file; taken from
    /// `WARDEN_GITHUB_WEBHOOK_SECRET` at start (tests set it here).
    #[serde(skip)]
    pub github_secret: Option<String>,
    /// `POST /v1/integrations/github`: on when `WARDEN_GITHUB_WEBHOOK_SECRET` is set.
    pub github: GithubSettings,
    /// `POST /v1/integrations/kubernetes`.
    pub kubernetes: KubernetesSettings,
}

/// The receivers, with the GitHub secret read at start.
#[derive(Debug, Clone)]
pub struct Receivers {
    config: IntegrationsConfig,
    github_secret: Option<Vec<u8>>,
}

impl Receivers {
    /// Receivers with this configuration and GitHub secret (none: the GitHub receiver is off).
    pub fn new(config: IntegrationsConfig, github_secret: Option<String>) -> Receivers {
        Receivers {
            config,
            github_secret: github_secret
                .filter(|s| !s.is_empty())
                .map(String::into_bytes),
        }
    }

    /// Checks a GitHub delivery's `X-Hub-Signature-256` against the body, in constant time.
    pub fn verify_github(&self, body: &[u8], signature: Option<&str>) -> Result<()> {
        let Some(secret) = &self.github_secret else {
            return Err(Error::new(
                Kind::NotFound,
                "integration_disabled",
                format!("the GitHub receiver is off: set {GITHUB_SECRET_ENV}"),
            ));
        };
        let unauthorized = |m: &str| Error::new(Kind::Unauthorized, "invalid_signature", m);
        let hex_sig = signature
            .and_then(|s| s.strip_prefix("sha256="))
            .ok_or_else(|| unauthorized("X-Hub-Signature-256 must be `sha256=<hex>`"))?;
        let sig = hex::decode(hex_sig.trim())
            .map_err(|_| unauthorized("X-Hub-Signature-256 is not hex"))?;
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).map_err(Error::internal)?;
        mac.update(body);
        mac.verify_slice(&sig)
            .map_err(|_| unauthorized("X-Hub-Signature-256 does not match the body"))
    }

    /// Stores what a verified GitHub delivery says happened. Every event type is accepted;
    /// one Warden does not map stores nothing.
    pub async fn github(
        &self,
        events: &Events,
        policy: &CompiledPolicy,
        event: &str,
        delivery: &str,
        payload: &serde_json::Value,
    ) -> Result<Ingested> {
        if delivery.is_empty() || delivery.len() > 128 {
            return Err(Error::field("X-GitHub-Delivery", "must be a delivery id"));
        }
        let now = events.clock.now_micros();
        let mapped = github::map(event, delivery, payload, &self.config.github, now);
        self.store(events, policy, Actor::integration("github"), mapped, now)
            .await
    }

    /// Stores the writes of a Kubernetes audit `EventList`.
    pub async fn kubernetes(
        &self,
        events: &Events,
        policy: &CompiledPolicy,
        list: &serde_json::Value,
    ) -> Result<Ingested> {
        let mapped = kubernetes::map(list, &self.config.kubernetes)?;
        let now = events.clock.now_micros();
        self.store(
            events,
            policy,
            Actor::integration("kubernetes"),
            mapped,
            now,
        )
        .await
    }

    /// Mapped events pass the same checks as posted ones (a class the policy does not know, a
    /// name Warden cannot store); the ones that fail are reported, never a 5xx.
    async fn store(
        &self,
        events: &Events,
        policy: &CompiledPolicy,
        actor: Actor,
        mapped: Vec<ActivityEvent>,
        now: i64,
    ) -> Result<Ingested> {
        let (good, rejected) = crate::services::events::check_inputs(
            policy,
            mapped
                .into_iter()
                .map(|e| e.to_input())
                .enumerate()
                .collect::<Vec<(usize, EventInput)>>(),
            now,
        );
        let mut ingested = events.store(actor, good).await?;
        ingested.rejected = rejected;
        Ok(ingested)
    }
}
