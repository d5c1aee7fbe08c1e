//! Server configuration: the settings of a running server, their defaults (one constant
//! each) and the checks they must pass. The `liveprofile` binary fills them from flags,
//! environment variables and a TOML file; embedding programs and tests build them directly.

use liveprofile_store::Durability;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Model repository folder.
pub const DEFAULT_MODELS: &str = "models";
/// gRPC listen address.
pub const DEFAULT_ADDR: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 50051);
/// Prometheus metrics listen address.
pub const DEFAULT_METRICS_ADDR: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9090);
/// Rows scored together by the dynamic batcher.
pub const DEFAULT_MAX_BATCH_SIZE: usize = 256;
/// Microseconds a request waits for others to join its batch: none by default, so a batch
/// is what queued while the inference threads were busy (waiting with an idle thread cost
/// both latency and throughput in the open- and closed-loop benchmarks).
pub const DEFAULT_MAX_QUEUE_DELAY_US: u64 = 0;
/// Rows waiting beyond which new requests are refused at once.
pub const DEFAULT_MAX_QUEUE_ROWS: usize = 65_536;
/// Rows (users, candidates) in one request.
pub const DEFAULT_MAX_REQUEST_ROWS: usize = 4096;
/// Largest gRPC message accepted or sent.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 << 20;
/// Milliseconds between rescans of the model folder (behind the file watcher).
pub const DEFAULT_RESCAN_MS: u64 = 2000;
/// Good versions kept loaded per model for rollback.
pub const DEFAULT_KEEP_VERSIONS: usize = 3;
/// Shadow and canary comparisons queued.
pub const DEFAULT_SHADOW_QUEUE: usize = 4096;
/// Seconds running requests get to finish after SIGTERM.
pub const DEFAULT_DRAIN_SECONDS: u64 = 10;
/// Experiments folder.
pub const DEFAULT_EXPERIMENTS_DIR: &str = "data/experiments";
/// Profile store folder.
pub const DEFAULT_DATA_DIR: &str = "data/profiles";
/// Log records between two snapshots.
pub const DEFAULT_SNAPSHOT_EVERY: u64 = 10_000_000;
/// Longest time between two snapshots when events arrived, in seconds.
pub const DEFAULT_SNAPSHOT_SECONDS: u64 = 300;
/// MQTT topic filter.
pub const DEFAULT_MQTT_TOPIC: &str = "live/+/+/events";
/// MQTT client id (the persistent session's name).
pub const DEFAULT_MQTT_CLIENT_ID: &str = "liveprofile";

/// Most open gRPC connections; at the cap a new connection is closed at once.
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;
/// Seconds a gRPC connection has to send its first call (TLS handshake and HTTP/2 preface
/// included).
pub const DEFAULT_HANDSHAKE_TIMEOUT_SECONDS: u64 = 10;
/// Concurrent HTTP/2 streams (calls) per gRPC connection.
pub const DEFAULT_MAX_STREAMS_PER_CONNECTION: u32 = 100;
/// Seconds between HTTP/2 keepalive pings on an idle gRPC connection.
pub const DEFAULT_HTTP2_KEEPALIVE_SECONDS: u64 = 60;
/// Seconds a keepalive ping may go unanswered before the connection is closed.
pub const DEFAULT_HTTP2_KEEPALIVE_TIMEOUT_SECONDS: u64 = 20;
/// Seconds a call may wait for its caller's next message before it ends.
pub const DEFAULT_STREAM_IDLE_TIMEOUT_SECONDS: u64 = 30;
/// Encoded request bytes held at once, unless `max-message-bytes` is larger.
pub const DEFAULT_MAX_INFLIGHT_REQUEST_BYTES: usize = 64 << 20;
/// Most open connections on the metrics port.
pub const DEFAULT_METRICS_MAX_CONNECTIONS: usize = 16;
/// Seconds a metrics connection has to send a request.
pub const DEFAULT_METRICS_HEADER_TIMEOUT_SECONDS: u64 = 5;

