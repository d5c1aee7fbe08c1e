//! Reading and forging format-2 segments the way a crash or an operator leaves them
//! (the layout is documented in the log module).

use std::path::{Path, PathBuf};

pub const SEGMENT_HEADER: u64 = 32;
pub const FRAME_HEADER: u64 = 24;

/// A batch frame of a segment: its byte offset, first record and record count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    pub offset: u64,
    pub first_seq: u64,
    pub count: u64,
    pub end: u64,
}

/// The batch frames of a segment's bytes, up to the end of its data or its seal.
pub fn frames(bytes: &[u8]) -> Vec<Frame> {
    let mut out = Vec::new();
    let mut at = SEGMENT_HEADER as usize;
    while at + FRAME_HEADER as usize <= bytes.len() {
        let h = &bytes[at..at + FRAME_HEADER as usize];
        let len = u32::from_le_bytes(h[..4].try_into().unwrap()) as u64;
        let count = u32::from_le_bytes(h[4..8].try_into().unwrap()) as u64;
        let seq = u64::from_le_bytes(h[8..16].try_into().unwrap());
        if count == 0 {
            break; // the end of the data, or a seal
        }
        let end = at as u64 + FRAME_HEADER + len;
        out.push(Frame { offset: at as u64, first_seq: seq, count, end });
        at = end as usize;
    }
    out
}

/// Offset of the end of a segment's data (where the next frame would go).
pub fn data_end(bytes: &[u8]) -> u64 {
    frames(bytes).last().map_or(SEGMENT_HEADER, |f| f.end)
}

/// The first `written` bytes of a batch frame of one 1,000-byte record numbered `seq`,
/// as a write cut short by a crash leaves them (the rest never reached the disk).
pub fn torn_frame(seq: u64, written: usize) -> Vec<u8> {
    let mut payload = 1000u32.to_le_bytes().to_vec();
    payload.extend_from_slice(&[7u8; 1000]);
    let mut h = Vec::new();
    h.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    h.extend_from_slice(&1u32.to_le_bytes());
    h.extend_from_slice(&seq.to_le_bytes());
    h.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    let crc = crc32fast::hash(&h);
    h.extend_from_slice(&crc.to_le_bytes());
    h.extend_from_slice(&payload);
    h.truncate(written);
    h
}

/// The segments of a folder, by first record.
pub fn segments(dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut out: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let e = e.unwrap();
            let name = e.file_name().into_string().unwrap();
            let seq = name.strip_prefix("log-")?.strip_suffix(".wal")?.parse().ok()?;
            Some((seq, e.path()))
        })
        .collect();
    out.sort();
    out
}

/// Sequence number of the last record of a segment.
pub fn last_seq(path: &Path) -> u64 {
    let f = frames(&std::fs::read(path).unwrap());
    let last = f.last().unwrap();
    last.first_seq + last.count - 1
}

/// A whole, empty segment of `capacity` bytes whose first record is `first_seq` (what a
/// writer leaves when it dies between creating a segment and sealing the one before).
pub fn empty_segment(first_seq: u64, capacity: u64) -> Vec<u8> {
    let mut b = b"LPWALSEG".to_vec();
    b.extend_from_slice(&2u32.to_le_bytes());
    b.extend_from_slice(&first_seq.to_le_bytes());
    b.extend_from_slice(&capacity.to_le_bytes());
    let crc = crc32fast::hash(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b.resize(capacity as usize, 0);
    b
}
