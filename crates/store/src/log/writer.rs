//! [`LogWriter`]: stages records and commits them as one batch frame of the current
//! format-2 segment; rotates to a new segment when a batch does not fit.
//!
//! A commit either writes its whole frame or leaves the log as it was: when the write
//! fails (the disk is full, a quota or the file size limit is reached), the bytes that
//! reached the file are zeroed again and the sequence numbers go back to the last commit,
//! so that nothing of the batch is replayed, and the next batch is tried afresh. Only
//! when that clean-up fails, or an fsync fails (after which what is on the disk is not
//! known), does the writer stop for good ([`LogWriter::broken`]).

use super::format::{FRAME_HEADER, FrameHeader, SEGMENT_HEADER, SegmentHeader};
use super::{Durability, MAX_RECORD_BYTES, is_disk_full, segment_path, sync_dir};
use crate::error::StoreError;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The segment being appended to.
#[derive(Debug)]
struct Segment {
    file: File,
    path: PathBuf,
    first_seq: u64,
    capacity: u64,
    /// Offset of the end of the data (where the next frame goes).
    end: u64,
}

/// What the last failed commit needed, so that [`LogWriter::probe`] can tell when it
/// would succeed again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failing {
    /// Writing `len` bytes at `at` of the current segment failed.
    Write { at: u64, len: u64 },
    /// Creating a segment of `bytes` failed.
    Space { bytes: u64 },
}

/// Appends batches of records to the log.
#[derive(Debug)]
pub(crate) struct LogWriter {
    dir: PathBuf,
    durability: Durability,
    segment_bytes: u64,
    seg: Segment,
    /// Sequence number the next record gets.
    next_seq: u64,
    /// `next_seq` after the last commit: where a refused batch rolls back to.
    committed_seq: u64,
    /// The first staged payload that cannot be a record (its sequence number and size):
    /// the next commit writes nothing and fails.
    refused: Option<(u64, usize)>,
    /// Records staged since the last commit.
    staged: u32,
    /// The frame being built: a header placeholder, then the staged records.
    buf: Vec<u8>,
    failing: Option<Failing>,
    broken: Option<String>,
}

/// When a commit wrote its frame and synced it (each `None` when it did not).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CommitTimes {
    pub(crate) write_start: Option<Instant>,
    pub(crate) written: Option<Instant>,
    pub(crate) synced: Option<Instant>,
}

impl LogWriter {
    /// Starts a new segment whose first record is `first_seq` (replacing a file of that
    /// name, which recovery found to hold no record).
    pub(crate) fn create(
        dir: &Path,
        first_seq: u64,
        durability: Durability,
        segment_bytes: u64,
    ) -> Result<LogWriter, StoreError> {
        let seg = create_segment(dir, first_seq, segment_bytes)?;
        Ok(LogWriter::with(dir, seg, first_seq, durability, segment_bytes))
    }

    /// Goes on appending to a segment that recovery checked, at the end of its data.
    pub(crate) fn resume(
        dir: &Path,
        path: PathBuf,
        header: SegmentHeader,
        end: u64,
        next_seq: u64,
        durability: Durability,
        segment_bytes: u64,
    ) -> Result<LogWriter, StoreError> {
        let file = OpenOptions::new().read(true).write(true).open(&path).map_err(|e| StoreError::io(&path, e))?;
        let seg = Segment { file, path, first_seq: header.first_seq, capacity: header.capacity, end };
        Ok(LogWriter::with(dir, seg, next_seq, durability, segment_bytes))
    }

    fn with(dir: &Path, seg: Segment, next_seq: u64, durability: Durability, segment_bytes: u64) -> LogWriter {
        LogWriter {
            dir: dir.to_owned(),
            durability,
            segment_bytes,
            seg,
            next_seq,
            committed_seq: next_seq,
            refused: None,
            staged: 0,
            buf: Vec::new(),
            failing: None,
            broken: None,
        }
    }

