//! Recovery: reads every segment in order, hands each record after the snapshot to the
//! store, and finds every place where acknowledged records may be missing.
//!
//! [`recover`] only reads. It returns what it found ([`Recovered`]); the store refuses to
//! start on damage ([`Recovered::refusal`]) unless the operator accepts it, and
//! [`Recovered::finish`] then repairs what a crash leaves (clears a torn tail), moves
//! damaged files aside when accepted, and opens the writer.
//!
//! What is damage (records that were acknowledged may be gone):
//! - a format-2 segment shorter than its capacity, longer, without a valid header, with
//!   nonzero bytes after the end of its data or its seal, or with a frame that does not
//!   check out where data follows, or anywhere but at the end of the newest segment;
//! - a newest segment that was sealed (its successor is missing);
//! - a gap in the numbering between segments, or between the snapshot and the first
//!   segment; a log that ends before the snapshot;
//! - once the folder's log is in format 2 (the `LOG_FORMAT` file), a newest segment
//!   without a format-2 header (zero-filled, emptied);
//! - in a first-format segment, a bad frame other than at the end of the newest segment.
//!
//! Damage confined to records the snapshot holds loses nothing: it is logged (WARN) and
//! the start goes on.

use super::format::{FRAME_HEADER, FrameHeader, FrameRead, HeaderError, SEGMENT_HEADER, SegmentHeader, split_records};
use super::{
    Apply, DAMAGED_DIR, Durability, FORMAT_MARKER, LogWriter, legacy, read_full, segment_path, segments, sync_dir,
    zeros_from,
};
use crate::error::StoreError;
use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// A place in the log where acknowledged records were lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogDamage {
    /// The damaged file, or the file that should be there.
    pub file: PathBuf,
    /// Whether the file is missing.
    pub missing: bool,
    /// What is wrong.
    pub reason: String,
    /// First record lost.
    pub first_lost: u64,
    /// Last record lost, when known (a damaged newest segment loses an unknown number).
    pub last_lost: Option<u64>,
    /// Where the damaged file was moved when the loss was accepted.
    pub moved_to: Option<PathBuf>,
}

impl LogDamage {
    /// The records lost, in words.
    pub fn lost(&self) -> String {
        match self.last_lost {
            Some(last) => format!("records {} to {last} are lost", self.first_lost),
            None => format!("records from {} on are lost (how many is not known)", self.first_lost),
        }
    }
}

impl std::fmt::Display for LogDamage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = if self.missing { " is missing" } else { "" };
        write!(f, "{}{state}: {}; {}", self.file.display(), self.reason, self.lost())?;
        if let Some(to) = &self.moved_to {
            write!(f, "; moved to {}", to.display())?;
        }
        Ok(())
    }
}

/// A damage found, and whether its file goes aside when the loss is accepted.
#[derive(Debug)]
struct Finding {
    damage: LogDamage,
    move_aside: bool,
}

/// How the newest segment ends, for the writer.
#[derive(Debug)]
enum Newest {
    /// Format 2, whole: appending goes on at `end` (after clearing a torn tail).
    Current { path: PathBuf, header: SegmentHeader, end: u64, last: u64, torn: Option<(u64, u64)> },
    /// First format: new records go to a new segment (after cutting a torn tail).
    Legacy { path: PathBuf, torn: Option<u64> },
    /// Damaged or sealed: nothing is appended to it.
    Closed,
}

/// What recovery found.
#[derive(Debug)]
pub(crate) struct Recovered {
    /// Highest sequence number the snapshot and the log account for.
    pub(crate) last_seq: u64,
    snapshot_seq: u64,
    newest: Option<Newest>,
    findings: Vec<Finding>,
    marker: bool,
}

/// Where the next segment must start, and who says so.
enum Want {
    /// The first segment: at most one after the snapshot.
    Snapshot(u64),
    /// The previous segment's seal names it.
    Sealed { seq: u64, by: PathBuf },
    /// The previous segment ended there (format 2 without a seal when `unsealed`).
    Ended { seq: u64, by: PathBuf, unsealed: bool },
    /// After a damaged segment: the next segment's start closes that finding's range.
    AfterDamage(usize),
}

