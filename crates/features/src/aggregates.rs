//! The one definition of user features, shared by both drivers.
//!
//! An event contributes integer amounts to *slots* (counts, watch milliseconds, fen of
//! spend); a window's slot sum is the total over the events inside the window. Integer
//! sums are exact whatever the order of addition and removal, so the online driver
//! (sliding windows) and the offline driver (direct scan) agree bit for bit. Features are
//! then derived from the sums by [`derive_user_features`], the same function for both.
//!
//! Amounts are never negative, and a sum saturates at `i64::MAX` instead of wrapping
//! ([`add_amount`]): every driver computes `min(true total, i64::MAX)`, so a user who
//! spent beyond the range reads as the largest spender, never as a negative or small
//! one. The contract's value limits ([`liveprofile_events::MAX_YUAN`]) keep real sums far
//! below the range; saturation guards what was logged before them.

use liveprofile_events::{DAY_MS, EventKind, HOUR_MS, LIVE_CATEGORIES, MINUTE_MS, Platform, china_hour_of_day};
use std::sync::OnceLock;

/// Sliding windows, ending at the as-of time (inclusive) and open at the start.
pub const WINDOWS_MS: [i64; 4] = [HOUR_MS, DAY_MS, 7 * DAY_MS, 28 * DAY_MS];
/// Window names, as used in feature names.
pub const WINDOW_NAMES: [&str; 4] = ["1h", "1d", "7d", "28d"];
/// Number of windows.
pub const N_WINDOWS: usize = WINDOWS_MS.len();
/// The longest window: older events no longer matter (but for recency).
pub const MAX_WINDOW_MS: i64 = WINDOWS_MS[N_WINDOWS - 1];
/// An event older than the newest one seen for the same user by more than this is
/// rejected as out of order (both drivers apply the rule in arrival order).
pub const OUT_OF_ORDER_TOLERANCE_MS: i64 = 5 * MINUTE_MS;
/// Recency features are capped at this many hours (and take it when nothing was seen).
pub const RECENCY_CAP_HOURS: f64 = 720.0;

const GLOBAL: [&str; 12] = [
    "visits",
    "watch_min",
    "social",
    "follows",
    "gifts",
    "gift_yuan",
    "item_views",
    "favorites",
    "carts",
    "orders",
    "spend_yuan",
    "coupon_orders",
];
const G_VISITS: usize = 0;
const G_WATCH: usize = 1;
const G_SOCIAL: usize = 2;
const G_FOLLOWS: usize = 3;
const G_GIFTS: usize = 4;
const G_GIFT_FEN: usize = 5;
const G_VIEWS: usize = 6;
const G_FAVORITES: usize = 7;
const G_CARTS: usize = 8;
const G_ORDERS: usize = 9;
const G_SPEND: usize = 10;
const G_COUPON_ORDERS: usize = 11;

