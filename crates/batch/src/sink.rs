//! Output files, published by rename (`liveprofile-publish`): written under a temporary
//! name beside the final one and renamed into place only when complete, so a killed job
//! never leaves a partial file under the final name, and a failed one (a write error, a
//! full disk, a bad input row) removes its temporary file on every path.
//!
//! [`check_output`] runs before anything is opened: a target that is a device, FIFO,
//! socket, folder or symbolic link (which a rename would replace) or that is an input of
//! the job is refused.

use crate::error::BatchError;
use crate::source::Format;
use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use liveprofile_publish::{Publication, PublishError};
use std::fs::{File, FileType};
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

/// An output being written. Dropped before [`Sink::finish`] (or before its
/// [`Completed::publish`]), it removes its temporary file.
pub struct Sink {
    writer: Writer,
    publication: Publication,
    path: PathBuf,
    rows: u64,
}

/// An output written to the end and synced, not yet under its final name.
#[derive(Debug)]
pub struct Completed {
    publication: Publication,
    file: File,
    rows: u64,
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink").field("path", &self.path).field("rows", &self.rows).finish()
    }
}

fn publish_error(e: PublishError) -> BatchError {
    BatchError::Io { path: e.path, source: e.source }
}

/// What a file type is, in words.
fn describe(t: FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    if t.is_dir() {
        "a folder"
    } else if t.is_symlink() {
        "a symbolic link"
    } else if t.is_file() {
        "a regular file"
    } else {
        "a special file"
    }
}

/// Whether `input` is the existing regular file `output` (`output_meta` is its metadata):
/// the same canonical path, or on unix the same device and inode (a hard link).
fn is_same_file(output: &Path, output_meta: &std::fs::Metadata, input: &Path) -> bool {
    let Ok(input_meta) = std::fs::metadata(input) else {
        return false; // an input that cannot be read fails when it is opened
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if (input_meta.dev(), input_meta.ino()) == (output_meta.dev(), output_meta.ino()) {
            return true;
        }
    }
    #[cfg(not(unix))]
    let _ = (output_meta, input_meta);
    matches!((output.canonicalize(), input.canonicalize()), (Ok(a), Ok(b)) if a == b)
}

/// Refuses an output path that publishing by rename must not replace: one that exists
/// and is not a regular file (a device such as `/dev/null`, a FIFO, a socket, a folder, a
/// symbolic link), or one that is one of `inputs` (compared by canonical path and, on
/// unix, by device and inode). Opens nothing for writing.
pub fn check_output(output: &Path, inputs: &[&Path]) -> Result<(), BatchError> {
    let refuse = |reason: String| Err(BatchError::Output { path: output.to_path_buf(), reason });
    let meta = match std::fs::symlink_metadata(output) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(BatchError::io(output, e)),
    };
    if !meta.file_type().is_file() {
        return refuse(format!(
            "it is {}, not a regular file (publishing by rename would replace it)",
            describe(meta.file_type())
        ));
    }
    for input in inputs {
        if is_same_file(output, &meta, input) {
            return refuse(format!("it is the input {} (the scores would replace their input)", input.display()));
        }
    }
    Ok(())
}

impl Sink {
    /// Creates the temporary file. `metadata` goes into the file's key-value metadata
    /// (Parquet) or schema metadata (Arrow). A target that exists and is not a regular
    /// file is refused.
    pub fn create(
        path: &Path,
        format: Format,
        schema: SchemaRef,
        metadata: &[(String, String)],
    ) -> Result<Sink, BatchError> {
        let werr = |e: &dyn std::fmt::Display| BatchError::Write { path: path.to_path_buf(), reason: e.to_string() };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| BatchError::io(dir, e))?;
        }
        let mut publication = Publication::create(path).map_err(publish_error)?;
        let file = publication.take_file();
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
        Ok(Sink { writer, publication, path: path.to_path_buf(), rows: 0 })
    }

    /// Appends a batch.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), BatchError> {
        let werr = |e: &dyn std::fmt::Display| BatchError::Write { path: self.path.clone(), reason: e.to_string() };
        match &mut self.writer {
            Writer::Parquet(w) => w.write(batch).map_err(|e| werr(&e))?,
            Writer::ArrowFile(w) => w.write(batch).map_err(|e| werr(&e))?,
            Writer::ArrowStream(w) => w.write(batch).map_err(|e| werr(&e))?,
            Writer::Csv(w) => w.write(batch).map_err(|e| werr(&e))?,
        }
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    /// Completes the file (footer, buffers) and syncs it, so that a full disk shows here,
    /// before any output of the job is published.
    pub fn complete(self) -> Result<Completed, BatchError> {
        let Sink { writer, publication, path, rows } = self;
        let werr = |e: &dyn std::fmt::Display| BatchError::Write { path: path.clone(), reason: e.to_string() };
        let file = match writer {
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
        file.sync_all().map_err(|e| BatchError::io(publication.temporary_path(), e))?;
        Ok(Completed { publication, file, rows })
    }

    /// Completes the file and renames it to its final name; returns its rows.
    pub fn finish(self) -> Result<u64, BatchError> {
        self.complete()?.publish()
    }
}

impl Completed {
    /// Renames the file to its final name (and syncs the folder); returns its rows.
    pub fn publish(self) -> Result<u64, BatchError> {
        self.publication.publish_file(self.file).map_err(publish_error)?;
        Ok(self.rows)
    }
}
