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
    runtime_builder().build().map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))
}

/// The async runtime of a load generator: `threads` worker threads.
pub fn generator_runtime(threads: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    runtime_builder()
        .worker_threads(threads)
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))
}

fn runtime_builder() -> tokio::runtime::Builder {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    b.enable_all().thread_name("grpc");
    b
}

/// Creates the parent folder of an output file if it does not exist.
pub fn ensure_parent(path: &std::path::Path) -> anyhow::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| anyhow::anyhow!("creating {}: {e}", parent.display()))?;
    }
    Ok(())
}
