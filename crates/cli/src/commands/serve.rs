//! `liveprofile serve`: the scoring service on the model repository. Its flags, each with
//! an environment variable, over an optional TOML file, over the server's defaults;
//! `liveprofile serve --help` lists every knob.

use liveprofile_server::config::*;
use liveprofile_store::Durability;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Resolves the configuration and serves until SIGTERM or Ctrl-C.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config = args.resolve()?;
    let runtime = super::tokio_runtime()?;
    runtime.block_on(liveprofile_server::run(config, liveprofile_server::termination()))
}

/// The defaults of the flags, from the server's constants: appended to each flag's help,
/// so that the help and the server never disagree.
fn flag_defaults() -> Vec<(&'static str, String)> {
    let mib = |b: usize| format!("{b} ({} MiB)", b >> 20);
    vec![
        ("models", DEFAULT_MODELS.to_owned()),
        ("addr", DEFAULT_ADDR.to_string()),
        ("metrics_addr", DEFAULT_METRICS_ADDR.to_string()),
        ("max_batch_size", DEFAULT_MAX_BATCH_SIZE.to_string()),
        ("max_queue_delay_us", DEFAULT_MAX_QUEUE_DELAY_US.to_string()),
        ("max_queue_rows", DEFAULT_MAX_QUEUE_ROWS.to_string()),
        ("max_request_rows", DEFAULT_MAX_REQUEST_ROWS.to_string()),
        ("max_message_bytes", mib(DEFAULT_MAX_MESSAGE_BYTES)),
        ("rescan_ms", DEFAULT_RESCAN_MS.to_string()),
        ("keep_versions", DEFAULT_KEEP_VERSIONS.to_string()),
        ("shadow_queue", DEFAULT_SHADOW_QUEUE.to_string()),
        ("drain_seconds", DEFAULT_DRAIN_SECONDS.to_string()),
        ("experiments", DEFAULT_EXPERIMENTS_DIR.to_owned()),
        ("data_dir", DEFAULT_DATA_DIR.to_owned()),
        ("durability", Durability::Fsync.to_string()),
        ("snapshot_every", DEFAULT_SNAPSHOT_EVERY.to_string()),
        ("snapshot_seconds", DEFAULT_SNAPSHOT_SECONDS.to_string()),
        ("dedup_horizon_hours", (liveprofile_store::DEFAULT_DEDUP_HORIZON_MS / 3_600_000).to_string()),
        ("dedup_max_ids", liveprofile_store::DEFAULT_DEDUP_MAX_IDS.to_string()),
        ("mqtt_topic", DEFAULT_MQTT_TOPIC.to_owned()),
        ("mqtt_client_id", DEFAULT_MQTT_CLIENT_ID.to_owned()),
        ("max_connections", DEFAULT_MAX_CONNECTIONS.to_string()),
        ("handshake_timeout_seconds", DEFAULT_HANDSHAKE_TIMEOUT_SECONDS.to_string()),
        ("max_streams_per_connection", DEFAULT_MAX_STREAMS_PER_CONNECTION.to_string()),
        ("http2_keepalive_seconds", DEFAULT_HTTP2_KEEPALIVE_SECONDS.to_string()),
        ("http2_keepalive_timeout_seconds", DEFAULT_HTTP2_KEEPALIVE_TIMEOUT_SECONDS.to_string()),
        ("stream_idle_timeout_seconds", DEFAULT_STREAM_IDLE_TIMEOUT_SECONDS.to_string()),
        (
            "max_inflight_request_bytes",
            format!("{} or --max-message-bytes if larger", mib(DEFAULT_MAX_INFLIGHT_REQUEST_BYTES)),
        ),
        ("metrics_max_connections", DEFAULT_METRICS_MAX_CONNECTIONS.to_string()),
        ("metrics_header_timeout_seconds", DEFAULT_METRICS_HEADER_TIMEOUT_SECONDS.to_string()),
        ("prediction_log_sample", "1".to_owned()),
        ("prediction_log_file_mb", (liveprofile_predlog::DEFAULT_MAX_FILE_BYTES >> 20).to_string()),
        ("prediction_log_file_seconds", liveprofile_predlog::DEFAULT_MAX_FILE_AGE.as_secs().to_string()),
        ("prediction_log_retention_mb", (liveprofile_predlog::DEFAULT_RETENTION_BYTES >> 20).to_string()),
        ("prediction_log_queue_rows", liveprofile_predlog::DEFAULT_QUEUE_ROWS.to_string()),
        ("prediction_log_queue_mb", (liveprofile_predlog::DEFAULT_QUEUE_BYTES >> 20).to_string()),
        ("trace_sample", DEFAULT_TRACE_SAMPLE.to_string()),
        ("trace_queue_spans", DEFAULT_TRACE_QUEUE_SPANS.to_string()),
        ("trace_batch_spans", DEFAULT_TRACE_BATCH_SPANS.to_string()),
        ("trace_export_interval_ms", DEFAULT_TRACE_EXPORT_INTERVAL_MS.to_string()),
        ("trace_export_timeout_seconds", DEFAULT_TRACE_EXPORT_TIMEOUT_SECONDS.to_string()),
        ("drift_window_seconds", liveprofile_server::drift::DEFAULT_DRIFT_WINDOW_SECONDS.to_string()),
        ("drift_min_rows", liveprofile_drift::DEFAULT_MIN_ROWS.to_string()),
        ("drift_queue_rows", liveprofile_server::drift::DEFAULT_DRIFT_QUEUE_ROWS.to_string()),
        ("drift_sample", liveprofile_server::drift::DEFAULT_DRIFT_SAMPLE.to_string()),
    ]
}

