//! Training sets from the log: every logged row of one feature schema joined with the
//! labels its user earned after the time its features describe, point in time, so that a
//! notebook trains on exactly what was served.
//!
//! - The label window of a row opens after its `as_of_ms` (the time the features were built
//!   for), or after its answer time `time_ms` for features the caller sent (and for logs
//!   written before the column existed): only events strictly after it and at most
//!   [`TrainingOptions::label_window_ms`] later count.
//! - The labels are the feature pipeline's own definitions
//!   (`liveprofile_features::labels`): rows of the user schema get the user tags and
//!   `buys_any` of `user_labels`; rows of the conversion schema get `order`, whether the
//!   visit to the row's room ends in an order (the conversion examples' label). Other
//!   schemas have no label definition and are refused.
//! - A row whose window ends after the newest event of the events, or opens before the
//!   oldest (events that do not cover the window would give it wrong labels), is left out
//!   and counted, as are rows without the user (or, for conversion rows, the room) that their labels
//!   need; when no row is left the set is refused.
//! - Reading is two passes over the log files: the model, version and schema columns to
//!   choose the rows, then the rows themselves a batch at a time, written as they are
//!   labelled; memory holds the events and one batch.

use crate::{LogError, log_files};
use arrow::array::{
    Array, ArrayRef, AsArray, Float32Builder, Int8Builder, Int64Builder, RecordBatch, StringBuilder, UInt32Builder,
};
use arrow::datatypes::{DataType, Field, Float32Type, Int64Type, Schema, SchemaRef, UInt32Type};
use liveprofile_features::EventSet;
use liveprofile_features::dataset::UserEvents;
use liveprofile_features::labels::{user_labels, visit_order_label};
use liveprofile_features::schema::{FeatureSchema, conversion_schema, user_schema};
use liveprofile_features::table::SCHEMA_METADATA_KEY;
use liveprofile_publish::Publication;
use parquet::arrow::ArrowWriter;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Parquet metadata key of the training set's description (JSON: schema hash, label
/// window, label kind and names, events file, newest event, models, rows and rows left out).
pub const TRAINING_SET_METADATA_KEY: &str = "liveprofile.training_set";

/// Rows per record batch written.
const OUT_BATCH_ROWS: usize = 8_192;

/// The logged id columns copied into a training set, in order (text and integer alike).
pub const ID_COLUMNS: [&str; 14] = [
    "request_id",
    "time_ms",
    "as_of_ms",
    "label_from_ms",
    "api",
    "user_id",
    "platform",
    "room_id",
    "model",
    "model_version",
    "arm",
    "experiment",
    "experiment_arm",
    "schema_hash",
];

/// What to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrainingOptions {
    /// Length of the label window after each row's as-of time, milliseconds.
    pub label_window_ms: i64,
    /// Only rows of this model (required when the log holds several feature schemas).
    pub model: Option<String>,
    /// Only rows of this version of the model.
    pub version: Option<u32>,
    /// The events' name recorded in the metadata (their path).
    pub events_name: String,
}

/// Which labels a training set carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelKind {
    /// The user tags and `buys_any` (user feature schema).
    User,
    /// `order`: the room visit ends in an order (conversion feature schema).
    Visit,
}

impl LabelKind {
    /// `user` or `visit`.
    pub fn as_str(self) -> &'static str {
        match self {
            LabelKind::User => "user",
            LabelKind::Visit => "visit",
        }
    }
}

