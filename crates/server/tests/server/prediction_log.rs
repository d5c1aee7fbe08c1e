//! The prediction log on a running server: every answer of every API, with the features as
//! sent and the outputs as answered, bit for bit.

use crate::common::*;
use arrow::array::AsArray;
use arrow::datatypes::Float32Type;
use liveprofile_client::inference as pb;
use liveprofile_client::v1;
use std::collections::HashMap;

/// What the log must hold for a request id: features and outputs, and the API.
type Expected = HashMap<String, (Vec<f32>, Vec<f32>, &'static str)>;

fn with_id<T>(message: T, id: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert("x-request-id", id.parse().unwrap());
    request
}

fn conversion_request(g: &Golden, row: usize, user: &str) -> v1::ScoreConversionRequest {
    v1::ScoreConversionRequest {
        schema_hash: g.schema_hash.clone(),
        candidates: vec![v1::ConversionCandidate {
            user_id: user.into(),
            room_id: "room-3".into(),
            platform: "douyin".into(),
            features: Some(g.dense(row)),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn tags_request(g: &Golden, row: usize, user: &str) -> v1::ScoreTagsRequest {
    v1::ScoreTagsRequest {
        schema_hash: g.schema_hash.clone(),
        users: vec![v1::UserFeatures { user_id: user.into(), features: Some(g.dense(row)), ..Default::default() }],
        ..Default::default()
    }
}

fn tag_values(u: &v1::UserTags) -> Vec<f32> {
    u.tags.iter().map(|t| t.probability).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_of_every_api_is_logged_with_the_features_sent_and_the_outputs_answered() {
    let repo = repository(&["user_tags", "conversion"]);
    let log_dir = tempfile::tempdir().unwrap();
    let mut c = config(repo.path());
    c.prediction_log = Some(liveprofile_predlog::LogConfig::new(log_dir.path()));
    let server = start(c).await;
    let (tags, conversion) = (golden("user_tags"), golden("conversion"));
    let mut expected: Expected = HashMap::new();
    let requests = 10_000;

    // A quarter each: ScoreTags, ScoreConversion, ScoreStream (both kinds), KServe.
    let mut scoring = scoring(&server).await;
    let mut infer = kserve(&server).await;
    let mut stream_requests = Vec::new();
    for i in 0..requests {
        let row = i % 64;
        match i % 4 {
            0 => {
                let id = format!("tags-{i}");
                let answer = scoring
                    .score_tags(with_id(tags_request(&tags, row, &format!("u{i}")), &id))
                    .await
                    .unwrap()
                    .into_inner();
                expected.insert(id, (tags.rows[row].clone(), tag_values(&answer.users[0]), "v1.ScoreTags"));
            }
            1 => {
                let id = format!("conversion-{i}");
                let answer = scoring
                    .score_conversion(with_id(conversion_request(&conversion, row, &format!("u{i}")), &id))
                    .await
                    .unwrap()
                    .into_inner();
                let p = vec![answer.scores[0].probability];
                expected.insert(id, (conversion.rows[row].clone(), p, "v1.ScoreConversion"));
            }
            2 => {
                let request = if i % 8 == 2 {
                    v1::score_stream_request::Request::Tags(tags_request(&tags, row, &format!("u{i}")))
                } else {
                    v1::score_stream_request::Request::Conversion(conversion_request(
                        &conversion,
                        row,
                        &format!("u{i}"),
                    ))
                };
                stream_requests
                    .push(v1::ScoreStreamRequest { request_id: format!("stream-{i}"), request: Some(request) });
            }
            _ => {
                let id = format!("kserve-{i}");
                let answer = infer
                    .model_infer(pb::ModelInferRequest {
                        model_name: "conversion".into(),
                        id: id.clone(),
                        inputs: vec![pb::model_infer_request::InferInputTensor {
                            name: "features".into(),
                            datatype: "FP32".into(),
                            shape: vec![1, conversion.rows[row].len() as i64],
                            contents: Some(pb::InferTensorContents {
                                fp32_contents: conversion.rows[row].clone(),
                                ..Default::default()
                            }),
                            ..Default::default()
                        }],
                        ..Default::default()
                    })
                    .await
                    .unwrap()
                    .into_inner();
                let p = answer.outputs[0].contents.as_ref().unwrap().fp32_contents.clone();
                expected.insert(id, (conversion.rows[row].clone(), p, "kserve.ModelInfer"));
            }
        }
    }
    let features_of: HashMap<String, Vec<f32>> = stream_requests
        .iter()
        .map(|r| {
            let row = r.request_id["stream-".len()..].parse::<usize>().unwrap() % 64;
            let g =
                if matches!(r.request, Some(v1::score_stream_request::Request::Tags(_))) { &tags } else { &conversion };
            (r.request_id.clone(), g.rows[row].clone())
        })
        .collect();
    let mut answers = scoring.score_stream(tokio_stream::iter(stream_requests)).await.unwrap().into_inner();
    while let Some(a) = answers.message().await.unwrap() {
        let outputs = match a.response.unwrap() {
            v1::score_stream_response::Response::Tags(t) => tag_values(&t.users[0]),
            v1::score_stream_response::Response::Conversion(c) => vec![c.scores[0].probability],
            v1::score_stream_response::Response::Error(e) => panic!("{e:?}"),
        };
        expected.insert(a.request_id.clone(), (features_of[&a.request_id].clone(), outputs, "v1.ScoreStream"));
    }
    assert_eq!(expected.len(), requests);
    // Requests without a usable id (none, or one over 128 bytes) are logged under the
    // server's own ids: distinct, its start time in hex and a number.
    let unnamed = [None, Some("x".repeat(129)), None];
    for id in &unnamed {
        let request = conversion_request(&conversion, 0, "unnamed");
        let request = match id {
            Some(id) => with_id(request, id),
            None => tonic::Request::new(request),
        };
        scoring.score_conversion(request).await.unwrap();
    }
    let text = metrics(&server).await;
    let dropped = liveprofile_testkit::sample(&text, "liveprofile_prediction_log", &["rows_dropped"]);
    assert_eq!(dropped, Some(0.0), "the log kept up");
    // Shutting down publishes what the log holds.
    server.shutdown().await.unwrap();

    let log = liveprofile_predlog::read_log(log_dir.path()).unwrap();
    assert_eq!(log.rows(), requests + unnamed.len());
    let mut seen = 0;
    let mut own_ids = std::collections::BTreeSet::new();
    for batch in &log.batches {
        let text = |name: &str| batch.column_by_name(name).unwrap().as_string::<i32>().clone();
        let (ids, apis, users, models) = (text("request_id"), text("api"), text("user_id"), text("model"));
        let features = batch.column_by_name("features").unwrap().as_list::<i32>().clone();
        let outputs = batch.column_by_name("outputs").unwrap().as_list::<i32>().clone();
        // Features the callers sent describe no time the server knows.
        assert_eq!(batch.column_by_name("as_of_ms").unwrap().null_count(), batch.num_rows());
        for i in 0..batch.num_rows() {
            let id = ids.value(i);
            if users.value(i) == "unnamed" {
                let (started, n) = id.split_once('-').unwrap_or_else(|| panic!("{id}: the server's id"));
                assert!(u64::from_str_radix(started, 16).is_ok() && n.parse::<u64>().is_ok(), "{id}");
                assert!(own_ids.insert(id.to_owned()), "{id} given twice");
                continue;
            }
            let (f, o, api) = expected.remove(id).unwrap_or_else(|| panic!("{id} logged once and expected"));
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            let logged_f = features.value(i);
            let logged_o = outputs.value(i);
            assert_eq!(bits(logged_f.as_primitive::<Float32Type>().values()), bits(&f), "{id}: features");
            assert_eq!(bits(logged_o.as_primitive::<Float32Type>().values()), bits(&o), "{id}: outputs");
            assert_eq!(apis.value(i), api, "{id}");
            let model = if f.len() == tags.features.len() { "user_tags" } else { "conversion" };
            assert_eq!(models.value(i), model, "{id}");
            if !id.starts_with("kserve") {
                assert!(users.value(i).starts_with('u'), "{id}: user {}", users.value(i));
            }
            seen += 1;
        }
    }
    assert_eq!(seen, requests);
    assert_eq!(own_ids.len(), unnamed.len());
    assert!(expected.is_empty());
    assert_eq!(log.feature_names[&tags.schema_hash], tags.features);
    assert_eq!(log.output_names["user_tags@1"], tags.output_names);
}
