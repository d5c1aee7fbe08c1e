//! Snapshots: the whole state at a log sequence number, in one file published by rename
//! (`snapshot-<seq>.snap`, written as `.snapshot-<seq>.snap.<pid>.partial`; see
//! [`Publication`]).
//!
//! Layout: the magic `LPSNAP03`, then frames (length u64, crc32, payload): a header
//! (sequence number, shard count), one frame per shard, the host book, the identity
//! table, the experiments, the event-id index, and a trailer repeating the sequence
//! number. A file without its trailer is not a snapshot. Snapshots of earlier layouts
//! (`LPSNAP02` without the event-id index, `LPSNAP01` without experiments either) are
//! still read.
//!
//! The snapshot of sequence number `S` holds every record up to `S`; its parts are read
//! one after another while events keep arriving, so each part also holds the records it
//! took in after `S`, up to the sequence number it carries. Replay applies a record to
//! the parts that do not hold it yet.

use crate::dedup::EventIds;
use crate::error::StoreError;
use crate::experiments::ExperimentBook;
use crate::log::numbered_files;
use crate::store::{Hosts, Identities, Shard};
use liveprofile_publish::{Publication, PublishError};
use std::fs::{self, File};
use std::io::{BufWriter, Read, Write};
use std::ops::Deref;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"LPSNAP03";
/// The second layout, without the event-id index.
const MAGIC_V2: &[u8; 8] = b"LPSNAP02";
/// The first layout, without experiments.
const MAGIC_V1: &[u8; 8] = b"LPSNAP01";

/// A loaded snapshot.
pub(crate) struct SnapshotParts {
    pub(crate) seq: u64,
    pub(crate) shards: Vec<Shard>,
    pub(crate) hosts: Hosts,
    pub(crate) identities: Identities,
    pub(crate) experiments: ExperimentBook,
    /// Empty (sequence number 0) in snapshots of earlier layouts.
    pub(crate) event_ids: EventIds,
}

fn path_of(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("snapshot-{seq:020}.snap"))
}

fn snapshots(dir: &Path) -> Result<Vec<(u64, PathBuf)>, StoreError> {
    numbered_files(dir, "snapshot-", ".snap")
}

