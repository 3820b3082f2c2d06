//! Publishing plugins: checked, compiled, stored with their hash and an audit record, installed
//! here, and picked up by every other replica on its next sync. Running them is
//! `warden-plugin-host`'s.

use std::path::Path;
use std::sync::Arc;

use crate::audit::{Actor, AuditRecord};
use crate::error::{Error, Kind, Result};
use crate::plugins::manifest::Manifest;
use crate::plugins::runtime::LoadedPlugin;
use crate::plugins::{PluginHost, read_dir};
use crate::store::{Change, PluginRow, PluginWrite, Store, Write};

/// Publishes every `<dir>/<name>/plugin.toml` with its `plugin.wasm` (see [`Self::publish`]);
/// returns what changed.
pub async fn publish_dir(
    host: &Arc<PluginHost>,
    dir: &Path,
    store: &Store,
    now: i64,
) -> anyhow::Result<Vec<String>> {
    let mut changed = Vec::new();
    let actor = Actor::configuration();
    for (manifest, bytes) in read_dir(dir)? {
        if let Some(id) = publish(host, store, actor.clone(), manifest, bytes, now)
            .await
            .map_err(|e| anyhow::anyhow!("{}", e.message))?
        {
            changed.push(id);
        }
    }
    Ok(changed)
}

/// The reference plugins built into the binary: name, manifest and core module.
const REFERENCE: [(&str, &str, &[u8]); 3] = [
    (
        "action-classifier",
        include_str!("../../../plugins/action-classifier/plugin.toml"),
        include_bytes!(concat!(env!("OUT_DIR"), "/action-classifier.wasm")),
    ),
    (
        "baseline-anomaly",
        include_str!("../../../plugins/baseline-anomaly/plugin.toml"),
        include_bytes!(concat!(env!("OUT_DIR"), "/baseline-anomaly.wasm")),
    ),
    (
        "canary-rollback",
        include_str!("../../../plugins/canary-rollback/plugin.toml"),
        include_bytes!(concat!(env!("OUT_DIR"), "/canary-rollback.wasm")),
    ),
];

/// Publishes the reference plugins built into the binary, each unless a plugin of its name is
/// stored already (a team's own version, or the reference one from an earlier start).
pub async fn publish_reference(
    host: &Arc<PluginHost>,
    store: &Store,
    now: i64,
) -> anyhow::Result<Vec<String>> {
    let stored = store.plugin_hashes().await?;
    let mut published = Vec::new();
    for (name, manifest, module) in REFERENCE {
        if stored.iter().any(|(n, _)| n == name) {
            continue;
        }
        let manifest: Manifest = toml::from_str(manifest)
            .map_err(|e| anyhow::anyhow!("plugins/{name}/plugin.toml: {e}"))?;
        let component = crate::plugins::build::componentize(module)?;
        if let Some(id) = publish(
            host,
            store,
            Actor::configuration(),
            manifest,
            component,
            now,
        )
        .await
        .map_err(|e| anyhow::anyhow!("reference plugin {name}: {}", e.message))?
        {
            published.push(id);
        }
    }
    Ok(published)
}

/// Checks, compiles and stores a plugin with an audit record, then installs it here (other
/// replicas pick it up on their next sync). Returns `name@version` if anything changed, and
/// nothing if the same component and manifest are already stored.
pub async fn publish(
    host: &Arc<PluginHost>,
    store: &Store,
    actor: Actor,
    manifest: Manifest,
    bytes: Vec<u8>,
    now: i64,
) -> Result<Option<String>> {
    let bytes = Arc::new(bytes);
    let plugin = compile(host, manifest, bytes.clone())
        .await
        .map_err(|e| Error::new(Kind::BadRequest, "invalid_plugin", format!("{e:#}")))?;
    let manifest_json = serde_json::to_string(plugin.manifest.as_ref()).map_err(Error::internal)?;
    let previous = host
        .snapshot()
        .iter()
        .find(|p| p.manifest.name == plugin.manifest.name)
        .cloned();
    if let Some(prev) = &previous
        && prev.sha256 == plugin.sha256
        && prev.manifest == plugin.manifest
    {
        return Ok(None);
    }
    let id = plugin.manifest.id();
    let event = if previous.is_some() {
        "plugin.replaced"
    } else {
        "plugin.loaded"
    };
    let details = serde_json::json!({
        "name": plugin.manifest.name, "version": plugin.manifest.version, "kind": plugin.manifest.kind, "sha256": plugin.sha256, "size": plugin.size,
        "failure_policy": plugin.manifest.failure_policy(), "limits": plugin.manifest.limits, "classes": plugin.manifest.classes,
        "previous": previous.as_ref().map(|p| serde_json::json!({"version": p.manifest.version, "sha256": p.sha256})),
    });
    let row = PluginRow {
        name: plugin.manifest.name.clone(),
        version: plugin.manifest.version.clone(),
        kind: plugin.manifest.kind.world().to_string(),
        manifest: manifest_json,
        component: bytes,
        sha256: plugin.sha256.clone(),
        updated_at: now,
    };
    let record = plugin_record(actor, event, &plugin.manifest.name, details, now);
    store
        .commit(Change {
            writes: vec![Write::Plugin(PluginWrite::UpsertPlugin(row))],
            audit: vec![record],
        })
        .await?;
    host.install(plugin);
    Ok(Some(id))
}

