//! The prediction log: every scoring answer (or a sample of the requests), with the feature
//! values exactly as scored, appended off the request path to Parquet files that rotate by
//! size and age and are kept within a total size.
//!
//! - [`PredictionLog::offer`] never blocks and never fails an answer: a request's records
//!   (borrowed) are copied into a bounded buffer ([`LogConfig::queue_rows`] rows and
//!   [`LogConfig::queue_bytes`] of text and values) under a lock held for the copy; when
//!   it is full (the disk is slower than the traffic) the request's records are dropped and
//!   counted. The buffer is three growing arrays (rows, text, values) that the writer swaps
//!   with a second, emptied set: no allocation per row on either side in steady traffic;
//!   after a burst each gives half its room back per drain that used less than a quarter
//!   of it. Offering wakes nobody: a queue that woke
//!   its reader per request cost the service a context switch per answer (16-22% of its
//!   throughput on 2 cores).
//! - One writer thread takes the whole buffer every [`DRAIN_INTERVAL`] and gathers the rows
//!   in memory, their value lists encoded and compressed page by page as they arrive
//!   (`lists`), until they fill a row group of [`ROW_GROUP_ROWS`] rows or hold
//!   [`ROW_GROUP_BYTES`] of memory, written to the current file, and
//!   publishes the file by rename (synced, see `liveprofile-publish`) once it reaches
//!   [`LogConfig::max_file_bytes`] or is [`LogConfig::max_file_age`] old, or at
//!   [`PredictionLog::close`]. Records not yet in a published file are lost if the process
//!   dies: at most one file's age of them.
//! - After each publication the oldest published files are deleted until the folder holds
//!   at most [`LogConfig::retention_bytes`].
//! - A file is `predictions-<first time ms>-<sequence>.parquet`; names sort in time order.
//!   Columns: [`log_schema`]. The feature values are one list column in schema order with the
//!   schema hash beside it; each file's metadata holds the feature names of every schema
//!   hash and the output names of every model version in it
//!   (`liveprofile.features.<hash>`, `liveprofile.outputs.<model>@<version>`, JSON arrays).
//! - [`training`]: training sets from the log, each row joined with the labels its user
//!   earned after the time its features describe.

mod lists;
pub mod reader;
mod staging;
pub mod training;
mod writer;

pub use reader::{LogRows, for_each_batch, read_log};
pub use training::{TrainingError, TrainingOptions, TrainingReport, write_training_set};
pub use writer::{FILE_PREFIX, log_schema};

use liveprofile_runtime::{LoadedModel, Scores};
use staging::Staged;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Rows per Parquet row group.
pub const ROW_GROUP_ROWS: usize = 16_384;

/// Memory the rows of a row group may hold while they are gathered (their text and numbers,
/// their value lists' compressed pages and the page being filled), and one record more (the
/// one that reaches it, at most [`MAX_RECORD_BYTES`]): a wide model's row groups have fewer
/// rows than [`ROW_GROUP_ROWS`]. Rows of 222 features fill [`ROW_GROUP_ROWS`] first (their
/// values take at most 14 MiB before compression).
pub const ROW_GROUP_BYTES: usize = 32 << 20;

/// Most bytes of text and values (4 a value) in one record: a request with a larger one is
/// dropped and counted, so that a row group holds at most [`ROW_GROUP_BYTES`] and one
/// record more.
pub const MAX_RECORD_BYTES: usize = ROW_GROUP_BYTES / 4;

/// Settings of the log.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// Folder of the log files (created if missing).
    pub dir: PathBuf,
    /// Share of requests logged, 0 to 1 (all rows of a sampled request are logged).
    pub sample: f64,
    /// A file is published once it holds this many bytes (the rows not yet encoded counted
    /// at the bytes a data byte took in the file's row groups written so far, or in the
    /// previous file's before its first).
    pub max_file_bytes: u64,
    /// A file is published once its first record is this old, even if small.
    pub max_file_age: Duration,
    /// The oldest files are deleted while the folder's files hold more than this.
    pub retention_bytes: u64,
    /// Rows waiting for the writer; beyond, a request's records are dropped and counted.
    pub queue_rows: usize,
    /// Bytes of text and values (4 a value) waiting for the writer; beyond, a request's
    /// records are dropped and counted (ids and rooms come from callers: rows alone do not
    /// bound the memory).
    pub queue_bytes: usize,
}

