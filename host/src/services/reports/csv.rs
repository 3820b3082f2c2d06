//! The weekly report as CSV, one file per table, for spreadsheets and notebooks: RFC 4180 with
//! LF line ends. Agent ids, reasons and findings are attacker-controlled, so a text cell that
//! a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, tab or CR first) starts with a
//! `'`; numbers Warden formats itself are never touched. Rates are fractions (0.125), and a
//! figure that was not computed is an empty cell, never 0.

use super::html::day_labels;
use crate::report::{Changes, Count, Figure, Toward, WeeklyReport};

/// Every table's name, in the order [`tables`] returns them.
pub const TABLES: &[&str] = &[
    "headline",
    "verdicts",
    "actions",
    "days",
    "approvals",
    "approval_waits",
    "approvers",
    "outcomes",
    "violations",
    "quota_hits",
    "anomalies",
    "agents",
    "teams",
    "tier_changes",
    "watch",
    "plugins",
];

/// The table `name` (one of [`TABLES`]) as CSV, or `None` when there is no such table.
pub fn table(report: &WeeklyReport, name: &str) -> Option<String> {
    Some(match name {
        "headline" => headline(report),
        "verdicts" => verdicts(report),
        "actions" => actions(report),
        "days" => days(report),
        "approvals" => approvals(report),
        "approval_waits" => approval_waits(report),
        "approvers" => approvers(report),
        "outcomes" => outcomes(report),
        "violations" => violations(report),
        "quota_hits" => quota_hits(report),
        "anomalies" => anomalies(report),
        "agents" => agents(report),
        "teams" => teams(report),
        "tier_changes" => tier_changes(report),
        "watch" => watch(report),
        "plugins" => plugins(report),
        _ => return None,
    })
}

/// Every table, named as in [`TABLES`].
pub fn tables(report: &WeeklyReport) -> Vec<(&'static str, String)> {
    TABLES
        .iter()
        .filter_map(|&name| table(report, name).map(|csv| (name, csv)))
        .collect()
}

/// A header: column names, a figure's two weeks as `name` and `name_last_week`.
#[derive(Default)]
struct Head(Vec<String>);

impl Head {
    fn cols(mut self, names: &[&str]) -> Head {
        self.0.extend(names.iter().map(|n| n.to_string()));
        self
    }

    fn col(mut self, name: String) -> Head {
        self.0.push(name);
        self
    }

    fn pairs(mut self, names: &[&str]) -> Head {
        for name in names {
            self.0.push(name.to_string());
            self.0.push(format!("{name}_last_week"));
        }
        self
    }
}

/// A row, in its header's order.
#[derive(Default)]
struct Row(Vec<String>);

impl Row {
    fn text(mut self, s: &str) -> Row {
        self.0.push(defuse(s));
        self
    }

    fn int(mut self, n: impl Into<u64>) -> Row {
        self.0.push(n.into().to_string());
        self
    }

    fn tier(mut self, tier: Option<u8>) -> Row {
        self.0
            .push(tier.map_or_else(String::new, |t| t.to_string()));
        self
    }

    fn real(mut self, v: Option<f64>) -> Row {
        self.0.push(match v {
            // Also -0, whose sign would only confuse a reader.
            Some(0.0) => "0".into(),
            Some(v) if v.is_finite() => v.to_string(),
            _ => String::new(),
        });
        self
    }

    fn count(self, c: Count) -> Row {
        self.int(c.this_week).int(c.last_week)
    }

    fn figure(self, f: Figure) -> Row {
        self.real(f.this_week).real(f.last_week)
    }
}

/// A text cell a spreadsheet will show, not evaluate.
fn defuse(s: &str) -> String {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_string()
    }
}

fn sheet(head: Head, rows: impl IntoIterator<Item = Row>) -> String {
    let mut out = String::new();
    line(&mut out, &head.0);
    for row in rows {
        debug_assert_eq!(row.0.len(), head.0.len(), "a row as wide as its header");
        line(&mut out, &row.0);
    }
    out
}

fn line(out: &mut String, cells: &[String]) {
    for (i, cell) in cells.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        if cell.contains([',', '"', '\r', '\n']) {
            out.push('"');
            out.push_str(&cell.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(cell);
        }
    }
    out.push('\n');
}

fn headline(r: &WeeklyReport) -> String {
    let head =
        Head::default()
            .cols(&["who"])
            .pairs(&["changes", "failed", "rolled_back", "failure_rate"]);
    let row = |who: &str, c: &Changes| {
        Row::default()
            .text(who)
            .count(c.changes)
            .count(c.failed)
            .count(c.rolled_back)
            .figure(c.failure_rate)
    };
    sheet(
        head,
        [
            row("agents", &r.headline.agents),
            row("humans", &r.headline.humans),
        ],
    )
}

fn verdicts(r: &WeeklyReport) -> String {
    let head = Head::default().pairs(&[
        "decisions",
        "allowed",
        "approval_required",
        "denied",
        "shadow_would_deny",
    ]);
    let v = &r.verdicts;
    let row = Row::default()
        .count(v.decisions)
        .count(v.allowed)
        .count(v.approval_required)
        .count(v.denied)
        .count(v.shadow_would_deny);
    sheet(head, [row])
}

