//! The prediction log: records published with their values and names, rotation by size and
//! age, retention, drops counted, sampling.

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Float32Type, Int64Type, UInt32Type};
use liveprofile_predlog::{LogConfig, PredictionLog, PredictionRecord, RowOutputs, log_files, read_log};
use liveprofile_runtime::{LoadedModel, load_package};
use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowSelection, RowSelector};
use parquet::file::reader::{FileReader, SerializedFileReader};
use std::sync::Arc;
use std::time::Duration;

fn conversion() -> Arc<LoadedModel> {
    Arc::new(load_package(&liveprofile_testkit::bundled_models().join("conversion/1")).unwrap())
}

/// What a record borrows: a row as a request holds it.
#[derive(Clone)]
struct Row {
    model: Arc<LoadedModel>,
    request_id: String,
    time_ms: i64,
    as_of_ms: Option<i64>,
    user_id: String,
    room_id: String,
    features: Vec<f32>,
    outputs: Vec<f32>,
    queue_us: u64,
    compute_us: u64,
}

impl Row {
    fn record(&self) -> PredictionRecord<'_> {
        PredictionRecord {
            request_id: &self.request_id,
            time_ms: self.time_ms,
            as_of_ms: self.as_of_ms,
            api: "v1.ScoreConversion",
            user_id: &self.user_id,
            platform: "douyin",
            room_id: &self.room_id,
            model: &self.model,
            arm: "stable",
            experiment: "",
            experiment_arm: "",
            features: &self.features,
            outputs: RowOutputs::Values(&self.outputs),
            queue_us: self.queue_us,
            compute_us: self.compute_us,
        }
    }
}

/// Offers one request's rows.
fn offer(log: &PredictionLog, rows: &[Row]) {
    log.offer(&rows.iter().map(Row::record).collect::<Vec<_>>());
}

fn record(model: &Arc<LoadedModel>, request: usize, row: usize) -> Row {
    let width = model.width();
    Row {
        model: model.clone(),
        request_id: format!("req-{request}"),
        time_ms: 1_800_000_000_000 + request as i64,
        as_of_ms: row.is_multiple_of(2).then_some(1_800_000_000_000 - row as i64),
        user_id: format!("user-{row}"),
        room_id: format!("room-{}", request % 7),
        features: (0..width).map(|j| (request * 1000 + row * 10 + j) as f32 * 0.5).collect(),
        outputs: vec![(request + row) as f32 / 1e4],
        queue_us: 10 + request as u64,
        compute_us: 20 + row as u64,
    }
}

#[test]
fn offered_records_are_published_with_their_values_and_the_names_of_features_and_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let model = conversion();
    let log = PredictionLog::open(LogConfig::new(dir.path())).unwrap();
    let requests: Vec<Vec<Row>> = (0..3).map(|q| (0..2).map(|r| record(&model, q, r)).collect()).collect();
    for r in &requests {
        offer(&log, r);
    }
    let stats = log.close();
    assert_eq!((stats.rows_written, stats.rows_dropped, stats.files_published), (6, 0, 1));
    let rows = read_log(dir.path()).unwrap();
    assert_eq!(rows.rows(), 6);
    let batch = arrow::compute::concat_batches(&rows.batches[0].schema(), &rows.batches).unwrap();
    let expected: Vec<&Row> = requests.iter().flatten().collect();
    let features = batch.column_by_name("features").unwrap().as_list::<i32>();
    let outputs = batch.column_by_name("outputs").unwrap().as_list::<i32>();
    let text = |name: &str, i: usize| batch.column_by_name(name).unwrap().as_string::<i32>().value(i).to_owned();
    for (i, e) in expected.iter().enumerate() {
        assert_eq!(text("request_id", i), e.request_id.as_ref());
        assert_eq!(text("user_id", i), e.user_id);
        assert_eq!(text("room_id", i), e.room_id);
        assert_eq!(text("model", i), "conversion");
        assert_eq!(text("schema_hash", i), model.schema().hash);
        assert_eq!(batch.column_by_name("model_version").unwrap().as_primitive::<UInt32Type>().value(i), 1);
        assert_eq!(batch.column_by_name("time_ms").unwrap().as_primitive::<Int64Type>().value(i), e.time_ms);
        let as_of = batch.column_by_name("as_of_ms").unwrap().as_primitive::<Int64Type>();
        assert_eq!(as_of.is_valid(i).then(|| as_of.value(i)), e.as_of_ms);
        assert_eq!(batch.column_by_name("queue_us").unwrap().as_primitive::<Int64Type>().value(i), 10 + (i / 2) as i64);
        let f = features.value(i);
        assert_eq!(f.as_primitive::<Float32Type>().values().to_vec(), e.features, "row {i}");
        assert_eq!(outputs.value(i).as_primitive::<Float32Type>().values().to_vec(), e.outputs);
    }
    let names: Vec<String> = model.schema().features.iter().map(|f| f.name.clone()).collect();
    assert_eq!(rows.feature_names[&model.schema().hash], names);
    assert_eq!(rows.output_names["conversion@1"], vec!["probability".to_owned()]);
}

