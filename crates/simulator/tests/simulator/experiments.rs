//! Planted experiments: exposures as the server would log them (the arm of `assign`, one
//! per user, the first target entry in the window), events untouched where no effect
//! applies, and a planted order-rate effect that shows in the arm's orders per visit.

use liveprofile_events::{DAY_MS, Event, EventKind, EventReader, LIVE_CATEGORIES, Platform};
use liveprofile_experiments::{Experiment, ExperimentOutcomes, Exposure, Metric, assign, read_exposures};
use liveprofile_simulator::{
    DEFAULT_START_MS, Effect, PlantedExperiment, SimConfig, SimError, Simulator, exposures_path_for,
};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::OnceLock;

const USERS: u32 = 5_000;
const DAYS: u32 = 14;
const SEED: u64 = 21;
const START_MS: i64 = DEFAULT_START_MS + 7 * DAY_MS;
const END_MS: i64 = DEFAULT_START_MS + 14 * DAY_MS;

fn experiment() -> Experiment {
    Experiment::parse(&format!(
        r#"
name = "conversion-v2-apparel"
salt = "planted-test"
primary = "orders_per_visit"
start = {START_MS}
end = {END_MS}

[target]
categories = ["apparel"]
platforms = ["taobao", "douyin", "kuaishou"]

[[arms]]
name = "control"
share = 50

[[arms]]
name = "treatment"
share = 50
models = {{ conversion = 2 }}
"#
    ))
    .unwrap()
}

fn config() -> SimConfig {
    SimConfig { users: USERS, days: DAYS, seed: SEED, start_ms: DEFAULT_START_MS }
}

struct Run {
    events: Vec<Event>,
    exposures: Option<Vec<Exposure>>,
}

fn run(dir: &Path, name: &str, effects: Option<&[&str]>) -> Run {
    let path = dir.join(format!("{name}.parquet"));
    let mut sim = Simulator::new(config()).unwrap();
    if let Some(effects) = effects {
        let effects = effects.iter().map(|e| Effect::parse(e).unwrap()).collect();
        sim = sim.with_experiment(PlantedExperiment::new(experiment(), effects).unwrap());
    }
    let summary = sim.write(&path, &|_| {}).unwrap();
    let exposures_path = exposures_path_for(&path);
    assert_eq!(summary.exposures_path.as_deref(), effects.map(|_| exposures_path.as_path()));
    let exposures = effects.map(|_| read_exposures(&exposures_path).unwrap());
    if let Some(x) = &exposures {
        let per_arm: u64 = summary.exposed_per_arm.iter().map(|(_, n)| n).sum();
        assert_eq!(per_arm, x.len() as u64);
    } else {
        assert!(!exposures_path.exists());
    }
    Run { events: EventReader::open(&path).unwrap().read_all().unwrap().events, exposures }
}

/// The runs every test here reads: no experiment, factor 1.0 and factor 1.5.
fn runs() -> &'static (Run, Run, Run) {
    static RUNS: OnceLock<(Run, Run, Run)> = OnceLock::new();
    RUNS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        (
            run(dir.path(), "plain", None),
            run(dir.path(), "neutral", Some(&["treatment:order_rate=1.0"])),
            run(dir.path(), "planted", Some(&["treatment:order_rate=1.5"])),
        )
    })
}

fn in_target(e: &Event, x: &Experiment) -> bool {
    e.kind == EventKind::Enter && x.target.contains(e.platform, &e.category) && x.is_running_at(e.ts_ms)
}

fn check_exposures(r: &Run) {
    let x = experiment();
    let exposures = r.exposures.as_ref().unwrap();
    assert!(exposures.len() > 500, "only {} exposures", exposures.len());
    let mut first_enter: HashMap<&str, &Event> = HashMap::new();
    for e in r.events.iter().filter(|e| in_target(e, &x)) {
        let best = first_enter.entry(e.user_id.as_str()).or_insert(e);
        if e.ts_ms < best.ts_ms {
            *best = e;
        }
    }
    let mut entries_at: HashMap<(&str, i64), Vec<&Event>> = HashMap::new();
    for e in r.events.iter().filter(|e| in_target(e, &x)) {
        entries_at.entry((e.user_id.as_str(), e.ts_ms)).or_default().push(e);
    }
    let mut seen = HashSet::new();
    for ex in exposures {
        assert!(seen.insert(ex.user_id.as_str()), "two exposures of {}", ex.user_id);
        assert_eq!(ex.experiment, x.name);
        assert_eq!(ex.arm, x.arms[assign(&x, &ex.user_id)].name, "arm of {}", ex.user_id);
        assert!(x.is_running_at(ex.ts_ms) && x.target.contains(ex.platform, &ex.category), "{ex:?}");
        let first = first_enter.get(ex.user_id.as_str()).unwrap_or_else(|| panic!("{ex:?} has no target entry"));
        assert_eq!(first.ts_ms, ex.ts_ms, "{ex:?} is not the first target entry");
        // The exposure is one of the user's target entries at that time.
        let entries = &entries_at[&(ex.user_id.as_str(), ex.ts_ms)];
        assert!(
            entries.iter().any(|e| e.platform == ex.platform && e.category == ex.category && e.room_id == ex.room_id),
            "{ex:?} matches no entry"
        );
    }
    assert_eq!(seen.len(), first_enter.len(), "every user with a target entry in the window is exposed");
}

