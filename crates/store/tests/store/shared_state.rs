//! State one caller cannot take from the others: a lookup ahead of the clock moves no
//! user's clock (and the events wait for an answer until one is noted as sent); a data folder cannot be shared, even with its LOCK file deleted.

use super::{incoming, options};
use liveprofile_events::Platform;
use liveprofile_store::{ProfileStore, StoreError, now_ms};

#[test]
fn a_lookup_ahead_of_the_clock_moves_no_ones_clock() {
    let dir = tempfile::tempdir().unwrap();
    let store = ProfileStore::open(options(dir.path())).unwrap();
    let now = now_ms();
    let batch = [incoming("e1", "u1", now - 600_000, "enter"), incoming("e2", "u1", now - 60_000, "like")];
    assert_eq!(store.ingest(&batch).unwrap().accepted, 2);
    let before = store.user_features("u1", Some(now)).unwrap();
    let ahead = store.user_features("u1", Some(now + 4 * 60_000)).unwrap();
    assert_eq!(ahead.as_of_ms, now + 4 * 60_000);
    assert_ne!(ahead.values, before.values, "the hours since the last event differ");
    // A later caller at the real time gets what it got before.
    let again = store.user_features("u1", Some(now)).unwrap();
    assert_eq!(
        (&again.values, again.as_of_ms, again.last_event_ms),
        (&before.values, before.as_of_ms, before.last_event_ms)
    );
    // The events wait for an answer (the oldest, per platform) until one is noted as sent.
    let waiting = [(Platform::Douyin, now - 600_000)];
    assert_eq!(before.first_reflected.oldest().collect::<Vec<_>>(), waiting);
    assert_eq!(again.first_reflected.oldest().collect::<Vec<_>>(), waiting);
    store.answered("u1", &again.first_reflected);
    assert!(store.user_features("u1", Some(now)).unwrap().first_reflected.is_empty());
    assert!(store.user_features("u1", None).unwrap().as_of_ms < now + 4 * 60_000);
    // And an event at the real time is still on time.
    assert_eq!(store.ingest(&[incoming("e3", "u1", now, "like")]).unwrap().accepted, 1);
}

#[test]
fn deleting_lock_does_not_let_a_second_store_share_the_folder() {
    let dir = tempfile::tempdir().unwrap();
    let store = ProfileStore::open(options(dir.path())).unwrap();
    let lock = dir.path().join("LOCK");
    assert_eq!(std::fs::read_to_string(&lock).unwrap(), format!("{}\n", std::process::id()));
    std::fs::remove_file(&lock).unwrap();
    let err = ProfileStore::open(options(dir.path())).unwrap_err();
    assert!(matches!(err, StoreError::InUse { pid: Some(p), .. } if p == std::process::id()), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("profile data folder {} is in use by pid {}", dir.path().display(), std::process::id())
    );
    drop(store);
    ProfileStore::open(options(dir.path())).unwrap();
}
