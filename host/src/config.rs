//! Configuration: `warden.toml` over built-in defaults, then environment, then flags.
//!
//! Every setting is documented in `docs/configuration.md`; `warden config` prints the effective
//! configuration. Secrets (the bootstrap admin token) come only from the environment.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::policy::{Policy, PolicyMode, RiskLevel, Tier, ViolationMode};
pub use crate::records::EventType;
pub use crate::services::baselines::BaselinesConfig;
pub use crate::services::checkpoints::AuditConfig;
pub use crate::services::delegations::DelegationConfig;
pub use crate::services::events::EventsConfig;
pub use crate::services::integrations::IntegrationsConfig;
pub use crate::services::notify::{NotificationsConfig, WebhookConfig, WebhookFormat};
pub use crate::services::reports::ReportsConfig;
pub use crate::services::sessions::UiConfig;
use crate::store::StoreOptions;
use warden_plugin_host::MemoryReset;

/// The whole configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The HTTP server.
    pub server: ServerConfig,
    /// The database.
    pub storage: StorageConfig,
    /// Logging.
    pub log: LogConfig,
    /// Overrides of the built-in policy.
    pub policy: PolicyOverrides,
    /// WebAssembly plugins.
    pub plugins: PluginsConfig,
    /// Delivery of notifications (the outbox).
    pub notifications: NotificationsConfig,
    /// Webhook endpoints that receive events (`[[webhooks]]`).
    pub webhooks: Vec<WebhookConfig>,
    /// Activity in: `POST /v1/events` and the receivers' limits.
    pub events: EventsConfig,
    /// Human baselines: schedule, window, time zone.
    pub baselines: BaselinesConfig,
    /// The GitHub and Kubernetes receivers.
    pub integrations: IntegrationsConfig,
    /// The audit trail's signed checkpoints.
    pub audit: AuditConfig,
    /// Weekly behaviour reports: their schedule and time zone.
    pub reports: ReportsConfig,
    /// Who may vouch for the human an agent acts for.
    pub delegation: DelegationConfig,
    /// The web UI: its sessions.
    pub ui: UiConfig,
}

/// `[plugins]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginsConfig {
    /// A directory of plugins published at start: `<dir>/<name>/plugin.toml` and `plugin.wasm`.
    pub dir: Option<PathBuf>,
    /// How often (ms) a replica checks the store for plugins changed elsewhere; 0 never.
    pub sync_interval_ms: u64,
    /// Largest `POST /v1/plugins` body, bytes (components are larger than decisions).
    pub upload_limit_bytes: usize,
    /// Fresh instances of each plugin made ahead of need, off the decisions' path (0 to 8;
    /// 0, the default, instantiates in every call). See docs/plugins.md, "Speed".
    pub spare_instances: usize,
    /// How a used plugin instance's memory is reset before its slot is used again: `auto`
    /// (measure both ways at start, keep the faster), `copy` or `scan` (Linux 6.7). See
    /// docs/plugins.md, "Speed".
    pub memory_reset: MemoryReset,
    /// Run the reference plugins built into the binary (the action classifier, the baseline
    /// anomaly detector and the canary rollback trigger) unless a plugin of the same name is
    /// published; `false` runs only what is published.
    pub reference: bool,
}

impl Default for PluginsConfig {
    fn default() -> Self {
        PluginsConfig {
            dir: None,
            sync_interval_ms: 2000,
            upload_limit_bytes: 32 << 20,
            // Over HTTP a spare saves a call some 8 µs of a request's milliseconds, and on a
            // loaded machine a decision took 12–16% less CPU without them (BENCHMARKS.md):
            // spares are for embedding and idle cores, not the default.
            spare_instances: 0,
            memory_reset: MemoryReset::Auto,
            reference: true,
        }
    }
}

/// `[server]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Largest request body accepted, in bytes; larger is a 413.
    pub body_limit_bytes: usize,
    /// How long a graceful shutdown waits for in-flight requests.
    pub shutdown_grace_secs: u64,
    /// How long a connection may wait for its next request's headers to arrive in full, from
    /// the moment it is opened or its last response went out: idle and half-sent alike.
    pub header_read_timeout_secs: u64,
    /// How long a request's body may take to arrive, from its headers; slower is a 408.
    pub body_read_timeout_secs: u64,
    /// How long a response may wait for the client to take any of it before the connection
    /// is closed.
    pub send_timeout_secs: u64,
    /// Most connections open at once; one more gets a 503 and is closed.
    pub max_connections: usize,
    /// How long the answer to a request sent with `Idempotency-Key` is kept for its retries.
    pub idempotency_window_secs: u64,
    /// How many of one agent's decisions this process judges at once; the agent's others wait
    /// their turn, so that one agent's burst cannot crowd the others out of the writer.
    pub agent_concurrency: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8080".parse().expect("valid"),
            body_limit_bytes: 256 * 1024,
            shutdown_grace_secs: 30,
            header_read_timeout_secs: 30,
            body_read_timeout_secs: 30,
            send_timeout_secs: 30,
            max_connections: 4096,
            idempotency_window_secs: 24 * 3600,
            agent_concurrency: 4,
        }
    }
}

