//! Making weekly reports: the facts read from the store, the figures computed by
//! `warden-analytics` off the async threads, the watch list from the tier controller; on
//! request, and on a schedule that keeps each finished week's reports and announces them
//! (`report.ready`) through the outbox, once across replicas.

use std::sync::Arc;

use jiff::civil::{Time, Weekday};
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

use crate::audit::{Actor, AuditRecord};
use crate::clock::{SharedClock, format_micros};
use crate::error::{Error, Result};
use crate::identity::Agent;
use crate::records::{DailyTrust, TierChange, Violation};
use crate::records::{Event, EventData, ReportFigures};
use crate::report::{Facts, IsoWeek, Scope, Toward, WatchRow, WeeklyReport};
use crate::services::notify::Outbox;
use crate::services::tiering::Controller;
use crate::store::{
    Change, Conflict, RecentDecision, ReportWrite, Store, StoreError, StoredReport,
    ViolationFilter, Write,
};
use crate::tiering::NextPromotion;

const DAY: i64 = 86_400_000_000;

/// `[reports]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReportsConfig {
    /// Make and announce each finished week's reports on schedule.
    pub schedule: bool,
    /// The weekday they are made on, after the week ends (`monday` … `sunday`).
    pub day: String,
    /// The local time they are made at (`HH:MM`).
    pub time: String,
    /// The time zone weeks, days and the schedule are counted in (an IANA name).
    pub time_zone: String,
    /// Besides the organisation's, a report per team.
    pub per_team: bool,
}

impl Default for ReportsConfig {
    fn default() -> Self {
        ReportsConfig {
            schedule: true,
            day: "monday".into(),
            time: "08:00".into(),
            time_zone: "UTC".into(),
            per_team: true,
        }
    }
}

/// The checked schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    day: Weekday,
    time: Time,
    zone: TimeZone,
}

impl ReportsConfig {
    /// The schedule, or an error naming the setting.
    pub fn schedule(&self) -> anyhow::Result<Schedule> {
        let zone = TimeZone::get(&self.time_zone).map_err(|e| {
            anyhow::anyhow!(
                "reports.time_zone `{}` is not a time zone: {e}",
                self.time_zone
            )
        })?;
        let day = match self.day.to_ascii_lowercase().as_str() {
            "monday" => Weekday::Monday,
            "tuesday" => Weekday::Tuesday,
            "wednesday" => Weekday::Wednesday,
            "thursday" => Weekday::Thursday,
            "friday" => Weekday::Friday,
            "saturday" => Weekday::Saturday,
            "sunday" => Weekday::Sunday,
            other => anyhow::bail!("reports.day `{other}` is not a weekday (monday … sunday)"),
        };
        let time: Time = self.time.parse().map_err(|_| {
            anyhow::anyhow!(
                "reports.time `{}` is not a time of day such as 08:00",
                self.time
            )
        })?;
        Ok(Schedule { day, time, zone })
    }
}

impl Schedule {
    /// When `week`'s reports are due: the first configured weekday and time after it ends.
    pub fn due(&self, week: IsoWeek) -> i64 {
        let next = week.next().monday();
        let offset = i64::from(self.day.to_monday_zero_offset());
        let day = next.saturating_add(jiff::Span::new().days(offset));
        day.to_datetime(self.time)
            .to_zoned_datetime(self.zone.clone())
            .map_or(i64::MAX, |z| z.timestamp().as_microsecond())
    }

    /// The time zone.
    pub fn zone(&self) -> &TimeZone {
        &self.zone
    }
}

/// A report's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// The JSON report (`docs/reports.md` has its schema).
    #[default]
    Json,
    /// One self-contained HTML page with SVG charts and no script.
    Html,
    /// Markdown, for chat and tickets.
    Md,
    /// One CSV per table.
    Csv,
}