/// Default [`LogConfig::max_file_bytes`]: 64 MiB.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 64 << 20;
/// Default [`LogConfig::max_file_age`]: one minute.
pub const DEFAULT_MAX_FILE_AGE: Duration = Duration::from_secs(60);
/// Default [`LogConfig::retention_bytes`]: 4 GiB.
pub const DEFAULT_RETENTION_BYTES: u64 = 4 << 30;
/// Default [`LogConfig::queue_rows`]: 65,536 rows (about 60 MiB of 222-feature rows).
pub const DEFAULT_QUEUE_ROWS: usize = 65_536;
/// Default [`LogConfig::queue_bytes`]: 128 MiB.
pub const DEFAULT_QUEUE_BYTES: usize = 128 << 20;

/// How often the writer takes what was offered.
pub const DRAIN_INTERVAL: Duration = Duration::from_millis(10);

impl LogConfig {
    /// The defaults above, every request logged, in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        LogConfig {
            dir: dir.into(),
            sample: 1.0,
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            max_file_age: DEFAULT_MAX_FILE_AGE,
            retention_bytes: DEFAULT_RETENTION_BYTES,
            queue_rows: DEFAULT_QUEUE_ROWS,
            queue_bytes: DEFAULT_QUEUE_BYTES,
        }
    }

    /// Refuses settings that cannot work, naming the setting.
    pub fn validate(&self) -> Result<(), LogError> {
        let bad = |what: &str| Err(LogError::Config(what.to_owned()));
        if !(0.0..=1.0).contains(&self.sample) {
            return bad("the sample must be between 0 and 1");
        }
        if self.max_file_bytes == 0 || self.queue_rows == 0 || self.queue_bytes == 0 || self.max_file_age.is_zero() {
            return bad("file size, file age, queue length and queue bytes must be positive");
        }
        if self.retention_bytes < self.max_file_bytes {
            return bad("the retention must hold at least one file (retention >= file size)");
        }
        Ok(())
    }
}

/// One scored row as the service answered it, borrowed from the request. Offering copies it
/// into the log's buffer (one buffer of rows, one of their text and one of their values), so
/// the log's buffer allocates nothing per row and the writer frees nothing a request
/// allocated: with a record owning its strings and values, freeing them on the writer's
/// thread was a third of the writer's time in the service.
#[derive(Debug, Clone, Copy)]
pub struct PredictionRecord<'a> {
    /// The request's id (the caller's `x-request-id`, or one the server made).
    pub request_id: &'a str,
    /// When the answer was made, UTC milliseconds.
    pub time_ms: i64,
    /// The time the features describe, when the service built them from the profile store
    /// (the request's `as_of_ms`, or the moment it read the profile); `None` for features
    /// the caller sent.
    pub as_of_ms: Option<i64>,
    /// The API (`v1.ScoreTags`, `v1.ScoreConversion`, `v1.ScoreStream`, `kserve.ModelInfer`).
    pub api: &'static str,
    /// The unified user id (empty when the API has none).
    pub user_id: &'a str,
    /// The platform, when the request gave one.
    pub platform: &'a str,
    /// The room, when the request gave one.
    pub room_id: &'a str,
    /// The model version that answered.
    pub model: &'a Arc<LoadedModel>,
    /// `stable`, `canary`, `pinned` or `experiment`.
    pub arm: &'static str,
    /// The experiment, when an experiment answered.
    pub experiment: &'a str,
    /// The experiment's arm.
    pub experiment_arm: &'a str,
    /// Feature values as scored, in the model's schema order.
    pub features: &'a [f32],
    /// Every output value, outputs in manifest order.
    pub outputs: RowOutputs<'a>,
    /// Time in the batcher's queue, microseconds.
    pub queue_us: u64,
    /// Time its batch took, microseconds.
    pub compute_us: u64,
}

