//! The analyses against hand-computed tables, and the errors of bad input.

use arrow::array::{ArrayRef, Float32Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use liveprofile_analysis::cooccurrence::{PairOptions, pair_from_counts, pairs};
use liveprofile_analysis::segments::{SegmentOptions, segment};
use liveprofile_analysis::table::{Columns, TagTable, read_parquet};
use liveprofile_analysis::{AnalysisError, analyse, write_report};
use std::sync::Arc;

/// A table from explicit rows: (user, platform, probabilities).
fn batch(tags: &[&str], rows: &[(String, &str, Vec<f32>)]) -> RecordBatch {
    let mut fields = vec![Field::new("user_id", DataType::Utf8, false), Field::new("platform", DataType::Utf8, false)];
    let mut arrays: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0.clone()))),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
    ];
    for (k, t) in tags.iter().enumerate() {
        fields.push(Field::new(*t, DataType::Float32, true));
        arrays.push(Arc::new(Float32Array::from_iter_values(rows.iter().map(|r| r.2[k]))));
    }
    fields.push(Field::new("model", DataType::Utf8, false));
    arrays.push(Arc::new(StringArray::from_iter_values(rows.iter().map(|_| "user_tags"))));
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).unwrap()
}

fn table(b: &RecordBatch) -> Result<TagTable, AnalysisError> {
    TagTable::from_batches(&b.schema(), std::slice::from_ref(b), &Columns::default())
}

/// 100 users: A and B both on 20, A only on 10, B only on 5, neither on 65; C on the
/// first 5 users (all of them A and B too).
fn rows() -> Vec<(String, &'static str, Vec<f32>)> {
    (0..100)
        .map(|i| {
            let (a, b) = match i {
                0..20 => (0.9, 0.8),
                20..30 => (0.7, 0.1),
                30..35 => (0.2, 0.6),
                _ => (0.05, 0.3),
            };
            let c = if i < 5 { 0.95 } else { 0.01 };
            (format!("u{i}"), if i < 40 { "taobao" } else { "douyin" }, vec![a, b, c])
        })
        .collect()
}

#[test]
fn pair_figures_equal_the_hand_computed_table() {
    let s = pair_from_counts("a", "b", 20, 10, 5, 65);
    assert_eq!(s.support, 0.2);
    assert!((s.jaccard - 20.0 / 35.0).abs() < 1e-12);
    assert!((s.lift - 2000.0 / 750.0).abs() < 1e-12);
    // phi = (20*65 - 10*5) / sqrt(30*70*25*75) = 1250 / 1984.313
    assert!((s.phi - 0.629_940_788).abs() < 1e-8, "{}", s.phi);
    assert!((s.chi2 - 39.682_539_68).abs() < 1e-6, "{}", s.chi2);
    assert!(s.p_value < 1e-9 && s.p_value > 1e-11, "{}", s.p_value);
    // Independent tags: lift 1, phi 0, p-value 1.
    let s = pair_from_counts("a", "b", 10, 40, 10, 40);
    assert!((s.lift - 1.0).abs() < 1e-12 && s.phi.abs() < 1e-12 && (s.p_value - 1.0).abs() < 1e-12);
}

#[test]
fn pairs_count_users_and_report_only_supported_significant_ones() {
    let t = table(&batch(&["a", "b", "c"], &rows())).unwrap();
    assert_eq!(t.tags, ["a", "b", "c"]);
    let options = PairOptions { threshold: 0.5, min_support: 0.01, min_count: 10, alpha: 0.05 };
    let all = pairs(&t, &options);
    assert_eq!(all.len(), 3);
    let ab = all.iter().find(|p| p.a == "a" && p.b == "b").unwrap();
    assert_eq!((ab.both, ab.a_only, ab.b_only, ab.neither), (20, 10, 5, 65));
    assert!(ab.reported);
    // a and c: 5 users with both: significant, but under the minimum count.
    let ac = all.iter().find(|p| p.a == "a" && p.b == "c").unwrap();
    assert_eq!((ac.both, ac.a_only, ac.b_only, ac.neither), (5, 25, 0, 70));
    assert!(ac.p_value < 0.05 / 3.0);
    assert!(!ac.reported);
    assert!(all[0].reported && !all[1].reported && !all[2].reported);
}

#[test]
fn prevalence_per_platform_with_intervals_and_over_representation() {
    let t = table(&batch(&["a", "b", "c"], &rows())).unwrap();
    let report = analyse(&t, &PairOptions::default(), &SegmentOptions::default()).unwrap();
    let find = |p: &str, tag: &str| report.prevalence.iter().find(|x| x.platform == p && x.tag == tag).unwrap();
    let all = find("all", "a");
    assert_eq!((all.users, all.carriers), (100, 30));
    // Taobao: users 0-39, carrying a: 0-29 -> 30 of 40; Douyin: none of 60.
    let taobao = find("taobao", "a");
    assert_eq!((taobao.users, taobao.carriers), (40, 30));
    assert_eq!(taobao.share, 0.75);
    assert!(taobao.ratio_to_rest.is_infinite());
    assert!(taobao.p_value < 1e-10);
    // Wilson 95% interval of 30/40: (0.5980, 0.8580).
    assert!((taobao.ci_low - 0.598_0).abs() < 1e-3 && (taobao.ci_high - 0.858_0).abs() < 1e-3, "{taobao:?}");
    // b: taobao 25 of 40 (0-19, 30-34), douyin 0 of 60 -> over-represented on taobao.
    let b_douyin = find("douyin", "b");
    assert_eq!((b_douyin.users, b_douyin.carriers), (60, 0));
    assert_eq!(b_douyin.ratio_to_rest, 0.0);
    // Mean probabilities are the expected shares.
    assert!((find("all", "c").mean_probability - (5.0 * 0.95 + 95.0 * 0.01) / 100.0).abs() < 1e-6);
    let dir = tempfile::tempdir().unwrap();
    let path = write_report(&report, &t, &dir.path().join("report")).unwrap();
    assert!(dir.path().join("report/segments.parquet").exists());
    let html = std::fs::read_to_string(dir.path().join("report/report.html")).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>") && html.trim_end().ends_with("</html>"));
    assert_eq!(html.matches("<svg").count(), html.matches("</svg>").count());
    assert!(html.contains("aria-label=\"lift heatmap\"") && html.contains("aria-label=\"segment scatter\""));
    // The pair on 20 users is under the default minimum count of 30: shown, not reported.
    assert!(html.contains("<title>a + b: lift 2.67, phi 0.630, 20 users"), "{html}");
    assert!(html.contains("No pair passes the reporting bar."));
    assert!(!html.contains("<script"));
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(json["users"], 100);
    assert_eq!(json["pairs"][0]["a"], "a");
}

