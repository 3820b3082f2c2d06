//! The weekly behaviour report, computed from [`Facts`] (both weeks' decisions, the humans'
//! changes, approvals, violations, trust, tier changes, drift).
//!
//! The decisions, the humans' changes and the approvals become frames with every string
//! interned to a `u32` code; each table is one lazy group-by over them, keyed by the week
//! (0: the week before, 1: the report's week). The small tables (trust, tier changes, drift)
//! are read straight from the facts.

use std::collections::{BTreeMap, HashMap};

use polars::prelude::*;
use warden_core::clock::format_micros;
use warden_core::decision::Verdict;
use warden_core::records::{ApprovalStatus, OutcomeStatus};
use warden_core::report::{
    ActionRow, AgentRow, Anomalies, AnomalyRow, Approvals, ApproverRow, Changes, Count, DayRow,
    Facts, Figure, Headline, OutcomeRow, PluginRow, QuotaRow, READ_CLASS, SCHEMA, TOP_ANOMALIES,
    TOP_APPROVERS, TeamRow, TierChangeRow, Verdicts, ViolationRow, WaitBucket, WeeklyReport,
};

use crate::Result;
use crate::activity::Names;

/// Severity from which an anomaly counts as severe.
const SEVERE: u8 = 70;

/// Time-to-decision buckets: label and upper bound in minutes.
const WAITS: [(&str, f64); 6] = [
    ("under 5 min", 5.0),
    ("5–15 min", 15.0),
    ("15–60 min", 60.0),
    ("1–4 h", 240.0),
    ("4–24 h", 1440.0),
    ("over 1 day", f64::INFINITY),
];

/// Per key (codes) and week, the row count and the sums of some flags: `[n, flag…]`.
type Tally = BTreeMap<Vec<u32>, Vec<Count>>;

fn add(count: &mut Count, week: u32, n: u64) {
    if week == 1 {
        count.this_week += n;
    } else {
        count.last_week += n;
    }
}

/// Groups `lf` by `keys` and the week, summing the rows' weights (`n`: how many decisions or
/// events a row stands for) and the weights of the rows each boolean of `flags` holds for.
fn tally(lf: &LazyFrame, keys: &[&str], flags: &[&str]) -> Result<Tally> {
    let mut by: Vec<Expr> = keys.iter().map(|k| col(*k)).collect();
    by.push(col("week"));
    let n = || col("n").cast(DataType::UInt64);
    let mut aggs = vec![n().sum().alias("_n")];
    aggs.extend(
        flags
            .iter()
            .map(|f| (col(*f).cast(DataType::UInt64) * n()).sum().alias(*f)),
    );
    let df = lf.clone().group_by(by).agg(aggs).collect()?;
    let key_cols: Vec<Vec<u32>> = keys
        .iter()
        .map(|k| -> Result<Vec<u32>> {
            Ok(df
                .column(k)?
                .u32()?
                .iter()
                .map(|v| v.unwrap_or(0))
                .collect())
        })
        .collect::<Result<_>>()?;
    let week: Vec<u32> = df
        .column("week")?
        .u32()?
        .iter()
        .map(|v| v.unwrap_or(0))
        .collect();
    let mut values = vec![u64s(&df, "_n")?];
    for f in flags {
        values.push(u64s(&df, f)?);
    }
    let mut out = Tally::new();
    for row in 0..df.height() {
        let key: Vec<u32> = key_cols.iter().map(|c| c[row]).collect();
        let entry = out
            .entry(key)
            .or_insert_with(|| vec![Count::default(); values.len()]);
        for (i, v) in values.iter().enumerate() {
            add(&mut entry[i], week[row], v[row]);
        }
    }
    Ok(out)
}

fn u64s(df: &DataFrame, name: &str) -> Result<Vec<u64>> {
    Ok(df
        .column(name)?
        .cast(&DataType::UInt64)?
        .u64()?
        .iter()
        .map(|v| v.unwrap_or(0))
        .collect())
}

/// The tally's counts for `key`, or zeros.
fn counts(t: &Tally, key: &[u32], width: usize) -> Vec<Count> {
    t.get(key)
        .cloned()
        .unwrap_or_else(|| vec![Count::default(); width])
}

const ALLOWED: &str = "allowed";
const APPROVAL: &str = "approval_required";
const DENIED: &str = "denied";
const SHADOW_DENY: &str = "shadow_would_deny";
const PROD: &str = "prod";
const PROD_FAILED: &str = "prod_failed";
const PROD_ROLLED_BACK: &str = "prod_rolled_back";
const EXPECTED: &str = "expected";
const SUCCEEDED: &str = "succeeded";
const FAILED: &str = "failed";
const ROLLED_BACK: &str = "rolled_back";
const UNREPORTED: &str = "unreported";

