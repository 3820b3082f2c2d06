//! Weekly behaviour reports (DESIGN.md, "Weekly behaviour reports"): ISO weeks, the facts a
//! report is computed from, and the report itself, whose JSON is the documented schema
//! (`docs/reports.md`). `warden-analytics` computes a report from facts; the service reads the
//! facts and renders the report.
//!
//! Every figure is a pair, this week's beside the previous week's, so a reader never has to
//! open two reports to see a trend. A rate with nothing to divide is `null` ("not computed"),
//! never 0.

use std::fmt;

use jiff::civil::{Date, ISOWeekDate, Weekday};
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::decision::Verdict;
use crate::records::{ApprovalStatus, OutcomeStatus};

/// The JSON report's schema name and version; a change that removes or renames a field bumps it.
pub const SCHEMA: &str = "warden.weekly-report/1";

/// The class that reads and changes nothing: it is never a "change" in the headline.
pub const READ_CLASS: &str = "read";

/// How many anomalous decisions the report lists.
pub const TOP_ANOMALIES: usize = 10;

/// How many approvers the report names.
pub const TOP_APPROVERS: usize = 5;

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// An ISO 8601 week (`2026-W48`): Monday to Sunday, week 1 holding the year's first Thursday.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IsoWeek(ISOWeekDate);

impl IsoWeek {
    /// The week of `year` numbered `week`, if that year has it (52 or 53 weeks).
    pub fn new(year: i16, week: i8) -> Option<IsoWeek> {
        ISOWeekDate::new(year, week, Weekday::Monday)
            .ok()
            .map(IsoWeek)
    }

    /// Parses `2026-W48` (also `2026W48`).
    pub fn parse(s: &str) -> Result<IsoWeek, String> {
        let bad = || format!("`{s}` is not an ISO week such as 2026-W48");
        let (year, week) = s
            .split_once("-W")
            .or_else(|| s.split_once('W'))
            .ok_or_else(bad)?;
        if year.len() != 4 || week.len() != 2 {
            return Err(bad());
        }
        let year: i16 = year.parse().map_err(|_| bad())?;
        let week: i8 = week.parse().map_err(|_| bad())?;
        IsoWeek::new(year, week).ok_or_else(|| format!("{year} has no week {week}"))
    }

    /// The week `date` falls in.
    pub fn containing(date: Date) -> IsoWeek {
        let w = date.iso_week_date();
        IsoWeek::new(w.year(), w.week()).expect("a date's own week exists")
    }

    /// The week the instant `micros` falls in, in `tz`.
    pub fn at(micros: i64, tz: &TimeZone) -> IsoWeek {
        IsoWeek::containing(local_date(micros, tz))
    }

    /// The ISO year (which differs from the calendar year around New Year).
    pub fn year(self) -> i16 {
        self.0.year()
    }

    /// The week number, 1 to 53.
    pub fn week(self) -> i8 {
        self.0.week()
    }

    /// Its Monday.
    pub fn monday(self) -> Date {
        self.0.date()
    }

    /// The week before.
    pub fn previous(self) -> IsoWeek {
        IsoWeek::containing(self.monday().saturating_sub(jiff::Span::new().days(7)))
    }

    /// The week after.
    pub fn next(self) -> IsoWeek {
        IsoWeek::containing(self.monday().saturating_add(jiff::Span::new().days(7)))
    }

    /// Its seven days, Monday first.
    pub fn days(self) -> [Date; 7] {
        let monday = self.monday();
        std::array::from_fn(|i| monday.saturating_add(jiff::Span::new().days(i as i64)))
    }

    /// The instants (Unix microseconds) its days start at in `tz`, and the next Monday's
    /// start: eight boundaries, so a day of a daylight-saving change is 23 or 25 hours.
    pub fn bounds(self, tz: &TimeZone) -> [i64; 8] {
        let monday = self.monday();
        std::array::from_fn(|i| {
            let day = monday.saturating_add(jiff::Span::new().days(i as i64));
            day_start(day, tz)
        })
    }
}

impl fmt::Display for IsoWeek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-W{:02}", self.year(), self.week())
    }
}

