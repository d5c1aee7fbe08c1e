//! The event-id index: the ids of the events taken in over the duplicate horizon, so that
//! an event sent again is answered `duplicate` (never `late`) for that long, in bounded
//! memory.
//!
//! - An id is kept as a 128-bit xxh3 hash whose lowest 16 bits are replaced by the
//!   number of its event's 10-minute bucket: 16 bytes an id (plus the hash table's
//!   slack), and two ids are taken for one when the other 112 bits agree (for a table of
//!   ten million ids, about one new event in 10^27).
//! - The horizon counts in event time, behind the newest event time taken in (default
//!   6 hours): whole buckets older than that are dropped as the newest time moves on.
//!   Event time, not arrival time, so that replaying the log rebuilds the index exactly
//!   and a replay of old data is deduplicated like live data.
//! - At most `max_ids` ids are kept: over the cap, the oldest buckets are dropped before
//!   their time, which shortens the horizon; the ids dropped so are counted
//!   ([`EventIds::evicted_early`]).
//!
//! Events older than the horizon when they arrive are not kept here; each user's own
//! recent ids (see the store) still keep them from being applied twice.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::hash::{BuildHasherDefault, Hash, Hasher};

/// Width of a bucket, in milliseconds of event time.
pub(crate) const BUCKET_MS: i64 = 10 * 60_000;
/// Default horizon: 6 hours.
pub const DEFAULT_DEDUP_HORIZON_MS: i64 = 6 * 3_600_000;
/// Longest horizon: 30 days (bucket numbers are kept modulo 65,536, 455 days).
pub const MAX_DEDUP_HORIZON_MS: i64 = 30 * 86_400_000;
/// Default cap on ids kept: 7 Mi ids, which fill a hash table of 8 Mi slots (about
/// 136 MiB).
pub const DEFAULT_DEDUP_MAX_IDS: usize = 7 << 20;

const TAG_BITS: u64 = 0xFFFF;

/// An event id's hash, with its bucket in the low 16 bits (ignored by equality).
#[derive(Debug, Clone, Copy)]
pub(crate) struct IdKey {
    hi: u64,
    lo: u64,
}

impl IdKey {
    /// The key of an event id (no bucket).
    pub(crate) fn of(event_id: &str) -> IdKey {
        let h = twox_hash::XxHash3_128::oneshot(event_id.as_bytes());
        IdKey { hi: (h >> 64) as u64, lo: h as u64 & !TAG_BITS }
    }

    fn tagged(self, bucket: i64) -> IdKey {
        IdKey { hi: self.hi, lo: (self.lo & !TAG_BITS) | (bucket as u64 & TAG_BITS) }
    }

    fn tag(&self) -> u16 {
        (self.lo & TAG_BITS) as u16
    }
}

impl PartialEq for IdKey {
    fn eq(&self, other: &Self) -> bool {
        self.hi == other.hi && (self.lo ^ other.lo) & !TAG_BITS == 0
    }
}

impl Eq for IdKey {}

impl Hash for IdKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hi);
    }
}

/// The key is already a hash: the table uses its first word as it is.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type IdSet = HashSet<IdKey, BuildHasherDefault<KeyHasher>>;

/// The index, and the sequence number of the last event it took in.
#[derive(Debug, Default)]
pub(crate) struct EventIds {
    ids: IdSet,
    /// Ids per bucket number.
    buckets: BTreeMap<i64, u64>,
    newest_ms: Option<i64>,
    horizon_ms: i64,
    max_ids: usize,
    evicted_early: u64,
    /// Event time up to which ids were dropped before their time (by the cap).
    dropped_until_ms: Option<i64>,
    pub(crate) seq: u64,
}

impl EventIds {
    /// An empty index.
    #[cfg(test)]
    pub(crate) fn new(horizon_ms: i64, max_ids: usize) -> EventIds {
        EventIds { horizon_ms: horizon_ms.clamp(0, MAX_DEDUP_HORIZON_MS), max_ids, ..Default::default() }
    }

    /// Applies the configured horizon and cap (to an index loaded from a snapshot).
    pub(crate) fn set_limits(&mut self, horizon_ms: i64, max_ids: usize) {
        self.horizon_ms = horizon_ms.clamp(0, MAX_DEDUP_HORIZON_MS);
        self.max_ids = max_ids;
        self.expire();
        self.enforce_cap();
    }

    /// Whether an event with this id was taken in within the horizon.
    pub(crate) fn contains(&self, key: &IdKey) -> bool {
        self.ids.contains(key)
    }

    /// Records an event taken in at `ts_ms` (kept when within the horizon).
    pub(crate) fn insert(&mut self, key: IdKey, ts_ms: i64) {
        if self.newest_ms.is_none_or(|n| ts_ms > n) {
            self.newest_ms = Some(ts_ms);
            self.expire();
        }
        let newest = self.newest_ms.unwrap_or(ts_ms);
        if ts_ms < newest.saturating_sub(self.horizon_ms) {
            return;
        }
        let bucket = ts_ms.div_euclid(BUCKET_MS);
        if self.ids.insert(key.tagged(bucket)) {
            *self.buckets.entry(bucket).or_default() += 1;
        }
        self.enforce_cap();
    }

    /// Drops the buckets wholly older than the horizon.
    fn expire(&mut self) {
        let Some(newest) = self.newest_ms else { return };
        let bound = newest.saturating_sub(self.horizon_ms);
        let old: Vec<i64> =
            self.buckets.keys().copied().take_while(|b| (b + 1).saturating_mul(BUCKET_MS) <= bound).collect();
        self.drop_buckets(&old);
    }

