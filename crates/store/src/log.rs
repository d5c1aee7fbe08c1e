//! The append-only log: numbered records in segment files named by the sequence number of
//! their first record (`log-00000000000000000001.wal`).
//!
//! Format 2 (written since the store tells a crash's torn tail from damage; see
//! [`format`]): every segment is created whole, preallocated to its capacity, with a
//! header naming the format, its first record and its capacity. A commit appends one
//! frame holding a whole batch of records under one checksum, so replay takes a batch
//! entirely or not at all. The end of the data is the first all-zero frame header; a
//! segment that is closed for the next one ends with a seal frame naming the next
//! segment's first record. A folder whose log is in format 2 holds a `LOG_FORMAT` file.
//!
//! Recovery ([`recover`]) accepts one kind of imperfection: a last frame of the newest
//! segment that does not check out, with nothing but zeros after it (a write cut short by
//! a crash, never acknowledged), which it clears. Anything else that can hide
//! acknowledged records (a short file, nonzero bytes after the end of the data, a missing
//! header or seal, a missing segment, a gap in the numbering, a snapshot ahead of the log)
//! stops the start with an error naming the file and the records lost, unless the operator
//! accepts the loss ([`crate::StoreOptions::accept_log_damage`]): then the damaged files
//! are moved to `damaged/` and the store starts without those records.
//!
//! Segments of the first format (frames of `length | crc32 | payload`, no header, see
//! [`legacy`]) are still read with their own rules, so that an existing data folder
//! opens; new records always go to a segment of format 2.
//!
//! A record holds 1 to [`MAX_RECORD_BYTES`] bytes, on both sides: the writer refuses to
//! stage a longer (or empty) payload, so that a record that replay would not read back is
//! never written, let alone acknowledged.

mod format;
mod legacy;
mod recover;
mod writer;

use crate::error::StoreError;
use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};

pub use recover::LogDamage;
pub(crate) use recover::recover;
pub(crate) use writer::{CommitTimes, LogWriter};

/// Largest record payload, in bytes: the writer refuses a longer one, and replay takes a
/// longer length for damage.
pub const MAX_RECORD_BYTES: usize = 16 << 20;

/// Default capacity of a log segment, in bytes (a batch larger than this gets a segment
/// of its own size).
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;

/// File whose presence says that the folder's log is in format 2 (every segment from the
/// newest on must carry a format-2 header).
pub(crate) const FORMAT_MARKER: &str = "LOG_FORMAT";

/// Folder damaged files are moved to when the operator accepts the loss.
pub(crate) const DAMAGED_DIR: &str = "damaged";

/// What replay hands each record to: `(sequence number, payload)`.
pub(crate) type Apply<'a> = dyn FnMut(u64, &[u8]) -> Result<(), StoreError> + 'a;

/// When an append reaches the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// `fdatasync` before the append returns: acknowledged records survive a power loss.
    Fsync,
    /// `write` to the operating system before the append returns: acknowledged records
    /// survive the process being killed, not the machine losing power.
    Write,
}

impl Durability {
    /// The name `FromStr` reads: `fsync` or `write`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Durability::Fsync => "fsync",
            Durability::Write => "write",
        }
    }
}

impl std::fmt::Display for Durability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Durability {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "fsync" => Ok(Durability::Fsync),
            "write" => Ok(Durability::Write),
            other => Err(format!("durability {other:?} is not fsync or write")),
        }
    }
}

/// Path of the segment whose first record is `first_seq`.
pub(crate) fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("log-{first_seq:020}.wal"))
}

/// Segments in `dir`, sorted by first sequence number.
pub(crate) fn segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, StoreError> {
    numbered_files(dir, "log-", ".wal")
}

/// Files `<prefix><number><suffix>` in `dir`, sorted by number.
pub(crate) fn numbered_files(dir: &Path, prefix: &str, suffix: &str) -> Result<Vec<(u64, PathBuf)>, StoreError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| StoreError::io(dir, e))? {
        let entry = entry.map_err(|e| StoreError::io(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(seq) = name.strip_prefix(prefix).and_then(|n| n.strip_suffix(suffix))
            && let Ok(seq) = seq.parse::<u64>()
        {
            out.push((seq, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Makes a directory's entries (new or renamed files) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| StoreError::io(dir, e))
}

/// Whether the file holds only zero bytes from `offset` to its end.
pub(crate) fn zeros_from(path: &Path, offset: u64) -> Result<bool, StoreError> {
    use std::io::{Seek, SeekFrom};
    let mut f = File::open(path).map_err(|e| StoreError::io(path, e))?;
    f.seek(SeekFrom::Start(offset)).map_err(|e| StoreError::io(path, e))?;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = read_full(&mut f, &mut buf).map_err(|e| StoreError::io(path, e))?;
        if buf[..n].iter().any(|&b| b != 0) {
            return Ok(false);
        }
        if n < buf.len() {
            return Ok(true);
        }
    }
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
pub(crate) fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Whether an I/O error means the disk (or a quota, or the file size limit) is full.
pub(crate) fn is_disk_full(e: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(e.kind(), ErrorKind::StorageFull | ErrorKind::QuotaExceeded | ErrorKind::FileTooLarge)
}
