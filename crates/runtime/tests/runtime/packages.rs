//! Loading packages: every bundled package passes golden parity; each way of breaking a
//! package is refused with a message that names the fault; inputs are validated.

use crate::fixtures::{bundled_models, edit_json, edit_manifest, fix_checksum, publish};
use liveprofile_runtime::{InputError, PackageError, ScoreError, load_package};

#[test]
fn every_bundled_package_passes_golden_parity() {
    let mut checked = 0;
    for model in std::fs::read_dir(bundled_models()).unwrap().flatten() {
        for version in std::fs::read_dir(model.path()).unwrap().flatten() {
            if version.file_name().to_string_lossy().parse::<u32>().is_err() {
                continue;
            }
            let m = load_package(&version.path()).unwrap_or_else(|e| panic!("{}: {e}", version.path().display()));
            assert_eq!(m.version().to_string(), version.file_name().to_string_lossy());
            checked += 1;
        }
    }
    assert!(checked >= 1);
}

#[test]
fn wrong_checksum_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = publish(dir.path(), "m", 1, |d| edit_manifest(d, |m| m["onnx_sha256"] = "00".repeat(32).into()));
    let err = load_package(&p).unwrap_err();
    assert!(matches!(err, PackageError::Checksum { .. }), "{err}");
    assert!(err.to_string().contains("the manifest says 0000"), "{err}");
}

#[test]
fn corrupted_onnx_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = publish(dir.path(), "m", 1, |d| {
        let mut bytes = std::fs::read(d.join("model.onnx")).unwrap();
        let n = bytes.len();
        bytes.truncate(n / 2);
        std::fs::write(d.join("model.onnx"), bytes).unwrap();
        fix_checksum(d);
    });
    let err = load_package(&p).unwrap_err();
    assert!(matches!(err, PackageError::Compile(_)), "{err}");
}

#[test]
fn manifest_that_disagrees_with_the_graph_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = publish(dir.path(), "m", 1, |d| edit_manifest(d, |m| m["outputs"][0]["name"] = "score".into()));
    let err = load_package(&p).unwrap_err();
    assert_eq!(
        err.to_string(),
        "manifest disagrees with the ONNX graph: output named \"score\" in the manifest, \"probability\" in the graph"
    );
    let p = publish(dir.path(), "m", 2, |d| edit_manifest(d, |m| m["inputs"][0]["shape"][1] = 18.into()));
    let err = load_package(&p).unwrap_err();
    assert!(err.to_string().contains("shape [-1, 18] in the manifest, [-1, 17] in the graph"), "{err}");
}

#[test]
fn schema_hash_mismatch_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = publish(dir.path(), "m", 1, |d| edit_manifest(d, |m| m["feature_schema"]["hash"] = "abc".into()));
    let err = load_package(&p).unwrap_err();
    assert!(
        err.to_string().starts_with("manifest disagrees with the feature schema: manifest schema hash abc"),
        "{err}"
    );
}

#[test]
fn golden_mismatch_names_the_example_the_output_and_the_difference() {
    let dir = tempfile::tempdir().unwrap();
    let p = publish(dir.path(), "m", 1, |d| {
        edit_json(&d.join("golden.json"), |g| {
            let v = g["outputs"]["probability"][3][0].as_f64().unwrap();
            g["outputs"]["probability"][3][0] = (v + 0.001).into();
        })
    });
    let err = load_package(&p).unwrap_err();
    match &err {
        PackageError::Golden { example, output, index, diff, tolerance, .. } => {
            assert_eq!((*example, output.as_str(), *index), (3, "probability", 0));
            assert!((diff - 0.001).abs() < 1e-5 && *tolerance == 1e-5, "{err}");
        }
        other => panic!("expected a golden mismatch, got {other}"),
    }
    assert!(err.to_string().starts_with("golden example 3 ("), "{err}");
}

