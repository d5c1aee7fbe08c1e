//! The analysis: distributions against scipy's values, Welch and the delta method on small
//! hand tables, SRM, CUPED, the sequential test, decisions, edge cases that must give
//! numbers or reasons (never NaN, never a panic), and the written report and user table.

use liveprofile_events::Platform;
use liveprofile_experiments::report::{GuardrailStatus, REPORT_HTML, REPORT_JSON, TestKind};
use liveprofile_experiments::stats::{self, Moments, RatioMoments};
use liveprofile_experiments::{
    AnalysisOptions, DecisionRule, Experiment, Metric, Report, Sums, UserRow, Verdict, analyze, write_report,
    write_user_table,
};
use rand::{Rng, SeedableRng};
use rand_distr::{Binomial, Distribution, Gamma, LogNormal, Poisson};
use rand_pcg::Pcg64;

const DEFINITION: &str = r#"
name = "conversion-v2-apparel"
salt = "conversion-v2-apparel-2026-11"
primary = "orders_per_visit"
guardrails = ["watch_minutes_per_visit"]
start = "2026-11-16T00:00:00+08:00"
end = "2026-11-30T00:00:00+08:00"

[target]
categories = ["apparel", "beauty"]

[[arms]]
name = "control"
share = 50

[[arms]]
name = "treatment"
share = 50
models = { conversion = 2 }
"#;

/// The definition's start (2026-11-16T00:00:00+08:00).
const START_MS: i64 = 1_794_758_400_000;

fn experiment() -> Experiment {
    Experiment::parse(DEFINITION).unwrap()
}

fn close(got: f64, want: f64, rel: f64) -> bool {
    (got - want).abs() <= rel * want.abs().max(1e-300)
}

macro_rules! assert_close {
    ($got:expr, $want:expr, $rel:expr) => {{
        let (g, w): (f64, f64) = ($got, $want);
        assert!(
            close(g, w, $rel),
            "{} = {g:e}, want {w:e} (relative error {:e})",
            stringify!($got),
            ((g - w) / w).abs()
        );
    }};
}

// --- distributions -----------------------------------------------------------------------

#[test]
fn t_cdf_matches_scipy() {
    // scipy.stats.t.cdf(t, df)
    for (t, df, want) in [
        (-2.5, 3.0, 0.04385332350403278),
        (1.96, 10.0, 0.9607818798761502),
        (0.3, 2.5, 0.6063288142524014),
        (-4.0, 7.3, 0.002381183582163554),
        (2.0, 1000.0, 0.9771148267533741),
        (-3.1, 59998.7, 0.000968050984441766),
        (0.01, 0.8, 0.5030387700651751),
        (12.0, 5.0, 0.9999645525374142),
        (-40.0, 4.0, 1.1670081613006339e-06),
    ] {
        assert_close!(stats::t_cdf(t, df), want, 1e-12);
    }
}

#[test]
fn t_quantile_matches_scipy() {
    // scipy.stats.t.ppf(p, df)
    for (p, df, want) in [
        (0.975, 1.0, 12.706204736174694),
        (0.975, 2.5, 3.5746548420036817),
        (0.975, 10.0, 2.228138851986274),
        (0.975, 123.45, 1.9793670082936676),
        (0.975, 60000.0, 1.9600035231779311),
        (0.025, 7.0, -2.3646242515927844),
        (0.999, 3.3, 8.9515951094625),
        (1e-6, 4.0, -41.577854150450975),
    ] {
        assert_close!(stats::t_quantile(p, df), want, 1e-12);
    }
}

