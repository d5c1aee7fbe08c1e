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

/// An open input: its full schema, and batches of the selected columns.
pub struct Source {
    /// Schema of the batches (the selected columns, in file order).
    pub schema: SchemaRef,
    batches: Box<dyn Iterator<Item = Result<RecordBatch, arrow::error::ArrowError>> + Send>,
    path: PathBuf,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source").field("path", &self.path).field("schema", &self.schema).finish()
    }
}

impl Iterator for Source {
    type Item = Result<RecordBatch, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.batches.next().map(|r| r.map_err(|e| BatchError::Read { path: self.path.clone(), reason: e.to_string() }))
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
    match Format::of_input(path)? {
        Format::Parquet => {
            use parquet::arrow::ProjectionMask;
            use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
            let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| read_err(&e))?;
            check(builder.schema())?;
            let mask = ProjectionMask::roots(builder.parquet_schema(), pick(builder.schema()));
            let reader = builder.with_projection(mask).with_batch_size(batch_rows).build().map_err(|e| read_err(&e))?;
            Ok(Source {
                schema: arrow::array::RecordBatchReader::schema(&reader),
                batches: Box::new(reader),
                path: path.to_path_buf(),
            })
        }
        Format::ArrowFile => {
            let probe = arrow::ipc::reader::FileReader::try_new(file, None).map_err(|e| read_err(&e))?;
            check(&probe.schema())?;
            let projection = pick(&probe.schema());
            let file = File::open(path).map_err(|e| BatchError::io(path, e))?;
            let reader = arrow::ipc::reader::FileReader::try_new(file, Some(projection)).map_err(|e| read_err(&e))?;
            let schema = reader.schema();
            Ok(Source { schema, batches: Box::new(reader), path: path.to_path_buf() })
        }
        Format::ArrowStream => {
            let reader =
                arrow::ipc::reader::StreamReader::try_new(BufReader::new(file), None).map_err(|e| read_err(&e))?;
            let full = reader.schema();
            check(&full)?;
            let projection = pick(&full);
            let schema = Arc::new(full.project(&projection).map_err(|e| read_err(&e))?);
            let batches = reader.map(move |b| b.and_then(|b| b.project(&projection)));
            Ok(Source { schema, batches: Box::new(batches), path: path.to_path_buf() })
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
            Ok(Source { schema, batches: Box::new(reader), path: path.to_path_buf() })
        }
    }
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
