//! The writer thread: records to the current file, rotation, publication, retention.

use crate::lists::{ListChunk, PAGE_BYTES};
use crate::staging::Staged;
use crate::{
    Buffer, Counters, DRAIN_INTERVAL, LogConfig, PredictionRecord, ROW_GROUP_BYTES, ROW_GROUP_ROWS, log_files,
};
use arrow::array::{ArrayRef, Int64Builder, StringBuilder, UInt32Builder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use liveprofile_publish::Publication;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_writer::{ArrowRowGroupWriterFactory, compute_leaves};
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::ColumnPath;
use std::collections::BTreeMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// Published files are `predictions-<first time ms>-<sequence>.parquet`.
pub const FILE_PREFIX: &str = "predictions-";

/// Bytes of a row's numbers besides its lists (time, as-of, version, queue and compute times).
const FIXED_BYTES_PER_ROW: usize = 36;

/// The Arrow schema of the log's files, columns in file order.
pub fn log_schema() -> SchemaRef {
    let text = |n: &str| Field::new(n, DataType::Utf8, false);
    let floats = |n: &str| Field::new(n, DataType::List(float_item()), false);
    Arc::new(Schema::new(vec![
        text("request_id"),
        Field::new("time_ms", DataType::Int64, false),
        Field::new("as_of_ms", DataType::Int64, true),
        text("api"),
        text("user_id"),
        text("platform"),
        text("room_id"),
        text("model"),
        Field::new("model_version", DataType::UInt32, false),
        text("arm"),
        text("experiment"),
        text("experiment_arm"),
        text("schema_hash"),
        floats("features"),
        floats("outputs"),
        Field::new("queue_us", DataType::Int64, false),
        Field::new("compute_us", DataType::Int64, false),
    ]))
}

/// The item of the value lists: a float that is never null (a list holds every value the
/// model read or answered, NaN included), so a value's definition level is at most 1.
fn float_item() -> Arc<Field> {
    Arc::new(Field::new("item", DataType::Float32, false))
}

/// A column of a row group, in file order.
enum Column<'a> {
    /// Written by Arrow's column writer.
    Flat(ArrayRef),
    /// Encoded as its rows arrived.
    Lists(&'a mut ListChunk),
}

/// The rows of the row group being gathered.
struct Pending {
    texts: [StringBuilder; 10],
    time_ms: Int64Builder,
    as_of_ms: Int64Builder,
    version: UInt32Builder,
    features: ListChunk,
    outputs: ListChunk,
    queue_us: Int64Builder,
    compute_us: Int64Builder,
    rows: usize,
    /// Bytes of the rows' data (before encoding and compression).
    bytes: usize,
    /// Bytes of memory the rows hold: their data, the lists' levels (two 2-byte levels a
    /// value) and the text columns' offsets.
    held: usize,
}

impl Default for Pending {
    fn default() -> Self {
        Pending {
            texts: Default::default(),
            time_ms: Int64Builder::new(),
            as_of_ms: Int64Builder::new(),
            version: UInt32Builder::new(),
            features: ListChunk::default(),
            outputs: ListChunk::default(),
            queue_us: Int64Builder::new(),
            compute_us: Int64Builder::new(),
            rows: 0,
            bytes: 0,
            held: 0,
        }
    }
}

impl Pending {
    /// Adds a row; an error is a list page that could not be compressed.
    fn push(&mut self, r: &PredictionRecord<'_>) -> parquet::errors::Result<()> {
        let model = r.model.as_ref();
        let schema_hash = model.schema().hash.as_str();
        let texts: [&str; 10] = [
            r.request_id,
            r.api,
            r.user_id,
            r.platform,
            r.room_id,
            model.name(),
            r.arm,
            r.experiment,
            r.experiment_arm,
            schema_hash,
        ];
        for (b, v) in self.texts.iter_mut().zip(texts) {
            b.append_value(v);
        }
        self.time_ms.append_value(r.time_ms);
        self.as_of_ms.append_option(r.as_of_ms);
        self.version.append_value(model.version());
        self.features.push(std::iter::once(r.features))?;
        self.outputs.push(r.outputs.parts())?;
        self.queue_us.append_value(i64::try_from(r.queue_us).unwrap_or(i64::MAX));
        self.compute_us.append_value(i64::try_from(r.compute_us).unwrap_or(i64::MAX));
        self.rows += 1;
        let text_bytes = texts.iter().map(|t| t.len()).sum::<usize>();
        self.bytes += 4 * (r.features.len() + r.outputs.len()) + text_bytes + FIXED_BYTES_PER_ROW;
        // The lists' memory is counted by their chunks ([`Pending::held`]); text offsets 4 a value.
        self.held += text_bytes + FIXED_BYTES_PER_ROW + 4 * texts.len();
        Ok(())
    }

    /// Bytes of memory the rows hold: their text and numbers, and their lists as encoded so
    /// far (compressed pages, and the page being filled).
    fn held(&self) -> usize {
        self.held + self.features.held() + self.outputs.held()
    }

    /// Whether the rows make a row group: [`ROW_GROUP_ROWS`] rows, or fewer rows of
    /// [`ROW_GROUP_BYTES`] (a wide model's).
    fn is_full(&self) -> bool {
        self.rows >= ROW_GROUP_ROWS || self.held() >= ROW_GROUP_BYTES
    }

    /// The pending rows' columns in file order ([`log_schema`]); the builders are emptied,
    /// the lists are emptied as they are written.
    fn columns(&mut self) -> Vec<Column<'_>> {
        let mut t = self.texts.iter_mut().map(|b| Column::Flat(Arc::new(b.finish())));
        let mut next = || t.next().expect("ten text builders");
        let (request_id, api, user_id, platform, room_id, model, arm, experiment, experiment_arm, schema_hash) =
            (next(), next(), next(), next(), next(), next(), next(), next(), next(), next());
        vec![
            request_id,
            Column::Flat(Arc::new(self.time_ms.finish())),
            Column::Flat(Arc::new(self.as_of_ms.finish())),
            api,
            user_id,
            platform,
            room_id,
            model,
            Column::Flat(Arc::new(self.version.finish())),
            arm,
            experiment,
            experiment_arm,
            schema_hash,
            Column::Lists(&mut self.features),
            Column::Lists(&mut self.outputs),
            Column::Flat(Arc::new(self.queue_us.finish())),
            Column::Flat(Arc::new(self.compute_us.finish())),
        ]
    }

    /// The rows were written ([`Pending::columns`] emptied the builders and the lists).
    fn written(&mut self) {
        self.rows = 0;
        self.bytes = 0;
        self.held = 0;
    }
}

