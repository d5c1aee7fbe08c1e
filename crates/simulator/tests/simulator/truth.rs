//! The ground-truth probabilities agree with the labels the feature pipeline computes
//! from the simulated future: for every tag, the mean true probability equals the label
//! rate within four standard errors.

use arrow::array::{Float64Array, Int8Array, StringArray};
use liveprofile_events::DAY_MS;
use liveprofile_features::tags::Tag;
use liveprofile_features::{EventSet, UserTableOptions, build_user_table};
use liveprofile_simulator::{DEFAULT_START_MS, SimConfig, Simulator};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::collections::HashMap;

fn read(path: &std::path::Path) -> Vec<arrow::array::RecordBatch> {
    let file = std::fs::File::open(path).unwrap();
    ParquetRecordBatchReaderBuilder::try_new(file).unwrap().build().unwrap().map(|b| b.unwrap()).collect()
}

#[test]
fn true_tag_probabilities_match_label_rates() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.parquet");
    let sim = Simulator::new(SimConfig { users: 30_000, days: 14, seed: 5, start_ms: DEFAULT_START_MS }).unwrap();
    let summary = sim.write(&events, &|_| {}).unwrap();

    let set = EventSet::load(&events).unwrap();
    assert!(summary.events > 1 << 20, "several row groups, read in parallel");
    assert_eq!((set.rows, set.accepted()), (summary.events, summary.events), "every row read back");
    let cutoff_ms = DEFAULT_START_MS + 7 * DAY_MS - 1;
    let table = dir.path().join("users.parquet");
    build_user_table(&set, UserTableOptions { cutoff_ms, label_window_ms: Some(7 * DAY_MS) }, &table).unwrap();

    let mut truth: HashMap<String, Vec<f64>> = HashMap::new();
    for b in read(&summary.truth_path) {
        let ids = b.column_by_name("user_id").unwrap().as_any().downcast_ref::<StringArray>().unwrap();
        let cols: Vec<&Float64Array> = Tag::ALL
            .iter()
            .map(|t| {
                b.column_by_name(&format!("p_{}", t.name())).unwrap().as_any().downcast_ref::<Float64Array>().unwrap()
            })
            .collect();
        for i in 0..b.num_rows() {
            truth.insert(ids.value(i).to_owned(), cols.iter().map(|c| c.value(i)).collect());
        }
    }
    assert_eq!(truth.len(), 30_000);

    let mut n = 0.0;
    let mut label_sum = vec![0.0; Tag::ALL.len()];
    let mut p_sum = vec![0.0; Tag::ALL.len()];
    let mut var_sum = vec![0.0; Tag::ALL.len()];
    for b in read(&table) {
        let ids = b.column_by_name("user_id").unwrap().as_any().downcast_ref::<StringArray>().unwrap();
        for i in 0..b.num_rows() {
            let p = &truth[ids.value(i)];
            n += 1.0;
            for (k, tag) in Tag::ALL.iter().enumerate() {
                let col = b.column_by_name(&format!("label_{}", tag.name())).unwrap();
                label_sum[k] += f64::from(col.as_any().downcast_ref::<Int8Array>().unwrap().value(i));
                p_sum[k] += p[k];
                var_sum[k] += p[k] * (1.0 - p[k]);
            }
        }
    }
    assert!(n > 25_000.0, "users with history: {n}");
    for (k, tag) in Tag::ALL.iter().enumerate() {
        let diff = (label_sum[k] - p_sum[k]).abs();
        let se = var_sum[k].sqrt();
        assert!(
            diff <= 4.0 * se,
            "{}: label rate {:.4} vs mean true probability {:.4} ({} standard errors)",
            tag.name(),
            label_sum[k] / n,
            p_sum[k] / n,
            diff / se
        );
    }
}
