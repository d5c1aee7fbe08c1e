//! Ingest: a batch is decided against the state as it was (plus the batch's own earlier
//! events), logged in one write, and applied only once that write succeeded, so that a
//! failed write leaves nothing of the batch in memory or in the log.

use super::{ProfileStore, Record, Shard, lock, shard_of};
use crate::dedup::{EventIds, IdKey};
use crate::error::StoreError;
use crate::incoming::{IncomingEvent, IngestReport, Outcome};
use liveprofile_events::{Event, stable_hash};
use liveprofile_features::aggregates::{OUT_OF_ORDER_TOLERANCE_MS, in_order};
use liveprofile_features::online::OnlineError;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::Instant;

/// The batch's events accepted so far, which later events of the batch are decided
/// against.
#[derive(Default)]
struct Pending {
    ids: HashSet<IdKey>,
    newest: HashMap<String, i64>,
}

/// When each phase of an ingested batch ran (for traces): the check of every event, the
/// log write, its fsync and applying the accepted events. A phase that did not run (no
/// event to log, durability without fsync) has no times.
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

impl ProfileStore {
    /// Takes in a batch of events. Returns once every accepted event is in the log (as
    /// durable as the options say) and applied; the report counts every event exactly
    /// once. On an error nothing of the batch was logged or applied.
    pub fn ingest(&self, batch: &[IncomingEvent]) -> Result<IngestReport, StoreError> {
        self.ingest_timed(batch, None)
    }

    /// [`ProfileStore::ingest`], noting when each phase ran in `times` (what ran before a
    /// failure is noted too).
    pub fn ingest_timed(
        &self,
        batch: &[IncomingEvent],
        mut times: Option<&mut IngestTimes>,
    ) -> Result<IngestReport, StoreError> {
        let check_start = times.is_some().then(Instant::now);
        let mut report = IngestReport { received: batch.len() as u64, ..Default::default() };
        let mut log = lock(&self.log);
        log.writable()?;
        let log = &mut *log;
        let identities = self.identities.read().unwrap_or_else(|p| p.into_inner());
        // Lock order everywhere: log, event ids, a shard, the host book, the experiments.
        let mut ids = lock(&self.event_ids);
        let now = super::now_ms();
        let mut pending = Pending::default();
        let mut accepted: Vec<(Event, IdKey)> = Vec::new();
        for (index, incoming) in batch.iter().enumerate() {
            let outcome = match incoming.to_event(&identities.table, now) {
                Err(reason) => Outcome::Rejected(reason),
                Ok(event) => {
                    let key = IdKey::of(&event.event_id);
                    let outcome = {
                        let shard = lock(&self.shards[shard_of(&event.user_id, self.shards.len())]);
                        decide(&shard, &ids, &pending, &event, &key)
                    };
                    if outcome == Outcome::Accepted {
                        log.scratch.clear();
                        let record = Record::Event(event);
                        log.scratch =
                            postcard::to_extend(&record, std::mem::take(&mut log.scratch)).expect("events serialize");
                        let Record::Event(event) = record else { unreachable!() };
                        report.last_seq = log.writer.stage(&log.scratch);
                        pending.ids.insert(key);
                        let newest = pending.newest.entry(event.user_id.clone()).or_insert(event.ts_ms);
                        *newest = (*newest).max(event.ts_ms);
                        accepted.push((event, key));
                    }
                    outcome
                }
            };
            match outcome {
                Outcome::Accepted => report.accepted += 1,
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
        drop(identities);
        let mut commit = crate::log::CommitTimes::default();
        let committed = match times.as_deref_mut() {
            None => self.commit(log),
            Some(t) => {
                let now = Instant::now();
                t.check = check_start.map(|s| (s, now));
                let committed = self.commit_timed(log, Some(&mut commit));
                if let (Some(s), Some(w)) = (commit.write_start, commit.written) {
                    t.log_write = Some((s, w));
                    t.fsync = commit.synced.map(|synced| (w, synced));
                }
                committed
            }
        };
        committed?;
        let apply_start = times.is_some().then(Instant::now);
        let first_seq = report.last_seq + 1 - accepted.len() as u64;
        for (k, (event, key)) in accepted.into_iter().enumerate() {
            let seq = first_seq + k as u64;
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
        self.counters.accepted.fetch_add(report.accepted, Ordering::Relaxed);
        self.counters.duplicates.fetch_add(report.duplicates, Ordering::Relaxed);
        self.counters.late.fetch_add(report.late, Ordering::Relaxed);
        self.counters.rejected.fetch_add(report.rejected, Ordering::Relaxed);
        if let (Some(t), Some(start)) = (times, apply_start) {
            t.apply = Some((start, Instant::now()));
        }
        Ok(report)
    }
}

/// What becomes of a contract-valid event, against the state and the batch's accepted
/// events before it. A known id is a duplicate before anything else: an event sent again
/// within the horizon is never answered `late`.
fn decide(shard: &Shard, ids: &EventIds, pending: &Pending, event: &Event, key: &IdKey) -> Outcome {
    if ids.contains(key) || pending.ids.contains(key) {
        return Outcome::Duplicate;
    }
    let entry = shard.users.get(&event.user_id);
    let id_hash = stable_hash(&event.event_id);
    if entry.is_some_and(|e| e.recent_ids.iter().any(|(_, id)| *id == id_hash)) {
        return Outcome::Duplicate;
    }
    let newest = entry.and_then(|e| e.profile.newest_ms()).max(pending.newest.get(&event.user_id).copied());
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
