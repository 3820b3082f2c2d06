//! Drift: how far an agent's recent work is from how its team's humans work, as two
//! Jensen–Shannon divergences (base 2, so 0 is the same and 1 is disjoint): over the mix of
//! action class × environment, and over the hour of the week.

use std::collections::HashMap;

use polars::prelude::*;

use crate::{Activity, Result};

/// One agent's drift over a window.
#[derive(Debug, Clone, PartialEq)]
pub struct DriftScore {
    /// The agent.
    pub agent: String,
    /// Its team.
    pub team: String,
    /// Its actions in the window.
    pub actions: u64,
    /// Divergence of its class × environment mix from the humans' (0–1).
    pub mix: f64,
    /// Divergence of its hours of the week from the humans' (0–1).
    pub timing: f64,
    /// The mean of the two (0–1).
    pub score: f64,
    /// Whether the reference was the organisation's humans (the team has none).
    pub organisation: bool,
}

/// Jensen–Shannon divergence (base 2) between two count vectors over the same support.
fn jsd(p: &[f64], q: &[f64]) -> f64 {
    let (sp, sq): (f64, f64) = (p.iter().sum(), q.iter().sum());
    if sp == 0.0 || sq == 0.0 {
        return 1.0;
    }
    let kl = |a: f64, m: f64| if a > 0.0 { a * (a / m).log2() } else { 0.0 };
    let mut d = 0.0;
    for (&a, &b) in p.iter().zip(q) {
        let (a, b) = (a / sp, b / sq);
        let m = (a + b) / 2.0;
        d += 0.5 * kl(a, m) + 0.5 * kl(b, m);
    }
    d.clamp(0.0, 1.0)
}

/// Counts per bucket (a class × environment, or an hour of the week), by code.
type Counts = HashMap<Vec<u32>, f64>;

/// Counts of `bucket` per group, as a map group → bucket → count.
fn counts(lf: LazyFrame, group: &[&str], bucket: &[&str]) -> Result<HashMap<Vec<u32>, Counts>> {
    let by: Vec<Expr> = group.iter().chain(bucket).map(|c| col(*c)).collect();
    let df = lf.group_by(by).agg([len().alias("n")]).collect()?;
    let column = |c: &str| -> Result<Vec<u32>> {
        Ok(df
            .column(c)?
            .u32()?
            .iter()
            .map(|v| v.unwrap_or(u32::MAX))
            .collect())
    };
    let groups: Vec<Vec<u32>> = group.iter().map(|c| column(c)).collect::<Result<_>>()?;
    let buckets: Vec<Vec<u32>> = bucket.iter().map(|c| column(c)).collect::<Result<_>>()?;
    let n = df.column("n")?.cast(&DataType::Float64)?;
    let n = n.f64()?;
    let mut out: HashMap<Vec<u32>, Counts> = HashMap::new();
    for i in 0..df.height() {
        let g = groups.iter().map(|c| c[i]).collect();
        let b = buckets.iter().map(|c| c[i]).collect();
        *out.entry(g).or_default().entry(b).or_default() += n.get(i).unwrap_or(0.0);
    }
    Ok(out)
}

/// Divergence between an agent's counts and a reference's, over the union of their buckets.
fn divergence(agent: &Counts, humans: &Counts) -> f64 {
    let mut support: Vec<&Vec<u32>> = agent.keys().chain(humans.keys()).collect();
    support.sort_unstable();
    support.dedup();
    let p: Vec<f64> = support
        .iter()
        .map(|k| agent.get(*k).copied().unwrap_or(0.0))
        .collect();
    let q: Vec<f64> = support
        .iter()
        .map(|k| humans.get(*k).copied().unwrap_or(0.0))
        .collect();
    jsd(&p, &q)
}