/// Appends `[default: ...]` to the help of a flag listed in [`flag_defaults`].
fn with_default(arg: clap::Arg) -> clap::Arg {
    let Some((_, value)) = flag_defaults().into_iter().find(|(id, _)| arg.get_id() == *id) else {
        return arg;
    };
    let help = arg.get_help().map(|h| format!("{h} [default: {value}]"));
    let long_help = arg.get_long_help().map(|h| format!("{h}\n\n[default: {value}]"));
    let arg = match help {
        Some(h) => arg.help(h),
        None => arg,
    };
    match long_help {
        Some(h) => arg.long_help(h),
        None => arg,
    }
}

/// Flags of `liveprofile serve`. Every flag is optional: a flag not given falls back to
/// its environment variable, then to the `--config` file, then to the default named in
/// its help.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(mut_args(with_default))]
pub struct ServeArgs {
    /// TOML file with any of the settings below (keys are the flag names with `_`).
    #[arg(long, env = "LIVEPROFILE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Model repository folder, `<name>/<version>/` packages.
    #[arg(long, env = "LIVEPROFILE_MODELS")]
    pub models: Option<PathBuf>,
    /// gRPC listen address.
    #[arg(long, env = "LIVEPROFILE_ADDR")]
    pub addr: Option<SocketAddr>,
    /// Prometheus metrics listen address, served at /metrics.
    #[arg(long, env = "LIVEPROFILE_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// Largest number of rows scored together by the dynamic batcher.
    #[arg(long, env = "LIVEPROFILE_MAX_BATCH_SIZE")]
    pub max_batch_size: Option<usize>,
    /// Longest time a request waits for others to join its batch, in microseconds. 0 (the
    /// default): none; a batch is what queued while the inference threads were busy.
    #[arg(long, env = "LIVEPROFILE_MAX_QUEUE_DELAY_US")]
    pub max_queue_delay_us: Option<u64>,
    /// Rows waiting in the queue beyond which new requests get RESOURCE_EXHAUSTED at once.
    #[arg(long, env = "LIVEPROFILE_MAX_QUEUE_ROWS")]
    pub max_queue_rows: Option<usize>,
    /// Most rows (users, candidates) in one request; more is INVALID_ARGUMENT.
    #[arg(long, env = "LIVEPROFILE_MAX_REQUEST_ROWS")]
    pub max_request_rows: Option<usize>,
    /// Inference threads (off the async runtime) [default: half the cores, at least 1].
    #[arg(long, env = "LIVEPROFILE_INFERENCE_THREADS")]
    pub inference_threads: Option<usize>,
    /// Largest gRPC message accepted or sent, in bytes.
    #[arg(long, env = "LIVEPROFILE_MAX_MESSAGE_BYTES")]
    pub max_message_bytes: Option<usize>,
    /// Bearer token of the model admin API; without one (or with an empty one) the admin
    /// API refuses every call. Printable ASCII, not only spaces, no space at either end
    /// [default: none].
    #[arg(long, env = "LIVEPROFILE_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// PEM certificate chain: serve gRPC over TLS (with --tls-key) [default: plaintext].
    #[arg(long, env = "LIVEPROFILE_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "LIVEPROFILE_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Period of the model folder rescan that backs up the file watcher, in milliseconds.
    #[arg(long, env = "LIVEPROFILE_RESCAN_MS")]
    pub rescan_ms: Option<u64>,
    /// Good versions kept loaded per model for rollback.
    #[arg(long, env = "LIVEPROFILE_KEEP_VERSIONS")]
    pub keep_versions: Option<usize>,
    /// Queue of shadow and canary comparisons; when full, comparisons are dropped and
    /// counted, never the request.
    #[arg(long, env = "LIVEPROFILE_SHADOW_QUEUE")]
    pub shadow_queue: Option<usize>,
    /// Time to finish running requests after SIGTERM, in seconds.
    #[arg(long, env = "LIVEPROFILE_DRAIN_SECONDS")]
    pub drain_seconds: Option<u64>,
    /// Experiments folder: one `<name>.toml` definition per experiment, watched; created
    /// experiments are written there.
    #[arg(long, env = "LIVEPROFILE_EXPERIMENTS")]
    pub experiments: Option<PathBuf>,
    /// Profile store folder: append-only log and snapshots.
    #[arg(long, env = "LIVEPROFILE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// When an acknowledged event reaches the disk: `fsync` (survives power loss) or
    /// `write` (survives the process being killed).
    #[arg(long, env = "LIVEPROFILE_DURABILITY")]
    pub durability: Option<String>,
    /// Log records between two snapshots of the profile store.
    #[arg(long, env = "LIVEPROFILE_SNAPSHOT_EVERY")]
    pub snapshot_every: Option<u64>,
    /// Longest time between two snapshots when events arrived, in seconds.
    #[arg(long, env = "LIVEPROFILE_SNAPSHOT_SECONDS")]
    pub snapshot_seconds: Option<u64>,
    /// Hours of event time an event sent again is answered `duplicate` (a producer may
    /// retry for this long and learn its events are stored), at most 720.
    #[arg(long, env = "LIVEPROFILE_DEDUP_HORIZON_HOURS")]
    pub dedup_horizon_hours: Option<u64>,
    /// Most event ids kept for duplicate answers (16 bytes each plus the table's slack);
    /// over it the oldest go first and the horizon shortens.
    #[arg(long, env = "LIVEPROFILE_DEDUP_MAX_IDS")]
    pub dedup_max_ids: Option<usize>,
    /// Start even when the profile log lost acknowledged records (damage other than a
    /// torn last write): the damaged files are moved to `damaged/` in the data folder and
    /// each loss is logged as an ERROR. Without it the server refuses to start, naming the
    /// file and the records lost.
    #[arg(long, env = "LIVEPROFILE_ACCEPT_LOG_DAMAGE")]
    pub accept_log_damage: bool,
    /// CSV of identity links `platform,platform_user_id,user_id` loaded at start (links
    /// set through ProfileAdmin win) [default: none].
    #[arg(long, env = "LIVEPROFILE_IDENTITIES")]
    pub identities: Option<PathBuf>,
    /// MQTT broker `host:port` to subscribe to live events from [default: none, MQTT off].
    #[arg(long, env = "LIVEPROFILE_MQTT_BROKER")]
    pub mqtt_broker: Option<String>,
    /// MQTT topic filter subscribed with QoS 1.
    #[arg(long, env = "LIVEPROFILE_MQTT_TOPIC")]
    pub mqtt_topic: Option<String>,
    /// MQTT client id; the session is persistent, so messages published while the server
    /// is down are delivered when it is back.
    #[arg(long, env = "LIVEPROFILE_MQTT_CLIENT_ID")]
    pub mqtt_client_id: Option<String>,
    /// Most open gRPC connections; at the cap a new connection is closed at once (counted
    /// in liveprofile_connections_refused). Keep it under the open-file limit.
    #[arg(long, env = "LIVEPROFILE_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Seconds a new gRPC connection has to make its first call (TLS handshake and HTTP/2
    /// preface included); then it is closed.
    #[arg(long, env = "LIVEPROFILE_HANDSHAKE_TIMEOUT_SECONDS")]
    pub handshake_timeout_seconds: Option<u64>,
    /// Concurrent calls (HTTP/2 streams) per gRPC connection; a client waits for a free
    /// one.
    #[arg(long, env = "LIVEPROFILE_MAX_STREAMS_PER_CONNECTION")]
    pub max_streams_per_connection: Option<u32>,
    /// Seconds between HTTP/2 keepalive pings the server sends on a gRPC connection.
    #[arg(long, env = "LIVEPROFILE_HTTP2_KEEPALIVE_SECONDS")]
    pub http2_keepalive_seconds: Option<u64>,
    /// Seconds a keepalive ping may go unanswered before the connection is closed (the
    /// peer is gone).
    #[arg(long, env = "LIVEPROFILE_HTTP2_KEEPALIVE_TIMEOUT_SECONDS")]
    pub http2_keepalive_timeout_seconds: Option<u64>,
    /// Seconds a call may wait for its caller's next message (an open IngestEvents or
    /// ScoreStream stream, or a request body); then it ends with DEADLINE_EXCEEDED.
    #[arg(long, env = "LIVEPROFILE_STREAM_IDLE_TIMEOUT_SECONDS")]
    pub stream_idle_timeout_seconds: Option<u64>,
    /// Encoded request bytes the server holds at once, counted before decoding; a message
    /// that does not fit is refused at once with RESOURCE_EXHAUSTED. At least
    /// --max-message-bytes.
    #[arg(long, env = "LIVEPROFILE_MAX_INFLIGHT_REQUEST_BYTES")]
    pub max_inflight_request_bytes: Option<usize>,
    /// Most open connections on the metrics port; more are closed at once.
    #[arg(long, env = "LIVEPROFILE_METRICS_MAX_CONNECTIONS")]
    pub metrics_max_connections: Option<usize>,
    /// Seconds a metrics connection has to send a request (after connecting or after the
    /// previous answer); then it is closed.
    #[arg(long, env = "LIVEPROFILE_METRICS_HEADER_TIMEOUT_SECONDS")]
    pub metrics_header_timeout_seconds: Option<u64>,
    /// Folder of the prediction log: every scoring answer (v1, stream, KServe), or the
    /// --prediction-log-sample of requests, with the features as scored, in rotating Parquet
    /// files [default: none, no log].
    #[arg(long, env = "LIVEPROFILE_PREDICTION_LOG")]
    pub prediction_log: Option<PathBuf>,
    /// Share of requests logged, 0 to 1 (by a hash of the request id).
    #[arg(long, env = "LIVEPROFILE_PREDICTION_LOG_SAMPLE")]
    pub prediction_log_sample: Option<f64>,
    /// A log file is published once it holds this many MiB.
    #[arg(long, env = "LIVEPROFILE_PREDICTION_LOG_FILE_MB")]
    pub prediction_log_file_mb: Option<u64>,
    /// A log file is published once it is this many seconds old (records not yet published
    /// are lost if the process dies).
    #[arg(long, env = "LIVEPROFILE_PREDICTION_LOG_FILE_SECONDS")]
    pub prediction_log_file_seconds: Option<u64>,
    /// The oldest log files are deleted while the folder holds more than this many MiB.
    #[arg(long, env = "LIVEPROFILE_PREDICTION_LOG_RETENTION_MB")]
    pub prediction_log_retention_mb: Option<u64>,
    /// Rows waiting for the log's writer (taken every 10 ms); beyond, a request's records
    /// are dropped and counted (answers never wait for the log).
    #[arg(long, env = "LIVEPROFILE_PREDICTION_LOG_QUEUE_ROWS")]
    pub prediction_log_queue_rows: Option<usize>,
    /// MiB of text and values waiting for the log's writer; beyond, a request's records are
    /// dropped and counted (callers' ids and rooms make rows of any size).
    #[arg(long, env = "LIVEPROFILE_PREDICTION_LOG_QUEUE_MB")]
    pub prediction_log_queue_mb: Option<usize>,
    /// OpenTelemetry collector to send traces to, OTLP over gRPC without TLS
    /// (`http://127.0.0.1:4317`): a span per scoring and ingest call with its phases,
    /// continuing the caller's W3C `traceparent` [default: none, no traces].
    #[arg(long, env = "LIVEPROFILE_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// Share of calls traced, 0 to 1, among calls without a caller's sampling decision
    /// (no `traceparent`, or a malformed one); a caller's sampled flag is always followed.
    #[arg(long, env = "LIVEPROFILE_TRACE_SAMPLE")]
    pub trace_sample: Option<f64>,
    /// Spans waiting for export; beyond, a call's spans are dropped and counted (answers
    /// never wait for the collector).
    #[arg(long, env = "LIVEPROFILE_TRACE_QUEUE_SPANS")]
    pub trace_queue_spans: Option<usize>,
    /// Spans sent in one export call.
    #[arg(long, env = "LIVEPROFILE_TRACE_BATCH_SPANS")]
    pub trace_batch_spans: Option<usize>,
    /// Milliseconds a span waits at most before its batch is sent unfilled.
    #[arg(long, env = "LIVEPROFILE_TRACE_EXPORT_INTERVAL_MS")]
    pub trace_export_interval_ms: Option<u64>,
    /// Seconds an export call (connecting included) may take; then its spans are dropped
    /// and counted.
    #[arg(long, env = "LIVEPROFILE_TRACE_EXPORT_TIMEOUT_SECONDS")]
    pub trace_export_timeout_seconds: Option<u64>,
    /// Turns the drift monitor off (live traffic against each version's training
    /// reference, on /metrics).
    #[arg(long, env = "LIVEPROFILE_NO_DRIFT")]
    pub no_drift: bool,
    /// Length of the window of recent traffic the drift figures cover (it moves on by a
    /// tenth at a time).
    #[arg(long, env = "LIVEPROFILE_DRIFT_WINDOW_SECONDS")]
    pub drift_window_seconds: Option<u64>,
    /// Least rows in a version's drift window before its PSI and KS are reported.
    #[arg(long, env = "LIVEPROFILE_DRIFT_MIN_ROWS")]
    pub drift_min_rows: Option<u64>,
    /// Rows waiting for the drift monitor's thread; beyond, a batch's rows are not
    /// monitored and are counted (liveprofile_drift_rows_dropped).
    #[arg(long, env = "LIVEPROFILE_DRIFT_QUEUE_ROWS")]
    pub drift_queue_rows: Option<usize>,
    /// Share of answered batches whose rows the drift monitor bins, above 0 to 1 (binning
    /// every row of every batch costs about 7% of the throughput on 2 cores).
    #[arg(long, env = "LIVEPROFILE_DRIFT_SAMPLE")]
    pub drift_sample: Option<f64>,
}

