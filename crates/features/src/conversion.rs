//! Conversion features of a room visit at a decision point: the visit so far (platform,
//! category, hour, seconds in the room, interactions, items and prices seen), the host's
//! recent record, then the user's features as of entering the room.

use crate::aggregates::FeatureEvent;
use crate::schema::Dtype;
use liveprofile_events::{DAY_MS, EventKind, LIVE_CATEGORIES, Platform, china_hour_of_day};
use std::collections::VecDeque;

/// Decision points, after entering the room, at which examples are taken.
pub const DECISION_OFFSETS_MS: [i64; 3] = [30_000, 120_000, 300_000];
/// Window of the host statistics.
pub const HOST_WINDOW_MS: i64 = 7 * DAY_MS;
/// Prior of the smoothed host order rate: `(orders + RATE * WEIGHT) / (visits + WEIGHT)`.
pub const HOST_RATE_PRIOR: (f64, f64) = (0.04, 50.0);

/// Vocabulary of the `platform` feature.
pub const PLATFORM_VOCAB: [&str; 5] = ["taobao", "douyin", "kuaishou", "xiaohongshu", "wechat_channels"];
/// Vocabulary of the `category` feature (the live categories, then `other`).
pub const CATEGORY_VOCAB: [&str; 7] = ["apparel", "beauty", "home", "food", "electronics", "maternal_baby", "other"];

/// Definition of one visit feature.
#[derive(Debug, Clone, Copy)]
pub struct VisitFeature {
    /// Column name.
    pub name: &'static str,
    /// Value type.
    pub dtype: Dtype,
    /// What it measures.
    pub meaning: &'static str,
    /// Window, if any.
    pub window: Option<&'static str>,
    /// Vocabulary of a category feature.
    pub vocabulary: Option<&'static [&'static str]>,
}

const fn num(name: &'static str, meaning: &'static str) -> VisitFeature {
    VisitFeature { name, dtype: Dtype::Float32, meaning, window: None, vocabulary: None }
}

/// The visit features, in schema order, before the user features.
pub const VISIT_FEATURES: [VisitFeature; 16] = [
    VisitFeature {
        name: "platform",
        dtype: Dtype::Category,
        meaning: "platform of the room",
        window: None,
        vocabulary: Some(&PLATFORM_VOCAB),
    },
    VisitFeature {
        name: "category",
        dtype: Dtype::Category,
        meaning: "category of the room",
        window: None,
        vocabulary: Some(&CATEGORY_VOCAB),
    },
    num("hour_of_day", "China-time hour of the decision point (0-23)"),
    num("seconds_in_room", "seconds since entering the room"),
    num("social_so_far", "likes, comments and shares in this visit so far"),
    num("follows_so_far", "host follows in this visit so far"),
    num("gifts_so_far", "gifts in this visit so far"),
    num("item_views_so_far", "items viewed in this visit so far"),
    num("favorites_so_far", "items favourited in this visit so far"),
    num("carts_so_far", "add-to-cart events in this visit so far"),
    num("coupon_offers_so_far", "viewed items that came with a coupon in this visit so far"),
    num("max_price_seen", "highest item price (yuan) viewed or carted in this visit so far, 0 if none"),
    num("mean_price_seen", "mean item price (yuan) viewed or carted in this visit so far, 0 if none"),
    VisitFeature {
        name: "host_visits_7d",
        dtype: Dtype::Float32,
        meaning: "visits to the host's rooms in the last 7 days, all users",
        window: Some("7d"),
        vocabulary: None,
    },
    VisitFeature {
        name: "host_orders_7d",
        dtype: Dtype::Float32,
        meaning: "orders in the host's rooms in the last 7 days, all users",
        window: Some("7d"),
        vocabulary: None,
    },
    VisitFeature {
        name: "host_order_rate_7d",
        dtype: Dtype::Float32,
        meaning: "smoothed orders per visit of the host's rooms in the last 7 days: (orders + 0.04*50) / (visits + 50)",
        window: Some("7d"),
        vocabulary: None,
    },
];

