//! Human baselines per team × service × action class, from the humans' events.
//!
//! Rates are per human per *active* hour and day (an hour or day in which that human acted at
//! all), so a team of ten and a team of two compare alike with one agent. A team with fewer
//! than [`MIN_TEAM_HUMANS`] humans gets the organisation's numbers for the class (rates, hours,
//! change sizes) and keeps its own environments and targets, and says so in `scope`.

use std::collections::HashMap;

use polars::prelude::*;
use warden_core::baseline::{
    BaselineScope, HumanBaseline, MAX_TARGETS, MIN_TEAM_HUMANS, Seen, Summary,
};
use warden_core::clock::format_micros;

use crate::{Activity, Result};

/// A group's codes: team, service, class (the organisation's groups use [`ANY`] for the first two).
type Key = [u32; 3];
const ANY: u32 = u32::MAX;
const TEAM: &[&str] = &["team", "service", "class"];
const ORG: &[&str] = &["class"];

fn cols(names: &[&str]) -> Vec<Expr> {
    names.iter().map(|n| col(*n)).collect()
}

fn with(keys: &[&str], more: &[&str]) -> Vec<Expr> {
    cols(keys).into_iter().chain(cols(more)).collect()
}

/// Mean, median, MAD and upper quantiles of `value` per group.
fn summarise(lf: LazyFrame, keys: &[&str], value: &str) -> LazyFrame {
    let v = col(value).cast(DataType::Float64);
    let median = lf
        .clone()
        .group_by(cols(keys))
        .agg([v.clone().median().alias("median")]);
    lf.join(
        median,
        cols(keys),
        cols(keys),
        JoinArgs::new(JoinType::Left),
    )
    .with_column(
        when(v.clone().gt(col("median")))
            .then(v.clone() - col("median"))
            .otherwise(col("median") - v.clone())
            .alias("deviation"),
    )
    .group_by(cols(keys))
    .agg([
        v.clone().mean().alias("mean"),
        col("median").first(),
        col("deviation").median().alias("mad"),
        v.clone()
            .quantile(lit(0.9), QuantileMethod::Linear)
            .alias("p90"),
        v.quantile(lit(0.99), QuantileMethod::Linear).alias("p99"),
    ])
}

/// Reads a frame's group keys (team/service/class, or class alone).
fn keys_of(df: &DataFrame, keys: &[&str]) -> Result<Vec<Key>> {
    let mut out = vec![[ANY; 3]; df.height()];
    let offset = 3 - keys.len();
    for (i, k) in keys.iter().enumerate() {
        for (row, v) in df.column(k)?.u32()?.iter().enumerate() {
            out[row][offset + i] = v.unwrap_or(ANY);
        }
    }
    Ok(out)
}

fn f64s(df: &DataFrame, name: &str) -> Result<Vec<f64>> {
    let c = df.column(name)?.cast(&DataType::Float64)?;
    Ok(c.f64()?.iter().map(|v| v.unwrap_or(0.0)).collect())
}

fn summaries(lf: LazyFrame, keys: &[&str], value: &str) -> Result<HashMap<Key, Summary>> {
    let df = summarise(lf, keys, value).collect()?;
    let [mean, median, mad, p90, p99] =
        ["mean", "median", "mad", "p90", "p99"].map(|c| f64s(&df, c));
    let (mean, median, mad, p90, p99) = (mean?, median?, mad?, p90?, p99?);
    Ok(keys_of(&df, keys)?
        .into_iter()
        .enumerate()
        .map(|(i, k)| {
            let s = Summary {
                mean: mean[i],
                median: median[i],
                mad: mad[i],
                p90: p90[i],
                p99: p99[i],
            };
            (k, s)
        })
        .collect())
}

/// What one scope (team or organisation) gives a baseline.
#[derive(Default)]
struct Numbers {
    events: u64,
    humans: u32,
    per_hour: Summary,
    per_day: Summary,
    hour_counts: Vec<u32>,
    change: Option<Summary>,
}

