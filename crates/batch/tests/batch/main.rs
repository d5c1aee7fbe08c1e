//! Batch scoring end to end: parity with the server bit for bit, every input format, bad
//! rows in both modes, several inputs and reruns, and no partial output under a final name.

use arrow::array::{ArrayRef, AsArray, Float32Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Float32Type, Schema};
use liveprofile_batch::{BatchError, Format, OnError, ScoreOptions, expand_inputs, plan_outputs, score_file};
use liveprofile_runtime::{LoadedModel, ModelRepository, RepositoryConfig};
use std::path::Path;
use std::sync::Arc;

use liveprofile_testkit::bundled_models as models;

fn model(name: &str) -> Arc<LoadedModel> {
    let repo = ModelRepository::open(RepositoryConfig::new(models())).unwrap();
    repo.get(name, None).unwrap()
}

/// Golden input rows of a bundled model, repeated to `n` rows.
fn golden_rows(name: &str, n: usize) -> Vec<Vec<f32>> {
    let g: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(models().join(name).join("1/golden.json")).unwrap()).unwrap();
    let rows: Vec<Vec<f32>> = g["inputs"]["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect())
        .collect();
    (0..n).map(|i| rows[i % rows.len()].clone()).collect()
}

/// A batch with `user_id` and one Float32 column per feature.
fn feature_batch(model: &LoadedModel, rows: &[Vec<f32>]) -> RecordBatch {
    let mut fields = vec![Field::new("user_id", DataType::Utf8, false)];
    let mut arrays: Vec<ArrayRef> =
        vec![Arc::new(StringArray::from_iter_values((0..rows.len()).map(|i| format!("u{i:06}"))))];
    for (j, f) in model.schema().features.iter().enumerate() {
        fields.push(Field::new(&f.name, DataType::Float32, true));
        arrays.push(Arc::new(Float32Array::from_iter_values(rows.iter().map(|r| r[j]))));
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).unwrap()
}

fn write_parquet(path: &Path, batch: &RecordBatch, row_group: usize) {
    let props = parquet::file::properties::WriterProperties::builder().set_max_row_group_size(row_group).build();
    let mut w = parquet::arrow::ArrowWriter::try_new(std::fs::File::create(path).unwrap(), batch.schema(), Some(props))
        .unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
}

fn write_input(path: &Path, batch: &RecordBatch) {
    let format = match path.extension().unwrap().to_str().unwrap() {
        "parquet" => Format::Parquet,
        "arrow" => Format::ArrowFile,
        "arrows" => Format::ArrowStream,
        _ => Format::Csv,
    };
    match format {
        Format::Parquet => write_parquet(path, batch, 1000),
        Format::ArrowFile => {
            let mut w =
                arrow::ipc::writer::FileWriter::try_new(std::fs::File::create(path).unwrap(), &batch.schema()).unwrap();
            w.write(batch).unwrap();
            w.finish().unwrap();
        }
        Format::ArrowStream => {
            let mut w =
                arrow::ipc::writer::StreamWriter::try_new(std::fs::File::create(path).unwrap(), &batch.schema())
                    .unwrap();
            w.write(batch).unwrap();
            w.finish().unwrap();
        }
        Format::Csv => {
            let mut w = arrow::csv::WriterBuilder::new().with_header(true).build(std::fs::File::create(path).unwrap());
            w.write(batch).unwrap();
        }
    }
}

fn read_output(path: &Path) -> RecordBatch {
    let batches: Vec<RecordBatch> = match Format::of_input(path).unwrap() {
        Format::Parquet => {
            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path).unwrap())
                .unwrap()
                .build()
                .unwrap()
                .map(Result::unwrap)
                .collect()
        }
        Format::ArrowFile => arrow::ipc::reader::FileReader::try_new(std::fs::File::open(path).unwrap(), None)
            .unwrap()
            .map(Result::unwrap)
            .collect(),
        Format::ArrowStream => arrow::ipc::reader::StreamReader::try_new(std::fs::File::open(path).unwrap(), None)
            .unwrap()
            .map(Result::unwrap)
            .collect(),
        Format::Csv => unreachable!("compared through Parquet"),
    };
    arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap()
}

fn column_bits(batch: &RecordBatch, name: &str) -> Vec<u32> {
    batch.column_by_name(name).unwrap().as_primitive::<Float32Type>().values().iter().map(|v| v.to_bits()).collect()
}

fn options(format: Format) -> ScoreOptions {
    ScoreOptions { keep: vec!["user_id".into()], format, batch_rows: 300, chunk_rows: 64, ..ScoreOptions::default() }
}

