//! Recovery tells a crash's torn tail from damage: a torn last write is cleared and every
//! complete record kept; a cut, zero-filled or missing segment, or a snapshot ahead of the
//! log, stops the start naming the file and the records lost, unless the loss is
//! accepted, when the store starts, reports the loss and moves the damaged file aside.

use super::segments::{data_end, empty_segment, frames, last_seq, segments, torn_frame};
use super::{events, options};
use liveprofile_store::{
    IncomingEvent, IngestReport, LogDamage, MAX_DEDUP_HORIZON_MS, ProfileStore, StoreError, StoreOptions,
};
use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

const EVENTS: usize = 2000;

fn opts(dir: &Path) -> StoreOptions {
    let mut o = options(dir);
    o.segment_bytes = 64 << 10;
    // The events span a week: every one sent again is told `duplicate` only within the
    // horizon, so it covers them all.
    o.dedup_horizon = std::time::Duration::from_millis(MAX_DEDUP_HORIZON_MS as u64);
    o
}

fn accepting(dir: &Path) -> StoreOptions {
    let mut o = opts(dir);
    o.accept_log_damage = true;
    o
}

fn ingest(store: &ProfileStore, range: std::ops::Range<usize>) {
    for chunk in events()[range].chunks(50) {
        let batch: Vec<IncomingEvent> = chunk.iter().map(IncomingEvent::from_event).collect();
        assert_eq!(store.ingest(&batch).unwrap().accepted, chunk.len() as u64);
    }
}

/// A folder holding 2,000 acknowledged events over several 64 KiB segments.
fn logged() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let store = ProfileStore::open(opts(dir.path())).unwrap();
    ingest(&store, 0..EVENTS);
    assert_eq!(store.stats().last_seq, EVENTS as u64);
    drop(store);
    assert!(segments(dir.path()).len() >= 4, "{:?}", segments(dir.path()));
    dir
}

