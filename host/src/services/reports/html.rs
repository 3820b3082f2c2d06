//! The weekly report as one self-contained HTML page: inline CSS and SVG, no script and no
//! external URL, so that it can be mailed, archived and printed as it is. Every string from
//! the report goes through [`esc`] (agent ids, reasons and findings are attacker-controlled),
//! every figure shows last week's beside it, and a rate with nothing to divide reads
//! "not computed", never 0.

use std::cmp::Ordering;
use std::fmt::Write as _;

use super::svg::{self, esc, percent};
use crate::report::{AgentRow, Changes, Count, Figure, Toward, WeeklyReport};

const NONE: &str = r#"<p class="none">none</p>"#;
const NOT_COMPUTED: &str = r#"<span class="na">not computed</span>"#;
const ALLOWED: &str = "#59a14f";
const APPROVAL: &str = "#edc948";
const DENIED: &str = "#e15759";
/// More lines than this make the trust chart unreadable; the lowest scores are the ones a
/// reader acts on, so those are drawn.
const MAX_TRUST_LINES: usize = 20;

const STYLE: &str = "
:root { color-scheme: light; }
body { font: 15px/1.45 system-ui, sans-serif; margin: 0; background: #f6f7f9; color: #1d2330; }
main { max-width: 1080px; margin: 24px auto; padding: 0 16px; }
header.report h1 { font-size: 24px; margin: 0 0 4px; }
.meta, .prev, .na, .none, .note, figcaption, footer { color: #5b6478; }
.prev { font-size: 12px; }
section { background: #fff; border: 1px solid #dde1e8; border-radius: 8px;
  padding: 16px 20px; margin: 16px 0; }
h2 { font-size: 18px; margin: 0 0 12px; }
h3 { font-size: 15px; margin: 16px 0 8px; }
.lead { font-size: 20px; font-weight: 600; margin: 0 0 16px; }
.lead.quiet { font-size: 24px; }
.headline { display: flex; flex-wrap: wrap; gap: 16px; }
.tile { flex: 1 1 300px; border: 1px solid #dde1e8; border-radius: 8px; padding: 12px 16px; }
.tile h3 { margin: 0 0 8px; }
.tile p { margin: 0 0 8px; }
.big { font-size: 30px; font-weight: 700; }
.delta { font-size: 13px; white-space: nowrap; }
.worse { color: #a8262f; }
.better { color: #1f7a3d; }
.none, .na { font-style: italic; }
.note { font-size: 13px; }
.wide { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-size: 13px; margin: 8px 0; }
th, td { border-bottom: 1px solid #e6e8ec; padding: 4px 8px; text-align: left;
  vertical-align: top; overflow-wrap: anywhere; }
th { font-weight: 600; background: #f0f2f5; }
th.n, td.n { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
th, td:first-child { white-space: nowrap; }
section { overflow-x: auto; }
td ul { margin: 0; padding-left: 16px; }
figure.chart { margin: 16px 0; }
figure.chart svg { display: block; width: 100%; max-width: 760px; height: auto; }
figcaption { font-size: 13px; margin-top: 4px; }
footer { font-size: 12px; margin: 24px 0; }
@media print {
  body { background: #fff; font-size: 10pt; }
  .nav { display: none; }
  main { max-width: none; margin: 0; padding: 0; }
  section { border: none; border-radius: 0; padding: 0; margin: 0 0 14pt; }
  h2, h3 { break-after: avoid; }
  figure.chart, tr, .tile { break-inside: avoid; }
  .wide { overflow: visible; }
  * { print-color-adjust: exact; -webkit-print-color-adjust: exact; }
}
";

/// The report as an HTML5 document. `nav`, when given, is trusted HTML (the web UI's header)
/// placed at the top of the body; it is hidden when printed.
pub fn document(report: &WeeklyReport, nav: Option<&str>) -> String {
    let title = esc(&format!(
        "Warden weekly report · {} · {}",
        report.week,
        report.scope.title()
    ));
    let mut out = String::with_capacity(64 * 1024);
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <link rel=\"icon\" href=\"data:,\"><title>{title}</title><style>{STYLE}</style></head>\n<body>"
    );
    if let Some(nav) = nav {
        let _ = write!(out, "<div class=\"nav\">{nav}</div>");
    }
    let _ = writeln!(
        out,
        "<main><header class=\"report\"><h1>{title}</h1><p class=\"meta\">Compared with {}. \
         Each figure reads this week <span class=\"prev\">(last week)</span>.</p></header>",
        report.previous_week,
    );
    let sections = [
        ("summary", "Summary", summary(report)),
        ("verdicts", "Verdicts", verdicts(report)),
        (
            "actions",
            "Actions by class and environment",
            actions(report),
        ),
        ("approvals", "Approvals", approvals(report)),
        ("outcomes", "Outcomes", outcomes(report)),
        ("violations", "Violations", violations(report)),
        ("quota-hits", "Quota hits", quota_hits(report)),
        ("anomalies", "Anomalies", anomalies(report)),
        ("trust", "Trust", trust(report)),
        ("agents", "Agents", agents(report)),
        ("teams", "Teams", teams(report)),
        ("tier-changes", "Tier changes", tier_changes(report)),
        ("watch", "Watch list", watch(report)),
        ("plugins", "Plugin health", plugins(report)),
    ];
    for (id, heading, body) in sections {
        let _ = writeln!(
            out,
            "<section id=\"{id}\"><h2>{heading}</h2>{body}</section>"
        );
    }
    let _ = writeln!(
        out,
        "<footer><p>Schema {} · time zone {} · from {} until {} · generated {}</p></footer>",
        esc(&report.schema),
        esc(&report.time_zone),
        esc(&report.from),
        esc(&report.until),
        esc(&report.generated_at),
    );
    out.push_str("</main></body></html>\n");
    out
}

/// The dates of the report's days, `YYYY-MM-DD`: from its day rows, or its week's.
pub(super) fn day_labels(report: &WeeklyReport) -> Vec<String> {
    if report.days.is_empty() {
        report.week.days().iter().map(ToString::to_string).collect()
    } else {
        report.days.iter().map(|d| d.day.clone()).collect()
    }
}

fn summary(r: &WeeklyReport) -> String {
    let mut out = format!(
        r#"<p class="lead{}">{}</p><div class="headline">"#,
        if r.activity { "" } else { " quiet" },
        esc(&r.summary)
    );
    tile(&mut out, "AI agents", &r.headline.agents);
    tile(&mut out, "Humans", &r.headline.humans);
    out.push_str("</div>");
    out
}

/// One side of the headline: production changes and failure rate, each with its trend.
fn tile(out: &mut String, who: &str, c: &Changes) {
    let _ = write!(
        out,
        "<div class=\"tile\"><h3>{who}</h3>\
         <p><span class=\"big\">{changes}</span> production changes {changes_delta}</p>\
         <p><span class=\"big\">{rate}</span> failure rate {rate_delta}</p>\
         <p class=\"note\">failed {failed}, rolled back {rolled_back}</p></div>",
        changes = c.changes.this_week,
        changes_delta = count_delta(c.changes),
        rate = c
            .failure_rate
            .this_week
            .map_or_else(|| NOT_COMPUTED.to_string(), percent),
        rate_delta = rate_delta(c.failure_rate),
        failed = count(c.failed),
        rolled_back = count(c.rolled_back),
    );
}

fn count_delta(c: Count) -> String {
    let then = c.last_week;
    let (class, text) = match c.this_week.cmp(&then) {
        Ordering::Greater => (
            "up",
            format!("▲ {} from {then} last week", c.this_week - then),
        ),
        Ordering::Less => (
            "down",
            format!("▼ {} from {then} last week", then - c.this_week),
        ),
        Ordering::Equal => ("same", format!("= {then} last week")),
    };
    format!(r#"<span class="delta {class}">{text}</span>"#)
}

/// A failure rate's trend, in percentage points; a rise is worse.
fn rate_delta(f: Figure) -> String {
    let (Some(now), Some(then)) = (f.this_week, f.last_week) else {
        let then = f
            .last_week
            .map_or_else(|| "not computed".to_string(), percent);
        return format!(r#"<span class="delta">{then} last week</span>"#);
    };
    let points = (now - then) * 100.0;
    let then = percent(then);
    let (class, text) = if points.abs() < 0.05 {
        ("same", format!("= {then} last week"))
    } else if points > 0.0 {
        (
            "worse",
            format!("▲ {points:.1} points from {then} last week"),
        )
    } else {
        (
            "better",
            format!("▼ {:.1} points from {then} last week", -points),
        )
    };
    format!(r#"<span class="delta {class}">{text}</span>"#)
}

fn prev(last_week: &str) -> String {
    format!(r#" <span class="prev">({last_week})</span>"#)
}

fn count(c: Count) -> String {
    format!("{}{}", c.this_week, prev(&c.last_week.to_string()))
}

/// Both weeks of a figure, each shown by `show` or as "not computed".
fn figure(f: Figure, show: fn(f64) -> String) -> String {
    let one = |v: Option<f64>| v.map_or_else(|| NOT_COMPUTED.to_string(), show);
    format!("{}{}", one(f.this_week), prev(&one(f.last_week)))
}

fn rate(f: Figure) -> String {
    figure(f, percent)
}

fn minutes(v: f64) -> String {
    format!("{v:.1} min")
}

fn score(v: f64) -> String {
    format!("{v:.2}")
}

fn tiers(start: Option<u8>, end: Option<u8>) -> String {
    let show = |t: Option<u8>| t.map_or_else(|| "unknown".to_string(), |t| t.to_string());
    if start == end {
        show(start)
    } else {
        format!("{} → {}", show(start), show(end))
    }
}

fn toward(t: Toward) -> &'static str {
    match t {
        Toward::Promotion => "promotion ▲",
        Toward::Demotion => "demotion ▼",
    }
}

/// A table whose first `text` columns are text and the rest numbers; "none" without rows.
/// Cells are HTML already escaped by the caller.
fn table(head: &[&str], text: usize, rows: &[Vec<String>]) -> String {
    if rows.is_empty() {
        return NONE.to_string();
    }
    let class = |i: usize| if i < text { "" } else { r#" class="n""# };
    let mut out = String::from(r#"<div class="wide"><table><thead><tr>"#);
    for (i, h) in head.iter().enumerate() {
        let _ = write!(out, "<th{}>{}</th>", class(i), esc(h));
    }
    out.push_str("</tr></thead><tbody>");
    for row in rows {
        out.push_str("<tr>");
        for (i, cell) in row.iter().enumerate() {
            let _ = write!(out, "<td{}>{cell}</td>", class(i));
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></div>");
    out
}

fn verdicts(r: &WeeklyReport) -> String {
    let v = &r.verdicts;
    let share = |c: Count| rate(Figure::ratio(c, v.decisions));
    let rows = [
        vec!["Decisions".into(), count(v.decisions), String::new()],
        vec!["Allowed".into(), count(v.allowed), share(v.allowed)],
        vec![
            "Approval required".into(),
            count(v.approval_required),
            share(v.approval_required),
        ],
        vec!["Denied".into(), count(v.denied), share(v.denied)],
        vec![
            "Shadow mode: allowed, enforcement would have denied".into(),
            count(v.shadow_would_deny),
            share(v.shadow_would_deny),
        ],
    ];
    let mut out = table(&["Verdict", "Decisions", "Share of decisions"], 1, &rows);
    let labels: Vec<String> = r.days.iter().map(|d| d.day.clone()).collect();
    let stacks: [(String, &'static str, Vec<u64>); 3] = [
        (
            "allowed".into(),
            ALLOWED,
            r.days.iter().map(|d| d.allowed).collect(),
        ),
        (
            "approval required".into(),
            APPROVAL,
            r.days.iter().map(|d| d.approval_required).collect(),
        ),
        (
            "denied".into(),
            DENIED,
            r.days.iter().map(|d| d.denied).collect(),
        ),
    ];
    out.push_str(&svg::stacked_bars(
        "chart-verdicts",
        "Decisions per day by verdict",
        &labels,
        &stacks,
    ));
    out
}

fn actions(r: &WeeklyReport) -> String {
    let rows: Vec<Vec<String>> = r
        .actions
        .iter()
        .map(|a| vec![esc(&a.class), esc(&a.environment), count(a.actions)])
        .collect();
    table(&["Class", "Environment", "Decisions"], 2, &rows)
}

fn approvals(r: &WeeklyReport) -> String {
    let a = &r.approvals;
    let rows = [
        vec!["Requested".into(), count(a.requested)],
        vec!["Approved".into(), count(a.approved)],
        vec!["Rejected".into(), count(a.rejected)],
        vec!["Expired undecided".into(), count(a.expired)],
        vec!["Still pending".into(), count(a.pending)],
        vec![
            "Median time to decision".into(),
            figure(a.median_minutes, minutes),
        ],
        vec![
            "90th percentile time to decision".into(),
            figure(a.p90_minutes, minutes),
        ],
    ];
    let mut out = table(&["Approval requests", "This week"], 1, &rows);
    out.push_str("<h3>Top approvers this week</h3>");
    let approvers: Vec<Vec<String>> = a
        .top_approvers
        .iter()
        .map(|h| vec![esc(&h.human), h.decided.to_string()])
        .collect();
    out.push_str(&table(&["Human", "Decided"], 1, &approvers));
    let labels: Vec<String> = a.time_to_decision.iter().map(|b| b.label.clone()).collect();
    let this: Vec<u64> = a
        .time_to_decision
        .iter()
        .map(|b| b.decided.this_week)
        .collect();
    let last: Vec<u64> = a
        .time_to_decision
        .iter()
        .map(|b| b.decided.last_week)
        .collect();
    out.push_str(&svg::histogram(
        "chart-approvals",
        "Approvals by time from request to a human's decision",
        &labels,
        &this,
        &last,
    ));
    out
}

fn outcomes(r: &WeeklyReport) -> String {
    let rows: Vec<Vec<String>> = r
        .outcomes
        .iter()
        .map(|o| {
            vec![
                esc(&o.class),
                count(o.expected),
                rate(o.success_rate),
                rate(o.failure_rate),
                rate(o.rollback_rate),
                rate(o.unreported_rate),
                count(o.human_changes),
                rate(o.human_failure_rate),
            ]
        })
        .collect();
    let head = [
        "Class",
        "Outcomes owed",
        "Succeeded",
        "Failed",
        "Rolled back",
        "Unreported",
        "Human changes",
        "Human failure rate",
    ];
    let mut out = table(&head, 1, &rows);
    out.push_str(
        "<p class=\"note\">The agents' rates are shares of the outcomes their allowed actions \
         owed; the humans' failure rate counts failed and rolled-back changes, and so does the \
         chart for both.</p>",
    );
    let labels: Vec<String> = std::iter::once("production (headline)".to_string())
        .chain(r.outcomes.iter().map(|o| o.class.clone()))
        .collect();
    let agents: Vec<Option<f64>> = std::iter::once(r.headline.agents.failure_rate.this_week)
        .chain(r.outcomes.iter().map(|o| {
            let failed = o.failure_rate.this_week;
            failed.zip(o.rollback_rate.this_week).map(|(f, b)| f + b)
        }))
        .collect();
    let humans: Vec<Option<f64>> = std::iter::once(r.headline.humans.failure_rate.this_week)
        .chain(r.outcomes.iter().map(|o| o.human_failure_rate.this_week))
        .collect();
    out.push_str(&svg::paired_bars(
        "chart-failure",
        "Failure rate this week (failed or rolled back): AI agents and humans",
        &labels,
        ("AI agents", agents),
        ("humans", humans),
        true,
    ));
    out
}

fn violations(r: &WeeklyReport) -> String {
    let rows: Vec<Vec<String>> = r
        .violations
        .iter()
        .map(|v| vec![esc(&v.reason), esc(&v.mode), count(v.violations)])
        .collect();
    table(&["Reason", "Mode", "Violations"], 2, &rows)
}

fn quota_hits(r: &WeeklyReport) -> String {
    let rows: Vec<Vec<String>> = r
        .quota_hits
        .iter()
        .map(|q| vec![esc(&q.quota), count(q.hits)])
        .collect();
    table(&["Quota", "Decisions denied"], 1, &rows)
}

fn anomalies(r: &WeeklyReport) -> String {
    let a = &r.anomalies;
    let counts = [
        vec!["With a finding above severity 0".into(), count(a.decisions)],
        vec!["Severe (70 or more)".into(), count(a.severe)],
    ];
    let mut out = table(&["Anomalous decisions", "Decisions"], 1, &counts);
    out.push_str("<h3>Most severe this week</h3>");
    let rows: Vec<Vec<String>> = a
        .top
        .iter()
        .map(|t| {
            let findings = if t.findings.is_empty() {
                "—".to_string()
            } else {
                let mut list = String::from("<ul>");
                for finding in &t.findings {
                    let _ = write!(list, "<li>{}</li>", esc(finding));
                }
                list.push_str("</ul>");
                list
            };
            vec![
                esc(&t.decision_id),
                esc(&t.agent),
                esc(&t.at),
                esc(&t.class),
                esc(&t.environment),
                findings,
                t.severity.to_string(),
            ]
        })
        .collect();
    let head = [
        "Decision",
        "Agent",
        "At",
        "Class",
        "Environment",
        "Findings",
        "Severity",
    ];
    out.push_str(&table(&head, 6, &rows));
    out
}

fn trust(r: &WeeklyReport) -> String {
    let latest = |a: &AgentRow| a.trust.iter().rev().flatten().next().copied();
    let mut shown: Vec<(usize, &AgentRow, f64)> = r
        .agents
        .iter()
        .enumerate()
        .filter_map(|(i, a)| latest(a).map(|t| (i, a, t)))
        .collect();
    let total = shown.len();
    let title = if total > MAX_TRUST_LINES {
        shown.sort_by(|a, b| a.2.total_cmp(&b.2));
        shown.truncate(MAX_TRUST_LINES);
        shown.sort_by_key(|s| s.0);
        format!(
            "Trust at the end of each day: the {MAX_TRUST_LINES} lowest-scoring of {total} agents"
        )
    } else {
        "Trust per agent at the end of each day".to_string()
    };
    let series: Vec<(String, Vec<Option<f64>>)> = shown
        .iter()
        .map(|(_, a, _)| (a.agent.clone(), a.trust.clone()))
        .collect();
    svg::line_chart("chart-trust", &title, &day_labels(r), &series, 1.0)
}

fn agents(r: &WeeklyReport) -> String {
    let rows: Vec<Vec<String>> = r
        .agents
        .iter()
        .map(|a| {
            vec![
                esc(&a.agent),
                esc(&a.team),
                tiers(a.tier_start, a.tier_end),
                count(a.decisions),
                count(a.allowed),
                count(a.approval_required),
                count(a.denied),
                count(a.production_changes),
                rate(a.failure_rate),
                count(a.violations),
                figure(a.drift, score),
                figure(a.score, score),
            ]
        })
        .collect();
    let head = [
        "Agent",
        "Team",
        "Tier",
        "Decisions",
        "Allowed",
        "Approval required",
        "Denied",
        "Production changes",
        "Failure rate",
        "Violations",
        "Drift",
        "Trust score",
    ];
    table(&head, 3, &rows)
}

fn teams(r: &WeeklyReport) -> String {
    let rows: Vec<Vec<String>> = r
        .teams
        .iter()
        .map(|t| {
            vec![
                esc(&t.team),
                t.agents.to_string(),
                count(t.decisions),
                count(t.production_changes),
                rate(t.failure_rate),
                count(t.human_changes),
                rate(t.human_failure_rate),
                count(t.violations),
            ]
        })
        .collect();
    let head = [
        "Team",
        "Agents",
        "Decisions",
        "Agents' production changes",
        "Agents' failure rate",
        "Humans' production changes",
        "Humans' failure rate",
        "Violations",
    ];
    table(&head, 1, &rows)
}

fn tier_changes(r: &WeeklyReport) -> String {
    let rows: Vec<Vec<String>> = r
        .tier_changes
        .iter()
        .map(|t| {
            vec![
                esc(&t.at),
                esc(&t.agent),
                format!("{} → {}", t.from, t.to),
                esc(&t.reason),
                esc(&t.text),
            ]
        })
        .collect();
    table(&["At", "Agent", "Tier", "Reason", "Why"], 5, &rows)
}

fn watch(r: &WeeklyReport) -> String {
    let rows: Vec<Vec<String>> = r
        .watch
        .iter()
        .map(|w| {
            vec![
                esc(&w.agent),
                w.tier.to_string(),
                toward(w.toward).into(),
                esc(&w.detail),
            ]
        })
        .collect();
    table(&["Agent", "Tier", "Close to", "Detail"], 4, &rows)
}

fn plugins(r: &WeeklyReport) -> String {
    let rows: Vec<Vec<String>> = r
        .plugins
        .iter()
        .map(|p| {
            vec![
                esc(&p.plugin),
                count(p.errors),
                count(p.limit_hits),
                count(p.fail_closed),
            ]
        })
        .collect();
    table(
        &[
            "Plugin",
            "Failed calls",
            "Of them, limits",
            "Of them, failed closed",
        ],
        1,
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::reports::svg::sample;

    #[test]
    fn attacker_text_is_escaped_and_nothing_runs() {
        let html = document(&sample::report(), None);
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"));
        // The one link is the empty icon that keeps browsers from fetching /favicon.ico.
        let lower = html
            .to_lowercase()
            .replace(r#"<link rel="icon" href="data:,">"#, "");
        for banned in [
            "<script", "<img", "<link", "<iframe", "url(", "@import", "http",
        ] {
            assert!(!lower.contains(banned), "{banned}");
        }
    }

    #[test]
    fn sections_and_charts_come_in_order() {
        let html = document(&sample::report(), Some("<nav>header</nav>"));
        assert!(html.contains("<title>Warden weekly report · 2026-W48 · team payments</title>"));
        assert!(html.contains("<body><div class=\"nav\"><nav>header</nav></div><main>"));
        let order = [
            "id=\"summary\"",
            "id=\"verdicts\"",
            "id=\"chart-verdicts\"",
            "id=\"actions\"",
            "id=\"approvals\"",
            "id=\"chart-approvals\"",
            "id=\"outcomes\"",
            "id=\"chart-failure\"",
            "id=\"violations\"",
            "id=\"quota-hits\"",
            "id=\"anomalies\"",
            "id=\"trust\"",
            "id=\"chart-trust\"",
            "id=\"agents\"",
            "id=\"teams\"",
            "id=\"tier-changes\"",
            "id=\"watch\"",
            "id=\"plugins\"",
            "<footer>",
        ];
        let at: Vec<usize> = order
            .iter()
            .map(|s| html.find(s).unwrap_or_else(|| panic!("{s} missing")))
            .collect();
        assert!(at.windows(2).all(|w| w[0] < w[1]), "{at:?}");
        assert!(html.contains("production (headline)"));
    }

    #[test]
    fn figures_carry_last_week_and_missing_rates_are_not_zero() {
        let html = document(&sample::report(), None);
        // The agents' failure rate, 1 of 12 beside 1 of 9.
        assert!(html.contains("8.3% <span class=\"prev\">(11.1%)</span>"));
        assert!(html.contains("12 <span class=\"prev\">(9)</span>"));
        // The humans made no change this week: their rate is not computed, last week's is 0.
        assert!(
            html.contains(
                "<span class=\"na\">not computed</span> <span class=\"prev\">(0.0%)</span>"
            )
        );
        assert!(html.contains("2 → 3"));
        let worse = rate_delta(Figure {
            this_week: Some(0.1),
            last_week: Some(0.05),
        });
        assert!(
            worse.contains("worse") && worse.contains("▲ 5.0 points from 5.0%"),
            "{worse}"
        );
        let unknown = rate_delta(Figure {
            this_week: Some(0.1),
            last_week: None,
        });
        assert!(unknown.contains("not computed last week"), "{unknown}");
    }

    #[test]
    fn a_quiet_week_says_so_everywhere() {
        let html = document(&sample::quiet(), None);
        assert!(html.contains("<p class=\"lead quiet\">No activity"));
        assert!(html.matches("<p class=\"none\">none</p>").count() >= 10);
        assert_eq!(html.matches("no data this week").count(), 4);
    }
}