impl<'a> PredictionRecord<'a> {
    /// The record's caller-given texts: request id, user, platform, room, experiment and
    /// experiment arm.
    pub fn texts(&self) -> [&'a str; 6] {
        [self.request_id, self.user_id, self.platform, self.room_id, self.experiment, self.experiment_arm]
    }
}

/// A row's output values, outputs in manifest order.
#[derive(Debug, Clone, Copy)]
pub enum RowOutputs<'a> {
    /// The values in one slice.
    Values(&'a [f32]),
    /// Row `row` of each output of a batch's scores.
    Scored {
        /// The batch's scores.
        scores: &'a Scores,
        /// The row.
        row: usize,
    },
}

impl<'a> RowOutputs<'a> {
    /// Whether the values are there: a scored row within its scores, each output holding
    /// the row's values.
    pub fn is_valid(self) -> bool {
        match self {
            RowOutputs::Values(_) => true,
            RowOutputs::Scored { scores, row } => {
                row < scores.rows
                    && scores
                        .outputs
                        .iter()
                        .all(|o| (row + 1).checked_mul(o.width).is_some_and(|end| end <= o.values.len()))
            }
        }
    }

    /// The values in pieces, in order. Panics unless [`RowOutputs::is_valid`].
    pub fn parts(self) -> impl Iterator<Item = &'a [f32]> + Clone {
        let (flat, scored) = match self {
            RowOutputs::Values(v) => (Some(v), None),
            RowOutputs::Scored { scores, row } => (None, Some((scores, row))),
        };
        flat.into_iter().chain(scored.into_iter().flat_map(|(scores, row)| {
            scores.outputs.iter().map(move |o| &o.values[row * o.width..(row + 1) * o.width])
        }))
    }

    /// How many values.
    pub fn len(self) -> usize {
        self.parts().map(<[f32]>::len).sum()
    }

    /// Whether there are none.
    pub fn is_empty(self) -> bool {
        self.len() == 0
    }
}

/// What the log did so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Rows in published files.
    pub rows_written: u64,
    /// Rows dropped: the queue was full, or their file could not be opened, written or
    /// published.
    pub rows_dropped: u64,
    /// Files published.
    pub files_published: u64,
    /// Files deleted by retention.
    pub files_deleted: u64,
    /// Write or publish failures (each loses the file being written).
    pub write_errors: u64,
}

