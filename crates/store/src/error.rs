//! Errors of the profile store.

use std::path::Path;
use thiserror::Error;

/// The store could not open, recover or persist.
#[derive(Debug, Error)]
pub enum StoreError {
    /// File system error.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A log segment or snapshot is damaged where damage cannot be a torn last write.
    #[error("{path} is damaged: {reason}")]
    Corrupt {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A record was refused by the log writer for its size (over the limit that replay
    /// reads back, or empty): nothing staged with it was written.
    #[error("{path}: log record {seq} would be {bytes} bytes (1 to {limit} allowed); nothing of its batch was written")]
    RecordTooLarge {
        /// The segment it was for.
        path: String,
        /// Its sequence number.
        seq: u64,
        /// Its size.
        bytes: usize,
        /// The limit ([`crate::MAX_RECORD_BYTES`]).
        limit: usize,
    },
    /// The disk is full (or a quota or the file size limit is reached): nothing of the
    /// batch was logged or applied, and later writes succeed once there is room.
    #[error("disk full: {path}: {action}: {source}; nothing of it was logged or applied")]
    DiskFull {
        /// The segment (or segment being created).
        path: String,
        /// What was being written.
        action: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A log write failed for another reason: nothing of the batch was logged or applied.
    #[error("log write failed: {path}: {action}: {source}; nothing of it was logged or applied")]
    WriteFailed {
        /// The segment.
        path: String,
        /// What was being written.
        action: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A log write failed in a way that leaves what is on the disk unknown (a failed
    /// fsync, or a failed write that could not be cleared); the store takes no more
    /// events until it is restarted (and recovers from the log).
    #[error("the store stopped taking events after a failed log write: {0}")]
    Failed(String),
    /// The log lost acknowledged records; the store does not start without the operator
    /// accepting the loss.
    #[error(
        "the profile log lost acknowledged records: {damage}{}. The store does not start without them: \
         restore the file, or start once with --accept-log-damage (StoreOptions::accept_log_damage) to move \
         the damaged files to damaged/ and go on without those records",
        if *more > 0 { format!(" (and {more} more damaged places)") } else { String::new() }
    )]
    LogDamaged {
        /// The first damage found, in log order.
        damage: Box<crate::LogDamage>,
        /// How many more were found.
        more: usize,
    },
    /// Another store (in this or another process) has the data folder open.
    #[error("profile data folder {dir} is in use by {}", match pid { Some(p) => format!("pid {p}"), None => "another process".to_owned() })]
    InUse {
        /// The data folder.
        dir: String,
        /// The process holding it, when it can be told.
        pid: Option<u32>,
    },
    /// An experiment cannot be started (name taken by another definition, too many).
    #[error("{0}")]
    Experiment(String),
    /// The identity file could not be read.
    #[error("identity file {path}, line {line}: {reason}")]
    IdentityFile {
        /// The file.
        path: String,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        reason: String,
    },
}

impl StoreError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        StoreError::Io { path: path.display().to_string(), source }
    }

    /// The same error again, for each batch of a group commit that failed together (an
    /// I/O cause is carried over by its kind and message).
    pub(crate) fn copy(&self) -> Self {
        let io = |e: &std::io::Error| std::io::Error::new(e.kind(), e.to_string());
        match self {
            StoreError::Io { path, source } => StoreError::Io { path: path.clone(), source: io(source) },
            StoreError::Corrupt { path, reason } => StoreError::Corrupt { path: path.clone(), reason: reason.clone() },
            StoreError::RecordTooLarge { path, seq, bytes, limit } => {
                StoreError::RecordTooLarge { path: path.clone(), seq: *seq, bytes: *bytes, limit: *limit }
            }
            StoreError::DiskFull { path, action, source } => {
                StoreError::DiskFull { path: path.clone(), action: action.clone(), source: io(source) }
            }
            StoreError::WriteFailed { path, action, source } => {
                StoreError::WriteFailed { path: path.clone(), action: action.clone(), source: io(source) }
            }
            other => StoreError::Failed(other.to_string()),
        }
    }
}

/// A profile could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LookupError {
    /// No event of the user was ever taken in.
    #[error("no profile for user {0:?}: none of its events has been ingested")]
    UnknownUser(String),
    /// Conversion features need an open, not yet converted visit.
    #[error("user {user_id:?} has no open visit to room {room_id:?} (never entered, left, or already ordered)")]
    NoOpenVisit {
        /// The user.
        user_id: String,
        /// The room.
        room_id: String,
    },
    /// Features were asked as of a time ahead of the server's clock.
    #[error("features asked as of {as_of_ms}, more than {max_skew_ms} ms ahead of the server clock")]
    InFuture {
        /// Time asked for.
        as_of_ms: i64,
        /// The allowed skew.
        max_skew_ms: i64,
    },
    /// Features were asked as of a time before the profile's state.
    #[error("features of user {user_id:?} asked as of {as_of_ms}, before the profile's state at {horizon_ms}")]
    InPast {
        /// The user.
        user_id: String,
        /// Time asked for.
        as_of_ms: i64,
        /// The profile's time.
        horizon_ms: i64,
    },
}
