//! Quotas and rate limits (DESIGN.md, pipeline step 6): what an agent may spend, call and deploy
//! per window, checked and consumed with the decision in one transaction, so they hold exactly
//! on one node and across replicas.
//!
//! Every quota counts in a fixed window: a calendar minute, hour or day (days in the policy's
//! time zone, so a team's cost budget resets at its midnight). Built in: `cost_per_day` (US
//! dollars of estimated cost, corrected by the actual cost reported with the outcome),
//! `calls_per_minute` (every request, denied ones included: over it, an agent is cut off until
//! the window ends) and `deploys_per_hour_per_service`; a team adds its own
//! counters (action class × environment × window). Limits come from the agent's tier, then the
//! team's overrides, then the agent's own (`PUT /v1/agents/{id}/quotas`).

use std::collections::BTreeMap;

use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::clock::format_micros;
use crate::policy::{MAX_TIER, glob_match};

/// A quota's window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Window {
    /// A calendar minute.
    Minute,
    /// A calendar hour.
    Hour,
    /// A calendar day in the policy's time zone.
    Day,
}

/// What a quota counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// Decisions allowed.
    Calls,
    /// US dollars of estimated cost (counted in cents).
    Usd,
}

impl Unit {
    /// How amounts read: `calls` or `USD`.
    pub fn label(self) -> &'static str {
        match self {
            Unit::Calls => "calls",
            Unit::Usd => "USD",
        }
    }
}

/// Which requests a quota counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Counting {
    /// Actions allowed: a denied action, or one waiting for an approval, costs nothing.
    #[default]
    Allowed,
    /// Every request the agent makes, whatever its verdict. Over the limit, the agent is cut
    /// off (429) until the window ends instead of being judged: a rate limit, not a budget.
    Requests,
}

/// One quota.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    /// Name (`a-z`, `0-9`, `_`), used in overrides and answers.
    pub name: String,
    /// What it counts.
    #[serde(default = "calls")]
    pub unit: Unit,
    /// Which requests it counts.
    #[serde(default)]
    pub counts: Counting,
    /// Action classes it counts (a pattern; `*` for all).
    #[serde(default = "star")]
    pub class: String,
    /// Environments it counts (a pattern; case-insensitive).
    #[serde(default = "star", deserialize_with = "crate::policy::environment_name")]
    pub environment: String,
    /// Whether each service has its own count.
    #[serde(default)]
    pub per_service: bool,
    /// The window.
    pub window: Window,
    /// Limit per tier, 0 to 4 (calls, or US dollars); absent means unlimited.
    pub limits: Vec<Option<f64>>,
}

fn calls() -> Unit {
    Unit::Calls
}
fn star() -> String {
    "*".into()
}

/// Quotas: part of the policy (`[policy.quotas]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct QuotaPolicy {
    /// Whether quotas are enforced.
    pub enabled: bool,
    /// IANA time zone of daily windows (e.g. `Europe/Berlin`).
    pub time_zone: String,
    /// The built-in quotas, then the team's own counters.
    pub quotas: Vec<Quota>,
    /// Per team: quota name → limit, over the tier's.
    pub teams: BTreeMap<String, BTreeMap<String, f64>>,
}

impl Default for QuotaPolicy {
    fn default() -> QuotaPolicy {
        let q = |name: &str,
                 unit,
                 counts,
                 class: &str,
                 per_service,
                 window,
                 limits: [Option<f64>; 5]| Quota {
            name: name.into(),
            unit,
            counts,
            class: class.into(),
            environment: "*".into(),
            per_service,
            window,
            limits: limits.to_vec(),
        };
        QuotaPolicy {
            enabled: true,
            time_zone: "UTC".into(),
            // The platform's stated needs are the standard tier's (2): $500 of cost a day, 100
            // calls a minute, 5 deploys an hour per service. docs/quotas.md gives each tier's reason.
            quotas: vec![
                q(
                    "cost_per_day",
                    Unit::Usd,
                    Counting::Allowed,
                    "*",
                    false,
                    Window::Day,
                    [
                        Some(0.0),
                        Some(100.0),
                        Some(500.0),
                        Some(1000.0),
                        Some(2000.0),
                    ],
                ),
                q(
                    "calls_per_minute",
                    Unit::Calls,
                    Counting::Requests,
                    "*",
                    false,
                    Window::Minute,
                    [Some(100.0); 5],
                ),
                q(
                    "deploys_per_hour_per_service",
                    Unit::Calls,
                    Counting::Allowed,
                    "deploy",
                    true,
                    Window::Hour,
                    [Some(0.0), Some(2.0), Some(5.0), Some(10.0), Some(20.0)],
                ),
            ],
            teams: BTreeMap::new(),
        }
    }
}

