//! Experiments in the server: definitions refused with the field named, answers from the
//! user's arm, exposures logged once per user (also across platforms through the identity
//! table and across restarts), stop, and live results equal to the offline report over
//! the same events and exposures.

use crate::common::*;
use liveprofile_client::inference as pb;
use liveprofile_client::v1::{
    self, experiment_admin_client::ExperimentAdminClient, ingest_client::IngestClient,
    profile_admin_client::ProfileAdminClient,
};
use liveprofile_events::{Event, EventKind, Platform};
use liveprofile_experiments::{AnalysisOptions, Experiment, ExperimentOutcomes, analyze, assign};
use liveprofile_store::now_ms;
use std::collections::HashSet;
use tonic::Code;
use tonic::transport::Channel;

const DAY_MS: i64 = 86_400_000;

fn definition(name: &str, start_ms: i64, end_ms: i64) -> String {
    format!(
        r#"
name = "{name}"
salt = "{name}-salt"
primary = "orders_per_visit"
guardrails = ["watch_minutes_per_visit"]
start = {start_ms}
end = {end_ms}

[target]
categories = ["apparel"]
platforms = ["taobao", "douyin"]

[[arms]]
name = "control"
share = 50
models = {{ conversion = 1 }}

[[arms]]
name = "treatment"
share = 50
models = {{ conversion = 2 }}
"#
    )
}

async fn experiments(server: &liveprofile_server::RunningServer) -> ExperimentAdminClient<Channel> {
    ExperimentAdminClient::new(channel(server).await)
}

fn candidate(g: &Golden, user: &str, platform: &str, category: &str, row: usize) -> v1::ConversionCandidate {
    v1::ConversionCandidate {
        user_id: user.to_owned(),
        room_id: "room-1".to_owned(),
        features: Some(g.dense(row % g.rows.len())),
        platform: platform.to_owned(),
        category: category.to_owned(),
    }
}