/// The damage the store refuses to start on, and its message.
fn refusal(dir: &Path) -> (LogDamage, usize, String) {
    match ProfileStore::open(opts(dir)) {
        Err(e @ StoreError::LogDamaged { .. }) => {
            let text = e.to_string();
            let StoreError::LogDamaged { damage, more } = e else { unreachable!() };
            (*damage, more, text)
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn resend_all(store: &ProfileStore) -> IngestReport {
    let batch: Vec<IncomingEvent> = events()[..EVENTS].iter().map(IncomingEvent::from_event).collect();
    store.ingest(&batch).unwrap()
}

/// With the loss accepted: the store opens and reports exactly `damage` (moved aside when
/// its file exists), and opens again afterwards without the flag.
fn accept(dir: &Path, damage: &LogDamage) -> std::sync::Arc<ProfileStore> {
    let store = ProfileStore::open(accepting(dir)).unwrap();
    let reported = store.log_damage().to_vec();
    assert_eq!(reported.len(), 1, "{reported:?}");
    let got = &reported[0];
    assert_eq!((&got.file, got.first_lost, got.last_lost), (&damage.file, damage.first_lost, damage.last_lost));
    match &got.moved_to {
        Some(to) => {
            assert!(!damage.missing);
            assert!(to.starts_with(dir.join("damaged")) && to.is_file(), "{to:?}");
            assert!(!damage.file.exists() || damage.file != *to);
        }
        None => assert!(damage.missing, "a damaged file is moved aside, never deleted: {got:?}"),
    }
    assert_eq!(store.stats().log_damage, 1);
    store
}

#[test]
fn a_newest_segment_cut_to_half_is_refused_naming_the_file_and_the_records_lost() {
    let dir = logged();
    let (first, newest) = segments(dir.path()).pop().unwrap();
    let bytes = std::fs::read(&newest).unwrap();
    let half = data_end(&bytes) / 2;
    let kept = frames(&bytes).iter().filter(|f| f.end <= half).map(|f| f.first_seq + f.count - 1).max();
    let kept = kept.unwrap_or(first - 1);
    OpenOptions::new().write(true).open(&newest).unwrap().set_len(half).unwrap();

    let (damage, more, text) = refusal(dir.path());
    assert_eq!(
        (&damage.file, damage.missing, damage.first_lost, damage.last_lost, more),
        (&newest, false, kept + 1, None, 0)
    );
    assert_eq!(damage.reason, format!("it is {half} bytes, shorter than its capacity of {} (cut short)", 64 << 10));
    assert!(
        text.starts_with(&format!(
            "the profile log lost acknowledged records: {}: it is {half} bytes",
            newest.display()
        ))
    );
    assert!(text.contains(&format!("records from {} on are lost (how many is not known)", kept + 1)), "{text}");
    assert!(text.contains("--accept-log-damage"), "{text}");

    let store = accept(dir.path(), &damage);
    assert_eq!(store.stats().last_seq, kept);
    // Every event before the cut is kept, every one after it is taken again.
    let again = resend_all(&store);
    assert_eq!((again.duplicates, again.accepted), (kept, EVENTS as u64 - kept));
    drop(store);
    let store = ProfileStore::open(opts(dir.path())).unwrap();
    assert_eq!(store.stats().last_seq, EVENTS as u64);
}

#[test]
fn a_zero_filled_segment_is_refused_in_the_middle_or_at_the_end() {
    // In the middle: its records are lost, and the range is exact.
    let dir = logged();
    let segs = segments(dir.path());
    let ((first, middle), (next, _)) = (segs[1].clone(), segs[2].clone());
    let len = std::fs::metadata(&middle).unwrap().len() as usize;
    std::fs::write(&middle, vec![0u8; len]).unwrap();
    let (damage, _, text) = refusal(dir.path());
    assert_eq!((&damage.file, damage.first_lost, damage.last_lost), (&middle, first, Some(next - 1)));
    assert!(damage.reason.contains("no segment header"), "{}", damage.reason);
    assert!(text.contains(&format!("records {first} to {} are lost", next - 1)), "{text}");
    let store = accept(dir.path(), &damage);
    let again = resend_all(&store);
    assert_eq!(again.duplicates, EVENTS as u64 - (next - first));
    assert_eq!(again.accepted + again.late, next - first, "the lost events are not held");

    // The newest: once the folder's log is in format 2, a header-less newest segment is
    // damage, not a torn tail.
    let dir = logged();
    let (first, newest) = segments(dir.path()).pop().unwrap();
    let len = std::fs::metadata(&newest).unwrap().len() as usize;
    std::fs::write(&newest, vec![0u8; len]).unwrap();
    let (damage, _, _) = refusal(dir.path());
    assert_eq!((&damage.file, damage.first_lost, damage.last_lost), (&newest, first, None));
    let store = accept(dir.path(), &damage);
    assert_eq!(resend_all(&store).accepted, EVENTS as u64 - (first - 1));
}

#[test]
fn a_deleted_newest_or_middle_segment_is_refused() {
    // The newest: the seal of the one before names it.
    let dir = logged();
    let segs = segments(dir.path());
    let (first, newest) = segs.last().unwrap().clone();
    std::fs::remove_file(&newest).unwrap();
    let (damage, _, text) = refusal(dir.path());
    assert_eq!((&damage.file, damage.missing, damage.first_lost, damage.last_lost), (&newest, true, first, None));
    assert!(
        text.contains(&format!("{} is missing: {} was sealed", newest.display(), segs[segs.len() - 2].1.display())),
        "{text}"
    );
    let store = accept(dir.path(), &damage);
    assert_eq!(store.stats().last_seq, first - 1);
    assert_eq!(resend_all(&store).accepted, EVENTS as u64 - (first - 1));

    // A middle one: the numbering has a gap.
    let dir = logged();
    let segs = segments(dir.path());
    let ((first, middle), (next, _)) = (segs[1].clone(), segs[2].clone());
    std::fs::remove_file(&middle).unwrap();
    let (damage, _, text) = refusal(dir.path());
    assert_eq!(
        (&damage.file, damage.missing, damage.first_lost, damage.last_lost),
        (&middle, true, first, Some(next - 1))
    );
    assert!(text.contains(&format!("records {first} to {} are lost", next - 1)), "{text}");
    let store = accept(dir.path(), &damage);
    assert_eq!(resend_all(&store).duplicates, EVENTS as u64 - (next - first));
}

#[test]
fn a_snapshot_ahead_of_the_log_is_refused() {
    // An old copy of the log put back beside a newer snapshot.
    let dir = tempfile::tempdir().unwrap();
    let old = tempfile::tempdir().unwrap();
    let store = ProfileStore::open(opts(dir.path())).unwrap();
    ingest(&store, 0..1000);
    drop(store);
    for (_, path) in segments(dir.path()) {
        std::fs::copy(&path, old.path().join(path.file_name().unwrap())).unwrap();
    }
    let store = ProfileStore::open(opts(dir.path())).unwrap();
    ingest(&store, 1000..EVENTS);
    assert_eq!(store.snapshot().unwrap(), EVENTS as u64);
    drop(store);
    for (_, path) in segments(dir.path()) {
        std::fs::remove_file(path).unwrap();
    }
    for (_, path) in segments(old.path()) {
        std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
    }
    let (newest_first, newest) = segments(dir.path()).pop().unwrap();
    assert_eq!(last_seq(&newest), 1000);
    let (damage, _, _) = refusal(dir.path());
    assert_eq!((&damage.file, damage.first_lost, damage.last_lost), (&newest, EVENTS as u64 + 1, None));
    assert_eq!(
        damage.reason,
        "the log ends at record 1000, before the snapshot's record 2000: the segment holding records from 2001 on is missing"
    );
    assert!(newest_first <= 1000);
    let store = accept(dir.path(), &damage);
    // The snapshot holds every event.
    assert_eq!((resend_all(&store).duplicates, store.stats().last_seq), (EVENTS as u64, EVENTS as u64));

    // The segment after a snapshot deleted: nothing follows the snapshot.
    let dir = tempfile::tempdir().unwrap();
    let store = ProfileStore::open(opts(dir.path())).unwrap();
    ingest(&store, 0..500);
    store.snapshot().unwrap();
    drop(store);
    let (first, only) = segments(dir.path()).pop().unwrap();
    assert_eq!(first, 501);
    std::fs::remove_file(&only).unwrap();
    let (damage, _, _) = refusal(dir.path());
    assert_eq!((&damage.file, damage.missing, damage.first_lost, damage.last_lost), (&only, true, 501, None));
    assert_eq!(damage.reason, "the snapshot holds records up to 500 and no log segment follows it");
}

#[test]
fn torn_tails_are_cleared_and_every_complete_record_is_kept() {
    for written in [10, 24, 700] {
        let dir = logged();
        let (_, newest) = segments(dir.path()).pop().unwrap();
        let before = std::fs::read(&newest).unwrap();
        let mut f = OpenOptions::new().write(true).open(&newest).unwrap();
        f.seek(SeekFrom::Start(data_end(&before))).unwrap();
        f.write_all(&torn_frame(EVENTS as u64 + 1, written)).unwrap();
        drop(f);
        let store = ProfileStore::open(opts(dir.path())).unwrap();
        assert!(store.log_damage().is_empty());
        assert!(std::fs::read(&newest).unwrap() == before, "{written} torn bytes cleared");
        assert_eq!((store.stats().last_seq, resend_all(&store).duplicates), (EVENTS as u64, EVENTS as u64));
    }

    // A bad frame with data after it is not a torn tail.
    let dir = logged();
    let (_, newest) = segments(dir.path()).pop().unwrap();
    let end = data_end(&std::fs::read(&newest).unwrap());
    let mut f = OpenOptions::new().write(true).open(&newest).unwrap();
    f.seek(SeekFrom::Start(end)).unwrap();
    f.write_all(&torn_frame(EVENTS as u64 + 1, 100)).unwrap();
    f.seek(SeekFrom::Start(end + 2000)).unwrap();
    f.write_all(b"more").unwrap();
    drop(f);
    let (damage, _, _) = refusal(dir.path());
    assert_eq!(damage.reason, format!("the frame at byte {end} does not check out and data follows it"));
    assert_eq!(damage.first_lost, EVENTS as u64 + 1);
}

#[test]
fn a_crash_between_creating_a_segment_and_sealing_the_last_one_loses_nothing() {
    let dir = logged();
    std::fs::write(dir.path().join("log-00000000000000002001.wal"), empty_segment(2001, 64 << 10)).unwrap();
    let store = ProfileStore::open(opts(dir.path())).unwrap();
    assert!(store.log_damage().is_empty());
    assert_eq!(store.stats().last_seq, EVENTS as u64);
    let mut next = IncomingEvent::from_event(&events()[EVENTS]);
    next.event_id = "after-the-crash".to_owned();
    assert_eq!(store.ingest(&[next]).unwrap().last_seq, 2001);
    drop(store);
    let store = ProfileStore::open(opts(dir.path())).unwrap();
    assert_eq!((store.stats().last_seq, store.stats().recovered_records), (2001, 2001));
}

#[test]
fn a_segment_named_as_starting_at_record_zero_is_refused_not_a_crash() {
    // Records are numbered from 1, so no writer names a segment 0; one found on the disk
    // (a fuzzer wrote it) stops the start with an error naming it.
    for contents in [&b""[..], b"LPWALSEG", &[7u8; 64]] {
        let dir = tempfile::tempdir().unwrap();
        let zero = dir.path().join(format!("log-{:020}.wal", 0));
        std::fs::write(&zero, contents).unwrap();
        match ProfileStore::open(opts(dir.path())) {
            Err(StoreError::Corrupt { path, reason }) => {
                assert_eq!(path, zero.display().to_string());
                assert!(reason.contains("starting at record 0"), "{reason}");
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
        assert_eq!(std::fs::read(&zero).unwrap(), contents, "the file is left as it was");
    }
}
