//! Statistical calibration of the experiment analysis on planted experiments: the bars of
//! the experiments issue, checked end to end (simulator, exposure and event files, the
//! offline outcome accumulator, `analyze`).
//!
//! Design (the same experiment definition everywhere, changing only its start):
//! - Target: every live category on every platform (the audience of the conversion model),
//!   50/50 split, primary metric orders per visit. A narrower target (apparel on three
//!   platforms) leaves too few orders per arm for the small per-seed populations the
//!   runtime allows, so the normal approximations would be tested outside the regime real
//!   pilots are in.
//! - The window ends a day after the 14 simulated days, so that no order of a visit
//!   entered late on the last day is cut off at the end: every order of a covered visit is
//!   counted, which makes the true effect the per-visit expectation computed in
//!   [`true_effect`].
//! - The 60,000-user runs start the experiment on day 7 (7 days of experiment after 7 days
//!   of history, which CUPED needs as its covariate). The 200-seed runs (2,000 users each)
//!   run it over all 14 days: twice the data per simulated user, and 14 daily looks for the
//!   sequential test.
//!
//! Seeds are fixed: 0..200 for both families of seeds, and 14 for the 60,000-user runs.
//! Note that even a perfectly calibrated analysis misses the 3-7% and 93-97% windows of
//! 200 runs with a probability of about 14% each (a binomial of 200 draws at 5% has a
//! standard deviation of 1.5 points).

use liveprofile_events::{DAY_MS, Event, EventKind, EventReader, LIVE_CATEGORIES, Platform};
use liveprofile_experiments::{
    AnalysisOptions, Experiment, ExperimentOutcomes, Exposure, Metric, Report, UserRow, analyze, read_exposures,
};
use liveprofile_simulator::visits::order_probability;
use liveprofile_simulator::{DEFAULT_START_MS, Effect, PlantedExperiment, SimConfig, Simulator, exposures_path_for};
use rayon::prelude::*;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Simulated days of every run.
const DAYS: u32 = 14;
/// The experiment's end, in days from the start of the data (a day after its last day).
const END_DAY: i64 = DAYS as i64 + 1;
/// The planted factor on the order probability of the treatment arm's covered visits.
const FACTOR: f64 = 1.15;
/// Two-sided significance level of the tests and intervals.
const ALPHA: f64 = 0.05;

/// Users of the single large runs.
const LARGE_USERS: u32 = 60_000;
/// Seed of the single large runs.
const LARGE_SEED: u64 = 14;
/// First day of the experiment in the large runs.
const LARGE_START_DAY: i64 = 7;

/// Seeds of the calibration runs: 0..SEEDS.
const SEEDS: u64 = 200;
/// Users of each calibration run.
const SEED_USERS: u32 = 2_000;
/// First day of the experiment in the calibration runs.
const SEED_START_DAY: i64 = 0;

const TREATMENT: &str = "treatment";

fn day_ms(day: i64) -> i64 {
    DEFAULT_START_MS + day * DAY_MS
}

/// A TOML array of strings.
fn quoted<'a>(names: impl Iterator<Item = &'a str>) -> String {
    names.map(|n| format!("\"{n}\"")).collect::<Vec<_>>().join(", ")
}