/// Every group's numbers for one scope.
fn numbers(humans: &LazyFrame, keys: &[&str]) -> Result<HashMap<Key, Numbers>> {
    let basics = humans
        .clone()
        .group_by(cols(keys))
        .agg([
            len().alias("events"),
            col("actor").n_unique().alias("humans"),
        ])
        .collect()?;
    let events = f64s(&basics, "events")?;
    let people = f64s(&basics, "humans")?;
    let mut out: HashMap<Key, Numbers> = keys_of(&basics, keys)?
        .into_iter()
        .enumerate()
        .map(|(i, k)| {
            let n = Numbers {
                events: events[i] as u64,
                humans: people[i] as u32,
                hour_counts: vec![0; 168],
                ..Numbers::default()
            };
            (k, n)
        })
        .collect();

    for (bucket, slot) in [("hour", 0), ("day", 1)] {
        let per_actor = humans
            .clone()
            .group_by(with(keys, &["actor", bucket]))
            .agg([len().alias("n")]);
        for (k, s) in summaries(per_actor, keys, "n")? {
            if let Some(n) = out.get_mut(&k) {
                if slot == 0 {
                    n.per_hour = s;
                } else {
                    n.per_day = s;
                }
            }
        }
    }

    let sized = humans.clone().filter(col("change").is_not_null());
    for (k, s) in summaries(sized, keys, "change")? {
        if let Some(n) = out.get_mut(&k) {
            n.change = Some(s);
        }
    }

    let hours = humans
        .clone()
        .group_by(with(keys, &["how"]))
        .agg([len().alias("n")])
        .collect()?;
    let how = hours.column("how")?.u32()?;
    let count = f64s(&hours, "n")?;
    for (i, k) in keys_of(&hours, keys)?.into_iter().enumerate() {
        if let (Some(n), Some(h)) = (out.get_mut(&k), how.get(i)) {
            n.hour_counts[h as usize % 168] = count[i] as u32;
        }
    }
    Ok(out)
}

/// First use and count of each value of `column` per team group, most used first.
fn seen(
    lf: LazyFrame,
    column: &str,
    a: &Activity,
    limit: usize,
) -> Result<HashMap<Key, Vec<Seen>>> {
    let df = lf
        .group_by(with(TEAM, &[column]))
        .agg([col("at").min().alias("first"), len().alias("n")])
        .sort(
            ["n"],
            SortMultipleOptions::default().with_order_descending(true),
        )
        .collect()?;
    let values = df.column(column)?.u32()?;
    let first = df.column("first")?.i64()?;
    let count = f64s(&df, "n")?;
    let mut out: HashMap<Key, Vec<Seen>> = HashMap::new();
    for (i, k) in keys_of(&df, TEAM)?.into_iter().enumerate() {
        let list = out.entry(k).or_default();
        if list.len() < limit
            && let (Some(v), Some(at)) = (values.get(i), first.get(i))
        {
            list.push(Seen {
                name: a.name(v).to_string(),
                first_seen: format_micros(at),
                count: count[i] as u64,
            });
        }
    }
    for list in out.values_mut() {
        list.sort_by(|x, y| x.name.cmp(&y.name));
    }
    Ok(out)
}

/// Shares of each hour of the week, each hour blended with its neighbours (1:2:1, wrapping
/// from Sunday night to Monday morning) so that one busy hour does not make the next rare.
fn smooth(counts: &[u32]) -> Vec<f64> {
    let total: f64 = counts.iter().map(|&c| f64::from(c)).sum();
    if total == 0.0 {
        return vec![0.0; counts.len()];
    }
    let n = counts.len();
    (0..n)
        .map(|i| {
            let at = |j: usize| f64::from(counts[j % n]);
            (at(i + n - 1) + 2.0 * at(i) + at(i + 1)) / (4.0 * total)
        })
        .collect()
}

