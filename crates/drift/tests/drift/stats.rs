//! Exact values on small histograms, bins of edge values, missing values, the window.

use liveprofile_drift::reference::bin_of;
use liveprofile_drift::{ColumnReference, DriftReport, Level, LiveHistograms, PSI_FLOOR, Reference, Window, ks, psi};

fn close(a: f64, b: f64) {
    assert!((a - b).abs() < 1e-12, "{a} != {b}");
}

#[test]
fn psi_and_ks_of_hand_computed_histograms() {
    // Halves against a quarter and three quarters: 0.25 ln 2 + 0.25 ln 1.5 = 0.25 ln 3.
    close(psi((&[50, 50], 0), (&[25, 75], 0)), 0.25 * 3f64.ln());
    close(ks(&[50, 50], &[25, 75]), 0.25);
    // The same shares: 0 whatever the row counts.
    close(psi((&[10, 30, 60], 0), (&[1, 3, 6], 0)), 0.0);
    close(ks(&[10, 30, 60], &[1, 3, 6]), 0.0);
    // An empty reference bin counts as the floor's share: (0.5 - 1e-4) ln(0.5 / 1e-4)
    // for it, (0.5 - 1) ln(0.5 / 1) for the other, the empty missing bins nothing.
    let expected = (0.5 - PSI_FLOOR) * (0.5 / PSI_FLOOR).ln() + (0.5 - 1.0) * 0.5f64.ln();
    close(psi((&[100, 0], 0), (&[50, 50], 0)), expected);
    close(ks(&[100, 0], &[50, 50]), 0.5);
    // Missing values are a bin of their own for PSI and are left out of KS.
    let expected = (0.25 - 0.5) * (0.25f64 / 0.5).ln()
        + (0.25 - 0.5) * (0.25f64 / 0.5).ln()
        + (0.5 - PSI_FLOOR) * (0.5 / PSI_FLOOR).ln();
    close(psi((&[5, 5], 0), (&[1, 1], 2)), expected);
    close(ks(&[5, 5], &[1, 1]), 0.0);
    // Three bins: cumulative 0.2, 0.5, 1 against 0.5, 0.6, 1: largest gap 0.3.
    close(ks(&[2, 3, 5], &[5, 1, 4]), 0.3);
    // No rows on a side.
    close(psi((&[1, 1], 0), (&[0, 0], 0)), 0.0);
    close(ks(&[0, 0], &[0, 0]), 0.0);
    close(ks(&[1, 0], &[0, 0]), 1.0);
}

#[test]
fn levels_follow_the_usual_psi_thresholds() {
    assert_eq!(Level::of(0.0999), Level::Stable);
    assert_eq!(Level::of(0.1), Level::Moderate);
    assert_eq!(Level::of(0.2499), Level::Moderate);
    assert_eq!(Level::of(0.25), Level::Major);
    assert!(!Level::Stable.flagged() && Level::Moderate.flagged() && Level::Major.flagged());
}

#[test]
fn edge_values_fall_in_the_bin_the_edge_closes() {
    let edges = [0.0f32, 1.0, 2.5];
    assert_eq!(bin_of(&edges, -3.0), Some(0));
    assert_eq!(bin_of(&edges, 0.0), Some(0));
    assert_eq!(bin_of(&edges, -0.0), Some(0));
    assert_eq!(bin_of(&edges, 0.5), Some(1));
    assert_eq!(bin_of(&edges, 1.0), Some(1));
    assert_eq!(bin_of(&edges, 1.0000001), Some(2));
    assert_eq!(bin_of(&edges, 2.5), Some(2));
    assert_eq!(bin_of(&edges, 1e30), Some(3));
    assert_eq!(bin_of(&edges, f32::NAN), None);
    assert_eq!(bin_of(&edges, f32::INFINITY), None);
    assert_eq!(bin_of(&edges, f32::NEG_INFINITY), None);
    assert_eq!(bin_of(&[], 7.0), Some(0));
}

