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
    /// An earlier write to the log failed, so the state in memory may be ahead of the log;
    /// the store takes no more events until it is restarted (and recovers from the log).
    #[error("the store stopped taking events after a failed log write: {0}")]
    Failed(String),
    /// Another store (in this or another process) has the data folder open.
    #[error("profile data folder {0} is in use by another process")]
    InUse(String),
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