#[test]
fn files_rotate_by_size_and_the_oldest_are_deleted_beyond_the_retention() {
    let dir = tempfile::tempdir().unwrap();
    let model = conversion();
    let config = LogConfig { max_file_bytes: 64 << 10, retention_bytes: 256 << 10, ..LogConfig::new(dir.path()) };
    let log = PredictionLog::open(config).unwrap();
    let requests = 3_000;
    for q in 0..requests {
        offer(&log, &[record(&model, q, 0)]);
        if q % 500 == 499 {
            // Let the writer keep up: this test is about rotation, not drops.
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let stats = log.close();
    assert_eq!(stats.rows_written + stats.rows_dropped, requests as u64);
    assert!(stats.files_published >= 4, "{stats:?}");
    assert!(stats.files_deleted >= 1, "{stats:?}");
    let files = log_files(dir.path()).unwrap();
    assert_eq!(files.len() as u64, stats.files_published - stats.files_deleted);
    let total: u64 = files.iter().map(|f| std::fs::metadata(f).unwrap().len()).sum();
    assert!(total <= 256 << 10, "{total} bytes kept");
    // The newest records are the ones kept, in file-name (time) order.
    let rows = read_log(dir.path()).unwrap();
    let ids: Vec<String> = rows
        .batches
        .iter()
        .flat_map(|b| {
            let a = b.column_by_name("request_id").unwrap().as_string::<i32>();
            (0..a.len()).map(|i| a.value(i).to_owned()).collect::<Vec<_>>()
        })
        .collect();
    if stats.rows_dropped == 0 {
        assert_eq!(ids.last().unwrap(), &format!("req-{}", requests - 1));
    }
    let numbers: Vec<usize> = ids.iter().map(|i| i["req-".len()..].parse().unwrap()).collect();
    assert!(numbers.windows(2).all(|w| w[0] < w[1]), "kept rows stay in order");
    assert!(numbers[0] > 0, "the oldest rows were deleted");
}

#[test]
fn an_idle_file_is_published_when_it_reaches_its_age() {
    let dir = tempfile::tempdir().unwrap();
    let model = conversion();
    let config = LogConfig { max_file_age: Duration::from_millis(300), ..LogConfig::new(dir.path()) };
    let log = PredictionLog::open(config).unwrap();
    offer(&log, &[record(&model, 0, 0)]);
    // The file is in place (renamed) a moment before the writer counts it.
    liveprofile_testkit::eventually("the file published by age", Duration::from_secs(10), || {
        log_files(dir.path()).unwrap().len() == 1 && log.stats().files_published == 1
    });
    assert_eq!(read_log(dir.path()).unwrap().rows(), 1);
    assert_eq!(log.stats().rows_written, 1);
}

#[test]
fn every_offered_row_is_written_or_counted_as_dropped_and_a_closed_log_only_counts() {
    let dir = tempfile::tempdir().unwrap();
    let model = conversion();
    let config = LogConfig { queue_rows: 4, ..LogConfig::new(dir.path()) };
    let log = PredictionLog::open(config).unwrap();
    let batch: Vec<Row> = (0..4).map(|r| record(&model, 1, r)).collect();
    for _ in 0..2_000 {
        offer(&log, &batch); // never waits for the writer
    }
    let stats = log.close();
    assert_eq!(stats.rows_written + stats.rows_dropped, 8_000, "{stats:?}");
    assert_eq!(read_log(dir.path()).unwrap().rows() as u64, stats.rows_written);
    offer(&log, &batch);
    assert_eq!(log.stats().rows_dropped, stats.rows_dropped + 4);
}

#[test]
fn sampling_follows_the_request_id_and_its_share() {
    let dir = tempfile::tempdir().unwrap();
    let a = PredictionLog::open(LogConfig { sample: 0.3, ..LogConfig::new(dir.path().join("a")) }).unwrap();
    let b = PredictionLog::open(LogConfig { sample: 0.3, ..LogConfig::new(dir.path().join("b")) }).unwrap();
    let ids: Vec<String> = (0..20_000).map(|i| format!("request-{i}")).collect();
    let chosen: Vec<bool> = ids.iter().map(|i| a.sampled(i)).collect();
    assert_eq!(chosen, ids.iter().map(|i| b.sampled(i)).collect::<Vec<_>>(), "the same ids in every process");
    let share = chosen.iter().filter(|c| **c).count() as f64 / ids.len() as f64;
    assert!((0.28..0.32).contains(&share), "{share}");
    let all = PredictionLog::open(LogConfig::new(dir.path().join("c"))).unwrap();
    assert!(ids.iter().all(|i| all.sampled(i)));
}

#[test]
fn settings_that_cannot_work_are_refused_naming_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let bad = |c: LogConfig| PredictionLog::open(c).unwrap_err().to_string();
    assert!(bad(LogConfig { sample: 1.5, ..LogConfig::new(dir.path()) }).contains("sample"));
    assert!(bad(LogConfig { max_file_bytes: 0, ..LogConfig::new(dir.path()) }).contains("file size"));
    assert!(bad(LogConfig { retention_bytes: 10, ..LogConfig::new(dir.path()) }).contains("retention"));
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    assert!(bad(LogConfig::new(&file)).contains("a-file"));
}

#[test]
fn rows_of_any_width_keep_their_values_bit_for_bit_across_row_groups() {
    // Two models of different widths interleaved, an empty feature list, NaN and signed
    // zeros, over more rows than one row group holds.
    let dir = tempfile::tempdir().unwrap();
    let conversion = conversion();
    let tags = Arc::new(load_package(&liveprofile_testkit::bundled_models().join("user_tags/1")).unwrap());
    assert_ne!(conversion.width(), tags.width());
    let rows = liveprofile_predlog::ROW_GROUP_ROWS + 1_000;
    let records: Vec<Row> = (0..rows)
        .map(|k| {
            let mut r = record(if k % 3 == 0 { &tags } else { &conversion }, k, k % 5);
            match k % 1_001 {
                7 => r.features.clear(),
                8 => r.features[0] = f32::NAN,
                9 => r.features[1] = -0.0,
                _ => {}
            }
            r.outputs.push(k as f32);
            r
        })
        .collect();
    let mut config = LogConfig::new(dir.path());
    config.queue_rows = rows;
    let log = PredictionLog::open(config).unwrap();
    offer(&log, &records);
    let stats = log.close();
    assert_eq!((stats.rows_written, stats.rows_dropped), (rows as u64, 0));
    let read = read_log(dir.path()).unwrap();
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
    let mut k = 0;
    for batch in &read.batches {
        let features = batch.column_by_name("features").unwrap().as_list::<i32>();
        let outputs = batch.column_by_name("outputs").unwrap().as_list::<i32>();
        let models = batch.column_by_name("model").unwrap().as_string::<i32>();
        for i in 0..batch.num_rows() {
            let e = &records[k];
            assert_eq!(models.value(i), e.model.name(), "row {k}");
            assert_eq!(bits(features.value(i).as_primitive::<Float32Type>().values()), bits(&e.features), "row {k}");
            assert_eq!(bits(outputs.value(i).as_primitive::<Float32Type>().values()), bits(&e.outputs), "row {k}");
            k += 1;
        }
    }
    assert_eq!(k, rows);
    let path = &log_files(dir.path()).unwrap()[0];
    let groups = SerializedFileReader::new(std::fs::File::open(path).unwrap()).unwrap().metadata().num_row_groups();
    assert_eq!(groups, 2, "one full row group and the rest");

    // The lists' pages start rows and carry their offset index: a reader that skips pages by
    // it lands on the right rows (pages of the first row group, one holding an empty list,
    // and of the second).
    let options = ArrowReaderOptions::new().with_page_index(true);
    let builder =
        ParquetRecordBatchReaderBuilder::try_new_with_options(std::fs::File::open(path).unwrap(), options).unwrap();
    let index = builder.metadata().offset_index().expect("an offset index");
    let features_leaf = 13;
    let pages = index[0][features_leaf].page_locations();
    assert!(pages.len() > 10, "{} pages", pages.len());
    assert!(pages.windows(2).all(|p| p[0].first_row_index < p[1].first_row_index && p[0].offset < p[1].offset));
    assert_eq!(pages[0].first_row_index, 0);
    let picked = [3_000, 15_022, 16_390];
    let mut selectors = Vec::new();
    let mut at = 0;
    for &k in &picked {
        selectors.push(RowSelector::skip(k - at));
        selectors.push(RowSelector::select(1));
        at = k + 1;
    }
    let reader = builder.with_row_selection(RowSelection::from(selectors)).build().unwrap();
    let mut seen = Vec::new();
    for batch in reader {
        let batch = batch.unwrap();
        let features = batch.column_by_name("features").unwrap().as_list::<i32>();
        for i in 0..batch.num_rows() {
            seen.push(bits(features.value(i).as_primitive::<Float32Type>().values()));
        }
    }
    let wanted: Vec<Vec<u32>> = picked.iter().map(|&k| bits(&records[k].features)).collect();
    assert_eq!(seen, wanted);
    assert!(records[15_022].features.is_empty(), "an empty list among the picked rows");
}

#[test]
fn a_wide_models_row_groups_are_bounded_by_memory_and_files_are_published_near_their_size() {
    let dir = tempfile::tempdir().unwrap();
    let model = conversion();
    // 40,000 values a row that compress little (integers below 2^24 in no order): a row
    // group's memory bound is reached long before its rows.
    let wide = |k: usize| Row {
        features: (0..40_000u64)
            .map(|j| ((k as u64 * 40_000 + j).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40) as f32)
            .collect(),
        ..record(&model, k, 0)
    };
    let rows: Vec<Row> = (0..300).map(wide).collect();
    let config = LogConfig { queue_rows: 300, ..LogConfig::new(dir.path().join("wide")) };
    let log = PredictionLog::open(config).unwrap();
    offer(&log, &rows);
    assert_eq!(log.close().rows_written, 300);
    let files = log_files(&dir.path().join("wide")).unwrap();
    let file = std::fs::File::open(&files[0]).unwrap();
    let meta = SerializedFileReader::new(file).unwrap().metadata().clone();
    let per_group: Vec<i64> = meta.row_groups().iter().map(|g| g.num_rows()).collect();
    // The lists are held compressed while a row group is gathered: what a row group took
    // in the file is what it held, within one row (160,000 bytes of values).
    let row_bytes = 4 * 40_000;
    let bound = liveprofile_predlog::ROW_GROUP_BYTES + row_bytes;
    assert!(per_group.len() >= 2, "{per_group:?}");
    for (k, g) in meta.row_groups().iter().enumerate() {
        let held: i64 = g.columns().iter().map(|c| c.compressed_size()).sum();
        assert!(held as usize <= bound, "a row group of {} rows took {held} bytes", g.num_rows());
        // Every row group but the last was closed by the bound (its last page compressed).
        if k + 1 < per_group.len() {
            assert!(held as usize >= liveprofile_predlog::ROW_GROUP_BYTES * 9 / 10, "row group {k}: {held} bytes");
        }
    }
    assert_eq!(per_group.iter().sum::<i64>(), 300);
    let read = read_log(&dir.path().join("wide")).unwrap();
    let mut k = 0;
    for batch in &read.batches {
        let features = batch.column_by_name("features").unwrap().as_list::<i32>();
        for i in 0..batch.num_rows() {
            assert_eq!(features.value(i).as_primitive::<Float32Type>().values().to_vec(), rows[k].features, "row {k}");
            k += 1;
        }
    }
    assert_eq!(k, 300);

    // Files are published once their encoded size reaches the limit, not their rows' raw
    // size.
    let limit = 2u64 << 20;
    let config = LogConfig { max_file_bytes: limit, queue_rows: 40_000, ..LogConfig::new(dir.path().join("sized")) };
    let log = PredictionLog::open(config).unwrap();
    let narrow: Vec<Row> = (0..40_000).map(|k| record(&model, k, k % 9)).collect();
    for chunk in narrow.chunks(1_000) {
        offer(&log, chunk);
    }
    assert_eq!(log.close().rows_written, 40_000);
    let files = log_files(&dir.path().join("sized")).unwrap();
    assert!(files.len() >= 3, "{files:?}");
    // The first file's rows are counted at their data size (no row group written yet to
    // say what they take encoded); the next ones at what the last row group took, which
    // follows the data's compressibility a file late.
    let mut sizes: Vec<u64> = files[1..files.len() - 1].iter().map(|f| std::fs::metadata(f).unwrap().len()).collect();
    assert!(sizes.iter().all(|&s| s >= limit / 2 && s <= limit * 21 / 20), "{sizes:?} against a limit of {limit}");
    sizes.sort_unstable();
    assert!(sizes[sizes.len() / 2] >= limit * 19 / 20, "{sizes:?} against a limit of {limit}");
}

#[test]
fn rows_of_a_file_that_cannot_be_published_or_opened_are_counted_as_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let model = conversion();
    let batch: Vec<Row> = (0..10).map(|r| record(&model, 2, r)).collect();
    // The writer takes the rows into a file of the folder, which then goes away: the file
    // is written to its end but cannot be published.
    let folder = dir.path().join("unpublished");
    let log = PredictionLog::open(LogConfig::new(&folder)).unwrap();
    offer(&log, &batch);
    liveprofile_testkit::eventually("the writer's file opened", Duration::from_secs(10), || {
        std::fs::read_dir(&folder).unwrap().next().is_some()
    });
    std::fs::remove_dir_all(&folder).unwrap();
    offer(&log, &batch);
    let stats = log.close();
    assert_eq!((stats.rows_written, stats.rows_dropped, stats.write_errors), (0, 20, 1), "{stats:?}");
    // A file is published, then the folder goes away: no new file can be opened, and each
    // drain's rows are counted.
    let folder = dir.path().join("unopened");
    let log =
        PredictionLog::open(LogConfig { max_file_age: Duration::from_millis(50), ..LogConfig::new(&folder) }).unwrap();
    offer(&log, &batch);
    liveprofile_testkit::eventually("the first file published", Duration::from_secs(10), || {
        log.stats().files_published == 1
    });
    std::fs::remove_dir_all(&folder).unwrap();
    offer(&log, &batch);
    liveprofile_testkit::eventually("a file that cannot be opened", Duration::from_secs(10), || {
        log.stats().write_errors == 1
    });
    offer(&log, &batch);
    let stats = log.close();
    assert_eq!((stats.rows_written, stats.rows_dropped, stats.write_errors), (10, 20, 2), "{stats:?}");
    assert!(!folder.exists());
}