/// Errors opening or closing the log.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A setting that cannot work.
    #[error("prediction log: {0}")]
    Config(String),
    /// The folder cannot be used.
    #[error("prediction log {path}: {source}")]
    Io {
        /// Folder or file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// A log file cannot be read.
    #[error("prediction log {path}: {reason}")]
    Read {
        /// File.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) rows_written: AtomicU64,
    pub(crate) rows_dropped: AtomicU64,
    pub(crate) files_published: AtomicU64,
    pub(crate) files_deleted: AtomicU64,
    pub(crate) write_errors: AtomicU64,
}

/// Records offered and not yet taken by the writer.
#[derive(Debug, Default)]
pub(crate) struct Buffer {
    pub(crate) records: Mutex<Staged>,
    pub(crate) closed: AtomicBool,
}

/// The running log: a bounded buffer in front of the writer thread.
#[derive(Debug)]
pub struct PredictionLog {
    config: LogConfig,
    buffer: Arc<Buffer>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    counters: Arc<Counters>,
}

impl PredictionLog {
    /// Checks the settings, creates the folder and starts the writer thread.
    pub fn open(config: LogConfig) -> Result<Self, LogError> {
        config.validate()?;
        std::fs::create_dir_all(&config.dir).map_err(|source| LogError::Io { path: config.dir.clone(), source })?;
        let counters = Arc::new(Counters::default());
        let buffer = Arc::new(Buffer::default());
        let writer = writer::Writer::new(config.clone(), counters.clone());
        let taken = buffer.clone();
        let handle = std::thread::Builder::new()
            .name("prediction-log".into())
            .spawn(move || writer.run(&taken))
            .map_err(|source| LogError::Io { path: config.dir.clone(), source })?;
        Ok(PredictionLog { config, buffer, writer: Mutex::new(Some(handle)), counters })
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.config.dir
    }

    /// Whether the request with this id is in the sample (the same answer for the same id
    /// in every process).
    pub fn sampled(&self, request_id: &str) -> bool {
        let s = self.config.sample;
        if s >= 1.0 {
            return true;
        }
        // The id's stable hash, mixed (splitmix64's finaliser: ids that differ in their last
        // characters differ in every bit), as a number in [0, 1).
        let mut z = liveprofile_events::stable_hash(request_id);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        let u = (z >> 11) as f64 / (1u64 << 53) as f64;
        u < s
    }

    /// Copies one request's records into the log's buffer without waiting: all are dropped
    /// and counted when they do not fit (in rows or bytes) or the log is closed, when a
    /// record is over [`MAX_RECORD_BYTES`], or when a record's outputs are not there
    /// ([`RowOutputs::is_valid`]); both checked before the buffer is locked.
    pub fn offer(&self, records: &[PredictionRecord<'_>]) {
        if records.is_empty() {
            return;
        }
        let n = records.len();
        let mut bytes = 0;
        for (row, r) in records.iter().enumerate() {
            let refused = if r.outputs.is_valid() {
                let size = Staged::bytes_of(r);
                bytes += size;
                (size > MAX_RECORD_BYTES).then_some("over MAX_RECORD_BYTES")
            } else {
                Some("its outputs are not in its scores")
            };
            if let Some(why) = refused {
                tracing::warn!(row, why, "prediction log: a record refused; its request dropped");
                self.counters.rows_dropped.fetch_add(n as u64, Ordering::Relaxed);
                return;
            }
        }
        let kept = {
            let mut held = self.buffer.records.lock().expect("log buffer lock");
            let fits = held.len() + n <= self.config.queue_rows && held.bytes() + bytes <= self.config.queue_bytes;
            if fits && !self.buffer.closed.load(Ordering::Acquire) {
                for r in records {
                    held.push(r);
                }
                true
            } else {
                false
            }
        };
        if !kept {
            self.counters.rows_dropped.fetch_add(n as u64, Ordering::Relaxed);
        }
    }

    /// What the log did so far.
    pub fn stats(&self) -> LogStats {
        let c = &self.counters;
        LogStats {
            rows_written: c.rows_written.load(Ordering::Relaxed),
            rows_dropped: c.rows_dropped.load(Ordering::Relaxed),
            files_published: c.files_published.load(Ordering::Relaxed),
            files_deleted: c.files_deleted.load(Ordering::Relaxed),
            write_errors: c.write_errors.load(Ordering::Relaxed),
        }
    }

    /// Stops taking records, writes those queued and publishes the current file. Later
    /// offers are dropped and counted. Safe to call more than once.
    pub fn close(&self) -> LogStats {
        self.buffer.closed.store(true, Ordering::Release);
        if let Some(handle) = self.writer.lock().expect("log writer lock").take() {
            let _ = handle.join();
        }
        self.stats()
    }
}

impl Drop for PredictionLog {
    fn drop(&mut self) {
        self.close();
    }
}

/// The published log files of a folder, oldest first.
pub fn log_files(dir: &Path) -> Result<Vec<PathBuf>, LogError> {
    let entries = std::fs::read_dir(dir).map_err(|source| LogError::Io { path: dir.to_path_buf(), source })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(FILE_PREFIX) && n.ends_with(".parquet"))
        })
        .collect();
    files.sort();
    Ok(files)
}
