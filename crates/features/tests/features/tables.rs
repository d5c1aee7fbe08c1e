//! Offline tables: labels from the future window, schema in metadata, refusal of cut-offs
//! whose label window is not covered by the data.

use liveprofile_events::{DAY_MS, Event, EventKind, EventWriter, Platform};
use liveprofile_features::build::{BuildError, UserTableOptions, build_user_table};
use liveprofile_features::{EventSet, user_schema};

#[allow(clippy::too_many_arguments)] // one row of a hand-written event table
fn ev(
    id: u32,
    user: &str,
    ts_ms: i64,
    platform: Platform,
    kind: EventKind,
    category: &str,
    value: f64,
    coupon: bool,
    room: &str,
) -> Event {
    Event {
        event_id: format!("e{id}"),
        ts_ms,
        platform,
        user_id: user.into(),
        platform_user_id: format!("{platform}-{user}"),
        room_id: Some(room.into()),
        host_id: Some(format!("host-{room}")),
        category: category.into(),
        kind,
        item_id: None,
        value,
        coupon,
    }
}

#[test]
fn user_table_has_features_and_future_labels() {
    let t = 1_700_000_000_000i64 - 1_700_000_000_000i64 % DAY_MS + 16 * 3_600_000; // a China midnight
    let events = vec![
        ev(1, "a", t - DAY_MS, Platform::Taobao, EventKind::Enter, "beauty", 0.0, false, "r1"),
        ev(2, "a", t - DAY_MS + 60_000, Platform::Taobao, EventKind::Order, "beauty", 120.0, false, "r1"),
        ev(3, "a", t - DAY_MS + 90_000, Platform::Taobao, EventKind::Leave, "beauty", 90.0, false, "r1"),
        // future: beauty order with coupon and over 300 yuan on douyin, a visit on taobao too
        ev(4, "a", t + DAY_MS, Platform::Douyin, EventKind::Enter, "beauty", 0.0, false, "r2"),
        ev(5, "a", t + DAY_MS + 1_000, Platform::Douyin, EventKind::Order, "beauty", 350.0, true, "r2"),
        ev(6, "a", t + 2 * DAY_MS, Platform::Taobao, EventKind::Enter, "food", 0.0, false, "r3"),
        // user b: history only, nothing in the future -> churn risk
        ev(7, "b", t - 3 * DAY_MS, Platform::Kuaishou, EventKind::Enter, "home", 0.0, false, "r4"),
        // user c: only future events -> no history, not in the table
        ev(8, "c", t + DAY_MS, Platform::Kuaishou, EventKind::Enter, "home", 0.0, false, "r4"),
        ev(9, "c", t + 8 * DAY_MS, Platform::Kuaishou, EventKind::Enter, "home", 0.0, false, "r4"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.parquet");
    let mut w = EventWriter::create(&path).unwrap();
    for e in &events {
        w.append(e).unwrap();
    }
    w.finish().unwrap();
    let set = EventSet::load(&path).unwrap();
    assert_eq!(set.accepted(), 9);

    let out = dir.path().join("users.parquet");
    let n = build_user_table(&set, UserTableOptions { cutoff_ms: t, label_window_ms: Some(7 * DAY_MS) }, &out).unwrap();
    assert_eq!(n, 2);

    let file = std::fs::File::open(&out).unwrap();
    let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    let meta = builder.metadata().file_metadata().key_value_metadata().unwrap().clone();
    let schema_json = meta.iter().find(|kv| kv.key == "liveprofile.feature_schema").unwrap().value.clone().unwrap();
    assert_eq!(schema_json, user_schema().to_json());
    let batch = builder.build().unwrap().next().unwrap().unwrap();
    let col = |name: &str| batch.column_by_name(name).unwrap_or_else(|| panic!("column {name}")).clone();
    let label = |name: &str, row: usize| {
        col(&format!("label_{name}")).as_any().downcast_ref::<arrow::array::Int8Array>().unwrap().value(row)
    };
    let feature =
        |name: &str, row: usize| col(name).as_any().downcast_ref::<arrow::array::Float32Array>().unwrap().value(row);
    // row 0 = user a, row 1 = user b; their main platforms in the look-back window.
    let platforms = col("main_platform");
    let platforms = platforms.as_any().downcast_ref::<arrow::array::StringArray>().unwrap();
    assert_eq!((platforms.value(0), platforms.value(1)), ("taobao", "kuaishou"));
    assert_eq!(feature("orders_7d", 0), 1.0);
    assert_eq!(feature("taobao_spend_yuan_7d", 0), 120.0);
    assert_eq!(feature("beauty_watch_min_7d", 0), 1.5);
    assert_eq!(feature("hours_since_last_event", 0), 24.0 - 90.0 / 3600.0);
    assert_eq!(feature("hours_since_last_order", 1), 720.0);
    assert_eq!(label("buys_beauty_7d", 0), 1);
    assert_eq!(label("buys_food_7d", 0), 0);
    assert_eq!(label("price_sensitive", 0), 1);
    assert_eq!(label("high_value", 0), 1);
    assert_eq!(label("cross_platform", 0), 1);
    assert_eq!(label("churn_risk", 0), 0);
    assert_eq!(label("buys_any", 0), 1);
    assert_eq!(label("churn_risk", 1), 1);
    assert_eq!(label("buys_any", 1), 0);

    // A label window past the newest event is refused, and nothing is written.
    let late = dir.path().join("late.parquet");
    let err = build_user_table(
        &set,
        UserTableOptions { cutoff_ms: t + 5 * DAY_MS, label_window_ms: Some(7 * DAY_MS) },
        &late,
    )
    .unwrap_err();
    assert!(matches!(err, BuildError::LabelWindowBeyondData { .. }), "{err}");
    assert!(!late.exists());
}
