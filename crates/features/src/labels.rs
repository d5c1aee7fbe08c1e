//! Labels of a user from their future window: the user tags and `buys_any`.

use crate::aggregates::FeatureEvent;
use crate::tags::{HIGH_VALUE_YUAN, LOYAL_FAN_VISITS, NIGHT_HOURS, NIGHT_OWL_VISITS, Tag};
use liveprofile_events::{EventKind, china_hour_of_day};
use std::collections::HashMap;

/// Number of label columns: the tags then `buys_any`.
pub const N_LABELS: usize = Tag::ALL.len() + 1;

/// Labels of one user from the events in `(cutoff, cutoff + window]`; `hosts[i]` is the
/// host of `events[i]` (`u32::MAX` when none).
pub fn user_labels(events: &[FeatureEvent], hosts: &[u32], cutoff_ms: i64, window_ms: i64) -> [bool; N_LABELS] {
    let mut buys = [false; 6];
    let (mut any_order, mut coupon, mut high, mut gift) = (false, false, false, false);
    let mut visits = 0u32;
    let mut night = 0u32;
    let mut platforms = 0u8;
    let mut per_host: HashMap<u32, u32> = HashMap::new();
    for (e, host) in events.iter().zip(hosts) {
        if e.ts_ms <= cutoff_ms || e.ts_ms > cutoff_ms + window_ms {
            continue;
        }
        match e.kind {
            EventKind::Enter => {
                visits += 1;
                platforms |= 1 << e.platform.index();
                if NIGHT_HOURS.contains(&china_hour_of_day(e.ts_ms)) {
                    night += 1;
                }
                if *host != u32::MAX {
                    *per_host.entry(*host).or_default() += 1;
                }
            }
            EventKind::Order => {
                any_order = true;
                if let Some(c) = e.category {
                    buys[c as usize] = true;
                }
                coupon |= e.coupon;
                high |= e.value >= HIGH_VALUE_YUAN;
            }
            EventKind::Gift => gift = true,
            _ => {}
        }
    }
    let mut out = [false; N_LABELS];
    for (i, tag) in Tag::ALL.iter().enumerate() {
        out[i] = match tag {
            Tag::BuysApparel => buys[0],
            Tag::BuysBeauty => buys[1],
            Tag::BuysHome => buys[2],
            Tag::BuysFood => buys[3],
            Tag::BuysElectronics => buys[4],
            Tag::BuysMaternalBaby => buys[5],
            Tag::PriceSensitive => coupon,
            Tag::HighValue => high,
            Tag::ChurnRisk => visits == 0,
            Tag::CrossPlatform => platforms.count_ones() >= 2,
            Tag::NightOwl => night >= NIGHT_OWL_VISITS,
            Tag::Gifter => gift,
            Tag::LoyalFan => per_host.values().any(|n| *n >= LOYAL_FAN_VISITS),
        };
    }
    out[Tag::ALL.len()] = any_order;
    out
}
