//! The seed's figures, measured on the simulator's own Parquet output for 100k users x
//! 7 days, seed 7 (the calibration run named in the foundation issue).

use liveprofile_events::{EventReader, Platform};
use liveprofile_simulator::{CalibrationReport, CalibrationStats, DEFAULT_START_MS, SimConfig, Simulator};
use std::sync::OnceLock;

fn calibration_run() -> &'static CalibrationReport {
    static REPORT: OnceLock<CalibrationReport> = OnceLock::new();
    REPORT.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.parquet");
        let sim = Simulator::new(SimConfig { users: 100_000, days: 7, seed: 7, start_ms: DEFAULT_START_MS }).unwrap();
        let summary = sim.write(&path, &|_| {}).unwrap();
        // Measure on what was written, read back from the file.
        let mut stats = CalibrationStats::default();
        let mut reader = EventReader::open(&path).unwrap();
        let mut rows = 0;
        while let Some(batch) = reader.next_batch().unwrap() {
            assert!(batch.rejected.is_empty(), "simulator wrote invalid rows: {:?}", &batch.rejected[..1]);
            for e in &batch.events {
                stats.observe(&e.user_id, e.platform, e.kind, &e.category, e.value);
            }
            rows += batch.events.len() as u64;
        }
        assert_eq!(rows, summary.events);
        let report = stats.report();
        assert_eq!(report, summary.calibration, "figures printed by the run are those of the file");
        report
    })
}

fn rate(p: Platform) -> f64 {
    100.0 * calibration_run().order_rate[p.index()]
}

#[test]
fn taobao_order_rate_per_visit_is_3_2_percent() {
    let r = rate(Platform::Taobao);
    assert!((r - 3.2).abs() <= 0.4, "taobao {r:.2}%");
}

#[test]
fn douyin_order_rate_per_visit_is_4_5_percent() {
    let r = rate(Platform::Douyin);
    assert!((r - 4.5).abs() <= 0.4, "douyin {r:.2}%");
}

#[test]
fn kuaishou_order_rate_lies_between_taobao_and_douyin() {
    let k = rate(Platform::Kuaishou);
    assert!(rate(Platform::Taobao) < k && k < rate(Platform::Douyin), "kuaishou {k:.2}%");
}

#[test]
fn beauty_watch_time_is_2_8_min_on_taobao_and_6_5_on_douyin() {
    let report = calibration_run();
    let tb = report.beauty_watch_min[Platform::Taobao.index()];
    let dy = report.beauty_watch_min[Platform::Douyin.index()];
    assert!((tb - 2.8).abs() <= 0.3, "taobao beauty {tb:.2} min");
    assert!((dy - 6.5).abs() <= 0.5, "douyin beauty {dy:.2} min");
}

#[test]
fn twelve_to_fifteen_percent_of_users_are_active_on_two_or_more_platforms() {
    let share = 100.0 * calibration_run().multi_platform_share;
    assert!((12.0..=15.0).contains(&share), "multi-platform share {share:.2}%");
}

#[test]
fn same_seed_gives_the_same_file_whatever_the_thread_count() {
    let dir = tempfile::tempdir().unwrap();
    let config = SimConfig { users: 3_000, days: 3, seed: 11, start_ms: DEFAULT_START_MS };
    let run = |name: &str, threads: usize| {
        let path = dir.path().join(name);
        let sim = Simulator::new(config.clone()).unwrap();
        rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap().install(|| {
            sim.write(&path, &|_| {}).unwrap();
        });
        EventReader::open(&path).unwrap().read_all().unwrap().events
    };
    let a = run("a.parquet", 1);
    let b = run("b.parquet", 2);
    assert!(!a.is_empty());
    assert_eq!(a, b);
    // The ground truth beside them too, to the last bit (its products once followed a hash
    // map's order).
    let truth = |name: &str| std::fs::read(dir.path().join(name)).unwrap();
    assert_eq!(truth("a.truth.parquet"), truth("b.truth.parquet"));
    let other = Simulator::new(SimConfig { seed: 12, ..config.clone() }).unwrap();
    let path = dir.path().join("c.parquet");
    other.write(&path, &|_| {}).unwrap();
    assert_ne!(EventReader::open(&path).unwrap().read_all().unwrap().events, a);
}

#[test]
fn bad_configuration_is_refused() {
    let err = Simulator::new(SimConfig { users: 0, days: 7, seed: 1, start_ms: DEFAULT_START_MS }).unwrap_err();
    assert_eq!(err.to_string(), "invalid configuration: --users must be at least 1");
    let err = Simulator::new(SimConfig { users: 10, days: 0, seed: 1, start_ms: DEFAULT_START_MS }).unwrap_err();
    assert_eq!(err.to_string(), "invalid configuration: --days must be between 1 and 3650");
}
