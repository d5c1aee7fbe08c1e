//! Window sums saturate at `i64::MAX` instead of wrapping: a user who spent beyond the
//! range reads as the largest spender, in the online driver and in the offline one alike,
//! bit for bit, also once the saturating events leave a window. `coupon_offer` events
//! feed no window sum.

use liveprofile_events::{DAY_MS, EventKind, HOUR_MS, Platform};
use liveprofile_features::UserState;
use liveprofile_features::aggregates::{FeatureEvent, live_category, user_features};
use liveprofile_features::offline::{user_features_as_of, user_features_by_scan};
use proptest::prelude::*;

const T0: i64 = 1_700_000_000_000;

fn order(ts_ms: i64, yuan: f64) -> FeatureEvent {
    FeatureEvent {
        ts_ms,
        platform: Platform::Douyin,
        kind: EventKind::Order,
        category: live_category("beauty"),
        value: yuan,
        coupon: false,
    }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Features of the online driver fed `events` in order, asked at each of `as_of`, checked
/// against both offline forms; returns the online vectors.
fn online_equal_offline(events: &[FeatureEvent], as_of: &[i64]) -> Vec<Vec<f32>> {
    let mut online = UserState::default();
    for e in events {
        online.observe(*e).unwrap();
    }
    let mut sorted = events.to_vec();
    sorted.sort_by_key(|e| e.ts_ms);
    as_of
        .iter()
        .map(|&t| {
            let mut a = Vec::new();
            online.features(t, &mut a).unwrap();
            let mut b = Vec::new();
            user_features_as_of(&sorted, t, &mut b);
            let mut c = Vec::new();
            user_features_by_scan(&sorted, t, &mut c);
            assert_eq!(bits(&a), bits(&b), "online and prefix sums differ as of {t}");
            assert_eq!(bits(&b), bits(&c), "prefix sums and scan differ as of {t}");
            a
        })
        .collect()
}

fn get(features: &[f32], name: &str) -> f32 {
    features[user_features().iter().position(|d| d.name == name).unwrap()]
}

#[test]
fn spend_beyond_i64_saturates_and_comes_back_exact_when_the_orders_leave_the_window() {
    // 5e16 yuan is 5e18 fen: two such orders are past i64::MAX (9.22e18) fen.
    let events = [order(T0, 5e16), order(T0 + 2 * HOUR_MS, 5e16), order(T0 + 3 * HOUR_MS, 1.0)];
    let as_of = [T0 + 3 * HOUR_MS, T0 + 28 * DAY_MS + HOUR_MS, T0 + 28 * DAY_MS + 2 * HOUR_MS + 1];
    let got = online_equal_offline(&events, &as_of);
    let max_yuan = i64::MAX as f64 * 0.01;

    // Both big orders inside 28 days: saturated, never wrapped to a small or negative sum.
    assert_eq!(get(&got[0], "spend_yuan_28d"), max_yuan as f32);
    assert_eq!(get(&got[0], "douyin_spend_yuan_28d"), max_yuan as f32);
    assert_eq!(get(&got[0], "beauty_spend_yuan_28d"), max_yuan as f32);
    assert_eq!(get(&got[0], "orders_28d"), 3.0);
    assert_eq!(get(&got[0], "avg_order_yuan_28d"), (max_yuan / 3.0) as f32);
    // The 1-hour window holds only the 1-yuan order: exact.
    assert_eq!(get(&got[0], "spend_yuan_1h"), 1.0);
    // The first big order has left 28 days: the sum is exact again.
    assert_eq!(get(&got[1], "spend_yuan_28d"), 5e16_f32);
    assert_eq!(get(&got[1], "orders_28d"), 2.0);
    // Then the second: only the 1-yuan order is left.
    assert_eq!(get(&got[2], "spend_yuan_28d"), 1.0);
}

#[test]
fn the_larger_spender_never_reads_as_the_smaller_one() {
    let big = online_equal_offline(&[order(T0, 5e16), order(T0 + 1, 5e16), order(T0 + 2, 5e16)], &[T0 + 3]);
    let small = online_equal_offline(&[order(T0, 999.0)], &[T0 + 3]);
    for w in ["1h", "1d", "7d", "28d"] {
        let name = format!("spend_yuan_{w}");
        assert!(get(&big[0], &name) > get(&small[0], &name), "{name}");
    }
}

#[test]
fn watch_time_beyond_i64_saturates() {
    let leave = |ts_ms| FeatureEvent {
        ts_ms,
        platform: Platform::Taobao,
        kind: EventKind::Leave,
        category: None,
        value: 5e15, // seconds: 5e18 milliseconds
        coupon: false,
    };
    let got =
        online_equal_offline(&[leave(T0), leave(T0 + 1), leave(T0 + 2 * DAY_MS)], &[T0 + 2 * DAY_MS, T0 + 8 * DAY_MS]);
    let minutes = |ms: f64| (ms * (1.0 / 60_000.0)) as f32;
    assert_eq!(get(&got[0], "watch_min_7d"), minutes(i64::MAX as f64));
    assert_eq!(get(&got[0], "taobao_watch_min_7d"), minutes(i64::MAX as f64));
    assert_eq!(get(&got[0], "watch_min_1d"), minutes(5e18));
    // Both saturating visits have left 7 days: exact again.
    assert_eq!(get(&got[1], "watch_min_7d"), minutes(5e18));
}

#[test]
fn a_coupon_offer_feeds_no_window_sum_but_counts_as_the_newest_event() {
    let offer = FeatureEvent {
        ts_ms: T0 + HOUR_MS,
        platform: Platform::Kuaishou,
        kind: EventKind::CouponOffer,
        category: live_category("food"),
        value: 0.0,
        coupon: true,
    };
    let with = online_equal_offline(&[order(T0, 10.0), offer], &[T0 + 2 * HOUR_MS]);
    let without = online_equal_offline(&[order(T0, 10.0)], &[T0 + 2 * HOUR_MS]);
    let names: Vec<&str> = user_features().iter().map(|d| d.name.as_str()).collect();
    for (i, name) in names.iter().enumerate() {
        if *name == "hours_since_last_event" {
            assert_eq!((with[0][i], without[0][i]), (1.0, 2.0));
        } else {
            assert_eq!(with[0][i].to_bits(), without[0][i].to_bits(), "{name}");
        }
    }
}

fn huge_stream() -> impl Strategy<Value = Vec<(i64, f64)>> {
    let gap = prop_oneof![0i64..HOUR_MS, 0i64..3 * DAY_MS, 20 * DAY_MS..30 * DAY_MS];
    let yuan = prop_oneof![Just(0.01), 1.0f64..1_000.0, 1e16f64..9e16, Just(f64::MAX)];
    prop::collection::vec((gap, yuan), 1..40)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Orders of any size, some far beyond the range of the sums: after every event, and
    /// once everything has left the windows, the online driver equals both offline forms
    /// and no feature is negative.
    #[test]
    fn saturated_sums_online_equal_offline(stream in huge_stream()) {
        let mut t = T0;
        let mut events = Vec::new();
        let mut online = UserState::default();
        let check = |online: &mut UserState, events: &[FeatureEvent], as_of: i64| -> Result<(), TestCaseError> {
            let mut a = Vec::new();
            online.features(as_of, &mut a).unwrap();
            let mut b = Vec::new();
            user_features_as_of(events, as_of, &mut b);
            let mut c = Vec::new();
            user_features_by_scan(events, as_of, &mut c);
            prop_assert_eq!(bits(&a), bits(&b));
            prop_assert_eq!(bits(&b), bits(&c));
            prop_assert!(a.iter().all(|x| *x >= 0.0));
            Ok(())
        };
        for (gap, yuan) in stream {
            t += gap;
            events.push(order(t, yuan));
            online.observe(order(t, yuan)).unwrap();
            check(&mut online, &events, t)?;
        }
        check(&mut online, &events, t + 20 * DAY_MS)?;
        check(&mut online, &events, t + 29 * DAY_MS)?;
    }
}