/// The decisions as a frame.
fn decisions_frame(
    facts: &Facts,
    names: &mut Names,
    teams: &HashMap<&str, u32>,
) -> Result<LazyFrame> {
    let n = facts.decisions.len();
    let mut day = Vec::with_capacity(n);
    let mut weight: Vec<u64> = Vec::with_capacity(n);
    let (mut agent, mut team, mut class, mut env) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let mut flags: [Vec<bool>; 12] = std::array::from_fn(|_| Vec::with_capacity(n));
    let unknown = names.code("unknown");
    for d in &facts.decisions {
        let Some(i) = facts.day_of(d.at) else {
            continue;
        };
        day.push(i as u32);
        weight.push(d.count);
        agent.push(names.code(&d.agent));
        team.push(teams.get(d.agent.as_str()).copied().unwrap_or(unknown));
        class.push(names.code(&d.class));
        env.push(names.code(&d.environment));
        let prod = d.production_change();
        let outcome = |o: OutcomeStatus| d.outcome == Some(o);
        let expected = d.outcome_expected || d.outcome.is_some();
        let row = [
            d.verdict == Verdict::Allow,
            d.verdict == Verdict::RequireApproval,
            d.verdict == Verdict::Deny,
            d.shadow_verdict == Some(Verdict::Deny),
            prod,
            prod && outcome(OutcomeStatus::Failed),
            prod && outcome(OutcomeStatus::RolledBack),
            expected,
            expected && outcome(OutcomeStatus::Succeeded),
            expected && outcome(OutcomeStatus::Failed),
            expected && outcome(OutcomeStatus::RolledBack),
            expected && matches!(d.outcome, None | Some(OutcomeStatus::Unknown)),
        ];
        for (f, v) in flags.iter_mut().zip(row) {
            f.push(v);
        }
    }
    let [
        allowed,
        approval,
        denied,
        shadow,
        prod,
        prod_failed,
        prod_rb,
        expected,
        ok,
        failed,
        rb,
        unrep,
    ] = flags;
    let week: Vec<u32> = day.iter().map(|d| d / 7).collect();
    let df = DataFrame::new_infer_height(vec![
        Column::new("day".into(), day),
        Column::new("week".into(), week),
        Column::new("n".into(), weight),
        Column::new("agent".into(), agent),
        Column::new("team".into(), team),
        Column::new("class".into(), class),
        Column::new("env".into(), env),
        Column::new(ALLOWED.into(), allowed),
        Column::new(APPROVAL.into(), approval),
        Column::new(DENIED.into(), denied),
        Column::new(SHADOW_DENY.into(), shadow),
        Column::new(PROD.into(), prod),
        Column::new(PROD_FAILED.into(), prod_failed),
        Column::new(PROD_ROLLED_BACK.into(), prod_rb),
        Column::new(EXPECTED.into(), expected),
        Column::new(SUCCEEDED.into(), ok),
        Column::new(FAILED.into(), failed),
        Column::new(ROLLED_BACK.into(), rb),
        Column::new(UNREPORTED.into(), unrep),
    ])?;
    Ok(df.lazy())
}

/// The humans' changes (every class but reads) as a frame.
fn humans_frame(facts: &Facts, names: &mut Names) -> Result<LazyFrame> {
    let (mut week, mut team, mut class) = (Vec::new(), Vec::new(), Vec::new());
    let (mut prod, mut failed, mut rolled_back) = (Vec::new(), Vec::new(), Vec::new());
    for h in facts.humans.iter().filter(|h| h.class != READ_CLASS) {
        let Some(i) = facts.day_of(h.at) else {
            continue;
        };
        week.push(i as u32 / 7);
        team.push(names.code(&h.team));
        class.push(names.code(&h.class));
        prod.push(h.environment == "production");
        failed.push(h.outcome == Some(OutcomeStatus::Failed));
        rolled_back.push(h.outcome == Some(OutcomeStatus::RolledBack));
    }
    let both = |a: &[bool], b: &[bool]| a.iter().zip(b).map(|(x, y)| *x && *y).collect::<Vec<_>>();
    let ones = vec![1u64; week.len()];
    let df = DataFrame::new_infer_height(vec![
        Column::new("n".into(), ones),
        Column::new("week".into(), week),
        Column::new("team".into(), team),
        Column::new("class".into(), class),
        Column::new(PROD_FAILED.into(), both(&prod, &failed)),
        Column::new(PROD_ROLLED_BACK.into(), both(&prod, &rolled_back)),
        Column::new(PROD.into(), prod),
        Column::new(FAILED.into(), failed),
        Column::new(ROLLED_BACK.into(), rolled_back),
    ])?;
    Ok(df.lazy())
}