fn actions(r: &WeeklyReport) -> String {
    let head = Head::default()
        .cols(&["class", "environment"])
        .pairs(&["actions"]);
    let rows = r.actions.iter().map(|a| {
        Row::default()
            .text(&a.class)
            .text(&a.environment)
            .count(a.actions)
    });
    sheet(head, rows)
}

fn days(r: &WeeklyReport) -> String {
    let head = Head::default().cols(&["day", "allowed", "approval_required", "denied"]);
    let rows = r.days.iter().map(|d| {
        Row::default()
            .text(&d.day)
            .int(d.allowed)
            .int(d.approval_required)
            .int(d.denied)
    });
    sheet(head, rows)
}

fn approvals(r: &WeeklyReport) -> String {
    let head = Head::default().pairs(&[
        "requested",
        "approved",
        "rejected",
        "expired",
        "pending",
        "median_minutes",
        "p90_minutes",
    ]);
    let a = &r.approvals;
    let row = Row::default()
        .count(a.requested)
        .count(a.approved)
        .count(a.rejected)
        .count(a.expired)
        .count(a.pending)
        .figure(a.median_minutes)
        .figure(a.p90_minutes);
    sheet(head, [row])
}

fn approval_waits(r: &WeeklyReport) -> String {
    let head = Head::default().cols(&["bucket"]).pairs(&["decided"]);
    let rows = r
        .approvals
        .time_to_decision
        .iter()
        .map(|b| Row::default().text(&b.label).count(b.decided));
    sheet(head, rows)
}

fn approvers(r: &WeeklyReport) -> String {
    let head = Head::default().cols(&["human", "decided"]);
    let rows = r
        .approvals
        .top_approvers
        .iter()
        .map(|h| Row::default().text(&h.human).int(h.decided));
    sheet(head, rows)
}

fn outcomes(r: &WeeklyReport) -> String {
    let head = Head::default().cols(&["class"]).pairs(&[
        "expected",
        "succeeded",
        "failed",
        "rolled_back",
        "unreported",
        "success_rate",
        "failure_rate",
        "rollback_rate",
        "unreported_rate",
        "human_changes",
        "human_failure_rate",
    ]);
    let rows = r.outcomes.iter().map(|o| {
        Row::default()
            .text(&o.class)
            .count(o.expected)
            .count(o.succeeded)
            .count(o.failed)
            .count(o.rolled_back)
            .count(o.unreported)
            .figure(o.success_rate)
            .figure(o.failure_rate)
            .figure(o.rollback_rate)
            .figure(o.unreported_rate)
            .count(o.human_changes)
            .figure(o.human_failure_rate)
    });
    sheet(head, rows)
}

fn violations(r: &WeeklyReport) -> String {
    let head = Head::default()
        .cols(&["reason", "mode"])
        .pairs(&["violations"]);
    let rows = r.violations.iter().map(|v| {
        Row::default()
            .text(&v.reason)
            .text(&v.mode)
            .count(v.violations)
    });
    sheet(head, rows)
}

fn quota_hits(r: &WeeklyReport) -> String {
    let head = Head::default().cols(&["quota"]).pairs(&["hits"]);
    let rows = r
        .quota_hits
        .iter()
        .map(|q| Row::default().text(&q.quota).count(q.hits));
    sheet(head, rows)
}

fn anomalies(r: &WeeklyReport) -> String {
    let head = Head::default().cols(&[
        "decision_id",
        "agent",
        "at",
        "class",
        "environment",
        "severity",
        "findings",
    ]);
    let rows = r.anomalies.top.iter().map(|a| {
        Row::default()
            .text(&a.decision_id)
            .text(&a.agent)
            .text(&a.at)
            .text(&a.class)
            .text(&a.environment)
            .int(a.severity)
            .text(&a.findings.join("; "))
    });
    sheet(head, rows)
}

fn agents(r: &WeeklyReport) -> String {
    let days = day_labels(r);
    let head = days.iter().fold(
        Head::default()
            .cols(&["agent", "team", "tier_start", "tier_end"])
            .pairs(&[
                "decisions",
                "allowed",
                "approval_required",
                "denied",
                "production_changes",
                "failure_rate",
                "violations",
                "drift",
                "score",
            ]),
        |head, day| head.col(format!("trust_{day}")),
    );
    let rows = r.agents.iter().map(|a| {
        let row = Row::default()
            .text(&a.agent)
            .text(&a.team)
            .tier(a.tier_start)
            .tier(a.tier_end)
            .count(a.decisions)
            .count(a.allowed)
            .count(a.approval_required)
            .count(a.denied)
            .count(a.production_changes)
            .figure(a.failure_rate)
            .count(a.violations)
            .figure(a.drift)
            .figure(a.score);
        (0..days.len()).fold(row, |row, i| row.real(a.trust.get(i).copied().flatten()))
    });
    sheet(head, rows)
}