#[test]
fn inputs_are_validated_by_feature_name() {
    let dir = tempfile::tempdir().unwrap();
    let model = load_package(&publish(dir.path(), "m", 1, |_| {})).unwrap();
    let names: Vec<String> = model.schema().names().iter().map(|s| s.to_string()).collect();
    let mut row = Vec::new();

    let all: Vec<(&str, f32)> = names.iter().map(|n| (n.as_str(), 1.0)).collect();
    model.dense_from_named(0, all.iter().copied(), &mut row).unwrap();
    assert_eq!(row.len(), model.width());
    let scores = model.score(&row, 1).unwrap();
    assert_eq!(scores.outputs[0].values.len(), 1);

    let missing: Vec<(&str, f32)> = all[1..].to_vec();
    let err = model.dense_from_named(0, missing, &mut Vec::new()).unwrap_err();
    assert_eq!(err, InputError::Missing { row: 0, feature: names[0].clone() });

    let mut extra = all.clone();
    extra.push(("Revenue", 1.0));
    let err = model.dense_from_named(2, extra, &mut Vec::new()).unwrap_err();
    assert_eq!(err.to_string(), "row 2: unknown feature \"Revenue\"");

    let mut bad = row.clone();
    bad[2] = f32::NAN;
    let err = model.score(&bad, 1).unwrap_err();
    assert!(matches!(err, ScoreError::Input(InputError::NotFinite { row: 0, .. })), "{err}");
    assert_eq!(err.to_string(), format!("row 0: feature {:?} is not finite (NaN)", names[2]));

    let month = names.iter().position(|n| n == "Month").unwrap();
    let mut bad = row.clone();
    bad[month] = 99.0;
    let err = model.score(&bad, 1).unwrap_err();
    assert!(err.to_string().contains("feature \"Month\" is a category"), "{err}");

    // A bool takes 0 or 1 only.
    let weekend = names.iter().position(|n| n == "Weekend").unwrap();
    for v in [7.0, 0.5, -1.0] {
        let mut bad = row.clone();
        bad[weekend] = v;
        let err = model.score(&bad, 1).unwrap_err();
        assert_eq!(err.to_string(), format!("row 0: feature \"Weekend\" is a bool; {v} is neither 0 nor 1"));
    }
    for v in [0.0, 1.0] {
        let mut good = row.clone();
        good[weekend] = v;
        model.score(&good, 1).unwrap();
    }

    assert!(matches!(model.score(&[], 0), Err(ScoreError::Input(InputError::EmptyBatch))));
    let err = model.score(&row[..5], 1).unwrap_err();
    assert!(matches!(err, ScoreError::Input(InputError::WrongWidth { .. })), "{err}");
}

#[test]
fn a_row_scores_the_same_whatever_batch_it_is_in() {
    let dir = tempfile::tempdir().unwrap();
    let model = load_package(&publish(dir.path(), "m", 1, |_| {})).unwrap();
    let golden: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(model.dir().join("golden.json")).unwrap()).unwrap();
    let rows: Vec<Vec<f32>> = serde_json::from_value(golden["inputs"]["features"].clone()).unwrap();
    let flat: Vec<f32> = rows.iter().flatten().copied().collect();
    let w = model.width();
    let whole = model.score(&flat, rows.len()).unwrap().outputs[0].values.clone();
    // Batches of other sizes and offsets give the same bits for every row.
    for size in [2usize, 3, 7, 16, 64] {
        for (c, chunk) in flat.chunks(size * w).enumerate() {
            let n = chunk.len() / w;
            let part = model.score(chunk, n).unwrap().outputs[0].values.clone();
            for (i, v) in part.iter().enumerate() {
                assert_eq!(v.to_bits(), whole[c * size + i].to_bits(), "row {} in batches of {size}", c * size + i);
            }
        }
    }
    // The single-row plan (compiled for batch 1) agrees within float rounding.
    for (i, r) in rows.iter().enumerate() {
        let one = model.score(r, 1).unwrap().outputs[0].values[0];
        assert!((one - whole[i]).abs() <= 1e-6, "row {i}: {one} vs {}", whole[i]);
    }
}

