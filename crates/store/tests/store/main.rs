//! Profile store: features equal to the online driver's, recovery from the log and from
//! snapshots, torn and damaged files, idempotency, late and invalid events, identity.

use liveprofile_events::{Event, EventReader, Platform};
use liveprofile_features::OnlineProfiles;
use liveprofile_simulator::{DEFAULT_START_MS, SimConfig, Simulator};
use liveprofile_store::{Durability, IdentityLink, IncomingEvent, LookupError, ProfileStore, StoreError, StoreOptions};
use segments::{data_end, torn_frame};
use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::{Arc, OnceLock};

mod dedup;
#[cfg(target_os = "linux")]
mod disk_full;
mod limits;
mod recovery;
mod segments;
mod shared_state;

/// Simulated events of a few hundred users over a week, in file order.
fn events() -> &'static [Event] {
    static EVENTS: OnceLock<Vec<Event>> = OnceLock::new();
    EVENTS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.parquet");
        let sim = Simulator::new(SimConfig { users: 300, days: 7, seed: 11, start_ms: DEFAULT_START_MS }).unwrap();
        sim.write(&path, &|_| {}).unwrap();
        let mut reader = EventReader::open(&path).unwrap();
        let mut out = Vec::new();
        while let Some(batch) = reader.next_batch().unwrap() {
            assert!(batch.rejected.is_empty());
            out.extend(batch.events);
        }
        assert!(out.len() > 10_000, "{} events", out.len());
        out
    })
}

fn options(dir: &Path) -> StoreOptions {
    let mut o = StoreOptions::new(dir);
    o.shards = 8;
    o.durability = Durability::Write;
    // Snapshots only when a test asks.
    o.snapshot_every_records = u64::MAX;
    o.snapshot_interval = std::time::Duration::from_secs(3600);
    // Small segments: a test folder does not take 64 MiB a store, and rotation is tried.
    o.segment_bytes = 1 << 20;
    o
}

fn ingest_all(store: &ProfileStore, events: &[Event]) -> u64 {
    let mut accepted = 0;
    for chunk in events.chunks(512) {
        let batch: Vec<IncomingEvent> = chunk.iter().map(IncomingEvent::from_event).collect();
        let report = store.ingest(&batch).unwrap();
        assert_eq!(report.received, chunk.len() as u64);
        accepted += report.accepted;
    }
    accepted
}

fn users(events: &[Event]) -> Vec<String> {
    let mut u: Vec<String> = events.iter().map(|e| e.user_id.clone()).collect();
    u.sort();
    u.dedup();
    u
}

/// Every user's features from the store, bit for bit equal to the online driver's after
/// the same events, as of one common time.
fn assert_same_features(store: &ProfileStore, reference: &mut OnlineProfiles, users: &[String], as_of_ms: i64) {
    for user in users {
        let want = reference.user_features(user, as_of_ms).unwrap().expect("reference knows the user");
        let got = store.user_features(user, Some(as_of_ms)).unwrap();
        assert_eq!(got.as_of_ms, as_of_ms);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&got.values), bits(&want), "user {user}");
    }
}

fn reference_of(events: &[Event]) -> OnlineProfiles {
    let mut r = OnlineProfiles::default();
    for e in events {
        r.observe(e).unwrap();
    }
    r
}

