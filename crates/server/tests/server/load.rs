//! Behaviour under load: dynamic batching, admission control, deadlines, readiness and
//! health, reflection, hot swap under load, graceful shutdown.

use crate::common::*;
use liveprofile_client::v1;
use std::time::Duration;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_are_batched_and_get_the_same_bits_as_alone() {
    let repo = repository(&["user_tags"]);
    let mut cfg = config(repo.path());
    cfg.batching.threads = 1;
    cfg.batching.max_queue_delay = Duration::from_millis(30);
    cfg.batching.max_batch_size = 64;
    let server = start(cfg).await;
    let g = golden("user_tags");
    let client = scoring(&server).await;
    let n = 20;
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let mut c = client.clone();
            let request = v1::ScoreTagsRequest {
                schema_hash: g.schema_hash.clone(),
                users: vec![v1::UserFeatures {
                    user_id: format!("u{i}"),
                    features: Some(g.dense(i)),
                    ..Default::default()
                }],
                ..Default::default()
            };
            tokio::spawn(async move { c.score_tags(request).await.unwrap().into_inner() })
        })
        .collect();
    let mut batched = Vec::new();
    for t in tasks {
        batched.push(t.await.unwrap());
    }
    let text = metrics(&server).await;
    let rows = sample(&text, "nv_inference_count", &["model=\"user_tags\""]).unwrap();
    let batches = sample(&text, "nv_inference_exec_count", &["model=\"user_tags\""]).unwrap();
    assert_eq!(rows, n as f64);
    assert!(batches < n as f64 / 2.0, "{batches} batches for {n} concurrent requests");
    assert!(sample(&text, "liveprofile_batch_size_count", &["model=\"user_tags\""]).unwrap() == batches);
    // Each answer: golden within tolerance, and bit-identical to the row scored alone.
    let mut c = client.clone();
    for (i, a) in batched.iter().enumerate() {
        let alone = c
            .score_tags(v1::ScoreTagsRequest {
                schema_hash: g.schema_hash.clone(),
                users: vec![v1::UserFeatures {
                    user_id: format!("u{i}"),
                    features: Some(g.dense(i)),
                    ..Default::default()
                }],
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        for (j, (x, y)) in a.users[0].tags.iter().zip(&alone.users[0].tags).enumerate() {
            assert_eq!(x.probability.to_bits(), y.probability.to_bits(), "user {i} tag {j}");
            assert_close(x.probability, g.outputs[i][j], g.tolerance, "batched answer");
        }
    }
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_refuses_at_once_and_deadlines_are_honoured() {
    let repo = repository(&["user_tags"]);
    let mut cfg = config(repo.path());
    cfg.batching.threads = 1;
    cfg.batching.max_queue_delay = Duration::from_millis(400);
    cfg.batching.max_batch_size = 1024;
    cfg.batching.max_queue_rows = 4;
    cfg.max_request_rows = 4;
    let server = start(cfg).await;
    let g = golden("user_tags");
    let client = scoring(&server).await;
    // Four rows fill the queue while they wait for their batch to fill.
    let mut first = client.clone();
    let waiting = tokio::spawn({
        let r = g.tags_request(4);
        async move { first.score_tags(r).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    let s = client.clone().score_tags(g.tags_request(1)).await.unwrap_err();
    assert_eq!(s.code(), Code::ResourceExhausted, "{s:?}");
    assert!(s.message().contains("queue full: 4 rows waiting, limit 4"), "{}", s.message());
    assert!(started.elapsed() < Duration::from_millis(250), "refusal waited {:?}", started.elapsed());
    assert_eq!(waiting.await.unwrap().unwrap().into_inner().users.len(), 4);

    // A deadline shorter than the batching delay: DEADLINE_EXCEEDED, not a late answer.
    let mut request = tonic::Request::new(g.tags_request(1));
    request.set_timeout(Duration::from_millis(200));
    let s = client.clone().score_tags(request).await.unwrap_err();
    assert_eq!(s.code(), Code::DeadlineExceeded, "{s:?}");
    // The queue is free again afterwards.
    tokio::time::sleep(Duration::from_millis(500)).await;
    client.clone().score_tags(g.tags_request(4)).await.unwrap();
    let text = metrics(&server).await;
    assert_eq!(sample(&text, "liveprofile_queue_rejections", &["model=\"user_tags\""]), Some(1.0));
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_without_a_good_version_is_not_serving_under_its_own_name_only() {
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};
    let repo = repository(&["uci_session_conversion"]);
    // A second model whose only version is corrupt.
    let bad = publish(repo.path(), "conversion", 1);
    let mut onnx = std::fs::read(bad.join("model.onnx")).unwrap();
    let mid = onnx.len() / 2;
    onnx[mid] ^= 0xff;
    std::fs::write(bad.join("model.onnx"), onnx).unwrap();
    let server = liveprofile_server::start(config(repo.path())).await.unwrap();
    let mut health = HealthClient::new(channel(&server).await);
    let status = |s: &str| HealthCheckRequest { service: s.to_owned() };
    // Ready once the models present at start are loaded or refused: the good one serves.
    server.wait_ready(Duration::from_secs(60)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let h = health.check(status("")).await.unwrap().into_inner();
    assert_eq!(h.status, ServingStatus::Serving as i32);
    let h = health.check(status("liveprofile.model.conversion")).await.unwrap().into_inner();
    assert_eq!(h.status, ServingStatus::NotServing as i32);
    let mut k = kserve(&server).await;
    assert!(k.server_ready(liveprofile_client::inference::ServerReadyRequest {}).await.unwrap().into_inner().ready);
    // The good model serves meanwhile.
    let g = golden("uci_session_conversion");
    let mut s = scoring(&server).await;
    let answer = s
        .score_conversion(v1::ScoreConversionRequest {
            model: "uci_session_conversion".into(),
            schema_hash: g.schema_hash.clone(),
            candidates: vec![v1::ConversionCandidate {
                user_id: "u".into(),
                room_id: String::new(),
                features: Some(g.dense(0)),
                ..Default::default()
            }],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_close(answer.scores[0].probability, g.outputs[0][0], g.tolerance, "uci");
    // A good version of the broken model: SERVING under its name too.
    publish(repo.path(), "conversion", 2);
    liveprofile_testkit::eventually_async("liveprofile.model.conversion SERVING", Duration::from_secs(10), || {
        let mut health = health.clone();
        async move {
            let h = health.check(status("liveprofile.model.conversion")).await.unwrap().into_inner();
            h.status == ServingStatus::Serving as i32
        }
    })
    .await;
    let list = admin(&server).await.list_models(authorized(v1::ListModelsRequest {})).await.unwrap().into_inner();
    let conversion = list.models.iter().find(|m| m.name == "conversion").unwrap();
    assert_eq!(conversion.refused[0].version, 1);
    assert!(conversion.refused[0].reason.contains("sha256"), "{}", conversion.refused[0].reason);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_lists_every_service() {
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let repo = repository(&["uci_session_conversion"]);
    let server = start(config(repo.path())).await;
    let mut client = ServerReflectionClient::new(channel(&server).await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = client.server_reflection_info(tokio_stream::iter([request])).await.unwrap().into_inner();
    let answer = answers.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else { panic!("{answer:?}") };
    let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();
    for expected in [
        "grpc.health.v1.Health",
        "inference.GRPCInferenceService",
        "liveprofile.v1.ModelAdmin",
        "liveprofile.v1.Scoring",
    ] {
        assert!(names.iter().any(|n| n == expected), "{expected} not in {names:?}");
    }
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_swap_and_rollback_under_load_fail_no_request() {
    let repo = repository(&["user_tags"]);
    let server = start(config(repo.path())).await;
    let g = golden("user_tags");
    let client = scoring(&server).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load: Vec<_> = (0..4)
        .map(|k| {
            let mut c = client.clone();
            let stop = stop.clone();
            let request = g.tags_request(1 + k * 3);
            tokio::spawn(async move {
                let mut answers = 0u64;
                let mut versions = std::collections::BTreeSet::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let a = c.score_tags(request.clone()).await.expect("no request may fail during a swap");
                    versions.extend(a.into_inner().users.iter().map(|u| u.model.as_ref().unwrap().version));
                    answers += 1;
                }
                (answers, versions)
            })
        })
        .collect();
    let mut admin = admin(&server).await;
    for version in 2..=4 {
        // Published by rename; once a policy was set the model is pinned, so the new
        // version loads and is then promoted by the admin call, as a release tool does.
        publish(repo.path(), "user_tags", version);
        liveprofile_testkit::eventually_async(&format!("version {version} to load"), Duration::from_secs(10), || {
            let loaded = server.state().repository().unwrap().get("user_tags", Some(version)).is_ok();
            async move { loaded }
        })
        .await;
        let policy = v1::TrafficPolicy { stable: version, ..Default::default() };
        admin
            .set_traffic_policy(authorized(v1::SetTrafficPolicyRequest {
                name: "user_tags".into(),
                policy: Some(policy),
            }))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let back = admin.rollback(authorized(v1::RollbackRequest { name: "user_tags".into() })).await.unwrap();
        assert_eq!(back.into_inner().stable, version - 1);
        tokio::time::sleep(Duration::from_millis(100)).await;
        admin
            .set_traffic_policy(authorized(v1::SetTrafficPolicyRequest {
                name: "user_tags".into(),
                policy: Some(policy),
            }))
            .await
            .unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    let mut seen = std::collections::BTreeSet::new();
    for t in load {
        let (answers, versions) = t.await.unwrap();
        total += answers;
        seen.extend(versions);
    }
    assert!(total > 100, "{total} answers");
    assert!(seen.is_subset(&(1..=4).collect()), "{seen:?}");
    assert!(seen.len() >= 3, "{seen:?}");
    let text = metrics(&server).await;
    assert_eq!(sample(&text, "nv_inference_request_failure", &["model=\"user_tags\""]), None);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_running_requests_finish() {
    let repo = repository(&["user_tags"]);
    let mut cfg = config(repo.path());
    cfg.batching.threads = 1;
    cfg.batching.max_queue_delay = Duration::from_millis(300);
    let server = start(cfg).await;
    let g = golden("user_tags");
    let mut client = scoring(&server).await;
    let running = tokio::spawn({
        let r = g.tags_request(2);
        async move { client.score_tags(r).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let addr = server.grpc_addr;
    server.shutdown().await.unwrap();
    let answer = running.await.unwrap().expect("a running request finishes during the drain");
    assert_eq!(answer.into_inner().users.len(), 2);
    assert!(tonic::transport::Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_clients_that_trust_the_certificate_and_only_them() {
    use tonic::transport::{Certificate, Channel, ClientTlsConfig};
    let repo = repository(&["uci_session_conversion"]);
    let key = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, key.cert.pem()).unwrap();
    std::fs::write(&key_path, key.signing_key.serialize_pem()).unwrap();
    let mut cfg = config(repo.path());
    cfg.tls = Some(liveprofile_server::config::TlsFiles { cert: cert_path, key: key_path });
    let server = start(cfg).await;
    let url = format!("https://localhost:{}", server.grpc_addr.port());
    let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(key.cert.pem())).domain_name("localhost");
    let channel = Channel::from_shared(url.clone()).unwrap().tls_config(tls).unwrap().connect().await.unwrap();
    let mut k = liveprofile_client::inference::grpc_inference_service_client::GrpcInferenceServiceClient::new(channel);
    assert!(k.server_ready(liveprofile_client::inference::ServerReadyRequest {}).await.unwrap().into_inner().ready);
    // A plaintext client gets no answer.
    let plain = Channel::from_shared(format!("http://{}", server.grpc_addr)).unwrap().connect().await;
    if let Ok(channel) = plain {
        let mut k =
            liveprofile_client::inference::grpc_inference_service_client::GrpcInferenceServiceClient::new(channel);
        assert!(k.server_live(liveprofile_client::inference::ServerLiveRequest {}).await.is_err());
    }
    server.shutdown().await.unwrap();
}

/// The load generator's open loop sends on its schedule, not as fast as answers come, and
/// counts every answer in the window; the closed loop keeps its callers busy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_open_loop_load_generator_keeps_to_its_rate() {
    use liveprofile_bench::loadgen::{LoadConfig, run};
    let repo = repository(&["user_tags"]);
    let server = start(config(repo.path())).await;
    let base = LoadConfig {
        target: server.grpc_addr.to_string(),
        package: Some(bundled_models().join("user_tags/1")),
        seconds: 2.0,
        warmup: 0.5,
        concurrency: 4,
        ..LoadConfig::default()
    };
    let open = run(LoadConfig { rate: Some(100.0), ..base.clone() }).await.unwrap();
    assert_eq!((open.errors, open.first_error.as_deref()), (0, None));
    // 100 requests per second over 2 s, less the few due at the very end still in flight.
    assert!((190..=201).contains(&open.requests), "{open:?}");
    assert!(open.p50_us > 0.0 && open.p99_us >= open.p50_us, "{open:?}");
    assert_eq!(open.rate, Some(100.0));
    // How late requests left is a part of each one's latency, so each of its percentiles is
    // within the latency's.
    let late = open.departure.as_ref().unwrap_or_else(|| panic!("no departure figures: {open:?}"));
    assert!(late.p50_us <= open.p50_us && late.p99_us <= open.p99_us, "{open:?}");
    assert!(late.p999_us <= open.p999_us && late.max_us <= open.max_us, "{open:?}");
    // So is the time from sending to the answer.
    assert!(late.answered_p50_us > 0.0 && late.answered_p50_us <= open.p50_us, "{open:?}");
    assert!(late.answered_p99_us <= open.p99_us && late.answered_p999_us <= open.p999_us, "{open:?}");
    let closed = run(base.clone()).await.unwrap();
    assert_eq!(closed.errors, 0, "{closed:?}");
    assert!(closed.departure.is_none(), "{closed:?}");
    assert!(closed.requests > open.requests, "{closed:?} vs {open:?}");
    // Where the time went, from the server's timing in every answer (v1 and KServe alike).
    let kserve = run(LoadConfig {
        protocol: liveprofile_bench::loadgen::Protocol::Kserve,
        model: Some("user_tags".into()),
        seconds: 1.0,
        ..base
    })
    .await
    .unwrap();
    assert_eq!(kserve.errors, 0, "{kserve:?}");
    for report in [&open, &closed, &kserve] {
        let t = report.server_time.as_ref().unwrap_or_else(|| panic!("no server timing: {report:?}"));
        assert_eq!(t.answers, report.requests, "{report:?}");
        // Scoring a row of user_tags takes microseconds; each part is within the latency.
        assert!(t.compute_p50_us >= 1.0 && t.compute_p50_us <= report.p50_us, "{report:?}");
        assert!(t.queue_p50_us <= report.p50_us && t.outside_p50_us <= report.p50_us, "{report:?}");
        assert!(t.queue_p99_us <= report.max_us && t.compute_p99_us <= report.max_us, "{report:?}");
        assert!(t.outside_p50_us > 0.0, "{report:?}");
    }
    server.shutdown().await.unwrap();
}
