//! Opening a store: the folder lock, the newest snapshot, the log replayed after it, the
//! decision on damage, and the snapshot thread.

use super::ingest::apply_event;
use super::{
    Counters, Hosts, Identities, LogState, ProfileStore, Record, Shard, StoreOptions, shard_of, spawn_snapshotter,
};
use crate::dedup::{EventIds, IdKey};
use crate::error::StoreError;
use crate::experiments::{ExperimentBook, ExperimentStatus};
use crate::lock::lock_folder;
use crate::{log, snapshot};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

/// What recovery builds before the store exists: the newest snapshot's parts, then the log
/// records after them applied.
struct Recovering {
    shards: Vec<Shard>,
    hosts: Hosts,
    identities: Identities,
    book: ExperimentBook,
    event_ids: EventIds,
    snapshot_seq: u64,
    /// Log records read after the snapshot.
    replayed: u64,
}

impl Recovering {
    /// Starts from the newest snapshot in `dir` (keeping its shard count), or empty.
    fn from_snapshot(options: &StoreOptions) -> Result<Recovering, StoreError> {
        let mut r = Recovering {
            shards: (0..options.shards.max(1)).map(|_| Shard::default()).collect(),
            hosts: Hosts::default(),
            identities: Identities::default(),
            book: ExperimentBook::default(),
            event_ids: EventIds::default(),
            snapshot_seq: 0,
            replayed: 0,
        };
        if let Some(parts) = snapshot::load_newest(&options.dir)? {
            if parts.shards.len() != r.shards.len() {
                // Each shard's sequence number is only valid for its own users: keep the
                // snapshot's sharding.
                tracing::info!(
                    snapshot = parts.shards.len(),
                    asked = r.shards.len(),
                    "keeping the snapshot's shard count"
                );
            }
            r = Recovering {
                shards: parts.shards,
                hosts: parts.hosts,
                identities: parts.identities,
                book: parts.experiments,
                event_ids: parts.event_ids,
                snapshot_seq: parts.seq,
                replayed: 0,
            };
        }
        r.event_ids.set_limits(options.dedup_horizon_ms(), options.dedup_max_ids);
        Ok(r)
    }

    /// Applies log record `seq` to the parts that do not hold it yet: a snapshot is taken
    /// while events keep arriving, so each part knows the last record it holds. Every
    /// logged event was accepted when it was logged: it is applied as it is.
    fn apply(&mut self, seq: u64, record: Record) {
        match record {
            Record::Event(e) if e.validate().is_err() => {
                // Every event was checked before it was logged: one that breaks the contract
                // was damaged on the disk past its checksum, or logged under looser limits.
                // Applied, it could wrap the window sums; it is skipped, loudly.
                let why = e.validate().err().map(|w| w.to_string()).unwrap_or_default();
                tracing::error!(seq, error = %why, "a logged event breaks the event contract; skipped");
            }
            Record::Event(e) => {
                if seq > self.hosts.seq {
                    self.hosts.book.observe(&e);
                    self.hosts.seq = seq;
                }
                if seq > self.book.seq {
                    self.book.observe(&e, seq);
                }
                if seq > self.event_ids.seq {
                    self.event_ids.insert(IdKey::of(&e.event_id), e.ts_ms);
                    self.event_ids.seq = seq;
                }
                let shard_count = self.shards.len();
                let shard = &mut self.shards[shard_of(&e.user_id, shard_count)];
                if seq > shard.seq
                    && let Err(why) = apply_event(shard, &e, seq)
                {
                    tracing::warn!(seq, error = %why, "a logged event does not apply; skipped");
                }
            }
            Record::ExperimentStarted(x) => {
                if seq > self.book.seq {
                    self.book.start(x, seq);
                }
            }
            Record::ExperimentStopped { name, ts_ms } => {
                if seq > self.book.seq {
                    self.book.stop(&name, ts_ms, seq);
                }
            }
            Record::Exposures(xs) => {
                if seq > self.book.seq {
                    self.book.expose(&xs, seq);
                }
            }
            Record::Identities(links) => {
                if seq > self.identities.seq {
                    links.into_iter().for_each(|l| self.identities.table.upsert(l));
                    self.identities.seq = seq;
                }
            }
        }
        self.replayed += 1;
    }

    /// Writes what was recovered as a snapshot at `seq` (before damaged files are moved
    /// aside, so that the records read from them are kept).
    fn write_snapshot(&mut self, dir: &std::path::Path, seq: u64) -> Result<(), StoreError> {
        let chunks = snapshot::serialize(
            seq,
            self.shards.iter(),
            || &self.hosts,
            || &self.identities,
            || &self.book,
            || &self.event_ids,
        );
        snapshot::write(dir, seq, &chunks)?;
        snapshot::remove_older(dir, seq)?;
        self.snapshot_seq = seq;
        Ok(())
    }
}

pub(super) fn open(options: StoreOptions) -> Result<Arc<ProfileStore>, StoreError> {
    let dir = options.dir.clone();
    std::fs::create_dir_all(&dir).map_err(|e| StoreError::io(&dir, e))?;
    let folder_lock = lock_folder(&dir)?;
    let started = Instant::now();
    let mut r = Recovering::from_snapshot(&options)?;
    let found = log::recover(&dir, r.snapshot_seq, &mut |seq, payload| {
        let record: Record = postcard::from_bytes(payload).map_err(|e| StoreError::Corrupt {
            path: dir.display().to_string(),
            reason: format!("log record {seq} does not decode: {e}"),
        })?;
        r.apply(seq, record);
        Ok(())
    })?;
    if !options.accept_log_damage
        && let Some(refusal) = found.refusal()
    {
        return Err(refusal);
    }
    let (writer, log_damage) =
        found.finish(&dir, options.durability, options.segment_bytes, |seq| r.write_snapshot(&dir, seq))?;
    let Recovering { shards, hosts, identities, book, event_ids, snapshot_seq, replayed: recovered } = r;
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
        event_ids: Mutex::new(event_ids),
        experiments: Mutex::new(book),
        running,
        exposed,
        snapshotting: Mutex::new(()),
        queue: Mutex::default(),
        log: Mutex::new(LogState {
            writer,
            write_error: None,
            snapshot_seq,
            last_snapshot: Instant::now(),
            snapshot_backoff: None,
            scratch: Vec::new(),
        }),
        options,
        counters: Counters::default(),
        recovered_records: recovered,
        log_damage,
        _lock: folder_lock,
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