fn no_partial_files(dir: &Path) {
    let leftovers: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn batch_scores_equal_the_servers_bit_for_bit() {
    use liveprofile_client::v1;
    let dir = tempfile::tempdir().unwrap();
    for name in ["user_tags", "conversion"] {
        let m = model(name);
        let rows = golden_rows(name, 1000);
        let input = dir.path().join(format!("{name}.parquet"));
        write_input(&input, &feature_batch(&m, &rows));
        let output = dir.path().join(format!("{name}.scores.parquet"));
        // Slices of 500 rows: the batch scorer runs its fixed 256-row plan and the symbolic
        // plan for the rest, as on real jobs.
        let opts = ScoreOptions { batch_rows: 1000, chunk_rows: 500, ..options(Format::Parquet) };
        let report = score_file(&m, &input, &output, &opts, &|_| {}).unwrap();
        assert_eq!((report.rows_read, report.rows_scored, report.rows_rejected), (1000, 1000, 0));
        let out = read_output(&output);
        assert_eq!(out.num_rows(), 1000);
        let names: Vec<String> = out.schema().fields().iter().map(|f| f.name().clone()).collect();
        let mut expected = vec!["user_id".to_owned()];
        expected.extend(liveprofile_batch::score_columns(&m));
        expected.extend(["model".to_owned(), "model_version".to_owned()]);
        assert_eq!(names, expected);
        let ids = out.column_by_name("user_id").unwrap().as_string::<i32>();
        assert_eq!(ids.value(999), "u000999");

        // The same rows through the running service.
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let online: Vec<Vec<u32>> = runtime.block_on(async {
            let mut cfg = liveprofile_server::ServerConfig::for_tests(models());
            cfg.batching.max_queue_delay = std::time::Duration::from_millis(1);
            let server = liveprofile_server::start(cfg).await.unwrap();
            server.wait_ready(std::time::Duration::from_secs(60)).await.unwrap();
            let channel = tonic::transport::Channel::from_shared(format!("http://{}", server.grpc_addr))
                .unwrap()
                .connect()
                .await
                .unwrap();
            let mut client = v1::scoring_client::ScoringClient::new(channel);
            let dense = |r: &Vec<f32>| v1::Features {
                values: Some(v1::features::Values::Dense(v1::DenseFeatures { values: r.clone() })),
            };
            let mut out = Vec::new();
            // One request per row (the server's batcher scores them alone or together).
            for (i, r) in rows.iter().enumerate().take(40) {
                let bits = if name == "user_tags" {
                    let a = client
                        .score_tags(v1::ScoreTagsRequest {
                            schema_hash: m.schema().hash.clone(),
                            users: vec![v1::UserFeatures {
                                user_id: format!("u{i:06}"),
                                features: Some(dense(r)),
                                ..Default::default()
                            }],
                            ..Default::default()
                        })
                        .await
                        .unwrap()
                        .into_inner();
                    a.users[0].tags.iter().map(|t| t.probability.to_bits()).collect()
                } else {
                    let a = client
                        .score_conversion(v1::ScoreConversionRequest {
                            schema_hash: m.schema().hash.clone(),
                            candidates: vec![v1::ConversionCandidate {
                                user_id: format!("u{i:06}"),
                                room_id: "r".into(),
                                features: Some(dense(r)),
                                ..Default::default()
                            }],
                            ..Default::default()
                        })
                        .await
                        .unwrap()
                        .into_inner();
                    vec![a.scores[0].probability.to_bits()]
                };
                out.push(bits);
            }
            server.shutdown().await.unwrap();
            out
        });
        let columns = liveprofile_batch::score_columns(&m);
        let batch_bits: Vec<Vec<u32>> = columns.iter().map(|c| column_bits(&out, c)).collect();
        for (i, online_row) in online.iter().enumerate() {
            let offline_row: Vec<u32> = batch_bits.iter().map(|c| c[i]).collect();
            assert_eq!(&offline_row, online_row, "{name} row {i}");
        }
    }
}

#[test]
fn every_input_format_gives_the_same_scores_and_outputs_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let m = model("user_tags");
    let batch = feature_batch(&m, &golden_rows("user_tags", 777));
    let reference = dir.path().join("ref.parquet");
    write_input(&dir.path().join("in.parquet"), &batch);
    score_file(&m, &dir.path().join("in.parquet"), &reference, &options(Format::Parquet), &|_| {}).unwrap();
    let want = read_output(&reference);
    for ext in ["arrow", "arrows", "csv"] {
        let input = dir.path().join(format!("in.{ext}"));
        write_input(&input, &batch);
        let output = dir.path().join(format!("from_{ext}.parquet"));
        let report = score_file(&m, &input, &output, &options(Format::Parquet), &|_| {}).unwrap();
        assert_eq!(report.rows_scored, 777, "{ext}");
        let got = read_output(&output);
        for c in liveprofile_batch::score_columns(&m) {
            assert_eq!(column_bits(&got, &c), column_bits(&want, &c), "{ext} {c}");
        }
    }
    for (format, ext) in [(Format::ArrowFile, "arrow"), (Format::ArrowStream, "arrows")] {
        let output = dir.path().join(format!("out.{ext}"));
        score_file(&m, &dir.path().join("in.parquet"), &output, &options(format), &|_| {}).unwrap();
        let got = read_output(&output);
        assert_eq!(column_bits(&got, "gifter"), column_bits(&want, "gifter"));
    }
    let csv = dir.path().join("out.csv");
    score_file(&m, &dir.path().join("in.parquet"), &csv, &options(Format::Csv), &|_| {}).unwrap();
    let text = std::fs::read_to_string(&csv).unwrap();
    let header = text.lines().next().unwrap();
    assert!(header.starts_with("user_id,buys_apparel_7d,") && header.ends_with(",model,model_version"), "{header}");
    assert_eq!(text.lines().count(), 778);
    assert!(text.lines().nth(1).unwrap().ends_with(",user_tags,1"));
}