    /// Adds one payload to the pending batch; returns its sequence number. A payload over
    /// [`MAX_RECORD_BYTES`] (or empty) is not staged: it makes the next
    /// [`LogWriter::commit`] write none of the staged records and fail, so that nothing
    /// staged with it is acknowledged.
    pub(crate) fn stage(&mut self, payload: &[u8]) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        if payload.is_empty() || payload.len() > MAX_RECORD_BYTES {
            self.refused.get_or_insert((seq, payload.len()));
            return seq;
        }
        if self.buf.is_empty() {
            self.buf.resize(FRAME_HEADER, 0);
        }
        self.buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(payload);
        self.staged += 1;
        seq
    }

    /// Drops the staged records: the sequence numbers go back to the last commit.
    fn discard(&mut self) {
        self.buf.clear();
        self.staged = 0;
        self.refused = None;
        self.next_seq = self.committed_seq;
    }

    /// Writes the staged records as one frame and makes it as durable as configured. On
    /// any error nothing of the batch is in the log (or the writer is
    /// [`broken`](LogWriter::broken)) and the sequence numbers go back to the last commit.
    pub(crate) fn commit(&mut self) -> Result<(), StoreError> {
        self.commit_timed(None)
    }

    /// [`LogWriter::commit`], noting when the frame was written and when it was synced
    /// (for a traced batch).
    pub(crate) fn commit_timed(&mut self, mut times: Option<&mut CommitTimes>) -> Result<(), StoreError> {
        if let Some(why) = &self.broken {
            let why = why.clone();
            self.discard();
            return Err(StoreError::Failed(why));
        }
        if let Some((seq, bytes)) = self.refused {
            self.discard();
            return Err(StoreError::RecordTooLarge {
                path: self.seg.path.display().to_string(),
                seq,
                bytes,
                limit: MAX_RECORD_BYTES,
            });
        }
        if self.staged == 0 {
            return Ok(());
        }
        let (first, last) = (self.committed_seq, self.next_seq - 1);
        let payload_len = self.buf.len() - FRAME_HEADER;
        let Ok(payload_len32) = u32::try_from(payload_len) else {
            self.discard();
            return Err(StoreError::RecordTooLarge {
                path: self.seg.path.display().to_string(),
                seq: first,
                bytes: payload_len,
                limit: u32::MAX as usize,
            });
        };
        let header = FrameHeader {
            payload_len: payload_len32,
            count: self.staged,
            seq: first,
            payload_crc: crc32fast::hash(&self.buf[FRAME_HEADER..]),
        };
        self.buf[..FRAME_HEADER].copy_from_slice(&header.encode());
        let frame_len = self.buf.len() as u64;
        // Room is kept for the seal that closes the segment.
        if self.seg.end + frame_len + FRAME_HEADER as u64 > self.seg.capacity {
            let bytes = self.segment_bytes.max(SEGMENT_HEADER as u64 + frame_len + FRAME_HEADER as u64);
            if let Err(e) = self.rotate_to(first, bytes) {
                self.discard();
                self.failing = Some(Failing::Space { bytes });
                return Err(e);
            }
        }
        let at = self.seg.end;
        if let Some(t) = times.as_deref_mut() {
            t.write_start = Some(Instant::now());
        }
        let (written, result) = write_at(&mut self.seg.file, at, &self.buf);
        if let Some(t) = times.as_deref_mut() {
            t.written = Some(Instant::now());
        }
        if let Err(e) = result {
            let action = format!("writing log records {first} to {last} ({frame_len} bytes at byte {at})");
            let err = write_error(&self.seg.path, action, e);
            // Nothing of the batch may be replayed: clear what reached the file.
            if let Err(z) = zero(&mut self.seg.file, at, written as u64) {
                self.broken = Some(format!("{err}; clearing the {written} bytes that were written failed too: {z}"));
            }
            self.discard();
            self.failing = Some(Failing::Write { at, len: frame_len });
            return Err(err);
        }
        if self.durability == Durability::Fsync
            && let Err(e) = self.seg.file.sync_data()
        {
            // After a failed fsync what is on the disk is not known: the batch is not
            // acknowledged, is cleared as far as possible, and the writer stops.
            let _ = zero(&mut self.seg.file, at, frame_len);
            let why =
                format!("fsync of {} failed after writing log records {first} to {last}: {e}", self.seg.path.display());
            self.broken = Some(why.clone());
            self.discard();
            return Err(StoreError::Failed(why));
        }
        if let Some(t) = times
            && self.durability == Durability::Fsync
        {
            t.synced = Some(Instant::now());
        }
        self.seg.end += frame_len;
        self.committed_seq = self.next_seq;
        self.buf.clear();
        self.staged = 0;
        self.failing = None;
        Ok(())
    }

    /// Why the writer stopped for good (the store then needs a restart), if it did.
    pub(crate) fn broken(&self) -> Option<&str> {
        self.broken.as_deref()
    }

    /// Whether the last commit failed (and nothing has been written since).
    pub(crate) fn failing(&self) -> bool {
        self.failing.is_some()
    }

    /// After a failed commit, does what it needed without changing the log (zeros written
    /// over the zeros where its frame would have gone, or a segment of its size allocated
    /// and removed). `Ok` means the next commit of that size would find room.
    pub(crate) fn probe(&mut self) -> Result<(), StoreError> {
        match self.failing {
            None => Ok(()),
            Some(Failing::Write { at, len }) => {
                let len = len.min(self.seg.capacity.saturating_sub(at));
                let probed = zero(&mut self.seg.file, at, len).and_then(|()| self.seg.file.sync_data());
                probed.map_err(|e| write_error(&self.seg.path, format!("probing {len} bytes at byte {at}"), e))?;
                self.failing = None;
                Ok(())
            }
            Some(Failing::Space { bytes }) => {
                let path = self.dir.join(".log-probe.partial");
                let probed = (|| {
                    let f = OpenOptions::new().write(true).create(true).truncate(true).open(&path)?;
                    allocate(&f, bytes)
                })();
                let _ = fs::remove_file(&path);
                probed.map_err(|e| write_error(&path, format!("allocating {bytes} bytes"), e))?;
                self.failing = None;
                Ok(())
            }
        }
    }

    /// Makes everything written so far durable (whatever the durability setting).
    pub(crate) fn sync(&mut self) -> Result<(), StoreError> {
        self.seg.file.sync_data().map_err(|e| StoreError::io(&self.seg.path, e))
    }

    /// Sequence number the next staged record gets.
    pub(crate) fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Sequence number of the last record staged (0 before the first).
    pub(crate) fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    /// Bytes of data in the current segment (its header and frames).
    pub(crate) fn bytes(&self) -> u64 {
        self.seg.end
    }

    /// Closes the current segment and starts a new one at the next sequence number (a
    /// segment without records is kept as it is). Staged records are committed first.
    pub(crate) fn rotate(&mut self) -> Result<(), StoreError> {
        self.commit()?;
        if let Some(why) = &self.broken {
            return Err(StoreError::Failed(why.clone()));
        }
        if self.committed_seq == self.seg.first_seq {
            return Ok(());
        }
        self.rotate_to(self.committed_seq, self.segment_bytes)
    }

    /// Starts the segment of `first` (the next record) with `bytes` of capacity, then
    /// seals the current one, in that order: a crash in between leaves an unsealed
    /// segment followed by an empty one, which recovery reads as whole. A current segment
    /// without records is replaced instead.
    fn rotate_to(&mut self, first: u64, bytes: u64) -> Result<(), StoreError> {
        let has_records = self.committed_seq > self.seg.first_seq;
        if has_records && self.durability == Durability::Write {
            // The old segment must be whole on the disk before a later one exists.
            self.seg.file.sync_data().map_err(|e| write_error(&self.seg.path, "syncing".to_owned(), e))?;
        }
        let new = create_segment(&self.dir, first, bytes)?;
        if has_records {
            let at = self.seg.end;
            let (written, result) = write_at(&mut self.seg.file, at, &FrameHeader::seal(first));
            if let Err(e) = result.and_then(|()| self.seg.file.sync_data()) {
                let err = write_error(&self.seg.path, format!("sealing it (next segment at record {first})"), e);
                // Unsealed, the old segment stays the newest: take the new one back.
                let cleared = zero(&mut self.seg.file, at, written.max(FRAME_HEADER) as u64)
                    .and_then(|()| fs::remove_file(&new.path))
                    .map_err(|e| e.to_string())
                    .and_then(|()| sync_dir(&self.dir).map_err(|e| e.to_string()));
                if let Err(why) = cleared {
                    self.broken = Some(format!("{err}; taking back {} failed: {why}", new.path.display()));
                }
                return Err(err);
            }
        }
        self.seg = new;
        Ok(())
    }
}