/// The same settings in a TOML file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    models: Option<PathBuf>,
    addr: Option<SocketAddr>,
    metrics_addr: Option<SocketAddr>,
    max_batch_size: Option<usize>,
    max_queue_delay_us: Option<u64>,
    max_queue_rows: Option<usize>,
    max_request_rows: Option<usize>,
    inference_threads: Option<usize>,
    max_message_bytes: Option<usize>,
    admin_token: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    rescan_ms: Option<u64>,
    keep_versions: Option<usize>,
    shadow_queue: Option<usize>,
    drain_seconds: Option<u64>,
    experiments: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    durability: Option<String>,
    snapshot_every: Option<u64>,
    snapshot_seconds: Option<u64>,
    dedup_horizon_hours: Option<u64>,
    dedup_max_ids: Option<usize>,
    accept_log_damage: Option<bool>,
    identities: Option<PathBuf>,
    mqtt_broker: Option<String>,
    mqtt_topic: Option<String>,
    mqtt_client_id: Option<String>,
    max_connections: Option<usize>,
    handshake_timeout_seconds: Option<u64>,
    max_streams_per_connection: Option<u32>,
    http2_keepalive_seconds: Option<u64>,
    http2_keepalive_timeout_seconds: Option<u64>,
    stream_idle_timeout_seconds: Option<u64>,
    max_inflight_request_bytes: Option<usize>,
    metrics_max_connections: Option<usize>,
    metrics_header_timeout_seconds: Option<u64>,
    prediction_log: Option<PathBuf>,
    prediction_log_sample: Option<f64>,
    prediction_log_file_mb: Option<u64>,
    prediction_log_file_seconds: Option<u64>,
    prediction_log_retention_mb: Option<u64>,
    prediction_log_queue_rows: Option<usize>,
    prediction_log_queue_mb: Option<usize>,
    otlp_endpoint: Option<String>,
    trace_sample: Option<f64>,
    trace_queue_spans: Option<usize>,
    trace_batch_spans: Option<usize>,
    trace_export_interval_ms: Option<u64>,
    trace_export_timeout_seconds: Option<u64>,
    no_drift: Option<bool>,
    drift_window_seconds: Option<u64>,
    drift_min_rows: Option<u64>,
    drift_queue_rows: Option<usize>,
    drift_sample: Option<f64>,
}