/// Removes a plugin from the store (audited) and from this replica.
pub async fn unpublish(
    host: &PluginHost,
    store: &Store,
    actor: Actor,
    name: &str,
    now: i64,
) -> Result<()> {
    let previous = host
        .snapshot()
        .iter()
        .find(|p| p.manifest.name == name)
        .cloned();
    let details = serde_json::json!({ "name": name, "version": previous.as_ref().map(|p| p.manifest.version.clone()), "sha256": previous.as_ref().map(|p| p.sha256.clone()) });
    let record = plugin_record(actor, "plugin.removed", name, details, now);
    store
        .commit(Change {
            writes: vec![Write::Plugin(PluginWrite::DeletePlugin {
                name: name.to_string(),
            })],
            audit: vec![record],
        })
        .await?;
    host.remove(name);
    Ok(())
}

/// Converges this replica on the store: loads new or changed plugins, drops removed ones.
pub async fn sync(host: &Arc<PluginHost>, store: &Store) -> anyhow::Result<()> {
    let stored = store.plugin_hashes().await?;
    let loaded = host.snapshot();
    for (name, sha) in &stored {
        if loaded
            .iter()
            .any(|p| &p.manifest.name == name && &p.sha256 == sha)
        {
            continue;
        }
        let Some((manifest_json, bytes)) = store.plugin(name).await? else {
            continue;
        };
        let manifest: Manifest = serde_json::from_str(&manifest_json)?;
        match compile(host, manifest, Arc::new(bytes)).await {
            Ok(plugin) => {
                tracing::info!(plugin = %plugin.manifest.id(), sha256 = %plugin.sha256, "plugin synced from the store");
                host.install(plugin);
            }
            Err(e) => {
                tracing::error!(plugin = %name, error = %format!("{e:#}"), "stored plugin does not load here")
            }
        }
    }
    for plugin in loaded
        .iter()
        .filter(|p| !stored.iter().any(|(n, _)| n == &p.manifest.name))
    {
        tracing::info!(plugin = %plugin.manifest.id(), "plugin removed from the store; unloading");
        host.remove(&plugin.manifest.name);
    }
    Ok(())
}

/// Compiles a component on a blocking thread. Cranelift takes about 0.2 s for a reference
/// plugin on two cores (more the larger the component), and a request thread held that long
/// stalls the requests queued on it: an upload here, and on every other replica its next sync.
async fn compile(
    host: &Arc<PluginHost>,
    manifest: Manifest,
    bytes: Arc<Vec<u8>>,
) -> anyhow::Result<LoadedPlugin> {
    let host = host.clone();
    tokio::task::spawn_blocking(move || host.runtime().load(manifest, &bytes))
        .await
        .map_err(|e| anyhow::anyhow!("compiling the plugin did not finish: {e}"))?
}

fn plugin_record(
    actor: Actor,
    event: &str,
    name: &str,
    details: serde_json::Value,
    now: i64,
) -> AuditRecord {
    let authorizing_human = if actor.kind == "admin" && actor.id != "configuration" {
        Some(actor.id.clone())
    } else {
        None
    };
    AuditRecord {
        authorizing_human,
        ..AuditRecord::change(actor, event, format!("plugin:{name}"), details, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// While a component compiles, the request thread it was asked on goes on serving others.
    #[tokio::test(flavor = "current_thread")]
    async fn a_compile_leaves_the_request_thread_free() {
        let host = Arc::new(PluginHost::with_spares(0).unwrap());
        let (_, manifest, module) = REFERENCE[0];
        let manifest: Manifest = toml::from_str(manifest).unwrap();
        let component = crate::plugins::build::componentize(module).unwrap();
        let compiling = tokio::spawn({
            let host = host.clone();
            async move { compile(&host, manifest, Arc::new(component)).await }
        });
        // On this runtime's one thread: a compile that held it would run to its end in the
        // task's first poll, leaving this loop a turn or two; off it, the loop turns until the
        // compile is done.
        let mut turns = 0u64;
        while !compiling.is_finished() {
            tokio::task::yield_now().await;
            turns += 1;
        }
        let plugin = compiling.await.unwrap().unwrap();
        assert_eq!(plugin.manifest.name, "action-classifier");
        assert!(
            turns > 100,
            "the thread turned {turns} times while the plugin compiled"
        );
    }
}
