//! Layout of a format-2 segment.
//!
//! ```text
//! segment header (32 bytes): magic "LPWALSEG" | version u32 = 2 | first record u64
//!                            | capacity u64 (the file's size) | crc32 of the 28 bytes before
//! frames, each with a 24-byte header: payload length u32 | record count u32
//!                            | sequence number u64 | crc32 of the payload
//!                            | crc32 of the 20 header bytes before it
//!   batch: count >= 1, sequence number of its first record, payload = the records, each
//!          `length u32 | bytes`
//!   seal:  count = 0, no payload, sequence number = the next segment's first record
//! end of data: a frame header of 24 zero bytes; zeros to the end of the file.
//! ```
//!
//! All integers are little-endian. A frame header checks itself, so that a length that
//! does not check out is never trusted to say where the next frame starts.

use super::MAX_RECORD_BYTES;

/// The first bytes of every format-2 segment.
pub(crate) const MAGIC: &[u8; 8] = b"LPWALSEG";
/// The format this code writes.
pub(crate) const VERSION: u32 = 2;
/// Bytes of the segment header.
pub(crate) const SEGMENT_HEADER: usize = 32;
/// Bytes of a frame header.
pub(crate) const FRAME_HEADER: usize = 24;
/// Bytes before each record inside a batch payload.
pub(crate) const RECORD_PREFIX: usize = 4;

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// What a segment header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegmentHeader {
    pub(crate) first_seq: u64,
    pub(crate) capacity: u64,
}

/// Why a segment header was not taken.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum HeaderError {
    /// Not a format-2 segment (a first-format segment, or bytes that are no header).
    NoMagic,
    /// Magic present, but the rest does not check out.
    Bad(String),
}

impl SegmentHeader {
    pub(crate) fn encode(&self) -> [u8; SEGMENT_HEADER] {
        let mut b = [0u8; SEGMENT_HEADER];
        b[..8].copy_from_slice(MAGIC);
        b[8..12].copy_from_slice(&VERSION.to_le_bytes());
        b[12..20].copy_from_slice(&self.first_seq.to_le_bytes());
        b[20..28].copy_from_slice(&self.capacity.to_le_bytes());
        let crc = crc32fast::hash(&b[..28]);
        b[28..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    pub(crate) fn decode(b: &[u8; SEGMENT_HEADER]) -> Result<SegmentHeader, HeaderError> {
        if &b[..8] != MAGIC {
            return Err(HeaderError::NoMagic);
        }
        if crc32fast::hash(&b[..28]) != u32_at(b, 28) {
            return Err(HeaderError::Bad("its segment header does not check out (checksum mismatch)".to_owned()));
        }
        let version = u32_at(b, 8);
        if version != VERSION {
            return Err(HeaderError::Bad(format!("its segment header names format {version}, not {VERSION}")));
        }
        let header = SegmentHeader { first_seq: u64_at(b, 12), capacity: u64_at(b, 20) };
        if header.capacity < (SEGMENT_HEADER + 2 * FRAME_HEADER) as u64 {
            return Err(HeaderError::Bad(format!("its segment header names a capacity of {} bytes", header.capacity)));
        }
        Ok(header)
    }
}

/// A frame header that checked out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrameHeader {
    pub(crate) payload_len: u32,
    /// Records in the batch; 0 for a seal.
    pub(crate) count: u32,
    /// First record of the batch, or the next segment's first record for a seal.
    pub(crate) seq: u64,
    pub(crate) payload_crc: u32,
}

/// What 24 bytes where a frame header belongs hold.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum FrameRead {
    /// All zeros: the end of the data.
    End,
    /// A header that checks out.
    Header(FrameHeader),
    /// Anything else.
    Bad,
}