/// The largest limit or override a quota takes.
pub const MAX_LIMIT: f64 = 1e9;

impl QuotaPolicy {
    /// Checks names, patterns, limits and the time zone.
    pub fn validate(&self) -> Result<(), String> {
        self.zone()?;
        let mut names = std::collections::HashSet::new();
        for (i, q) in self.quotas.iter().enumerate() {
            let at = format!("policy.quotas.quotas[{i}]");
            if q.name.is_empty()
                || q.name.len() > 64
                || !q
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            {
                return Err(format!(
                    "{at}.name `{}` must be 1–64 of a-z, 0-9 and _",
                    q.name
                ));
            }
            if !names.insert(q.name.as_str()) {
                return Err(format!("{at}.name `{}` is defined twice", q.name));
            }
            if q.limits.len() != usize::from(MAX_TIER) + 1 {
                return Err(format!(
                    "{at}.limits must have one entry per tier, 0 to {MAX_TIER}"
                ));
            }
            for limit in q.limits.iter().flatten() {
                check_limit(q, *limit).map_err(|e| format!("{at}.limits: {e}"))?;
            }
        }
        for (team, limits) in &self.teams {
            for (name, limit) in limits {
                let q = self
                    .quota(name)
                    .ok_or_else(|| format!("policy.quotas.teams.{team}.{name}: no such quota"))?;
                check_limit(q, *limit)
                    .map_err(|e| format!("policy.quotas.teams.{team}.{name}: {e}"))?;
            }
        }
        Ok(())
    }

    /// The time zone of daily windows.
    pub fn zone(&self) -> Result<TimeZone, String> {
        TimeZone::get(&self.time_zone).map_err(|e| {
            format!(
                "policy.quotas.time_zone `{}` is not a known IANA time zone: {e}",
                self.time_zone
            )
        })
    }

    /// A quota by name.
    pub fn quota(&self, name: &str) -> Option<&Quota> {
        self.quotas.iter().find(|q| q.name == name)
    }
}

/// Checks a limit for a quota: a finite number from 0 to `MAX_LIMIT`, whole for counts, whole cents for dollars.
pub fn check_limit(q: &Quota, limit: f64) -> Result<(), String> {
    if !(limit.is_finite() && (0.0..=MAX_LIMIT).contains(&limit)) {
        return Err(format!("{limit} is not a limit from 0 to {MAX_LIMIT}"));
    }
    match q.unit {
        Unit::Calls if limit.fract() != 0.0 => Err(format!(
            "`{}` counts calls: {limit} is not a whole number",
            q.name
        )),
        Unit::Usd if ((limit * 100.0).round() - limit * 100.0).abs() > 1e-6 => Err(format!(
            "`{}` is in US dollars: {limit} has fractions of a cent",
            q.name
        )),
        _ => Ok(()),
    }
}

/// Whole cents from US dollars.
pub fn cents(usd: f64) -> i64 {
    (usd * 100.0).round() as i64
}

/// A quota's limit for an agent, in its units (cents for dollars), and where it comes from.
pub fn limit_of(
    q: &Quota,
    tier: u8,
    team: Option<&BTreeMap<String, f64>>,
    agent: &BTreeMap<String, f64>,
) -> (Option<i64>, &'static str) {
    let (limit, source) = match (agent.get(&q.name), team.and_then(|t| t.get(&q.name))) {
        (Some(l), _) => (Some(*l), "agent"),
        (None, Some(l)) => (Some(*l), "team"),
        (None, None) => (q.limits.get(usize::from(tier)).copied().flatten(), "tier"),
    };
    (
        limit.map(|l| {
            if q.unit == Unit::Usd {
                cents(l)
            } else {
                l as i64
            }
        }),
        source,
    )
}

