//! The online driver: per-user state updated per event in amortized constant time.
//!
//! The state keeps the user's events of the longest window in time order, one cursor per
//! window marking where the window starts, and the window sums. Moving the horizon
//! forward subtracts the events a cursor passes; every event is added and removed at
//! most once per window. Late events (within the tolerance) are inserted in order.
//!
//! Sums saturate at `i64::MAX` ([`add_amount`]). A saturated sum no longer knows its
//! true total, so when an event leaves a window whose sum is saturated, that window's
//! sums are counted again from the events still inside it (held anyway): the result is
//! the offline driver's, bit for bit, at a cost paid only past the range.

use crate::aggregates::{
    FeatureEvent, N_SLOTS, N_WINDOWS, Recency, WINDOWS_MS, WindowSums, add_amount, contributions, derive_user_features,
    in_order, sums_of,
};
use liveprofile_events::LIVE_CATEGORIES;
use std::collections::VecDeque;

/// Why the online state refused an event or a query.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OnlineError {
    /// The event is older than the newest event by more than the tolerance.
    #[error(
        "event at {ts_ms} is out of order: newest event of the user is at {newest_ms} (tolerance {tolerance_ms} ms)"
    )]
    OutOfOrder {
        /// The event time.
        ts_ms: i64,
        /// The newest accepted event time.
        newest_ms: i64,
        /// The tolerance.
        tolerance_ms: i64,
    },
    /// Features were asked for a time before events already taken in.
    #[error("features as of {as_of_ms} asked after the state moved to {horizon_ms}")]
    QueryInPast {
        /// The time asked for.
        as_of_ms: i64,
        /// The state's horizon.
        horizon_ms: i64,
    },
}

/// One user's online feature state.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct UserState {
    events: VecDeque<FeatureEvent>,
    /// `start[w]`: index in `events` of the first event inside window `w`.
    start: [usize; N_WINDOWS],
    #[serde(with = "flat_sums")]
    sums: WindowSums,
    horizon_ms: i64,
    newest_ms: Option<i64>,
    recency: Recency,
}

impl UserState {
    /// Checks what the methods keep true of a state, for a state read back from disk:
    /// every window's first event is within the events held, longer windows start no
    /// later than shorter ones, no window sum is negative, and each window's sums are
    /// those of its events (one pass over the events per window).
    pub fn check(&self) -> Result<(), String> {
        let held = self.events.len();
        if let Some(w) = self.start.iter().position(|&s| s > held) {
            return Err(format!("window {w} starts at event {} of {held} held", self.start[w]));
        }
        if self.start.windows(2).any(|p| p[1] > p[0]) {
            return Err(format!("window starts {:?} are not ordered from the shortest window", self.start));
        }
        if self.sums.iter().flatten().any(|&v| v < 0) {
            return Err("a window sum is negative".to_owned());
        }
        let bad_event = self.events.iter().position(|e| {
            e.category.is_some_and(|c| c as usize >= LIVE_CATEGORIES.len()) || !(e.value.is_finite() && e.value >= 0.0)
        });
        if let Some(i) = bad_event {
            return Err(format!("event {i} has a category or value no event can have"));
        }
        if self.events.iter().zip(self.events.iter().skip(1)).any(|(a, b)| a.ts_ms > b.ts_ms) {
            return Err("the events are not in time order".to_owned());
        }
        // Each window starts after the events its horizon has left behind (what observe and
        // advance keep true); a start set elsewhere puts the next event's amounts in a sum
        // whose events do not hold it.
        for (w, (len, &start)) in WINDOWS_MS.iter().zip(&self.start).enumerate() {
            let left = if self.horizon_ms == i64::MIN {
                0
            } else {
                let bound = self.horizon_ms.saturating_sub(*len);
                self.events.partition_point(|e| e.ts_ms <= bound)
            };
            if start != left {
                return Err(format!("window {w} starts at event {start}, its horizon at event {left}"));
            }
        }
        for (w, (sums, &start)) in self.sums.iter().zip(&self.start).enumerate() {
            if *sums != sums_of(self.events.range(start..)) {
                return Err(format!("window {w}'s sums are not those of its events"));
            }
        }
        Ok(())
    }
}

