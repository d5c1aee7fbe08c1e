//! The tracer: sampling decisions, the bounded queue of finished calls, and the task that
//! sends their spans to an OTLP/gRPC collector in batches, off the request path.
//!
//! A finished call is queued under a lock held for a push; when the queue holds its limit
//! of spans the call's spans are dropped and counted instead. The exporter task wakes when
//! a batch's worth is queued or the export interval has passed, builds the protobuf spans
//! and sends them, each call bounded by the export timeout; spans of a call that fails or
//! times out are counted as dropped. Nothing on the request path waits for the collector.

use super::context::{self, Ids, Parent};
use super::{Attributes, Notes, RequestTrace, TRACED_CALLS, Value, now_unix_ns};
use crate::config::TraceConfig;
use crate::metrics::Metrics;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span::SpanKind, status::StatusCode};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tonic::codegen::http::HeaderMap;
use tonic::transport::{Channel, Endpoint};

/// Service name in the exported resource.
pub const SERVICE_NAME: &str = "liveprofile";

/// Errors of the exporter are logged at most this often.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// A finished call waiting for export.
struct Finished {
    name: &'static str,
    trace_id: [u8; 16],
    span_id: [u8; 8],
    parent: Option<[u8; 8]>,
    trace_state: String,
    start_unix_ns: u64,
    end_unix_ns: u64,
    notes: Notes,
    /// Unix nanoseconds of each phase's start and end, in the order of `notes.phases`.
    phase_times: Vec<(u64, u64)>,
}

impl Finished {
    fn spans(&self) -> usize {
        1 + self.notes.phases.len()
    }
}

#[derive(Default)]
struct Queue {
    calls: Vec<Finished>,
    spans: usize,
    /// Spans of the batch being exported (taken off the queue, not yet counted).
    in_flight: usize,
    closed: bool,
}

/// Counts since the start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TracerStats {
    /// Spans the collector took.
    pub exported: u64,
    /// Spans dropped: queue full, a failed or timed-out export, rejected by the collector,
    /// or over a call's child limit.
    pub dropped: u64,
}

/// Decides which calls are traced and exports their spans.
pub struct Tracer {
    config: TraceConfig,
    ids: Ids,
    queue: Mutex<Queue>,
    wake: Notify,
    exported: AtomicU64,
    dropped: AtomicU64,
    metrics: Arc<Metrics>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for Tracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracer").field("config", &self.config).field("stats", &self.stats()).finish()
    }
}

impl Tracer {
    /// Starts the exporter task (on the current tokio runtime). The collector is reached
    /// lazily: a collector that is down costs the failed export calls, nothing else.
    pub fn start(config: TraceConfig, metrics: Arc<Metrics>) -> anyhow::Result<Arc<Tracer>> {
        config.validate()?;
        let endpoint = Endpoint::from_shared(config.endpoint.clone())?
            .connect_timeout(config.export_timeout)
            .timeout(config.export_timeout)
            .tcp_nodelay(true);
        let channel = endpoint.connect_lazy();
        let tracer = Arc::new(Tracer {
            config,
            ids: Ids::new(),
            queue: Mutex::new(Queue::default()),
            wake: Notify::new(),
            exported: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            metrics,
            task: Mutex::new(None),
        });
        let task = tokio::spawn(export_loop(tracer.clone(), TraceServiceClient::new(channel)));
        *tracer.task.lock().unwrap_or_else(PoisonError::into_inner) = Some(task);
        Ok(tracer)
    }

    /// Spans exported and dropped so far.
    pub fn stats(&self) -> TracerStats {
        TracerStats { exported: self.exported.load(Ordering::Relaxed), dropped: self.dropped.load(Ordering::Relaxed) }
    }

    /// The trace of a call to `path` with these request headers, or `None` when the call
    /// is not one that is traced or is not sampled.
    pub fn begin(self: &Arc<Self>, path: &str, headers: &HeaderMap) -> Option<Arc<RequestTrace>> {
        let name = TRACED_CALLS.iter().find(|p| **p == path)?.trim_start_matches('/');
        // More than one traceparent is no valid parent: the trace starts afresh (W3C).
        let mut parents = headers.get_all("traceparent").iter();
        let parent = match (parents.next(), parents.next()) {
            (Some(v), None) => v.to_str().ok().and_then(context::parse_traceparent),
            _ => None,
        };
        let (trace_id, parent, trace_state) = match parent {
            Some(Parent { sampled: false, .. }) => return None,
            Some(p) => {
                let values = headers.get_all("tracestate").iter().map(|v| v.to_str());
                let state = values
                    .collect::<Result<Vec<&str>, _>>()
                    .ok()
                    .and_then(context::parse_tracestate)
                    .unwrap_or_default();
                (p.trace_id, Some(p.span_id), state)
            }
            None => {
                let id = self.ids.trace_id();
                if !context::sampled_at(&id, self.config.sample) {
                    return None;
                }
                (id, None, String::new())
            }
        };
        Some(Arc::new(RequestTrace {
            tracer: self.clone(),
            name,
            trace_id,
            span_id: self.ids.span_id(),
            parent,
            trace_state,
            start: Instant::now(),
            start_unix_ns: now_unix_ns(),
            notes: Mutex::new(Notes::default()),
        }))
    }

