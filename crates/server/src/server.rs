//! Starting and stopping the server: gRPC (scoring, admin, KServe v2, health, reflection)
//! on one port, Prometheus metrics on another, both under the limits of [`crate::limits`]
//! (connection caps and deadlines; on gRPC also HTTP/2 streams per connection, keepalive
//! pings, idle request streams and the in-flight request budget).
//!
//! The ports open at once with health NOT_SERVING; the models load, check and warm on a
//! blocking thread, and only then is health SERVING (when some model answers; each model's
//! own state is reported under `liveprofile.model.<name>`). On shutdown health turns
//! NOT_SERVING, new calls are refused, running calls finish (up to the drain time), then
//! the process exits.

use crate::admin::{AdminAuth, AdminService};
use crate::config::ServerConfig;
use crate::experiments::{ExperimentAdminService, FolderWatch};
use crate::ingest::{IngestService, ProfileAdminService};
use crate::kserve::KServeService;
use crate::limits::{CallLimits, GrpcIncoming, MetricsListener, RequestBudget};
use crate::mqtt::MqttIngest;
use crate::proto::v1::{
    experiment_admin_server::ExperimentAdminServer, ingest_server::IngestServer, model_admin_server::ModelAdminServer,
    profile_admin_server::ProfileAdminServer, scoring_server::ScoringServer,
};
use crate::proto::{self, inference::grpc_inference_service_server::GrpcInferenceServiceServer};
use crate::scoring::ScoringService;
use crate::state::AppState;
use anyhow::Context;
use liveprofile_runtime::{ModelRepository, RepositoryConfig};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Identity, Server, ServerTlsConfig};
use tonic_health::ServingStatus;

/// Names under which health is reported (besides the server-wide "").
pub const HEALTH_SERVICES: &[&str] = &[
    "liveprofile.v1.Scoring",
    "liveprofile.v1.ModelAdmin",
    "inference.GRPCInferenceService",
    "liveprofile.v1.Ingest",
    "liveprofile.v1.ProfileAdmin",
    "liveprofile.v1.ExperimentAdmin",
];

/// A running server.
pub struct RunningServer {
    /// Where gRPC listens.
    pub grpc_addr: SocketAddr,
    /// Where metrics are served.
    pub metrics_addr: SocketAddr,
    state: Arc<AppState>,
    health: tonic_health::server::HealthReporter,
    stop_grpc: Option<oneshot::Sender<()>>,
    stop_metrics: Option<oneshot::Sender<()>>,
    grpc: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
    metrics: tokio::task::JoinHandle<std::io::Result<()>>,
    loader: tokio::task::JoinHandle<()>,
    store_health: tokio::task::JoinHandle<()>,
    watch: Arc<Mutex<Option<liveprofile_runtime::repository::WatchHandle>>>,
    mqtt: Option<MqttIngest>,
    tracer: Option<Arc<crate::traces::Tracer>>,
}

impl std::fmt::Debug for RunningServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningServer").field("grpc", &self.grpc_addr).field("metrics", &self.metrics_addr).finish()
    }
}

/// Prefix of the health service name of each model: `liveprofile.model.<name>` is SERVING
/// while the model has a version that answers.
pub const MODEL_HEALTH_PREFIX: &str = "liveprofile.model.";

/// Health service name of the profile store: SERVING while it can write its log,
/// NOT_SERVING after a failed log write (a full disk) until a write succeeds again.
/// Scoring goes on meanwhile, so the server-wide status does not follow it.
pub const STORE_HEALTH: &str = "liveprofile.store";

/// How often the store's write health is checked (and, after a failed write, whether
/// there is room again).
const STORE_PROBE_EVERY: Duration = Duration::from_secs(1);

/// Keeps [`STORE_HEALTH`] in step with the store until the server stops: after a failed
/// log write it probes the disk every [`STORE_PROBE_EVERY`], so the store turns SERVING
/// as soon as there is room, even if no batch arrives to find out.
fn watch_store_health(
    state: Arc<AppState>,
    health: tonic_health::server::HealthReporter,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut reported: Option<bool> = None;
        while !state.is_stopping() {
            let store = state.profiles.clone();
            let writable = tokio::task::spawn_blocking(move || match store.write_health() {
                Ok(()) => Ok(()),
                Err(why) => {
                    if store.probe_log() {
                        Ok(())
                    } else {
                        Err(why)
                    }
                }
            })
            .await
            .unwrap_or_else(|e| Err(format!("store probe failed: {e}")));
            let ok = writable.is_ok();
            if reported != Some(ok) {
                match &writable {
                    Ok(()) if reported.is_some() => {
                        tracing::info!("profile store writes again: {STORE_HEALTH} SERVING")
                    }
                    Ok(()) => {}
                    Err(why) => {
                        tracing::error!(reason = %why, "profile store cannot write its log: {STORE_HEALTH} NOT_SERVING")
                    }
                }
                let status = if ok { ServingStatus::Serving } else { ServingStatus::NotServing };
                health.set_service_status(STORE_HEALTH, status).await;
                reported = Some(ok);
            }
            tokio::time::sleep(STORE_PROBE_EVERY).await;
        }
    })
}

