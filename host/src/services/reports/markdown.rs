//! The weekly report as Markdown, for chat and tickets: the headline first, then compact
//! tables. Text from the report is attacker-controlled, so it goes through `md`: a `|` or a
//! newline cannot break a table, and `*_[]<>` or a backtick cannot format, link or smuggle
//! HTML into the reader's client.

use std::fmt::Write as _;

use super::svg::percent;
use crate::report::{Changes, Count, Figure, Toward, WeeklyReport};

/// The report as GitHub-flavoured Markdown.
pub fn markdown(report: &WeeklyReport) -> String {
    let mut out = String::with_capacity(8 * 1024);
    let _ = writeln!(
        out,
        "# Warden weekly report · {} · {}\n\n{}\n",
        report.week,
        md(&report.scope.title()),
        md(&report.summary),
    );
    let sides = [
        headline("AI agents", &report.headline.agents),
        headline("Humans", &report.headline.humans),
    ];
    let head = ["", "Production changes", "Failure rate", "Last week"];
    table(&mut out, &head, 1, &sides);
    let _ = writeln!(
        out,
        "Figures read: this week (last week). Compared with {}.\n",
        report.previous_week
    );
    verdicts(&mut out, report);
    approvals(&mut out, report);
    outcomes(&mut out, report);
    violations(&mut out, report);
    quota_hits(&mut out, report);
    anomalies(&mut out, report);
    agents(&mut out, report);
    tier_changes(&mut out, report);
    watch(&mut out, report);
    plugins(&mut out, report);
    let _ = writeln!(
        out,
        "Schema {} · time zone {} · from {} until {} · generated {}",
        md(&report.schema),
        md(&report.time_zone),
        md(&report.from),
        md(&report.until),
        md(&report.generated_at),
    );
    out
}

/// Text made inert in Markdown and in a table cell: punctuation that formats, links or opens
/// HTML is backslash-escaped, and line breaks become spaces.
fn md(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' | '&' | '#' | '~' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

fn rate(r: Option<f64>) -> String {
    r.map_or_else(|| "not computed".to_string(), percent)
}

fn count(c: Count) -> String {
    format!("{} ({})", c.this_week, c.last_week)
}

fn figure(f: Figure, show: fn(Option<f64>) -> String) -> String {
    format!("{} ({})", show(f.this_week), show(f.last_week))
}

fn minutes(v: Option<f64>) -> String {
    v.map_or_else(|| "not computed".to_string(), |m| format!("{m:.1} min"))
}

fn score(v: Option<f64>) -> String {
    v.map_or_else(|| "not computed".to_string(), |s| format!("{s:.2}"))
}

fn headline(who: &str, c: &Changes) -> Vec<String> {
    vec![
        who.to_string(),
        c.changes.this_week.to_string(),
        rate(c.failure_rate.this_week),
        format!(
            "{} changes, {}",
            c.changes.last_week,
            rate(c.failure_rate.last_week)
        ),
    ]
}

/// A table whose first `text` columns are text and the rest right-aligned numbers. Cells are
/// Markdown already escaped by the caller.
fn table(out: &mut String, head: &[&str], text: usize, rows: &[Vec<String>]) {
    let align: Vec<&str> = (0..head.len())
        .map(|i| if i < text { "---" } else { "---:" })
        .collect();
    let _ = writeln!(out, "| {} |\n|{}|", head.join(" | "), align.join("|"));
    for row in rows {
        let _ = writeln!(out, "| {} |", row.join(" | "));
    }
    out.push('\n');
}

/// A heading, then the table, or "none" when it has no rows.
fn section(out: &mut String, title: &str, head: &[&str], text: usize, rows: &[Vec<String>]) {
    let _ = writeln!(out, "## {title}\n");
    if rows.is_empty() {
        out.push_str("none\n\n");
    } else {
        table(out, head, text, rows);
    }
}

fn verdicts(out: &mut String, r: &WeeklyReport) {
    let v = &r.verdicts;
    let rows = [
        vec!["Decisions".into(), count(v.decisions)],
        vec!["Allowed".into(), count(v.allowed)],
        vec!["Approval required".into(), count(v.approval_required)],
        vec!["Denied".into(), count(v.denied)],
        vec![
            "Shadow mode: would have been denied".into(),
            count(v.shadow_would_deny),
        ],
    ];
    section(out, "Verdicts", &["Verdict", "Decisions"], 1, &rows);
}

fn approvals(out: &mut String, r: &WeeklyReport) {
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
        vec!["90th percentile".into(), figure(a.p90_minutes, minutes)],
    ];
    section(
        out,
        "Approvals",
        &["Approval requests", "This week"],
        1,
        &rows,
    );
    if !a.top_approvers.is_empty() {
        let names: Vec<String> = a
            .top_approvers
            .iter()
            .map(|h| format!("{} ({})", md(&h.human), h.decided))
            .collect();
        let _ = writeln!(out, "Top approvers this week: {}.\n", names.join(", "));
    }
}