#[test]
fn chi_square_and_normal_match_scipy() {
    // scipy.stats.chi2.sf(x, df)
    for (x, df, want) in [
        (3.84, 1.0, 0.05004352124870519),
        (10.0, 1.0, 0.001565402258002549),
        (0.5, 3.0, 0.9188914116546758),
        (25.0, 2.0, 3.7266531720786718e-06),
        (40.0, 4.0, 4.328422607120966e-08),
        (120.0, 1.0, 6.326068263677272e-28),
        (7.2, 15.0, 0.9518602922048287),
    ] {
        assert_close!(stats::chi2_sf(x, df), want, 1e-12);
    }
    // scipy.stats.norm.cdf(z)
    for (z, want) in [
        (-8.0, 6.22096057427174e-16),
        (-3.0, 0.0013498980316300933),
        (-1.0, 0.15865525393145707),
        (0.0, 0.5),
        (0.5, 0.6914624612740131),
        (1.96, 0.9750021048517795),
        (6.0, 0.9999999990134123),
    ] {
        assert_close!(stats::normal_cdf(z), want, 1e-12);
    }
    // scipy.stats.norm.ppf(p)
    for (p, want) in [
        (1e-10, -6.361340902404056),
        (0.001, -3.090232306167813),
        (0.025, -1.9599639845400545),
        (0.3, -0.5244005127080409),
        (0.975, 1.959963984540054),
        (0.8, 0.8416212335729143),
    ] {
        assert_close!(stats::normal_quantile(p), want, 1e-12);
    }
}

// --- tests on hand tables -----------------------------------------------------------------

#[test]
fn welch_matches_scipy_on_a_hand_table() {
    let a = Moments::of(&[3.1, 4.7, 2.2, 5.9, 4.4, 3.8]);
    let b = Moments::of(&[2.0, 2.9, 3.5, 1.8, 2.6, 2.2, 3.0, 2.4]);
    let w = stats::welch(&a, &b, 0.05).unwrap();
    // scipy.stats.ttest_ind(a, b, equal_var=False) and its confidence_interval(0.95)
    assert_close!(w.statistic, 2.5997301040145824, 1e-12);
    assert_close!(w.p_value, 0.03812103523133117, 1e-12);
    assert_close!(w.df.unwrap(), 6.445594709675571, 1e-12);
    assert_close!(w.ci_low, 0.10902063179766519, 1e-11);
    assert_close!(w.ci_high, 2.8243127015356686, 1e-12);
    // One user in an arm, or no variance at all: not computable, with a reason.
    assert!(stats::welch(&Moments::of(&[1.0]), &b, 0.05).is_err());
    assert!(stats::welch(&Moments::of(&[1.0, 1.0]), &Moments::of(&[2.0, 2.0]), 0.05).is_err());
}

#[test]
fn delta_method_matches_the_formula_on_a_hand_table() {
    let t = RatioMoments::of(&[1.0, 0.0, 2.0, 0.0, 3.0, 1.0], &[3.0, 1.0, 4.0, 2.0, 5.0, 2.0]);
    let c = RatioMoments::of(&[0.0, 1.0, 0.0, 1.0, 1.0], &[2.0, 2.0, 1.0, 3.0, 2.0]);
    // numpy: mean, var(ddof=1), cov(ddof=1) into Deng et al.'s formula
    let (rt, vt) = (t.ratio().unwrap(), t.ratio_variance().unwrap());
    let (rc, vc) = (c.ratio().unwrap(), c.ratio_variance().unwrap());
    assert_close!(rt, 0.4117647058823529, 1e-14);
    assert_close!(vt, 0.008074615964847159, 1e-12);
    assert_close!(rc, 0.3, 1e-14);
    assert_close!(vc, 0.009750000000000003, 1e-12);
    let lift = stats::relative_lift(rt, vt, rc, vc, 0.05).unwrap();
    assert_close!(lift.lift, 0.37254901960784315, 1e-12);
    assert_close!(lift.std_error * lift.std_error, 0.29380612638116743, 1e-12);
    let z = stats::z_test(rt - rc, vt + vc, 0.05).unwrap();
    assert_close!(z.p_value, 0.4025176759031205, 1e-12);
    // The linearised values carry the same variance.
    let y = [1.0, 0.0, 2.0, 0.0, 3.0, 1.0];
    let x = [3.0, 1.0, 4.0, 2.0, 5.0, 2.0];
    let l = Moments::of(&stats::linearise(&y, &x, rt, t.mean_x));
    assert_close!(l.mean, rt, 1e-14);
    assert_close!(l.variance_of_mean().unwrap(), vt, 1e-12);
    // No visits: no ratio.
    assert!(RatioMoments::of(&[0.0, 0.0], &[0.0, 0.0]).ratio().is_err());
}