#[test]
fn long_batches_on_the_fixed_size_plan_give_the_symbolic_plans_bits() {
    use liveprofile_runtime::CHUNK_ROWS;
    for name in ["user_tags", "conversion", "taobao_purchase", "uci_session_conversion"] {
        let model = load_package(&bundled_models().join(name).join("1")).unwrap();
        assert!(model.has_chunk_plan(), "{name}");
        let golden: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(model.dir().join("golden.json")).unwrap()).unwrap();
        let rows: Vec<Vec<f32>> = serde_json::from_value(golden["inputs"]["features"].clone()).unwrap();
        // Rows in a different order than at load, more than two chunks and a remainder.
        let n = 2 * CHUNK_ROWS + 77;
        let flat: Vec<f32> = (0..n).flat_map(|i| rows[(i * 7 + 3) % rows.len()].clone()).collect();
        let batched = model.score_batched(&flat, n).unwrap();
        let symbolic = model.score(&flat, n).unwrap();
        assert_eq!(batched.rows, n);
        for (a, b) in batched.outputs.iter().zip(&symbolic.outputs) {
            assert_eq!(a.values.len(), b.values.len());
            let differ = a.values.iter().zip(&b.values).filter(|(x, y)| x.to_bits() != y.to_bits()).count();
            assert_eq!(differ, 0, "{name}: {differ} values differ");
        }
        // Probability tasks answer probabilities (tract's sigmoid can otherwise step out
        // of [0, 1] by a rounding error).
        assert!(batched.outputs.iter().all(|o| o.values.iter().all(|v| (0.0..=1.0).contains(v))), "{name}");
        // Bad rows are refused by the same check.
        let mut bad = flat.clone();
        bad[CHUNK_ROWS * model.width() + 1] = f32::NAN;
        assert!(model.score_batched(&bad, n).is_err());
    }
}

#[test]
fn one_row_batches_on_their_fixed_plan_give_the_symbolic_plans_bits() {
    for name in ["user_tags", "conversion", "taobao_purchase", "uci_session_conversion", "user_segments"] {
        let model = load_package(&bundled_models().join(name).join("1")).unwrap();
        // The two whose small fixed batches sum as the symbolic plan does (the others keep
        // the symbolic plan for one row, and the bits below hold all the same).
        assert_eq!(model.has_one_row_plan(), matches!(name, "user_tags" | "taobao_purchase"), "{name}");
        let w = model.width();
        let golden: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(model.dir().join("golden.json")).unwrap()).unwrap();
        let rows: Vec<Vec<f32>> = serde_json::from_value(golden["inputs"]["features"].clone()).unwrap();
        // Rows the load did not check: number features scaled otherwise (categories and
        // bools kept valid), in another order.
        let numbers: Vec<bool> =
            model.schema().features.iter().map(|f| f.dtype == liveprofile_features::schema::Dtype::Float32).collect();
        let n = 3 * rows.len();
        let flat: Vec<f32> = (0..n)
            .flat_map(|i| {
                let scale = 0.5 + 0.25 * (i / rows.len()) as f32;
                rows[(i * 7 + 2) % rows.len()]
                    .iter()
                    .zip(&numbers)
                    .map(|(&v, &number)| if number { v * scale } else { v })
                    .collect::<Vec<_>>()
            })
            .collect();
        let together = model.score(&flat, n).unwrap();
        for r in 0..n {
            let alone = model.score_batched(&flat[r * w..(r + 1) * w], 1).unwrap();
            for (a, t) in alone.outputs.iter().zip(&together.outputs) {
                let expected = &t.values[r * t.width..(r + 1) * t.width];
                assert!(
                    a.values.iter().map(|v| v.to_bits()).eq(expected.iter().map(|v| v.to_bits())),
                    "{name} row {r}: {:?} alone, {expected:?} together",
                    a.values
                );
            }
        }
        // A bad row is refused before any plan runs.
        let mut bad = flat[..w].to_vec();
        bad[w - 1] = f32::NAN;
        assert!(model.score_batched(&bad, 1).is_err());
    }
}