impl Default for UserState {
    fn default() -> Self {
        UserState {
            events: VecDeque::new(),
            start: [0; N_WINDOWS],
            sums: [[0; N_SLOTS]; N_WINDOWS],
            horizon_ms: i64::MIN,
            newest_ms: None,
            recency: Recency::default(),
        }
    }
}

impl UserState {
    /// Takes in one event (arrival order). Rejects events older than the newest one by
    /// more than [`crate::aggregates::OUT_OF_ORDER_TOLERANCE_MS`].
    pub fn observe(&mut self, e: FeatureEvent) -> Result<(), OnlineError> {
        if !in_order(self.newest_ms, e.ts_ms) {
            let newest_ms = self.newest_ms.unwrap_or(i64::MIN);
            return Err(OnlineError::OutOfOrder {
                ts_ms: e.ts_ms,
                newest_ms,
                tolerance_ms: crate::aggregates::OUT_OF_ORDER_TOLERANCE_MS,
            });
        }
        self.newest_ms = Some(self.newest_ms.map_or(e.ts_ms, |n| n.max(e.ts_ms)));
        self.recency.observe(e.ts_ms, e.kind);
        // Insert after every event with the same or an earlier time (scan from the back:
        // late events are close to the end).
        let mut pos = self.events.len();
        while pos > 0 && self.events[pos - 1].ts_ms > e.ts_ms {
            pos -= 1;
        }
        self.events.insert(pos, e);
        for ((len, sums), start) in WINDOWS_MS.iter().zip(&mut self.sums).zip(&mut self.start) {
            let inside = self.horizon_ms == i64::MIN || e.ts_ms > self.horizon_ms - len;
            if inside {
                contributions(&e, |s, a| add_amount(&mut sums[s], a));
            } else {
                *start += 1; // it sits before the window's start
            }
        }
        self.advance(e.ts_ms.max(self.horizon_ms));
        Ok(())
    }

    fn advance(&mut self, to_ms: i64) {
        if to_ms <= self.horizon_ms {
            return;
        }
        self.horizon_ms = to_ms;
        for ((len, sums), start) in WINDOWS_MS.iter().zip(&mut self.sums).zip(&mut self.start) {
            let bound = to_ms - len;
            let mut saturated = false;
            while *start < self.events.len() && self.events[*start].ts_ms <= bound {
                let e = self.events[*start];
                contributions(&e, |s, a| {
                    if sums[s] == i64::MAX {
                        saturated = true; // the true total is unknown: counted again below
                    } else {
                        // What leaves a window was added to it, so this never goes below
                        // zero for checked events; saturating keeps a damaged history from
                        // wrapping a sum.
                        sums[s] = sums[s].saturating_sub(a);
                    }
                });
                *start += 1;
            }
            if saturated {
                *sums = sums_of(self.events.range(*start..));
            }
        }
        // The longest window starts first; everything before it is no longer needed.
        let drop = self.start[N_WINDOWS - 1];
        if drop > 0 {
            self.events.drain(..drop);
            for s in &mut self.start {
                *s -= drop;
            }
        }
    }

    /// The user's feature vector as of `as_of_ms` (not before the newest event taken in).
    pub fn features(&mut self, as_of_ms: i64, out: &mut Vec<f32>) -> Result<(), OnlineError> {
        if as_of_ms < self.horizon_ms {
            return Err(OnlineError::QueryInPast { as_of_ms, horizon_ms: self.horizon_ms });
        }
        self.advance(as_of_ms);
        derive_user_features(&self.sums, &self.recency, as_of_ms, out);
        Ok(())
    }