/// Reads the log in `dir` after a snapshot at `snapshot_seq`, calling `apply(seq,
/// payload)` for every record after it, in order. Changes nothing on the disk but
/// leftover temporary files.
pub(crate) fn recover(dir: &Path, snapshot_seq: u64, apply: &mut Apply<'_>) -> Result<Recovered, StoreError> {
    remove_temporaries(dir)?;
    let marker = dir.join(FORMAT_MARKER).exists();
    let segs = segments(dir)?;
    let mut applied = snapshot_seq;
    let mut end_seq = snapshot_seq;
    // Where the log itself ends (the last record of the segments read, the snapshot aside).
    let mut log_end = 0u64;
    let mut findings: Vec<Finding> = Vec::new();
    let mut want = Want::Snapshot(snapshot_seq + 1);
    let mut seen_v2 = false;
    let mut newest = None;
    let name = |p: &Path| p.display().to_string();
    for (i, (first, path)) in segs.iter().enumerate() {
        let (first, is_newest) = (*first, i + 1 == segs.len());
        if first == 0 {
            // Records are numbered from 1: no writer names a segment 0.
            return Err(StoreError::Corrupt {
                path: name(path),
                reason: "a segment named as starting at record 0 (records are numbered from 1)".to_owned(),
            });
        }
        let missing = |seq: u64, reason: String| Finding {
            damage: LogDamage {
                file: segment_path(dir, seq),
                missing: true,
                reason,
                first_lost: seq,
                last_lost: Some(first - 1),
                moved_to: None,
            },
            move_aside: false,
        };
        let overlap = |seq: u64| StoreError::Corrupt {
            path: name(path),
            reason: format!("it starts at record {first}, inside the records before it (up to {})", seq - 1),
        };
        match std::mem::replace(&mut want, Want::Snapshot(0)) {
            Want::AfterDamage(k) => findings[k].damage.last_lost = Some(first.saturating_sub(1)),
            Want::Snapshot(seq) if first > seq => findings.push(missing(
                seq,
                format!(
                    "the snapshot holds records up to {} and the oldest segment, {}, starts at record {first}",
                    seq - 1,
                    name(path)
                ),
            )),
            Want::Snapshot(_) => {}
            Want::Sealed { seq, by } if first > seq => findings.push(missing(
                seq,
                format!(
                    "{} was sealed naming it as the next segment; the next one, {}, starts at record {first}",
                    name(&by),
                    name(path)
                ),
            )),
            Want::Sealed { seq, .. } | Want::Ended { seq, .. } if first < seq => return Err(overlap(seq)),
            Want::Sealed { .. } => {}
            Want::Ended { seq, by, unsealed } if first > seq => {
                let reason = format!(
                    "{} ends at record {}{}, and the next segment, {}, starts at record {first}",
                    name(&by),
                    seq - 1,
                    if unsealed { " without the seal that closes a segment" } else { "" },
                    name(path)
                );
                let mut f = missing(seq, reason);
                if unsealed {
                    // Its tail was zeroed or cut: the file is the damaged one.
                    f.damage.file = by;
                    f.damage.missing = false;
                    f.move_aside = true;
                }
                findings.push(f);
            }
            Want::Ended { .. } => {}
        }
        let damaged = |findings: &mut Vec<Finding>, last: u64, reason: String| {
            findings.push(Finding {
                damage: LogDamage {
                    file: path.clone(),
                    missing: false,
                    reason,
                    first_lost: last + 1,
                    last_lost: None,
                    moved_to: None,
                },
                move_aside: true,
            });
            Want::AfterDamage(findings.len() - 1)
        };
        newest = Some(Newest::Closed);
        match read_header(path)? {
            Ok(header) => {
                seen_v2 = true;
                let read = if header.first_seq != first {
                    V2Read {
                        last: first - 1,
                        end: V2End::Damaged(format!("its header names record {} as its first", header.first_seq)),
                    }
                } else {
                    read_v2(path, header, &mut applied, apply)?
                };
                end_seq = end_seq.max(read.last);
                log_end = log_end.max(read.last);
                want = match read.end {
                    V2End::Clean { offset } => {
                        newest = Some(Newest::Current {
                            path: path.clone(),
                            header,
                            end: offset,
                            last: read.last,
                            torn: None,
                        });
                        Want::Ended { seq: read.last + 1, by: path.clone(), unsealed: true }
                    }
                    V2End::Torn { from, to } if is_newest => {
                        newest = Some(Newest::Current {
                            path: path.clone(),
                            header,
                            end: from,
                            last: read.last,
                            torn: Some((from, to)),
                        });
                        Want::Ended { seq: read.last + 1, by: path.clone(), unsealed: true }
                    }
                    V2End::Torn { from, .. } => damaged(
                        &mut findings,
                        read.last,
                        format!("the frame at byte {from} does not check out, in a segment that is not the newest"),
                    ),
                    V2End::Sealed { next } if next != read.last + 1 => damaged(
                        &mut findings,
                        read.last,
                        format!(
                            "its seal names record {next} as the next segment's first, after its last record {}",
                            read.last
                        ),
                    ),
                    V2End::Sealed { next } => {
                        if is_newest {
                            let reason = format!(
                                "{} was sealed naming it as the next segment, and it is the newest",
                                name(path)
                            );
                            let mut f = missing(next, reason);
                            f.damage.last_lost = None;
                            findings.push(f);
                        }
                        Want::Sealed { seq: next, by: path.clone() }
                    }
                    V2End::Damaged(reason) => damaged(&mut findings, read.last, reason),
                };
            }
            Err(HeaderError::Bad(reason)) => {
                seen_v2 = true;
                want = damaged(&mut findings, first - 1, reason);
            }
            Err(HeaderError::NoMagic) if seen_v2 || (marker && is_newest) => {
                let reason =
                    "it has no segment header, though the folder's log is in format 2 (zero-filled or emptied)";
                want = damaged(&mut findings, first - 1, reason.to_owned());
            }
            Err(HeaderError::NoMagic) => {
                let read = legacy::read(path, first, &mut applied, apply)?;
                end_seq = end_seq.max(read.last);
                log_end = log_end.max(read.last);
                want = match read.end {
                    legacy::End::Clean => {
                        newest = Some(Newest::Legacy { path: path.clone(), torn: None });
                        Want::Ended { seq: read.last + 1, by: path.clone(), unsealed: false }
                    }
                    legacy::End::Torn { offset, .. } if is_newest => {
                        newest = Some(Newest::Legacy { path: path.clone(), torn: Some(offset) });
                        Want::Ended { seq: read.last + 1, by: path.clone(), unsealed: false }
                    }
                    legacy::End::Torn { reason, .. } | legacy::End::Damaged { reason } => {
                        damaged(&mut findings, read.last, reason)
                    }
                };
            }
        }
    }
    let open_ended = findings.iter().any(|f| f.damage.last_lost.is_none());
    if segs.is_empty() && (snapshot_seq > 0 || marker) {
        let reason = if snapshot_seq > 0 {
            format!("the snapshot holds records up to {snapshot_seq} and no log segment follows it")
        } else {
            format!("{FORMAT_MARKER} says this folder has a log, and no segment is left")
        };
        findings.push(Finding {
            damage: LogDamage {
                file: segment_path(dir, snapshot_seq + 1),
                missing: true,
                reason,
                first_lost: snapshot_seq + 1,
                last_lost: None,
                moved_to: None,
            },
            move_aside: false,
        });
    } else if !segs.is_empty() && !open_ended && log_end < snapshot_seq {
        let (_, newest_path) = segs.last().expect("a segment");
        findings.push(Finding {
            damage: LogDamage {
                file: newest_path.clone(),
                missing: false,
                reason: format!(
                    "the log ends at record {log_end}, before the snapshot's record {snapshot_seq}: the segment holding records from {} on is missing",
                    snapshot_seq + 1
                ),
                first_lost: snapshot_seq + 1,
                last_lost: None,
                moved_to: None,
            },
            move_aside: true,
        });
    }
    // Records the snapshot holds are not lost.
    let mut kept = Vec::new();
    for mut f in findings {
        f.damage.first_lost = f.damage.first_lost.max(snapshot_seq + 1);
        if f.damage.last_lost.is_some_and(|l| l < f.damage.first_lost) {
            tracing::warn!(file = %f.damage.file.display(), reason = %f.damage.reason, snapshot_seq,
                "log damage that loses no record (the snapshot holds them, or none is missing)");
        } else {
            kept.push(f);
        }
    }
    Ok(Recovered { last_seq: end_seq.max(snapshot_seq), snapshot_seq, newest, findings: kept, marker })
}

