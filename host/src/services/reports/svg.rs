//! Inline SVG charts for the weekly report. A chart is a fixed `viewBox` that scales with the
//! page and stays legible on paper; it carries no script and no link, and every text it shows
//! goes through [`esc`], because agent ids, classes and reasons come from callers Warden does
//! not trust. A chart with nothing to draw still draws its frame and says so.

use std::fmt::Write as _;

const WIDTH: f64 = 640.0;
const LEFT: f64 = 48.0;
/// Wide enough for half of a date label centred on the last point.
const RIGHT: f64 = 32.0;
const PLOT_W: f64 = WIDTH - LEFT - RIGHT;
const TOP: f64 = 16.0;
const PLOT_H: f64 = 200.0;
/// Below the plot, the x labels.
const AXIS: f64 = 30.0;
const LEGEND_ROW: f64 = 18.0;
const LEGEND_COLS: usize = 4;
/// At most this many x labels, so that 90 days of dates do not overlap.
const MAX_X_LABELS: usize = 8;
/// Every point gets a dot up to this many points; past it the line alone reads better.
const DOTS_UP_TO: usize = 31;
/// Ten hues that stay apart for most colour-blind readers (Tableau 10). Past ten series a dash
/// pattern tells the lines apart, which also survives a black-and-white printer.
const PALETTE: [&str; 10] = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac",
];
const DASHES: [&str; 3] = ["", "6 3", "2 3"];
const MUTED: &str = "#5b6478";
const GRID: &str = "#e6e8ec";

/// Escapes text for HTML and XML, in an element or in a quoted attribute. Control characters
/// other than tab, CR and LF, which XML forbids, become U+FFFD.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if c.is_control() => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// A rate (0 to 1) as a percentage with one decimal: `12.5%`.
pub(super) fn percent(rate: f64) -> String {
    format!("{:.1}%", rate * 100.0)
}

