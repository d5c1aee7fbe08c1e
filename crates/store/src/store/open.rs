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

pub(super) fn open(options: StoreOptions) -> Result<Arc<ProfileStore>, StoreError> {
    let dir = options.dir.clone();
    std::fs::create_dir_all(&dir).map_err(|e| StoreError::io(&dir, e))?;
    let folder_lock = lock_folder(&dir)?;
    let started = Instant::now();
    let mut shards: Vec<Shard> = (0..options.shards.max(1)).map(|_| Shard::default()).collect();
    let mut hosts = Hosts::default();
    let mut identities = Identities::default();
    let mut book = ExperimentBook::default();
    let mut event_ids = EventIds::default();
    let mut snapshot_seq = 0;
    if let Some(parts) = snapshot::load_newest(&dir)? {
        snapshot_seq = parts.seq;
        hosts = parts.hosts;
        identities = parts.identities;
        book = parts.experiments;
        event_ids = parts.event_ids;
        if parts.shards.len() != shards.len() {
            // Each shard's sequence number is only valid for its own users: keep the
            // snapshot's sharding.
            tracing::info!(snapshot = parts.shards.len(), asked = shards.len(), "keeping the snapshot's shard count");
        }
        shards = parts.shards;
    }
    event_ids.set_limits(options.dedup_horizon_ms(), options.dedup_max_ids);
    let shard_count = shards.len();
    let mut recovered = 0u64;
    // A snapshot is taken while events keep arriving: each part knows the last record it
    // holds, and a record is applied to the parts that do not hold it yet. Every logged
    // event was accepted when it was logged: it is applied as it is.
    let found = log::recover(&dir, snapshot_seq, &mut |seq, payload| {
        let record: Record = postcard::from_bytes(payload).map_err(|e| StoreError::Corrupt {
            path: dir.display().to_string(),
            reason: format!("log record {seq} does not decode: {e}"),
        })?;
        match record {
            Record::Event(e) if e.validate().is_err() => {
                // Every event was checked before it was logged: one that breaks the contract
                // was damaged on the disk past its checksum, or logged under looser limits.
                // Applied, it could wrap the window sums; it is skipped, loudly.
                let why = e.validate().err().map(|w| w.to_string()).unwrap_or_default();
                tracing::error!(seq, error = %why, "a logged event breaks the event contract; skipped");
            }
            Record::Event(e) => {
                if seq > hosts.seq {
                    hosts.book.observe(&e);
                    hosts.seq = seq;
                }
                if seq > book.seq {
                    book.observe(&e, seq);
                }
                if seq > event_ids.seq {
                    event_ids.insert(IdKey::of(&e.event_id), e.ts_ms);
                    event_ids.seq = seq;
                }
                let shard = &mut shards[shard_of(&e.user_id, shard_count)];
                if seq > shard.seq
                    && let Err(why) = apply_event(shard, &e, seq)
                {
                    tracing::warn!(seq, error = %why, "a logged event does not apply; skipped");
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
    if !options.accept_log_damage
        && let Some(refusal) = found.refusal()
    {
        return Err(refusal);
    }
    // When damage is accepted, what was recovered becomes a snapshot before the damaged
    // files are moved aside, so that the records read from them are kept.
    let (writer, log_damage) = found.finish(&dir, options.durability, options.segment_bytes, |seq| {
        let chunks = snapshot::serialize(seq, shards.iter(), || &hosts, || &identities, || &book, || &event_ids);
        snapshot::write(&dir, seq, &chunks)?;
        snapshot::remove_older(&dir, seq)?;
        snapshot_seq = seq;
        Ok(())
    })?;
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
