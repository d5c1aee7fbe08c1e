//! The prediction log's own cost: rows per second of one writer thread turning records
//! into Parquet files, and the CPU time per row of offering them (the calling thread) and of
//! writing them (the rest of the process). The records are the bundled conversion model's
//! golden rows (real feature vectors, 222 values), varied per row.
//!
//!   cargo run --release -p liveprofile-predlog --example writer_throughput -- [ROWS] [MODEL_DIR]
//!
//! Defaults: 500,000 rows, `models/conversion/1`. Files go to a temporary folder, removed
//! at the end.

use liveprofile_predlog::{LogConfig, PredictionLog, PredictionRecord, RowOutputs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// CPU time so far of the whole process (`/proc/self/stat`) or of the calling thread
/// (`/proc/thread-self/stat`), seconds (user + system).
fn cpu_seconds(of: &str) -> f64 {
    let stat = std::fs::read_to_string(of).expect("stat file");
    // Fields after the command name (which may hold spaces, inside parentheses).
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: f64 = fields[11].parse::<f64>().expect("utime") + fields[12].parse::<f64>().expect("stime");
    ticks / 100.0
}

fn main() {
    let mut args = std::env::args().skip(1);
    let rows: usize = args.next().map_or(500_000, |a| a.parse().expect("ROWS is a number"));
    let dir = PathBuf::from(args.next().unwrap_or_else(|| "models/conversion/1".into()));
    let model = Arc::new(liveprofile_runtime::load_package(&dir).expect("model package"));
    let golden: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("golden.json")).expect("golden.json")).expect("golden JSON");
    let inputs: Vec<Vec<f32>> = golden["inputs"]["features"]
        .as_array()
        .expect("golden features")
        .iter()
        .map(|row| row.as_array().expect("row").iter().map(|v| v.as_f64().expect("number") as f32).collect())
        .collect();
    let out = tempfile::tempdir().expect("temporary folder");
    let mut config = LogConfig::new(out.path());
    config.queue_rows = rows;
    config.queue_bytes = usize::MAX;
    let log = PredictionLog::open(config).expect("log");
    // Every row its own: the golden row's non-zero values scaled by up to 10%, so the
    // compressor sees no repeated rows (zeros stay zeros, as in real profiles). Made before
    // the clock starts, as a request holds them before it offers its records.
    let width = model.width();
    let features: Vec<f32> = (0..rows)
        .flat_map(|k| {
            inputs[k % inputs.len()]
                .iter()
                .enumerate()
                .map(move |(j, &v)| v * (1.0 + ((k * 31 + j * 7) % 97) as f32 / 1000.0))
        })
        .collect();
    let texts: Vec<[String; 3]> = (0..rows)
        .map(|k| [format!("bench-{k}"), format!("user-{}", k % 10_000), format!("room-{}", k % 300)])
        .collect();
    let outputs = [0.03f32];
    // Offered in requests of one row, as the service does, while the writer runs.
    let (cpu0, offering0, t0) = (cpu_seconds("/proc/self/stat"), cpu_seconds("/proc/thread-self/stat"), Instant::now());
    for (k, [request_id, user_id, room_id]) in texts.iter().enumerate() {
        log.offer(&[PredictionRecord {
            request_id,
            time_ms: 1_796_000_000_000 + k as i64,
            as_of_ms: Some(1_796_000_000_000 + k as i64),
            api: "v1.ScoreConversion",
            user_id,
            platform: "douyin",
            room_id,
            model: &model,
            arm: "stable",
            experiment: "",
            experiment_arm: "",
            features: &features[k * width..(k + 1) * width],
            outputs: RowOutputs::Values(&outputs),
            queue_us: 120,
            compute_us: 14,
        }]);
    }
    let offering = cpu_seconds("/proc/thread-self/stat") - offering0;
    let stats = log.close();
    let (cpu, wall) = (cpu_seconds("/proc/self/stat") - cpu0, t0.elapsed().as_secs_f64());
    assert_eq!(stats.rows_written, rows as u64, "every row written");
    let bytes: u64 = liveprofile_predlog::log_files(out.path())
        .expect("log files")
        .iter()
        .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
        .sum();
    println!(
        "{rows} rows in {wall:.3} s: {:.0} rows/s, {:.2} us CPU per row ({:.2} offering, {:.2} writing), \
         {:.1} bytes per row on disk ({} files)",
        rows as f64 / wall,
        cpu * 1e6 / rows as f64,
        offering * 1e6 / rows as f64,
        (cpu - offering) * 1e6 / rows as f64,
        bytes as f64 / rows as f64,
        stats.files_published
    );
}
