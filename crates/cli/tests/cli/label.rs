//! `liveprofile features label`: logged rows joined with the labels their users earned
//! strictly after the time their features describe; rows whose label window the events do
//! not cover left out and counted; mixtures, unknown models and bad inputs refused with
//! nothing written.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Float32Type, Int8Type, Int64Type};
use liveprofile_events::{DAY_MS, Event, EventKind, EventWriter, HOUR_MS, Platform};
use liveprofile_features::EventSet;
use liveprofile_features::labels::user_labels;
use liveprofile_predlog::training::TRAINING_SET_METADATA_KEY;
use liveprofile_predlog::{LogConfig, PredictionLog, PredictionRecord, RowOutputs};
use liveprofile_runtime::{LoadedModel, load_package};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

/// The as-of time of the logged tag rows: 2026-11-10 00:00 China time.
const T: i64 = 1_794_240_000_000;

fn liveprofile(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_liveprofile")).args(args).current_dir(dir).output().unwrap()
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The command failed with exit 1, saying `what`.
fn refused(out: &Output, what: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(what), "expected {what:?} in: {stderr}");
}

fn model(name: &str) -> Arc<LoadedModel> {
    Arc::new(load_package(&liveprofile_testkit::bundled_models().join(name).join("1")).unwrap())
}

#[allow(clippy::too_many_arguments)]
fn event(id: &str, user: &str, ts_ms: i64, kind: EventKind, room: &str, category: &str, value: f64) -> Event {
    Event {
        event_id: id.into(),
        ts_ms,
        platform: Platform::Douyin,
        user_id: user.into(),
        platform_user_id: format!("dy-{user}"),
        room_id: Some(room.into()),
        host_id: Some(format!("host-{room}")),
        category: category.into(),
        kind,
        item_id: None,
        value,
        coupon: false,
    }
}

/// What a logged record borrows: a row as the service held it.
#[derive(Clone)]
struct Row {
    model: Arc<LoadedModel>,
    request_id: String,
    user_id: String,
    room_id: String,
    time_ms: i64,
    as_of_ms: Option<i64>,
    features: Vec<f32>,
    outputs: Vec<f32>,
}

/// A logged row of `model`: features `k + j / 8` (distinct per row), outputs `k / 100`.
fn record(model: &Arc<LoadedModel>, k: usize, user: &str, room: &str, time_ms: i64, as_of_ms: Option<i64>) -> Row {
    let outputs = model.output_columns().len();
    Row {
        model: model.clone(),
        request_id: format!("req-{k}"),
        user_id: user.into(),
        room_id: room.into(),
        time_ms,
        as_of_ms,
        features: (0..model.width()).map(|j| k as f32 + j as f32 / 8.0).collect(),
        outputs: (0..outputs).map(|o| (k * 10 + o) as f32 / 100.0).collect(),
    }
}

fn write_log(dir: &Path, rows: &[Row]) {
    let records: Vec<PredictionRecord<'_>> = rows
        .iter()
        .map(|r| PredictionRecord {
            request_id: &r.request_id,
            time_ms: r.time_ms,
            as_of_ms: r.as_of_ms,
            api: if r.model.name() == "conversion" { "v1.ScoreConversion" } else { "v1.ScoreTags" },
            user_id: &r.user_id,
            platform: "douyin",
            room_id: &r.room_id,
            model: &r.model,
            arm: "stable",
            experiment: "",
            experiment_arm: "",
            features: &r.features,
            outputs: RowOutputs::Values(&r.outputs),
            queue_us: 1,
            compute_us: 2,
        })
        .collect();
    let log = PredictionLog::open(LogConfig::new(dir)).unwrap();
    log.offer(&records);
    let stats = log.close();
    assert_eq!((stats.rows_dropped, stats.files_published), (0, 1));
}

fn write_events(path: &Path, events: &[Event]) {
    let mut w = EventWriter::create(path).unwrap();
    for e in events {
        w.append(e).unwrap();
    }
    w.finish().unwrap();
}

