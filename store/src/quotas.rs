//! The store's part for quota counts: reads, and how each of its writes is applied.

use std::collections::HashMap;

use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row as _};

use crate::error::{Conflict, Result, StoreError};
use crate::writer::{Applied, Query, ROWS_PER_INSERT, multi_insert};
use crate::{CACHE_CAPACITY, Store, Write};

/// A write to quota counts.
#[derive(Debug, Clone)]
pub enum QuotaWrite {
    /// Charge an allowed action to the agent's quotas, all or none: 409 `quota_exceeded` if any
    /// would pass its limit. Counted per batch in memory under the writers' lock (see
    /// `QuotaCounts`), so it holds across replicas. Written before the decision's other rows.
    ChargeQuotas {
        /// The agent.
        agent_id: String,
        /// What the action draws on.
        charges: Vec<warden_core::quotas::Charge>,
    },
    /// Correct a quota's count (an outcome's actual cost replacing the estimate); never fails.
    AdjustQuota {
        /// The agent.
        agent_id: String,
        /// Quota name.
        quota: String,
        /// Its scope.
        scope: String,
        /// The window's start, Unix microseconds.
        window_start: i64,
        /// What to add (negative to take back).
        delta: i64,
    },
}

impl From<QuotaWrite> for Write {
    fn from(w: QuotaWrite) -> Write {
        Write::Quota(w)
    }
}

/// The quota charges and corrections of a batch, summed per count and written with one
/// statement that returns the new counts. If a count with a charge ends over its limit, the
/// writes are refused: a batch then fails and is committed change by change, and a change alone
/// rolls back with `quota_exceeded`. Exact across replicas because every writer's transaction
/// first locks the audit chain's head, so writers take turns. (The decisions service checks the counts
/// before it decides, so this only refuses in a race for the last units.)
#[derive(Default)]
pub(crate) struct QuotaCounts {
    /// Per count: what the batch adds, and the lowest limit a charge of it carried.
    deltas: HashMap<QuotaKey, (i64, Option<i64>)>,
}

/// A quota count's key: agent, quota, scope, window start.
pub(crate) type QuotaKey = (String, String, String, i64);

impl QuotaCounts {
    fn charge(&mut self, agent: &str, charges: &[warden_core::quotas::Charge]) {
        for c in charges {
            let e = self
                .deltas
                .entry((
                    agent.to_string(),
                    c.quota.clone(),
                    c.scope.clone(),
                    c.window.0,
                ))
                .or_insert((0, None));
            e.0 += c.amount;
            e.1 = Some(e.1.map_or(c.limit, |l| l.min(c.limit)));
        }
    }

    /// Adds a write's charges or correction to the sums.
    pub(crate) fn add(&mut self, write: &QuotaWrite) {
        match write {
            QuotaWrite::ChargeQuotas { agent_id, charges } => self.charge(agent_id, charges),
            QuotaWrite::AdjustQuota {
                agent_id,
                quota,
                scope,
                window_start,
                delta,
            } => self.adjust(agent_id, quota, scope, *window_start, *delta),
        }
    }

    fn adjust(&mut self, agent: &str, quota: &str, scope: &str, start: i64, delta: i64) {
        self.deltas
            .entry((
                agent.to_string(),
                quota.to_string(),
                scope.to_string(),
                start,
            ))
            .or_insert((0, None))
            .0 += delta;
    }

    /// Writes the sums and returns the counts they came to; the error names the counts that
    /// charges took over their limits, and by how much.
    pub(crate) async fn flush(
        &self,
        conn: &mut AnyConnection,
    ) -> std::result::Result<Counted, sqlx::Error> {
        let backend = crate::Backend::of(conn);
        let upserts = self.upserts();
        let mut returned = Vec::with_capacity(upserts.len());
        for chunk in upserts.chunks(ROWS_PER_INSERT) {
            let sql = upsert(backend, chunk.len());
            let query = chunk.iter().fold(sqlx::query(&sql), bind_upsert);
            returned.extend(query.fetch_all(&mut *conn).await?);
        }
        self.counted(&returned)
    }

    /// The sums to write, in a fixed order.
    pub(crate) fn upserts(&self) -> Vec<(&QuotaKey, i64)> {
        self.deltas
            .iter()
            .filter(|(_, (delta, _))| *delta != 0)
            .map(|(key, (delta, _))| (key, *delta))
            .collect()
    }

    /// The upserts' statements with positional parameters (SQLite), to run in one call with
    /// others: bind them with [`QuotaCounts::bind`].
    pub(crate) fn statements(upserts: &[(&QuotaKey, i64)], sql: &mut Vec<String>) {
        sql.extend(
            upserts
                .chunks(ROWS_PER_INSERT)
                .map(|chunk| upsert(crate::Backend::Sqlite, chunk.len())),
        );
    }

    /// Binds the upserts' values, in [`QuotaCounts::statements`]' order.
    pub(crate) fn bind<'q>(upserts: &'q [(&'q QuotaKey, i64)], q: Query<'q>) -> Query<'q> {
        upserts.iter().fold(q, bind_upsert)
    }