#[test]
fn a_record_whose_outputs_are_not_in_its_scores_drops_its_request_and_the_log_goes_on() {
    use liveprofile_runtime::{OutputScores, Scores};
    let dir = tempfile::tempdir().unwrap();
    let model = conversion();
    let log = PredictionLog::open(LogConfig::new(dir.path())).unwrap();
    // Two rows claimed, the second output one value short of them.
    let scores = Scores {
        rows: 2,
        outputs: vec![
            OutputScores { width: 1, values: vec![0.5, 0.75] },
            OutputScores { width: 2, values: vec![1.0, 2.0, 3.0] },
        ],
    };
    let row = record(&model, 0, 0);
    let scored =
        |r: usize| PredictionRecord { outputs: RowOutputs::Scored { scores: &scores, row: r }, ..row.record() };
    log.offer(&[scored(0), scored(1)]);
    log.offer(&[scored(0), scored(2)]);
    log.offer(&[scored(0)]);
    let stats = log.close();
    assert_eq!((stats.rows_written, stats.rows_dropped), (1, 4), "{stats:?}");
    let read = read_log(dir.path()).unwrap();
    let outputs = read.batches[0].column_by_name("outputs").unwrap().as_list::<i32>();
    assert_eq!(outputs.value(0).as_primitive::<Float32Type>().values().to_vec(), vec![0.5, 1.0, 2.0]);
}

