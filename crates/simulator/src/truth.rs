//! Ground truth: the true probability of every user tag over a label window, computed
//! from the user's latent traits and the world under the simulator's own process.
//!
//! Visits per day are Poisson, and each visit independently picks platform, category,
//! hour and room and then converts or gifts with a known probability. Thinning a Poisson
//! process keeps it Poisson, so each tag's probability has a closed form. The only
//! approximation is at the window's edges (a visit that starts before the cut-off and
//! orders after it).

use crate::users::UserTraits;
use crate::visits::{gift_probability, host_choice, order_probability};
use crate::world::{N_CATEGORIES, N_PLATFORMS, PRICE_SIGMA, World};
use liveprofile_events::DAY_MS;
use liveprofile_features::tags::{
    HIGH_VALUE_YUAN, LABEL_WINDOW_MS, LOYAL_FAN_VISITS, NIGHT_HOURS, NIGHT_OWL_VISITS, Tag,
};
use std::collections::HashMap;

/// P(Poisson(rate) >= k).
fn poisson_at_least(rate: f64, k: u32) -> f64 {
    let mut term = (-rate).exp();
    let mut below = 0.0;
    for i in 0..k {
        below += term;
        term *= rate / f64::from(i + 1);
    }
    (1.0 - below).clamp(0.0, 1.0)
}

/// Standard normal upper tail.
fn normal_sf(z: f64) -> f64 {
    0.5 * libm::erfc(z / std::f64::consts::SQRT_2)
}

/// True probability of every tag in [`Tag::ALL`] order, for the label window.
#[allow(clippy::needless_range_loop)] // p, c, h index several tables at once
pub fn tag_probabilities(world: &World, user: &UserTraits) -> [f64; Tag::ALL.len()] {
    let window_days = LABEL_WINDOW_MS as f64 / DAY_MS as f64;
    let visits = user.visits_per_day * window_days;

    let mut orders_by_category = [0.0; N_CATEGORIES];
    let mut gifts = 0.0;
    let mut per_host: HashMap<u16, f64> = HashMap::new();
    for p in 0..N_PLATFORMS {
        let wp = user.platform_weights[p];
        if wp == 0.0 {
            continue;
        }
        for c in 0..N_CATEGORIES {
            let wc = wp * user.category_affinity[c];
            for h in 0..24u32 {
                let w = wc * user.hour_weights[h as usize];
                for (j, share) in host_choice(world, user, p, c, h) {
                    let host = &world.hosts[j as usize];
                    let rate = visits * w * share;
                    orders_by_category[c] += rate * order_probability(world, user, host);
                    gifts += rate * gift_probability(user, host);
                    *per_host.entry(j).or_default() += rate;
                }
            }
        }
    }
    let all_orders: f64 = orders_by_category.iter().sum();
    let high_value: f64 = (0..N_CATEGORIES)
        .map(|c| {
            let z = (HIGH_VALUE_YUAN.ln() - user.order_price_mu(c)) / PRICE_SIGMA;
            orders_by_category[c] * normal_sf(z)
        })
        .sum();
    let not_on: Vec<f64> = user.platform_weights.iter().map(|w| (-visits * w).exp()).collect();
    let none_at_all: f64 = not_on.iter().product();
    let exactly_one: f64 = (0..N_PLATFORMS)
        .map(|p| (1.0 - not_on[p]) * (0..N_PLATFORMS).filter(|q| *q != p).map(|q| not_on[q]).product::<f64>())
        .sum();
    let night_share: f64 = NIGHT_HOURS.iter().map(|h| user.hour_weights[*h as usize]).sum();
    // In host order: a product in a hash map's order changes its last bits from run to run.
    let mut hosts: Vec<_> = per_host.iter().collect();
    hosts.sort_unstable_by_key(|(host, _)| **host);
    let loyal_none: f64 = hosts.iter().map(|(_, r)| 1.0 - poisson_at_least(**r, LOYAL_FAN_VISITS)).product();

    Tag::ALL.map(|tag| match tag {
        Tag::PriceSensitive => 1.0 - (-all_orders * user.coupon_rate()).exp(),
        Tag::HighValue => 1.0 - (-high_value).exp(),
        Tag::ChurnRisk => (-visits).exp(),
        Tag::CrossPlatform => (1.0 - none_at_all - exactly_one).clamp(0.0, 1.0),
        Tag::NightOwl => poisson_at_least(visits * night_share, NIGHT_OWL_VISITS),
        Tag::Gifter => 1.0 - (-gifts).exp(),
        Tag::LoyalFan => 1.0 - loyal_none,
        buys => {
            let cat = buys.category().expect("remaining tags are buys_*");
            let c = liveprofile_events::LIVE_CATEGORIES.iter().position(|x| *x == cat).expect("live");
            1.0 - (-orders_by_category[c]).exp()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poisson_tail_matches_hand_values() {
        // P(X >= 3) for rate 2: 1 - e^-2 (1 + 2 + 2) = 0.3233235838...
        assert!((poisson_at_least(2.0, 3) - 0.323_323_583_816_936_5).abs() < 1e-12);
        assert_eq!(poisson_at_least(0.0, 1), 0.0);
    }

    #[test]
    fn normal_tail_matches_hand_values() {
        assert!((normal_sf(0.0) - 0.5).abs() < 1e-15);
        assert!((normal_sf(1.959_963_984_540_054) - 0.025).abs() < 1e-12);
    }
}
