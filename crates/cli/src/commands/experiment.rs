//! `liveprofile experiment`: check a definition, analyse an experiment over event and
//! exposure files, export the exposures a server logged.

use clap::{Args, Subcommand};
use liveprofile_events::EventReader;
use liveprofile_experiments::{AnalysisOptions, Experiment, ExperimentOutcomes, read_exposures, write_exposures};
use std::path::PathBuf;

/// `liveprofile experiment ...`
#[derive(Debug, Subcommand)]
pub enum ExperimentCommand {
    /// Check a definition file and print what it does.
    Check {
        /// The definition (TOML).
        file: PathBuf,
    },
    /// Analyse an experiment over events and exposures: report.json, report.html and the
    /// per-user table users.parquet in the output folder.
    Report(ReportArgs),
    /// Export the exposures a server logged (from its profile data folder; the server must
    /// be stopped, as it holds the folder) as Parquet.
    Exposures(ExposuresArgs),
}

/// Arguments of `liveprofile experiment report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The experiment's definition (TOML).
    #[arg(long)]
    experiment: PathBuf,
    /// Events (Parquet, the event contract).
    #[arg(long)]
    events: PathBuf,
    /// Exposures (Parquet; rows of other experiments are ignored).
    #[arg(long)]
    exposures: PathBuf,
    /// Report folder.
    #[arg(long)]
    out: PathBuf,
    /// Significance level of intervals and tests.
    #[arg(long, default_value_t = 0.05)]
    alpha: f64,
}

/// Arguments of `liveprofile experiment exposures`.
#[derive(Debug, Args)]
pub struct ExposuresArgs {
    /// The server's profile data folder (`--data-dir` of `serve`).
    #[arg(long, default_value = "data/profiles")]
    data_dir: PathBuf,
    /// Experiment name.
    #[arg(long)]
    experiment: String,
    /// Output Parquet file.
    #[arg(long)]
    out: PathBuf,
}

/// Runs an experiment subcommand.
pub fn run(cmd: ExperimentCommand) -> anyhow::Result<()> {
    match cmd {
        ExperimentCommand::Check { file } => check(&file),
        ExperimentCommand::Report(args) => report(args),
        ExperimentCommand::Exposures(args) => exposures(args),
    }
}

fn read_definition(path: &std::path::Path) -> anyhow::Result<Experiment> {
    let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Experiment::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

fn check(path: &std::path::Path) -> anyhow::Result<()> {
    let e = read_definition(path)?;
    outln!("experiment {}: primary {}, guardrails [{}]", e.name, e.primary, {
        let g: Vec<&str> = e.guardrails.iter().map(|m| m.name()).collect();
        g.join(", ")
    });
    outln!("window {} .. {} (UTC ms), covariate from {} days before", e.start_ms, e.end_ms, e.covariate_days);
    for a in &e.arms {
        let models: Vec<String> = a.models.iter().map(|(m, v)| format!("{m}@{v}")).collect();
        outln!(
            "  arm {}: {}% -> {}",
            a.name,
            a.share,
            if models.is_empty() { "stable".to_owned() } else { models.join(", ") }
        );
    }
    Ok(())
}

fn report(args: ReportArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.alpha > 0.0 && args.alpha < 1.0, "--alpha must be within (0, 1)");
    let e = read_definition(&args.experiment)?;
    let mut outcomes = ExperimentOutcomes::offline(e.clone());
    let mut other = 0u64;
    for x in read_exposures(&args.exposures)? {
        if x.experiment != e.name {
            other += 1;
            continue;
        }
        outcomes.expose(&x)?;
    }
    let mut reader = EventReader::open(&args.events)?;
    let (mut events, mut rejected) = (0u64, 0u64);
    while let Some(batch) = reader.next_batch()? {
        for r in batch.rejected.iter().take(3) {
            tracing::warn!(row = r.row, error = %r.error, "event row rejected");
        }
        rejected += batch.rejected.len() as u64;
        events += batch.events.len() as u64;
        for ev in &batch.events {
            outcomes.observe(ev);
        }
    }
    let rows = outcomes.table();
    let options = AnalysisOptions { alpha: args.alpha, ..AnalysisOptions::default() };
    let report = liveprofile_experiments::analyze(&e, &rows, &options);
    std::fs::create_dir_all(&args.out).map_err(|x| anyhow::anyhow!("creating {}: {x}", args.out.display()))?;
    liveprofile_experiments::write_report(&args.out, &report)?;
    liveprofile_experiments::write_user_table(&args.out.join("users.parquet"), &e, &rows)?;
    outln!(
        "{}: {} exposed users, {} events read ({} in the target and window, {} rejected), {} exposures of other experiments skipped",
        e.name,
        rows.len(),
        events,
        outcomes.events(),
        rejected,
        other
    );
    outln!("{}", report.decision.reason);
    outln!("report in {}", args.out.display());
    Ok(())
}

fn exposures(args: ExposuresArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.data_dir.is_dir(), "{} is not a profile data folder", args.data_dir.display());
    let store = liveprofile_store::ProfileStore::open(liveprofile_store::StoreOptions::new(&args.data_dir))?;
    let rows = store
        .exposures(&args.experiment)
        .ok_or_else(|| anyhow::anyhow!("no experiment named {:?} in {}", args.experiment, args.data_dir.display()))?;
    super::ensure_parent(&args.out)?;
    let n = write_exposures(&args.out, &rows)?;
    outln!("{n} exposures of {} written to {}", args.experiment, args.out.display());
    Ok(())
}