const PER_PLATFORM: [&str; 5] = ["visits", "watch_min", "interactions", "orders", "spend_yuan"];
const P0: usize = GLOBAL.len();
const PER_CATEGORY: [&str; 6] = ["visits", "watch_min", "item_views", "carts", "orders", "spend_yuan"];
const C0: usize = P0 + PER_PLATFORM.len() * Platform::ALL.len();
// Offsets within one platform's slots, in `PER_PLATFORM` order.
const P_VISITS: usize = 0;
const P_WATCH: usize = 1;
const P_INTERACTIONS: usize = 2;
const P_ORDERS: usize = 3;
const P_SPEND: usize = 4;
// Offsets within one category's slots, in `PER_CATEGORY` order.
const C_VISITS: usize = 0;
const C_WATCH: usize = 1;
const C_VIEWS: usize = 2;
const C_CARTS: usize = 3;
const C_ORDERS: usize = 4;
const C_SPEND: usize = 5;
/// Each offset names the slot it points at (checked when the crate compiles).
const _: () = {
    const fn same(a: &str, b: &str) -> bool {
        let (a, b) = (a.as_bytes(), b.as_bytes());
        if a.len() != b.len() {
            return false;
        }
        let mut i = 0;
        while i < a.len() {
            if a[i] != b[i] {
                return false;
            }
            i += 1;
        }
        true
    }
    assert!(same(PER_PLATFORM[P_VISITS], "visits") && same(PER_PLATFORM[P_WATCH], "watch_min"));
    assert!(same(PER_PLATFORM[P_INTERACTIONS], "interactions") && same(PER_PLATFORM[P_ORDERS], "orders"));
    assert!(same(PER_PLATFORM[P_SPEND], "spend_yuan"));
    assert!(same(PER_CATEGORY[C_VISITS], "visits") && same(PER_CATEGORY[C_WATCH], "watch_min"));
    assert!(same(PER_CATEGORY[C_VIEWS], "item_views") && same(PER_CATEGORY[C_CARTS], "carts"));
    assert!(same(PER_CATEGORY[C_ORDERS], "orders") && same(PER_CATEGORY[C_SPEND], "spend_yuan"));
};
const HOUR_BUCKETS: [&str; 4] = ["00_06", "06_12", "12_18", "18_24"];
const H0: usize = C0 + PER_CATEGORY.len() * LIVE_CATEGORIES.len();
/// Number of slots per window.
pub const N_SLOTS: usize = H0 + HOUR_BUCKETS.len();

/// Window sums: `sums[w][slot]`.
pub type WindowSums = [[i64; N_SLOTS]; N_WINDOWS];

/// The part of an event the user features need.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FeatureEvent {
    /// UTC milliseconds.
    pub ts_ms: i64,
    /// Platform.
    pub platform: Platform,
    /// Kind.
    pub kind: EventKind,
    /// Index into [`LIVE_CATEGORIES`], or `None` for any other category.
    pub category: Option<u8>,
    /// Value column.
    pub value: f64,
    /// Coupon column.
    pub coupon: bool,
}

/// Index of a live category, `None` for others.
pub fn live_category(category: &str) -> Option<u8> {
    LIVE_CATEGORIES.iter().position(|c| *c == category).map(|i| i as u8)
}

impl FeatureEvent {
    /// The feature view of a full event.
    pub fn from_event(e: &liveprofile_events::Event) -> Self {
        Self::from_parts(&e.parts())
    }

    /// The feature view of an event given as borrowed parts.
    pub fn from_parts(e: &liveprofile_events::EventParts<'_>) -> Self {
        FeatureEvent {
            ts_ms: e.ts_ms,
            platform: e.platform,
            kind: e.kind,
            category: live_category(e.category),
            value: e.value,
            coupon: e.coupon,
        }
    }
}

fn millis(v: f64) -> i64 {
    (v * 1000.0).round() as i64
}

fn fen(v: f64) -> i64 {
    (v * 100.0).round() as i64
}

/// Adds a non-negative amount to a window sum, saturating at `i64::MAX`: the sum stays
/// `min(true total, i64::MAX)`.
#[inline]
pub fn add_amount(sum: &mut i64, amount: i64) {
    *sum = sum.saturating_add(amount);
}

/// The sums of `events` (any order), each saturating at `i64::MAX` ([`add_amount`]).
pub fn sums_of<'a>(events: impl IntoIterator<Item = &'a FeatureEvent>) -> [i64; N_SLOTS] {
    let mut sums = [0i64; N_SLOTS];
    for e in events {
        contributions(e, |slot, a| add_amount(&mut sums[slot], a));
    }
    sums
}

