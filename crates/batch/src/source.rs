//! Input files: Parquet, Arrow IPC (file and stream) and CSV, read as a stream of record
//! batches holding only the columns the job needs.

use crate::error::BatchError;
use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Apache Parquet.
    Parquet,
    /// Arrow IPC file (random access, `ARROW1` magic).
    ArrowFile,
    /// Arrow IPC stream.
    ArrowStream,
    /// Comma-separated values with a header line.
    Csv,
}

impl Format {
    /// The format of an input, from its extension; `.arrow`, `.ipc` and `.feather` files
    /// are told apart (file or stream) by their first bytes.
    pub fn of_input(path: &Path) -> Result<Format, BatchError> {
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or_default().to_ascii_lowercase();
        match ext.as_str() {
            "parquet" | "pq" => Ok(Format::Parquet),
            "csv" => Ok(Format::Csv),
            "arrows" => Ok(Format::ArrowStream),
            "arrow" | "ipc" | "feather" => {
                let mut magic = [0u8; 6];
                let mut f = File::open(path).map_err(|e| BatchError::io(path, e))?;
                let n = f.read(&mut magic).map_err(|e| BatchError::io(path, e))?;
                Ok(if n == 6 && &magic == b"ARROW1" { Format::ArrowFile } else { Format::ArrowStream })
            }
            _ => Err(BatchError::UnknownFormat(path.to_path_buf())),
        }
    }

    /// File extension of outputs in this format.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Parquet => "parquet",
            Format::ArrowFile => "arrow",
            Format::ArrowStream => "arrows",
            Format::Csv => "csv",
        }
    }
}

type Batches = Box<dyn Iterator<Item = Result<RecordBatch, BatchError>> + Send>;

/// An open input: its full schema, and batches of the selected columns. The first error
/// ends it; a decoder that panics on damaged data is an error too (naming the file, and
/// for Parquet the row group), never a silent end of the input.
pub struct Source {
    /// Schema of the batches (the selected columns, in file order).
    pub schema: SchemaRef,
    batches: Batches,
    path: PathBuf,
    done: bool,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source").field("path", &self.path).field("schema", &self.schema).finish()
    }
}

impl Iterator for Source {
    type Item = Result<RecordBatch, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let item = match guarded(|| self.batches.next()) {
            Ok(item) => item,
            Err(panic) => {
                Some(Err(BatchError::Read { path: self.path.clone(), reason: format!("the decoder failed: {panic}") }))
            }
        };
        self.done = !matches!(item, Some(Ok(_)));
        item
    }
}

/// Runs `f`, turning a panic into its message. The readers of the formats assume
/// well-formed input in places and may panic on damaged bytes.
fn guarded<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panicked".to_owned())
    })
}

/// A Parquet file read one row group at a time, so that an error names its row group,
/// and each row group must give exactly the rows its footer declares.
struct ParquetBatches {
    path: PathBuf,
    file: File,
    metadata: parquet::arrow::arrow_reader::ArrowReaderMetadata,
    mask: parquet::arrow::ProjectionMask,
    batch_rows: usize,
    /// The row group being read, its first row and the rows read from it.
    group: usize,
    first_row: u64,
    rows_in_group: u64,
    reader: Option<parquet::arrow::arrow_reader::ParquetRecordBatchReader>,
}

impl ParquetBatches {
    fn error(&self, reason: String) -> BatchError {
        BatchError::RowGroup { path: self.path.clone(), row_group: self.group, first_row: self.first_row, reason }
    }

    fn open_group(&self) -> Result<parquet::arrow::arrow_reader::ParquetRecordBatchReader, String> {
        let file = self.file.try_clone().map_err(|e| e.to_string())?;
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::new_with_metadata(file, self.metadata.clone())
            .with_row_groups(vec![self.group])
            .with_projection(self.mask.clone())
            .with_batch_size(self.batch_rows)
            .build()
            .map_err(|e| e.to_string())
    }
}

impl Iterator for ParquetBatches {
    type Item = Result<RecordBatch, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let declared = self.metadata.metadata().row_groups().get(self.group)?.num_rows().max(0) as u64;
            if self.reader.is_none() {
                match guarded(|| self.open_group()) {
                    Ok(Ok(reader)) => self.reader = Some(reader),
                    Ok(Err(reason)) => return Some(Err(self.error(reason))),
                    Err(panic) => return Some(Err(self.error(format!("the decoder failed: {panic}")))),
                }
            }
            let reader = self.reader.as_mut().expect("opened above");
            match guarded(|| reader.next()) {
                Ok(Some(Ok(batch))) => {
                    self.rows_in_group += batch.num_rows() as u64;
                    if self.rows_in_group > declared {
                        return Some(Err(self.error(format!("more rows than the {declared} its footer declares"))));
                    }
                    return Some(Ok(batch));
                }
                Ok(Some(Err(e))) => return Some(Err(self.error(e.to_string()))),
                Err(panic) => return Some(Err(self.error(format!("the decoder failed: {panic}")))),
                Ok(None) if self.rows_in_group != declared => {
                    let reason = format!("{} rows read of the {declared} its footer declares", self.rows_in_group);
                    return Some(Err(self.error(reason)));
                }
                Ok(None) => {
                    self.reader = None;
                    self.group += 1;
                    self.first_row += declared;
                    self.rows_in_group = 0;
                }
            }
        }
    }
}

