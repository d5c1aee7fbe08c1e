//! Ingest: a batch is decided against the state as it was (plus the events accepted before
//! it in its group), logged in one write, and applied only once that write succeeded, so
//! that a failed write leaves nothing of the batch in memory or in the log.
//!
//! Group commit ([`ProfileStore::ingest_shared`]): batches that arrive while another is
//! being logged wait in a queue; the caller that leads takes, once it holds the log, every
//! waiting batch (up to [`MAX_GROUP_EVENTS`] events) and logs
//! them as one frame with one write and one fsync, then hands the lead to the oldest batch
//! still waiting. Concurrent producers so share an fsync instead of queueing for one each.
//! A write that fails fails every batch of its group (nothing of any was logged or applied).

use super::{ProfileStore, Record, Shard, lock, shard_of};
use crate::dedup::{EventIds, IdKey};
use crate::error::StoreError;
use crate::incoming::{IncomingEvent, IngestReport, Outcome};
use liveprofile_events::{Event, stable_hash};
use liveprofile_features::aggregates::{OUT_OF_ORDER_TOLERANCE_MS, in_order};
use liveprofile_features::online::OnlineError;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

/// Most events one group commit takes from the queue (a batch is never split: a group
/// holds at least one). Bounds a frame at about 32 MB and a leader's extra work.
pub const MAX_GROUP_EVENTS: usize = 16_384;

/// Events accepted and not yet applied, which later events are decided against.
#[derive(Default)]
struct Pending {
    ids: HashSet<IdKey>,
    newest: HashMap<String, i64>,
}

impl Pending {
    fn contains(&self, key: &IdKey) -> bool {
        self.ids.contains(key)
    }

    fn newest(&self, user_id: &str) -> Option<i64> {
        self.newest.get(user_id).copied()
    }

    fn note(&mut self, event: &Event, key: IdKey) {
        self.ids.insert(key);
        let newest = self.newest.entry(event.user_id.clone()).or_insert(event.ts_ms);
        *newest = (*newest).max(event.ts_ms);
    }
}

/// When each phase of an ingested batch ran (for traces): the check of every event, the
/// log write, its fsync and applying the accepted events. A phase that did not run (no
/// event to log, durability without fsync) has no times. Batches logged in one group
/// share the write, fsync and apply times.
#[derive(Debug, Clone, Copy, Default)]
pub struct IngestTimes {
    /// Checking the events against the contract, the identity table, duplicates and the
    /// late window (and encoding the accepted ones' log records).
    pub check: Option<(Instant, Instant)>,
    /// Writing the batch's log frame.
    pub log_write: Option<(Instant, Instant)>,
    /// Syncing it to the disk.
    pub fsync: Option<(Instant, Instant)>,
    /// Applying the accepted events to the profiles.
    pub apply: Option<(Instant, Instant)>,
}

/// What became of one batch.
type Outcome1 = (Result<IngestReport, StoreError>, IngestTimes);

/// Where a queued batch stands.
enum Turn {
    /// In the queue, another caller leading.
    Waiting,
    /// Its caller leads the next group (the batch is at the head of the queue).
    Lead,
    /// Logged (or failed) by a group.
    Done(Outcome1),
}

/// A batch in the group-commit queue.
struct Queued {
    events: Arc<[IncomingEvent]>,
    turn: Mutex<Turn>,
    changed: Condvar,
}

impl Queued {
    fn set(&self, turn: Turn) {
        *lock(&self.turn) = turn;
        self.changed.notify_one();
    }
}

/// The group-commit queue.
#[derive(Default)]
pub(super) struct IngestQueue {
    waiting: std::collections::VecDeque<Arc<Queued>>,
    /// A caller leads (or was handed the lead): every queued batch will be taken.
    leading: bool,
}

impl IngestQueue {
    /// Batches waiting (for a leader, or for the log).
    #[cfg(test)]
    pub(super) fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Whether a caller leads.
    #[cfg(test)]
    pub(super) fn leading(&self) -> bool {
        self.leading
    }
}