/// Spans held for the trace exporter; beyond it new spans are dropped and counted.
pub const DEFAULT_TRACE_QUEUE_SPANS: usize = 8192;
/// Spans sent in one OTLP export call.
pub const DEFAULT_TRACE_BATCH_SPANS: usize = 512;
/// Longest wait of a span for its export call, in milliseconds (a batch that has not
/// filled is sent then).
pub const DEFAULT_TRACE_EXPORT_INTERVAL_MS: u64 = 1000;
/// Seconds an OTLP export call (connecting included) may take before it is given up and
/// its spans counted as dropped.
pub const DEFAULT_TRACE_EXPORT_TIMEOUT_SECONDS: u64 = 5;
/// Share of requests without a caller's sampling decision that are traced.
pub const DEFAULT_TRACE_SAMPLE: f64 = 1.0;

/// OpenTelemetry traces exported over OTLP/gRPC.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceConfig {
    /// The collector's OTLP/gRPC endpoint, `http://host:port`.
    pub endpoint: String,
    /// Share of new traces (requests without a caller's `traceparent`, or with a malformed
    /// one) that are recorded, 0 to 1. A caller's sampled flag is always followed.
    pub sample: f64,
    /// Spans waiting for export.
    pub queue_spans: usize,
    /// Spans per export call.
    pub batch_spans: usize,
    /// Longest wait before a partial batch is sent.
    pub export_interval: Duration,
    /// Longest time of one export call.
    pub export_timeout: Duration,
}

impl TraceConfig {
    /// Defaults for `endpoint`.
    pub fn new(endpoint: impl Into<String>) -> Self {
        TraceConfig {
            endpoint: endpoint.into(),
            sample: DEFAULT_TRACE_SAMPLE,
            queue_spans: DEFAULT_TRACE_QUEUE_SPANS,
            batch_spans: DEFAULT_TRACE_BATCH_SPANS,
            export_interval: Duration::from_millis(DEFAULT_TRACE_EXPORT_INTERVAL_MS),
            export_timeout: Duration::from_secs(DEFAULT_TRACE_EXPORT_TIMEOUT_SECONDS),
        }
    }

    /// The checks: an `http://` endpoint with a host, a ratio in 0..=1, a queue that holds
    /// the largest call ([`crate::traces::MAX_CHILD_SPANS`] children and its root), sizes and
    /// times of at least 1 and a batch no larger than the queue. The error names the flag.
    pub fn validate(&self) -> anyhow::Result<()> {
        let uri: tonic::codegen::http::Uri = self
            .endpoint
            .parse()
            .map_err(|e| anyhow::anyhow!("--otlp-endpoint {:?} is not a URL: {e}", self.endpoint))?;
        anyhow::ensure!(
            uri.scheme_str() == Some("http") && uri.host().is_some(),
            "--otlp-endpoint {:?} must be http://host:port (OTLP over gRPC without TLS)",
            self.endpoint
        );
        anyhow::ensure!(
            (0.0..=1.0).contains(&self.sample),
            "--trace-sample must be between 0 and 1, not {}",
            self.sample
        );
        // A call is queued whole: a queue smaller than the largest call would drop it always.
        let largest_call = crate::traces::MAX_CHILD_SPANS + 1;
        anyhow::ensure!(
            self.queue_spans >= largest_call,
            "trace-queue-spans must be at least {largest_call} (a call's spans, its children included, are queued together)"
        );
        anyhow::ensure!(self.batch_spans > 0, "trace-batch-spans must be at least 1");
        anyhow::ensure!(
            self.batch_spans <= self.queue_spans,
            "trace-batch-spans ({}) is over trace-queue-spans ({})",
            self.batch_spans,
            self.queue_spans
        );
        anyhow::ensure!(!self.export_interval.is_zero(), "trace-export-interval-ms must be at least 1");
        anyhow::ensure!(!self.export_timeout.is_zero(), "trace-export-timeout-seconds must be at least 1");
        Ok(())
    }
}