#[test]
fn features_equal_the_online_driver_and_survive_restart_from_log_and_snapshot() {
    let events = events();
    let users = users(events);
    let half = events.len() / 2;
    let end_ms = events.iter().map(|e| e.ts_ms).max().unwrap() + 3_600_000;
    let dir = tempfile::tempdir().unwrap();

    let store = ProfileStore::open(options(dir.path())).unwrap();
    assert_eq!(ingest_all(&store, &events[..half]), half as u64);
    let first_half_users = users_in(&events[..half]);
    let mut reference = reference_of(&events[..half]);
    let half_ms = events[..half].iter().map(|e| e.ts_ms).max().unwrap() + 1;
    assert_same_features(&store, &mut reference, &first_half_users, half_ms);
    drop(store);

    // Restart: everything comes back from the log alone.
    let store = ProfileStore::open(options(dir.path())).unwrap();
    assert_eq!(store.stats().recovered_records, half as u64);
    assert_same_features(&store, &mut reference_of(&events[..half]), &first_half_users, half_ms);
    let seq = store.snapshot().unwrap();
    assert_eq!(seq, half as u64);
    assert_eq!(ingest_all(&store, &events[half..]), (events.len() - half) as u64);
    drop(store);
    let files = file_names(dir.path());
    assert_eq!(files.iter().filter(|f| f.starts_with("snapshot-")).count(), 1, "{files:?}");
    assert_eq!(files.iter().filter(|f| f.starts_with("log-")).count(), 1, "older segments deleted: {files:?}");

    // Restart: the snapshot plus the log after it.
    let store = ProfileStore::open(options(dir.path())).unwrap();
    let stats = store.stats();
    assert_eq!(stats.snapshot_seq, half as u64);
    assert_eq!(stats.recovered_records, (events.len() - half) as u64);
    assert_eq!(stats.users, users.len() as u64);
    let mut reference = reference_of(events);
    assert_same_features(&store, &mut reference, &users, end_ms);
}