/// Creates a segment whole: header written and space allocated under a temporary name,
/// synced, then renamed into place.
fn create_segment(dir: &Path, first_seq: u64, capacity: u64) -> Result<Segment, StoreError> {
    let path = segment_path(dir, first_seq);
    let tmp = dir.join(format!(".log-{first_seq:020}.wal.partial"));
    let made = (|| -> io::Result<File> {
        let mut f = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&tmp)?;
        allocate(&f, capacity)?;
        f.write_all(&SegmentHeader { first_seq, capacity }.encode())?;
        f.sync_all()?;
        fs::rename(&tmp, &path)?;
        Ok(f)
    })();
    match made {
        Ok(file) => {
            sync_dir(dir)?;
            Ok(Segment { file, path, first_seq, capacity, end: SEGMENT_HEADER as u64 })
        }
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(write_error(&path, format!("creating the segment ({capacity} bytes)"), e))
        }
    }
}

/// Gives the file its full size, reserving the blocks where the file system can (so that
/// a full disk shows when a segment is created, not in the middle of a batch).
fn allocate(file: &File, bytes: u64) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use rustix::fs::{FallocateFlags, fallocate};
        use rustix::io::Errno;
        match fallocate(file, FallocateFlags::empty(), 0, bytes) {
            Ok(()) => return Ok(()),
            Err(e) if e == Errno::OPNOTSUPP || e == Errno::NOSYS => {}
            Err(e) => return Err(e.into()),
        }
    }
    file.set_len(bytes)
}

