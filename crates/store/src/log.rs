//! The append-only log: numbered records in segment files, each record framed as
//! `length (u32 LE) | crc32 of the payload (u32 LE) | payload`.
//!
//! A record holds 1 to [`MAX_RECORD_BYTES`] bytes, on both sides: the writer refuses to
//! stage a longer (or empty) payload, so that a record that replay would not read back is
//! never written, let alone acknowledged.
//!
//! Segments are named by the sequence number of their first record
//! (`log-00000000000000000001.wal`). A snapshot at sequence `S` starts a new segment at
//! `S + 1`, after which the older segments are deleted. Replay stops at the first torn
//! or corrupt frame of the last segment and truncates it there: such a frame was being
//! written when the process died and was never acknowledged. A bad frame in any other
//! segment is data loss and stops the recovery with an error.

use crate::error::StoreError;
use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

/// Frame header: length and checksum.
const HEADER: usize = 8;
/// Largest record payload, in bytes: the writer refuses a longer one, and replay takes a
/// longer length for damage.
pub const MAX_RECORD_BYTES: usize = 16 << 20;

/// When an append reaches the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// `fdatasync` before the append returns: acknowledged records survive a power loss.
    Fsync,
    /// `write` to the operating system before the append returns: acknowledged records
    /// survive the process being killed, not the machine losing power.
    Write,
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

/// Appends frames to the current segment.
#[derive(Debug)]
pub(crate) struct LogWriter {
    dir: PathBuf,
    file: File,
    path: PathBuf,
    /// Sequence number the next record gets.
    next_seq: u64,
    /// `next_seq` after the last commit: where a refused batch rolls back to.
    committed_seq: u64,
    /// The first staged payload that cannot be a record (its sequence number and size):
    /// the next commit writes nothing and fails.
    refused: Option<(u64, usize)>,
    durability: Durability,
    bytes: u64,
    buf: Vec<u8>,
}

impl LogWriter {
    /// Opens `path` (a segment that replay has checked and truncated) for appending.
    pub(crate) fn open(
        dir: &Path,
        path: PathBuf,
        next_seq: u64,
        durability: Durability,
    ) -> Result<LogWriter, StoreError> {
        let file = OpenOptions::new().create(true).append(true).open(&path).map_err(|e| StoreError::io(&path, e))?;
        let bytes = file.metadata().map_err(|e| StoreError::io(&path, e))?.len();
        sync_dir(dir)?;
        Ok(LogWriter {
            dir: dir.to_owned(),
            file,
            path,
            next_seq,
            committed_seq: next_seq,
            refused: None,
            durability,
            bytes,
            buf: Vec::new(),
        })
    }

    /// Frames one payload into the pending buffer; returns its sequence number. A payload
    /// over [`MAX_RECORD_BYTES`] (or empty) is not framed: it makes the next
    /// [`LogWriter::commit`] write none of the staged records and fail, so that nothing
    /// staged with it is acknowledged.
    pub(crate) fn stage(&mut self, payload: &[u8]) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        if payload.is_empty() || payload.len() > MAX_RECORD_BYTES {
            self.refused.get_or_insert((seq, payload.len()));
            return seq;
        }
        self.buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
        self.buf.extend_from_slice(payload);
        seq
    }

    /// Writes the staged frames in one call and makes them as durable as configured. When
    /// a staged payload was refused, writes nothing, drops every staged record (the
    /// sequence numbers go back to the last commit) and returns
    /// [`StoreError::RecordTooLarge`].
    pub(crate) fn commit(&mut self) -> Result<(), StoreError> {
        if let Some((seq, bytes)) = self.refused.take() {
            self.buf.clear();
            self.next_seq = self.committed_seq;
            return Err(StoreError::RecordTooLarge {
                path: self.path.display().to_string(),
                seq,
                bytes,
                limit: MAX_RECORD_BYTES,
            });
        }
        if self.buf.is_empty() {
            return Ok(());
        }
        self.file.write_all(&self.buf).map_err(|e| StoreError::io(&self.path, e))?;
        if self.durability == Durability::Fsync {
            self.file.sync_data().map_err(|e| StoreError::io(&self.path, e))?;
        }
        self.bytes += self.buf.len() as u64;
        self.buf.clear();
        self.committed_seq = self.next_seq;
        Ok(())
    }

    /// Makes everything written so far durable (whatever the durability setting).
    pub(crate) fn sync(&mut self) -> Result<(), StoreError> {
        self.file.sync_data().map_err(|e| StoreError::io(&self.path, e))
    }

    /// Sequence number the next staged record gets.
    pub(crate) fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Sequence number of the last record staged (0 before the first).
    pub(crate) fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    /// Bytes in the current segment.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Closes the current segment and starts a new one at the next sequence number.
    pub(crate) fn rotate(&mut self) -> Result<(), StoreError> {
        self.commit()?;
        self.file.sync_data().map_err(|e| StoreError::io(&self.path, e))?;
        let path = segment_path(&self.dir, self.next_seq);
        let file = OpenOptions::new().create(true).append(true).open(&path).map_err(|e| StoreError::io(&path, e))?;
        sync_dir(&self.dir)?;
        self.file = file;
        self.path = path;
        self.bytes = 0;
        Ok(())
    }
}

