//! The offline driver's core: user features from a user's whole, time-sorted history.
//!
//! Deliberately a different algorithm from the online driver (no cursors, no removal):
//! cumulative sums per event and a binary search per window. A plain scan is kept as the
//! reference; the property tests check that all three give identical vectors.

use crate::aggregates::{
    FeatureEvent, N_SLOTS, N_WINDOWS, Recency, WINDOWS_MS, add_amount, contributions, derive_user_features, in_order,
    sums_of,
};

/// Applies the arrival-order rule to one user's events in file order: returns the
/// accepted events sorted by time, and the positions (in the input) of rejected ones.
pub fn accept_in_arrival_order(events: &[FeatureEvent]) -> (Vec<FeatureEvent>, Vec<usize>) {
    let mut newest: Option<i64> = None;
    let mut accepted = Vec::with_capacity(events.len());
    let mut rejected = Vec::new();
    for (i, e) in events.iter().enumerate() {
        if in_order(newest, e.ts_ms) {
            newest = Some(newest.map_or(e.ts_ms, |n| n.max(e.ts_ms)));
            accepted.push(*e);
        } else {
            rejected.push(i);
        }
    }
    accepted.sort_by_key(|e| e.ts_ms);
    (accepted, rejected)
}

/// Cumulative slot sums over one user's time-sorted events: any window's sums are a
/// difference of two rows found by binary search, so a table of many as-of times costs
/// O(log n) per window instead of a scan. Cumulative sums saturate at `i64::MAX`; a
/// window ending at a saturated row is summed directly over its events instead (the
/// difference of saturated rows would be wrong), which gives the online driver's
/// saturated sums.
#[derive(Debug, Clone)]
pub struct PrefixSums<'a> {
    events: &'a [FeatureEvent],
    /// `cum[i]`: sums over `events[..i]`.
    cum: Vec<[i64; N_SLOTS]>,
    /// `last_order[i]`: newest order time in `events[..i]`.
    last_order: Vec<Option<i64>>,
}

impl<'a> PrefixSums<'a> {
    /// Builds the prefix sums of time-sorted events.
    pub fn new(events: &'a [FeatureEvent]) -> Self {
        let mut cum = Vec::with_capacity(events.len() + 1);
        let mut last_order = Vec::with_capacity(events.len() + 1);
        let mut row = [0i64; N_SLOTS];
        let mut lo: Option<i64> = None;
        cum.push(row);
        last_order.push(lo);
        for e in events {
            contributions(e, |slot, a| add_amount(&mut row[slot], a));
            if e.kind == liveprofile_events::EventKind::Order {
                lo = Some(lo.map_or(e.ts_ms, |t| t.max(e.ts_ms)));
            }
            cum.push(row);
            last_order.push(lo);
        }
        PrefixSums { events, cum, last_order }
    }

    /// Features as of `as_of_ms` over `events[..end]` (those at or before `as_of_ms`).
    pub fn features(&self, end: usize, as_of_ms: i64, out: &mut Vec<f32>) {
        let prefix = &self.events[..end];
        let hi = prefix.partition_point(|e| e.ts_ms <= as_of_ms);
        let mut sums = [[0i64; N_SLOTS]; N_WINDOWS];
        for (w, len) in WINDOWS_MS.iter().enumerate() {
            let lo = prefix[..hi].partition_point(|e| e.ts_ms <= as_of_ms - len);
            if self.cum[hi].contains(&i64::MAX) {
                sums[w] = sums_of(&prefix[lo..hi]);
            } else {
                for (s, v) in sums[w].iter_mut().enumerate() {
                    *v = self.cum[hi][s] - self.cum[lo][s];
                }
            }
        }
        let recency =
            Recency { last_event_ms: prefix[..hi].iter().map(|e| e.ts_ms).max(), last_order_ms: self.last_order[hi] };
        derive_user_features(&sums, &recency, as_of_ms, out);
    }
}

/// User features as of `as_of_ms` from a user's accepted events sorted by time (the
/// offline driver, by prefix sums).
pub fn user_features_as_of(events: &[FeatureEvent], as_of_ms: i64, out: &mut Vec<f32>) {
    PrefixSums::new(events).features(events.len(), as_of_ms, out);
}

/// The same by a direct scan over the events (any order): the plainest statement of the
/// definition, kept as a reference for the tests.
pub fn user_features_by_scan(events: &[FeatureEvent], as_of_ms: i64, out: &mut Vec<f32>) {
    let mut sums = [[0i64; N_SLOTS]; N_WINDOWS];
    let mut recency = Recency::default();
    for e in events.iter().filter(|e| e.ts_ms <= as_of_ms) {
        recency.observe(e.ts_ms, e.kind);
        let age = as_of_ms - e.ts_ms;
        for (w, len) in WINDOWS_MS.iter().enumerate() {
            if age < *len {
                let s = &mut sums[w];
                contributions(e, |slot, a| add_amount(&mut s[slot], a));
            }
        }
    }
    derive_user_features(&sums, &recency, as_of_ms, out);
}
