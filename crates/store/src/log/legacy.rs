//! Segments of the first format: frames of `length (u32 LE) | crc32 of the payload (u32 LE)
//! | payload` from the first byte, no header, no seal. They are read (never written) with
//! the rules they were written under: a bad frame at the end of the newest segment, or
//! followed only by zeros, is a torn record and is cut off; any other bad frame is damage.

use super::{Apply, MAX_RECORD_BYTES, read_full, zeros_from};
use crate::error::StoreError;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read};
use std::path::Path;

/// Frame header: length and checksum.
const HEADER: usize = 8;

/// How a first-format segment ends.
#[derive(Debug)]
pub(crate) enum End {
    /// At the end of the file, after a whole frame.
    Clean,
    /// At a bad frame that reaches the end of the file or has only zeros after it: torn
    /// if the segment is the newest.
    Torn { offset: u64, reason: String },
    /// At a bad frame with data after it.
    Damaged { reason: String },
}

/// The outcome of reading one first-format segment.
#[derive(Debug)]
pub(crate) struct Read1 {
    /// Sequence number of the last whole record (`first_seq - 1` without one).
    pub(crate) last: u64,
    pub(crate) end: End,
}

/// Reads every record of the segment, calling `apply` for those after `*applied`.
pub(crate) fn read(path: &Path, first_seq: u64, applied: &mut u64, apply: &mut Apply<'_>) -> Result<Read1, StoreError> {
    let file = File::open(path).map_err(|e| StoreError::io(path, e))?;
    let len = file.metadata().map_err(|e| StoreError::io(path, e))?.len();
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut payload = Vec::new();
    let mut offset = 0u64;
    let mut seq = first_seq;
    loop {
        match read_frame(&mut reader, &mut payload) {
            Frame::Record(n) => {
                if seq > *applied {
                    apply(seq, &payload)?;
                    *applied = seq;
                }
                seq += 1;
                offset += n;
            }
            Frame::End => return Ok(Read1 { last: seq - 1, end: End::Clean }),
            Frame::Bad { reason, frame_len } => {
                // A bad frame with more data after it is damage, not an unfinished write,
                // unless that data is all zeros (a file extended over blocks never written).
                let at_end = frame_len.is_none_or(|n| offset + n >= len) || zeros_from(path, offset)?;
                let reason = format!("{reason} at byte {offset}");
                let end = if at_end { End::Torn { offset, reason } } else { End::Damaged { reason } };
                return Ok(Read1 { last: seq - 1, end });
            }
        }
    }
}

/// Cuts a torn record off the end of the newest segment.
pub(crate) fn truncate(path: &Path, offset: u64) -> Result<(), StoreError> {
    let f = OpenOptions::new().write(true).open(path).map_err(|e| StoreError::io(path, e))?;
    f.set_len(offset).map_err(|e| StoreError::io(path, e))?;
    f.sync_all().map_err(|e| StoreError::io(path, e))
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

/// Frames `payloads` in the first format (for tests of folders written before format 2).
#[cfg(test)]
pub(crate) fn encode(payloads: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in payloads {
        out.extend_from_slice(&(p.len() as u32).to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(p).to_le_bytes());
        out.extend_from_slice(p);
    }
    out
}
