//! Writing feature tables: id columns, one float32 column per schema feature, one int8
//! column per label, the schema JSON in the file metadata; published by rename.

use crate::schema::FeatureSchema;
use arrow::array::{ArrayRef, Float32Builder, Int8Builder, Int64Builder, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema};
use liveprofile_publish::{Publication, PublishError};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
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

/// Streams rows into a feature table.
pub struct TableWriter {
    // Declared before the publication: an unfinished writer is closed before its
    // temporary file is removed.
    writer: ArrowWriter<File>,
    publication: Publication,
    schema: Arc<Schema>,
    strings: Vec<StringBuilder>,
    ints: Vec<Int64Builder>,
    features: Vec<Float32Builder>,
    labels: Vec<Int8Builder>,
    pending: usize,
    rows: u64,
}

impl TableWriter {
    /// Creates `path` (under a temporary name until finished).
    pub fn create(
        path: &Path,
        string_ids: &[&str],
        int_ids: &[&str],
        schema: &FeatureSchema,
        with_labels: bool,
    ) -> Result<Self, TableError> {
        let mut fields: Vec<Field> = string_ids.iter().map(|n| Field::new(*n, DataType::Utf8, false)).collect();
        fields.extend(int_ids.iter().map(|n| Field::new(*n, DataType::Int64, false)));
        fields.extend(schema.features.iter().map(|f| Field::new(&f.name, DataType::Float32, false)));
        let label_names: Vec<String> =
            if with_labels { schema.labels.iter().map(|l| format!("label_{}", l.name)).collect() } else { vec![] };
        fields.extend(label_names.iter().map(|n| Field::new(n, DataType::Int8, false)));
        let arrow_schema = Arc::new(Schema::new(fields));
        let mut publication = Publication::create(path)?;
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_dictionary_enabled(false)
            .set_key_value_metadata(Some(vec![KeyValue::new(SCHEMA_METADATA_KEY.to_owned(), schema.to_json())]))
            .build();
        let writer = ArrowWriter::try_new(publication.take_file(), arrow_schema.clone(), Some(props))
            .map_err(|source| TableError::Parquet { path: temporary(&publication), source })?;
        Ok(TableWriter {
            writer,
            publication,
            schema: arrow_schema,
            strings: string_ids.iter().map(|_| StringBuilder::new()).collect(),
            ints: int_ids.iter().map(|_| Int64Builder::new()).collect(),
            features: schema.features.iter().map(|_| Float32Builder::new()).collect(),
            labels: label_names.iter().map(|_| Int8Builder::new()).collect(),
            pending: 0,
            rows: 0,
        })
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
        if self.pending >= 32_768 {
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
        let path = temporary(&self.publication);
        let batch = RecordBatch::try_new(self.schema.clone(), cols)
            .map_err(|e| TableError::Parquet { path: path.clone(), source: e.into() })?;
        self.pending = 0;
        self.writer.write(&batch).map_err(|source| TableError::Parquet { path, source })
    }

    /// Rows appended so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Flushes, closes and publishes the file; returns the row count.
    pub fn finish(mut self) -> Result<u64, TableError> {
        self.flush()?;
        let file = self
            .writer
            .into_inner()
            .map_err(|source| TableError::Parquet { path: temporary(&self.publication), source })?;
        self.publication.publish_file(file)?;
        Ok(self.rows)
    }
}

/// The temporary path of a publication, for error messages.
fn temporary(publication: &Publication) -> String {
    publication.temporary_path().display().to_string()
}