/// Integer state of a visit so far (exact, order independent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VisitSoFar {
    /// Enter time.
    pub enter_ms: i64,
    /// Platform index.
    pub platform: u8,
    /// Category vocabulary index.
    pub category: u8,
    social: u32,
    follows: u32,
    gifts: u32,
    views: u32,
    favorites: u32,
    carts: u32,
    coupon_offers: u32,
    priced: u32,
    price_sum_fen: i64,
    price_max_fen: i64,
}

impl VisitSoFar {
    /// A visit that entered at `enter_ms`.
    pub fn new(enter_ms: i64, platform: Platform, category: Option<u8>) -> Self {
        VisitSoFar {
            enter_ms,
            platform: platform.index() as u8,
            category: category.unwrap_or(CATEGORY_VOCAB.len() as u8 - 1),
            social: 0,
            follows: 0,
            gifts: 0,
            views: 0,
            favorites: 0,
            carts: 0,
            coupon_offers: 0,
            priced: 0,
            price_sum_fen: 0,
            price_max_fen: 0,
        }
    }

    /// Takes in an event of this visit. Counts and the price sum saturate at their
    /// type's maximum instead of wrapping. A `coupon_offer` changes nothing here
    /// (`coupon_offers_so_far` counts viewed items with a coupon, as the models were
    /// trained on).
    pub fn observe(&mut self, e: &FeatureEvent) {
        fn one(n: &mut u32) {
            *n = n.saturating_add(1);
        }
        let mut price = || {
            let f = (e.value * 100.0).round() as i64;
            one(&mut self.priced);
            self.price_sum_fen = self.price_sum_fen.saturating_add(f);
            self.price_max_fen = self.price_max_fen.max(f);
        };
        match e.kind {
            EventKind::Like | EventKind::Comment | EventKind::Share => one(&mut self.social),
            EventKind::Follow => one(&mut self.follows),
            EventKind::Gift => one(&mut self.gifts),
            EventKind::ViewItem => {
                one(&mut self.views);
                if e.coupon {
                    one(&mut self.coupon_offers);
                }
                price();
            }
            EventKind::AddToCart => {
                one(&mut self.carts);
                price();
            }
            EventKind::Favorite => one(&mut self.favorites),
            EventKind::Enter | EventKind::Leave | EventKind::Order | EventKind::CouponOffer => {}
        }
    }
}

/// Host record as of a time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HostStats {
    /// Visits in the window.
    pub visits: u32,
    /// Orders in the window.
    pub orders: u32,
}

/// Appends the conversion feature vector: visit features, then the user features.
pub fn derive_conversion_features(
    visit: &VisitSoFar,
    decision_ms: i64,
    host: HostStats,
    user_at_enter: &[f32],
    out: &mut Vec<f32>,
) {
    let (rate, weight) = HOST_RATE_PRIOR;
    let mean_price = if visit.priced == 0 { 0.0 } else { visit.price_sum_fen as f64 / visit.priced as f64 / 100.0 };
    let values: [f64; VISIT_FEATURES.len()] = [
        f64::from(visit.platform),
        f64::from(visit.category),
        f64::from(china_hour_of_day(decision_ms)),
        (decision_ms - visit.enter_ms) as f64 / 1000.0,
        f64::from(visit.social),
        f64::from(visit.follows),
        f64::from(visit.gifts),
        f64::from(visit.views),
        f64::from(visit.favorites),
        f64::from(visit.carts),
        f64::from(visit.coupon_offers),
        visit.price_max_fen as f64 / 100.0,
        mean_price,
        f64::from(host.visits),
        f64::from(host.orders),
        (f64::from(host.orders) + rate * weight) / (f64::from(host.visits) + weight),
    ];
    out.extend(values.iter().map(|v| *v as f32));
    out.extend_from_slice(user_at_enter);
}

/// Online host record: visits and orders of the last [`HOST_WINDOW_MS`], sliding.
/// Queries must come at non-decreasing times (the stream's "now").
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct HostWindow {
    events: VecDeque<(i64, bool)>,
    totals: HostStats,
    evicted_until: i64,
}

impl Default for HostWindow {
    fn default() -> Self {
        HostWindow { events: VecDeque::new(), totals: HostStats::default(), evicted_until: i64::MIN }
    }
}

