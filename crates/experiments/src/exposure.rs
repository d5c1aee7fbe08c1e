//! Exposures: the first time a user was answered by an experiment, and their Parquet form
//! (`user_id`, `experiment`, `arm`, `ts_ms`, `platform`, `category`, `room_id`).

use arrow::array::{Array, ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use liveprofile_events::Platform;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

/// One exposure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exposure {
    /// Unified user id.
    pub user_id: String,
    /// Experiment name.
    pub experiment: String,
    /// Arm name.
    pub arm: String,
    /// When the answer was given (UTC ms).
    pub ts_ms: i64,
    /// Platform of the answer.
    pub platform: Platform,
    /// Category of the answer.
    pub category: String,
    /// Live room of the answer, if any.
    pub room_id: Option<String>,
}

/// Rows per written row group.
const ROW_GROUP: usize = 64 * 1024;

/// Failures reading or writing exposure files.
#[derive(Debug, thiserror::Error)]
pub enum ExposureIoError {
    /// The file system failed.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Parquet or Arrow failed.
    #[error("{path}: {reason}")]
    Format {
        /// File.
        path: String,
        /// Cause.
        reason: String,
    },
    /// A row breaks the exposure contract.
    #[error("{path}: row {row}: {reason}")]
    BadRow {
        /// File.
        path: String,
        /// Row number (0-based).
        row: usize,
        /// What is wrong.
        reason: String,
    },
}

/// The Parquet schema of exposures.
pub fn exposure_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::Utf8, false),
        Field::new("experiment", DataType::Utf8, false),
        Field::new("arm", DataType::Utf8, false),
        Field::new("ts_ms", DataType::Int64, false),
        Field::new("platform", DataType::Utf8, false),
        Field::new("category", DataType::Utf8, false),
        Field::new("room_id", DataType::Utf8, true),
    ]))
}

fn batch_of(rows: &[Exposure]) -> Result<RecordBatch, arrow::error::ArrowError> {
    let col =
        |f: &dyn Fn(&Exposure) -> &str| -> ArrayRef { Arc::new(StringArray::from_iter_values(rows.iter().map(f))) };
    RecordBatch::try_new(
        exposure_schema(),
        vec![
            col(&|x| &x.user_id),
            col(&|x| &x.experiment),
            col(&|x| &x.arm),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|x| x.ts_ms))),
            col(&|x| x.platform.as_str()),
            col(&|x| &x.category),
            Arc::new(StringArray::from_iter(rows.iter().map(|x| x.room_id.as_deref()))),
        ],
    )
}

/// Writes exposures to `path`, published by rename (a reader never sees half a file).
/// Returns the rows written.
pub fn write_exposures(path: &Path, rows: &[Exposure]) -> Result<u64, ExposureIoError> {
    let p = path.display().to_string();
    let fmt = |e: &dyn std::fmt::Display| ExposureIoError::Format { path: p.clone(), reason: e.to_string() };
    let published = |e: liveprofile_publish::PublishError| ExposureIoError::Io {
        path: e.path.display().to_string(),
        source: e.source,
    };
    let mut publication = liveprofile_publish::Publication::create(path).map_err(published)?;
    let mut w = ArrowWriter::try_new(publication.take_file(), exposure_schema(), None).map_err(|e| fmt(&e))?;
    for chunk in rows.chunks(ROW_GROUP) {
        w.write(&batch_of(chunk).map_err(|e| fmt(&e))?).map_err(|e| fmt(&e))?;
    }
    let file = w.into_inner().map_err(|e| fmt(&e))?;
    publication.publish_file(file).map_err(published)?;
    Ok(rows.len() as u64)
}

/// Reads every exposure of a file, checking each row.
pub fn read_exposures(path: &Path) -> Result<Vec<Exposure>, ExposureIoError> {
    let p = path.display().to_string();
    let fmt = |e: &dyn std::fmt::Display| ExposureIoError::Format { path: p.clone(), reason: e.to_string() };
    let file = File::open(path).map_err(|source| ExposureIoError::Io { path: p.clone(), source })?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| fmt(&e))?.build().map_err(|e| fmt(&e))?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| fmt(&e))?;
        let text = |name: &str| -> Result<&StringArray, ExposureIoError> {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_any().downcast_ref::<StringArray>())
                .ok_or_else(|| fmt(&format!("column {name} (utf8) is missing")))
        };
        let (users, experiments, arms, platforms, categories, rooms) = (
            text("user_id")?,
            text("experiment")?,
            text("arm")?,
            text("platform")?,
            text("category")?,
            text("room_id")?,
        );
        let ts = batch
            .column_by_name("ts_ms")
            .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
            .ok_or_else(|| fmt(&"column ts_ms (int64) is missing"))?;
        for i in 0..batch.num_rows() {
            let row = out.len();
            let bad = |reason: String| ExposureIoError::BadRow { path: p.clone(), row, reason };
            // The category may be empty (a target over every category answers rows that
            // named none), not null.
            if categories.is_null(i) {
                return Err(bad("category is missing".to_owned()));
            }
            for (name, col) in [("user_id", users), ("experiment", experiments), ("arm", arms)] {
                if col.is_null(i) || col.value(i).is_empty() {
                    return Err(bad(format!("{name} is missing")));
                }
            }
            if ts.is_null(i) || platforms.is_null(i) {
                return Err(bad("ts_ms or platform is missing".to_owned()));
            }
            let platform = Platform::parse(platforms.value(i)).map_err(|e| bad(e.to_string()))?;
            out.push(Exposure {
                user_id: users.value(i).to_owned(),
                experiment: experiments.value(i).to_owned(),
                arm: arms.value(i).to_owned(),
                ts_ms: ts.value(i),
                platform,
                category: categories.value(i).to_owned(),
                room_id: (!rooms.is_null(i)).then(|| rooms.value(i).to_owned()),
            });
        }
    }
    Ok(out)
}