fn outcomes(out: &mut String, r: &WeeklyReport) {
    let both = |f: Figure| figure(f, rate);
    let rows: Vec<Vec<String>> = r
        .outcomes
        .iter()
        .map(|o| {
            vec![
                md(&o.class),
                count(o.expected),
                both(o.success_rate),
                both(o.failure_rate),
                both(o.rollback_rate),
                both(o.unreported_rate),
                both(o.human_failure_rate),
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
        "Humans' failure rate",
    ];
    section(out, "Outcomes", &head, 1, &rows);
}

fn anomalies(out: &mut String, r: &WeeklyReport) {
    let a = &r.anomalies;
    let _ = writeln!(
        out,
        "## Top anomalies\n\nDecisions with a finding: {}; severe (70 or more): {}.\n",
        count(a.decisions),
        count(a.severe),
    );
    if a.top.is_empty() {
        out.push_str("none\n\n");
        return;
    }
    let rows: Vec<Vec<String>> = a
        .top
        .iter()
        .map(|t| {
            let findings: Vec<String> = t.findings.iter().map(String::as_str).map(md).collect();
            vec![
                md(&t.at),
                md(&t.agent),
                md(&t.class),
                md(&t.environment),
                findings.join("; "),
                t.severity.to_string(),
            ]
        })
        .collect();
    let head = [
        "At",
        "Agent",
        "Class",
        "Environment",
        "Findings",
        "Severity",
    ];
    table(out, &head, 5, &rows);
}

fn agents(out: &mut String, r: &WeeklyReport) {
    let rows: Vec<Vec<String>> = r
        .agents
        .iter()
        .map(|a| {
            let show = |t: Option<u8>| t.map_or_else(|| "unknown".to_string(), |t| t.to_string());
            let tier = if a.tier_start == a.tier_end {
                show(a.tier_end)
            } else {
                format!("{} → {}", show(a.tier_start), show(a.tier_end))
            };
            vec![
                md(&a.agent),
                md(&a.team),
                tier,
                count(a.decisions),
                count(a.denied),
                count(a.production_changes),
                figure(a.failure_rate, rate),
                count(a.violations),
                figure(a.score, score),
            ]
        })
        .collect();
    let head = [
        "Agent",
        "Team",
        "Tier",
        "Decisions",
        "Denied",
        "Production changes",
        "Failure rate",
        "Violations",
        "Trust score",
    ];
    section(out, "Agents", &head, 3, &rows);
}

fn violations(out: &mut String, r: &WeeklyReport) {
    let rows: Vec<Vec<String>> = r
        .violations
        .iter()
        .map(|v| vec![md(&v.reason), md(&v.mode), count(v.violations)])
        .collect();
    section(
        out,
        "Violations",
        &["Reason", "Mode", "Violations"],
        2,
        &rows,
    );
}

fn quota_hits(out: &mut String, r: &WeeklyReport) {
    let rows: Vec<Vec<String>> = r
        .quota_hits
        .iter()
        .map(|q| vec![md(&q.quota), count(q.hits)])
        .collect();
    section(out, "Quota hits", &["Quota", "Decisions denied"], 1, &rows);
}

fn tier_changes(out: &mut String, r: &WeeklyReport) {
    let rows: Vec<Vec<String>> = r
        .tier_changes
        .iter()
        .map(|t| {
            let tier = format!("{} → {}", t.from, t.to);
            vec![md(&t.at), md(&t.agent), tier, md(&t.reason), md(&t.text)]
        })
        .collect();
    let head = ["At", "Agent", "Tier", "Reason", "Why"];
    section(out, "Tier changes", &head, 5, &rows);
}

fn watch(out: &mut String, r: &WeeklyReport) {
    let rows: Vec<Vec<String>> = r
        .watch
        .iter()
        .map(|w| {
            let toward = match w.toward {
                Toward::Promotion => "promotion",
                Toward::Demotion => "demotion",
            };
            vec![
                md(&w.agent),
                w.tier.to_string(),
                toward.into(),
                md(&w.detail),
            ]
        })
        .collect();
    section(
        out,
        "Watch list",
        &["Agent", "Tier", "Close to", "Detail"],
        4,
        &rows,
    );
}

fn plugins(out: &mut String, r: &WeeklyReport) {
    let rows: Vec<Vec<String>> = r
        .plugins
        .iter()
        .map(|p| {
            vec![
                md(&p.plugin),
                count(p.errors),
                count(p.limit_hits),
                count(p.fail_closed),
            ]
        })
        .collect();
    let head = [
        "Plugin",
        "Failed calls",
        "Of them, limits",
        "Of them, failed closed",
    ];
    section(out, "Plugins", &head, 1, &rows);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::reports::svg::sample;

    #[test]
    fn the_headline_leads() {
        let text = markdown(&sample::report());
        let title = "# Warden weekly report · 2026-W48 · team payments\n\nIn 2026-W48, ";
        assert!(text.starts_with(title), "{text}");
        assert!(text.contains("| AI agents | 12 | 8.3% | 9 changes, 11.1% |"));
        assert!(text.contains("| Humans | 0 | not computed | 4 changes, 0.0% |"));
        assert!(text.contains("| deploy | 12 (9) | 83.3% (88.9%) |"));
    }

    #[test]
    fn hostile_text_cannot_break_a_table_or_format() {
        let text = markdown(&sample::report());
        assert!(text.contains("| secret \\| in, \"args\" next | block | 2 (0) |"));
        assert!(text.contains("\\<script\\>alert(1)\\</script\\>"));
        assert!(!text.replace("\\<", "").contains('<'), "an unescaped <");
        assert!(text.contains("met every gate \\*for\\* 30 days"));
        assert_eq!(
            md("a_b [c](d) `e` ~f~ \\"),
            "a\\_b \\[c\\](d) \\`e\\` \\~f\\~ \\\\"
        );
        // Every row of a table has as many cells as its header.
        let mut columns = None;
        for line in text.lines() {
            if !line.starts_with('|') {
                columns = None;
                continue;
            }
            let bars = line
                .replace("\\\\", "")
                .replace("\\|", "")
                .matches('|')
                .count();
            assert_eq!(*columns.get_or_insert(bars), bars, "{line}");
        }
    }

    #[test]
    fn empty_sections_say_none() {
        let text = markdown(&sample::quiet());
        assert!(text.contains("No activity in 2026-W48"));
        assert!(text.contains("## Violations\n\nnone\n"));
        assert!(text.contains("## Agents\n\nnone\n"));
        assert!(text.contains("## Plugins\n\nnone\n"));
        assert!(text.contains("| Humans | 0 | not computed | 0 changes, not computed |"));
    }
}
