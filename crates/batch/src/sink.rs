//! Output files, written under a temporary name beside the final one and renamed into
//! place only when complete: a killed job never leaves a partial file under the final name.

use crate::error::BatchError;
use crate::source::Format;
use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

/// Rows per Parquet row group of an output.
pub const ROW_GROUP_ROWS: usize = 131_072;

enum Writer {
    Parquet(Box<parquet::arrow::ArrowWriter<File>>),
    ArrowFile(Box<arrow::ipc::writer::FileWriter<BufWriter<File>>>),
    ArrowStream(Box<arrow::ipc::writer::StreamWriter<BufWriter<File>>>),
    Csv(Box<arrow::csv::Writer<BufWriter<File>>>),
}

/// An output being written.
pub struct Sink {
    writer: Option<Writer>,
    partial: PathBuf,
    path: PathBuf,
    rows: u64,
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink").field("path", &self.path).field("rows", &self.rows).finish()
    }
}

/// The temporary name of an output: hidden, beside it, with the process id.
fn partial_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.partial", std::process::id()))
}

impl Sink {
    /// Creates the temporary file. `metadata` goes into the file's key-value metadata
    /// (Parquet) or schema metadata (Arrow).
    pub fn create(
        path: &Path,
        format: Format,
        schema: SchemaRef,
        metadata: &[(String, String)],
    ) -> Result<Sink, BatchError> {
        let partial = partial_path(path);
        let werr = |e: &dyn std::fmt::Display| BatchError::Write { path: path.to_path_buf(), reason: e.to_string() };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| BatchError::io(dir, e))?;
        }
        let file = File::create(&partial).map_err(|e| BatchError::io(&partial, e))?;
        let schema = if metadata.is_empty() || format == Format::Csv {
            schema
        } else {
            let mut m = schema.metadata().clone();
            m.extend(metadata.iter().cloned());
            std::sync::Arc::new(schema.as_ref().clone().with_metadata(m))
        };
        let writer = match format {
            Format::Parquet => {
                let kv = metadata
                    .iter()
                    .map(|(k, v)| parquet::file::metadata::KeyValue::new(k.clone(), v.clone()))
                    .collect();
                // Scores are nearly all distinct: dictionary encoding would only cost a hash
                // per value. Text and integer columns keep it.
                let mut props = parquet::file::properties::WriterProperties::builder()
                    .set_compression(parquet::basic::Compression::SNAPPY)
                    .set_dictionary_enabled(false)
                    // The writer holds a row group in memory until it is full: a fixed
                    // size keeps memory independent of the input's length.
                    .set_max_row_group_size(ROW_GROUP_ROWS)
                    .set_key_value_metadata(Some(kv));
                for f in schema.fields() {
                    if !matches!(
                        f.data_type(),
                        arrow::datatypes::DataType::Float32 | arrow::datatypes::DataType::Float64
                    ) {
                        props = props.set_column_dictionary_enabled(
                            parquet::schema::types::ColumnPath::from(f.name().as_str()),
                            true,
                        );
                    }
                }
                let props = props.build();
                Writer::Parquet(Box::new(
                    parquet::arrow::ArrowWriter::try_new(file, schema, Some(props)).map_err(|e| werr(&e))?,
                ))
            }
            Format::ArrowFile => Writer::ArrowFile(Box::new(
                arrow::ipc::writer::FileWriter::try_new(BufWriter::new(file), &schema).map_err(|e| werr(&e))?,
            )),
            Format::ArrowStream => Writer::ArrowStream(Box::new(
                arrow::ipc::writer::StreamWriter::try_new(BufWriter::new(file), &schema).map_err(|e| werr(&e))?,
            )),
            Format::Csv => {
                Writer::Csv(Box::new(arrow::csv::WriterBuilder::new().with_header(true).build(BufWriter::new(file))))
            }
        };
        Ok(Sink { writer: Some(writer), partial, path: path.to_path_buf(), rows: 0 })
    }

    /// Appends a batch.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), BatchError> {
        let werr = |e: &dyn std::fmt::Display| BatchError::Write { path: self.path.clone(), reason: e.to_string() };
        match self.writer.as_mut().expect("sink is open") {
            Writer::Parquet(w) => w.write(batch).map_err(|e| werr(&e))?,
            Writer::ArrowFile(w) => w.write(batch).map_err(|e| werr(&e))?,
            Writer::ArrowStream(w) => w.write(batch).map_err(|e| werr(&e))?,
            Writer::Csv(w) => w.write(batch).map_err(|e| werr(&e))?,
        }
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    /// Completes the file, syncs it, and renames it to its final name.
    pub fn finish(mut self) -> Result<u64, BatchError> {
        let werr = |e: &dyn std::fmt::Display| BatchError::Write { path: self.path.clone(), reason: e.to_string() };
        let file = match self.writer.take().expect("sink is open") {
            Writer::Parquet(w) => w.into_inner().map_err(|e| werr(&e))?,
            Writer::ArrowFile(mut w) => {
                w.finish().map_err(|e| werr(&e))?;
                w.into_inner().map_err(|e| werr(&e))?.into_inner().map_err(|e| werr(&e.error()))?
            }
            Writer::ArrowStream(mut w) => {
                w.finish().map_err(|e| werr(&e))?;
                w.into_inner().map_err(|e| werr(&e))?.into_inner().map_err(|e| werr(&e.error()))?
            }
            Writer::Csv(w) => w.into_inner().into_inner().map_err(|e| werr(&e.error()))?,
        };
        file.sync_all().map_err(|e| BatchError::io(&self.partial, e))?;
        std::fs::rename(&self.partial, &self.path).map_err(|e| BatchError::io(&self.path, e))?;
        Ok(self.rows)
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        if self.writer.take().is_some() {
            let _ = std::fs::remove_file(&self.partial);
        }
    }
}
