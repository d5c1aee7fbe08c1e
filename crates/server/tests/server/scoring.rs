//! `liveprofile.v1.Scoring`: answers equal to the golden outputs, every bad request's code
//! and message, the stream.

use crate::common::*;
use liveprofile_client::v1;
use tonic::Code;

fn status_of<T: std::fmt::Debug>(r: Result<tonic::Response<T>, tonic::Status>) -> tonic::Status {
    r.expect_err("the call should fail")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_and_conversion_equal_the_golden_outputs_by_name_and_dense() {
    let repo = repository(&["user_tags", "conversion"]);
    let server = start(config(repo.path())).await;
    let mut client = scoring(&server).await;
    let g = golden("user_tags");
    let n = g.rows.len();
    for dense in [true, false] {
        let request = v1::ScoreTagsRequest {
            schema_hash: if dense { g.schema_hash.clone() } else { String::new() },
            users: g.users(n, dense),
            ..Default::default()
        };
        let answer = client.score_tags(request).await.unwrap().into_inner();
        assert_eq!(answer.users.len(), n);
        for (i, u) in answer.users.iter().enumerate() {
            assert_eq!(u.user_id, format!("u{i:08}"));
            let m = u.model.as_ref().unwrap();
            assert_eq!((m.name.as_str(), m.version, m.arm), ("user_tags", 1, v1::Arm::Stable as i32));
            assert_eq!(u.tags.len(), g.output_names.len());
            for (j, t) in u.tags.iter().enumerate() {
                assert_eq!(t.tag, g.output_names[j]);
                assert_close(t.probability, g.outputs[i][j], g.tolerance, &format!("user {i} tag {}", t.tag));
            }
        }
        assert!(answer.timing.is_some());
    }
    // A row scored alone gives the same bits as in a batch (the batch plan is used always).
    let alone = client
        .score_tags(v1::ScoreTagsRequest {
            schema_hash: g.schema_hash.clone(),
            users: g.users(1, true),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let batched = client.score_tags(g.tags_request(n)).await.unwrap().into_inner();
    let bits = |u: &v1::UserTags| u.tags.iter().map(|t| t.probability.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&alone.users[0]), bits(&batched.users[0]));

    let c = golden("conversion");
    let candidates: Vec<v1::ConversionCandidate> = (0..c.rows.len())
        .map(|i| v1::ConversionCandidate {
            user_id: format!("u{i}"),
            room_id: format!("room-{i}"),
            features: Some(if i % 2 == 0 { c.dense(i) } else { c.named(i) }),
            ..Default::default()
        })
        .collect();
    let answer = client
        .score_conversion(v1::ScoreConversionRequest {
            schema_hash: c.schema_hash.clone(),
            candidates,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.scores.len(), c.rows.len());
    for (i, s) in answer.scores.iter().enumerate() {
        assert_eq!((s.user_id.clone(), s.room_id.clone()), (format!("u{i}"), format!("room-{i}")));
        assert_eq!(s.model.as_ref().unwrap().name, "conversion");
        assert_close(s.probability, c.outputs[i][0], c.tolerance, &format!("candidate {i}"));
    }
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_filter_and_top_k() {
    let repo = repository(&["user_tags"]);
    let server = start(config(repo.path())).await;
    let mut client = scoring(&server).await;
    let g = golden("user_tags");
    let mut request = g.tags_request(3);
    request.tags = vec![g.output_names[4].clone(), g.output_names[0].clone()];
    let answer = client.score_tags(request.clone()).await.unwrap().into_inner();
    for (i, u) in answer.users.iter().enumerate() {
        let names: Vec<&str> = u.tags.iter().map(|t| t.tag.as_str()).collect();
        assert_eq!(names, [g.output_names[4].as_str(), g.output_names[0].as_str()]);
        assert_close(u.tags[0].probability, g.outputs[i][4], g.tolerance, "filtered tag");
    }
    request.tags.clear();
    request.top_k = 3;
    let answer = client.score_tags(request).await.unwrap().into_inner();
    for (i, u) in answer.users.iter().enumerate() {
        let mut expected: Vec<(usize, f32)> = g.outputs[i].iter().copied().enumerate().collect();
        expected.sort_by(|a, b| b.1.total_cmp(&a.1));
        let names: Vec<&str> = u.tags.iter().map(|t| t.tag.as_str()).collect();
        let want: Vec<&str> = expected[..3].iter().map(|(j, _)| g.output_names[*j].as_str()).collect();
        assert_eq!(names, want, "user {i}");
    }
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_request_gets_its_code_and_a_message_naming_the_fault() {
    let repo = repository(&["user_tags", "conversion"]);
    let mut cfg = config(repo.path());
    cfg.max_request_rows = 100;
    let server = start(cfg).await;
    let mut client = scoring(&server).await;
    let g = golden("user_tags");
    let c = golden("conversion");

    let check = |status: tonic::Status, code: Code, needle: &str| {
        assert_eq!(status.code(), code, "{status:?}");
        assert!(status.message().contains(needle), "{:?} does not contain {needle:?}", status.message());
    };
    let named = |edit: &dyn Fn(&mut std::collections::HashMap<String, f32>)| {
        let mut f = g.named(0);
        if let Some(v1::features::Values::Named(n)) = &mut f.values {
            edit(&mut n.values);
        }
        v1::ScoreTagsRequest {
            users: vec![v1::UserFeatures { user_id: "u1".into(), features: Some(f), ..Default::default() }],
            ..Default::default()
        }
    };

    let mut r = g.tags_request(1);
    r.model = "no_such_model".into();
    check(status_of(client.score_tags(r).await), Code::NotFound, "unknown model \"no_such_model\"");
    let mut r = g.tags_request(1);
    r.version = Some(9);
    check(status_of(client.score_tags(r).await), Code::NotFound, "has no loaded version 9");
    let r = named(&|m| {
        m.remove("visits_1h");
    });
    check(status_of(client.score_tags(r).await), Code::InvalidArgument, "row 0: missing feature \"visits_1h\"");
    let r = named(&|m| {
        m.insert("shoe_size".into(), 42.0);
    });
    check(status_of(client.score_tags(r).await), Code::InvalidArgument, "unknown feature \"shoe_size\"");
    let r = named(&|m| {
        m.insert("visits_1h".into(), f32::NAN);
    });
    check(status_of(client.score_tags(r).await), Code::InvalidArgument, "feature \"visits_1h\" is not finite");
    let r = named(&|m| {
        m.insert("visits_1d".into(), f32::INFINITY);
    });
    check(status_of(client.score_tags(r).await), Code::InvalidArgument, "feature \"visits_1d\" is not finite (inf)");
    // A category feature given a value that is not one of its indices (mistyped).
    let mut f = c.named(0);
    if let Some(v1::features::Values::Named(n)) = &mut f.values {
        n.values.insert("platform".into(), 1.5);
    }
    let r = v1::ScoreConversionRequest {
        candidates: vec![v1::ConversionCandidate {
            user_id: "u1".into(),
            room_id: "r".into(),
            features: Some(f),
            ..Default::default()
        }],
        ..Default::default()
    };
    check(
        status_of(client.score_conversion(r).await),
        Code::InvalidArgument,
        "feature \"platform\" is a category with 5 values; 1.5 is not one of their indices",
    );
    let mut r = g.tags_request(1);
    r.schema_hash = "0123abcd".into();
    check(status_of(client.score_tags(r).await), Code::InvalidArgument, "schema hash 0123abcd does not match");
    let mut r = g.tags_request(1);
    r.schema_hash.clear();
    check(status_of(client.score_tags(r).await), Code::InvalidArgument, "dense rows need the schema_hash");
    let mut r = g.tags_request(2);
    if let Some(v1::features::Values::Dense(d)) = r.users[1].features.as_mut().and_then(|f| f.values.as_mut()) {
        d.values.pop();
    }
    check(status_of(client.score_tags(r).await), Code::InvalidArgument, "row 1 has 205 values, the model takes 206");
    let r = g.tags_request(0);
    check(status_of(client.score_tags(r).await), Code::InvalidArgument, "empty batch");
    let r = g.tags_request(101);
    check(status_of(client.score_tags(r).await), Code::InvalidArgument, "batch of 101 rows is over the limit of 100");
    let mut r = g.tags_request(1);
    r.tags = vec!["likes_cats".into()];
    check(status_of(client.score_tags(r).await), Code::InvalidArgument, "unknown tag \"likes_cats\"");
    let mut r = g.tags_request(1);
    r.users[0].user_id.clear();
    check(status_of(client.score_tags(r).await), Code::InvalidArgument, "row 0: user_id is empty");
    // Ids as long as the event contract allows, not longer (the store, experiments and the
    // prediction log keep them).
    let mut r = g.tags_request(2);
    r.users[1].user_id = "u".repeat(257);
    check(
        status_of(client.score_tags(r).await),
        Code::InvalidArgument,
        "row 1: user_id is 257 bytes, over the limit of 256 bytes",
    );
    let mut r = g.tags_request(1);
    r.users[0].user_id = "u".repeat(256);
    client.score_tags(r).await.unwrap();
    let mut r = g.tags_request(3);
    // A row without features is scored from the user's profile: this user has none.
    r.users[2].features = None;
    check(status_of(client.score_tags(r).await), Code::NotFound, "no profile for user \"u00000002\"");

    // The server still answers, and failures were counted per model and code.
    client.score_tags(g.tags_request(2)).await.unwrap();
    let text = metrics(&server).await;
    let failed = sample(&text, "nv_inference_request_failure", &["model=\"user_tags\"", "code=\"INVALID_ARGUMENT\""]);
    assert!(failed.unwrap_or(0.0) >= 10.0, "{failed:?}");
    assert!(sample(&text, "nv_inference_request_success", &["model=\"user_tags\"", "arm=\"stable\""]).unwrap() >= 1.0);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_answers_in_order_and_survives_a_bad_request() {
    let repo = repository(&["user_tags", "conversion"]);
    let server = start(config(repo.path())).await;
    let mut client = scoring(&server).await;
    let g = golden("user_tags");
    let c = golden("conversion");
    let mut requests = Vec::new();
    for i in 0..30 {
        let request = match i % 3 {
            0 => v1::score_stream_request::Request::Tags(g.tags_request(1 + i % 5)),
            1 => v1::score_stream_request::Request::Conversion(v1::ScoreConversionRequest {
                schema_hash: c.schema_hash.clone(),
                candidates: vec![v1::ConversionCandidate {
                    user_id: "u1".into(),
                    room_id: "r1".into(),
                    features: Some(c.dense(0)),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            _ => {
                let mut bad = g.tags_request(1);
                bad.model = "missing".into();
                v1::score_stream_request::Request::Tags(bad)
            }
        };
        requests.push(v1::ScoreStreamRequest { request_id: format!("req-{i}"), request: Some(request) });
    }
    let mut answers = client.score_stream(tokio_stream::iter(requests)).await.unwrap().into_inner();
    let mut i = 0;
    while let Some(a) = answers.message().await.unwrap() {
        assert_eq!(a.request_id, format!("req-{i}"));
        match (i % 3, a.response.unwrap()) {
            (0, v1::score_stream_response::Response::Tags(t)) => {
                assert_eq!(t.users.len(), 1 + i % 5);
                assert_close(t.users[0].tags[0].probability, g.outputs[0][0], g.tolerance, "stream tags");
            }
            (1, v1::score_stream_response::Response::Conversion(s)) => {
                assert_close(s.scores[0].probability, c.outputs[0][0], c.tolerance, "stream conversion");
            }
            (2, v1::score_stream_response::Response::Error(e)) => {
                assert_eq!(e.code, Code::NotFound as i32);
                assert!(e.message.contains("unknown model \"missing\""), "{}", e.message);
            }
            (k, other) => panic!("request {i} (kind {k}) answered {other:?}"),
        }
        i += 1;
    }
    assert_eq!(i, 30);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tag_answer_carries_the_nearest_segment_of_the_segment_model() {
    let repo = repository(&["user_tags", "user_segments"]);
    let server = start(config(repo.path())).await;
    let mut client = scoring(&server).await;
    let g = golden("user_tags");
    let mut request = g.tags_request(20);
    request.include_segment = true;
    let answer = client.score_tags(request).await.unwrap().into_inner();
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(bundled_models().join("user_segments/1/manifest.json")).unwrap())
            .unwrap();
    let centroids: Vec<Vec<f64>> = manifest["segmentation"]["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["centroid"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect())
        .collect();
    let mut seen = std::collections::BTreeSet::new();
    for u in &answer.users {
        let probabilities: Vec<f64> = u.tags.iter().map(|t| f64::from(t.probability)).collect();
        let distances: Vec<f64> =
            centroids.iter().map(|c| c.iter().zip(&probabilities).map(|(a, b)| (a - b) * (a - b)).sum()).collect();
        let nearest = (0..distances.len()).min_by(|&a, &b| distances[a].total_cmp(&distances[b])).unwrap();
        let segment = u.segment.as_ref().expect("segment asked for");
        assert_eq!(segment.id as usize, nearest, "user {}", u.user_id);
        assert!((f64::from(segment.distance) - distances[nearest]).abs() < 1e-4);
        assert_eq!(segment.name, format!("segment_{nearest}"));
        assert!(segment.description.starts_with("led by "), "{}", segment.description);
        assert_eq!(segment.model.as_ref().unwrap().name, "user_segments");
        seen.insert(segment.id);
    }
    // Without the flag there is no segment; without the model the flag is refused.
    let plain = client.score_tags(g.tags_request(1)).await.unwrap().into_inner();
    assert!(plain.users[0].segment.is_none());
    server.shutdown().await.unwrap();

    let repo = repository(&["user_tags"]);
    let server = start(config(repo.path())).await;
    let mut client = scoring(&server).await;
    let mut request = g.tags_request(1);
    request.include_segment = true;
    let err = client.score_tags(request).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().starts_with("include_segment needs the user_segments model"), "{}", err.message());
    server.shutdown().await.unwrap();
}