/// What a training set holds and what was left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrainingReport {
    /// The feature schema of the rows.
    pub schema_hash: String,
    /// Label columns written (without the `label_` prefix).
    pub labels: Vec<String>,
    /// Rows per label with the label set, in the order of `labels`.
    pub positives: Vec<u64>,
    /// `model@version` of the rows chosen.
    pub models: Vec<String>,
    /// Rows chosen (of the schema, model and version asked for).
    pub rows_chosen: u64,
    /// Rows written.
    pub rows_written: u64,
    /// Rows left out because their label window ends after the newest event.
    pub left_out_uncovered: u64,
    /// Rows left out because their label window opens before the oldest event (the
    /// events do not cover its start).
    pub left_out_before_events: u64,
    /// Earliest label-window start among them.
    pub uncovered_from_ms: Option<i64>,
    /// Rows left out because they have no user id.
    pub left_out_no_user: u64,
    /// Conversion rows left out because they have no room id.
    pub left_out_no_room: u64,
    /// Rows written whose user has no event in the events (their labels are those of a
    /// user who did nothing: `churn_risk` set, the rest not).
    pub rows_of_unknown_users: u64,
    /// Newest accepted event of the events.
    pub newest_event_ms: i64,
    /// Oldest accepted event of the events.
    pub oldest_event_ms: i64,
}

/// Why a training set cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum TrainingError {
    /// Reading the log.
    #[error(transparent)]
    Log(#[from] LogError),
    /// No published file in the folder.
    #[error("prediction log {0}: no log files (predictions-*.parquet) in the folder")]
    EmptyLog(PathBuf),
    /// The events hold nothing to label with.
    #[error("the events hold no accepted event: nothing to label with")]
    NoEvents,
    /// The label window is not positive.
    #[error("the label window must be positive, not {0} ms")]
    BadWindow(i64),
    /// Rows of several schemas and no model chosen (or a model whose versions differ).
    #[error("the log holds rows of {count} feature schemas: {listing}; {hint}")]
    Mixed {
        /// How many schemas.
        count: usize,
        /// `model@version (schema <hash>, N rows)` per version.
        listing: String,
        /// What to choose.
        hint: &'static str,
    },
    /// The model (or version) asked for has no rows.
    #[error("{wanted} has no rows in the log; it holds {listing}")]
    UnknownModel {
        /// `model` or `model@version`.
        wanted: String,
        /// What the log holds.
        listing: String,
    },
    /// The log holds no rows at all.
    #[error("prediction log {0}: the files hold no rows")]
    NoRows(PathBuf),
    /// A schema the feature pipeline does not build: no label definition.
    #[error(
        "feature schema {0} is neither the user nor the conversion schema of the feature pipeline: no label definition for its rows"
    )]
    NoLabelDefinition(String),
    /// Every chosen row was left out.
    #[error("no row can be labelled: {0}")]
    NothingLabelled(String),
    /// The names the log's files record do not fit its rows.
    #[error("prediction log: {0}")]
    Names(String),
    /// A row that does not match its file's names.
    #[error("prediction log {path}: row {row}: {reason}")]
    BadRow {
        /// File.
        path: PathBuf,
        /// Row in the file.
        row: usize,
        /// Why.
        reason: String,
    },
    /// Writing the output.
    #[error("{path}: {reason}")]
    Write {
        /// File.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// Rows of one model version in the log.
#[derive(Debug, Clone)]
struct VersionRows {
    schema_hash: String,
    rows: u64,
}

/// Rows per `(model, version)`.
type Versions = BTreeMap<(String, u32), VersionRows>;

fn listing(versions: &Versions) -> String {
    versions
        .iter()
        .map(|((m, v), r)| format!("{m}@{v} (schema {}, {} rows)", short(&r.schema_hash), r.rows))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A hash's first 12 characters (a foreign log's text may be any UTF-8).
fn short(hash: &str) -> &str {
    hash.char_indices().nth(12).map_or(hash, |(i, _)| &hash[..i])
}

fn open(path: &Path) -> Result<ParquetRecordBatchReaderBuilder<File>, TrainingError> {
    let file = File::open(path).map_err(|source| LogError::Io { path: path.to_path_buf(), source })?;
    ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| LogError::Read { path: path.to_path_buf(), reason: e.to_string() }.into())
}

fn column<'a>(batch: &'a RecordBatch, path: &Path, name: &str) -> Result<&'a ArrayRef, TrainingError> {
    batch.column_by_name(name).ok_or_else(|| {
        LogError::Read { path: path.to_path_buf(), reason: format!("no {name} column: not a prediction log file") }
            .into()
    })
}

