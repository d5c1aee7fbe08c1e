//! Real-time profiles: gRPC ingest, scoring by user id equal to scoring the online
//! driver's features, error codes, identity links, and MQTT ingest through a real
//! Mosquitto broker.

use crate::common::*;
use liveprofile_bench::synthetic::SyntheticEvents;
use liveprofile_client::v1::{self, ingest_client::IngestClient, profile_admin_client::ProfileAdminClient};
use liveprofile_events::{Event, EventKind, Platform};
use liveprofile_features::OnlineProfiles;
use liveprofile_store::now_ms;
use std::time::{Duration, Instant};
use tonic::Code;

async fn ingest(server: &liveprofile_server::RunningServer, batches: Vec<Vec<v1::LiveEvent>>) -> v1::IngestAck {
    let mut client = IngestClient::new(channel(server).await);
    let stream = tokio_stream::iter(batches.into_iter().map(|events| v1::EventBatch { events }));
    client.ingest_events(stream).await.unwrap().into_inner()
}

fn to_event(e: &v1::LiveEvent) -> Event {
    let opt = |s: &str| if s.is_empty() { None } else { Some(s.to_owned()) };
    Event {
        event_id: e.event_id.clone(),
        ts_ms: e.ts_ms,
        platform: Platform::parse(&e.platform).unwrap(),
        user_id: e.user_id.clone(),
        platform_user_id: e.platform_user_id.clone(),
        room_id: opt(&e.room_id),
        host_id: opt(&e.host_id),
        category: e.category.clone(),
        kind: EventKind::parse(&e.kind).unwrap(),
        item_id: opt(&e.item_id),
        value: e.value,
        coupon: e.coupon,
    }
}

fn dense(values: Vec<f32>) -> Option<v1::Features> {
    Some(v1::Features { values: Some(v1::features::Values::Dense(v1::DenseFeatures { values })) })
}

/// A server with the tag and conversion models and 440 synthetic events of 40 users
/// ingested (11 each, in batches of 64, stamped over the last ten minutes).
struct Ingested {
    server: liveprofile_server::RunningServer,
    events: Vec<v1::LiveEvent>,
    start_ms: i64,
    _repo: tempfile::TempDir,
}

async fn with_events() -> Ingested {
    let repo = repository(&["user_tags", "conversion"]);
    let server = start(config(repo.path())).await;
    let mut generator = SyntheticEvents::new("t", 40);
    let start_ms = now_ms() - 10 * 60_000;
    let events: Vec<v1::LiveEvent> = (0..440).map(|i| generator.next_event(start_ms + i * 1000)).collect();
    let ack = ingest(&server, events.chunks(64).map(<[_]>::to_vec).collect()).await;
    assert_eq!((ack.received, ack.accepted, ack.duplicates, ack.late, ack.rejected), (440, 440, 0, 0, 0));
    assert_eq!(ack.last_sequence, 440);
    assert_eq!(ack.late_window_ms, 300_000);
    Ingested { server, events, start_ms, _repo: repo }
}

/// `viewer` inside a room: enter, like and view_item, ingested; returns the events.
async fn visit(server: &liveprofile_server::RunningServer, viewer: &str) -> Vec<v1::LiveEvent> {
    let mut g = SyntheticEvents::new("c", 1);
    let t = now_ms() - 5_000;
    let mut events: Vec<v1::LiveEvent> = (0..3).map(|i| g.event_of(0, t + i)).collect();
    for e in &mut events {
        e.user_id = viewer.to_owned();
    }
    let ack = ingest(server, vec![events.clone()]).await;
    assert_eq!(ack.accepted, 3);
    events
}

/// A room entry with the event id `<id>-1` at `ts_ms` for `user` (empty: none).
fn event_at(id: &str, user: &str, ts_ms: i64) -> v1::LiveEvent {
    let mut e = SyntheticEvents::new(id, 1).event_of(0, ts_ms);
    e.user_id = user.to_owned();
    e
}

