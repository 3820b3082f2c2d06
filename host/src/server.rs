//! Wiring: open the store, compile the policy, build the services and router, serve until told to
//! stop, then finish in-flight requests and drain the writer.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;

use crate::api::{self, AppState, Shared};
use crate::audit::checkpoint::NoteVerifier;
use crate::audit::{Actor, AuditRecord};
use crate::clock::{SharedClock, SystemClock};
use crate::config::Config;
use crate::identity::{Role, hash_token};
use crate::jobs::{self, First};
use crate::metrics::Metrics;
use crate::plugins::PluginHost;
use crate::policy::CompiledPolicy;
use crate::serve;
use crate::services::baselines::Baselines;
use crate::services::decisions::{Decisions, Parts};
use crate::services::events::Events;
use crate::services::integrations::{GITHUB_SECRET_ENV, Receivers};
use crate::services::notify::{self, Outbox};
use crate::services::reports::Reports;
use crate::services::sessions::UiConfig;
use crate::services::tiering::Controller;
use crate::services::{approvals, checkpoints, guards, outcomes, plugins as publishing, quotas};
use crate::store::{Change, Store};

/// Everything a server needs, opened and ready.
#[derive(Debug, Clone)]
pub struct Warden {
    /// Shared state of the handlers.
    pub state: AppState,
    /// The configuration it was opened with.
    pub config: Config,
}

