//! The store's part of experiments: the definitions it runs, who has been exposed, and
//! each experiment's outcome accumulator, all kept by the same log and snapshots as the
//! profiles. Starting or stopping an experiment and every first exposure are log records,
//! and every accepted event passes through the accumulators in log order, so recovery
//! rebuilds exactly the state the process had.

use liveprofile_events::Event;
use liveprofile_experiments::{Experiment, ExperimentOutcomes, Exposure, UserRow};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Most experiments held at once (running or stopped, with their results).
pub const MAX_EXPERIMENTS: usize = 64;

/// Experiments and the sequence number of the last record they took in.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct ExperimentBook {
    pub(crate) experiments: BTreeMap<String, ExperimentOutcomes>,
    pub(crate) seq: u64,
}

impl ExperimentBook {
    /// Takes in an accepted event.
    pub(crate) fn observe(&mut self, e: &Event, seq: u64) {
        for x in self.experiments.values_mut() {
            x.observe(e);
        }
        self.seq = seq;
    }

    /// Starts an experiment (a name already held is left as it is).
    pub(crate) fn start(&mut self, e: Experiment, seq: u64) {
        self.experiments.entry(e.name.clone()).or_insert_with(|| ExperimentOutcomes::live(e));
        self.seq = seq;
    }

    /// Stops an experiment.
    pub(crate) fn stop(&mut self, name: &str, ts_ms: i64, seq: u64) {
        if let Some(x) = self.experiments.get_mut(name) {
            x.stop(ts_ms);
        }
        self.seq = seq;
    }

    /// Takes in logged exposures.
    pub(crate) fn expose(&mut self, xs: &[Exposure], seq: u64) {
        for x in xs {
            if let Some(o) = self.experiments.get_mut(&x.experiment)
                && let Err(e) = o.expose(x)
            {
                tracing::warn!(error = %e, "logged exposure does not fit its experiment; skipped");
            }
        }
        self.seq = seq;
    }

    /// Whether a user has been exposed to an experiment.
    pub(crate) fn is_exposed(&self, experiment: &str, user_id: &str) -> bool {
        self.experiments.get(experiment).is_some_and(|x| x.is_exposed(user_id))
    }
}

/// A moment's view of one experiment.
#[derive(Debug, Clone, PartialEq)]
pub struct ExperimentStatus {
    /// The definition.
    pub experiment: Experiment,
    /// When it was stopped early, if it was.
    pub stopped_ms: Option<i64>,
    /// Users exposed so far.
    pub exposed_users: u64,
    /// Users whose events are held (exposed or not yet).
    pub tracked_users: usize,
    /// Events counted (in its target and window).
    pub events: u64,
}

impl ExperimentStatus {
    pub(crate) fn of(o: &ExperimentOutcomes) -> Self {
        ExperimentStatus {
            experiment: o.experiment().clone(),
            stopped_ms: o.stopped_ms(),
            exposed_users: o.exposed_users(),
            tracked_users: o.tracked_users(),
            events: o.events(),
        }
    }

    /// Whether the experiment answers at `ts_ms`.
    pub fn is_active_at(&self, ts_ms: i64) -> bool {
        self.experiment.is_running_at(ts_ms) && self.stopped_ms.is_none_or(|s| ts_ms < s)
    }
}

/// The live per-user table of an experiment, for its analysis.
#[derive(Debug, Clone)]
pub struct ExperimentTable {
    /// Status.
    pub status: ExperimentStatus,
    /// Exposed users, sorted by id.
    pub rows: Vec<UserRow>,
}
