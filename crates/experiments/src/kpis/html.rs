//! `kpis.html`: one self-contained page (inline CSS and SVG, no scripts or links) with the
//! totals, daily lines per platform and a table per platform by category.

use super::{KpiCell, KpiReport, MAX_HTML_CATEGORIES, escape, format_value, line, metric_label};
use crate::metric::Metric;
use liveprofile_events::Platform;
use std::fmt::Write as _;

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:24px;color:#212529}\
table{border-collapse:collapse;margin:8px 0 24px}th,td{padding:3px 8px;border-bottom:1px solid #dee2e6;\
text-align:right;white-space:nowrap}th:first-child,td:first-child{text-align:left}th{background:#f1f3f5}\
.note{color:#6c757d;font-size:90%}svg{margin:8px 0 16px}svg text{font-size:11px;fill:#495057}";

/// Line colour of each platform, in [`Platform::ALL`] order.
const COLORS: [&str; 5] = ["#e8590c", "#1c7ed6", "#2f9e44", "#c2255c", "#7048e8"];
/// Line colour of all platforms together.
const ALL_COLOR: &str = "#495057";

/// Metrics drawn as daily lines.
const CHARTS: [Metric; 3] = [Metric::OrdersPerVisit, Metric::GmvPerUser, Metric::WatchMinutesPerVisit];

pub(super) fn render(r: &KpiReport) -> String {
    let mut out = String::with_capacity(64 * 1024);
    line(&mut out, format_args!("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"));
    line(&mut out, format_args!("<title>KPI report</title><style>{STYLE}</style></head><body>"));
    line(&mut out, format_args!("<h1>KPI report</h1>"));
    let source = r.events_path.as_deref().map_or_else(String::new, |p| format!(" from <code>{}</code>", escape(p)));
    let span = match (r.days.first(), r.days.last()) {
        (Some(a), Some(b)) => format!(", China days {a} to {b} ({} days)", r.days.len()),
        _ => String::new(),
    };
    line(&mut out, format_args!("<p>{} events of {} users{source}{span}.", r.events, r.users));
    if r.rejected_rows > 0 {
        line(&mut out, format_args!(" <strong>{} rows refused</strong> by the event contract:", r.rejected_rows));
    }
    line(&mut out, format_args!("</p>"));
    if !r.rejected.is_empty() {
        line(&mut out, format_args!("<ul class=\"note\">"));
        for x in r.rejected.iter().take(10) {
            let id = x.event_id.as_deref().map_or_else(String::new, |id| format!(" ({})", escape(id)));
            line(&mut out, format_args!("<li>row {}{id}: {}</li>", x.row, escape(&x.error)));
        }
        line(&mut out, format_args!("</ul>"));
    }
    line(
        &mut out,
        format_args!(
            "<p class=\"note\">Per-visit metrics pool the users of a cell (sum over users / visits); per-user \
             metrics are means over the users active in the cell. Days are China days (UTC+8). A dash: no \
             value (no visits, or the cross-platform rate of one platform).</p>"
        ),
    );

    line(&mut out, format_args!("<h2>Totals</h2>"));
    let mut rows: Vec<(String, &KpiCell)> = vec![("All".to_owned(), &r.total)];
    rows.extend(r.by_platform.iter().map(|c| (c.platform.clone().unwrap_or_default(), c)));
    rows.extend(busiest(&r.by_category).into_iter().map(|c| (c.category.clone().unwrap_or_default(), c)));
    table(&mut out, "", &rows);
    if r.by_category.len() > MAX_HTML_CATEGORIES {
        note_truncated(&mut out, r.by_category.len());
    }

    if !r.days.is_empty() {
        line(&mut out, format_args!("<h2>Daily, per platform</h2>"));
        for m in CHARTS {
            let mut series: Vec<Series<'_>> = Vec::new();
            for p in Platform::ALL {
                let cells: Vec<&KpiCell> =
                    r.by_platform_day.iter().filter(|c| c.platform.as_deref() == Some(p.as_str())).collect();
                if cells.is_empty() {
                    continue;
                }
                series.push(Series {
                    name: p.as_str(),
                    color: COLORS[p.index()],
                    dashed: false,
                    values: daily(&r.days, &cells, m),
                });
            }
            let all: Vec<&KpiCell> = r.by_day.iter().collect();
            series.push(Series { name: "all", color: ALL_COLOR, dashed: true, values: daily(&r.days, &all, m) });
            line_chart(&mut out, m, &r.days, &series);
        }
    }

    line(&mut out, format_args!("<h2>Per platform and category</h2>"));
    for p in &r.by_platform {
        let name = p.platform.clone().unwrap_or_default();
        let cells: Vec<KpiCell> = r.by_platform_category.iter().filter(|c| c.platform == p.platform).cloned().collect();
        let mut rows: Vec<(String, &KpiCell)> = vec![("All categories".to_owned(), p)];
        rows.extend(busiest(&cells).into_iter().map(|c| (c.category.clone().unwrap_or_default(), c)));
        table(&mut out, &name, &rows);
        if cells.len() > MAX_HTML_CATEGORIES {
            note_truncated(&mut out, cells.len());
        }
    }

    if !r.by_day.is_empty() {
        line(&mut out, format_args!("<h2>Per day, all platforms</h2>"));
        let rows: Vec<(String, &KpiCell)> = r.by_day.iter().map(|c| (c.day.clone().unwrap_or_default(), c)).collect();
        table(&mut out, "", &rows);
    }
    line(&mut out, format_args!("</body></html>"));
    out
}

/// The [`MAX_HTML_CATEGORIES`] cells with the most events, in their original order.
fn busiest(cells: &[KpiCell]) -> Vec<&KpiCell> {
    if cells.len() <= MAX_HTML_CATEGORIES {
        return cells.iter().collect();
    }
    let mut order: Vec<usize> = (0..cells.len()).collect();
    order.sort_by(|&a, &b| cells[b].events.cmp(&cells[a].events).then(a.cmp(&b)));
    order.truncate(MAX_HTML_CATEGORIES);
    order.sort_unstable();
    order.into_iter().map(|i| &cells[i]).collect()
}

fn note_truncated(out: &mut String, n: usize) {
    line(
        out,
        format_args!(
            "<p class=\"note\">The {MAX_HTML_CATEGORIES} busiest of {n} categories; kpis.json has every one.</p>"
        ),
    );
}

fn table(out: &mut String, caption: &str, rows: &[(String, &KpiCell)]) {
    line(out, format_args!("<table>"));
    if !caption.is_empty() {
        line(out, format_args!("<caption style=\"text-align:left;font-weight:bold\">{}</caption>", escape(caption)));
    }
    let mut head = String::from("<tr><th></th><th>users</th><th>visits</th><th>orders</th><th>GMV (yuan)</th>");
    for m in Metric::ALL {
        let _ = write!(head, "<th title=\"{}\">{}</th>", m.name(), escape(metric_label(m)));
    }
    line(out, format_args!("{head}</tr>"));
    for (label, c) in rows {
        let mut row = format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.2}</td>",
            escape(label),
            c.users,
            c.visits,
            c.orders,
            c.gmv
        );
        for m in Metric::ALL {
            let _ = write!(row, "<td>{}</td>", format_value(m, c.value(m)));
        }
        line(out, format_args!("{row}</tr>"));
    }
    line(out, format_args!("</table>"));
}

