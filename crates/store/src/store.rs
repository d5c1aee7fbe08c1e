//! [`ProfileStore`]: users sharded by a hash of their id, one host book, the identity
//! table, the event-id index; every accepted event and identity change is logged before it
//! is applied and acknowledged.

mod ingest;
mod open;

pub use ingest::{IngestTimes, MAX_GROUP_EVENTS};

use crate::dedup::{DEFAULT_DEDUP_HORIZON_MS, DEFAULT_DEDUP_MAX_IDS, EventIds};
use crate::error::{LookupError, StoreError};
use crate::experiments::{ExperimentBook, ExperimentStatus, ExperimentTable, MAX_EXPERIMENTS};
use crate::identity::{IdentityLink, IdentityTable};
use crate::incoming::MAX_CLOCK_SKEW_MS;
use crate::lock::FolderLock;
use crate::log::{DEFAULT_SEGMENT_BYTES, Durability, LogDamage, LogWriter, segments, sync_dir};
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
    /// Size each log segment is created with (allocated up front); a larger batch gets a
    /// segment of its own size.
    pub segment_bytes: u64,
    /// How long an event sent again is answered `duplicate`: the event ids of this much
    /// event time behind the newest event taken in are kept (at most 30 days).
    pub dedup_horizon: Duration,
    /// Most event ids kept for that; over the cap the oldest are dropped before their
    /// time and the horizon shortens (16 bytes an id plus the table's slack).
    pub dedup_max_ids: usize,
    /// Start even when the log lost acknowledged records: the damaged files are moved to
    /// `damaged/`, each loss is logged as an ERROR and listed by
    /// [`ProfileStore::log_damage`]. Without it the store refuses to start, naming the
    /// file and the records lost.
    pub accept_log_damage: bool,
}

impl StoreOptions {
    /// Defaults for a data folder: 64 shards, fsync, a snapshot every ten million records or
    /// five minutes, 64 MiB segments, duplicates told for 6 hours (at most 7 Mi ids), no
    /// log damage accepted.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        StoreOptions {
            dir: dir.into(),
            shards: 64,
            durability: Durability::Fsync,
            snapshot_every_records: 10_000_000,
            snapshot_interval: Duration::from_secs(300),
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            dedup_horizon: Duration::from_millis(DEFAULT_DEDUP_HORIZON_MS as u64),
            dedup_max_ids: DEFAULT_DEDUP_MAX_IDS,
            accept_log_damage: false,
        }
    }

    fn dedup_horizon_ms(&self) -> i64 {
        i64::try_from(self.dedup_horizon.as_millis()).unwrap_or(i64::MAX)
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
/// of the event id): an older event sent again is refused as late, so it is never applied
/// twice, even when its id has left the store-wide event-id index. Two different ids of
/// one user within five minutes sharing a 64-bit hash is the only way an event could be
/// taken for a duplicate here.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct UserEntry {
    pub(crate) profile: UserProfile,
    recent_ids: VecDeque<(i64, u64)>,
    /// Events taken in live since the user's features were last read for an answer; not
    /// kept in snapshots (after a restart nothing is waiting).
    #[serde(skip)]
    unanswered: Unreflected,
}

/// Per platform, the time of the oldest event not yet reflected in an answer (events
/// taken in since the user's features were last read). Fixed size: no allocation per
/// event or per answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unreflected([i64; Platform::ALL.len()]);

impl Default for Unreflected {
    fn default() -> Self {
        Unreflected([i64::MAX; Platform::ALL.len()])
    }
}

impl Unreflected {
    /// Notes an event of `platform` at `ts_ms`.
    pub fn note(&mut self, platform: Platform, ts_ms: i64) {
        let slot = &mut self.0[platform.index()];
        *slot = (*slot).min(ts_ms);
    }

