//! The online driver over whole events: every user's feature state, open room visits and
//! host records, updated per event; user and conversion features at any moment.
//!
//! [`UserProfile`] is one user's part and [`HostBook`] the part shared by every user (the
//! hosts' recent visits and orders), so that a store can shard users and keep one host
//! book. [`OnlineProfiles`] holds both for a single-threaded caller.

use crate::aggregates::{FeatureEvent, user_features};
use crate::conversion::{HostStats, HostWindow, VisitSoFar, derive_conversion_features};
use crate::online::{OnlineError, UserState};
use liveprofile_events::{Event, EventKind};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct OpenVisit {
    so_far: VisitSoFar,
    host: Option<String>,
    user_at_enter: Vec<f32>,
    ordered: bool,
}

/// One user's online state: window sums and the open room visits.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UserProfile {
    state: UserState,
    visits: HashMap<String, OpenVisit>,
}

impl UserProfile {
    /// Checks a profile read back from disk (see [`UserState::check`]).
    pub fn check(&self) -> Result<(), String> {
        self.state.check()
    }

    /// Takes in one of the user's events (arrival order). Host records are kept apart:
    /// pass the event to [`HostBook::observe`] once this has accepted it.
    pub fn observe(&mut self, e: &Event) -> Result<(), OnlineError> {
        let fe = FeatureEvent::from_event(e);
        self.state.observe(fe)?;
        let Some(room) = &e.room_id else { return Ok(()) };
        match e.kind {
            EventKind::Enter => {
                let mut user_at_enter = Vec::with_capacity(user_features().len());
                // After `observe` the horizon is at least this event and the newest one.
                self.state.features(self.state.horizon_ms(), &mut user_at_enter)?;
                self.visits.insert(
                    room.clone(),
                    OpenVisit {
                        so_far: VisitSoFar::new(e.ts_ms, e.platform, fe.category),
                        host: e.host_id.clone(),
                        user_at_enter,
                        ordered: false,
                    },
                );
            }
            EventKind::Leave => {
                self.visits.remove(room);
                if self.visits.is_empty() {
                    // Most users are in no room most of the time: free the table.
                    self.visits = HashMap::new();
                }
            }
            EventKind::Order => {
                if let Some(v) = self.visits.get_mut(room) {
                    v.ordered = true;
                }
            }
            _ => {
                if let Some(v) = self.visits.get_mut(room) {
                    v.so_far.observe(&fe);
                }
            }
        }
        Ok(())
    }

    /// Whether an event at `ts_ms` would be taken in (see [`UserState::accepts`]).
    pub fn accepts(&self, ts_ms: i64) -> bool {
        self.state.accepts(ts_ms)
    }

    /// Newest event time taken in.
    pub fn newest_ms(&self) -> Option<i64> {
        self.state.newest_ms()
    }

    /// Time the window sums are as of.
    pub fn horizon_ms(&self) -> i64 {
        self.state.horizon_ms()
    }

    /// The user's features as of `as_of_ms` (not before [`UserProfile::horizon_ms`]).
    pub fn features(&mut self, as_of_ms: i64, out: &mut Vec<f32>) -> Result<(), OnlineError> {
        self.state.features(as_of_ms, out)
    }

    /// Platform and category of the user's open visit to `room_id` (the category as the
    /// conversion schema's vocabulary names it), if the visit is open.
    pub fn open_visit_context(&self, room_id: &str) -> Option<(liveprofile_events::Platform, String)> {
        let v = self.visits.get(room_id)?;
        let category =
            crate::conversion::CATEGORY_VOCAB.get(usize::from(v.so_far.category)).copied().unwrap_or("other");
        let platform = *liveprofile_events::Platform::ALL.get(usize::from(v.so_far.platform))?;
        Some((platform, category.to_owned()))
    }

    /// Host of the user's open visit to `room_id`, if the visit is open and not converted.
    /// `Some(None)` is an open visit to a room whose host is unknown.
    pub fn open_visit_host(&self, room_id: &str) -> Option<Option<&str>> {
        self.visits.get(room_id).filter(|v| !v.ordered).map(|v| v.host.as_deref())
    }

    /// Conversion features of the open, not yet converted visit to `room_id` at
    /// `decision_ms`, given the host's record; `None` without such a visit.
    pub fn conversion_features(&self, room_id: &str, decision_ms: i64, host: HostStats) -> Option<Vec<f32>> {
        let visit = self.visits.get(room_id).filter(|v| !v.ordered)?;
        let mut out = Vec::new();
        derive_conversion_features(&visit.so_far, decision_ms, host, &visit.user_at_enter, &mut out);
        Some(out)
    }
}

/// Recent visits and orders of every host's rooms.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HostBook {
    hosts: HashMap<String, HostWindow>,
}

impl HostBook {
    /// Takes in an event that a [`UserProfile`] accepted.
    pub fn observe(&mut self, e: &Event) {
        let (Some(_), Some(host)) = (&e.room_id, &e.host_id) else { return };
        match e.kind {
            EventKind::Enter => self.hosts.entry(host.clone()).or_default().observe(e.ts_ms, false),
            EventKind::Order => self.hosts.entry(host.clone()).or_default().observe(e.ts_ms, true),
            _ => {}
        }
    }

    /// A host's record as of `as_of_ms` (empty for a host never seen).
    pub fn stats(&mut self, host: &str, as_of_ms: i64) -> HostStats {
        self.hosts.get_mut(host).map(|w| w.stats(as_of_ms)).unwrap_or_default()
    }

    /// Hosts held.
    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    /// Whether no host was seen.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }
}

/// Online profiles of every user seen, with the host book, for one thread.
#[derive(Debug, Clone, Default)]
pub struct OnlineProfiles {
    users: HashMap<String, UserProfile>,
    hosts: HostBook,
}

impl OnlineProfiles {
    /// Takes in one event (arrival order).
    pub fn observe(&mut self, e: &Event) -> Result<(), OnlineError> {
        self.users.entry(e.user_id.clone()).or_default().observe(e)?;
        self.hosts.observe(e);
        Ok(())
    }

    /// A user's features as of `as_of_ms`, or `None` for a user never seen.
    pub fn user_features(&mut self, user_id: &str, as_of_ms: i64) -> Result<Option<Vec<f32>>, OnlineError> {
        let Some(p) = self.users.get_mut(user_id) else { return Ok(None) };
        let mut out = Vec::with_capacity(user_features().len());
        p.features(as_of_ms, &mut out)?;
        Ok(Some(out))
    }

    /// Conversion features of the user's open, not yet converted visit to `room_id` at
    /// `decision_ms`, or `None` when there is no such visit.
    pub fn conversion_features(&mut self, user_id: &str, room_id: &str, decision_ms: i64) -> Option<Vec<f32>> {
        let profile = self.users.get(user_id)?;
        let host = profile.open_visit_host(room_id)?;
        let stats = host.map(|h| self.hosts.stats(h, decision_ms)).unwrap_or_default();
        profile.conversion_features(room_id, decision_ms, stats)
    }

    /// Users held.
    pub fn users(&self) -> usize {
        self.users.len()
    }
}
