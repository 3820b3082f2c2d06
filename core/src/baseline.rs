//! Human baselines: how a team's humans do one kind of action (team × service × action class),
//! as `warden-analytics` computes them from activity, and the view of one that an anomaly
//! detector gets for one action.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::records::{Baseline, wire_names};

/// Whose activity a baseline is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BaselineScope {
    /// The team's own humans.
    Team,
    /// Every human of the organisation, because the team has too few (fewer than
    /// [`MIN_TEAM_HUMANS`]) to be its own reference.
    Organisation,
}

wire_names!(BaselineScope { Team => "team", Organisation => "organisation" });

/// Below this many humans a team is compared with the organisation's humans instead.
pub const MIN_TEAM_HUMANS: u32 = 5;

/// Robust summary of a count or a size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Summary {
    /// Mean.
    pub mean: f64,
    /// Median.
    pub median: f64,
    /// Median absolute deviation from the median.
    pub mad: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
}

/// A value humans have used (an environment, a target), with when it was first seen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Seen {
    /// The environment or target.
    pub name: String,
    /// First seen, RFC 3339.
    pub first_seen: String,
    /// How many human actions.
    pub count: u64,
}

/// The baseline of one team, service and action class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HumanBaseline {
    /// Team (the team the baseline is for, also when its scope is the organisation).
    pub team: String,
    /// Service.
    pub service: String,
    /// Action class.
    pub class: String,
    /// Whether the team's humans or the organisation's are the reference.
    pub scope: BaselineScope,
    /// Humans in the reference (the peer group).
    pub humans: u32,
    /// Human actions counted.
    pub events: u64,
    /// Actions per human per active hour (an hour in which that human did at least one).
    pub per_active_hour: Summary,
    /// Actions per human per active day.
    pub per_active_day: Summary,
    /// Actions of the whole reference per hour over the period (all hours, idle ones too).
    pub rate_per_hour: f64,
    /// Share of actions per hour of the week in the configured time zone (168 buckets, Monday
    /// 00:00 first), smoothed over neighbouring hours.
    pub hour_of_week: Vec<f64>,
    /// Raw counts per hour of the week, same buckets.
    pub hour_of_week_counts: Vec<u32>,
    /// Change size (lines added + deleted), where the source gave one; absent when none did.
    pub change_size: Option<Summary>,
    /// Environments used, with first-seen times.
    pub environments: Vec<Seen>,
    /// Targets touched, with first-seen times (the most used, at most [`MAX_TARGETS`]).
    pub targets: Vec<Seen>,
}

/// Targets kept per baseline.
pub const MAX_TARGETS: usize = 2_000;

/// Human actions a baseline needs before detectors judge against it.
pub const MIN_WARM_EVENTS: u64 = 20;

/// How far an agent's actions of one kind in the last hour are counted for anomaly detectors
/// (`actions_last_hour`), given the humans' mean rate of that kind per hour: at least 100, and
/// at least four times the humans' rate and 50 more. Beyond that every detector's verdict is
/// long settled, and counting on would make each decision of a busy agent cost more than the
/// last (a count of every decision in the hour, read on every decision).
pub fn activity_cap(human_rate_per_hour: f64) -> u32 {
    let scaled = (human_rate_per_hour.max(0.0) * 4.0 + 50.0).ceil();
    if scaled >= f64::from(u32::MAX) {
        return u32::MAX;
    }
    (scaled as u32).max(100)
}

impl HumanBaseline {
    /// Whether there is enough history to judge against.
    pub fn warm(&self) -> bool {
        self.events >= MIN_WARM_EVENTS
    }

    /// What an anomaly detector sees for one action: this baseline at the action's
    /// environment, with the action's targets the humans have touched.
    pub fn for_action(&self, environment: &str, targets: &[String], updated_at: i64) -> Baseline {
        Baseline {
            team: self.team.clone(),
            service: self.service.clone(),
            class: self.class.clone(),
            environment: environment.to_string(),
            sample_size: u32::try_from(self.events).unwrap_or(u32::MAX),
            warm: self.warm(),
            rate_per_hour: self.per_active_hour.mean,
            change_size_median: self.change_size.map_or(0.0, |s| s.median),
            change_size_mad: self.change_size.map_or(0.0, |s| s.mad),
            hour_of_week_counts: self.hour_of_week_counts.clone(),
            seen_combinations: self
                .environments
                .iter()
                .map(|e| format!("{}/{}/{}", self.class, e.name, self.service))
                .collect(),
            targets_tracked: !self.targets.is_empty(),
            targets_seen: targets
                .iter()
                .filter(|t| self.targets.iter().any(|s| &s.name == *t))
                .cloned()
                .collect(),
            humans: self.humans,
            organisation: self.scope == BaselineScope::Organisation,
            updated_at,
        }
    }
}