/// Calls `add(slot, amount)` for every slot the event contributes to. Amounts are never
/// negative (the contract refuses negative values; conversions to integers saturate).
/// A `coupon_offer` contributes to no slot.
#[inline]
pub fn contributions(e: &FeatureEvent, mut add: impl FnMut(usize, i64)) {
    let p = P0 + e.platform.index() * PER_PLATFORM.len();
    let c = e.category.map(|c| C0 + c as usize * PER_CATEGORY.len());
    let cat = |offset: usize, amount: i64, add: &mut dyn FnMut(usize, i64)| {
        if let Some(c) = c {
            add(c + offset, amount);
        }
    };
    match e.kind {
        EventKind::Enter => {
            add(G_VISITS, 1);
            add(p + P_VISITS, 1);
            cat(C_VISITS, 1, &mut add);
            add(H0 + china_hour_of_day(e.ts_ms) as usize / (24 / HOUR_BUCKETS.len()), 1);
        }
        EventKind::Leave => {
            let ms = millis(e.value);
            add(G_WATCH, ms);
            add(p + P_WATCH, ms);
            cat(C_WATCH, ms, &mut add);
        }
        EventKind::Like | EventKind::Comment | EventKind::Share => {
            add(G_SOCIAL, 1);
            add(p + P_INTERACTIONS, 1);
        }
        EventKind::Follow => {
            add(G_FOLLOWS, 1);
            add(p + P_INTERACTIONS, 1);
        }
        EventKind::Gift => {
            add(G_GIFTS, 1);
            add(G_GIFT_FEN, fen(e.value));
            add(p + P_INTERACTIONS, 1);
        }
        EventKind::ViewItem => {
            add(G_VIEWS, 1);
            cat(C_VIEWS, 1, &mut add);
        }
        EventKind::Favorite => add(G_FAVORITES, 1),
        EventKind::AddToCart => {
            add(G_CARTS, 1);
            cat(C_CARTS, 1, &mut add);
        }
        EventKind::Order => {
            let f = fen(e.value);
            add(G_ORDERS, 1);
            add(G_SPEND, f);
            if e.coupon {
                add(G_COUPON_ORDERS, 1);
            }
            add(p + P_ORDERS, 1);
            add(p + P_SPEND, f);
            cat(C_ORDERS, 1, &mut add);
            cat(C_SPEND, f, &mut add);
        }
        EventKind::CouponOffer => {}
    }
}

/// Scalars that are not window sums.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Recency {
    /// Newest event time.
    pub last_event_ms: Option<i64>,
    /// Newest order time.
    pub last_order_ms: Option<i64>,
}

