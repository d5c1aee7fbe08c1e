//! Writing feature tables: id columns, one float32 column per schema feature, one int8
//! column per label, the schema JSON in the file metadata; published by rename.

use crate::schema::FeatureSchema;
use arrow::array::{ArrayRef, Float32Builder, Int8Builder, Int64Builder, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use liveprofile_publish::{Publication, PublishError};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use std::collections::HashMap;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

/// Parquet metadata key holding the feature schema JSON.
pub const SCHEMA_METADATA_KEY: &str = "liveprofile.feature_schema";

/// Errors writing a table.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// File system.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Parquet.
    #[error("{path}: {source}")]
    Parquet {
        /// File.
        path: String,
        /// Cause.
        source: parquet::errors::ParquetError,
    },
}

impl From<PublishError> for TableError {
    fn from(e: PublishError) -> Self {
        TableError::Io { path: e.path.display().to_string(), source: e.source }
    }
}

/// One row: string ids, integer ids, features, labels.
#[derive(Debug, Clone, Default)]
pub struct Row {
    /// Values of the string id columns.
    pub strings: Vec<String>,
    /// Values of the integer id columns.
    pub ints: Vec<i64>,
    /// Features in schema order.
    pub features: Vec<f32>,
    /// Labels in schema order.
    pub labels: Vec<bool>,
}

/// Where a table's rows go.
enum Destination {
    /// A Parquet file under a temporary name until finished. (The writer is declared
    /// before the publication: an unfinished writer is closed before its temporary file
    /// is removed.)
    File { writer: Box<ArrowWriter<File>>, publication: Publication },
    /// Record batches kept in memory (for callers that hand the table on, e.g. to Python).
    Memory(Vec<RecordBatch>),
}

/// A feature table held in memory: the same columns and values as the file
/// [`TableWriter::create`] writes, the feature schema JSON in the Arrow schema's metadata.
#[derive(Debug, Clone)]
pub struct FeatureTable {
    /// Columns (with the feature schema under [`SCHEMA_METADATA_KEY`]).
    pub schema: SchemaRef,
    /// Rows, in batches of at most 32,768.
    pub batches: Vec<RecordBatch>,
    /// Number of rows.
    pub rows: u64,
}

/// Streams rows into a feature table: a Parquet file or record batches in memory.
pub struct TableWriter {
    destination: Destination,
    schema: SchemaRef,
    strings: Vec<StringBuilder>,
    ints: Vec<Int64Builder>,
    features: Vec<Float32Builder>,
    labels: Vec<Int8Builder>,
    pending: usize,
    rows: u64,
}

/// Rows per record batch (and per Parquet write).
const BATCH_ROWS: usize = 32_768;

impl TableWriter {
    /// Creates `path` (under a temporary name until finished).
    pub fn create(
        path: &Path,
        string_ids: &[&str],
        int_ids: &[&str],
        schema: &FeatureSchema,
        with_labels: bool,
    ) -> Result<Self, TableError> {
        let mut table = Self::in_memory(string_ids, int_ids, schema, with_labels);
        let mut publication = Publication::create(path)?;
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_dictionary_enabled(false)
            .set_key_value_metadata(Some(vec![KeyValue::new(SCHEMA_METADATA_KEY.to_owned(), schema.to_json())]))
            .build();
        // The file's Arrow schema has no metadata: the feature schema is the file's.
        let file_schema = Arc::new(Schema::new(table.schema.fields().clone()));
        let writer = ArrowWriter::try_new(publication.take_file(), file_schema.clone(), Some(props))
            .map_err(|source| TableError::Parquet { path: temporary(&publication), source })?;
        table.schema = file_schema;
        table.destination = Destination::File { writer: Box::new(writer), publication };
        Ok(table)
    }