fn changes(c: &[Count]) -> Changes {
    let failures = Count {
        this_week: c[1].this_week + c[2].this_week,
        last_week: c[1].last_week + c[2].last_week,
    };
    Changes {
        changes: c[0],
        failed: c[1],
        rolled_back: c[2],
        failure_rate: Figure::ratio(failures, c[0]),
    }
}

/// Computes the report. `watch` is left empty: it needs the tier controller.
pub fn weekly(facts: &Facts) -> Result<WeeklyReport> {
    let mut names = Names::default();
    let mut teams: HashMap<&str, u32> = HashMap::new();
    for a in &facts.agents {
        teams.insert(a.id.as_str(), names.code(&a.team));
    }
    let decisions = decisions_frame(facts, &mut names, &teams)?;
    let humans = humans_frame(facts, &mut names)?;

    let verdict_flags = [ALLOWED, APPROVAL, DENIED, SHADOW_DENY];
    let change_flags = [PROD_FAILED, PROD_ROLLED_BACK];
    let org = tally(
        &decisions,
        &[],
        &[&verdict_flags[..], &[PROD], &change_flags[..]].concat(),
    )?;
    let o = counts(&org, &[], 8);
    let human_org = tally(&humans.clone().filter(col(PROD)), &[], &change_flags)?;
    let headline = Headline {
        agents: changes(&o[5..8]),
        humans: changes(&counts(&human_org, &[], 3)),
    };
    let verdicts = Verdicts {
        decisions: o[0],
        allowed: o[1],
        approval_required: o[2],
        denied: o[3],
        shadow_would_deny: o[4],
    };

    let by_action = tally(&decisions, &["class", "env"], &[])?;
    let mut actions: Vec<ActionRow> = by_action
        .iter()
        .map(|(k, c)| ActionRow {
            class: names.name(k[0]).to_string(),
            environment: names.name(k[1]).to_string(),
            actions: c[0],
        })
        .collect();
    actions.sort_by(|a, b| {
        (b.actions.this_week, &a.class, &a.environment).cmp(&(
            a.actions.this_week,
            &b.class,
            &b.environment,
        ))
    });

    let by_day = tally(&decisions, &["day"], &verdict_flags[..3])?;
    let days = facts
        .week
        .days()
        .iter()
        .enumerate()
        .map(|(i, date)| {
            let c = counts(&by_day, &[7 + i as u32], 4);
            DayRow {
                day: date.to_string(),
                allowed: c[1].this_week,
                approval_required: c[2].this_week,
                denied: c[3].this_week,
            }
        })
        .collect();

    let outcomes = outcome_rows(&decisions, &humans, &names)?;
    let (agents, teams_rows) = agent_and_team_rows(facts, &decisions, &humans, &names)?;
    let approvals = approvals(facts)?;
    let this_week = |at: i64| facts.day_of(at).is_some_and(|d| d >= 7);
    let activity = verdicts.decisions.this_week > 0
        || approvals.requested.this_week > 0
        || facts
            .humans
            .iter()
            .any(|h| h.class != READ_CLASS && this_week(h.at))
        || facts.violations.iter().any(|v| this_week(v.at));
    let mut report = WeeklyReport {
        schema: SCHEMA.into(),
        week: facts.week,
        previous_week: facts.week.previous(),
        scope: facts.scope.clone(),
        time_zone: facts.time_zone.clone(),
        from: format_micros(facts.bounds[7]),
        until: format_micros(facts.bounds[14]),
        generated_at: format_micros(facts.now),
        activity,
        summary: String::new(),
        headline,
        verdicts,
        actions,
        days,
        approvals,
        outcomes,
        violations: violation_rows(facts),
        quota_hits: quota_rows(facts),
        anomalies: anomalies(facts),
        agents,
        teams: teams_rows,
        tier_changes: tier_changes(facts),
        watch: Vec::new(),
        plugins: plugin_rows(facts),
    };
    report.summary = summary(&report);
    Ok(report)
}

fn percent(rate: Option<f64>) -> String {
    rate.map_or_else(|| "not computed".into(), |r| format!("{:.1}%", r * 100.0))
}