fn read(path: &Path) -> (RecordBatch, serde_json::Value) {
    let builder = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path).unwrap()).unwrap();
    let kv = builder.metadata().file_metadata().key_value_metadata().unwrap().clone();
    let described = kv.iter().find(|k| k.key == TRAINING_SET_METADATA_KEY).unwrap().value.clone().unwrap();
    let schema = builder.schema().clone();
    let batches: Vec<RecordBatch> = builder.build().unwrap().map(Result::unwrap).collect();
    (arrow::compute::concat_batches(&schema, &batches).unwrap(), serde_json::from_str(&described).unwrap())
}

fn text(batch: &RecordBatch, name: &str, i: usize) -> String {
    batch.column_by_name(name).unwrap().as_string::<i32>().value(i).to_owned()
}

/// The events of the tests: `near` orders just before, at and just after `T`, and at and
/// just after `T + 1 d`; `idle` acts
/// only before `T`; `late` is the user of the row given features answered at `T + 1 h`;
/// conversion visits of `viewer` (orders after the decision) and `leaver` (leaves first);
/// a filler event two days after `T` ends the data.
fn events() -> Vec<Event> {
    use EventKind::*;
    vec![
        event("n0", "near", T - 2 * HOUR_MS, Enter, "r1", "beauty", 0.0),
        event("n1", "near", T - 1, Order, "r1", "beauty", 50.0),
        event("n2", "near", T, Order, "r1", "apparel", 500.0),
        event("n3", "near", T + 1, Order, "r1", "food", 20.0),
        // The end of a one-day window opened at T counts; a millisecond later does not.
        event("n4", "near", T + DAY_MS, Order, "r1", "home", 20.0),
        event("n5", "near", T + DAY_MS + 1, Order, "r1", "electronics", 20.0),
        event("i0", "idle", T - DAY_MS, Enter, "r2", "home", 0.0),
        event("l0", "late", T + 30 * 60_000, Order, "r3", "electronics", 100.0),
        event("l1", "late", T + 2 * HOUR_MS, Order, "r3", "home", 400.0),
        event("v0", "viewer", T - 60_000, Enter, "r4", "beauty", 0.0),
        event("v1", "viewer", T + 10_000, Order, "r4", "beauty", 80.0),
        event("w0", "leaver", T - 60_000, Enter, "r5", "beauty", 0.0),
        event("w1", "leaver", T + 5_000, Leave, "r5", "beauty", 65.0),
        event("w2", "leaver", T + 20_000, Order, "r5", "beauty", 30.0),
        event("f0", "filler", T + 2 * DAY_MS, Enter, "r9", "food", 0.0),
    ]
}