/// The window containing `now`: its start and end, Unix microseconds.
pub fn window_at(window: Window, now: i64, zone: &TimeZone) -> (i64, i64) {
    const MINUTE: i64 = 60_000_000;
    match window {
        Window::Minute => {
            let start = now.div_euclid(MINUTE) * MINUTE;
            (start, start + MINUTE)
        }
        Window::Hour => {
            let start = now.div_euclid(60 * MINUTE) * 60 * MINUTE;
            (start, start + 60 * MINUTE)
        }
        Window::Day if *zone == TimeZone::UTC => {
            let start = now.div_euclid(1440 * MINUTE) * 1440 * MINUTE;
            (start, start + 1440 * MINUTE)
        }
        Window::Day => {
            // Calendar days in the zone: 23 or 25 hours long on daylight-saving changes.
            let Ok(ts) = jiff::Timestamp::from_microsecond(now) else {
                return (now, now + 1440 * MINUTE);
            };
            let zoned = ts.to_zoned_datetime(zone.clone());
            let start = zoned
                .start_of_day()
                .map(|z| z.timestamp().as_microsecond())
                .unwrap_or(now);
            let end = zoned
                .tomorrow()
                .and_then(|t| t.start_of_day())
                .map(|z| z.timestamp().as_microsecond())
                .unwrap_or(start + 1440 * MINUTE);
            (start, end)
        }
    }
}

/// One quota an action draws on: the key of its count, what it adds and its limit.
#[derive(Debug, Clone, PartialEq)]
pub struct Charge {
    /// Quota name.
    pub quota: String,
    /// `*`, or the service for per-service quotas.
    pub scope: String,
    /// The window's start and end, Unix microseconds.
    pub window: (i64, i64),
    /// What the action adds (1 call, or cents).
    pub amount: i64,
    /// The limit.
    pub limit: i64,
    /// The unit.
    pub unit: Unit,
    /// Which requests it counts.
    pub counts: Counting,
}

/// What an action of `class` in `environment` for `service`, costing `estimated_usd`, draws on
/// (unlimited quotas are left out).
pub fn charges(
    policy: &QuotaPolicy,
    zone: &TimeZone,
    agent: &crate::identity::Agent,
    (class, environment, service): (&str, &str, &str),
    estimated_usd: Option<f64>,
    now: i64,
) -> Vec<Charge> {
    let (tier, overrides) = (agent.tier, &agent.quota_overrides);
    let team = policy.teams.get(&agent.team);
    policy
        .quotas
        .iter()
        .filter(|q| glob_match(&q.class, class) && glob_match(&q.environment, environment))
        .filter_map(|q| {
            let (limit, _) = limit_of(q, tier, team, overrides);
            let amount = match q.unit {
                Unit::Calls => 1,
                Unit::Usd => cents(estimated_usd.unwrap_or(0.0)),
            };
            Some(Charge {
                quota: q.name.clone(),
                scope: if q.per_service {
                    service.to_string()
                } else {
                    "*".into()
                },
                window: window_at(q.window, now, zone),
                amount,
                limit: limit?,
                unit: q.unit,
                counts: q.counts,
            })
        })
        .collect()
}

/// The quotas an action draws on and their counts when the decision began.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QuotaPlan {
    /// What the action draws on.
    pub charges: Vec<Charge>,
    /// Each charge's count, read before the decision (the charge itself re-checks at commit).
    pub used: Vec<i64>,
    /// Each charge whose window already has its overrun on record as a violation (as far as
    /// the deciding process knows; a charge not listed has none). A denial for going over it
    /// again is a decision like any other, not another violation: an agent retrying a spent
    /// quota overruns it once per window, as a rate-limited flood does.
    pub overrun_recorded: Vec<bool>,
}

/// A quota's headroom after a decision, as the answer shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Headroom {
    /// Quota name.
    pub quota: String,
    /// `*`, or the service.
    pub scope: String,
    /// `calls` or `usd`.
    pub unit: Unit,
    /// The limit.
    pub limit: f64,
    /// Used in this window (with this action when it was allowed).
    pub used: f64,
    /// What is left.
    pub remaining: f64,
    /// When the count resets (RFC 3339).
    pub resets_at: String,
}

impl Charge {
    /// The headroom with `used` counted in this window.
    pub fn headroom(&self, used: i64) -> Headroom {
        let show = |v: i64| {
            if self.unit == Unit::Usd {
                v as f64 / 100.0
            } else {
                v as f64
            }
        };
        Headroom {
            quota: self.quota.clone(),
            scope: self.scope.clone(),
            unit: self.unit,
            limit: show(self.limit),
            used: show(used),
            remaining: show((self.limit - used).max(0)),
            resets_at: format_micros(self.window.1),
        }
    }

    /// Whether adding this action stays within the limit, given what is used.
    pub fn fits(&self, used: i64) -> bool {
        used.saturating_add(self.amount) <= self.limit
    }