/// TLS files.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsFiles {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// The resolved configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// Model repository folder.
    pub models: PathBuf,
    /// gRPC address (port 0 picks a free port).
    pub addr: SocketAddr,
    /// Metrics address (port 0 picks a free port).
    pub metrics_addr: SocketAddr,
    /// Dynamic batching and admission.
    pub batching: BatchingConfig,
    /// Rows per request.
    pub max_request_rows: usize,
    /// gRPC message limit.
    pub max_message_bytes: usize,
    /// Admin bearer token.
    pub admin_token: Option<String>,
    /// TLS, if enabled.
    pub tls: Option<TlsFiles>,
    /// Rescan period of the model folder.
    pub rescan: Duration,
    /// Versions kept per model.
    pub keep_versions: usize,
    /// Shadow comparison queue.
    pub shadow_queue: usize,
    /// Drain time on shutdown.
    pub drain: Duration,
    /// Experiments folder (definitions, watched).
    pub experiments: PathBuf,
    /// The profile store and its ingest paths.
    pub profiles: ProfilesConfig,
    /// Connection, stream and request-size limits.
    pub limits: LimitsConfig,
    /// The prediction log (every answer, or a sample, with its features), when enabled.
    pub prediction_log: Option<liveprofile_predlog::LogConfig>,
    /// OpenTelemetry traces, when an OTLP endpoint is set (off by default).
    pub traces: Option<TraceConfig>,
    /// The drift monitor, unless turned off.
    pub drift: Option<crate::drift::DriftConfig>,
}

/// What callers can hold of the server, and for how long.
#[derive(Debug, Clone, PartialEq)]
pub struct LimitsConfig {
    /// Open gRPC connections.
    pub max_connections: usize,
    /// Time a gRPC connection has to make its first call.
    pub handshake_timeout: Duration,
    /// Concurrent HTTP/2 streams per gRPC connection.
    pub max_streams_per_connection: u32,
    /// HTTP/2 keepalive ping period.
    pub keepalive_interval: Duration,
    /// Time a keepalive ping may go unanswered.
    pub keepalive_timeout: Duration,
    /// Time a call may wait for its caller's next message.
    pub stream_idle_timeout: Duration,
    /// Encoded request bytes held at once.
    pub max_inflight_request_bytes: usize,
    /// Open metrics connections.
    pub metrics_max_connections: usize,
    /// Time a metrics connection has to send a request.
    pub metrics_header_timeout: Duration,
}

/// The profile store and ingest.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfilesConfig {
    /// Data folder.
    pub data_dir: PathBuf,
    /// When an acknowledged event reaches the disk.
    pub durability: Durability,
    /// Records between snapshots.
    pub snapshot_every: u64,
    /// Longest time between snapshots.
    pub snapshot_interval: Duration,
    /// Event time a resent event is answered `duplicate`.
    pub dedup_horizon: Duration,
    /// Most event ids kept for duplicate answers.
    pub dedup_max_ids: usize,
    /// Start even when the log lost acknowledged records.
    pub accept_log_damage: bool,
    /// Identity links loaded at start.
    pub identities: Option<PathBuf>,
    /// MQTT subscription, if enabled.
    pub mqtt: Option<MqttConfig>,
}

/// The MQTT subscription.
#[derive(Debug, Clone, PartialEq)]
pub struct MqttConfig {
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// Topic filter.
    pub topic: String,
    /// Client id (persistent session).
    pub client_id: String,
}

/// Dynamic batching settings.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchingConfig {
    /// Rows per executed batch.
    pub max_batch_size: usize,
    /// Longest wait for a batch to fill.
    pub max_queue_delay: Duration,
    /// Rows queued before admission refuses.
    pub max_queue_rows: usize,
    /// Inference threads.
    pub threads: usize,
}

/// Inference threads on a machine of `cores` cores: half of them, at least one. The async
/// runtime has a worker per core, so inference threads on every core as well made twice as
/// many busy threads as cores: on 2 cores, one inference thread instead of two took 14-15%
/// less server CPU per single-row request and answered 2-6% more of them at the closed-loop
/// peak (ScoreConversion, ScoreTags, KServe); 32-row ScoreTags requests lost 2-3% of their
/// peak, and the open-loop p99 at half the peak did not move beyond its noise (README,
/// "Scoring service").
pub fn default_inference_threads(cores: usize) -> usize {
    (cores / 2).max(1)
}

