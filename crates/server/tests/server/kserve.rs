//! The KServe v2 protocol: metadata, readiness, inference in typed and raw form, and the
//! errors of bad tensors.

use crate::common::*;
use liveprofile_client::inference as pb;
use tonic::Code;

/// A request for `rows` of `model`, typed or as raw bytes.
pub(crate) fn infer_request(model: &str, rows: &[Vec<f32>], raw: bool) -> pb::ModelInferRequest {
    let width = rows[0].len();
    let flat: Vec<f32> = rows.iter().flatten().copied().collect();
    let mut input = pb::model_infer_request::InferInputTensor {
        name: "features".into(),
        datatype: "FP32".into(),
        shape: vec![rows.len() as i64, width as i64],
        ..Default::default()
    };
    let mut raw_input_contents = Vec::new();
    if raw {
        raw_input_contents.push(flat.iter().flat_map(|v| v.to_le_bytes()).collect());
    } else {
        input.contents = Some(pb::InferTensorContents { fp32_contents: flat, ..Default::default() });
    }
    pb::ModelInferRequest {
        model_name: model.into(),
        id: "request-7".into(),
        inputs: vec![input],
        raw_input_contents,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_readiness_and_inference_match_the_golden_outputs() {
    let models = ["user_tags", "conversion", "uci_session_conversion", "taobao_purchase"];
    let repo = repository(&models);
    let server = start(config(repo.path())).await;
    let mut client = kserve(&server).await;
    assert!(client.server_live(pb::ServerLiveRequest {}).await.unwrap().into_inner().live);
    assert!(client.server_ready(pb::ServerReadyRequest {}).await.unwrap().into_inner().ready);
    let meta = client.server_metadata(pb::ServerMetadataRequest {}).await.unwrap().into_inner();
    assert_eq!(meta.name, "liveprofile");
    for model in models {
        let g = golden(model);
        let ready = client
            .model_ready(pb::ModelReadyRequest { name: model.into(), version: "1".into() })
            .await
            .unwrap()
            .into_inner();
        assert!(ready.ready, "{model}");
        let m = client
            .model_metadata(pb::ModelMetadataRequest { name: model.into(), version: String::new() })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(m.name, model);
        assert_eq!(m.versions, ["1"]);
        assert_eq!(m.inputs[0].name, "features");
        assert_eq!(m.inputs[0].datatype, "FP32");
        assert_eq!(m.inputs[0].shape, [-1, g.features.len() as i64]);
        assert_eq!(m.outputs[0].shape, [-1, g.output_names.len() as i64]);
        for raw in [false, true] {
            let answer = client.model_infer(infer_request(model, &g.rows, raw)).await.unwrap().into_inner();
            assert_eq!(
                (answer.model_name.as_str(), answer.model_version.as_str(), answer.id.as_str()),
                (model, "1", "request-7")
            );
            let out = &answer.outputs[0];
            assert_eq!(out.datatype, "FP32");
            assert_eq!(out.shape, [g.rows.len() as i64, g.output_names.len() as i64]);
            let values: Vec<f32> = if raw {
                assert!(out.contents.is_none());
                answer.raw_output_contents[0]
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                    .collect()
            } else {
                assert!(answer.raw_output_contents.is_empty());
                out.contents.as_ref().unwrap().fp32_contents.clone()
            };
            let expected: Vec<f32> = g.outputs.iter().flatten().copied().collect();
            assert_eq!(values.len(), expected.len());
            for (k, (a, e)) in values.iter().zip(&expected).enumerate() {
                assert_close(*a, *e, g.tolerance, &format!("{model} value {k} (raw {raw})"));
            }
        }
    }
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tensors_get_invalid_argument_and_unknown_models_not_found() {
    let repo = repository(&["uci_session_conversion"]);
    let server = start(config(repo.path())).await;
    let mut client = kserve(&server).await;
    let g = golden("uci_session_conversion");
    let model = "uci_session_conversion";
    let check = |r: Result<tonic::Response<pb::ModelInferResponse>, tonic::Status>, code: Code, needle: &str| {
        let s = r.expect_err("should fail");
        assert_eq!(s.code(), code, "{s:?}");
        assert!(s.message().contains(needle), "{:?} does not contain {needle:?}", s.message());
    };
    check(client.model_infer(infer_request("nope", &g.rows, false)).await, Code::NotFound, "unknown model \"nope\"");
    let mut r = infer_request(model, &g.rows, false);
    r.model_version = "2".into();
    check(client.model_infer(r).await, Code::NotFound, "has no loaded version 2");
    let mut r = infer_request(model, &g.rows, false);
    r.model_version = "latest".into();
    check(client.model_infer(r).await, Code::InvalidArgument, "version \"latest\" is not a non-negative integer");
    let mut r = infer_request(model, &g.rows, false);
    r.inputs[0].datatype = "INT64".into();
    check(client.model_infer(r).await, Code::InvalidArgument, "has datatype \"INT64\"; the model takes FP32");
    let mut r = infer_request(model, &g.rows, false);
    r.inputs[0].shape = vec![g.rows.len() as i64, 16];
    check(client.model_infer(r).await, Code::InvalidArgument, "the model takes [rows, 17]");
    let mut r = infer_request(model, &g.rows, false);
    r.inputs[0].shape = vec![g.rows.len() as i64 + 1, 17];
    check(client.model_infer(r).await, Code::InvalidArgument, "needs");
    let mut r = infer_request(model, &g.rows, false);
    r.inputs[0].name = "x".into();
    check(client.model_infer(r).await, Code::InvalidArgument, "unknown input \"x\"");
    let mut r = infer_request(model, &g.rows, true);
    r.raw_input_contents[0].pop();
    check(client.model_infer(r).await, Code::InvalidArgument, "raw contents of");
    let mut r = infer_request(model, &g.rows, false);
    r.inputs[0].contents.as_mut().unwrap().int64_contents = vec![1];
    check(client.model_infer(r).await, Code::InvalidArgument, "its values go in fp32_contents");
    let mut r = infer_request(model, &g.rows, false);
    r.inputs[0].contents.as_mut().unwrap().fp32_contents[3] = f32::NAN;
    check(client.model_infer(r).await, Code::InvalidArgument, "is not finite");
    let mut r = infer_request(model, &g.rows, false);
    r.outputs =
        vec![pb::model_infer_request::InferRequestedOutputTensor { name: "logits".into(), ..Default::default() }];
    check(client.model_infer(r).await, Code::InvalidArgument, "unknown output \"logits\"");
    // The answer's context and user, held to the event contract's limits as in v1.
    let text =
        |s: String| pb::InferParameter { parameter_choice: Some(pb::infer_parameter::ParameterChoice::StringParam(s)) };
    for (key, value, needle) in [
        ("user_id", "u".repeat(257), "row 0: user_id is 257 bytes, over the limit of 256 bytes"),
        ("room_id", "r".repeat(257), "row 0: room_id is 257 bytes, over the limit of 256 bytes"),
        ("platform", "myspace".to_owned(), "row 0: "),
    ] {
        let mut r = infer_request(model, &g.rows, false);
        r.parameters.insert(key.to_owned(), text(value));
        check(client.model_infer(r).await, Code::InvalidArgument, needle);
    }
    let mut r = infer_request(model, &g.rows[..1], false);
    r.inputs[0].shape = vec![0, 17];
    r.inputs[0].contents.as_mut().unwrap().fp32_contents.clear();
    check(client.model_infer(r).await, Code::InvalidArgument, "rows >= 1");
    let s =
        client.model_ready(pb::ModelReadyRequest { name: "nope".into(), version: String::new() }).await.unwrap_err();
    assert_eq!(s.code(), Code::NotFound);
    let ready = client.model_ready(pb::ModelReadyRequest { name: model.into(), version: "5".into() }).await.unwrap();
    assert!(!ready.into_inner().ready);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_over_four_mebibytes_are_accepted() {
    let repo = repository(&["conversion"]);
    let mut cfg = config(repo.path());
    cfg.max_request_rows = 8192;
    let server = start(cfg).await;
    let mut client = kserve(&server).await;
    let g = golden("conversion");
    let rows: Vec<Vec<f32>> = (0..6000).map(|i| g.rows[i % g.rows.len()].clone()).collect();
    let request = infer_request("conversion", &rows, true);
    assert!(request.raw_input_contents[0].len() > 4 << 20);
    let answer = client.model_infer(request).await.unwrap().into_inner();
    assert_eq!(answer.outputs[0].shape, [6000, 1]);
    server.shutdown().await.unwrap();
}
