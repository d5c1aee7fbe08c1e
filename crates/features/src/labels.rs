//! Labels from the future window: a user's tags and `buys_any`, and whether a room visit
//! ends in an order.

use crate::aggregates::FeatureEvent;
use crate::tags::{HIGH_VALUE_YUAN, LOYAL_FAN_VISITS, NIGHT_HOURS, NIGHT_OWL_VISITS, Tag};
use liveprofile_events::{EventKind, china_hour_of_day};
use std::collections::HashMap;

/// Number of label columns: the tags then `buys_any`.
pub const N_LABELS: usize = Tag::ALL.len() + 1;

/// Labels of one user from the events in `(cutoff, cutoff + window]`; `events` are the
/// user's events sorted by time (only the window's are read) and `hosts[i]` is the host of
/// `events[i]` (`u32::MAX` when none).
pub fn user_labels(events: &[FeatureEvent], hosts: &[u32], cutoff_ms: i64, window_ms: i64) -> [bool; N_LABELS] {
    let start = events.partition_point(|e| e.ts_ms <= cutoff_ms);
    let end = events.partition_point(|e| e.ts_ms <= cutoff_ms.saturating_add(window_ms));
    let (events, hosts) = (&events[start..end], &hosts[start..end]);
    let mut buys = [false; 6];
    let (mut any_order, mut coupon, mut high, mut gift) = (false, false, false, false);
    let mut visits = 0u32;
    let mut night = 0u32;
    let mut platforms = 0u8;
    let mut per_host: HashMap<u32, u32> = HashMap::new();
    for (e, host) in events.iter().zip(hosts) {
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

/// Whether the user's visit to `room` ends in an order after `after_ms` (the conversion
/// examples' `order` label): the first of the user's events in that room in
/// `(after_ms, after_ms + window_ms]` that ends the visit is an `order` (a `leave` or a new
/// `enter` ends it without one). `events` are the user's events sorted by time and
/// `rooms[i]` the room of `events[i]`; a visit still open at the end of the window has not
/// converted within it.
pub fn visit_order_label(events: &[FeatureEvent], rooms: &[u32], room: u32, after_ms: i64, window_ms: i64) -> bool {
    let start = events.partition_point(|e| e.ts_ms <= after_ms);
    let end = events.partition_point(|e| e.ts_ms <= after_ms.saturating_add(window_ms));
    for (e, r) in events[start..end].iter().zip(&rooms[start..end]) {
        if *r != room {
            continue;
        }
        match e.kind {
            EventKind::Order => return true,
            EventKind::Leave | EventKind::Enter => return false,
            _ => {}
        }
    }
    false
}
