//! Training sets from the prediction log: a server takes simulated events through its
//! ingest API and answers ScoreTags (as of several times) and ScoreConversion (at the
//! moment of the call) from its profiles; the log's features equal the offline feature
//! pipeline's for the same users and as-of times, bit for bit, and the training set built
//! from the log and the events carries the offline labels at each as-of time.

use crate::common::*;
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Float32Type, Int8Type, Int64Type};
use liveprofile_client::v1::{self, ingest_client::IngestClient};
use liveprofile_events::{DAY_MS, Event, EventKind, EventReader, EventWriter, HOUR_MS, MINUTE_MS};
use liveprofile_features::build::host_histories;
use liveprofile_features::labels::user_labels;
use liveprofile_features::offline::user_features_as_of;
use liveprofile_features::{EventSet, conversion_schema, open_visit_features, user_schema};
use liveprofile_predlog::{TrainingError, TrainingOptions, read_log, write_training_set};
use liveprofile_simulator::{SimConfig, Simulator};
use liveprofile_store::now_ms;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::collections::HashMap;
use std::path::Path;

fn live(e: &Event) -> v1::LiveEvent {
    v1::LiveEvent {
        event_id: e.event_id.clone(),
        ts_ms: e.ts_ms,
        platform: e.platform.as_str().to_owned(),
        user_id: e.user_id.clone(),
        platform_user_id: e.platform_user_id.clone(),
        room_id: e.room_id.clone().unwrap_or_default(),
        host_id: e.host_id.clone().unwrap_or_default(),
        category: e.category.clone(),
        kind: e.kind.as_str().to_owned(),
        item_id: e.item_id.clone().unwrap_or_default(),
        value: e.value,
        coupon: e.coupon,
    }
}

async fn ingest(server: &liveprofile_server::RunningServer, events: &[Event]) {
    let mut client = IngestClient::new(channel(server).await);
    let batches: Vec<v1::EventBatch> =
        events.chunks(500).map(|c| v1::EventBatch { events: c.iter().map(live).collect() }).collect();
    let ack = client.ingest_events(tokio_stream::iter(batches)).await.unwrap().into_inner();
    assert_eq!((ack.accepted, ack.late, ack.rejected), (events.len() as u64, 0, 0), "{:?}", ack.errors);
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn read(path: &Path) -> RecordBatch {
    let builder = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path).unwrap()).unwrap();
    let schema = builder.schema().clone();
    let batches: Vec<RecordBatch> = builder.build().unwrap().map(Result::unwrap).collect();
    arrow::compute::concat_batches(&schema, &batches).unwrap()
}

