//! Batch scoring: every row of Parquet, Arrow IPC or CSV files scored by a model version
//! through the serving runtime (the same validation, the same batch plan, so the same bits
//! as the server), on all cores, in memory bounded by the read batch size whatever the
//! input size.
//!
//! - [`source`]: input formats and column selection.
//! - [`rows`]: columns to dense rows, with every bad value named.
//! - [`sink`]: outputs published by rename, special files and inputs refused as outputs.
//!
//! Per input file: the reader decodes record batches of the needed columns; each batch is
//! cut into slices that rayon converts and scores in parallel; a writer thread appends
//! the output batches (kept columns, one column per output or tag, model name and
//! version) and the rejects. At most two batches wait for the writer.

pub mod error;
pub mod rows;
pub mod sink;
pub mod source;

pub use error::BatchError;
pub use source::{Format, expand_inputs};

use arrow::array::{ArrayRef, BooleanArray, Float32Array, RecordBatch, StringArray, UInt32Array, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use liveprofile_runtime::LoadedModel;
use rayon::prelude::*;
use rows::{ColumnPlan, Reject};
use sink::Sink;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::sync_channel;
use std::time::Instant;

/// What to do with a row that cannot be scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// Stop with the file, row and column.
    Fail,
    /// Write the row with its reason to the rejects file, count it, go on.
    Skip,
}

/// Job settings.
#[derive(Debug, Clone)]
pub struct ScoreOptions {
    /// Input columns copied to the output (e.g. `user_id`, `platform`).
    pub keep: Vec<String>,
    /// Bad rows.
    pub on_error: OnError,
    /// Output format.
    pub format: Format,
    /// Rows per read batch (bounds memory).
    pub batch_rows: usize,
    /// Rows per scoring call.
    pub chunk_rows: usize,
    /// Rescore outputs that already exist.
    pub overwrite: bool,
}

impl Default for ScoreOptions {
    fn default() -> Self {
        ScoreOptions {
            keep: Vec::new(),
            on_error: OnError::Fail,
            format: Format::Parquet,
            batch_rows: 65_536,
            chunk_rows: 512,
            overwrite: false,
        }
    }
}

/// What happened to one input.
#[derive(Debug, Clone, PartialEq)]
pub struct FileReport {
    /// Input.
    pub input: PathBuf,
    /// Output.
    pub output: PathBuf,
    /// Rows read.
    pub rows_read: u64,
    /// Rows scored and written.
    pub rows_scored: u64,
    /// Rows rejected (with `--on-error skip`).
    pub rows_rejected: u64,
    /// The rejects file, if any row was rejected.
    pub rejects: Option<PathBuf>,
    /// The output existed already and was left as it is.
    pub skipped: bool,
    /// Wall time.
    pub seconds: f64,
}

/// The key of the model name and version in the output's metadata.
pub const MODEL_METADATA_KEY: &str = "liveprofile.model";

/// The rejects file of an output: `<output>.rejects.csv` beside it.
pub fn rejects_path(output: &Path) -> PathBuf {
    let name = output.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    output.with_file_name(format!("{name}.rejects.csv"))
}