#[test]
fn feature_major_rows_score_the_same_bits_and_fail_at_the_same_place() {
    use liveprofile_runtime::{CHUNK_ROWS, InputError};
    for name in ["user_tags", "conversion", "taobao_purchase", "uci_session_conversion", "user_segments"] {
        let model = load_package(&bundled_models().join(name).join("1")).unwrap();
        let w = model.width();
        let golden: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(model.dir().join("golden.json")).unwrap()).unwrap();
        let rows: Vec<Vec<f32>> = serde_json::from_value(golden["inputs"]["features"].clone()).unwrap();
        for n in [1, 5, CHUNK_ROWS, 2 * CHUNK_ROWS + 77] {
            let flat: Vec<f32> = (0..n).flat_map(|i| rows[(i * 5 + 1) % rows.len()].clone()).collect();
            let by_feature: Vec<f32> =
                (0..w).flat_map(|f| (0..n).map(|r| flat[r * w + f]).collect::<Vec<_>>()).collect();
            let a = model.check(&flat, n).unwrap().score().unwrap();
            let b = model.check_feature_major(&by_feature, n).unwrap().score().unwrap();
            assert_eq!(a.rows, b.rows);
            for (x, y) in a.outputs.iter().zip(&b.outputs) {
                assert_eq!(x.width, y.width);
                assert!(
                    x.values.iter().map(|v| v.to_bits()).eq(y.values.iter().map(|v| v.to_bits())),
                    "{name}, {n} rows"
                );
            }
            // The first fault in row order is named the same way in both layouts.
            if n > 3 {
                let (mut bad, mut bad_by_feature) = (flat.clone(), by_feature.clone());
                for (r, f) in [(3, w - 1), (2, w - 1), (3, 0)] {
                    bad[r * w + f] = f32::INFINITY;
                    bad_by_feature[f * n + r] = f32::INFINITY;
                }
                let e1 = model.check(&bad, n).unwrap_err();
                let e2 = model.check_feature_major(&bad_by_feature, n).unwrap_err();
                assert!(matches!(&e1, InputError::NotFinite { row: 2, .. }), "{e1}");
                assert_eq!(e1.to_string(), e2.to_string());
            }
        }
        assert!(model.check_feature_major(&[0.0; 3], 1).is_err());
    }
}

