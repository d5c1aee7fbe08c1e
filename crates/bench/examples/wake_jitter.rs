//! How late this machine wakes a sleeping thread, with nothing of liveprofile running: the
//! floor under any latency an open-loop run can measure here. Each of `--threads` threads
//! (default: one per core) sleeps 100 us over and over for `--seconds` (default 10) and
//! records by how much each wake-up came after the sleep's end.
//!
//! `cargo run --release -p liveprofile-bench --example wake_jitter -- --seconds 10`
//!
//! Prints, per thread and for all, the percentiles of the lateness and the wake-ups more
//! than 1 ms late (count and per second), then one JSON line.

use std::time::{Duration, Instant};

const SLEEP: Duration = Duration::from_micros(100);

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

fn parse<T: std::str::FromStr>(name: &str, default: T) -> T {
    match arg(name) {
        None => default,
        Some(v) => v.parse().unwrap_or_else(|_| {
            eprintln!("{name}: not a number: {v:?}");
            std::process::exit(2)
        }),
    }
}

/// Microseconds by which each wake-up came late, over `seconds`.
fn sleeper(seconds: f64) -> Vec<u32> {
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    let mut late = Vec::with_capacity((seconds * 12_000.0) as usize);
    loop {
        let before = Instant::now();
        if before >= end {
            return late;
        }
        std::thread::sleep(SLEEP);
        let over = before.elapsed().saturating_sub(SLEEP);
        late.push(over.as_micros().min(u128::from(u32::MAX)) as u32);
    }
}

/// Percentiles of the lateness of one thread's wake-ups (or all threads'), microseconds.
#[derive(serde::Serialize)]
struct Lateness {
    wakeups: usize,
    p50_us: u32,
    p99_us: u32,
    p99_9_us: u32,
    p99_99_us: u32,
    max_us: u32,
    over_1ms: usize,
    over_1ms_per_s: f64,
}

fn summary(mut late: Vec<u32>, seconds: f64) -> Lateness {
    late.sort_unstable();
    let pct = |p: f64| late.get(((p / 100.0) * (late.len().max(1) - 1) as f64).round() as usize).copied().unwrap_or(0);
    let over_1ms = late.iter().filter(|&&v| v > 1_000).count();
    Lateness {
        wakeups: late.len(),
        p50_us: pct(50.0),
        p99_us: pct(99.0),
        p99_9_us: pct(99.9),
        p99_99_us: pct(99.99),
        max_us: late.last().copied().unwrap_or(0),
        over_1ms,
        over_1ms_per_s: over_1ms as f64 / seconds,
    }
}

fn main() {
    let seconds: f64 = parse("--seconds", 10.0);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads: usize = parse("--threads", cores);
    if !(seconds > 0.0 && seconds.is_finite()) || threads == 0 || threads > 1024 {
        eprintln!("--seconds must be positive and --threads 1-1024");
        std::process::exit(2);
    }
    let handles: Vec<_> = (0..threads).map(|_| std::thread::spawn(move || sleeper(seconds))).collect();
    let per_thread: Vec<Vec<u32>> = handles.into_iter().map(|h| h.join().expect("sleeper thread")).collect();
    let all = summary(per_thread.concat(), seconds);
    let per_thread: Vec<Lateness> = per_thread.into_iter().map(|late| summary(late, seconds)).collect();
    for (i, l) in per_thread.iter().enumerate() {
        println!(
            "thread {i}: {} wake-ups, late p50 {} / p99 {} / p99.9 {} / p99.99 {} / max {} us; over 1 ms: {} ({:.2}/s)",
            l.wakeups, l.p50_us, l.p99_us, l.p99_9_us, l.p99_99_us, l.max_us, l.over_1ms, l.over_1ms_per_s
        );
    }
    let report = serde_json::json!({"seconds": seconds, "threads": threads, "sleep_us": 100, "all": all, "per_thread": per_thread});
    println!("{report}");
}
