//! Errors of the runtime: why a package is refused, why an input cannot be scored.

use thiserror::Error;

/// A model package was refused. The message names what failed, so a data scientist can
/// fix the package without reading the runtime's code.
#[derive(Debug, Error)]
pub enum PackageError {
    /// A file of the package could not be read.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// A package file is not a regular file (a FIFO, a device, a socket, a folder): reading
    /// it could block or never end, so it is refused before anything is read.
    #[error("{path} is {kind}, not a regular file: package files must be regular files")]
    NotRegularFile {
        /// File.
        path: String,
        /// What it is instead.
        kind: &'static str,
    },
    /// A package file is larger than the runtime reads for its kind.
    #[error("{path} is {bytes} bytes, over the {limit}-byte limit for {what}")]
    TooLarge {
        /// File.
        path: String,
        /// Its size.
        bytes: u64,
        /// The limit.
        limit: u64,
        /// `model.onnx`, `a JSON file`.
        what: &'static str,
    },
    /// The manifest, schema or golden file is not valid JSON of the expected shape.
    #[error("{file}: {reason}")]
    Format {
        /// File.
        file: String,
        /// What is wrong.
        reason: String,
    },
    /// `model.onnx` does not have the sha256 the manifest states.
    #[error("model.onnx sha256 is {actual}, the manifest says {expected}")]
    Checksum {
        /// From the manifest.
        expected: String,
        /// Of the file.
        actual: String,
    },
    /// Another file the manifest names does not have the sha256 the manifest states.
    #[error("{file} sha256 is {actual}, the manifest says {expected}")]
    FileChecksum {
        /// File.
        file: String,
        /// From the manifest.
        expected: String,
        /// Of the file.
        actual: String,
    },
    /// The manifest and the graph (or the schema) disagree.
    #[error("manifest disagrees with {against}: {reason}")]
    Mismatch {
        /// `the ONNX graph`, `the feature schema`, ...
        against: &'static str,
        /// Details.
        reason: String,
    },
    /// tract could not load or compile the graph.
    #[error("ONNX graph cannot be compiled: {0}")]
    Compile(String),
    /// A golden example is further from the Keras output than the tolerance.
    #[error(
        "golden example {example} ({note}): output {output}[{index}] is {actual}, Keras gave {expected}, difference {diff:e} > tolerance {tolerance:e}"
    )]
    Golden {
        /// Example number.
        example: usize,
        /// The example's note.
        note: String,
        /// Output name.
        output: String,
        /// Position within the output row.
        index: usize,
        /// tract's value.
        actual: f32,
        /// Keras's value.
        expected: f32,
        /// Absolute difference.
        diff: f32,
        /// Allowed difference.
        tolerance: f32,
    },
}

/// An input that cannot be scored. Every variant names the feature (and row) at fault.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum InputError {
    /// No rows.
    #[error("empty batch")]
    EmptyBatch,
    /// More rows than allowed.
    #[error("batch of {rows} rows is over the limit of {limit}")]
    BatchTooLarge {
        /// Rows asked.
        rows: usize,
        /// Limit.
        limit: usize,
    },
    /// A dense row of the wrong width.
    #[error("row {row} has {got} values, the model takes {expected} features")]
    WrongWidth {
        /// Row.
        row: usize,
        /// Values given.
        got: usize,
        /// Features expected.
        expected: usize,
    },
    /// A named feature is missing.
    #[error("row {row}: missing feature {feature:?}")]
    Missing {
        /// Row.
        row: usize,
        /// Feature.
        feature: String,
    },
    /// A name that is not a feature of the model.
    #[error("row {row}: unknown feature {feature:?}")]
    Unknown {
        /// Row.
        row: usize,
        /// Name given.
        feature: String,
    },
    /// NaN or infinity.
    #[error("row {row}: feature {feature:?} is not finite ({value})")]
    NotFinite {
        /// Row.
        row: usize,
        /// Feature.
        feature: String,
        /// Value.
        value: f32,
    },
    /// A category feature whose value is not an index into its vocabulary.
    #[error("row {row}: feature {feature:?} is a category with {size} values; {value} is not one of their indices")]
    BadCategory {
        /// Row.
        row: usize,
        /// Feature.
        feature: String,
        /// Value.
        value: f32,
        /// Vocabulary size.
        size: usize,
    },
    /// A bool feature whose value is neither 0 nor 1.
    #[error("row {row}: feature {feature:?} is a bool; {value} is neither 0 nor 1")]
    BadBool {
        /// Row.
        row: usize,
        /// Feature.
        feature: String,
        /// Value.
        value: f32,
    },
    /// The caller's schema hash is not the model's.
    #[error("schema hash {given} does not match the model's feature schema {expected}")]
    SchemaHash {
        /// Given.
        given: String,
        /// The model's.
        expected: String,
    },
}

/// Scoring rows given column by column ([`crate::LoadedModel::score_columns`]) failed.
#[derive(Debug, Error)]
pub enum ColumnsError {
    /// Not one column per feature.
    #[error("{got} feature columns given, the model takes {expected} features")]
    ColumnCount {
        /// Columns given.
        got: usize,
        /// The model's features.
        expected: usize,
    },
    /// A column of another length than the first.
    #[error("feature column {column} has {got} rows, column 0 has {expected}")]
    ColumnLength {
        /// The column.
        column: usize,
        /// Its rows.
        got: usize,
        /// The first column's rows.
        expected: usize,
    },
    /// A chunk of rows failed to score.
    #[error("rows from {first_row}: {source}")]
    Rows {
        /// The first row of the chunk that failed (row numbers in `source` count from it).
        first_row: usize,
        /// Why.
        source: ScoreError,
    },
}

/// Scoring failed.
#[derive(Debug, Error)]
pub enum ScoreError {
    /// The input is invalid.
    #[error(transparent)]
    Input(#[from] InputError),
    /// The engine failed (never expected for a checked package).
    #[error("inference failed: {0}")]
    Engine(String),
}