#[test]
fn bad_input_is_named_never_dropped_or_clipped() {
    let good = batch(&["a", "b", "c"], &rows());
    // No user id.
    let no_user = good.project(&[1, 2, 3, 4]).unwrap();
    let e = table(&no_user).unwrap_err();
    assert_eq!(e.to_string(), "the input has no column \"user_id\"");
    // No tag columns.
    let no_tags = good.project(&[0, 1, 5]).unwrap();
    assert_eq!(
        table(&no_tags).unwrap_err().to_string(),
        "the input has no tag columns (floating-point probability columns)"
    );
    // Out of range, not finite.
    for (bad, shown) in [(1.2f32, "1.2000000476837158"), (f32::NAN, "NaN"), (-0.1, "-0.10000000149011612")] {
        let mut r = rows();
        r[37].2[1] = bad;
        let e = table(&batch(&["a", "b", "c"], &r)).unwrap_err();
        assert_eq!(e.to_string(), format!("column \"b\", row 37: {shown} is not a probability in [0, 1]"));
    }
    // Too few users.
    let few: Vec<_> = rows().into_iter().take(10).collect();
    let e =
        analyse(&table(&batch(&["a", "b", "c"], &few)).unwrap(), &PairOptions::default(), &SegmentOptions::default())
            .unwrap_err();
    assert_eq!(e.to_string(), "10 users: the analysis needs at least 50");
    // A Parquet file that is not one.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.parquet");
    std::fs::write(&path, b"nope").unwrap();
    assert!(read_parquet(&path, &Columns::default()).unwrap_err().to_string().contains("cannot read"));
}

#[test]
fn segments_recover_planted_clusters_and_k_is_chosen_by_silhouette() {
    // Three planted profiles, 200 users each, with deterministic noise of +-0.06.
    let centres = [[0.85, 0.10, 0.10, 0.70], [0.10, 0.90, 0.15, 0.10], [0.15, 0.10, 0.85, 0.20]];
    let mut state: u64 = 7;
    let mut noise = || {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        ((state >> 33) as f64 / (1u64 << 31) as f64 - 0.5) * 0.12
    };
    let mut rows = Vec::new();
    for i in 0..600 {
        let c = i % 3;
        let p: Vec<f32> = centres[c].iter().map(|m| (m + noise()).clamp(0.0, 1.0) as f32).collect();
        rows.push((format!("u{i}"), ["taobao", "douyin", "kuaishou"][c], p));
    }
    let t = table(&batch(&["a", "b", "c", "d"], &rows)).unwrap();
    let options = SegmentOptions { k_min: 2, k_max: 6, n_runs: 5, sample: 600 };
    let s = segment(&t, &options).unwrap();
    assert_eq!(s.k, 3, "{:?}", s.scores);
    assert_eq!(s.scores.len(), 5);
    // Each planted cluster is exactly one segment.
    for c in 0..3 {
        let seg = s.assignments[c];
        assert!((0..600).filter(|i| i % 3 == c).all(|i| s.assignments[i] == seg), "cluster {c} split");
    }
    assert_ne!(s.assignments[0], s.assignments[1]);
    assert_ne!(s.assignments[1], s.assignments[2]);
    assert_ne!(s.assignments[0], s.assignments[2]);
    // Segment descriptions: sizes, the planted tag on top, platform mix, centroids.
    for seg in &s.segments {
        assert_eq!(seg.size, 200);
        let member = s.assignments.iter().position(|&a| a == seg.id).unwrap();
        let c = member % 3;
        let top = ["a", "b", "c"][c];
        assert_eq!(seg.tags[0].tag, top, "{seg:?}");
        assert_eq!(seg.platforms.len(), 1);
        assert!((seg.platforms[["taobao", "douyin", "kuaishou"][c]] - 1.0).abs() < 1e-12);
        for (x, m) in seg.centroid.iter().zip(&centres[c]) {
            assert!((x - m).abs() < 0.02, "{x} vs {m}");
        }
    }
    assert!(
        s.pca_explained[0] + s.pca_explained[1] > 0.9 && s.pca_explained[0] + s.pca_explained[1] <= 1.0 + 1e-9,
        "{:?}",
        s.pca_explained
    );
    // Too few users for the range asked.
    let few = table(&batch(&["a", "b", "c", "d"], &rows[..40])).unwrap();
    assert_eq!(segment(&few, &options).unwrap_err().to_string(), "40 users: the analysis needs at least 60");
}