/// One recompute of every baseline: the version the baselines belong to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BaselineRun {
    /// Version, increasing.
    pub version: i64,
    /// When it was computed, RFC 3339.
    pub computed_at: String,
    /// The activity's time range: from (RFC 3339, inclusive).
    pub from: String,
    /// To (RFC 3339, exclusive).
    pub to: String,
    /// Human events read.
    pub events: u64,
    /// Baselines produced.
    pub baselines: u64,
    /// The time zone hours of the week are counted in.
    pub time_zone: String,
}

/// How far an agent's recent work is from its team's humans', as of one day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AgentDrift {
    /// The agent.
    pub agent: String,
    /// The day it is for (`YYYY-MM-DD`, in the baselines' time zone).
    pub day: String,
    /// 0 (works like its team's humans) to 1 (nothing in common): the mean of `mix` and
    /// `timing`.
    pub score: f64,
    /// Jensen–Shannon divergence of its action class × environment mix from the humans'.
    pub mix: f64,
    /// Jensen–Shannon divergence of its hours of the week from the humans'.
    pub timing: f64,
    /// Its actions in the window measured (Warden's decisions and the platform's events).
    pub actions: u64,
    /// The window, days.
    pub window_days: u32,
    /// Whether the organisation's humans stood in for a team without any.
    pub organisation: bool,
    /// When it was computed, RFC 3339.
    pub computed_at: String,
}

/// Where an instant falls in a time zone's week: what baselines count and detectors compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalTime {
    /// Hour of the week, Monday 00:00 local = 0, up to 167.
    pub hour_of_week: u16,
    /// Local hours since 1970-01-01 00:00 local.
    pub hour: i64,
    /// Local days since 1970-01-01.
    pub day: i64,
}

/// Where `at` (Unix microseconds) falls in `tz`'s week. Counting in local time keeps a team's
/// 9 o'clock at 9 o'clock across daylight-saving changes.
pub fn local_time(at: i64, tz: &jiff::tz::TimeZone) -> LocalTime {
    const HOUR_US: i64 = 3_600_000_000;
    let offset = jiff::Timestamp::from_microsecond(at)
        .map(|ts| i64::from(tz.to_offset(ts).seconds()))
        .unwrap_or(0);
    let local = at + offset * 1_000_000;
    let hour = local.div_euclid(HOUR_US);
    let day = hour.div_euclid(24);
    // 1970-01-01 was a Thursday: three days after a Monday.
    let weekday = (day + 3).rem_euclid(7);
    LocalTime {
        hour_of_week: u16::try_from(weekday * 24 + hour.rem_euclid(24)).unwrap_or(0),
        hour,
        day,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activity_is_counted_well_past_what_humans_do() {
        assert_eq!(activity_cap(0.0), 100);
        assert_eq!(activity_cap(f64::NAN), 100);
        assert_eq!(activity_cap(2.5), 100);
        assert_eq!(activity_cap(100.0), 450);
        assert_eq!(activity_cap(1e12), u32::MAX);
    }
    use crate::clock::parse_micros;

    #[test]
    fn local_time_follows_daylight_saving() {
        let berlin = jiff::tz::TimeZone::get("Europe/Berlin").unwrap();
        // 09:00 in Berlin is 08:00 UTC in winter and 07:00 UTC in summer: the same hour of
        // the week either way (a Monday).
        let winter = local_time(parse_micros("2026-01-05T08:00:00Z").unwrap(), &berlin);
        let summer = local_time(parse_micros("2026-07-06T07:00:00Z").unwrap(), &berlin);
        assert_eq!(winter.hour_of_week, 9);
        assert_eq!(summer.hour_of_week, 9);
        let utc = local_time(
            parse_micros("2026-07-06T07:00:00Z").unwrap(),
            &jiff::tz::TimeZone::UTC,
        );
        assert_eq!(utc.hour_of_week, 7);
        // Sunday 23:00 is the last hour of the week.
        let sunday = local_time(
            parse_micros("2026-07-12T23:30:00Z").unwrap(),
            &jiff::tz::TimeZone::UTC,
        );
        assert_eq!(sunday.hour_of_week, 167);
    }
}
