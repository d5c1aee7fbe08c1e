//! Size limits: an event with an oversized field is refused on its own, naming the field
//! and the limit, so that every acknowledged record can be read back; the log writer
//! refuses a record over its limit and writes nothing of its batch.

use super::{file_names, incoming, only_segment, options};
use liveprofile_events::Platform;
use liveprofile_simulator::DEFAULT_START_MS;
use liveprofile_store::{
    IdentityLink, IncomingEvent, MAX_CATEGORY_BYTES, MAX_ID_BYTES, MAX_NAME_BYTES, MAX_RECORD_BYTES, ProfileStore,
    StoreError,
};

/// An event of `user` at `ts_ms` with every text field at its size limit.
fn event_at_every_limit(k: usize, user: &str, ts_ms: i64) -> IncomingEvent {
    let id = |tag: &str| format!("{tag}{k:04}{}", "x".repeat(MAX_ID_BYTES - tag.len() - 4));
    let mut e = incoming(&id("e"), user, ts_ms, "add_to_cart");
    e.platform_user_id = id("p");
    e.room_id = id("r");
    e.host_id = id("h");
    e.item_id = id("i");
    e.category = "c".repeat(MAX_CATEGORY_BYTES);
    e.value = 99.0;
    e
}

#[test]
fn a_17_mb_event_id_is_refused_alone_and_the_store_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let store = ProfileStore::open(options(dir.path())).unwrap();
    let t = DEFAULT_START_MS;
    let huge = "e".repeat(17_000_000);
    let batch = vec![
        incoming("a1", "u1", t, "enter"),
        incoming(&huge, "u1", t + 1_000, "like"),
        incoming("a2", "u1", t + 2_000, "like"),
    ];
    let report = store.ingest(&batch).unwrap();
    assert_eq!((report.received, report.accepted, report.rejected), (3, 2, 1));
    let refused = &report.errors[0];
    assert_eq!(refused.index, 1);
    assert_eq!(refused.reason, "event_id is 17000000 bytes, over the limit of 256 bytes");
    // The answer does not grow with what the client sent.
    assert_eq!(refused.event_id.len(), MAX_ID_BYTES);
    // Only the two small records reached the log: its one segment is preallocated, so its
    // data tells, not its length.
    let data = super::segments::data_end(&std::fs::read(only_segment(dir.path())).unwrap());
    assert!(data < 4096, "{data} bytes of data");
    assert_eq!(store.stats().log_bytes, data);
    drop(store);

    // Before the limit this record made every restart fail; now both events come back.
    let store = ProfileStore::open(options(dir.path())).unwrap();
    assert_eq!(store.stats().recovered_records, 2);
    assert_eq!(store.user_features("u1", None).unwrap().last_event_ms, Some(t + 2_000));
}

#[test]
fn every_text_field_is_taken_at_its_limit_and_refused_one_byte_over() {
    let dir = tempfile::tempdir().unwrap();
    let store = ProfileStore::open(options(dir.path())).unwrap();
    let t = DEFAULT_START_MS;
    let user = "u".repeat(MAX_ID_BYTES);
    let at_limit: Vec<IncomingEvent> = (0..3).map(|k| event_at_every_limit(k, &user, t + k as i64)).collect();
    let report = store.ingest(&at_limit).unwrap();
    assert_eq!(report.accepted, 3, "{:?}", report.errors);

    type Grow = fn(&mut IncomingEvent, String);
    let cases: [(&str, usize, Grow); 9] = [
        ("event_id", MAX_ID_BYTES, |e, s| e.event_id = s),
        ("platform", MAX_NAME_BYTES, |e, s| e.platform = s),
        ("kind", MAX_NAME_BYTES, |e, s| e.kind = s),
        ("user_id", MAX_ID_BYTES, |e, s| e.user_id = s),
        ("platform_user_id", MAX_ID_BYTES, |e, s| e.platform_user_id = s),
        ("room_id", MAX_ID_BYTES, |e, s| e.room_id = s),
        ("host_id", MAX_ID_BYTES, |e, s| e.host_id = s),
        ("category", MAX_CATEGORY_BYTES, |e, s| e.category = s),
        ("item_id", MAX_ID_BYTES, |e, s| e.item_id = s),
    ];
    let over: Vec<IncomingEvent> = cases
        .iter()
        .enumerate()
        .map(|(k, (_, limit, grow))| {
            let mut e = event_at_every_limit(10 + k, &user, t + 10);
            // Multi-byte characters: the limit counts bytes, not characters.
            grow(&mut e, "é".repeat(limit / 2) + "x");
            e
        })
        .collect();
    let report = store.ingest(&over).unwrap();
    assert_eq!((report.accepted, report.rejected), (0, cases.len() as u64));
    for ((field, limit, _), refused) in cases.iter().zip(&report.errors) {
        assert_eq!(refused.reason, format!("{field} is {} bytes, over the limit of {limit} bytes", limit + 1));
    }
    drop(store);
    let store = ProfileStore::open(options(dir.path())).unwrap();
    assert_eq!(store.stats().recovered_records, 3);
    assert_eq!(store.user_features(&user, None).unwrap().last_event_ms, Some(t + 2));
}