/// A line per series over `x_labels`, with a gap wherever a value is `None`; the y axis runs
/// from 0 to `y_max` (or to a round number above the data when `y_max` is not positive).
pub fn line_chart(
    id: &str,
    title: &str,
    x_labels: &[String],
    series: &[(String, Vec<Option<f64>>)],
    y_max: f64,
) -> String {
    let n = x_labels.len();
    let all = move || {
        series
            .iter()
            .flat_map(move |(_, v)| (0..n).filter_map(move |i| point(v, i)))
    };
    if all().next().is_none() {
        return empty(id, title);
    }
    let (top, step) = if y_max.is_finite() && y_max > 0.0 {
        (y_max, y_max / 4.0)
    } else {
        Unit::Number.scale(all().fold(0.0, f64::max))
    };
    let xs: Vec<f64> = (0..n)
        .map(|i| match n {
            1 => LEFT + PLOT_W / 2.0,
            _ => LEFT + PLOT_W * i as f64 / (n - 1) as f64,
        })
        .collect();
    let mut body = String::new();
    y_axis(&mut body, top, step, Unit::Number);
    draw_x_labels(
        &mut body,
        x_labels,
        &xs,
        PLOT_W / n.max(2).saturating_sub(1) as f64,
    );
    let mut keys = Vec::with_capacity(series.len());
    for (s, (name, values)) in series.iter().enumerate() {
        let (colour, dash) = (PALETTE[s % PALETTE.len()], DASHES[(s / PALETTE.len()) % 3]);
        keys.push(Key { name, colour, dash });
        let mut path = String::new();
        let mut dots = String::new();
        for (i, &x) in xs.iter().enumerate() {
            let Some(v) = point(values, i) else { continue };
            let y = y_at(v, top);
            let joined = i > 0 && point(values, i - 1).is_some();
            let _ = write!(path, "{}{x:.1},{y:.1}", if joined { " L" } else { " M" });
            let alone = !joined && (i + 1 >= n || point(values, i + 1).is_none());
            if alone || n <= DOTS_UP_TO {
                let _ = write!(
                    dots,
                    r#"<circle cx="{x:.1}" cy="{y:.1}" r="2.5" fill="{colour}"/>"#
                );
            }
        }
        let dash = if dash.is_empty() {
            String::new()
        } else {
            format!(r#" stroke-dasharray="{dash}""#)
        };
        let _ = write!(
            body,
            "<g><title>{}</title><path d=\"{}\" fill=\"none\" stroke=\"{colour}\" \
             stroke-width=\"2\" stroke-linejoin=\"round\"{dash}/>{dots}</g>",
            esc(name),
            path.trim_start(),
        );
    }
    let legend_h = legend(&mut body, &keys, true);
    figure(id, title, TOP + PLOT_H + AXIS + legend_h, &body)
}

/// A stacked bar per x label: `stacks` are (name, colour, one count per label), bottom first.
pub fn stacked_bars(
    id: &str,
    title: &str,
    x_labels: &[String],
    stacks: &[(String, &'static str, Vec<u64>)],
) -> String {
    let n = x_labels.len();
    let totals: Vec<u64> = (0..n)
        .map(|i| stacks.iter().map(|(_, _, v)| count(v, i)).sum())
        .collect();
    let max = totals.iter().copied().max().unwrap_or(0);
    if max == 0 {
        return empty(id, title);
    }
    let (top, step) = Unit::Count.scale(max as f64);
    let band = PLOT_W / n as f64;
    let width = (band * 0.6).min(56.0);
    let centres: Vec<f64> = (0..n).map(|i| LEFT + band * (i as f64 + 0.5)).collect();
    let mut body = String::new();
    y_axis(&mut body, top, step, Unit::Count);
    draw_x_labels(&mut body, x_labels, &centres, band);
    for (i, (&centre, &total)) in centres.iter().zip(&totals).enumerate() {
        let x = centre - width / 2.0;
        let mut below = 0;
        for (name, colour, values) in stacks {
            let v = count(values, i);
            if v == 0 {
                continue;
            }
            let (y, base) = (y_at((below + v) as f64, top), y_at(below as f64, top));
            let _ = write!(
                body,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{width:.1}\" height=\"{h:.1}\" \
                 fill=\"{c}\"><title>{label} · {name}: {v}</title></rect>",
                h = base - y,
                c = esc(colour),
                label = esc(&x_labels[i]),
                name = esc(name),
            );
            below += v;
        }
        if total > 0 {
            let _ = write!(
                body,
                r#"<text x="{centre:.1}" y="{y:.1}" text-anchor="middle">{total}</text>"#,
                y = y_at(total as f64, top) - 4.0,
            );
        }
    }
    let keys: Vec<Key<'_>> = stacks
        .iter()
        .map(|(name, colour, _)| Key {
            name,
            colour,
            dash: "",
        })
        .collect();
    let legend_h = legend(&mut body, &keys, false);
    figure(id, title, TOP + PLOT_H + AXIS + legend_h, &body)
}

/// Two bars per label, `a` beside `b`: rates (0 to 1) when `as_percent`. A `None` is drawn
/// as a labelled "n/a", never as a bar of zero.
pub fn paired_bars(
    id: &str,
    title: &str,
    labels: &[String],
    a: (&str, Vec<Option<f64>>),
    b: (&str, Vec<Option<f64>>),
    as_percent: bool,
) -> String {
    let unit = if as_percent {
        Unit::Percent
    } else {
        Unit::Number
    };
    let bars = [
        Bars {
            name: a.0,
            colour: PALETTE[0],
            values: a.1,
        },
        Bars {
            name: b.0,
            colour: PALETTE[1],
            values: b.1,
        },
    ];
    grouped(id, title, labels, &bars, unit)
}

/// Counts per bucket, last week's bar beside this week's.
pub fn histogram(
    id: &str,
    title: &str,
    labels: &[String],
    this_week: &[u64],
    last_week: &[u64],
) -> String {
    let n = labels.len();
    if (0..n).all(|i| count(this_week, i) == 0 && count(last_week, i) == 0) {
        return empty(id, title);
    }
    let values =
        |v: &[u64]| -> Vec<Option<f64>> { (0..n).map(|i| Some(count(v, i) as f64)).collect() };
    let bars = [
        Bars {
            name: "last week",
            colour: PALETTE[9],
            values: values(last_week),
        },
        Bars {
            name: "this week",
            colour: PALETTE[0],
            values: values(this_week),
        },
    ];
    grouped(id, title, labels, &bars, Unit::Count)
}

/// What the numbers on an axis are.
#[derive(Debug, Clone, Copy)]
enum Unit {
    /// Rates from 0 to 1, shown as percentages.
    Percent,
    Number,
    /// Whole numbers: ticks never fall between two.
    Count,
}

impl Unit {
    /// A round top for an axis holding `max`, and the step between its ticks (about four).
    fn scale(self, max: f64) -> (f64, f64) {
        let max = if max.is_finite() && max > 0.0 {
            max
        } else {
            1.0
        };
        let raw = max / 4.0;
        let magnitude = 10f64.powf(raw.log10().floor());
        let step = magnitude
            * match raw / magnitude {
                r if r <= 1.0 => 1.0,
                r if r <= 2.0 => 2.0,
                r if r <= 5.0 => 5.0,
                _ => 10.0,
            };
        let step = match self {
            Unit::Count => step.max(1.0).round(),
            Unit::Percent | Unit::Number => step,
        };
        // The epsilon keeps 0.3 / 0.1 = 3.0000000000000004 from adding a tick.
        (((max / step) - 1e-9).ceil().max(1.0) * step, step)
    }

    fn tick(self, v: f64) -> String {
        match self {
            Unit::Percent => format!("{}%", plain(v * 100.0)),
            Unit::Number | Unit::Count => plain(v),
        }
    }

    fn value(self, v: f64) -> String {
        match self {
            Unit::Percent => percent(v),
            Unit::Number | Unit::Count => plain(v),
        }
    }
}

/// A legend entry.
struct Key<'a> {
    name: &'a str,
    colour: &'a str,
    dash: &'a str,
}

struct Bars<'a> {
    name: &'a str,
    colour: &'a str,
    values: Vec<Option<f64>>,
}

/// The value at `i`, if there is a finite one.
fn point(values: &[Option<f64>], i: usize) -> Option<f64> {
    values.get(i).copied().flatten().filter(|v| v.is_finite())
}

fn count(values: &[u64], i: usize) -> u64 {
    values.get(i).copied().unwrap_or(0)
}

fn y_at(v: f64, top: f64) -> f64 {
    TOP + PLOT_H * (1.0 - (v / top).clamp(0.0, 1.0))
}

/// Up to two decimals, without trailing zeros.
fn plain(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// At most `max` characters, the last one an ellipsis when cut.
fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

fn figure(id: &str, title: &str, height: f64, body: &str) -> String {
    let (id, title) = (esc(id), esc(title));
    let mut out = String::with_capacity(body.len() + 512);
    let _ = write!(
        out,
        "<figure class=\"chart\" id=\"{id}\"><svg role=\"img\" aria-label=\"{title}\" \
         viewBox=\"0 0 {WIDTH} {height}\" preserveAspectRatio=\"xMidYMid meet\" \
         font-family=\"system-ui, sans-serif\" font-size=\"11\" fill=\"#1d2330\">\
         <rect x=\"0.5\" y=\"0.5\" width=\"{w}\" height=\"{h}\" fill=\"#fff\" \
         stroke=\"#d0d4dc\"/>{body}</svg><figcaption>{title}</figcaption></figure>",
        w = WIDTH - 1.0,
        h = height - 1.0,
    );
    out
}

fn empty(id: &str, title: &str) -> String {
    let height = TOP + PLOT_H + AXIS;
    let body = format!(
        "<text x=\"{x}\" y=\"{y}\" text-anchor=\"middle\" font-size=\"14\" fill=\"{MUTED}\">\
         no data this week</text>",
        x = WIDTH / 2.0,
        y = height / 2.0,
    );
    figure(id, title, height, &body)
}

fn y_axis(out: &mut String, top: f64, step: f64, unit: Unit) {
    let ticks = (top / step).round().clamp(1.0, 20.0) as usize;
    for i in 0..=ticks {
        let v = step * i as f64;
        let y = y_at(v, top);
        let _ = write!(
            out,
            "<line x1=\"{LEFT}\" x2=\"{x2}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"{GRID}\"/>\
             <text x=\"{tx}\" y=\"{ty:.1}\" text-anchor=\"end\" fill=\"{MUTED}\">{label}</text>",
            x2 = WIDTH - RIGHT,
            tx = LEFT - 6.0,
            ty = y + 4.0,
            label = unit.tick(v),
        );
    }
}

/// The labels under the points at `xs`, `room` apart; every k-th when there are many.
fn draw_x_labels(out: &mut String, labels: &[String], xs: &[f64], room: f64) {
    let every = labels.len().div_ceil(MAX_X_LABELS).max(1);
    let chars = (room * every as f64 / 6.5).floor().max(3.0) as usize;
    let y = TOP + PLOT_H + 16.0;
    for (label, x) in labels.iter().zip(xs).step_by(every) {
        let _ = write!(
            out,
            r#"<text x="{x:.1}" y="{y}" text-anchor="middle" fill="{MUTED}">{}</text>"#,
            esc(&clip(label, chars)),
        );
    }
}

/// Draws the legend under the axis; returns its height.
fn legend(out: &mut String, keys: &[Key<'_>], lines: bool) -> f64 {
    let top = TOP + PLOT_H + AXIS;
    let column = PLOT_W / LEGEND_COLS as f64;
    for (i, key) in keys.iter().enumerate() {
        let x = LEFT + column * (i % LEGEND_COLS) as f64;
        let y = top + LEGEND_ROW * (i / LEGEND_COLS) as f64 + 6.0;
        let colour = esc(key.colour);
        if lines {
            let dash = if key.dash.is_empty() {
                String::new()
            } else {
                format!(r#" stroke-dasharray="{}""#, esc(key.dash))
            };
            let _ = write!(
                out,
                "<line x1=\"{x}\" x2=\"{x2}\" y1=\"{y}\" y2=\"{y}\" stroke=\"{colour}\" \
                 stroke-width=\"3\"{dash}/>",
                x2 = x + 18.0,
            );
        } else {
            let _ = write!(
                out,
                r#"<rect x="{x}" y="{y0}" width="12" height="10" fill="{colour}"/>"#,
                y0 = y - 5.0,
            );
        }
        let _ = write!(
            out,
            r#"<text x="{tx}" y="{ty}">{name}</text>"#,
            tx = x + 24.0,
            ty = y + 4.0,
            name = esc(&clip(key.name, 20)),
        );
    }
    let rows = keys.len().div_ceil(LEGEND_COLS);
    rows as f64 * LEGEND_ROW + 8.0
}

/// Two bars per label; `None` is an "n/a", not a bar.
fn grouped(id: &str, title: &str, labels: &[String], bars: &[Bars<'_>; 2], unit: Unit) -> String {
    let n = labels.len();
    let all = move || {
        bars.iter()
            .flat_map(move |b| (0..n).filter_map(move |i| point(&b.values, i)))
    };
    if all().next().is_none() {
        return empty(id, title);
    }
    let (top, step) = unit.scale(all().fold(0.0, f64::max));
    let band = PLOT_W / n as f64;
    let width = (band * 0.4).min(40.0);
    let centres: Vec<f64> = (0..n).map(|i| LEFT + band * (i as f64 + 0.5)).collect();
    let mut body = String::new();
    y_axis(&mut body, top, step, unit);
    draw_x_labels(&mut body, labels, &centres, band);
    let base = TOP + PLOT_H;
    for (i, (&centre, label)) in centres.iter().zip(labels).enumerate() {
        for (k, bar) in bars.iter().enumerate() {
            let x = centre - width + width * k as f64;
            let mid = x + width / 2.0;
            let (label, name) = (esc(label), esc(bar.name));
            let Some(v) = point(&bar.values, i) else {
                let _ = write!(
                    body,
                    "<text x=\"{mid:.1}\" y=\"{y}\" text-anchor=\"middle\" font-size=\"9\" \
                     fill=\"{MUTED}\">n/a<title>{label} · {name}: not computed</title></text>",
                    y = base - 4.0,
                );
                continue;
            };
            let y = y_at(v, top);
            let _ = write!(
                body,
                "<rect x=\"{x1:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{h:.1}\" \
                 fill=\"{c}\"><title>{label} · {name}: {text}</title></rect>",
                x1 = x + 1.0,
                w = width - 2.0,
                h = base - y,
                c = esc(bar.colour),
                text = unit.value(v),
            );
            if width >= 16.0 {
                let _ = write!(
                    body,
                    "<text x=\"{mid:.1}\" y=\"{ty:.1}\" text-anchor=\"middle\" \
                     font-size=\"9\">{t}</text>",
                    ty = y - 3.0,
                    t = unit.value(v),
                );
            }
        }
    }
    let keys: Vec<Key<'_>> = bars
        .iter()
        .map(|b| Key {
            name: b.name,
            colour: b.colour,
            dash: "",
        })
        .collect();
    let legend_h = legend(&mut body, &keys, false);
    figure(id, title, TOP + PLOT_H + AXIS + legend_h, &body)
}

/// A small report with hostile text in it, for the renderers' tests.
#[cfg(test)]
pub(crate) mod sample {
    use crate::report::{
        ActionRow, AgentRow, Anomalies, AnomalyRow, Approvals, ApproverRow, Changes, Count, DayRow,
        Figure, Headline, IsoWeek, OutcomeRow, PluginRow, QuotaRow, SCHEMA, Scope, TeamRow,
        TierChangeRow, Toward, Verdicts, ViolationRow, WaitBucket, WatchRow, WeeklyReport,
    };

    /// An agent id that must never reach a page as markup.
    pub(crate) const EVIL: &str = "<script>alert(1)</script>";

    fn c(this_week: u64, last_week: u64) -> Count {
        Count {
            this_week,
            last_week,
        }
    }

    fn f(this_week: Option<f64>, last_week: Option<f64>) -> Figure {
        Figure {
            this_week,
            last_week,
        }
    }

    /// Week 2026-W48 of team payments: two agents, one of them named [`EVIL`].
    pub(crate) fn report() -> WeeklyReport {
        let week = IsoWeek::parse("2026-W48").expect("a valid week");
        let days = week
            .days()
            .iter()
            .zip(0u64..)
            .map(|(day, i)| DayRow {
                day: day.to_string(),
                allowed: 10 + i,
                approval_required: 2,
                denied: i % 2,
            })
            .collect();
        let agent = |id: &str, trust: Vec<Option<f64>>| AgentRow {
            agent: id.into(),
            team: "payments".into(),
            tier_start: Some(2),
            tier_end: Some(3),
            decisions: c(60, 50),
            allowed: c(50, 40),
            approval_required: c(7, 8),
            denied: c(3, 2),
            production_changes: c(12, 9),
            failure_rate: f(Some(1.0 / 12.0), Some(1.0 / 9.0)),
            violations: c(2, 0),
            drift: f(Some(0.21), None),
            trust,
            score: f(Some(0.82), Some(0.7)),
        };
        WeeklyReport {
            schema: SCHEMA.into(),
            week,
            previous_week: week.previous(),
            scope: Scope::Team("payments".into()),
            time_zone: "Europe/Berlin".into(),
            from: "2026-11-22T23:00:00Z".into(),
            until: "2026-11-29T23:00:00Z".into(),
            generated_at: "2026-11-30T06:00:00Z".into(),
            activity: true,
            summary: "In 2026-W48, AI agents made 12 production changes (failure rate 8.3%) \
                      and humans made 0 (failure rate not computed)."
                .into(),
            headline: Headline {
                agents: Changes {
                    changes: c(12, 9),
                    failed: c(1, 0),
                    rolled_back: c(0, 1),
                    failure_rate: f(Some(1.0 / 12.0), Some(1.0 / 9.0)),
                },
                humans: Changes {
                    changes: c(0, 4),
                    failed: c(0, 0),
                    rolled_back: c(0, 0),
                    failure_rate: f(None, Some(0.0)),
                },
            },
            verdicts: Verdicts {
                decisions: c(100, 80),
                allowed: c(80, 60),
                approval_required: c(14, 15),
                denied: c(6, 5),
                shadow_would_deny: c(0, 0),
            },
            actions: vec![ActionRow {
                class: "deploy".into(),
                environment: "production".into(),
                actions: c(12, 9),
            }],
            days,
            approvals: Approvals {
                requested: c(14, 15),
                approved: c(10, 12),
                rejected: c(2, 1),
                expired: c(1, 2),
                pending: c(1, 0),
                median_minutes: f(Some(7.5), Some(12.0)),
                p90_minutes: f(Some(42.0), None),
                time_to_decision: vec![
                    WaitBucket {
                        label: "under 5 min".into(),
                        decided: c(5, 3),
                    },
                    WaitBucket {
                        label: "5–15 min".into(),
                        decided: c(4, 6),
                    },
                ],
                top_approvers: vec![ApproverRow {
                    human: "=1+2".into(),
                    decided: 7,
                }],
            },
            outcomes: vec![OutcomeRow {
                class: "deploy".into(),
                expected: c(12, 9),
                succeeded: c(10, 8),
                failed: c(1, 0),
                rolled_back: c(0, 1),
                unreported: c(1, 0),
                success_rate: f(Some(10.0 / 12.0), Some(8.0 / 9.0)),
                failure_rate: f(Some(1.0 / 12.0), Some(0.0)),
                rollback_rate: f(Some(0.0), Some(1.0 / 9.0)),
                unreported_rate: f(Some(1.0 / 12.0), Some(0.0)),
                human_changes: c(0, 4),
                human_failure_rate: f(None, Some(0.0)),
            }],
            violations: vec![ViolationRow {
                reason: "secret | in, \"args\"\nnext".into(),
                mode: "block".into(),
                violations: c(2, 0),
            }],
            quota_hits: vec![QuotaRow {
                quota: "deploys-per-day".into(),
                hits: c(3, 1),
            }],
            anomalies: Anomalies {
                decisions: c(2, 1),
                severe: c(1, 0),
                top: vec![AnomalyRow {
                    decision_id: "d-1".into(),
                    agent: EVIL.into(),
                    at: "2026-11-25T03:12:00Z".into(),
                    class: "deploy".into(),
                    environment: "production".into(),
                    severity: 80,
                    findings: vec!["unusual hour".into(), "<img src=x onerror=alert(1)>".into()],
                }],
            },
            agents: vec![
                agent(
                    EVIL,
                    vec![
                        Some(0.7),
                        Some(0.72),
                        None,
                        Some(0.75),
                        Some(0.8),
                        Some(0.8),
                        Some(0.82),
                    ],
                ),
                agent("deploy-bot", vec![None; 7]),
            ],
            teams: vec![TeamRow {
                team: "payments".into(),
                agents: 2,
                decisions: c(100, 80),
                production_changes: c(12, 9),
                failure_rate: f(Some(1.0 / 12.0), Some(1.0 / 9.0)),
                human_changes: c(0, 4),
                human_failure_rate: f(None, Some(0.0)),
                violations: c(2, 0),
            }],
            tier_changes: vec![TierChangeRow {
                agent: EVIL.into(),
                at: "2026-11-26T10:00:00Z".into(),
                from: 2,
                to: 3,
                reason: "promotion".into(),
                text: "met every gate *for* 30 days".into(),
            }],
            watch: vec![WatchRow {
                agent: "deploy-bot".into(),
                tier: 1,
                toward: Toward::Demotion,
                detail: "2 violations from a demotion".into(),
            }],
            plugins: vec![PluginRow {
                plugin: "secrets@1.2.0".into(),
                errors: c(3, 0),
                limit_hits: c(1, 0),
                fail_closed: c(0, 0),
            }],
        }
    }

    /// The same week with nothing in it.
    pub(crate) fn quiet() -> WeeklyReport {
        let full = report();
        WeeklyReport {
            activity: false,
            summary: "No activity in 2026-W48 for team payments: no decisions, approvals, \
                      violations or human changes were recorded."
                .into(),
            headline: Headline::default(),
            verdicts: Verdicts::default(),
            actions: vec![],
            days: full
                .days
                .iter()
                .map(|d| DayRow {
                    day: d.day.clone(),
                    allowed: 0,
                    approval_required: 0,
                    denied: 0,
                })
                .collect(),
            approvals: Approvals {
                time_to_decision: full
                    .approvals
                    .time_to_decision
                    .iter()
                    .map(|b| WaitBucket {
                        label: b.label.clone(),
                        decided: Count::default(),
                    })
                    .collect(),
                ..Approvals::default()
            },
            outcomes: vec![],
            violations: vec![],
            quota_hits: vec![],
            anomalies: Anomalies::default(),
            agents: vec![],
            teams: vec![],
            tier_changes: vec![],
            watch: vec![],
            plugins: vec![],
            ..full
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(n: usize) -> Vec<String> {
        (1..=n).map(|d| format!("2026-11-{d:02}")).collect()
    }

    #[test]
    fn escaping_covers_markup_quotes_and_controls() {
        assert_eq!(
            esc("<script>alert(\"x\")</script> & 'y'\u{7}"),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;\u{FFFD}"
        );
    }

    #[test]
    fn every_chart_is_a_captioned_figure_and_an_empty_one_says_so() {
        let charts = [
            line_chart("a", "A <b>", &labels(7), &[], 1.0),
            stacked_bars(
                "b",
                "B",
                &labels(7),
                &[("allowed".to_string(), "#59a14f", vec![0; 7])],
            ),
            paired_bars(
                "c",
                "C",
                &labels(2),
                ("x", vec![None, None]),
                ("y", vec![]),
                true,
            ),
            histogram("d", "D", &[], &[], &[]),
        ];
        for (chart, id) in charts.iter().zip(["a", "b", "c", "d"]) {
            assert!(chart.starts_with(&format!("<figure class=\"chart\" id=\"{id}\"><svg role")));
            assert!(chart.contains("no data this week"), "{chart}");
            assert!(chart.ends_with("</figcaption></figure>"));
        }
        assert!(charts[0].contains("aria-label=\"A &lt;b&gt;\""));
    }

    #[test]
    fn lines_break_at_gaps_and_cycle_the_palette_with_dashes() {
        let series: Vec<(String, Vec<Option<f64>>)> = (0..12)
            .map(|i| {
                (
                    format!("agent-{i}"),
                    vec![Some(0.5), Some(0.6), None, Some(0.7)],
                )
            })
            .collect();
        let chart = line_chart("trust", "Trust", &labels(4), &series, 1.0);
        // Each series: a run of two points, a gap, and one point on its own (a dot).
        assert_eq!(chart.matches(" L").count(), 12);
        assert_eq!(chart.matches("<path d=\"M").count(), 12);
        assert_eq!(chart.matches(" M").count(), 12);
        // Series 11 and 12 reuse the first two colours, dashed.
        assert_eq!(chart.matches("stroke-dasharray=\"6 3\"").count(), 4);
        assert!(chart.contains("<title>agent-11</title>"));
        assert!(!chart.contains("<script"));
    }

    #[test]
    fn a_missing_rate_is_labelled_not_drawn_as_zero() {
        let chart = paired_bars(
            "f",
            "Failure",
            &["deploy".into(), "<b>".into()],
            ("agents", vec![Some(0.125), None]),
            ("humans", vec![Some(0.0), Some(0.02)]),
            true,
        );
        assert!(chart.contains(">n/a<title>&lt;b&gt; · agents: not computed</title>"));
        assert!(chart.contains("12.5%"));
        assert_eq!(chart.matches("<rect x=").count(), 3 + 2 + 1);
    }

    #[test]
    fn stacks_and_histograms_scale_to_their_data() {
        let stacks = [
            ("allowed".to_string(), "#59a14f", vec![3u64, 1]),
            ("denied".to_string(), "#e15759", vec![1u64, 0]),
        ];
        let chart = stacked_bars("v", "Verdicts", &labels(2), &stacks);
        assert!(
            chart.contains("text-anchor=\"middle\">4</text>"),
            "the first day's total"
        );
        let chart = histogram("h", "Waits", &["under 5 min".into()], &[2], &[5]);
        assert!(chart.contains("<title>under 5 min · last week: 5</title>"));
        assert_eq!(Unit::Count.scale(3.0), (3.0, 1.0));
        assert_eq!(Unit::Count.scale(120.0), (150.0, 50.0));
        let (top, step) = Unit::Percent.scale(0.03);
        assert!(
            (top - 0.03).abs() < 1e-12 && (step - 0.01).abs() < 1e-12,
            "{top} {step}"
        );
    }
}
