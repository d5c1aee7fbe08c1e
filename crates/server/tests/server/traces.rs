//! OpenTelemetry traces: a real OTLP/gRPC receiver (a tonic server of the OTLP trace
//! service, on the official protobuf definitions) takes what the server exports. A caller's
//! `traceparent` continues into the server's spans; unsampled callers get none; malformed
//! ones start a new trace and change nothing in the answer; a missing collector costs
//! dropped spans, counted, and nothing else; shutdown sends what is queued.

use crate::common::*;
use liveprofile_bench::synthetic::SyntheticEvents;
use liveprofile_client::inference as pb;
use liveprofile_client::v1::{self, ingest_client::IngestClient};
use liveprofile_server::RunningServer;
use liveprofile_server::config::TraceConfig;
use liveprofile_store::Durability;
use liveprofile_testkit::eventually_async;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::trace::v1::{Span, span::SpanKind, status::StatusCode};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

/// What the receiver was sent.
#[derive(Default)]
struct Received {
    requests: Mutex<Vec<ExportTraceServiceRequest>>,
}

impl Received {
    fn spans(&self) -> Vec<Span> {
        let requests = self.requests.lock().unwrap();
        requests
            .iter()
            .flat_map(|r| &r.resource_spans)
            .flat_map(|rs| &rs.scope_spans)
            .flat_map(|ss| ss.spans.iter().cloned())
            .collect()
    }

    fn of_trace(&self, trace_id: &[u8]) -> Vec<Span> {
        self.spans().into_iter().filter(|s| s.trace_id == trace_id).collect()
    }
}

/// Takes exports, each after `delay` (a slow collector).
struct Receiver(Arc<Received>, Duration);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        tokio::time::sleep(self.1).await;
        self.0.requests.lock().unwrap().push(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// An OTLP/gRPC trace receiver on a free loopback port, until the sender fires or drops.
async fn receiver() -> (SocketAddr, Arc<Received>, oneshot::Sender<()>) {
    slow_receiver(Duration::ZERO).await
}

/// A receiver that answers each export after `delay`.
async fn slow_receiver(delay: Duration) -> (SocketAddr, Arc<Received>, oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let received = Arc::new(Received::default());
    let (stop, stopped) = oneshot::channel::<()>();
    let service = TraceServiceServer::new(Receiver(received.clone(), delay));
    tokio::spawn(tonic::transport::Server::builder().add_service(service).serve_with_incoming_shutdown(
        tokio_stream::wrappers::TcpListenerStream::new(listener),
        async {
            let _ = stopped.await;
        },
    ));
    (addr, received, stop)
}

fn traced_config(repo: &std::path::Path, endpoint: String) -> liveprofile_server::ServerConfig {
    let mut c = config(repo);
    let mut t = TraceConfig::new(endpoint);
    t.export_interval = Duration::from_millis(50);
    t.export_timeout = Duration::from_secs(2);
    c.traces = Some(t);
    c
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

/// A caller's span: trace id and span id, each distinct per `n`.
fn caller(n: u8) -> (String, String) {
    (format!("{n:02x}").repeat(16), format!("a{:01x}", n % 16).repeat(8))
}

fn with_parent<T>(message: T, traceparent: &str, request_id: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    r.metadata_mut().insert("traceparent", traceparent.parse().unwrap());
    r.metadata_mut().insert("x-request-id", request_id.parse().unwrap());
    r
}

fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v: &AnyValue| v.value.as_ref())
}

fn text(attributes: &[KeyValue], key: &str) -> String {
    match attribute(attributes, key) {
        Some(Value::StringValue(s)) => s.clone(),
        other => panic!("attribute {key}: {other:?}"),
    }
}

fn int(attributes: &[KeyValue], key: &str) -> i64 {
    match attribute(attributes, key) {
        Some(Value::IntValue(n)) => *n,
        other => panic!("attribute {key}: {other:?}"),
    }
}