#[test]
fn chi_square_goodness_of_fit_matches_scipy() {
    // scipy.stats.chisquare([310, 290, 420], [306, 306, 408])
    let g = stats::chi_square_gof(&[310, 290, 420], &[30.0, 30.0, 40.0]).unwrap();
    assert_close!(g.p_value, 0.537452425992069, 1e-12);
    let g = stats::chi_square_gof(&[27_000, 30_000], &[50.0, 50.0]).unwrap();
    assert_close!(g.chi_square, 157.89473684210526, 1e-13);
    assert_close!(g.p_value, 3.2631834111182286e-36, 1e-11);
}

#[test]
fn sample_size_is_the_textbook_one() {
    // 2 sd^2 (z_0.975 + z_0.8)^2 / effect^2 with sd = 1, effect = 0.1: 1569.8 -> 1570.
    assert_eq!(stats::sample_size_per_arm(1.0, 0.1, 0.05, 0.8).unwrap(), 1570);
    assert!(stats::sample_size_per_arm(1.0, 0.0, 0.05, 0.8).is_err());
}

// --- synthetic experiments ------------------------------------------------------------------

/// Knobs of a synthetic table.
#[derive(Clone, Copy)]
struct Synth {
    users: usize,
    seed: u64,
    /// Multiplier of the treatment's order probability per visit.
    order_effect: f64,
    /// Multiplier of the treatment's watch time per visit.
    watch_effect: f64,
    /// Share of treatment users dropped (an exposure-logging bug).
    drop_treatment: f64,
}

impl Synth {
    fn new(users: usize, seed: u64) -> Synth {
        Synth { users, seed, order_effect: 1.0, watch_effect: 1.0, drop_treatment: 0.0 }
    }
}

/// Users with a persistent activity level and buying propensity, so the pre-exposure
/// period predicts the post one; arms 50/50 at random.
fn synth(s: Synth) -> Vec<UserRow> {
    let mut rng = Pcg64::seed_from_u64(s.seed);
    let activity = Gamma::new(1.0, 4.0).unwrap();
    let propensity = Gamma::new(1.0, 0.04).unwrap();
    let price = LogNormal::new(4.0, 1.0).unwrap();
    let platforms = [Platform::Taobao, Platform::Douyin, Platform::Kuaishou];
    let mut rows = Vec::with_capacity(s.users);
    for i in 0..s.users {
        let arm = usize::from(rng.random::<f64>() < 0.5);
        if arm == 1 && rng.random::<f64>() < s.drop_treatment {
            continue;
        }
        let level: f64 = activity.sample(&mut rng);
        let p_order = f64::min(propensity.sample(&mut rng), 0.5);
        let period = |rng: &mut Pcg64, days: f64, order_mult: f64, watch_mult: f64| {
            let mut sums = Sums::default();
            let visits = Poisson::new(level * days / 7.0 + 1e-9).unwrap().sample(rng) as u64;
            sums.visits = visits;
            if visits > 0 {
                sums.orders = Binomial::new(visits, (p_order * order_mult).min(1.0)).unwrap().sample(rng);
                sums.watch_ms = (0..visits).map(|_| (rng.random::<f64>() * 300_000.0 * watch_mult) as i64).sum();
                sums.interactions = Poisson::new(visits as f64 * 0.8).unwrap().sample(rng) as u64;
            }
            sums.gmv_units = (0..sums.orders).map(|_| (price.sample(rng) * 1e4) as i64).sum();
            sums.events = 2 * visits + sums.orders + sums.interactions;
            let used = 1 + usize::from(rng.random::<f64>() < 0.12);
            for p in platforms.iter().take(used) {
                if visits > 0 {
                    sums.platforms |= 1 << p.index();
                }
            }
            sums
        };
        let pre = period(&mut rng, 7.0, 1.0, 1.0);
        let (om, wm) = if arm == 1 { (s.order_effect, s.watch_effect) } else { (1.0, 1.0) };
        let post = period(&mut rng, 14.0, om, wm);
        rows.push(UserRow {
            user_id: format!("u{i:06}"),
            arm,
            platform: platforms[i % 3],
            category: if i % 4 == 0 { "beauty".to_owned() } else { "apparel".to_owned() },
            room_id: Some(format!("r{}", i % 17)),
            first_exposure_ms: START_MS + i as i64 * 1000,
            pre,
            post,
        });
    }
    rows
}

fn primary(report: &Report) -> &liveprofile_experiments::report::MetricResult {
    report.metric(report.primary, "treatment").unwrap()
}

