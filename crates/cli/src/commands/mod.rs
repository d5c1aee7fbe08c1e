//! One module per subcommand.

pub mod analyze;
pub mod drift;
pub mod experiment;
pub mod features;
pub mod import;
pub mod kpis;
pub mod loadgen;
pub mod model;
pub mod score;
pub mod serve;
pub mod simulate;

use indicatif::{ProgressBar, ProgressStyle};

/// A progress bar on stderr (hidden when stderr is not a terminal).
pub fn progress_bar(total: u64, unit: &str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{elapsed_precise}} [{{bar:40}}] {{pos}}/{{len}} {unit} ({{per_sec}}, eta {{eta}})"
        ))
        .expect("valid template"),
    );
    bar
}

/// The async runtime of the network commands (serve, loadgen, ingest-bench): one worker
/// thread per core.
pub fn tokio_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    runtime(None)
}

/// The async runtime of a load generator: `threads` worker threads.
pub fn generator_runtime(threads: &GeneratorThreads) -> anyhow::Result<tokio::runtime::Runtime> {
    runtime(Some(threads.threads.into()))
}

fn runtime(workers: Option<usize>) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    b.enable_all().thread_name("grpc");
    if let Some(n) = workers {
        b.worker_threads(n);
    }
    b.build().map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))
}

/// The load generators' `--threads` flag.
#[derive(Debug, Clone, clap::Args)]
pub struct GeneratorThreads {
    /// Async worker threads of the generator. One by default: beside the server on the
    /// same cores, a second one costs more in hand-offs between threads than it gives (see
    /// the README's scoring service section).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub threads: u16,
}

/// Creates the parent folder of an output file if it does not exist.
pub fn ensure_parent(path: &std::path::Path) -> anyhow::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| anyhow::anyhow!("creating {}: {e}", parent.display()))?;
    }
    Ok(())
}
