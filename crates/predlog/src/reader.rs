//! Reading the published log files back (for training sets, drift reports and tests).

use crate::{LogError, log_files};
use arrow::array::RecordBatch;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The rows of a log folder, oldest file first, with the names its files record.
#[derive(Debug, Default)]
pub struct LogRows {
    /// The files read, oldest first.
    pub files: Vec<PathBuf>,
    /// Their rows (columns: [`crate::log_schema`]).
    pub batches: Vec<RecordBatch>,
    /// Feature names per schema hash.
    pub feature_names: BTreeMap<String, Vec<String>>,
    /// Output names per `model@version`.
    pub output_names: BTreeMap<String, Vec<String>>,
}

impl LogRows {
    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// Reads every published file of the log folder `dir`.
pub fn read_log(dir: &Path) -> Result<LogRows, LogError> {
    let mut out = LogRows::default();
    for path in log_files(dir)? {
        let bad = |reason: String| LogError::Read { path: path.clone(), reason };
        let file = std::fs::File::open(&path).map_err(|source| LogError::Io { path: path.clone(), source })?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| bad(e.to_string()))?;
        for kv in builder.metadata().file_metadata().key_value_metadata().into_iter().flatten() {
            let Some(value) = &kv.value else { continue };
            let names = || serde_json::from_str::<Vec<String>>(value).map_err(|e| bad(format!("{}: {e}", kv.key)));
            if let Some(hash) = kv.key.strip_prefix("liveprofile.features.") {
                out.feature_names.insert(hash.to_owned(), names()?);
            } else if let Some(tag) = kv.key.strip_prefix("liveprofile.outputs.") {
                out.output_names.insert(tag.to_owned(), names()?);
            }
        }
        let reader = builder.build().map_err(|e| bad(e.to_string()))?;
        for batch in reader {
            out.batches.push(batch.map_err(|e| bad(e.to_string()))?);
        }
        out.files.push(path);
    }
    Ok(out)
}

/// Streams the published files of the log folder `dir`, oldest first, a batch at a time
/// with only the `columns` named (in file order), to `each`; memory holds one batch. A
/// file without one of the columns is an error naming it.
pub fn for_each_batch<E: From<LogError>>(
    dir: &Path,
    columns: &[&str],
    mut each: impl FnMut(&Path, &RecordBatch) -> Result<(), E>,
) -> Result<(), E> {
    for path in log_files(dir)? {
        let bad = |reason: String| LogError::Read { path: path.clone(), reason };
        let file = std::fs::File::open(&path).map_err(|source| LogError::Io { path: path.clone(), source })?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| bad(e.to_string()))?;
        let mut roots = Vec::with_capacity(columns.len());
        for name in columns {
            let Some(i) = builder.schema().fields().iter().position(|f| f.name() == name) else {
                return Err(bad(format!("no column {name:?}: not a prediction log file")).into());
            };
            roots.push(i);
        }
        let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
        for batch in builder.with_projection(mask).build().map_err(|e| bad(e.to_string()))? {
            each(&path, &batch.map_err(|e| bad(e.to_string()))?)?;
        }
    }
    Ok(())
}