/// The drift of every agent with at least `min_actions` actions in `from..to` (Unix
/// microseconds) from the humans of its team in `activity` (all of them, whatever their time),
/// or from the organisation's humans when its team has none.
pub fn drift(activity: &Activity, from: i64, to: i64, min_actions: u64) -> Result<Vec<DriftScore>> {
    if activity.is_empty() {
        return Ok(Vec::new());
    }
    let events = activity.events()?.lazy();
    let humans = events.clone().filter(col("human"));
    let agents = events.filter(
        col("human")
            .not()
            .and(col("at").gt_eq(lit(from)))
            .and(col("at").lt(lit(to))),
    );
    let team_mix = counts(humans.clone(), &["team"], &["class", "env"])?;
    let team_time = counts(humans.clone(), &["team"], &["how"])?;
    let org_mix = counts(humans.clone(), &[], &["class", "env"])?;
    let org_time = counts(humans, &[], &["how"])?;
    let agent_mix = counts(agents.clone(), &["actor", "team"], &["class", "env"])?;
    let agent_time = counts(agents, &["actor", "team"], &["how"])?;
    let empty = HashMap::new();
    let org = (
        org_mix.get(&Vec::new()).unwrap_or(&empty),
        org_time.get(&Vec::new()).unwrap_or(&empty),
    );

    let mut out: Vec<DriftScore> = agent_mix
        .iter()
        .filter_map(|(g, mix)| {
            let actions = mix.values().sum::<f64>() as u64;
            if actions < min_actions {
                return None;
            }
            let time = agent_time.get(g).unwrap_or(&empty);
            let team = vec![g[1]];
            let (reference, organisation) = match (team_mix.get(&team), team_time.get(&team)) {
                (Some(m), Some(t)) => ((m, t), false),
                _ => (org, true),
            };
            let (mix, timing) = (divergence(mix, reference.0), divergence(time, reference.1));
            Some(DriftScore {
                agent: activity.name(g[0]).to_string(),
                team: activity.name(g[1]).to_string(),
                actions,
                mix,
                timing,
                score: (mix + timing) / 2.0,
                organisation,
            })
        })
        .collect();
    out.sort_by(|a, b| a.agent.cmp(&b.agent));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_core::activity::{ActivityEvent, ActorKind};

    const HOUR: i64 = 3_600_000_000;

    fn event(actor: &str, class: &str, env: &str, at: i64) -> ActivityEvent {
        ActivityEvent {
            source: "test".into(),
            source_id: format!("{actor}-{at}-{class}"),
            actor_kind: if actor.starts_with("bot") {
                ActorKind::Agent
            } else {
                ActorKind::Human
            },
            actor_id: actor.into(),
            team: "payments".into(),
            class: class.into(),
            environment: env.into(),
            service: "payments".into(),
            targets: vec![],
            change_size: None,
            at,
            outcome: None,
            decision_id: None,
        }
    }

    #[test]
    fn divergence_is_zero_for_the_same_and_one_for_disjoint() {
        assert!(jsd(&[1.0, 2.0], &[2.0, 4.0]).abs() < 1e-12);
        assert!((jsd(&[1.0, 0.0], &[0.0, 3.0]) - 1.0).abs() < 1e-12);
        let half = jsd(&[1.0, 1.0], &[1.0, 0.0]);
        assert!(half > 0.0 && half < 1.0);
    }

    #[test]
    fn an_agent_like_the_humans_drifts_less_than_one_unlike_them() {
        let mut a = Activity::new(jiff::tz::TimeZone::UTC);
        let week = 7 * 24 * HOUR;
        // Humans: weekday mornings, staging deploys and config changes.
        for day in 0..28 {
            for (i, h) in ["alice", "bob"].iter().enumerate() {
                let at = day * 24 * HOUR + (9 + i as i64) * HOUR;
                a.push(&event(h, "deploy", "staging", at));
                a.push(&event(h, "config_change", "staging", at + HOUR));
            }
        }
        // In the last week: one agent does the same; another deploys to production at night.
        for day in 21..28 {
            let at = day * 24 * HOUR + 9 * HOUR;
            a.push(&event("bot-like", "deploy", "staging", at));
            a.push(&event(
                "bot-like",
                "config_change",
                "staging",
                at + 2 * HOUR,
            ));
            a.push(&event(
                "bot-odd",
                "deploy",
                "production",
                day * 24 * HOUR + 3 * HOUR,
            ));
            a.push(&event(
                "bot-odd",
                "db_migration",
                "production",
                day * 24 * HOUR + 2 * HOUR,
            ));
        }
        a.push(&event("bot-few", "deploy", "staging", 27 * 24 * HOUR));
        let d = drift(&a, 3 * week, 4 * week, 5).unwrap();
        let names: Vec<&str> = d.iter().map(|s| s.agent.as_str()).collect();
        assert_eq!(
            names,
            ["bot-like", "bot-odd"],
            "too few actions: not computed"
        );
        let (like, odd) = (&d[0], &d[1]);
        assert!(like.mix < 0.01, "{like:?}");
        assert!(like.score < 0.3, "{like:?}");
        assert!((odd.mix - 1.0).abs() < 1e-9, "{odd:?}");
        assert!(odd.score > 0.9, "{odd:?}");
        assert!(!odd.organisation);
    }
}