#[test]
fn discrete_columns_get_a_bin_per_value_and_missing_values_are_counted_apart() {
    // A bool column: edges at its two values, the top bin empty.
    let values: Vec<f32> = (0..10).map(|i| if i < 7 { 0.0 } else { 1.0 }).collect();
    let c = ColumnReference::from_values("flag", &values, 20);
    assert_eq!(c.edges, vec![0.0, 1.0]);
    assert_eq!(c.counts, vec![7, 3, 0]);
    assert_eq!(c.missing, 0);
    // 0..=100 with 4 bins: the values at positions 0, 25, 50, 75, 100; NaN and infinity missing.
    let mut values: Vec<f32> = (0..=100).map(|i| if i == 0 { -0.0 } else { i as f32 }).collect();
    values.extend([f32::NAN, f32::INFINITY]);
    let c = ColumnReference::from_values("x", &values, 4);
    assert_eq!(c.edges, vec![0.0, 25.0, 50.0, 75.0, 100.0]);
    // (-inf, 0]: -0 (one value with 0); (0, 25]: 1..=25; ...; (100, inf): none.
    assert_eq!(c.counts, vec![1, 25, 25, 25, 25, 0]);
    assert_eq!(c.missing, 2);
    assert_eq!(c.rows(), 103);
    // All missing: no edges, one bin, every row missing.
    let c = ColumnReference::from_values("gone", &[f32::NAN; 3], 20);
    assert_eq!((c.edges.len(), c.counts.clone(), c.missing), (0, vec![0], 3));
}

#[test]
fn a_rare_value_of_a_few_valued_column_keeps_its_own_bin_and_its_shift_is_flagged() {
    // 0 x900, 1 x30, 2 x70: 1 holds 3% of the rows, under 1/20, so quantile edges alone
    // would be [0, 2] and 1 would share the bin of 2.
    let values: Vec<f32> =
        [(0.0, 900), (1.0, 30), (2.0, 70)].iter().flat_map(|&(v, n)| std::iter::repeat_n(v, n)).collect();
    let c = ColumnReference::from_values("kind", &values, 20);
    assert_eq!(c.edges, vec![0.0, 1.0, 2.0]);
    assert_eq!(c.counts, vec![900, 30, 70, 0]);
    let r = Reference::new("rare value", "hash", 20, vec![c], vec![]).unwrap();
    // Live: 0 x900, 1 x100 (no 2 any more): the shift from 2 to 1 shows.
    let mut live = LiveHistograms::empty(&r);
    for i in 0..1_000 {
        live.add_row(&r, &[if i < 900 { 0.0 } else { 1.0 }], &[]).unwrap();
    }
    let report = DriftReport::new("m", 1, "test", &r, &live);
    assert_eq!(report.flagged_features, vec!["kind"], "{:?}", report.features[0]);
    assert!(report.features[0].psi > 0.1 && report.features[0].ks > 0.0, "{:?}", report.features[0]);
    // One more distinct value than bins: quantile edges again.
    let values: Vec<f32> = (0..100).map(|i| (i % 4) as f32).collect();
    assert_eq!(ColumnReference::from_values("q", &values, 3).edges.len(), 4);
    assert_eq!(ColumnReference::from_values("q", &values, 2).edges, vec![0.0, 1.0, 3.0]);
}

#[test]
fn a_row_of_another_width_is_refused_and_not_counted() {
    let r = small_reference();
    let mut live = LiveHistograms::empty(&r);
    // One feature short: the output would land in feature b's histogram.
    let e = live.add_row(&r, &[1.0], &[0.9]).unwrap_err().to_string();
    assert!(e.contains("1 features and 1 output values") && e.contains("2 features and 1 output columns"), "{e}");
    assert!(live.add_row(&r, &[1.0, 0.5, 7.0], &[0.9]).is_err());
    assert!(live.add_row(&r, &[1.0, 0.5], &[]).is_err());
    assert_eq!(live, LiveHistograms::empty(&r));
    live.add_row(&r, &[1.0, 0.5], &[0.9]).unwrap();
    assert_eq!(live.rows, 1);
}