impl Serialize for IsoWeek {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for IsoWeek {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<IsoWeek, D::Error> {
        let s = String::deserialize(d)?;
        IsoWeek::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The date an instant falls on in `tz`.
pub fn local_date(micros: i64, tz: &TimeZone) -> Date {
    let ts = jiff::Timestamp::from_microsecond(micros).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    tz.to_datetime(ts).date()
}

/// When `day` starts in `tz` (Unix microseconds).
fn day_start(day: Date, tz: &TimeZone) -> i64 {
    day.to_zoned_datetime(tz.clone())
        .map(|z| z.timestamp().as_microsecond())
        .unwrap_or_else(|_| {
            let days = day
                .since(Date::constant(1970, 1, 1))
                .map_or(0, |s| i64::from(s.get_days()));
            days * MICROS_PER_DAY
        })
}

/// Whose report it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum Scope {
    /// Every agent and every human.
    Organisation,
    /// One team's agents, beside that team's humans.
    Team(String),
    /// One agent, beside its team's humans.
    Agent(String),
}

impl Scope {
    /// `organisation`, `team:payments`, `agent:deploy-bot`: a stored report's key.
    pub fn key(&self) -> String {
        match self {
            Scope::Organisation => "organisation".into(),
            Scope::Team(t) => format!("team:{t}"),
            Scope::Agent(a) => format!("agent:{a}"),
        }
    }

    /// The inverse of [`Scope::key`].
    pub fn from_key(key: &str) -> Option<Scope> {
        match key.split_once(':') {
            None if key == "organisation" => Some(Scope::Organisation),
            Some(("team", t)) if !t.is_empty() => Some(Scope::Team(t.into())),
            Some(("agent", a)) if !a.is_empty() => Some(Scope::Agent(a.into())),
            _ => None,
        }
    }

