//! The comparison of a model version's live rows with its reference: every column's PSI,
//! KS and level, with both histograms; as JSON and as an HTML page (columns ranked by PSI,
//! SVG histograms of the columns that moved most, reference against live).

use crate::reference::{ColumnReference, Reference};
use crate::stats::{Level, PSI_FLOOR, PSI_MAJOR, PSI_MODERATE, ks, psi};
use crate::window::LiveHistograms;
use serde::{Deserialize, Serialize};
use std::fmt::Write;

/// Columns drawn as histograms on the HTML page.
pub const HTML_TOP_COLUMNS: usize = 12;

/// A model input or an output column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A feature.
    Feature,
    /// An output column.
    Output,
}

impl Kind {
    /// `feature` or `output`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Feature => "feature",
            Kind::Output => "output",
        }
    }
}

/// One column compared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnDrift {
    /// Feature or output column name.
    pub name: String,
    /// Feature or output.
    pub kind: Kind,
    /// Population stability index.
    pub psi: f64,
    /// Binned Kolmogorov-Smirnov statistic.
    pub ks: f64,
    /// Level read from the PSI.
    pub level: Level,
    /// Moderate or major.
    pub flagged: bool,
    /// Bin edges.
    pub edges: Vec<f32>,
    /// Reference rows per bin.
    pub reference_counts: Vec<u64>,
    /// Reference rows missing the value.
    pub reference_missing: u64,
    /// Live rows per bin.
    pub live_counts: Vec<u64>,
    /// Live rows missing the value.
    pub live_missing: u64,
}

impl ColumnDrift {
    /// Compares live counts over the column's bins with its reference.
    pub fn compare(column: &ColumnReference, kind: Kind, live_counts: &[u64], live_missing: u64) -> Self {
        let p = psi((&column.counts, column.missing), (live_counts, live_missing));
        let level = Level::of(p);
        ColumnDrift {
            name: column.name.clone(),
            kind,
            psi: p,
            ks: ks(&column.counts, live_counts),
            level,
            flagged: level.flagged(),
            edges: column.edges.clone(),
            reference_counts: column.counts.clone(),
            reference_missing: column.missing,
            live_counts: live_counts.to_vec(),
            live_missing,
        }
    }
}

/// The thresholds a report was read with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    /// [`PSI_MODERATE`].
    pub psi_moderate: f64,
    /// [`PSI_MAJOR`].
    pub psi_major: f64,
    /// [`PSI_FLOOR`].
    pub psi_floor: f64,
}

/// A model version's live rows against its reference (`drift.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftReport {
    /// Model name.
    pub model: String,
    /// Model version.
    pub version: u32,
    /// Where the live rows came from (a log folder, the server's window).
    pub live_source: String,
    /// Live rows compared.
    pub live_rows: u64,
    /// The reference's description.
    pub reference_description: String,
    /// The reference's rows.
    pub reference_rows: u64,
    /// The levels' thresholds.
    pub thresholds: Thresholds,
    /// Flagged features, highest PSI first.
    pub flagged_features: Vec<String>,
    /// Flagged output columns, highest PSI first.
    pub flagged_outputs: Vec<String>,
    /// Every feature, in schema order.
    pub features: Vec<ColumnDrift>,
    /// Every output column, in order.
    pub outputs: Vec<ColumnDrift>,
}

impl DriftReport {
    /// Compares live histograms (over `reference`'s columns) with the reference.
    pub fn new(model: &str, version: u32, live_source: &str, reference: &Reference, live: &LiveHistograms) -> Self {
        let nf = reference.features.len();
        let compare =
            |k: usize, c: &ColumnReference, kind| ColumnDrift::compare(c, kind, &live.counts[k], live.missing[k]);
        let features: Vec<ColumnDrift> =
            reference.features.iter().enumerate().map(|(k, c)| compare(k, c, Kind::Feature)).collect();
        let outputs: Vec<ColumnDrift> =
            reference.outputs.iter().enumerate().map(|(k, c)| compare(nf + k, c, Kind::Output)).collect();
        let flagged = |cols: &[ColumnDrift]| {
            let mut f: Vec<&ColumnDrift> = cols.iter().filter(|c| c.flagged).collect();
            f.sort_by(|a, b| b.psi.total_cmp(&a.psi));
            f.into_iter().map(|c| c.name.clone()).collect()
        };
        DriftReport {
            model: model.to_owned(),
            version,
            live_source: live_source.to_owned(),
            live_rows: live.rows,
            reference_description: reference.description.clone(),
            reference_rows: reference.rows,
            thresholds: Thresholds { psi_moderate: PSI_MODERATE, psi_major: PSI_MAJOR, psi_floor: PSI_FLOOR },
            flagged_features: flagged(&features),
            flagged_outputs: flagged(&outputs),
            features,
            outputs,
        }
    }