#[test]
fn the_queue_is_bounded_in_bytes_as_well_as_rows() {
    let dir = tempfile::tempdir().unwrap();
    let model = conversion();
    // A row of 222 features and short texts is about 0.9 KiB: 8 KiB hold a few.
    let config = LogConfig { queue_bytes: 8 << 10, ..LogConfig::new(dir.path()) };
    let log = PredictionLog::open(config).unwrap();
    let small = record(&model, 1, 0);
    // A caller's 16 KiB user id: its request is over the bound alone, dropped and counted.
    let huge = Row { user_id: "u".repeat(16 << 10), ..record(&model, 2, 0) };
    offer(&log, &[huge]);
    assert_eq!(log.stats().rows_dropped, 1);
    // Two requests of 8 rows (7 KiB each) offered at once: the second cannot fit beside the
    // first, unless the writer took the first in between.
    let batch: Vec<Row> = (0..8).map(|r| record(&model, 3, r)).collect();
    offer(&log, &[small]);
    offer(&log, &batch);
    offer(&log, &batch);
    let stats = log.close();
    assert_eq!(stats.rows_written + stats.rows_dropped, 18, "{stats:?}");
    assert!(stats.rows_written >= 1 && stats.rows_dropped >= 1, "{stats:?}");
    let read = read_log(dir.path()).unwrap();
    let users = read.batches[0].column_by_name("user_id").unwrap().as_string::<i32>();
    assert!(users.iter().all(|u| u.is_some_and(|u| u.len() < 100)), "the huge row was not written");

    // One record over MAX_RECORD_BYTES drops its request whatever room the queue has.
    let log = PredictionLog::open(LogConfig::new(dir.path().join("big"))).unwrap();
    let big = Row { user_id: "u".repeat(liveprofile_predlog::MAX_RECORD_BYTES), ..record(&model, 4, 0) };
    offer(&log, &[record(&model, 4, 1), big]);
    offer(&log, &[record(&model, 5, 0)]);
    let stats = log.close();
    assert_eq!((stats.rows_written, stats.rows_dropped), (1, 2), "{stats:?}");
}