/// Opens an input and keeps only the columns named in `wanted` (all other columns are
/// not decoded). `check` sees the file's full schema first (to report missing columns).
pub fn open(
    path: &Path,
    batch_rows: usize,
    wanted: &dyn Fn(&str) -> bool,
    check: &dyn Fn(&Schema) -> Result<(), BatchError>,
) -> Result<Source, BatchError> {
    let read_err = |e: &dyn std::fmt::Display| BatchError::Read { path: path.to_path_buf(), reason: e.to_string() };
    let file = File::open(path).map_err(|e| BatchError::io(path, e))?;
    let pick = |schema: &Schema| -> Vec<usize> {
        schema.fields().iter().enumerate().filter(|(_, f)| wanted(f.name())).map(|(i, _)| i).collect()
    };
    let arrow_batches = |batches: Box<dyn Iterator<Item = Result<RecordBatch, arrow::error::ArrowError>> + Send>| {
        let path = path.to_path_buf();
        Box::new(batches.map(move |b| b.map_err(|e| BatchError::Read { path: path.clone(), reason: e.to_string() })))
            as Batches
    };
    let (schema, batches) = match Format::of_input(path)? {
        Format::Parquet => {
            use parquet::arrow::ProjectionMask;
            use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
            let metadata = guarded(|| ArrowReaderMetadata::load(&file, ArrowReaderOptions::new()))
                .map_err(|panic| read_err(&format!("the footer cannot be decoded: {panic}")))?
                .map_err(|e| read_err(&e))?;
            check(metadata.schema())?;
            let picked = pick(metadata.schema());
            let mask = ProjectionMask::roots(metadata.parquet_schema(), picked.iter().copied());
            let schema = Arc::new(metadata.schema().project(&picked).map_err(|e| read_err(&e))?);
            let batches = ParquetBatches {
                path: path.to_path_buf(),
                file,
                metadata,
                mask,
                batch_rows,
                group: 0,
                first_row: 0,
                rows_in_group: 0,
                reader: None,
            };
            (schema, Box::new(batches) as Batches)
        }
        Format::ArrowFile => {
            let probe = arrow::ipc::reader::FileReader::try_new(file, None).map_err(|e| read_err(&e))?;
            check(&probe.schema())?;
            let projection = pick(&probe.schema());
            let file = File::open(path).map_err(|e| BatchError::io(path, e))?;
            let reader = arrow::ipc::reader::FileReader::try_new(file, Some(projection)).map_err(|e| read_err(&e))?;
            (reader.schema(), arrow_batches(Box::new(reader)))
        }
        Format::ArrowStream => {
            let reader =
                arrow::ipc::reader::StreamReader::try_new(BufReader::new(file), None).map_err(|e| read_err(&e))?;
            let full = reader.schema();
            check(&full)?;
            let projection = pick(&full);
            let schema = Arc::new(full.project(&projection).map_err(|e| read_err(&e))?);
            (schema, arrow_batches(Box::new(reader.map(move |b| b.and_then(|b| b.project(&projection))))))
        }
        Format::Csv => {
            // Every column is read as text and numbers are parsed per value, so that a
            // value that is not a number is reported with its row and column.
            let mut header = String::new();
            std::io::BufRead::read_line(&mut BufReader::new(&file), &mut header)
                .map_err(|e| BatchError::io(path, e))?;
            let names = csv_header(&header);
            if names.is_empty() {
                return Err(read_err(&"empty file: no header line"));
            }
            let full = Schema::new(names.iter().map(|n| Field::new(n, DataType::Utf8, true)).collect::<Vec<_>>());
            check(&full)?;
            let projection = pick(&full);
            let file = File::open(path).map_err(|e| BatchError::io(path, e))?;
            let reader = arrow::csv::ReaderBuilder::new(Arc::new(full.clone()))
                .with_header(true)
                .with_batch_size(batch_rows)
                .with_projection(projection.clone())
                .build(BufReader::with_capacity(1 << 20, file))
                .map_err(|e| read_err(&e))?;
            let schema = Arc::new(full.project(&projection).map_err(|e| read_err(&e))?);
            (schema, arrow_batches(Box::new(reader)))
        }
    };
    Ok(Source { schema, batches, path: path.to_path_buf(), done: false })
}

/// Column names of a CSV header line (RFC 4180 quoting).
fn csv_header(line: &str) -> Vec<String> {
    let line = line.trim_end_matches(['\r', '\n']);
    if line.is_empty() {
        return Vec::new();
    }
    let mut names = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                current.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => names.push(std::mem::take(&mut current)),
            (c, _) => current.push(c),
        }
    }
    names.push(current);
    names
}

/// Expands paths and glob patterns into input files, in order, without duplicates.
pub fn expand_inputs(patterns: &[String]) -> Result<Vec<PathBuf>, BatchError> {
    let mut out: Vec<PathBuf> = Vec::new();
    for p in patterns {
        let matched: Vec<PathBuf> = if p.contains(['*', '?', '[']) {
            let paths = glob::glob(p).map_err(|e| BatchError::Pattern { pattern: p.clone(), reason: e.to_string() })?;
            let mut v: Vec<PathBuf> = paths.filter_map(Result::ok).filter(|p| p.is_file()).collect();
            v.sort();
            if v.is_empty() {
                return Err(BatchError::Pattern { pattern: p.clone(), reason: "matches no file".into() });
            }
            v
        } else {
            let path = PathBuf::from(p);
            if !path.is_file() {
                return Err(BatchError::io(&path, std::io::Error::new(std::io::ErrorKind::NotFound, "no such file")));
            }
            vec![path]
        };
        for m in matched {
            if !out.contains(&m) {
                out.push(m);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::csv_header;

    #[test]
    fn csv_headers_with_quotes() {
        assert_eq!(csv_header("a,b,c\n"), ["a", "b", "c"]);
        assert_eq!(csv_header("\"user id\",\"x,y\",\"say \"\"hi\"\"\"\r\n"), ["user id", "x,y", "say \"hi\""]);
        assert!(csv_header("\n").is_empty());
    }
}