/// The health service name of a model.
pub fn model_health_name(model: &str) -> String {
    format!("{MODEL_HEALTH_PREFIX}{model}")
}

async fn set_health(health: &tonic_health::server::HealthReporter, status: ServingStatus) {
    health.set_service_status("", status).await;
    for s in HEALTH_SERVICES {
        health.set_service_status(*s, status).await;
    }
}

/// Brings the per-model health names to `now`: changed models are set, models the
/// repository forgot are cleared (their name answers NOT_FOUND again).
async fn set_model_health(
    health: &mut tonic_health::server::HealthReporter,
    reported: &mut BTreeMap<String, bool>,
    now: BTreeMap<String, bool>,
) {
    for (model, ready) in &now {
        if reported.get(model) != Some(ready) {
            let status = if *ready { ServingStatus::Serving } else { ServingStatus::NotServing };
            health.set_service_status(model_health_name(model), status).await;
            tracing::info!(model, ready, "model serving status changed");
        }
    }
    for model in reported.keys().filter(|m| !now.contains_key(*m)) {
        health.clear_service_status(&model_health_name(model)).await;
        tracing::info!(model, "model forgotten: its health status is cleared");
    }
    *reported = now;
}

/// Binds both ports, starts serving, and loads the models in the background.
pub async fn start(config: ServerConfig) -> anyhow::Result<RunningServer> {
    anyhow::ensure!(config.models.is_dir(), "model repository {} is not a folder", config.models.display());
    let tls = tls_config(&config)?;
    let grpc_listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .with_context(|| format!("cannot listen for gRPC on {}", config.addr))?;
    let metrics_listener = tokio::net::TcpListener::bind(config.metrics_addr)
        .await
        .with_context(|| format!("cannot listen for metrics on {}", config.metrics_addr))?;
    let grpc_addr = grpc_listener.local_addr()?;
    let metrics_addr = metrics_listener.local_addr()?;

    let profiles = open_profiles(&config).await?;
    let predictions = config.prediction_log.clone().map(liveprofile_predlog::PredictionLog::open).transpose()?;
    let state = Arc::new(AppState::new(config.clone(), profiles, predictions));
    let (health, health_service) = tonic_health::server::health_reporter();
    set_health(&health, ServingStatus::NotServing).await;
    let mqtt = config.profiles.mqtt.as_ref().map(|m| MqttIngest::start(state.clone(), m));

    let limits = &config.limits;
    warn_if_over_descriptor_limit(limits.max_connections + limits.metrics_max_connections);
    let tracer = match &config.traces {
        Some(t) => Some(crate::traces::Tracer::start(t.clone(), state.metrics.clone())?),
        None => None,
    };
    let router = match grpc_router(&state, health_service, tls, tracer.clone()) {
        Ok(router) => router,
        Err(e) => {
            // The exporter task is running: stop it rather than leave it behind.
            if let Some(t) = &tracer {
                t.shutdown().await;
            }
            return Err(e);
        }
    };
    let (stop_grpc, grpc_stopped) = oneshot::channel::<()>();
    let incoming =
        GrpcIncoming::new(grpc_listener, limits.max_connections, limits.handshake_timeout, state.metrics.clone());
    let grpc = tokio::spawn(router.serve_with_incoming_shutdown(incoming, async {
        let _ = grpc_stopped.await;
    }));
    let (metrics, stop_metrics) = serve_metrics(&state, metrics_listener);

    let watch = Arc::new(Mutex::new(None));
    let loader = tokio::spawn(load_and_watch_models(state.clone(), health.clone(), watch.clone()));
    let store_health = watch_store_health(state.clone(), health.clone());
    tracing::info!(
        %grpc_addr,
        %metrics_addr,
        tls = config.tls.is_some(),
        otlp = config.traces.as_ref().map_or("off", |t| t.endpoint.as_str()),
        "listening"
    );
    Ok(RunningServer {
        grpc_addr,
        metrics_addr,
        state,
        health,
        stop_grpc: Some(stop_grpc),
        stop_metrics: Some(stop_metrics),
        grpc,
        metrics,
        loader,
        store_health,
        watch,
        mqtt,
        tracer,
    })
}

