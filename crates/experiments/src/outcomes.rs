//! Per-experiment outcome accumulators: for every user, what they did in the experiment's
//! target before their first exposure (the covariate, from `covariate_days` before the
//! start) and from it until the end, kept as [`Sums`] that events update one at a time.
//!
//! The same accumulator serves the live figures (the profile store feeds it exposures and
//! events as they arrive, and keeps it in its snapshots) and the offline report (fed the
//! exposure file, then the event file), so both agree exactly: sums are integers (see
//! [`Sums`]), so the order of events does not change them.
//!
//! Live, an event may arrive before the exposure it should count after. Exposure times
//! are the answer's wall-clock time, and an accepted event is at most
//! [`MAX_FUTURE_SKEW_MS`] ahead of the wall clock when it arrives; the accumulator's clock
//! is the newest event time it has seen. So an event of a not-yet-exposed user that is
//! older than the clock minus the skew is before any later exposure (pre), and a newer one
//! waits in a short per-user list until an exposure or the clock settles it. The rule
//! uses event times only, so replaying the store's log gives the same state.

use crate::definition::Experiment;
use crate::exposure::Exposure;
use crate::metric::Sums;
use liveprofile_events::{Event, EventKind, Platform};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Most an accepted event may be ahead of the wall clock (the profile store's rule).
pub const MAX_FUTURE_SKEW_MS: i64 = 5 * 60 * 1000;

/// A user's first exposure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirstExposure {
    /// Arm index in the definition.
    pub arm: u16,
    /// Time (UTC ms).
    pub ts_ms: i64,
    /// Platform of the answer.
    pub platform: Platform,
    /// Category of the answer.
    pub category: String,
    /// Live room of the answer, if any.
    pub room_id: Option<String>,
}

/// An event waiting to be placed before or after an exposure.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Pending {
    ts_ms: i64,
    kind: EventKind,
    platform: Platform,
    value: f64,
}

/// One user's outcome.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UserOutcome {
    /// First exposure, once there is one.
    pub exposure: Option<FirstExposure>,
    /// Before the first exposure (from the covariate start).
    pub pre: Sums,
    /// From the first exposure to the end.
    pub post: Sums,
    pending: Vec<Pending>,
}

impl UserOutcome {
    fn place(&mut self, p: Pending) {
        match &self.exposure {
            Some(x) if p.ts_ms >= x.ts_ms => self.post.add(p.kind, p.platform, p.value),
            _ => self.pre.add(p.kind, p.platform, p.value),
        }
    }
}

/// One exposed user's row for the analysis.
#[derive(Debug, Clone, PartialEq)]
pub struct UserRow {
    /// Unified user id.
    pub user_id: String,
    /// Arm index.
    pub arm: usize,
    /// Platform of the first exposure.
    pub platform: Platform,
    /// Category of the first exposure.
    pub category: String,
    /// Live room of the first exposure, if any.
    pub room_id: Option<String>,
    /// First exposure time (UTC ms).
    pub first_exposure_ms: i64,
    /// Before the first exposure.
    pub pre: Sums,
    /// After it.
    pub post: Sums,
}

/// An exposure that does not fit the experiment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("exposure of user {user_id:?} to experiment {experiment}: {reason}")]
pub struct ExposureError {
    /// User.
    pub user_id: String,
    /// Experiment.
    pub experiment: String,
    /// What is wrong.
    pub reason: String,
}

/// Outcomes of one experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentOutcomes {
    experiment: Experiment,
    /// Newest in-scope event time seen.
    clock_ms: i64,
    /// Whether users not (yet) exposed are tracked (live) or ignored (offline, where every
    /// exposure is known before the events).
    track_unexposed: bool,
    users: HashMap<String, UserOutcome>,
    exposed: u64,
    /// Events counted (in the target and the window).
    events: u64,
    /// Time the experiment was stopped early, if it was.
    stopped_ms: Option<i64>,
}

impl ExperimentOutcomes {
    /// A live accumulator: exposures and events in arrival order.
    pub fn live(experiment: Experiment) -> Self {
        Self::new(experiment, true)
    }

    /// An offline accumulator: every exposure first, then the events in any order.
    pub fn offline(experiment: Experiment) -> Self {
        Self::new(experiment, false)
    }

    fn new(experiment: Experiment, track_unexposed: bool) -> Self {
        ExperimentOutcomes {
            experiment,
            clock_ms: i64::MIN,
            track_unexposed,
            users: HashMap::new(),
            exposed: 0,
            events: 0,
            stopped_ms: None,
        }
    }

    /// The definition.
    pub fn experiment(&self) -> &Experiment {
        &self.experiment
    }

