//! Errors of single events and of event files.

use thiserror::Error;

/// Why one event breaks the contract.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum EventError {
    /// Platform string outside the contract.
    #[error("unknown platform {0:?}")]
    UnknownPlatform(String),
    /// Kind string outside the contract.
    #[error("unknown event kind {0:?}")]
    UnknownKind(String),
    /// A required column is null or empty.
    #[error("missing {column}")]
    Missing {
        /// The column.
        column: &'static str,
    },
    /// The value column breaks its rule.
    #[error("bad value {value}: {reason}")]
    BadValue {
        /// The offending value.
        value: f64,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// The value is above its kind's limit ([`crate::EventKind::max_value`]).
    #[error("value {} on {kind} is over the limit of {limit} {unit}", shown(*.value))]
    ValueOverLimit {
        /// The event kind.
        kind: crate::EventKind,
        /// The offending value.
        value: f64,
        /// The limit.
        limit: f64,
        /// Unit of the value and the limit (`yuan`, `seconds`).
        unit: &'static str,
    },
}

/// A value as an error message shows it: plain up to 10^15, in scientific notation above
/// (a message does not grow to hundreds of digits for a value near `f64::MAX`).
fn shown(value: f64) -> String {
    if value.abs() < 1e15 { value.to_string() } else { format!("{value:e}") }
}

/// Reading or writing an event file failed.
#[derive(Debug, Error)]
pub enum EventIoError {
    /// File system error.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Parquet error.
    #[error("{path}: {source}")]
    Parquet {
        /// The file.
        path: String,
        /// The cause.
        source: parquet::errors::ParquetError,
    },
    /// Arrow error.
    #[error("{path}: {source}")]
    Arrow {
        /// The file.
        path: String,
        /// The cause.
        source: arrow::error::ArrowError,
    },
    /// The file's schema does not carry the event contract.
    #[error("{path}: column {column}: {reason}")]
    Schema {
        /// The file.
        path: String,
        /// The column.
        column: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl From<liveprofile_publish::PublishError> for EventIoError {
    fn from(e: liveprofile_publish::PublishError) -> Self {
        EventIoError::Io { path: e.path.display().to_string(), source: e.source }
    }
}
