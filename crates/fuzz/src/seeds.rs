//! Seed corpora, made with the project's own writers (store, event writer, protobuf types),
//! in the input layout each target reads.

use crate::chunk;
use liveprofile_events::{Event, EventKind, EventWriter, Platform};
use liveprofile_server::proto::inference as pb;
use liveprofile_server::proto::v1;
use liveprofile_store::{Durability, IdentityLink, IncomingEvent, ProfileStore, StoreOptions};
use prost::Message;
use std::path::Path;

/// A recent time (event times must not be in the future, nor too old for the late window).
fn now_ms() -> i64 {
    liveprofile_store::now_ms() - 60_000
}

/// A handful of valid events of two users in one room.
pub fn incoming_events() -> Vec<IncomingEvent> {
    let t = now_ms();
    let e = |i: i64, user: &str, kind: &str, value: f64, item: &str| IncomingEvent {
        event_id: format!("seed-{user}-{i}"),
        ts_ms: t + i * 1000,
        platform: "douyin".into(),
        user_id: user.into(),
        platform_user_id: format!("dy-{user}"),
        room_id: "r1".into(),
        host_id: "h1".into(),
        category: "beauty".into(),
        kind: kind.into(),
        item_id: item.into(),
        value,
        coupon: i % 2 == 0,
    };
    vec![
        e(0, "u1", "enter", 0.0, ""),
        e(1, "u1", "like", 0.0, ""),
        e(2, "u1", "view_item", 59.0, "i1"),
        e(3, "u1", "add_to_cart", 59.0, "i1"),
        e(4, "u1", "order", 59.0, "i1"),
        e(5, "u1", "leave", 120.0, ""),
        e(6, "u2", "enter", 0.0, ""),
        e(7, "u2", "gift", 10.0, ""),
        e(8, "u2", "comment", 0.0, ""),
    ]
}

fn live_event(e: &IncomingEvent) -> v1::LiveEvent {
    v1::LiveEvent {
        event_id: e.event_id.clone(),
        ts_ms: e.ts_ms,
        platform: e.platform.clone(),
        user_id: e.user_id.clone(),
        platform_user_id: e.platform_user_id.clone(),
        room_id: e.room_id.clone(),
        host_id: e.host_id.clone(),
        category: e.category.clone(),
        kind: e.kind.clone(),
        item_id: e.item_id.clone(),
        value: e.value,
        coupon: e.coupon,
    }
}

/// Options of the small stores the targets open: no fsync, small segments, no automatic
/// snapshots.
pub fn store_options(dir: &Path, shards: usize) -> StoreOptions {
    StoreOptions {
        shards,
        durability: Durability::Write,
        snapshot_every_records: u64::MAX,
        snapshot_interval: std::time::Duration::from_secs(1 << 30),
        segment_bytes: 2048,
        ..StoreOptions::new(dir)
    }
}

/// `proto_ingest`: mode byte, then a protobuf `EventBatch`, MQTT payloads (JSON and
/// protobuf) and identity upserts.
pub fn proto_ingest() -> Vec<(String, Vec<u8>)> {
    let events = incoming_events();
    let batch = v1::EventBatch { events: events.iter().map(live_event).collect() };
    let mut out = Vec::new();
    let with_mode = |mode: u8, body: &[u8]| {
        let mut v = vec![mode];
        v.extend_from_slice(body);
        v
    };
    out.push(("grpc-batch".to_owned(), with_mode(0, &batch.encode_to_vec())));
    let one = v1::EventBatch { events: vec![live_event(&events[4])] };
    out.push(("grpc-one".to_owned(), with_mode(0, &one.encode_to_vec())));
    let json = serde_json::to_vec(&events).expect("events serialize");
    out.push(("mqtt-json-array".to_owned(), with_mode(1, &json)));
    let mut single = serde_json::to_value(&events[2]).expect("event serializes");
    if let Some(o) = single.as_object_mut() {
        o.remove("platform");
        o.remove("room_id");
    }
    out.push(("mqtt-json-one".to_owned(), with_mode(1, &serde_json::to_vec(&single).expect("json"))));
    out.push(("mqtt-protobuf".to_owned(), with_mode(1, &batch.encode_to_vec())));
    let mut topic = b"live/douyin/r1/events\n".to_vec();
    topic.extend_from_slice(&json);
    out.push(("mqtt-topic".to_owned(), with_mode(2, &topic)));
    let links = v1::UpsertIdentitiesRequest {
        links: vec![
            v1::IdentityLink { platform: "douyin".into(), platform_user_id: "dy-u9".into(), user_id: "u9".into() },
            v1::IdentityLink { platform: "taobao".into(), platform_user_id: "tb-u9".into(), user_id: "u9".into() },
        ],
    };
    let mut upsert = Vec::new();
    chunk(&mut upsert, &links.encode_to_vec());
    let anonymous = v1::EventBatch {
        events: vec![v1::LiveEvent {
            user_id: String::new(),
            platform_user_id: "dy-u9".into(),
            ..live_event(&events[0])
        }],
    };
    upsert.extend_from_slice(&anonymous.encode_to_vec());
    out.push(("identities".to_owned(), with_mode(3, &upsert)));
    out
}

