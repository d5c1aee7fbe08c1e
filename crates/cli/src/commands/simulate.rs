//! `liveprofile simulate`.

use anyhow::Context;
use clap::Args;
use liveprofile_experiments::Experiment;
use liveprofile_simulator::{DEFAULT_START_MS, Effect, PlantedExperiment, SimConfig, Simulator};
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
    /// Experiment definition (TOML) to plant: users are assigned to its arms with the
    /// server's hash, and the exposures the server would have logged (each user's first
    /// room entry in the target while it runs) are written beside the events as
    /// `*.exposures.parquet`.
    #[arg(long, value_name = "FILE")]
    experiment: Option<PathBuf>,
    /// An effect planted in an arm of --experiment, on the arm's visits in the target while
    /// it runs: ARM:order_rate=FACTOR multiplies the order probability (e.g.
    /// treatment:order_rate=1.15). Repeatable.
    #[arg(long = "effect", value_name = "ARM:KEY=FACTOR", requires = "experiment")]
    effects: Vec<String>,
}

/// The experiment to plant, checked with its effects.
fn planted(args: &SimulateArgs) -> anyhow::Result<Option<PlantedExperiment>> {
    let Some(path) = &args.experiment else { return Ok(None) };
    let text = std::fs::read_to_string(path).with_context(|| format!("--experiment {}", path.display()))?;
    let experiment = Experiment::parse(&text).with_context(|| format!("--experiment {}", path.display()))?;
    let effects = args.effects.iter().map(|e| Effect::parse(e)).collect::<Result<Vec<_>, _>>()?;
    Ok(Some(PlantedExperiment::new(experiment, effects)?))
}

/// Runs the simulation and prints the calibration figures measured on the output.
pub fn run(args: SimulateArgs) -> anyhow::Result<()> {
    let planted = planted(&args)?;
    let mut sim =
        Simulator::new(SimConfig { users: args.users, days: args.days, seed: args.seed, start_ms: args.start_ms })?;
    if let Some(x) = planted {
        let e = x.experiment();
        let end = args.start_ms + i64::from(args.days) * liveprofile_events::DAY_MS;
        if e.end_ms <= args.start_ms || e.start_ms >= end {
            eprintln!("warning: experiment {} runs outside the simulated days: nobody is exposed", e.name);
        }
        sim = sim.with_experiment(x);
    }
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
    if let (Some(path), Some(x)) = (&summary.exposures_path, sim.planted()) {
        let arms: Vec<String> = summary
            .exposed_per_arm
            .iter()
            .enumerate()
            .map(|(i, (arm, n))| format!("{arm} {n} (order rate x{})", x.order_factor(i)))
            .collect();
        outln!(
            "experiment {}: exposed users per arm: {}; exposures: {}",
            x.experiment().name,
            arms.join(", "),
            path.display()
        );
    }
    outln!("{}", summary.calibration);
    Ok(())
}
