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