/// `[storage]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Where the SQLite database lives when no `database_url` is set.
    pub data_dir: PathBuf,
    /// `postgres://…` to share one PostgreSQL between replicas, or `sqlite://…`; empty for the
    /// embedded default (`<data_dir>/warden.db`).
    pub database_url: String,
    /// Read connections in the pool.
    pub max_connections: u32,
    /// Most changes the writer commits in one transaction.
    pub max_batch: usize,
    /// How long (ms) found tokens, agents and humans are cached per process; 0 disables. This
    /// process's own changes apply at once; another replica's within this time.
    pub cache_ttl_ms: u64,
    /// On Linux, SQLite's writer thread and its connection's thread keep to one core, so that
    /// the hand-offs of every batch stay on it (docs/configuration.md); `false` lets both run
    /// on any core, for hosts where another process keeps that core busy.
    pub share_writer_core: bool,
    /// SQLite's writer writes each commit's WAL frames to the file in one write rather than
    /// two a frame (docs/configuration.md); `false` leaves SQLite's own writes.
    pub coalesce_wal_writes: bool,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            data_dir: PathBuf::from("./warden-data"),
            database_url: String::new(),
            max_connections: 8,
            max_batch: 512,
            cache_ttl_ms: 1000,
            share_writer_core: true,
            coalesce_wal_writes: true,
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `[log]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: LogFormat,
    /// A tracing filter (`info`, `warden=debug,info`); `RUST_LOG` wins when set.
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            filter: "info".into(),
        }
    }
}

/// `[policy]`: each key set here replaces the built-in one; `risk` and `violation_modes` merge
/// per action class; `tiers`, when given, must define all five.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyOverrides {
    /// `enforce` or `shadow`.
    pub mode: Option<PolicyMode>,
    /// Risk floor of breaking changes.
    pub breaking_change_risk: Option<RiskLevel>,
    /// Violation mode for classes not in `violation_modes`.
    pub default_violation_mode: Option<ViolationMode>,
    /// How long a blocked violation stays on record as the same one, seconds (0: every one).
    pub same_violation_secs: Option<u64>,
    /// Per-class risk rows (class → environment → level); a new class is added.
    pub risk: BTreeMap<String, BTreeMap<String, RiskLevel>>,
    /// Per-class violation modes.
    pub violation_modes: BTreeMap<String, ViolationMode>,
    /// All five tiers, replacing the built-in ones.
    pub tiers: Option<Vec<Tier>>,
    /// Anomaly severity (0–100) from which an action is severely anomalous.
    pub severe_anomaly: Option<u8>,
    /// The highest tier a severely anomalous action is judged at.
    pub severe_anomaly_tier_cap: Option<u8>,
    /// How long a human has to decide an approval request, seconds.
    pub approval_ttl_secs: Option<u64>,
    /// Per action class, overriding `approval_ttl_secs`.
    pub approval_ttl_by_class: BTreeMap<String, u64>,
    /// Distinct approvers an approval needs, per action class.
    pub approvers_required: BTreeMap<String, u8>,
    /// How long after an allowed write its outcome must be reported, seconds.
    pub outcome_deadline_secs: Option<u64>,
    /// Per action class, overriding `outcome_deadline_secs`.
    pub outcome_deadline_by_class: BTreeMap<String, u64>,
    /// How evidence weighs in the trust score (the whole table replaces the built-in one).
    pub trust: Option<crate::trust::TrustPolicy>,
    /// How tiers follow trust (the whole table replaces the built-in one).
    pub tiering: Option<crate::tiering::TierPolicy>,
    /// Quotas (the whole table replaces the built-in one; unset keys keep their defaults).
    pub quotas: Option<crate::quotas::QuotaPolicy>,
    /// The watch over guarded actions (unset keys keep their defaults).
    pub guard: Option<crate::policy::GuardPolicy>,
}

impl PolicyOverrides {
    /// The built-in policy with these overrides applied.
    pub fn apply(&self) -> Policy {
        let mut policy = Policy::default();
        if let Some(m) = self.mode {
            policy.mode = m;
        }
        if let Some(r) = self.breaking_change_risk {
            policy.breaking_change_risk = r;
        }
        if let Some(v) = self.default_violation_mode {
            policy.default_violation_mode = v;
        }
        if let Some(s) = self.same_violation_secs {
            policy.same_violation_secs = s;
        }
        for (class, row) in &self.risk {
            policy.risk.insert(class.clone(), row.clone());
        }
        for (class, mode) in &self.violation_modes {
            policy.violation_modes.insert(class.clone(), *mode);
        }
        if let Some(tiers) = &self.tiers {
            policy.tiers = tiers.clone();
        }
        if let Some(s) = self.severe_anomaly {
            policy.severe_anomaly = s;
        }
        if let Some(t) = self.severe_anomaly_tier_cap {
            policy.severe_anomaly_tier_cap = t;
        }
        if let Some(t) = self.approval_ttl_secs {
            policy.approval_ttl_secs = t;
        }
        policy
            .approval_ttl_by_class
            .extend(self.approval_ttl_by_class.clone());
        policy
            .approvers_required
            .extend(self.approvers_required.clone());
        if let Some(t) = self.outcome_deadline_secs {
            policy.outcome_deadline_secs = t;
        }
        policy
            .outcome_deadline_by_class
            .extend(self.outcome_deadline_by_class.clone());
        if let Some(t) = &self.trust {
            policy.trust = t.clone();
        }
        if let Some(t) = &self.tiering {
            policy.tiering = t.clone();
        }
        if let Some(q) = &self.quotas {
            policy.quotas = q.clone();
        }
        if let Some(g) = &self.guard {
            policy.guard = g.clone();
        }
        policy
    }
}

impl Config {
    /// Reads a TOML file; a missing file is an error (the caller decides whether one is needed).
    pub fn from_file(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
    }

    /// The default, or `./warden.toml` when it exists, or the named file.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Config> {
        match path {
            Some(p) => Config::from_file(p),
            None if Path::new("warden.toml").exists() => {
                Config::from_file(Path::new("warden.toml"))
            }
            None => Ok(Config::default()),
        }
    }

    /// The database URL: the configured one, or SQLite under the data directory.
    pub fn database_url(&self) -> String {
        if self.storage.database_url.is_empty() {
            format!(
                "sqlite://{}?mode=rwc",
                self.storage.data_dir.join("warden.db").display()
            )
        } else {
            self.storage.database_url.clone()
        }
    }

    /// Store options; creates the data directory for SQLite.
    pub fn store_options(&self) -> anyhow::Result<StoreOptions> {
        if self.storage.database_url.is_empty() {
            std::fs::create_dir_all(&self.storage.data_dir).with_context(|| {
                format!(
                    "cannot create data directory {}",
                    self.storage.data_dir.display()
                )
            })?;
        }
        Ok(StoreOptions {
            url: self.database_url(),
            max_connections: self.storage.max_connections,
            max_batch: self.storage.max_batch,
            cache_ttl: std::time::Duration::from_millis(self.storage.cache_ttl_ms),
            share_writer_core: self.storage.share_writer_core,
            coalesce_wal_writes: self.storage.coalesce_wal_writes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_the_default() {
        let c: Config = toml::from_str("").unwrap();
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.server.body_limit_bytes, 262_144);
        assert!(c.database_url().starts_with("sqlite://"));
        assert_eq!(c.policy.apply(), Policy::default());
    }

    /// The documented example is a valid configuration, and its policy compiles.
    #[test]
    fn the_documented_example_parses() {
        let doc = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../docs/configuration.md"
        ))
        .unwrap();
        let example = doc
            .split("```toml\n")
            .nth(1)
            .and_then(|rest| rest.split("```").next())
            .expect("a toml block");
        let config: Config =
            toml::from_str(example).unwrap_or_else(|e| panic!("docs/configuration.md: {e}"));
        assert_eq!(
            config.policy.approval_ttl_by_class.get("db_migration"),
            Some(&14400)
        );
        assert_eq!(
            config.webhooks.iter().map(|w| w.format).collect::<Vec<_>>(),
            [WebhookFormat::Warden, WebhookFormat::Slack]
        );
        assert_eq!(
            config.policy.trust,
            Some(crate::trust::TrustPolicy::default()),
            "the documented trust table is the built-in one"
        );
        crate::policy::CompiledPolicy::new(config.policy.apply()).unwrap();
    }

    #[test]
    fn policy_overrides_merge_per_class() {
        let c: Config = toml::from_str(
            r#"
            [policy]
            mode = "shadow"
            [policy.risk.deploy]
            dev = "low"
            staging = "medium"
            production = "high"
            "*" = "high"
            [policy.violation_modes]
            docs_update = "flag"
            "#,
        )
        .unwrap();
        let p = c.policy.apply();
        assert_eq!(p.mode, PolicyMode::Shadow);
        assert_eq!(p.risk["deploy"]["production"], RiskLevel::High);
        assert_eq!(
            p.risk["db_migration"],
            Policy::default().risk["db_migration"]
        );
        assert_eq!(p.violation_modes["docs_update"], ViolationMode::Flag);
    }

    #[test]
    fn memory_reset_is_one_of_three_ways() {
        let c: Config = toml::from_str("[plugins]\nmemory_reset = \"scan\"").unwrap();
        assert_eq!(c.plugins.memory_reset, MemoryReset::Scan);
        let c: Config = toml::from_str("").unwrap();
        assert_eq!(c.plugins.memory_reset, MemoryReset::Auto);
        let err = toml::from_str::<Config>("[plugins]\nmemory_reset = \"fast\"")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("memory_reset") && err.contains("`auto`, `copy`"),
            "{err}"
        );
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = toml::from_str::<Config>("[server]\nlisten_on = \"x\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("listen_on"), "{err}");
    }
}