impl Recovered {
    /// The damage found (records lost), in log order.
    #[cfg(test)]
    pub(crate) fn damage(&self) -> Vec<LogDamage> {
        self.findings.iter().map(|f| f.damage.clone()).collect()
    }

    /// The error that stops the start, when acknowledged records are missing.
    pub(crate) fn refusal(&self) -> Option<StoreError> {
        let first = self.findings.first()?;
        Some(StoreError::LogDamaged { damage: Box::new(first.damage.clone()), more: self.findings.len() - 1 })
    }

    /// Makes the folder ready to append and opens the writer. Without damage: clears a
    /// torn tail of the newest segment and appends to it (a first-format folder gets its
    /// first format-2 segment). With damage, which the caller has accepted: `snapshot`
    /// writes the state recovered so far as a snapshot of `last_seq` (when it is past the
    /// old one), then damaged files go to `damaged/`, the segments the snapshot holds are
    /// deleted, and a new segment starts. Returns the writer and the damage accepted.
    pub(crate) fn finish(
        self,
        dir: &Path,
        durability: Durability,
        segment_bytes: u64,
        snapshot: impl FnOnce(u64) -> Result<(), StoreError>,
    ) -> Result<(LogWriter, Vec<LogDamage>), StoreError> {
        let next = self.last_seq + 1;
        let mut accepted = Vec::new();
        let mut newest = self.newest;
        if !self.findings.is_empty() {
            if self.last_seq > self.snapshot_seq {
                snapshot(self.last_seq)?;
            }
            let stamp = crate::store::now_ms();
            for f in self.findings {
                let mut d = f.damage;
                if f.move_aside && !d.missing && d.file.exists() {
                    d.moved_to = Some(move_aside(dir, &d.file, stamp)?);
                }
                tracing::error!(damage = %d, "log damage accepted (--accept-log-damage): starting without these records");
                accepted.push(d);
            }
            // Only a whole, empty newest segment at `next` is kept; everything else the
            // snapshot holds.
            let keep = matches!(&newest, Some(Newest::Current { path, header, .. })
                if header.first_seq == next && !accepted.iter().any(|d: &LogDamage| &d.file == path));
            if !keep {
                newest = None;
            }
            for (first, path) in segments(dir)? {
                if first <= self.last_seq {
                    fs::remove_file(&path).map_err(|e| StoreError::io(&path, e))?;
                }
            }
            sync_dir(dir)?;
        }
        let writer = match newest {
            Some(Newest::Current { path, header, end, last, torn }) => {
                if let Some((from, to)) = torn {
                    tracing::warn!(segment = %path.display(), from, bytes = to - from,
                        "log ends in a torn frame (a batch never acknowledged); clearing it");
                    clear(&path, from, to)?;
                }
                debug_assert_eq!(last + 1, next);
                LogWriter::resume(dir, path, header, end, next, durability, segment_bytes)?
            }
            Some(Newest::Legacy { path, torn }) => {
                if let Some(offset) = torn {
                    tracing::warn!(segment = %path.display(), offset,
                        "log ends in a torn record (never acknowledged); truncating");
                    legacy::truncate(&path, offset)?;
                }
                LogWriter::create(dir, next, durability, segment_bytes)?
            }
            Some(Newest::Closed) | None => LogWriter::create(dir, next, durability, segment_bytes)?,
        };
        if !self.marker {
            let path = dir.join(FORMAT_MARKER);
            fs::write(&path, "liveprofile log format 2\n").map_err(|e| StoreError::io(&path, e))?;
            sync_dir(dir)?;
        }
        Ok((writer, accepted))
    }
}