/// The TLS identity from the configured PEM files, if TLS is on.
fn tls_config(config: &ServerConfig) -> anyhow::Result<Option<ServerTlsConfig>> {
    let Some(t) = &config.tls else { return Ok(None) };
    let cert = std::fs::read(&t.cert).with_context(|| format!("reading {}", t.cert.display()))?;
    let key = std::fs::read(&t.key).with_context(|| format!("reading {}", t.key.display()))?;
    // The handshake deadline of the connection covers TLS too; this one names it.
    Ok(Some(ServerTlsConfig::new().identity(Identity::from_pem(cert, key)).timeout(config.limits.handshake_timeout)))
}

/// Opens (recovers) the profile store off the async threads and loads the identity file.
async fn open_profiles(config: &ServerConfig) -> anyhow::Result<Arc<liveprofile_store::ProfileStore>> {
    let p = &config.profiles;
    let store_options = liveprofile_store::StoreOptions {
        durability: p.durability,
        snapshot_every_records: p.snapshot_every,
        snapshot_interval: p.snapshot_interval,
        dedup_horizon: p.dedup_horizon,
        dedup_max_ids: p.dedup_max_ids,
        accept_log_damage: p.accept_log_damage,
        ..liveprofile_store::StoreOptions::new(p.data_dir.clone())
    };
    let profiles = tokio::task::spawn_blocking(move || liveprofile_store::ProfileStore::open(store_options))
        .await?
        .with_context(|| format!("profile store in {}", p.data_dir.display()))?;
    if let Some(path) = &p.identities {
        let links = liveprofile_store::read_identity_file(path)?;
        let total = links.len();
        let added = profiles.seed_identities(links);
        tracing::info!(file = %path.display(), total, added, "identity links loaded");
    }
    Ok(profiles)
}

/// A generated service server with the configured message limit both ways.
macro_rules! sized {
    ($server:expr, $limit:expr) => {
        $server.max_decoding_message_size($limit).max_encoding_message_size($limit)
    };
}

/// A service that answers only calls carrying the admin token.
fn admin_only<S>(
    service: S,
    token: Option<&str>,
) -> InterceptedService<S, impl tonic::service::Interceptor + Clone + Send + Sync + 'static> {
    let auth = AdminAuth::new(token);
    InterceptedService::new(service, move |r| auth.check(r))
}

/// Every gRPC service (health, reflection, scoring, KServe, admin, ingest, profile and
/// experiment admin) on one router, each behind the call limits: the first call lifts the
/// connection's handshake deadline, idle request streams end, the codec sees the request
/// budget.
fn grpc_router(
    state: &Arc<AppState>,
    health_service: tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health>,
    tls: Option<ServerTlsConfig>,
    tracer: Option<Arc<crate::traces::Tracer>>,
) -> anyhow::Result<tonic::transport::server::Router> {
    let config = &state.config;
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1().context("reflection service")?;
    let reflection_v1alpha = reflection().build_v1alpha().context("reflection service")?;
    let limit = config.max_message_bytes;
    let token = config.admin_token.as_deref();
    let budget = RequestBudget::new(config.limits.max_inflight_request_bytes, state.metrics.clone());
    let calls = CallLimits::new(budget, config.limits.stream_idle_timeout, state.metrics.clone(), tracer);
    let limits = &config.limits;
    let mut builder = Server::builder()
        .tcp_nodelay(true)
        .max_concurrent_streams(limits.max_streams_per_connection)
        .http2_keepalive_interval(Some(limits.keepalive_interval))
        .http2_keepalive_timeout(Some(limits.keepalive_timeout));
    if let Some(tls) = tls {
        builder = builder.tls_config(tls).context("TLS configuration")?;
    }
    Ok(builder
        .add_service(calls.wrap(health_service))
        .add_service(calls.wrap(reflection_v1))
        .add_service(calls.wrap(reflection_v1alpha))
        .add_service(calls.wrap(sized!(ScoringServer::new(ScoringService::new(state.clone())), limit)))
        .add_service(calls.wrap(sized!(GrpcInferenceServiceServer::new(KServeService::new(state.clone())), limit)))
        .add_service(
            calls.wrap(admin_only(sized!(ModelAdminServer::new(AdminService::new(state.clone())), limit), token)),
        )
        .add_service(calls.wrap(sized!(IngestServer::new(IngestService::new(state.clone())), limit)))
        .add_service(
            calls.wrap(admin_only(
                sized!(ProfileAdminServer::new(ProfileAdminService::new(state.clone())), limit),
                token,
            )),
        )
        .add_service(calls.wrap(admin_only(
            sized!(ExperimentAdminServer::new(ExperimentAdminService::new(state.clone())), limit),
            token,
        ))))
}