impl Warden {
    /// Opens the store (applying migrations) and compiles the policy.
    pub async fn open(config: Config, clock: SharedClock) -> anyhow::Result<Warden> {
        let policy = Arc::new(
            CompiledPolicy::new(config.policy.apply())
                .context("invalid [policy] in the configuration")?,
        );
        let store = Store::open(&config.store_options()?).await?;
        // One signer for the checkpoints: refuse a replica with another key before it writes.
        let signer = Arc::new(config.audit.signer(&config.storage.data_dir)?);
        let stored_key = store.claim_audit_key(&signer.vkey()).await?;
        anyhow::ensure!(
            stored_key == signer.vkey(),
            "the audit signing key in {} ({}) is not the one this database's checkpoints are signed with ({stored_key}): give every replica the same [audit] signing_key_file",
            config.audit.key_path(&config.storage.data_dir).display(),
            signer.vkey()
        );
        let audit_key = Arc::new(NoteVerifier::parse(&signer.vkey())?);
        // Trust totals computed with another half-life (or none yet) are rebuilt from the
        // evidence, before anything else of this process writes.
        if store
            .ensure_trust_totals(crate::trust::half_life_us(&policy.policy.trust))
            .await
            .context("cannot rebuild the trust totals")?
        {
            tracing::info!("trust totals rebuilt from the recorded evidence");
        }
        let mut metrics = Metrics::default();
        record_policy(&store, &policy, clock.now_micros()).await?;
        // Refuses a `spare_instances` over its maximum, or `memory_reset = "scan"` on a kernel
        // without it, naming the setting.
        let plugins = Arc::new(PluginHost::configured(
            config.plugins.spare_instances,
            config.plugins.memory_reset,
        )?);
        metrics.plugin_instances(plugins.runtime().instance_counters());
        metrics.store_writer(store.writer_counters());
        let metrics = Arc::new(metrics);
        if config.plugins.reference {
            for id in publishing::publish_reference(&plugins, &store, clock.now_micros()).await? {
                tracing::info!(plugin = %id, "reference plugin published");
            }
        }
        if let Some(dir) = &config.plugins.dir {
            for id in publishing::publish_dir(&plugins, dir, &store, clock.now_micros()).await? {
                tracing::info!(plugin = %id, "plugin published from the plugin directory");
            }
        }
        publishing::sync(&plugins, &store).await?;
        if config.plugins.sync_interval_ms > 0 {
            // Another replica may have changed the plugins: keep this one in step.
            let (plugins, sync_store, every) = (
                plugins.clone(),
                store.clone(),
                Duration::from_millis(config.plugins.sync_interval_ms),
            );
            jobs::spawn(
                "plugin sync",
                every,
                First::AfterInterval,
                store.clone(),
                move || {
                    let (plugins, store) = (plugins.clone(), sync_store.clone());
                    async move {
                        publishing::sync(&plugins, &store)
                            .await
                            .map_err(|e| format!("{e:#}"))
                    }
                },
            );
        }
        notify::check(&config.webhooks, &config.notifications)
            .context("invalid [[webhooks]] or [notifications] in the configuration")?;
        let outbox = Arc::new(Outbox::new(
            config.webhooks.clone(),
            config.notifications.clone(),
        ));
        tokio::spawn(notify::run(outbox.clone(), store.clone(), clock.clone()));
        let every = Duration::from_millis(config.notifications.poll_interval_ms.max(10));
        let (s, o, c) = (store.clone(), outbox.clone(), clock.clone());
        jobs::spawn(
            "approval expiries",
            every,
            First::Now,
            store.clone(),
            move || {
                let (s, o, c) = (s.clone(), o.clone(), c.clone());
                async move { approvals::announce_expiries(&s, &o, &c).await }
            },
        );
        let tiers = Controller::new(store.clone(), policy.clone(), clock.clone(), outbox.clone());
        let (s, c, t) = (store.clone(), clock.clone(), tiers.clone());
        jobs::spawn(
            "overdue outcomes",
            every,
            First::Now,
            store.clone(),
            move || {
                let (s, c, t) = (s.clone(), c.clone(), t.clone());
                async move { outcomes::mark_overdue(&s, &c, &t).await }
            },
        );
        let (s, c, t, o, p) = (
            store.clone(),
            clock.clone(),
            tiers.clone(),
            outbox.clone(),
            policy.clone(),
        );
        jobs::spawn(
            "guard watches",
            every,
            First::Now,
            store.clone(),
            move || {
                let (s, c, t, o, p) = (s.clone(), c.clone(), t.clone(), o.clone(), p.clone());
                async move {
                    let watch = guards::Watch {
                        reporting: outcomes::Reporting {
                            store: &s,
                            policy: &p,
                            tiers: &t,
                            clock: &c,
                        },
                        outbox: &o,
                    };
                    watch.sweep().await
                }
            },
        );
        let t = tiers.clone();
        jobs::spawn(
            "tier review",
            tiers.sweep_interval(),
            First::AfterInterval,
            store.clone(),
            move || {
                let t = t.clone();
                async move { t.sweep().await.map_err(|e| e.message) }
            },
        );
        // What has served its time: old quota counts, ended sessions, lapsed idempotency keys.
        let (s, c) = (store.clone(), clock.clone());
        jobs::spawn(
            "pruning",
            Duration::from_secs(3600),
            First::AfterInterval,
            store.clone(),
            move || {
                let (s, c) = (s.clone(), c.clone());
                async move {
                    quotas::prune(&s, &c).await?;
                    s.prune_sessions(c.now_micros()).await?;
                    s.prune_idempotency_keys(c.now_micros()).await.map(drop)
                }
            },
        );
        let baselines = Baselines::new(store.clone(), clock.clone(), config.baselines.clone())?;
        baselines
            .refresh()
            .await
            .map_err(|e| anyhow::anyhow!("cannot load the baselines: {}", e.message))?;
        baselines.spawn();
        let events = Events {
            store: store.clone(),
            clock: clock.clone(),
            baselines: baselines.clone(),
            policy: policy.clone(),
            tiers: tiers.clone(),
        };
        let secret = config
            .integrations
            .github_secret
            .clone()
            .or_else(|| std::env::var(GITHUB_SECRET_ENV).ok());
        let receivers = Arc::new(Receivers::new(config.integrations.clone(), secret));
        if config.audit.checkpoint_interval_secs > 0 {
            let (s, c, k) = (store.clone(), clock.clone(), signer.clone());
            jobs::spawn(
                "audit checkpoints",
                Duration::from_secs(config.audit.checkpoint_interval_secs),
                First::AfterInterval,
                store.clone(),
                move || {
                    let (s, c, k) = (s.clone(), c.clone(), k.clone());
                    async move { checkpoints::checkpoint(&s, &c, &k).await.map(|_| ()) }
                },
            );
        }
        let reports = Reports::new(
            store.clone(),
            clock.clone(),
            tiers.clone(),
            outbox.clone(),
            config.reports.clone(),
            config.notifications.public_url.clone(),
        )?;
        if config.reports.schedule {
            let r = reports.clone();
            jobs::spawn(
                "weekly reports",
                Duration::from_secs(60),
                First::AfterInterval,
                store.clone(),
                move || {
                    let r = r.clone();
                    async move { r.scheduled().await.map_err(|e| e.message) }
                },
            );
        }
        let parts = Parts {
            baselines: baselines.clone(),
            store: store.clone(),
            policy,
            clock: clock.clone(),
            metrics: metrics.clone(),
            plugins,
            outbox,
            tiers,
            delegation: Arc::new(config.delegation.clone()),
            agent_concurrency: config.server.agent_concurrency,
        };
        let decisions = Decisions::new(parts.clone());
        // A flooding agent's window becomes one audit record once it closes.
        let cutoffs = decisions.cutoffs().clone();
        jobs::spawn(
            "rate-limited windows",
            Duration::from_secs(1),
            First::AfterInterval,
            store.clone(),
            move || {
                let cutoffs = cutoffs.clone();
                async move { cutoffs.close(false).await.map(drop).map_err(|e| e.message) }
            },
        );
        let Parts {
            policy,
            plugins,
            outbox,
            tiers,
            ..
        } = parts;
        Ok(Warden {
            state: AppState::new(Shared {
                decisions,
                policy,
                plugins,
                outbox,
                tiers,
                store,
                clock,
                metrics,
                events,
                events_config: config.events.clone(),
                baselines,
                receivers,
                signer,
                audit_key,
                reports,
                ui: UiConfig {
                    secure_cookie: config.ui.secure_cookie
                        || config.notifications.public_url.starts_with("https://"),
                    ..config.ui.clone()
                },
            }),
            config,
        })
    }