fn features_named(width: usize) -> v1::Features {
    let values = (0..width).map(|i| (format!("f{i}"), i as f32)).collect();
    v1::Features { values: Some(v1::features::Values::Named(v1::NamedFeatures { values })) }
}

/// `proto_scoring`: mode byte, then a protobuf scoring request.
pub fn proto_scoring(user_names: &[String], conversion_names: &[String], tags_hash: &str) -> Vec<(String, Vec<u8>)> {
    let named = |names: &[String]| v1::Features {
        values: Some(v1::features::Values::Named(v1::NamedFeatures {
            values: names.iter().enumerate().map(|(i, n)| (n.clone(), (i % 5) as f32)).collect(),
        })),
    };
    let dense = |width: usize| v1::Features {
        values: Some(v1::features::Values::Dense(v1::DenseFeatures { values: vec![0.5; width] })),
    };
    let user = |id: &str, features: Option<v1::Features>| v1::UserFeatures {
        user_id: id.into(),
        features,
        platform: "douyin".into(),
        category: "beauty".into(),
        room_id: "r1".into(),
        ..Default::default()
    };
    let tags = v1::ScoreTagsRequest {
        users: vec![user("u1", None), user("u2", Some(named(user_names))), user("u3", Some(features_named(3)))],
        top_k: 3,
        ..Default::default()
    };
    let tags_dense = v1::ScoreTagsRequest {
        schema_hash: tags_hash.into(),
        users: vec![user("u1", Some(dense(user_names.len())))],
        tags: vec![],
        include_segment: true,
        ..Default::default()
    };
    let conversion = v1::ScoreConversionRequest {
        candidates: vec![
            v1::ConversionCandidate { user_id: "u1".into(), room_id: "r1".into(), ..Default::default() },
            v1::ConversionCandidate {
                user_id: "u2".into(),
                room_id: "r1".into(),
                platform: "douyin".into(),
                category: "beauty".into(),
                features: Some(named(conversion_names)),
            },
        ],
        ..Default::default()
    };
    let stream = v1::ScoreStreamRequest {
        request_id: "1".into(),
        request: Some(v1::score_stream_request::Request::Tags(tags.clone())),
    };
    let width = user_names.len();
    let tensor = |raw: bool| pb::model_infer_request::InferInputTensor {
        name: "features".into(),
        datatype: "FP32".into(),
        shape: vec![2, width as i64],
        contents: (!raw)
            .then(|| pb::InferTensorContents { fp32_contents: vec![0.25; 2 * width], ..Default::default() }),
        ..Default::default()
    };
    let infer = |raw: bool| pb::ModelInferRequest {
        model_name: "user_tags".into(),
        inputs: vec![tensor(raw)],
        raw_input_contents: if raw { vec![vec![0u8; 8 * width]] } else { vec![] },
        ..Default::default()
    };
    let with_mode = |mode: u8, m: &dyn Fn() -> Vec<u8>| {
        let mut v = vec![mode];
        v.extend_from_slice(&m());
        v
    };
    vec![
        ("tags".to_owned(), with_mode(0, &|| tags.encode_to_vec())),
        ("tags-dense".to_owned(), with_mode(0, &|| tags_dense.encode_to_vec())),
        ("conversion".to_owned(), with_mode(1, &|| conversion.encode_to_vec())),
        ("stream".to_owned(), with_mode(2, &|| stream.encode_to_vec())),
        ("kserve".to_owned(), with_mode(3, &|| infer(false).encode_to_vec())),
        ("kserve-raw".to_owned(), with_mode(3, &|| infer(true).encode_to_vec())),
    ]
}