    /// A table kept in memory; [`TableWriter::finish_in_memory`] hands it over.
    pub fn in_memory(string_ids: &[&str], int_ids: &[&str], schema: &FeatureSchema, with_labels: bool) -> Self {
        let mut fields: Vec<Field> = string_ids.iter().map(|n| Field::new(*n, DataType::Utf8, false)).collect();
        fields.extend(int_ids.iter().map(|n| Field::new(*n, DataType::Int64, false)));
        fields.extend(schema.features.iter().map(|f| Field::new(&f.name, DataType::Float32, false)));
        let label_names: Vec<String> =
            if with_labels { schema.labels.iter().map(|l| format!("label_{}", l.name)).collect() } else { vec![] };
        fields.extend(label_names.iter().map(|n| Field::new(n, DataType::Int8, false)));
        let metadata = HashMap::from([(SCHEMA_METADATA_KEY.to_owned(), schema.to_json())]);
        TableWriter {
            destination: Destination::Memory(Vec::new()),
            schema: Arc::new(Schema::new_with_metadata(fields, metadata)),
            strings: string_ids.iter().map(|_| StringBuilder::new()).collect(),
            ints: int_ids.iter().map(|_| Int64Builder::new()).collect(),
            features: schema.features.iter().map(|_| Float32Builder::new()).collect(),
            labels: label_names.iter().map(|_| Int8Builder::new()).collect(),
            pending: 0,
            rows: 0,
        }
    }

    /// Appends a row (lengths must match the columns).
    pub fn append(&mut self, row: &Row) -> Result<(), TableError> {
        debug_assert_eq!(row.features.len(), self.features.len());
        for (b, v) in self.strings.iter_mut().zip(&row.strings) {
            b.append_value(v);
        }
        for (b, v) in self.ints.iter_mut().zip(&row.ints) {
            b.append_value(*v);
        }
        for (b, v) in self.features.iter_mut().zip(&row.features) {
            b.append_value(*v);
        }
        for (b, v) in self.labels.iter_mut().zip(&row.labels) {
            b.append_value(i8::from(*v));
        }
        self.pending += 1;
        self.rows += 1;
        if self.pending >= BATCH_ROWS {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), TableError> {
        if self.pending == 0 {
            return Ok(());
        }
        let mut cols: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());
        cols.extend(self.strings.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
        cols.extend(self.ints.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
        cols.extend(self.features.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
        cols.extend(self.labels.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
        self.pending = 0;
        let batch = RecordBatch::try_new(self.schema.clone(), cols);
        match &mut self.destination {
            Destination::File { writer, publication } => {
                let path = temporary(publication);
                let batch = batch.map_err(|e| TableError::Parquet { path: path.clone(), source: e.into() })?;
                writer.write(&batch).map_err(|source| TableError::Parquet { path, source })
            }
            Destination::Memory(batches) => {
                let batch = batch.map_err(|e| TableError::Parquet { path: "<memory>".into(), source: e.into() })?;
                batches.push(batch);
                Ok(())
            }
        }
    }

    /// Rows appended so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Flushes, closes and publishes the file; returns the row count.
    pub fn finish(self) -> Result<u64, TableError> {
        Ok(self.close()?.rows)
    }

    /// Flushes and hands over the table: its batches for a table in memory (a file
    /// writer's rows are in its file, published here, and the batches are empty).
    pub fn finish_in_memory(self) -> Result<FeatureTable, TableError> {
        self.close()
    }

    fn close(mut self) -> Result<FeatureTable, TableError> {
        self.flush()?;
        let (schema, rows) = (self.schema.clone(), self.rows);
        let batches = match self.destination {
            Destination::Memory(batches) => batches,
            Destination::File { writer, publication } => {
                let path = temporary(&publication);
                let file = writer.into_inner().map_err(|source| TableError::Parquet { path, source })?;
                publication.publish_file(file)?;
                Vec::new()
            }
        };
        Ok(FeatureTable { schema, batches, rows })
    }
}

/// The temporary path of a publication, for error messages.
fn temporary(publication: &Publication) -> String {
    publication.temporary_path().display().to_string()
}
