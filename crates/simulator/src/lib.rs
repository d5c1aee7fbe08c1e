//! A calibrated simulator of multi-platform live-commerce traffic.
//!
//! Users with latent traits (category affinities, price sensitivity, impulsiveness,
//! active hours, host loyalty, platforms used) visit rooms that hosts with the seed's
//! capability matrix stream on a daily schedule, per platform and category, with the
//! platforms' playbooks. The output reproduces the seed's per-platform figures
//! (see [`calibration`]) and comes with a ground-truth file of every user's traits and
//! the true probabilities behind the tag labels ([`truth`]).
//!
//! An experiment can be planted ([`experiment`]): its arms' users behave differently in its
//! target while it runs, and the exposures the server would have logged are written beside
//! the events.
//!
//! Output is deterministic for a seed whatever the thread count: every user has their own
//! random stream, and users are written in id order.

pub mod calibration;
pub mod experiment;
mod output;
pub mod truth;
pub mod users;
pub mod visits;
pub mod world;

pub use calibration::{CalibrationReport, CalibrationStats};
pub use experiment::{Effect, EffectKey, PlantedExperiment};
pub use output::{SimulationSummary, exposures_path_for, truth_path_for};

use rand_pcg::Pcg64Mcg;
use users::UserTraits;
use visits::SimEvent;
use world::World;

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Number of users.
    pub users: u32,
    /// Number of days.
    pub days: u32,
    /// Random seed.
    pub seed: u64,
    /// Start of day 0, UTC milliseconds (a China-time midnight).
    pub start_ms: i64,
}

/// 2026-11-02 00:00 China time (a Monday), in UTC milliseconds.
pub const DEFAULT_START_MS: i64 = 1_793_548_800_000;

/// Errors of a simulation run.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The configuration is unusable.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Writing the output failed.
    #[error(transparent)]
    Io(#[from] liveprofile_events::EventIoError),
    /// A planted experiment or effect is unusable.
    #[error("{0}")]
    Experiment(String),
    /// Writing the exposures failed.
    #[error(transparent)]
    Exposures(#[from] liveprofile_experiments::ExposureIoError),
}

/// The simulator: a world plus the configuration.
#[derive(Debug, Clone)]
pub struct Simulator {
    config: SimConfig,
    world: World,
    planted: Option<PlantedExperiment>,
}

/// One simulated user: id, traits and their events in time order.
#[derive(Debug, Clone)]
pub struct SimUser {
    /// Zero-based user number.
    pub index: u32,
    /// Latent traits.
    pub traits: UserTraits,
    /// Events, sorted by time.
    pub events: Vec<SimEvent>,
}

fn user_rng(seed: u64, index: u32) -> Pcg64Mcg {
    let mut x = seed ^ (u64::from(index).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    Pcg64Mcg::new(u128::from(x ^ (x >> 31)) << 64 | u128::from(index) | 1)
}

impl Simulator {
    /// Validates the configuration and builds the world.
    pub fn new(config: SimConfig) -> Result<Self, SimError> {
        if config.users == 0 {
            return Err(SimError::Config("--users must be at least 1".into()));
        }
        if config.days == 0 || config.days > 3_650 {
            return Err(SimError::Config("--days must be between 1 and 3650".into()));
        }
        let world = World::new(config.seed);
        Ok(Simulator { config, world, planted: None })
    }

    /// The world.
    pub fn world(&self) -> &World {
        &self.world
    }

    /// The configuration.
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// Plants an experiment: its arms' effects change their users' visits in its target
    /// while it runs, and [`Simulator::write`] writes the exposures beside the events (see
    /// [`experiment`]).
    pub fn with_experiment(mut self, planted: PlantedExperiment) -> Self {
        self.planted = Some(planted);
        self
    }

    /// The planted experiment, if any.
    pub fn planted(&self) -> Option<&PlantedExperiment> {
        self.planted.as_ref()
    }

    /// Simulates user `index` (deterministic for the seed).
    pub fn user(&self, index: u32) -> SimUser {
        let mut rng = user_rng(self.config.seed, index);
        let traits = UserTraits::sample(&mut rng, &self.world);
        let mut events = Vec::new();
        let effect = self.planted.as_ref().map(|x| x.for_user(&Self::user_id(index)));
        let (start_ms, days) = (self.config.start_ms, self.config.days);
        visits::simulate_user_in(&mut rng, &self.world, &traits, start_ms, days, effect.as_ref(), &mut events);
        SimUser { index, traits, events }
    }

    /// Unified user id of user `index`.
    pub fn user_id(index: u32) -> String {
        format!("u{index:08}")
    }
}