/// Producers sending at once share group commits (fsync durability) and lose nothing:
/// each user's events come from one producer in order; every event is taken once and the
/// features equal the online driver's, before and after a restart that replays the grouped
/// frames. (Ids sent twice within one group: the store's own test of group commit.)
#[test]
fn concurrent_producers_share_commits_and_every_event_is_taken_once() {
    let events = events();
    let users = users(events);
    let end_ms = events.iter().map(|e| e.ts_ms).max().unwrap() + 3_600_000;
    let dir = tempfile::tempdir().unwrap();
    let mut o = options(dir.path());
    o.durability = Durability::Fsync;
    let store = ProfileStore::open(o.clone()).unwrap();
    let producers = 4;
    let mut mine: Vec<Vec<IncomingEvent>> = vec![Vec::new(); producers];
    for e in events {
        let p = users.binary_search(&e.user_id).unwrap() % producers;
        mine[p].push(IncomingEvent::from_event(e));
    }
    let batches: Vec<Vec<Arc<[IncomingEvent]>>> = mine.iter().map(|m| m.chunks(64).map(Arc::from).collect()).collect();
    let totals: Vec<(u64, u64, u64)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..producers)
            .map(|p| {
                let (store, batches) = (&store, &batches);
                s.spawn(move || {
                    let (mut received, mut accepted, mut duplicates) = (0, 0, 0);
                    for b in &batches[p] {
                        let r = store.ingest_shared(b.clone()).0.unwrap();
                        assert!(r.errors.is_empty(), "{:?}", r.errors.first());
                        (received, accepted, duplicates) =
                            (received + r.received, accepted + r.accepted, duplicates + r.duplicates);
                    }
                    (received, accepted, duplicates)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let n = events.len() as u64;
    assert_eq!(totals.iter().map(|t| t.0).sum::<u64>(), n);
    assert_eq!(totals.iter().map(|t| t.1).sum::<u64>(), n, "every event taken once");
    assert_eq!(totals.iter().map(|t| t.2).sum::<u64>(), 0);
    let stats = store.stats();
    assert_eq!((stats.accepted, stats.last_seq), (n, n));
    assert!(stats.log_commits <= stats.logged_batches, "{stats:?}");
    assert_same_features(&store, &mut reference_of(events), &users, end_ms);
    drop(store);
    let store = ProfileStore::open(o).unwrap();
    assert_eq!(store.stats().recovered_records, n);
    assert_same_features(&store, &mut reference_of(events), &users, end_ms);
}

#[test]
fn conversion_features_of_open_visits_equal_the_online_driver() {
    // Each user's events up to the middle of one of its visits, so that the visit is open.
    let events = events();
    let mut partial: Vec<Event> = Vec::new();
    for user in users(events).iter().take(40) {
        let mine: Vec<&Event> = events.iter().filter(|e| &e.user_id == user).collect();
        let enters: Vec<usize> =
            (0..mine.len()).filter(|&i| mine[i].kind == liveprofile_events::EventKind::Enter).collect();
        let Some(&cut) = enters.get(enters.len() / 2) else { continue };
        partial.extend(mine[..=cut + 1.min(mine.len() - cut - 1)].iter().map(|e| (*e).clone()));
    }
    let dir = tempfile::tempdir().unwrap();
    let store = ProfileStore::open(options(dir.path())).unwrap();
    ingest_all(&store, &partial);
    let mut reference = reference_of(&partial);
    let mut checked = 0;
    for e in partial.iter().filter(|e| e.kind == liveprofile_events::EventKind::Enter) {
        let room = e.room_id.as_deref().unwrap();
        match store.conversion_features(&e.user_id, room) {
            Ok(got) => {
                let want = reference.conversion_features(&e.user_id, room, got.as_of_ms).unwrap();
                assert_eq!(got.values, want);
                checked += 1;
            }
            Err(LookupError::NoOpenVisit { .. }) => {
                assert!(reference.conversion_features(&e.user_id, room, liveprofile_store::now_ms()).is_none());
            }
            Err(other) => panic!("{other}"),
        }
    }
    assert!(checked >= 30, "{checked} open visits checked");
}

fn users_in(events: &[Event]) -> Vec<String> {
    users(events)
}

fn file_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

fn only_segment(dir: &Path) -> std::path::PathBuf {
    let segs: Vec<_> = file_names(dir).into_iter().filter(|f| f.starts_with("log-")).collect();
    assert_eq!(segs.len(), 1, "{segs:?}");
    dir.join(&segs[0])
}

#[test]
fn a_torn_last_record_is_cut_and_every_acknowledged_event_is_kept() {
    let events = &events()[..3000];
    let dir = tempfile::tempdir().unwrap();
    let store = ProfileStore::open(options(dir.path())).unwrap();
    let acked = ingest_all(&store, events);
    drop(store);
    // A write cut short the way a crash leaves it: the first 300 bytes of a batch frame at
    // the end of the data, zeros after them, the file at its full size.
    let seg = only_segment(dir.path());
    let before = std::fs::read(&seg).unwrap();
    let end = data_end(&before);
    let mut f = OpenOptions::new().write(true).open(&seg).unwrap();
    f.seek(SeekFrom::Start(end)).unwrap();
    f.write_all(&torn_frame(acked + 1, 300)).unwrap();
    drop(f);

    let store = ProfileStore::open(options(dir.path())).unwrap();
    assert!(std::fs::read(&seg).unwrap() == before, "torn frame cleared");
    assert_eq!(store.stats().last_seq, acked);
    // Sending everything again: every acknowledged event is known (none lost, none twice).
    let batch: Vec<IncomingEvent> = events.iter().map(IncomingEvent::from_event).collect();
    let again = store.ingest(&batch).unwrap();
    assert_eq!(again.accepted, 0);
    assert_eq!(again.duplicates + again.late, acked);
    assert_eq!(store.stats().last_seq, acked, "nothing logged twice");
}

#[test]
fn damage_inside_the_log_or_a_snapshot_is_refused_with_the_file_named() {
    let events = &events()[..2000];
    let dir = tempfile::tempdir().unwrap();
    let store = ProfileStore::open(options(dir.path())).unwrap();
    ingest_all(&store, events);
    drop(store);
    // Flip a byte in the middle of the data: not a torn end, so recovery must stop.
    let seg = only_segment(dir.path());
    let mut bytes = std::fs::read(&seg).unwrap();
    let mid = data_end(&bytes) as usize / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&seg, &bytes).unwrap();
    let err = ProfileStore::open(options(dir.path())).unwrap_err();
    assert!(matches!(err, StoreError::LogDamaged { .. }), "{err}");
    assert!(err.to_string().contains(&seg.display().to_string()), "{err}");
    bytes[mid] ^= 0x55;
    std::fs::write(&seg, &bytes).unwrap();

    let store = ProfileStore::open(options(dir.path())).unwrap();
    store.snapshot().unwrap();
    drop(store);
    let snap = dir.path().join(file_names(dir.path()).into_iter().find(|f| f.starts_with("snapshot-")).unwrap());
    let mut bytes = std::fs::read(&snap).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&snap, &bytes).unwrap();
    let err = ProfileStore::open(options(dir.path())).unwrap_err();
    assert!(err.to_string().contains("snapshot-"), "{err}");
}

fn incoming(id: &str, user: &str, ts_ms: i64, kind: &str) -> IncomingEvent {
    IncomingEvent {
        event_id: id.to_owned(),
        ts_ms,
        platform: "douyin".to_owned(),
        user_id: user.to_owned(),
        room_id: "r1".to_owned(),
        host_id: "h1".to_owned(),
        category: "beauty".to_owned(),
        kind: kind.to_owned(),
        ..Default::default()
    }
}

#[test]
fn duplicates_late_and_invalid_events_are_counted_once_and_explained() {
    let dir = tempfile::tempdir().unwrap();
    let store = ProfileStore::open(options(dir.path())).unwrap();
    let t = DEFAULT_START_MS;
    let late_ms = ProfileStore::LATE_WINDOW_MS;
    let mut bad_platform = incoming("e5", "u1", t, "like");
    bad_platform.platform = "myspace".to_owned();
    let mut bad_value = incoming("e6", "u1", t, "order");
    bad_value.value = f64::NAN;
    let mut no_user = incoming("e7", "", t, "like");
    no_user.platform_user_id = "dy-42".to_owned();
    let batch = vec![
        incoming("e1", "u1", t, "enter"),
        incoming("e2", "u1", t + 2 * 60_000, "like"),
        incoming("e1", "u1", t, "enter"),                           // duplicate
        incoming("e3", "u1", t + 2 * 60_000 - late_ms - 1, "like"), // late
        incoming("e4", "u1", t + 2 * 60_000 - late_ms, "like"),     // exactly at the window: taken
        bad_platform,
        bad_value,
        no_user,
        incoming("", "u1", t, "like"),
        incoming("e8", "u1", t, "dance"),
    ];
    let report = store.ingest(&batch).unwrap();
    assert_eq!((report.received, report.accepted, report.duplicates, report.late, report.rejected), (10, 3, 1, 1, 5));
    let reasons: Vec<(usize, bool, &str)> =
        report.errors.iter().map(|e| (e.index, e.late, e.reason.as_str())).collect();
    assert_eq!(reasons[0].0, 3);
    assert!(reasons[0].1);
    assert!(reasons[0].2.contains("300000 ms"), "{}", reasons[0].2);
    assert_eq!(reasons[1], (5, false, "unknown platform \"myspace\""));
    assert_eq!(reasons[2], (6, false, "bad value NaN: not finite"));
    assert_eq!(reasons[3], (7, false, "user_id is empty and douyin account \"dy-42\" is not in the identity table"));
    assert_eq!(reasons[4], (8, false, "event_id is empty"));
    assert_eq!(reasons[5], (9, false, "unknown event kind \"dance\""));
    assert_eq!(report.last_seq, 3);

    // The same batch again: nothing new is applied or logged.
    let again = store.ingest(&batch).unwrap();
    assert_eq!((again.accepted, again.duplicates, again.late, again.last_seq), (0, 4, 1, 0));
    assert_eq!(store.stats().last_seq, 3);
    let f = store.user_features("u1", None).unwrap();
    assert_eq!(f.last_event_ms, Some(t + 2 * 60_000));
    assert!(matches!(store.user_features("nobody", None), Err(LookupError::UnknownUser(_))));
    let err = store.user_features("u1", Some(t)).unwrap_err();
    assert!(matches!(err, LookupError::InPast { .. }), "{err}");
}

#[test]
fn identity_links_attribute_platform_accounts_and_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<ProfileStore> = ProfileStore::open(options(dir.path())).unwrap();
    let t = DEFAULT_START_MS;
    let file = dir.path().join("identities.csv");
    std::fs::write(&file, "platform,platform_user_id,user_id\ndouyin,dy-1,u-seed\nkuaishou,ks-9,u9\n").unwrap();
    let seeded = liveprofile_store::read_identity_file(&file).unwrap();
    assert_eq!(store.seed_identities(seeded), 2);
    store
        .upsert_identities(vec![IdentityLink {
            platform: Platform::Douyin,
            platform_user_id: "dy-1".to_owned(),
            user_id: "u1".to_owned(),
        }])
        .unwrap();
    let mut e = incoming("e1", "", t, "enter");
    e.platform_user_id = "dy-1".to_owned();
    let report = store.ingest(&[e]).unwrap();
    assert_eq!(report.accepted, 1, "{:?}", report.errors);
    assert!(store.user_features("u1", None).is_ok(), "the admin link wins over the file's");
    drop(store);

    let store = ProfileStore::open(options(dir.path())).unwrap();
    let mut e = incoming("e2", "", t + 1000, "like");
    e.platform_user_id = "dy-1".to_owned();
    assert_eq!(store.ingest(&[e]).unwrap().accepted, 1);
    assert_eq!(store.user_features("u1", None).unwrap().last_event_ms, Some(t + 1000));

    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "platform,platform_user_id,user_id\nmyspace,a,b\n").unwrap();
    let err = liveprofile_store::read_identity_file(&bad).unwrap_err();
    assert_eq!(err.to_string(), format!("identity file {}, line 2: unknown platform \"myspace\"", bad.display()));
}