    /// Users exposed so far.
    pub fn exposed_users(&self) -> u64 {
        self.exposed
    }

    /// Users held (exposed or not).
    pub fn tracked_users(&self) -> usize {
        self.users.len()
    }

    /// Events counted.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// When the experiment was stopped early.
    pub fn stopped_ms(&self) -> Option<i64> {
        self.stopped_ms
    }

    /// Stops the experiment at `ts_ms`: later answers are stable, later events still count
    /// for users exposed before (until the planned end).
    pub fn stop(&mut self, ts_ms: i64) {
        self.stopped_ms.get_or_insert(ts_ms);
    }

    /// Whether the experiment answers at `ts_ms` (inside its window and not stopped).
    pub fn is_active_at(&self, ts_ms: i64) -> bool {
        self.experiment.is_running_at(ts_ms) && self.stopped_ms.is_none_or(|s| ts_ms < s)
    }

    /// Whether a user has been exposed.
    pub fn is_exposed(&self, user_id: &str) -> bool {
        self.users.get(user_id).is_some_and(|u| u.exposure.is_some())
    }

    /// Takes in an exposure; `Ok(true)` when it is the user's first. Later exposures of an
    /// exposed user change nothing.
    pub fn expose(&mut self, x: &Exposure) -> Result<bool, ExposureError> {
        let err = |reason: String| ExposureError {
            user_id: x.user_id.clone(),
            experiment: self.experiment.name.clone(),
            reason,
        };
        if x.experiment != self.experiment.name {
            return Err(err(format!("the exposure names experiment {}", x.experiment)));
        }
        let arm = self.experiment.arm_index(&x.arm).ok_or_else(|| err(format!("unknown arm {:?}", x.arm)))?;
        if let Some(u) = self.users.get(&x.user_id)
            && let Some(first) = &u.exposure
        {
            if usize::from(first.arm) != arm {
                return Err(err(format!(
                    "arm {:?} differs from the first exposure's arm {:?}",
                    x.arm,
                    self.experiment.arms[usize::from(first.arm)].name
                )));
            }
            return Ok(false);
        }
        let u = self.users.entry(x.user_id.clone()).or_default();
        u.exposure = Some(FirstExposure {
            arm: arm as u16,
            ts_ms: x.ts_ms,
            platform: x.platform,
            category: x.category.clone(),
            room_id: x.room_id.clone(),
        });
        for p in std::mem::take(&mut u.pending) {
            u.place(p);
        }
        self.exposed += 1;
        Ok(true)
    }

    /// Takes in one event (already accepted once by the caller: duplicates must not reach
    /// here). Events outside the target or the window are ignored.
    pub fn observe(&mut self, e: &Event) {
        let x = &self.experiment;
        if e.ts_ms < x.covariate_start_ms() || e.ts_ms >= x.end_ms || !x.target.contains(e.platform, &e.category) {
            return;
        }
        self.clock_ms = self.clock_ms.max(e.ts_ms);
        let settled_before = self.clock_ms.saturating_sub(MAX_FUTURE_SKEW_MS);
        let p = Pending { ts_ms: e.ts_ms, kind: e.kind, platform: e.platform, value: e.value };
        let u = match self.users.get_mut(&e.user_id) {
            Some(u) => u,
            None if self.track_unexposed => self.users.entry(e.user_id.clone()).or_default(),
            None => return,
        };
        self.events += 1;
        if u.exposure.is_some() {
            u.place(p);
            return;
        }
        // Not exposed: settle what can no longer come after an exposure.
        if !u.pending.is_empty() {
            let mut keep = Vec::new();
            for q in std::mem::take(&mut u.pending) {
                if q.ts_ms < settled_before { u.pre.add(q.kind, q.platform, q.value) } else { keep.push(q) }
            }
            u.pending = keep;
        }
        if p.ts_ms < settled_before {
            u.pre.add(p.kind, p.platform, p.value);
        } else {
            u.pending.push(p);
        }
    }

    /// Exposed users' rows, sorted by user id.
    pub fn table(&self) -> Vec<UserRow> {
        let mut rows: Vec<UserRow> = self
            .users
            .iter()
            .filter_map(|(id, u)| {
                let x = u.exposure.as_ref()?;
                Some(UserRow {
                    user_id: id.clone(),
                    arm: usize::from(x.arm),
                    platform: x.platform,
                    category: x.category.clone(),
                    room_id: x.room_id.clone(),
                    first_exposure_ms: x.ts_ms,
                    pre: u.pre,
                    post: u.post,
                })
            })
            .collect();
        rows.sort_by(|a, b| a.user_id.cmp(&b.user_id));
        rows
    }
}
