//! Shifted traffic: a reference from one simulated population; another population of the
//! same settings (another seed) flags nothing; the same traffic with the users of one
//! platform doubled flags that platform's features and nothing unrelated.

use arrow::array::{Array, AsArray};
use arrow::datatypes::Float32Type;
use liveprofile_drift::{ColumnReference, DEFAULT_BINS, DriftReport, LiveHistograms, Reference};
use liveprofile_events::DAY_MS;
use liveprofile_features::{EventSet, UserTableOptions, user_schema, user_table};
use liveprofile_simulator::{DEFAULT_START_MS, SimConfig, Simulator};

const USERS: u32 = 12_000;
const DAYS: u32 = 14;

/// Rows of the user table of a simulated population: (main platform, features).
fn population(seed: u64) -> Vec<(String, Vec<f32>)> {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.parquet");
    let sim = Simulator::new(SimConfig { users: USERS, days: DAYS, seed, start_ms: DEFAULT_START_MS }).unwrap();
    sim.write(&events, &|_| {}).unwrap();
    let set = EventSet::load(&events).unwrap();
    let cutoff_ms = DEFAULT_START_MS + i64::from(DAYS) * DAY_MS - 1;
    let table = user_table(&set, UserTableOptions { cutoff_ms, label_window_ms: None }).unwrap();
    let schema = user_schema();
    let mut rows = Vec::new();
    for b in &table.batches {
        let platform = b.column_by_name("main_platform").unwrap().as_string::<i32>().clone();
        let cols: Vec<_> = schema
            .features
            .iter()
            .map(|f| b.column_by_name(&f.name).unwrap().as_primitive::<Float32Type>().clone())
            .collect();
        for r in 0..b.num_rows() {
            rows.push((platform.value(r).to_owned(), cols.iter().map(|c| c.value(r)).collect()));
        }
        assert!(cols.iter().all(|c| c.null_count() == 0));
    }
    rows
}

fn reference(rows: &[(String, Vec<f32>)]) -> Reference {
    let schema = user_schema();
    let features = schema
        .features
        .iter()
        .enumerate()
        .map(|(k, f)| {
            let column: Vec<f32> = rows.iter().map(|(_, v)| v[k]).collect();
            ColumnReference::from_values(&f.name, &column, DEFAULT_BINS)
        })
        .collect();
    Reference::new("simulated users, seed 1", schema.hash, DEFAULT_BINS, features, vec![]).unwrap()
}

fn report<'a>(reference: &Reference, rows: impl IntoIterator<Item = &'a (String, Vec<f32>)>) -> DriftReport {
    let mut live = LiveHistograms::empty(reference);
    for (_, features) in rows {
        live.add_row(reference, features, &[]).unwrap();
    }
    DriftReport::new("users", 1, "simulated", reference, &live)
}

#[test]
fn shifted_traffic_flags_the_platform_features_and_unshifted_none() {
    let reference = reference(&population(1));
    let live = population(2);

    let same = report(&reference, &live);
    let worst = same.ranked()[0];
    assert!(
        same.flagged_features.is_empty(),
        "unshifted traffic flagged {:?} (worst {} {})",
        same.flagged_features,
        worst.name,
        worst.psi
    );

    // Douyin's users doubled: the users of another population whose main platform is
    // douyin join the traffic.
    let more = population(3);
    let extra: Vec<&(String, Vec<f32>)> = more.iter().filter(|(p, _)| p == "douyin").collect();
    let douyin = live.iter().filter(|(p, _)| p == "douyin").count();
    assert!(extra.len() * 10 > douyin * 9 && extra.len() * 10 < douyin * 11, "{} against {douyin}", extra.len());
    let shifted = report(&reference, live.iter().chain(extra));
    // Douyin's share of users goes from about 36% to 53%: its 28-day activity moves
    // past the moderate level, its 7-day activity just under it; no other platform's
    // features come near.
    assert_eq!(shifted.flagged_features, vec!["douyin_visits_28d", "douyin_watch_min_28d", "douyin_interactions_28d"]);
    let ranked = shifted.ranked();
    assert!(ranked[..6].iter().all(|c| c.name.starts_with("douyin_") && c.psi > 0.08), "{:?}", &ranked[..6]);
    let unrelated: Vec<_> = ranked.iter().filter(|c| !c.name.starts_with("douyin_") && c.psi > 0.05).collect();
    assert!(unrelated.is_empty(), "{unrelated:?}");
}