impl ServeArgs {
    /// Flags (with their environment variables) over the `--config` file over the
    /// server's defaults, then the server's checks.
    pub fn resolve(self) -> anyhow::Result<ServerConfig> {
        let file = match &self.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        fn set<T>(slot: &mut T, flag: Option<T>, key: Option<T>) {
            if let Some(v) = flag.or(key) {
                *slot = v;
            }
        }
        fn seconds(slot: &mut Duration, flag: Option<u64>, key: Option<u64>) {
            if let Some(s) = flag.or(key) {
                *slot = Duration::from_secs(s);
            }
        }
        let mut c = ServerConfig::default();
        set(&mut c.models, self.models, file.models);
        set(&mut c.addr, self.addr, file.addr);
        set(&mut c.metrics_addr, self.metrics_addr, file.metrics_addr);
        let b = &mut c.batching;
        set(&mut b.max_batch_size, self.max_batch_size, file.max_batch_size);
        if let Some(us) = self.max_queue_delay_us.or(file.max_queue_delay_us) {
            b.max_queue_delay = Duration::from_micros(us);
        }
        set(&mut b.max_queue_rows, self.max_queue_rows, file.max_queue_rows);
        set(&mut b.threads, self.inference_threads, file.inference_threads);
        set(&mut c.max_request_rows, self.max_request_rows, file.max_request_rows);
        set(&mut c.max_message_bytes, self.max_message_bytes, file.max_message_bytes);
        c.admin_token = self.admin_token.or(file.admin_token).filter(|t| !t.is_empty());
        c.tls = match (self.tls_cert.or(file.tls_cert), self.tls_key.or(file.tls_key)) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
            (None, None) => None,
            _ => anyhow::bail!("TLS needs both --tls-cert and --tls-key"),
        };
        if let Some(ms) = self.rescan_ms.or(file.rescan_ms) {
            c.rescan = Duration::from_millis(ms);
        }
        set(&mut c.keep_versions, self.keep_versions, file.keep_versions);
        set(&mut c.shadow_queue, self.shadow_queue, file.shadow_queue);
        seconds(&mut c.drain, self.drain_seconds, file.drain_seconds);
        set(&mut c.experiments, self.experiments, file.experiments);
        let p = &mut c.profiles;
        set(&mut p.data_dir, self.data_dir, file.data_dir);
        if let Some(d) = self.durability.or(file.durability) {
            p.durability = d.parse::<Durability>().map_err(anyhow::Error::msg)?;
        }
        set(&mut p.snapshot_every, self.snapshot_every, file.snapshot_every);
        seconds(&mut p.snapshot_interval, self.snapshot_seconds, file.snapshot_seconds);
        if let Some(hours) = self.dedup_horizon_hours.or(file.dedup_horizon_hours) {
            p.dedup_horizon = Duration::from_secs(hours.saturating_mul(3600));
        }
        set(&mut p.dedup_max_ids, self.dedup_max_ids, file.dedup_max_ids);
        p.accept_log_damage = self.accept_log_damage || file.accept_log_damage.unwrap_or(false);
        p.identities = self.identities.or(file.identities);
        if let Some(broker) = self.mqtt_broker.or(file.mqtt_broker) {
            let (host, port) = broker
                .rsplit_once(':')
                .and_then(|(h, p)| Some((h.to_owned(), p.parse::<u16>().ok()?)))
                .filter(|(h, _)| !h.is_empty())
                .ok_or_else(|| anyhow::anyhow!("mqtt-broker {broker:?} is not host:port"))?;
            p.mqtt = Some(MqttConfig {
                host,
                port,
                topic: self.mqtt_topic.or(file.mqtt_topic).unwrap_or_else(|| DEFAULT_MQTT_TOPIC.to_owned()),
                client_id: self
                    .mqtt_client_id
                    .or(file.mqtt_client_id)
                    .unwrap_or_else(|| DEFAULT_MQTT_CLIENT_ID.to_owned()),
            });
        }
        let max_message_bytes = c.max_message_bytes;
        let l = &mut c.limits;
        set(&mut l.max_connections, self.max_connections, file.max_connections);
        seconds(&mut l.handshake_timeout, self.handshake_timeout_seconds, file.handshake_timeout_seconds);
        set(&mut l.max_streams_per_connection, self.max_streams_per_connection, file.max_streams_per_connection);
        seconds(&mut l.keepalive_interval, self.http2_keepalive_seconds, file.http2_keepalive_seconds);
        seconds(&mut l.keepalive_timeout, self.http2_keepalive_timeout_seconds, file.http2_keepalive_timeout_seconds);
        seconds(&mut l.stream_idle_timeout, self.stream_idle_timeout_seconds, file.stream_idle_timeout_seconds);
        l.max_inflight_request_bytes = self
            .max_inflight_request_bytes
            .or(file.max_inflight_request_bytes)
            .unwrap_or(DEFAULT_MAX_INFLIGHT_REQUEST_BYTES.max(max_message_bytes));
        set(&mut l.metrics_max_connections, self.metrics_max_connections, file.metrics_max_connections);
        seconds(
            &mut l.metrics_header_timeout,
            self.metrics_header_timeout_seconds,
            file.metrics_header_timeout_seconds,
        );
        if let Some(dir) = self.prediction_log.or(file.prediction_log) {
            let mut log = liveprofile_predlog::LogConfig::new(dir);
            set(&mut log.sample, self.prediction_log_sample, file.prediction_log_sample);
            if let Some(mb) = self.prediction_log_file_mb.or(file.prediction_log_file_mb) {
                log.max_file_bytes = mb.saturating_mul(1 << 20);
            }
            seconds(&mut log.max_file_age, self.prediction_log_file_seconds, file.prediction_log_file_seconds);
            if let Some(mb) = self.prediction_log_retention_mb.or(file.prediction_log_retention_mb) {
                log.retention_bytes = mb.saturating_mul(1 << 20);
            }
            set(&mut log.queue_rows, self.prediction_log_queue_rows, file.prediction_log_queue_rows);
            if let Some(mb) = self.prediction_log_queue_mb.or(file.prediction_log_queue_mb) {
                log.queue_bytes = mb.saturating_mul(1 << 20);
            }
            c.prediction_log = Some(log);
        }
        if let Some(endpoint) = self.otlp_endpoint.or(file.otlp_endpoint) {
            let mut t = TraceConfig::new(endpoint);
            set(&mut t.sample, self.trace_sample, file.trace_sample);
            set(&mut t.queue_spans, self.trace_queue_spans, file.trace_queue_spans);
            set(&mut t.batch_spans, self.trace_batch_spans, file.trace_batch_spans);
            if let Some(ms) = self.trace_export_interval_ms.or(file.trace_export_interval_ms) {
                t.export_interval = Duration::from_millis(ms);
            }
            seconds(&mut t.export_timeout, self.trace_export_timeout_seconds, file.trace_export_timeout_seconds);
            c.traces = Some(t);
        }
        if self.no_drift || file.no_drift.unwrap_or(false) {
            c.drift = None;
        } else if let Some(d) = &mut c.drift {
            seconds(&mut d.window, self.drift_window_seconds, file.drift_window_seconds);
            set(&mut d.min_rows, self.drift_min_rows, file.drift_min_rows);
            set(&mut d.queue_rows, self.drift_queue_rows, file.drift_queue_rows);
            set(&mut d.sample, self.drift_sample, file.drift_sample);
        }
        c.validate()?;
        Ok(c)
    }
}