/// Serves `/metrics` on its own port, under its connection cap and header timeout, until
/// the returned sender fires.
fn serve_metrics(
    state: &Arc<AppState>,
    listener: tokio::net::TcpListener,
) -> (tokio::task::JoinHandle<std::io::Result<()>>, oneshot::Sender<()>) {
    let limits = &state.config.limits;
    let listener = MetricsListener::new(
        listener,
        limits.metrics_max_connections,
        limits.metrics_header_timeout,
        state.metrics.clone(),
    );
    let (stop, stopped) = oneshot::channel::<()>();
    let metrics_state = state.clone();
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let s = metrics_state.clone();
            async move {
                let body = s.metrics.render(
                    s.repository().map(|r| r.as_ref()),
                    &s.shadow,
                    s.predictions.as_ref(),
                    s.drift.as_deref(),
                );
                ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
            }
        }),
    );
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });
    (task, stop)
}

/// Opens the model repository (loads, checks and warms every model off the async
/// threads), watches it, then until the server stops: reads the experiments folder every
/// rescan period and keeps health in step with readiness (SERVING while some model
/// answers; a model whose every version is refused is NOT_SERVING under its own name only).
async fn load_and_watch_models(
    state: Arc<AppState>,
    mut health: tonic_health::server::HealthReporter,
    watch: Arc<Mutex<Option<liveprofile_runtime::repository::WatchHandle>>>,
) {
    let repo_config = RepositoryConfig {
        root: state.config.models.clone(),
        keep_versions: state.config.keep_versions,
        rescan_interval: state.config.rescan,
    };
    let repo = match tokio::task::spawn_blocking(move || ModelRepository::open(repo_config)).await {
        Ok(Ok(repo)) => repo,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "model repository cannot be opened");
            return;
        }
        Err(e) => {
            tracing::error!(error = %e, "model loading failed");
            return;
        }
    };
    match repo.watch() {
        Ok(handle) => *watch.lock().expect("watch lock") = Some(handle),
        Err(e) => tracing::error!(error = %e, "model folder cannot be watched; new versions need LoadModel"),
    }
    state.set_repository(repo.clone());
    // Experiment definitions are checked against loaded models: read the folder once the
    // models are in, then at every rescan period.
    let mut experiments = FolderWatch::default();
    let mut next_scan = tokio::time::Instant::now();
    let mut serving = false;
    let mut models = BTreeMap::new();
    while !state.is_stopping() {
        if tokio::time::Instant::now() >= next_scan {
            let s = state.clone();
            let mut folder = std::mem::take(&mut experiments);
            experiments = tokio::task::spawn_blocking(move || {
                folder.scan(&s, &s.config.experiments);
                folder
            })
            .await
            .unwrap_or_default();
            next_scan = tokio::time::Instant::now() + state.config.rescan;
        }
        set_model_health(&mut health, &mut models, state.model_readiness()).await;
        let ready = state.is_ready();
        if ready != serving {
            serving = ready;
            let status = if ready { ServingStatus::Serving } else { ServingStatus::NotServing };
            set_health(&health, status).await;
            let models: Vec<String> = repo.models().into_iter().map(|m| m.name).collect();
            tracing::info!(ready, ?models, "serving status changed");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl RunningServer {
    /// The shared state (for tests and embedding programs).
    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// The tracer, when traces are on.
    pub fn tracer(&self) -> Option<&Arc<crate::traces::Tracer>> {
        self.tracer.as_ref()
    }

    /// Waits until the server is ready (the models present at start have loaded or been
    /// refused, and some model answers), at most `timeout`.
    pub async fn wait_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        let until = tokio::time::Instant::now() + timeout;
        while !self.state.is_ready() {
            anyhow::ensure!(tokio::time::Instant::now() < until, "models not ready after {timeout:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// NOT_SERVING under every name, the server's and each model's.
    async fn set_not_serving(&self) {
        set_health(&self.health, ServingStatus::NotServing).await;
        self.health.set_service_status(STORE_HEALTH, ServingStatus::NotServing).await;
        for model in self.state.model_readiness().keys() {
            self.health.set_service_status(model_health_name(model), ServingStatus::NotServing).await;
        }
    }

    /// NOT_SERVING, refuse new calls, let running calls finish (up to the drain time),
    /// stop the watcher and the metrics port.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        tracing::info!("shutting down: draining requests");
        self.state.begin_shutdown();
        self.set_not_serving().await;
        if let Some(mqtt) = self.mqtt.take() {
            mqtt.stop().await;
        }
        if let Some(tx) = self.stop_grpc.take() {
            let _ = tx.send(());
        }
        let drained = tokio::time::timeout(self.state.config.drain, &mut self.grpc).await;
        match drained {
            Ok(Ok(Ok(()))) => tracing::info!("drained"),
            Ok(Ok(Err(e))) => tracing::error!(error = %e, "gRPC server error"),
            Ok(Err(e)) => tracing::error!(error = %e, "gRPC task failed"),
            Err(_) => {
                tracing::warn!(drain = ?self.state.config.drain, "requests still running after the drain time; stopping");
                self.grpc.abort();
            }
        }
        // Every answer has left: the tracer sends the spans it holds (each export call
        // bounded by its timeout) and stops.
        if let Some(tracer) = self.tracer.take() {
            tracer.shutdown().await;
            tracing::info!(stats = ?tracer.stats(), "traces flushed");
        }
        if let Some(tx) = self.stop_metrics.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.metrics).await;
        let _ = (&mut self.loader).await;
        self.store_health.abort();
        let _ = (&mut self.store_health).await;
        // The health loop has ended: nothing can turn a name back to SERVING now.
        self.set_not_serving().await;
        // Every answer has left: the prediction log writes what it holds and publishes it.
        let state = self.state.clone();
        match tokio::task::spawn_blocking(move || state.predictions.as_ref().map(|log| log.close())).await {
            Ok(Some(stats)) => tracing::info!(?stats, "prediction log closed"),
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "prediction log close task failed"),
        }
        // A snapshot now makes the next start load it instead of replaying the log.
        let store = self.state.profiles.clone();
        match tokio::task::spawn_blocking(move || store.snapshot()).await {
            Ok(Ok(seq)) => tracing::info!(seq, "profile store snapshot on shutdown"),
            Ok(Err(e)) => tracing::error!(error = %e, "no snapshot on shutdown; the log keeps every event"),
            Err(e) => tracing::error!(error = %e, "snapshot task failed"),
        }
        let watch = self.watch.lock().expect("watch lock").take();
        drop(watch);
        Ok(())
    }
}

/// Descriptors kept for everything but connections: the log, snapshots, model files, the
/// watcher.
const RESERVED_DESCRIPTORS: u64 = 64;

/// Warns when the connection caps (plus a reserve) are over the process's open-file
/// limit: the caps would not keep descriptors from running out.
fn warn_if_over_descriptor_limit(connections: usize) {
    let Some(limit) = open_file_limit() else { return };
    let needed = connections as u64 + RESERVED_DESCRIPTORS;
    if needed > limit {
        tracing::warn!(
            connections,
            limit,
            "the connection caps plus {RESERVED_DESCRIPTORS} reserved descriptors are over the open-file limit: raise \
             it (ulimit -n) or lower --max-connections"
        );
    }
}

/// The soft limit on open files, where the system tells it (`/proc/self/limits`).
fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..].split_whitespace().next()?.parse().ok()
}

/// Runs until `signal` resolves, then shuts down gracefully.
pub async fn run(config: ServerConfig, signal: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
    survive_file_size_limit();
    let server = start(config).await?;
    signal.await;
    server.shutdown().await
}

/// Takes SIGXFSZ instead of dying of it. A write past the file size limit (`ulimit -f`,
/// a quota set that way) then fails with EFBIG, which the store treats like a full disk:
/// the batch fails alone and later ones are taken once there is room. By default the
/// signal would kill the process mid-batch.
fn survive_file_size_limit() {
    #[cfg(unix)]
    {
        let kind = tokio::signal::unix::SignalKind::from_raw(rustix::process::Signal::XFSZ.as_raw());
        match tokio::signal::unix::signal(kind) {
            Ok(mut signals) => {
                tokio::spawn(async move {
                    while signals.recv().await.is_some() {
                        tracing::warn!("SIGXFSZ: a write went over the file size limit (it fails with EFBIG)");
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot take SIGXFSZ: a write over the file size limit kills the server")
            }
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn termination() {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM; Ctrl-C only");
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM"),
            _ = tokio::signal::ctrl_c() => tracing::info!("interrupt"),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