/// One line of a chart.
struct Series<'a> {
    name: &'a str,
    color: &'a str,
    dashed: bool,
    values: Vec<Option<f64>>,
}

/// A metric's value on each day of `days` from cells that carry a day.
fn daily(days: &[String], cells: &[&KpiCell], m: Metric) -> Vec<Option<f64>> {
    days.iter().map(|d| cells.iter().find(|c| c.day.as_deref() == Some(d)).and_then(|c| c.value(m))).collect()
}

/// A round step of about `range / 5`.
fn nice_step(range: f64) -> f64 {
    let raw = range / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    mag * if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    }
}

fn line_chart(out: &mut String, m: Metric, days: &[String], series: &[Series<'_>]) {
    const W: f64 = 760.0;
    const H: f64 = 300.0;
    const LEFT: f64 = 70.0;
    const RIGHT: f64 = 140.0;
    const TOP: f64 = 30.0;
    const BOTTOM: f64 = 50.0;
    let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
    let max = series.iter().flat_map(|s| s.values.iter().flatten()).fold(0.0f64, |a, &b| a.max(b));
    let step = if max > 0.0 && max.is_finite() { nice_step(max * 1.05) } else { 0.2 };
    let ticks = ((max * 1.05) / step).ceil().max(1.0) as usize;
    let top = step * ticks as f64;
    let n = days.len();
    let x = |i: usize| if n <= 1 { LEFT + pw / 2.0 } else { LEFT + pw * i as f64 / (n - 1) as f64 };
    let y = |v: f64| TOP + ph * (1.0 - v / top);
    line(
        out,
        format_args!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" \
             role=\"img\" aria-label=\"{0} per day\"><text x=\"{LEFT}\" y=\"18\" style=\"font-size:14px;\
             font-weight:bold\">{0} per day</text>",
            escape(metric_label(m))
        ),
    );
    for t in 0..=ticks {
        let v = step * t as f64;
        let yy = y(v);
        line(
            out,
            format_args!(
                "<line x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{yy:.1}\" y2=\"{yy:.1}\" stroke=\"#e9ecef\"/>\
                 <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
                LEFT + pw,
                LEFT - 6.0,
                yy + 4.0,
                escape(&format_value(m, Some(v)))
            ),
        );
    }
    let every = n.div_ceil(10).max(1);
    for (i, d) in days.iter().enumerate() {
        if i % every == 0 || i + 1 == n {
            line(
                out,
                format_args!(
                    "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
                    x(i),
                    TOP + ph + 18.0,
                    escape(d.get(5..).unwrap_or(d))
                ),
            );
        }
    }
    for (k, s) in series.iter().enumerate() {
        let dash = if s.dashed { " stroke-dasharray=\"5 4\"" } else { "" };
        let mut path = String::new();
        let mut pen_down = false;
        for (i, v) in s.values.iter().enumerate() {
            match v {
                Some(v) => {
                    let _ = write!(path, "{}{:.1} {:.1} ", if pen_down { "L" } else { "M" }, x(i), y(*v));
                    pen_down = true;
                }
                None => pen_down = false,
            }
        }
        if !path.is_empty() {
            line(
                out,
                format_args!(
                    "<path d=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\"{dash}/>",
                    path.trim_end(),
                    s.color
                ),
            );
        }
        for (i, v) in s.values.iter().enumerate() {
            if let Some(v) = v {
                line(
                    out,
                    format_args!(
                        "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2.5\" fill=\"{}\"><title>{} {}: {}</title></circle>",
                        x(i),
                        y(*v),
                        s.color,
                        escape(s.name),
                        escape(&days[i]),
                        escape(&format_value(m, Some(*v)))
                    ),
                );
            }
        }
        let ly = TOP + 14.0 + 18.0 * k as f64;
        line(
            out,
            format_args!(
                "<line x1=\"{0:.1}\" x2=\"{1:.1}\" y1=\"{ly:.1}\" y2=\"{ly:.1}\" stroke=\"{2}\" \
                 stroke-width=\"2\"{dash}/><text x=\"{3:.1}\" y=\"{4:.1}\">{5}</text>",
                LEFT + pw + 12.0,
                LEFT + pw + 32.0,
                s.color,
                LEFT + pw + 38.0,
                ly + 4.0,
                escape(s.name)
            ),
        );
    }
    line(out, format_args!("</svg>"));
}
