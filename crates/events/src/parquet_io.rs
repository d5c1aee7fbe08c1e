//! The Parquet layout of events: schema, a streaming writer that publishes its file by
//! rename (never a half-written file under the final name), and a batch reader that
//! checks the schema and reports every bad row with its row number.

use crate::{Event, EventError, EventIoError, EventKind, Platform};
use arrow::array::{
    Array, ArrayRef, BooleanArray, BooleanBuilder, Float64Array, Float64Builder, Int64Array, Int64Builder, RecordBatch,
    StringArray, StringBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use liveprofile_publish::Publication;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use std::fs::File;
use std::path::Path;
use std::sync::{Arc, OnceLock};

/// Column names of the event contract, in file order.
pub const COLUMNS: [&str; 12] = [
    "event_id",
    "ts_ms",
    "platform",
    "user_id",
    "platform_user_id",
    "room_id",
    "host_id",
    "category",
    "kind",
    "item_id",
    "value",
    "coupon",
];

/// The Arrow schema of an event file.
pub fn event_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            Arc::new(Schema::new(vec![
                Field::new("event_id", DataType::Utf8, false),
                Field::new("ts_ms", DataType::Int64, false),
                Field::new("platform", DataType::Utf8, false),
                Field::new("user_id", DataType::Utf8, false),
                Field::new("platform_user_id", DataType::Utf8, false),
                Field::new("room_id", DataType::Utf8, true),
                Field::new("host_id", DataType::Utf8, true),
                Field::new("category", DataType::Utf8, false),
                Field::new("kind", DataType::Utf8, false),
                Field::new("item_id", DataType::Utf8, true),
                Field::new("value", DataType::Float64, false),
                Field::new("coupon", DataType::Boolean, false),
            ]))
        })
        .clone()
}

const BATCH_ROWS: usize = 65_536;

/// Streams events into a Parquet file. Rows are buffered in batches of 64k; the file is
/// written under a temporary name and published by [`EventWriter::finish`] (see
/// [`Publication`]), so a killed or failed run leaves nothing under the final name.
pub struct EventWriter {
    // Declared before the publication: an unfinished writer is closed before its
    // temporary file is removed.
    writer: ArrowWriter<File>,
    publication: Publication,
    cols: Builders,
    rows_in_batch: usize,
    rows: u64,
}

struct Builders {
    event_id: StringBuilder,
    ts_ms: Int64Builder,
    platform: StringBuilder,
    user_id: StringBuilder,
    platform_user_id: StringBuilder,
    room_id: StringBuilder,
    host_id: StringBuilder,
    category: StringBuilder,
    kind: StringBuilder,
    item_id: StringBuilder,
    value: Float64Builder,
    coupon: BooleanBuilder,
}

impl Builders {
    fn new() -> Self {
        let s = || StringBuilder::with_capacity(BATCH_ROWS, BATCH_ROWS * 12);
        Builders {
            event_id: s(),
            ts_ms: Int64Builder::with_capacity(BATCH_ROWS),
            platform: s(),
            user_id: s(),
            platform_user_id: s(),
            room_id: s(),
            host_id: s(),
            category: s(),
            kind: s(),
            item_id: s(),
            value: Float64Builder::with_capacity(BATCH_ROWS),
            coupon: BooleanBuilder::with_capacity(BATCH_ROWS),
        }
    }

    fn finish(&mut self) -> Vec<ArrayRef> {
        vec![
            Arc::new(self.event_id.finish()),
            Arc::new(self.ts_ms.finish()),
            Arc::new(self.platform.finish()),
            Arc::new(self.user_id.finish()),
            Arc::new(self.platform_user_id.finish()),
            Arc::new(self.room_id.finish()),
            Arc::new(self.host_id.finish()),
            Arc::new(self.category.finish()),
            Arc::new(self.kind.finish()),
            Arc::new(self.item_id.finish()),
            Arc::new(self.value.finish()),
            Arc::new(self.coupon.finish()),
        ]
    }
}

impl EventWriter {
    /// Starts a new event file at `path` (under a temporary name until finished).
    pub fn create(path: impl AsRef<Path>) -> Result<Self, EventIoError> {
        let mut publication = Publication::create(path.as_ref())?;
        let props =
            WriterProperties::builder().set_compression(Compression::SNAPPY).set_max_row_group_size(1 << 20).build();
        let writer = ArrowWriter::try_new(publication.take_file(), event_schema(), Some(props))
            .map_err(|source| EventIoError::Parquet { path: temporary(&publication), source })?;
        Ok(EventWriter { writer, publication, cols: Builders::new(), rows_in_batch: 0, rows: 0 })
    }

