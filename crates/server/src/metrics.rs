//! Prometheus metrics, served on their own port. Names follow Triton's where the meaning is
//! the same (`nv_inference_*`); the rest are `liveprofile_*`.

use liveprofile_runtime::{ModelRepository, ShadowScorer};
use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};
use std::collections::BTreeMap;
use std::sync::Mutex;

const LATENCY_US: &[f64] =
    &[10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1_000.0, 2_500.0, 5_000.0, 10_000.0, 25_000.0, 100_000.0, 1_000_000.0];
const BATCH_ROWS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0];
/// Freshness buckets, seconds: from a millisecond (a same-host producer) to an hour (a
/// platform's export arriving late).
const FRESHNESS_SECONDS: &[f64] =
    &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0];
const SCORE: &[f64] = &[0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99];

/// The `model` label of requests for a model the repository does not know: caller-chosen
/// names never become label values.
pub const UNKNOWN_MODEL: &str = "_unknown";

/// Every metric of the server.
pub struct Metrics {
    registry: Registry,
    /// Held by a scrape from the first reset of a gauge to the gather: two scrapes at once
    /// would otherwise see each other's half-filled gauges.
    rendering: Mutex<()>,
    /// Requests answered, per model, version and arm.
    pub request_success: IntCounterVec,
    /// Requests failed, per model, version, arm and gRPC code.
    pub request_failure: IntCounterVec,
    /// Rows scored.
    pub inference_count: IntCounterVec,
    /// Batches executed.
    pub exec_count: IntCounterVec,
    /// Time a request waited for its batch, microseconds.
    pub queue_us: HistogramVec,
    /// Time its batch took to score, microseconds.
    pub compute_us: HistogramVec,
    /// Rows per executed batch.
    pub batch_size: HistogramVec,
    /// Scores given, per output column (drift).
    pub output_score: HistogramVec,
    /// Requests refused because the queue was full.
    pub rejected: IntCounterVec,
    /// Events ingested, per path (grpc, mqtt) and outcome (accepted, duplicate, late,
    /// rejected).
    pub ingest_events: IntCounterVec,
    /// Time to take in one batch of events and make it durable, microseconds.
    pub ingest_us: HistogramVec,
    /// Event time to applied, seconds, per platform.
    event_delay_seconds: HistogramVec,
    /// Event time to the first answer reflecting it, seconds, per platform.
    event_to_answer_seconds: HistogramVec,
    /// Newest applied event time, UTC ms, per platform (its age is rendered at scrape).
    newest_event_ms: Mutex<BTreeMap<&'static str, i64>>,
    platform_event_age: GaugeVec,
    /// First exposures of users to experiments, logged.
    pub experiment_exposures: prometheus::IntCounter,
    /// Open connections, per port (`grpc`, `metrics`).
    pub connections_open: IntGaugeVec,
    /// Connections closed at once because the port was at its connection cap.
    pub connections_refused: IntCounterVec,
    /// Connections closed for not completing their handshake (gRPC) or request (metrics)
    /// in time.
    pub connections_timed_out: IntCounterVec,
    /// Encoded bytes of the requests being served (the in-flight request budget in use).
    pub request_bytes_in_flight: IntGauge,
    /// Requests refused before decoding: they did not fit in the in-flight request budget.
    pub request_bytes_refused: IntCounter,
    /// Calls ended because their caller sent nothing for the stream idle timeout.
    pub stream_idle_timeouts: IntCounter,
    /// MQTT messages dead-lettered (acknowledged without taking their events in, recorded
    /// in the data folder's `dead-letter/`), per reason (`too_large`, `undecodable`,
    /// `refused`: [`crate::mqtt::DeadLetterReason`]).
    pub mqtt_dead_letters: IntCounterVec,
    model_events: IntGaugeVec,
    stable_version: IntGaugeVec,
    loaded_versions: IntGaugeVec,
    divergence_mean: GaugeVec,
    divergence_max: GaugeVec,
    divergence_rows: IntGaugeVec,
    divergence_dropped: IntGaugeVec,
    prediction_log: IntGaugeVec,
    /// Trace spans since the start, per `stat`: `exported` (taken by the collector),
    /// `dropped` (queue full, export failed or timed out, rejected by the collector).
    pub trace_spans: IntCounterVec,
    drift_psi: GaugeVec,
    drift_ks: GaugeVec,
    drift_rows: IntGaugeVec,
    drift_flagged: IntGaugeVec,
    drift_dropped: IntGauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("metric definition");
    r.register(Box::new(c.clone())).expect("metric registration");
    c
}

