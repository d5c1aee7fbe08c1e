//! `liveprofile simulate`.

use anyhow::Context;
use clap::Args;
use liveprofile_simulator::{DEFAULT_START_MS, SimConfig, Simulator};
use std::path::PathBuf;
use std::time::Instant;

/// Arguments of `liveprofile simulate`.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Number of users.
    #[arg(long, default_value_t = 10_000)]
    users: u32,
    /// Number of days.
    #[arg(long, default_value_t = 7)]
    days: u32,
    /// Random seed; the output is identical for the same seed.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// First day, as UTC milliseconds of a China-time midnight (default 2026-11-02).
    #[arg(long, default_value_t = DEFAULT_START_MS)]
    start_ms: i64,
    /// Event Parquet file to write; the ground truth goes beside it as `*.truth.parquet`.
    #[arg(long)]
    out: PathBuf,
}

/// Runs the simulation and prints the calibration figures measured on the output.
pub fn run(args: SimulateArgs) -> anyhow::Result<()> {
    let sim =
        Simulator::new(SimConfig { users: args.users, days: args.days, seed: args.seed, start_ms: args.start_ms })?;
    super::ensure_parent(&args.out)?;
    let bar = super::progress_bar(u64::from(args.users), "users");
    let started = Instant::now();
    let summary = sim
        .write(&args.out, &|done| bar.set_position(u64::from(done)))
        .with_context(|| format!("simulating into {}", args.out.display()))?;
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    outln!(
        "wrote {} events for {} users to {} ({:.1} s, {:.0} events/s); ground truth: {}",
        summary.events,
        summary.users,
        args.out.display(),
        secs,
        summary.events as f64 / secs,
        summary.truth_path.display()
    );
    outln!("{}", summary.calibration);
    Ok(())
}
