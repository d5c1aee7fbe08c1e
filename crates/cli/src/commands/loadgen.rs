//! `liveprofile loadgen`: drives a scoring server (this one over `liveprofile.v1` or KServe
//! v2, or any KServe v2 server) with concurrent callers and reports throughput and latency.

use liveprofile_bench::ingest_bench::{self, IngestBenchConfig};
use liveprofile_bench::loadgen::{self, LoadConfig, Protocol};
use std::path::PathBuf;

/// `liveprofile loadgen` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct LoadArgs {
    /// Server address (host:port).
    #[arg(long, default_value = loadgen::DEFAULT_TARGET)]
    pub target: String,
    /// API to call: tags, conversion or kserve.
    #[arg(long, default_value = "tags")]
    pub protocol: Protocol,
    /// Model name (default: user_tags for tags, conversion for conversion; required for kserve).
    #[arg(long)]
    pub model: Option<String>,
    /// Package folder whose golden rows are sent [default: models/<model>/1].
    #[arg(long)]
    pub package: Option<PathBuf>,
    /// Rows (users or candidates) per request.
    #[arg(long, default_value_t = loadgen::DEFAULT_BATCH)]
    pub batch: usize,
    /// Concurrent callers; with --rate, the cap on requests in flight.
    #[arg(long, default_value_t = loadgen::DEFAULT_CONCURRENCY)]
    pub concurrency: usize,
    /// Open loop: requests per second, due on a fixed schedule whatever the answers do,
    /// latency measured from the time each was due (no coordinated omission)
    /// [default: closed loop].
    #[arg(long)]
    pub rate: Option<f64>,
    /// HTTP/2 connections shared by the callers.
    #[arg(long, default_value_t = loadgen::DEFAULT_CONNECTIONS)]
    pub connections: usize,
    /// Measured time, seconds.
    #[arg(long, default_value_t = loadgen::DEFAULT_SECONDS)]
    pub seconds: f64,
    /// Warm-up before measuring, seconds.
    #[arg(long, default_value_t = loadgen::DEFAULT_WARMUP)]
    pub warmup: f64,
    /// A label for the report (e.g. the server's name).
    #[arg(long, default_value = "")]
    pub label: String,
    /// Platform sent with each row (tags and conversion), so that experiments targeting
    /// it answer [default: none].
    #[arg(long, default_value = "")]
    pub platform: String,
    /// Category sent with each row (tags and conversion) [default: none].
    #[arg(long, default_value = "")]
    pub category: String,
    /// Distinct user ids the rows cycle through (`load-0` ...), so that experiment
    /// exposures are first logged and then found [default: the same ids in every request].
    #[arg(long)]
    pub users: Option<u64>,
    /// The generator's async threads.
    #[command(flatten)]
    pub threads: super::GeneratorThreads,
}

impl From<LoadArgs> for LoadConfig {
    fn from(a: LoadArgs) -> Self {
        LoadConfig {
            target: a.target,
            protocol: a.protocol,
            model: a.model,
            package: a.package,
            batch: a.batch,
            concurrency: a.concurrency,
            connections: a.connections,
            seconds: a.seconds,
            warmup: a.warmup,
            label: a.label,
            platform: a.platform,
            category: a.category,
            users: a.users,
            rate: a.rate,
        }
    }
}

