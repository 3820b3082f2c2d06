//! Wiring: open the store, compile the policy, build the engine and router, serve until told to
//! stop, then finish in-flight requests and drain the writer.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;

use crate::api::{self, AppState};
use crate::audit::{Actor, AuditRecord};
use crate::clock::{SharedClock, SystemClock};
use crate::config::Config;
use crate::engine::Engine;
use crate::identity::{Role, hash_token};
use crate::metrics::Metrics;
use crate::outbox::{self, Outbox};
use crate::plugins::PluginHost;
use crate::policy::CompiledPolicy;
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
        let policy = Arc::new(CompiledPolicy::new(config.policy.apply()).context("invalid [policy] in the configuration")?);
        let store = Store::open(&config.store_options()?).await?;
        // Trust totals computed with another half-life (or none yet) are rebuilt from the
        // evidence, before anything else of this process writes.
        if store.ensure_trust_totals(crate::trust::half_life_us(&policy.policy.trust)).await.context("cannot rebuild the trust totals")? {
            tracing::info!("trust totals rebuilt from the recorded evidence");
        }
        let mut metrics = Metrics::default();
        record_policy(&store, &policy, clock.now_micros()).await?;
        // Refuses a `spare_instances` over its maximum, naming the setting.
        let plugins = Arc::new(PluginHost::with_spares(config.plugins.spare_instances)?);
        metrics.plugin_instances(plugins.runtime().instance_counters());
        let metrics = Arc::new(metrics);
        if let Some(dir) = &config.plugins.dir {
            for id in plugins.publish_dir(dir, &store, clock.now_micros()).await? {
                tracing::info!(plugin = %id, "plugin published from the plugin directory");
            }
        }
        plugins.sync(&store).await?;
        if config.plugins.sync_interval_ms > 0 {
            tokio::spawn(sync_plugins(plugins.clone(), store.clone(), Duration::from_millis(config.plugins.sync_interval_ms)));
        }
        outbox::check(&config.webhooks, &config.notifications).context("invalid [[webhooks]] or [notifications] in the configuration")?;
        let outbox = Arc::new(Outbox::new(config.webhooks.clone(), config.notifications.clone()));
        tokio::spawn(outbox::run(outbox.clone(), store.clone(), clock.clone()));
        let every = Duration::from_millis(config.notifications.poll_interval_ms.max(10));
        tokio::spawn(crate::approvals::announce_expiries(store.clone(), outbox.clone(), clock.clone(), every));
        let engine = Engine::new(store.clone(), policy, clock.clone(), metrics.clone(), plugins, outbox);
        tokio::spawn(crate::outcomes::mark_overdue(store.clone(), clock.clone(), engine.tiers().clone(), every));
        tokio::spawn(engine.tiers().clone().run());
        tokio::spawn(crate::quotas::prune(store.clone(), clock.clone()));
        Ok(Warden { state: AppState { engine, store, clock, metrics }, config })
    }

    /// Opens with the system clock.
    pub async fn open_default(config: Config) -> anyhow::Result<Warden> {
        Warden::open(config, Arc::new(SystemClock)).await
    }

    /// Seeds the admin token named by `WARDEN_BOOTSTRAP_ADMIN_TOKEN`, if not already there.
    pub async fn seed_bootstrap_token(&self, secret: &str) -> anyhow::Result<()> {
        anyhow::ensure!(secret.len() >= 32, "WARDEN_BOOTSTRAP_ADMIN_TOKEN must be at least 32 characters");
        let store = &self.state.store;
        if store.token_by_hash(&hash_token(secret)).await?.is_some() {
            return Ok(());
        }
        let actor = Actor { kind: "admin".into(), id: "bootstrap".into(), tool: None, model: None, token_id: None };
        let now = self.state.clock.now_micros();
        match api::tokens::issue(store, actor, Role::Admin, Some("bootstrap".into()), "WARDEN_BOOTSTRAP_ADMIN_TOKEN".into(), Some(secret.to_string()), now)
            .await
        {
            Ok(_) => Ok(()),
            // Another replica seeded it first.
            Err(e) if e.code == "token_exists" => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Serves on `listener` until `shutdown` resolves, then lets in-flight requests finish
    /// (for at most `server.shutdown_grace_secs`) and closes the store.
    pub async fn serve(self, listener: TcpListener, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let grace = Duration::from_secs(self.config.server.shutdown_grace_secs);
        let store = self.state.store.clone();
        let app = api::router(self.state, self.config.server.body_limit_bytes, self.config.plugins.upload_limit_bytes);
        let (stopping_tx, mut stopping_rx) = tokio::sync::watch::channel(false);
        let server = axum::serve(listener, app).with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!("shutting down: finishing in-flight requests");
            let _ = stopping_tx.send(true);
        });
        tokio::select! {
            result = server => result.context("the HTTP server failed")?,
            _ = async { let _ = stopping_rx.wait_for(|s| *s).await; tokio::time::sleep(grace).await } => {
                tracing::warn!(grace_secs = grace.as_secs(), "in-flight requests outlived the shutdown grace period");
            }
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
    let actor = Actor { kind: "admin".into(), id: "configuration".into(), tool: None, model: None, token_id: None };
    let record = AuditRecord {
        policy_version: Some(policy.version.clone()),
        ..AuditRecord::change(actor, "policy.loaded", "policy".into(), serde_json::to_value(&policy.policy)?, now)
    };
    store.commit(Change { writes: vec![], audit: vec![record] }).await?;
    tracing::info!(version = %policy.version, "policy changed; recorded in the audit trail");
    Ok(())
}

/// Keeps this replica's plugins in step with the store (another replica may have changed them).
async fn sync_plugins(plugins: Arc<PluginHost>, store: Store, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match plugins.sync(&store).await {
            Ok(()) => {}
            // The store closes at shutdown; nothing left to keep in step.
            Err(_) if store.is_closed() => return,
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "plugin sync failed; will retry"),
        }
    }
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
