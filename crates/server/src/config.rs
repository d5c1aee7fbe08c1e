//! Server configuration: command-line flags, each with an environment variable, over an
//! optional TOML file, over the defaults. `liveprofile serve --help` lists every knob.

use liveprofile_store::Durability;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

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

/// The defaults of the flags whose help does not spell theirs: appended to the help from
/// the constants above.
fn flag_defaults() -> [(&'static str, String); 9] {
    [
        ("max_connections", DEFAULT_MAX_CONNECTIONS.to_string()),
        ("handshake_timeout_seconds", DEFAULT_HANDSHAKE_TIMEOUT_SECONDS.to_string()),
        ("max_streams_per_connection", DEFAULT_MAX_STREAMS_PER_CONNECTION.to_string()),
        ("http2_keepalive_seconds", DEFAULT_HTTP2_KEEPALIVE_SECONDS.to_string()),
        ("http2_keepalive_timeout_seconds", DEFAULT_HTTP2_KEEPALIVE_TIMEOUT_SECONDS.to_string()),
        ("stream_idle_timeout_seconds", DEFAULT_STREAM_IDLE_TIMEOUT_SECONDS.to_string()),
        (
            "max_inflight_request_bytes",
            format!(
                "{DEFAULT_MAX_INFLIGHT_REQUEST_BYTES} ({} MiB) or --max-message-bytes if larger",
                DEFAULT_MAX_INFLIGHT_REQUEST_BYTES >> 20
            ),
        ),
        ("metrics_max_connections", DEFAULT_METRICS_MAX_CONNECTIONS.to_string()),
        ("metrics_header_timeout_seconds", DEFAULT_METRICS_HEADER_TIMEOUT_SECONDS.to_string()),
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
    /// Model repository folder, `<name>/<version>/` packages [default: models].
    #[arg(long, env = "LIVEPROFILE_MODELS")]
    pub models: Option<PathBuf>,
    /// gRPC listen address [default: 127.0.0.1:50051].
    #[arg(long, env = "LIVEPROFILE_ADDR")]
    pub addr: Option<SocketAddr>,
    /// Prometheus metrics listen address, served at /metrics [default: 127.0.0.1:9090].
    #[arg(long, env = "LIVEPROFILE_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// Largest number of rows scored together by the dynamic batcher [default: 256].
    #[arg(long, env = "LIVEPROFILE_MAX_BATCH_SIZE")]
    pub max_batch_size: Option<usize>,
    /// Longest time a request waits for others to join its batch, in microseconds
    /// [default: 200].
    #[arg(long, env = "LIVEPROFILE_MAX_QUEUE_DELAY_US")]
    pub max_queue_delay_us: Option<u64>,
    /// Rows waiting in the queue beyond which new requests get RESOURCE_EXHAUSTED at once
    /// [default: 65536].
    #[arg(long, env = "LIVEPROFILE_MAX_QUEUE_ROWS")]
    pub max_queue_rows: Option<usize>,
    /// Most rows (users, candidates) in one request; more is INVALID_ARGUMENT
    /// [default: 4096].
    #[arg(long, env = "LIVEPROFILE_MAX_REQUEST_ROWS")]
    pub max_request_rows: Option<usize>,
    /// Inference threads (off the async runtime) [default: the number of cores].
    #[arg(long, env = "LIVEPROFILE_INFERENCE_THREADS")]
    pub inference_threads: Option<usize>,
    /// Largest gRPC message accepted or sent, in bytes [default: 67108864 (64 MiB)].
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
    /// Period of the model folder rescan that backs up the file watcher, in milliseconds
    /// [default: 2000].
    #[arg(long, env = "LIVEPROFILE_RESCAN_MS")]
    pub rescan_ms: Option<u64>,
    /// Good versions kept loaded per model for rollback [default: 3].
    #[arg(long, env = "LIVEPROFILE_KEEP_VERSIONS")]
    pub keep_versions: Option<usize>,
    /// Queue of shadow and canary comparisons; when full, comparisons are dropped and
    /// counted, never the request [default: 4096].
    #[arg(long, env = "LIVEPROFILE_SHADOW_QUEUE")]
    pub shadow_queue: Option<usize>,
    /// Time to finish running requests after SIGTERM, in seconds [default: 10].
    #[arg(long, env = "LIVEPROFILE_DRAIN_SECONDS")]
    pub drain_seconds: Option<u64>,
    /// Experiments folder: one `<name>.toml` definition per experiment, watched; created
    /// experiments are written there [default: data/experiments].
    #[arg(long, env = "LIVEPROFILE_EXPERIMENTS")]
    pub experiments: Option<PathBuf>,
    /// Profile store folder: append-only log and snapshots [default: data/profiles].
    #[arg(long, env = "LIVEPROFILE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// When an acknowledged event reaches the disk: `fsync` (survives power loss) or
    /// `write` (survives the process being killed) [default: fsync].
    #[arg(long, env = "LIVEPROFILE_DURABILITY")]
    pub durability: Option<String>,
    /// Log records between two snapshots of the profile store [default: 10000000].
    #[arg(long, env = "LIVEPROFILE_SNAPSHOT_EVERY")]
    pub snapshot_every: Option<u64>,
    /// Longest time between two snapshots when events arrived, in seconds [default: 300].
    #[arg(long, env = "LIVEPROFILE_SNAPSHOT_SECONDS")]
    pub snapshot_seconds: Option<u64>,
    /// Hours of event time an event sent again is answered `duplicate` (a producer may
    /// retry for this long and learn its events are stored), at most 720 [default: 6].
    #[arg(long, env = "LIVEPROFILE_DEDUP_HORIZON_HOURS")]
    pub dedup_horizon_hours: Option<u64>,
    /// Most event ids kept for duplicate answers (16 bytes each plus the table's slack);
    /// over it the oldest go first and the horizon shortens [default: 7340032].
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
    /// MQTT topic filter subscribed with QoS 1 [default: live/+/+/events].
    #[arg(long, env = "LIVEPROFILE_MQTT_TOPIC")]
    pub mqtt_topic: Option<String>,
    /// MQTT client id; the session is persistent, so messages published while the server
    /// is down are delivered when it is back [default: liveprofile].
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

impl ServerConfig {
    /// Defaults for a repository folder, with both addresses on loopback and free ports:
    /// what tests and embedding programs start from.
    pub fn for_tests(models: impl Into<PathBuf>) -> Self {
        let mut c = ServeArgs::default().resolve().expect("defaults are valid");
        c.models = models.into();
        c.addr = "127.0.0.1:0".parse().expect("address");
        c.metrics_addr = "127.0.0.1:0".parse().expect("address");
        c.rescan = Duration::from_millis(200);
        // Every test server gets its own profile store folder.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        c.profiles.data_dir = std::env::temp_dir().join(format!("liveprofile-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&c.profiles.data_dir);
        c.profiles.durability = Durability::Write;
        c.experiments = c.profiles.data_dir.join("experiments");
        c
    }
}

impl ServeArgs {
    /// Flags (with their environment variables) over the `--config` file over defaults.
    pub fn resolve(self) -> anyhow::Result<ServerConfig> {
        let file = match &self.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let max_message_bytes = self.max_message_bytes.or(file.max_message_bytes).unwrap_or(64 << 20);
        let seconds =
            |flag: Option<u64>, key: Option<u64>, default: u64| Duration::from_secs(flag.or(key).unwrap_or(default));
        let limits = LimitsConfig {
            max_connections: self.max_connections.or(file.max_connections).unwrap_or(DEFAULT_MAX_CONNECTIONS),
            handshake_timeout: seconds(
                self.handshake_timeout_seconds,
                file.handshake_timeout_seconds,
                DEFAULT_HANDSHAKE_TIMEOUT_SECONDS,
            ),
            max_streams_per_connection: self
                .max_streams_per_connection
                .or(file.max_streams_per_connection)
                .unwrap_or(DEFAULT_MAX_STREAMS_PER_CONNECTION),
            keepalive_interval: seconds(
                self.http2_keepalive_seconds,
                file.http2_keepalive_seconds,
                DEFAULT_HTTP2_KEEPALIVE_SECONDS,
            ),
            keepalive_timeout: seconds(
                self.http2_keepalive_timeout_seconds,
                file.http2_keepalive_timeout_seconds,
                DEFAULT_HTTP2_KEEPALIVE_TIMEOUT_SECONDS,
            ),
            stream_idle_timeout: seconds(
                self.stream_idle_timeout_seconds,
                file.stream_idle_timeout_seconds,
                DEFAULT_STREAM_IDLE_TIMEOUT_SECONDS,
            ),
            max_inflight_request_bytes: self
                .max_inflight_request_bytes
                .or(file.max_inflight_request_bytes)
                .unwrap_or(DEFAULT_MAX_INFLIGHT_REQUEST_BYTES.max(max_message_bytes)),
            metrics_max_connections: self
                .metrics_max_connections
                .or(file.metrics_max_connections)
                .unwrap_or(DEFAULT_METRICS_MAX_CONNECTIONS),
            metrics_header_timeout: seconds(
                self.metrics_header_timeout_seconds,
                file.metrics_header_timeout_seconds,
                DEFAULT_METRICS_HEADER_TIMEOUT_SECONDS,
            ),
        };
        let c = ServerConfig {
            models: self.models.or(file.models).unwrap_or_else(|| PathBuf::from("models")),
            addr: self.addr.or(file.addr).unwrap_or(SocketAddr::from(([127, 0, 0, 1], 50051))),
            metrics_addr: self.metrics_addr.or(file.metrics_addr).unwrap_or(SocketAddr::from(([127, 0, 0, 1], 9090))),
            batching: BatchingConfig {
                max_batch_size: self.max_batch_size.or(file.max_batch_size).unwrap_or(256),
                max_queue_delay: Duration::from_micros(
                    self.max_queue_delay_us.or(file.max_queue_delay_us).unwrap_or(200),
                ),
                max_queue_rows: self.max_queue_rows.or(file.max_queue_rows).unwrap_or(65_536),
                threads: self.inference_threads.or(file.inference_threads).unwrap_or(threads),
            },
            max_request_rows: self.max_request_rows.or(file.max_request_rows).unwrap_or(4096),
            max_message_bytes,
            admin_token: self
                .admin_token
                .or(file.admin_token)
                .filter(|t| !t.is_empty())
                .map(|t| check_admin_token(&t).map(|()| t))
                .transpose()?,
            tls: match (self.tls_cert.or(file.tls_cert), self.tls_key.or(file.tls_key)) {
                (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
                (None, None) => None,
                _ => anyhow::bail!("TLS needs both --tls-cert and --tls-key"),
            },
            rescan: Duration::from_millis(self.rescan_ms.or(file.rescan_ms).unwrap_or(2000)),
            keep_versions: self.keep_versions.or(file.keep_versions).unwrap_or(3),
            shadow_queue: self.shadow_queue.or(file.shadow_queue).unwrap_or(4096),
            drain: Duration::from_secs(self.drain_seconds.or(file.drain_seconds).unwrap_or(10)),
            experiments: self.experiments.or(file.experiments).unwrap_or_else(|| PathBuf::from("data/experiments")),
            profiles: ProfilesConfig {
                data_dir: self.data_dir.or(file.data_dir).unwrap_or_else(|| PathBuf::from("data/profiles")),
                durability: self
                    .durability
                    .or(file.durability)
                    .map(|d| d.parse::<Durability>())
                    .transpose()
                    .map_err(anyhow::Error::msg)?
                    .unwrap_or(Durability::Fsync),
                snapshot_every: self.snapshot_every.or(file.snapshot_every).unwrap_or(10_000_000),
                snapshot_interval: Duration::from_secs(self.snapshot_seconds.or(file.snapshot_seconds).unwrap_or(300)),
                dedup_horizon: Duration::from_secs(
                    3600 * self
                        .dedup_horizon_hours
                        .or(file.dedup_horizon_hours)
                        .unwrap_or((liveprofile_store::DEFAULT_DEDUP_HORIZON_MS / 3_600_000) as u64),
                ),
                dedup_max_ids: self
                    .dedup_max_ids
                    .or(file.dedup_max_ids)
                    .unwrap_or(liveprofile_store::DEFAULT_DEDUP_MAX_IDS),
                accept_log_damage: self.accept_log_damage || file.accept_log_damage.unwrap_or(false),
                identities: self.identities.or(file.identities),
                mqtt: match self.mqtt_broker.or(file.mqtt_broker) {
                    None => None,
                    Some(broker) => {
                        let (host, port) = broker
                            .rsplit_once(':')
                            .and_then(|(h, p)| Some((h.to_owned(), p.parse::<u16>().ok()?)))
                            .filter(|(h, _)| !h.is_empty())
                            .ok_or_else(|| anyhow::anyhow!("mqtt-broker {broker:?} is not host:port"))?;
                        Some(MqttConfig {
                            host,
                            port,
                            topic: self.mqtt_topic.or(file.mqtt_topic).unwrap_or_else(|| "live/+/+/events".to_owned()),
                            client_id: self
                                .mqtt_client_id
                                .or(file.mqtt_client_id)
                                .unwrap_or_else(|| "liveprofile".to_owned()),
                        })
                    }
                },
            },
            limits,
        };
        for (name, v) in [
            ("max-batch-size", c.batching.max_batch_size),
            ("max-queue-rows", c.batching.max_queue_rows),
            ("max-request-rows", c.max_request_rows),
            ("inference-threads", c.batching.threads),
            ("max-message-bytes", c.max_message_bytes),
            ("keep-versions", c.keep_versions),
            ("shadow-queue", c.shadow_queue),
            ("rescan-ms", c.rescan.as_millis() as usize),
            ("snapshot-every", c.profiles.snapshot_every as usize),
            ("snapshot-seconds", c.profiles.snapshot_interval.as_secs() as usize),
            ("dedup-max-ids", c.profiles.dedup_max_ids),
            ("max-connections", c.limits.max_connections),
            ("handshake-timeout-seconds", c.limits.handshake_timeout.as_secs() as usize),
            ("max-streams-per-connection", c.limits.max_streams_per_connection as usize),
            ("http2-keepalive-seconds", c.limits.keepalive_interval.as_secs() as usize),
            ("http2-keepalive-timeout-seconds", c.limits.keepalive_timeout.as_secs() as usize),
            ("stream-idle-timeout-seconds", c.limits.stream_idle_timeout.as_secs() as usize),
            ("metrics-max-connections", c.limits.metrics_max_connections),
            ("metrics-header-timeout-seconds", c.limits.metrics_header_timeout.as_secs() as usize),
        ] {
            anyhow::ensure!(v > 0, "{name} must be at least 1");
        }
        anyhow::ensure!(
            c.profiles.dedup_horizon.as_millis() <= liveprofile_store::MAX_DEDUP_HORIZON_MS as u128,
            "dedup-horizon-hours must be at most {}",
            liveprofile_store::MAX_DEDUP_HORIZON_MS / 3_600_000
        );
        anyhow::ensure!(
            c.limits.max_inflight_request_bytes >= c.max_message_bytes,
            "max-inflight-request-bytes ({}) is under max-message-bytes ({}): a message of the largest size could \
             never be admitted",
            c.limits.max_inflight_request_bytes,
            c.max_message_bytes
        );
        anyhow::ensure!(
            c.limits.max_connections <= tokio::sync::Semaphore::MAX_PERMITS
                && c.limits.metrics_max_connections <= tokio::sync::Semaphore::MAX_PERMITS,
            "max-connections and metrics-max-connections must be at most {}",
            tokio::sync::Semaphore::MAX_PERMITS
        );
        anyhow::ensure!(
            c.max_request_rows <= c.batching.max_queue_rows,
            "max-request-rows ({}) is over max-queue-rows ({}): such a request could never be admitted",
            c.max_request_rows,
            c.batching.max_queue_rows
        );
        Ok(c)
    }
}

/// A token a client can send in `authorization: Bearer <token>` and that is not blank.
fn check_admin_token(token: &str) -> anyhow::Result<()> {
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
}