    /// Drops the oldest buckets while over the cap.
    fn enforce_cap(&mut self) {
        while self.ids.len() > self.max_ids {
            let Some(&oldest) = self.buckets.keys().next() else { break };
            self.evicted_early += self.drop_buckets(&[oldest]);
            let end = (oldest + 1).saturating_mul(BUCKET_MS);
            self.dropped_until_ms = Some(self.dropped_until_ms.map_or(end, |d| d.max(end)));
        }
    }

    fn drop_buckets(&mut self, buckets: &[i64]) -> u64 {
        if buckets.is_empty() {
            return 0;
        }
        let tags: Vec<u16> = buckets.iter().map(|b| (*b as u64 & TAG_BITS) as u16).collect();
        self.ids.retain(|k| !tags.contains(&k.tag()));
        buckets.iter().filter_map(|b| self.buckets.remove(b)).sum()
    }

    /// Ids kept.
    pub(crate) fn len(&self) -> usize {
        self.ids.len()
    }

    /// Ids dropped before their horizon because of the cap, over the store's life.
    pub(crate) fn evicted_early(&self) -> u64 {
        self.evicted_early
    }

    /// How far behind the newest event time the ids kept reach, in milliseconds: the
    /// horizon, or less when the cap dropped buckets before their time.
    pub(crate) fn kept_horizon_ms(&self) -> i64 {
        match (self.newest_ms, self.dropped_until_ms) {
            (Some(newest), Some(dropped)) => newest.saturating_sub(dropped).clamp(0, self.horizon_ms),
            _ => self.horizon_ms,
        }
    }
}

/// The index as a snapshot holds it.
#[derive(Serialize, Deserialize)]
struct Stored {
    seq: u64,
    newest_ms: Option<i64>,
    evicted_early: u64,
    dropped_until_ms: Option<i64>,
    buckets: Vec<(i64, u64)>,
    /// 16 bytes an id: the two words, little-endian.
    ids: Vec<u8>,
}

impl Serialize for EventIds {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut ids = Vec::with_capacity(self.ids.len() * 16);
        for k in &self.ids {
            ids.extend_from_slice(&k.hi.to_le_bytes());
            ids.extend_from_slice(&k.lo.to_le_bytes());
        }
        Stored {
            seq: self.seq,
            newest_ms: self.newest_ms,
            evicted_early: self.evicted_early,
            dropped_until_ms: self.dropped_until_ms,
            buckets: self.buckets.iter().map(|(b, n)| (*b, *n)).collect(),
            ids,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for EventIds {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let stored = Stored::deserialize(d)?;
        if stored.ids.len() % 16 != 0 {
            return Err(serde::de::Error::custom("event ids are not 16 bytes each"));
        }
        let mut ids = IdSet::with_capacity_and_hasher(stored.ids.len() / 16, Default::default());
        for c in stored.ids.chunks_exact(16) {
            let word = |i: usize| u64::from_le_bytes(c[i..i + 8].try_into().expect("8 bytes"));
            ids.insert(IdKey { hi: word(0), lo: word(8) });
        }
        Ok(EventIds {
            ids,
            buckets: stored.buckets.into_iter().collect(),
            newest_ms: stored.newest_ms,
            horizon_ms: DEFAULT_DEDUP_HORIZON_MS,
            max_ids: DEFAULT_DEDUP_MAX_IDS,
            evicted_early: stored.evicted_early,
            dropped_until_ms: stored.dropped_until_ms,
            seq: stored.seq,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;

    #[test]
    fn ids_are_kept_for_the_horizon_behind_the_newest_event_time() {
        let mut x = EventIds::new(6 * HOUR, 1000);
        let t0 = 1_700_000_000_000 - 1_700_000_000_000 % BUCKET_MS;
        for h in 0..10 {
            x.insert(IdKey::of(&format!("e{h}")), t0 + h * HOUR);
        }
        // Newest at t0 + 9 h: ids from t0 + 3 h on are kept, none older than a bucket past it.
        let kept: Vec<i64> = (0..10).filter(|h| x.contains(&IdKey::of(&format!("e{h}")))).collect();
        assert_eq!(kept, [3, 4, 5, 6, 7, 8, 9]);
        assert_eq!((x.len(), x.evicted_early(), x.kept_horizon_ms()), (7, 0, 6 * HOUR));
        // An event older than the horizon is not kept.
        x.insert(IdKey::of("old"), t0);
        assert!(!x.contains(&IdKey::of("old")));
    }

    #[test]
    fn the_cap_drops_the_oldest_buckets_and_counts_them() {
        let mut x = EventIds::new(6 * HOUR, 100);
        let t0 = 1_700_000_000_000 - 1_700_000_000_000 % BUCKET_MS;
        for i in 0..1000 {
            x.insert(IdKey::of(&format!("e{i}")), t0 + i * 60_000);
            assert!(x.len() <= 100);
        }
        assert!(x.contains(&IdKey::of("e999")));
        assert!(!x.contains(&IdKey::of("e800")));
        // The cap is hit long before the horizon: every id dropped went early.
        assert_eq!(x.evicted_early() + x.len() as u64, 1000);
        assert!(x.kept_horizon_ms() < 2 * HOUR, "{}", x.kept_horizon_ms());

        let bytes = postcard::to_stdvec(&x).unwrap();
        let mut back: EventIds = postcard::from_bytes(&bytes).unwrap();
        back.set_limits(6 * HOUR, 100);
        assert_eq!((back.len(), back.evicted_early()), (x.len(), x.evicted_early()));
        assert!(back.contains(&IdKey::of("e999")));
    }
}