fn text<'a>(batch: &'a RecordBatch, path: &Path, name: &str) -> Result<&'a arrow::array::StringArray, TrainingError> {
    column(batch, path, name)?.as_string_opt::<i32>().ok_or_else(|| {
        LogError::Read { path: path.to_path_buf(), reason: format!("{name} is not a text column") }.into()
    })
}

/// The names the log's files record: features per schema hash, outputs per model@version.
#[derive(Debug, Default)]
struct Names {
    features: BTreeMap<String, Vec<String>>,
    outputs: BTreeMap<String, Vec<String>>,
}

/// First pass: rows per model version and the names of every file.
fn survey(files: &[PathBuf]) -> Result<(Versions, Names), TrainingError> {
    let mut versions = Versions::new();
    let mut names = Names::default();
    for path in files {
        let builder = open(path)?;
        let bad = |reason: String| LogError::Read { path: path.clone(), reason };
        for kv in builder.metadata().file_metadata().key_value_metadata().into_iter().flatten() {
            let Some(value) = &kv.value else { continue };
            let parsed = || serde_json::from_str::<Vec<String>>(value).map_err(|e| bad(format!("{}: {e}", kv.key)));
            if let Some(hash) = kv.key.strip_prefix("liveprofile.features.") {
                names.features.insert(hash.to_owned(), parsed()?);
            } else if let Some(tag) = kv.key.strip_prefix("liveprofile.outputs.") {
                names.outputs.insert(tag.to_owned(), parsed()?);
            }
        }
        let mask = ProjectionMask::columns(builder.parquet_schema(), ["model", "model_version", "schema_hash"]);
        let reader = builder.with_projection(mask).build().map_err(|e| bad(e.to_string()))?;
        for batch in reader {
            let batch = batch.map_err(|e| bad(e.to_string()))?;
            let (models, hashes) = (text(&batch, path, "model")?, text(&batch, path, "schema_hash")?);
            let version = column(&batch, path, "model_version")?
                .as_primitive_opt::<UInt32Type>()
                .ok_or_else(|| bad("model_version is not a uint32 column".into()))?;
            for i in 0..batch.num_rows() {
                let key = (models.value(i).to_owned(), version.value(i));
                let entry = versions
                    .entry(key)
                    .or_insert_with(|| VersionRows { schema_hash: hashes.value(i).to_owned(), rows: 0 });
                if entry.schema_hash != hashes.value(i) {
                    return Err(bad(format!(
                        "{}@{} is logged with two feature schemas ({} and {})",
                        models.value(i),
                        version.value(i),
                        entry.schema_hash,
                        hashes.value(i)
                    ))
                    .into());
                }
                entry.rows += 1;
            }
        }
    }
    Ok((versions, names))
}

/// The versions whose rows are taken, and their schema hash.
fn choose(versions: &Versions, opts: &TrainingOptions) -> Result<(Vec<(String, u32)>, String), TrainingError> {
    let chosen: Versions = versions
        .iter()
        .filter(|((m, v), _)| opts.model.as_ref().is_none_or(|w| w == m) && opts.version.is_none_or(|w| w == *v))
        .map(|(k, r)| (k.clone(), r.clone()))
        .collect();
    if let Some(model) = &opts.model
        && chosen.is_empty()
    {
        let wanted = match opts.version {
            Some(v) => format!("{model}@{v}"),
            None => format!("model {model:?}"),
        };
        return Err(TrainingError::UnknownModel { wanted, listing: listing(versions) });
    }
    let mut hashes: Vec<&str> = chosen.values().map(|r| r.schema_hash.as_str()).collect();
    hashes.sort_unstable();
    hashes.dedup();
    match hashes.as_slice() {
        [one] => Ok((chosen.keys().cloned().collect(), (*one).to_owned())),
        _ => Err(TrainingError::Mixed {
            count: hashes.len(),
            listing: listing(&chosen),
            hint: if opts.model.is_none() {
                "choose one model with --model (and --version)"
            } else {
                "choose one version with --version"
            },
        }),
    }
}

