//! `liveprofile loadgen`: drives a scoring server (this one over `liveprofile.v1` or KServe
//! v2, or any KServe v2 server) with concurrent callers and reports throughput and latency.

use liveprofile_server::loadgen::{LoadArgs, run as run_load};

/// Runs the load; prints one human line and one JSON line on stdout.
pub fn run(args: LoadArgs) -> anyhow::Result<()> {
    let runtime = super::tokio_runtime()?;
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

/// Runs the ingest benchmark; prints a summary and one JSON line on stdout.
pub fn run_ingest_bench(args: liveprofile_server::ingest_bench::IngestBenchArgs) -> anyhow::Result<()> {
    let runtime = super::tokio_runtime()?;
    let r = runtime.block_on(liveprofile_server::ingest_bench::run(args))?;
    if r.events_per_s > 0.0 {
        outln!(
            "{} gRPC ingest: {:.0} events/s (batch ack p50 {:.2} ms, p99 {:.2} ms); under {:.0} events/s: \
             {} probes, ack->score p50 {:.2} ms p99 {:.2} ms, send->score p50 {:.2} ms p99 {:.2} ms (baseline {:.0} ms)",
            r.label,
            r.events_per_s,
            r.batch_ack.p50_ms,
            r.batch_ack.p99_ms,
            r.sustained_events_per_s,
            r.grpc_ack_to_score.n,
            r.grpc_ack_to_score.p50_ms,
            r.grpc_ack_to_score.p99_ms,
            r.grpc_send_to_score.p50_ms,
            r.grpc_send_to_score.p99_ms,
            r.baseline_ms
        );
    }
    if let (Some(m), Some(rate)) = (&r.mqtt_publish_to_score, r.mqtt_events_per_s) {
        outln!(
            "{} MQTT: {} probes, publish->score p50 {:.2} ms p99 {:.2} ms max {:.2} ms; {:.0} events/s from one publisher",
            r.label,
            m.n,
            m.p50_ms,
            m.p99_ms,
            m.max_ms,
            rate
        );
    }
    if let Some(s) = &r.store {
        outln!(
            "{} store: {} users, {} events at {:.0} events/s; {:.0} bytes RSS/user; log replay {:.2} s; \
             snapshot {:.2} s ({:.0} bytes/user); snapshot load {:.2} s",
            r.label,
            s.users,
            s.events,
            s.events_per_s,
            s.rss_bytes_per_user,
            s.replay_log_s,
            s.snapshot_s,
            s.snapshot_bytes_per_user,
            s.load_snapshot_s
        );
    }
    outln!("{}", serde_json::to_string(&r)?);
    Ok(())
}
