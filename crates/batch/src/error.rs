//! Why a batch job stopped. Every message names the file, and for bad data the row and
//! column.

use std::path::{Path, PathBuf};
use thiserror::Error;

/// A batch scoring error.
#[derive(Debug, Error)]
pub enum BatchError {
    /// A file could not be opened, read or written.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// An input extension that is not a known format.
    #[error("{0}: unknown input format (expected .parquet, .arrow, .arrows, .ipc, .feather or .csv)")]
    UnknownFormat(PathBuf),
    /// A glob pattern that is invalid or matches nothing.
    #[error("input pattern {pattern:?}: {reason}")]
    Pattern {
        /// Pattern.
        pattern: String,
        /// Why.
        reason: String,
    },
    /// The file cannot be decoded.
    #[error("{path}: cannot read: {reason}")]
    Read {
        /// File.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A row group of a Parquet file cannot be decoded (a damaged page, a count that does
    /// not match the footer): the job stops, nothing is published.
    #[error("{path}: row group {row_group} (from row {first_row}) cannot be read: {reason}")]
    RowGroup {
        /// File.
        path: PathBuf,
        /// Row group (0-based).
        row_group: usize,
        /// Its first row (0-based, in file order).
        first_row: u64,
        /// Why.
        reason: String,
    },
    /// A column the job reads appears more than once in the file.
    #[error("{path}: column {column:?} appears {count} times; which one to read is ambiguous")]
    DuplicateColumn {
        /// File.
        path: PathBuf,
        /// Column.
        column: String,
        /// How many columns have the name.
        count: usize,
    },
    /// Columns the model needs are not in the file.
    #[error("{path}: missing {} column(s) the model needs: {}", missing.len(), missing.join(", "))]
    MissingColumns {
        /// File.
        path: PathBuf,
        /// Missing feature columns (or kept columns).
        missing: Vec<String>,
    },
    /// A feature column of a type that cannot hold numbers.
    #[error("{path}: column {column:?} has type {data_type}; features must be numbers (or text holding numbers)")]
    ColumnType {
        /// File.
        path: PathBuf,
        /// Column.
        column: String,
        /// Its type.
        data_type: String,
    },
    /// A bad value with `--on-error fail`.
    #[error("{path}: row {row}, column {column:?}: {reason}")]
    BadRow {
        /// File.
        path: PathBuf,
        /// Row (0-based, in file order).
        row: u64,
        /// Column.
        column: String,
        /// What is wrong.
        reason: String,
    },
    /// The job's settings are inconsistent.
    #[error("{0}")]
    Usage(String),
    /// Scoring failed.
    #[error("scoring failed: {0}")]
    Score(String),
    /// An output path that must not be written (a special file, an input of the job);
    /// refused before anything is opened.
    #[error("{path}: refusing to write the output there: {reason}")]
    Output {
        /// The output path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The output cannot be written.
    #[error("{path}: cannot write: {reason}")]
    Write {
        /// File.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

impl BatchError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        BatchError::Io { path: path.to_path_buf(), source }
    }
}
