//! Store recovery: bytes written as log segments and snapshots into a data folder, then
//! `ProfileStore::open`, which must answer (a store, or an error naming the damage), never
//! panic, hang or allocate without bound. A store that opens takes an event, a snapshot,
//! and reopens with the same contents.
//!
//! Input: a flags byte (bit 0: the `LOG_FORMAT` marker; bit 1: fix checksums, so that
//! mutations reach past them: the segment header's and each frame's, each snapshot
//! frame's, and a segment padded with zeros to the capacity its header names; bit 2:
//! accept log damage; bit 3: the round trip after opening), a shard-count byte, then files:
//! a kind byte (0 segment, 1 snapshot, 2 leftover partial snapshot), a u16 sequence number
//! (the file name) and a u16-length chunk of contents.
#![no_main]

use liveprofile_fuzz::{Input, fresh_dir, seeds};
use liveprofile_store::{IncomingEvent, ProfileStore};

const SEGMENT_HEADER: usize = 32;
const FRAME_HEADER: usize = 24;
/// Largest capacity a segment is padded up to.
const MAX_PAD: u64 = 1 << 20;

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

/// Format 2 (`LPWALSEG`): header checksum, frame checksums, zeros to the capacity.
/// First format: `length | crc32 | payload` frames.
fn fix_segment(b: &mut Vec<u8>) {
    if b.len() >= SEGMENT_HEADER && b.starts_with(b"LPWALSEG") {
        let crc = crc32fast::hash(&b[..28]);
        put_u32(b, 28, crc);
        let capacity = u64::from_le_bytes(b[20..28].try_into().expect("8 bytes"));
        let mut at = SEGMENT_HEADER;
        while at + FRAME_HEADER <= b.len() && b[at..at + FRAME_HEADER].iter().any(|&x| x != 0) {
            let len = u32_at(b, at) as usize;
            let end = at + FRAME_HEADER + len;
            if end <= b.len() {
                let crc = crc32fast::hash(&b[at + FRAME_HEADER..end]);
                put_u32(b, at + 16, crc);
            }
            let crc = crc32fast::hash(&b[at..at + 20]);
            put_u32(b, at + 20, crc);
            if end > b.len() {
                break;
            }
            at = end;
        }
        if capacity <= MAX_PAD && capacity > b.len() as u64 {
            b.resize(capacity as usize, 0);
        }
    } else {
        let mut at = 0;
        while at + 8 <= b.len() {
            let len = u32_at(b, at) as usize;
            let end = at + 8 + len;
            if end > b.len() {
                break;
            }
            let crc = crc32fast::hash(&b[at + 8..end]);
            put_u32(b, at + 4, crc);
            at = end;
        }
    }
}

/// Snapshot frames after the 8-byte magic: `length u64 | crc32 | payload`.
fn fix_snapshot(b: &mut [u8]) {
    let mut at = 8;
    while at + 12 <= b.len() {
        let len = u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"));
        let Some(end) = usize::try_from(len).ok().and_then(|l| l.checked_add(at + 12)).filter(|&e| e <= b.len()) else {
            break;
        };
        let crc = crc32fast::hash(&b[at + 12..end]);
        put_u32(b, at + 8, crc);
        at = end;
    }
}

fn event(i: usize) -> IncomingEvent {
    IncomingEvent {
        event_id: format!("fuzz-{i}-{}", liveprofile_store::now_ms()),
        ts_ms: liveprofile_store::now_ms() - 1000,
        platform: "douyin".into(),
        user_id: "u1".into(),
        room_id: "r1".into(),
        category: "beauty".into(),
        kind: "like".into(),
        ..Default::default()
    }
}

libfuzzer_sys::fuzz_target!(init: liveprofile_fuzz::start("store_recovery", seeds::store_recovery), |data: &[u8]| {
    let mut input = Input::new(data);
    let flags = input.byte();
    let shards = 1 + (input.byte() % 4) as usize;
    let dir = fresh_dir("store");
    if flags & 1 != 0 {
        std::fs::write(dir.join("LOG_FORMAT"), b"2\n").expect("marker");
    }
    let fix = flags & 2 != 0;
    let mut files = 0;
    while !input.is_empty() && files < 16 {
        files += 1;
        let kind = input.byte() % 3;
        let seq = input.u16();
        let mut bytes = input.chunk().to_vec();
        let name = match kind {
            0 => {
                if fix {
                    fix_segment(&mut bytes);
                }
                format!("log-{seq:020}.wal")
            }
            1 => {
                if fix {
                    fix_snapshot(&mut bytes);
                }
                format!("snapshot-{seq:020}.snap")
            }
            _ => format!(".snapshot-{seq:020}.snap.1.partial"),
        };
        std::fs::write(dir.join(name), &bytes).expect("scratch write");
    }
    let mut options = seeds::store_options(&dir, shards);
    options.accept_log_damage = flags & 4 != 0;
    let Ok(store) = ProfileStore::open(options.clone()) else { return };
    if flags & 8 == 0 {
        return;
    }
    // A store that opened keeps working: it takes an event and a snapshot, and what it
    // holds then is what it holds after a restart.
    let _ = store.ingest(&[event(0)]);
    let _ = store.snapshot();
    let _ = store.ingest(&[event(1)]);
    let before = store.stats();
    drop(store);
    options.accept_log_damage = false;
    let store = ProfileStore::open(options).expect("a store that opened, wrote and snapshotted reopens");
    let after = store.stats();
    assert_eq!(
        (after.users, after.hosts, after.identities, after.last_seq),
        (before.users, before.hosts, before.identities, before.last_seq),
        "the reopened store differs"
    );
});