fn read_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text =
        std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("cannot read config {}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| anyhow::anyhow!("config {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_file_which_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serve.toml");
        std::fs::write(&path, "max_batch_size = 64\nadmin_token = \"from-file\"\nmax_queue_delay_us = 50\n").unwrap();
        let args = ServeArgs { config: Some(path), max_batch_size: Some(32), ..ServeArgs::default() };
        let c = args.resolve().unwrap();
        assert_eq!(c.batching.max_batch_size, 32);
        assert_eq!(c.admin_token.as_deref(), Some("from-file"));
        assert_eq!(c.batching.max_queue_delay, Duration::from_micros(50));
        assert_eq!(c.max_request_rows, 4096);
        assert_eq!(c.addr, SocketAddr::from(([127, 0, 0, 1], 50051)));
    }

    #[test]
    fn drift_settings_and_the_off_switch() {
        let c = ServeArgs::default().resolve().unwrap();
        assert_eq!(c.drift, Some(liveprofile_server::drift::DriftConfig::default()));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serve.toml");
        std::fs::write(&path, "drift_window_seconds = 60\ndrift_sample = 0.5\n").unwrap();
        let c = ServeArgs { config: Some(path.clone()), drift_min_rows: Some(10), ..ServeArgs::default() }
            .resolve()
            .unwrap();
        let d = c.drift.unwrap();
        assert_eq!((d.window, d.sample, d.min_rows), (Duration::from_secs(60), 0.5, 10));
        let c = ServeArgs { config: Some(path), no_drift: true, ..ServeArgs::default() }.resolve().unwrap();
        assert_eq!(c.drift, None);
        let err = ServeArgs { drift_sample: Some(0.0), ..ServeArgs::default() }.resolve().unwrap_err().to_string();
        assert!(err.starts_with("--drift-sample must be above 0"), "{err}");
        let err = ServeArgs { drift_window_seconds: Some(0), ..ServeArgs::default() }.resolve().unwrap_err();
        assert_eq!(err.to_string(), "--drift-window-seconds must be at least 1");
    }

    #[test]
    fn bad_settings_are_refused_with_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serve.toml");
        std::fs::write(&path, "max_batch = 64\n").unwrap();
        let err = ServeArgs { config: Some(path), ..ServeArgs::default() }.resolve().unwrap_err().to_string();
        assert!(err.contains("unknown field `max_batch`"), "{err}");
        let err = ServeArgs { max_batch_size: Some(0), ..ServeArgs::default() }.resolve().unwrap_err().to_string();
        assert_eq!(err, "max-batch-size must be at least 1");
        let err = ServeArgs { tls_cert: Some("c.pem".into()), ..ServeArgs::default() }.resolve().unwrap_err();
        assert_eq!(err.to_string(), "TLS needs both --tls-cert and --tls-key");
    }

    #[test]
    fn blank_or_unsendable_admin_tokens_are_refused() {
        let token = |t: &str| ServeArgs { admin_token: Some(t.to_owned()), ..ServeArgs::default() }.resolve();
        for blank in [" ", "   ", "\t", " \n "] {
            let err = token(blank).unwrap_err().to_string();
            assert!(err.starts_with("admin-token is only whitespace"), "{blank:?}: {err}");
        }
        let err = token(" secret").unwrap_err().to_string();
        assert!(err.contains("starts or ends with whitespace"), "{err}");
        let err = token("sec\u{7f}ret").unwrap_err().to_string();
        assert!(err.contains("not printable ASCII"), "{err}");
        assert_eq!(token("").unwrap().admin_token, None, "empty: the admin API is off");
        assert_eq!(token("s3cret token").unwrap().admin_token.as_deref(), Some("s3cret token"));
        // The same check applies to the file.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serve.toml");
        std::fs::write(&path, "admin_token = \"  \"\n").unwrap();
        let err = ServeArgs { config: Some(path), ..ServeArgs::default() }.resolve().unwrap_err().to_string();
        assert!(err.starts_with("admin-token is only whitespace"), "{err}");
    }

    #[test]
    fn traces_are_off_unless_an_endpoint_is_set() {
        assert_eq!(ServeArgs::default().resolve().unwrap().traces, None);
        let args = ServeArgs { trace_sample: Some(0.5), ..ServeArgs::default() };
        assert_eq!(args.resolve().unwrap().traces, None, "a sample alone turns nothing on");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serve.toml");
        std::fs::write(&path, "otlp_endpoint = \"http://127.0.0.1:4317\"\ntrace_queue_spans = 1000\n").unwrap();
        let args = ServeArgs {
            config: Some(path),
            trace_sample: Some(0.25),
            trace_export_timeout_seconds: Some(2),
            ..ServeArgs::default()
        };
        let t = args.resolve().unwrap().traces.unwrap();
        assert_eq!(t.endpoint, "http://127.0.0.1:4317");
        assert_eq!((t.sample, t.queue_spans, t.batch_spans), (0.25, 1000, DEFAULT_TRACE_BATCH_SPANS));
        assert_eq!(t.export_timeout, Duration::from_secs(2));
        let bad = |endpoint: &str, sample: Option<f64>| {
            ServeArgs { otlp_endpoint: Some(endpoint.to_owned()), trace_sample: sample, ..ServeArgs::default() }
                .resolve()
                .unwrap_err()
                .to_string()
        };
        assert!(bad("127.0.0.1:4317", None).contains("must be http://host:port"), "{}", bad("127.0.0.1:4317", None));
        assert!(bad("https://collector:4317", None).contains("must be http://host:port"));
        assert_eq!(bad("http://127.0.0.1:4317", Some(1.5)), "--trace-sample must be between 0 and 1, not 1.5");
        let queue = |spans: usize| ServeArgs {
            otlp_endpoint: Some("http://127.0.0.1:4317".to_owned()),
            trace_queue_spans: Some(spans),
            ..ServeArgs::default()
        };
        assert_eq!(
            queue(10).resolve().unwrap_err().to_string(),
            "trace-queue-spans must be at least 257 (a call's spans, its children included, are queued together)"
        );
        assert_eq!(
            queue(300).resolve().unwrap_err().to_string(),
            "trace-batch-spans (512) is over trace-queue-spans (300)"
        );
    }
}
