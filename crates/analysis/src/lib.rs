//! Cross-tag analysis over tag scores (the batch scorer's output): which tags go together
//! and how the platforms differ.
//!
//! - [`table`]: reading and checking the input.
//! - [`prevalence`]: tag prevalence per platform with intervals and over-representation.
//! - [`cooccurrence`]: support, Jaccard, lift, phi and significance per pair of tags.
//! - [`segments`]: user segments with k-means (linfa), k by silhouette, PCA picture.
//! - [`html`]: the report page with its SVG charts.
//! - [`stats`]: the intervals and tests they use.

pub mod cooccurrence;
pub mod html;
pub mod prevalence;
pub mod segments;
pub mod stats;
pub mod table;

use liveprofile_publish::{Publication, PublishError};
use serde::Serialize;
use std::path::Path;
use thiserror::Error;

/// Why an analysis cannot run.
#[derive(Debug, Error)]
pub enum AnalysisError {
    /// The input cannot be read.
    #[error("{path}: cannot read: {reason}")]
    Read {
        /// File.
        path: String,
        /// Why.
        reason: String,
    },
    /// A needed column is absent.
    #[error("the input has no column {column:?}")]
    MissingColumn {
        /// Column.
        column: String,
    },
    /// No tag columns.
    #[error("the input has no tag columns (floating-point probability columns)")]
    NoTagColumns,
    /// A column of the wrong type.
    #[error("column {column:?}: {reason}")]
    ColumnType {
        /// Column.
        column: String,
        /// Why.
        reason: String,
    },
    /// A null, non-finite or out-of-range value.
    #[error("column {column:?}, row {row}: {value} is not a probability in [0, 1]")]
    BadValue {
        /// Column.
        column: String,
        /// Row (0-based).
        row: usize,
        /// The value.
        value: String,
    },
    /// Too few users for the analysis.
    #[error("{users} users: the analysis needs at least {needed}")]
    TooFewUsers {
        /// Users given.
        users: usize,
        /// Needed.
        needed: usize,
    },
    /// Segmentation failed.
    #[error("segmentation: {0}")]
    Segments(String),
    /// The report cannot be written.
    #[error("{path}: cannot write: {reason}")]
    Write {
        /// File.
        path: String,
        /// Why.
        reason: String,
    },
}

/// Smallest number of users the analysis accepts.
pub const MIN_USERS: usize = 50;

/// Every figure of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Users analysed.
    pub users: usize,
    /// Tags, in input order.
    pub tags: Vec<String>,
    /// Probability from which a user carries a tag.
    pub threshold: f64,
    /// Pair reporting settings.
    pub min_support: f64,
    /// Smallest count of a reported pair.
    pub min_count: u64,
    /// Family-wise significance level (Bonferroni over all pairs).
    pub alpha: f64,
    /// Prevalence overall and per platform.
    pub prevalence: Vec<prevalence::Prevalence>,
    /// Every pair of tags, reported ones first.
    pub pairs: Vec<cooccurrence::PairStats>,
    /// User segments.
    pub segmentation: segments::Segmentation,
}

/// Runs the analyses on a table.
pub fn analyse(
    table: &table::TagTable,
    options: &cooccurrence::PairOptions,
    segment_options: &segments::SegmentOptions,
) -> Result<Report, AnalysisError> {
    if table.len() < MIN_USERS {
        return Err(AnalysisError::TooFewUsers { users: table.len(), needed: MIN_USERS });
    }
    Ok(Report {
        users: table.len(),
        tags: table.tags.clone(),
        threshold: options.threshold,
        min_support: options.min_support,
        min_count: options.min_count,
        alpha: options.alpha,
        prevalence: prevalence::prevalence(table, options.threshold),
        pairs: cooccurrence::pairs(table, options),
        segmentation: segments::segment(table, segment_options)?,
    })
}

/// Writes `report.json`, `report.html` and `segments.parquet` (user id, segment, PCA
/// coordinates) into `dir`, each published by rename (see [`Publication`]): on failure
/// nothing appears under the file's name.
pub fn write_report(report: &Report, table: &table::TagTable, dir: &Path) -> Result<std::path::PathBuf, AnalysisError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| AnalysisError::Write { path: dir.display().to_string(), reason: e.to_string() })?;
    let path = dir.join("report.json");
    let text = serde_json::to_string_pretty(report)
        .map_err(|e| AnalysisError::Write { path: path.display().to_string(), reason: e.to_string() })?;
    Publication::write_all(&path, text.as_bytes()).map_err(published)?;
    Publication::write_all(dir.join("report.html"), html::page(report).as_bytes()).map_err(published)?;
    write_segments(report, table, &dir.join("segments.parquet"))?;
    Ok(path)
}

fn published(e: PublishError) -> AnalysisError {
    AnalysisError::Write { path: e.path.display().to_string(), reason: e.source.to_string() }
}

fn write_segments(report: &Report, table: &table::TagTable, path: &Path) -> Result<(), AnalysisError> {
    use arrow::array::{ArrayRef, Float64Array, RecordBatch, StringArray, UInt32Array};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;
    let s = &report.segmentation;
    let schema = Arc::new(Schema::new(vec![
        Field::new("user_id", DataType::Utf8, false),
        Field::new("segment", DataType::UInt32, false),
        Field::new("pc1", DataType::Float64, false),
        Field::new("pc2", DataType::Float64, false),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(table.users.iter())),
        Arc::new(UInt32Array::from_iter_values(s.assignments.iter().map(|&a| a as u32))),
        Arc::new(Float64Array::from_iter_values(s.projection.iter().map(|p| p[0]))),
        Arc::new(Float64Array::from_iter_values(s.projection.iter().map(|p| p[1]))),
    ];
    let failed =
        |e: &dyn std::fmt::Display| AnalysisError::Write { path: path.display().to_string(), reason: e.to_string() };
    let batch = RecordBatch::try_new(schema.clone(), columns).map_err(|e| failed(&e))?;
    let mut publication = Publication::create(path).map_err(published)?;
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(publication.take_file(), schema, None).map_err(|e| failed(&e))?;
    writer.write(&batch).map_err(|e| failed(&e))?;
    let file = writer.into_inner().map_err(|e| failed(&e))?;
    publication.publish_file(file).map_err(published)
}