#[test]
fn exposures_follow_assign_one_per_user_at_the_first_target_entry() {
    let (_, neutral, planted) = runs();
    check_exposures(neutral);
    check_exposures(planted);
    let x = planted.exposures.as_ref().unwrap();
    let treated = x.iter().filter(|e| e.arm == "treatment").count() as f64 / x.len() as f64;
    assert!((treated - 0.5).abs() < 0.05, "treatment share {treated:.3}");
}

#[test]
fn a_factor_of_one_leaves_the_events_as_without_an_experiment() {
    let (plain, neutral, _) = runs();
    assert!(!plain.events.is_empty());
    assert!(plain.events == neutral.events, "events differ");
}

#[test]
fn an_effect_changes_nothing_before_the_start_nor_for_the_control_arm() {
    let (plain, _, planted) = runs();
    let x = experiment();
    fn before(r: &Run) -> Vec<&Event> {
        r.events.iter().filter(|e| e.ts_ms < START_MS).collect()
    }
    assert!(before(plain) == before(planted));
    let control =
        |r: &'static Run| -> Vec<&'static Event> { r.events.iter().filter(|e| assign(&x, &e.user_id) == 0).collect() };
    assert!(control(plain) == control(planted));
    assert!(plain.events != planted.events);
}

/// Orders per visit of each arm after the first exposure, by the experiments crate's own
/// accumulator.
fn post_orders_per_visit(r: &Run) -> Vec<(f64, u64)> {
    let mut acc = ExperimentOutcomes::offline(experiment());
    for ex in r.exposures.as_ref().unwrap() {
        acc.expose(ex).unwrap();
    }
    for e in &r.events {
        acc.observe(e);
    }
    let mut sums = vec![(0.0, 0.0, 0u64); 2];
    for row in acc.table() {
        let (n, d) = Metric::OrdersPerVisit.value(&row.post);
        sums[row.arm].0 += n;
        sums[row.arm].1 += d;
        sums[row.arm].2 += row.post.orders;
    }
    sums.into_iter().map(|(n, d, orders)| (n / d, orders)).collect()
}

#[test]
fn a_planted_order_rate_shows_in_the_arms_orders_per_visit() {
    let (_, neutral, planted) = runs();
    let base = post_orders_per_visit(neutral);
    let lifted = post_orders_per_visit(planted);
    let ratio = |v: &[(f64, u64)]| v[1].0 / v[0].0;
    eprintln!(
        "orders per visit after exposure (control, treatment): factor 1.0 {base:?} ratio {:.3}; \
         factor 1.5 {lifted:?} ratio {:.3}",
        ratio(&base),
        ratio(&lifted)
    );
    assert!(lifted[0].1 > 50 && lifted[1].1 > 50, "{lifted:?}");
    // Control is unchanged; the treatment arm's lift over control is clearly above the
    // neutral run's (which is about 1), by about the planted factor.
    assert_eq!(base[0], lifted[0]);
    assert!(ratio(&lifted) > 1.25 * ratio(&base), "{base:?} {lifted:?}");
    assert!(lifted[1].0 > 1.25 * base[1].0, "{base:?} {lifted:?}");
}

#[test]
fn effects_are_checked_naming_the_flag() {
    let err = |s: &str| Effect::parse(s).unwrap_err().to_string();
    for (text, expected) in [
        ("treatment", "expected ARM:KEY=FACTOR"),
        ("treatment:order_rate", "expected ARM:KEY=FACTOR"),
        (":order_rate=1.1", "arm name is empty"),
        ("treatment:watch=1.1", "unknown effect \"watch\"; effects are order_rate"),
        ("treatment:order_rate=x", "factor \"x\" is not a number"),
        ("treatment:order_rate=0", "must be a finite number above 0"),
        ("treatment:order_rate=-1", "must be a finite number above 0"),
        ("treatment:order_rate=inf", "must be a finite number above 0"),
        ("treatment:order_rate=NaN", "must be a finite number above 0"),
    ] {
        let e = err(text);
        assert!(e.starts_with(&format!("--effect {text:?}: ")) && e.contains(expected), "{text}: {e}");
    }
    let planted = |effects: &[&str]| {
        PlantedExperiment::new(experiment(), effects.iter().map(|e| Effect::parse(e).unwrap()).collect())
    };
    let e = planted(&["treatmnt:order_rate=1.2"]).unwrap_err();
    assert!(matches!(e, SimError::Experiment(_)));
    let e = e.to_string();
    assert!(e.starts_with("--effect ") && e.contains("no arm \"treatmnt\"") && e.contains("control, treatment"), "{e}");
    let e = planted(&["treatment:order_rate=1.2", "treatment:order_rate=1.3"]).unwrap_err().to_string();
    assert!(e.contains("already has an order_rate effect"), "{e}");
    let ok = planted(&["control:order_rate=0.9", "treatment:order_rate=1.2"]).unwrap();
    assert_eq!((ok.order_factor(0), ok.order_factor(1)), (0.9, 1.2));
    // Every live category is known to the target check.
    assert!(LIVE_CATEGORIES.contains(&"apparel") && ok.covers(Platform::Taobao.index(), 0, START_MS));
    assert!(!ok.covers(Platform::Taobao.index(), 0, END_MS) && !ok.covers(Platform::Xiaohongshu.index(), 0, START_MS));
}
