//! The report page: one self-contained HTML file with inline SVG charts (no scripts, no
//! external files): a lift heatmap of tag pairs, prevalence bars with their intervals per
//! platform, the segment scatter on the PCA plane, and segment profiles.

use crate::Report;
use std::fmt::Write;

const PALETTE: &[&str] = &["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Red for lift above 1, blue below, white at 1 (log2 scale, saturating at 4x).
fn lift_colour(lift: f64) -> String {
    if !lift.is_finite() || lift <= 0.0 {
        return "#eeeeee".into();
    }
    let x = (lift.log2() / 2.0).clamp(-1.0, 1.0);
    let (r, g, b) = if x >= 0.0 {
        (255.0, 255.0 * (1.0 - x), 255.0 * (1.0 - x))
    } else {
        (255.0 * (1.0 + x), 255.0 * (1.0 + x), 255.0)
    };
    format!("rgb({:.0},{:.0},{:.0})", r, g, b)
}

fn heatmap(report: &Report) -> String {
    let t = report.tags.len();
    let cell = 34.0;
    let margin = 150.0;
    let size = margin + cell * t as f64 + 10.0;
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{size:.0}" height="{size:.0}" role="img" aria-label="lift heatmap">"#
    );
    for (i, tag) in report.tags.iter().enumerate() {
        let y = margin + cell * i as f64 + cell * 0.65;
        let _ = write!(
            svg,
            r#"<text x="{:.0}" y="{y:.0}" text-anchor="end" font-size="11">{}</text>"#,
            margin - 6.0,
            esc(tag)
        );
        let x = margin + cell * i as f64 + cell * 0.6;
        let _ = write!(
            svg,
            r#"<text transform="translate({x:.0},{:.0}) rotate(-60)" font-size="11">{}</text>"#,
            margin - 6.0,
            esc(tag)
        );
    }
    for p in &report.pairs {
        let (Some(i), Some(j)) =
            (report.tags.iter().position(|x| *x == p.a), report.tags.iter().position(|x| *x == p.b))
        else {
            continue;
        };
        for (r, c) in [(i, j), (j, i)] {
            let (x, y) = (margin + cell * c as f64, margin + cell * r as f64);
            // Pairs under the reporting bar are faded: a large lift on a handful of users
            // must not look like a finding.
            let stroke = if p.reported {
                r##"stroke="#222" stroke-width="2""##
            } else {
                r##"stroke="#ccc" fill-opacity="0.25""##
            };
            let _ = write!(
                svg,
                r#"<rect x="{x:.0}" y="{y:.0}" width="{cell:.0}" height="{cell:.0}" fill="{}" {stroke}><title>{} + {}: lift {:.2}, phi {:.3}, {} users, p {:.2e}</title></rect>"#,
                lift_colour(p.lift),
                esc(&p.a),
                esc(&p.b),
                p.lift,
                p.phi,
                p.both,
                p.p_value
            );
            let _ = write!(
                svg,
                r#"<text x="{:.0}" y="{:.0}" text-anchor="middle" font-size="9">{:.1}</text>"#,
                x + cell / 2.0,
                y + cell * 0.6,
                p.lift
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

fn prevalence_bars(report: &Report) -> String {
    let mut platforms: Vec<&str> = report.prevalence.iter().map(|p| p.platform.as_str()).collect();
    platforms.sort_unstable();
    platforms.dedup();
    let bar = 12.0;
    let group = bar * platforms.len() as f64 + 10.0;
    let (left, width) = (170.0, 420.0);
    let height = 30.0 + group * report.tags.len() as f64;
    let max_share = report.prevalence.iter().map(|p| p.ci_high).fold(0.0, f64::max).max(1e-6);
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{:.0}" height="{height:.0}" role="img" aria-label="prevalence bars">"#,
        left + width + 150.0
    );
    for (k, platform) in platforms.iter().enumerate() {
        let _ = write!(
            svg,
            r#"<rect x="{:.0}" y="{:.0}" width="10" height="10" fill="{}"/><text x="{:.0}" y="{:.0}" font-size="11">{}</text>"#,
            left + width + 20.0,
            20.0 + 16.0 * k as f64,
            PALETTE[k % PALETTE.len()],
            left + width + 34.0,
            29.0 + 16.0 * k as f64,
            esc(platform)
        );
    }
    for (i, tag) in report.tags.iter().enumerate() {
        let y0 = 20.0 + group * i as f64;
        let _ = write!(
            svg,
            r#"<text x="{:.0}" y="{:.0}" text-anchor="end" font-size="11">{}</text>"#,
            left - 6.0,
            y0 + group / 2.0,
            esc(tag)
        );
        for (k, platform) in platforms.iter().enumerate() {
            let Some(p) = report.prevalence.iter().find(|p| p.tag == *tag && p.platform == *platform) else { continue };
            let y = y0 + bar * k as f64;
            let scale = |v: f64| left + width * v / max_share;
            let _ = write!(
                svg,
                r#"<rect x="{left:.0}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{} on {}: {:.2}% (95% {:.2}-{:.2}%), {} of {} users</title></rect>"#,
                scale(p.share) - left,
                bar - 2.0,
                PALETTE[k % PALETTE.len()],
                esc(tag),
                esc(platform),
                100.0 * p.share,
                100.0 * p.ci_low,
                100.0 * p.ci_high,
                p.carriers,
                p.users
            );
            let _ = write!(
                svg,
                r##"<line x1="{:.1}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="#000"/>"##,
                scale(p.ci_low),
                scale(p.ci_high),
                y + bar / 2.0 - 1.0,
                y + bar / 2.0 - 1.0
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

fn scatter(report: &Report) -> String {
    let (projection, assignments) = (&report.segmentation.projection, &report.segmentation.assignments);
    let (w, h, pad) = (560.0, 420.0, 40.0);
    let n = projection.len();
    let step = n.div_ceil(3000).max(1);
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for p in projection.iter().step_by(step) {
        x0 = x0.min(p[0]);
        x1 = x1.max(p[0]);
        y0 = y0.min(p[1]);
        y1 = y1.max(p[1]);
    }
    let sx = |x: f64| pad + (w - 2.0 * pad) * (x - x0) / (x1 - x0).max(1e-12);
    let sy = |y: f64| h - pad - (h - 2.0 * pad) * (y - y0) / (y1 - y0).max(1e-12);
    let mut svg = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w:.0}" height="{h:.0}" role="img" aria-label="segment scatter"><rect x="0" y="0" width="{w:.0}" height="{h:.0}" fill="#fafafa"/>"##
    );
    for (i, p) in projection.iter().enumerate().step_by(step) {
        let _ = write!(
            svg,
            r#"<circle cx="{:.1}" cy="{:.1}" r="2" fill="{}" fill-opacity="0.5"/>"#,
            sx(p[0]),
            sy(p[1]),
            PALETTE[assignments[i] % PALETTE.len()]
        );
    }
    let s = &report.segmentation;
    for seg in &s.segments {
        let _ = write!(
            svg,
            r##"<circle cx="{:.1}" cy="{:.1}" r="7" fill="{}" stroke="#000" stroke-width="2"/><text x="{:.1}" y="{:.1}" font-size="12" font-weight="bold">segment {}</text>"##,
            sx(seg.centroid_2d[0]),
            sy(seg.centroid_2d[1]),
            PALETTE[seg.id % PALETTE.len()],
            sx(seg.centroid_2d[0]) + 9.0,
            sy(seg.centroid_2d[1]) - 9.0,
            seg.id
        );
    }
    let _ = write!(
        svg,
        r#"<text x="{:.0}" y="{:.0}" text-anchor="middle" font-size="11">first principal axis ({:.0}% of the variance)</text><text transform="translate(12,{:.0}) rotate(-90)" text-anchor="middle" font-size="11">second axis ({:.0}%)</text></svg>"#,
        w / 2.0,
        h - 10.0,
        100.0 * s.pca_explained[0],
        h / 2.0,
        100.0 * s.pca_explained[1]
    );
    svg
}

fn profiles(report: &Report) -> String {
    let mut html = String::new();
    for seg in &report.segmentation.segments {
        let _ = write!(
            html,
            r#"<div class="segment"><h3><span class="swatch" style="background:{}"></span>Segment {}: {} users ({:.1}%)</h3>"#,
            PALETTE[seg.id % PALETTE.len()],
            seg.id,
            seg.size,
            100.0 * seg.share
        );
        let mut svg = String::from(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="420" height="110" role="img" aria-label="segment profile">"#,
        );
        let max_lift = seg.tags.iter().take(5).map(|t| t.lift).fold(1.0, f64::max);
        for (k, tag) in seg.tags.iter().take(5).enumerate() {
            let y = 4.0 + 21.0 * k as f64;
            let _ = write!(
                svg,
                r#"<text x="150" y="{:.0}" text-anchor="end" font-size="11">{}</text><rect x="156" y="{y:.0}" width="{:.1}" height="16" fill="{}"/><text x="{:.1}" y="{:.0}" font-size="10">{:.1}x ({:.1}%)</text>"#,
                y + 12.0,
                esc(&tag.tag),
                200.0 * tag.lift / max_lift,
                PALETTE[seg.id % PALETTE.len()],
                160.0 + 200.0 * tag.lift / max_lift,
                y + 12.0,
                tag.lift,
                100.0 * tag.mean
            );
        }
        svg.push_str("</svg>");
        html.push_str(&svg);
        let mut facts = Vec::new();
        if !seg.platforms.is_empty() {
            let mix: Vec<String> = seg.platforms.iter().map(|(p, s)| format!("{} {:.0}%", esc(p), 100.0 * s)).collect();
            facts.push(format!("platforms: {}", mix.join(", ")));
        }
        if let Some(c) = seg.mean_conversion {
            facts.push(format!("mean conversion score {:.3}", c));
        }
        if !facts.is_empty() {
            let _ = write!(html, "<p>{}</p>", facts.join("; "));
        }
        html.push_str("</div>");
    }
    html
}

/// The page.
pub fn page(report: &Report) -> String {
    let s = &report.segmentation;
    let reported: Vec<String> = report
        .pairs
        .iter()
        .filter(|p| p.reported)
        .take(5)
        .map(|p| {
            format!(
                "<li><b>{}</b> with <b>{}</b>: {:.1}x as often as by chance ({} users)</li>",
                esc(&p.a),
                esc(&p.b),
                p.lift,
                p.both
            )
        })
        .collect();
    let k_scores: Vec<String> = s.scores.iter().map(|x| format!("k={}: {:.3}", x.k, x.silhouette)).collect();
    format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Cross-tag analysis</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; max-width: 1100px; }}
h2 {{ border-bottom: 1px solid #ccc; padding-bottom: 4px; margin-top: 2em; }}
.segment {{ display: inline-block; vertical-align: top; margin: 0 2em 1em 0; }}
.swatch {{ display: inline-block; width: 12px; height: 12px; margin-right: 6px; }}
p.note {{ color: #555; font-size: 0.9em; }}
</style></head><body>
<h1>Cross-tag analysis</h1>
<p>{users} users, {tags} tags. A user carries a tag when its probability is at least {threshold}.</p>
<h2>Tags that go together</h2>
<ul>{pairs}</ul>
<p class="note">Cells show the lift of each pair (how many times more often the two tags occur together than if they were independent): red above 1, blue below. Outlined cells are reported: at least {min_count} users with both, support of at least {min_support}, and a chi-square p-value below {alpha} divided by the number of pairs; the other cells are faded.</p>
{heatmap}
<h2>Prevalence per platform</h2>
<p class="note">Share of users carrying each tag, with its 95% interval.</p>
{prevalence}
<h2>User segments</h2>
<p>{k} segments, chosen by the mean silhouette on a sample ({k_scores}). Each point is a user on the first two principal axes; large points are segment centres.</p>
{scatter}
<h2>Segment profiles</h2>
<p class="note">The five tags most over-represented in each segment: mean probability in the segment over the mean of all users, and the mean probability.</p>
{profiles}
</body></html>
"#,
        users = report.users,
        tags = report.tags.len(),
        threshold = report.threshold,
        pairs = if reported.is_empty() {
            "<li>No pair passes the reporting bar.</li>".to_owned()
        } else {
            reported.join("")
        },
        min_count = report.min_count,
        min_support = report.min_support,
        alpha = report.alpha,
        heatmap = heatmap(report),
        prevalence = prevalence_bars(report),
        k = s.k,
        k_scores = k_scores.join(", "),
        scatter = scatter(report),
        profiles = profiles(report),
    )
}
