//! OpenTelemetry traces of scoring and ingest calls, exported over OTLP/gRPC (off unless an
//! endpoint is configured).
//!
//! A traced call has a server span named after its RPC
//! (`liveprofile.v1.Scoring/ScoreConversion`) whose parent is the caller's span when the
//! call carries a W3C `traceparent`; its children are the phases of the call: `decode` and
//! `encode` (the codec), `validate`, `queue` and `compute` (scoring), `check`, `log write`,
//! `fsync` and `apply` (ingest). Phases are not live span objects: the call notes when each
//! began and ended, most of them from times the service measures anyway (the batcher's
//! queue and compute times), and the spans are built from these notes on the exporter's
//! task, after the answer has left.
//!
//! Sampling is parent-based: a caller's sampled flag is followed (flag `00`, no spans); a
//! call without a usable `traceparent` starts a new trace, recorded for the configured
//! share of calls. A malformed `traceparent` is ignored, never an error to the caller.
//!
//! When traces are off nothing here runs on the request path: the call wrapper holds no
//! tracer and every phase hook is a test of an empty `Option`.

mod context;
mod export;

pub use context::{Parent, parse_traceparent};
pub use export::{Tracer, TracerStats};

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The calls that are traced, by their gRPC path. Other calls (health, reflection, admin,
/// the score stream) are not.
pub const TRACED_CALLS: &[&str] = &[
    "/liveprofile.v1.Scoring/ScoreTags",
    "/liveprofile.v1.Scoring/ScoreConversion",
    "/inference.GRPCInferenceService/ModelInfer",
    "/liveprofile.v1.Ingest/IngestEvents",
];

/// Most child spans a call records; later ones are counted as dropped (a long ingest
/// stream would otherwise grow one trace without bound).
pub const MAX_CHILD_SPANS: usize = 256;

/// The value of a span attribute.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Text.
    Str(String),
    /// A fixed text.
    Static(&'static str),
    /// An integer.
    Int(i64),
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Str(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Str(s)
    }
}

impl From<i64> for Value {
    fn from(n: i64) -> Self {
        Value::Int(n)
    }
}

impl From<usize> for Value {
    fn from(n: usize) -> Self {
        Value::Int(i64::try_from(n).unwrap_or(i64::MAX))
    }
}

impl From<u64> for Value {
    fn from(n: u64) -> Self {
        Value::Int(i64::try_from(n).unwrap_or(i64::MAX))
    }
}

impl From<u32> for Value {
    fn from(n: u32) -> Self {
        Value::Int(i64::from(n))
    }
}

/// Attributes of a span.
pub type Attributes = Vec<(&'static str, Value)>;

/// A finished phase of a call.
#[derive(Debug)]
pub(crate) struct Phase {
    pub(crate) name: &'static str,
    pub(crate) span_id: [u8; 8],
    pub(crate) start: Instant,
    pub(crate) end: Instant,
    pub(crate) attributes: Attributes,
}

/// What a call has noted so far.
#[derive(Debug, Default)]
pub(crate) struct Notes {
    pub(crate) phases: Vec<Phase>,
    pub(crate) attributes: Attributes,
    /// gRPC status code and message, when the call failed.
    pub(crate) error: Option<(i32, String)>,
    /// The call's status code, once known.
    pub(crate) code: Option<i32>,
    /// When the handler started (the start of `validate`).
    pub(crate) entered: Option<Instant>,
    /// Child spans not kept over [`MAX_CHILD_SPANS`].
    pub(crate) dropped: u32,
}

/// One traced call. Phases are noted while it runs; when the last handle goes (the
/// answer has been encoded and sent, or the call failed) the call's spans are handed to
/// the exporter's queue without waiting.
#[derive(Debug)]
pub struct RequestTrace {
    tracer: Arc<Tracer>,
    pub(crate) name: &'static str,
    pub(crate) trace_id: [u8; 16],
    pub(crate) span_id: [u8; 8],
    pub(crate) parent: Option<[u8; 8]>,
    pub(crate) trace_state: String,
    /// The call's start, as a clock reading and as wall time (Unix nanoseconds): every
    /// other time is placed from the clock reading.
    pub(crate) start: Instant,
    pub(crate) start_unix_ns: u64,
    pub(crate) notes: Mutex<Notes>,
}

impl RequestTrace {
    fn notes(&self) -> std::sync::MutexGuard<'_, Notes> {
        self.notes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The trace id (lowercase hex, as in `traceparent`).
    pub fn trace_id_hex(&self) -> String {
        context::hex(&self.trace_id)
    }

    /// Notes a phase that ran from `start` to `end`.
    pub fn phase(&self, name: &'static str, start: Instant, end: Instant, attributes: Attributes) {
        let span_id = self.tracer.span_id();
        let mut notes = self.notes();
        if notes.phases.len() >= MAX_CHILD_SPANS {
            notes.dropped += 1;
            return;
        }
        notes.phases.push(Phase { name, span_id, start, end: end.max(start), attributes });
    }

    /// Sets attributes of the call's own span.
    pub fn set(&self, attributes: impl IntoIterator<Item = (&'static str, Value)>) {
        let mut notes = self.notes();
        for (key, value) in attributes {
            match notes.attributes.iter_mut().find(|(k, _)| *k == key) {
                Some(kv) => kv.1 = value,
                None => notes.attributes.push((key, value)),
            }
        }
    }

    /// Notes that the handler has started.
    pub fn enter(&self) {
        self.notes().entered = Some(Instant::now());
    }

    /// Notes the `validate` phase: from the handler's start until now.
    pub fn validated(&self, attributes: Attributes) {
        let now = Instant::now();
        let start = self.notes().entered.unwrap_or(now);
        self.phase("validate", start, now, attributes);
    }

    /// Notes the call's gRPC status code (and its message when it is an error).
    pub fn status(&self, code: i32, message: &str) {
        let mut notes = self.notes();
        notes.code = Some(code);
        if code != 0 {
            notes.error = Some((code, message.chars().take(256).collect()));
        }
    }

    /// Unix nanoseconds of a clock reading taken during the call.
    pub(crate) fn unix_ns(&self, at: Instant) -> u64 {
        match at.checked_duration_since(self.start) {
            Some(after) => self.start_unix_ns.saturating_add(after.as_nanos() as u64),
            None => self.start_unix_ns.saturating_sub(self.start.duration_since(at).as_nanos() as u64),
        }
    }
}

impl Drop for RequestTrace {
    fn drop(&mut self) {
        let end = Instant::now();
        let tracer = self.tracer.clone();
        tracer.finish(self, end);
    }
}

/// Wall time now, Unix nanoseconds.
fn now_unix_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// The trace of the call being served on this task, when it is traced.
pub fn current() -> Option<Arc<RequestTrace>> {
    crate::limits::current_trace()
}

/// Notes the queue and compute phases of a scored job from the times the batcher measured
/// (its queue time, then its batch's compute time, after `enqueued`).
///
/// A batch shared by several calls is noted as a `compute` child in each call's trace
/// (with the batch's row count), not as one span linked from each: a linked span would be
/// built on the inference thread and land in a trace of its own, apart from the calls that
/// wait on it, while a child per call costs the inference thread nothing and keeps each
/// call's tree whole.
pub fn scored(trace: &RequestTrace, outcome: &crate::batcher::Outcome, attributes: Attributes) {
    let batch_start = outcome.enqueued + outcome.queue;
    trace.phase("queue", outcome.enqueued, batch_start, vec![]);
    let mut compute = attributes;
    compute.push(("liveprofile.batch.rows", Value::from(outcome.batch_rows)));
    trace.phase("compute", batch_start, batch_start + outcome.compute, compute);
}