impl Recency {
    /// Takes an event into account.
    pub fn observe(&mut self, ts_ms: i64, kind: EventKind) {
        self.last_event_ms = Some(self.last_event_ms.map_or(ts_ms, |t| t.max(ts_ms)));
        if kind == EventKind::Order {
            self.last_order_ms = Some(self.last_order_ms.map_or(ts_ms, |t| t.max(ts_ms)));
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Source {
    Sum { window: usize, slot: usize, scale: f64 },
    HourShare { bucket: usize },
    PlatformsActive { window: usize },
    AvgOrderValue,
    CouponOrderShare,
    WatchPerVisit,
    HoursSinceEvent,
    HoursSinceOrder,
}

/// One user feature: its name, meaning, window and how it is derived.
#[derive(Debug, Clone)]
pub struct UserFeature {
    /// Column name.
    pub name: String,
    /// What it measures.
    pub meaning: String,
    /// Window name, if windowed.
    pub window: Option<&'static str>,
    source: Source,
}

fn scale_of(name: &str) -> (f64, &'static str) {
    if name.starts_with("watch_min") {
        (1.0 / MINUTE_MS as f64, "minutes watched")
    } else if name.ends_with("_yuan") {
        (0.01, "yuan")
    } else {
        (1.0, "count")
    }
}

fn describe(slot_name: &str) -> &'static str {
    match slot_name {
        "visits" => "live-room visits (enter events)",
        "watch_min" => "minutes watched (from leave events)",
        "social" => "likes, comments and shares",
        "follows" => "host follows",
        "gifts" => "gifts sent",
        "gift_yuan" => "yuan of gifts",
        "item_views" => "items viewed",
        "favorites" => "items favourited",
        "carts" => "add-to-cart events",
        "orders" => "orders",
        "spend_yuan" => "yuan ordered",
        "coupon_orders" => "orders with a coupon",
        "interactions" => "likes, comments, shares, follows and gifts",
        _ => "events",
    }
}

/// The user features in schema order (about two hundred).
pub fn user_features() -> &'static [UserFeature] {
    static DEFS: OnceLock<Vec<UserFeature>> = OnceLock::new();
    DEFS.get_or_init(|| {
        let mut defs = Vec::new();
        let mut sum = |name: String, what: String, w: usize, slot: usize, slot_name: &str| {
            let (scale, _) = scale_of(slot_name);
            defs.push(UserFeature {
                name,
                meaning: what,
                window: Some(WINDOW_NAMES[w]),
                source: Source::Sum { window: w, slot, scale },
            });
        };
        for (w, wn) in WINDOW_NAMES.iter().enumerate() {
            for (i, s) in GLOBAL.iter().enumerate() {
                sum(format!("{s}_{wn}"), format!("{} in the last {wn}, all platforms", describe(s)), w, i, s);
            }
        }
        for (w, wn) in WINDOW_NAMES.iter().enumerate().skip(1) {
            for p in Platform::ALL {
                for (i, s) in PER_PLATFORM.iter().enumerate() {
                    let slot = P0 + p.index() * PER_PLATFORM.len() + i;
                    sum(format!("{p}_{s}_{wn}"), format!("{} on {p} in the last {wn}", describe(s)), w, slot, s);
                }
            }
        }
        for (w, wn) in WINDOW_NAMES.iter().enumerate().skip(2) {
            for (c, cat) in LIVE_CATEGORIES.iter().enumerate() {
                for (i, s) in PER_CATEGORY.iter().enumerate() {
                    let slot = C0 + c * PER_CATEGORY.len() + i;
                    sum(
                        format!("{cat}_{s}_{wn}"),
                        format!("{} in {cat} rooms in the last {wn}", describe(s)),
                        w,
                        slot,
                        s,
                    );
                }
            }
        }
        let mut derived = |name: &str, meaning: &str, window: Option<&'static str>, source: Source| {
            defs.push(UserFeature { name: name.into(), meaning: meaning.into(), window, source });
        };
        for (b, bucket) in HOUR_BUCKETS.iter().enumerate() {
            derived(
                &format!("visit_share_hours_{bucket}_28d"),
                &format!(
                    "share of the last 28d's visits that started {}:00-{}:00 China time (0 without visits)",
                    &bucket[..2],
                    &bucket[3..]
                ),
                Some("28d"),
                Source::HourShare { bucket: b },
            );
        }
        derived(
            "platforms_active_7d",
            "platforms with at least one visit in the last 7d",
            Some("7d"),
            Source::PlatformsActive { window: 2 },
        );
        derived(
            "platforms_active_28d",
            "platforms with at least one visit in the last 28d",
            Some("28d"),
            Source::PlatformsActive { window: 3 },
        );
        derived(
            "avg_order_yuan_28d",
            "mean order amount in the last 28d (0 without orders)",
            Some("28d"),
            Source::AvgOrderValue,
        );
        derived(
            "coupon_order_share_28d",
            "share of the last 28d's orders with a coupon (0 without orders)",
            Some("28d"),
            Source::CouponOrderShare,
        );
        derived(
            "watch_min_per_visit_28d",
            "minutes watched per visit in the last 28d (0 without visits)",
            Some("28d"),
            Source::WatchPerVisit,
        );
        derived(
            "hours_since_last_event",
            "hours since the user's newest event, capped at 720 (720 when none)",
            None,
            Source::HoursSinceEvent,
        );
        derived(
            "hours_since_last_order",
            "hours since the user's newest order, capped at 720 (720 when none)",
            None,
            Source::HoursSinceOrder,
        );
        defs
    })
}