#[test]
fn srm_is_flagged_when_a_tenth_of_one_arm_is_missing() {
    let e = experiment();
    let opts = AnalysisOptions::default();
    let full = analyze(&e, &synth(Synth::new(60_000, 1)), &opts);
    assert!(!full.srm.flag, "{:?}", full.srm);
    assert!(full.srm.p_value.unwrap() > 0.001);
    assert_ne!(full.decision.verdict, Verdict::Invalid);
    let dropped = analyze(&e, &synth(Synth { drop_treatment: 0.1, ..Synth::new(60_000, 1) }), &opts);
    assert!(dropped.srm.flag, "{:?}", dropped.srm);
    assert!(dropped.srm.p_value.unwrap() < 1e-10);
    assert_eq!(dropped.decision.verdict, Verdict::Invalid);
    assert!(dropped.decision.reason.contains("sample-ratio mismatch"), "{}", dropped.decision.reason);
}

#[test]
fn cuped_narrows_the_interval_when_pre_and_post_correlate() {
    let report = analyze(&experiment(), &synth(Synth::new(20_000, 2)), &AnalysisOptions::default());
    for metric in [Metric::OrdersPerUser, Metric::GmvPerUser, Metric::OrdersPerVisit, Metric::WatchMinutesPerVisit] {
        let m = report.metric(metric, "treatment").unwrap();
        let vr = m.cuped.variance_reduction.unwrap();
        let (raw_w, cuped_w) = (
            m.estimate.ci_high.unwrap() - m.estimate.ci_low.unwrap(),
            m.cuped.estimate.ci_high.unwrap() - m.cuped.estimate.ci_low.unwrap(),
        );
        assert!(m.cuped.theta.is_some(), "{metric}");
        if metric == Metric::OrdersPerUser {
            // Orders follow a persistent activity level and propensity: a clear gain.
            assert!(vr > 0.1, "{metric}: variance reduction {vr}");
            assert!(cuped_w < raw_w, "{metric}: {cuped_w} vs {raw_w}");
        }
        assert!(vr > -0.01, "{metric}: CUPED made the variance worse: {vr}");
    }
}

#[test]
fn sequential_p_is_never_below_the_fixed_horizon_p() {
    let e = experiment();
    for seed in 0..6 {
        for effect in [1.0, 1.1, 1.3] {
            let rows =
                synth(Synth { order_effect: effect, watch_effect: 1.0 / effect, ..Synth::new(8_000, 100 + seed) });
            let report = analyze(&e, &rows, &AnalysisOptions::default());
            for m in &report.metrics {
                let (Some(fixed), Some(seq)) = (m.estimate.p_value, m.sequential.p_value) else { continue };
                assert!(seq >= fixed, "{} seed {seed} effect {effect}: sequential {seq} < fixed {fixed}", m.metric);
                // The confidence sequence is wider than the fixed-horizon interval.
                assert!(m.sequential.ci_low.unwrap() <= m.estimate.difference_ci_low.unwrap());
                assert!(m.sequential.ci_high.unwrap() >= m.estimate.difference_ci_high.unwrap());
            }
        }
    }
}

#[test]
fn sequential_state_carries_the_running_minimum_and_tau() {
    let e = experiment();
    let strong = synth(Synth { order_effect: 1.4, ..Synth::new(20_000, 7) });
    let day1 = analyze(&e, &strong, &AnalysisOptions::default());
    let p1 = primary(&day1).sequential.p_value.unwrap();
    let tau1 = primary(&day1).sequential.tau.unwrap();
    assert!(p1 < 0.05, "{p1}");
    // A later look on data without the effect keeps the earlier minimum, tau and bounds.
    let null = synth(Synth::new(20_000, 8));
    let day2 = analyze(&e, &null, &AnalysisOptions::default().carrying(&day1));
    let s = &primary(&day2).sequential;
    assert_eq!(s.p_value.unwrap(), p1);
    assert_eq!(s.tau.unwrap(), tau1);
    let fresh = analyze(&e, &null, &AnalysisOptions::default());
    assert!(primary(&fresh).sequential.p_value.unwrap() > p1);
    // The same data looked at twice: nothing changes.
    let again = analyze(&e, &strong, &AnalysisOptions::default().carrying(&day1));
    assert_eq!(primary(&again).sequential, primary(&day1).sequential);
}

