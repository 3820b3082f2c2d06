//! The store's part for agents, humans and API tokens: reads, and how each of its writes is applied.

use std::sync::Arc;

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row as _};
use warden_core::clock::format_micros;
use warden_core::identity::{Agent, AgentStatus, Human, Role, TokenRecord};

use crate::error::{Conflict, Missing, Result, StoreError};
use crate::writer::{Applied, affected, missing};
use crate::{Store, Write};

/// A write to agents, humans and API tokens.
#[derive(Debug, Clone)]
pub enum IdentityWrite {
    /// Create an agent; 409 if the id exists.
    InsertAgent(Agent),
    /// Replace an agent if its version is still `expected_version`; 409 otherwise.
    UpdateAgent {
        /// The new state (its `version` is ignored).
        agent: Agent,
        /// The version the change was computed from.
        expected_version: i64,
        /// Change time, Unix microseconds.
        at: i64,
    },
    /// Create a human; 409 if the id exists.
    InsertHuman(Human, i64),
    /// Store a token; 409 if the same secret exists.
    InsertToken(TokenRecord),
    /// Revoke a token; 404 if unknown or already revoked.
    RevokeToken {
        /// Token id.
        id: String,
        /// Revocation time, Unix microseconds.
        at: i64,
    },
}

impl From<IdentityWrite> for Write {
    fn from(w: IdentityWrite) -> Write {
        Write::Identity(w)
    }
}

const AGENT_COLUMNS: &str = "id, tool, model, team, sponsor, tier, ceiling, parent, status, shadow, version, created_at, updated_at, pinned, tier_since, trust_score, hold_until, last_hard_at, \
     quota_overrides, earned_classes";

fn agent_from_row(r: &AnyRow) -> Result<Agent> {
    let status: String = r.try_get("status")?;
    Ok(Agent {
        id: r.try_get("id")?,
        tool: r.try_get("tool")?,
        model: r.try_get("model")?,
        team: r.try_get("team")?,
        sponsor: r.try_get("sponsor")?,
        tier: small(r.try_get("tier")?)?,
        ceiling: small(r.try_get("ceiling")?)?,
        parent: r.try_get("parent")?,
        status: if status == "suspended" {
            AgentStatus::Suspended
        } else {
            AgentStatus::Active
        },
        shadow: r.try_get::<i64, _>("shadow")? != 0,
        pinned: r.try_get::<i64, _>("pinned")? != 0,
        tier_since: format_micros(
            r.try_get::<Option<i64>, _>("tier_since")?
                .unwrap_or(r.try_get("created_at")?),
        ),
        trust_score: r.try_get("trust_score")?,
        hold_until: r.try_get("hold_until")?,
        last_hard_at: r.try_get("last_hard_at")?,
        quota_overrides: serde_json::from_str(&r.try_get::<String, _>("quota_overrides")?)
            .map_err(StoreError::bug)?,
        earned_classes: serde_json::from_str(&r.try_get::<String, _>("earned_classes")?)
            .map_err(StoreError::bug)?,
        version: r.try_get("version")?,
        created_at: format_micros(r.try_get("created_at")?),
        updated_at: format_micros(r.try_get("updated_at")?),
    })
}

pub(crate) fn small(v: i64) -> Result<u8> {
    u8::try_from(v).map_err(|_| StoreError::bug(format!("stored tier {v} is out of range")))
}

fn human_from_row(r: &AnyRow) -> Result<Human> {
    let grants: String = r.try_get("grants")?;
    Ok(Human {
        id: r.try_get("id")?,
        team: r.try_get("team")?,
        grants: serde_json::from_str(&grants).map_err(StoreError::bug)?,
        created_at: format_micros(r.try_get("created_at")?),
    })
}

pub(crate) fn token_from_row(r: &AnyRow) -> Result<TokenRecord> {
    let role: String = r.try_get("role")?;
    Ok(TokenRecord {
        id: r.try_get("id")?,
        hash: r.try_get("hash")?,
        role: Role::parse(&role)
            .ok_or_else(|| StoreError::bug(format!("stored role `{role}` is unknown")))?,
        subject: r.try_get("subject")?,
        note: r.try_get("note")?,
        created_at: r.try_get("created_at")?,
        revoked_at: r.try_get("revoked_at")?,
    })
}