    /// For titles: "the organisation", "team payments", "agent deploy-bot".
    pub fn title(&self) -> String {
        match self {
            Scope::Organisation => "the organisation".into(),
            Scope::Team(t) => format!("team {t}"),
            Scope::Agent(a) => format!("agent {a}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Facts: what the service reads for the two weeks a report covers (its week and the one before).

/// An agent in scope, as it is now.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentFact {
    /// Agent id.
    pub id: String,
    /// Owning team.
    pub team: String,
    /// Current tier.
    pub tier: u8,
}

/// A plugin call that did not end well, from a decision's plugin reports.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginIssue {
    /// `name@version`.
    pub plugin: String,
    /// It ran out of fuel, memory, or another limit the host sets (not the plugin's own error).
    pub limit: bool,
    /// Its failure closed the decision (the plugin's `fail_closed` policy).
    pub fail_closed: bool,
}

/// One of an agent's decisions, or `count` alike decisions of one day (same agent, class,
/// environment, verdicts and outcome, and nothing notable).
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionFact {
    /// Decision id (for a notable decision; empty for a group).
    pub id: String,
    /// How many decisions it stands for.
    pub count: u64,
    /// Unix microseconds (a group's earliest).
    pub at: i64,
    /// Agent id.
    pub agent: String,
    /// Action class.
    pub class: String,
    /// Environment.
    pub environment: String,
    /// The verdict.
    pub verdict: Verdict,
    /// In shadow mode: what enforcement would have said.
    pub shadow_verdict: Option<Verdict>,
    /// Whether an outcome report was expected (an allowed action with an outcome deadline).
    pub outcome_expected: bool,
    /// The outcome on record.
    pub outcome: Option<OutcomeStatus>,
    /// The anomaly detectors' highest severity, when any finding was above 0.
    pub anomaly: Option<u8>,
    /// The findings' messages, when `anomaly` is set.
    pub findings: Vec<String>,
    /// The quota that denied it (`quota_exceeded`).
    pub quota: Option<String>,
    /// Plugin calls that failed.
    pub plugin_issues: Vec<PluginIssue>,
}

impl DecisionFact {
    /// Whether it is a production change the agent was allowed to make.
    pub fn production_change(&self) -> bool {
        self.verdict == Verdict::Allow && is_production_change(&self.environment, &self.class)
    }
}

/// Whether an action of `class` in `environment` changes production.
pub fn is_production_change(environment: &str, class: &str) -> bool {
    environment == "production" && class != READ_CLASS
}

/// Whether a failed plugin call's error names a limit the host sets (`fuel`, `memory`, and the
/// input and output sizes), as the plugin runtime records them, rather than a trap or the
/// plugin's own error.
pub fn is_limit(error: &str) -> bool {
    matches!(error, "fuel" | "memory" | "input" | "output")
}

/// A human's action, from the platform's activity (events, GitHub, Kubernetes).
#[derive(Debug, Clone, PartialEq)]
pub struct HumanFact {
    /// Unix microseconds.
    pub at: i64,
    /// The human.
    pub actor: String,
    /// Their team.
    pub team: String,
    /// Action class.
    pub class: String,
    /// Environment.
    pub environment: String,
    /// The outcome the platform reported.
    pub outcome: Option<OutcomeStatus>,
}

/// An approval request.
#[derive(Debug, Clone, PartialEq)]
pub struct ApprovalFact {
    /// Unix microseconds it was requested.
    pub created_at: i64,
    /// The agent that asked.
    pub agent: String,
    /// Where it stands now.
    pub status: ApprovalStatus,
    /// When humans decided it (approved or rejected).
    pub decided_at: Option<i64>,
    /// The humans who decided it.
    pub deciders: Vec<String>,
}

/// A policy violation.
#[derive(Debug, Clone, PartialEq)]
pub struct ViolationFact {
    /// Unix microseconds.
    pub at: i64,
    /// Agent id.
    pub agent: String,
    /// Reason code.
    pub reason: String,
    /// `block`, `flag` or `guard`.
    pub mode: String,
}

/// An agent's trust at the end of a day.
#[derive(Debug, Clone, PartialEq)]
pub struct TrustFact {
    /// Agent id.
    pub agent: String,
    /// The day.
    pub day: Date,
    /// The score.
    pub score: f64,
    /// The tier.
    pub tier: u8,
}

/// A tier change.
#[derive(Debug, Clone, PartialEq)]
pub struct TierChangeFact {
    /// Agent id.
    pub agent: String,
    /// Unix microseconds.
    pub at: i64,
    /// Tier before.
    pub from: u8,
    /// Tier after.
    pub to: u8,
    /// Reason code.
    pub reason: String,
    /// Why, for humans.
    pub text: String,
}

/// An agent's drift from its team's humans on a day.
#[derive(Debug, Clone, PartialEq)]
pub struct DriftFact {
    /// Agent id.
    pub agent: String,
    /// The day.
    pub day: Date,
    /// 0 (like the humans) to 1 (nothing in common).
    pub score: f64,
}

/// Everything a report is computed from, for its week and the week before.
#[derive(Debug, Clone)]
pub struct Facts {
    /// The report's week.
    pub week: IsoWeek,
    /// Whose report.
    pub scope: Scope,
    /// The time zone days and weeks are counted in (an IANA name).
    pub time_zone: String,
    /// Both weeks' day boundaries: the previous week's seven days, then this week's, then the
    /// end (15 instants).
    pub bounds: [i64; 15],
    /// When the report is made (Unix microseconds).
    pub now: i64,
    /// Agents in scope.
    pub agents: Vec<AgentFact>,
    /// Their decisions.
    pub decisions: Vec<DecisionFact>,
    /// The humans' changes beside them (the organisation's, or the team's).
    pub humans: Vec<HumanFact>,
    /// Approval requests made by agents in scope.
    pub approvals: Vec<ApprovalFact>,
    /// Their violations.
    pub violations: Vec<ViolationFact>,
    /// Their daily trust, both weeks.
    pub trust: Vec<TrustFact>,
    /// Their tier changes, both weeks.
    pub tier_changes: Vec<TierChangeFact>,
    /// Their drift, both weeks.
    pub drift: Vec<DriftFact>,
}

impl Facts {
    /// The two weeks' day boundaries for `week` in `tz`.
    pub fn bounds_of(week: IsoWeek, tz: &TimeZone) -> [i64; 15] {
        let prev = week.previous().bounds(tz);
        let this = week.bounds(tz);
        let mut out = [0; 15];
        out[..7].copy_from_slice(&prev[..7]);
        out[7..].copy_from_slice(&this);
        out
    }

    /// Which of the 14 days `micros` falls in (0–6 the previous week, 7–13 this one).
    pub fn day_of(&self, micros: i64) -> Option<usize> {
        if micros < self.bounds[0] || micros >= self.bounds[14] {
            return None;
        }
        Some(self.bounds.partition_point(|b| *b <= micros) - 1)
    }
}

// ---------------------------------------------------------------------------------------------
// The report.

/// A count this week and the week before.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Count {
    /// This week.
    pub this_week: u64,
    /// The week before.
    pub last_week: u64,
}

/// A rate, a mean or a duration this week and the week before; `null` where there was nothing
/// to compute it from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Figure {
    /// This week.
    pub this_week: Option<f64>,
    /// The week before.
    pub last_week: Option<f64>,
}

impl Figure {
    /// `part / whole` for each week.
    pub fn ratio(part: Count, whole: Count) -> Figure {
        let r = |p: u64, w: u64| (w > 0).then(|| p as f64 / w as f64);
        Figure {
            this_week: r(part.this_week, whole.this_week),
            last_week: r(part.last_week, whole.last_week),
        }
    }
}

/// Production changes and how they went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Changes {
    /// Production changes made (for agents: allowed by Warden).
    pub changes: Count,
    /// Of them, failed.
    pub failed: Count,
    /// Of them, rolled back.
    pub rolled_back: Count,
    /// (failed + rolled back) / changes.
    pub failure_rate: Figure,
}

/// The headline: AI agents' production changes beside the humans'.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Headline {
    /// By AI agents.
    pub agents: Changes,
    /// By humans.
    pub humans: Changes,
}