/// The baselines of every team, service and class the humans of `activity` acted in, over
/// the period `from..to` (Unix microseconds; it sets the hourly rate's denominator).
pub fn baselines(activity: &Activity, from: i64, to: i64) -> Result<Vec<HumanBaseline>> {
    if activity.is_empty() {
        return Ok(Vec::new());
    }
    let events = activity.events()?;
    let humans = events.lazy().filter(col("human"));
    let team = numbers(&humans, TEAM)?;
    let org = numbers(&humans, ORG)?;
    let environments = seen(humans.clone(), "env", activity, usize::MAX)?;
    let touched = activity.targets()?.lazy().join(
        humans.clone().select(with(TEAM, &["row", "at"])),
        [col("row")],
        [col("row")],
        JoinArgs::new(JoinType::Inner),
    );
    let mut targets = seen(touched, "target", activity, MAX_TARGETS)?;
    let hours = ((to - from) as f64 / 3_600_000_000.0).max(1.0);

    let mut out: Vec<HumanBaseline> = team
        .iter()
        .map(|(key, own)| {
            let (scope, reference) = match org.get(&[ANY, ANY, key[2]]) {
                Some(o) if own.humans < MIN_TEAM_HUMANS => (BaselineScope::Organisation, o),
                _ => (BaselineScope::Team, own),
            };
            HumanBaseline {
                team: activity.name(key[0]).to_string(),
                service: activity.name(key[1]).to_string(),
                class: activity.name(key[2]).to_string(),
                scope,
                humans: reference.humans,
                events: reference.events,
                per_active_hour: reference.per_hour,
                per_active_day: reference.per_day,
                rate_per_hour: reference.events as f64 / hours,
                hour_of_week: smooth(&reference.hour_counts),
                hour_of_week_counts: reference.hour_counts.clone(),
                change_size: reference.change,
                environments: environments.get(key).cloned().unwrap_or_default(),
                targets: targets.remove(key).unwrap_or_default(),
            }
        })
        .collect();
    out.sort_by(|a, b| (&a.team, &a.service, &a.class).cmp(&(&b.team, &b.service, &b.class)));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_core::activity::{ActivityEvent, ActorKind};
    use warden_core::clock::parse_micros;

    const HOUR: i64 = 3_600_000_000;

    fn event(actor: &str, team: &str, class: &str, env: &str, at: i64, size: u32) -> ActivityEvent {
        ActivityEvent {
            source: "test".into(),
            source_id: format!("{actor}-{at}"),
            actor_kind: if actor.starts_with("bot") {
                ActorKind::Agent
            } else {
                ActorKind::Human
            },
            actor_id: actor.into(),
            team: team.into(),
            class: class.into(),
            environment: env.into(),
            service: "payments".into(),
            targets: vec![format!("deployment/{env}")],
            change_size: Some(size),
            at,
            outcome: None,
            decision_id: None,
        }
    }

    #[test]
    fn counts_rates_hours_sizes_and_what_was_seen() {
        let monday = parse_micros("2026-11-02T00:00:00Z").unwrap();
        let mut a = Activity::new(jiff::tz::TimeZone::UTC);
        // Six humans deploy to staging at 10:00 on Monday, two deploys each, sizes 10..60;
        // alice alone deploys to production at 14:00.
        for (i, h) in ["alice", "bob", "carol", "dan", "erin", "frank"]
            .iter()
            .enumerate()
        {
            for _ in 0..2 {
                a.push(&event(
                    h,
                    "payments",
                    "deploy",
                    "staging",
                    monday + 10 * HOUR,
                    10 * (i as u32 + 1),
                ));
            }
        }
        a.push(&event(
            "alice",
            "payments",
            "deploy",
            "production",
            monday + 14 * HOUR,
            35,
        ));
        // An agent's events are not part of any baseline.
        a.push(&event(
            "bot-1",
            "payments",
            "deploy",
            "moon",
            monday + 3 * HOUR,
            9000,
        ));
        let b = baselines(&a, monday, monday + 7 * 24 * HOUR).unwrap();
        assert_eq!(b.len(), 1);
        let b = &b[0];
        assert_eq!((b.team.as_str(), b.class.as_str()), ("payments", "deploy"));
        assert_eq!(b.scope, BaselineScope::Team);
        assert_eq!((b.humans, b.events), (6, 13));
        // Per human per active hour: six hours with 2 and alice's second with 1.
        assert_eq!(b.per_active_hour.median, 2.0);
        assert!((b.per_active_hour.mean - 13.0 / 7.0).abs() < 1e-9);
        assert_eq!(b.per_active_hour.mad, 0.0);
        assert_eq!(
            b.per_active_day.median, 2.0,
            "alice: 3 that day, the rest 2"
        );
        assert!((b.rate_per_hour - 13.0 / 168.0).abs() < 1e-9);
        assert_eq!(b.hour_of_week_counts[10], 12);
        assert_eq!(b.hour_of_week_counts[14], 1);
        assert_eq!(
            b.hour_of_week_counts[3], 0,
            "the agent's hour is not counted"
        );
        assert!((b.hour_of_week.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        assert!(b.hour_of_week[11] > 0.0, "smoothed into the next hour");
        let sizes = b.change_size.unwrap();
        assert_eq!(sizes.median, 35.0);
        let names: Vec<&str> = b.environments.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["production", "staging"]);
        assert_eq!(
            b.environments[0].first_seen,
            format_micros(monday + 14 * HOUR)
        );
        assert_eq!(b.targets.len(), 2);
        assert!(!b.warm(), "13 events are not enough to judge by");
    }

    #[test]
    fn a_small_team_is_compared_with_the_organisation() {
        let monday = parse_micros("2026-11-02T00:00:00Z").unwrap();
        let mut a = Activity::new(jiff::tz::TimeZone::UTC);
        for (i, h) in ["h1", "h2", "h3", "h4", "h5", "h6"].iter().enumerate() {
            a.push(&event(
                h,
                "platform",
                "deploy",
                "production",
                monday + i as i64 * HOUR,
                5,
            ));
        }
        a.push(&event(
            "solo",
            "tiny",
            "deploy",
            "staging",
            monday + 9 * HOUR,
            5,
        ));
        let b = baselines(&a, monday, monday + 24 * HOUR).unwrap();
        let tiny = b.iter().find(|b| b.team == "tiny").unwrap();
        assert_eq!(tiny.scope, BaselineScope::Organisation);
        assert_eq!((tiny.humans, tiny.events), (7, 7));
        assert_eq!(tiny.environments.len(), 1, "its own environments");
        let platform = b.iter().find(|b| b.team == "platform").unwrap();
        assert_eq!(platform.scope, BaselineScope::Team);
        assert_eq!(platform.humans, 6);
    }
}