/// Hands the lead on when the leader is done, also when it unwinds: the batches it took
/// and did not finish fail, the oldest waiting batch leads next (or nobody, when none waits).
struct Leadership<'a> {
    store: &'a ProfileStore,
    group: Vec<Arc<Queued>>,
}

impl Drop for Leadership<'_> {
    fn drop(&mut self) {
        for q in &self.group {
            let mut turn = lock(&q.turn);
            if !matches!(*turn, Turn::Done(_)) {
                let failed = StoreError::Failed("the batch's group commit stopped before it finished".into());
                *turn = Turn::Done((Err(failed), IngestTimes::default()));
                q.changed.notify_one();
            }
        }
        let mut queue = lock(&self.store.queue);
        match queue.waiting.front() {
            Some(next) => next.set(Turn::Lead),
            None => queue.leading = false,
        }
    }
}

impl ProfileStore {
    /// Takes in a batch of events. Returns once every accepted event is in the log (as
    /// durable as the options say) and applied; the report counts every event exactly
    /// once. On an error nothing of the batch was logged or applied.
    pub fn ingest(&self, batch: &[IncomingEvent]) -> Result<IngestReport, StoreError> {
        self.ingest_timed(batch, None)
    }

    /// [`ProfileStore::ingest`] of a batch on its own (a frame and fsync of its own),
    /// noting when each phase ran in `times` (what ran before a failure is noted too).
    pub fn ingest_timed(
        &self,
        batch: &[IncomingEvent],
        times: Option<&mut IngestTimes>,
    ) -> Result<IngestReport, StoreError> {
        let mut log = lock(&self.log);
        let (result, t) = self.log_group(&mut log, &[batch]).pop().expect("one batch, one outcome");
        if let Some(times) = times {
            *times = t;
        }
        result
    }

    /// [`ProfileStore::ingest`] with group commit: a batch that arrives while others are
    /// being logged waits and is logged with the batches waiting beside it, in one write and
    /// one fsync. Returns the outcome and when each phase ran.
    pub fn ingest_shared(&self, batch: Arc<[IncomingEvent]>) -> (Result<IngestReport, StoreError>, IngestTimes) {
        let me = Arc::new(Queued { events: batch, turn: Mutex::new(Turn::Waiting), changed: Condvar::new() });
        let lead_now = {
            let mut queue = lock(&self.queue);
            queue.waiting.push_back(me.clone());
            !std::mem::replace(&mut queue.leading, true)
        };
        if !lead_now {
            let mut turn = lock(&me.turn);
            while matches!(*turn, Turn::Waiting) {
                turn = me.changed.wait(turn).unwrap_or_else(|p| p.into_inner());
            }
            if let Turn::Done(outcome) = std::mem::replace(&mut *turn, Turn::Lead) {
                return outcome;
            }
        }
        // This batch leads: it is at the head of the queue. The group is taken once the
        // log is held, so that it holds every batch that came while the log was busy.
        let mut leadership = Leadership { store: self, group: Vec::new() };
        let outcomes = {
            let mut log = lock(&self.log);
            {
                let mut queue = lock(&self.queue);
                let mut events = 0;
                while let Some(next) = queue.waiting.front() {
                    if !leadership.group.is_empty() && events + next.events.len() > MAX_GROUP_EVENTS {
                        break;
                    }
                    events += next.events.len();
                    leadership.group.push(queue.waiting.pop_front().expect("front seen"));
                }
            }
            debug_assert!(Arc::ptr_eq(&leadership.group[0], &me), "the leader's batch heads its group");
            let batches: Vec<&[IncomingEvent]> = leadership.group.iter().map(|q| &*q.events).collect();
            self.log_group(&mut log, &batches)
        };
        let mut mine = None;
        for (q, outcome) in leadership.group.iter().zip(outcomes) {
            if Arc::ptr_eq(q, &me) {
                mine = Some(outcome);
            } else {
                q.set(Turn::Done(outcome));
            }
        }
        leadership.group.clear();
        drop(leadership);
        mine.expect("the leader's batch is in its group")
    }