/// A rendered report.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    /// Its media type.
    pub content_type: &'static str,
    /// A file name for it (`warden-2026-W48-organisation.html`).
    pub file_name: String,
    /// The text.
    pub body: String,
}

/// Renders `report` as `format`; CSV needs a `table` (one of [`super::csv::TABLES`]).
pub fn render(report: &WeeklyReport, format: Format, table: Option<&str>) -> Result<Rendered> {
    let stem = format!(
        "warden-{}-{}",
        report.week,
        report.scope.key().replace(':', "-")
    );
    Ok(match format {
        Format::Json => Rendered {
            content_type: "application/json",
            file_name: format!("{stem}.json"),
            body: serde_json::to_string_pretty(report).map_err(Error::internal)?,
        },
        Format::Html => Rendered {
            content_type: "text/html; charset=utf-8",
            file_name: format!("{stem}.html"),
            body: super::html::document(report, None),
        },
        Format::Md => Rendered {
            content_type: "text/markdown; charset=utf-8",
            file_name: format!("{stem}.md"),
            body: super::markdown::markdown(report),
        },
        Format::Csv => {
            let tables = super::csv::TABLES.join(", ");
            let name = table.ok_or_else(|| {
                Error::field(
                    "table",
                    format!("CSV is one table at a time: name one of {tables}"),
                )
            })?;
            let body = super::csv::table(report, name).ok_or_else(|| {
                Error::field(
                    "table",
                    format!("no table `{name}`; the tables are {tables}"),
                )
            })?;
            Rendered {
                content_type: "text/csv; charset=utf-8",
                file_name: format!("{stem}-{name}.csv"),
                body,
            }
        }
    })
}

/// The scope named by a `team` or an `agent` (at most one), or the organisation.
pub fn scope_of(team: Option<String>, agent: Option<String>) -> Result<Scope> {
    let named = |field: &str, v: String| {
        if v.is_empty() || v.len() > 200 {
            Err(Error::field(
                field,
                format!("`{field}` must be 1 to 200 characters"),
            ))
        } else {
            Ok(v)
        }
    };
    match (team, agent) {
        (Some(_), Some(_)) => Err(Error::field(
            "agent",
            "name a team or an agent, not both: an agent's report already sits beside its team's humans",
        )),
        (Some(t), None) => Ok(Scope::Team(named("team", t)?)),
        (None, Some(a)) => Ok(Scope::Agent(named("agent", a)?)),
        (None, None) => Ok(Scope::Organisation),
    }
}

/// What an agent's page shows: its trust and tier over time, what its next tier needs, and
/// its latest decisions and violations.
#[derive(Debug, Clone)]
pub struct AgentOverview {
    /// The agent.
    pub agent: Agent,
    /// Its trust score now.
    pub score: f64,
    /// Its next promotion's gates, where there is one.
    pub next: Option<NextPromotion>,
    /// How close it is to a demotion, if it is.
    pub demotion: Option<String>,
    /// Its score and tier at the end of each day, oldest first (90 days).
    pub daily: Vec<DailyTrust>,
    /// Its tier changes, newest first.
    pub changes: Vec<TierChange>,
    /// Its latest decisions, newest first.
    pub decisions: Vec<RecentDecision>,
    /// Its violations of the last 30 days, newest first.
    pub violations: Vec<Violation>,
}

/// The reports service.
#[derive(Debug, Clone)]
pub struct Reports {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    clock: SharedClock,
    tiers: Controller,
    outbox: Arc<Outbox>,
    config: ReportsConfig,
    schedule: Schedule,
    public_url: String,
}

impl Reports {
    /// The service; `public_url` is where the web UI is reached, for links in announcements.
    pub fn new(
        store: Store,
        clock: SharedClock,
        tiers: Controller,
        outbox: Arc<Outbox>,
        config: ReportsConfig,
        public_url: String,
    ) -> anyhow::Result<Reports> {
        let schedule = config.schedule()?;
        Ok(Reports {
            inner: Arc::new(Inner {
                store,
                clock,
                tiers,
                outbox,
                config,
                schedule,
                public_url,
            }),
        })
    }