fn experiment(start_day: i64) -> Experiment {
    let categories = quoted(LIVE_CATEGORIES.iter().copied());
    let platforms = quoted(Platform::ALL.iter().map(|p| p.as_str()));
    let (start, end) = (day_ms(start_day), day_ms(END_DAY));
    Experiment::parse(&format!(
        r#"
name = "conversion-v2-calibration"
salt = "calibration"
primary = "orders_per_visit"
start = {start}
end = {end}

[target]
categories = [{categories}]
platforms = [{platforms}]

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

/// The experiment with the treatment's order rate multiplied by `factor`, or nothing
/// planted (an A/A experiment) without one.
fn planted(start_day: i64, factor: Option<f64>) -> PlantedExperiment {
    let effects = factor.map(|f| Effect::parse(&format!("{TREATMENT}:order_rate={f}")).unwrap());
    PlantedExperiment::new(experiment(start_day), effects.into_iter().collect()).unwrap()
}

fn simulator(users: u32, seed: u64, planted: PlantedExperiment) -> Simulator {
    Simulator::new(SimConfig { users, days: DAYS, seed, start_ms: DEFAULT_START_MS }).unwrap().with_experiment(planted)
}

/// A simulation written to files: the event file and the exposures logged beside it.
struct Written {
    events: PathBuf,
    exposures: Vec<Exposure>,
}

fn write(dir: &Path, sim: &Simulator) -> Written {
    let events = dir.join(format!("seed{}.parquet", sim.config().seed));
    let summary = sim.write(&events, &|_| {}).unwrap();
    let exposures = read_exposures(&exposures_path_for(&events)).unwrap();
    assert_eq!(summary.exposed_per_arm.iter().map(|(_, n)| n).sum::<u64>(), exposures.len() as u64);
    Written { events, exposures }
}

/// Every event of a file, batch by batch (bounded memory); the file must be clean.
fn for_each_event(path: &Path, mut f: impl FnMut(Event)) {
    let mut reader = EventReader::open(path).unwrap();
    while let Some(batch) = reader.next_batch().unwrap() {
        assert!(batch.rejected.is_empty(), "{}: rejected rows {:?}", path.display(), &batch.rejected[..1]);
        batch.events.into_iter().for_each(&mut f);
    }
}

/// An offline accumulator that has taken in `exposures`.
fn exposed(x: &Experiment, exposures: &[Exposure]) -> ExperimentOutcomes {
    let mut outcomes = ExperimentOutcomes::offline(x.clone());
    for e in exposures {
        assert!(outcomes.expose(e).unwrap(), "second exposure of {}", e.user_id);
    }
    outcomes
}

/// The analysis of everything in a run.
fn analyse(x: &Experiment, run: &Written) -> Report {
    let mut outcomes = exposed(x, &run.exposures);
    for_each_event(&run.events, |e| outcomes.observe(&e));
    analyze(x, &outcomes.table(), &AnalysisOptions::default())
}

/// One analysis after every day of the experiment, for each of `variants` (options whose
/// sequential state each look carries on): look d sees the exposures and events before the
/// end of its day d (the last look sees everything, up to the end of the window). Returns
/// the reports per variant, in look order.
///
/// The looks share one accumulator that has every exposure and takes in the events day by
/// day; a look reads the rows of the users exposed before its cutoff. Every such user's
/// sums are then those of an accumulator built from scratch with only the exposures and
/// events before the cutoff: their events before the cutoff are all in, none after.
fn daily_looks(x: &Experiment, run: &Written, variants: &[AnalysisOptions]) -> Vec<Vec<Report>> {
    let looks = (END_DAY - 1 - (x.start_ms - DEFAULT_START_MS) / DAY_MS) as usize;
    let cutoff = |d: usize| if d + 1 == looks { x.end_ms } else { x.start_ms + (d as i64 + 1) * DAY_MS };
    let mut by_day: Vec<Vec<Event>> = vec![Vec::new(); looks];
    for_each_event(&run.events, |e| {
        let d = (e.ts_ms - x.start_ms).div_euclid(DAY_MS).clamp(0, looks as i64 - 1) as usize;
        by_day[d].push(e);
    });
    let mut outcomes = exposed(x, &run.exposures);
    let mut reports: Vec<Vec<Report>> = variants.iter().map(|_| Vec::with_capacity(looks)).collect();
    for (d, events) in by_day.into_iter().enumerate() {
        for e in &events {
            outcomes.observe(e);
        }
        let rows: Vec<UserRow> = outcomes.table().into_iter().filter(|r| r.first_exposure_ms < cutoff(d)).collect();
        for (options, reports) in variants.iter().zip(&mut reports) {
            let options = match reports.last() {
                Some(previous) => options.clone().carrying(previous),
                None => options.clone(),
            };
            reports.push(analyze(x, &rows, &options));
        }
    }
    reports
}

/// The true relative effect on orders per visit of the factor planted in `sim`'s treatment
/// arm, from the simulator's own model.
///
/// A visit's number, time, platform, category and room do not depend on whether earlier
/// visits ended in an order (each is drawn afresh from the user's random stream), and a
/// user's exposure is their first covered visit, so both arms' exposed users have the same
/// distribution of covered visits. A covered visit orders with probability p (the model's
/// `order_probability`, capped at 0.95) in control and min(factor p, 1) in treatment (the
/// planted experiment's rule), and every order of a covered visit is counted: it comes
/// after the first exposure, and before the end, which is a day after the data. So orders
/// per visit of the arms tend to E[sum min(factor p, 1)] / E[visits] and
/// E[sum p] / E[visits], and the true lift is E[sum min(factor p, 1)] / E[sum p] - 1. The
/// expectations are taken over every covered visit of the users of `sims` with their exact
/// probabilities (no draw of the order itself), pooled over all of them. Because of the
/// caps this is slightly below factor - 1.
///
/// In the runs that start on day 7, an order of a visit entered before the start could
/// also be counted when that visit overlaps the user's first exposure; such orders are
/// not multiplied in either arm, and are too rare to move the figure.
fn true_effect(sims: &[Simulator]) -> f64 {
    let (base, lifted) = sims
        .par_iter()
        .map(|sim| {
            let x = sim.planted().expect("planted");
            let arm = x.experiment().arm_index(TREATMENT).unwrap();
            let factor = x.order_factor(arm);
            let world = sim.world();
            let mut sums = (0.0, 0.0);
            for i in 0..sim.config().users {
                let user = sim.user(i);
                for e in &user.events {
                    let (p, c) = (usize::from(e.platform), usize::from(e.category));
                    if e.kind == EventKind::Enter && x.covers(p, c, e.ts_ms) {
                        let p = order_probability(world, &user.traits, &world.hosts[usize::from(e.host)]);
                        sums.0 += p;
                        sums.1 += (factor * p).min(1.0);
                    }
                }
            }
            sums
        })
        .reduce(|| (0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));
    lifted / base - 1.0
}

/// The primary metric's comparison of treatment with control.
fn primary(report: &Report) -> &liveprofile_experiments::report::MetricResult {
    report.metric(Metric::OrdersPerVisit, TREATMENT).expect("orders per visit of the treatment arm")
}

/// The 95% interval of the primary metric's relative lift.
fn lift_interval(report: &Report) -> (f64, f64, f64) {
    let e = &primary(report).estimate;
    let reason = || format!("not computable: {:?}", e.reason);
    (e.lift.unwrap_or_else(|| panic!("{}", reason())), e.ci_low.expect("ci_low"), e.ci_high.expect("ci_high"))
}

/// The large planted run: its report and the true effect.
fn large_planted() -> &'static (Report, f64) {
    static RUN: OnceLock<(Report, f64)> = OnceLock::new();
    RUN.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let sim = simulator(LARGE_USERS, LARGE_SEED, planted(LARGE_START_DAY, Some(FACTOR)));
        let run = write(dir.path(), &sim);
        let report = analyse(sim.planted().unwrap().experiment(), &run);
        (report, true_effect(std::slice::from_ref(&sim)))
    })
}

