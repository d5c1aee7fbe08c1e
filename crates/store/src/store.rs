//! [`ProfileStore`]: users sharded by a hash of their id, one host book, the identity
//! table; every accepted event and identity change is logged before it is acknowledged.

use crate::error::{LookupError, StoreError};
use crate::experiments::{ExperimentBook, ExperimentStatus, ExperimentTable, MAX_EXPERIMENTS};
use crate::identity::{IdentityLink, IdentityTable};
use crate::incoming::{IncomingEvent, IngestReport, MAX_CLOCK_SKEW_MS, Outcome};
use crate::log::{Durability, LogWriter, replay, segments, sync_dir};
use crate::snapshot;
use liveprofile_events::{Event, Platform, stable_hash};
use liveprofile_experiments::{Experiment, Exposure};
use liveprofile_features::aggregates::{OUT_OF_ORDER_TOLERANCE_MS, user_features};
use liveprofile_features::profiles::{HostBook, UserProfile};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How the store keeps its data.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Data folder (log segments and snapshots); created if missing.
    pub dir: PathBuf,
    /// User shards (each behind its own lock).
    pub shards: usize,
    /// When an acknowledged event reaches the disk.
    pub durability: Durability,
    /// A snapshot is taken after this many log records ...
    pub snapshot_every_records: u64,
    /// ... or this long after the previous one, if anything was logged since.
    pub snapshot_interval: Duration,
}

impl StoreOptions {
    /// Defaults for a data folder: 64 shards, fsync, a snapshot every ten million records or
    /// five minutes.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        StoreOptions {
            dir: dir.into(),
            shards: 64,
            durability: Durability::Fsync,
            snapshot_every_records: 10_000_000,
            snapshot_interval: Duration::from_secs(300),
        }
    }
}

/// One log record. New kinds go at the end (a record's kind is its position).
#[derive(Debug, Serialize, Deserialize)]
enum Record {
    Event(Event),
    Identities(Vec<IdentityLink>),
    ExperimentStarted(Experiment),
    ExperimentStopped { name: String, ts_ms: i64 },
    Exposures(Vec<Exposure>),
}

/// One user's profile and its events still inside the late window, as (time, 64-bit hash
/// of the event id), for idempotency: an older duplicate is refused as late, so it is
/// never applied twice. Two different ids of one user within five minutes sharing a
/// 64-bit hash is the only way an event could be taken for a duplicate.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct UserEntry {
    pub(crate) profile: UserProfile,
    recent_ids: VecDeque<(i64, u64)>,
}

/// Users of one shard, and the sequence number of the last event applied to them: the
/// shard holds every event of its users up to `seq` and none after it.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Shard {
    /// Boxed: an entry is about 2.6 KB (four windows of 77 sums), and a hash table keeps
    /// up to half its slots empty; empty slots then cost a pointer, not an entry.
    pub(crate) users: HashMap<String, Box<UserEntry>>,
    pub(crate) seq: u64,
}

/// The host book and the sequence number of the last event it took in.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Hosts {
    pub(crate) book: HostBook,
    pub(crate) seq: u64,
}

/// The identity table and the sequence number of its last change.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Identities {
    pub(crate) table: IdentityTable,
    pub(crate) seq: u64,
}

struct LogState {
    writer: LogWriter,
    failed: Option<String>,
    snapshot_seq: u64,
    last_snapshot: Instant,
    scratch: Vec<u8>,
}

/// Counts since the store opened.
#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicU64,
    duplicates: AtomicU64,
    late: AtomicU64,
    rejected: AtomicU64,
    snapshots: AtomicU64,
}