#[test]
fn the_log_writer_refuses_a_record_over_its_limit_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = ProfileStore::open(options(dir.path())).unwrap();
    let t = DEFAULT_START_MS;
    assert_eq!(store.ingest(&[incoming("a1", "u1", t, "enter")]).unwrap().accepted, 1);
    let segment = only_segment(dir.path());
    let before = std::fs::metadata(&segment).unwrap().len();

    // Identity links are not sized per field: one account id of 17 MB makes a record
    // that replay would refuse. The writer refuses it instead of acknowledging it, with
    // the small link logged in the same record.
    let small = IdentityLink { platform: Platform::Douyin, platform_user_id: "dy-1".into(), user_id: "u9".into() };
    let huge = IdentityLink { platform_user_id: "p".repeat(17_000_000), ..small.clone() };
    let err = store.upsert_identities(vec![small, huge]).unwrap_err();
    match &err {
        StoreError::RecordTooLarge { seq, bytes, limit, .. } => {
            assert_eq!((*seq, *limit), (2, MAX_RECORD_BYTES));
            assert!(*bytes > 17_000_000, "{bytes}");
        }
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("nothing of its batch was written"), "{err}");
    assert_eq!(std::fs::metadata(&segment).unwrap().len(), before);
    drop(store);

    let store = ProfileStore::open(options(dir.path())).unwrap();
    assert_eq!((store.stats().recovered_records, store.stats().last_seq), (1, 1));
    assert_eq!(file_names(dir.path()).iter().filter(|f| f.starts_with("log-")).count(), 1);
    let mut by_account = incoming("a2", "", t + 1_000, "like");
    by_account.platform_user_id = "dy-1".into();
    let report = store.ingest(&[by_account]).unwrap();
    assert_eq!(report.rejected, 1, "the refused batch of links was not applied: {:?}", report.errors);
    assert!(report.errors[0].reason.contains("not in the identity table"), "{:?}", report.errors);
}

#[test]
fn values_over_their_kinds_limit_are_refused_alone_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let store = ProfileStore::open(options(dir.path())).unwrap();
    let t = DEFAULT_START_MS;
    let with = |id: &str, at: i64, kind: &str, value: f64| IncomingEvent { value, ..incoming(id, "big", t + at, kind) };
    let batch = vec![
        with("v0", 0, "enter", 0.0),
        with("v1", 1, "order", 5e16),
        with("v2", 2, "order", 10_000_000.0),
        with("v3", 3, "order", 10_000_000.01),
        with("v4", 4, "gift", 1e9),
        with("v5", 5, "view_item", f64::MAX),
        with("v6", 6, "coupon_offer", 0.0),
        with("v7", 7, "coupon_offer", 3.0),
        with("v8", 8, "leave", 604_801.0),
        with("v9", 9, "leave", 604_800.0),
    ];
    let report = store.ingest(&batch).unwrap();
    assert_eq!((report.received, report.accepted, report.rejected), (10, 4, 6));
    let reasons: Vec<(usize, &str, &str)> =
        report.errors.iter().map(|e| (e.index, e.event_id.as_str(), e.reason.as_str())).collect();
    assert_eq!(
        reasons,
        [
            (1, "v1", "value 5e16 on order is over the limit of 10000000 yuan"),
            (3, "v3", "value 10000000.01 on order is over the limit of 10000000 yuan"),
            (4, "v4", "value 1000000000 on gift is over the limit of 10000000 yuan"),
            (5, "v5", "value 1.7976931348623157e308 on view_item is over the limit of 10000000 yuan"),
            (7, "v7", "bad value 3: this kind of event carries no value"),
            (8, "v8", "value 604801 on leave is over the limit of 604800 seconds"),
        ]
    );
    // The order at the limit counts in full; the refused ones not at all.
    let f = store.user_features("big", Some(t + 10)).unwrap();
    let get = |name: &str| {
        f.values[liveprofile_features::aggregates::user_features().iter().position(|d| d.name == name).unwrap()]
    };
    assert_eq!((get("orders_28d"), get("spend_yuan_28d")), (1.0, 10_000_000.0));
    assert_eq!(get("watch_min_28d"), 10_080.0);
    assert_eq!(f.last_event_ms, Some(t + 9));
    drop(store);

    // The coupon offer is in the log like every accepted event.
    let store = ProfileStore::open(options(dir.path())).unwrap();
    assert_eq!(store.stats().recovered_records, 4);
}