/// The output columns: the ids, one float per feature, one nullable float per output
/// (`output_<name>`), one int8 per label (`label_<name>`).
fn output_schema(features: &[String], outputs: &[String], labels: &[String]) -> SchemaRef {
    let mut fields: Vec<Field> = Vec::new();
    for name in ID_COLUMNS {
        let field = match name {
            "time_ms" | "label_from_ms" => Field::new(name, DataType::Int64, false),
            "as_of_ms" => Field::new(name, DataType::Int64, true),
            "model_version" => Field::new(name, DataType::UInt32, false),
            _ => Field::new(name, DataType::Utf8, false),
        };
        fields.push(field);
    }
    fields.extend(features.iter().map(|n| Field::new(n, DataType::Float32, false)));
    fields.extend(outputs.iter().map(|n| Field::new(format!("output_{n}"), DataType::Float32, true)));
    fields.extend(labels.iter().map(|n| Field::new(format!("label_{n}"), DataType::Int8, false)));
    Arc::new(Schema::new(fields))
}

/// Column builders of the rows not yet written.
struct Pending {
    texts: Vec<StringBuilder>,
    time_ms: Int64Builder,
    as_of_ms: Int64Builder,
    label_from_ms: Int64Builder,
    version: UInt32Builder,
    features: Vec<Float32Builder>,
    outputs: Vec<Float32Builder>,
    labels: Vec<Int8Builder>,
    rows: usize,
}

/// The text id columns, in [`ID_COLUMNS`] order.
const TEXT_IDS: [&str; 10] = [
    "request_id",
    "api",
    "user_id",
    "platform",
    "room_id",
    "model",
    "arm",
    "experiment",
    "experiment_arm",
    "schema_hash",
];

impl Pending {
    fn new(features: usize, outputs: usize, labels: usize) -> Self {
        Pending {
            texts: TEXT_IDS.iter().map(|_| StringBuilder::new()).collect(),
            time_ms: Int64Builder::new(),
            as_of_ms: Int64Builder::new(),
            label_from_ms: Int64Builder::new(),
            version: UInt32Builder::new(),
            features: (0..features).map(|_| Float32Builder::new()).collect(),
            outputs: (0..outputs).map(|_| Float32Builder::new()).collect(),
            labels: (0..labels).map(|_| Int8Builder::new()).collect(),
            rows: 0,
        }
    }

    fn take(&mut self, schema: &SchemaRef) -> Result<RecordBatch, arrow::error::ArrowError> {
        let mut texts = self.texts.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef);
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
        for name in ID_COLUMNS {
            columns.push(match name {
                "time_ms" => Arc::new(self.time_ms.finish()),
                "as_of_ms" => Arc::new(self.as_of_ms.finish()),
                "label_from_ms" => Arc::new(self.label_from_ms.finish()),
                "model_version" => Arc::new(self.version.finish()),
                _ => texts.next().expect("a builder per text id"),
            });
        }
        columns.extend(self.features.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
        columns.extend(self.outputs.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
        columns.extend(self.labels.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
        self.rows = 0;
        RecordBatch::try_new(schema.clone(), columns)
    }
}

/// The events, indexed for labelling.
struct Labeller<'a> {
    users: HashMap<&'a str, &'a UserEvents>,
    rooms: HashMap<&'a str, u32>,
    kind: LabelKind,
    window_ms: i64,
}

impl Labeller<'_> {
    /// The labels of a row whose window opens after `from_ms`; returns whether the user
    /// has events at all (a user without any gets the labels of a user who did nothing).
    fn labels(&self, user: &str, room: &str, from_ms: i64, out: &mut Vec<bool>) -> bool {
        out.clear();
        let u = self.users.get(user);
        match self.kind {
            LabelKind::User => match u {
                Some(u) => out.extend(user_labels(&u.events, &u.hosts, from_ms, self.window_ms)),
                None => out.extend(user_labels(&[], &[], from_ms, self.window_ms)),
            },
            LabelKind::Visit => {
                let label = match (u, self.rooms.get(room)) {
                    (Some(u), Some(r)) => visit_order_label(&u.events, &u.rooms, *r, from_ms, self.window_ms),
                    _ => false,
                };
                out.push(label);
            }
        }
        u.is_some()
    }
}