impl HostWindow {
    /// Takes in an enter (`is_order = false`) or an order of the host's rooms.
    pub fn observe(&mut self, ts_ms: i64, is_order: bool) {
        if ts_ms <= self.evicted_until {
            return; // outside every window still to be asked for
        }
        let mut pos = self.events.len();
        while pos > 0 && self.events[pos - 1].0 > ts_ms {
            pos -= 1;
        }
        self.events.insert(pos, (ts_ms, is_order));
        if is_order { self.totals.orders += 1 } else { self.totals.visits += 1 }
    }

    /// Record in `(as_of - window, as_of]`.
    pub fn stats(&mut self, as_of_ms: i64) -> HostStats {
        let bound = as_of_ms - HOST_WINDOW_MS;
        if bound > self.evicted_until {
            while let Some(&(ts, is_order)) = self.events.front() {
                if ts > bound {
                    break;
                }
                self.events.pop_front();
                if is_order { self.totals.orders -= 1 } else { self.totals.visits -= 1 }
            }
            self.evicted_until = bound;
        }
        let mut s = self.totals;
        for &(ts, is_order) in self.events.iter().rev() {
            if ts <= as_of_ms {
                break;
            }
            if is_order { s.orders -= 1 } else { s.visits -= 1 }
        }
        s
    }
}

/// Offline host record: sorted enter and order times of one host.
#[derive(Debug, Clone, Default)]
pub struct HostHistory {
    /// Enter times, sorted.
    pub enters: Vec<i64>,
    /// Order times, sorted.
    pub orders: Vec<i64>,
}

impl HostHistory {
    /// Record in `(as_of - window, as_of]` by binary search.
    pub fn stats(&self, as_of_ms: i64) -> HostStats {
        let count = |v: &[i64]| {
            let hi = v.partition_point(|t| *t <= as_of_ms);
            let lo = v.partition_point(|t| *t <= as_of_ms - HOST_WINDOW_MS);
            u32::try_from(hi - lo).unwrap_or(u32::MAX)
        };
        HostStats { visits: count(&self.enters), orders: count(&self.orders) }
    }
}

/// Live-category vocabulary index of an event's category (the last entry for others).
pub fn category_index(category: &str) -> u8 {
    LIVE_CATEGORIES.iter().position(|c| *c == category).unwrap_or(LIVE_CATEGORIES.len()) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: EventKind, value: f64, coupon: bool) -> FeatureEvent {
        FeatureEvent { ts_ms: 1, platform: Platform::Douyin, kind, category: Some(1), value, coupon }
    }

    /// A platform added to the event contract must be added to the conversion model's
    /// vocabulary too, in the same order (its index is the feature's value).
    #[test]
    fn the_platform_vocabulary_is_the_event_contracts_platforms_in_order() {
        let contract: Vec<&str> = liveprofile_events::Platform::ALL.iter().map(|p| p.as_str()).collect();
        assert_eq!(PLATFORM_VOCAB.to_vec(), contract);
    }

    #[test]
    fn visit_counts_and_price_sums_saturate_instead_of_wrapping() {
        let mut v = VisitSoFar::new(0, Platform::Douyin, Some(1));
        v.social = u32::MAX - 1;
        v.views = u32::MAX;
        v.priced = u32::MAX;
        v.price_sum_fen = i64::MAX - 5;
        for _ in 0..3 {
            v.observe(&event(EventKind::Like, 0.0, false));
        }
        v.observe(&event(EventKind::ViewItem, 99.0, true));
        assert_eq!((v.social, v.views, v.priced, v.coupon_offers), (u32::MAX, u32::MAX, u32::MAX, 1));
        assert_eq!((v.price_sum_fen, v.price_max_fen), (i64::MAX, 9_900));
        let mut out = Vec::new();
        derive_conversion_features(&v, 60_000, HostStats::default(), &[], &mut out);
        assert!(out.iter().all(|x| x.is_finite() && *x >= 0.0), "{out:?}");
    }

    #[test]
    fn a_coupon_offer_changes_no_visit_feature() {
        let mut v = VisitSoFar::new(0, Platform::Taobao, None);
        let before = v;
        v.observe(&event(EventKind::CouponOffer, 0.0, true));
        assert_eq!(v, before);
    }
}