#[test]
fn a_planted_effect_ships_and_its_interval_covers_it() {
    let rows = synth(Synth { order_effect: 1.3, ..Synth::new(40_000, 3) });
    let report = analyze(&experiment(), &rows, &AnalysisOptions::default());
    let m = primary(&report);
    assert_eq!(m.test, TestKind::Delta);
    assert!(m.significant && m.estimate.p_value.unwrap() < 1e-6, "{:?}", m.estimate);
    assert!(m.estimate.ci_low.unwrap() < 0.3 && 0.3 < m.estimate.ci_high.unwrap(), "{:?}", m.estimate);
    assert_eq!(report.decision.verdict, Verdict::Ship, "{}", report.decision.reason);
    assert_eq!(report.decision.arm.as_deref(), Some("treatment"));
    assert!(report.guardrails.iter().all(|g| g.status == GuardrailStatus::Pass));
}

#[test]
fn a_harmful_change_stops_and_a_failed_guardrail_stops_too() {
    let e = experiment();
    let no_guardrail = Experiment::parse(&DEFINITION.replace(r#"["watch_minutes_per_visit"]"#, "[]")).unwrap();
    let rows = synth(Synth { order_effect: 0.7, ..Synth::new(40_000, 4) });
    let worse = analyze(&no_guardrail, &rows, &AnalysisOptions::default());
    assert_eq!(worse.decision.verdict, Verdict::Stop, "{}", worse.decision.reason);
    assert!(worse.decision.reason.contains("significantly worse"), "{}", worse.decision.reason);
    let guard = analyze(
        &e,
        &synth(Synth { order_effect: 1.3, watch_effect: 0.8, ..Synth::new(40_000, 5) }),
        &AnalysisOptions::default(),
    );
    assert_eq!(guard.guardrails.len(), 1);
    assert_eq!(guard.guardrails[0].status, GuardrailStatus::Fail);
    assert_eq!(guard.decision.verdict, Verdict::Stop, "{}", guard.decision.reason);
    assert!(guard.decision.reason.contains("guardrail failed: watch_minutes_per_visit"), "{}", guard.decision.reason);
}

#[test]
fn no_effect_keeps_running_and_says_how_many_users_are_missing() {
    let report = analyze(&experiment(), &synth(Synth::new(3_000, 6)), &AnalysisOptions::default());
    let m = primary(&report);
    assert!(!m.significant, "{:?}", m.estimate);
    assert_eq!(report.decision.verdict, Verdict::KeepRunning, "{}", report.decision.reason);
    let more = report.decision.additional_users_per_arm.unwrap();
    let need = m.power.required_users_per_arm.unwrap();
    assert!(more > 0 && more == need - m.users.min(m.control_users), "{more} {need}");
    assert!(report.decision.reason.contains("more users per arm"), "{}", report.decision.reason);
    // Read sequentially, a null result also keeps running.
    let seq = analyze(
        &experiment(),
        &synth(Synth::new(3_000, 6)),
        &AnalysisOptions { decision_rule: DecisionRule::Sequential, ..AnalysisOptions::default() },
    );
    assert_eq!(seq.decision.verdict, Verdict::KeepRunning);
}

#[test]
fn gmv_has_a_winsorised_variant_that_does_not_decide() {
    let report = analyze(&experiment(), &synth(Synth::new(10_000, 9)), &AnalysisOptions::default());
    let m = report.metric(Metric::GmvPerUser, "treatment").unwrap();
    let w = m.winsorized.as_ref().unwrap();
    assert!(!w.decides && w.quantile == 0.999);
    assert!(w.cap.unwrap() > 0.0);
    assert!(w.estimate.mean.unwrap() <= m.estimate.mean.unwrap());
    assert!(w.estimate.p_value.is_some());
    assert!(report.metric(Metric::OrdersPerUser, "treatment").unwrap().winsorized.is_none());
}

#[test]
fn breakdown_covers_every_platform_and_category_of_the_first_exposure() {
    let report = analyze(&experiment(), &synth(Synth::new(6_000, 10)), &AnalysisOptions::default());
    let b = &report.breakdown;
    let platforms: Vec<&str> = b.platform.iter().map(|s| s.value.as_str()).collect();
    assert_eq!(platforms, ["douyin", "kuaishou", "taobao"]);
    let categories: Vec<&str> = b.category.iter().map(|s| s.value.as_str()).collect();
    assert_eq!(categories, ["apparel", "beauty"]);
    let users: u64 = b.platform.iter().flat_map(|s| s.arms.iter().map(|a| a.users)).sum();
    assert_eq!(users, report.users);
    assert!(b.category.iter().all(|s| s.comparisons.len() == 1 && s.comparisons[0].estimate.p_value.is_some()));
}

#[test]
fn a_a_tests_reject_about_alpha_of_the_time() {
    let e = experiment();
    let (mut fixed, mut sequential, mut covered) = (0, 0, 0);
    let runs = 200;
    for seed in 0..runs {
        let report = analyze(&e, &synth(Synth::new(4_000, 1_000 + seed)), &AnalysisOptions::default());
        let m = primary(&report);
        fixed += usize::from(m.estimate.p_value.unwrap() < 0.05);
        sequential += usize::from(m.sequential.p_value.unwrap() < 0.05);
        covered += usize::from(m.estimate.ci_low.unwrap() <= 0.0 && 0.0 <= m.estimate.ci_high.unwrap());
    }
    let rate = fixed as f64 / runs as f64;
    assert!((0.02..=0.09).contains(&rate), "fixed-horizon rejection rate {rate}");
    assert!(sequential <= fixed, "sequential {sequential} > fixed {fixed}");
    assert!(covered as f64 / runs as f64 >= 0.9, "lift interval covered 0 in {covered} of {runs}");
}

// --- edge cases ------------------------------------------------------------------------------

fn json_has_no_nan(report: &Report) -> serde_json::Value {
    let text = serde_json::to_string(report).unwrap();
    assert!(!text.contains("NaN") && !text.contains("inf"), "{text}");
    // Reads back (floats to within their printed precision).
    let back: Report = serde_json::from_str(&text).unwrap();
    assert_eq!(
        (&back.decision, &back.srm.flag, back.metrics.len()),
        (&report.decision, &report.srm.flag, report.metrics.len())
    );
    serde_json::from_str(&text).unwrap()
}

#[test]
fn edge_cases_give_reasons_not_nan_or_panics() {
    let e = experiment();
    let opts = AnalysisOptions::default();
    // No users at all.
    let empty = analyze(&e, &[], &opts);
    assert_eq!(empty.users, 0);
    assert!(!empty.srm.flag && empty.srm.p_value.is_none() && empty.srm.reason.is_some());
    assert_eq!(empty.decision.verdict, Verdict::KeepRunning);
    assert!(primary(&empty).estimate.reason.is_some());
    json_has_no_nan(&empty);

    // Only control users, and a row with an unknown arm.
    let mut rows = synth(Synth::new(200, 11));
    rows.retain(|r| r.arm == 0);
    let mut stray = rows[0].clone();
    stray.arm = 7;
    rows.push(stray);
    let one_arm = analyze(&e, &rows, &opts);
    assert_eq!(one_arm.ignored_rows, 1);
    assert!(one_arm.srm.flag);
    assert!(primary(&one_arm).estimate.lift.is_none() && primary(&one_arm).estimate.reason.is_some());
    json_has_no_nan(&one_arm);

    // Users without any visit, orders or pre-period: every ratio and variance is degenerate.
    let idle: Vec<UserRow> = (0..50)
        .map(|i| UserRow {
            user_id: format!("idle{i}"),
            arm: i % 2,
            platform: Platform::Taobao,
            category: "apparel".to_owned(),
            room_id: None,
            first_exposure_ms: 0,
            pre: Sums::default(),
            post: Sums::default(),
        })
        .collect();
    let report = analyze(&e, &idle, &opts);
    let m = primary(&report);
    assert!(m.estimate.mean.is_none() && m.estimate.reason.as_deref().unwrap().contains("denominator"));
    assert!(m.cuped.estimate.reason.is_some() && m.sequential.reason.is_some() && m.power.reason.is_some());
    let orders = report.metric(Metric::OrdersPerUser, "treatment").unwrap();
    assert_eq!(orders.estimate.mean, Some(0.0));
    assert!(orders.estimate.p_value.is_none() && orders.estimate.reason.is_some());
    let v = json_has_no_nan(&report);
    assert!(v["metrics"][0]["lift"].is_null());

    // Two users per arm with identical values: zero variance.
    let mut flat = idle[..4].to_vec();
    for r in &mut flat {
        r.post.visits = 2;
        r.post.orders = 1;
    }
    let report = analyze(&e, &flat, &opts);
    let m = primary(&report);
    assert_eq!(m.estimate.lift, Some(0.0));
    assert!(m.estimate.p_value.is_none() && m.estimate.reason.is_some());
    json_has_no_nan(&report);

    // Out-of-range options fall back to the defaults.
    let odd = AnalysisOptions { alpha: f64::NAN, srm_alpha: 2.0, min_effect: -1.0, ..AnalysisOptions::default() };
    let report = analyze(&e, &synth(Synth::new(500, 12)), &odd);
    assert_eq!((report.alpha, report.srm_alpha, report.min_effect), (0.05, 0.001, 0.05));
}

// --- files -------------------------------------------------------------------------------------

#[test]
fn report_and_user_table_are_written_with_their_fields() {
    let e = experiment();
    let rows = synth(Synth::new(2_000, 13));
    let report = analyze(&e, &rows, &AnalysisOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let (json, html) = write_report(dir.path(), &report).unwrap();
    assert_eq!(json, dir.path().join(REPORT_JSON));
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert!(v["srm"]["p_value"].is_f64() && v["srm"]["flag"].is_boolean());
    assert_eq!(v["arms"][0]["name"], "control");
    assert_eq!(v["arms"].as_array().unwrap().iter().map(|a| a["users"].as_u64().unwrap()).sum::<u64>(), 2_000);
    let metrics = v["metrics"].as_array().unwrap();
    assert_eq!(metrics.len(), Metric::ALL.len());
    for m in metrics {
        for key in
            ["metric", "arm", "mean", "control_mean", "lift", "ci_low", "ci_high", "p_value", "cuped", "sequential"]
        {
            assert!(m.get(key).is_some(), "{key} missing in {m}");
        }
    }
    assert_eq!(metrics[0]["metric"], "orders_per_visit");
    assert_eq!(metrics[0]["kind"], "ratio");
    assert!(v["decision"]["verdict"].is_string());
    let page = std::fs::read_to_string(&html).unwrap();
    assert_eq!(html, dir.path().join(REPORT_HTML));
    assert!(page.starts_with("<!DOCTYPE html>") && page.contains("<svg") && page.contains("orders_per_visit"));
    assert!(!page.contains("<script") && !page.contains("<link"));

    let table = dir.path().join("users.parquet");
    assert_eq!(write_user_table(&table, &e, &rows).unwrap(), 2_000);
    let names: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|f| f.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(names.iter().all(|n| !n.contains("partial")), "{names:?}");
    let file = std::fs::File::open(&table).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap().build().unwrap();
    let mut n = 0;
    let mut visits = 0.0;
    for batch in reader {
        let batch = batch.unwrap();
        for col in [
            "user_id",
            "arm",
            "platform",
            "category",
            "first_exposure_ms",
            "gmv_per_user_num",
            "orders_per_visit_pre_den",
        ] {
            assert!(batch.column_by_name(col).is_some(), "{col}");
        }
        let den = batch.column_by_name("orders_per_visit_den").unwrap();
        let den = den.as_any().downcast_ref::<arrow::array::Float64Array>().unwrap();
        visits += den.values().iter().sum::<f64>();
        n += batch.num_rows();
    }
    assert_eq!(n, 2_000);
    assert_eq!(visits, rows.iter().map(|r| r.post.visits as f64).sum::<f64>());
}

/// Writes a report, its user table and the definition into `$LIVEPROFILE_EXPERIMENT_FIXTURE`
/// when set (for checking the Python parity test without the command line).
#[test]
fn fixture_for_the_python_parity_test() {
    let Some(dir) = std::env::var_os("LIVEPROFILE_EXPERIMENT_FIXTURE") else { return };
    let dir = std::path::PathBuf::from(dir);
    let e = experiment();
    let rows = synth(Synth { order_effect: 1.1, ..Synth::new(30_000, 14) });
    let report = analyze(&e, &rows, &AnalysisOptions::default());
    write_report(&dir, &report).unwrap();
    write_user_table(&dir.join("users.parquet"), &e, &rows).unwrap();
    std::fs::write(dir.join("experiment.toml"), e.to_toml()).unwrap();
}
