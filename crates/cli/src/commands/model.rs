//! `liveprofile model check|inspect|profile`: for data scientists, with exit codes a script
//! can use (0 = the package would be served, 1 = refused, 2 = usage error).

use clap::{Args, Subcommand};
use liveprofile_runtime::load_package;
use std::path::PathBuf;

/// Model package commands.
#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Load a package exactly as the server would (checksum, schema, graph contract, golden
    /// parity, warm-up); exit 0 if it would be served, 1 with the reason if refused.
    Check(PathArgs),
    /// Print a package's inputs, outputs, tags, metrics and schema hash (after checking it).
    Inspect(PathArgs),
    /// Time every node of the plan that serving runs for a batch size, on the package's
    /// golden inputs (after checking it); prints JSON, slowest node first.
    Profile(ProfileArgs),
}

/// A package folder and the batch to profile.
#[derive(Debug, Args)]
pub struct ProfileArgs {
    /// Package folder: models/<name>/<version>.
    path: PathBuf,
    /// Rows per scoring call (1 = the single-row plan; 256 or more = the fixed chunk plan
    /// long batches run on, in 256-row chunks).
    #[arg(long, default_value_t = liveprofile_runtime::CHUNK_ROWS)]
    rows: usize,
    /// Timed runs (after as many untimed ones).
    #[arg(long, default_value_t = 200)]
    runs: usize,
}

/// A package folder.
#[derive(Debug, Args)]
pub struct PathArgs {
    /// Package folder: models/<name>/<version>.
    path: PathBuf,
}

/// Runs a model command; returns the process exit code.
pub fn run(cmd: ModelCommand) -> u8 {
    let (path, inspect) = match &cmd {
        ModelCommand::Check(a) => (&a.path, false),
        ModelCommand::Inspect(a) => (&a.path, true),
        ModelCommand::Profile(a) => return profile(a),
    };
    match load_package(path) {
        Err(e) => {
            eprintln!("refused: {}: {e}", path.display());
            1
        }
        Ok(model) => {
            let m = model.manifest();
            if !inspect {
                outln!(
                    "ok: {} version {} ({} features, {} plan nodes, loaded and checked in {:.1} ms)",
                    m.name,
                    m.version,
                    model.width(),
                    model.plan_nodes(),
                    model.load_ms()
                );
                return 0;
            }
            let report = serde_json::json!({
                "name": m.name,
                "version": m.version,
                "task": m.task,
                "created_at": m.created_at,
                "schema": {"name": model.schema().name, "hash": model.schema().hash, "features": model.width()},
                "inputs": m.inputs,
                "outputs": m.outputs,
                "metrics": m.metrics,
                "training_data": m.training_data,
                "framework": m.framework,
                "golden": {"count": m.golden.count, "tolerance": m.golden.tolerance, "parity": "ok"},
                "plan_nodes": model.plan_nodes(),
                "plan_ops": model.plan_ops(),
                "load_ms": model.load_ms(),
            });
            outln!("{}", serde_json::to_string_pretty(&report).expect("json"));
            0
        }
    }
}

fn profile(args: &ProfileArgs) -> u8 {
    let model = match load_package(&args.path) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("refused: {}: {e}", args.path.display());
            return 1;
        }
    };
    match model.profile(args.rows, args.runs) {
        Ok(p) => {
            outln!("{}", serde_json::to_string_pretty(&p).expect("json"));
            0
        }
        Err(e) => {
            eprintln!("profile failed: {e:#}");
            1
        }
    }
}