#[test]
fn a_planted_15_percent_on_60000_users_is_detected_and_covered() {
    let (report, truth) = large_planted();
    let (lift, low, high) = lift_interval(report);
    let m = primary(report);
    eprintln!(
        "60,000 users, +15% planted on the order rate (true effect on orders per visit {:+.4}%): \
         lift {:+.2}% [{:+.2}%, {:+.2}%], p {:.2e}; exposed {} control, {} treatment; SRM p {:?}",
        100.0 * truth,
        100.0 * lift,
        100.0 * low,
        100.0 * high,
        m.estimate.p_value.unwrap_or(f64::NAN),
        m.control_users,
        m.users,
        report.srm.p_value,
    );
    assert!((truth - (FACTOR - 1.0)).abs() < 1e-3, "true effect {truth}");
    assert!(low > 0.0, "the interval [{low}, {high}] does not exclude 0");
    assert!(low <= FACTOR - 1.0 && FACTOR - 1.0 <= high, "the interval [{low}, {high}] misses +15%");
    assert!(m.significant);
    assert!(!report.srm.flag, "{:?}", report.srm);
}

#[test]
fn cuped_reduces_the_variance_of_orders_per_user_on_60000_users() {
    let (report, _) = large_planted();
    let m = report.metric(Metric::OrdersPerUser, TREATMENT).unwrap();
    let reduction = m.cuped.variance_reduction.unwrap_or_else(|| panic!("no CUPED: {:?}", m.cuped));
    let e = &m.estimate;
    let c = &m.cuped.estimate;
    eprintln!(
        "60,000 users, orders per user: CUPED variance reduction {:.2}% (theta {:?}); lift {:+.2}% \
         [{:+.2}%, {:+.2}%] raw, {:+.2}% [{:+.2}%, {:+.2}%] with CUPED",
        100.0 * reduction,
        m.cuped.theta,
        100.0 * e.lift.unwrap(),
        100.0 * e.ci_low.unwrap(),
        100.0 * e.ci_high.unwrap(),
        100.0 * c.lift.unwrap(),
        100.0 * c.ci_low.unwrap(),
        100.0 * c.ci_high.unwrap(),
    );
    assert!(reduction > 0.0, "CUPED variance reduction {reduction}");
    assert!(c.std_error.unwrap() < e.std_error.unwrap());
}

