//! `liveprofile.v1.ModelAdmin`: the token, listing, canary and shadow, rollback, bundles,
//! load and unload.

use crate::common::*;
use liveprofile_client::v1::{self, model_admin_client::ModelAdminClient, scoring_client::ScoringClient};
use std::time::Duration;
use tonic::Code;
use tonic::transport::Channel;

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

/// A server on user_tags and conversion whose user_tags version 2, published by rename
/// while it runs, has become stable without a restart.
async fn with_version_2()
-> (tempfile::TempDir, liveprofile_server::RunningServer, ModelAdminClient<Channel>, ScoringClient<Channel>, Golden) {
    let repo = repository(&["user_tags", "conversion"]);
    let server = start(config(repo.path())).await;
    let client = admin(&server).await;
    let scorer = scoring(&server).await;
    let g = golden("user_tags");
    publish(repo.path(), "user_tags", 2);
    liveprofile_testkit::eventually_async("version 2 to become stable", Duration::from_secs(10), || {
        let (mut scorer, request) = (scorer.clone(), g.tags_request(1));
        async move {
            let a = scorer.score_tags(request).await.unwrap().into_inner();
            a.users[0].model.as_ref().unwrap().version == 2
        }
    })
    .await;
    (repo, server, client, scorer, g)
}

fn policy_request(policy: v1::TrafficPolicy) -> tonic::Request<v1::SetTrafficPolicyRequest> {
    authorized(v1::SetTrafficPolicyRequest { name: "user_tags".into(), policy: Some(policy) })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_takes_its_share_of_users_and_each_user_keeps_their_arm() {
    let (_repo, server, mut client, mut scorer, g) = with_version_2().await;
    let policy = v1::TrafficPolicy { stable: 2, canary_version: Some(1), canary_percent: 50.0, shadow_version: None };
    let set = client.set_traffic_policy(policy_request(policy)).await.unwrap().into_inner();
    assert_eq!(set.policy.unwrap().canary_version, Some(1));
    let answer = scorer.score_tags(g.tags_request(200)).await.unwrap().into_inner();
    let canary = answer.users.iter().filter(|u| u.model.as_ref().unwrap().arm == v1::Arm::Canary as i32).count();
    assert!((60..=140).contains(&canary), "{canary} of 200 users on the canary");
    for u in &answer.users {
        let m = u.model.as_ref().unwrap();
        let expected = if m.arm == v1::Arm::Canary as i32 { 1 } else { 2 };
        assert_eq!(m.version, expected);
    }
    let again = scorer.score_tags(g.tags_request(200)).await.unwrap().into_inner();
    for (a, b) in answer.users.iter().zip(&again.users) {
        assert_eq!(a.model.as_ref().unwrap().arm, b.model.as_ref().unwrap().arm);
    }
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_version_is_compared_off_the_request_path() {
    let (_repo, server, mut client, mut scorer, g) = with_version_2().await;
    let policy = v1::TrafficPolicy { stable: 2, canary_version: None, canary_percent: 0.0, shadow_version: Some(1) };
    client.set_traffic_policy(policy_request(policy)).await.unwrap();
    scorer.score_tags(g.tags_request(50)).await.unwrap();
    liveprofile_testkit::eventually_async("50 shadow comparisons", Duration::from_secs(5), || {
        let mut client = client.clone();
        async move {
            let d = client.get_divergence(authorized(v1::GetDivergenceRequest {})).await.unwrap().into_inner();
            let shadow = d.divergences.iter().find(|d| d.model == "user_tags" && d.answered_version == 2);
            shadow.is_some_and(|s| s.rows >= 50)
        }
    })
    .await;
    let d = client.get_divergence(authorized(v1::GetDivergenceRequest {})).await.unwrap().into_inner();
    let shadow = d.divergences.iter().find(|d| d.model == "user_tags" && d.answered_version == 2).unwrap();
    // Same weights in both versions: the comparison must find no difference.
    assert_eq!((shadow.compared_version, shadow.max_abs_diff), (1, 0.0));
    let text = metrics(&server).await;
    let rows = sample(&text, "liveprofile_divergence_rows", &["answered_version=\"2\"", "compared_version=\"1\""]);
    assert!(rows.unwrap() >= 50.0);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_traffic_policies_are_refused_with_their_codes() {
    let (_repo, server, mut client, _scorer, _g) = with_version_2().await;
    let bad = v1::TrafficPolicy { stable: 2, canary_version: Some(1), canary_percent: 120.0, shadow_version: None };
    let s = client.set_traffic_policy(policy_request(bad)).await.unwrap_err();
    assert_eq!(s.code(), Code::InvalidArgument);
    let bad = v1::TrafficPolicy { stable: 7, ..Default::default() };
    let s = client.set_traffic_policy(policy_request(bad)).await.unwrap_err();
    assert_eq!(s.code(), Code::NotFound);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_in_use_is_not_unloaded_and_an_unloaded_one_stays_out_until_loaded() {
    let (_repo, server, mut client, mut scorer, g) = with_version_2().await;
    let canary = v1::TrafficPolicy { stable: 2, canary_version: Some(1), canary_percent: 50.0, shadow_version: None };
    client.set_traffic_policy(policy_request(canary)).await.unwrap();
    let s = client
        .unload_model(authorized(v1::UnloadModelRequest { name: "user_tags".into(), version: 1 }))
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::FailedPrecondition, "{s:?}");
    client.set_traffic_policy(policy_request(v1::TrafficPolicy { stable: 2, ..Default::default() })).await.unwrap();
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
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_and_a_pinned_bundle_restore_in_one_call() {
    let (_repo, server, mut client, mut scorer, g) = with_version_2().await;
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