impl Default for ServerConfig {
    /// Every setting at its default; inference threads, [`default_inference_threads`].
    fn default() -> Self {
        let threads = default_inference_threads(std::thread::available_parallelism().map_or(1, |n| n.get()));
        ServerConfig {
            models: PathBuf::from(DEFAULT_MODELS),
            addr: DEFAULT_ADDR,
            metrics_addr: DEFAULT_METRICS_ADDR,
            batching: BatchingConfig {
                max_batch_size: DEFAULT_MAX_BATCH_SIZE,
                max_queue_delay: Duration::from_micros(DEFAULT_MAX_QUEUE_DELAY_US),
                max_queue_rows: DEFAULT_MAX_QUEUE_ROWS,
                threads,
            },
            max_request_rows: DEFAULT_MAX_REQUEST_ROWS,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            admin_token: None,
            tls: None,
            rescan: Duration::from_millis(DEFAULT_RESCAN_MS),
            keep_versions: DEFAULT_KEEP_VERSIONS,
            shadow_queue: DEFAULT_SHADOW_QUEUE,
            drain: Duration::from_secs(DEFAULT_DRAIN_SECONDS),
            experiments: PathBuf::from(DEFAULT_EXPERIMENTS_DIR),
            profiles: ProfilesConfig {
                data_dir: PathBuf::from(DEFAULT_DATA_DIR),
                durability: Durability::Fsync,
                snapshot_every: DEFAULT_SNAPSHOT_EVERY,
                snapshot_interval: Duration::from_secs(DEFAULT_SNAPSHOT_SECONDS),
                dedup_horizon: Duration::from_millis(liveprofile_store::DEFAULT_DEDUP_HORIZON_MS as u64),
                dedup_max_ids: liveprofile_store::DEFAULT_DEDUP_MAX_IDS,
                accept_log_damage: false,
                identities: None,
                mqtt: None,
            },
            limits: LimitsConfig {
                max_connections: DEFAULT_MAX_CONNECTIONS,
                handshake_timeout: Duration::from_secs(DEFAULT_HANDSHAKE_TIMEOUT_SECONDS),
                max_streams_per_connection: DEFAULT_MAX_STREAMS_PER_CONNECTION,
                keepalive_interval: Duration::from_secs(DEFAULT_HTTP2_KEEPALIVE_SECONDS),
                keepalive_timeout: Duration::from_secs(DEFAULT_HTTP2_KEEPALIVE_TIMEOUT_SECONDS),
                stream_idle_timeout: Duration::from_secs(DEFAULT_STREAM_IDLE_TIMEOUT_SECONDS),
                max_inflight_request_bytes: DEFAULT_MAX_INFLIGHT_REQUEST_BYTES.max(DEFAULT_MAX_MESSAGE_BYTES),
                metrics_max_connections: DEFAULT_METRICS_MAX_CONNECTIONS,
                metrics_header_timeout: Duration::from_secs(DEFAULT_METRICS_HEADER_TIMEOUT_SECONDS),
            },
            prediction_log: None,
            traces: None,
            drift: Some(crate::drift::DriftConfig::default()),
        }
    }
}