/// Decisions by verdict.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Verdicts {
    /// Every decision.
    pub decisions: Count,
    /// Allowed.
    pub allowed: Count,
    /// Sent for a human's approval.
    pub approval_required: Count,
    /// Denied.
    pub denied: Count,
    /// Shadow mode: allowed, but enforcement would have denied.
    pub shadow_would_deny: Count,
}

/// Actions of one class in one environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ActionRow {
    /// Action class.
    pub class: String,
    /// Environment.
    pub environment: String,
    /// Decisions.
    pub actions: Count,
}

/// One day of this week.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DayRow {
    /// `YYYY-MM-DD`, in the report's time zone.
    pub day: String,
    /// Allowed.
    pub allowed: u64,
    /// Sent for approval.
    pub approval_required: u64,
    /// Denied.
    pub denied: u64,
}

/// A bucket of approvals' time to decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WaitBucket {
    /// `under 5 min`, `5–15 min`, …
    pub label: String,
    /// Approvals decided within it.
    pub decided: Count,
}

/// A human and the approvals they decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ApproverRow {
    /// The human.
    pub human: String,
    /// Approvals they approved or rejected this week.
    pub decided: u64,
}

/// Approval requests made in the week, and how they went.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Approvals {
    /// Requested.
    pub requested: Count,
    /// Approved (used or not).
    pub approved: Count,
    /// Rejected.
    pub rejected: Count,
    /// Lapsed undecided.
    pub expired: Count,
    /// Still waiting.
    pub pending: Count,
    /// Median minutes from request to a human's decision.
    pub median_minutes: Figure,
    /// 90th percentile of the same.
    pub p90_minutes: Figure,
    /// Time to decision, bucketed.
    pub time_to_decision: Vec<WaitBucket>,
    /// Who decided most, this week.
    pub top_approvers: Vec<ApproverRow>,
}

/// How agents' actions of a class went, beside the humans' changes of the same class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OutcomeRow {
    /// Action class.
    pub class: String,
    /// Agents' allowed actions that owed an outcome report.
    pub expected: Count,
    /// Reported succeeded.
    pub succeeded: Count,
    /// Reported failed.
    pub failed: Count,
    /// Rolled back.
    pub rolled_back: Count,
    /// No outcome reported (overdue, or not yet in).
    pub unreported: Count,
    /// succeeded / expected.
    pub success_rate: Figure,
    /// failed / expected.
    pub failure_rate: Figure,
    /// rolled back / expected.
    pub rollback_rate: Figure,
    /// unreported / expected.
    pub unreported_rate: Figure,
    /// The humans' changes of this class.
    pub human_changes: Count,
    /// The humans' (failed + rolled back) / changes.
    pub human_failure_rate: Figure,
}

/// Violations of one reason in one mode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ViolationRow {
    /// Reason code.
    pub reason: String,
    /// `block`, `flag` or `guard`.
    pub mode: String,
    /// Violations.
    pub violations: Count,
}

/// Denials by one quota.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct QuotaRow {
    /// The quota's name.
    pub quota: String,
    /// Decisions it denied.
    pub hits: Count,
}