fn frame(out: &mut Vec<u8>, payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// Serializes the state into framed chunks. Each part is locked only while it is read,
/// and the host book and identity table only after the last shard (ingest locks a shard
/// and then the host book, so taking them in the other order could deadlock).
pub(crate) fn serialize<
    G: Deref<Target = Shard>,
    H: Deref<Target = Hosts>,
    I: Deref<Target = Identities>,
    X: Deref<Target = ExperimentBook>,
    E: Deref<Target = EventIds>,
>(
    seq: u64,
    shards: impl ExactSizeIterator<Item = G>,
    hosts: impl FnOnce() -> H,
    identities: impl FnOnce() -> I,
    experiments: impl FnOnce() -> X,
    event_ids: impl FnOnce() -> E,
) -> Vec<Vec<u8>> {
    let mut chunks = Vec::with_capacity(shards.len() + 4);
    let mut header = Vec::new();
    frame(&mut header, &postcard::to_stdvec(&(seq, shards.len() as u64)).expect("header serializes"));
    chunks.push(header);
    for shard in shards {
        let payload = postcard::to_stdvec(&*shard).expect("profiles serialize");
        drop(shard);
        let mut chunk = Vec::with_capacity(payload.len() + 12);
        frame(&mut chunk, &payload);
        chunks.push(chunk);
    }
    let mut rest = Vec::new();
    frame(&mut rest, &postcard::to_stdvec(&*hosts()).expect("hosts serialize"));
    frame(&mut rest, &postcard::to_stdvec(&*identities()).expect("identities serialize"));
    frame(&mut rest, &postcard::to_stdvec(&*experiments()).expect("experiments serialize"));
    frame(&mut rest, &postcard::to_stdvec(&*event_ids()).expect("event ids serialize"));
    frame(&mut rest, &postcard::to_stdvec(&seq).expect("trailer serializes"));
    chunks.push(rest);
    chunks
}

/// Writes serialized chunks as the snapshot of `seq`; returns its size in bytes.
pub(crate) fn write(dir: &Path, seq: u64, chunks: &[Vec<u8>]) -> Result<u64, StoreError> {
    let path = path_of(dir, seq);
    let published = |e: PublishError| StoreError::io(&e.path, e.source);
    let mut publication = Publication::create(&path).map_err(published)?;
    let written = (|| {
        let mut w = BufWriter::with_capacity(1 << 20, publication.file());
        w.write_all(MAGIC)?;
        for c in chunks {
            w.write_all(c)?;
        }
        w.flush()
    })();
    written.map_err(|e| StoreError::io(&path, e))?;
    publication.publish().map_err(published)?;
    Ok(MAGIC.len() as u64 + chunks.iter().map(|c| c.len() as u64).sum::<u64>())
}

/// Deletes snapshots older than `seq` and leftover temporary files.
pub(crate) fn remove_older(dir: &Path, seq: u64) -> Result<(), StoreError> {
    for (s, path) in snapshots(dir)? {
        if s < seq {
            fs::remove_file(&path).map_err(|e| StoreError::io(&path, e))?;
        }
    }
    Ok(())
}

/// Loads the newest snapshot, if there is one.
pub(crate) fn load_newest(dir: &Path) -> Result<Option<SnapshotParts>, StoreError> {
    // A temporary file is a snapshot that was being written when the process stopped
    // (`.partial`, or `.tmp` in data folders written by earlier releases).
    for entry in fs::read_dir(dir).map_err(|e| StoreError::io(dir, e))?.flatten() {
        let name = entry.file_name();
        let temporary = |n: &str| n.starts_with(".snapshot-") && (n.ends_with(".partial") || n.ends_with(".tmp"));
        if name.to_str().is_some_and(temporary) {
            let _ = fs::remove_file(entry.path());
        }
    }
    let Some((seq, path)) = snapshots(dir)?.pop() else { return Ok(None) };
    let corrupt = |reason: String| StoreError::Corrupt { path: path.display().to_string(), reason };
    let mut bytes = Vec::new();
    File::open(&path).and_then(|mut f| f.read_to_end(&mut bytes)).map_err(|e| StoreError::io(&path, e))?;
    let (mut rest, has_experiments, has_ids) = if let Some(rest) = bytes.strip_prefix(MAGIC.as_slice()) {
        (rest, true, true)
    } else if let Some(rest) = bytes.strip_prefix(MAGIC_V2.as_slice()) {
        (rest, true, false)
    } else if let Some(rest) = bytes.strip_prefix(MAGIC_V1.as_slice()) {
        (rest, false, false)
    } else {
        return Err(corrupt("does not start with the snapshot magic".to_owned()));
    };
    let mut next = |what: &str| -> Result<&[u8], StoreError> {
        if rest.len() < 12 {
            return Err(corrupt(format!("ends before the {what}")));
        }
        let len = u64::from_le_bytes(rest[..8].try_into().expect("8 bytes")) as usize;
        let crc = u32::from_le_bytes(rest[8..12].try_into().expect("4 bytes"));
        let (body, after) = match rest[12..].split_at_checked(len) {
            Some(parts) => parts,
            None => return Err(corrupt(format!("the {what} is cut short"))),
        };
        if crc32fast::hash(body) != crc {
            return Err(corrupt(format!("checksum mismatch in the {what}")));
        }
        rest = after;
        Ok(body)
    };
    let decode = |what: &str, e: postcard::Error| corrupt(format!("the {what} does not decode: {e}"));
    let (header_seq, shard_count): (u64, u64) =
        postcard::from_bytes(next("header")?).map_err(|e| decode("header", e))?;
    if header_seq != seq {
        return Err(corrupt(format!("header says sequence {header_seq}, the name {seq}")));
    }
    // Each shard is a frame of at least 12 bytes: a count the file cannot hold is damage
    // (and must not size an allocation).
    if shard_count > (bytes.len() / 12) as u64 {
        return Err(corrupt(format!("the header names {shard_count} shards, more than the file can hold")));
    }
    let mut shards = Vec::with_capacity(shard_count as usize);
    for _ in 0..shard_count {
        let shard: Shard = postcard::from_bytes(next("shard")?).map_err(|e| decode("shard", e))?;
        // A checksum tells damage from a torn write, not a forged or buggy state: the
        // profiles must hold what the feature state keeps true before they are used.
        if let Some((user, why)) =
            shard.users.iter().find_map(|(user, entry)| entry.profile.check().err().map(|why| (user, why)))
        {
            return Err(corrupt(format!("user {user:?} of a shard: {why}")));
        }
        shards.push(shard);
    }
    let hosts = postcard::from_bytes(next("host book")?).map_err(|e| decode("host book", e))?;
    let identities = postcard::from_bytes(next("identity table")?).map_err(|e| decode("identity table", e))?;
    let experiments = if has_experiments {
        postcard::from_bytes(next("experiments")?).map_err(|e| decode("experiments", e))?
    } else {
        ExperimentBook::default()
    };
    let event_ids = if has_ids {
        postcard::from_bytes(next("event-id index")?).map_err(|e| decode("event-id index", e))?
    } else {
        EventIds::default()
    };
    let trailer: u64 = postcard::from_bytes(next("trailer")?).map_err(|e| decode("trailer", e))?;
    if trailer != seq {
        return Err(corrupt(format!("trailer says sequence {trailer}, the name {seq}")));
    }
    Ok(Some(SnapshotParts { seq, shards, hosts, identities, experiments, event_ids }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames the parts of the first layout (no experiments frame) and checks that they
    /// still load, with no experiments.
    #[test]
    fn snapshots_of_the_first_layout_load_without_experiments() {
        let dir = tempfile::tempdir().unwrap();
        let seq = 7u64;
        let mut bytes = MAGIC_V1.to_vec();
        frame(&mut bytes, &postcard::to_stdvec(&(seq, 1u64)).unwrap());
        frame(&mut bytes, &postcard::to_stdvec(&Shard::default()).unwrap());
        frame(&mut bytes, &postcard::to_stdvec(&Hosts::default()).unwrap());
        frame(&mut bytes, &postcard::to_stdvec(&Identities::default()).unwrap());
        frame(&mut bytes, &postcard::to_stdvec(&seq).unwrap());
        fs::write(path_of(dir.path(), seq), &bytes).unwrap();
        let parts = load_newest(dir.path()).unwrap().unwrap();
        assert_eq!((parts.seq, parts.shards.len()), (seq, 1));
        assert!(parts.experiments.experiments.is_empty());

        // The current layout round-trips its experiments frame.
        let chunks = serialize(
            seq + 1,
            [Shard::default()].iter(),
            || Box::new(Hosts::default()),
            || Box::new(Identities::default()),
            || Box::new(ExperimentBook { seq: 3, ..Default::default() }),
            || Box::new(EventIds::default()),
        );
        write(dir.path(), seq + 1, &chunks).unwrap();
        let parts = load_newest(dir.path()).unwrap().unwrap();
        assert_eq!((parts.seq, parts.experiments.seq), (seq + 1, 3));
    }

    /// Lengths and counts in a snapshot are checked against the file before they are used
    /// (both were found by the store_recovery fuzz target: an overflowing frame length and
    /// a shard count that sized an allocation).
    #[test]
    fn a_frame_length_or_shard_count_past_the_file_is_damage_not_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&u64::MAX.to_le_bytes());
        bytes.extend_from_slice(&0u32.to_le_bytes());
        fs::write(path_of(dir.path(), 3), &bytes).unwrap();
        let err = load_newest(dir.path()).err().expect("refused");
        assert!(err.to_string().contains("the header is cut short"), "{err}");

        let mut bytes = MAGIC.to_vec();
        frame(&mut bytes, &postcard::to_stdvec(&(4u64, u64::MAX)).unwrap());
        fs::write(path_of(dir.path(), 4), &bytes).unwrap();
        let err = load_newest(dir.path()).err().expect("refused");
        assert!(err.to_string().contains("more than the file can hold"), "{err}");
    }

    /// A snapshot being written when the process stopped leaves a temporary file: the
    /// next load removes it and reads the newest whole snapshot.
    #[test]
    fn leftover_temporary_snapshots_are_removed_on_load() {
        let dir = tempfile::tempdir().unwrap();
        let chunks = serialize(
            4,
            [Shard::default()].iter(),
            || Box::new(Hosts::default()),
            || Box::new(Identities::default()),
            || Box::new(ExperimentBook::default()),
            || Box::new(EventIds::default()),
        );
        write(dir.path(), 4, &chunks).unwrap();
        let names = || {
            let mut n: Vec<String> =
                fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
            n.sort();
            n
        };
        assert_eq!(names(), ["snapshot-00000000000000000004.snap"]);
        fs::write(dir.path().join(".snapshot-00000000000000000009.snap.12345.partial"), b"half").unwrap();
        fs::write(dir.path().join(".snapshot-00000000000000000008.tmp"), b"half").unwrap();
        assert_eq!(load_newest(dir.path()).unwrap().unwrap().seq, 4);
        assert_eq!(names(), ["snapshot-00000000000000000004.snap"]);
    }
}
