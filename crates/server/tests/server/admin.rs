//! `liveprofile.v1.ModelAdmin`: the token, listing, canary and shadow, rollback, bundles,
//! load and unload.

use crate::common::*;
use liveprofile_client::v1;
use std::time::Duration;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_calls_need_the_bearer_token() {
    let repo = repository(&["uci_session_conversion"]);
    let server = start(config(repo.path())).await;
    let mut client = admin(&server).await;
    let s = client.list_models(v1::ListModelsRequest {}).await.unwrap_err();
    assert_eq!(s.code(), Code::Unauthenticated);
    assert!(s.message().contains("authorization: Bearer <token>"), "{}", s.message());
    let mut r = tonic::Request::new(v1::ListModelsRequest {});
    r.metadata_mut().insert("authorization", "Bearer wrong".parse().unwrap());
    let s = client.list_models(r).await.unwrap_err();
    assert_eq!((s.code(), s.message()), (Code::Unauthenticated, "invalid admin token"));
    let mut r = tonic::Request::new(v1::RollbackRequest { name: "uci_session_conversion".into() });
    r.metadata_mut().insert("authorization", TOKEN.parse().unwrap());
    assert_eq!(client.rollback(r).await.unwrap_err().code(), Code::Unauthenticated);
    let list = client.list_models(authorized(v1::ListModelsRequest {})).await.unwrap().into_inner();
    assert_eq!(list.models.len(), 1);
    let m = &list.models[0];
    assert_eq!(m.name, "uci_session_conversion");
    assert_eq!(m.policy.as_ref().unwrap().stable, 1);
    let manifest: serde_json::Value = serde_json::from_str(&m.versions[0].manifest_json).unwrap();
    assert!(manifest["metrics"].is_object());
    server.shutdown().await.unwrap();

    // Without a configured token the admin API refuses everything.
    let mut cfg = config(repo.path());
    cfg.admin_token = None;
    let server = start(cfg).await;
    let s = admin(&server).await.list_models(authorized(v1::ListModelsRequest {})).await.unwrap_err();
    assert_eq!(s.code(), Code::Unauthenticated);
    assert!(s.message().contains("no admin token configured"));
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_shadow_rollback_bundles_load_and_unload() {
    let repo = repository(&["user_tags", "conversion"]);
    let server = start(config(repo.path())).await;
    let mut client = admin(&server).await;
    let mut scorer = scoring(&server).await;
    let g = golden("user_tags");

    // A new version published by rename becomes stable without a restart.
    publish(repo.path(), "user_tags", 2);
    liveprofile_testkit::eventually_async("version 2 to become stable", Duration::from_secs(10), || {
        let (mut scorer, request) = (scorer.clone(), g.tags_request(1));
        async move {
            let a = scorer.score_tags(request).await.unwrap().into_inner();
            a.users[0].model.as_ref().unwrap().version == 2
        }
    })
    .await;

    // Canary: half of the users on version 1, shadow... the other arm compared off-path.
    let policy = v1::TrafficPolicy { stable: 2, canary_version: Some(1), canary_percent: 50.0, shadow_version: None };
    let set = client
        .set_traffic_policy(authorized(v1::SetTrafficPolicyRequest { name: "user_tags".into(), policy: Some(policy) }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(set.policy.unwrap().canary_version, Some(1));
    let answer = scorer.score_tags(g.tags_request(200)).await.unwrap().into_inner();
    let canary = answer.users.iter().filter(|u| u.model.as_ref().unwrap().arm == v1::Arm::Canary as i32).count();
    assert!((60..=140).contains(&canary), "{canary} of 200 users on the canary");
    for u in &answer.users {
        let m = u.model.as_ref().unwrap();
        let expected = if m.arm == v1::Arm::Canary as i32 { 1 } else { 2 };
        assert_eq!(m.version, expected);
    }
    // The same user always gets the same arm.
    let again = scorer.score_tags(g.tags_request(200)).await.unwrap().into_inner();
    for (a, b) in answer.users.iter().zip(&again.users) {
        assert_eq!(a.model.as_ref().unwrap().arm, b.model.as_ref().unwrap().arm);
    }
    // Shadow: version 1 scored off the request path for every stable answer.
    let policy = v1::TrafficPolicy { stable: 2, canary_version: None, canary_percent: 0.0, shadow_version: Some(1) };
    client
        .set_traffic_policy(authorized(v1::SetTrafficPolicyRequest { name: "user_tags".into(), policy: Some(policy) }))
        .await
        .unwrap();
    scorer.score_tags(g.tags_request(50)).await.unwrap();
    let until = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let d = client.get_divergence(authorized(v1::GetDivergenceRequest {})).await.unwrap().into_inner();
        let shadow = d.divergences.iter().find(|d| d.model == "user_tags" && d.answered_version == 2);
        // Same weights in both versions: the comparison must find no difference.
        if let Some(s) = shadow.filter(|s| s.rows >= 50) {
            assert_eq!(s.compared_version, 1);
            assert_eq!(s.max_abs_diff, 0.0);
            break;
        }
        assert!(std::time::Instant::now() < until, "no shadow comparisons: {d:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let text = metrics(&server).await;
    assert!(
        sample(&text, "liveprofile_divergence_rows", &["answered_version=\"2\"", "compared_version=\"1\""]).unwrap()
            >= 50.0
    );

    // Bad policies.
    let bad = v1::TrafficPolicy { stable: 2, canary_version: Some(1), canary_percent: 120.0, shadow_version: None };
    let s = client
        .set_traffic_policy(authorized(v1::SetTrafficPolicyRequest { name: "user_tags".into(), policy: Some(bad) }))
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::InvalidArgument);
    let bad = v1::TrafficPolicy { stable: 7, ..Default::default() };
    let s = client
        .set_traffic_policy(authorized(v1::SetTrafficPolicyRequest { name: "user_tags".into(), policy: Some(bad) }))
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::NotFound);

    // Unload: refused while an arm uses the version, then allowed; load brings it back.
    let s = client
        .unload_model(authorized(v1::UnloadModelRequest { name: "user_tags".into(), version: 1 }))
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::FailedPrecondition, "{s:?}");
    let policy = v1::TrafficPolicy { stable: 2, ..Default::default() };
    client
        .set_traffic_policy(authorized(v1::SetTrafficPolicyRequest { name: "user_tags".into(), policy: Some(policy) }))
        .await
        .unwrap();
    client.unload_model(authorized(v1::UnloadModelRequest { name: "user_tags".into(), version: 1 })).await.unwrap();
    let mut pinned = g.tags_request(1);
    pinned.version = Some(1);
    assert_eq!(scorer.score_tags(pinned.clone()).await.unwrap_err().code(), Code::NotFound);
    tokio::time::sleep(Duration::from_millis(500)).await; // rescans must not bring it back
    assert_eq!(scorer.score_tags(pinned.clone()).await.unwrap_err().code(), Code::NotFound);
    let loaded = client.load_model(authorized(v1::LoadModelRequest { name: "user_tags".into(), version: 1 })).await;
    assert!(loaded.unwrap().into_inner().load_ms > 0.0);
    let a = scorer.score_tags(pinned).await.unwrap().into_inner();
    assert_eq!(a.users[0].model.as_ref().unwrap().arm, v1::Arm::Pinned as i32);
    let s = client
        .load_model(authorized(v1::LoadModelRequest { name: "user_tags".into(), version: 40 }))
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::NotFound);

    // Rollback to the previous stable version, then a bundle pinned and rolled back.
    let back =
        client.rollback(authorized(v1::RollbackRequest { name: "user_tags".into() })).await.unwrap().into_inner();
    assert_eq!(back.stable, 1);
    client
        .pin_bundle(authorized(v1::PinBundleRequest {
            members: vec![
                v1::BundleMember { name: "user_tags".into(), version: 2 },
                v1::BundleMember { name: "conversion".into(), version: 1 },
            ],
        }))
        .await
        .unwrap();
    let list = client.list_models(authorized(v1::ListModelsRequest {})).await.unwrap().into_inner();
    let tags = list.models.iter().find(|m| m.name == "user_tags").unwrap();
    assert_eq!(tags.policy.as_ref().unwrap().stable, 2);
    let restored = client.rollback_bundle(authorized(v1::RollbackBundleRequest {})).await.unwrap().into_inner();
    assert_eq!(restored.restored.len(), 2);
    let a = scorer.score_tags(g.tags_request(1)).await.unwrap().into_inner();
    assert_eq!(a.users[0].model.as_ref().unwrap().version, 1);
    let s = client.rollback_bundle(authorized(v1::RollbackBundleRequest {})).await.unwrap_err();
    assert_eq!(s.code(), Code::FailedPrecondition);
    server.shutdown().await.unwrap();
}