    /// Appends one event.
    pub fn append(&mut self, e: &Event) -> Result<(), EventIoError> {
        self.append_parts(e.parts())
    }

    /// Appends one event given as borrowed parts (no allocation per event).
    pub fn append_parts(&mut self, e: EventParts<'_>) -> Result<(), EventIoError> {
        let c = &mut self.cols;
        c.event_id.append_value(e.event_id);
        c.ts_ms.append_value(e.ts_ms);
        c.platform.append_value(e.platform.as_str());
        c.user_id.append_value(e.user_id);
        c.platform_user_id.append_value(e.platform_user_id);
        c.room_id.append_option(e.room_id);
        c.host_id.append_option(e.host_id);
        c.category.append_value(e.category);
        c.kind.append_value(e.kind.as_str());
        c.item_id.append_option(e.item_id);
        c.value.append_value(e.value);
        c.coupon.append_value(e.coupon);
        self.rows_in_batch += 1;
        self.rows += 1;
        if self.rows_in_batch >= BATCH_ROWS {
            self.flush_batch()?;
        }
        Ok(())
    }

    /// Rows appended so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    fn flush_batch(&mut self) -> Result<(), EventIoError> {
        if self.rows_in_batch == 0 {
            return Ok(());
        }
        let batch = RecordBatch::try_new(event_schema(), self.cols.finish())
            .map_err(|source| EventIoError::Arrow { path: temporary(&self.publication), source })?;
        self.rows_in_batch = 0;
        self.writer.write(&batch).map_err(|source| EventIoError::Parquet { path: temporary(&self.publication), source })
    }

    /// Flushes, closes and publishes the file. Returns the number of rows.
    pub fn finish(mut self) -> Result<u64, EventIoError> {
        self.flush_batch()?;
        let file = self
            .writer
            .into_inner()
            .map_err(|source| EventIoError::Parquet { path: temporary(&self.publication), source })?;
        self.publication.publish_file(file)?;
        Ok(self.rows)
    }
}

/// The temporary path of a publication, for error messages.
fn temporary(publication: &Publication) -> String {
    publication.temporary_path().display().to_string()
}

/// One event as borrowed parts, for writers that build ids on the fly.
#[derive(Debug, Clone, Copy)]
pub struct EventParts<'a> {
    /// See [`Event::event_id`].
    pub event_id: &'a str,
    /// See [`Event::ts_ms`].
    pub ts_ms: i64,
    /// See [`Event::platform`].
    pub platform: Platform,
    /// See [`Event::user_id`].
    pub user_id: &'a str,
    /// See [`Event::platform_user_id`].
    pub platform_user_id: &'a str,
    /// See [`Event::room_id`].
    pub room_id: Option<&'a str>,
    /// See [`Event::host_id`].
    pub host_id: Option<&'a str>,
    /// See [`Event::category`].
    pub category: &'a str,
    /// See [`Event::kind`].
    pub kind: EventKind,
    /// See [`Event::item_id`].
    pub item_id: Option<&'a str>,
    /// See [`Event::value`].
    pub value: f64,
    /// See [`Event::coupon`].
    pub coupon: bool,
}

impl EventParts<'_> {
    /// Checks the rules a single event must satisfy on its own: a non-empty event and
    /// user id, a finite non-negative value, a value only where the kind carries one and
    /// at most its kind's limit ([`EventKind::max_value`]), and a room on room events.
    pub fn validate(&self) -> Result<(), EventError> {
        if self.event_id.is_empty() {
            return Err(EventError::Missing { column: "event_id" });
        }
        if self.user_id.is_empty() {
            return Err(EventError::Missing { column: "user_id" });
        }
        if !self.value.is_finite() {
            return Err(EventError::BadValue { value: self.value, reason: "not finite" });
        }
        if self.value < 0.0 {
            return Err(EventError::BadValue { value: self.value, reason: "negative" });
        }
        if !self.kind.carries_value() && self.value != 0.0 {
            return Err(EventError::BadValue { value: self.value, reason: "this kind of event carries no value" });
        }
        if let Some((limit, unit)) = self.kind.max_value()
            && self.value > limit
        {
            return Err(EventError::ValueOverLimit { kind: self.kind, value: self.value, limit, unit });
        }
        if self.kind.needs_room() && self.room_id.is_none() {
            return Err(EventError::Missing { column: "room_id" });
        }
        Ok(())
    }

    /// An owned copy.
    pub fn to_event(&self) -> Event {
        Event {
            event_id: self.event_id.to_owned(),
            ts_ms: self.ts_ms,
            platform: self.platform,
            user_id: self.user_id.to_owned(),
            platform_user_id: self.platform_user_id.to_owned(),
            room_id: self.room_id.map(str::to_owned),
            host_id: self.host_id.map(str::to_owned),
            category: self.category.to_owned(),
            kind: self.kind,
            item_id: self.item_id.map(str::to_owned),
            value: self.value,
            coupon: self.coupon,
        }
    }
}