    /// Decides, logs (one frame) and applies a group of batches in order, each decided
    /// against the state and the events accepted before it. One outcome per batch.
    fn log_group(&self, log: &mut super::LogState, batches: &[&[IncomingEvent]]) -> Vec<Outcome1> {
        let mut times = vec![IngestTimes::default(); batches.len()];
        if let Err(e) = log.writable() {
            return copies(e, times);
        }
        let identities = self.identities.read().unwrap_or_else(|p| p.into_inner());
        // Lock order everywhere: log, event ids, a shard, the host book, the experiments.
        let mut ids = lock(&self.event_ids);
        let now = super::now_ms();
        let mut pending = Pending::default();
        let mut accepted: Vec<(Event, IdKey, u64)> = Vec::new();
        let mut reports = Vec::with_capacity(batches.len());
        for (batch, t) in batches.iter().zip(&mut times) {
            let check_start = Instant::now();
            let mut report = IngestReport { received: batch.len() as u64, ..Default::default() };
            for (index, incoming) in batch.iter().enumerate() {
                let outcome = match incoming.to_event(&identities.table, now) {
                    Err(reason) => Outcome::Rejected(reason),
                    Ok(event) => self.take_in(log, &ids, &mut pending, event, &mut accepted),
                };
                match outcome {
                    Outcome::Accepted => {
                        report.accepted += 1;
                        report.last_seq = accepted.last().map_or(0, |(_, _, seq)| *seq);
                    }
                    Outcome::Duplicate => report.duplicates += 1,
                    Outcome::Late(reason) => {
                        let reason = format!(
                            "{reason}; no event with this id is held (ids are kept for {} ms behind the newest event time)",
                            ids.kept_horizon_ms()
                        );
                        report.refuse(index, &incoming.event_id, true, reason);
                    }
                    Outcome::Rejected(reason) => report.refuse(index, &incoming.event_id, false, reason),
                }
            }
            t.check = Some((check_start, Instant::now()));
            reports.push(report);
        }
        drop(identities);
        let mut commit = crate::log::CommitTimes::default();
        if let Err(e) = self.commit_timed(log, Some(&mut commit)) {
            return copies(e, times);
        }
        let logged = reports.iter().filter(|r| r.accepted > 0).count() as u64;
        if logged > 0 {
            self.counters.logged_batches.fetch_add(logged, Ordering::Relaxed);
            self.counters.log_commits.fetch_add(1, Ordering::Relaxed);
        }
        let apply_start = Instant::now();
        for (event, key, seq) in accepted {
            {
                let mut shard = lock(&self.shards[shard_of(&event.user_id, self.shards.len())]);
                if let Err(e) = apply_event(&mut shard, &event, seq) {
                    // Decided as accepted above: the features' own check cannot differ.
                    tracing::error!(seq, error = %e, "an accepted event did not apply");
                } else if let Some(entry) = shard.users.get_mut(&event.user_id) {
                    entry.unanswered.note(event.platform, event.ts_ms);
                }
            }
            {
                let mut hosts = lock(&self.hosts);
                hosts.book.observe(&event);
                hosts.seq = seq;
            }
            lock(&self.experiments).observe(&event, seq);
            ids.insert(key, event.ts_ms);
            ids.seq = seq;
        }
        let apply = Some((apply_start, Instant::now()));
        for report in &reports {
            self.counters.accepted.fetch_add(report.accepted, Ordering::Relaxed);
            self.counters.duplicates.fetch_add(report.duplicates, Ordering::Relaxed);
            self.counters.late.fetch_add(report.late, Ordering::Relaxed);
            self.counters.rejected.fetch_add(report.rejected, Ordering::Relaxed);
        }
        let log_write = commit.write_start.zip(commit.written);
        let fsync = commit.written.zip(commit.synced);
        reports
            .into_iter()
            .zip(times)
            .map(|(report, mut t)| {
                (t.log_write, t.fsync, t.apply) = (log_write, fsync, apply);
                (Ok(report), t)
            })
            .collect()
    }
}

