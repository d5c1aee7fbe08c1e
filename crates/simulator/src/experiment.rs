//! Planted experiment effects: the simulator assigns users to an experiment's arms with the
//! server's hash ([`liveprofile_experiments::assign`] on the unified user id), changes the
//! behaviour of an arm's users in the experiment's target while it runs, and logs the
//! exposures the server would have written, so that an analysis can be checked against a
//! known truth.
//!
//! A user's exposure is their first room `enter` in the target (platform and category)
//! within the experiment's window `[start, end)`: the first time the service would have
//! answered them with the experiment's models. An effect applies to the arm's visits in the
//! target entered within the window, which are exactly the visits at or after the user's
//! first exposure and before the end.

use crate::SimError;
use liveprofile_events::{LIVE_CATEGORIES, Platform};
use liveprofile_experiments::{Experiment, assign};
use std::fmt;

/// What an effect changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EffectKey {
    /// The probability that a visit ends in an order (`order_rate`).
    OrderRate,
}

impl EffectKey {
    /// Every key.
    pub const ALL: [EffectKey; 1] = [EffectKey::OrderRate];

    /// The name on the command line.
    pub const fn name(self) -> &'static str {
        match self {
            EffectKey::OrderRate => "order_rate",
        }
    }
}

/// One planted effect: `ARM:KEY=FACTOR`, e.g. `treatment:order_rate=1.15`.
#[derive(Debug, Clone, PartialEq)]
pub struct Effect {
    /// Arm whose users it applies to.
    pub arm: String,
    /// What it changes.
    pub key: EffectKey,
    /// Multiplier (finite, positive).
    pub factor: f64,
}

fn effect_error(text: &str, reason: impl fmt::Display) -> SimError {
    SimError::Experiment(format!("--effect {text:?}: {reason}"))
}

impl Effect {
    /// Parses `ARM:KEY=FACTOR`; errors name the `--effect` flag.
    pub fn parse(text: &str) -> Result<Effect, SimError> {
        let (arm, rest) = text
            .split_once(':')
            .ok_or_else(|| effect_error(text, "expected ARM:KEY=FACTOR, e.g. treatment:order_rate=1.15"))?;
        let (key, factor) = rest
            .split_once('=')
            .ok_or_else(|| effect_error(text, "expected ARM:KEY=FACTOR, e.g. treatment:order_rate=1.15"))?;
        let (arm, key, factor) = (arm.trim(), key.trim(), factor.trim());
        if arm.is_empty() {
            return Err(effect_error(text, "the arm name is empty"));
        }
        let key = EffectKey::ALL.into_iter().find(|k| k.name() == key).ok_or_else(|| {
            let keys: Vec<&str> = EffectKey::ALL.iter().map(|k| k.name()).collect();
            effect_error(text, format!("unknown effect {key:?}; effects are {}", keys.join(", ")))
        })?;
        let factor: f64 =
            factor.parse().map_err(|_| effect_error(text, format!("factor {factor:?} is not a number")))?;
        if !factor.is_finite() || factor <= 0.0 {
            return Err(effect_error(text, format!("factor {factor} must be a finite number above 0")));
        }
        Ok(Effect { arm: arm.to_owned(), key, factor })
    }
}

impl fmt::Display for Effect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}={}", self.arm, self.key.name(), self.factor)
    }
}

/// An experiment with the effects planted in its arms.
#[derive(Debug, Clone)]
pub struct PlantedExperiment {
    experiment: Experiment,
    effects: Vec<Effect>,
    /// Order-rate factor per arm (1 where no effect is planted).
    order_factor: Vec<f64>,
    /// Whether (platform index, category index) is in the target.
    in_target: [[bool; LIVE_CATEGORIES.len()]; Platform::ALL.len()],
}

impl PlantedExperiment {
    /// Checks the effects against the experiment's arms: an unknown arm, or two effects of
    /// the same key on one arm, is refused naming `--effect`.
    pub fn new(experiment: Experiment, effects: Vec<Effect>) -> Result<Self, SimError> {
        let mut order_factor = vec![1.0; experiment.arms.len()];
        let mut seen: Vec<(usize, EffectKey)> = Vec::new();
        for e in &effects {
            let arm = experiment.arm_index(&e.arm).ok_or_else(|| {
                let arms: Vec<&str> = experiment.arms.iter().map(|a| a.name.as_str()).collect();
                effect_error(
                    &e.to_string(),
                    format!("experiment {} has no arm {:?}; its arms are {}", experiment.name, e.arm, arms.join(", ")),
                )
            })?;
            if seen.contains(&(arm, e.key)) {
                return Err(effect_error(
                    &e.to_string(),
                    format!("arm {} already has an {} effect", e.arm, e.key.name()),
                ));
            }
            seen.push((arm, e.key));
            match e.key {
                EffectKey::OrderRate => order_factor[arm] = e.factor,
            }
        }
        let in_target = std::array::from_fn(|p| {
            std::array::from_fn(|c| experiment.target.contains(Platform::ALL[p], LIVE_CATEGORIES[c]))
        });
        Ok(PlantedExperiment { experiment, effects, order_factor, in_target })
    }

    /// The definition.
    pub fn experiment(&self) -> &Experiment {
        &self.experiment
    }

    /// The planted effects.
    pub fn effects(&self) -> &[Effect] {
        &self.effects
    }

    /// The order-rate factor of an arm (1 without an effect).
    pub fn order_factor(&self, arm: usize) -> f64 {
        self.order_factor[arm]
    }

    /// Whether a visit on platform index `p` in category index `c` entered at `ts_ms` is in
    /// the experiment (target and window).
    pub fn covers(&self, p: usize, c: usize, ts_ms: i64) -> bool {
        self.in_target[p][c] && self.experiment.is_running_at(ts_ms)
    }

    /// What the visits of a user need to know: their arm's factors.
    pub(crate) fn for_user(&self, user_id: &str) -> UserEffect<'_> {
        let arm = assign(&self.experiment, user_id);
        UserEffect { planted: self, order_factor: self.order_factor[arm] }
    }
}

/// The experiment as it applies to one user's visits.
#[derive(Debug, Clone, Copy)]
pub struct UserEffect<'a> {
    planted: &'a PlantedExperiment,
    order_factor: f64,
}

impl UserEffect<'_> {
    /// Order probability of a visit on platform index `p` in category index `c` entered at
    /// `ts_ms`, from its probability without the experiment.
    pub fn order_probability(&self, p: usize, c: usize, ts_ms: i64, base: f64) -> f64 {
        if self.order_factor != 1.0 && self.planted.covers(p, c, ts_ms) {
            (base * self.order_factor).min(1.0)
        } else {
            base
        }
    }
}
