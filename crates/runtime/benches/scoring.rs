//! In-process scoring speed of each bundled model, side by side with onnxruntime (from
//! Python, single thread) in the same run: single-row latency (p50, p99) and batch-of-1024
//! throughput; one row as the server scores it (a batch of one); and hot-swap time (folder
//! renamed into place -> new version served).
//! Three rounds, alternating the two sides; each reports its best round.
//! Catches regressions in plan compilation (node count), state reuse and input handling.
//!
//! `cargo bench -p liveprofile-runtime --bench scoring` (needs training/.venv for the peer;
//! without it the peer columns are left empty). MODELS=a,b limits the models.

use liveprofile_runtime::{ModelRepository, RepositoryConfig, load_package};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const CALLS: usize = 20_000;
const BATCH_REPS: usize = 300;
const ROUNDS: usize = 3;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn peer(model: &Path, width: usize) -> Option<serde_json::Value> {
    let python = repo_root().join("training/.venv/bin/python");
    if !python.exists() {
        return None;
    }
    let out = Command::new(python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/ort_peer.py"))
        .args([model.display().to_string(), width.to_string(), CALLS.to_string(), BATCH_REPS.to_string()])
        .output()
        .ok()?;
    serde_json::from_slice(&out.stdout).ok()
}

fn rows(width: usize, n: usize) -> Vec<f32> {
    // Deterministic 0/1 values: valid for numeric and for category features alike.
    (0..width * n).map(|i| ((i * 2_654_435_761) >> 7 & 1) as f32).collect()
}

fn swap_time(template: &Path) -> Duration {
    let dir = tempfile::tempdir().expect("temp dir");
    let copy = |version: u32| {
        let staging = dir.path().join(format!(".staging-{version}"));
        std::fs::create_dir_all(&staging).unwrap();
        for e in std::fs::read_dir(template).unwrap().flatten() {
            std::fs::copy(e.path(), staging.join(e.file_name())).unwrap();
        }
        let mpath = staging.join("manifest.json");
        let mut m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&mpath).unwrap()).unwrap();
        m["name"] = "m".into();
        m["version"] = version.into();
        std::fs::write(&mpath, m.to_string()).unwrap();
        staging
    };
    let first = copy(1);
    std::fs::create_dir_all(dir.path().join("m")).unwrap();
    std::fs::rename(first, dir.path().join("m/1")).unwrap();
    let mut config = RepositoryConfig::new(dir.path());
    config.rescan_interval = Duration::from_secs(60);
    let repo = ModelRepository::open(config).unwrap();
    let _watch = repo.watch().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let mut times = Vec::new();
    for v in 2..=6u32 {
        let staged = copy(v);
        let start = Instant::now();
        std::fs::rename(staged, dir.path().join(format!("m/{v}"))).unwrap();
        while repo.route("m", "u").unwrap().model.version() != v {
            std::thread::sleep(Duration::from_micros(200));
        }
        times.push(start.elapsed());
    }
    times.sort();
    times[times.len() / 2]
}

