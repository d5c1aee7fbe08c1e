//! The online driver over whole events: every user's feature state, open room visits and
//! host records, updated per event; user and conversion features at any moment.

use crate::aggregates::{FeatureEvent, user_features};
use crate::conversion::{HostWindow, VisitSoFar, derive_conversion_features};
use crate::online::{OnlineError, UserState};
use liveprofile_events::{Event, EventKind};
use std::collections::HashMap;

#[derive(Debug, Clone)]
struct OpenVisit {
    so_far: VisitSoFar,
    host: Option<String>,
    user_at_enter: Vec<f32>,
    ordered: bool,
}

#[derive(Debug, Clone, Default)]
struct UserProfile {
    state: UserState,
    visits: HashMap<String, OpenVisit>,
}

/// Online profiles of every user seen.
#[derive(Debug, Clone, Default)]
pub struct OnlineProfiles {
    users: HashMap<String, UserProfile>,
    hosts: HashMap<String, HostWindow>,
}

impl OnlineProfiles {
    /// Takes in one event (arrival order).
    pub fn observe(&mut self, e: &Event) -> Result<(), OnlineError> {
        let fe = FeatureEvent::from_event(e);
        let profile = self.users.entry(e.user_id.clone()).or_default();
        profile.state.observe(fe)?;
        let Some(room) = &e.room_id else { return Ok(()) };
        if let Some(host) = &e.host_id {
            match e.kind {
                EventKind::Enter => self.hosts.entry(host.clone()).or_default().observe(e.ts_ms, false),
                EventKind::Order => self.hosts.entry(host.clone()).or_default().observe(e.ts_ms, true),
                _ => {}
            }
        }
        match e.kind {
            EventKind::Enter => {
                let mut user_at_enter = Vec::with_capacity(user_features().len());
                let as_of = profile.state.newest_ms().unwrap_or(e.ts_ms).max(e.ts_ms);
                profile.state.features(as_of, &mut user_at_enter)?;
                profile.visits.insert(
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
                profile.visits.remove(room);
            }
            EventKind::Order => {
                if let Some(v) = profile.visits.get_mut(room) {
                    v.ordered = true;
                }
            }
            _ => {
                if let Some(v) = profile.visits.get_mut(room) {
                    v.so_far.observe(&fe);
                }
            }
        }
        Ok(())
    }

    /// A user's features as of `as_of_ms`, or `None` for a user never seen.
    pub fn user_features(&mut self, user_id: &str, as_of_ms: i64) -> Result<Option<Vec<f32>>, OnlineError> {
        let Some(p) = self.users.get_mut(user_id) else { return Ok(None) };
        let mut out = Vec::with_capacity(user_features().len());
        p.state.features(as_of_ms, &mut out)?;
        Ok(Some(out))
    }

    /// Conversion features of the user's open, not yet converted visit to `room_id` at
    /// `decision_ms`, or `None` when there is no such visit.
    pub fn conversion_features(&mut self, user_id: &str, room_id: &str, decision_ms: i64) -> Option<Vec<f32>> {
        let visit = self.users.get(user_id)?.visits.get(room_id)?;
        if visit.ordered {
            return None;
        }
        let stats = match &visit.host {
            Some(h) => self.hosts.get_mut(h).map(|w| w.stats(decision_ms)).unwrap_or_default(),
            None => Default::default(),
        };
        let mut out = Vec::new();
        derive_conversion_features(&visit.so_far, decision_ms, stats, &visit.user_at_enter, &mut out);
        Some(out)
    }

    /// Users held.
    pub fn users(&self) -> usize {
        self.users.len()
    }
}