/// The file being written.
struct OpenFile {
    // Declared before the publication: an unfinished writer is closed before its
    // temporary file is removed.
    writer: SerializedFileWriter<File>,
    /// Arrow's column writers of each row group (for every column but the value lists).
    columns: ArrowRowGroupWriterFactory,
    publication: Publication,
    opened: Instant,
    rows: u64,
    /// File bytes and data bytes ([`Pending::bytes`]) of its written row groups.
    encoded: u64,
    data: u64,
    /// The model versions of its rows (their feature and output names go in its metadata).
    models: Vec<Arc<liveprofile_runtime::LoadedModel>>,
}

pub(crate) struct Writer {
    config: LogConfig,
    counters: Arc<Counters>,
    schema: SchemaRef,
    current: Option<OpenFile>,
    pending: Pending,
    sequence: u64,
    /// File bytes a data byte took in the previous file's row groups ([`Pending::bytes`]),
    /// to estimate the pending rows' size in a file with none written yet.
    encoded_per_data_byte: Option<f64>,
}

fn io_error(e: impl std::fmt::Display) -> String {
    e.to_string()
}

impl Writer {
    pub(crate) fn new(config: LogConfig, counters: Arc<Counters>) -> Self {
        Writer {
            config,
            counters,
            schema: log_schema(),
            current: None,
            pending: Pending::default(),
            sequence: 0,
            encoded_per_data_byte: None,
        }
    }

    /// Takes what was offered every [`DRAIN_INTERVAL`] until the log is closed, then
    /// writes what is left and publishes the current file.
    pub(crate) fn run(mut self, buffer: &Buffer) {
        // The buffer is swapped with this one, emptied after each drain: the two keep their
        // room, so offering and writing allocate nothing in steady traffic.
        let mut taken = Staged::default();
        loop {
            let closed = buffer.closed.load(Ordering::Acquire);
            std::mem::swap(&mut *buffer.records.lock().expect("log buffer lock"), &mut taken);
            if !taken.is_empty()
                && let Err((e, not_placed)) = self.append(&taken)
            {
                // The rest of the drain waits for no retry: counted with the file's rows.
                self.counters.rows_dropped.fetch_add(not_placed as u64, Ordering::Relaxed);
                self.fail(&e);
            }
            // Emptied every drain, so room left by a burst goes back when traffic stops too.
            taken.clear();
            if closed {
                break;
            }
            let due = self.file_is_full()
                || self.current.as_ref().is_some_and(|f| f.opened.elapsed() >= self.config.max_file_age);
            if due && let Err(e) = self.publish() {
                self.fail(&e);
            }
            std::thread::sleep(DRAIN_INTERVAL);
        }
        if let Err(e) = self.publish() {
            self.fail(&e);
        }
    }