fn ratio(a: i64, b: i64, scale: f64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 * scale / b as f64 }
}

fn hours_since(as_of: i64, t: Option<i64>) -> f64 {
    t.map_or(RECENCY_CAP_HOURS, |t| ((as_of - t) as f64 / HOUR_MS as f64).min(RECENCY_CAP_HOURS))
}

/// Derives the user feature vector (schema order) from window sums and recency.
pub fn derive_user_features(sums: &WindowSums, recency: &Recency, as_of_ms: i64, out: &mut Vec<f32>) {
    let last = N_WINDOWS - 1;
    for def in user_features() {
        let v = match def.source {
            Source::Sum { window, slot, scale } => sums[window][slot] as f64 * scale,
            Source::HourShare { bucket } => ratio(sums[last][H0 + bucket], sums[last][G_VISITS], 1.0),
            Source::PlatformsActive { window } => Platform::ALL
                .iter()
                .filter(|p| sums[window][P0 + p.index() * PER_PLATFORM.len() + P_VISITS] > 0)
                .count() as f64,
            Source::AvgOrderValue => ratio(sums[last][G_SPEND], sums[last][G_ORDERS], 0.01),
            Source::CouponOrderShare => ratio(sums[last][G_COUPON_ORDERS], sums[last][G_ORDERS], 1.0),
            Source::WatchPerVisit => ratio(sums[last][G_WATCH], sums[last][G_VISITS], 1.0 / MINUTE_MS as f64),
            Source::HoursSinceEvent => hours_since(as_of_ms, recency.last_event_ms),
            Source::HoursSinceOrder => hours_since(as_of_ms, recency.last_order_ms),
        };
        out.push(v as f32);
    }
}

/// Whether an event at `ts_ms` is accepted after the newest accepted event of the same
/// user at `newest_ms` (arrival order).
pub fn in_order(newest_ms: Option<i64>, ts_ms: i64) -> bool {
    newest_ms.is_none_or(|n| ts_ms >= n - OUT_OF_ORDER_TOLERANCE_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feature_names_are_unique_and_counted() {
        let defs = user_features();
        let mut names: Vec<&str> = defs.iter().map(|d| d.name.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), defs.len());
        assert_eq!(defs.len(), 48 + 75 + 72 + 4 + 7);
    }

    #[test]
    fn an_order_contributes_to_global_platform_and_category_slots() {
        let e = FeatureEvent {
            ts_ms: 0,
            platform: Platform::Douyin,
            kind: EventKind::Order,
            category: live_category("beauty"),
            value: 199.99,
            coupon: true,
        };
        let mut sums = [[0i64; N_SLOTS]; N_WINDOWS];
        contributions(&e, |s, a| sums[3][s] += a);
        let mut rec = Recency::default();
        rec.observe(0, EventKind::Order);
        let mut out = Vec::new();
        derive_user_features(&sums, &rec, 2 * HOUR_MS, &mut out);
        let get = |n: &str| out[user_features().iter().position(|d| d.name == n).unwrap()];
        assert_eq!(get("orders_28d"), 1.0);
        assert_eq!(get("spend_yuan_28d"), 199.99);
        assert_eq!(get("coupon_orders_28d"), 1.0);
        assert_eq!(get("douyin_orders_28d"), 1.0);
        assert_eq!(get("douyin_spend_yuan_28d"), 199.99);
        assert_eq!(get("beauty_orders_28d"), 1.0);
        assert_eq!(get("taobao_orders_28d"), 0.0);
        assert_eq!(get("avg_order_yuan_28d"), 199.99);
        assert_eq!(get("hours_since_last_order"), 2.0);
        assert_eq!(get("orders_7d"), 0.0, "only window 28d was filled");
    }
}