/// An event of `base`'s user and platform in the live room.
fn room_event(base: &Event, id: &str, ts_ms: i64, kind: EventKind, value: f64) -> Event {
    Event {
        event_id: id.into(),
        ts_ms,
        room_id: Some("live-room".into()),
        host_id: Some("live-host".into()),
        category: "beauty".into(),
        kind,
        item_id: None,
        value,
        coupon: false,
        ..base.clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logged_features_equal_the_offline_pipeline_and_the_training_set_carries_its_labels() {
    let dir = tempfile::tempdir().unwrap();
    // Ten simulated days ending about two days ago (day 0 a China-time midnight).
    let now = now_ms();
    let start_ms = ((now + 8 * HOUR_MS) / DAY_MS - 12) * DAY_MS - 8 * HOUR_MS;
    let sim = Simulator::new(SimConfig { users: 60, days: 10, seed: 11, start_ms }).unwrap();
    let sim_path = dir.path().join("sim.parquet");
    sim.write(&sim_path, &|_| {}).unwrap();
    let mut simulated = EventReader::open(&sim_path).unwrap().read_all().unwrap().events;
    simulated.sort_by_key(|e| e.ts_ms);

    let repo = repository(&["user_tags", "conversion"]);
    let log_dir = dir.path().join("log");
    let mut c = config(repo.path());
    c.prediction_log = Some(liveprofile_predlog::LogConfig::new(&log_dir));
    let server = start(c).await;
    let mut scoring = scoring(&server).await;

    // Events arrive in time order; after each stage every user seen so far is scored as
    // of the stage's end. The first two stages' label windows (7 days) end inside the
    // data, the third's do not.
    let as_of_times = [
        start_ms + 2 * DAY_MS + 7 * HOUR_MS + 13 * MINUTE_MS,
        start_ms + 4 * DAY_MS + 19 * HOUR_MS,
        start_ms + 9 * DAY_MS + 3 * HOUR_MS,
    ];
    let mut sent = 0;
    let mut users: Vec<String> = Vec::new();
    let mut tag_rows = 0;
    for &as_of in &as_of_times {
        let upto = simulated.partition_point(|e| e.ts_ms <= as_of);
        ingest(&server, &simulated[sent..upto]).await;
        for e in &simulated[sent..upto] {
            if !users.contains(&e.user_id) {
                users.push(e.user_id.clone());
            }
        }
        sent = upto;
        let request = v1::ScoreTagsRequest {
            users: users
                .iter()
                .map(|u| v1::UserFeatures { user_id: u.clone(), as_of_ms: Some(as_of), ..Default::default() })
                .collect(),
            ..Default::default()
        };
        let answer = scoring.score_tags(request).await.unwrap().into_inner();
        assert_eq!(answer.users.len(), users.len());
        tag_rows += users.len();
    }
    ingest(&server, &simulated[sent..]).await;

    // Two viewers in a live room now: one orders after the answer, one leaves.
    let (buyer, leaver) = (users[0].clone(), users[1].clone());
    let last = |u: &str| simulated.iter().rev().find(|e| e.user_id == u).unwrap().clone();
    let t0 = now_ms() - 20_000;
    let mut visit = Vec::new();
    for (k, user) in [&buyer, &leaver].into_iter().enumerate() {
        let base = last(user);
        visit.push(room_event(&base, &format!("live-{k}-0"), t0, EventKind::Enter, 0.0));
        visit.push(room_event(&base, &format!("live-{k}-1"), t0 + 5_000, EventKind::Like, 0.0));
        visit.push(room_event(&base, &format!("live-{k}-2"), t0 + 9_000, EventKind::ViewItem, 129.0));
    }
    visit.sort_by_key(|e| e.ts_ms);
    ingest(&server, &visit).await;
    let request = v1::ScoreConversionRequest {
        candidates: [&buyer, &leaver]
            .into_iter()
            .map(|u| v1::ConversionCandidate { user_id: u.clone(), room_id: "live-room".into(), ..Default::default() })
            .collect(),
        ..Default::default()
    };
    let answer = scoring.score_conversion(request).await.unwrap().into_inner();
    // Each row is decided at the moment its profile was read.
    let decided: HashMap<String, i64> =
        answer.scores.iter().map(|s| (s.user_id.clone(), s.profile.as_ref().unwrap().as_of_ms)).collect();
    let decision = *decided.values().max().unwrap();
    assert!(decided.values().all(|d| decision - d < 500), "{decided:?}");
    // What happened after the answer.
    let after = vec![
        room_event(&last(&buyer), "live-0-3", decision + 1_000, EventKind::Order, 129.0),
        room_event(&last(&leaver), "live-1-3", decision + 1_000, EventKind::Leave, 30.0),
        room_event(&last(&buyer), "live-0-4", decision + 2_000, EventKind::Leave, 31.0),
    ];
    ingest(&server, &after).await;
    server.shutdown().await.unwrap();

    // The events file: everything, in the order it arrived.
    let events_path = dir.path().join("events.parquet");
    let mut w = EventWriter::create(&events_path).unwrap();
    for e in simulated.iter().chain(&visit).chain(&after) {
        w.append(e).unwrap();
    }
    w.finish().unwrap();
    let set = EventSet::load(&events_path).unwrap();
    let by_user: HashMap<&str, &liveprofile_features::dataset::UserEvents> =
        set.users.iter().map(|u| (u.user_id.as_str(), u)).collect();
    let hosts = host_histories(&set);
    let room = set.rooms.iter().position(|r| r == "live-room").unwrap() as u32;

    // Parity: every logged row's features are the offline pipeline's at its as-of time.
    let log = read_log(&log_dir).unwrap();
    assert_eq!(log.rows(), tag_rows + 2);
    let (user_hash, conversion_hash) = (user_schema().hash, conversion_schema().hash);
    let mut checked = (0, 0);
    for batch in &log.batches {
        let text = |name: &str| batch.column_by_name(name).unwrap().as_string::<i32>().clone();
        let (ids, hashes) = (text("user_id"), text("schema_hash"));
        let as_of = batch.column_by_name("as_of_ms").unwrap().as_primitive::<Int64Type>();
        let features = batch.column_by_name("features").unwrap().as_list::<i32>();
        for i in 0..batch.num_rows() {
            let u = by_user[ids.value(i)];
            assert!(as_of.is_valid(i), "features built from the profile carry their time");
            let logged = features.value(i);
            let logged = logged.as_primitive::<Float32Type>().values();
            let mut offline = Vec::new();
            if hashes.value(i) == user_hash {
                assert!(as_of_times.contains(&as_of.value(i)));
                user_features_as_of(&u.events, as_of.value(i), &mut offline);
                checked.0 += 1;
            } else {
                assert_eq!(hashes.value(i), conversion_hash);
                assert_eq!(as_of.value(i), decided[ids.value(i)]);
                offline =
                    open_visit_features(u, &hosts, room, as_of.value(i)).expect("the visit is open at the answer");
                checked.1 += 1;
            }
            assert_eq!(bits(logged), bits(&offline), "user {} as of {}", ids.value(i), as_of.value(i));
        }
    }
    assert_eq!(checked, (tag_rows, 2));

    // A log of two schemas needs a model.
    let opts = |model: &str, window_ms: i64| TrainingOptions {
        label_window_ms: window_ms,
        model: Some(model.to_owned()),
        version: None,
        events_name: "events.parquet".into(),
    };
    let out = dir.path().join("tags.parquet");
    let mixed = TrainingOptions { model: None, ..opts("user_tags", 7 * DAY_MS) };
    assert!(matches!(write_training_set(&log_dir, &set, &mixed, &out), Err(TrainingError::Mixed { count: 2, .. })));
    assert!(!out.exists());

    // Tags: the offline labels of each user at each as-of time; the last stage's windows
    // reach past the newest event and are left out.
    let report = write_training_set(&log_dir, &set, &opts("user_tags", 7 * DAY_MS), &out).unwrap();
    let stage_users = |k: usize| {
        let upto = simulated.partition_point(|e| e.ts_ms <= as_of_times[k]);
        let mut seen: Vec<&str> = simulated[..upto].iter().map(|e| e.user_id.as_str()).collect();
        seen.sort_unstable();
        seen.dedup();
        seen.len() as u64
    };
    assert!(stage_users(0) >= 30, "most simulated users are active in two days: {}", stage_users(0));
    assert_eq!(report.left_out_uncovered, stage_users(2));
    assert_eq!(report.rows_written, stage_users(0) + stage_users(1));
    let batch = read(&out);
    assert_eq!(batch.num_rows() as u64, report.rows_written);
    let label_names: Vec<String> = user_schema().labels.iter().map(|l| l.name.clone()).collect();
    let from = batch.column_by_name("label_from_ms").unwrap().as_primitive::<Int64Type>();
    let mut positives = vec![0; label_names.len()];
    for i in 0..batch.num_rows() {
        let user = batch.column_by_name("user_id").unwrap().as_string::<i32>().value(i);
        let u = by_user[user];
        let expected = user_labels(&u.events, &u.hosts, from.value(i), 7 * DAY_MS);
        for ((name, want), n) in label_names.iter().zip(expected).zip(&mut positives) {
            let got = batch.column_by_name(&format!("label_{name}")).unwrap().as_primitive::<Int8Type>().value(i);
            assert_eq!(got == 1, want, "{user} as of {}: {name}", from.value(i));
            *n += u64::from(want);
        }
        let mut offline = Vec::new();
        user_features_as_of(&u.events, from.value(i), &mut offline);
        let first = batch.column_by_name(&user_schema().features[0].name).unwrap().as_primitive::<Float32Type>();
        assert_eq!(first.value(i).to_bits(), offline[0].to_bits());
    }
    assert_eq!(report.positives, positives);
    let earned = positives.iter().filter(|n| **n > 0).count();
    assert!(earned >= 4, "the simulated users earn several kinds of label: {positives:?}");

    // Conversion: whether the visit ends in an order after the answer.
    let out = dir.path().join("conversion.parquet");
    let report = write_training_set(&log_dir, &set, &opts("conversion", 1_500), &out).unwrap();
    assert_eq!((report.rows_written, report.positives.as_slice()), (2, &[1][..]));
    let batch = read(&out);
    for i in 0..2 {
        let user = batch.column_by_name("user_id").unwrap().as_string::<i32>().value(i);
        let order = batch.column_by_name("label_order").unwrap().as_primitive::<Int8Type>().value(i);
        assert_eq!(order == 1, user == buyer, "{user}");
    }
}