/// The one sentence a reader sees first.
fn summary(r: &WeeklyReport) -> String {
    if !r.activity {
        return format!(
            "No activity in {} for {}: no decisions, approvals, violations or human changes were recorded.",
            r.week,
            r.scope.title()
        );
    }
    let (a, h) = (&r.headline.agents, &r.headline.humans);
    format!(
        "In {}, AI agents made {} production changes (failure rate {}) and humans made {} (failure rate {}).",
        r.week,
        a.changes.this_week,
        percent(a.failure_rate.this_week),
        h.changes.this_week,
        percent(h.failure_rate.this_week)
    )
}

fn outcome_rows(
    decisions: &LazyFrame,
    humans: &LazyFrame,
    names: &Names,
) -> Result<Vec<OutcomeRow>> {
    let agents = tally(
        &decisions.clone().filter(col(EXPECTED)),
        &["class"],
        &[SUCCEEDED, FAILED, ROLLED_BACK, UNREPORTED],
    )?;
    let people = tally(humans, &["class"], &[FAILED, ROLLED_BACK])?;
    let mut classes: Vec<&Vec<u32>> = agents.keys().collect();
    classes.sort_by_key(|k| names.name(k[0]));
    Ok(classes
        .into_iter()
        .map(|k| {
            let c = &agents[k];
            let h = counts(&people, k, 3);
            let human = changes(&h);
            OutcomeRow {
                class: names.name(k[0]).to_string(),
                expected: c[0],
                succeeded: c[1],
                failed: c[2],
                rolled_back: c[3],
                unreported: c[4],
                success_rate: Figure::ratio(c[1], c[0]),
                failure_rate: Figure::ratio(c[2], c[0]),
                rollback_rate: Figure::ratio(c[3], c[0]),
                unreported_rate: Figure::ratio(c[4], c[0]),
                human_changes: human.changes,
                human_failure_rate: human.failure_rate,
            }
        })
        .collect())
}

fn agent_and_team_rows(
    facts: &Facts,
    decisions: &LazyFrame,
    humans: &LazyFrame,
    names: &Names,
) -> Result<(Vec<AgentRow>, Vec<TeamRow>)> {
    let flags = [
        ALLOWED,
        APPROVAL,
        DENIED,
        PROD,
        PROD_FAILED,
        PROD_ROLLED_BACK,
    ];
    let per_agent = tally(decisions, &["agent"], &flags)?;
    let per_team = tally(decisions, &["team"], &flags[3..])?;
    let human_team = tally(
        &humans.clone().filter(col(PROD)),
        &["team"],
        &[PROD_FAILED, PROD_ROLLED_BACK],
    )?;
    let code = |s: &str| names.known(s);
    let mut violations: HashMap<&str, Count> = HashMap::new();
    for v in &facts.violations {
        if let Some(d) = facts.day_of(v.at) {
            add(
                violations.entry(v.agent.as_str()).or_default(),
                d as u32 / 7,
                1,
            );
        }
    }
    let week_days = facts.week.days();
    let mut agents = Vec::new();
    for a in &facts.agents {
        let c = code(&a.id).map_or_else(
            || vec![Count::default(); 7],
            |k| counts(&per_agent, &[k], 7),
        );
        let trust: Vec<Option<f64>> = week_days
            .iter()
            .map(|d| {
                facts
                    .trust
                    .iter()
                    .find(|t| t.agent == a.id && t.day == *d)
                    .map(|t| t.score)
            })
            .collect();
        let last_score = |until: jiff::civil::Date| {
            facts
                .trust
                .iter()
                .filter(|t| t.agent == a.id && t.day < until)
                .max_by_key(|t| t.day)
                .map(|t| t.score)
        };
        let drift = |week: usize| {
            let (from, to) = if week == 1 {
                (week_days[0], facts.week.next().monday())
            } else {
                (facts.week.previous().monday(), week_days[0])
            };
            let scores: Vec<f64> = facts
                .drift
                .iter()
                .filter(|d| d.agent == a.id && d.day >= from && d.day < to)
                .map(|d| d.score)
                .collect();
            (!scores.is_empty()).then(|| scores.iter().sum::<f64>() / scores.len() as f64)
        };
        let change = changes(&c[4..7]);
        agents.push(AgentRow {
            agent: a.id.clone(),
            team: a.team.clone(),
            tier_start: Some(tier_at(facts, &a.id, a.tier, facts.bounds[7])),
            tier_end: Some(tier_at(
                facts,
                &a.id,
                a.tier,
                facts.bounds[14].min(facts.now),
            )),
            decisions: c[0],
            allowed: c[1],
            approval_required: c[2],
            denied: c[3],
            production_changes: change.changes,
            failure_rate: change.failure_rate,
            violations: violations.get(a.id.as_str()).copied().unwrap_or_default(),
            drift: Figure {
                this_week: drift(1),
                last_week: drift(0),
            },
            trust,
            score: Figure {
                this_week: last_score(facts.week.next().monday()),
                last_week: last_score(week_days[0]),
            },
        });
    }
    let mut teams: BTreeMap<&str, (u64, Count)> = BTreeMap::new();
    for a in &agents {
        let t = teams.entry(a.team.as_str()).or_default();
        t.0 += 1;
        t.1.this_week += a.violations.this_week;
        t.1.last_week += a.violations.last_week;
    }
    let team_rows = teams
        .into_iter()
        .map(|(team, (n, violations))| {
            let k = code(team);
            let c = k.map_or_else(|| vec![Count::default(); 4], |k| counts(&per_team, &[k], 4));
            let h = k.map_or_else(
                || vec![Count::default(); 3],
                |k| counts(&human_team, &[k], 3),
            );
            let (mine, theirs) = (changes(&c[1..4]), changes(&h));
            TeamRow {
                team: team.to_string(),
                agents: n,
                decisions: c[0],
                production_changes: mine.changes,
                failure_rate: mine.failure_rate,
                human_changes: theirs.changes,
                human_failure_rate: theirs.failure_rate,
                violations,
            }
        })
        .collect();
    Ok((agents, team_rows))
}