/// A failed log write as the store reports it: disk full (including quotas and the file
/// size limit) or another write failure. Either way nothing of it was kept.
fn write_error(path: &Path, action: String, source: io::Error) -> StoreError {
    let path = path.display().to_string();
    if is_disk_full(&source) {
        StoreError::DiskFull { path, action, source }
    } else {
        StoreError::WriteFailed { path, action, source }
    }
}

/// Writes `bytes` at `pos`; returns how many were written, and the error if not all.
fn write_at(file: &mut File, pos: u64, bytes: &[u8]) -> (usize, io::Result<()>) {
    if let Err(e) = file.seek(SeekFrom::Start(pos)) {
        return (0, Err(e));
    }
    let mut done = 0;
    while done < bytes.len() {
        match file.write(&bytes[done..]) {
            Ok(0) => return (done, Err(io::Error::new(io::ErrorKind::WriteZero, "the file took no more bytes"))),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (done, Err(e)),
        }
    }
    (done, Ok(()))
}

/// Writes `len` zero bytes at `pos`.
fn zero(file: &mut File, pos: u64, len: u64) -> io::Result<()> {
    const CHUNK: u64 = 1 << 16;
    let zeros = vec![0u8; CHUNK.min(len) as usize];
    let mut at = pos;
    while at < pos + len {
        let n = CHUNK.min(pos + len - at) as usize;
        write_at(file, at, &zeros[..n]).1?;
        at += n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::recover::tests::records;

    #[test]
    fn the_writer_refuses_a_record_replay_could_not_read_and_writes_nothing_of_its_batch() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = LogWriter::create(dir.path(), 1, Durability::Write, 1 << 20).unwrap();
        assert_eq!(w.stage(b"first"), 1);
        w.commit().unwrap();
        let written = w.bytes();

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
            assert_eq!(w.bytes(), written);
            assert_eq!(w.next_seq(), 2);
        }

        // The largest record is written (in a segment of its own size) and read back; the
        // writer goes on numbering from the last commit.
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

    #[test]
    fn a_batch_that_does_not_fit_goes_to_a_new_segment_and_the_old_one_is_sealed() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = LogWriter::create(dir.path(), 1, Durability::Write, 4096).unwrap();
        let record = [5u8; 1000];
        for _ in 0..3 {
            w.stage(&record);
            w.commit().unwrap();
        }
        // 32 + 3 x 1028 = 3,116 bytes: a fourth would leave no room for the seal.
        w.stage(&record);
        w.commit().unwrap();
        let names: Vec<u64> = super::super::segments(dir.path()).unwrap().into_iter().map(|(s, _)| s).collect();
        assert_eq!(names, [1, 4]);
        assert_eq!(records(dir.path()).into_iter().map(|(s, _)| s).collect::<Vec<_>>(), [1, 2, 3, 4]);
        assert_eq!(std::fs::metadata(segment_path(dir.path(), 1)).unwrap().len(), 4096);
    }
}