fn small_reference() -> Reference {
    let a: Vec<f32> = (0..100).map(|i| (i % 10) as f32).collect();
    let b: Vec<f32> = (0..100).map(|i| i as f32 / 100.0).collect();
    let out: Vec<f32> = (0..100).map(|i| if i % 4 == 0 { 0.9 } else { 0.1 }).collect();
    Reference::new(
        "hand-made",
        "hash",
        10,
        vec![ColumnReference::from_values("a", &a, 10), ColumnReference::from_values("b", &b, 10)],
        vec![ColumnReference::from_values("p", &out, 10)],
    )
    .unwrap()
}

#[test]
fn references_round_trip_and_are_checked() {
    let r = small_reference();
    assert_eq!(r.rows, 100);
    let back = Reference::from_json(r.to_json().as_bytes()).unwrap();
    assert_eq!(back, r);
    r.check_fits("hash", &["a", "b"], &["p".to_owned()]).unwrap();
    let e = r.check_fits("other", &["a", "b"], &["p".to_owned()]).unwrap_err().to_string();
    assert!(e.contains("made for feature schema hash, the model reads other"), "{e}");
    let e = r.check_fits("hash", &["a", "c"], &["p".to_owned()]).unwrap_err().to_string();
    assert!(e.contains("differ from position 1"), "{e}");
    let e = r.check_fits("hash", &["a", "b"], &["q".to_owned()]).unwrap_err().to_string();
    assert!(e.contains("output columns"), "{e}");
    // Counts that do not add up to the rows.
    let mut bad = r.clone();
    bad.features[1].counts[0] += 1;
    let e = Reference::from_json(bad.to_json().as_bytes()).unwrap_err().to_string();
    assert!(e.contains("column \"b\"") && e.contains("101 rows"), "{e}");
    let mut bad = r.clone();
    bad.features[0].edges.swap(0, 1);
    let e = Reference::from_json(bad.to_json().as_bytes()).unwrap_err().to_string();
    assert!(e.contains("strictly increasing"), "{e}");
    let mut bad = r;
    bad.format = 9;
    assert!(Reference::from_json(bad.to_json().as_bytes()).unwrap_err().to_string().contains("format 9"));
}

#[test]
fn the_window_forgets_old_sub_windows() {
    let r = small_reference();
    // 3 sub-windows of 1 s.
    let mut w = Window::new(3, 1_000);
    for t in [0u64, 500, 1_500, 2_500] {
        w.current(&r, t).add_row(&r, &[1.0, 0.5], &[0.9]).unwrap();
    }
    assert_eq!(w.rows(2_999), 4);
    // At 3 s the first sub-window (0..1 s, two rows) has left.
    assert_eq!(w.rows(3_000), 2);
    let totals = w.totals(&r, 3_000);
    assert_eq!(totals.rows, 2);
    assert_eq!(totals.counts[0].iter().sum::<u64>(), 2);
    assert_eq!(w.rows(10_000), 0);
}

#[test]
fn the_report_flags_what_moved() {
    let r = small_reference();
    let mut live = LiveHistograms::empty(&r);
    // Column a as in the reference, b all at its top, the output always 0.9.
    for i in 0..100 {
        live.add_row(&r, &[(i % 10) as f32, 5.0], &[0.9]).unwrap();
    }
    let report = DriftReport::new("m", 3, "test", &r, &live);
    assert_eq!(report.features[0].psi, 0.0);
    assert!(!report.features[0].flagged);
    assert_eq!(report.flagged_features, vec!["b"]);
    assert_eq!(report.flagged_outputs, vec!["p"]);
    assert_eq!(report.features[1].level, Level::Major);
    assert_eq!(*report.features[1].live_counts.last().unwrap(), 100);
    // KS of b: every live value above the reference's largest.
    close(report.features[1].ks, 1.0);
    let back: DriftReport = serde_json::from_str(&report.to_json()).unwrap();
    assert_eq!(back, report);
    let html = report.to_html();
    assert!(html.contains("<svg") && html.contains("feature <b>b</b>") && html.contains("output <b>p</b>"));
    assert_eq!(report.ranked()[2].name, "a");
}