impl ProfileStore {
    /// Decides a contract-valid event against the state and the events accepted before
    /// it; an accepted one is staged in the log and noted (in `pending`, and in `accepted`
    /// with its sequence number).
    fn take_in(
        &self,
        log: &mut super::LogState,
        ids: &EventIds,
        pending: &mut Pending,
        event: Event,
        accepted: &mut Vec<(Event, IdKey, u64)>,
    ) -> Outcome {
        let key = IdKey::of(&event.event_id);
        let outcome = {
            let shard = lock(&self.shards[shard_of(&event.user_id, self.shards.len())]);
            decide(&shard, ids, pending, &event, &key)
        };
        if outcome == Outcome::Accepted {
            log.scratch.clear();
            let record = Record::Event(event);
            log.scratch = postcard::to_extend(&record, std::mem::take(&mut log.scratch)).expect("events serialize");
            let Record::Event(event) = record else { unreachable!() };
            let seq = log.writer.stage(&log.scratch);
            pending.note(&event, key);
            accepted.push((event, key, seq));
        }
        outcome
    }
}

/// The error of a failed group for each of its batches (the first gets the error itself).
fn copies(e: StoreError, times: Vec<IngestTimes>) -> Vec<Outcome1> {
    let n = times.len();
    let mut errors: Vec<StoreError> = (1..n).map(|_| e.copy()).collect();
    errors.insert(0, e);
    errors.into_iter().zip(times).map(|(e, t)| (Err(e), t)).collect()
}

/// What becomes of a contract-valid event, against the state and the events accepted
/// before it in its group. A known id is a duplicate before anything else: an event sent again
/// within the horizon is never answered `late`.
fn decide(shard: &Shard, ids: &EventIds, pending: &Pending, event: &Event, key: &IdKey) -> Outcome {
    if ids.contains(key) || pending.contains(key) {
        return Outcome::Duplicate;
    }
    let entry = shard.users.get(&event.user_id);
    let id_hash = stable_hash(&event.event_id);
    if entry.is_some_and(|e| e.recent_ids.iter().any(|(_, id)| *id == id_hash)) {
        return Outcome::Duplicate;
    }
    let newest = entry.and_then(|e| e.profile.newest_ms()).max(pending.newest(&event.user_id));
    if !in_order(newest, event.ts_ms) {
        let newest = newest.unwrap_or_default();
        return Outcome::Late(format!(
            "event at {} is {} ms older than user {:?}'s newest event at {newest}; the late window is {} ms",
            event.ts_ms,
            newest - event.ts_ms,
            event.user_id,
            OUT_OF_ORDER_TOLERANCE_MS
        ));
    }
    Outcome::Accepted
}

/// Applies one logged event (log sequence number `seq`) to its shard: the user's profile
/// and recent ids.
pub(super) fn apply_event(shard: &mut Shard, event: &Event, seq: u64) -> Result<(), OnlineError> {
    let entry = match shard.users.get_mut(&event.user_id) {
        Some(e) => e,
        None => shard.users.entry(event.user_id.clone()).or_default(),
    };
    entry.profile.observe(event)?;
    shard.seq = seq;
    let newest = entry.profile.newest_ms().unwrap_or(event.ts_ms);
    entry.recent_ids.push_back((event.ts_ms, stable_hash(&event.event_id)));
    entry.recent_ids.retain(|(ts, _)| *ts >= newest - OUT_OF_ORDER_TOLERANCE_MS);
    if entry.recent_ids.capacity() > 4 * entry.recent_ids.len().max(4) {
        entry.recent_ids.shrink_to_fit();
    }
    Ok(())
}