async fn score(
    client: &mut liveprofile_client::v1::scoring_client::ScoringClient<Channel>,
    g: &Golden,
    candidates: Vec<v1::ConversionCandidate>,
) -> Vec<v1::ConversionScore> {
    client
        .score_conversion(v1::ScoreConversionRequest {
            schema_hash: g.schema_hash.clone(),
            candidates,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .scores
}

async fn create(
    client: &mut ExperimentAdminClient<Channel>,
    toml: String,
) -> Result<v1::ExperimentInfo, tonic::Status> {
    client
        .create_experiment(authorized(v1::CreateExperimentRequest { definition_toml: toml }))
        .await
        .map(|r| r.into_inner().experiment.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn definitions_are_checked_and_refusals_name_the_field() {
    let repo = repository(&["conversion"]);
    publish(repo.path(), "conversion", 2);
    let server = start(config(repo.path())).await;
    let mut admin = experiments(&server).await;
    let now = now_ms();
    let good = definition("pilot", now - DAY_MS, now + DAY_MS);

    let no_token =
        admin.create_experiment(v1::CreateExperimentRequest { definition_toml: good.clone() }).await.unwrap_err();
    assert_eq!(no_token.code(), Code::Unauthenticated);

    let base = admin.clone();
    let refused = |toml: String| {
        let mut admin = base.clone();
        async move { create(&mut admin, toml).await.unwrap_err() }
    };
    let shares = refused(good.replacen("share = 50", "share = 60", 1)).await;
    assert_eq!(shares.code(), Code::InvalidArgument);
    assert!(shares.message().contains("arms[].share") && shares.message().contains("110"), "{}", shares.message());
    let version = refused(good.replace("conversion = 2", "conversion = 9")).await;
    assert_eq!(version.code(), Code::InvalidArgument);
    assert!(version.message().contains("arms[1].models.conversion"), "{}", version.message());
    assert!(version.message().contains("version 9 is not loaded"), "{}", version.message());
    let metric = refused(good.replace("\"orders_per_visit\"", "\"revenue\"")).await;
    assert!(metric.message().contains("primary") && metric.message().contains("revenue"), "{}", metric.message());

    let info = create(&mut admin, good.clone()).await.unwrap();
    assert_eq!(info.state, v1::ExperimentState::Running as i32);
    assert_eq!(info.models, vec!["conversion".to_owned()]);
    // The same definition again changes nothing; another one changing the same model for
    // an overlapping target is refused.
    let again = admin
        .create_experiment(authorized(v1::CreateExperimentRequest { definition_toml: good.clone() }))
        .await
        .unwrap()
        .into_inner();
    assert!(!again.created);
    let overlap = refused(definition("second", now, now + 2 * DAY_MS)).await;
    assert_eq!(overlap.code(), Code::InvalidArgument);
    assert!(overlap.message().contains("target") && overlap.message().contains("pilot"), "{}", overlap.message());
    // The definition was written to the experiments folder, where the server reads it.
    let file = server.state().config.experiments.join("pilot.toml");
    let written = Experiment::parse(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(written, Experiment::parse(&good).unwrap());
    let unknown = admin
        .get_experiment_results(authorized(v1::GetExperimentResultsRequest { name: "nope".into() }))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_come_from_the_users_arm_and_exposures_are_logged_once() {
    let repo = repository(&["conversion"]);
    publish(repo.path(), "conversion", 2);
    let cfg = config(repo.path());
    let server = start(cfg.clone()).await;
    let mut admin = experiments(&server).await;
    let now = now_ms();
    let toml = definition("pilot", now - DAY_MS, now + DAY_MS);
    let e = Experiment::parse(&toml).unwrap();
    create(&mut admin, toml).await.unwrap();
    let g = golden("conversion");
    let mut client = scoring(&server).await;

    let users: Vec<String> = (0..200).map(|i| format!("u{i:04}")).collect();
    let answers = score(
        &mut client,
        &g,
        users.iter().enumerate().map(|(i, u)| candidate(&g, u, "taobao", "apparel", i)).collect(),
    )
    .await;
    let mut per_arm = [0usize; 2];
    for (u, a) in users.iter().zip(&answers) {
        let m = a.model.as_ref().unwrap();
        let arm = assign(&e, u);
        per_arm[arm] += 1;
        assert_eq!(m.arm, v1::Arm::Experiment as i32, "{u}");
        assert_eq!(m.experiment, "pilot");
        assert_eq!(m.experiment_arm, e.arms[arm].name);
        assert_eq!(m.version, if arm == 0 { 1 } else { 2 }, "{u}");
    }
    assert!(per_arm[0] > 70 && per_arm[1] > 70, "{per_arm:?}");
    // Outside the target, without a platform, or pinned: not the experiment's.
    let outside = score(
        &mut client,
        &g,
        vec![
            candidate(&g, "u0000", "taobao", "beauty", 0),
            candidate(&g, "u0001", "kuaishou", "apparel", 1),
            candidate(&g, "u0002", "", "apparel", 2),
        ],
    )
    .await;
    for a in &outside {
        let m = a.model.as_ref().unwrap();
        assert_ne!(m.arm, v1::Arm::Experiment as i32);
        assert!(m.experiment.is_empty());
    }
    let bad = client
        .score_conversion(v1::ScoreConversionRequest {
            schema_hash: g.schema_hash.clone(),
            candidates: vec![candidate(&g, "u1", "tiktok", "apparel", 0)],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().contains("row 0") && bad.message().contains("tiktok"), "{}", bad.message());
    let long = client
        .score_conversion(v1::ScoreConversionRequest {
            schema_hash: g.schema_hash.clone(),
            candidates: vec![candidate(&g, "u1", "taobao", &"a".repeat(100_000), 0)],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(long.code(), Code::InvalidArgument);
    assert!(long.message().contains("category is 100000 bytes"), "{}", long.message());

    // One person on two platforms: the Douyin account is linked to u0007, so the answer
    // on Douyin comes from u0007's arm and adds no exposure.
    let mut profiles = ProfileAdminClient::new(channel(&server).await);
    let link = v1::IdentityLink { platform: "douyin".into(), platform_user_id: "dy-7".into(), user_id: "u0007".into() };
    profiles.upsert_identities(authorized(v1::UpsertIdentitiesRequest { links: vec![link] })).await.unwrap();
    let linked = score(&mut client, &g, vec![candidate(&g, "dy-7", "douyin", "apparel", 3)]).await;
    assert_eq!(linked[0].model.as_ref().unwrap().experiment_arm, e.arms[assign(&e, "u0007")].name);
    // KServe callers name the user and where the answer is used in parameters.
    let mut kserve_client = kserve(&server).await;
    let param = |s: &str| pb::InferParameter {
        parameter_choice: Some(pb::infer_parameter::ParameterChoice::StringParam(s.into())),
    };
    let input = pb::model_infer_request::InferInputTensor {
        name: "features".into(),
        datatype: "FP32".into(),
        shape: vec![1, g.rows[0].len() as i64],
        contents: Some(pb::InferTensorContents { fp32_contents: g.rows[0].clone(), ..Default::default() }),
        ..Default::default()
    };
    let answer = kserve_client
        .model_infer(pb::ModelInferRequest {
            model_name: "conversion".into(),
            inputs: vec![input],
            parameters: [("user_id", "u0011"), ("platform", "taobao"), ("category", "apparel")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), param(v)))
                .collect(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let arm = assign(&e, "u0011");
    assert_eq!(answer.parameters["experiment_arm"], param(&e.arms[arm].name));
    assert_eq!(answer.parameters["arm"], param("experiment"));
    assert_eq!(answer.model_version, if arm == 0 { "1" } else { "2" });
    // Scored again, nobody is exposed twice.
    score(&mut client, &g, users.iter().enumerate().map(|(i, u)| candidate(&g, u, "douyin", "apparel", i)).collect())
        .await;
    let list = admin.list_experiments(authorized(v1::ListExperimentsRequest {})).await.unwrap().into_inner();
    assert_eq!(list.experiments[0].exposed_users, 200);
    let exposures = server.state().profiles.exposures("pilot").unwrap();
    assert_eq!(exposures.len(), 200);
    assert_eq!(exposures.iter().map(|x| &x.user_id).collect::<HashSet<_>>().len(), 200);
    assert!(exposures.iter().all(|x| x.platform == Platform::Taobao && x.category == "apparel"));
    assert!(exposures.iter().all(|x| x.arm == e.arms[assign(&e, &x.user_id)].name));

    // After a restart: the same experiment, the same exposures, the same arms.
    server.shutdown().await.unwrap();
    let server = start(cfg.clone()).await;
    let mut client = scoring(&server).await;
    let after = score(&mut client, &g, vec![candidate(&g, "u0003", "taobao", "apparel", 0)]).await;
    assert_eq!(after[0].model.as_ref().unwrap().experiment_arm, e.arms[assign(&e, "u0003")].name);
    assert_eq!(server.state().profiles.exposures("pilot").unwrap(), exposures);

    // A version an arm answers with cannot be unloaded while the experiment runs.
    let mut models = crate::common::admin(&server).await;
    let unload = models
        .unload_model(authorized(v1::UnloadModelRequest { name: "conversion".into(), version: 2 }))
        .await
        .unwrap_err();
    assert_eq!(unload.code(), Code::FailedPrecondition);
    assert!(unload.message().contains("experiment pilot"), "{}", unload.message());
    // Stopped: answers come from the traffic policy again; the results stay readable.
    let mut admin = experiments(&server).await;
    let stopped = admin
        .stop_experiment(authorized(v1::StopExperimentRequest { name: "pilot".into() }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stopped.experiment.unwrap().state, v1::ExperimentState::Stopped as i32);
    let after = score(&mut client, &g, vec![candidate(&g, "u0003", "taobao", "apparel", 0)]).await;
    assert_eq!(after[0].model.as_ref().unwrap().arm, v1::Arm::Stable as i32);
    let results = admin
        .get_experiment_results(authorized(v1::GetExperimentResultsRequest { name: "pilot".into() }))
        .await
        .unwrap()
        .into_inner();
    let report: serde_json::Value = serde_json::from_str(&results.report_json).unwrap();
    assert_eq!(report["users"], 200);
    server.shutdown().await.unwrap();
}

fn live_event(
    id: &str,
    ts_ms: i64,
    user: &str,
    platform: &str,
    category: &str,
    kind: &str,
    value: f64,
) -> v1::LiveEvent {
    v1::LiveEvent {
        event_id: id.to_owned(),
        ts_ms,
        platform: platform.to_owned(),
        user_id: user.to_owned(),
        platform_user_id: format!("{platform}-{user}"),
        room_id: format!("{platform}-{category}-room"),
        host_id: "host-1".to_owned(),
        category: category.to_owned(),
        kind: kind.to_owned(),
        value,
        ..Default::default()
    }
}

fn event_of(e: &v1::LiveEvent) -> Event {
    Event {
        event_id: e.event_id.clone(),
        ts_ms: e.ts_ms,
        platform: Platform::parse(&e.platform).unwrap(),
        user_id: e.user_id.clone(),
        platform_user_id: e.platform_user_id.clone(),
        room_id: Some(e.room_id.clone()),
        host_id: Some(e.host_id.clone()),
        category: e.category.clone(),
        kind: EventKind::parse(&e.kind).unwrap(),
        item_id: None,
        value: e.value,
        coupon: false,
    }
}

/// Visits of each user: enter, some interactions, sometimes an order, leave.
fn visits(users: &[String], from_ms: i64, tag: &str, seed: u64) -> Vec<v1::LiveEvent> {
    let mut out = Vec::new();
    let mut x = seed;
    let mut next = || {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (x >> 33) as f64 / (1u64 << 31) as f64
    };
    for (i, u) in users.iter().enumerate() {
        let visits = 1 + (next() * 3.0) as i64;
        for v in 0..visits {
            let platform = if next() < 0.5 { "taobao" } else { "douyin" };
            let category = if next() < 0.8 { "apparel" } else { "beauty" };
            let t = from_ms + v * 20_000;
            let id = |k: &str| format!("{tag}-{i}-{v}-{k}");
            out.push(live_event(&id("enter"), t, u, platform, category, "enter", 0.0));
            if next() < 0.5 {
                out.push(live_event(&id("like"), t + 1000, u, platform, category, "like", 0.0));
            }
            if next() < 0.3 {
                out.push(live_event(&id("order"), t + 2000, u, platform, category, "order", (next() * 300.0).round()));
            }
            out.push(live_event(&id("leave"), t + 3000, u, platform, category, "leave", (next() * 600.0).round()));
        }
    }
    out
}

async fn ingest(server: &liveprofile_server::RunningServer, events: &[v1::LiveEvent]) {
    let mut client = IngestClient::new(channel(server).await);
    let batches: Vec<v1::EventBatch> = events.chunks(200).map(|c| v1::EventBatch { events: c.to_vec() }).collect();
    let ack = client.ingest_events(tokio_stream::iter(batches)).await.unwrap().into_inner();
    assert_eq!(ack.accepted as usize, events.len(), "{:?}", ack.errors.first());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_results_equal_the_offline_report_over_the_same_events_and_exposures() {
    let repo = repository(&["conversion"]);
    publish(repo.path(), "conversion", 2);
    let cfg = config(repo.path());
    let server = start(cfg.clone()).await;
    let mut admin = experiments(&server).await;
    let now = now_ms();
    let toml = definition("parity", now - DAY_MS, now + DAY_MS);
    let e = Experiment::parse(&toml).unwrap();
    create(&mut admin, toml).await.unwrap();
    let g = golden("conversion");
    let mut client = scoring(&server).await;

    let users: Vec<String> = (0..300).map(|i| format!("p{i:04}")).collect();
    // Before exposure (the covariate), then the answers (exposures of the first 250), then
    // events after them (counted for the exposed; the last 50 users are never exposed).
    let before = visits(&users, now - 3_600_000, "pre", 1);
    ingest(&server, &before).await;
    score(
        &mut client,
        &g,
        users[..250].iter().enumerate().map(|(i, u)| candidate(&g, u, "taobao", "apparel", i)).collect(),
    )
    .await;
    let after = visits(&users, now_ms() + 1000, "post", 2);
    ingest(&server, &after).await;

    let results = admin
        .get_experiment_results(authorized(v1::GetExperimentResultsRequest { name: "parity".into() }))
        .await
        .unwrap()
        .into_inner();
    let live: serde_json::Value = serde_json::from_str(&results.report_json).unwrap();
    assert_eq!(live["users"], 250);

    // Offline: the exposures as exported, the events as a file would hold them.
    let exposures = server.state().profiles.exposures("parity").unwrap();
    let mut offline = ExperimentOutcomes::offline(e.clone());
    for x in &exposures {
        assert!(offline.expose(x).unwrap());
    }
    for ev in before.iter().chain(&after) {
        offline.observe(&event_of(ev));
    }
    let rows = offline.table();
    assert!(rows.iter().any(|r| r.pre.visits > 0) && rows.iter().any(|r| r.post.orders > 0));
    let table = server.state().profiles.experiment_table("parity").unwrap();
    assert_eq!(table.rows, rows, "live and offline per-user tables");
    // The same figures to the last bit: the same text.
    let report = serde_json::to_string_pretty(&analyze(&e, &rows, &AnalysisOptions::default())).unwrap();
    assert_eq!(results.report_json, report);
    // And the same after a restart (recovered from the log, then from a snapshot).
    server.shutdown().await.unwrap();
    let server = start(cfg).await;
    assert_eq!(server.state().profiles.experiment_table("parity").unwrap().rows, rows);
    server.shutdown().await.unwrap();
}