    /// Every column, highest PSI first.
    pub fn ranked(&self) -> Vec<&ColumnDrift> {
        let mut all: Vec<&ColumnDrift> = self.features.iter().chain(&self.outputs).collect();
        all.sort_by(|a, b| b.psi.total_cmp(&a.psi));
        all
    }

    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).expect("a report serialises");
        s.push('\n');
        s
    }

    /// The report as one self-contained HTML page (inline SVG, no scripts).
    pub fn to_html(&self) -> String {
        let mut h = String::new();
        let _ = write!(
            h,
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Drift: {m} version {v}</title>\
             <style>body{{font-family:sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse}}\
             td,th{{padding:2px 8px;border-bottom:1px solid #ddd;text-align:right}}td:first-child,th:first-child{{text-align:left}}\
             .major{{color:#b00020;font-weight:bold}}.moderate{{color:#b06000}}figure{{display:inline-block;margin:0 1em 1em 0}}</style>\
             </head><body>\n<h1>Drift of {m}, version {v}</h1>\n",
            m = esc(&self.model),
            v = self.version
        );
        let _ = writeln!(
            h,
            "<p>{live} live rows ({src}) against {rr} reference rows ({rd}). PSI under {mo} is stable, \
             {mo} to {ma} moderate, {ma} or more major; moderate and major are flagged. Empty bins count as a share of {fl}. \
             KS is the largest gap between the cumulative shares at the bin edges (binned).</p>",
            live = self.live_rows,
            src = esc(&self.live_source),
            rr = self.reference_rows,
            rd = esc(&self.reference_description),
            mo = PSI_MODERATE,
            ma = PSI_MAJOR,
            fl = PSI_FLOOR
        );
        let _ = writeln!(
            h,
            "<p>Flagged: {} of {} features, {} of {} outputs.</p>",
            self.flagged_features.len(),
            self.features.len(),
            self.flagged_outputs.len(),
            self.outputs.len()
        );
        let ranked = self.ranked();
        h.push_str("<h2>Columns that moved most</h2>\n");
        for c in ranked.iter().take(HTML_TOP_COLUMNS) {
            h.push_str(&histogram_svg(c));
        }
        h.push_str("\n<h2>Every column, by PSI</h2>\n<table><tr><th>column</th><th>kind</th><th>PSI</th><th>KS</th><th>level</th></tr>\n");
        for c in &ranked {
            let _ = writeln!(
                h,
                "<tr class=\"{lv}\"><td>{n}</td><td>{k}</td><td>{p:.4}</td><td>{ks:.4}</td><td>{lv}</td></tr>",
                lv = c.level.as_str(),
                n = esc(&c.name),
                k = c.kind.as_str(),
                p = c.psi,
                ks = c.ks
            );
        }
        h.push_str("</table>\n</body></html>\n");
        h
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A bar chart of a column's bins: the reference share (grey) beside the live share
/// (orange) in every bin, the missing bin last.
fn histogram_svg(c: &ColumnDrift) -> String {
    let share = |counts: &[u64], missing: u64| -> Vec<f64> {
        let total = (counts.iter().sum::<u64>() + missing).max(1) as f64;
        counts.iter().chain([&missing]).map(|&n| n as f64 / total).collect()
    };
    let r = share(&c.reference_counts, c.reference_missing);
    let l = share(&c.live_counts, c.live_missing);
    let bins = r.len();
    let (w, ht, left, bottom) = (340.0f64, 160.0f64, 34.0f64, 30.0f64);
    let slot = (w - left - 6.0) / bins as f64;
    let top = r.iter().chain(&l).copied().fold(0.0f64, f64::max).max(1e-9);
    let scale = (ht - bottom - 8.0) / top;
    let mut s = format!(
        "<figure><figcaption class=\"{lv}\">{kind} <b>{n}</b>: PSI {p:.3}, KS {ks:.3} ({lv})</figcaption>\
         <svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w:.0}\" height=\"{ht:.0}\" role=\"img\" aria-label=\"histogram of {n}\">",
        lv = c.level.as_str(),
        kind = c.kind.as_str(),
        n = esc(&c.name),
        p = c.psi,
        ks = c.ks
    );
    let base = ht - bottom;
    let _ = write!(s, r##"<line x1="{left}" y1="{base}" x2="{:.1}" y2="{base}" stroke="#444"/>"##, w - 4.0);
    let _ = write!(s, r##"<text x="2" y="12" font-size="10">{top:.2}</text>"##);
    for i in 0..bins {
        let x = left + slot * i as f64;
        let bw = (slot / 2.0 - 0.5).max(0.5);
        for (k, (v, colour)) in [(r[i], "#9e9e9e"), (l[i], "#ff7f0e")].into_iter().enumerate() {
            let hgt = v * scale;
            let _ = write!(
                s,
                r#"<rect x="{:.1}" y="{:.1}" width="{bw:.1}" height="{hgt:.1}" fill="{colour}"><title>{}: {:.4}</title></rect>"#,
                x + k as f64 * (bw + 0.5),
                base - hgt,
                bin_label(&c.edges, i),
                v
            );
        }
    }
    let _ = write!(
        s,
        r##"<text x="{left}" y="{:.0}" font-size="10">{}</text><text x="{:.0}" y="{:.0}" font-size="10" text-anchor="end">missing</text>"##,
        base + 12.0,
        c.edges.first().map_or_else(String::new, |e| format!("{e}")),
        w - 4.0,
        base + 12.0
    );
    let _ = write!(
        s,
        r##"<rect x="{left}" y="{:.0}" width="8" height="8" fill="#9e9e9e"/><text x="{:.0}" y="{:.0}" font-size="10">reference</text><rect x="{:.0}" y="{:.0}" width="8" height="8" fill="#ff7f0e"/><text x="{:.0}" y="{:.0}" font-size="10">live</text>"##,
        base + 18.0,
        left + 11.0,
        base + 26.0,
        left + 80.0,
        base + 18.0,
        left + 91.0,
        base + 26.0
    );
    s.push_str("</svg></figure>\n");
    s
}

/// `(a, b]` for bin `i` of `edges`, `missing` for the bin after the last.
fn bin_label(edges: &[f32], i: usize) -> String {
    if i > edges.len() {
        return "missing".into();
    }
    match (i.checked_sub(1).map(|j| edges[j]), edges.get(i)) {
        (None, Some(e)) => format!("(-inf, {e}]"),
        (Some(a), Some(b)) => format!("({a}, {b}]"),
        (Some(a), None) => format!("({a}, +inf)"),
        (None, None) => "all".into(),
    }
}
