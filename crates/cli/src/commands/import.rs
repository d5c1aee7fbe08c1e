//! `liveprofile import taobao`.

use anyhow::Context;
use clap::{Args, Subcommand};
use std::path::PathBuf;

/// Importers.
#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// Import the Tianchi Taobao UserBehavior CSV (user_id,item_id,category_id,behavior_type,timestamp).
    Taobao(TaobaoArgs),
}

/// Arguments of `liveprofile import taobao`.
#[derive(Debug, Args)]
pub struct TaobaoArgs {
    /// The UserBehavior CSV (no header).
    #[arg(long)]
    input: PathBuf,
    /// Event Parquet file to write.
    #[arg(long)]
    out: PathBuf,
    /// Fail on the first malformed line instead of counting and reporting them.
    #[arg(long)]
    strict: bool,
}

/// Runs an importer.
pub fn run(cmd: ImportCommand) -> anyhow::Result<()> {
    match cmd {
        ImportCommand::Taobao(args) => {
            super::ensure_parent(&args.out)?;
            let report = liveprofile_import::import_taobao(&args.input, &args.out, args.strict)
                .with_context(|| format!("importing {}", args.input.display()))?;
            outln!(
                "read {} lines: wrote {} events of {} users to {}; {} malformed lines",
                report.lines,
                report.events,
                report.users,
                args.out.display(),
                report.malformed.len()
            );
            for m in &report.malformed {
                outln!("  line {}: {}", m.line, m.reason);
            }
            Ok(())
        }
    }
}
