//! Throughput of the foundation pipeline on one machine, in one run: the simulator
//! writing about 10 million events to Parquet, then the offline feature driver reading
//! them back into a user table and into conversion examples. Catches regressions in the
//! simulator's generation and writing and in the feature drivers' decoding and scans.
//!
//! `cargo bench -p liveprofile-simulator --bench pipeline` (USERS=n to change the size).

use liveprofile_events::DAY_MS;
use liveprofile_features::{EventSet, ExampleOptions, UserTableOptions, build_examples, build_user_table};
use liveprofile_simulator::{DEFAULT_START_MS, SimConfig, Simulator};
use std::time::Instant;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("pipeline: bench");
        return;
    }
    let users: u32 = std::env::var("USERS").ok().and_then(|v| v.parse().ok()).unwrap_or(270_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let events = dir.path().join("events.parquet");
    let sim = Simulator::new(SimConfig { users, days: 7, seed: 7, start_ms: DEFAULT_START_MS }).expect("config");

    let t = Instant::now();
    let summary = sim.write(&events, &|_| {}).expect("simulate");
    let sim_s = t.elapsed().as_secs_f64();
    println!(
        "simulate        {:>11} events  {:>7.2} s  {:>10.0} events/s",
        summary.events,
        sim_s,
        summary.events as f64 / sim_s
    );

    let t = Instant::now();
    let set = EventSet::load(&events).expect("load");
    let table = dir.path().join("users.parquet");
    let n = build_user_table(
        &set,
        UserTableOptions { cutoff_ms: DEFAULT_START_MS + 6 * DAY_MS, label_window_ms: None },
        &table,
    )
    .expect("build");
    let build_s = t.elapsed().as_secs_f64();
    println!(
        "features build  {:>11} events  {:>7.2} s  {:>10.0} events/s  ({n} users)",
        set.rows,
        build_s,
        set.rows as f64 / build_s
    );

    let t = Instant::now();
    let set = EventSet::load(&events).expect("load");
    let out = dir.path().join("conversion.parquet");
    let (examples, _) = build_examples(&set, ExampleOptions::default(), &out).expect("examples");
    let ex_s = t.elapsed().as_secs_f64();
    println!(
        "features examples {:>9} events  {:>7.2} s  {:>10.0} events/s  ({examples} examples)",
        set.rows,
        ex_s,
        set.rows as f64 / ex_s
    );
}
