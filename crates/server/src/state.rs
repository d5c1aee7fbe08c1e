//! What every service of the server shares: the model repository (set once it has
//! loaded), the batcher, metrics, the comparison scorer and the configuration; and the
//! mapping of runtime errors to gRPC status codes.

use crate::batcher::{Batcher, Job, JobError, Outcome};
use crate::config::ServerConfig;
use crate::metrics::Metrics;
use liveprofile_runtime::{InputError, LoadedModel, ModelRepository, RouteError, ScoreError, ShadowScorer};
use liveprofile_store::ProfileStore;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tonic::{Code, Status};

/// Shared server state.
pub struct AppState {
    /// Resolved configuration.
    pub config: ServerConfig,
    repo: OnceLock<Arc<ModelRepository>>,
    /// The dynamic batcher.
    pub batcher: Batcher,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Canary and shadow comparisons.
    pub shadow: Arc<ShadowScorer>,
    /// Every user's online profile, kept by ingest.
    pub profiles: Arc<ProfileStore>,
    /// The prediction log, when enabled.
    pub predictions: Option<liveprofile_predlog::PredictionLog>,
    /// The drift monitor, unless turned off.
    pub drift: Option<Arc<crate::drift::DriftMonitor>>,
    /// Requests numbered for the ids the server gives (`<start ms in hex>-<n>`).
    request_ids: std::sync::atomic::AtomicU64,
    started_ms: i64,
    stopping: AtomicBool,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").field("ready", &self.is_ready()).finish()
    }
}

impl AppState {
    /// Starts the batcher and the comparison scorer around an opened profile store; the
    /// repository comes later.
    pub fn new(
        config: ServerConfig,
        profiles: Arc<ProfileStore>,
        predictions: Option<liveprofile_predlog::PredictionLog>,
    ) -> Self {
        let metrics = Arc::new(Metrics::new());
        let shadow = Arc::new(ShadowScorer::start(config.shadow_queue));
        let drift = config.drift.clone().and_then(|c| match crate::drift::DriftMonitor::start(c) {
            Ok(m) => Some(Arc::new(m)),
            Err(e) => {
                tracing::error!(error = %e, "cannot start the drift monitor's thread; drift is not monitored");
                None
            }
        });
        let batcher = Batcher::start(config.batching.clone(), metrics.clone(), shadow.clone(), drift.clone());
        AppState {
            drift,
            config,
            repo: OnceLock::new(),
            batcher,
            metrics,
            shadow,
            profiles,
            predictions,
            request_ids: std::sync::atomic::AtomicU64::new(0),
            started_ms: liveprofile_store::now_ms(),
            stopping: AtomicBool::new(false),
        }
    }

    /// Writes a request id for a request that came without one: unique within this server's
    /// run and, with the start time in it, across runs (at most 33 bytes).
    pub fn write_request_id(&self, out: &mut impl std::fmt::Write) -> std::fmt::Result {
        let n = self.request_ids.fetch_add(1, Ordering::Relaxed);
        write!(out, "{:x}-{n}", self.started_ms)
    }

    /// Installs the repository once it has loaded.
    pub fn set_repository(&self, repo: Arc<ModelRepository>) {
        let _ = self.repo.set(repo);
    }

    /// The repository, if it has loaded.
    pub fn repository(&self) -> Option<&Arc<ModelRepository>> {
        self.repo.get()
    }

    /// The repository, or UNAVAILABLE while the models load.
    pub fn repo(&self) -> Result<&Arc<ModelRepository>, Status> {
        self.repo.get().ok_or_else(|| Status::unavailable("models are still loading"))
    }