    pub(crate) fn span_id(&self) -> [u8; 8] {
        self.ids.span_id()
    }

    /// Queues a finished call (from [`RequestTrace`]'s drop), or drops and counts its spans
    /// when the queue is full or closed.
    pub(crate) fn finish(&self, trace: &mut RequestTrace, end: Instant) {
        let notes = std::mem::take(trace.notes.get_mut().unwrap_or_else(PoisonError::into_inner));
        if notes.dropped > 0 {
            self.count_dropped(u64::from(notes.dropped));
        }
        let phase_times = notes.phases.iter().map(|p| (trace.unix_ns(p.start), trace.unix_ns(p.end))).collect();
        let finished = Finished {
            name: trace.name,
            trace_id: trace.trace_id,
            span_id: trace.span_id,
            parent: trace.parent,
            trace_state: std::mem::take(&mut trace.trace_state),
            start_unix_ns: trace.start_unix_ns,
            end_unix_ns: trace.unix_ns(end),
            notes,
            phase_times,
        };
        let spans = finished.spans();
        let mut q = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        if q.closed || q.spans + spans > self.config.queue_spans {
            drop(q);
            self.count_dropped(spans as u64);
            return;
        }
        let before = q.spans;
        q.spans += spans;
        q.calls.push(finished);
        let full = before < self.config.batch_spans && q.spans >= self.config.batch_spans;
        drop(q);
        if full {
            self.wake.notify_one();
        }
    }

    fn count_dropped(&self, n: u64) {
        self.dropped.fetch_add(n, Ordering::Relaxed);
        self.metrics.trace_spans.with_label_values(&["dropped"]).inc_by(n);
    }

    fn count_exported(&self, n: u64) {
        self.exported.fetch_add(n, Ordering::Relaxed);
        self.metrics.trace_spans.with_label_values(&["exported"]).inc_by(n);
    }

    /// Takes calls holding at most a batch of spans (at least one call) off the queue.
    fn take_batch(&self) -> Vec<Finished> {
        let mut q = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        let mut spans = 0;
        let mut n = 0;
        for c in &q.calls {
            if n > 0 && spans + c.spans() > self.config.batch_spans {
                break;
            }
            spans += c.spans();
            n += 1;
        }
        q.spans -= spans;
        q.in_flight = spans;
        q.calls.drain(..n).collect()
    }

    /// Closes the queue (later calls' spans are dropped and counted), sends what it holds,
    /// and stops the exporter. Each export call is bounded by the export timeout, and the
    /// whole flush by twice that: spans still queued then (a collector that does not answer)
    /// are dropped and counted, so shutdown is not held up by a full queue.
    pub async fn shutdown(&self) {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner).closed = true;
        self.wake.notify_one();
        let task = self.task.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(mut task) = task {
            let deadline = self.config.export_timeout.saturating_mul(2);
            if tokio::time::timeout(deadline, &mut task).await.is_err() {
                task.abort();
                // The queued spans and those of the export cut short.
                let left = {
                    let mut q = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
                    q.calls.clear();
                    std::mem::take(&mut q.spans) + std::mem::take(&mut q.in_flight)
                };
                self.count_dropped(left as u64);
            }
        }
    }
}