/// A row of an event file that breaks the contract.
#[derive(Debug, Clone, PartialEq)]
pub struct RejectedRow {
    /// Zero-based row number in the file.
    pub row: u64,
    /// The event id, when readable.
    pub event_id: Option<String>,
    /// What is wrong.
    pub error: EventError,
}

/// Decoded events of one record batch, with the rows that were rejected.
#[derive(Debug, Default)]
pub struct DecodedBatch {
    /// Row number of the batch's first row in the file.
    pub first_row: u64,
    /// Valid events, in file order.
    pub events: Vec<Event>,
    /// Invalid rows, in file order.
    pub rejected: Vec<RejectedRow>,
}

/// Reads an event file batch by batch, checking the schema up front and every row.
pub struct EventReader {
    path: String,
    inner: ParquetRecordBatchReader,
    next_row: u64,
    total_rows: u64,
}

/// Runs a step of the Parquet reader, turning a panic into an error: the reader assumes
/// well-formed bytes in places (its footer decoder unwraps), and a damaged file must be an
/// error naming it, not a crash of the process reading it.
fn guarded<T>(
    f: impl FnOnce() -> Result<T, parquet::errors::ParquetError>,
) -> Result<T, parquet::errors::ParquetError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .unwrap_or_else(|payload| Err(damaged_bytes(payload.as_ref())))
}

/// The error of a reader that panicked on damaged bytes.
fn damaged_bytes(payload: &(dyn std::any::Any + Send)) -> parquet::errors::ParquetError {
    let why = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".to_owned());
    parquet::errors::ParquetError::General(format!("the Parquet reader failed on damaged bytes ({why})"))
}

impl EventReader {
    /// Opens `path` and checks that it has every contract column with its type.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, EventIoError> {
        Self::open_row_groups(path, None)
    }

    /// Row counts of the file's row groups (for splitting a read across threads).
    pub fn row_group_sizes(path: impl AsRef<Path>) -> Result<Vec<u64>, EventIoError> {
        let display = path.as_ref().display().to_string();
        let file = File::open(path.as_ref()).map_err(|source| EventIoError::Io { path: display.clone(), source })?;
        let builder = guarded(|| ParquetRecordBatchReaderBuilder::try_new(file))
            .map_err(|source| EventIoError::Parquet { path: display, source })?;
        Ok(builder.metadata().row_groups().iter().map(|g| g.num_rows() as u64).collect())
    }

    /// Opens `path` reading only one row group (`Some(i)`) or all of them; row numbers
    /// in decoded batches stay those of the whole file.
    pub fn open_row_groups(path: impl AsRef<Path>, row_group: Option<usize>) -> Result<Self, EventIoError> {
        let display = path.as_ref().display().to_string();
        let file = File::open(path.as_ref()).map_err(|source| EventIoError::Io { path: display.clone(), source })?;
        let builder = guarded(|| ParquetRecordBatchReaderBuilder::try_new(file))
            .map_err(|source| EventIoError::Parquet { path: display.clone(), source })?;
        check_schema(&display, builder.schema())?;
        let groups = builder.metadata().row_groups();
        let (first_row, total_rows, builder) = match row_group {
            None => (0, builder.metadata().file_metadata().num_rows() as u64, builder),
            Some(i) => {
                if i >= groups.len() {
                    return Err(EventIoError::Schema {
                        path: display,
                        column: String::new(),
                        reason: format!("row group {i} of {}", groups.len()),
                    });
                }
                let first: u64 = groups[..i].iter().map(|g| g.num_rows() as u64).sum();
                let n = groups[i].num_rows() as u64;
                (first, n, builder.with_row_groups(vec![i]))
            }
        };
        let inner = builder
            .with_batch_size(BATCH_ROWS)
            .build()
            .map_err(|source| EventIoError::Parquet { path: display.clone(), source })?;
        Ok(EventReader { path: display, inner, next_row: first_row, total_rows })
    }

    /// Number of rows in the file.
    pub fn total_rows(&self) -> u64 {
        self.total_rows
    }

    /// Reads the next batch, or `None` at the end of the file.
    pub fn next_batch(&mut self) -> Result<Option<DecodedBatch>, EventIoError> {
        Ok(self.next_raw()?.map(|raw| decode(&raw)))
    }

    /// Reads the next batch undecoded (see [`decode_with`]), or `None` at the end.
    pub fn next_raw(&mut self) -> Result<Option<RawBatch>, EventIoError> {
        let inner = &mut self.inner;
        let next = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| inner.next())).map_err(|payload| {
            EventIoError::Parquet { path: self.path.clone(), source: damaged_bytes(payload.as_ref()) }
        })?;
        let Some(batch) = next else { return Ok(None) };
        let batch = batch.map_err(|source| EventIoError::Arrow { path: self.path.clone(), source })?;
        let batch = cast_strings(&batch).map_err(|source| EventIoError::Arrow { path: self.path.clone(), source })?;
        let raw = RawBatch { first_row: self.next_row, batch };
        self.next_row += raw.batch.num_rows() as u64;
        Ok(Some(raw))
    }

    /// Reads the whole file: every valid event and every rejected row.
    pub fn read_all(mut self) -> Result<DecodedBatch, EventIoError> {
        let mut all = DecodedBatch::default();
        while let Some(b) = self.next_batch()? {
            all.events.extend(b.events);
            all.rejected.extend(b.rejected);
        }
        Ok(all)
    }
}