#[test]
fn labels_count_only_events_after_the_as_of_time_and_equal_the_offline_labels() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (tags, conversion) = (model("user_tags"), model("conversion"));
    let logged = vec![
        record(&tags, 0, "near", "", T + 5_000, Some(T)),
        record(&tags, 1, "idle", "", T + 5_000, Some(T)),
        // Features sent by the caller: the window opens at the answer.
        record(&tags, 2, "late", "", T + HOUR_MS, None),
        // A user the events never saw.
        record(&tags, 3, "stranger", "", T + 5_000, Some(T)),
        // Its window ends after the newest event: left out, counted.
        record(&tags, 4, "near", "", T + DAY_MS + 5_000, Some(T + DAY_MS + HOUR_MS)),
        record(&conversion, 5, "viewer", "r4", T, Some(T)),
        record(&conversion, 6, "leaver", "r5", T, Some(T)),
        // No room: a conversion label needs one.
        record(&conversion, 7, "viewer", "", T, Some(T)),
        // Its window opens before the oldest event (T - 1 d): the events do not cover it.
        record(&tags, 8, "near", "", T - 2 * DAY_MS + 5_000, Some(T - 2 * DAY_MS)),
    ];
    write_log(&d.join("log"), &logged);
    write_events(&d.join("events.parquet"), &events());

    let args = |model: &str, out: &str| {
        vec![
            "features",
            "label",
            "--log",
            "log",
            "--events",
            "events.parquet",
            "--label-window",
            "1d",
            "--model",
            model,
            "--out",
            out,
        ]
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>()
    };
    let run = |a: Vec<String>| liveprofile(&a.iter().map(String::as_str).collect::<Vec<_>>(), d);
    let stderr = ok(&run(args("user_tags", "train/tags.parquet")));
    assert!(stderr.contains("6 rows chosen; left out: 1 rows whose label window"), "{stderr}");
    assert!(stderr.contains("1 rows whose label window opens before the oldest event"), "{stderr}");
    assert!(stderr.contains("1 rows of users without any event"), "{stderr}");
    let (batch, described) = read(&d.join("train/tags.parquet"));
    assert!(d.join("train/tags.schema.json").exists());
    assert_eq!(described["schema_hash"], tags.schema().hash.as_str());
    assert_eq!(described["label_window_ms"], DAY_MS);
    assert_eq!(described["events"], "events.parquet");
    assert_eq!(described["events_newest_ms"], T + 2 * DAY_MS);
    assert_eq!(described["left_out"]["label_window_after_newest_event"], 1);
    assert_eq!(described["left_out"]["label_window_before_oldest_event"], 1);
    assert_eq!(described["events_oldest_ms"], T - DAY_MS);
    assert_eq!(batch.num_rows(), 4);

    // Every label equals the feature pipeline's labels at the row's as-of time.
    let set = EventSet::load(&d.join("events.parquet")).unwrap();
    let names: Vec<String> = liveprofile_features::user_schema().labels.iter().map(|l| l.name.clone()).collect();
    let label = |name: &str, i: usize| {
        batch.column_by_name(&format!("label_{name}")).unwrap().as_primitive::<Int8Type>().value(i) == 1
    };
    let as_of = batch.column_by_name("as_of_ms").unwrap().as_primitive::<Int64Type>();
    let from = batch.column_by_name("label_from_ms").unwrap().as_primitive::<Int64Type>();
    for i in 0..batch.num_rows() {
        let k: usize = text(&batch, "request_id", i)["req-".len()..].parse().unwrap();
        let r = &logged[k];
        assert_eq!(text(&batch, "user_id", i), r.user_id);
        assert_eq!(as_of.is_valid(i).then(|| as_of.value(i)), r.as_of_ms, "row {k}");
        assert_eq!(from.value(i), r.as_of_ms.unwrap_or(r.time_ms), "row {k}");
        let expected = match set.users.iter().find(|u| u.user_id == r.user_id) {
            Some(u) => user_labels(&u.events, &u.hosts, from.value(i), DAY_MS),
            None => user_labels(&[], &[], from.value(i), DAY_MS),
        };
        for (name, want) in names.iter().zip(expected) {
            assert_eq!(label(name, i), want, "row {k}: {name}");
        }
        // The logged features and outputs, by name, bit for bit.
        for (j, f) in tags.schema().features.iter().enumerate() {
            let v = batch.column_by_name(&f.name).unwrap().as_primitive::<Float32Type>().value(i);
            assert_eq!(v.to_bits(), r.features[j].to_bits(), "row {k}: {}", f.name);
        }
        for (o, name) in tags.output_columns().iter().enumerate() {
            let v = batch.column_by_name(&format!("output_{name}")).unwrap().as_primitive::<Float32Type>().value(i);
            assert_eq!(v.to_bits(), r.outputs[o].to_bits(), "row {k}: {name}");
        }
    }
    // The order just before the as-of time and the one at it do not count; the one just
    // after does.
    let near = (0..batch.num_rows()).find(|&i| text(&batch, "request_id", i) == "req-0").unwrap();
    assert!(!label("buys_beauty_7d", near) && !label("buys_apparel_7d", near) && !label("high_value", near));
    assert!(label("buys_food_7d", near) && label("buys_any", near));
    assert!(label("buys_home_7d", near) && !label("buys_electronics_7d", near), "the window ends at T + 1 d inclusive");
    let idle = (0..batch.num_rows()).find(|&i| text(&batch, "request_id", i) == "req-1").unwrap();
    assert!(label("churn_risk", idle) && !label("buys_any", idle));
    // Given features: the order half an hour before the answer does not count.
    let late = (0..batch.num_rows()).find(|&i| text(&batch, "request_id", i) == "req-2").unwrap();
    assert!(!label("buys_electronics_7d", late) && label("buys_home_7d", late) && label("high_value", late));

    // Conversion rows: `order`, whether the visit ends in an order after the decision.
    let stderr = ok(&run(args("conversion", "conversion.parquet")));
    assert!(stderr.contains("1 conversion rows without a room id"), "{stderr}");
    let (batch, described) = read(&d.join("conversion.parquet"));
    assert_eq!(described["label_kind"], "visit");
    assert_eq!(batch.num_rows(), 2);
    let order = batch.column_by_name("label_order").unwrap().as_primitive::<Int8Type>();
    for i in 0..2 {
        let want = text(&batch, "user_id", i) == "viewer";
        assert_eq!(order.value(i) == 1, want, "{}", text(&batch, "user_id", i));
    }
    assert_eq!(batch.column_by_name("output_probability").map(|c| c.len()), Some(2));
}