/// `liveprofile ingest-bench` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct IngestBenchArgs {
    /// Server address (host:port); its models must include user_tags.
    #[arg(long, default_value = loadgen::DEFAULT_TARGET)]
    pub target: String,
    /// MQTT broker host:port the server subscribes to (enables the MQTT figures).
    #[arg(long)]
    pub mqtt_broker: Option<String>,
    /// Users the producers spread events over.
    #[arg(long, default_value_t = ingest_bench::DEFAULT_USERS)]
    pub users: u64,
    /// Events per IngestEvents call.
    #[arg(long, default_value_t = ingest_bench::DEFAULT_BATCH)]
    pub batch: usize,
    /// Concurrent producers.
    #[arg(long, default_value_t = ingest_bench::DEFAULT_PRODUCERS)]
    pub producers: usize,
    /// Seconds of each measured phase.
    #[arg(long, default_value_t = ingest_bench::DEFAULT_SECONDS)]
    pub seconds: f64,
    /// Sustained load during the freshness probes, as a share of the measured throughput.
    #[arg(long, default_value_t = ingest_bench::DEFAULT_LOAD_SHARE)]
    pub load_share: f64,
    /// Pause between two freshness probes, milliseconds.
    #[arg(long, default_value_t = ingest_bench::DEFAULT_PROBE_INTERVAL_MS)]
    pub probe_interval_ms: u64,
    /// Users of the in-process store phase (0: skip it).
    #[arg(long, default_value_t = 0)]
    pub store_users: u64,
    /// Skip the server phases (only the store phase).
    #[arg(long)]
    pub store_only: bool,
    /// A label for the report.
    #[arg(long, default_value = "")]
    pub label: String,
    /// The generator's async threads.
    #[command(flatten)]
    pub threads: super::GeneratorThreads,
}

impl From<IngestBenchArgs> for IngestBenchConfig {
    fn from(a: IngestBenchArgs) -> Self {
        IngestBenchConfig {
            target: a.target,
            mqtt_broker: a.mqtt_broker,
            users: a.users,
            batch: a.batch,
            producers: a.producers,
            seconds: a.seconds,
            load_share: a.load_share,
            probe_interval_ms: a.probe_interval_ms,
            store_users: a.store_users,
            store_only: a.store_only,
            label: a.label,
        }
    }
}

/// Runs the load; prints human lines (the run; in an open loop, how late requests left the
/// generator; where the time went, when the answers carry the server's timing) and one JSON
/// line on stdout.
pub fn run(args: LoadArgs) -> anyhow::Result<()> {
    let runtime = super::generator_runtime(&args.threads)?;
    let report = runtime.block_on(loadgen::run(args.into()))?;
    outln!(
        "{} {:?} {} batch {} x{}{}: {:.0} req/s, {:.0} rows/s, p50 {:.0} us, p99 {:.0} us, p99.9 {:.0} us, max {:.0} us, {} errors{}",
        report.label,
        report.protocol,
        report.model,
        report.batch,
        report.concurrency,
        report
            .rate
            .map(|r| format!(" open loop at {r:.0} req/s ({} sent behind schedule)", report.behind_schedule))
            .unwrap_or_default(),
        report.requests_per_s,
        report.rows_per_s,
        report.p50_us,
        report.p99_us,
        report.p999_us,
        report.max_us,
        report.errors,
        report.first_error.as_deref().map(|e| format!(" (first: {e})")).unwrap_or_default()
    );
    if let Some(d) = &report.departure {
        outln!(
            "{} the generator's own lateness (request due -> sending): p50 {:.0} / p99 {:.0} / p99.9 {:.0} / max {:.0} \
             us; answers from sending: p50 {:.0} / p99 {:.0} / p99.9 {:.0} us",
            report.label,
            d.p50_us,
            d.p99_us,
            d.p999_us,
            d.max_us,
            d.answered_p50_us,
            d.answered_p99_us,
            d.answered_p999_us
        );
    }
    if let Some(t) = &report.server_time {
        outln!(
            "{} where the time went (server's timing of {} answers): queue p50 {:.0} / p99 {:.0} us, compute p50 \
             {:.0} / p99 {:.0} us, outside the batcher p50 {:.0} / p99 {:.0} us",
            report.label,
            t.answers,
            t.queue_p50_us,
            t.queue_p99_us,
            t.compute_p50_us,
            t.compute_p99_us,
            t.outside_p50_us,
            t.outside_p99_us
        );
    }
    outln!("{}", serde_json::to_string(&report)?);
    anyhow::ensure!(report.requests > 0, "no request was answered");
    Ok(())
}

/// Runs the ingest benchmark; prints a summary and one JSON line on stdout.
pub fn run_ingest_bench(args: IngestBenchArgs) -> anyhow::Result<()> {
    let runtime = super::generator_runtime(&args.threads)?;
    let r = runtime.block_on(ingest_bench::run(args.into()))?;
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