fn teams(r: &WeeklyReport) -> String {
    let head = Head::default().cols(&["team", "agents"]).pairs(&[
        "decisions",
        "production_changes",
        "failure_rate",
        "human_changes",
        "human_failure_rate",
        "violations",
    ]);
    let rows = r.teams.iter().map(|t| {
        Row::default()
            .text(&t.team)
            .int(t.agents)
            .count(t.decisions)
            .count(t.production_changes)
            .figure(t.failure_rate)
            .count(t.human_changes)
            .figure(t.human_failure_rate)
            .count(t.violations)
    });
    sheet(head, rows)
}

fn tier_changes(r: &WeeklyReport) -> String {
    let head = Head::default().cols(&["agent", "at", "from", "to", "reason", "text"]);
    let rows = r.tier_changes.iter().map(|t| {
        Row::default()
            .text(&t.agent)
            .text(&t.at)
            .int(t.from)
            .int(t.to)
            .text(&t.reason)
            .text(&t.text)
    });
    sheet(head, rows)
}

fn watch(r: &WeeklyReport) -> String {
    let head = Head::default().cols(&["agent", "tier", "toward", "detail"]);
    let rows = r.watch.iter().map(|w| {
        let toward = match w.toward {
            Toward::Promotion => "promotion",
            Toward::Demotion => "demotion",
        };
        Row::default()
            .text(&w.agent)
            .int(w.tier)
            .text(toward)
            .text(&w.detail)
    });
    sheet(head, rows)
}

fn plugins(r: &WeeklyReport) -> String {
    let head = Head::default()
        .cols(&["plugin"])
        .pairs(&["errors", "limit_hits", "fail_closed"]);
    let rows = r.plugins.iter().map(|p| {
        Row::default()
            .text(&p.plugin)
            .count(p.errors)
            .count(p.limit_hits)
            .count(p.fail_closed)
    });
    sheet(head, rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::reports::svg::sample;

    /// Records of RFC 4180 text, quotes undone.
    fn parse(csv: &str) -> Vec<Vec<String>> {
        let (mut records, mut record, mut field) = (Vec::new(), Vec::new(), String::new());
        let (mut quoted, mut chars) = (false, csv.chars().peekable());
        while let Some(c) = chars.next() {
            match (quoted, c) {
                (true, '"') if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                (true, '"') => quoted = false,
                (true, c) => field.push(c),
                (false, '"') => quoted = true,
                (false, ',') => record.push(std::mem::take(&mut field)),
                (false, '\n') => {
                    record.push(std::mem::take(&mut field));
                    records.push(std::mem::take(&mut record));
                }
                (false, c) => field.push(c),
            }
        }
        assert!(
            !quoted && field.is_empty() && record.is_empty(),
            "ends with a newline"
        );
        records
    }

    #[test]
    fn every_table_renders_rows_as_wide_as_its_header() {
        let report = sample::report();
        let all = tables(&report);
        assert_eq!(all.iter().map(|(n, _)| *n).collect::<Vec<_>>(), TABLES);
        for (name, csv) in &all {
            let records = parse(csv);
            assert!(records.len() >= 2, "{name} has rows");
            assert!(
                records.iter().all(|r| r.len() == records[0].len()),
                "{name}"
            );
        }
        assert_eq!(table(&report, "nope"), None);
        assert_eq!(
            table(&report, "headline").unwrap().lines().next().unwrap(),
            "who,changes,changes_last_week,failed,failed_last_week,rolled_back,\
             rolled_back_last_week,failure_rate,failure_rate_last_week"
        );
    }

    #[test]
    fn quotes_and_formulas_are_defused() {
        let report = sample::report();
        let violations = table(&report, "violations").unwrap();
        assert!(violations.contains("\"secret | in, \"\"args\"\"\nnext\",block,2,0\n"));
        assert_eq!(parse(&violations)[1][0], "secret | in, \"args\"\nnext");
        assert!(table(&report, "approvers").unwrap().contains("\n'=1+2,7\n"));
        for (hostile, safe) in [
            ("-2+3", "'-2+3"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tx", "'\tx"),
        ] {
            assert_eq!(defuse(hostile), safe);
        }
        assert_eq!(defuse("deploy-bot"), "deploy-bot");
    }

    #[test]
    fn missing_figures_are_empty_cells() {
        let records = parse(&table(&sample::report(), "agents").unwrap());
        let column = |name: &str| records[0].iter().position(|h| h == name).unwrap();
        let evil = &records[1];
        assert_eq!(evil[0], sample::EVIL);
        assert_eq!(evil[column("drift")], "0.21");
        assert_eq!(evil[column("drift_last_week")], "");
        assert_eq!(evil[column("trust_2026-11-25")], "");
        assert_eq!(evil[column("trust_2026-11-29")], "0.82");
        assert_eq!(evil[column("tier_end")], "3");
        let headline = parse(&table(&sample::report(), "headline").unwrap());
        assert_eq!(headline[2][0], "humans");
        assert_eq!(headline[2][7..], ["", "0"]);
    }
}