    /// The counts the upserts returned, or the counts that charges took over their limits.
    pub(crate) fn counted(&self, returned: &[AnyRow]) -> std::result::Result<Counted, sqlx::Error> {
        let mut over = Vec::new();
        let mut first = None;
        let mut counts = Vec::with_capacity(returned.len());
        for r in returned {
            let key: QuotaKey = (
                r.try_get("agent_id")?,
                r.try_get("quota")?,
                r.try_get("scope")?,
                r.try_get("window_start")?,
            );
            let used: i64 = r.try_get("used")?;
            let limit = self.deltas.get(&key).and_then(|(_, limit)| *limit);
            if let Some(excess) = limit.map(|l| used - l).filter(|e| *e > 0) {
                let scope = if key.2 == "*" {
                    String::new()
                } else {
                    format!(" for {}", key.2)
                };
                first.get_or_insert_with(|| {
                    StoreError::Conflict(
                        Conflict::QuotaExceeded,
                        format!("quota `{}`{scope} would pass its limit", key.1),
                    )
                });
                over.push((key, excess));
                continue;
            }
            counts.push((key, used));
        }
        Ok(match first {
            Some(error) => Err((over, error)),
            None => Ok(counts),
        })
    }
}

/// What a batch's quota sums came to: the counts, or the counts over their limits (by how
/// much) and the error that refuses them.
pub(crate) type Counted =
    std::result::Result<Vec<(QuotaKey, i64)>, (Vec<(QuotaKey, i64)>, StoreError)>;

/// Adds `rows` sums to their counts and returns the counts.
fn upsert(backend: crate::Backend, rows: usize) -> String {
    multi_insert(
        backend,
        "quota_usage (agent_id, quota, scope, window_start, used)",
        5,
        rows,
    ) + " ON CONFLICT (agent_id, quota, scope, window_start) DO UPDATE SET used = quota_usage.used + excluded.used \
       RETURNING agent_id, quota, scope, window_start, used"
}

fn bind_upsert<'q>(
    q: Query<'q>,
    ((agent, quota, scope, start), delta): &'q (&QuotaKey, i64),
) -> Query<'q> {
    q.bind(agent.as_str())
        .bind(quota.as_str())
        .bind(scope.as_str())
        .bind(*start)
        .bind(*delta)
}

impl Store {
    /// What each charge's count holds, as far as this process knows (see `ReadCache::quotas`);
    /// read from the database when it does not know.
    pub async fn quota_used(
        &self,
        agent: &str,
        charges: &[warden_core::quotas::Charge],
    ) -> Result<Vec<i64>> {
        {
            let hints = self.cache.quotas.lock().expect("cache lock");
            let known: Option<Vec<i64>> = charges
                .iter()
                .map(|c| {
                    hints
                        .get(&(
                            agent.to_string(),
                            c.quota.clone(),
                            c.scope.clone(),
                            c.window.0,
                        ))
                        .copied()
                })
                .collect();
            if let Some(used) = known {
                return Ok(used);
            }
        }
        self.quota_used_fresh(agent, charges).await
    }

    /// What each charge's count holds now in the database (0 where there is none yet).
    pub async fn quota_used_fresh(
        &self,
        agent: &str,
        charges: &[warden_core::quotas::Charge],
    ) -> Result<Vec<i64>> {
        if charges.is_empty() {
            return Ok(Vec::new());
        }
        let mut sql = String::from(
            "SELECT quota, scope, window_start, used FROM quota_usage WHERE agent_id = $1 AND (",
        );
        for i in 0..charges.len() {
            let n = 2 + i * 3;
            sql.push_str(&format!(
                "{}(quota = ${n} AND scope = ${} AND window_start = ${})",
                if i > 0 { " OR " } else { "" },
                n + 1,
                n + 2
            ));
        }
        sql.push(')');
        let mut q = sqlx::query(&sql).bind(agent);
        for c in charges {
            q = q.bind(&c.quota).bind(&c.scope).bind(c.window.0);
        }
        let rows = q.fetch_all(&self.pool).await?;
        let mut used = vec![0; charges.len()];
        for r in &rows {
            let (quota, scope, start): (String, String, i64) = (
                r.try_get("quota")?,
                r.try_get("scope")?,
                r.try_get("window_start")?,
            );
            if let Some(i) = charges
                .iter()
                .position(|c| c.quota == quota && c.scope == scope && c.window.0 == start)
            {
                used[i] = r.try_get("used")?;
            }
        }
        let mut hints = self.cache.quotas.lock().expect("cache lock");
        if hints.len() >= CACHE_CAPACITY {
            hints.clear();
        }
        for (c, used) in charges.iter().zip(&used) {
            hints.insert(
                (
                    agent.to_string(),
                    c.quota.clone(),
                    c.scope.clone(),
                    c.window.0,
                ),
                *used,
            );
        }
        Ok(used)
    }

    /// An agent's counts of one quota in the window starting at `window_start`, per scope.
    pub async fn quota_scopes(
        &self,
        agent: &str,
        quota: &str,
        window_start: i64,
    ) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query("SELECT scope, used FROM quota_usage WHERE agent_id = $1 AND quota = $2 AND window_start = $3 ORDER BY scope")
            .bind(agent)
            .bind(quota)
            .bind(window_start)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("scope")?, r.try_get("used")?)))
            .collect()
    }

    /// Deletes quota counts of windows that started before `before`; returns how many.
    pub async fn prune_quota_usage(&self, before: i64) -> Result<u64> {
        Ok(
            sqlx::query("DELETE FROM quota_usage WHERE window_start < $1")
                .bind(before)
                .execute(&self.pool)
                .await?
                .rows_affected(),
        )
    }
}

/// Applies one write inside the writer's transaction.
pub(crate) async fn apply(_conn: &mut AnyConnection, write: &QuotaWrite) -> Applied {
    Ok(match write {
        // Counted in memory per batch (`QuotaCounts`), never applied one by one.
        QuotaWrite::ChargeQuotas { .. } | QuotaWrite::AdjustQuota { .. } => Ok(()),
    })
}