/// Checks that `schema` has every contract column with its type (text may also be large
/// or view strings); `source` names the data in the error.
fn check_schema(source: &str, schema: &Schema) -> Result<(), EventIoError> {
    for field in event_schema().fields() {
        let found = schema.field_with_name(field.name()).map_err(|_| EventIoError::Schema {
            path: source.to_owned(),
            column: field.name().clone(),
            reason: "missing".into(),
        })?;
        let compatible = found.data_type() == field.data_type()
            || (field.data_type() == &DataType::Utf8
                && matches!(found.data_type(), DataType::LargeUtf8 | DataType::Utf8View));
        if !compatible {
            return Err(EventIoError::Schema {
                path: source.to_owned(),
                column: field.name().clone(),
                reason: format!("expected {}, found {}", field.data_type(), found.data_type()),
            });
        }
    }
    Ok(())
}

fn cast_strings(batch: &RecordBatch) -> Result<RecordBatch, arrow::error::ArrowError> {
    let schema = event_schema();
    let mut columns = Vec::with_capacity(COLUMNS.len());
    for field in schema.fields() {
        let col = batch.column_by_name(field.name()).expect("schema checked on open");
        if col.data_type() == field.data_type() {
            columns.push(col.clone());
        } else {
            columns.push(arrow::compute::cast(col, field.data_type())?);
        }
    }
    RecordBatch::try_new(schema, columns)
}

fn strings<'a>(batch: &'a RecordBatch, name: &str) -> &'a StringArray {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<StringArray>())
        .expect("schema checked and cast on read")
}

fn opt(a: &StringArray, i: usize) -> Option<&str> {
    if a.is_null(i) { None } else { Some(a.value(i)) }
}

/// A record batch of an event file with the file row number of its first row, cast to
/// the contract's types; decode it with [`decode_with`]. Cheap to send between threads.
#[derive(Debug, Clone)]
pub struct RawBatch {
    /// Row number of the first row in the file.
    pub first_row: u64,
    /// The columns.
    pub batch: RecordBatch,
}

impl RawBatch {
    /// Events held in memory (an Arrow table handed over from Python, say) as a raw batch:
    /// the schema is checked as a file's is on open (`source` names the data in errors),
    /// extra columns are ignored, text columns are cast to the contract's type.
    pub fn from_batch(source: &str, first_row: u64, batch: &RecordBatch) -> Result<RawBatch, EventIoError> {
        check_schema(source, &batch.schema())?;
        let batch = cast_strings(batch).map_err(|e| EventIoError::Arrow { path: source.to_owned(), source: e })?;
        Ok(RawBatch { first_row, batch })
    }
}