#[test]
fn missing_columns_are_all_listed_and_non_numeric_columns_refused() {
    let dir = tempfile::tempdir().unwrap();
    let m = model("user_tags");
    let batch = feature_batch(&m, &golden_rows("user_tags", 10));
    let keep: Vec<usize> = (0..batch.num_columns())
        .filter(|&i| !["visits_1h", "gifts_7d"].contains(&batch.schema().field(i).name().as_str()))
        .collect();
    let input = dir.path().join("in.parquet");
    write_input(&input, &batch.project(&keep).unwrap());
    let mut opts = options(Format::Parquet);
    opts.keep.push("platform".into());
    let err = score_file(&m, &input, &dir.path().join("o.parquet"), &opts, &|_| {}).unwrap_err();
    assert!(
        matches!(&err, BatchError::MissingColumns { missing, .. } if missing == &["visits_1h", "gifts_7d", "platform"]),
        "{err}"
    );
    assert!(err.to_string().contains("missing 3 column(s) the model needs: visits_1h, gifts_7d, platform"), "{err}");

    let mut fields: Vec<Field> = batch.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    let mut arrays: Vec<ArrayRef> = batch.columns().to_vec();
    let i = batch.schema().index_of("visits_1d").unwrap();
    fields[i] = Field::new("visits_1d", DataType::Date32, true);
    arrays[i] = Arc::new(arrow::array::Date32Array::from(vec![1; 10]));
    let bad = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).unwrap();
    write_input(&input, &bad);
    let err = score_file(&m, &input, &dir.path().join("o.parquet"), &options(Format::Parquet), &|_| {}).unwrap_err();
    assert!(err.to_string().contains("column \"visits_1d\" has type Date32; features must be numbers"), "{err}");
    assert!(!dir.path().join("o.parquet").exists());
    no_partial_files(dir.path());
}

/// 1,000 rows; row 437 has a NaN, row 801 a null, in `visits_1d`.
fn batch_with_bad_rows(m: &LoadedModel) -> RecordBatch {
    let batch = feature_batch(m, &golden_rows("user_tags", 1000));
    let i = batch.schema().index_of("visits_1d").unwrap();
    let mut values: Vec<Option<f32>> = batch.column(i).as_primitive::<Float32Type>().iter().collect();
    values[437] = Some(f32::NAN);
    values[801] = None;
    let mut arrays = batch.columns().to_vec();
    arrays[i] = Arc::new(Float32Array::from(values));
    RecordBatch::try_new(batch.schema(), arrays).unwrap()
}

#[test]
fn a_bad_row_stops_the_job_with_file_row_and_column_and_leaves_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let m = model("user_tags");
    let input = dir.path().join("in.parquet");
    write_input(&input, &batch_with_bad_rows(&m));
    let output = dir.path().join("out.parquet");
    let err = score_file(&m, &input, &output, &options(Format::Parquet), &|_| {}).unwrap_err();
    match &err {
        BatchError::BadRow { row, column, reason, .. } => {
            assert_eq!((*row, column.as_str()), (437, "visits_1d"));
            assert!(reason.starts_with("not finite (NaN)"), "{reason}");
        }
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("in.parquet: row 437, column \"visits_1d\""), "{err}");
    // Rows before the bad one were scored and written to the temporary file: nothing
    // under the final name, and the temporary file is removed.
    assert!(!output.exists());
    no_partial_files(dir.path());
}

