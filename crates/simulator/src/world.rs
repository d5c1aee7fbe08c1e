//! The world users live in: platforms with their playbooks and base rates, and hosts with
//! the seed's capability matrix, each streaming a daily slot (a room per day).

use liveprofile_events::{LIVE_CATEGORIES, Platform};
use rand::Rng;
use rand_pcg::Pcg64Mcg;

/// Number of live categories rooms are scheduled in.
pub const N_CATEGORIES: usize = LIVE_CATEGORIES.len();
/// Number of platforms.
pub const N_PLATFORMS: usize = Platform::ALL.len();
/// Hosts per platform and category.
pub const HOSTS_PER_POOL: usize = 10;

/// The selling style of a room (the seed's platform playbooks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Playbook {
    /// Taobao: outfit tutorial + flash sale.
    TutorialFlashSale,
    /// Douyin: plot twist + host persona.
    PlotTwistPersona,
    /// Kuaishou: local traffic + local discounts.
    LocalDiscounts,
    /// Xiaohongshu: lifestyle notes brought live.
    LifestyleNotes,
    /// WeChat Channels: private-domain community selling.
    CommunitySelling,
}

/// Per-platform behaviour. Base rates are tuned so that the simulator's own output
/// reproduces the seed's figures (see the calibration tests).
#[derive(Debug, Clone)]
pub struct PlatformProfile {
    /// The platform.
    pub platform: Platform,
    /// Short prefix of platform account ids.
    pub account_prefix: &'static str,
    /// The platform's native playbook.
    pub native_playbook: Playbook,
    /// Base probability that a visit ends in an order, before user and host effects.
    pub base_order_rate: f64,
    /// Mean watch seconds per category, before user and host effects.
    pub watch_mean_s: [f64; N_CATEGORIES],
    /// Share of viewed items that come with a coupon offer.
    pub coupon_offer_rate: f64,
    /// Share of users whose main platform this is.
    pub primary_share: f64,
    /// Share of hosts that reuse another platform's playbook.
    pub foreign_playbook_share: f64,
}

/// Conversion factor of a room that reuses another platform's playbook: the seed reports
/// that a Douyin "strong plot" script reused on Taobao cut conversion by 40%.
pub const FOREIGN_PLAYBOOK_FACTOR: f64 = 0.6;

/// Median item price (yuan) per live category.
pub const MEDIAN_PRICE: [f64; N_CATEGORIES] = [129.0, 169.0, 99.0, 49.0, 499.0, 139.0];
/// Log-scale spread of item prices.
pub const PRICE_SIGMA: f64 = 0.7;

/// The platform table. Order rates: Taobao 3.2%, Douyin 4.5% per visit in the seed, so
/// the base rates sit below them by the mean of the user and host effects.
pub fn platform_profiles() -> [PlatformProfile; N_PLATFORMS] {
    //                apparel beauty home  food  elec  baby
    [
        PlatformProfile {
            platform: Platform::Taobao,
            account_prefix: "tb",
            native_playbook: Playbook::TutorialFlashSale,
            base_order_rate: 0.01979,
            watch_mean_s: [180.0, 157.0, 150.0, 140.0, 210.0, 180.0],
            coupon_offer_rate: 0.25,
            primary_share: 0.38,
            foreign_playbook_share: 0.15,
        },
        PlatformProfile {
            platform: Platform::Douyin,
            account_prefix: "dy",
            native_playbook: Playbook::PlotTwistPersona,
            base_order_rate: 0.02906,
            watch_mean_s: [360.0, 387.0, 300.0, 280.0, 330.0, 310.0],
            coupon_offer_rate: 0.15,
            primary_share: 0.36,
            foreign_playbook_share: 0.10,
        },
        PlatformProfile {
            platform: Platform::Kuaishou,
            account_prefix: "ks",
            native_playbook: Playbook::LocalDiscounts,
            base_order_rate: 0.02454,
            watch_mean_s: [260.0, 270.0, 240.0, 250.0, 260.0, 250.0],
            coupon_offer_rate: 0.35,
            primary_share: 0.20,
            foreign_playbook_share: 0.15,
        },
        PlatformProfile {
            platform: Platform::Xiaohongshu,
            account_prefix: "xhs",
            native_playbook: Playbook::LifestyleNotes,
            base_order_rate: 0.0191,
            watch_mean_s: [240.0, 300.0, 220.0, 180.0, 200.0, 220.0],
            coupon_offer_rate: 0.10,
            primary_share: 0.04,
            foreign_playbook_share: 0.15,
        },
        PlatformProfile {
            platform: Platform::WechatChannels,
            account_prefix: "wx",
            native_playbook: Playbook::CommunitySelling,
            base_order_rate: 0.0205,
            watch_mean_s: [200.0, 210.0, 200.0, 190.0, 200.0, 220.0],
            coupon_offer_rate: 0.20,
            primary_share: 0.02,
            foreign_playbook_share: 0.15,
        },
    ]
}