impl FrameHeader {
    pub(crate) fn encode(&self) -> [u8; FRAME_HEADER] {
        let mut b = [0u8; FRAME_HEADER];
        b[..4].copy_from_slice(&self.payload_len.to_le_bytes());
        b[4..8].copy_from_slice(&self.count.to_le_bytes());
        b[8..16].copy_from_slice(&self.seq.to_le_bytes());
        b[16..20].copy_from_slice(&self.payload_crc.to_le_bytes());
        let crc = crc32fast::hash(&b[..20]);
        b[20..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    pub(crate) fn decode(b: &[u8; FRAME_HEADER]) -> FrameRead {
        if b.iter().all(|&x| x == 0) {
            return FrameRead::End;
        }
        if crc32fast::hash(&b[..20]) != u32_at(b, 20) {
            return FrameRead::Bad;
        }
        FrameRead::Header(FrameHeader {
            payload_len: u32_at(b, 0),
            count: u32_at(b, 4),
            seq: u64_at(b, 8),
            payload_crc: u32_at(b, 16),
        })
    }

    /// The seal that closes a segment whose successor starts at `next_seq`.
    pub(crate) fn seal(next_seq: u64) -> [u8; FRAME_HEADER] {
        FrameHeader { payload_len: 0, count: 0, seq: next_seq, payload_crc: crc32fast::hash(&[]) }.encode()
    }
}

/// Splits a batch payload (that passed its checksum) into its `count` records.
pub(crate) fn split_records(payload: &[u8], count: u32) -> Result<Vec<&[u8]>, String> {
    // Every record takes its prefix and at least one byte: a count the payload cannot
    // hold is damage, and must not size an allocation.
    if count as usize > payload.len() / (RECORD_PREFIX + 1) {
        return Err(format!("the batch names {count} records, more than its {} bytes can hold", payload.len()));
    }
    let mut out = Vec::with_capacity(count as usize);
    let mut rest = payload;
    for i in 0..count {
        if rest.len() < RECORD_PREFIX {
            return Err(format!("record {i} of {count} of the batch is cut short"));
        }
        let len = u32_at(rest, 0) as usize;
        if len == 0 || len > MAX_RECORD_BYTES || rest.len() < RECORD_PREFIX + len {
            return Err(format!("record {i} of {count} of the batch has a length of {len} bytes"));
        }
        out.push(&rest[RECORD_PREFIX..RECORD_PREFIX + len]);
        rest = &rest[RECORD_PREFIX + len..];
    }
    if !rest.is_empty() {
        return Err(format!("{} bytes follow the last record of the batch", rest.len()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_count_the_payload_cannot_hold_is_refused_before_allocating() {
        let mut payload = 1u32.to_le_bytes().to_vec();
        payload.resize(RECORD_PREFIX + 1, 9);
        assert_eq!(split_records(&payload, 1).unwrap(), [&[9u8][..]]);
        let err = split_records(&payload, u32::MAX).unwrap_err();
        assert_eq!(
            err,
            format!("the batch names {} records, more than its {} bytes can hold", u32::MAX, payload.len())
        );
    }

    #[test]
    fn headers_round_trip_and_check_themselves() {
        let h = SegmentHeader { first_seq: 42, capacity: 1 << 20 };
        let mut b = h.encode();
        assert_eq!(SegmentHeader::decode(&b), Ok(h));
        b[13] ^= 1;
        assert!(matches!(SegmentHeader::decode(&b), Err(HeaderError::Bad(_))));
        assert_eq!(SegmentHeader::decode(&[0u8; SEGMENT_HEADER]), Err(HeaderError::NoMagic));

        let f = FrameHeader { payload_len: 9, count: 2, seq: 7, payload_crc: 5 };
        let mut b = f.encode();
        assert_eq!(FrameHeader::decode(&b), FrameRead::Header(f));
        b[0] ^= 0x40;
        assert_eq!(FrameHeader::decode(&b), FrameRead::Bad);
        assert_eq!(FrameHeader::decode(&[0u8; FRAME_HEADER]), FrameRead::End);
        assert!(
            matches!(FrameHeader::decode(&FrameHeader::seal(8)), FrameRead::Header(h) if h.count == 0 && h.seq == 8)
        );
    }

    #[test]
    fn batch_payloads_split_into_their_records() {
        let mut p = Vec::new();
        for r in [&b"ab"[..], b"cde"] {
            p.extend_from_slice(&(r.len() as u32).to_le_bytes());
            p.extend_from_slice(r);
        }
        assert_eq!(split_records(&p, 2).unwrap(), vec![&b"ab"[..], b"cde"]);
        assert!(split_records(&p, 3).is_err());
        assert!(split_records(&p, 1).is_err());
    }
}