async fn export_loop(tracer: Arc<Tracer>, mut client: TraceServiceClient<Channel>) {
    let resource = resource();
    let mut last_warning: Option<Instant> = None;
    loop {
        let closed = tracer.queue.lock().unwrap_or_else(PoisonError::into_inner).closed;
        if !closed {
            let _ = tokio::time::timeout(tracer.config.export_interval, tracer.wake.notified()).await;
        }
        loop {
            let batch = tracer.take_batch();
            if batch.is_empty() {
                break;
            }
            let spans: usize = batch.iter().map(Finished::spans).sum();
            let request = ExportTraceServiceRequest {
                resource_spans: vec![ResourceSpans {
                    resource: Some(resource.clone()),
                    scope_spans: vec![ScopeSpans {
                        scope: Some(InstrumentationScope {
                            name: "liveprofile-server".to_owned(),
                            version: env!("CARGO_PKG_VERSION").to_owned(),
                            ..Default::default()
                        }),
                        spans: batch.iter().flat_map(to_spans).collect(),
                        schema_url: String::new(),
                    }],
                    schema_url: String::new(),
                }],
            };
            drop(batch);
            let timeout = tracer.config.export_timeout;
            let outcome = match tokio::time::timeout(timeout, client.export(request)).await {
                Ok(Ok(answer)) => Ok(answer.into_inner().partial_success.map_or(0, |p| p.rejected_spans.max(0) as u64)),
                Ok(Err(status)) => Err(format!("{}: {}", status.code(), status.message())),
                Err(_) => Err(format!("no answer within {timeout:?}")),
            };
            tracer.queue.lock().unwrap_or_else(PoisonError::into_inner).in_flight = 0;
            match outcome {
                Ok(rejected) => {
                    let rejected = rejected.min(spans as u64);
                    tracer.count_exported(spans as u64 - rejected);
                    if rejected > 0 {
                        tracer.count_dropped(rejected);
                    }
                }
                Err(why) => {
                    tracer.count_dropped(spans as u64);
                    if last_warning.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
                        last_warning = Some(Instant::now());
                        tracing::warn!(
                            endpoint = %tracer.config.endpoint,
                            spans,
                            error = %why,
                            "trace export failed; its spans are dropped (liveprofile_trace_spans{{stat=\"dropped\"}})"
                        );
                    }
                }
            }
        }
        if closed {
            return;
        }
    }
}

/// The resource every span is exported under: `service.name`, `service.version`,
/// `host.name`, `process.pid`.
fn resource() -> Resource {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let mut attributes = vec![
        kv("service.name", Value::Static(SERVICE_NAME)),
        kv("service.version", Value::Static(env!("CARGO_PKG_VERSION"))),
        kv("process.pid", Value::Int(i64::from(std::process::id()))),
        kv("telemetry.sdk.language", Value::Static("rust")),
    ];
    if !host.is_empty() {
        attributes.push(kv("host.name", Value::Str(host)));
    }
    Resource { attributes, ..Default::default() }
}

fn kv(key: &str, value: Value) -> KeyValue {
    let value = match value {
        Value::Str(s) => any_value::Value::StringValue(s),
        Value::Static(s) => any_value::Value::StringValue(s.to_owned()),
        Value::Int(n) => any_value::Value::IntValue(n),
    };
    KeyValue { key: key.to_owned(), value: Some(AnyValue { value: Some(value) }), ..Default::default() }
}

fn attributes(list: &Attributes) -> Vec<KeyValue> {
    list.iter().map(|(k, v)| kv(k, v.clone())).collect()
}

/// The call's server span and one internal span per phase.
fn to_spans(c: &Finished) -> Vec<Span> {
    // Sampled: the only calls exported.
    const FLAGS: u32 = 0x01;
    let (service, method) = c.name.split_once('/').unwrap_or((c.name, ""));
    let mut root_attributes = vec![
        kv("rpc.system", Value::Static("grpc")),
        kv("rpc.service", Value::Str(service.to_owned())),
        kv("rpc.method", Value::Str(method.to_owned())),
    ];
    if let Some(code) = c.notes.code {
        root_attributes.push(kv("rpc.grpc.status_code", Value::Int(i64::from(code))));
    }
    root_attributes.extend(attributes(&c.notes.attributes));
    let status = c.notes.error.as_ref().map(|(_, message)| opentelemetry_proto::tonic::trace::v1::Status {
        message: message.clone(),
        code: StatusCode::Error as i32,
    });
    let mut spans = Vec::with_capacity(c.spans());
    spans.push(Span {
        trace_id: c.trace_id.to_vec(),
        span_id: c.span_id.to_vec(),
        trace_state: c.trace_state.clone(),
        parent_span_id: c.parent.map(|p| p.to_vec()).unwrap_or_default(),
        flags: FLAGS,
        name: c.name.to_owned(),
        kind: SpanKind::Server as i32,
        start_time_unix_nano: c.start_unix_ns,
        end_time_unix_nano: c.end_unix_ns,
        attributes: root_attributes,
        status,
        ..Default::default()
    });
    for (p, (start, end)) in c.notes.phases.iter().zip(&c.phase_times) {
        spans.push(Span {
            trace_id: c.trace_id.to_vec(),
            span_id: p.span_id.to_vec(),
            trace_state: c.trace_state.clone(),
            parent_span_id: c.span_id.to_vec(),
            flags: FLAGS,
            name: p.name.to_owned(),
            kind: SpanKind::Internal as i32,
            start_time_unix_nano: *start,
            end_time_unix_nano: *end,
            attributes: attributes(&p.attributes),
            ..Default::default()
        });
    }
    spans
}
