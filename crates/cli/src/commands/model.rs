//! `liveprofile model check|inspect|profile`: for data scientists, with exit codes a script
//! can use (0 = the package would be served, 1 = refused, 2 = usage error).

use clap::{Args, Subcommand};
use liveprofile_runtime::load_package;
use liveprofile_runtime::manifest::Golden;
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
    /// Rows per run (1 = the single-row plan; 256 = the fixed chunk plan long batches use).
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
    let golden_path = model.dir().join(&model.manifest().golden.file);
    let golden: Golden = match std::fs::read(&golden_path)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(g) => g,
        Err(e) => {
            eprintln!("refused: {}: {e}", golden_path.display());
            return 1;
        }
    };
    let examples = golden.inputs.values().next().map(Vec::as_slice).unwrap_or_default();
    match model.profile(examples, args.rows, args.runs) {
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