    /// Marks the server as draining.
    pub fn begin_shutdown(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    /// Whether the server is shutting down.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// The repository has loaded (every model present at start was loaded or refused),
    /// some model has a version that answers, and not shutting down. A model with no good
    /// version does not take the server out of service: [`AppState::model_readiness`]
    /// tells each model's state.
    pub fn is_ready(&self) -> bool {
        !self.is_stopping() && self.repo.get().is_some_and(|r| r.any_ready())
    }

    /// Each known model and whether it answers (all false while shutting down).
    pub fn model_readiness(&self) -> std::collections::BTreeMap<String, bool> {
        let stopping = self.is_stopping();
        let mut models = self.repo.get().map(|r| r.readiness()).unwrap_or_default();
        if stopping {
            models.values_mut().for_each(|ready| *ready = false);
        }
        models
    }

    /// Queues one validated job in the batcher (refused at once if the queue is full).
    pub fn submit(&self, job: Job) -> Result<Pending, Status> {
        let deadline = job.deadline;
        let rx = self.batcher.submit(job).map_err(batch_status)?;
        Ok(Pending { rx, deadline })
    }

    /// Scores one validated job through the batcher and waits for it (or its deadline).
    pub async fn score(&self, job: Job) -> Result<Outcome, Status> {
        self.submit(job)?.wait().await
    }

    /// Counts a request's outcome. Label values come from the repository, never from the
    /// caller alone: a model the repository does not know is counted under
    /// [`UNKNOWN_MODEL`](crate::metrics::UNKNOWN_MODEL) and a version it has not loaded
    /// under no version, so callers cannot grow the metrics.
    pub fn count(&self, model: &str, version: Option<u32>, arm: &str, result: Result<(), Code>) {
        let repo = self.repo.get();
        let known = repo.is_some_and(|r| r.knows(model));
        let (model, version) = if known {
            (model, version.filter(|v| repo.is_some_and(|r| r.has_version(model, *v))))
        } else {
            (crate::metrics::UNKNOWN_MODEL, None)
        };
        let v = version.map(|v| v.to_string()).unwrap_or_default();
        match result {
            Ok(()) => self.metrics.request_success.with_label_values(&[model, v.as_str(), arm]).inc(),
            Err(code) => {
                self.metrics.request_failure.with_label_values(&[model, v.as_str(), arm, code_name(code)]).inc()
            }
        }
    }

    /// Refuses requests over the row limit.
    pub fn check_rows(&self, rows: usize) -> Result<(), Status> {
        if rows == 0 {
            return Err(input_status(&InputError::EmptyBatch));
        }
        let limit = self.config.max_request_rows;
        if rows > limit {
            return Err(input_status(&InputError::BatchTooLarge { rows, limit }));
        }
        Ok(())
    }
}

/// A queued job.
#[derive(Debug)]
pub struct Pending {
    rx: tokio::sync::oneshot::Receiver<Result<Outcome, JobError>>,
    deadline: Option<Instant>,
}

impl Pending {
    /// Waits for the outcome, at most until the deadline.
    pub async fn wait(self) -> Result<Outcome, Status> {
        let outcome = match self.deadline {
            Some(d) => {
                let wait = d.saturating_duration_since(Instant::now());
                match tokio::time::timeout(wait, self.rx).await {
                    Ok(r) => r,
                    Err(_) => return Err(Status::deadline_exceeded("deadline exceeded while waiting to be scored")),
                }
            }
            None => self.rx.await,
        };
        outcome.map_err(|_| Status::unavailable("the server is shutting down"))?.map_err(batch_status)
    }
}

/// gRPC code names as Prometheus label values.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Most bytes of a caller's value repeated in an error message.
pub const ECHO_BYTES: usize = 128;

/// Most bytes of an error message sent back (a caller's values in it are capped at
/// [`ECHO_BYTES`] each before this applies).
pub const MESSAGE_BYTES: usize = 1024;

/// A caller's value as it may appear in a message: the first [`ECHO_BYTES`] bytes (cut on
/// a character boundary), then `…(N bytes)` with the full length when longer.
pub fn echo(value: &str) -> String {
    truncate(value, ECHO_BYTES)
}

fn truncate(value: &str, limit: usize) -> String {
    if value.len() <= limit {
        return value.to_owned();
    }
    let mut end = limit;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…({} bytes)", &value[..end], value.len())
}

/// The same status with its message capped at [`MESSAGE_BYTES`]: the last guard against
/// answers that grow with what the caller sent.
pub fn bounded(status: Status) -> Status {
    if status.message().len() <= MESSAGE_BYTES {
        return status;
    }
    Status::new(status.code(), truncate(status.message(), MESSAGE_BYTES))
}

/// Bad input: INVALID_ARGUMENT with the runtime's message (it names the row and feature);
/// names the caller chose are capped.
pub fn input_status(e: &InputError) -> Status {
    let capped = match e {
        InputError::Unknown { row, feature } => InputError::Unknown { row: *row, feature: echo(feature) },
        InputError::SchemaHash { given, expected } => {
            InputError::SchemaHash { given: echo(given), expected: expected.clone() }
        }
        InputError::EmptyBatch
        | InputError::BatchTooLarge { .. }
        | InputError::WrongWidth { .. }
        | InputError::Missing { .. }
        | InputError::NotFinite { .. }
        | InputError::BadCategory { .. }
        | InputError::BadBool { .. } => e.clone(),
    };
    Status::invalid_argument(capped.to_string())
}

/// Routing and admin errors; the model names (which callers choose) are capped.
pub fn route_status(e: &RouteError) -> Status {
    let capped = match e {
        RouteError::UnknownModel(m) => RouteError::UnknownModel(echo(m)),
        RouteError::UnknownVersion { model, version } => {
            RouteError::UnknownVersion { model: echo(model), version: *version }
        }
        RouteError::NotReady(m) => RouteError::NotReady(echo(m)),
        RouteError::InvalidPolicy(p) => RouteError::InvalidPolicy(p.clone()),
        RouteError::NoRollback(m) => RouteError::NoRollback(echo(m)),
        RouteError::InUse { model, version } => RouteError::InUse { model: echo(model), version: *version },
        RouteError::NoFolder(path) => RouteError::NoFolder(echo(path)),
        RouteError::VersionTooLarge { model, version } => {
            RouteError::VersionTooLarge { model: echo(model), version: *version }
        }
        RouteError::Refused { model, version, reason } => {
            RouteError::Refused { model: echo(model), version: *version, reason: reason.clone() }
        }
    };
    let message = capped.to_string();
    match e {
        RouteError::UnknownModel(_) | RouteError::UnknownVersion { .. } | RouteError::NoFolder(_) => {
            Status::not_found(message)
        }
        RouteError::NotReady(_) => Status::unavailable(message),
        RouteError::InvalidPolicy(_) | RouteError::VersionTooLarge { .. } => Status::invalid_argument(message),
        RouteError::NoRollback(_) | RouteError::InUse { .. } | RouteError::Refused { .. } => {
            Status::failed_precondition(message)
        }
    }
}

/// Batcher errors.
pub fn batch_status(e: JobError) -> Status {
    match e {
        JobError::QueueFull { .. } => Status::resource_exhausted(e.to_string()),
        JobError::DeadlineExceeded { .. } => Status::deadline_exceeded(e.to_string()),
        JobError::ShuttingDown => Status::unavailable(e.to_string()),
        JobError::Score(ScoreError::Input(i)) => input_status(&i),
        JobError::Score(ScoreError::Engine(m)) => Status::internal(format!("inference failed: {m}")),
    }
}

/// The deadline a caller set with the `grpc-timeout` header, if any. It is brought forward
/// by a twentieth of the timeout (at most 10 ms) so that the DEADLINE_EXCEEDED answer
/// reaches the caller before its own timer fires and before the transport cancels the call.
pub fn deadline_of(metadata: &tonic::metadata::MetadataMap) -> Result<Option<Instant>, Status> {
    let Some(v) = metadata.get("grpc-timeout") else { return Ok(None) };
    let text = v.to_str().map_err(|_| Status::invalid_argument("grpc-timeout is not ASCII"))?;
    let timeout = parse_grpc_timeout(text)
        .ok_or_else(|| Status::invalid_argument(format!("grpc-timeout {text:?} is not <digits><H|M|S|m|u|n>")))?;
    let margin = (timeout / 20).min(Duration::from_millis(10));
    Ok(Some(Instant::now() + timeout - margin))
}

/// Parses a `grpc-timeout` value: up to 8 digits and a unit.
pub fn parse_grpc_timeout(text: &str) -> Option<Duration> {
    if text.len() < 2 || text.len() > 9 {
        return None;
    }
    let (digits, unit) = text.split_at(text.len() - 1);
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The output column names of a model's first output (tags or classes).
pub fn output_names(model: &LoadedModel) -> &[String] {
    model.manifest().outputs.first().map_or(&[], |o| o.names.as_slice())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse() {
        assert_eq!(parse_grpc_timeout("100m"), Some(Duration::from_millis(100)));
        assert_eq!(parse_grpc_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("99999999u"), Some(Duration::from_micros(99_999_999)));
        assert_eq!(parse_grpc_timeout("123456789m"), None);
        assert_eq!(parse_grpc_timeout("m"), None);
        assert_eq!(parse_grpc_timeout("10x"), None);
        assert_eq!(parse_grpc_timeout("-1S"), None);
    }

    #[test]
    fn echoed_values_and_messages_are_capped() {
        assert_eq!(echo("user_tags"), "user_tags");
        let long = "x".repeat(100_000);
        assert_eq!(echo(&long), format!("{}…(100000 bytes)", "x".repeat(ECHO_BYTES)));
        // Cut on a character boundary.
        let wide = "é".repeat(100);
        let e = echo(&wide);
        assert!(e.starts_with(&"é".repeat(ECHO_BYTES / 2)) && e.ends_with("…(200 bytes)"), "{e}");
        let s = route_status(&RouteError::UnknownModel(long.clone()));
        assert_eq!(s.code(), Code::NotFound);
        assert!(s.message().len() < 200, "{}", s.message());
        let s = input_status(&InputError::Unknown { row: 3, feature: long.clone() });
        assert!(s.message().starts_with("row 3: unknown feature \"xxx") && s.message().len() < 200);
        let s = bounded(Status::invalid_argument(long));
        assert_eq!(s.code(), Code::InvalidArgument);
        assert!(s.message().len() < MESSAGE_BYTES + 32 && s.message().ends_with("…(100000 bytes)"));
    }
}