/// Decodes and checks every row of a raw batch without copying strings: `on_event` gets
/// each valid event as borrowed parts (with its row number), `on_reject` each bad row.
pub fn decode_with(
    raw: &RawBatch,
    mut on_event: impl FnMut(u64, EventParts<'_>),
    mut on_reject: impl FnMut(RejectedRow),
) {
    let batch = &raw.batch;
    let event_id = strings(batch, "event_id");
    let platform = strings(batch, "platform");
    let user_id = strings(batch, "user_id");
    let platform_user_id = strings(batch, "platform_user_id");
    let room_id = strings(batch, "room_id");
    let host_id = strings(batch, "host_id");
    let category = strings(batch, "category");
    let kind = strings(batch, "kind");
    let item_id = strings(batch, "item_id");
    let ts_ms = batch.column(1).as_any().downcast_ref::<Int64Array>().expect("checked");
    let value = batch.column(10).as_any().downcast_ref::<Float64Array>().expect("checked");
    let coupon = batch.column(11).as_any().downcast_ref::<BooleanArray>().expect("checked");
    for i in 0..batch.num_rows() {
        let row = raw.first_row + i as u64;
        let reject = |error| RejectedRow { row, event_id: opt(event_id, i).map(str::to_owned), error };
        let required = [
            ("event_id", event_id.is_null(i)),
            ("ts_ms", ts_ms.is_null(i)),
            ("platform", platform.is_null(i)),
            ("user_id", user_id.is_null(i)),
            ("platform_user_id", platform_user_id.is_null(i)),
            ("category", category.is_null(i)),
            ("kind", kind.is_null(i)),
            ("value", value.is_null(i)),
            ("coupon", coupon.is_null(i)),
        ];
        if let Some((column, _)) = required.iter().find(|(_, null)| *null) {
            on_reject(reject(EventError::Missing { column }));
            continue;
        }
        let parsed = Platform::parse(platform.value(i)).and_then(|p| EventKind::parse(kind.value(i)).map(|k| (p, k)));
        let (p, k) = match parsed {
            Ok(pk) => pk,
            Err(e) => {
                on_reject(reject(e));
                continue;
            }
        };
        let parts = EventParts {
            event_id: event_id.value(i),
            ts_ms: ts_ms.value(i),
            platform: p,
            user_id: user_id.value(i),
            platform_user_id: platform_user_id.value(i),
            room_id: opt(room_id, i),
            host_id: opt(host_id, i),
            category: category.value(i),
            kind: k,
            item_id: opt(item_id, i),
            value: value.value(i),
            coupon: coupon.value(i),
        };
        match parts.validate() {
            Ok(()) => on_event(row, parts),
            Err(e) => on_reject(reject(e)),
        }
    }
}

fn decode(raw: &RawBatch) -> DecodedBatch {
    let mut out = DecodedBatch { first_row: raw.first_row, ..Default::default() };
    out.events.reserve(raw.batch.num_rows());
    let mut rejected = Vec::new();
    decode_with(raw, |_, parts| out.events.push(parts.to_event()), |r| rejected.push(r));
    out.rejected = rejected;
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MAX_WATCH_SECONDS, MAX_YUAN};

    fn sample(i: usize) -> Event {
        Event {
            event_id: format!("e{i}"),
            ts_ms: 1_700_000_000_000 + i as i64,
            platform: Platform::ALL[i % 5],
            user_id: format!("u{}", i % 7),
            platform_user_id: format!("p{}", i % 7),
            room_id: Some(format!("r{}", i % 3)),
            host_id: i.is_multiple_of(2).then(|| "h1".to_owned()),
            category: "beauty".into(),
            kind: EventKind::Leave,
            item_id: None,
            value: i as f64 * 0.5,
            coupon: i.is_multiple_of(3),
        }
    }

    #[test]
    fn a_footer_that_panics_the_parquet_decoder_is_an_error_naming_the_file() {
        // Found by the event_files fuzz target: the footer's thrift decoding unwraps.
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/footer-that-panics-the-parquet-reader.parquet");
        for result in [EventReader::open(&path).map(|_| ()), EventReader::row_group_sizes(&path).map(|_| ())] {
            match result {
                Err(EventIoError::Parquet { path: named, source }) => {
                    assert_eq!(named, path.display().to_string());
                    assert!(source.to_string().contains("damaged bytes"), "{source}");
                }
                other => panic!("expected a Parquet error, got {other:?}"),
            }
        }
    }

    #[test]
    fn round_trip_is_lossless_and_publishes_by_rename() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.parquet");
        let mut w = EventWriter::create(&path).unwrap();
        let events: Vec<Event> = (0..70_000).map(sample).collect();
        for e in &events {
            w.append(e).unwrap();
        }
        assert!(!path.exists(), "nothing under the final name before finish");
        assert_eq!(w.finish().unwrap(), 70_000);
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["events.parquet"], "no temporary file is left");
        let read = EventReader::open(&path).unwrap().read_all().unwrap();
        assert!(read.rejected.is_empty());
        assert_eq!(read.events, events);
    }

    #[test]
    fn unfinished_writer_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.parquet");
        let mut w = EventWriter::create(&path).unwrap();
        w.append(&sample(1)).unwrap();
        drop(w);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn bad_rows_are_reported_with_row_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.parquet");
        let mut w = EventWriter::create(&path).unwrap();
        let mut bad_value = sample(1);
        bad_value.value = -3.0;
        let mut no_room = sample(2);
        no_room.room_id = None;
        for e in [sample(0), bad_value, no_room, sample(3)] {
            w.append(&e).unwrap();
        }
        w.finish().unwrap();
        let read = EventReader::open(&path).unwrap().read_all().unwrap();
        assert_eq!(read.events.len(), 2);
        assert_eq!(read.rejected.len(), 2);
        assert_eq!(read.rejected[0].row, 1);
        assert_eq!(read.rejected[0].error.to_string(), "bad value -3: negative");
        assert_eq!(read.rejected[1].row, 2);
        assert_eq!(read.rejected[1].error.to_string(), "missing room_id");
    }

    #[test]
    fn values_over_their_kinds_limit_are_refused_at_the_limit_taken() {
        let with = |kind: EventKind, value: f64| Event { kind, value, ..sample(0) };
        for (kind, limit) in [
            (EventKind::Order, MAX_YUAN),
            (EventKind::Gift, MAX_YUAN),
            (EventKind::ViewItem, MAX_YUAN),
            (EventKind::AddToCart, MAX_YUAN),
            (EventKind::Leave, MAX_WATCH_SECONDS),
        ] {
            assert_eq!(with(kind, limit).validate(), Ok(()), "{kind} at its limit");
            assert!(with(kind, limit + 1.0).validate().is_err(), "{kind} over its limit");
        }
        let e = with(EventKind::Order, 5e16).validate().unwrap_err();
        assert_eq!(e.to_string(), "value 5e16 on order is over the limit of 10000000 yuan");
        let e = with(EventKind::Gift, 10_000_000.5).validate().unwrap_err();
        assert_eq!(e.to_string(), "value 10000000.5 on gift is over the limit of 10000000 yuan");
        let e = with(EventKind::Leave, f64::MAX).validate().unwrap_err();
        assert_eq!(e.to_string(), "value 1.7976931348623157e308 on leave is over the limit of 604800 seconds");
        // Non-finite values keep their own reason.
        let e = with(EventKind::Order, f64::INFINITY).validate().unwrap_err();
        assert_eq!(e.to_string(), "bad value inf: not finite");
    }

    #[test]
    fn coupon_offers_round_trip_and_carry_no_value() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.parquet");
        let offer = Event { kind: EventKind::CouponOffer, value: 0.0, room_id: None, coupon: true, ..sample(4) };
        let mut with_value = offer.clone();
        with_value.event_id = "priced-offer".into();
        with_value.value = 5.0;
        let mut w = EventWriter::create(&path).unwrap();
        w.append(&offer).unwrap();
        w.append(&with_value).unwrap();
        w.finish().unwrap();
        let read = EventReader::open(&path).unwrap().read_all().unwrap();
        assert_eq!(read.events, [offer]);
        assert_eq!(read.rejected.len(), 1);
        assert_eq!(read.rejected[0].error.to_string(), "bad value 5: this kind of event carries no value");
    }

    #[test]
    fn missing_column_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.parquet");
        let schema = Arc::new(Schema::new(vec![Field::new("event_id", DataType::Utf8, false)]));
        let batch =
            RecordBatch::try_new(schema.clone(), vec![Arc::new(StringArray::from(vec!["a"])) as ArrayRef]).unwrap();
        let mut w = ArrowWriter::try_new(File::create(&path).unwrap(), schema, None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let err = EventReader::open(&path).err().unwrap();
        assert!(err.to_string().ends_with("column ts_ms: missing"), "{err}");
    }
}