/// An anomalous decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AnomalyRow {
    /// Decision id.
    pub decision_id: String,
    /// Agent id.
    pub agent: String,
    /// RFC 3339.
    pub at: String,
    /// Action class.
    pub class: String,
    /// Environment.
    pub environment: String,
    /// Highest severity, 1–100.
    pub severity: u8,
    /// What the detectors said.
    pub findings: Vec<String>,
}

/// Anomaly findings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Anomalies {
    /// Decisions with a finding above severity 0.
    pub decisions: Count,
    /// Of them, severity 70 or more.
    pub severe: Count,
    /// The most severe this week.
    pub top: Vec<AnomalyRow>,
}

/// An agent's week.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AgentRow {
    /// Agent id.
    pub agent: String,
    /// Owning team.
    pub team: String,
    /// Tier at the start of the week (at the end of the previous one's last day on record).
    pub tier_start: Option<u8>,
    /// Tier at the end of the week (or now, for the running week).
    pub tier_end: Option<u8>,
    /// Decisions.
    pub decisions: Count,
    /// Allowed.
    pub allowed: Count,
    /// Sent for approval.
    pub approval_required: Count,
    /// Denied.
    pub denied: Count,
    /// Production changes it made.
    pub production_changes: Count,
    /// Their (failed + rolled back) / changes.
    pub failure_rate: Figure,
    /// Violations.
    pub violations: Count,
    /// Mean drift from its team's humans over the days measured.
    pub drift: Figure,
    /// Trust score at the end of each day of the week (`null`: no score that day).
    pub trust: Vec<Option<f64>>,
    /// Score at the end of the week, and at the end of the week before.
    pub score: Figure,
}

/// A team's week.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TeamRow {
    /// Team.
    pub team: String,
    /// Its agents.
    pub agents: u64,
    /// Its agents' decisions.
    pub decisions: Count,
    /// Its agents' production changes.
    pub production_changes: Count,
    /// Their (failed + rolled back) / changes.
    pub failure_rate: Figure,
    /// Its humans' production changes.
    pub human_changes: Count,
    /// Their (failed + rolled back) / changes.
    pub human_failure_rate: Figure,
    /// Its agents' violations.
    pub violations: Count,
}

/// A tier change during the week.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TierChangeRow {
    /// Agent id.
    pub agent: String,
    /// RFC 3339.
    pub at: String,
    /// Tier before.
    pub from: u8,
    /// Tier after.
    pub to: u8,
    /// Reason code.
    pub reason: String,
    /// Why.
    pub text: String,
}

/// Which way an agent is close to moving.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Toward {
    /// Up a tier.
    Promotion,
    /// Down a tier.
    Demotion,
}

/// An agent close to a tier change, as of when the report was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WatchRow {
    /// Agent id.
    pub agent: String,
    /// Its tier.
    pub tier: u8,
    /// Which way.
    pub toward: Toward,
    /// What is missing (the unmet gates), or how close the demotion is.
    pub detail: String,
}

/// A plugin's troubles.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PluginRow {
    /// `name@version`.
    pub plugin: String,
    /// Calls that failed (its own error, a trap or a limit).
    pub errors: Count,
    /// Of them, limits the host set (fuel, memory, sizes).
    pub limit_hits: Count,
    /// Of them, failures that closed the decision.
    pub fail_closed: Count,
}