    /// Whether it counts every request (a rate limit) rather than allowed actions.
    pub fn every_request(&self) -> bool {
        self.counts == Counting::Requests
    }
}

impl QuotaPlan {
    /// The first rate limit (a quota counting every request) the request does not fit in: the
    /// agent is cut off until its window ends rather than judged.
    pub fn over_rate_limit(&self) -> Option<(&Charge, i64)> {
        self.charges
            .iter()
            .zip(&self.used)
            .find(|(c, used)| c.every_request() && !c.fits(**used))
            .map(|(c, used)| (c, *used))
    }

    /// Whether the `i`th charge's overrun in its window is already on record.
    pub fn overrun_recorded(&self, i: usize) -> bool {
        self.overrun_recorded.get(i).copied().unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::parse_micros;

    fn at(s: &str) -> i64 {
        parse_micros(s).unwrap()
    }

    fn agent() -> crate::identity::Agent {
        crate::identity::Agent::new("a", "payments", 2)
    }

    #[test]
    fn windows_are_calendar_minutes_hours_and_days_in_the_zone() {
        let utc = TimeZone::UTC;
        assert_eq!(
            window_at(Window::Day, at("2026-11-26T23:59:59Z"), &utc),
            (at("2026-11-26T00:00:00Z"), at("2026-11-27T00:00:00Z"))
        );
        assert_eq!(
            window_at(
                Window::Day,
                at("2026-11-26T23:59:59Z"),
                &TimeZone::get("Etc/UTC").unwrap()
            ),
            (at("2026-11-26T00:00:00Z"), at("2026-11-27T00:00:00Z")),
            "the zone's own arithmetic agrees"
        );
        assert_eq!(
            window_at(Window::Hour, at("2026-11-26T10:59:59.999999Z"), &utc),
            (at("2026-11-26T10:00:00Z"), at("2026-11-26T11:00:00Z"))
        );
        assert_eq!(
            window_at(Window::Hour, at("2026-11-26T11:00:00Z"), &utc).0,
            at("2026-11-26T11:00:00Z")
        );
        assert_eq!(
            window_at(Window::Minute, at("2026-11-26T10:07:30Z"), &utc),
            (at("2026-11-26T10:07:00Z"), at("2026-11-26T10:08:00Z"))
        );
        let ny = TimeZone::get("America/New_York").unwrap();
        // 03:00 UTC is still the 25th in New York (UTC-5 in November).
        assert_eq!(
            window_at(Window::Day, at("2026-11-26T03:00:00Z"), &ny),
            (at("2026-11-25T05:00:00Z"), at("2026-11-26T05:00:00Z"))
        );
        // The day the clocks go back is 25 hours long.
        let (start, end) = window_at(Window::Day, at("2026-11-01T12:00:00Z"), &ny);
        assert_eq!(end - start, 25 * 3_600_000_000);
    }

    #[test]
    fn the_standard_tier_starts_from_the_platforms_stated_needs() {
        let p = QuotaPolicy::default();
        let standard = |name: &str| p.quota(name).unwrap().limits[2];
        assert_eq!(standard("cost_per_day"), Some(500.0));
        assert_eq!(standard("calls_per_minute"), Some(100.0));
        assert_eq!(standard("deploys_per_hour_per_service"), Some(5.0));
        assert!(p.quota("deploys_per_hour_per_service").unwrap().per_service);
        let counting: Vec<_> = p
            .quotas
            .iter()
            .map(|q| (q.name.as_str(), q.counts))
            .collect();
        assert_eq!(
            counting,
            [
                ("cost_per_day", Counting::Allowed),
                ("calls_per_minute", Counting::Requests),
                ("deploys_per_hour_per_service", Counting::Allowed)
            ]
        );
        // A plan over its rate limit names it; over a budget alone, it does not.
        let c = charges(
            &p,
            &TimeZone::UTC,
            &agent(),
            ("deploy", "staging", "payments"),
            None,
            at("2026-11-26T10:30:00Z"),
        );
        let plan = |used: Vec<i64>| QuotaPlan {
            charges: c.clone(),
            used,
            ..QuotaPlan::default()
        };
        assert_eq!(plan(vec![0, 99, 5]).over_rate_limit(), None);
        let over = plan(vec![0, 100, 0]);
        let (charge, used) = over.over_rate_limit().unwrap();
        assert_eq!((charge.quota.as_str(), used), ("calls_per_minute", 100));
    }

    #[test]
    fn limits_come_from_the_agent_then_the_team_then_the_tier() {
        let p = QuotaPolicy::default();
        let q = p.quota("cost_per_day").unwrap();
        let none = BTreeMap::new();
        let team: BTreeMap<String, f64> = [("cost_per_day".to_string(), 250.0)].into();
        let agent: BTreeMap<String, f64> = [("cost_per_day".to_string(), 12.34)].into();
        assert_eq!(limit_of(q, 2, None, &none), (Some(50_000), "tier"));
        assert_eq!(limit_of(q, 2, Some(&team), &none), (Some(25_000), "team"));
        assert_eq!(limit_of(q, 2, Some(&team), &agent), (Some(1_234), "agent"));
    }

    #[test]
    fn an_action_draws_on_the_quotas_that_match_it() {
        let p = QuotaPolicy::default();
        let now = at("2026-11-26T10:30:00Z");
        let c = charges(
            &p,
            &TimeZone::UTC,
            &agent(),
            ("deploy", "production", "payments"),
            Some(12.5),
            now,
        );
        let names: Vec<(&str, &str, i64)> = c
            .iter()
            .map(|c| (c.quota.as_str(), c.scope.as_str(), c.amount))
            .collect();
        assert_eq!(
            names,
            [
                ("cost_per_day", "*", 1250),
                ("calls_per_minute", "*", 1),
                ("deploys_per_hour_per_service", "payments", 1)
            ]
        );
        let docs = charges(
            &p,
            &TimeZone::UTC,
            &agent(),
            ("docs_update", "dev", "payments"),
            None,
            now,
        );
        assert_eq!(docs.len(), 2, "no deploy quota for docs");
        assert!(c[2].fits(4) && !c[2].fits(5));
    }

    #[test]
    fn a_team_counter_counts_its_class_and_environment() {
        let mut p = QuotaPolicy::default();
        p.quotas.push(Quota {
            name: "prod_migrations_per_day".into(),
            unit: Unit::Calls,
            class: "db_migration".into(),
            environment: "prod*".into(),
            counts: Counting::Allowed,
            per_service: false,
            window: Window::Day,
            limits: vec![Some(0.0), Some(0.0), Some(1.0), Some(2.0), Some(5.0)],
        });
        assert_eq!(p.validate(), Ok(()));
        let now = at("2026-11-26T10:30:00Z");
        let names = |class, env| -> Vec<String> {
            charges(
                &p,
                &TimeZone::UTC,
                &agent(),
                (class, env, "payments"),
                None,
                now,
            )
            .into_iter()
            .map(|c| c.quota)
            .collect()
        };
        assert!(
            names("db_migration", "production").contains(&"prod_migrations_per_day".to_string())
        );
        assert!(!names("db_migration", "staging").contains(&"prod_migrations_per_day".to_string()));
        assert!(!names("deploy", "production").contains(&"prod_migrations_per_day".to_string()));
        let c = charges(
            &p,
            &TimeZone::UTC,
            &agent(),
            ("db_migration", "production", "payments"),
            None,
            now,
        )
        .pop()
        .unwrap();
        assert_eq!(
            (c.limit, c.window),
            (1, (at("2026-11-26T00:00:00Z"), at("2026-11-27T00:00:00Z"))),
            "tier 2's limit, today"
        );
    }

    #[test]
    fn bad_policies_are_refused() {
        assert_eq!(QuotaPolicy::default().validate(), Ok(()));
        let p = QuotaPolicy {
            time_zone: "Mars/Olympus".into(),
            ..Default::default()
        };
        assert!(p.validate().unwrap_err().contains("time_zone"));
        let mut p = QuotaPolicy::default();
        p.teams
            .insert("payments".into(), [("nope".to_string(), 1.0)].into());
        assert!(p.validate().unwrap_err().contains("no such quota"));
        let mut p = QuotaPolicy::default();
        p.quotas[1].limits[2] = Some(1.5);
        assert!(p.validate().unwrap_err().contains("whole number"));
        let q = p.quota("cost_per_day").unwrap().clone();
        assert!(
            check_limit(&q, -1.0).is_err()
                && check_limit(&q, f64::NAN).is_err()
                && check_limit(&q, 1e12).is_err()
                && check_limit(&q, 0.001).is_err()
        );
        assert!(check_limit(&q, 99.99).is_ok());
    }
}