/// Removes segments and probes left half-made by a crash.
fn remove_temporaries(dir: &Path) -> Result<(), StoreError> {
    for entry in fs::read_dir(dir).map_err(|e| StoreError::io(dir, e))?.flatten() {
        let name = entry.file_name();
        if name.to_str().is_some_and(|n| n.starts_with(".log-") && n.ends_with(".partial")) {
            let _ = fs::remove_file(entry.path());
        }
    }
    Ok(())
}

/// Moves a damaged file to `damaged/<name>.<stamp>`; never deletes it.
fn move_aside(dir: &Path, file: &Path, stamp: i64) -> Result<PathBuf, StoreError> {
    let aside = dir.join(DAMAGED_DIR);
    fs::create_dir_all(&aside).map_err(|e| StoreError::io(&aside, e))?;
    let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let to = aside.join(format!("{name}.{stamp}"));
    fs::rename(file, &to).map_err(|e| StoreError::io(file, e))?;
    sync_dir(&aside)?;
    sync_dir(dir)?;
    Ok(to)
}

/// Zeroes bytes `from..to` of a segment (a torn frame) and syncs it.
fn clear(path: &Path, from: u64, to: u64) -> Result<(), StoreError> {
    let io = |e| StoreError::io(path, e);
    let mut f = OpenOptions::new().write(true).open(path).map_err(io)?;
    f.seek(SeekFrom::Start(from)).map_err(io)?;
    f.write_all(&vec![0u8; (to - from) as usize]).map_err(io)?;
    f.sync_data().map_err(io)
}