fn tags_by_id(user: &str, as_of_ms: Option<i64>) -> v1::ScoreTagsRequest {
    v1::ScoreTagsRequest {
        users: vec![v1::UserFeatures { user_id: user.into(), features: None, as_of_ms, ..Default::default() }],
        ..Default::default()
    }
}

fn conversion_by_id(user: &str, room: &str) -> v1::ScoreConversionRequest {
    v1::ScoreConversionRequest {
        candidates: vec![v1::ConversionCandidate {
            user_id: user.into(),
            room_id: room.into(),
            features: None,
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingested_events_are_scored_by_user_id_like_the_online_drivers_features() {
    let Ingested { server, events, .. } = with_events().await;
    let mut reference = OnlineProfiles::default();
    for e in &events {
        reference.observe(&to_event(e)).unwrap();
    }
    let mut scoring = scoring(&server).await;
    let schema_hash = liveprofile_features::user_schema().hash;
    let as_of = now_ms() + 1;
    for k in [0u64, 7, 39] {
        let user = SyntheticEvents::user_id(k);
        let by_id = scoring.score_tags(tags_by_id(&user, Some(as_of))).await.unwrap().into_inner();
        let features = reference.user_features(&user, as_of).unwrap().unwrap();
        let given = scoring
            .score_tags(v1::ScoreTagsRequest {
                schema_hash: schema_hash.clone(),
                users: vec![v1::UserFeatures {
                    user_id: user.clone(),
                    features: dense(features),
                    ..Default::default()
                }],
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let (a, b) = (&by_id.users[0], &given.users[0]);
        assert_eq!(a.tags, b.tags, "user {user}: scores from the profile equal scores of the driver's features");
        let profile = a.profile.as_ref().expect("answers from the profile carry its time");
        assert_eq!(profile.as_of_ms, as_of);
        let newest = events.iter().filter(|e| e.user_id == user).map(|e| e.ts_ms).max().unwrap();
        assert_eq!(profile.last_event_ms, newest);
        assert!(b.profile.is_none());
    }
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn freshness_per_platform_is_on_metrics() {
    let Ingested { server, events, .. } = with_events().await;
    let text = metrics(&server).await;
    let count = |platform: &str| {
        liveprofile_testkit::sample(
            &text,
            "liveprofile_event_delay_seconds_count",
            &[&format!("platform=\"{platform}\"")],
        )
    };
    for platform in ["taobao", "douyin", "kuaishou"] {
        let sent = events.iter().filter(|e| e.platform == platform).count() as f64;
        assert_eq!(count(platform), Some(sent), "{platform}");
        let newest = events.iter().filter(|e| e.platform == platform).map(|e| e.ts_ms).max().unwrap();
        let age = liveprofile_testkit::sample(
            &text,
            "liveprofile_platform_event_age_seconds",
            &[&format!("platform=\"{platform}\"")],
        )
        .unwrap();
        let expected = (now_ms() - newest) as f64 / 1000.0;
        assert!((age - expected).abs() < 5.0, "{platform}: age {age} s, newest event {expected} s ago");
    }
    // A platform that sent nothing has no figures; its age appears with its first event.
    assert_eq!(count("xiaohongshu"), None);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_answer_reflecting_events_is_on_metrics_per_platform() {
    let Ingested { server, events, .. } = with_events().await;
    let figure = |text: &str, name: &str, platform: &str| {
        liveprofile_testkit::sample(text, name, &[&format!("platform=\"{platform}\"")]).unwrap_or(0.0)
    };
    let user = SyntheticEvents::user_id(7);
    let mut scoring = scoring(&server).await;
    scoring.score_tags(tags_by_id(&user, None)).await.unwrap();
    let answered_ms = now_ms();
    let text = metrics(&server).await;
    // One figure per platform the user's events came from: the oldest of them.
    for platform in ["taobao", "douyin", "kuaishou", "xiaohongshu"] {
        let oldest = events.iter().filter(|e| e.user_id == user && e.platform == platform).map(|e| e.ts_ms).min();
        let count = figure(&text, "liveprofile_event_to_answer_seconds_count", platform);
        let sum = figure(&text, "liveprofile_event_to_answer_seconds_sum", platform);
        match oldest {
            None => assert_eq!(count, 0.0, "{platform}"),
            Some(t) => {
                assert_eq!(count, 1.0, "{platform}");
                let expected = (answered_ms - t) as f64 / 1000.0;
                assert!(sum <= expected && sum > expected - 5.0, "{platform}: {sum} s, oldest event {expected} s ago");
            }
        }
    }
    // A second answer reflects nothing new; one after a new event reflects that event.
    scoring.score_tags(tags_by_id(&user, None)).await.unwrap();
    let unchanged = metrics(&server).await;
    let mut late = event_at("late", &user, now_ms() - 2_000);
    late.platform = "kuaishou".into();
    assert_eq!(ingest(&server, vec![vec![late]]).await.accepted, 1);
    scoring.score_tags(tags_by_id(&user, None)).await.unwrap();
    let after = metrics(&server).await;
    for platform in ["taobao", "douyin"] {
        let count = |t: &str| figure(t, "liveprofile_event_to_answer_seconds_count", platform);
        assert_eq!((count(&unchanged), count(&after)), (count(&text), count(&text)), "{platform}");
    }
    let kuaishou = |t: &str, name: &str| figure(t, &format!("liveprofile_event_to_answer_seconds_{name}"), "kuaishou");
    assert_eq!(kuaishou(&unchanged, "count"), kuaishou(&text, "count"));
    assert_eq!(kuaishou(&after, "count"), kuaishou(&text, "count") + 1.0);
    let waited = kuaishou(&after, "sum") - kuaishou(&text, "sum");
    assert!((2.0..7.0).contains(&waited), "the new event waited {waited} s for its first answer");
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversion_by_id_equals_scoring_the_online_drivers_visit_features() {
    let Ingested { server, events, .. } = with_events().await;
    let visit = visit(&server, "viewer-1").await;
    let room = visit[0].room_id.clone();
    let mut scoring = scoring(&server).await;
    let answer = scoring.score_conversion(conversion_by_id("viewer-1", &room)).await.unwrap().into_inner();
    let score = &answer.scores[0];
    let decided = score.profile.as_ref().unwrap().as_of_ms;
    // The host's record counts every user's visits: replay everything ingested.
    let mut reference = OnlineProfiles::default();
    for e in events.iter().chain(&visit) {
        reference.observe(&to_event(e)).unwrap();
    }
    let features = reference.conversion_features("viewer-1", &room, decided).unwrap();
    let given = scoring
        .score_conversion(v1::ScoreConversionRequest {
            schema_hash: liveprofile_features::conversion_schema().hash,
            candidates: vec![v1::ConversionCandidate {
                user_id: "viewer-1".into(),
                room_id: room.clone(),
                features: dense(features),
                ..Default::default()
            }],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(score.probability.to_bits(), given.scores[0].probability.to_bits());
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scoring_by_id_answers_not_found_invalid_argument_and_failed_precondition() {
    let Ingested { server, start_ms, .. } = with_events().await;
    visit(&server, "viewer-1").await;
    let mut scoring = scoring(&server).await;
    let unknown = scoring.score_tags(tags_by_id("nobody", None)).await.unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    assert_eq!(unknown.message(), "no profile for user \"nobody\": none of its events has been ingested");
    let past = scoring.score_tags(tags_by_id("user-0", Some(start_ms))).await.unwrap_err();
    assert_eq!(past.code(), Code::InvalidArgument, "{}", past.message());
    let no_visit = scoring.score_conversion(conversion_by_id("viewer-1", "room-elsewhere")).await.unwrap_err();
    assert_eq!(no_visit.code(), Code::FailedPrecondition);
    assert!(no_visit.message().contains("no open visit to room \"room-elsewhere\""), "{}", no_visit.message());
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_and_late_events_are_named_in_the_ack_and_events_sent_again_are_duplicates() {
    let Ingested { server, .. } = with_events().await;
    let visit = visit(&server, "viewer-1").await;
    let mut bad = event_at("bad", "viewer-2", now_ms());
    bad.platform = "myspace".into();
    let late = event_at("late", "viewer-1", now_ms() - 3_600_000);
    let good = event_at("good", "viewer-3", now_ms());
    let ack = ingest(&server, vec![vec![bad, late.clone()], vec![good]]).await;
    assert_eq!((ack.received, ack.accepted, ack.late, ack.rejected), (3, 1, 1, 1));
    assert_eq!(ack.errors[0].index, 0);
    assert_eq!(ack.errors[0].reason, "unknown platform \"myspace\"");
    assert_eq!(
        (ack.errors[1].index, ack.errors[1].late, ack.errors[1].event_id.as_str()),
        (1, true, late.event_id.as_str())
    );
    let again = ingest(&server, vec![visit]).await;
    assert_eq!((again.accepted, again.duplicates), (0, 3));
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_links_are_admin_only_and_bring_account_only_events_to_the_unified_user() {
    let Ingested { server, .. } = with_events().await;
    visit(&server, "viewer-1").await;
    let mut admin = ProfileAdminClient::new(channel(&server).await);
    let link =
        v1::IdentityLink { platform: "douyin".into(), platform_user_id: "dy-77".into(), user_id: "viewer-1".into() };
    let denied = admin.upsert_identities(v1::UpsertIdentitiesRequest { links: vec![link.clone()] }).await.unwrap_err();
    assert_eq!(denied.code(), Code::Unauthenticated);
    let mut unlinked = event_at("unlinked", "", now_ms());
    unlinked.platform = "douyin".into();
    unlinked.platform_user_id = "dy-77".into();
    let ack = ingest(&server, vec![vec![unlinked.clone()]]).await;
    assert_eq!(ack.errors[0].reason, "user_id is empty and douyin account \"dy-77\" is not in the identity table");
    admin.upsert_identities(authorized(v1::UpsertIdentitiesRequest { links: vec![link] })).await.unwrap();
    let ack = ingest(&server, vec![vec![unlinked.clone()]]).await;
    assert_eq!(ack.accepted, 1, "{:?}", ack.errors);
    let tags = scoring(&server).await.score_tags(tags_by_id("viewer-1", None)).await.unwrap().into_inner();
    assert_eq!(tags.users[0].profile.as_ref().unwrap().last_event_ms, unlinked.ts_ms);
    let stats =
        admin.get_profile_store_stats(authorized(v1::GetProfileStoreStatsRequest {})).await.unwrap().into_inner();
    assert_eq!((stats.users, stats.identities, stats.accepted), (41, 1, 444), "40 users and viewer-1");
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_published_over_mqtt_reach_profiles_once() {
    let broker = liveprofile_testkit::Mosquitto::start();
    let repo = repository(&["user_tags"]);
    let mut c = config(repo.path());
    c.profiles.mqtt = Some(mqtt_config(&broker, &format!("liveprofile-test-{}", std::process::id())));
    let server = start(c).await;
    let store = server.state().profiles.clone();

    let mut options = rumqttc::MqttOptions::new("producer", "127.0.0.1", broker.port);
    options.set_keep_alive(Duration::from_secs(10));
    let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 100);
    tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });

    wait_subscribed(&client, &store, "probe").await;
    let t = now_ms();
    let before = store.stats();

    // JSON (platform and room from the topic), a JSON array, and a protobuf batch; one of
    // them published twice.
    let one = format!(r#"{{"event_id":"m1","ts_ms":{t},"user_id":"fan","kind":"enter","host_id":"h1"}}"#);
    let two = format!(
        r#"[{{"event_id":"m2","ts_ms":{},"user_id":"fan","kind":"like"}},
            {{"event_id":"m3","ts_ms":{},"user_id":"fan","kind":"view_item","value":59.0,"item_id":"i1"}}]"#,
        t + 1,
        t + 2
    );
    let mut g = SyntheticEvents::new("pb", 1);
    let mut pb = g.event_of(0, t + 3);
    pb.user_id = "fan".into();
    pb.platform = String::new();
    pb.room_id = String::new();
    pb.kind = "like".into();
    let batch = prost::Message::encode_to_vec(&v1::EventBatch { events: vec![pb] });
    for (topic, payload) in [
        ("live/douyin/room-9/events", one.clone().into_bytes()),
        ("live/douyin/room-9/events", two.into_bytes()),
        ("live/douyin/room-9/events", batch),
        ("live/douyin/room-9/events", one.into_bytes()),
        ("live/douyin/room-9/events", b"not json".to_vec()),
    ] {
        client.publish(topic, rumqttc::QoS::AtLeastOnce, false, payload).await.unwrap();
    }
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let s = store.stats();
        if s.accepted - before.accepted >= 4 && s.duplicates - before.duplicates >= 1 {
            break;
        }
        assert!(Instant::now() < until, "MQTT events not taken in: {s:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let s = store.stats();
    assert_eq!((s.accepted - before.accepted, s.duplicates - before.duplicates), (4, 1));
    let f = store.user_features("fan", None).unwrap();
    assert_eq!(f.last_event_ms, Some(t + 3));
    let conversion = store.conversion_features("fan", "room-9");
    assert!(conversion.is_ok(), "the visit to the topic's room is open: {conversion:?}");
    let text = metrics(&server).await;
    assert_eq!(sample(&text, "liveprofile_ingest_events", &["path=\"mqtt\"", "outcome=\"rejected\""]), Some(1.0));
    server.shutdown().await.unwrap();
}

fn mqtt_config(broker: &liveprofile_testkit::Mosquitto, client_id: &str) -> liveprofile_server::config::MqttConfig {
    liveprofile_server::config::MqttConfig {
        host: "127.0.0.1".into(),
        port: broker.port,
        topic: "live/+/+/events".into(),
        client_id: client_id.to_owned(),
    }
}

/// Publishes probe events until the server has taken one in (its subscription is live).
async fn wait_subscribed(client: &rumqttc::AsyncClient, store: &liveprofile_store::ProfileStore, user: &str) {
    let until = Instant::now() + Duration::from_secs(20);
    let mut probe = 0;
    while store.user_features(user, None).is_err() {
        assert!(Instant::now() < until, "the server never received an MQTT message");
        probe += 1;
        let payload =
            format!(r#"{{"event_id":"{user}-{probe}","ts_ms":{},"user_id":"{user}","kind":"like"}}"#, now_ms());
        client.publish("live/douyin/room-1/events", rumqttc::QoS::AtLeastOnce, false, payload).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_messages_published_while_the_server_is_down_arrive_when_it_is_back() {
    let broker = liveprofile_testkit::Mosquitto::start();
    let repo = repository(&["user_tags"]);
    let data = tempfile::tempdir().unwrap();
    let client_id = format!("liveprofile-restart-{}", std::process::id());
    let config_with_mqtt = || {
        let mut c = config(repo.path());
        c.profiles.data_dir = data.path().to_owned();
        c.profiles.mqtt = Some(mqtt_config(&broker, &client_id));
        c
    };
    let mut options = rumqttc::MqttOptions::new("producer-restart", "127.0.0.1", broker.port);
    options.set_keep_alive(Duration::from_secs(10));
    let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 100);
    tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });

    let server = start(config_with_mqtt()).await;
    wait_subscribed(&client, &server.state().profiles, "probe-a").await;
    server.shutdown().await.unwrap();

    // The server is down: the broker keeps QoS 1 messages for its persistent session.
    let t = now_ms();
    for i in 0..5 {
        let payload = format!(r#"{{"event_id":"down-{i}","ts_ms":{},"user_id":"offline-fan","kind":"like"}}"#, t + i);
        client.publish("live/kuaishou/room-3/events", rumqttc::QoS::AtLeastOnce, false, payload).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let server = start(config_with_mqtt()).await;
    let store = server.state().profiles.clone();
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(f) = store.user_features("offline-fan", None)
            && f.last_event_ms == Some(t + 4)
        {
            break;
        }
        assert!(Instant::now() < until, "messages published while the server was down never arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(store.stats().accepted, 5, "the five queued events, each once");
    server.shutdown().await.unwrap();
}