    /// Opens with the system clock.
    pub async fn open_default(config: Config) -> anyhow::Result<Warden> {
        Warden::open(config, Arc::new(SystemClock)).await
    }

    /// Seeds the admin token named by `WARDEN_BOOTSTRAP_ADMIN_TOKEN`, if not already there.
    pub async fn seed_bootstrap_token(&self, secret: &str) -> anyhow::Result<()> {
        anyhow::ensure!(
            secret.len() >= 32,
            "WARDEN_BOOTSTRAP_ADMIN_TOKEN must be at least 32 characters"
        );
        let store = &self.state.store;
        if store.token_by_hash(&hash_token(secret)).await?.is_some() {
            return Ok(());
        }
        let actor = Actor {
            kind: "admin".into(),
            id: "bootstrap".into(),
            tool: None,
            model: None,
            token_id: None,
            ..Default::default()
        };
        let now = self.state.clock.now_micros();
        match crate::services::tokens::issue(
            store,
            actor,
            Role::Admin,
            Some("bootstrap".into()),
            "WARDEN_BOOTSTRAP_ADMIN_TOKEN".into(),
            Some(secret.to_string()),
            now,
        )
        .await
        {
            Ok(_) => Ok(()),
            // Another replica seeded it first: then it is there now.
            Err(_) if store.token_by_hash(&hash_token(secret)).await?.is_some() => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Serves on `listener` until `shutdown` resolves, then lets in-flight requests finish
    /// (for at most `server.shutdown_grace_secs`; idle connections are closed at once) and
    /// closes the store.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let server = &self.config.server;
        anyhow::ensure!(
            server.max_connections > 0,
            "server.max_connections must be at least 1"
        );
        anyhow::ensure!(
            server.agent_concurrency > 0,
            "server.agent_concurrency must be at least 1"
        );
        anyhow::ensure!(
            server.header_read_timeout_secs > 0
                && server.body_read_timeout_secs > 0
                && server.send_timeout_secs > 0,
            "server.header_read_timeout_secs, body_read_timeout_secs and send_timeout_secs must be at least 1"
        );
        let lease = crate::services::idempotency::CLAIM_LEASE.as_secs();
        anyhow::ensure!(
            server.idempotency_window_secs >= lease,
            "server.idempotency_window_secs must be at least {lease} (a request in flight holds its key that long)"
        );
        let limits = serve::Limits {
            header_read_timeout: Duration::from_secs(server.header_read_timeout_secs),
            send_timeout: Duration::from_secs(server.send_timeout_secs),
            max_connections: server.max_connections,
            grace: Duration::from_secs(server.shutdown_grace_secs),
        };
        let body_timeout = Duration::from_secs(server.body_read_timeout_secs);
        let store = self.state.store.clone();
        let cutoffs = self.state.decisions.cutoffs().clone();
        let router_limits = api::Limits {
            body: server.body_limit_bytes,
            upload: self.config.plugins.upload_limit_bytes,
            idempotency_window: Duration::from_secs(server.idempotency_window_secs),
        };
        let app = api::router(self.state, router_limits).layer(axum::middleware::from_fn(
            move |req, next| serve::body_deadline(body_timeout, req, next),
        ));
        if !serve::run(listener, app, limits, shutdown).await {
            tracing::warn!(
                grace_secs = limits.grace.as_secs(),
                "in-flight requests outlived the shutdown grace period"
            );
        }
        // Windows still open are recorded with what they refused so far.
        if let Err(e) = cutoffs.close(true).await {
            tracing::warn!(error = %e.message, "rate-limited windows not recorded at shutdown");
        }
        store.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Appends a `policy.loaded` audit record when the policy differs from the last one recorded,
/// so every policy change is in the audit trail with the full policy that took effect.
async fn record_policy(store: &Store, policy: &CompiledPolicy, now: i64) -> anyhow::Result<()> {
    if store.last_policy_version().await?.as_deref() == Some(policy.version.as_str()) {
        return Ok(());
    }
    let actor = Actor::configuration();
    let record = AuditRecord {
        policy_version: Some(policy.version.clone()),
        ..AuditRecord::change(
            actor,
            "policy.loaded",
            "policy".into(),
            serde_json::to_value(&policy.policy)?,
            now,
        )
    };
    store
        .commit(Change {
            writes: vec![],
            audit: vec![record],
        })
        .await?;
    tracing::info!(version = %policy.version, "policy changed; recorded in the audit trail");
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = terminate => {} }
}
