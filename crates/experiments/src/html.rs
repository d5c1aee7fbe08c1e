//! The self-contained HTML page of a [`Report`]: the decision, SRM, arms, every metric's
//! lift with its interval (inline SVG, no scripts, no external files), users per arm
//! against the shares' expectation, and the primary metric by platform and category.

use crate::report::{Estimate, GuardrailStatus, Report, Segment, Verdict};
use std::fmt::Write;

/// Escapes text for HTML.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn num(x: Option<f64>) -> String {
    x.map_or_else(
        || "n/a".to_owned(),
        |v| if v != 0.0 && v.abs() < 1e-3 { format!("{v:.3e}") } else { format!("{v:.4}") },
    )
}

fn pct(x: Option<f64>) -> String {
    x.map_or_else(|| "n/a".to_owned(), |v| format!("{:+.2}%", 100.0 * v))
}

fn pval(x: Option<f64>) -> String {
    x.map_or_else(|| "n/a".to_owned(), p_text)
}

/// A p-value in three significant digits.
pub(crate) fn p_text(p: f64) -> String {
    if p == 0.0 || p >= 1e-3 { format!("{p:.3}") } else { format!("{p:.2e}") }
}

/// One row of a lift chart.
struct LiftRow {
    label: String,
    lift: Option<f64>,
    low: Option<f64>,
    high: Option<f64>,
    significant: bool,
}

impl LiftRow {
    fn of(label: String, e: &Estimate, alpha: f64) -> LiftRow {
        LiftRow {
            label,
            lift: e.lift,
            low: e.ci_low,
            high: e.ci_high,
            significant: e.p_value.is_some_and(|p| p < alpha),
        }
    }
}

/// A horizontal chart of relative lifts with interval whiskers and the zero line.
fn lift_chart(rows: &[LiftRow]) -> String {
    let (label_w, plot_w, row_h, top) = (260.0, 460.0, 22.0, 24.0);
    let values = rows.iter().flat_map(|r| [r.lift, r.low, r.high]).flatten();
    let (mut lo, mut hi) = values.fold((0.0f64, 0.0f64), |(a, b), v| (a.min(v), b.max(v)));
    if hi - lo < 1e-9 {
        lo -= 0.01;
        hi += 0.01;
    }
    let pad = 0.05 * (hi - lo);
    let (lo, hi) = (lo - pad, hi + pad);
    let x = |v: f64| label_w + (v - lo) / (hi - lo) * plot_w;
    let height = top + row_h * rows.len() as f64 + 10.0;
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{height}" role="img" font-size="12" font-family="sans-serif">"#,
        w = label_w + plot_w + 20.0
    );
    let zero = x(0.0);
    let _ = write!(
        s,
        r##"<line x1="{zero}" y1="{t}" x2="{zero}" y2="{b}" stroke="#888" stroke-dasharray="3,3"/>"##,
        t = top - 6.0,
        b = height - 6.0
    );
    let _ = write!(
        s,
        r##"<text x="{x0}" y="14" fill="#555">{l}</text><text x="{x1}" y="14" text-anchor="end" fill="#555">{h}</text><text x="{zero}" y="14" text-anchor="middle" fill="#555">0</text>"##,
        x0 = label_w,
        x1 = label_w + plot_w,
        l = pct(Some(lo)),
        h = pct(Some(hi))
    );
    for (i, r) in rows.iter().enumerate() {
        let y = top + row_h * i as f64 + row_h / 2.0;
        let _ = write!(s, r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#, label_w - 8.0, y + 4.0, esc(&r.label));
        let color = if !r.significant {
            "#777"
        } else if r.lift.is_some_and(|l| l > 0.0) {
            "#1a7f37"
        } else {
            "#cf222e"
        };
        if let (Some(a), Some(b)) = (r.low, r.high) {
            let _ =
                write!(s, r#"<line x1="{}" y1="{y}" x2="{}" y2="{y}" stroke="{color}" stroke-width="2"/>"#, x(a), x(b));
            for v in [a, b] {
                let _ = write!(
                    s,
                    r#"<line x1="{0}" y1="{1}" x2="{0}" y2="{2}" stroke="{color}" stroke-width="2"/>"#,
                    x(v),
                    y - 5.0,
                    y + 5.0
                );
            }
        }
        match r.lift {
            Some(l) => {
                let _ = write!(
                    s,
                    r#"<circle cx="{}" cy="{y}" r="4" fill="{color}"><title>{} {} [{}, {}]</title></circle>"#,
                    x(l),
                    esc(&r.label),
                    pct(r.lift),
                    pct(r.low),
                    pct(r.high)
                );
            }
            None => {
                let _ = write!(s, r##"<text x="{}" y="{}" fill="#999">not computable</text>"##, label_w + 4.0, y + 4.0);
            }
        }
    }
    s.push_str("</svg>");
    s
}

/// Bars of users per arm with the expected count marked.
fn users_chart(report: &Report) -> String {
    let (label_w, plot_w, row_h, top) = (160.0, 460.0, 26.0, 10.0);
    let max = report.arms.iter().map(|a| (a.users as f64).max(a.expected_users)).fold(1.0f64, f64::max);
    let x = |v: f64| label_w + v / max * plot_w;
    let height = top + row_h * report.arms.len() as f64 + 10.0;
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{height}" role="img" font-size="12" font-family="sans-serif">"#,
        label_w + plot_w + 220.0
    );
    for (i, a) in report.arms.iter().enumerate() {
        let y = top + row_h * i as f64;
        let _ = write!(s, r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#, label_w - 8.0, y + 16.0, esc(&a.name));
        let _ = write!(
            s,
            r##"<rect x="{label_w}" y="{}" width="{}" height="16" fill="#4c78a8"/>"##,
            y + 4.0,
            x(a.users as f64) - label_w
        );
        let ex = x(a.expected_users);
        let _ = write!(
            s,
            r##"<line x1="{ex}" y1="{}" x2="{ex}" y2="{}" stroke="#e45756" stroke-width="2"><title>expected {:.0}</title></line>"##,
            y + 1.0,
            y + 23.0,
            a.expected_users
        );
        let _ = write!(
            s,
            r#"<text x="{}" y="{}">{} (expected {:.0})</text>"#,
            x(a.users as f64).max(ex) + 6.0,
            y + 16.0,
            a.users,
            a.expected_users
        );
    }
    s.push_str("</svg>");
    s
}

fn segment_section(title: &str, segments: &[Segment], alpha: f64, out: &mut String) {
    let _ = write!(out, "<h3>By {}</h3>", esc(title));
    if segments.is_empty() {
        out.push_str("<p>No users.</p>");
        return;
    }
    let rows: Vec<LiftRow> = segments
        .iter()
        .flat_map(|s| {
            s.comparisons.iter().map(move |c| LiftRow::of(format!("{} · {}", s.value, c.arm), &c.estimate, alpha))
        })
        .collect();
    out.push_str(&lift_chart(&rows));
    out.push_str("<table><tr><th>segment</th><th>arm</th><th>users</th><th>value</th><th>lift</th><th>95% interval</th><th>p</th></tr>");
    for s in segments {
        for a in &s.arms {
            let c = s.comparisons.iter().find(|c| c.arm == a.arm);
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&s.value),
                esc(&a.arm),
                a.users,
                num(a.mean),
                c.map_or_else(|| "control".to_owned(), |c| pct(c.estimate.lift)),
                c.map_or_else(String::new, |c| format!("[{}, {}]", pct(c.estimate.ci_low), pct(c.estimate.ci_high))),
                c.map_or_else(String::new, |c| pval(c.estimate.p_value)),
            );
        }
    }
    out.push_str("</table>");
}