#[test]
fn columns_score_as_rows_do_chunk_by_chunk_and_a_fault_names_its_chunk() {
    use liveprofile_runtime::{COLUMN_CHUNK_ROWS, ColumnsError, InputError};
    let model = load_package(&bundled_models().join("user_tags/1")).unwrap();
    let w = model.width();
    let golden: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(model.dir().join("golden.json")).unwrap()).unwrap();
    let rows: Vec<Vec<f32>> = serde_json::from_value(golden["inputs"]["features"].clone()).unwrap();
    let n = COLUMN_CHUNK_ROWS + 3;
    let flat: Vec<f32> = (0..n).flat_map(|i| rows[(i * 7 + 2) % rows.len()].clone()).collect();
    let mut columns: Vec<Vec<f32>> = (0..w).map(|f| (0..n).map(|r| flat[r * w + f]).collect()).collect();
    let scored = model.score_columns(&columns).unwrap();
    let whole = model.score(&flat, n).unwrap();
    let mut c = 0;
    for o in &whole.outputs {
        for j in 0..o.width {
            let expected: Vec<u32> = (0..n).map(|r| o.values[r * o.width + j].to_bits()).collect();
            assert_eq!(scored[c + j].iter().map(|v| v.to_bits()).collect::<Vec<_>>(), expected, "column {}", c + j);
        }
        c += o.width;
    }
    assert_eq!(scored.len(), model.output_columns().len());
    // A fault in the second chunk names the chunk and the row within it.
    columns[0][COLUMN_CHUNK_ROWS + 1] = f32::NAN;
    let e = model.score_columns(&columns).unwrap_err();
    assert!(
        matches!(
            &e,
            ColumnsError::Rows {
                first_row: COLUMN_CHUNK_ROWS,
                source: ScoreError::Input(InputError::NotFinite { row: 1, .. })
            }
        ),
        "{e}"
    );
    assert!(e.to_string().starts_with(&format!("rows from {COLUMN_CHUNK_ROWS}: ")), "{e}");
    // No rows: no scores. Columns that are not one per feature, or of unequal lengths, are
    // refused with what is wrong (not a panic, nor an empty answer).
    let empty = vec![Vec::new(); w];
    assert_eq!(model.score_columns(&empty).unwrap(), vec![Vec::<f32>::new(); model.output_columns().len()]);
    let e = model.score_columns(&[]).unwrap_err();
    assert!(matches!(e, ColumnsError::ColumnCount { got: 0, expected } if expected == w), "{e}");
    assert_eq!(
        model.score_columns(&columns[1..]).unwrap_err().to_string(),
        format!("{} feature columns given, the model takes {w} features", w - 1)
    );
    columns[5].pop();
    assert_eq!(
        model.score_columns(&columns).unwrap_err().to_string(),
        format!("feature column 5 has {} rows, column 0 has {n}", n - 1)
    );
}

#[test]
fn drift_reference_is_checked_by_checksum_and_against_the_model() {
    let dir = tempfile::tempdir().unwrap();
    // The template carries a reference, checked and kept.
    let ok = load_package(&publish(dir.path(), "m", 1, |_| {})).unwrap();
    let reference = ok.drift_reference().expect("the bundled package has a drift reference");
    assert_eq!(reference.features.len(), ok.width());
    assert_eq!(reference.outputs.len(), ok.output_columns().len());
    // A reference changed after publication: refused by its checksum.
    let tampered = publish(dir.path(), "m", 2, |d| {
        edit_json(&d.join("drift_reference.json"), |r| {
            let n = r["features"][0]["counts"][0].as_u64().unwrap();
            r["features"][0]["counts"][0] = (n + 1).into();
        })
    });
    let err = load_package(&tampered).unwrap_err();
    assert!(matches!(err, PackageError::FileChecksum { .. }), "{err}");
    assert!(err.to_string().starts_with("drift_reference.json sha256 is "), "{err}");
    // With the checksum made to fit, the counts no longer add up: refused by content.
    let inconsistent = publish(dir.path(), "m", 3, |d| {
        let path = d.join("drift_reference.json");
        edit_json(&path, |r| {
            let n = r["features"][0]["counts"][0].as_u64().unwrap();
            r["features"][0]["counts"][0] = (n + 1).into();
        });
        let sum = liveprofile_runtime::package::sha256_hex(&std::fs::read(&path).unwrap());
        edit_manifest(d, |m| m["drift_reference"]["sha256"] = sum.into());
    });
    let err = load_package(&inconsistent).unwrap_err().to_string();
    assert!(
        err.starts_with("drift_reference.json: drift reference, column \"Administrative\": counts add up to"),
        "{err}"
    );
    // A package without one (as published before references existed) loads without drift.
    let without = publish(dir.path(), "m", 4, |d| {
        std::fs::remove_file(d.join("drift_reference.json")).unwrap();
        edit_manifest(d, |m| {
            m.as_object_mut().unwrap().remove("drift_reference");
        });
    });
    assert!(load_package(&without).unwrap().drift_reference().is_none());
    // A manifest that names a missing reference is refused.
    let missing = publish(dir.path(), "m", 5, |d| std::fs::remove_file(d.join("drift_reference.json")).unwrap());
    let err = load_package(&missing).unwrap_err().to_string();
    assert!(err.contains("drift_reference.json") && err.contains("No such file"), "{err}");
}
