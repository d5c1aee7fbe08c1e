//! The segment package (`models/user_segments/1`): squared distances to the k-means
//! centroids of the cross-tag analysis, on the `user_tags` outputs. It loads and passes
//! golden parity like every package; its outputs are distances, never clamped; the argmin
//! of each golden row is the segment the analysis gave that user.

use crate::fixtures::bundled_models;
use liveprofile_runtime::{CHUNK_ROWS, LoadedModel, load_package};

fn golden(model: &LoadedModel) -> (Vec<Vec<f32>>, Vec<String>) {
    let g: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(model.dir().join("golden.json")).unwrap()).unwrap();
    (
        serde_json::from_value(g["inputs"]["features"].clone()).unwrap(),
        serde_json::from_value(g["notes"].clone()).unwrap(),
    )
}

/// The segment a golden note names: `data row 17 (user_id u1, segment 2)` (the analysis'
/// segment of that user) or `centroid of segment 2`.
fn named_segment(note: &str) -> Option<usize> {
    if let Some(rest) = note.strip_prefix("centroid of segment ") {
        return rest.parse().ok();
    }
    let start = note.find(", segment ")? + ", segment ".len();
    let end = start + note[start..].find(')')?;
    note[start..end].parse().ok()
}

fn argmin(row: &[f32]) -> usize {
    row.iter().enumerate().fold(0, |best, (i, v)| if *v < row[best] { i } else { best })
}

#[test]
fn segment_package_loads_and_its_argmin_is_the_analysis_segment() {
    let model = load_package(&bundled_models().join("user_segments/1")).unwrap();
    let m = model.manifest();
    assert_eq!(m.task, "segmentation");
    let out = &m.outputs[0];
    let k = out.shape[1] as usize;
    assert_eq!((out.name.as_str(), m.outputs.len()), ("distances", 1));
    assert_eq!(out.names, (0..k).map(|s| format!("segment_{s}")).collect::<Vec<_>>());

    // The input is the tags model's output, in its order.
    let tags = load_package(&bundled_models().join("user_tags/1")).unwrap();
    assert_eq!(model.schema().names(), tags.manifest().outputs[0].names.iter().map(String::as_str).collect::<Vec<_>>());

    let (rows, notes) = golden(&model);
    let flat: Vec<f32> = rows.iter().flatten().copied().collect();
    let scores = model.score_batched(&flat, rows.len()).unwrap();
    let d = &scores.outputs[0];
    assert_eq!(d.width, k);
    let mut named = 0;
    for (i, note) in notes.iter().enumerate() {
        let row = &d.values[i * k..(i + 1) * k];
        assert!(row.iter().all(|v| *v >= 0.0), "{note}: {row:?}");
        if let Some(segment) = named_segment(note) {
            assert_eq!(argmin(row), segment, "{note}: {row:?}");
            // The single-row plan gives the same segment.
            assert_eq!(argmin(&model.score(&rows[i], 1).unwrap().outputs[0].values), segment, "{note}");
            named += 1;
        }
        if note == "all ones" {
            // Distances are not probabilities: nothing is clamped to [0, 1].
            assert!(row.iter().any(|v| *v > 1.0), "{row:?}");
        }
    }
    assert!(named >= 40 + k, "{named} golden rows name their segment");
}

#[test]
fn segment_package_on_the_tags_models_output_and_in_long_batches() {
    let segments = load_package(&bundled_models().join("user_segments/1")).unwrap();
    let tags = load_package(&bundled_models().join("user_tags/1")).unwrap();
    // What the server will do: the tags of a user, then the segment of those tags.
    let (tag_rows, _) = golden(&tags);
    let tag_flat: Vec<f32> = tag_rows.iter().flatten().copied().collect();
    let probabilities = tags.score_batched(&tag_flat, tag_rows.len()).unwrap().outputs.remove(0);
    let d = segments.score_batched(&probabilities.values, tag_rows.len()).unwrap().outputs.remove(0);
    assert_eq!(d.values.len(), tag_rows.len() * d.width);
    assert!(d.values.iter().all(|v| v.is_finite() && *v >= 0.0));

    // Long batches on the fixed-size plan give the symbolic plan's bits.
    assert!(segments.has_chunk_plan());
    let (rows, _) = golden(&segments);
    let n = 2 * CHUNK_ROWS + 77;
    let flat: Vec<f32> = (0..n).flat_map(|i| rows[(i * 7 + 3) % rows.len()].clone()).collect();
    let batched = segments.score_batched(&flat, n).unwrap();
    let symbolic = segments.score(&flat, n).unwrap();
    let same =
        batched.outputs[0].values.iter().zip(&symbolic.outputs[0].values).all(|(a, b)| a.to_bits() == b.to_bits());
    assert!(same);
}

#[test]
fn a_segment_package_must_describe_every_distance_column() {
    let dir = tempfile::tempdir().unwrap();
    let copy = liveprofile_testkit::publish_copy(
        &bundled_models().join("user_segments/1"),
        dir.path(),
        "user_segments",
        1,
        |d| crate::fixtures::edit_manifest(d, |m| m["segmentation"]["segments"].as_array_mut().unwrap().truncate(1)),
    );
    let err = load_package(&copy).unwrap_err().to_string();
    assert!(err.contains("distance columns but the manifest describes 1 segments"), "{err}");
    let named = load_package(&bundled_models().join("user_segments/1")).unwrap();
    let segments = &named.manifest().segmentation.as_ref().unwrap().segments;
    assert_eq!(segments[0].name, "segment_0");
    assert!(segments[0].details.contains_key("centroid"), "the rest is kept as given");
}
