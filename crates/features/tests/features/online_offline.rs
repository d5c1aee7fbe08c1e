//! The online driver's features equal the offline driver's, exactly, for random event
//! streams: user features at any moment, conversion features at every decision point.

use liveprofile_events::{DAY_MS, Event, EventKind, HOUR_MS, MINUTE_MS, Platform};
use liveprofile_features::aggregates::FeatureEvent;
use liveprofile_features::build::{ExampleOptions, host_histories, user_examples};
use liveprofile_features::labels::visit_order_label;
use liveprofile_features::offline::{accept_in_arrival_order, user_features_as_of, user_features_by_scan};
use liveprofile_features::{EventSet, OnlineProfiles, UserState, open_visit_features};
use proptest::prelude::*;

const CATEGORIES: [&str; 4] = ["beauty", "apparel", "food", "4451"];

fn kind_strategy() -> impl Strategy<Value = EventKind> {
    prop::sample::select(EventKind::ALL.to_vec())
}

#[derive(Debug, Clone)]
struct Step {
    gap_ms: i64,
    late_ms: i64,
    platform: Platform,
    kind: EventKind,
    category: &'static str,
    value_cents: u32,
    coupon: bool,
    query_gap_ms: Option<i64>,
}

fn step_strategy() -> impl Strategy<Value = Step> {
    (
        prop_oneof![0i64..1_000, 0i64..HOUR_MS, 0i64..3 * DAY_MS, Just(0i64)],
        prop_oneof![8 => Just(0i64), 1 => 0i64..4 * MINUTE_MS, 1 => 0i64..20 * MINUTE_MS],
        prop::sample::select(Platform::ALL.to_vec()),
        kind_strategy(),
        prop::sample::select(CATEGORIES.to_vec()),
        0u32..100_000,
        any::<bool>(),
        prop::option::weighted(0.3, prop_oneof![Just(0i64), 0i64..2 * DAY_MS, 0i64..40 * DAY_MS]),
    )
        .prop_map(|(gap_ms, late_ms, platform, kind, category, value_cents, coupon, query_gap_ms)| Step {
            gap_ms,
            late_ms,
            platform,
            kind,
            category,
            value_cents,
            coupon,
            query_gap_ms,
        })
}

