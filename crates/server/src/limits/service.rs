//! The wrapper of every gRPC service: marks the connection's handshake complete, ends a
//! call whose caller sends nothing for the stream idle timeout, and makes the call's
//! request budget visible to its codec.

use super::budget::{Call, RequestBudget};
use super::connections::ConnectInfo;
use crate::metrics::Metrics;
use crate::traces::Tracer;
use http_body::Frame;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::time::Sleep;
use tonic::Status;
use tonic::body::Body;
use tonic::codegen::{BoxFuture, Service, http};
use tonic::server::NamedService;
use tonic::transport::server::TlsConnectInfo;

/// How the status of a call ended for idleness begins.
pub const STREAM_IDLE: &str = "no message from the caller for ";

/// What every call is held to.
#[derive(Debug)]
pub struct CallLimits {
    budget: Arc<RequestBudget>,
    stream_idle: Duration,
    metrics: Arc<Metrics>,
    tracer: Option<Arc<Tracer>>,
}

impl CallLimits {
    /// Calls taking their request bytes from `budget`, ended after `stream_idle` without
    /// request data; with a tracer, the calls that [`Tracer::begin`] picks are traced.
    pub fn new(
        budget: Arc<RequestBudget>,
        stream_idle: Duration,
        metrics: Arc<Metrics>,
        tracer: Option<Arc<Tracer>>,
    ) -> Arc<Self> {
        Arc::new(CallLimits { budget, stream_idle, metrics, tracer })
    }

    /// `service` under these limits.
    pub fn wrap<S>(self: &Arc<Self>, service: S) -> Limited<S> {
        Limited { inner: service, limits: self.clone() }
    }
}

/// A gRPC service under [`CallLimits`].
#[derive(Debug, Clone)]
pub struct Limited<S> {
    inner: S,
    limits: Arc<CallLimits>,
}

impl<S: NamedService> NamedService for Limited<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, ResBody> Service<http::Request<Body>> for Limited<S>
where
    S: Service<http::Request<Body>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<S::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        let extensions = request.extensions_mut();
        let connection = extensions
            .get::<ConnectInfo>()
            .or_else(|| extensions.get::<TlsConnectInfo<ConnectInfo>>().map(TlsConnectInfo::get_ref))
            .cloned();
        if let Some(connection) = connection {
            connection.called();
            // What `Request::remote_addr` reads.
            extensions.insert(connection.tcp.clone());
        }
        let limits = &self.limits;
        let request = request.map(|body| {
            Body::new(IdleBody { inner: body, idle: limits.stream_idle, timer: None, metrics: limits.metrics.clone() })
        });
        let mut call = Call::new(limits.budget.clone());
        // Traces off: no tracer, nothing more than this test.
        let Some(tracer) = &limits.tracer else {
            return Box::pin(call.scope(self.inner.call(request)));
        };
        let Some(trace) = tracer.begin(request.uri().path(), request.headers()) else {
            return Box::pin(call.scope(self.inner.call(request)));
        };
        call.trace = Some(trace.clone());
        let deadline = request.headers().get("grpc-timeout").and_then(|v| grpc_timeout(v.as_bytes()));
        let answer = call.scope(self.inner.call(request));
        Box::pin(async move {
            // Dropped unanswered (the caller cancelled, or tonic's deadline outside this
            // layer fired): the span says so rather than going out without a status.
            let mut unanswered = Unanswered { trace: Some(trace.clone()), started: Instant::now(), deadline };
            let response = answer.await;
            unanswered.trace = None;
            if let Ok(r) = &response {
                // A call that failed before its answer began has its status in the headers
                // (the message percent-encoded: tonic decodes it); an answer that began ends
                // with OK in the trailers.
                match tonic::Status::from_header_map(r.headers()) {
                    Some(status) => trace.status(status.code() as i32, status.message()),
                    None => trace.status(0, ""),
                }
            }
            response
        })
    }
}

/// Notes on a traced call's span, when the call is dropped before its answer, that it
/// was cancelled (or, past the caller's `grpc-timeout`, that its deadline passed).
struct Unanswered {
    trace: Option<Arc<crate::traces::RequestTrace>>,
    started: Instant,
    deadline: Option<Duration>,
}

impl Drop for Unanswered {
    fn drop(&mut self) {
        let Some(trace) = self.trace.take() else { return };
        match self.deadline {
            Some(d) if self.started.elapsed() >= d => {
                trace.status(tonic::Code::DeadlineExceeded as i32, "the caller's deadline passed before the answer")
            }
            _ => trace.status(tonic::Code::Cancelled as i32, "the call ended before its answer (cancelled)"),
        }
    }
}

/// A `grpc-timeout` header's duration (`<up to 8 digits><H|M|S|m|u|n>`), if well formed.
fn grpc_timeout(v: &[u8]) -> Option<Duration> {
    let (&unit, digits) = v.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// A request body that fails with DEADLINE_EXCEEDED when the server has waited `idle`
/// for its next frame. Time spent handling what arrived does not count.
struct IdleBody {
    inner: Body,
    idle: Duration,
    /// Running while the server waits.
    timer: Option<Pin<Box<Sleep>>>,
    metrics: Arc<Metrics>,
}

/// `30 s`, `200 ms`.
fn human(d: Duration) -> String {
    if d.subsec_millis() == 0 { format!("{} s", d.as_secs()) } else { format!("{} ms", d.as_millis()) }
}

impl http_body::Body for IdleBody {
    type Data = prost::bytes::Bytes;
    type Error = Status;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Self::Data>, Status>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            this.timer = None;
            return Poll::Ready(frame);
        }
        let idle = this.idle;
        let timer = this.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
        if timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        this.timer = None;
        this.metrics.stream_idle_timeouts.inc();
        Poll::Ready(Some(Err(Status::deadline_exceeded(format!(
            "{STREAM_IDLE}{}: the call ends (stream idle timeout)",
            human(idle)
        )))))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(human(Duration::from_secs(30)), "30 s");
        assert_eq!(human(Duration::from_millis(200)), "200 ms");
        assert_eq!(human(Duration::from_millis(1500)), "1500 ms");
    }
}
