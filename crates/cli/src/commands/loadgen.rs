//! `liveprofile loadgen`: drives a scoring server (this one over `liveprofile.v1` or KServe
//! v2, or any KServe v2 server) with concurrent callers and reports throughput and latency.

use liveprofile_server::loadgen::{LoadArgs, run as run_load};

/// Runs the load; prints one human line and one JSON line on stdout.
pub fn run(args: LoadArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))?;
    let report = runtime.block_on(run_load(args))?;
    outln!(
        "{} {:?} {} batch {} x{}: {:.0} req/s, {:.0} rows/s, p50 {:.0} us, p99 {:.0} us, p99.9 {:.0} us, max {:.0} us, {} errors{}",
        report.label,
        report.protocol,
        report.model,
        report.batch,
        report.concurrency,
        report.requests_per_s,
        report.rows_per_s,
        report.p50_us,
        report.p99_us,
        report.p999_us,
        report.max_us,
        report.errors,
        report.first_error.as_deref().map(|e| format!(" (first: {e})")).unwrap_or_default()
    );
    outln!("{}", serde_json::to_string(&report)?);
    anyhow::ensure!(report.requests > 0, "no request was answered");
    Ok(())
}