#[test]
fn one_store_at_a_time_per_data_folder() {
    let dir = tempfile::tempdir().unwrap();
    let store = ProfileStore::open(options(dir.path())).unwrap();
    let err = ProfileStore::open(options(dir.path())).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("profile data folder {} is in use by pid {}", dir.path().display(), std::process::id())
    );
    drop(store);
    ProfileStore::open(options(dir.path())).unwrap();
}

#[test]
fn snapshots_taken_while_events_arrive_recover_to_the_same_state() {
    let events = events();
    let users = users(events);
    let dir = tempfile::tempdir().unwrap();
    let store = ProfileStore::open(options(dir.path())).unwrap();
    let done = std::sync::atomic::AtomicBool::new(false);
    // Two producers on disjoint users, so that each user's events stay in order.
    let (even, odd): (Vec<Event>, Vec<Event>) =
        events.iter().cloned().partition(|e| e.user_id.bytes().last().unwrap() % 2 == 0);
    let snapshots = std::thread::scope(|scope| {
        let snapshotter = scope.spawn(|| {
            let mut n = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                store.snapshot().unwrap();
                n += 1;
            }
            n
        });
        let a = scope.spawn(|| ingest_all(&store, &even));
        let b = scope.spawn(|| ingest_all(&store, &odd));
        let accepted = a.join().unwrap() + b.join().unwrap();
        assert_eq!(accepted, events.len() as u64);
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        snapshotter.join().unwrap()
    });
    assert!(snapshots > 1, "{snapshots} snapshots");
    drop(store);
    let store = ProfileStore::open(options(dir.path())).unwrap();
    assert_eq!(store.stats().users, users.len() as u64);
    let end_ms = events.iter().map(|e| e.ts_ms).max().unwrap() + 3_600_000;
    // The per-user order is the file's, so the reference sees the same per-user sequences;
    // host records are order-independent sums.
    assert_same_features(&store, &mut reference_of(events), &users, end_ms);
    // Every event is there exactly once: all duplicates when sent again.
    let batch: Vec<IncomingEvent> = events.iter().map(IncomingEvent::from_event).collect();
    let again = store.ingest(&batch).unwrap();
    assert_eq!(again.accepted, 0);
}

#[test]
fn times_ahead_of_the_clock_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = ProfileStore::open(options(dir.path())).unwrap();
    let now = liveprofile_store::now_ms();
    let mut ahead = incoming("f1", "u1", now + 3_600_000, "like");
    ahead.room_id = "r1".to_owned();
    let report = store.ingest(&[incoming("e1", "u1", now, "enter"), ahead]).unwrap();
    assert_eq!((report.accepted, report.rejected), (1, 1));
    assert!(report.errors[0].reason.contains("ms ahead of the server clock"), "{}", report.errors[0].reason);
    let err = store.user_features("u1", Some(now + 3_600_000)).unwrap_err();
    assert!(matches!(err, LookupError::InFuture { .. }), "{err}");
}
