//! The live accumulator (exposures and events in arrival order) and the offline one (every
//! exposure first) give the same per-user table, whatever the interleaving the clock rules
//! allow: an exposure's time is the wall clock when it is logged, and an event is at most
//! five minutes ahead of the wall clock when it arrives.

use liveprofile_events::{Event, EventKind, Platform};
use liveprofile_experiments::{Experiment, ExperimentOutcomes, Exposure, assign};

const MINUTE: i64 = 60_000;

fn experiment() -> Experiment {
    Experiment::parse(
        r#"
name = "x"
salt = "x"
primary = "orders_per_visit"
start = 1000000000
end = 1000000000000
covariate_days = 1
[target]
categories = ["apparel"]
[[arms]]
name = "control"
share = 50
[[arms]]
name = "treatment"
share = 50
"#,
    )
    .unwrap()
}

/// A tiny deterministic generator.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

enum Arrival {
    Event(Event),
    Exposure(Exposure),
}

#[test]
fn live_and_offline_tables_agree_under_every_allowed_interleaving() {
    let e = experiment();
    for seed in 0..20u64 {
        let mut rng = Lcg(seed + 1);
        let base = e.start_ms + 10 * MINUTE;
        // (arrival time, arrival)
        let mut arrivals: Vec<(i64, u64, Arrival)> = Vec::new();
        let mut offline_exposures = Vec::new();
        let mut events = Vec::new();
        for u in 0..60 {
            let user = format!("u{u}");
            for k in 0..30 {
                let arrival = base + rng.below(120) as i64 * MINUTE / 4;
                // Up to five minutes ahead of the clock, or in its past.
                let ts = arrival + rng.below(10 * MINUTE as u64) as i64 - 5 * MINUTE;
                let kind =
                    [EventKind::Enter, EventKind::Order, EventKind::Leave, EventKind::Like][rng.below(4) as usize];
                let value = match kind {
                    EventKind::Order => rng.below(500) as f64 + 0.25,
                    EventKind::Leave => rng.below(900) as f64,
                    _ => 0.0,
                };
                let category = if rng.below(5) == 0 { "beauty" } else { "apparel" };
                let ev = Event {
                    event_id: format!("{user}-{k}"),
                    ts_ms: ts,
                    platform: if rng.below(2) == 0 { Platform::Taobao } else { Platform::Douyin },
                    user_id: user.clone(),
                    platform_user_id: user.clone(),
                    room_id: Some("r".into()),
                    host_id: None,
                    category: category.into(),
                    kind,
                    item_id: None,
                    value,
                    coupon: false,
                };
                events.push(ev.clone());
                arrivals.push((arrival, rng.next(), Arrival::Event(ev)));
            }
            if u % 4 != 3 {
                let at = base + rng.below(120) as i64 * MINUTE / 4;
                let x = Exposure {
                    user_id: user.clone(),
                    experiment: "x".into(),
                    arm: e.arms[assign(&e, &user)].name.clone(),
                    ts_ms: at,
                    platform: Platform::Taobao,
                    category: "apparel".into(),
                    room_id: None,
                };
                offline_exposures.push(x.clone());
                arrivals.push((at, rng.next(), Arrival::Exposure(x)));
            }
        }
        // Arrival order; ties broken at random.
        arrivals.sort_by_key(|(t, tie, _)| (*t, *tie));
        let mut live = ExperimentOutcomes::live(e.clone());
        for (_, _, a) in &arrivals {
            match a {
                Arrival::Event(ev) => live.observe(ev),
                Arrival::Exposure(x) => {
                    live.expose(x).unwrap();
                }
            }
        }
        let mut offline = ExperimentOutcomes::offline(e.clone());
        for x in &offline_exposures {
            assert!(offline.expose(x).unwrap());
        }
        for ev in events.iter().rev() {
            offline.observe(ev);
        }
        let (l, o) = (live.table(), offline.table());
        assert_eq!(l.len(), 45, "seed {seed}");
        assert_eq!(l, o, "seed {seed}");
        assert!(o.iter().any(|r| r.pre.orders > 0) && o.iter().any(|r| r.post.orders > 0));
    }
}

#[test]
fn a_second_exposure_changes_nothing_and_a_wrong_arm_is_refused() {
    let e = experiment();
    let mut o = ExperimentOutcomes::offline(e.clone());
    let arm = e.arms[assign(&e, "u1")].name.clone();
    let other = e.arms.iter().find(|a| a.name != arm).unwrap().name.clone();
    let x = Exposure {
        user_id: "u1".into(),
        experiment: "x".into(),
        arm,
        ts_ms: e.start_ms,
        platform: Platform::Taobao,
        category: "apparel".into(),
        room_id: Some("r".into()),
    };
    assert!(o.expose(&x).unwrap());
    assert!(!o.expose(&Exposure { ts_ms: x.ts_ms + 5, ..x.clone() }).unwrap());
    assert_eq!(o.table()[0].first_exposure_ms, x.ts_ms);
    let err = o.expose(&Exposure { arm: other, ..x.clone() }).unwrap_err().to_string();
    assert!(err.contains("differs from the first exposure's arm"), "{err}");
    let err = o.expose(&Exposure { arm: "nope".into(), ..x.clone() }).unwrap_err().to_string();
    assert!(err.contains("unknown arm"), "{err}");
    let err = o.expose(&Exposure { experiment: "y".into(), ..x }).unwrap_err().to_string();
    assert!(err.contains("names experiment y"), "{err}");
}