impl Store {
    /// Looks a token up by the hash of its secret.
    pub async fn token_by_hash(&self, hash: &str) -> Result<Option<Arc<TokenRecord>>> {
        if let Some(t) = self.cache.get(&self.cache.tokens, hash) {
            return Ok(Some(t));
        }
        let row = sqlx::query("SELECT id, hash, role, subject, note, created_at, revoked_at FROM tokens WHERE hash = $1")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?;
        let token = row.map(|r| token_from_row(&r).map(Arc::new)).transpose()?;
        if let Some(t) = &token {
            self.cache.put(&self.cache.tokens, hash, Arc::clone(t));
        }
        Ok(token)
    }

    /// One token by its public id.
    pub async fn token_by_id(&self, id: &str) -> Result<Option<TokenRecord>> {
        let row =
            sqlx::query("SELECT id, hash, role, subject, note, created_at, revoked_at FROM tokens WHERE id = $1").bind(id).fetch_optional(&self.pool).await?;
        row.map(|r| token_from_row(&r)).transpose()
    }

    /// Every token, newest first.
    pub async fn tokens(&self) -> Result<Vec<TokenRecord>> {
        let rows =
            sqlx::query("SELECT id, hash, role, subject, note, created_at, revoked_at FROM tokens ORDER BY created_at DESC").fetch_all(&self.pool).await?;
        rows.iter().map(token_from_row).collect()
    }

    /// One agent, shared with the read cache.
    pub async fn agent(&self, id: &str) -> Result<Option<Arc<Agent>>> {
        if let Some(a) = self.cache.get(&self.cache.agents, id) {
            return Ok(Some(a));
        }
        let agent = self.agent_fresh(id).await?.map(Arc::new);
        if let Some(a) = &agent {
            self.cache.put(&self.cache.agents, id, Arc::clone(a));
        }
        Ok(agent)
    }