fn histogram(r: &Registry, name: &str, help: &str, labels: &[&str], buckets: &[f64]) -> HistogramVec {
    let h =
        HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets.to_vec()), labels).expect("metric definition");
    r.register(Box::new(h.clone())).expect("metric registration");
    h
}

fn int_gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("metric definition");
    r.register(Box::new(g.clone())).expect("metric registration");
    g
}

fn single<M: prometheus::core::Collector + Clone + 'static>(r: &Registry, m: prometheus::Result<M>) -> M {
    let m = m.expect("metric definition");
    r.register(Box::new(m.clone())).expect("metric registration");
    m
}

fn gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    let g = GaugeVec::new(Opts::new(name, help), labels).expect("metric definition");
    r.register(Box::new(g.clone())).expect("metric registration");
    g
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Counts one ingest call's outcomes.
    pub fn count_ingest(&self, path: &str, report: &liveprofile_store::IngestReport, took: std::time::Duration) {
        for (outcome, n) in [
            ("accepted", report.accepted),
            ("duplicate", report.duplicates),
            ("late", report.late),
            ("rejected", report.rejected),
        ] {
            if n > 0 {
                self.ingest_events.with_label_values(&[path, outcome]).inc_by(n);
            }
        }
        self.ingest_us.with_label_values(&[path]).observe(took.as_secs_f64() * 1e6);
    }

    /// Notes the freshness of a batch's events that were taken in (`refused`: indices of
    /// the late and invalid ones), at `now_ms`.
    pub fn observe_freshness(
        &self,
        events: &[liveprofile_store::IncomingEvent],
        refused: &std::collections::HashSet<usize>,
        now_ms: i64,
    ) {
        let mut newest = self.newest_event_ms.lock().expect("freshness lock");
        for (i, e) in events.iter().enumerate() {
            if refused.contains(&i) {
                continue;
            }
            let Ok(platform) = liveprofile_events::Platform::parse(&e.platform) else { continue };
            let delay = (now_ms - e.ts_ms).max(0) as f64 / 1000.0;
            self.event_delay_seconds.with_label_values(&[platform.as_str()]).observe(delay);
            let slot = newest.entry(platform.as_str()).or_insert(e.ts_ms);
            *slot = (*slot).max(e.ts_ms);
        }
    }

    /// Notes the time from the events an answer is the first to reflect (per platform, the
    /// oldest one) to `now_ms`.
    pub fn observe_first_answer(&self, first_reflected: &liveprofile_store::Unreflected, now_ms: i64) {
        for (platform, ts_ms) in first_reflected.oldest() {
            let delay = (now_ms - ts_ms).max(0) as f64 / 1000.0;
            self.event_to_answer_seconds.with_label_values(&[platform.as_str()]).observe(delay);
        }
    }

    /// Creates and registers every metric.
    pub fn new() -> Self {
        let r = Registry::new();
        let mva = ["model", "version", "arm"];
        let mv = ["model", "version"];
        let div = ["model", "answered_version", "compared_version"];
        let experiment_exposures =
            prometheus::IntCounter::new("liveprofile_experiment_exposures", "First exposures to experiments logged")
                .expect("metric definition");
        r.register(Box::new(experiment_exposures.clone())).expect("metric registration");
        Metrics {
            experiment_exposures,
            connections_open: int_gauge(&r, "liveprofile_connections_open", "Open connections, per port", &["port"]),
            connections_refused: counter(
                &r,
                "liveprofile_connections_refused",
                "Connections closed at once: the port was at its connection cap",
                &["port"],
            ),
            connections_timed_out: counter(
                &r,
                "liveprofile_connections_timed_out",
                "Connections closed for not completing their handshake (grpc) or request (metrics) in time",
                &["port"],
            ),
            request_bytes_in_flight: single(
                &r,
                IntGauge::new("liveprofile_request_bytes_in_flight", "Encoded bytes of the requests being served"),
            ),
            request_bytes_refused: single(
                &r,
                IntCounter::new(
                    "liveprofile_request_bytes_rejections",
                    "Requests refused before decoding: over the in-flight request budget",
                ),
            ),
            stream_idle_timeouts: single(
                &r,
                IntCounter::new(
                    "liveprofile_stream_idle_timeouts",
                    "Calls ended because the caller sent nothing for the stream idle timeout",
                ),
            ),
            mqtt_dead_letters: counter(
                &r,
                "liveprofile_mqtt_dead_letters",
                "MQTT messages acknowledged without their events and recorded in dead-letter/, per reason",
                &["reason"],
            ),
            request_success: counter(&r, "nv_inference_request_success", "Requests answered", &mva),
            request_failure: counter(
                &r,
                "nv_inference_request_failure",
                "Requests failed, by gRPC code",
                &["model", "version", "arm", "code"],
            ),
            inference_count: counter(&r, "nv_inference_count", "Rows scored", &mv),
            exec_count: counter(&r, "nv_inference_exec_count", "Batches executed", &mv),
            queue_us: histogram(
                &r,
                "nv_inference_queue_duration_us",
                "Time a request waited for its batch (us)",
                &mv,
                LATENCY_US,
            ),
            compute_us: histogram(
                &r,
                "nv_inference_compute_infer_duration_us",
                "Time a batch took to score (us)",
                &mv,
                LATENCY_US,
            ),
            batch_size: histogram(&r, "liveprofile_batch_size", "Rows per executed batch", &mv, BATCH_ROWS),
            output_score: histogram(
                &r,
                "liveprofile_output_score",
                "Scores given, per output column (drift)",
                &["model", "version", "output"],
                SCORE,
            ),
            rejected: counter(&r, "liveprofile_queue_rejections", "Requests refused with a full queue", &["model"]),
            ingest_events: counter(
                &r,
                "liveprofile_ingest_events",
                "Events ingested, per path and outcome",
                &["path", "outcome"],
            ),
            event_delay_seconds: histogram(
                &r,
                "liveprofile_event_delay_seconds",
                "Time from an event's timestamp to its batch being applied to the profile store (events taken in \
                 or already held), seconds, per platform",
                &["platform"],
                FRESHNESS_SECONDS,
            ),
            event_to_answer_seconds: histogram(
                &r,
                "liveprofile_event_to_answer_seconds",
                "Time from an event's timestamp to the first scoring answer that reflects it, seconds, per \
                 platform: for each ScoreTags answer from a user's profile, the oldest of the user's events no earlier \
                 answer reflected",
                &["platform"],
                FRESHNESS_SECONDS,
            ),
            newest_event_ms: Mutex::new(BTreeMap::new()),
            platform_event_age: gauge(
                &r,
                "liveprofile_platform_event_age_seconds",
                "Age of the newest event applied from each platform, at the scrape: a late or stalled platform \
                 grows here within seconds",
                &["platform"],
            ),
            ingest_us: histogram(
                &r,
                "liveprofile_ingest_batch_us",
                "Time to apply a batch of events and make it durable, microseconds",
                &["path"],
                LATENCY_US,
            ),
            model_events: int_gauge(
                &r,
                "liveprofile_model_events",
                "Model repository events since start (loaded, refused, promoted)",
                &["model", "event"],
            ),
            stable_version: int_gauge(&r, "liveprofile_model_stable_version", "Stable version per model", &["model"]),
            loaded_versions: int_gauge(&r, "liveprofile_model_loaded_versions", "Versions loaded", &["model"]),
            divergence_mean: gauge(
                &r,
                "liveprofile_divergence_mean_abs",
                "Mean absolute difference of a canary or shadow version from the answering one",
                &div,
            ),
            divergence_max: gauge(&r, "liveprofile_divergence_max_abs", "Largest absolute difference", &div),
            divergence_rows: int_gauge(&r, "liveprofile_divergence_rows", "Rows compared", &div),
            divergence_dropped: int_gauge(
                &r,
                "liveprofile_divergence_dropped",
                "Comparisons dropped with a full queue",
                &div,
            ),
            prediction_log: int_gauge(
                &r,
                "liveprofile_prediction_log",
                "Prediction log since the start: rows_written, rows_dropped (queue full or a file lost), \
                 files_published, files_deleted (retention), write_errors",
                &["stat"],
            ),
            trace_spans: counter(
                &r,
                "liveprofile_trace_spans",
                "Trace spans since the start: exported (taken by the collector), dropped (export queue full, export \
                 failed or timed out, rejected by the collector)",
                &["stat"],
            ),
            drift_psi: gauge(
                &r,
                "liveprofile_drift_psi",
                "Population stability index of the live window against the version's training reference, per \
                 feature or output column (kind); under 0.1 stable, 0.1 to 0.25 moderate, above major",
                &["model", "version", "kind", "column"],
            ),
            drift_ks: gauge(
                &r,
                "liveprofile_drift_ks",
                "Binned Kolmogorov-Smirnov statistic of the live window against the training reference (largest \
                 gap between the cumulative shares at the reference's bin edges)",
                &["model", "version", "kind", "column"],
            ),
            drift_rows: int_gauge(
                &r,
                "liveprofile_drift_rows",
                "Rows in the drift window of a version (PSI and KS are reported from --drift-min-rows on)",
                &mv,
            ),
            drift_flagged: int_gauge(
                &r,
                "liveprofile_drift_flagged",
                "Columns of a version whose PSI is 0.1 or more (moderate or major), per kind",
                &["model", "version", "kind"],
            ),
            drift_dropped: single(
                &r,
                IntGauge::new(
                    "liveprofile_drift_rows_dropped",
                    "Rows not monitored for drift since the start: the monitor's queue was full",
                ),
            ),
            registry: r,
            rendering: Mutex::new(()),
        }
    }

    fn render_drift(&self, drift: &crate::drift::DriftMonitor) {
        // Versions that left the window leave the gauges.
        for g in [&self.drift_psi, &self.drift_ks] {
            g.reset();
        }
        self.drift_rows.reset();
        self.drift_flagged.reset();
        self.drift_dropped.set(i64::try_from(drift.dropped()).unwrap_or(i64::MAX));
        for v in drift.figures() {
            let version = v.version.to_string();
            self.drift_rows
                .with_label_values(&[v.model.as_str(), &version])
                .set(i64::try_from(v.rows).unwrap_or(i64::MAX));
            if v.columns.is_empty() {
                continue;
            }
            for kind in [liveprofile_drift::Kind::Feature, liveprofile_drift::Kind::Output] {
                let n = v.columns.iter().filter(|c| c.kind == kind && c.flagged).count();
                self.drift_flagged.with_label_values(&[v.model.as_str(), &version, kind.as_str()]).set(n as i64);
            }
            for c in &v.columns {
                let labels = [v.model.as_str(), version.as_str(), c.kind.as_str(), c.name.as_str()];
                self.drift_psi.with_label_values(&labels).set(c.psi);
                self.drift_ks.with_label_values(&labels).set(c.ks);
            }
        }
    }

    /// The text exposition of every metric, with the repository and divergence figures
    /// read at this moment.
    pub fn render(
        &self,
        repo: Option<&ModelRepository>,
        shadow: &ShadowScorer,
        predictions: Option<&liveprofile_predlog::PredictionLog>,
        drift: Option<&crate::drift::DriftMonitor>,
    ) -> String {
        let _one_scrape_at_a_time = self.rendering.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(drift) = drift {
            self.render_drift(drift);
        }
        let now_ms = liveprofile_store::now_ms();
        for (platform, newest) in self.newest_event_ms.lock().expect("freshness lock").iter() {
            self.platform_event_age.with_label_values(&[platform]).set((now_ms - newest).max(0) as f64 / 1000.0);
        }
        if let Some(log) = predictions {
            let st = log.stats();
            for (stat, n) in [
                ("rows_written", st.rows_written),
                ("rows_dropped", st.rows_dropped),
                ("files_published", st.files_published),
                ("files_deleted", st.files_deleted),
                ("write_errors", st.write_errors),
            ] {
                self.prediction_log.with_label_values(&[stat]).set(i64::try_from(n).unwrap_or(i64::MAX));
            }
        }
        if let Some(repo) = repo {
            // Models forgotten by the repository (folder removed) leave the gauges.
            self.stable_version.reset();
            self.loaded_versions.reset();
            for ((model, kind), n) in repo.event_totals() {
                self.model_events.with_label_values(&[model.as_str(), kind]).set(n as i64);
            }
            for m in repo.models() {
                if let Some(p) = m.policy {
                    self.stable_version.with_label_values(&[m.name.as_str()]).set(i64::from(p.stable));
                }
                self.loaded_versions.with_label_values(&[m.name.as_str()]).set(m.versions.len() as i64);
            }
        }
        for ((model, answered, compared), d) in shadow.divergence() {
            let labels = [model, answered.to_string(), compared.to_string()];
            let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
            self.divergence_mean.with_label_values(&labels).set(d.mean_abs_diff);
            self.divergence_max.with_label_values(&labels).set(d.max_abs_diff);
            self.divergence_rows.with_label_values(&labels).set(d.rows as i64);
            self.divergence_dropped.with_label_values(&labels).set(d.dropped as i64);
        }
        let mut out = Vec::new();
        prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut out).expect("text encoding");
        String::from_utf8(out).expect("metrics are UTF-8")
    }
}
