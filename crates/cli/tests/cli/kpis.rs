//! `liveprofile kpis` on simulator output reproduces the simulator's calibration figures;
//! `liveprofile simulate --experiment --effect` plants an experiment and refuses bad flags.

use liveprofile_events::{EventReader, Platform};
use liveprofile_experiments::{KpiReport, Metric, read_exposures};
use liveprofile_simulator::CalibrationStats;
use std::path::Path;
use std::process::{Command, Output};

fn liveprofile(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_liveprofile")).args(args).current_dir(dir).output().unwrap()
}

fn ok(out: &Output) {
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

#[test]
fn kpis_of_simulated_events_equal_the_calibration_figures() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(&liveprofile(&["simulate", "--users", "3000", "--days", "3", "--seed", "5", "--out", "events.parquet"], d));
    ok(&liveprofile(&["kpis", "--events", "events.parquet", "--out", "kpis", "--strict"], d));
    let report: KpiReport = serde_json::from_slice(&std::fs::read(d.join("kpis/kpis.json")).unwrap()).unwrap();
    assert!(d.join("kpis/kpis.html").exists());

    let mut stats = CalibrationStats::default();
    let mut reader = EventReader::open(d.join("events.parquet")).unwrap();
    while let Some(b) = reader.next_batch().unwrap() {
        for e in &b.events {
            stats.observe(&e.user_id, e.platform, e.kind, &e.category, e.value);
        }
    }
    let cal = stats.report();
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1e-9);
    assert_eq!(report.events, cal.events);
    assert_eq!(report.users, cal.active_users);
    assert!(close(report.total.value(Metric::CrossPlatformRate).unwrap(), cal.multi_platform_share));
    for p in [Platform::Taobao, Platform::Douyin, Platform::Kuaishou] {
        let cell = report.cell(Some(p), None, None).unwrap();
        assert_eq!(cell.visits, cal.visits[p.index()], "{p}");
        assert!(close(cell.value(Metric::OrdersPerVisit).unwrap(), cal.order_rate[p.index()]), "{p}");
        // Every simulated visit has one entry and one leave, so watch minutes per visit of
        // beauty are the calibration's mean beauty watch time.
        let beauty = report.cell(Some(p), Some("beauty"), None).unwrap();
        let watch = beauty.value(Metric::WatchMinutesPerVisit).unwrap();
        assert!(close(watch, cal.beauty_watch_min[p.index()]), "{p}: {watch} vs {}", cal.beauty_watch_min[p.index()]);
    }
}

const EXPERIMENT: &str = r#"
name = "apparel-pilot"
salt = "apparel-pilot-1"
primary = "orders_per_visit"
start = "2026-11-03T00:00:00+08:00"
end = "2026-11-05T00:00:00+08:00"

[target]
categories = ["apparel"]

[[arms]]
name = "control"
share = 50

[[arms]]
name = "treatment"
share = 50
models = { conversion = 2 }
"#;

#[test]
fn simulate_plants_an_experiment_and_writes_its_exposures() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("pilot.toml"), EXPERIMENT).unwrap();
    let base = ["simulate", "--users", "500", "--days", "4", "--out", "ev.parquet", "--experiment", "pilot.toml"];
    let out = liveprofile(&[&base[..], &["--effect", "treatment:order_rate=1.15"]].concat(), d);
    ok(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("experiment apparel-pilot: exposed users per arm: control "), "{stdout}");
    let exposures = read_exposures(&d.join("ev.exposures.parquet")).unwrap();
    assert!(!exposures.is_empty() && exposures.iter().all(|x| x.experiment == "apparel-pilot"));

    for (effect, message) in [
        ("treatmnt:order_rate=1.15", "--effect \"treatmnt:order_rate=1.15\": experiment apparel-pilot has no arm"),
        ("treatment:watch_rate=1.1", "--effect \"treatment:watch_rate=1.1\": unknown effect"),
        ("treatment:order_rate=0", "must be a finite number above 0"),
        ("treatment:order_rate=nan", "must be a finite number above 0"),
        ("treatment=1.1", "expected ARM:KEY=FACTOR"),
    ] {
        let out = liveprofile(&[&base[..], &["--effect", effect]].concat(), d);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(message), "{effect}: {stderr}");
    }
    let out =
        liveprofile(&["simulate", "--users", "10", "--out", "x.parquet", "--effect", "treatment:order_rate=2"], d);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("--experiment"));
    std::fs::write(d.join("bad.toml"), EXPERIMENT.replace("share = 50\n\n[[arms]]", "share = 40\n\n[[arms]]")).unwrap();
    let out = liveprofile(&["simulate", "--users", "10", "--out", "x.parquet", "--experiment", "bad.toml"], d);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("--experiment bad.toml") && stderr.contains("shares"), "{stderr}");

    // Without an experiment, a stale exposures file beside the events is removed.
    ok(&liveprofile(&["simulate", "--users", "50", "--days", "2", "--out", "ev.parquet"], d));
    assert!(!d.join("ev.exposures.parquet").exists());
}