/// The agent's tier at `at`: the last change before it, or the first change's starting tier,
/// or (no changes since) its tier now.
fn tier_at(facts: &Facts, agent: &str, now: u8, at: i64) -> u8 {
    let mine = facts.tier_changes.iter().filter(|c| c.agent == agent);
    if let Some(c) = mine.clone().filter(|c| c.at <= at).max_by_key(|c| c.at) {
        return c.to;
    }
    mine.min_by_key(|c| c.at).map_or(now, |c| c.from)
}

fn approvals(facts: &Facts) -> Result<Approvals> {
    let mut out = Approvals::default();
    let mut weeks = Vec::new();
    let mut minutes = Vec::new();
    let mut deciders: HashMap<&str, u64> = HashMap::new();
    let mut buckets = vec![Count::default(); WAITS.len()];
    for a in &facts.approvals {
        let Some(day) = facts.day_of(a.created_at) else {
            continue;
        };
        let week = day as u32 / 7;
        add(&mut out.requested, week, 1);
        // An approval that lapsed after it was approved was still approved by a human.
        let bucket = match (a.status, a.decided_at) {
            (ApprovalStatus::Rejected, _) => &mut out.rejected,
            (ApprovalStatus::Pending, _) => &mut out.pending,
            (ApprovalStatus::Expired, None) => &mut out.expired,
            _ => &mut out.approved,
        };
        add(bucket, week, 1);
        let Some(decided) = a.decided_at.filter(|_| a.status != ApprovalStatus::Pending) else {
            continue;
        };
        let m = (decided - a.created_at).max(0) as f64 / 60_000_000.0;
        weeks.push(week);
        minutes.push(m);
        let b = WAITS
            .iter()
            .position(|(_, max)| m < *max)
            .unwrap_or(WAITS.len() - 1);
        add(&mut buckets[b], week, 1);
        if week == 1 {
            for d in &a.deciders {
                *deciders.entry(d.as_str()).or_default() += 1;
            }
        }
    }
    let df = DataFrame::new_infer_height(vec![
        Column::new("week".into(), weeks),
        Column::new("minutes".into(), minutes),
    ])?;
    let waits = df
        .lazy()
        .group_by([col("week")])
        .agg([
            col("minutes").median().alias("median"),
            col("minutes")
                .quantile(lit(0.9), QuantileMethod::Linear)
                .alias("p90"),
        ])
        .collect()?;
    let week: Vec<u32> = waits
        .column("week")?
        .u32()?
        .iter()
        .map(|v| v.unwrap_or(0))
        .collect();
    for (name, fig) in [
        ("median", &mut out.median_minutes),
        ("p90", &mut out.p90_minutes),
    ] {
        for (i, v) in waits.column(name)?.f64()?.iter().enumerate() {
            if week[i] == 1 {
                fig.this_week = v;
            } else {
                fig.last_week = v;
            }
        }
    }
    out.time_to_decision = WAITS
        .iter()
        .zip(buckets)
        .map(|((label, _), decided)| WaitBucket {
            label: (*label).to_string(),
            decided,
        })
        .collect();
    let mut top: Vec<(&str, u64)> = deciders.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    out.top_approvers = top
        .into_iter()
        .take(TOP_APPROVERS)
        .map(|(human, decided)| ApproverRow {
            human: human.to_string(),
            decided,
        })
        .collect();
    Ok(out)
}

