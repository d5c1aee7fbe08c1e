//! The offline driver's core: user features by a direct scan over a user's events.
//!
//! Deliberately a different algorithm from the online driver (no cursors, no removal):
//! every event at or before the cut-off is added to each window that contains it. The
//! property test checks that both give identical vectors.

use crate::aggregates::{
    FeatureEvent, N_SLOTS, N_WINDOWS, Recency, WINDOWS_MS, contributions, derive_user_features,
    in_order,
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

/// User features as of `as_of_ms` from a user's accepted events (any order).
pub fn user_features_as_of(events: &[FeatureEvent], as_of_ms: i64, out: &mut Vec<f32>) {
    let mut sums = [[0i64; N_SLOTS]; N_WINDOWS];
    let mut recency = Recency::default();
    for e in events.iter().filter(|e| e.ts_ms <= as_of_ms) {
        recency.observe(e.ts_ms, e.kind);
        let age = as_of_ms - e.ts_ms;
        for (w, len) in WINDOWS_MS.iter().enumerate() {
            if age < *len {
                let s = &mut sums[w];
                contributions(e, |slot, a| s[slot] += a);
            }
        }
    }
    derive_user_features(&sums, &recency, as_of_ms, out);
}