#[test]
fn mixtures_unknown_models_uncovered_windows_and_bad_inputs_are_refused_leaving_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (tags, conversion) = (model("user_tags"), model("conversion"));
    write_log(
        &d.join("log"),
        &[
            record(&tags, 0, "near", "", T, Some(T)),
            record(&conversion, 1, "viewer", "r4", T, Some(T)),
            record(&conversion, 2, "viewer", "r4", T, Some(T)),
        ],
    );
    write_events(&d.join("events.parquet"), &events());
    std::fs::create_dir(d.join("empty")).unwrap();
    let label = |extra: &[&str]| {
        let mut a = vec!["features", "label", "--events", "events.parquet", "--out", "out.parquet"];
        a.extend_from_slice(extra);
        liveprofile(&a, d)
    };
    refused(&label(&["--log", "log"]), "the log holds rows of 2 feature schemas: conversion@1 (schema ");
    refused(&label(&["--log", "log"]), "2 rows), user_tags@1 (schema ");
    refused(&label(&["--log", "log"]), "choose one model with --model");
    refused(
        &label(&["--log", "log", "--model", "nope"]),
        "model \"nope\" has no rows in the log; it holds conversion@1",
    );
    refused(&label(&["--log", "log", "--model", "user_tags", "--version", "2"]), "user_tags@2 has no rows");
    refused(
        &label(&["--log", "log", "--model", "user_tags", "--label-window", "3d"]),
        "no row can be labelled: 1 rows chosen; left out: 1 rows whose label window of 259200000 ms ends after the newest event",
    );
    refused(&label(&["--log", "empty", "--model", "user_tags"]), "no log files");
    refused(&label(&["--log", "missing", "--model", "user_tags"]), "missing: not a folder");
    refused(&label(&["--log", "log", "--model", "user_tags", "--label-window", "none"]), "needs a label window");
    refused(&label(&["--log", "log", "--model", "user_tags", "--label-window", "7x"]), "unit d or h");
    // A unit that is not ASCII, and a window whose milliseconds do not fit: refused, not a
    // panic or a wrapped-around window.
    refused(&label(&["--log", "log", "--model", "user_tags", "--label-window", "7日"]), "unit d or h");
    refused(
        &label(&["--log", "log", "--model", "user_tags", "--label-window", "213503982336d"]),
        "is longer than 3650 days",
    );
    // An output inside the log folder would be read as a log file by later runs.
    let tags_to = |out: &str| {
        let a =
            ["features", "label", "--log", "log", "--events", "events.parquet", "--model", "user_tags", "--out", out];
        liveprofile(&a, d)
    };
    refused(&tags_to("log/train.parquet"), "inside the prediction log folder");
    assert!(!d.join("log/train.parquet").exists());
    let missing_events =
        liveprofile(&["features", "label", "--log", "log", "--events", "nope.parquet", "--out", "out.parquet"], d);
    refused(&missing_events, "nope.parquet");
    std::fs::write(d.join("bad.parquet"), b"not parquet").unwrap();
    let bad_events =
        liveprofile(&["features", "label", "--log", "log", "--events", "bad.parquet", "--out", "out.parquet"], d);
    refused(&bad_events, "bad.parquet");
    refused(&tags_to("./events.parquet"), "is the events file");
    assert!(!d.join("out.parquet").exists() && !d.join("out.schema.json").exists());
    let leftovers: Vec<_> = std::fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(leftovers.iter().all(|n| !n.to_string_lossy().contains("out")), "{leftovers:?}");
    // A file already at the output survives a refused run.
    std::fs::write(d.join("out.parquet"), b"previous").unwrap();
    refused(&label(&["--log", "log"]), "feature schemas");
    assert_eq!(std::fs::read(d.join("out.parquet")).unwrap(), b"previous");
}