    /// The week named (`2026-W48`), or by default the last finished week; an error names
    /// `week`.
    pub fn week_of(&self, week: Option<&str>) -> Result<IsoWeek> {
        match week {
            Some(w) => IsoWeek::parse(w).map_err(|e| Error::field("week", e)),
            None => Ok(self.current_week().previous()),
        }
    }

    /// The week that is running now.
    pub fn current_week(&self) -> IsoWeek {
        IsoWeek::at(self.inner.clock.now_micros(), self.inner.schedule.zone())
    }

    /// The time zone weeks are counted in.
    pub fn time_zone(&self) -> &str {
        &self.inner.config.time_zone
    }

    /// Reads what a report of `week` for `scope` is made from.
    pub async fn facts(&self, week: IsoWeek, scope: &Scope) -> Result<Facts> {
        let store = &self.inner.store;
        let zone = self.inner.schedule.zone();
        let bounds = Facts::bounds_of(week, zone);
        let (from, to) = (bounds[0], bounds[14]);
        let agents = store.report_agents(scope).await?;
        if let Scope::Agent(id) | Scope::Team(id) = scope
            && agents.is_empty()
        {
            return Err(match scope {
                Scope::Agent(_) => Error::not_found("unknown_agent", format!("no agent `{id}`")),
                _ => Error::not_found("unknown_team", format!("no team `{id}` (no agent has it)")),
            });
        }
        // The humans beside a team's agents are that team's; beside one agent, its team's.
        let team = match scope {
            Scope::Organisation => None,
            Scope::Team(t) => Some(t.clone()),
            Scope::Agent(_) => agents.first().map(|a| a.team.clone()),
        };
        let (first, last) = (
            week.previous().days()[0].to_string(),
            week.days()[6].to_string(),
        );
        // The reads run at once, each week's decisions on a connection of its own.
        let (last_week, this_week, humans, approvals, violations, trust, tier_changes, drift) = tokio::try_join!(
            store.report_decisions(scope, &bounds[..8]),
            store.report_decisions(scope, &bounds[7..]),
            store.report_humans(team.as_deref(), from, to),
            store.report_approvals(scope, from, to),
            store.report_violations(scope, from, to),
            store.report_trust(scope, from, to),
            store.report_tier_changes(scope, from),
            store.report_drift(scope, &first, &last),
        )?;
        let mut decisions = last_week;
        decisions.extend(this_week);
        Ok(Facts {
            week,
            scope: scope.clone(),
            time_zone: self.inner.config.time_zone.clone(),
            bounds,
            now: self.inner.clock.now_micros(),
            decisions,
            humans,
            approvals,
            violations,
            trust,
            tier_changes,
            drift,
            agents,
        })
    }

    /// Makes the report of `week` for `scope` now.
    pub async fn weekly(&self, week: IsoWeek, scope: &Scope) -> Result<WeeklyReport> {
        let started = std::time::Instant::now();
        let facts = self.facts(week, scope).await?;
        let (read, decisions) = (started.elapsed(), facts.decisions.len());
        let mut report = tokio::task::spawn_blocking(move || warden_analytics::weekly(&facts))
            .await
            .map_err(Error::internal)?
            .map_err(Error::internal)?;
        let computed = started.elapsed();
        report.watch = self.watch(scope).await?;
        tracing::info!(week = %week, scope = %scope.key(), decisions,
            read_ms = read.as_millis() as u64,
            compute_ms = (computed - read).as_millis() as u64,
            watch_ms = (started.elapsed() - computed).as_millis() as u64,
            "weekly report made");
        Ok(report)
    }