/// Reads every record of the segments in order, calling `apply(seq, payload)` for those
/// after `after_seq`. Returns the sequence number of the last record and the segment to
/// keep appending to (created when there is none).
pub(crate) fn replay(
    dir: &Path,
    after_seq: u64,
    mut apply: impl FnMut(u64, &[u8]) -> Result<(), StoreError>,
) -> Result<(u64, PathBuf), StoreError> {
    let segs = segments(dir)?;
    let mut last_seq = after_seq;
    let mut payload = Vec::new();
    for (i, (first_seq, path)) in segs.iter().enumerate() {
        let is_last = i + 1 == segs.len();
        if *first_seq > last_seq + 1 {
            return Err(StoreError::Corrupt {
                path: path.display().to_string(),
                reason: format!("records {} to {} are missing", last_seq + 1, first_seq - 1),
            });
        }
        let file = File::open(path).map_err(|e| StoreError::io(path, e))?;
        let len = file.metadata().map_err(|e| StoreError::io(path, e))?.len();
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let mut offset = 0u64;
        let mut seq = *first_seq;
        loop {
            match read_frame(&mut reader, &mut payload) {
                Frame::Record(n) => {
                    if seq > last_seq {
                        apply(seq, &payload)?;
                        last_seq = seq;
                    }
                    seq += 1;
                    offset += n;
                }
                Frame::End => break,
                Frame::Bad { reason, frame_len } => {
                    // Only the end of the last segment can be torn by a crash: a bad frame
                    // with more data after it is damage, not an unfinished write, unless
                    // that data is all zeros (a file extended over blocks never written).
                    let at_end = frame_len.is_none_or(|n| offset + n >= len) || zeros_from(path, offset)?;
                    if !is_last || !at_end {
                        return Err(StoreError::Corrupt {
                            path: path.display().to_string(),
                            reason: format!("{reason} at byte {offset}"),
                        });
                    }
                    tracing::warn!(
                        segment = %path.display(),
                        offset,
                        dropped_bytes = len - offset,
                        "log ends in a torn record (never acknowledged); truncating"
                    );
                    let f = OpenOptions::new().write(true).open(path).map_err(|e| StoreError::io(path, e))?;
                    f.set_len(offset).map_err(|e| StoreError::io(path, e))?;
                    f.sync_all().map_err(|e| StoreError::io(path, e))?;
                    break;
                }
            }
        }
    }
    let append_to = match segs.last() {
        Some((_, path)) => path.clone(),
        None => segment_path(dir, last_seq + 1),
    };
    Ok((last_seq, append_to))
}

enum Frame {
    Record(u64),
    End,
    /// A frame that does not check out; `frame_len` is its declared length when the
    /// header was complete.
    Bad {
        reason: String,
        frame_len: Option<u64>,
    },
}

fn read_frame(reader: &mut impl Read, payload: &mut Vec<u8>) -> Frame {
    let mut header = [0u8; HEADER];
    match read_full(reader, &mut header) {
        Ok(0) => return Frame::End,
        Ok(n) if n < HEADER => {
            return Frame::Bad { reason: format!("torn header ({n} of {HEADER} bytes)"), frame_len: None };
        }
        Ok(_) => {}
        Err(e) => return Frame::Bad { reason: format!("read error: {e}"), frame_len: None },
    }
    let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
    let frame_len = Some((HEADER + len) as u64);
    if len == 0 {
        // Never written (every record has a payload): zeros where a frame should be.
        return Frame::Bad { reason: "empty record".to_owned(), frame_len };
    }
    if len > MAX_RECORD_BYTES {
        return Frame::Bad { reason: format!("record length {len} is over the limit"), frame_len };
    }
    payload.resize(len, 0);
    match read_full(reader, payload) {
        Ok(n) if n < len => return Frame::Bad { reason: format!("torn record ({n} of {len} bytes)"), frame_len: None },
        Ok(_) => {}
        Err(e) => return Frame::Bad { reason: format!("read error: {e}"), frame_len: None },
    }
    if crc32fast::hash(payload) != crc {
        return Frame::Bad { reason: "checksum mismatch".to_owned(), frame_len };
    }
    Frame::Record((HEADER + len) as u64)
}

/// Whether the file holds only zero bytes from `offset` to its end.
fn zeros_from(path: &Path, offset: u64) -> Result<bool, StoreError> {
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
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
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

/// Makes a directory's entries (new or renamed files) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| StoreError::io(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(dir: &Path) -> Vec<(u64, Vec<u8>)> {
        let mut out = Vec::new();
        replay(dir, 0, |seq, payload| {
            out.push((seq, payload.to_vec()));
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn the_writer_refuses_a_record_replay_could_not_read_and_writes_nothing_of_its_batch() {
        let dir = tempfile::tempdir().unwrap();
        let path = segment_path(dir.path(), 1);
        let mut w = LogWriter::open(dir.path(), path.clone(), 1, Durability::Write).unwrap();
        assert_eq!(w.stage(b"first"), 1);
        w.commit().unwrap();
        let written = std::fs::metadata(&path).unwrap().len();

        for bad in [vec![7u8; MAX_RECORD_BYTES + 1], Vec::new()] {
            assert_eq!(w.stage(b"staged before"), 2);
            assert_eq!(w.stage(&bad), 3);
            assert_eq!(w.stage(b"staged after"), 4);
            match w.commit() {
                Err(StoreError::RecordTooLarge { seq: 3, bytes, limit: MAX_RECORD_BYTES, .. }) => {
                    assert_eq!(bytes, bad.len());
                }
                other => panic!("{other:?}"),
            }
            assert_eq!(std::fs::metadata(&path).unwrap().len(), written);
            assert_eq!(w.next_seq(), 2);
        }

        // The largest record is written and read back; the writer goes on numbering from
        // the last commit.
        let largest = vec![9u8; MAX_RECORD_BYTES];
        assert_eq!(w.stage(&largest), 2);
        w.commit().unwrap();
        drop(w);
        let got = records(dir.path());
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], (1, b"first".to_vec()));
        assert_eq!(got[1].0, 2);
        assert!(got[1].1 == largest);
    }
}