#[test]
fn skip_writes_every_bad_row_with_its_reason_and_drops_nothing_silently() {
    let dir = tempfile::tempdir().unwrap();
    let m = model("user_tags");
    // CSV: text that is not a number, an empty value, besides NaN and a null.
    let batch = batch_with_bad_rows(&m);
    let input = dir.path().join("in.csv");
    write_input(&input, &batch);
    let mut text = std::fs::read_to_string(&input).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let col = batch.schema().index_of("gifts_1h").unwrap();
    let mut cells: Vec<String> = lines[1 + 12].split(',').map(str::to_owned).collect();
    cells[col] = "many".into();
    lines[1 + 12] = cells.join(",");
    text = lines.join("\n") + "\n";
    std::fs::write(&input, text).unwrap();
    let output = dir.path().join("out.parquet");
    let mut opts = options(Format::Parquet);
    opts.on_error = OnError::Skip;
    let report = score_file(&m, &input, &output, &opts, &|_| {}).unwrap();
    assert_eq!((report.rows_read, report.rows_scored, report.rows_rejected), (1000, 997, 3));
    let rejects = std::fs::read_to_string(report.rejects.as_ref().unwrap()).unwrap();
    let lines: Vec<&str> = rejects.lines().collect();
    assert_eq!(lines[0], "row,column,reason,user_id");
    assert_eq!(lines[1], "12,gifts_1h,\"not a number: \"\"many\"\"\",u000012");
    assert_eq!(lines[2], "437,visits_1d,not finite (NaN),u000437");
    assert_eq!(lines[3], "801,visits_1d,missing value,u000801");
    assert_eq!(lines.len(), 4);
    let out = read_output(&output);
    let ids = out.column_by_name("user_id").unwrap().as_string::<i32>();
    assert_eq!(out.num_rows(), 997);
    assert!(!(0..997).any(|i| ["u000012", "u000437", "u000801"].contains(&ids.value(i))));

    // A category value that is not an index of its vocabulary (conversion's platform).
    let c = model("conversion");
    let batch = feature_batch(&c, &golden_rows("conversion", 50));
    let i = batch.schema().index_of("platform").unwrap();
    let mut values: Vec<f32> = batch.column(i).as_primitive::<Float32Type>().values().to_vec();
    values[7] = 9.0;
    let mut arrays = batch.columns().to_vec();
    arrays[i] = Arc::new(Float32Array::from(values));
    let input = dir.path().join("conv.parquet");
    write_input(&input, &RecordBatch::try_new(batch.schema(), arrays).unwrap());
    let report = score_file(&c, &input, &dir.path().join("conv.scores.parquet"), &opts, &|_| {}).unwrap();
    assert_eq!((report.rows_scored, report.rows_rejected), (49, 1));
    let rejects = std::fs::read_to_string(report.rejects.unwrap()).unwrap();
    assert!(
        rejects.contains("7,platform,a category with 5 values; 9 is not one of their indices,u000007"),
        "{rejects}"
    );
}

#[test]
fn several_inputs_by_glob_give_one_output_each_and_a_rerun_skips_finished_ones() {
    let dir = tempfile::tempdir().unwrap();
    let m = model("taobao_purchase");
    let rows = golden_rows("taobao_purchase", 90);
    for (k, chunk) in rows.chunks(30).enumerate() {
        write_input(&dir.path().join(format!("part-{k}.parquet")), &feature_batch(&m, chunk));
    }
    let inputs = expand_inputs(&[format!("{}/part-*.parquet", dir.path().display())]).unwrap();
    assert_eq!(inputs.len(), 3);
    let out = dir.path().join("scores");
    std::fs::create_dir(&out).unwrap();
    let plan = plan_outputs(&inputs, &out, Format::Parquet).unwrap();
    assert_eq!(plan[2].1, out.join("part-2.scores.parquet"));
    // The first run dies on the third file (made unreadable); two outputs are complete.
    std::fs::write(&plan[2].0, b"not parquet").unwrap();
    let mut done = 0;
    for (input, output) in &plan {
        match score_file(&m, input, output, &options(Format::Parquet), &|_| {}) {
            Ok(r) => {
                assert!(!r.skipped);
                done += 1;
            }
            Err(e) => assert!(e.to_string().contains("part-2.parquet: cannot read"), "{e}"),
        }
    }
    assert_eq!(done, 2);
    assert!(!plan[2].1.exists());
    no_partial_files(&out);
    // The rerun, with the file repaired, skips the finished two.
    write_input(&plan[2].0, &feature_batch(&m, &rows[60..]));
    let reports: Vec<_> =
        plan.iter().map(|(i, o)| score_file(&m, i, o, &options(Format::Parquet), &|_| {}).unwrap()).collect();
    assert_eq!(reports.iter().map(|r| r.skipped).collect::<Vec<_>>(), [true, true, false]);
    assert_eq!(read_output(&plan[2].1).num_rows(), 30);
    assert!(expand_inputs(&[format!("{}/nothing-*.parquet", dir.path().display())]).is_err());
}
mod safety;
