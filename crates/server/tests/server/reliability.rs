//! What a careless or hostile client or operator must not break: an empty or refused model
//! folder does not drain the server, unknown model names do not grow the metrics or the
//! answers, requests that cannot be decoded are INVALID_ARGUMENT (a score stream ends with
//! it after the answers to the requests before it), and connections, quiet streams and
//! request bytes are held within their limits.

use crate::common::*;
use liveprofile_client::inference as pb;
use liveprofile_client::v1;
use std::time::{Duration, Instant};
use tonic::Code;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

/// A health name's status, or the gRPC code when the name is unknown.
async fn health_of(client: &mut HealthClient<tonic::transport::Channel>, name: &str) -> Result<i32, Code> {
    let request = HealthCheckRequest { service: name.to_owned() };
    client.check(request).await.map(|r| r.into_inner().status).map_err(|s| s.code())
}

async fn eventually<F: std::future::Future<Output = bool>>(what: &str, f: impl FnMut() -> F) {
    liveprofile_testkit::eventually_async(what, Duration::from_secs(20), f).await;
}

async fn known_models(server: &liveprofile_server::RunningServer) -> Vec<v1::ModelInfo> {
    admin(server).await.list_models(authorized(v1::ListModelsRequest {})).await.unwrap().into_inner().models
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_folder_or_a_refused_model_does_not_take_the_server_out_of_rotation() {
    let repo = repository(&["uci_session_conversion"]);
    let server = start(config(repo.path())).await;
    let mut health = HealthClient::new(channel(&server).await);
    let mut k = kserve(&server).await;
    let serving = ServingStatus::Serving as i32;
    let not_serving = ServingStatus::NotServing as i32;
    eventually("SERVING", || {
        let mut h = health.clone();
        async move { health_of(&mut h, "").await == Ok(serving) }
    })
    .await;
    assert_eq!(health_of(&mut health, "liveprofile.model.uci_session_conversion").await, Ok(serving));

    // `mkdir models/x/1`, and a new model whose only version has a wrong sha256.
    std::fs::create_dir_all(repo.path().join("x/1")).unwrap();
    // Broken before it is renamed into place, as a publisher would do it.
    let staging = tempfile::tempdir_in(repo.path()).unwrap();
    let bad = publish(staging.path(), "conversion", 1);
    let manifest = bad.join("manifest.json");
    let mut m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
    m["onnx_sha256"] = "ff".repeat(32).into();
    std::fs::write(&manifest, serde_json::to_string(&m).unwrap()).unwrap();
    std::fs::create_dir_all(repo.path().join("conversion")).unwrap();
    std::fs::rename(&bad, repo.path().join("conversion/1")).unwrap();
    eventually("the refusal", || async {
        known_models(&server).await.iter().any(|m| m.name == "conversion" && !m.refused.is_empty())
    })
    .await;
    eventually("the model's health", || {
        let mut h = health.clone();
        async move { health_of(&mut h, "liveprofile.model.conversion").await == Ok(not_serving) }
    })
    .await;
    // Several rescans later the server is still in rotation.
    tokio::time::sleep(Duration::from_millis(600)).await;
    for name in
        ["", "liveprofile.v1.Scoring", "inference.GRPCInferenceService", "liveprofile.model.uci_session_conversion"]
    {
        assert_eq!(health_of(&mut health, name).await, Ok(serving), "{name:?}");
    }
    assert!(k.server_ready(pb::ServerReadyRequest {}).await.unwrap().into_inner().ready);
    let ready = |name: &str| pb::ModelReadyRequest { name: name.into(), version: String::new() };
    assert!(!k.model_ready(ready("conversion")).await.unwrap().into_inner().ready);
    assert!(k.model_ready(ready("uci_session_conversion")).await.unwrap().into_inner().ready);
    // The empty folder is no model at all.
    assert!(known_models(&server).await.iter().all(|m| m.name != "x"));
    assert_eq!(health_of(&mut health, "liveprofile.model.x").await, Err(Code::NotFound));
    assert_eq!(k.model_ready(ready("x")).await.unwrap_err().code(), Code::NotFound);

    // Both folders removed: the refused model is forgotten, its health name with it.
    std::fs::remove_dir_all(repo.path().join("x")).unwrap();
    std::fs::remove_dir_all(repo.path().join("conversion")).unwrap();
    eventually("the model forgotten", || async { known_models(&server).await.iter().all(|m| m.name != "conversion") })
        .await;
    eventually("its health name cleared", || {
        let mut h = health.clone();
        async move { health_of(&mut h, "liveprofile.model.conversion").await == Err(Code::NotFound) }
    })
    .await;
    assert_eq!(health_of(&mut health, "").await, Ok(serving));
    assert!(k.server_ready(pb::ServerReadyRequest {}).await.unwrap().into_inner().ready);
    // On shutdown every name turns NOT_SERVING.
    let state = server.state().clone();
    server.shutdown().await.unwrap();
    assert!(!state.is_ready());
    assert!(state.model_readiness().values().all(|ready| !ready));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_model_names_neither_grow_the_metrics_nor_come_back_whole() {
    let repo = repository(&["user_tags"]);
    let server = start(config(repo.path())).await;
    let g = golden("user_tags");
    let mut s = scoring(&server).await;
    let mut k = kserve(&server).await;
    for i in 0..50 {
        let name = format!("{i:03}{}", "x".repeat(100_000));
        let mut request = g.tags_request(1);
        request.model = name.clone();
        let err = s.score_tags(request).await.unwrap_err();
        assert_eq!(err.code(), Code::NotFound);
        assert!(err.message().len() < 256, "{} bytes: {:.300}", err.message().len(), err.message());
        assert!(err.message().contains("…(100003 bytes)"), "{}", err.message());
        let err = k
            .model_infer(pb::ModelInferRequest {
                model_name: name,
                model_version: format!("{}", 1000 + i),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound);
        assert!(err.message().len() < 256, "{} bytes", err.message().len());
        // A known model, versions it never had.
        let err = k
            .model_infer(pb::ModelInferRequest {
                model_name: "user_tags".into(),
                model_version: format!("{}", 1000 + i),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound);
    }
    let text = metrics(&server).await;
    assert!(text.len() < 64 << 10, "/metrics is {} bytes", text.len());
    assert!(!text.contains("xxxxxxxx"), "a caller's model name is a label value");
    assert!(!text.contains("version=\"10"), "a caller's version is a label value");
    let unknown = ["model=\"_unknown\"", "code=\"NOT_FOUND\""];
    assert_eq!(sample(&text, "nv_inference_request_failure", &unknown), Some(100.0));
    let known = ["model=\"user_tags\"", "version=\"\"", "code=\"NOT_FOUND\""];
    assert_eq!(sample(&text, "nv_inference_request_failure", &known), Some(50.0));
    server.shutdown().await.unwrap();
}

/// Sends requests as raw bytes (so that one can be undecodable), reads answers as the
/// protobuf message `A`.
struct RawRequests<A>(std::marker::PhantomData<A>);

impl<A> RawRequests<A> {
    fn new() -> Self {
        RawRequests(std::marker::PhantomData)
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct RawEncoder;

impl tonic::codec::Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut tonic::codec::EncodeBuf<'_>) -> Result<(), tonic::Status> {
        use prost::bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl<A: prost::Message + Default + Send + 'static> tonic::codec::Codec for RawRequests<A> {
    type Encode = Vec<u8>;
    type Decode = A;
    type Encoder = RawEncoder;
    type Decoder = tonic_prost::ProstDecoder<A>;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        tonic_prost::ProstDecoder::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_stream_request_ends_the_stream_with_invalid_argument_after_the_answers() {
    use prost::Message;
    let repo = repository(&["user_tags"]);
    let server = start(config(repo.path())).await;
    let g = golden("user_tags");
    let good = |id: &str| {
        v1::ScoreStreamRequest {
            request_id: id.into(),
            request: Some(v1::score_stream_request::Request::Tags(g.tags_request(2))),
        }
        .encode_to_vec()
    };
    // Field 1, length-delimited, five bytes announced and one sent.
    let undecodable = vec![0x0a, 0x05, 0x01];
    let frames = vec![good("a"), good("b"), undecodable, good("c")];
    let mut grpc = tonic::client::Grpc::new(channel(&server).await);
    grpc.ready().await.unwrap();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static("/liveprofile.v1.Scoring/ScoreStream");
    let mut answers = grpc
        .streaming(tonic::Request::new(tokio_stream::iter(frames)), path, RawRequests::<v1::ScoreStreamResponse>::new())
        .await
        .unwrap()
        .into_inner();
    for id in ["a", "b"] {
        let answer = answers.message().await.unwrap().expect("an answer");
        assert_eq!(answer.request_id, id);
        let Some(v1::score_stream_response::Response::Tags(tags)) = answer.response else { panic!("{answer:?}") };
        assert_eq!(tags.users.len(), 2);
    }
    let status = answers.message().await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().starts_with("score stream request 3 cannot be decoded"), "{}", status.message());
    // Nothing after the error: the stream has ended, not silently with OK.
    assert!(matches!(answers.message().await, Ok(None) | Err(_)));
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_unary_request_is_invalid_argument() {
    let repo = repository(&["user_tags"]);
    let server = start(config(repo.path())).await;
    let mut grpc = tonic::client::Grpc::new(channel(&server).await);
    let path = tonic::codegen::http::uri::PathAndQuery::from_static("/liveprofile.v1.Scoring/ScoreTags");
    for bytes in
        [vec![0x0a, 0x05, 0x01], vec![0xff; 12], vec![0x08, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80]]
    {
        grpc.ready().await.unwrap();
        let status = grpc
            .unary(tonic::Request::new(bytes.clone()), path.clone(), RawRequests::<v1::ScoreTagsResponse>::new())
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{bytes:?}: {status:?}");
        assert!(status.message().starts_with(liveprofile_server::limits::UNDECODABLE), "{}", status.message());
    }
    // The same connection still answers a good request.
    let mut client = scoring(&server).await;
    assert_eq!(client.score_tags(golden("user_tags").tags_request(2)).await.unwrap().into_inner().users.len(), 2);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_stream_that_goes_quiet_ends_with_deadline_exceeded() {
    let repo = repository(&["user_tags"]);
    let mut c = config(repo.path());
    c.limits.stream_idle_timeout = Duration::from_millis(400);
    let server = start(c).await;
    let g = golden("user_tags");
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(v1::ScoreStreamRequest {
        request_id: "first".into(),
        request: Some(v1::score_stream_request::Request::Tags(g.tags_request(1))),
    })
    .await
    .unwrap();
    let started = Instant::now();
    let mut answers = scoring(&server)
        .await
        .score_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answers.message().await.unwrap().unwrap().request_id, "first");
    // The sender stays open and sends nothing.
    let status = tokio::time::timeout(Duration::from_secs(30), answers.message()).await.expect("ended").unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(status.message().starts_with(liveprofile_server::limits::STREAM_IDLE), "{}", status.message());
    assert!(status.message().contains("400 ms"), "{}", status.message());
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert_eq!(sample(&metrics(&server).await, "liveprofile_stream_idle_timeouts", &[]), Some(1.0));
    drop(tx);
    server.shutdown().await.unwrap();
}

/// Reads until the server closes the socket (end of file or reset); the time it took.
async fn closed_by_server(socket: &mut tokio::net::TcpStream, within: Duration) -> Duration {
    use tokio::io::AsyncReadExt;
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(within, socket.read(&mut buf)).await.expect("the server closed the socket") {
            Ok(0) | Err(_) => return started.elapsed(),
            Ok(_) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_are_closed_at_once_and_silent_ones_after_the_handshake_timeout() {
    let repo = repository(&["user_tags"]);
    let mut c = config(repo.path());
    c.limits.max_connections = 3;
    c.limits.handshake_timeout = Duration::from_millis(1500);
    c.limits.metrics_max_connections = 2;
    c.limits.metrics_header_timeout = Duration::from_millis(1500);
    let server = start(c).await;
    // Three sockets that never send the HTTP/2 preface take every place.
    let mut silent = Vec::new();
    for _ in 0..3 {
        silent.push(tokio::net::TcpStream::connect(server.grpc_addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut over = tokio::net::TcpStream::connect(server.grpc_addr).await.unwrap();
    closed_by_server(&mut over, Duration::from_secs(30)).await;
    let text = metrics(&server).await;
    assert_eq!(sample(&text, "liveprofile_connections_refused", &["port=\"grpc\""]), Some(1.0));
    assert_eq!(sample(&text, "liveprofile_connections_open", &["port=\"grpc\""]), Some(3.0));
    // The silent ones are closed once their handshake time is up, and their places freed.
    for s in &mut silent {
        closed_by_server(s, Duration::from_secs(30)).await;
    }
    let text = metrics(&server).await;
    assert_eq!(sample(&text, "liveprofile_connections_timed_out", &["port=\"grpc\""]), Some(3.0));
    let mut client = scoring(&server).await;
    assert_eq!(client.score_tags(golden("user_tags").tags_request(1)).await.unwrap().into_inner().users.len(), 1);

    // The metrics port: a connection that sends no request is closed after the header
    // timeout; over its cap, at once; a request after that is answered.
    let mut quiet = tokio::net::TcpStream::connect(server.metrics_addr).await.unwrap();
    let mut quiet2 = tokio::net::TcpStream::connect(server.metrics_addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut refused = tokio::net::TcpStream::connect(server.metrics_addr).await.unwrap();
    closed_by_server(&mut refused, Duration::from_secs(30)).await;
    let waited = closed_by_server(&mut quiet, Duration::from_secs(30)).await;
    closed_by_server(&mut quiet2, Duration::from_secs(30)).await;
    assert!(waited >= Duration::from_millis(1000), "{waited:?}");
    let text = metrics(&server).await;
    assert_eq!(sample(&text, "liveprofile_connections_refused", &["port=\"metrics\""]), Some(1.0));
    assert_eq!(sample(&text, "liveprofile_connections_timed_out", &["port=\"metrics\""]), Some(2.0));
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_over_the_byte_budget_is_refused_before_it_is_decoded() {
    use prost::Message;
    let repo = repository(&["user_tags"]);
    let mut c = config(repo.path());
    c.limits.max_inflight_request_bytes = 4096;
    let server = start(c).await;
    let g = golden("user_tags");
    let big = g.tags_request(64);
    let bytes = big.encoded_len();
    assert!(bytes > 4096, "{bytes}");
    let mut client = scoring(&server).await;
    let status = client.score_tags(big).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert_eq!(
        status.message(),
        format!(
            "{}{bytes} bytes does not fit: 0 of the 4096 request bytes the server holds at once are in use; retry \
             with backoff",
            liveprofile_server::limits::OVER_BUDGET
        )
    );
    assert_eq!(sample(&metrics(&server).await, "liveprofile_request_bytes_rejections", &[]), Some(1.0));
    // Small requests fit, and the bytes are given back after each answer.
    for _ in 0..20 {
        assert_eq!(client.score_tags(g.tags_request(1)).await.unwrap().into_inner().users.len(), 1);
    }
    assert_eq!(sample(&metrics(&server).await, "liveprofile_request_bytes_in_flight", &[]), Some(0.0));
    server.shutdown().await.unwrap();
}