fn violation_rows(facts: &Facts) -> Vec<ViolationRow> {
    let mut by: BTreeMap<(&str, &str), Count> = BTreeMap::new();
    for v in &facts.violations {
        if let Some(d) = facts.day_of(v.at) {
            add(by.entry((&v.reason, &v.mode)).or_default(), d as u32 / 7, 1);
        }
    }
    by.into_iter()
        .map(|((reason, mode), violations)| ViolationRow {
            reason: reason.into(),
            mode: mode.into(),
            violations,
        })
        .collect()
}

fn quota_rows(facts: &Facts) -> Vec<QuotaRow> {
    let mut by: BTreeMap<&str, Count> = BTreeMap::new();
    for d in &facts.decisions {
        if let (Some(q), Some(day)) = (&d.quota, facts.day_of(d.at)) {
            add(by.entry(q).or_default(), day as u32 / 7, d.count);
        }
    }
    by.into_iter()
        .map(|(quota, hits)| QuotaRow {
            quota: quota.into(),
            hits,
        })
        .collect()
}

fn anomalies(facts: &Facts) -> Anomalies {
    let mut out = Anomalies::default();
    let mut top = Vec::new();
    for d in &facts.decisions {
        let (Some(severity), Some(day)) = (d.anomaly.filter(|s| *s > 0), facts.day_of(d.at)) else {
            continue;
        };
        let week = day as u32 / 7;
        add(&mut out.decisions, week, d.count);
        if severity >= SEVERE {
            add(&mut out.severe, week, d.count);
        }
        if week == 1 {
            top.push(d);
        }
    }
    top.sort_by(|a, b| b.anomaly.cmp(&a.anomaly).then(a.at.cmp(&b.at)));
    out.top = top
        .into_iter()
        .take(TOP_ANOMALIES)
        .map(|d| AnomalyRow {
            decision_id: d.id.clone(),
            agent: d.agent.clone(),
            at: format_micros(d.at),
            class: d.class.clone(),
            environment: d.environment.clone(),
            severity: d.anomaly.unwrap_or(0),
            findings: d.findings.clone(),
        })
        .collect();
    out
}

fn tier_changes(facts: &Facts) -> Vec<TierChangeRow> {
    let mut rows: Vec<_> = facts
        .tier_changes
        .iter()
        .filter(|c| facts.day_of(c.at).is_some_and(|d| d >= 7))
        .collect();
    rows.sort_by_key(|c| c.at);
    rows.into_iter()
        .map(|c| TierChangeRow {
            agent: c.agent.clone(),
            at: format_micros(c.at),
            from: c.from,
            to: c.to,
            reason: c.reason.clone(),
            text: c.text.clone(),
        })
        .collect()
}