    /// Per platform with waiting events, the oldest one's time (UTC milliseconds).
    pub fn oldest(&self) -> impl Iterator<Item = (Platform, i64)> + '_ {
        Platform::ALL.into_iter().zip(self.0).filter(|(_, ts)| *ts != i64::MAX)
    }

    /// Whether no event is waiting.
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|ts| *ts == i64::MAX)
    }

    /// Forgets the platforms an answer reflected (`answered`, as read for it); a platform
    /// whose oldest waiting event changed since the read keeps waiting.
    fn clear(&mut self, answered: &Unreflected) {
        for (slot, seen) in self.0.iter_mut().zip(answered.0) {
            if *slot == seen {
                *slot = i64::MAX;
            }
        }
    }
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
    /// Why the last log write failed, until one succeeds (the store's health).
    write_error: Option<String>,
    snapshot_seq: u64,
    last_snapshot: Instant,
    /// No automatic snapshot before this (after one failed).
    snapshot_backoff: Option<Instant>,
    scratch: Vec<u8>,
}

impl LogState {
    /// Refuses writes once the writer stopped for good.
    fn writable(&self) -> Result<(), StoreError> {
        match self.writer.broken() {
            Some(why) => Err(StoreError::Failed(why.to_owned())),
            None => Ok(()),
        }
    }
}

/// Counts since the store opened.
#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicU64,
    duplicates: AtomicU64,
    late: AtomicU64,
    rejected: AtomicU64,
    snapshots: AtomicU64,
    write_failures: AtomicU64,
    logged_batches: AtomicU64,
    log_commits: AtomicU64,
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
    /// Bytes of data in the current log segment.
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
    /// Event ids held for telling duplicates.
    pub event_ids: u64,
    /// Event ids dropped before their horizon because of the cap, over the index's life.
    pub event_ids_evicted_early: u64,
    /// How far behind the newest event time the ids held reach, in milliseconds (the
    /// horizon, or less after the cap dropped some).
    pub dedup_horizon_ms: i64,
    /// Log writes that failed since the store opened (each failed call, nothing kept).
    pub write_failures: u64,
    /// Places where the log lost records, accepted when the store opened.
    pub log_damage: u64,
    /// Event batches with something to log, logged since the store opened.
    pub logged_batches: u64,
    /// Log writes (each with its fsync under `fsync` durability) that carried them: fewer
    /// than the batches when concurrent batches shared a group commit.
    pub log_commits: u64,
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
    /// The events this read reflects that no answer has yet: per platform, the oldest one's
    /// time (none for conversion reads). Pass it to [`ProfileStore::answered`] once the
    /// answer is sent.
    pub first_reflected: Unreflected,
}

/// The profile store. See the crate documentation.
pub struct ProfileStore {
    dir: PathBuf,
    shards: Vec<Mutex<Shard>>,
    hosts: Mutex<Hosts>,
    identities: RwLock<Identities>,
    /// Ids of the events taken in over the duplicate horizon.
    event_ids: Mutex<EventIds>,
    /// Experiments' definitions, exposures and outcome accumulators.
    experiments: Mutex<ExperimentBook>,
    /// The definitions alone, for routing without the book's lock.
    running: RwLock<Arc<Vec<ExperimentStatus>>>,
    /// Users exposed per experiment, for the answer path's check without the book's lock
    /// (readers share it; it changes only on a first exposure).
    exposed: RwLock<HashMap<String, HashSet<String>>>,
    log: Mutex<LogState>,
    /// Batches waiting for a group commit.
    queue: Mutex<ingest::IngestQueue>,
    /// One snapshot at a time.
    snapshotting: Mutex<()>,
    options: StoreOptions,
    counters: Counters,
    recovered_records: u64,
    /// Log damage accepted when the store opened.
    log_damage: Vec<LogDamage>,
    /// Held while the store is open, so that one store at a time uses the folder.
    _lock: FolderLock,
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
    /// Opens (or creates) the store in `options.dir`: locks the folder, loads the newest
    /// snapshot, replays the log after it (clearing a torn last write), and starts the
    /// snapshot thread. Refuses to start when the log lost acknowledged records, unless
    /// [`StoreOptions::accept_log_damage`] is set.
    pub fn open(options: StoreOptions) -> Result<Arc<ProfileStore>, StoreError> {
        open::open(options)
    }

