//! Duplicates are told for hours: every event sent again within the horizon (6 hours of
//! event time by default) is answered `duplicate`, never `late`, also after a restart;
//! the index of event ids stays within its cap.

use super::{incoming, options};
use liveprofile_simulator::DEFAULT_START_MS;
use liveprofile_store::{DEFAULT_DEDUP_HORIZON_MS, IncomingEvent, IngestReport, ProfileStore, StoreOptions};
use std::path::Path;

const HOUR: i64 = 3_600_000;

/// 20 users' events, one a minute each, from `from_min` to `to_min` minutes after the
/// start (a multiple of the 10-minute bucket), in time order.
fn spanning(from_min: i64, to_min: i64) -> Vec<IncomingEvent> {
    let t0 = DEFAULT_START_MS - DEFAULT_START_MS.rem_euclid(600_000);
    (from_min..to_min)
        .flat_map(|m| (0..20).map(move |u| incoming(&format!("e-{u}-{m}"), &format!("u{u}"), t0 + m * 60_000, "like")))
        .collect()
}

fn send(store: &ProfileStore, events: &[IncomingEvent]) -> IngestReport {
    let mut total = IngestReport::default();
    for chunk in events.chunks(500) {
        total.merge(store.ingest(chunk).unwrap(), 0);
    }
    total
}

fn opts(dir: &Path, max_ids: usize) -> StoreOptions {
    let mut o = options(dir);
    o.dedup_max_ids = max_ids;
    o
}

#[test]
fn events_spanning_hours_sent_again_are_all_duplicates_also_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let events = spanning(0, 350); // 5 h 50 min, 7,000 events
    let store = ProfileStore::open(opts(dir.path(), 1 << 20)).unwrap();
    assert_eq!(send(&store, &events).accepted, 7000);
    let again = send(&store, &events);
    assert_eq!((again.duplicates, again.late, again.accepted), (7000, 0, 0));
    assert_eq!(store.stats().dedup_horizon_ms, DEFAULT_DEDUP_HORIZON_MS);

    // Rebuilt by replaying the log, then loaded from a snapshot.
    drop(store);
    let store = ProfileStore::open(opts(dir.path(), 1 << 20)).unwrap();
    assert_eq!(send(&store, &events).duplicates, 7000);
    store.snapshot().unwrap();
    drop(store);
    let store = ProfileStore::open(opts(dir.path(), 1 << 20)).unwrap();
    assert_eq!(store.stats().recovered_records, 0);
    assert_eq!(store.stats().event_ids, 7000);
    assert_eq!(send(&store, &events).duplicates, 7000);

    // 40 minutes later the first 20 minutes are past the horizon (whole 10-minute buckets
    // go): sent again, they are late (and say so), never taken twice.
    assert_eq!(send(&store, &spanning(350, 390)).accepted, 800);
    let old = send(&store, &spanning(0, 20));
    assert_eq!((old.late, old.accepted), (400, 0));
    assert!(
        old.errors[0]
            .reason
            .ends_with("no event with this id is held (ids are kept for 21600000 ms behind the newest event time)"),
        "{}",
        old.errors[0].reason
    );
    assert_eq!(send(&store, &spanning(20, 390)).duplicates, 7400);
}

#[test]
fn the_event_id_index_keeps_to_its_cap() {
    let dir = tempfile::tempdir().unwrap();
    let events = spanning(0, 350);
    let store = ProfileStore::open(opts(dir.path(), 1000)).unwrap();
    assert_eq!(send(&store, &events).accepted, 7000);
    let s = store.stats();
    assert!(s.event_ids <= 1000 && s.event_ids > 0, "{s:?}");
    assert_eq!(s.event_ids_evicted_early + s.event_ids, 7000);
    assert!(s.dedup_horizon_ms < HOUR, "the cap shortens the horizon: {s:?}");
    // The newest ids are held; nothing is ever applied twice.
    let newest = &events[events.len() - 500..];
    assert_eq!(send(&store, newest).duplicates, 500);
    let all = send(&store, &events);
    assert_eq!((all.accepted, all.duplicates + all.late), (0, 7000));
    drop(store);
    let store = ProfileStore::open(opts(dir.path(), 1000)).unwrap();
    assert_eq!(store.stats().event_ids, s.event_ids);
    assert_eq!(send(&store, newest).duplicates, 500);
}