impl ServerConfig {
    /// Defaults for a repository folder, with both addresses on loopback and free ports:
    /// what tests and embedding programs start from.
    pub fn for_tests(models: impl Into<PathBuf>) -> Self {
        let loopback_any_port = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);
        let mut c = ServerConfig {
            models: models.into(),
            addr: loopback_any_port,
            metrics_addr: loopback_any_port,
            rescan: Duration::from_millis(200),
            ..ServerConfig::default()
        };
        // Every test server gets its own profile store folder.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        c.profiles.data_dir = std::env::temp_dir().join(format!("liveprofile-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&c.profiles.data_dir);
        c.profiles.durability = Durability::Write;
        c.experiments = c.profiles.data_dir.join("experiments");
        c
    }

    /// The checks a configuration must pass before a server starts with it (the binary
    /// runs them on what flags, environment and file gave): sizes and times at least 1,
    /// limits that agree with each other, a sendable admin token. The error names the
    /// setting by its flag.
    pub fn validate(&self) -> anyhow::Result<()> {
        if let Some(log) = &self.prediction_log {
            log.validate().map_err(|e| anyhow::anyhow!("--prediction-log: {e}"))?;
        }
        if let Some(traces) = &self.traces {
            traces.validate()?;
        }
        if let Some(token) = &self.admin_token {
            check_admin_token(token)?;
        }
        if let Some(drift) = &self.drift {
            drift.validate()?;
        }
        for (name, v) in [
            ("max-batch-size", self.batching.max_batch_size),
            ("max-queue-rows", self.batching.max_queue_rows),
            ("max-request-rows", self.max_request_rows),
            ("inference-threads", self.batching.threads),
            ("max-message-bytes", self.max_message_bytes),
            ("keep-versions", self.keep_versions),
            ("shadow-queue", self.shadow_queue),
            ("rescan-ms", self.rescan.as_millis() as usize),
            ("snapshot-every", self.profiles.snapshot_every as usize),
            ("snapshot-seconds", self.profiles.snapshot_interval.as_secs() as usize),
            ("dedup-max-ids", self.profiles.dedup_max_ids),
            ("max-connections", self.limits.max_connections),
            ("handshake-timeout-seconds", self.limits.handshake_timeout.as_secs() as usize),
            ("max-streams-per-connection", self.limits.max_streams_per_connection as usize),
            ("http2-keepalive-seconds", self.limits.keepalive_interval.as_secs() as usize),
            ("http2-keepalive-timeout-seconds", self.limits.keepalive_timeout.as_secs() as usize),
            ("stream-idle-timeout-seconds", self.limits.stream_idle_timeout.as_secs() as usize),
            ("metrics-max-connections", self.limits.metrics_max_connections),
            ("metrics-header-timeout-seconds", self.limits.metrics_header_timeout.as_secs() as usize),
        ] {
            anyhow::ensure!(v > 0, "{name} must be at least 1");
        }
        anyhow::ensure!(
            self.profiles.dedup_horizon.as_millis() <= liveprofile_store::MAX_DEDUP_HORIZON_MS as u128,
            "dedup-horizon-hours must be at most {}",
            liveprofile_store::MAX_DEDUP_HORIZON_MS / 3_600_000
        );
        anyhow::ensure!(
            self.limits.max_inflight_request_bytes >= self.max_message_bytes,
            "max-inflight-request-bytes ({}) is under max-message-bytes ({}): a message of the largest size could \
             never be admitted",
            self.limits.max_inflight_request_bytes,
            self.max_message_bytes
        );
        anyhow::ensure!(
            self.limits.max_connections <= tokio::sync::Semaphore::MAX_PERMITS
                && self.limits.metrics_max_connections <= tokio::sync::Semaphore::MAX_PERMITS,
            "max-connections and metrics-max-connections must be at most {}",
            tokio::sync::Semaphore::MAX_PERMITS
        );
        if let Some(drift) = &self.drift {
            // A batch holds at most max-batch-size rows, or one request of up to
            // max-request-rows: a larger batch could never enter the monitor's queue.
            let largest = self.max_request_rows.max(self.batching.max_batch_size);
            anyhow::ensure!(
                drift.queue_rows >= largest,
                "drift-queue-rows ({}) is under the largest batch the server scores ({largest}: the larger of \
                 max-request-rows and max-batch-size): such batches could never be monitored",
                drift.queue_rows
            );
        }
        anyhow::ensure!(
            self.max_request_rows <= self.batching.max_queue_rows,
            "max-request-rows ({}) is over max-queue-rows ({}): such a request could never be admitted",
            self.max_request_rows,
            self.batching.max_queue_rows
        );
        Ok(())
    }
}

/// A token a client can send in `authorization: Bearer <token>` and that is not blank.
pub fn check_admin_token(token: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        !token.trim().is_empty(),
        "admin-token is only whitespace: set a real token, or leave it empty to disable the admin API"
    );
    anyhow::ensure!(
        token.trim() == token,
        "admin-token starts or ends with whitespace, which an authorization header cannot carry"
    );
    anyhow::ensure!(
        token.bytes().all(|b| b == b' ' || b.is_ascii_graphic()),
        "admin-token has a character that is not printable ASCII (it travels in an HTTP header)"
    );
    Ok(())
}