    /// Newest event time taken in.
    pub fn newest_ms(&self) -> Option<i64> {
        self.newest_ms
    }

    /// Time the window sums are as of (the newest event or the latest query).
    pub fn horizon_ms(&self) -> i64 {
        self.horizon_ms
    }

    /// Whether an event at `ts_ms` would be taken in (not older than the newest event by
    /// more than the tolerance).
    pub fn accepts(&self, ts_ms: i64) -> bool {
        in_order(self.newest_ms, ts_ms)
    }

    /// Events held (those inside the longest window).
    pub fn held_events(&self) -> usize {
        self.events.len()
    }
}

/// Window sums as one flat sequence (serde derives arrays only up to 32 elements).
mod flat_sums {
    use crate::aggregates::{N_SLOTS, N_WINDOWS, WindowSums};
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(sums: &WindowSums, s: S) -> Result<S::Ok, S::Error> {
        let flat: Vec<i64> = sums.iter().flatten().copied().collect();
        flat.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<WindowSums, D::Error> {
        let flat = Vec::<i64>::deserialize(d)?;
        if flat.len() != N_SLOTS * N_WINDOWS {
            return Err(D::Error::custom(format!(
                "window sums hold {} values, expected {}",
                flat.len(),
                N_SLOTS * N_WINDOWS
            )));
        }
        let mut sums = [[0; N_SLOTS]; N_WINDOWS];
        for (row, chunk) in sums.iter_mut().zip(flat.chunks_exact(N_SLOTS)) {
            row.copy_from_slice(chunk);
        }
        Ok(sums)
    }
}

#[cfg(test)]
mod state_checks {
    use super::*;
    use liveprofile_events::{EventKind, Platform};

    /// Found by the store_recovery fuzz target: a snapshot whose checksums were fixed after
    /// damage held a user whose window started past the events held, and the next event
    /// panicked the state.
    #[test]
    fn a_state_read_back_with_inconsistent_windows_is_refused() {
        assert_eq!(UserState::default().check(), Ok(()));
        let past = UserState { start: [69, 0, 0, 0], ..Default::default() };
        assert_eq!(past.check(), Err("window 0 starts at event 69 of 0 held".to_owned()));
        let mut negative = UserState::default();
        negative.sums[1][0] = -1;
        assert_eq!(negative.check(), Err("a window sum is negative".to_owned()));
        let mut made_up = UserState::default();
        made_up.sums[2][3] = 5;
        assert_eq!(made_up.check(), Err("window 2's sums are not those of its events".to_owned()));
        let event = FeatureEvent {
            ts_ms: 0,
            platform: Platform::Douyin,
            kind: EventKind::Order,
            category: Some(200),
            value: 1.0,
            coupon: false,
        };
        let mut forged = UserState::default();
        forged.events.push_back(event);
        assert_eq!(forged.check(), Err("event 0 has a category or value no event can have".to_owned()));
        // A state the methods built passes, also with events leaving their windows.
        let mut built = UserState::default();
        for (i, kind) in
            [EventKind::Enter, EventKind::Order, EventKind::Leave].into_iter().cycle().take(300).enumerate()
        {
            let e = FeatureEvent {
                ts_ms: i as i64 * 3_600_000,
                platform: Platform::Douyin,
                kind,
                category: Some(1),
                value: 12.5,
                coupon: false,
            };
            built.observe(e).unwrap();
        }
        assert_eq!(built.check(), Ok(()));
        // Found by the store_recovery fuzz target: a window start that its horizon does not
        // put there (sums consistent with it) made the next event's sums disagree.
        let mut moved = built.clone();
        moved.start[0] -= 1;
        moved.sums[0] = sums_of(moved.events.range(moved.start[0]..));
        let (start, left) = (moved.start[0], built.start[0]);
        assert_eq!(moved.check(), Err(format!("window 0 starts at event {start}, its horizon at event {left}")));
    }
}