/// The segment header, if the file starts with the format-2 magic.
fn read_header(path: &Path) -> Result<Result<SegmentHeader, HeaderError>, StoreError> {
    let mut f = File::open(path).map_err(|e| StoreError::io(path, e))?;
    let mut b = [0u8; SEGMENT_HEADER];
    let n = read_full(&mut f, &mut b).map_err(|e| StoreError::io(path, e))?;
    if n < 8 || &b[..8] != super::format::MAGIC {
        return Ok(Err(HeaderError::NoMagic));
    }
    if n < SEGMENT_HEADER {
        return Ok(Err(HeaderError::Bad(format!("it is {n} bytes, shorter than its segment header"))));
    }
    Ok(SegmentHeader::decode(&b))
}

/// How a format-2 segment ends.
enum V2End {
    /// At the end of its data (`offset`), zeros after it.
    Clean { offset: u64 },
    /// At its seal, naming the next segment's first record.
    Sealed { next: u64 },
    /// At a frame that does not check out, bytes `from..to`, zeros after it.
    Torn { from: u64, to: u64 },
    /// Anything else that stops the reading.
    Damaged(String),
}

struct V2Read {
    /// Last whole record (`first_seq - 1` without one).
    last: u64,
    end: V2End,
}

fn read_v2(path: &Path, header: SegmentHeader, applied: &mut u64, apply: &mut Apply<'_>) -> Result<V2Read, StoreError> {
    let io = |e| StoreError::io(path, e);
    let mut file = File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    file.seek(SeekFrom::Start(SEGMENT_HEADER as u64)).map_err(io)?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let capacity = header.capacity;
    let size_wrong = match len.cmp(&capacity) {
        std::cmp::Ordering::Less => {
            Some(format!("it is {len} bytes, shorter than its capacity of {capacity} (cut short)"))
        }
        std::cmp::Ordering::Greater => Some(format!("it is {len} bytes, longer than its capacity of {capacity}")),
        std::cmp::Ordering::Equal => None,
    };
    let mut offset = SEGMENT_HEADER as u64;
    let mut seq = header.first_seq;
    let mut payload = Vec::new();
    let done = |seq: u64, end: V2End| Ok(V2Read { last: seq - 1, end });
    let frame = FRAME_HEADER as u64;
    loop {
        if offset + frame > len.min(capacity) {
            // No room for another frame header: full (the writer never leaves it so), or
            // cut short.
            return match &size_wrong {
                Some(why) => done(seq, V2End::Damaged(why.clone())),
                None => done(seq, V2End::Clean { offset }),
            };
        }
        let mut hb = [0u8; FRAME_HEADER];
        reader.read_exact(&mut hb).map_err(io)?;
        let h = match FrameHeader::decode(&hb) {
            FrameRead::End => {
                let end = if !zeros_from(path, offset)? {
                    V2End::Damaged(format!("it holds nonzero bytes after the end of its data at byte {offset}"))
                } else if let Some(why) = &size_wrong {
                    V2End::Damaged(why.clone())
                } else {
                    V2End::Clean { offset }
                };
                return done(seq, end);
            }
            FrameRead::Bad => return bad(path, seq, offset, offset + frame, &size_wrong),
            FrameRead::Header(h) => h,
        };
        if h.count == 0 {
            let end = if h.payload_len != 0 {
                V2End::Damaged(format!("the seal at byte {offset} has a payload"))
            } else if !zeros_from(path, offset + frame)? {
                V2End::Damaged(format!("it holds nonzero bytes after its seal at byte {offset}"))
            } else if let Some(why) = &size_wrong {
                V2End::Damaged(why.clone())
            } else {
                V2End::Sealed { next: h.seq }
            };
            return done(seq, end);
        }
        if h.seq != seq {
            let why = format!("the frame at byte {offset} holds records from {}, where record {seq} belongs", h.seq);
            return done(seq, V2End::Damaged(why));
        }
        let frame_end = offset + frame + u64::from(h.payload_len);
        if frame_end + frame > capacity {
            let why = format!("the frame at byte {offset} reaches past the segment's capacity");
            return done(seq, V2End::Damaged(why));
        }
        if frame_end > len {
            let why = size_wrong.clone().unwrap_or_default();
            return done(seq, V2End::Damaged(why));
        }
        payload.resize(h.payload_len as usize, 0);
        reader.read_exact(&mut payload).map_err(io)?;
        if crc32fast::hash(&payload) != h.payload_crc {
            return bad(path, seq, offset, frame_end, &size_wrong);
        }
        let records = match split_records(&payload, h.count) {
            Ok(r) => r,
            Err(why) => return done(seq, V2End::Damaged(format!("the frame at byte {offset}: {why}"))),
        };
        for (k, record) in records.into_iter().enumerate() {
            let s = seq + k as u64;
            if s > *applied {
                apply(s, record)?;
                *applied = s;
            }
        }
        seq += u64::from(h.count);
        offset = frame_end;
    }
}