/// p50 and p99 in microseconds of `CALLS` one-row calls over the rows of `data` in turn.
fn single_row_latency<T>(data: &[f32], w: usize, mut score: impl FnMut(&[f32]) -> T) -> (f64, f64) {
    let mut times = Vec::with_capacity(CALLS);
    for i in 0..CALLS {
        let r = &data[(i % 1024) * w..(i % 1024 + 1) * w];
        let t = Instant::now();
        let s = score(r);
        times.push(t.elapsed());
        std::hint::black_box(s);
    }
    times.sort();
    (times[CALLS / 2].as_secs_f64() * 1e6, times[CALLS * 99 / 100].as_secs_f64() * 1e6)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("scoring: bench");
        return;
    }
    let only: Option<Vec<String>> = std::env::var("MODELS").ok().map(|m| m.split(',').map(str::to_owned).collect());
    let models = repo_root().join("models");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&models).unwrap().flatten().map(|e| e.path()).collect();
    names.sort();
    println!(
        "{:<24} {:>5} {:>10} {:>10} {:>10} {:>12} {:>12} {:>7} {:>14} {:>14} {:>7}",
        "model",
        "nodes",
        "tract p50",
        "tract p99",
        "ort p50",
        "p50 speedup",
        "p99 ort",
        "",
        "tract rows/s",
        "ort rows/s",
        "ratio"
    );
    for dir in names {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        if only.as_ref().is_some_and(|o| !o.contains(&name)) {
            continue;
        }
        let Some(version) = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
            .max()
        else {
            continue;
        };
        let pkg = dir.join(version.to_string());
        let model = load_package(&pkg).expect("package loads");
        let w = model.width();
        let data = rows(w, 1024);
        // Rounds alternate tract and onnxruntime so that a burst of load on this shared
        // machine hits both sides alike; each side reports its best round.
        let (mut p50, mut p99, mut rows_s) = (f64::INFINITY, f64::INFINITY, 0f64);
        let mut served_p50 = f64::INFINITY;
        let (mut op50, mut op99, mut orows): (Option<f64>, Option<f64>, Option<f64>) = (None, None, None);
        // The better of two optional figures (`pick` is f64::min or f64::max).
        let best = |a: Option<f64>, b: Option<f64>, pick: fn(f64, f64) -> f64| match (a, b) {
            (Some(a), Some(b)) => Some(pick(a, b)),
            (a, b) => a.or(b),
        };
        for _ in 0..ROUNDS {
            // The single-row plan (`LoadedModel::score`), then one row as the server scores
            // it (a batch of one: the one-row plan when it gives the symbolic plan's bits,
            // else the symbolic plan).
            let (single_p50, single_p99) = single_row_latency(&data, w, |r| model.score(r, 1).unwrap());
            p50 = p50.min(single_p50);
            p99 = p99.min(single_p99);
            served_p50 = served_p50.min(single_row_latency(&data, w, |r| model.score_batched(r, 1).unwrap()).0);
            // Batches as the server and the batch scorer run them (256-row chunks on the
            // fixed-size plan when it matches the symbolic plan's bits).
            model.score_batched(&data, 1024).unwrap();
            let t = Instant::now();
            for _ in 0..BATCH_REPS {
                std::hint::black_box(model.score_batched(&data, 1024).unwrap());
            }
            rows_s = rows_s.max(1024.0 * BATCH_REPS as f64 / t.elapsed().as_secs_f64());
            let ort = peer(&pkg.join("model.onnx"), w);
            let f = |k: &str| ort.as_ref().and_then(|o| o[k].as_f64());
            op50 = best(op50, f("single_p50_us"), f64::min);
            op99 = best(op99, f("single_p99_us"), f64::min);
            orows = best(orows, f("batch1024_rows_per_s"), f64::max);
        }
        let fmt = |v: Option<f64>, d: usize| v.map_or("-".to_owned(), |v| format!("{v:.d$}"));
        println!(
            "{:<24} {:>5} {:>8.2}us {:>8.2}us {:>8}us {:>11}x {:>10}us {:>7} {:>14.0} {:>14} {:>6}x",
            name,
            model.plan_nodes(),
            p50,
            p99,
            fmt(op50, 2),
            fmt(op50.map(|o| o / p50), 1),
            fmt(op99, 2),
            "",
            rows_s,
            fmt(orows, 0),
            fmt(orows.map(|o| rows_s / o), 2),
        );
        println!(
            "{:<24} one row as served (a batch of one, {} plan): p50 {served_p50:.2}us",
            "",
            if model.has_one_row_plan() { "one-row" } else { "symbolic" }
        );
        println!("{:<24} hot swap (rename -> served), median of 5: {:?}", "", swap_time(&pkg));
    }
}