fn feature_event(s: &Step, ts_ms: i64) -> FeatureEvent {
    FeatureEvent {
        ts_ms,
        platform: s.platform,
        kind: s.kind,
        category: liveprofile_features::aggregates::live_category(s.category),
        value: if s.kind.carries_value() { f64::from(s.value_cents) / 100.0 } else { 0.0 },
        coupon: s.coupon,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Feed a stream (with late events, some beyond the tolerance) to the online state and,
    /// at random moments, compare its features with the offline driver over the same
    /// events and cut-off.
    #[test]
    fn user_features_online_equal_offline(steps in prop::collection::vec(step_strategy(), 1..120)) {
        let mut online = UserState::default();
        let mut arrived: Vec<FeatureEvent> = Vec::new();
        let mut clock = 1_700_000_000_000i64;
        let mut horizon = i64::MIN;
        let mut queries = 0;
        for s in &steps {
            clock += s.gap_ms;
            let e = feature_event(s, clock - s.late_ms);
            arrived.push(e);
            let accepted = online.observe(e).is_ok();
            let (offline_accepted, rejected) = accept_in_arrival_order(&arrived);
            prop_assert_eq!(accepted, !rejected.contains(&(arrived.len() - 1)));
            if accepted {
                horizon = horizon.max(e.ts_ms);
            }
            if let Some(gap) = s.query_gap_ms {
                let as_of = horizon.max(clock) + gap;
                horizon = as_of;
                let mut a = Vec::new();
                online.features(as_of, &mut a).unwrap();
                let mut b = Vec::new();
                user_features_as_of(&offline_accepted, as_of, &mut b);
                prop_assert_eq!(a.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), b.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
                let mut c = Vec::new();
                user_features_by_scan(&offline_accepted, as_of, &mut c);
                prop_assert_eq!(b.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), c.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
                queries += 1;
            }
        }
        // A query below the horizon is refused, not answered wrongly.
        if queries > 0 && horizon > i64::MIN + 1 {
            let mut a = Vec::new();
            prop_assert!(online.features(horizon - 1, &mut a).is_err());
        }
    }
}

#[derive(Debug, Clone)]
struct VisitPlan {
    user: u8,
    room: u8,
    start_gap_ms: i64,
    watch_ms: i64,
    inner: Vec<(EventKind, i64, u32, bool)>,
}

fn visit_strategy() -> impl Strategy<Value = VisitPlan> {
    let inner_kind = prop::sample::select(vec![
        EventKind::Like,
        EventKind::Comment,
        EventKind::Share,
        EventKind::Follow,
        EventKind::Gift,
        EventKind::ViewItem,
        EventKind::Favorite,
        EventKind::AddToCart,
        EventKind::Order,
    ]);
    (
        0u8..3,
        0u8..4,
        prop_oneof![0i64..60_000, 0i64..6 * HOUR_MS, 0i64..4 * DAY_MS],
        1_000i64..900_000,
        prop::collection::vec((inner_kind, 0i64..1_000_000, 1u32..50_000, any::<bool>()), 0..8),
    )
        .prop_map(|(user, room, start_gap_ms, watch_ms, inner)| VisitPlan {
            user,
            room,
            start_gap_ms,
            watch_ms,
            inner,
        })
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn event(id: usize, user: u8, room: u8, ts_ms: i64, kind: EventKind, cents: u32, coupon: bool) -> Event {
    let platform = Platform::ALL[room as usize % 3];
    Event {
        event_id: format!("e{id}"),
        ts_ms,
        platform,
        user_id: format!("u{user}"),
        platform_user_id: format!("p{user}"),
        room_id: Some(format!("r{room}")),
        host_id: Some(format!("h{}", room % 2)),
        category: CATEGORIES[room as usize % CATEGORIES.len()].into(),
        kind,
        item_id: None,
        value: if kind.carries_value() { f64::from(cents) / 100.0 } else { 0.0 },
        coupon,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Conversion examples of the offline driver equal the online driver's features at
    /// the same decision points, for interleaved visits of several users to shared hosts.
    #[test]
    fn conversion_features_online_equal_offline(plans in prop::collection::vec(visit_strategy(), 1..40)) {
        let mut events = Vec::new();
        let mut clock = 1_700_000_000_000i64;
        for p in &plans {
            clock += p.start_gap_ms;
            let t0 = clock;
            events.push(event(events.len(), p.user, p.room, t0, EventKind::Enter, 0, false));
            for (kind, at, cents, coupon) in &p.inner {
                let ts = t0 + 1 + at % (p.watch_ms - 1);
                events.push(event(events.len(), p.user, p.room, ts, *kind, *cents, *coupon));
            }
            events.push(event(events.len(), p.user, p.room, t0 + p.watch_ms, EventKind::Leave, p.watch_ms as u32 / 10, false));
        }
        events.sort_by_key(|e| e.ts_ms);
        let set = EventSet::from_events(&events);
        let hosts = host_histories(&set);
        let mut expected: Vec<(String, String, i64, Vec<f32>)> = Vec::new();
        for u in &set.users {
            for ex in user_examples(u, &hosts, &ExampleOptions::default()) {
                // A visit open at any moment, stated offline, gives the example at its
                // decision point; the label from the events after it is the example's.
                let at = open_visit_features(u, &hosts, ex.room, ex.decision_ms);
                prop_assert_eq!(at.as_deref().map(bits), Some(bits(&ex.features)));
                prop_assert_eq!(visit_order_label(&u.events, &u.rooms, ex.room, ex.decision_ms, 7 * DAY_MS), ex.label);
                expected.push((u.user_id.clone(), set.rooms[ex.room as usize].clone(), ex.decision_ms, ex.features));
            }
        }
        expected.sort_by_key(|x| x.2);
        let mut online = OnlineProfiles::default();
        let mut next = 0;
        let check = |online: &mut OnlineProfiles, upto: i64, next: &mut usize| -> Result<(), TestCaseError> {
            while *next < expected.len() && expected[*next].2 < upto {
                let (user, room, d, want) = &expected[*next];
                let got = online.conversion_features(user, room, *d);
                prop_assert!(got.is_some(), "online has no open visit for {user} {room} at {d}");
                let got = got.unwrap();
                prop_assert_eq!(got.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), want.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
                *next += 1;
            }
            Ok(())
        };
        for e in &events {
            check(&mut online, e.ts_ms, &mut next)?;
            online.observe(e).unwrap();
        }
        check(&mut online, i64::MAX, &mut next)?;
        prop_assert_eq!(next, expected.len());
    }
}