    /// Agents close to a promotion (at most one gate missing, or all met) or a demotion.
    async fn watch(&self, scope: &Scope) -> Result<Vec<WatchRow>> {
        let tiers = &self.inner.tiers;
        let mut out = Vec::new();
        let store = &self.inner.store;
        let agents = match scope {
            Scope::Organisation => store.agents(None).await?,
            Scope::Team(t) => store.agents(Some(t.as_str())).await?,
            Scope::Agent(id) => store
                .agent(id)
                .await?
                .map(Arc::unwrap_or_clone)
                .into_iter()
                .collect(),
        };
        for agent in agents {
            let a = tiers.assess(agent, true, false).await?;
            if let Some(warning) = tiers.demotion_warning(&a) {
                out.push(WatchRow {
                    agent: a.agent.id.clone(),
                    tier: a.agent.tier,
                    toward: Toward::Demotion,
                    detail: warning,
                });
                continue;
            }
            let Some(next) = tiers.next_promotion(&a).await? else {
                continue;
            };
            let missing: Vec<String> = next
                .gates
                .iter()
                .filter(|g| !g.met)
                .map(|g| format!("{} needs {} (has {})", g.gate, g.needs, g.has))
                .collect();
            if missing.len() <= 1 {
                out.push(WatchRow {
                    agent: a.agent.id.clone(),
                    tier: a.agent.tier,
                    toward: Toward::Promotion,
                    detail: if missing.is_empty() {
                        format!(
                            "every gate of tier {} holds; promoted at its next review",
                            next.tier
                        )
                    } else {
                        format!("tier {}: {}", next.tier, missing.join("; "))
                    },
                });
            }
        }
        Ok(out)
    }

    /// What agent `id`'s page shows.
    pub async fn agent_overview(&self, id: &str) -> Result<AgentOverview> {
        let store = &self.inner.store;
        let agent = store
            .agent(id)
            .await?
            .ok_or_else(|| Error::not_found("unknown_agent", format!("no agent `{id}`")))?;
        let a = self
            .inner
            .tiers
            .assess(Arc::unwrap_or_clone(agent), true, false)
            .await?;
        let now = a.now;
        let since = now.saturating_sub(90 * DAY);
        let mut violations = store
            .violations(&ViolationFilter {
                agent: Some(id.to_string()),
                since: Some(now.saturating_sub(30 * DAY)),
                limit: 1000,
                ..Default::default()
            })
            .await?;
        violations.reverse();
        violations.truncate(20);
        Ok(AgentOverview {
            score: a.trust.score,
            next: self.inner.tiers.next_promotion(&a).await?,
            demotion: self.inner.tiers.demotion_warning(&a),
            daily: store.trust_daily(id, since).await?,
            changes: store.tier_changes(id, since, 50).await?,
            decisions: store.recent_decisions(id, 20).await?,
            violations,
            agent: a.agent,
        })
    }

    /// A kept report.
    pub async fn stored(&self, week: IsoWeek, scope: &Scope) -> Result<Option<WeeklyReport>> {
        let Some(kept) = self
            .inner
            .store
            .stored_report(&week.to_string(), &scope.key())
            .await?
        else {
            return Ok(None);
        };
        serde_json::from_str(&kept.report)
            .map(Some)
            .map_err(Error::internal)
    }

    /// `week`'s report for `scope`: the kept one if the schedule made it, or one made now.
    pub async fn report(&self, week: IsoWeek, scope: &Scope) -> Result<WeeklyReport> {
        match self.stored(week, scope).await? {
            Some(kept) => Ok(kept),
            None => self.weekly(week, scope).await,
        }
    }

    /// The kept reports: week, scope, when made (newest week first).
    pub async fn kept(&self, limit: i64) -> Result<Vec<(String, String, i64)>> {
        Ok(self.inner.store.stored_reports(limit).await?)
    }

