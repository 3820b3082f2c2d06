//! The store's part for stored plugins: reads, and how each of its writes is applied.

use sqlx::{AnyConnection, Row as _};

use crate::error::{Missing, Result};
use crate::writer::{Applied, missing};
use std::sync::Arc;

use crate::{Store, Write};

/// A write to stored plugins.
#[derive(Debug, Clone)]
pub enum PluginWrite {
    /// Create or replace a plugin.
    UpsertPlugin(PluginRow),
    /// Remove a plugin; 404 if unknown.
    DeletePlugin {
        /// Plugin name.
        name: String,
    },
}

impl From<PluginWrite> for Write {
    fn from(w: PluginWrite) -> Write {
        Write::Plugin(w)
    }
}

/// A row of the `plugins` table.
#[derive(Debug, Clone)]
pub struct PluginRow {
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Kind (`classifier`, …).
    pub kind: String,
    /// The manifest, as JSON.
    pub manifest: String,
    /// The component.
    pub component: Arc<Vec<u8>>,
    /// Hex SHA-256 of the component.
    pub sha256: String,
    /// Unix microseconds.
    pub updated_at: i64,
}

impl Store {
    /// Every stored plugin's name and SHA-256 (cheap: for replicas to notice changes).
    pub async fn plugin_hashes(&self) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query("SELECT name, sha256 FROM plugins ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("name")?, r.try_get("sha256")?)))
            .collect()
    }

    /// One stored plugin: its manifest (JSON) and component.
    pub async fn plugin(&self, name: &str) -> Result<Option<(String, Vec<u8>)>> {
        let row = sqlx::query("SELECT manifest, component FROM plugins WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row
            .map(|r| Ok::<_, sqlx::Error>((r.try_get("manifest")?, r.try_get("component")?)))
            .transpose()?)
    }
}

/// Applies one write inside the writer's transaction.
pub(crate) async fn apply(conn: &mut AnyConnection, write: &PluginWrite) -> Applied {
    Ok(match write {
        PluginWrite::UpsertPlugin(p) => {
            sqlx::query(
                "INSERT INTO plugins (name, version, kind, manifest, component, sha256, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (name) DO UPDATE SET version = excluded.version, kind = excluded.kind, manifest = excluded.manifest, \
                 component = excluded.component, sha256 = excluded.sha256, updated_at = excluded.updated_at",
            )
            .bind(&p.name)
            .bind(&p.version)
            .bind(&p.kind)
            .bind(&p.manifest)
            .bind(p.component.as_slice())
            .bind(&p.sha256)
            .bind(p.updated_at)
            .execute(&mut *conn)
            .await?;
            Ok(())
        }
        PluginWrite::DeletePlugin { name } => {
            let n = sqlx::query("DELETE FROM plugins WHERE name = $1")
                .bind(name)
                .execute(&mut *conn)
                .await?
                .rows_affected();
            missing(n, Missing::Plugin, format!("no plugin `{name}`"))
        }
    })
}
