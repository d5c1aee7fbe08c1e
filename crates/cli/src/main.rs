//! `liveprofile`: one binary, one subcommand per job. Argument parsing only; the work is
//! done by the library crates.

mod commands;

use clap::{Parser, Subcommand};

/// Real-time user tags and conversion scores for live-streaming e-commerce.
#[derive(Debug, Parser)]
#[command(name = "liveprofile", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Simulate multi-platform live-commerce traffic into an event Parquet file.
    Simulate(commands::simulate::SimulateArgs),
    /// Import real event data into the event contract.
    #[command(subcommand)]
    Import(commands::import::ImportCommand),
    /// The feature pipeline: schema, user feature tables, conversion examples.
    #[command(subcommand)]
    Features(commands::features::FeaturesCommand),
    /// Check or inspect a model package.
    #[command(subcommand)]
    Model(commands::model::ModelCommand),
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tract_linalg=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Simulate(args) => commands::simulate::run(args),
        Command::Import(cmd) => commands::import::run(cmd),
        Command::Features(cmd) => commands::features::run(cmd),
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