/// A frame at `from` that does not check out, its bytes reaching `to`: a torn tail when
/// only zeros follow (and the file has its full size), else damage.
fn bad(path: &Path, seq: u64, from: u64, to: u64, size_wrong: &Option<String>) -> Result<V2Read, StoreError> {
    let end = match size_wrong {
        Some(why) => V2End::Damaged(why.clone()),
        None if zeros_from(path, to)? => V2End::Torn { from, to },
        None => V2End::Damaged(format!("the frame at byte {from} does not check out and data follows it")),
    };
    Ok(V2Read { last: seq - 1, end })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Every record of the log in `dir`, checked read-only.
    pub(crate) fn records(dir: &Path) -> Vec<(u64, Vec<u8>)> {
        let mut out = Vec::new();
        let found = recover(dir, 0, &mut |seq, payload| {
            out.push((seq, payload.to_vec()));
            Ok(())
        })
        .unwrap();
        assert!(found.findings.is_empty(), "{:?}", found.damage());
        out
    }

    #[test]
    fn a_first_format_folder_is_read_and_goes_on_in_format_2() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(segment_path(dir.path(), 1), legacy::encode(&[b"a", b"b"])).unwrap();
        fs::write(segment_path(dir.path(), 3), legacy::encode(&[b"c"])).unwrap();
        let mut seen = Vec::new();
        let found = recover(dir.path(), 0, &mut |s, _| {
            seen.push(s);
            Ok(())
        })
        .unwrap();
        assert_eq!((seen.as_slice(), found.last_seq), (&[1, 2, 3][..], 3));
        let (mut w, damage) = found.finish(dir.path(), Durability::Write, 4096, |_| unreachable!()).unwrap();
        assert!(damage.is_empty());
        assert_eq!(w.stage(b"d"), 4);
        w.commit().unwrap();
        drop(w);
        assert!(dir.path().join(FORMAT_MARKER).exists());
        let got: Vec<u64> = records(dir.path()).into_iter().map(|(s, _)| s).collect();
        assert_eq!(got, [1, 2, 3, 4]);
    }
}