fn plugin_rows(facts: &Facts) -> Vec<PluginRow> {
    let mut by: BTreeMap<&str, [Count; 3]> = BTreeMap::new();
    for d in &facts.decisions {
        let Some(day) = facts.day_of(d.at) else {
            continue;
        };
        for p in &d.plugin_issues {
            let c = by.entry(&p.plugin).or_default();
            let week = day as u32 / 7;
            add(&mut c[0], week, d.count);
            add(&mut c[1], week, d.count * u64::from(p.limit));
            add(&mut c[2], week, d.count * u64::from(p.fail_closed));
        }
    }
    by.into_iter()
        .map(|(plugin, [errors, limit_hits, fail_closed])| PluginRow {
            plugin: plugin.into(),
            errors,
            limit_hits,
            fail_closed,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use jiff::tz::TimeZone;
    use warden_core::clock::parse_micros;
    use warden_core::report::{
        AgentFact, ApprovalFact, DecisionFact, HumanFact, IsoWeek, PluginIssue, Scope,
        TierChangeFact,
    };

    use super::*;

    const MINUTE: i64 = 60_000_000;

    fn at(s: &str) -> i64 {
        parse_micros(s).unwrap()
    }

    fn facts() -> Facts {
        let week = IsoWeek::parse("2027-W01").unwrap();
        Facts {
            week,
            scope: Scope::Organisation,
            time_zone: "UTC".into(),
            bounds: Facts::bounds_of(week, &TimeZone::UTC),
            now: at("2027-01-12T00:00:00Z"),
            agents: vec![
                AgentFact {
                    id: "a".into(),
                    team: "t1".into(),
                    tier: 3,
                },
                AgentFact {
                    id: "b".into(),
                    team: "t2".into(),
                    tier: 1,
                },
            ],
            decisions: vec![],
            humans: vec![],
            approvals: vec![],
            violations: vec![],
            trust: vec![],
            tier_changes: vec![],
            drift: vec![],
        }
    }

    fn decision(
        agent: &str,
        when: &str,
        class: &str,
        env: &str,
        verdict: Verdict,
        outcome: Option<OutcomeStatus>,
    ) -> DecisionFact {
        DecisionFact {
            id: format!("{agent}-{when}"),
            count: 1,
            at: at(when),
            agent: agent.into(),
            class: class.into(),
            environment: env.into(),
            verdict,
            shadow_verdict: None,
            outcome_expected: verdict == Verdict::Allow && class != READ_CLASS,
            outcome,
            anomaly: None,
            findings: vec![],
            quota: None,
            plugin_issues: vec![],
        }
    }

    fn human(
        who: &str,
        team: &str,
        when: &str,
        env: &str,
        outcome: Option<OutcomeStatus>,
    ) -> HumanFact {
        HumanFact {
            at: at(when),
            actor: who.into(),
            team: team.into(),
            class: "deploy".into(),
            environment: env.into(),
            outcome,
        }
    }

    #[test]
    fn known_facts_give_known_figures() {
        use OutcomeStatus::*;
        let mut f = facts();
        f.decisions = vec![
            // The week before (2026-W53): one production deploy that failed.
            decision(
                "a",
                "2027-01-02T10:00:00Z",
                "deploy",
                "production",
                Verdict::Allow,
                Some(Failed),
            ),
            // This week: two production deploys (one rolled back), a production read, a staging
            // deploy with no outcome yet, a denial by quota, an approval request.
            decision(
                "a",
                "2027-01-04T10:00:00Z",
                "deploy",
                "production",
                Verdict::Allow,
                Some(Succeeded),
            ),
            decision(
                "a",
                "2027-01-05T10:00:00Z",
                "deploy",
                "production",
                Verdict::Allow,
                Some(RolledBack),
            ),
            decision(
                "a",
                "2027-01-05T11:00:00Z",
                "read",
                "production",
                Verdict::Allow,
                None,
            ),
            // Three alike staging deploys of one day, as the store groups them.
            DecisionFact {
                count: 3,
                ..decision(
                    "b",
                    "2027-01-06T10:00:00Z",
                    "deploy",
                    "staging",
                    Verdict::Allow,
                    None,
                )
            },
            DecisionFact {
                quota: Some("deploys_per_hour_per_service".into()),
                anomaly: Some(80),
                findings: vec!["9x the humans' rate".into()],
                plugin_issues: vec![PluginIssue {
                    plugin: "p@1".into(),
                    limit: true,
                    fail_closed: true,
                }],
                ..decision(
                    "b",
                    "2027-01-06T11:00:00Z",
                    "deploy",
                    "production",
                    Verdict::Deny,
                    None,
                )
            },
            decision(
                "a",
                "2027-01-10T23:59:00Z",
                "db_migration",
                "production",
                Verdict::RequireApproval,
                None,
            ),
            // Outside both weeks: ignored.
            decision(
                "a",
                "2027-01-11T00:00:00Z",
                "deploy",
                "production",
                Verdict::Allow,
                Some(Failed),
            ),
        ];
        f.humans = vec![
            human(
                "alice",
                "t1",
                "2027-01-01T09:00:00Z",
                "production",
                Some(Succeeded),
            ),
            human(
                "alice",
                "t1",
                "2027-01-04T09:00:00Z",
                "production",
                Some(Failed),
            ),
            human("bob", "t2", "2027-01-04T09:00:00Z", "production", None),
            human(
                "bob",
                "t2",
                "2027-01-04T10:00:00Z",
                "staging",
                Some(RolledBack),
            ),
        ];
        let approval = |created: &str, minutes: Option<i64>, status: ApprovalStatus| ApprovalFact {
            created_at: at(created),
            agent: "a".into(),
            status,
            decided_at: minutes.map(|m| at(created) + m * MINUTE),
            deciders: minutes
                .map(|_| vec!["carol".to_string()])
                .unwrap_or_default(),
        };
        f.approvals = vec![
            approval("2027-01-04T10:00:00Z", Some(4), ApprovalStatus::Consumed),
            approval("2027-01-05T10:00:00Z", Some(60), ApprovalStatus::Rejected),
            approval("2027-01-06T10:00:00Z", Some(20), ApprovalStatus::Expired),
            approval("2027-01-07T10:00:00Z", None, ApprovalStatus::Expired),
            approval("2027-01-08T10:00:00Z", None, ApprovalStatus::Pending),
        ];
        f.tier_changes = vec![TierChangeFact {
            agent: "b".into(),
            at: at("2027-01-07T00:00:00Z"),
            from: 2,
            to: 1,
            reason: "below_low_water".into(),
            text: "score fell".into(),
        }];
        let r = weekly(&f).unwrap();
        let c = |this, last| Count {
            this_week: this,
            last_week: last,
        };
        assert_eq!(r.headline.agents.changes, c(2, 1));
        assert_eq!(r.headline.agents.rolled_back, c(1, 0));
        assert_eq!(
            r.headline.agents.failure_rate,
            Figure {
                this_week: Some(0.5),
                last_week: Some(1.0)
            }
        );
        assert_eq!(r.headline.humans.changes, c(2, 1));
        assert_eq!(
            r.headline.humans.failure_rate,
            Figure {
                this_week: Some(0.5),
                last_week: Some(0.0)
            }
        );
        assert_eq!(r.verdicts.decisions, c(8, 1));
        assert_eq!(
            (
                r.verdicts.allowed,
                r.verdicts.denied,
                r.verdicts.approval_required
            ),
            (c(6, 1), c(1, 0), c(1, 0))
        );
        assert_eq!(
            r.days[6].approval_required, 1,
            "Sunday 23:59 is still this week"
        );
        let deploy = r.outcomes.iter().find(|o| o.class == "deploy").unwrap();
        assert_eq!((deploy.expected, deploy.unreported), (c(5, 1), c(3, 0)));
        assert_eq!(deploy.human_changes, c(3, 1));
        assert!(
            r.outcomes.iter().all(|o| o.class != "read"),
            "reads owe no outcome"
        );
        assert_eq!(r.approvals.requested, c(5, 0));
        assert_eq!(
            (
                r.approvals.approved,
                r.approvals.rejected,
                r.approvals.expired,
                r.approvals.pending
            ),
            (c(2, 0), c(1, 0), c(1, 0), c(1, 0))
        );
        assert_eq!(r.approvals.median_minutes.this_week, Some(20.0));
        assert_eq!(r.approvals.p90_minutes.this_week, Some(52.0));
        assert_eq!(r.approvals.median_minutes.last_week, None);
        assert_eq!(r.approvals.top_approvers[0].decided, 3);
        assert_eq!(r.quota_hits[0].hits, c(1, 0));
        assert_eq!(
            (r.anomalies.decisions, r.anomalies.severe),
            (c(1, 0), c(1, 0))
        );
        assert_eq!(r.anomalies.top[0].findings, ["9x the humans' rate"]);
        assert_eq!(
            (
                r.plugins[0].errors,
                r.plugins[0].limit_hits,
                r.plugins[0].fail_closed
            ),
            (c(1, 0), c(1, 0), c(1, 0))
        );
        let b = r.agents.iter().find(|a| a.agent == "b").unwrap();
        assert_eq!((b.tier_start, b.tier_end), (Some(2), Some(1)));
        assert_eq!(r.tier_changes.len(), 1);
        let t2 = r.teams.iter().find(|t| t.team == "t2").unwrap();
        assert_eq!((t2.decisions, t2.human_changes), (c(4, 0), c(1, 0)));
        assert!(r.activity);
    }

    #[test]
    fn an_empty_week_says_so_and_computes_no_rates() {
        let r = weekly(&facts()).unwrap();
        assert!(!r.activity);
        // A human who only read is not a change: the week is still empty.
        let mut reads = facts();
        let mut read = human("ann", "t1", "2027-01-05T10:00:00Z", "production", None);
        read.class = READ_CLASS.into();
        reads.humans = vec![read.clone()];
        assert!(!weekly(&reads).unwrap().activity);
        read.class = "deploy".into();
        reads.humans = vec![read];
        assert!(weekly(&reads).unwrap().activity);
        assert!(
            r.summary.starts_with("No activity in 2027-W01"),
            "{}",
            r.summary
        );
        assert_eq!(r.headline.agents.failure_rate, Figure::default());
        assert_eq!(r.approvals.median_minutes, Figure::default());
        assert_eq!(r.days.len(), 7);
        assert_eq!(r.agents.len(), 2, "every agent in scope has its row");
        assert_eq!(r.previous_week.to_string(), "2026-W53");
    }
}