#[test]
fn an_aa_on_60000_users_covers_0_and_a_tenth_of_an_arm_missing_is_a_sample_ratio_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let sim = simulator(LARGE_USERS, LARGE_SEED, planted(LARGE_START_DAY, None));
    let x = sim.planted().unwrap().experiment().clone();
    let run = write(dir.path(), &sim);
    // Every tenth exposed user of the treatment arm (in file order) goes missing.
    let dropped: HashSet<&str> = run
        .exposures
        .iter()
        .filter(|e| e.arm == TREATMENT)
        .enumerate()
        .filter(|(i, _)| (i + 1).is_multiple_of(10))
        .map(|(_, e)| e.user_id.as_str())
        .collect();
    let kept: Vec<Exposure> = run.exposures.iter().filter(|e| !dropped.contains(e.user_id.as_str())).cloned().collect();
    let (mut all, mut partial) = (exposed(&x, &run.exposures), exposed(&x, &kept));
    for_each_event(&run.events, |e| {
        all.observe(&e);
        partial.observe(&e);
    });
    let report = analyze(&x, &all.table(), &AnalysisOptions::default());
    let broken = analyze(&x, &partial.table(), &AnalysisOptions::default());

    let (lift, low, high) = lift_interval(&report);
    eprintln!(
        "60,000 users, A/A: lift {:+.2}% [{:+.2}%, {:+.2}%]; SRM p {:?} ({:?}); with {} of {} treatment \
         exposures removed: SRM p {:?} ({:?}), flag {}",
        100.0 * lift,
        100.0 * low,
        100.0 * high,
        report.srm.p_value,
        report.srm.observed,
        dropped.len(),
        run.exposures.iter().filter(|e| e.arm == TREATMENT).count(),
        broken.srm.p_value,
        broken.srm.observed,
        broken.srm.flag,
    );
    assert!(low <= 0.0 && 0.0 <= high, "the A/A interval [{low}, {high}] misses 0");
    assert!(!report.srm.flag, "{:?}", report.srm);
    assert!(broken.srm.flag && broken.srm.p_value.unwrap() < 0.001, "{:?}", broken.srm);
}

/// What the daily looks of one A/A seed show under one mixing scale of the sequential test.
struct AaSeed {
    /// The fixed-horizon test of the last look rejects.
    fixed: bool,
    /// Some look's fixed-horizon test rejects (peeking, for comparison).
    peeking: bool,
    /// The sample-ratio-mismatch test flags the last look.
    srm: bool,
    /// Per mixing scale: the sequential p-value after the last look (the smallest over the
    /// looks), and whether some look's sequential test rejects.
    sequential: Vec<(f64, bool)>,
}

/// Relative minimum effects (the mSPRT's mixing standard deviation, relative to the
/// control's value at the first look) the daily looks are analysed with: the default of
/// the analysis, and one at the scale of these small runs' standard error of the lift
/// (about 11% at the end), where the mixture has the most power to reject. With the
/// default alone the check would be weak: at this scale its mixture can hardly reach
/// 1/alpha.
const MIXING: [f64; 2] = [0.05, 0.25];