    /// The log damage accepted when the store opened (empty unless
    /// [`StoreOptions::accept_log_damage`] was set and records were lost).
    pub fn log_damage(&self) -> &[LogDamage] {
        &self.log_damage
    }

    /// `Ok` while the store can write its log; the reason of the last failed write until a
    /// write succeeds again (a later batch, or the background probe that checks for room
    /// every second), or for good after a failure that needs a restart.
    pub fn write_health(&self) -> Result<(), String> {
        let log = lock(&self.log);
        if let Some(why) = log.writer.broken() {
            return Err(why.to_owned());
        }
        match &log.write_error {
            Some(why) => Err(why.clone()),
            None => Ok(()),
        }
    }

    /// After a failed write, checks whether a write of that size would succeed now
    /// (without changing the log); clears the failure when it would. Returns whether the
    /// store can write.
    pub fn probe_log(&self) -> bool {
        let mut log = lock(&self.log);
        if log.write_error.is_none() || log.writer.broken().is_some() {
            return log.write_error.is_none() && log.writer.broken().is_none();
        }
        if !log.writer.failing() {
            log.write_error = None;
            return true;
        }
        match log.writer.probe() {
            Ok(()) => {
                tracing::info!("the log can be written again");
                log.write_error = None;
                true
            }
            Err(_) => false,
        }
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
        log.writable()?;
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

    /// Commits the staged records; a failed write is counted and kept as the store's
    /// health until a write succeeds.
    fn commit(&self, log: &mut LogState) -> Result<(), StoreError> {
        self.commit_timed(log, None)
    }

    /// [`ProfileStore::commit`], noting when the log was written and synced.
    fn commit_timed(&self, log: &mut LogState, times: Option<&mut crate::log::CommitTimes>) -> Result<(), StoreError> {
        match log.writer.commit_timed(times) {
            Ok(()) => {
                // A batch with nothing to log (all duplicates, say) writes nothing: it does
                // not tell that the disk has room again.
                if !log.writer.failing() && log.write_error.take().is_some() {
                    tracing::info!("log writes succeed again");
                }
                Ok(())
            }
            Err(e @ StoreError::RecordTooLarge { .. }) => Err(e),
            Err(e) => {
                self.counters.write_failures.fetch_add(1, Ordering::Relaxed);
                let why = e.to_string();
                match log.writer.broken() {
                    Some(_) => {
                        tracing::error!(error = %why, "log write failed; the store takes no more events until restarted")
                    }
                    None => {
                        tracing::error!(error = %why, "log write failed; nothing of it was kept, later writes are tried afresh")
                    }
                }
                log.write_error = Some(why);
                Err(e)
            }
        }
    }

    /// A user's features (the user-feature schema) as of `as_of_ms`, by default now (or
    /// the user's newest event when that is later).
    pub fn user_features(&self, user_id: &str, as_of_ms: Option<i64>) -> Result<ProfileFeatures, LookupError> {
        let i = shard_of(user_id, self.shards.len());
        let mut shard = lock(&self.shards[i]);
        let entry = shard.users.get_mut(user_id).ok_or_else(|| LookupError::UnknownUser(user_id.to_owned()))?;
        let p = &mut entry.profile;
        let horizon = p.horizon_ms();
        let now = now_ms();
        let as_of_ms = match as_of_ms {
            Some(t) if t < horizon => {
                return Err(LookupError::InPast { user_id: user_id.to_owned(), as_of_ms: t, horizon_ms: horizon });
            }
            Some(t) if t > now + MAX_CLOCK_SKEW_MS => {
                return Err(LookupError::InFuture { as_of_ms: t, max_skew_ms: MAX_CLOCK_SKEW_MS });
            }
            Some(t) => t,
            None => now.max(horizon),
        };
        let mut values = Vec::with_capacity(user_features().len());
        if as_of_ms > now.max(horizon) {
            // Reading moves the window state to the time asked, which every later caller
            // would then see: a time ahead of the clock (and of the user's newest event)
            // is answered from a copy, leaving the shared state where it was.
            let mut ahead = p.clone();
            ahead.features(as_of_ms, &mut values).expect("as_of is not before the horizon");
        } else {
            p.features(as_of_ms, &mut values).expect("as_of is not before the horizon");
        }
        // The time asked is never before the user's newest event: the features reflect
        // every event taken in.
        let first_reflected = entry.unanswered;
        Ok(ProfileFeatures { values, as_of_ms, last_event_ms: p.newest_ms(), first_reflected })
    }

    /// Notes that an answer made from a [`ProfileStore::user_features`] read was sent: the
    /// events it reflected for the first time (`reflected`, as read) stop waiting. A read
    /// whose answer failed is not followed by this call, so its events wait for the next.
    pub fn answered(&self, user_id: &str, reflected: &Unreflected) {
        if reflected.is_empty() {
            return;
        }
        let mut shard = lock(&self.shards[shard_of(user_id, self.shards.len())]);
        if let Some(entry) = shard.users.get_mut(user_id) {
            entry.unanswered.clear(reflected);
        }
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
        // The visit's features hold the user's as they were when the visit began: events
        // since (in other rooms) are not all reflected, so none is counted as answered.
        let first_reflected = Unreflected::default();
        Ok(ProfileFeatures { values, as_of_ms: decision_ms, last_event_ms: p.newest_ms(), first_reflected })
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
            log.writable()?;
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
            || lock(&self.event_ids),
        );
        let serialized = started.elapsed();
        // Parts hold only logged events (applied after their write), but with the `write`
        // durability those may not be on the disk yet: make the log as durable as the
        // snapshot before the snapshot exists, so that no part can be ahead of the log
        // after a power loss.
        {
            let mut log = lock(&self.log);
            log.writable()?;
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
            log.snapshot_backoff = None;
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
        log.writer.broken().is_none()
            && log.snapshot_backoff.is_none_or(|t| Instant::now() >= t)
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
        let (event_ids, event_ids_evicted_early, dedup_horizon_ms) = {
            let ids = lock(&self.event_ids);
            (ids.len() as u64, ids.evicted_early(), ids.kept_horizon_ms())
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
            event_ids,
            event_ids_evicted_early,
            dedup_horizon_ms,
            write_failures: self.counters.write_failures.load(Ordering::Relaxed),
            log_damage: self.log_damage.len() as u64,
            logged_batches: self.counters.logged_batches.load(Ordering::Relaxed),
            log_commits: self.counters.log_commits.load(Ordering::Relaxed),
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
        log.writable()?;
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
        log.writable()?;
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
        log.writable()?;
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
        // Applied only once logged: a failed write leaves no exposure behind.
        self.commit(&mut log)?;
        lock(&self.experiments).expose(&new, seq);
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
        let mut last_probe = Instant::now();
        loop {
            std::thread::sleep(Duration::from_millis(200));
            let Some(store) = store.upgrade() else { return };
            // After a failed write, look for room once a second, so that health comes
            // back without waiting for traffic (which a draining load balancer holds back).
            if last_probe.elapsed() >= Duration::from_secs(1) && store.write_health().is_err() {
                last_probe = Instant::now();
                store.probe_log();
            }
            if store.snapshot_due()
                && let Err(e) = store.snapshot()
            {
                tracing::error!(error = %e, "snapshot failed; the log keeps every event; next try in 10 s");
                lock(&store.log).snapshot_backoff = Some(Instant::now() + Duration::from_secs(10));
            }
        }
    });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "could not start the snapshot thread; snapshots only on request");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::incoming::IncomingEvent;