/// The page.
pub fn page(report: &Report) -> String {
    let mut out = String::new();
    let title = format!("Experiment {}", report.experiment);
    let _ = write!(
        out,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>\
         body{{font-family:sans-serif;margin:2em;max-width:1100px;color:#222}}\
         table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}\
         th{{background:#f3f3f3}}td:first-child,th:first-child{{text-align:left}}\
         .verdict{{font-size:1.3em;padding:.6em 1em;border-radius:6px}}\
         .ship{{background:#dafbe1}}.stop{{background:#ffebe9}}.keep_running{{background:#fff8c5}}.invalid{{background:#ffd8b5}}\
         .note{{color:#555;font-size:.9em}}</style></head><body><h1>{}</h1>",
        esc(&title),
        esc(&title)
    );
    let class = match report.decision.verdict {
        Verdict::Ship => "ship",
        Verdict::Stop => "stop",
        Verdict::KeepRunning => "keep_running",
        Verdict::Invalid => "invalid",
    };
    let _ = write!(
        out,
        "<p class=\"verdict {class}\"><b>{}</b>: {}</p>",
        esc(report.decision.verdict.as_str()),
        esc(&report.decision.reason)
    );
    let _ = write!(
        out,
        "<p class=\"note\">{} exposed users; primary metric {}; alpha {}; the decision reads the {} test of the unadjusted estimate{}.</p>",
        report.users,
        esc(report.primary.name()),
        report.alpha,
        match report.decision_rule {
            crate::report::DecisionRule::FixedHorizon => "fixed-horizon",
            crate::report::DecisionRule::Sequential => "sequential (always-valid)",
        },
        if report.ignored_rows > 0 {
            format!("; {} rows with an unknown arm were left out", report.ignored_rows)
        } else {
            String::new()
        }
    );

    out.push_str("<h2>Sample-ratio mismatch</h2>");
    let _ = write!(
        out,
        "<p>Chi-square {} on {} df, p = {} {}</p>",
        num(report.srm.chi_square),
        report.srm.df,
        pval(report.srm.p_value),
        if report.srm.flag {
            format!("<b>below {}: flagged, do not read the result</b>", report.srm_alpha)
        } else {
            report.srm.reason.as_deref().map_or_else(|| "(not flagged)".to_owned(), |r| format!("({})", esc(r)))
        }
    );
    out.push_str(&users_chart(report));

    out.push_str("<h2>Arms</h2><table><tr><th>arm</th><th>share</th><th>users</th>");
    let metric_names: Vec<_> = report.arms.first().map(|a| a.means.keys().copied().collect()).unwrap_or_default();
    for m in &metric_names {
        let _ = write!(out, "<th>{}</th>", esc(m.name()));
    }
    out.push_str("</tr>");
    for a in &report.arms {
        let _ = write!(out, "<tr><td>{}</td><td>{}%</td><td>{}</td>", esc(&a.name), a.share, a.users);
        for m in &metric_names {
            let _ = write!(out, "<td>{}</td>", num(a.means.get(m).copied().flatten()));
        }
        out.push_str("</tr>");
    }
    out.push_str("</table>");

    out.push_str("<h2>Lift over control</h2><p class=\"note\">Relative lift with its 95% interval (delta method); green and red: significant.</p>");
    let rows: Vec<LiftRow> = report
        .metrics
        .iter()
        .map(|m| LiftRow::of(format!("{} · {}", m.metric, m.arm), &m.estimate, report.alpha))
        .collect();
    out.push_str(&lift_chart(&rows));
    out.push_str(
        "<table><tr><th>metric</th><th>role</th><th>arm</th><th>value</th><th>control</th><th>lift</th><th>95% interval</th>\
         <th>p</th><th>CUPED lift</th><th>CUPED interval</th><th>CUPED p</th><th>variance reduction</th>\
         <th>sequential p</th><th>sequential interval (difference)</th><th>users per arm needed</th><th>note</th></tr>",
    );
    for m in &report.metrics {
        let role = format!("{:?}", m.role).to_lowercase();
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>[{}, {}]</td><td>{}</td>\
             <td>{}</td><td>[{}, {}]</td><td>{}</td><td>{}</td><td>{}</td><td>[{}, {}]</td><td>{}</td><td>{}</td></tr>",
            esc(m.metric.name()),
            role,
            esc(&m.arm),
            num(m.estimate.mean),
            num(m.estimate.control_mean),
            pct(m.estimate.lift),
            pct(m.estimate.ci_low),
            pct(m.estimate.ci_high),
            pval(m.estimate.p_value),
            pct(m.cuped.estimate.lift),
            pct(m.cuped.estimate.ci_low),
            pct(m.cuped.estimate.ci_high),
            pval(m.cuped.estimate.p_value),
            m.cuped.variance_reduction.map_or_else(|| "n/a".to_owned(), |v| format!("{:.1}%", 100.0 * v)),
            pval(m.sequential.p_value),
            num(m.sequential.ci_low),
            num(m.sequential.ci_high),
            m.power.required_users_per_arm.map_or_else(|| "n/a".to_owned(), |n| n.to_string()),
            esc(m.estimate.reason.as_deref().unwrap_or("")),
        );
        if let Some(w) = &m.winsorized {
            let _ = write!(
                out,
                "<tr><td colspan=\"3\">{} winsorised at the pooled {} quantile ({}); the raw figure decides</td>\
                 <td>{}</td><td>{}</td><td>{}</td><td>[{}, {}]</td><td>{}</td><td colspan=\"8\"></td></tr>",
                esc(m.metric.name()),
                w.quantile,
                num(w.cap),
                num(w.estimate.mean),
                num(w.estimate.control_mean),
                pct(w.estimate.lift),
                pct(w.estimate.ci_low),
                pct(w.estimate.ci_high),
                pval(w.estimate.p_value),
            );
        }
    }
    out.push_str("</table>");

    out.push_str("<h2>Guardrails</h2>");
    if report.guardrails.is_empty() {
        out.push_str("<p>None configured.</p>");
    } else {
        out.push_str("<table><tr><th>metric</th><th>arm</th><th>lift</th><th>p</th><th>status</th></tr>");
        for g in &report.guardrails {
            let status = match g.status {
                GuardrailStatus::Pass => "pass",
                GuardrailStatus::Fail => "<b>fail</b>",
                GuardrailStatus::NotComputable => "not computable",
            };
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{status}</td></tr>",
                esc(g.metric.name()),
                esc(&g.arm),
                pct(g.lift),
                pval(g.p_value)
            );
        }
        out.push_str("</table>");
    }

    let _ = write!(out, "<h2>{} by segment</h2>", esc(report.primary.name()));
    segment_section("platform of the first exposure", &report.breakdown.platform, report.alpha, &mut out);
    segment_section("category of the first exposure", &report.breakdown.category, report.alpha, &mut out);

    out.push_str("<h2>Decision per arm</h2><table><tr><th>arm</th><th>verdict</th><th>why</th></tr>");
    for a in &report.decision.arms {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&a.arm),
            esc(a.verdict.as_str()),
            esc(&a.reason)
        );
    }
    out.push_str("</table></body></html>\n");
    out
}