/// A host and the daily slot their room streams in.
#[derive(Debug, Clone)]
pub struct Host {
    /// Host id, as written in events.
    pub id: String,
    /// Platform the host streams on.
    pub platform: Platform,
    /// Live category index into [`LIVE_CATEGORIES`].
    pub category: usize,
    /// Capability matrix, 1-10: content creativity.
    pub content_creativity: f64,
    /// Capability matrix, 1-10: selling ability.
    pub selling_ability: f64,
    /// Capability matrix, 1-10: fan interaction.
    pub fan_interaction: f64,
    /// Capability matrix, 1-10: brand fit.
    pub brand_fit: f64,
    /// Playbook the host's room runs.
    pub playbook: Playbook,
    /// First China-time hour of the daily slot.
    pub slot_start_hour: u32,
    /// Slot length in hours.
    pub slot_hours: u32,
    /// Conversion multiplier (pool mean 1).
    pub conversion_factor: f64,
    /// Watch-time multiplier (pool mean 1).
    pub watch_factor: f64,
    /// Interaction (likes, comments, gifts) multiplier.
    pub interaction_factor: f64,
}

impl Host {
    /// Whether the host is live during China-time hour `h` (0-23).
    pub fn live_at(&self, h: u32) -> bool {
        (h + 24 - self.slot_start_hour) % 24 < self.slot_hours
    }
}

/// Platforms, hosts and the index of which rooms are live when.
#[derive(Debug, Clone)]
pub struct World {
    /// Platform table, indexed by [`Platform::index`].
    pub platforms: [PlatformProfile; N_PLATFORMS],
    /// All hosts; pools are contiguous: pool (p, c) holds
    /// `hosts[(p * N_CATEGORIES + c) * HOSTS_PER_POOL..][..HOSTS_PER_POOL]`.
    pub hosts: Vec<Host>,
    live: Vec<Vec<u16>>,
}

fn capability(rng: &mut Pcg64Mcg) -> f64 {
    // Integer-ish scores 1-10 centred on 6, as on the seed's scorecards.
    let v: f64 = 6.0 + 2.0 * (rng.random::<f64>() + rng.random::<f64>() + rng.random::<f64>() - 1.5);
    v.round().clamp(1.0, 10.0)
}