/// A moment's view of the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreStats {
    /// Users held.
    pub users: u64,
    /// Hosts held.
    pub hosts: u64,
    /// Identity links held.
    pub identities: u64,
    /// Sequence number of the last log record.
    pub last_seq: u64,
    /// Sequence number the newest snapshot covers.
    pub snapshot_seq: u64,
    /// Bytes in the current log segment.
    pub log_bytes: u64,
    /// Events accepted since the store opened (not counting recovery).
    pub accepted: u64,
    /// Duplicates since the store opened.
    pub duplicates: u64,
    /// Late events refused since the store opened.
    pub late: u64,
    /// Invalid events refused since the store opened.
    pub rejected: u64,
    /// Snapshots taken since the store opened.
    pub snapshots: u64,
    /// Records replayed from the log when the store opened.
    pub recovered_records: u64,
}

/// Features read from a profile, with the time they are as of.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileFeatures {
    /// Feature values in the schema's order.
    pub values: Vec<f32>,
    /// Time the features describe (UTC milliseconds).
    pub as_of_ms: i64,
    /// Newest event of the user taken in.
    pub last_event_ms: Option<i64>,
}

/// The profile store. See the crate documentation.
pub struct ProfileStore {
    dir: PathBuf,
    shards: Vec<Mutex<Shard>>,
    hosts: Mutex<Hosts>,
    identities: RwLock<Identities>,
    /// Experiments' definitions, exposures and outcome accumulators.
    experiments: Mutex<ExperimentBook>,
    /// The definitions alone, for routing without the book's lock.
    running: RwLock<Arc<Vec<ExperimentStatus>>>,
    /// Users exposed per experiment, for the answer path's check without the book's lock
    /// (readers share it; it changes only on a first exposure).
    exposed: RwLock<HashMap<String, HashSet<String>>>,
    log: Mutex<LogState>,
    /// One snapshot at a time.
    snapshotting: Mutex<()>,
    options: StoreOptions,
    counters: Counters,
    recovered_records: u64,
    /// Held (locked) while the store is open, so that one process at a time uses the folder.
    _lock: std::fs::File,
}

impl std::fmt::Debug for ProfileStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProfileStore").field("dir", &self.dir).field("shards", &self.shards.len()).finish()
    }
}