/// Output path of each input: with one input, `output` itself; with several, `output` is a
/// folder and each input gets `<stem>.scores.<ext>` in it. An output (or its rejects
/// file) that is a special file or one of the inputs is refused (see
/// [`sink::check_output`]).
pub fn plan_outputs(inputs: &[PathBuf], output: &Path, format: Format) -> Result<Vec<(PathBuf, PathBuf)>, BatchError> {
    if inputs.is_empty() {
        return Err(BatchError::Usage("no input files".into()));
    }
    if inputs.len() == 1 && !output.is_dir() {
        let plan = vec![(inputs[0].clone(), output.to_path_buf())];
        check_plan(&plan, inputs)?;
        return Ok(plan);
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut plan = Vec::new();
    for input in inputs {
        let stem = input.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let out = output.join(format!("{stem}.scores.{}", format.extension()));
        if !seen.insert(out.clone()) {
            return Err(BatchError::Usage(format!(
                "two inputs would write {}; give inputs distinct file names",
                out.display()
            )));
        }
        plan.push((input.clone(), out));
    }
    check_plan(&plan, inputs)?;
    Ok(plan)
}

fn check_plan(plan: &[(PathBuf, PathBuf)], inputs: &[PathBuf]) -> Result<(), BatchError> {
    let inputs: Vec<&Path> = inputs.iter().map(PathBuf::as_path).collect();
    for (_, output) in plan {
        sink::check_output(output, &inputs)?;
        sink::check_output(&rejects_path(output), &inputs)?;
    }
    Ok(())
}

/// Names of the score columns: the output name for a one-column output, else its tag or
/// class names ([`LoadedModel::output_columns`]).
pub fn score_columns(model: &LoadedModel) -> Vec<String> {
    model.output_columns()
}

struct SliceResult {
    good: Vec<bool>,
    rejects: Vec<Reject>,
    /// Column-major scores of the good rows.
    scores: Vec<Vec<f32>>,
}

fn score_slice(
    model: &LoadedModel,
    plan: &ColumnPlan,
    slice: &RecordBatch,
    columns: usize,
) -> Result<SliceResult, BatchError> {
    let mut converted = rows::convert(slice, plan, model).map_err(BatchError::Score)?;
    let engine = |e: liveprofile_runtime::ScoreError| BatchError::Score(e.to_string());
    // The server's check and plan: rows the check refuses are found one by one, rejected
    // with their reason, and the rest scored.
    let mut scored: Option<liveprofile_runtime::Scores> = None;
    if converted.good_rows() > 0 {
        let first = model.check_feature_major(&converted.values, converted.good_rows()).map(|c| c.score());
        scored = match first {
            Ok(s) => Some(s.map_err(engine)?),
            Err(_) => {
                converted.reject_invalid(model);
                match converted.good_rows() {
                    0 => None,
                    n => {
                        let checked = model
                            .check_feature_major(&converted.values, n)
                            .map_err(|e| BatchError::Score(e.to_string()))?;
                        Some(checked.score().map_err(engine)?)
                    }
                }
            }
        };
    }
    let good_rows = converted.good_rows();
    let mut scores: Vec<Vec<f32>> = (0..columns).map(|_| Vec::with_capacity(good_rows)).collect();
    if let Some(s) = scored {
        let mut c = 0;
        for out in &s.outputs {
            for k in 0..out.width {
                let col = &mut scores[c];
                for r in 0..good_rows {
                    col.push(out.values[r * out.width + k]);
                }
                c += 1;
            }
        }
    }
    Ok(SliceResult { good: converted.good, rejects: converted.rejects, scores })
}

enum Written {
    Scores(RecordBatch),
    Rejects(RecordBatch),
    /// Every batch was sent: publish. Without it the writer discards its files.
    Complete,
}

/// Scores one input file into `output`. `progress` is called with the rows of each batch
/// read. An existing output is left alone (reported as skipped) unless `overwrite`.
///
/// Before anything is opened, an output or rejects path that exists and is not a regular
/// file, or that is the input, is refused ([`BatchError::Output`]), with or without
/// `overwrite`. Any error (a bad row with [`OnError::Fail`], a damaged input, a failed
/// write) publishes nothing and removes the temporary files.
pub fn score_file(
    model: &LoadedModel,
    input: &Path,
    output: &Path,
    options: &ScoreOptions,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<FileReport, BatchError> {
    let started = Instant::now();
    let rejects_path = rejects_path(output);
    sink::check_output(output, &[input])?;
    sink::check_output(&rejects_path, &[input])?;
    if output.exists() && !options.overwrite {
        return Ok(FileReport {
            input: input.to_path_buf(),
            output: output.to_path_buf(),
            rows_read: 0,
            rows_scored: 0,
            rows_rejected: 0,
            rejects: rejects_path.exists().then_some(rejects_path),
            skipped: true,
            seconds: 0.0,
        });
    }
    if options.batch_rows == 0 || options.chunk_rows == 0 {
        return Err(BatchError::Usage("batch and chunk sizes must be at least 1".into()));
    }
    let feature_names: std::collections::HashSet<&str> =
        model.schema().features.iter().map(|f| f.name.as_str()).collect();
    let keep: std::collections::HashSet<&str> = options.keep.iter().map(String::as_str).collect();
    let score_names = score_columns(model);
    let check = |schema: &Schema| -> Result<(), BatchError> {
        ColumnPlan::new(input, schema, model, &options.keep).map(|_| ())
    };
    let source = source::open(input, options.batch_rows, &|n| feature_names.contains(n) || keep.contains(n), &check)?;
    let in_schema = source.schema.clone();
    let plan = ColumnPlan::new(input, &in_schema, model, &options.keep)?;
    check_kept_names(&options.keep, &score_names)?;
    let out_schema = output_schema(&in_schema, &plan, &score_names);
    let reject_schema = rejects_schema(&in_schema, &plan);
    let model_tag = format!("{}@{}", model.name(), model.version());
    let metadata = vec![(MODEL_METADATA_KEY.to_owned(), model_tag)];

    // The writer thread owns the outputs; the channel bounds the batches in flight.
    let (tx, rx) = sync_channel::<Written>(2);
    let writer = spawn_writer(output, &rejects_path, options.format, out_schema.clone(), metadata, rx)?;
    // The reader decodes the next batch while this thread's rayon pool scores one.
    let (batches_tx, batches_rx) = sync_channel::<Result<RecordBatch, BatchError>>(1);
    let reader = std::thread::Builder::new()
        .name("score-reader".into())
        .spawn(move || {
            for batch in source {
                if batches_tx.send(batch).is_err() {
                    return;
                }
            }
        })
        .map_err(|e| BatchError::io(input, e))?;
    let job = Job {
        model,
        plan: &plan,
        input,
        options,
        score_columns: score_names.len(),
        out_schema: &out_schema,
        skip_hint: " (use --on-error skip to write bad rows to a rejects file)",
    };
    let result = job.score_batches(&batches_rx, &tx, &reject_schema, progress);
    // On an early stop, dropping the receiver ends the reader. A reader that did not end
    // normally must not pass for the end of the input.
    drop(batches_rx);
    let result = match (reader.join(), result) {
        (Err(_), Ok(_)) => {
            Err(BatchError::Read { path: input.to_path_buf(), reason: "the reader thread panicked".into() })
        }
        (_, result) => result,
    };
    if result.is_ok() {
        let _ = tx.send(Written::Complete);
    }
    drop(tx);
    let written = writer.join().map_err(|_| BatchError::Score("the writer thread panicked".into()))?;
    let rows_read = result?;
    let (rows_scored, rows_rejected, had_rejects) = written?;
    Ok(FileReport {
        input: input.to_path_buf(),
        output: output.to_path_buf(),
        rows_read,
        rows_scored,
        rows_rejected,
        rejects: had_rejects.then_some(rejects_path),
        skipped: false,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// What the writer published: rows scored, rows rejected, whether a rejects file was
/// written.
type Published = (u64, u64, bool);

/// Starts the thread that writes scores and rejects as they come and publishes both at
/// `Written::Complete` (rejects first, so that an output under its final name always has
/// its rejects beside it); without it, the job failed and nothing is published. Returns
/// the rows scored and rejected, and whether a rejects file was written.
fn spawn_writer(
    output: &Path,
    rejects_path: &Path,
    format: Format,
    out_schema: SchemaRef,
    metadata: Vec<(String, String)>,
    rx: std::sync::mpsc::Receiver<Written>,
) -> Result<std::thread::JoinHandle<Result<Published, BatchError>>, BatchError> {
    let out_file = output.to_path_buf();
    let rejects_path = rejects_path.to_path_buf();
    std::thread::Builder::new()
        .name("score-writer".into())
        .spawn(move || -> Result<Published, BatchError> {
            let mut scores = Sink::create(&out_file, format, out_schema, &metadata)?;
            let mut rejects: Option<Sink> = None;
            let mut rejected = 0;
            let mut complete = false;
            for w in rx {
                match w {
                    Written::Complete => complete = true,
                    Written::Scores(b) => scores.write(&b)?,
                    Written::Rejects(b) => {
                        if rejects.is_none() {
                            rejects = Some(Sink::create(&rejects_path, Format::Csv, b.schema(), &[])?);
                        }
                        rejected += b.num_rows() as u64;
                        rejects.as_mut().expect("created").write(&b)?;
                    }
                }
            }
            if !complete {
                // The job failed: dropping the sinks removes their temporary files.
                return Ok((0, 0, false));
            }
            // Both files are written to the end and synced before either is renamed.
            let rejects = rejects.map(Sink::complete).transpose()?;
            let scores = scores.complete()?;
            let had_rejects = rejects.is_some();
            if let Some(r) = rejects {
                r.publish()?;
            }
            let rows = scores.publish()?;
            Ok((rows, rejected, had_rejects))
        })
        .map_err(|e| BatchError::io(output, e))
}

/// What scoring one file's batches needs.
struct Job<'a> {
    model: &'a LoadedModel,
    plan: &'a ColumnPlan,
    input: &'a Path,
    options: &'a ScoreOptions,
    /// Number of score columns.
    score_columns: usize,
    out_schema: &'a SchemaRef,
    /// Appended to a bad row's reason when the job fails on it.
    skip_hint: &'a str,
}

impl Job<'_> {
    /// Scores every batch the reader sends (slices of `chunk_rows` in parallel), sends the
    /// scores and rejects to the writer, and stops at the first bad row when the job fails
    /// on errors. Returns the rows read.
    fn score_batches(
        &self,
        batches: &std::sync::mpsc::Receiver<Result<RecordBatch, BatchError>>,
        tx: &std::sync::mpsc::SyncSender<Written>,
        reject_schema: &SchemaRef,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<u64, BatchError> {
        let mut rows_read = 0u64;
        for batch in batches.iter() {
            let batch = batch?;
            let (out, rejects) = self.score_one(&batch, rows_read)?;
            if tx.send(Written::Scores(out)).is_err() {
                break; // the writer failed; its error is reported by the caller
            }
            if !rejects.is_empty() {
                let r = rejects_batch(&batch, self.plan, &rejects, rows_read, reject_schema)?;
                if tx.send(Written::Rejects(r)).is_err() {
                    break;
                }
            }
            rows_read += batch.num_rows() as u64;
            progress(batch.num_rows() as u64);
        }
        Ok(rows_read)
    }

    /// Scores one batch (slices of `chunk_rows` in parallel) whose first row is row
    /// `first_row` of the input: the output batch and the rejected rows, or the first bad
    /// row as the error when the job fails on errors.
    fn score_one(&self, batch: &RecordBatch, first_row: u64) -> Result<(RecordBatch, Vec<Reject>), BatchError> {
        let (model, plan, options) = (self.model, self.plan, self.options);
        let n = batch.num_rows();
        let slices: Vec<(usize, RecordBatch)> =
            (0..n).step_by(options.chunk_rows).map(|o| (o, batch.slice(o, options.chunk_rows.min(n - o)))).collect();
        let parts: Vec<Result<SliceResult, BatchError>> =
            slices.par_iter().map(|(_, s)| score_slice(model, plan, s, self.score_columns)).collect();
        let mut good = Vec::with_capacity(n);
        let mut rejects: Vec<Reject> = Vec::new();
        let mut columns: Vec<Vec<f32>> = vec![Vec::new(); self.score_columns];
        for ((offset, _), part) in slices.iter().zip(parts) {
            let part = part?;
            good.extend_from_slice(&part.good);
            rejects.extend(part.rejects.into_iter().map(|r| Reject { row: r.row + offset, ..r }));
            for (c, col) in part.scores.into_iter().enumerate() {
                columns[c].extend(col);
            }
        }
        if let Some(first) = rejects.first()
            && options.on_error == OnError::Fail
        {
            return Err(BatchError::BadRow {
                path: self.input.to_path_buf(),
                row: first_row + first.row as u64,
                column: first.column.clone(),
                reason: format!("{}{}", first.reason, self.skip_hint),
            });
        }
        let out = output_batch(batch, plan, &good, !rejects.is_empty(), columns, self.out_schema, model)?;
        Ok((out, rejects))
    }
}

/// Refuses a kept column named like an output column.
fn check_kept_names(keep: &[String], score_names: &[String]) -> Result<(), BatchError> {
    for name in keep {
        if score_names.contains(name) || name == "model" || name == "model_version" {
            return Err(BatchError::Usage(format!("kept column {name:?} has the name of an output column")));
        }
    }
    Ok(())
}

/// Scores a record batch held in memory (an Arrow table handed over from Python, say)
/// with the columns, checks and bits of [`score_file`]'s output for the same rows: slices
/// of `chunk_rows` scored in parallel, `keep` columns copied, the first bad row an error
/// naming its row (counted from `first_row`, the batch's place in its table) and column
/// (`source` names the data in errors). The output's schema
/// carries the model's name and version under [`MODEL_METADATA_KEY`].
pub fn score_batch(
    model: &LoadedModel,
    source: &str,
    batch: &RecordBatch,
    first_row: u64,
    keep: &[String],
    chunk_rows: usize,
) -> Result<RecordBatch, BatchError> {
    if chunk_rows == 0 {
        return Err(BatchError::Usage("the chunk size must be at least 1".into()));
    }
    let input = Path::new(source);
    let plan = ColumnPlan::new(input, &batch.schema(), model, keep)?;
    let score_names = score_columns(model);
    check_kept_names(keep, &score_names)?;
    let metadata = std::collections::HashMap::from([(
        MODEL_METADATA_KEY.to_owned(),
        format!("{}@{}", model.name(), model.version()),
    )]);
    let out_schema =
        Arc::new(output_schema(&batch.schema(), &plan, &score_names).as_ref().clone().with_metadata(metadata));
    let options = ScoreOptions { keep: keep.to_vec(), chunk_rows, ..ScoreOptions::default() };
    let job = Job {
        model,
        plan: &plan,
        input,
        options: &options,
        score_columns: score_names.len(),
        out_schema: &out_schema,
        skip_hint: "",
    };
    Ok(job.score_one(batch, first_row)?.0)
}

fn output_schema(input: &Schema, plan: &ColumnPlan, scores: &[String]) -> SchemaRef {
    let mut fields: Vec<Field> = plan.keep.iter().map(|&i| input.field(i).clone()).collect();
    fields.extend(scores.iter().map(|n| Field::new(n, DataType::Float32, false)));
    fields.push(Field::new("model", DataType::Utf8, false));
    fields.push(Field::new("model_version", DataType::UInt32, false));
    Arc::new(Schema::new(fields))
}

fn rejects_schema(input: &Schema, plan: &ColumnPlan) -> SchemaRef {
    let mut fields = vec![
        Field::new("row", DataType::UInt64, false),
        Field::new("column", DataType::Utf8, false),
        Field::new("reason", DataType::Utf8, false),
    ];
    fields.extend(plan.keep.iter().map(|&i| Field::new(input.field(i).name(), DataType::Utf8, true)));
    Arc::new(Schema::new(fields))
}

fn output_batch(
    batch: &RecordBatch,
    plan: &ColumnPlan,
    good: &[bool],
    filtered: bool,
    columns: Vec<Vec<f32>>,
    schema: &SchemaRef,
    model: &LoadedModel,
) -> Result<RecordBatch, BatchError> {
    let mask = BooleanArray::from(good.to_vec());
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for &k in &plan.keep {
        let col = batch.column(k);
        arrays.push(if filtered {
            arrow::compute::filter(col, &mask).map_err(|e| BatchError::Score(e.to_string()))?
        } else {
            col.clone()
        });
    }
    let rows = columns.first().map_or_else(|| good.iter().filter(|g| **g).count(), Vec::len);
    for col in columns {
        arrays.push(Arc::new(Float32Array::from(col)));
    }
    arrays.push(Arc::new(StringArray::from(vec![model.name(); rows])));
    arrays.push(Arc::new(UInt32Array::from(vec![model.version(); rows])));
    RecordBatch::try_new(schema.clone(), arrays).map_err(|e| BatchError::Score(e.to_string()))
}

fn rejects_batch(
    batch: &RecordBatch,
    plan: &ColumnPlan,
    rejects: &[Reject],
    first_row: u64,
    schema: &SchemaRef,
) -> Result<RecordBatch, BatchError> {
    let mut arrays: Vec<ArrayRef> = vec![
        Arc::new(UInt64Array::from_iter_values(rejects.iter().map(|r| first_row + r.row as u64))),
        Arc::new(StringArray::from_iter_values(rejects.iter().map(|r| r.column.as_str()))),
        Arc::new(StringArray::from_iter_values(rejects.iter().map(|r| r.reason.as_str()))),
    ];
    let options = arrow::util::display::FormatOptions::default();
    for &k in &plan.keep {
        let col = batch.column(k);
        let fmt = arrow::util::display::ArrayFormatter::try_new(col.as_ref(), &options)
            .map_err(|e| BatchError::Score(e.to_string()))?;
        let values: StringArray =
            rejects.iter().map(|r| (!col.is_null(r.row)).then(|| fmt.value(r.row).to_string())).collect();
        arrays.push(Arc::new(values));
    }
    RecordBatch::try_new(schema.clone(), arrays).map_err(|e| BatchError::Score(e.to_string()))
}