    /// Appends records in order; a file that reaches its size is published on the way and
    /// the next record starts a new one. A failure stops the drain and says how many of its
    /// records are in no file (the current file's rows are counted by [`Writer::fail`]).
    fn append(&mut self, records: &Staged) -> Result<(), (String, usize)> {
        for (k, r) in records.records().enumerate() {
            if self.current.is_none() {
                self.current = Some(self.open(r.time_ms).map_err(|e| (e, records.len() - k))?);
            }
            let file = self.current.as_mut().expect("opened above");
            if !file.models.iter().any(|m| Arc::ptr_eq(m, r.model)) {
                file.models.push(r.model.clone());
            }
            file.rows += 1;
            let placed = |e| (e, records.len() - k - 1);
            self.pending.push(&r).map_err(io_error).map_err(placed)?;
            if self.pending.is_full() {
                self.write_pending().map_err(placed)?;
            }
            if self.file_is_full() {
                self.publish().map_err(placed)?;
            }
        }
        Ok(())
    }

    /// The current file's size has reached the limit: what the Parquet writer wrote, and
    /// the rows of the row group being gathered at the bytes a data byte took in the file's
    /// row groups so far (in the previous file's before its first; at their data size
    /// before any file's).
    fn file_is_full(&self) -> bool {
        self.current.as_ref().is_some_and(|f| {
            let ratio =
                if f.data > 0 { f.encoded as f64 / f.data as f64 } else { self.encoded_per_data_byte.unwrap_or(1.0) };
            f.writer.bytes_written() as f64 + self.pending.bytes as f64 * ratio >= self.config.max_file_bytes as f64
        })
    }

    /// Writes the pending rows as one row group of the current file.
    fn write_pending(&mut self) -> Result<(), String> {
        if self.pending.rows == 0 {
            return Ok(());
        }
        let file = self.current.as_mut().expect("rows pending only with a file open");
        let index = file.writer.flushed_row_groups().len();
        let before = file.writer.bytes_written();
        let writers = file.columns.create_column_writers(index).map_err(io_error)?;
        let columns = self.pending.columns();
        let leaves = file.writer.schema_descr().columns().to_vec();
        let mut group = file.writer.next_row_group().map_err(io_error)?;
        // One leaf per column: the writers are in column order.
        for (leaf, ((field, column), mut writer)) in self.schema.fields().iter().zip(columns).zip(writers).enumerate() {
            match column {
                Column::Flat(array) => {
                    for leaf in compute_leaves(field, &array).map_err(io_error)? {
                        writer.write(&leaf).map_err(io_error)?;
                    }
                    writer.close().map_err(io_error)?.append_to_row_group(&mut group).map_err(io_error)?;
                }
                Column::Lists(lists) => lists.write_to(leaves[leaf].clone(), &mut group).map_err(io_error)?,
            }
        }
        group.close().map_err(io_error)?;
        file.encoded += (file.writer.bytes_written() - before) as u64;
        file.data += self.pending.bytes as u64;
        self.pending.written();
        Ok(())
    }