/// Current UTC time in milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a lock cannot leave a half-applied event behind (events are
    // applied by code that does not panic on input), so the data is still usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ProfileStore {
    /// Opens (or creates) the store in `options.dir`: loads the newest snapshot, replays
    /// the log after it, truncates a torn last record, and starts the snapshot thread.
    pub fn open(options: StoreOptions) -> Result<Arc<ProfileStore>, StoreError> {
        let dir = options.dir.clone();
        std::fs::create_dir_all(&dir).map_err(|e| StoreError::io(&dir, e))?;
        let lock_path = dir.join("LOCK");
        let lock_file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| StoreError::io(&lock_path, e))?;
        // A store being dropped in this process may hold the lock for a moment more (its
        // snapshot thread lets go within one tick): wait a little before giving up.
        let wait_until = Instant::now() + Duration::from_secs(1);
        while lock_file.try_lock().is_err() {
            if Instant::now() >= wait_until {
                return Err(StoreError::InUse(dir.display().to_string()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let started = Instant::now();
        let mut shards: Vec<Shard> = (0..options.shards.max(1)).map(|_| Shard::default()).collect();
        let mut hosts = Hosts::default();
        let mut identities = Identities::default();
        let mut book = ExperimentBook::default();
        let mut snapshot_seq = 0;
        if let Some(parts) = snapshot::load_newest(&dir)? {
            snapshot_seq = parts.seq;
            hosts = parts.hosts;
            identities = parts.identities;
            book = parts.experiments;
            if parts.shards.len() != shards.len() {
                // Each shard's sequence number is only valid for its own users: keep the
                // snapshot's sharding.
                tracing::info!(
                    snapshot = parts.shards.len(),
                    asked = shards.len(),
                    "keeping the snapshot's shard count"
                );
            }
            shards = parts.shards;
        }
        let shard_count = shards.len();
        let mut recovered = 0u64;
        // A snapshot is taken while events keep arriving: each part knows the last record
        // it holds, and a record is applied to the parts that do not hold it yet.
        let (last_seq, append_to) = replay(&dir, snapshot_seq, |seq, payload| {
            let record: Record = postcard::from_bytes(payload).map_err(|e| StoreError::Corrupt {
                path: dir.display().to_string(),
                reason: format!("log record {seq} does not decode: {e}"),
            })?;
            match record {
                Record::Event(e) => {
                    let i = shard_of(&e.user_id, shard_count);
                    let mut observe_host = |e: &Event| {
                        if seq > hosts.seq {
                            hosts.book.observe(e);
                            hosts.seq = seq;
                        }
                    };
                    // Every logged event was accepted: the experiments take it in too.
                    if seq > book.seq {
                        book.observe(&e, seq);
                    }
                    if seq > shards[i].seq {
                        apply_event(&mut shards[i], e, seq, observe_host);
                    } else {
                        observe_host(&e);
                    }
                }
                Record::ExperimentStarted(x) => {
                    if seq > book.seq {
                        book.start(x, seq);
                    }
                }
                Record::ExperimentStopped { name, ts_ms } => {
                    if seq > book.seq {
                        book.stop(&name, ts_ms, seq);
                    }
                }
                Record::Exposures(xs) => {
                    if seq > book.seq {
                        book.expose(&xs, seq);
                    }
                }
                Record::Identities(links) => {
                    if seq > identities.seq {
                        links.into_iter().for_each(|l| identities.table.upsert(l));
                        identities.seq = seq;
                    }
                }
            }
            recovered += 1;
            Ok(())
        })?;
        let writer = LogWriter::open(&dir, append_to, last_seq + 1, options.durability)?;
        let running = RwLock::new(Arc::new(book.experiments.values().map(ExperimentStatus::of).collect()));
        let exposed = RwLock::new(
            book.experiments
                .iter()
                .map(|(name, o)| (name.clone(), o.table().into_iter().map(|r| r.user_id).collect()))
                .collect(),
        );
        let store = Arc::new(ProfileStore {
            dir: dir.clone(),
            shards: shards.into_iter().map(Mutex::new).collect(),
            hosts: Mutex::new(hosts),
            identities: RwLock::new(identities),
            experiments: Mutex::new(book),
            running,
            exposed,
            snapshotting: Mutex::new(()),
            log: Mutex::new(LogState {
                writer,
                failed: None,
                snapshot_seq,
                last_snapshot: Instant::now(),
                scratch: Vec::new(),
            }),
            options,
            counters: Counters::default(),
            recovered_records: recovered,
            _lock: lock_file,
        });
        tracing::info!(
            dir = %dir.display(),
            snapshot_seq,
            replayed = recovered,
            users = store.user_count(),
            seconds = started.elapsed().as_secs_f64(),
            "profile store recovered"
        );
        spawn_snapshotter(Arc::downgrade(&store));
        Ok(store)
    }

    /// Seeds the identity table from a file: links for accounts not yet mapped are added
    /// (links set by admin calls win). Returns how many were added.
    pub fn seed_identities(&self, links: Vec<IdentityLink>) -> usize {
        let mut ids = self.identities.write().unwrap_or_else(|p| p.into_inner());
        links.into_iter().filter(|l| ids.table.insert_if_absent(l.clone())).count()
    }

    /// Adds or replaces identity links, durably (logged before it returns).
    pub fn upsert_identities(&self, links: Vec<IdentityLink>) -> Result<u64, StoreError> {
        let mut log = lock(&self.log);
        if let Some(why) = &log.failed {
            return Err(StoreError::Failed(why.clone()));
        }
        let record = Record::Identities(links.clone());
        let bytes = postcard::to_stdvec(&record).expect("identity links serialize");
        fits_a_record(&bytes, log.writer.next_seq())?;
        let seq = log.writer.stage(&bytes);
        self.commit(&mut log)?;
        let mut ids = self.identities.write().unwrap_or_else(|p| p.into_inner());
        let n = links.len() as u64;
        links.into_iter().for_each(|l| ids.table.upsert(l));
        ids.seq = seq;
        Ok(n)
    }

    /// Takes in a batch of events. Returns once every accepted event is in the log (as
    /// durable as the options say); the report counts every event exactly once.
    pub fn ingest(&self, batch: &[IncomingEvent]) -> Result<IngestReport, StoreError> {
        let mut report = IngestReport { received: batch.len() as u64, ..Default::default() };
        let mut log = lock(&self.log);
        if let Some(why) = &log.failed {
            return Err(StoreError::Failed(why.clone()));
        }
        let identities = self.identities.read().unwrap_or_else(|p| p.into_inner());
        let log = &mut *log;
        let now = now_ms();
        for (index, incoming) in batch.iter().enumerate() {
            let outcome = match incoming.to_event(&identities.table, now) {
                Err(reason) => Outcome::Rejected(reason),
                Ok(event) => {
                    let i = shard_of(&event.user_id, self.shards.len());
                    let mut shard = lock(&self.shards[i]);
                    log.scratch.clear();
                    // Serialize before applying: apply takes the event by value.
                    let record = Record::Event(event);
                    log.scratch =
                        postcard::to_extend(&record, std::mem::take(&mut log.scratch)).expect("events serialize");
                    let Record::Event(event) = record else { unreachable!() };
                    // Lock order everywhere: log, then a shard, then the host book.
                    let seq = log.writer.next_seq();
                    let outcome = apply_event(&mut shard, event, seq, |e| {
                        {
                            let mut hosts = lock(&self.hosts);
                            hosts.book.observe(e);
                            hosts.seq = seq;
                        }
                        lock(&self.experiments).observe(e, seq);
                    });
                    if outcome == Outcome::Accepted {
                        report.last_seq = log.writer.stage(&log.scratch);
                        debug_assert_eq!(report.last_seq, seq);
                    }
                    outcome
                }
            };
            match outcome {
                Outcome::Accepted => report.accepted += 1,
                Outcome::Duplicate => report.duplicates += 1,
                Outcome::Late(reason) => report.refuse(index, &incoming.event_id, true, reason),
                Outcome::Rejected(reason) => report.refuse(index, &incoming.event_id, false, reason),
            }
        }
        drop(identities);
        self.commit(log)?;
        self.counters.accepted.fetch_add(report.accepted, Ordering::Relaxed);
        self.counters.duplicates.fetch_add(report.duplicates, Ordering::Relaxed);
        self.counters.late.fetch_add(report.late, Ordering::Relaxed);
        self.counters.rejected.fetch_add(report.rejected, Ordering::Relaxed);
        Ok(report)
    }

    fn commit(&self, log: &mut LogState) -> Result<(), StoreError> {
        if let Err(e) = log.writer.commit() {
            let why = e.to_string();
            tracing::error!(error = %why, "log write failed; the store takes no more events until restarted");
            log.failed = Some(why);
            return Err(e);
        }
        Ok(())
    }

    /// A user's features (the user-feature schema) as of `as_of_ms`, by default now (or
    /// the user's newest event when that is later).
    pub fn user_features(&self, user_id: &str, as_of_ms: Option<i64>) -> Result<ProfileFeatures, LookupError> {
        let i = shard_of(user_id, self.shards.len());
        let mut shard = lock(&self.shards[i]);
        let entry = shard.users.get_mut(user_id).ok_or_else(|| LookupError::UnknownUser(user_id.to_owned()))?;
        let p = &mut entry.profile;
        let horizon = p.horizon_ms();
        let as_of_ms = match as_of_ms {
            Some(t) if t < horizon => {
                return Err(LookupError::InPast { user_id: user_id.to_owned(), as_of_ms: t, horizon_ms: horizon });
            }
            // Reading moves the window state to the time asked: never past the clock.
            Some(t) if t > now_ms() + MAX_CLOCK_SKEW_MS => {
                return Err(LookupError::InFuture { as_of_ms: t, max_skew_ms: MAX_CLOCK_SKEW_MS });
            }
            Some(t) => t,
            None => now_ms().max(horizon),
        };
        let mut values = Vec::with_capacity(user_features().len());
        p.features(as_of_ms, &mut values).expect("as_of is not before the horizon");
        Ok(ProfileFeatures { values, as_of_ms, last_event_ms: p.newest_ms() })
    }

    /// Conversion features (the conversion schema) of the user's open visit to `room_id`,
    /// decided now (or at the user's newest event when that is later).
    pub fn conversion_features(&self, user_id: &str, room_id: &str) -> Result<ProfileFeatures, LookupError> {
        let i = shard_of(user_id, self.shards.len());
        let shard = lock(&self.shards[i]);
        let entry = shard.users.get(user_id).ok_or_else(|| LookupError::UnknownUser(user_id.to_owned()))?;
        let p = &entry.profile;
        let no_visit = || LookupError::NoOpenVisit { user_id: user_id.to_owned(), room_id: room_id.to_owned() };
        let host = p.open_visit_host(room_id).ok_or_else(no_visit)?;
        let decision_ms = now_ms().max(p.horizon_ms());
        let stats = match host {
            Some(h) => lock(&self.hosts).book.stats(h, decision_ms),
            None => Default::default(),
        };
        let values = p.conversion_features(room_id, decision_ms, stats).ok_or_else(no_visit)?;
        Ok(ProfileFeatures { values, as_of_ms: decision_ms, last_event_ms: p.newest_ms() })
    }

    /// Writes a snapshot of the whole state now and deletes the log segments and the
    /// snapshots it makes redundant. Ingest waits while the state is serialized (not while
    /// it is written).
    pub fn snapshot(&self) -> Result<u64, StoreError> {
        let _one_at_a_time = lock(&self.snapshotting);
        let started = Instant::now();
        // Start a new segment; everything before it goes into the snapshot. Events keep
        // arriving while the parts are serialized one by one (each part records the last
        // event it holds), so ingest waits only for the part it touches.
        let seq = {
            let mut log = lock(&self.log);
            if let Some(why) = &log.failed {
                return Err(StoreError::Failed(why.clone()));
            }
            let seq = log.writer.last_seq();
            if seq == log.snapshot_seq {
                log.last_snapshot = Instant::now();
                return Ok(seq);
            }
            log.writer.rotate()?;
            seq
        };
        let parts = snapshot::serialize(
            seq,
            self.shards.iter().map(|s| lock(s)),
            || lock(&self.hosts),
            || self.identities.read().unwrap_or_else(|p| p.into_inner()),
            || lock(&self.experiments),
        );
        let serialized = started.elapsed();
        // Parts may hold events applied by an ingest call that had not written them yet:
        // wait for that call (it holds the log lock until its write), and make the log as
        // durable as the snapshot before the snapshot exists, so that no part can be ahead
        // of the log after a crash.
        {
            let mut log = lock(&self.log);
            if let Some(why) = &log.failed {
                return Err(StoreError::Failed(why.clone()));
            }
            log.writer.sync()?;
        }
        let bytes = snapshot::write(&self.dir, seq, &parts)?;
        drop(parts);
        // Everything up to `seq` is in the snapshot: older segments and snapshots go.
        for (first, path) in segments(&self.dir)? {
            if first <= seq {
                std::fs::remove_file(&path).map_err(|e| StoreError::io(&path, e))?;
            }
        }
        snapshot::remove_older(&self.dir, seq)?;
        sync_dir(&self.dir)?;
        {
            let mut log = lock(&self.log);
            log.snapshot_seq = seq;
            log.last_snapshot = Instant::now();
        }
        self.counters.snapshots.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            seq,
            bytes,
            serialize_ms = serialized.as_secs_f64() * 1e3,
            seconds = started.elapsed().as_secs_f64(),
            "snapshot written"
        );
        Ok(seq)
    }

    fn snapshot_due(&self) -> bool {
        let log = lock(&self.log);
        let pending = log.writer.last_seq() - log.snapshot_seq;
        log.failed.is_none()
            && pending > 0
            && (pending >= self.options.snapshot_every_records
                || log.last_snapshot.elapsed() >= self.options.snapshot_interval)
    }

    /// Users held.
    pub fn user_count(&self) -> usize {
        self.shards.iter().map(|s| lock(s).users.len()).sum()
    }

    /// Counts and positions.
    pub fn stats(&self) -> StoreStats {
        let (last_seq, snapshot_seq, log_bytes) = {
            let log = lock(&self.log);
            (log.writer.last_seq(), log.snapshot_seq, log.writer.bytes())
        };
        StoreStats {
            users: self.user_count() as u64,
            hosts: lock(&self.hosts).book.len() as u64,
            identities: self.identities.read().unwrap_or_else(|p| p.into_inner()).table.len() as u64,
            last_seq,
            snapshot_seq,
            log_bytes,
            accepted: self.counters.accepted.load(Ordering::Relaxed),
            duplicates: self.counters.duplicates.load(Ordering::Relaxed),
            late: self.counters.late.load(Ordering::Relaxed),
            rejected: self.counters.rejected.load(Ordering::Relaxed),
            snapshots: self.counters.snapshots.load(Ordering::Relaxed),
            recovered_records: self.recovered_records,
        }
    }

    /// The unified user of an account: the identity table's user when `platform` and `id`
    /// name a linked account, else `id` itself (already a unified id).
    pub fn unified_user(&self, platform: Option<Platform>, id: &str) -> String {
        let Some(platform) = platform else { return id.to_owned() };
        let ids = self.identities.read().unwrap_or_else(|p| p.into_inner());
        if ids.table.is_empty() {
            return id.to_owned();
        }
        ids.table.resolve(platform, id).unwrap_or(id).to_owned()
    }

    /// Platform and category of the user's open visit to `room_id`, if one is open.
    pub fn open_visit_context(&self, user_id: &str, room_id: &str) -> Option<(Platform, String)> {
        let i = shard_of(user_id, self.shards.len());
        let shard = lock(&self.shards[i]);
        shard.users.get(user_id)?.profile.open_visit_context(room_id)
    }

    /// Starts an experiment, durably. `Ok(false)` when an identical definition already runs;
    /// a different experiment of the same name is refused.
    pub fn start_experiment(&self, experiment: Experiment) -> Result<bool, StoreError> {
        let mut log = lock(&self.log);
        if let Some(why) = &log.failed {
            return Err(StoreError::Failed(why.clone()));
        }
        {
            let book = lock(&self.experiments);
            if let Some(held) = book.experiments.get(&experiment.name) {
                if held.experiment() == &experiment {
                    return Ok(false);
                }
                return Err(StoreError::Experiment(format!(
                    "an experiment named {} with another definition is held; pick a new name",
                    experiment.name
                )));
            }
            if book.experiments.len() >= MAX_EXPERIMENTS {
                return Err(StoreError::Experiment(format!(
                    "{MAX_EXPERIMENTS} experiments are held, the limit; delete one first"
                )));
            }
        }
        let bytes = postcard::to_stdvec(&Record::ExperimentStarted(experiment.clone())).expect("definitions serialize");
        fits_a_record(&bytes, log.writer.next_seq())?;
        let seq = log.writer.stage(&bytes);
        self.commit(&mut log)?;
        let mut book = lock(&self.experiments);
        book.start(experiment, seq);
        self.publish_running(&book);
        Ok(true)
    }

    /// Stops an experiment at `ts_ms`, durably; `Ok(false)` when there is none of that name.
    pub fn stop_experiment(&self, name: &str, ts_ms: i64) -> Result<bool, StoreError> {
        let mut log = lock(&self.log);
        if let Some(why) = &log.failed {
            return Err(StoreError::Failed(why.clone()));
        }
        match lock(&self.experiments).experiments.get(name) {
            None => return Ok(false),
            Some(x) if x.stopped_ms().is_some() => return Ok(true),
            Some(_) => {}
        }
        let record = Record::ExperimentStopped { name: name.to_owned(), ts_ms };
        let seq = log.writer.stage(&postcard::to_stdvec(&record).expect("stops serialize"));
        self.commit(&mut log)?;
        let mut book = lock(&self.experiments);
        book.stop(name, ts_ms, seq);
        self.publish_running(&book);
        Ok(true)
    }

    fn publish_running(&self, book: &ExperimentBook) {
        let list = Arc::new(book.experiments.values().map(ExperimentStatus::of).collect());
        *self.running.write().unwrap_or_else(|p| p.into_inner()) = list;
    }

    /// The experiments held (definitions and stop times; counts as of the last start or
    /// stop: see [`ProfileStore::experiment_status`] for current counts).
    pub fn experiments(&self) -> Arc<Vec<ExperimentStatus>> {
        self.running.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// One experiment's current status.
    pub fn experiment_status(&self, name: &str) -> Option<ExperimentStatus> {
        lock(&self.experiments).experiments.get(name).map(ExperimentStatus::of)
    }

    /// One experiment's live per-user table.
    pub fn experiment_table(&self, name: &str) -> Option<ExperimentTable> {
        let book = lock(&self.experiments);
        let o = book.experiments.get(name)?;
        Some(ExperimentTable { status: ExperimentStatus::of(o), rows: o.table() })
    }

    /// Whether a user has been exposed to an experiment.
    pub fn is_exposed(&self, experiment: &str, user_id: &str) -> bool {
        let exposed = self.exposed.read().unwrap_or_else(|p| p.into_inner());
        exposed.get(experiment).is_some_and(|users| users.contains(user_id))
    }

    /// Records first exposures durably (as durable as events) before it returns; exposures
    /// of users already exposed to that experiment are skipped. Returns how many were new.
    pub fn record_exposures(&self, exposures: &[Exposure]) -> Result<usize, StoreError> {
        let fresh = |book: &ExperimentBook| -> Vec<Exposure> {
            let mut seen: HashSet<(&str, &str)> = HashSet::new();
            exposures
                .iter()
                .filter(|x| {
                    book.experiments.contains_key(&x.experiment)
                        && seen.insert((x.experiment.as_str(), x.user_id.as_str()))
                        && !book.is_exposed(&x.experiment, &x.user_id)
                })
                .cloned()
                .collect()
        };
        // Most answers go to users exposed before: settle those without the log.
        if fresh(&lock(&self.experiments)).is_empty() {
            return Ok(0);
        }
        let mut log = lock(&self.log);
        if let Some(why) = &log.failed {
            return Err(StoreError::Failed(why.clone()));
        }
        // Checked again under the log lock: another answer may have logged them meanwhile.
        let new = fresh(&lock(&self.experiments));
        if new.is_empty() {
            return Ok(0);
        }
        let record = Record::Exposures(new);
        let bytes = postcard::to_stdvec(&record).expect("exposures serialize");
        // Refused before anything is staged or applied: the store stays usable.
        fits_a_record(&bytes, log.writer.next_seq())?;
        let seq = log.writer.stage(&bytes);
        let Record::Exposures(new) = record else { unreachable!() };
        lock(&self.experiments).expose(&new, seq);
        self.commit(&mut log)?;
        {
            let mut exposed = self.exposed.write().unwrap_or_else(|p| p.into_inner());
            for x in &new {
                exposed.entry(x.experiment.clone()).or_default().insert(x.user_id.clone());
            }
        }
        Ok(new.len())
    }

    /// Every exposure held, by experiment (the first per user), for export.
    pub fn exposures(&self, experiment: &str) -> Option<Vec<Exposure>> {
        let book = lock(&self.experiments);
        let o = book.experiments.get(experiment)?;
        let arms = &o.experiment().arms;
        Some(
            o.table()
                .into_iter()
                .map(|r| Exposure {
                    experiment: experiment.to_owned(),
                    arm: arms[r.arm].name.clone(),
                    ts_ms: r.first_exposure_ms,
                    platform: r.platform,
                    category: r.category,
                    room_id: r.room_id,
                    user_id: r.user_id,
                })
                .collect(),
        )
    }

    /// The late window: an event older than its user's newest event by more than this is
    /// refused.
    pub const LATE_WINDOW_MS: i64 = OUT_OF_ORDER_TOLERANCE_MS;
}

/// Applies one contract-valid event to its shard and the host book.
/// Applies one contract-valid event, which gets log sequence number `seq` if accepted.
fn apply_event(shard: &mut Shard, event: Event, seq: u64, observe_host: impl FnOnce(&Event)) -> Outcome {
    let entry = match shard.users.get_mut(&event.user_id) {
        Some(e) => e,
        None => shard.users.entry(event.user_id.clone()).or_default(),
    };
    let id_hash = stable_hash(&event.event_id);
    if entry.recent_ids.iter().any(|(_, id)| *id == id_hash) {
        return Outcome::Duplicate;
    }
    if !entry.profile.accepts(event.ts_ms) {
        let newest = entry.profile.newest_ms().unwrap_or_default();
        return Outcome::Late(format!(
            "event at {} is {} ms older than user {:?}'s newest event at {newest}; the late window is {} ms",
            event.ts_ms,
            newest - event.ts_ms,
            event.user_id,
            OUT_OF_ORDER_TOLERANCE_MS
        ));
    }
    if let Err(e) = entry.profile.observe(&event) {
        return Outcome::Rejected(e.to_string());
    }
    observe_host(&event);
    shard.seq = seq;
    let newest = entry.profile.newest_ms().unwrap_or(event.ts_ms);
    entry.recent_ids.push_back((event.ts_ms, id_hash));
    entry.recent_ids.retain(|(ts, _)| *ts >= newest - OUT_OF_ORDER_TOLERANCE_MS);
    if entry.recent_ids.capacity() > 4 * entry.recent_ids.len().max(4) {
        entry.recent_ids.shrink_to_fit();
    }
    Outcome::Accepted
}

/// Refuses a record the log could not read back, before it is staged (the writer would
/// refuse it too, but only after the caller had applied it).
fn fits_a_record(bytes: &[u8], seq: u64) -> Result<(), StoreError> {
    if bytes.len() > crate::MAX_RECORD_BYTES {
        return Err(StoreError::RecordTooLarge {
            path: "(not written)".to_owned(),
            seq,
            bytes: bytes.len(),
            limit: crate::MAX_RECORD_BYTES,
        });
    }
    Ok(())
}

/// The shard of a user: FNV-1a of the id, the same in every process and version (a
/// snapshot's shards are reused as they are).
fn shard_of(user_id: &str, shards: usize) -> usize {
    (stable_hash(user_id) % shards as u64) as usize
}

fn spawn_snapshotter(store: Weak<ProfileStore>) {
    let spawned = std::thread::Builder::new().name("profile-snapshots".to_owned()).spawn(move || {
        loop {
            std::thread::sleep(Duration::from_millis(200));
            let Some(store) = store.upgrade() else { return };
            if store.snapshot_due()
                && let Err(e) = store.snapshot()
            {
                tracing::error!(error = %e, "snapshot failed; the log keeps every event");
            }
        }
    });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "could not start the snapshot thread; snapshots only on request");
    }
}