    /// Makes, keeps and announces `week`'s report for `scope`, unless it is kept already
    /// (here or by another replica). Returns whether this call kept it.
    pub async fn keep(&self, week: IsoWeek, scope: &Scope) -> Result<bool> {
        if self
            .inner
            .store
            .stored_report(&week.to_string(), &scope.key())
            .await?
            .is_some()
        {
            return Ok(false);
        }
        let report = self.weekly(week, scope).await?;
        let now = self.inner.clock.now_micros();
        let link = format!(
            "{}/ui/reports/{week}?scope={}",
            self.inner.public_url.trim_end_matches('/'),
            scope.key()
        );
        let a = &report.headline.agents;
        let h = &report.headline.humans;
        let event = Event::new(
            now,
            EventData::ReportReady {
                week: week.to_string(),
                scope: scope.key(),
                summary: report.summary.clone(),
                activity: report.activity,
                agents: ReportFigures {
                    changes: a.changes.this_week,
                    failure_rate: a.failure_rate.this_week,
                },
                humans: ReportFigures {
                    changes: h.changes.this_week,
                    failure_rate: h.failure_rate.this_week,
                },
                url: link,
            },
        );
        let mut writes = vec![Write::Report(ReportWrite::Keep(StoredReport {
            week: week.to_string(),
            scope: scope.key(),
            generated_at: now,
            report: serde_json::to_string(&report).map_err(Error::internal)?,
        }))];
        writes.extend(self.inner.outbox.writes(&event, now));
        let record = AuditRecord::change(
            Actor::warden(),
            "report.ready",
            format!("report:{week}:{}", scope.key()),
            event.data.to_value(),
            now,
        );
        match self
            .inner
            .store
            .commit(Change {
                writes,
                audit: vec![record],
            })
            .await
        {
            Ok(()) => {
                self.inner.outbox.notify();
                Ok(true)
            }
            Err(StoreError::Conflict(Conflict::ReportKept, _)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// The scheduled step: once the last finished week's reports are due, keeps and announces
    /// the organisation's and (with `per_team`) each team's.
    pub async fn scheduled(&self) -> Result<()> {
        if !self.inner.config.schedule {
            return Ok(());
        }
        let now = self.inner.clock.now_micros();
        let week = IsoWeek::at(now, self.inner.schedule.zone()).previous();
        if now < self.inner.schedule.due(week) {
            return Ok(());
        }
        let mut scopes = vec![Scope::Organisation];
        if self.inner.config.per_team {
            let mut teams: Vec<String> = self
                .inner
                .store
                .report_agents(&Scope::Organisation)
                .await?
                .into_iter()
                .map(|a| a.team)
                .collect();
            teams.sort();
            teams.dedup();
            scopes.extend(teams.into_iter().map(Scope::Team));
        }
        for scope in scopes {
            if self.keep(week, &scope).await? {
                tracing::info!(week = %week, scope = %scope.key(), at = %format_micros(now), "weekly report kept and announced");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::parse_micros;

    #[test]
    fn the_schedule_falls_after_the_week_in_its_zone() {
        let s = ReportsConfig::default().schedule().unwrap();
        let w = IsoWeek::parse("2026-W53").unwrap();
        assert_eq!(s.due(w), parse_micros("2027-01-04T08:00:00Z").unwrap());
        let berlin = ReportsConfig {
            day: "Tuesday".into(),
            time: "07:30".into(),
            time_zone: "Europe/Berlin".into(),
            ..Default::default()
        }
        .schedule()
        .unwrap();
        assert_eq!(berlin.due(w), parse_micros("2027-01-05T06:30:00Z").unwrap());
        for (bad, setting) in [
            (
                ReportsConfig {
                    day: "someday".into(),
                    ..Default::default()
                },
                "reports.day",
            ),
            (
                ReportsConfig {
                    time: "25:00".into(),
                    ..Default::default()
                },
                "reports.time",
            ),
            (
                ReportsConfig {
                    time_zone: "Mars/Olympus".into(),
                    ..Default::default()
                },
                "reports.time_zone",
            ),
        ] {
            let e = bad.schedule().unwrap_err().to_string();
            assert!(e.contains(setting), "{e}");
        }
    }
}