impl World {
    /// Builds the world for a seed. Every (platform, category, hour) has a live room.
    pub fn new(seed: u64) -> Self {
        let mut rng = Pcg64Mcg::new(u128::from(seed) ^ 0x5eed_0f7e_0000_0001);
        let platforms = platform_profiles();
        let mut hosts = Vec::with_capacity(N_PLATFORMS * N_CATEGORIES * HOSTS_PER_POOL);
        for profile in &platforms {
            for (c, cat) in LIVE_CATEGORIES.iter().enumerate() {
                let start = hosts.len();
                for j in 0..HOSTS_PER_POOL {
                    // The first eight slots tile the day (4 h every 3 h, so every hour has a live
                    // room); the rest are random.
                    let (slot_start_hour, slot_hours) =
                        if j < 8 { (j as u32 * 3, 4) } else { (rng.random_range(0..24), rng.random_range(2..=4)) };
                    let foreign = rng.random::<f64>() < profile.foreign_playbook_share;
                    let playbook = if foreign {
                        if profile.platform == Platform::Douyin {
                            Playbook::TutorialFlashSale
                        } else {
                            Playbook::PlotTwistPersona
                        }
                    } else {
                        profile.native_playbook
                    };
                    let content_creativity = capability(&mut rng);
                    let selling_ability = capability(&mut rng);
                    let fan_interaction = capability(&mut rng);
                    let brand_fit = capability(&mut rng);
                    let mut conversion_factor = (0.4 + 0.1 * selling_ability) * (0.8 + 0.035 * brand_fit);
                    if foreign {
                        conversion_factor *= FOREIGN_PLAYBOOK_FACTOR;
                    }
                    hosts.push(Host {
                        id: format!("h-{}-{}-{j:02}", profile.account_prefix, cat),
                        platform: profile.platform,
                        category: c,
                        content_creativity,
                        selling_ability,
                        fan_interaction,
                        brand_fit,
                        playbook,
                        slot_start_hour,
                        slot_hours,
                        conversion_factor,
                        watch_factor: 0.5 + 0.085 * content_creativity,
                        interaction_factor: 0.4 + 0.1 * fan_interaction,
                    });
                }
                let pool = &mut hosts[start..];
                let n = pool.len() as f64;
                let conv_mean = pool.iter().map(|x| x.conversion_factor).sum::<f64>() / n;
                let watch_mean = pool.iter().map(|x| x.watch_factor).sum::<f64>() / n;
                for x in pool.iter_mut() {
                    x.conversion_factor /= conv_mean;
                    x.watch_factor /= watch_mean;
                }
            }
        }
        let mut live = vec![Vec::new(); N_PLATFORMS * N_CATEGORIES * 24];
        for (i, host) in hosts.iter().enumerate() {
            for h in 0..24 {
                if host.live_at(h) {
                    live[Self::slot(host.platform.index(), host.category, h)].push(i as u16);
                }
            }
        }
        World { platforms, hosts, live }
    }

    fn slot(p: usize, c: usize, h: u32) -> usize {
        (p * N_CATEGORIES + c) * 24 + h as usize
    }

    /// Hosts (indices into `hosts`) live on platform `p`, category `c`, China hour `h`.
    pub fn live_hosts(&self, p: usize, c: usize, h: u32) -> &[u16] {
        &self.live[Self::slot(p, c, h)]
    }

    /// Host indices of the pool (platform `p`, category `c`).
    pub fn pool(&self, p: usize, c: usize) -> std::ops::Range<usize> {
        let start = (p * N_CATEGORIES + c) * HOSTS_PER_POOL;
        start..start + HOSTS_PER_POOL
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pool_has_a_live_room_every_hour() {
        let w = World::new(7);
        for p in 0..N_PLATFORMS {
            for c in 0..N_CATEGORIES {
                for h in 0..24 {
                    assert!(!w.live_hosts(p, c, h).is_empty(), "{p} {c} {h}");
                }
            }
        }
    }

    #[test]
    fn host_factors_average_one_per_pool() {
        let w = World::new(3);
        for p in 0..N_PLATFORMS {
            for c in 0..N_CATEGORIES {
                let pool = &w.hosts[w.pool(p, c)];
                let mean = pool.iter().map(|h| h.conversion_factor).sum::<f64>() / pool.len() as f64;
                assert!((mean - 1.0).abs() < 1e-12);
            }
        }
    }
}