/// A weekly behaviour report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WeeklyReport {
    /// [`SCHEMA`].
    pub schema: String,
    /// The ISO week, `2026-W48`.
    #[schema(value_type = String, example = "2026-W48")]
    pub week: IsoWeek,
    /// The week the figures are compared with.
    #[schema(value_type = String, example = "2026-W47")]
    pub previous_week: IsoWeek,
    /// Whose report.
    pub scope: Scope,
    /// The time zone days are counted in.
    pub time_zone: String,
    /// The week's start, RFC 3339.
    pub from: String,
    /// The next week's start, RFC 3339.
    pub until: String,
    /// When it was made, RFC 3339. A report of the running week covers up to here.
    pub generated_at: String,
    /// Whether anything happened in either week; a report without activity says so.
    pub activity: bool,
    /// One sentence: the headline, or that there was no activity.
    pub summary: String,
    /// Production changes by AI agents and by humans.
    pub headline: Headline,
    /// Decisions by verdict.
    pub verdicts: Verdicts,
    /// Decisions by class and environment.
    pub actions: Vec<ActionRow>,
    /// This week's decisions per day by verdict.
    pub days: Vec<DayRow>,
    /// Approval requests.
    pub approvals: Approvals,
    /// Outcomes per class, beside the humans'.
    pub outcomes: Vec<OutcomeRow>,
    /// Violations by reason and mode.
    pub violations: Vec<ViolationRow>,
    /// Quota denials.
    pub quota_hits: Vec<QuotaRow>,
    /// Anomaly findings.
    pub anomalies: Anomalies,
    /// Per agent.
    pub agents: Vec<AgentRow>,
    /// Per team.
    pub teams: Vec<TeamRow>,
    /// Tier changes this week, oldest first.
    pub tier_changes: Vec<TierChangeRow>,
    /// Agents close to a promotion or a demotion (filled by the service from the tier
    /// controller, as of `generated_at`).
    pub watch: Vec<WatchRow>,
    /// Plugin health.
    pub plugins: Vec<PluginRow>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weeks_parse_print_and_step_across_years() {
        let w = IsoWeek::parse("2026-W48").unwrap();
        assert_eq!(w.to_string(), "2026-W48");
        assert_eq!(w.monday(), Date::constant(2026, 11, 23));
        // 2026 has 53 weeks (it starts on a Thursday); 2025 has 52.
        let last = IsoWeek::parse("2026-W53").unwrap();
        assert_eq!(last.monday(), Date::constant(2026, 12, 28));
        assert_eq!(last.next().to_string(), "2027-W01");
        assert_eq!(IsoWeek::parse("2027-W01").unwrap().previous(), last);
        assert_eq!(
            IsoWeek::parse("2026-W01").unwrap().previous().to_string(),
            "2025-W52"
        );
        // Week 1 of 2026 starts in 2025.
        assert_eq!(
            IsoWeek::parse("2026-W01").unwrap().monday(),
            Date::constant(2025, 12, 29)
        );
        assert_eq!(IsoWeek::containing(Date::constant(2027, 1, 3)), last);
        assert!(
            IsoWeek::parse("2025-W53")
                .unwrap_err()
                .contains("no week 53")
        );
        for bad in ["2026-48", "26-W48", "2026-W4", "2026-W00", "week"] {
            assert!(IsoWeek::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn days_start_at_local_midnight() {
        let tz = TimeZone::get("Europe/Berlin").unwrap();
        // The week of the 2026 change to summer time (Sunday 29 March): that day has 23 hours.
        let b = IsoWeek::parse("2026-W13").unwrap().bounds(&tz);
        let hours: Vec<i64> = b
            .windows(2)
            .map(|w| (w[1] - w[0]) / 3_600_000_000)
            .collect();
        assert_eq!(hours, [24, 24, 24, 24, 24, 24, 23]);
        assert_eq!(
            crate::clock::format_micros(b[0]),
            "2026-03-22T23:00:00.000000Z"
        );
    }

    #[test]
    fn facts_place_instants_in_their_day() {
        let week = IsoWeek::parse("2027-W01").unwrap();
        let bounds = Facts::bounds_of(week, &TimeZone::UTC);
        let facts = Facts {
            week,
            scope: Scope::Organisation,
            time_zone: "UTC".into(),
            bounds,
            now: 0,
            agents: vec![],
            decisions: vec![],
            humans: vec![],
            approvals: vec![],
            violations: vec![],
            trust: vec![],
            tier_changes: vec![],
            drift: vec![],
        };
        let at = |s: &str| crate::clock::parse_micros(s).unwrap();
        assert_eq!(facts.day_of(at("2026-12-28T00:00:00Z")), Some(0));
        assert_eq!(facts.day_of(at("2027-01-03T23:59:59Z")), Some(6));
        assert_eq!(facts.day_of(at("2027-01-04T00:00:00Z")), Some(7));
        assert_eq!(facts.day_of(at("2027-01-10T23:59:59Z")), Some(13));
        assert_eq!(facts.day_of(at("2027-01-11T00:00:00Z")), None);
        assert_eq!(facts.day_of(at("2026-12-27T23:59:59Z")), None);
    }

    #[test]
    fn scopes_round_trip_their_keys() {
        for s in [
            Scope::Organisation,
            Scope::Team("payments".into()),
            Scope::Agent("deploy-bot".into()),
        ] {
            assert_eq!(Scope::from_key(&s.key()), Some(s));
        }
        assert_eq!(Scope::from_key("team:"), None);
    }
}