    fn open(&mut self, first_ms: i64) -> Result<OpenFile, String> {
        // A name no file has yet (a restarted server may reuse a millisecond).
        let path = loop {
            self.sequence += 1;
            let p = self.config.dir.join(format!("{FILE_PREFIX}{first_ms:013}-{:06}.parquet", self.sequence));
            if !p.exists() {
                break p;
            }
        };
        let mut publication = Publication::create(&path).map_err(io_error)?;
        // Plain encoding for the numbers (a dictionary of feature values costs the writer a
        // hash per value and saves little), and for the text columns but the room: a
        // dictionary costs a hash and a comparison per value, and Snappy takes the repeats of
        // the API, platform, model, arm, experiment and schema hash nearly as well (service
        // traffic: writer CPU 0.87-0.91 us a request against 1.18 with dictionaries on all
        // eight, 4-5 bytes a row more on disk); the room's id, one of many and in no order,
        // keeps its dictionary. Statistics for the number columns only (time, as-of,
        // version, queue and compute times: the ones a reader filters on): min and max of a
        // text column cost two string comparisons per row, and ids in random order prune
        // nothing.
        let mut props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_size(ROW_GROUP_ROWS)
            .set_dictionary_enabled(false)
            .set_column_dictionary_enabled(ColumnPath::from("room_id"), true)
            // (The value lists' pages are made in `lists`, of the same size.)
            .set_data_page_size_limit(PAGE_BYTES);
        for list in ["features", "outputs"] {
            props = props.set_column_statistics_enabled(
                ColumnPath::from(vec![list.to_owned(), "list".to_owned(), "item".to_owned()]),
                EnabledStatistics::None,
            );
        }
        for field in self.schema.fields().iter().filter(|f| *f.data_type() == DataType::Utf8) {
            props =
                props.set_column_statistics_enabled(ColumnPath::from(field.name().as_str()), EnabledStatistics::None);
        }
        let props = props.build();
        // Arrow's writer sets the file up (the Parquet schema, and the Arrow schema in the
        // metadata for readers); row groups are then written column by column.
        let (writer, columns) = ArrowWriter::try_new(publication.take_file(), self.schema.clone(), Some(props))
            .and_then(ArrowWriter::into_serialized_writer)
            .map_err(io_error)?;
        Ok(OpenFile {
            writer,
            columns,
            publication,
            opened: Instant::now(),
            rows: 0,
            encoded: 0,
            data: 0,
            models: Vec::new(),
        })
    }

    /// Writes what is pending, closes the current file with its names metadata, publishes
    /// it and applies the retention.
    fn publish(&mut self) -> Result<(), String> {
        if self.current.is_none() {
            return Ok(());
        }
        self.write_pending()?;
        let file = self.current.take().expect("checked above");
        let rows = file.rows;
        if file.data > 0 {
            self.encoded_per_data_byte = Some(file.encoded as f64 / file.data as f64);
        }
        if let Err(e) = Self::close_and_publish(file) {
            // The file is no longer current: its rows are counted here, not by `fail`.
            self.counters.rows_dropped.fetch_add(rows, Ordering::Relaxed);
            return Err(e);
        }
        self.counters.rows_written.fetch_add(rows, Ordering::Relaxed);
        self.counters.files_published.fetch_add(1, Ordering::Relaxed);
        self.apply_retention();
        Ok(())
    }

    /// Writes the file's footer with the names of its models' features and outputs, and
    /// publishes it.
    fn close_and_publish(mut file: OpenFile) -> Result<(), String> {
        let mut features = BTreeMap::new();
        let mut outputs = BTreeMap::new();
        for model in &file.models {
            let names: Vec<&str> = model.schema().features.iter().map(|f| f.name.as_str()).collect();
            features.insert(format!("liveprofile.features.{}", model.schema().hash), names);
            outputs.insert(format!("liveprofile.outputs.{}@{}", model.name(), model.version()), model.output_columns());
        }
        for (key, names) in &features {
            let value = serde_json::to_string(names).map_err(io_error)?;
            file.writer.append_key_value_metadata(KeyValue::new(key.clone(), value));
        }
        for (key, names) in &outputs {
            let value = serde_json::to_string(names).map_err(io_error)?;
            file.writer.append_key_value_metadata(KeyValue::new(key.clone(), value));
        }
        let inner = file.writer.into_inner().map_err(io_error)?;
        file.publication.publish_file(inner).map_err(io_error)
    }

    /// Deletes the oldest published files while the folder's files hold more than the
    /// retention; the newest file is always kept.
    fn apply_retention(&self) {
        let Ok(files) = log_files(&self.config.dir) else { return };
        let sizes: Vec<(PathBuf, u64)> =
            files.into_iter().map(|p| (p.clone(), std::fs::metadata(&p).map_or(0, |m| m.len()))).collect();
        let mut total: u64 = sizes.iter().map(|(_, s)| s).sum();
        for (path, size) in &sizes[..sizes.len().saturating_sub(1)] {
            if total <= self.config.retention_bytes {
                break;
            }
            if std::fs::remove_file(path).is_ok() {
                total -= size;
                self.counters.files_deleted.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// A write or publish failure: the current file is given up (its temporary file is
    /// removed) and its rows are counted as dropped; later records go to a new file.
    fn fail(&mut self, reason: &str) {
        let lost = self.current.take().map_or(0, |f| f.rows);
        self.pending = Pending::default();
        self.counters.write_errors.fetch_add(1, Ordering::Relaxed);
        self.counters.rows_dropped.fetch_add(lost, Ordering::Relaxed);
        tracing::warn!(dir = %self.config.dir.display(), lost, reason, "prediction log file given up");
    }
}
