//! Users and their latent traits: how active they are, where, in which categories and at
//! what hours; how price sensitive, impulsive and loyal; whether they gift.

use crate::world::{N_CATEGORIES, N_PLATFORMS, World};
use rand::Rng;
use rand_distr::{Beta, Distribution, Gamma, LogNormal, Normal};
use rand_pcg::Pcg64Mcg;

/// Probability that a user uses a second platform besides the main one.
pub const SECOND_PLATFORM_RATE: f64 = 0.205;
/// Probability that a two-platform user also uses a third.
pub const THIRD_PLATFORM_RATE: f64 = 0.2;

/// A user's latent traits: everything that drives their events.
#[derive(Debug, Clone)]
pub struct UserTraits {
    /// Expected live-room visits per day.
    pub visits_per_day: f64,
    /// Share of visits per platform (sums to 1; zero for platforms not used).
    pub platform_weights: [f64; N_PLATFORMS],
    /// Share of visits per live category (sums to 1).
    pub category_affinity: [f64; N_CATEGORIES],
    /// Share of visits starting in each China-time hour (sums to 1).
    pub hour_weights: [f64; 24],
    /// Hour of day the user is most active.
    pub peak_hour: f64,
    /// 0-1: how much coupons drive the user's orders.
    pub price_sensitivity: f64,
    /// 0-1: how quickly the user buys.
    pub impulsiveness: f64,
    /// 0-1: probability that a visit goes to a followed host's room when it is live.
    pub loyalty: f64,
    /// Per-visit gift probability before the host's interaction factor.
    pub gift_propensity: f64,
    /// Multiplier of the prices the user orders at.
    pub spend_level: f64,
    /// Multiplier of likes and comments.
    pub sociability: f64,
    /// Per-visit conversion multiplier of the user (mean about 1).
    pub conversion_factor: f64,
    /// Multiplier of watch time (mean 1).
    pub watch_factor: f64,
    /// Followed host (index into `World::hosts`) per platform and category.
    pub followed: [[Option<u16>; N_CATEGORIES]; N_PLATFORMS],
}

fn pick(rng: &mut Pcg64Mcg, weights: &[f64]) -> usize {
    let total: f64 = weights.iter().sum();
    let mut x = rng.random::<f64>() * total;
    for (i, w) in weights.iter().enumerate() {
        if x < *w {
            return i;
        }
        x -= w;
    }
    weights.len() - 1
}

/// Samples an index from weights that sum to 1.
pub(crate) fn pick_index(rng: &mut Pcg64Mcg, weights: &[f64]) -> usize {
    pick(rng, weights)
}

impl UserTraits {
    /// Draws a user's traits.
    pub fn sample(rng: &mut Pcg64Mcg, world: &World) -> Self {
        let visits_per_day = LogNormal::new(0.45f64.ln(), 1.0).expect("valid").sample(rng);

        let primary_shares: Vec<f64> = world.platforms.iter().map(|p| p.primary_share).collect();
        let primary = pick(rng, &primary_shares);
        let mut platform_weights = [0.0; N_PLATFORMS];
        platform_weights[primary] = 1.0;
        if rng.random::<f64>() < SECOND_PLATFORM_RATE {
            let mut shares = primary_shares.clone();
            shares[primary] = 0.0;
            let second = pick(rng, &shares);
            platform_weights[second] = rng.random_range(0.3..0.9);
            if rng.random::<f64>() < THIRD_PLATFORM_RATE {
                shares[second] = 0.0;
                let third = pick(rng, &shares);
                platform_weights[third] = rng.random_range(0.15..0.4);
            }
        }
        normalise(&mut platform_weights);

        let gamma = Gamma::new(0.6, 1.0).expect("valid");
        let mut category_affinity = [0.0; N_CATEGORIES];
        for a in &mut category_affinity {
            *a = gamma.sample(rng) + 1e-3;
        }
        normalise(&mut category_affinity);

        // Activity-hour archetypes: evening viewers, night owls, lunch-break, morning.
        let (centre, spread): (f64, f64) = match pick(rng, &[0.58, 0.17, 0.15, 0.10]) {
            0 => (20.5, 1.6),
            1 => (23.6, 1.4),
            2 => (12.5, 1.8),
            _ => (9.0, 2.0),
        };
        let peak_hour = (centre + Normal::new(0.0, 0.8).expect("valid").sample(rng)).rem_euclid(24.0);
        let mut hour_weights = [0.0; 24];
        for (h, w) in hour_weights.iter_mut().enumerate() {
            let mut d = (h as f64 + 0.5 - peak_hour).abs();
            d = d.min(24.0 - d);
            *w = (-0.5 * (d / spread).powi(2)).exp() + 0.01;
        }
        normalise(&mut hour_weights);

        let price_sensitivity = Beta::new(2.0, 2.0).expect("valid").sample(rng);
        let impulsiveness = Beta::new(2.0, 3.0).expect("valid").sample(rng);
        let loyalty = Beta::new(1.2, 2.0).expect("valid").sample(rng);
        let gift_propensity =
            if rng.random::<f64>() < 0.3 { 0.25 * Beta::new(1.0, 3.0).expect("valid").sample(rng) } else { 0.0 };
        let spend_level = LogNormal::new(0.0, 0.35).expect("valid").sample(rng);
        let sociability = LogNormal::new(-0.125, 0.5).expect("valid").sample(rng);
        // Mean of exp(N(-s^2/2, s)) is 1; impulsiveness (mean 0.4) scales around 1.
        let conversion_factor = LogNormal::new(-0.245, 0.7).expect("valid").sample(rng) * (0.5 + 1.25 * impulsiveness);
        let watch_factor = LogNormal::new(-0.08, 0.4).expect("valid").sample(rng);

        // Each user follows one host in their favourite category on each platform they use,
        // preferring a host whose slot covers their peak hour.
        let favourite = (0..N_CATEGORIES)
            .max_by(|a, b| category_affinity[*a].total_cmp(&category_affinity[*b]))
            .expect("non-empty");
        let mut followed = [[None; N_CATEGORIES]; N_PLATFORMS];
        for (p, weight) in platform_weights.iter().enumerate() {
            if *weight == 0.0 {
                continue;
            }
            let live = world.live_hosts(p, favourite, peak_hour as u32 % 24);
            let host = if live.is_empty() {
                world.pool(p, favourite).start as u16
            } else {
                live[rng.random_range(0..live.len())]
            };
            followed[p][favourite] = Some(host);
        }

        UserTraits {
            visits_per_day,
            platform_weights,
            category_affinity,
            hour_weights,
            peak_hour,
            price_sensitivity,
            impulsiveness,
            loyalty,
            gift_propensity,
            spend_level,
            sociability,
            conversion_factor,
            watch_factor,
            followed,
        }
    }

    /// Probability that an order uses a coupon.
    pub fn coupon_rate(&self) -> f64 {
        0.05 + 0.6 * self.price_sensitivity
    }

    /// Log-scale median of the price the user orders at in category `c`.
    pub fn order_price_mu(&self, c: usize) -> f64 {
        (crate::world::MEDIAN_PRICE[c] * self.spend_level).ln()
    }
}

fn normalise(w: &mut [f64]) {
    let total: f64 = w.iter().sum();
    for x in w {
        *x /= total;
    }
}