    /// An event of user `user` in room r1 (host h1, beauty) on Douyin.
    fn event(id: &str, user: &str, ts_ms: i64, kind: &str) -> IncomingEvent {
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

    /// An event that breaks the contract cannot be ingested, but one can reach the log
    /// past its checksum (damage, or a log written under looser limits; the store_recovery
    /// fuzz target found it overflowing a window sum). Recovery skips it and keeps the
    /// rest.
    #[test]
    fn a_logged_event_outside_the_contract_is_skipped_on_recovery() {
        let dir = tempfile::tempdir().unwrap();
        let mut options = StoreOptions::new(dir.path());
        options.durability = Durability::Write;
        let store = ProfileStore::open(options.clone()).unwrap();
        let now = now_ms();
        let leave = |id: &str, user: &str| IncomingEvent { value: 60.0, ..event(id, user, now, "leave") };
        let report = store.ingest(&[leave("good", "u1")]).unwrap();
        assert_eq!(report.accepted, 1, "{:?}", report.errors);
        let bad = leave("bad", "u2").to_event(&Default::default(), now).unwrap();
        let bad = Event { value: -1e18, ..bad };
        assert!(bad.validate().is_err());
        {
            let mut log = lock(&store.log);
            let payload = postcard::to_stdvec(&Record::Event(bad)).unwrap();
            log.writer.stage(&payload);
            store.commit(&mut log).unwrap();
        }
        drop(store);
        let store = ProfileStore::open(options).unwrap();
        assert_eq!(store.stats().last_seq, 2, "both records are read");
        assert!(store.user_features("u1", None).is_ok());
        assert!(store.user_features("u2", None).is_err(), "the out-of-contract event is not applied");
    }

    /// Batches that arrive while the log is busy wait, and are logged together in one
    /// frame (one write, one fsync), each decided against the ones before it in the
    /// group: an id sent in two of them is taken once. Every caller gets its own report;
    /// the frame replays whole after a restart.
    #[test]
    fn batches_waiting_for_the_log_share_one_commit() {
        let dir = tempfile::tempdir().unwrap();
        let mut options = StoreOptions::new(dir.path());
        options.durability = Durability::Fsync;
        let store = ProfileStore::open(options.clone()).unwrap();
        let now = now_ms();
        // Caller k sends events k-0..k-4 of user uk, and caller 3 also resends caller 0's first.
        let batch = |k: usize| -> Arc<[IncomingEvent]> {
            let mut b: Vec<IncomingEvent> =
                (0..5).map(|j| event(&format!("e{k}-{j}"), &format!("u{k}"), now + j as i64, "enter")).collect();
            if k == 3 {
                b.push(event("e0-0", "u0", now, "enter"));
            }
            b.into()
        };
        let reports = {
            let log = lock(&store.log);
            let callers: Vec<_> = (0..4)
                .map(|k| {
                    let caller = store.clone();
                    let b = batch(k);
                    // One at a time into the queue, so that the group's order is known.
                    let handle = std::thread::spawn(move || caller.ingest_shared(b));
                    while lock(&store.queue).waiting() < k + 1 {
                        std::thread::yield_now();
                    }
                    handle
                })
                .collect();
            drop(log);
            callers.into_iter().map(|h| h.join().unwrap().0.unwrap()).collect::<Vec<_>>()
        };
        for (k, r) in reports.iter().enumerate() {
            assert_eq!((r.received, r.accepted), (5 + (k == 3) as u64, 5), "caller {k}: {r:?}");
            assert_eq!(r.duplicates, (k == 3) as u64, "caller {k}");
            assert_eq!(r.last_seq, 5 * (k as u64 + 1), "caller {k}: sequence numbers in queue order");
        }
        let stats = store.stats();
        assert_eq!((stats.logged_batches, stats.log_commits, stats.last_seq), (4, 1, 20));
        assert_eq!(lock(&store.queue).waiting(), 0);
        assert!(!lock(&store.queue).leading(), "the lead is given up with nothing waiting");
        let features = |s: &ProfileStore| {
            (0..4).map(|k| s.user_features(&format!("u{k}"), Some(now + 10)).unwrap().values).collect::<Vec<_>>()
        };
        let before = features(&store);
        drop(store);
        let store = ProfileStore::open(options).unwrap();
        assert_eq!(store.stats().recovered_records, 20);
        assert_eq!(features(&store), before);
        // The next caller finds nobody leading and logs alone.
        let (r, times) = store.ingest_shared(batch(4));
        assert_eq!(r.unwrap().accepted, 5);
        assert!(times.fsync.is_some() && times.apply.is_some());
        assert_eq!(store.stats().log_commits, 1);
    }
}