/// `event_files`: mode byte, then a Parquet event file (0), a Taobao CSV (1) or an
/// identity CSV (2).
pub fn event_files() -> Vec<(String, Vec<u8>)> {
    let dir = crate::fresh_dir("seeds");
    let path = dir.join("events.parquet");
    let mut w = EventWriter::create(&path).expect("event file");
    let t = 1_793_548_800_000i64;
    let kinds = [EventKind::Enter, EventKind::Like, EventKind::ViewItem, EventKind::Order, EventKind::Leave];
    for (i, kind) in kinds.iter().enumerate() {
        let e = Event {
            event_id: format!("e{i}"),
            ts_ms: t + i as i64 * 1000,
            platform: if i % 2 == 0 { Platform::Douyin } else { Platform::Taobao },
            user_id: format!("u{}", i % 2),
            platform_user_id: format!("p{}", i % 2),
            room_id: (i % 3 != 0).then(|| "r1".to_owned()),
            host_id: Some("h1".to_owned()),
            category: "beauty".to_owned(),
            kind: *kind,
            item_id: matches!(kind, EventKind::ViewItem | EventKind::Order).then(|| "i1".to_owned()),
            value: match kind {
                EventKind::ViewItem | EventKind::Order => 20.5,
                EventKind::Leave => 30.0,
                _ => 0.0,
            },
            coupon: i == 3,
        };
        w.append(&e).expect("event");
    }
    w.finish().expect("finish");
    let mut parquet = vec![0u8];
    parquet.extend_from_slice(&std::fs::read(&path).expect("read back"));
    let mut csv = vec![1u8];
    csv.extend_from_slice(b"1,100,7,pv,1511544070\n1,100,7,cart,1511544080\n2,101,7,buy,1511544090\r\n\n3,x,7,fav,1\n");
    let mut ids = vec![2u8];
    ids.extend_from_slice(b"platform,platform_user_id,user_id\ndouyin,dy-1,u1\ntaobao,tb-1,u1\n");
    vec![("parquet".to_owned(), parquet), ("taobao-csv".to_owned(), csv), ("identities-csv".to_owned(), ids)]
}

/// Packs a data folder as `store_recovery` reads it (see that target): segments with
/// their trailing zeros cut (the target pads a segment to the capacity its header names).
pub fn pack_store(dir: &Path, flags: u8, shards: u8) -> Vec<u8> {
    let mut out = vec![flags, shards];
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .expect("data folder")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in names {
        let number = |prefix: &str, suffix: &str| {
            name.strip_prefix(prefix).and_then(|n| n.strip_suffix(suffix)).and_then(|n| n.parse::<u16>().ok())
        };
        let (kind, seq) = if let Some(seq) = number("log-", ".wal") {
            (0u8, seq)
        } else if let Some(seq) = number("snapshot-", ".snap") {
            (1u8, seq)
        } else {
            continue;
        };
        let mut bytes = std::fs::read(dir.join(&name)).expect("data file");
        if kind == 0 {
            while bytes.last() == Some(&0) {
                bytes.pop();
            }
        }
        out.push(kind);
        out.extend_from_slice(&seq.to_le_bytes());
        chunk(&mut out, &bytes);
    }
    out
}

/// `store_recovery`: data folders written by the store (log only; snapshot and log after
/// it; identities), packed by [`pack_store`].
pub fn store_recovery() -> Vec<(String, Vec<u8>)> {
    let events = incoming_events();
    let mut out = Vec::new();
    for (name, snapshot, identities) in
        [("log-only", false, false), ("snapshot-and-log", true, false), ("identities", true, true)]
    {
        let dir = crate::fresh_dir("seeds");
        {
            let store = ProfileStore::open(store_options(&dir, 2)).expect("seed store");
            if identities {
                store
                    .upsert_identities(vec![IdentityLink {
                        platform: Platform::Douyin,
                        platform_user_id: "dy-u7".into(),
                        user_id: "u7".into(),
                    }])
                    .expect("identities");
            }
            store.ingest(&events[..5]).expect("ingest");
            if snapshot {
                store.snapshot().expect("snapshot");
            }
            store.ingest(&events[5..]).expect("ingest");
        }
        // Flags: LOG_FORMAT marker, fix checksums, round trip after opening.
        out.push((name.to_owned(), pack_store(&dir, 0b1011, 2)));
    }
    out
}

/// `model_package`: which file (0 manifest, 1 feature schema, 2 golden examples), then its
/// text, for the bundled `user_segments` package.
pub fn model_package(package: &Path) -> Vec<(String, Vec<u8>)> {
    ["manifest.json", "feature_schema.json", "golden.json"]
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let mut v = vec![i as u8];
            v.extend_from_slice(&std::fs::read(package.join(f)).expect("package file"));
            (f.trim_end_matches(".json").to_owned(), v)
        })
        .collect()
}
