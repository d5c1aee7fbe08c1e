//! `liveprofile`: one binary, one subcommand per job. Argument parsing only; the work is
//! done by the library crates.

/// Writes a line on stdout. When the reader has gone (a closed pipe, as in
/// `liveprofile model inspect ... | head`), the process exits with 141 as Unix tools do on
/// SIGPIPE, instead of panicking.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::write_stdout_line(format_args!($($arg)*))
    };
}

mod commands;

fn write_stdout_line(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.write_all(b"\n")) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(141);
        }
        eprintln!("error: writing to stdout: {e}");
        std::process::exit(1);
    }
}

use clap::{Parser, Subcommand};

/// Real-time user tags and conversion scores for live-streaming e-commerce.
#[derive(Debug, Parser)]
#[command(name = "liveprofile", version, about)]
struct Cli {
    /// Log format on stderr: text, or json (one object per line).
    #[arg(long, global = true, env = "LIVEPROFILE_LOG_FORMAT", default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the models of the repository over gRPC (scoring, admin, KServe v2, health,
    /// reflection) with Prometheus metrics on a second port.
    Serve(Box<commands::serve::ServeArgs>),
    /// Drive a scoring server with concurrent callers; report throughput and latency
    /// percentiles (the service benchmark's load generator).
    Loadgen(commands::loadgen::LoadArgs),
    /// Measure ingest throughput and freshness (event to a score that reflects it) of a
    /// running server, over gRPC and MQTT, and the profile store's memory per user.
    IngestBench(commands::loadgen::IngestBenchArgs),
    /// Cross-tag analysis of tag scores: prevalence per platform, tag pairs.
    Analyze(commands::analyze::AnalyzeArgs),
    /// Score Parquet, Arrow IPC or CSV files with a model, through the serving runtime.
    Score(Box<commands::score::ScoreArgs>),
    /// Simulate multi-platform live-commerce traffic into an event Parquet file.
    Simulate(commands::simulate::SimulateArgs),
    /// The KPIs (orders per visit, GMV per user, ...) per platform, category and China day
    /// of an event file, as kpis.json and kpis.html.
    Kpis(commands::kpis::KpisArgs),
    /// Drift of a model version's logged traffic from the training reference in its package
    /// (drift.json, drift.html); `drift reference` makes a package's reference.
    Drift(commands::drift::DriftArgs),
    /// Import real event data into the event contract.
    #[command(subcommand)]
    Import(commands::import::ImportCommand),
    /// The feature pipeline: schema, user feature tables, conversion examples.
    #[command(subcommand)]
    Features(commands::features::FeaturesCommand),
    /// A/B experiments: check a definition, analyse one over events and exposures, export
    /// the exposures a server logged.
    #[command(subcommand)]
    Experiment(commands::experiment::ExperimentCommand),
    /// Check or inspect a model package.
    #[command(subcommand)]
    Model(commands::model::ModelCommand),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tract_linalg=warn"));
    // A log line that cannot be written (stderr on a full disk or past the file size
    // limit) is dropped: reporting it would write to stderr again, and the std macro that
    // would do it panics, taking down whatever was logging.
    let logs =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).log_internal_errors(false);
    match cli.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    let result = match cli.command {
        Command::Serve(args) => commands::serve::run(*args),
        Command::Loadgen(args) => commands::loadgen::run(args),
        Command::IngestBench(args) => commands::loadgen::run_ingest_bench(args),
        Command::Score(args) => commands::score::run(*args),
        Command::Analyze(args) => commands::analyze::run(args),
        Command::Simulate(args) => commands::simulate::run(args),
        Command::Kpis(args) => commands::kpis::run(args),
        Command::Drift(args) => commands::drift::run(args),
        Command::Import(cmd) => commands::import::run(cmd),
        Command::Features(cmd) => commands::features::run(cmd),
        Command::Experiment(cmd) => commands::experiment::run(cmd),
        Command::Model(cmd) => return std::process::ExitCode::from(commands::model::run(cmd)),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