/// Writes the training set of the log in `log_dir` labelled from `events` to `out`
/// (published by rename; nothing is left at `out` on failure). See the module
/// documentation.
pub fn write_training_set(
    log_dir: &Path,
    events: &EventSet,
    opts: &TrainingOptions,
    out: &Path,
) -> Result<TrainingReport, TrainingError> {
    if opts.label_window_ms <= 0 {
        return Err(TrainingError::BadWindow(opts.label_window_ms));
    }
    let files = log_files(log_dir)?;
    if files.is_empty() {
        return Err(TrainingError::EmptyLog(log_dir.to_path_buf()));
    }
    let newest_ms = events.max_ts_ms.ok_or(TrainingError::NoEvents)?;
    let oldest_ms = events.users.iter().filter_map(|u| u.events.first()).map(|e| e.ts_ms).min().unwrap_or(newest_ms);
    let (versions, names) = survey(&files)?;
    if versions.is_empty() {
        return Err(TrainingError::NoRows(log_dir.to_path_buf()));
    }
    let (chosen, schema_hash) = choose(&versions, opts)?;
    let (kind, schema): (LabelKind, FeatureSchema) = if schema_hash == user_schema().hash {
        (LabelKind::User, user_schema())
    } else if schema_hash == conversion_schema().hash {
        (LabelKind::Visit, conversion_schema())
    } else {
        return Err(TrainingError::NoLabelDefinition(schema_hash));
    };
    let feature_names = schema.names().into_iter().map(str::to_owned).collect::<Vec<_>>();
    if let Some(logged) = names.features.get(&schema_hash)
        && *logged != feature_names
    {
        return Err(TrainingError::Names(format!(
            "the log names other features for schema {schema_hash} than the feature pipeline"
        )));
    }
    // Output columns: every name of the chosen versions, first seen first; per version,
    // the column of each of its outputs.
    let mut output_names: Vec<String> = Vec::new();
    let mut output_columns: HashMap<(String, u32), Vec<usize>> = HashMap::new();
    for (m, v) in &chosen {
        let key = format!("{m}@{v}");
        let own = names
            .outputs
            .get(&key)
            .ok_or_else(|| TrainingError::Names(format!("no log file names the outputs of {key}")))?;
        let cols = own
            .iter()
            .map(|n| match output_names.iter().position(|x| x == n) {
                Some(p) => p,
                None => {
                    output_names.push(n.clone());
                    output_names.len() - 1
                }
            })
            .collect();
        output_columns.insert((m.clone(), *v), cols);
    }
    let label_names: Vec<String> = schema.labels.iter().map(|l| l.name.clone()).collect();
    let out_schema = output_schema(&feature_names, &output_names, &label_names);
    let labeller = Labeller {
        users: events.users.iter().map(|u| (u.user_id.as_str(), u)).collect(),
        rooms: events.rooms.iter().enumerate().map(|(i, r)| (r.as_str(), i as u32)).collect(),
        kind,
        window_ms: opts.label_window_ms,
    };
    let mut report = TrainingReport {
        schema_hash: schema_hash.clone(),
        labels: label_names.clone(),
        positives: vec![0; label_names.len()],
        models: chosen.iter().map(|(m, v)| format!("{m}@{v}")).collect(),
        newest_event_ms: newest_ms,
        oldest_event_ms: oldest_ms,
        ..Default::default()
    };

    let write_error = |reason: String| TrainingError::Write { path: out.to_path_buf(), reason };
    let mut publication = Publication::create(out).map_err(|e| write_error(e.to_string()))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_dictionary_enabled(false)
        .set_key_value_metadata(Some(vec![KeyValue::new(SCHEMA_METADATA_KEY.to_owned(), schema.to_json())]))
        .build();
    let mut writer = ArrowWriter::try_new(publication.take_file(), out_schema.clone(), Some(props))
        .map_err(|e| write_error(e.to_string()))?;
    let mut pending = Pending::new(feature_names.len(), output_names.len(), label_names.len());
    let mut labels = Vec::new();
    for path in &files {
        let bad = |row: usize, reason: String| TrainingError::BadRow { path: path.clone(), row, reason };
        let reader = open(path)?.build().map_err(|e| LogError::Read { path: path.clone(), reason: e.to_string() })?;
        let mut first_row = 0;
        for batch in reader {
            let batch = batch.map_err(|e| LogError::Read { path: path.clone(), reason: e.to_string() })?;
            let t: Vec<&arrow::array::StringArray> =
                TEXT_IDS.iter().map(|n| text(&batch, path, n)).collect::<Result<_, _>>()?;
            let (users, rooms, models, hashes) = (t[2], t[4], t[5], t[9]);
            let ints = |name: &str| {
                column(&batch, path, name)?.as_primitive_opt::<Int64Type>().ok_or_else(|| {
                    TrainingError::from(LogError::Read {
                        path: path.clone(),
                        reason: format!("{name} is not an int64 column"),
                    })
                })
            };
            let time_ms = ints("time_ms")?;
            // Logs written before the column existed have no as-of times: the answer time.
            let as_of_ms = match batch.column_by_name("as_of_ms") {
                Some(_) => Some(ints("as_of_ms")?),
                None => None,
            };
            let not_a = |name: &str, what: &str| {
                TrainingError::from(LogError::Read { path: path.clone(), reason: format!("{name} is not {what}") })
            };
            let version = column(&batch, path, "model_version")?
                .as_primitive_opt::<UInt32Type>()
                .ok_or_else(|| not_a("model_version", "a uint32 column"))?;
            let lists = |name: &str| {
                let list =
                    column(&batch, path, name)?.as_list_opt::<i32>().ok_or_else(|| not_a(name, "a list column"))?;
                match list.values().as_primitive_opt::<Float32Type>() {
                    Some(_) => Ok(list),
                    None => Err(not_a(name, "a list of float32")),
                }
            };
            let (features, outputs) = (lists("features")?, lists("outputs")?);
            for i in 0..batch.num_rows() {
                let row = first_row + i;
                if hashes.value(i) != schema_hash {
                    continue;
                }
                let key = (models.value(i).to_owned(), version.value(i));
                let Some(out_cols) = output_columns.get(&key) else { continue };
                report.rows_chosen += 1;
                let (user, room) = (users.value(i), rooms.value(i));
                if user.is_empty() {
                    report.left_out_no_user += 1;
                    continue;
                }
                if kind == LabelKind::Visit && room.is_empty() {
                    report.left_out_no_room += 1;
                    continue;
                }
                let as_of = as_of_ms.filter(|a| a.is_valid(i)).map(|a| a.value(i));
                let from_ms = as_of.unwrap_or(time_ms.value(i));
                if from_ms < oldest_ms {
                    report.left_out_before_events += 1;
                    continue;
                }
                if from_ms.saturating_add(opts.label_window_ms) > newest_ms {
                    report.left_out_uncovered += 1;
                    report.uncovered_from_ms = Some(report.uncovered_from_ms.map_or(from_ms, |m| m.min(from_ms)));
                    continue;
                }
                let f = features.value(i);
                let f = f.as_primitive::<Float32Type>(); // checked above: a list of float32
                if f.len() != feature_names.len() || f.null_count() > 0 {
                    return Err(bad(
                        row,
                        format!(
                            "{} feature values for the {} features of schema {schema_hash}",
                            f.len(),
                            feature_names.len()
                        ),
                    ));
                }
                let o = outputs.value(i);
                let o = o.as_primitive::<Float32Type>(); // checked above: a list of float32
                if o.len() != out_cols.len() {
                    return Err(bad(
                        row,
                        format!("{} output values for the {} outputs of {}@{}", o.len(), out_cols.len(), key.0, key.1),
                    ));
                }
                if !labeller.labels(user, room, from_ms, &mut labels) {
                    report.rows_of_unknown_users += 1;
                }
                for (b, s) in pending.texts.iter_mut().zip(&t) {
                    b.append_value(s.value(i));
                }
                pending.time_ms.append_value(time_ms.value(i));
                pending.as_of_ms.append_option(as_of);
                pending.label_from_ms.append_value(from_ms);
                pending.version.append_value(version.value(i));
                for (b, v) in pending.features.iter_mut().zip(f.values().iter()) {
                    b.append_value(*v);
                }
                let mut row_outputs = vec![None; output_names.len()];
                for (c, v) in out_cols.iter().zip(o.values().iter()) {
                    row_outputs[*c] = Some(*v);
                }
                for (b, v) in pending.outputs.iter_mut().zip(row_outputs) {
                    b.append_option(v);
                }
                for ((b, l), n) in pending.labels.iter_mut().zip(&labels).zip(&mut report.positives) {
                    b.append_value(i8::from(*l));
                    *n += u64::from(*l);
                }
                pending.rows += 1;
                report.rows_written += 1;
                if pending.rows >= OUT_BATCH_ROWS {
                    let batch = pending.take(&out_schema).map_err(|e| write_error(e.to_string()))?;
                    writer.write(&batch).map_err(|e| write_error(e.to_string()))?;
                }
            }
            first_row += batch.num_rows();
        }
    }
    if report.rows_written == 0 {
        return Err(TrainingError::NothingLabelled(left_out(&report, opts.label_window_ms)));
    }
    if pending.rows > 0 {
        let batch = pending.take(&out_schema).map_err(|e| write_error(e.to_string()))?;
        writer.write(&batch).map_err(|e| write_error(e.to_string()))?;
    }
    let description = serde_json::json!({
        "schema_hash": schema_hash,
        "label_kind": kind.as_str(),
        "labels": label_names,
        "label_window_ms": opts.label_window_ms,
        "events": opts.events_name,
        "events_newest_ms": newest_ms,
        "events_oldest_ms": oldest_ms,
        "log": log_dir.display().to_string(),
        "models": report.models,
        "rows": report.rows_written,
        "left_out": {
            "label_window_after_newest_event": report.left_out_uncovered,
            "label_window_before_oldest_event": report.left_out_before_events,
            "no_user": report.left_out_no_user,
            "no_room": report.left_out_no_room,
        },
    });
    writer.append_key_value_metadata(KeyValue::new(TRAINING_SET_METADATA_KEY.to_owned(), description.to_string()));
    let file = writer.into_inner().map_err(|e| write_error(e.to_string()))?;
    publication.publish_file(file).map_err(|e| write_error(e.to_string()))?;
    Ok(report)
}

/// The rows left out, in words.
pub fn left_out(report: &TrainingReport, window_ms: i64) -> String {
    let mut parts = Vec::new();
    if report.left_out_uncovered > 0 {
        parts.push(format!(
            "{} rows whose label window of {window_ms} ms ends after the newest event ({}; their windows open from {})",
            report.left_out_uncovered,
            report.newest_event_ms,
            report.uncovered_from_ms.unwrap_or_default()
        ));
    }
    if report.left_out_before_events > 0 {
        parts.push(format!(
            "{} rows whose label window opens before the oldest event ({}): the events do not cover it",
            report.left_out_before_events, report.oldest_event_ms
        ));
    }
    if report.left_out_no_user > 0 {
        parts.push(format!("{} rows without a user id", report.left_out_no_user));
    }
    if report.left_out_no_room > 0 {
        parts.push(format!("{} conversion rows without a room id", report.left_out_no_room));
    }
    if parts.is_empty() {
        format!("{} rows chosen, none left out", report.rows_chosen)
    } else {
        format!("{} rows chosen; left out: {}", report.rows_chosen, parts.join("; "))
    }
}
