//! What a careless or hostile client or operator must not break: an empty or refused model
//! folder does not drain the server, unknown model names do not grow the metrics or the
//! answers, and a request that cannot be decoded ends a score stream with
//! INVALID_ARGUMENT after the answers to the requests before it.

use crate::common::*;
use liveprofile_server::proto::inference as pb;
use liveprofile_server::proto::v1;
use std::time::{Duration, Instant};
use tonic::Code;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

/// A health name's status, or the gRPC code when the name is unknown.
async fn health_of(client: &mut HealthClient<tonic::transport::Channel>, name: &str) -> Result<i32, Code> {
    let request = HealthCheckRequest { service: name.to_owned() };
    client.check(request).await.map(|r| r.into_inner().status).map_err(|s| s.code())
}

async fn eventually<F: std::future::Future<Output = bool>>(what: &str, mut f: impl FnMut() -> F) {
    let until = Instant::now() + Duration::from_secs(20);
    while !f().await {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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

/// Sends requests as raw bytes (so that one can be undecodable), reads answers as protobuf.
#[derive(Debug, Clone, Copy, Default)]
struct RawRequests;

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

impl tonic::codec::Codec for RawRequests {
    type Encode = Vec<u8>;
    type Decode = v1::ScoreStreamResponse;
    type Encoder = RawEncoder;
    type Decoder = tonic_prost::ProstDecoder<v1::ScoreStreamResponse>;

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
    let mut answers =
        grpc.streaming(tonic::Request::new(tokio_stream::iter(frames)), path, RawRequests).await.unwrap().into_inner();
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