#[test]
fn over_200_aa_seeds_the_fixed_test_rejects_3_to_7_percent_and_the_daily_sequential_test_at_most_5() {
    let dir = tempfile::tempdir().unwrap();
    let x = experiment(SEED_START_DAY);
    assert_eq!(AnalysisOptions::default().min_effect, MIXING[0]);
    let variants: Vec<AnalysisOptions> =
        MIXING.iter().map(|&min_effect| AnalysisOptions { min_effect, ..AnalysisOptions::default() }).collect();
    let seeds: Vec<AaSeed> = (0..SEEDS)
        .into_par_iter()
        .map(|seed| {
            let sim = simulator(SEED_USERS, seed, planted(SEED_START_DAY, None));
            let run = write(dir.path(), &sim);
            let looks = daily_looks(&x, &run, &variants);
            std::fs::remove_file(&run.events).unwrap();
            let last = looks[0].last().unwrap();
            let p = primary(last).estimate.p_value.unwrap_or_else(|| panic!("seed {seed}: no p-value"));
            let sequential = looks
                .iter()
                .map(|looks| {
                    let s = &primary(looks.last().unwrap()).sequential;
                    let p = s.p_value.unwrap_or_else(|| panic!("seed {seed}: {:?}", s.reason));
                    (p, looks.iter().any(|r| primary(r).sequential.p_value.is_some_and(|p| p < ALPHA)))
                })
                .collect();
            AaSeed {
                fixed: p < ALPHA,
                peeking: looks[0].iter().any(|r| primary(r).estimate.p_value.is_some_and(|p| p < ALPHA)),
                srm: last.srm.flag,
                sequential,
            }
        })
        .collect();
    let count = |f: &dyn Fn(&AaSeed) -> bool| seeds.iter().filter(|s| f(s)).count();
    let (fixed, peeking, srm) = (count(&|s| s.fixed), count(&|s| s.peeking), count(&|s| s.srm));
    eprintln!(
        "{SEEDS} A/A seeds x {SEED_USERS} users, {} daily looks: fixed-horizon rejections {fixed}/{SEEDS} \
         (at any look {peeking}/{SEEDS}), SRM flags {srm}/{SEEDS}",
        END_DAY - 1 - SEED_START_DAY
    );
    let mut sequential = Vec::new();
    for (i, min_effect) in MIXING.iter().enumerate() {
        let rejections = count(&|s| s.sequential[i].1);
        let smallest = seeds.iter().map(|s| s.sequential[i].0).fold(1.0, f64::min);
        eprintln!(
            "  sequential test, tau = {min_effect} x control: rejections at any look {rejections}/{SEEDS} \
             (smallest p {smallest:.4})"
        );
        sequential.push(rejections);
    }
    assert!((6..=14).contains(&fixed), "fixed-horizon rejections {fixed}/{SEEDS}, outside 3-7%");
    for (rejections, min_effect) in sequential.iter().zip(MIXING) {
        assert!(*rejections <= 10, "sequential rejections {rejections}/{SEEDS} with tau {min_effect}, above 5%");
    }
}

#[test]
fn over_200_planted_seeds_the_interval_covers_the_true_effect_93_to_97_percent() {
    let dir = tempfile::tempdir().unwrap();
    let x = experiment(SEED_START_DAY);
    let sims: Vec<Simulator> =
        (0..SEEDS).map(|seed| simulator(SEED_USERS, seed, planted(SEED_START_DAY, Some(FACTOR)))).collect();
    let truth = true_effect(&sims);
    let intervals: Vec<(f64, f64, f64)> = sims
        .par_iter()
        .map(|sim| {
            let run = write(dir.path(), sim);
            let report = analyse(&x, &run);
            std::fs::remove_file(&run.events).unwrap();
            lift_interval(&report)
        })
        .collect();
    let covered = intervals.iter().filter(|(_, low, high)| *low <= truth && truth <= *high).count();
    let below = intervals.iter().filter(|(_, _, high)| *high < truth).count();
    let mean_lift = intervals.iter().map(|(l, _, _)| l).sum::<f64>() / intervals.len() as f64;
    let mean_width = intervals.iter().map(|(_, low, high)| high - low).sum::<f64>() / intervals.len() as f64;
    eprintln!(
        "{SEEDS} planted seeds x {SEED_USERS} users: true effect {:+.4}%, covered {covered}/{SEEDS} \
         (interval below the truth {below}, above {}), mean lift {:+.2}%, mean width {:.2} points",
        100.0 * truth,
        SEEDS as usize - covered - below,
        100.0 * mean_lift,
        100.0 * mean_width,
    );
    assert!((truth - (FACTOR - 1.0)).abs() < 1e-3, "true effect {truth}");
    assert!((186..=194).contains(&covered), "coverage {covered}/{SEEDS}, outside 93-97%");
}