fn conversion_request(g: &Golden, model: &str) -> v1::ScoreConversionRequest {
    v1::ScoreConversionRequest {
        model: model.to_owned(),
        schema_hash: g.schema_hash.clone(),
        candidates: vec![v1::ConversionCandidate {
            user_id: "viewer-1".into(),
            room_id: "room-3".into(),
            features: Some(g.dense(0)),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Waits until the spans of `trace_id` include a server span and `children` more.
async fn spans_of(received: &Received, trace_id: &[u8], children: usize) -> Vec<Span> {
    eventually_async("the trace's spans at the receiver", Duration::from_secs(20), || async {
        received.of_trace(trace_id).len() > children
    })
    .await;
    received.of_trace(trace_id)
}

/// The call's server span: its caller's trace and parent, and the named children with
/// the server span as their parent, inside its time, in the given order (each starts
/// after the one before it ended). Returns the server span and the children by name.
fn check_tree<'a>(spans: &'a [Span], rpc: &str, parent_span: &[u8], phases: &[&str]) -> (&'a Span, Vec<&'a Span>) {
    let root = spans.iter().find(|s| s.name == rpc).unwrap_or_else(|| panic!("no span {rpc} in {spans:#?}"));
    assert_eq!(root.kind, SpanKind::Server as i32);
    assert_eq!(root.parent_span_id, parent_span, "the caller's span is the parent");
    assert!(root.start_time_unix_nano > 0 && root.end_time_unix_nano >= root.start_time_unix_nano);
    let mut children = Vec::new();
    for name in phases {
        let child = spans.iter().find(|s| s.name == *name).unwrap_or_else(|| {
            panic!("{rpc}: no child span {name:?} in {:?}", spans.iter().map(|s| &s.name).collect::<Vec<_>>())
        });
        assert_eq!(child.parent_span_id, root.span_id, "{name} is a child of {rpc}");
        assert_eq!(child.trace_id, root.trace_id);
        assert_eq!(child.kind, SpanKind::Internal as i32);
        assert!(
            root.start_time_unix_nano <= child.start_time_unix_nano
                && child.start_time_unix_nano <= child.end_time_unix_nano
                && child.end_time_unix_nano <= root.end_time_unix_nano,
            "{name} [{}, {}] inside {rpc} [{}, {}]",
            child.start_time_unix_nano,
            child.end_time_unix_nano,
            root.start_time_unix_nano,
            root.end_time_unix_nano
        );
        children.push(child);
    }
    for pair in children.windows(2) {
        assert!(
            pair[0].end_time_unix_nano <= pair[1].start_time_unix_nano,
            "{} ends before {} starts",
            pair[0].name,
            pair[1].name
        );
    }
    assert_eq!(spans.len(), 1 + phases.len(), "{:?}", spans.iter().map(|s| &s.name).collect::<Vec<_>>());
    (root, children)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callers_trace_continues_through_scoring_kserve_and_ingest() {
    let (addr, received, _stop) = receiver().await;
    let repo = repository(&["user_tags", "conversion"]);
    let mut c = traced_config(repo.path(), format!("http://{addr}"));
    c.profiles.durability = Durability::Fsync;
    let server = start(c).await;

    // liveprofile.v1 ScoreConversion.
    let conversion = golden("conversion");
    let (trace, span) = caller(1);
    let mut request = with_parent(conversion_request(&conversion, ""), &format!("00-{trace}-{span}-01"), "conv-1");
    // Two tracestate headers are one list.
    request.metadata_mut().insert("tracestate", "engine=rec7".parse().unwrap());
    request.metadata_mut().append("tracestate", "ab@vendor=1".parse().unwrap());
    let answer = scoring(&server).await.score_conversion(request).await.unwrap().into_inner();
    assert_eq!(answer.scores.len(), 1);
    let spans = spans_of(&received, &unhex(&trace), 5).await;
    let (root, children) = check_tree(
        &spans,
        "liveprofile.v1.Scoring/ScoreConversion",
        &unhex(&span),
        &["decode", "validate", "queue", "compute", "encode"],
    );
    assert_eq!(hex(&root.trace_id), trace);
    assert_eq!(root.trace_state, "engine=rec7,ab@vendor=1");
    assert_eq!(text(&root.attributes, "liveprofile.model"), "conversion");
    assert_eq!(int(&root.attributes, "liveprofile.model.version"), 1);
    assert_eq!(int(&root.attributes, "liveprofile.rows"), 1);
    assert_eq!(text(&root.attributes, "liveprofile.arm"), "stable");
    assert_eq!(text(&root.attributes, "liveprofile.request_id"), "conv-1");
    assert_eq!(text(&root.attributes, "rpc.system"), "grpc");
    assert_eq!(int(&root.attributes, "rpc.grpc.status_code"), 0);
    assert!(root.status.is_none(), "an answered call has no error status");
    let compute = children[3];
    assert_eq!(text(&compute.attributes, "liveprofile.model"), "conversion");
    assert_eq!(int(&compute.attributes, "liveprofile.model.version"), 1);
    assert!(int(&compute.attributes, "liveprofile.batch.rows") >= 1);
    // The queue and compute spans are the times the answer reports.
    let timing = answer.timing.unwrap();
    let queue_us = (children[2].end_time_unix_nano - children[2].start_time_unix_nano) / 1000;
    let compute_us = (compute.end_time_unix_nano - compute.start_time_unix_nano) / 1000;
    assert_eq!((queue_us, compute_us), (timing.queue_us, timing.compute_us));

    // KServe v2 ModelInfer.
    let tags = golden("user_tags");
    let (trace, span) = caller(2);
    let infer = pb::ModelInferRequest {
        model_name: "user_tags".into(),
        id: "infer-9".into(),
        inputs: vec![pb::model_infer_request::InferInputTensor {
            name: "features".into(),
            datatype: "FP32".into(),
            shape: vec![1, tags.rows[0].len() as i64],
            contents: Some(pb::InferTensorContents { fp32_contents: tags.rows[0].clone(), ..Default::default() }),
            ..Default::default()
        }],
        ..Default::default()
    };
    let answer = kserve(&server)
        .await
        .model_infer(with_parent(infer, &format!("00-{trace}-{span}-01"), "header-id"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.model_version, "1");
    let spans = spans_of(&received, &unhex(&trace), 5).await;
    let (root, _) = check_tree(
        &spans,
        "inference.GRPCInferenceService/ModelInfer",
        &unhex(&span),
        &["decode", "validate", "queue", "compute", "encode"],
    );
    assert_eq!(text(&root.attributes, "liveprofile.model"), "user_tags");
    assert_eq!(int(&root.attributes, "liveprofile.model.version"), 1);
    assert_eq!(text(&root.attributes, "liveprofile.request_id"), "infer-9", "KServe's own id wins over the header");
    assert_eq!(root.trace_state, "");

    // Ingest: one batch, synced.
    let (trace, span) = caller(3);
    let mut generator = SyntheticEvents::new("tr", 4);
    let now = liveprofile_store::now_ms();
    let events: Vec<v1::LiveEvent> = (0..12).map(|i| generator.next_event(now - 60_000 + i * 1000)).collect();
    let mut request = tonic::Request::new(tokio_stream::iter(vec![v1::EventBatch { events }].into_iter()));
    request.metadata_mut().insert("traceparent", format!("00-{trace}-{span}-01").parse().unwrap());
    let ack = IngestClient::new(channel(&server).await).ingest_events(request).await.unwrap().into_inner();
    assert_eq!(ack.accepted, 12);
    let spans = spans_of(&received, &unhex(&trace), 6).await;
    let (root, children) = check_tree(
        &spans,
        "liveprofile.v1.Ingest/IngestEvents",
        &unhex(&span),
        &["decode", "check", "log write", "fsync", "apply", "encode"],
    );
    assert_eq!(int(&root.attributes, "liveprofile.events"), 12);
    assert_eq!(int(&root.attributes, "liveprofile.events.accepted"), 12);
    for child in &children[1..5] {
        assert_eq!(int(&child.attributes, "liveprofile.events"), 12, "{}", child.name);
    }

    // Every span came under the service's resource.
    let requests = received.requests.lock().unwrap().clone();
    for r in &requests {
        let resource = r.resource_spans[0].resource.as_ref().unwrap();
        assert_eq!(text(&resource.attributes, "service.name"), "liveprofile");
        assert_eq!(text(&resource.attributes, "service.version"), env!("CARGO_PKG_VERSION"));
        assert!(!text(&resource.attributes, "host.name").is_empty());
    }
    // Counted once the receiver has answered.
    let tracer = server.tracer().unwrap().clone();
    eventually_async("exports counted", Duration::from_secs(20), || async { tracer.stats().exported == 19 }).await;
    let page = metrics(&server).await;
    assert_eq!(sample(&page, "liveprofile_trace_spans", &["stat=\"exported\""]), Some(6.0 + 6.0 + 7.0));
    assert_eq!(sample(&page, "liveprofile_trace_spans", &["stat=\"dropped\""]), None);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsampled_callers_get_no_spans_and_malformed_ones_a_new_trace() {
    let (addr, received, _stop) = receiver().await;
    let repo = repository(&["conversion"]);
    let server = start(traced_config(repo.path(), format!("http://{addr}"))).await;
    let g = golden("conversion");
    let mut client = scoring(&server).await;

    // The caller does not record this trace: neither does the server.
    let (unsampled, span) = caller(4);
    let r = with_parent(conversion_request(&g, ""), &format!("00-{unsampled}-{span}-00"), "unsampled");
    assert_eq!(client.score_conversion(r).await.unwrap().into_inner().scores.len(), 1);

    // Malformed: answered as usual, traced as a new root.
    let malformed = "00-ZZf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let plain = client.score_conversion(conversion_request(&g, "")).await.unwrap().into_inner();
    let r = with_parent(conversion_request(&g, ""), malformed, "malformed");
    let answer = client.score_conversion(r).await.unwrap().into_inner();
    assert_eq!(answer.scores[0].probability, plain.scores[0].probability);

    // Two traceparent headers: no valid parent, so a new trace (W3C).
    let (twice, span) = caller(6);
    let mut r = with_parent(conversion_request(&g, ""), &format!("00-{twice}-{span}-01"), "twice");
    r.metadata_mut().append("traceparent", format!("00-{twice}-{span}-01").parse().unwrap());
    assert_eq!(client.score_conversion(r).await.unwrap().into_inner().scores.len(), 1);

    // A failed call: its span carries the error.
    let (failed, span) = caller(5);
    let r = with_parent(conversion_request(&g, "no_such_model"), &format!("00-{failed}-{span}-01"), "failed");
    let refused = client.score_conversion(r).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::NotFound);
    let spans = spans_of(&received, &unhex(&failed), 1).await;
    let root = spans.iter().find(|s| s.name == "liveprofile.v1.Scoring/ScoreConversion").unwrap();
    assert_eq!(int(&root.attributes, "rpc.grpc.status_code"), tonic::Code::NotFound as i64);
    let status = root.status.as_ref().unwrap();
    assert_eq!(status.code, StatusCode::Error as i32);
    // The message the caller read, not its percent-encoded form on the wire.
    assert_eq!(status.message, refused.message());
    assert!(status.message.contains("model \"no_such_model\""), "{}", status.message);
    // Decoded, then refused before anything was scored.
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&"decode") && !names.contains(&"queue"), "{names:?}");

    let conversion_roots = || {
        received
            .spans()
            .into_iter()
            .filter(|s| s.name == "liveprofile.v1.Scoring/ScoreConversion")
            .collect::<Vec<Span>>()
    };
    eventually_async("four traced calls", Duration::from_secs(20), || async { conversion_roots().len() >= 4 }).await;
    let roots: Vec<Span> = conversion_roots();
    assert!(received.of_trace(&unhex(&unsampled)).is_empty(), "an unsampled caller's trace has no spans");
    let by_id = |id: &str| {
        roots
            .iter()
            .find(|s| matches!(attribute(&s.attributes, "liveprofile.request_id"), Some(Value::StringValue(v)) if v == id))
            .cloned()
    };
    let fresh = by_id("malformed").expect("a malformed traceparent starts a new trace");
    assert!(fresh.parent_span_id.is_empty(), "a new trace has no parent");
    assert_ne!(hex(&fresh.trace_id), "00".repeat(16));
    assert_ne!(hex(&fresh.trace_id)[2..], malformed[5..35], "the malformed id is not used");
    assert_eq!(received.of_trace(&fresh.trace_id).len(), 6);
    let restarted = by_id("twice").expect("a call with two traceparent headers is traced");
    assert!(
        restarted.parent_span_id.is_empty() && hex(&restarted.trace_id) != twice,
        "two traceparents start a new trace"
    );
    // The call without a traceparent is traced too (sample 1.0), in a trace of its own.
    assert_eq!(roots.len(), 4, "plain, malformed, twice, failed");
    assert_eq!(roots.iter().map(|s| &s.trace_id).collect::<std::collections::HashSet<_>>().len(), 4);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_collector_answers_come_and_spans_are_dropped_and_counted() {
    // A port nobody listens on.
    let port = liveprofile_testkit::free_port();
    let repo = repository(&["conversion"]);
    let server = start(traced_config(repo.path(), format!("http://127.0.0.1:{port}"))).await;
    let g = golden("conversion");
    let mut client = scoring(&server).await;
    let calls: u64 = 20;
    for i in 0..calls {
        let (trace, span) = caller(10 + i as u8);
        let r = with_parent(conversion_request(&g, ""), &format!("00-{trace}-{span}-01"), &format!("down-{i}"));
        assert_eq!(client.score_conversion(r).await.unwrap().into_inner().scores.len(), 1);
    }
    // Six spans a call (the call's and five phases), all dropped, none exported.
    let tracer = server.tracer().unwrap().clone();
    eventually_async("every span counted as dropped", Duration::from_secs(20), || async {
        tracer.stats().dropped == 6 * calls
    })
    .await;
    assert_eq!(tracer.stats().exported, 0);
    let page = metrics(&server).await;
    assert_eq!(sample(&page, "liveprofile_trace_spans", &["stat=\"dropped\""]), Some(6.0 * calls as f64));
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_collector_fills_the_queue_and_spans_are_dropped_not_answers() {
    // Each export outlasts the export timeout; the queue holds the smallest size allowed
    // (the largest call: 256 children and its root), which 60 calls of 6 spans overfill.
    let (addr, received, _stop) = slow_receiver(Duration::from_secs(30)).await;
    let repo = repository(&["conversion"]);
    let mut c = traced_config(repo.path(), format!("http://{addr}"));
    let t = c.traces.as_mut().unwrap();
    (t.queue_spans, t.batch_spans, t.export_timeout) = (257, 60, Duration::from_millis(300));
    let server = start(c).await;
    let g = golden("conversion");
    let mut client = scoring(&server).await;
    let calls: u64 = 60;
    let started = std::time::Instant::now();
    for i in 0..calls {
        let (trace, span) = caller(50 + i as u8);
        let r = with_parent(conversion_request(&g, ""), &format!("00-{trace}-{span}-01"), &format!("slow-{i}"));
        assert_eq!(client.score_conversion(r).await.unwrap().into_inner().scores.len(), 1);
    }
    // Answers never wait for the collector: calls held for the export timeout each would
    // take 18 s; half of that is a bound no healthy run comes near.
    assert!(started.elapsed() < Duration::from_millis(300) * calls as u32 / 2, "{:?}", started.elapsed());
    let tracer = server.tracer().unwrap().clone();
    // Every span is accounted for: none taken (each export timed out), all dropped, at
    // the full queue or with their timed-out export.
    eventually_async("every span counted", Duration::from_secs(30), || async { tracer.stats().dropped == 6 * calls })
        .await;
    assert_eq!(tracer.stats().exported, 0);
    assert!(received.spans().is_empty());
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_sends_the_queued_spans() {
    let (addr, received, _stop) = receiver().await;
    let repo = repository(&["conversion"]);
    let mut c = traced_config(repo.path(), format!("http://{addr}"));
    // Nothing is sent before shutdown unless a batch fills.
    c.traces.as_mut().unwrap().export_interval = Duration::from_secs(600);
    let server = start(c).await;
    let g = golden("conversion");
    let (trace, span) = caller(40);
    let r = with_parent(conversion_request(&g, ""), &format!("00-{trace}-{span}-01"), "last");
    scoring(&server).await.score_conversion(r).await.unwrap();
    assert!(received.spans().is_empty(), "queued, not yet sent");
    server.shutdown().await.unwrap();
    assert_eq!(received.of_trace(&unhex(&trace)).len(), 6, "sent on shutdown");
}

/// With traces on, calls that are not traced (health, admin) work as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untraced_calls_are_not_exported() {
    let (addr, received, _stop) = receiver().await;
    let repo = repository(&["conversion"]);
    let server: RunningServer = start(traced_config(repo.path(), format!("http://{addr}"))).await;
    let mut k = kserve(&server).await;
    assert!(k.server_ready(pb::ServerReadyRequest {}).await.unwrap().into_inner().ready);
    let models = admin(&server).await.list_models(authorized(v1::ListModelsRequest {})).await.unwrap().into_inner();
    assert_eq!(models.models.len(), 1);
    server.shutdown().await.unwrap();
    assert!(received.spans().is_empty(), "{:?}", received.spans());
}