    /// One agent from the database, never from the cache (for read-modify-write).
    pub async fn agent_fresh(&self, id: &str) -> Result<Option<Agent>> {
        let row = sqlx::query(&format!("SELECT {AGENT_COLUMNS} FROM agents WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| agent_from_row(&r)).transpose()
    }

    /// Agents, optionally of one team, by id.
    pub async fn agents(&self, team: Option<&str>) -> Result<Vec<Agent>> {
        let rows = match team {
            Some(team) => {
                sqlx::query(&format!(
                    "SELECT {AGENT_COLUMNS} FROM agents WHERE team = $1 ORDER BY id"
                ))
                .bind(team)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(&format!("SELECT {AGENT_COLUMNS} FROM agents ORDER BY id"))
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter().map(agent_from_row).collect()
    }

    /// One human, shared with the read cache.
    pub async fn human(&self, id: &str) -> Result<Option<Arc<Human>>> {
        if let Some(h) = self.cache.get(&self.cache.humans, id) {
            return Ok(Some(h));
        }
        let row = sqlx::query("SELECT id, team, grants, created_at FROM humans WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        let human = row.map(|r| human_from_row(&r).map(Arc::new)).transpose()?;
        if let Some(h) = &human {
            self.cache.put(&self.cache.humans, id, Arc::clone(h));
        }
        Ok(human)
    }

    /// Every human, by id.
    pub async fn humans(&self) -> Result<Vec<Human>> {
        let rows = sqlx::query("SELECT id, team, grants, created_at FROM humans ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(human_from_row).collect()
    }

    /// Ids of active agents, for the tier controller's periodic review.
    pub async fn active_agent_ids(&self) -> Result<Vec<String>> {
        Ok(
            sqlx::query_scalar("SELECT id FROM agents WHERE status = 'active' ORDER BY id")
                .fetch_all(&self.pool)
                .await?,
        )
    }
}

/// Applies one write inside the writer's transaction.
pub(crate) async fn apply(conn: &mut AnyConnection, write: &IdentityWrite) -> Applied {
    Ok(match write {
        IdentityWrite::InsertAgent(a) => {
            let created = warden_core::clock::parse_micros(&a.created_at).unwrap_or_default();
            let n = sqlx::query(
                "INSERT INTO agents (id, tool, model, team, sponsor, tier, ceiling, parent, status, shadow, version, created_at, updated_at, pinned, tier_since) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 1, $11, $11, $12, $11) ON CONFLICT (id) DO NOTHING",
            )
            .bind(&a.id)
            .bind(&a.tool)
            .bind(&a.model)
            .bind(&a.team)
            .bind(&a.sponsor)
            .bind(i64::from(a.tier))
            .bind(i64::from(a.ceiling))
            .bind(&a.parent)
            .bind(a.status.as_str())
            .bind(i64::from(a.shadow))
            .bind(created)
            .bind(i64::from(a.pinned))
            .execute(&mut *conn)
            .await?
            .rows_affected();
            affected(
                n,
                Conflict::AgentExists,
                format!("agent `{}` exists already", a.id),
            )
        }
        IdentityWrite::UpdateAgent {
            agent: a,
            expected_version,
            at,
        } => {
            let n = sqlx::query(
                "UPDATE agents SET tool = $1, model = $2, team = $3, sponsor = $4, tier = $5, ceiling = $6, parent = $7, status = $8, \
                 shadow = $9, version = version + 1, updated_at = $10, pinned = $13, tier_since = $14, hold_until = $15, last_hard_at = $16, \
                 quota_overrides = $17, earned_classes = $18 WHERE id = $11 AND version = $12",
            )
            .bind(&a.tool)
            .bind(&a.model)
            .bind(&a.team)
            .bind(&a.sponsor)
            .bind(i64::from(a.tier))
            .bind(i64::from(a.ceiling))
            .bind(&a.parent)
            .bind(a.status.as_str())
            .bind(i64::from(a.shadow))
            .bind(*at)
            .bind(&a.id)
            .bind(*expected_version)
            .bind(i64::from(a.pinned))
            .bind(warden_core::clock::parse_micros(&a.tier_since).unwrap_or(*at))
            .bind(a.hold_until)
            .bind(a.last_hard_at)
            .bind(serde_json::to_string(&a.quota_overrides).map_err(|e| sqlx::Error::Encode(Box::new(e)))?)
            .bind(serde_json::to_string(&a.earned_classes).map_err(|e| sqlx::Error::Encode(Box::new(e)))?)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            affected(
                n,
                Conflict::ChangedConcurrently,
                format!(
                    "agent `{}` changed while this update was prepared; retry",
                    a.id
                ),
            )
        }
        IdentityWrite::InsertHuman(h, at) => {
            let grants = serde_json::to_string(&h.grants)
                .map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
            let n = sqlx::query("INSERT INTO humans (id, team, grants, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING")
                .bind(&h.id)
                .bind(&h.team)
                .bind(grants)
                .bind(*at)
                .execute(&mut *conn)
                .await?
                .rows_affected();
            affected(
                n,
                Conflict::HumanExists,
                format!("human `{}` exists already", h.id),
            )
        }
        IdentityWrite::InsertToken(t) => {
            let n = sqlx::query("INSERT INTO tokens (id, hash, role, subject, note, created_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING")
                .bind(&t.id)
                .bind(&t.hash)
                .bind(t.role.as_str())
                .bind(&t.subject)
                .bind(&t.note)
                .bind(t.created_at)
                .execute(&mut *conn)
                .await?
                .rows_affected();
            affected(
                n,
                Conflict::TokenExists,
                "this token exists already".to_string(),
            )
        }
        IdentityWrite::RevokeToken { id, at } => {
            let n = sqlx::query(
                "UPDATE tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
            )
            .bind(*at)
            .bind(id)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            missing(n, Missing::Token, format!("no active token `{id}`"))
        }
    })
}
