//! `liveprofile score`: batch scoring of Parquet, Arrow IPC or CSV files with a model of
//! the repository, through the serving runtime.

use clap::{Args, ValueEnum};
use liveprofile_batch::{Format, OnError, ScoreOptions, expand_inputs, plan_outputs, score_file};
use liveprofile_runtime::{ModelRepository, RepositoryConfig};
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum OutputFormat {
    Parquet,
    Arrow,
    ArrowStream,
    Csv,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum OnErrorArg {
    Fail,
    Skip,
}

/// Arguments of `liveprofile score`.
#[derive(Debug, Args)]
pub struct ScoreArgs {
    /// Model and optional version: `user_tags` (the stable version) or `user_tags@2`.
    #[arg(long)]
    model: String,
    /// Model repository.
    #[arg(long, default_value = "models", env = "LIVEPROFILE_MODELS")]
    models: PathBuf,
    /// Input files or glob patterns (.parquet, .arrow/.ipc/.feather, .arrows, .csv).
    #[arg(long, num_args = 1.., required = true)]
    input: Vec<String>,
    /// Output file; with several inputs, a folder that gets `<stem>.scores.<ext>` per input.
    #[arg(long)]
    output: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "parquet")]
    format: OutputFormat,
    /// Input columns copied to the output, comma-separated (e.g. user_id,platform).
    #[arg(long, value_delimiter = ',')]
    keep: Vec<String>,
    /// Bad rows: fail (stop with file, row and column) or skip (write them with the reason
    /// to `<output>.rejects.csv` and count them).
    #[arg(long, value_enum, default_value = "fail")]
    on_error: OnErrorArg,
    /// Scoring threads [default: all cores].
    #[arg(long)]
    threads: Option<usize>,
    /// Rows per read batch; memory is bounded by a few batches.
    #[arg(long, default_value_t = 65_536)]
    batch_rows: usize,
    /// Score outputs that exist already (by default a rerun skips them).
    #[arg(long)]
    overwrite: bool,
}

/// Runs the job.
pub fn run(args: ScoreArgs) -> anyhow::Result<()> {
    if let Some(t) = args.threads {
        anyhow::ensure!(t > 0, "--threads must be at least 1");
        rayon::ThreadPoolBuilder::new().num_threads(t).build_global()?;
    }
    let (name, version) = match args.model.split_once('@') {
        Some((n, v)) => {
            (n.to_owned(), Some(v.parse::<u32>().map_err(|_| anyhow::anyhow!("version {v:?} is not an integer"))?))
        }
        None => (args.model.clone(), None),
    };
    let repo = ModelRepository::open(RepositoryConfig::new(&args.models))?;
    let model = repo.get(&name, version)?;
    let format = match args.format {
        OutputFormat::Parquet => Format::Parquet,
        OutputFormat::Arrow => Format::ArrowFile,
        OutputFormat::ArrowStream => Format::ArrowStream,
        OutputFormat::Csv => Format::Csv,
    };
    let inputs = expand_inputs(&args.input)?;
    let plan = plan_outputs(&inputs, &args.output, format)?;
    let options = ScoreOptions {
        keep: args.keep,
        on_error: match args.on_error {
            OnErrorArg::Fail => OnError::Fail,
            OnErrorArg::Skip => OnError::Skip,
        },
        format,
        batch_rows: args.batch_rows,
        overwrite: args.overwrite,
        ..ScoreOptions::default()
    };
    eprintln!("scoring {} file(s) with {} version {}", plan.len(), model.name(), model.version());
    let (mut scored, mut rejected) = (0u64, 0u64);
    for (input, output) in &plan {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template("{elapsed_precise} {spinner} {human_pos} rows ({per_sec})")
                .expect("valid template"),
        );
        let report = score_file(&model, input, output, &options, &|n| bar.inc(n))?;
        bar.finish_and_clear();
        if report.skipped {
            eprintln!("{}: {} exists, skipped (--overwrite to rescore)", input.display(), output.display());
            continue;
        }
        scored += report.rows_scored;
        rejected += report.rows_rejected;
        eprintln!(
            "{} -> {}: {} rows scored, {} rejected{} in {:.1} s ({:.0} rows/s)",
            input.display(),
            output.display(),
            report.rows_scored,
            report.rows_rejected,
            report.rejects.as_ref().map(|p| format!(" (see {})", p.display())).unwrap_or_default(),
            report.seconds,
            report.rows_read as f64 / report.seconds.max(1e-9)
        );
    }
    eprintln!("done: {scored} rows scored, {rejected} rejected");
    Ok(())
}
