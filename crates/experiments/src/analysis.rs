//! The analysis of an experiment from its exposed users' rows: per arm users and metric
//! values, each treatment arm against the control (the first arm) on every metric, CUPED,
//! the always-valid sequential test, the sample-ratio-mismatch test, guardrails, the
//! primary metric by platform and category, and one decision.
//!
//! Methods:
//! - per-user metrics: Welch's t-test of the difference of means;
//! - ratio metrics (per visit): the delta method on per-user sums (Deng, Knoblich, Lu,
//!   KDD 2018) and a normal test;
//! - relative lift t/c - 1: its interval by the delta method (normal);
//! - CUPED (Deng, Xu, Kohavi, Walker, WSDM 2013) with the metric's own pre-exposure value,
//!   theta over all users; for ratio metrics on the linearised per-user values;
//! - mSPRT (Johari et al. 2022) on the difference, with a normal mixing distribution of
//!   standard deviation tau = `min_effect` x |control value| at the first look (carried
//!   unchanged to later looks through [`AnalysisOptions::previous_sequential`], as the
//!   mixture must not depend on the data it tests);
//! - GMV per user is also reported winsorised at the pooled `winsorize_quantile`; the raw
//!   figure decides.
//!
//! The decision reads the unadjusted test of the [`DecisionRule`]; with several treatment
//! arms each is compared with control at `alpha` without a multiplicity correction.

use crate::definition::Experiment;
use crate::metric::{Metric, MetricKind};
use crate::outcomes::UserRow;
use crate::report::{
    ArmDecision, ArmSummary, Breakdown, Cuped, Decision, DecisionRule, Estimate, GuardrailCheck, GuardrailStatus,
    MetricResult, Power, Report, Role, Segment, SegmentArm, SegmentComparison, SequentialResult, SequentialState, Srm,
    TestKind, Verdict, Winsorized,
};
use crate::stats::{self, Moments, RatioMoments, StatsError, StatsResult};
use std::collections::BTreeMap;

/// Settings of an analysis.
#[derive(Debug, Clone, PartialEq)]
pub struct AnalysisOptions {
    /// Significance level (two-sided) of the tests and intervals (default 0.05).
    pub alpha: f64,
    /// Significance level of the sample-ratio-mismatch test (default 0.001).
    pub srm_alpha: f64,
    /// Relative minimum effect of interest (default 0.05 = 5% of the control's value): the
    /// mSPRT's tau and the effect the sample size is computed for.
    pub min_effect: f64,
    /// Power of the sample size (default 0.8).
    pub power: f64,
    /// Quantile of the pooled values GMV per user is capped at in its winsorised variant
    /// (default 0.999).
    pub winsorize_quantile: f64,
    /// Which test the decision reads (default fixed horizon).
    pub decision_rule: DecisionRule,
    /// The sequential tests' states from the previous look ([`Report::sequential_states`]);
    /// empty at the first look.
    pub previous_sequential: Vec<SequentialState>,
}

impl Default for AnalysisOptions {
    fn default() -> Self {
        AnalysisOptions {
            alpha: 0.05,
            srm_alpha: 0.001,
            min_effect: 0.05,
            power: 0.8,
            winsorize_quantile: 0.999,
            decision_rule: DecisionRule::FixedHorizon,
            previous_sequential: Vec::new(),
        }
    }
}

impl AnalysisOptions {
    /// These options carrying the sequential state of a previous look's report.
    pub fn carrying(mut self, previous: &Report) -> Self {
        self.previous_sequential = previous.sequential_states();
        self
    }

    /// The options with every out-of-range value replaced by its default.
    fn checked(&self) -> AnalysisOptions {
        let d = AnalysisOptions::default();
        let unit = |x: f64, default: f64| if x > 0.0 && x < 1.0 { x } else { default };
        AnalysisOptions {
            alpha: unit(self.alpha, d.alpha),
            srm_alpha: unit(self.srm_alpha, d.srm_alpha),
            min_effect: if self.min_effect.is_finite() && self.min_effect > 0.0 {
                self.min_effect
            } else {
                d.min_effect
            },
            power: unit(self.power, d.power),
            winsorize_quantile: if (0.0..=1.0).contains(&self.winsorize_quantile) {
                self.winsorize_quantile
            } else {
                d.winsorize_quantile
            },
            decision_rule: self.decision_rule,
            previous_sequential: self.previous_sequential.clone(),
        }
    }
}

/// A number for the report: `None` unless finite.
fn fin(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

/// One arm's per-user (numerator, denominator) values of a metric, after and before the
/// first exposure.
#[derive(Debug, Default, Clone)]
struct Sample {
    y: Vec<f64>,
    x: Vec<f64>,
    pre_y: Vec<f64>,
    pre_x: Vec<f64>,
}

impl Sample {
    fn of<'a>(metric: Metric, rows: impl Iterator<Item = &'a UserRow>) -> Sample {
        let mut s = Sample::default();
        for r in rows {
            let (y, x) = metric.value(&r.post);
            let (py, px) = metric.value(&r.pre);
            s.y.push(y);
            s.x.push(x);
            s.pre_y.push(py);
            s.pre_x.push(px);
        }
        s
    }
}

/// An arm's estimate of a metric and the variance of that estimate.
#[derive(Debug, Clone)]
struct ArmStat {
    n: u64,
    point: StatsResult<f64>,
    var: StatsResult<f64>,
    moments: Moments,
}

impl ArmStat {
    /// A mean of per-user values.
    fn of_values(values: &[f64]) -> ArmStat {
        let moments = Moments::of(values);
        let point = if values.is_empty() { Err(StatsError::NoUsers) } else { Ok(moments.mean) };
        ArmStat { n: moments.n, point, var: moments.variance_of_mean(), moments }
    }

    /// A ratio of means with the delta-method variance.
    fn of_ratio(y: &[f64], x: &[f64]) -> ArmStat {
        let m = RatioMoments::of(y, x);
        ArmStat {
            n: m.n,
            point: m.ratio(),
            var: m.ratio_variance(),
            moments: Moments { n: m.n, mean: 0.0, variance: 0.0 },
        }
    }

    fn of(kind: MetricKind, s: &Sample) -> ArmStat {
        match kind {
            MetricKind::PerUser => ArmStat::of_values(&s.y),
            MetricKind::Ratio => ArmStat::of_ratio(&s.y, &s.x),
        }
    }
}

fn test_of(kind: MetricKind) -> TestKind {
    match kind {
        MetricKind::PerUser => TestKind::Welch,
        MetricKind::Ratio => TestKind::Delta,
    }
}

/// Treatment `t` against control `c`.
fn compare(test: TestKind, t: &ArmStat, c: &ArmStat, alpha: f64) -> Estimate {
    let mut e =
        Estimate { mean: t.point.ok().and_then(fin), control_mean: c.point.ok().and_then(fin), ..Estimate::default() };
    let mut reasons: Vec<String> = Vec::new();
    let (pt, pc) = match (t.point, c.point) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(x), _) => {
            e.reason = Some(format!("treatment: {x}"));
            return e;
        }
        (_, Err(x)) => {
            e.reason = Some(format!("control: {x}"));
            return e;
        }
    };
    e.difference = fin(pt - pc);
    if pc != 0.0 {
        e.lift = fin(pt / pc - 1.0);
    }
    match (t.var, c.var) {
        (Ok(vt), Ok(vc)) => {
            let cmp = match test {
                TestKind::Welch => stats::welch(&t.moments, &c.moments, alpha),
                TestKind::Delta => stats::z_test(pt - pc, vt + vc, alpha),
            };
            match cmp {
                Ok(cmp) => {
                    e.p_value = fin(cmp.p_value);
                    e.difference_ci_low = fin(cmp.ci_low);
                    e.difference_ci_high = fin(cmp.ci_high);
                    e.std_error = fin(cmp.std_error);
                    e.df = cmp.df.and_then(fin);
                }
                Err(x) => reasons.push(x.to_string()),
            }
            match stats::relative_lift(pt, vt, pc, vc, alpha) {
                Ok(l) if l.std_error > 0.0 => {
                    e.ci_low = fin(l.ci_low);
                    e.ci_high = fin(l.ci_high);
                }
                Ok(_) => reasons.push(StatsError::ZeroVariance.to_string()),
                Err(x) => reasons.push(x.to_string()),
            }
        }
        (Err(x), _) | (_, Err(x)) => reasons.push(x.to_string()),
    }
    reasons.dedup();
    if !reasons.is_empty() {
        e.reason = Some(reasons.join("; "));
    }
    e
}

/// The pooled pre-exposure covariate of every user (in `samples` order) and, for ratio
/// metrics, the post values linearised per arm.
struct CupedInputs {
    /// Per arm: post values (per-user values, or linearised ratios; `None` when the arm's
    /// ratio is not computable).
    post: Vec<Option<Vec<f64>>>,
    /// Per arm: covariate values.
    pre: Vec<Vec<f64>>,
}

fn cuped_inputs(kind: MetricKind, samples: &[Sample]) -> StatsResult<CupedInputs> {
    match kind {
        MetricKind::PerUser => Ok(CupedInputs {
            post: samples.iter().map(|s| Some(s.y.clone())).collect(),
            pre: samples.iter().map(|s| s.pre_y.clone()).collect(),
        }),
        MetricKind::Ratio => {
            let all_y: Vec<f64> = samples.iter().flat_map(|s| s.pre_y.iter().copied()).collect();
            let all_x: Vec<f64> = samples.iter().flat_map(|s| s.pre_x.iter().copied()).collect();
            let pooled = RatioMoments::of(&all_y, &all_x);
            let pre_ratio = pooled.ratio().map_err(|e| match e {
                StatsError::ZeroDenominator => StatsError::ZeroCovariateVariance,
                e => e,
            })?;
            let pre = samples.iter().map(|s| stats::linearise(&s.pre_y, &s.pre_x, pre_ratio, pooled.mean_x)).collect();
            let post = samples
                .iter()
                .map(|s| {
                    let m = RatioMoments::of(&s.y, &s.x);
                    m.ratio().ok().map(|r| stats::linearise(&s.y, &s.x, r, m.mean_x))
                })
                .collect();
            Ok(CupedInputs { post, pre })
        }
    }
}

/// CUPED-adjusted values per arm (`None` for an arm without values) and theta.
fn cuped_adjusted(kind: MetricKind, samples: &[Sample]) -> StatsResult<(f64, Vec<Option<Vec<f64>>>)> {
    let inputs = cuped_inputs(kind, samples)?;
    let mut ys = Vec::new();
    let mut xs = Vec::new();
    for (post, pre) in inputs.post.iter().zip(&inputs.pre) {
        if let Some(post) = post {
            ys.extend_from_slice(post);
            xs.extend_from_slice(pre);
        }
    }
    let (theta, mean_x) = stats::cuped_theta(&ys, &xs)?;
    let adjusted = inputs
        .post
        .iter()
        .zip(&inputs.pre)
        .map(|(post, pre)| post.as_ref().map(|p| stats::cuped_adjust(p, pre, theta, mean_x)))
        .collect();
    Ok((theta, adjusted))
}

fn cuped_result(
    test: TestKind,
    theta: &StatsResult<(f64, Vec<Option<Vec<f64>>>)>,
    arm: usize,
    raw: &Estimate,
    alpha: f64,
) -> Cuped {
    let (theta, adjusted) = match theta {
        Ok(v) => v,
        Err(e) => {
            return Cuped {
                estimate: Estimate { reason: Some(e.to_string()), ..Estimate::default() },
                ..Cuped::default()
            };
        }
    };
    let (Some(t), Some(c)) = (&adjusted[arm], &adjusted[0]) else {
        let reason = raw.reason.clone().unwrap_or_else(|| StatsError::ZeroDenominator.to_string());
        return Cuped {
            theta: fin(*theta),
            estimate: Estimate { reason: Some(reason), ..Estimate::default() },
            ..Cuped::default()
        };
    };
    let (t, c) = (ArmStat::of_values(t), ArmStat::of_values(c));
    let estimate = compare(test, &t, &c, alpha);
    let variance_reduction = match (estimate.std_error, raw.std_error) {
        (Some(a), Some(r)) if r > 0.0 => fin(1.0 - (a * a) / (r * r)),
        _ => None,
    };
    Cuped { theta: fin(*theta), variance_reduction, estimate }
}

fn sequential_result(metric: Metric, arm: &str, raw: &Estimate, options: &AnalysisOptions) -> SequentialResult {
    let previous = options.previous_sequential.iter().find(|s| s.metric == metric && s.arm == arm);
    let fail = |reason: String| SequentialResult {
        tau: previous.map(|p| p.tau),
        reason: Some(reason),
        ..SequentialResult::default()
    };
    let (Some(d), Some(se)) = (raw.difference, raw.std_error) else {
        return fail(raw.reason.clone().unwrap_or_else(|| "the difference is not computable".to_owned()));
    };
    let tau = match (previous, raw.control_mean) {
        (Some(p), _) => p.tau,
        (None, Some(c)) if c != 0.0 => options.min_effect * c.abs(),
        _ => return fail(StatsError::ZeroControl.to_string()),
    };
    let prev = previous.map(|p| stats::Sequential { p_value: p.p_value, ci_low: p.ci_low, ci_high: p.ci_high });
    match stats::msprt(d, se * se, tau, options.alpha, prev.as_ref()) {
        Ok(s) => SequentialResult {
            tau: fin(tau),
            p_value: fin(s.p_value),
            ci_low: fin(s.ci_low),
            ci_high: fin(s.ci_high),
            reason: None,
        },
        Err(e) => fail(e.to_string()),
    }
}

fn power_result(kind: MetricKind, t: &ArmStat, c: &ArmStat, raw: &Estimate, options: &AnalysisOptions) -> Power {
    let fail = |reason: String| Power { reason: Some(reason), ..Power::default() };
    let (Ok(pc), Ok(vc)) = (c.point, c.var) else {
        return fail(raw.reason.clone().unwrap_or_else(|| "the control's variance is not computable".to_owned()));
    };
    if pc == 0.0 {
        return fail(StatsError::ZeroControl.to_string());
    }
    // Per-user standard deviation: of the values, or of the linearised ratio (n Var(R)).
    let sd = match kind {
        MetricKind::PerUser => c.moments.variance.sqrt(),
        MetricKind::Ratio => (vc * c.n as f64).sqrt(),
    };
    let mde = raw.std_error.map(|se| stats::minimum_detectable_effect(se, options.alpha, options.power) / pc.abs());
    match stats::sample_size_per_arm(sd, options.min_effect * pc.abs(), options.alpha, options.power) {
        Ok(n) => Power {
            mde: mde.and_then(fin),
            required_users_per_arm: Some(n),
            additional_users_per_arm: Some(n.saturating_sub(t.n.min(c.n))),
            reason: None,
        },
        Err(e) => Power { mde: mde.and_then(fin), reason: Some(e.to_string()), ..Power::default() },
    }
}

/// What the decision reads of one comparison: (significant, direction of the difference).
fn reading(m: &MetricResult, rule: DecisionRule, alpha: f64) -> Option<(bool, f64)> {
    match rule {
        DecisionRule::FixedHorizon => Some((m.estimate.p_value? < alpha, m.estimate.difference?)),
        DecisionRule::Sequential => {
            let s = &m.sequential;
            let (lo, hi) = (s.ci_low?, s.ci_high?);
            let direction = if lo > 0.0 {
                1.0
            } else if hi < 0.0 {
                -1.0
            } else {
                m.estimate.difference?
            };
            Some((s.p_value? < alpha, direction))
        }
    }
}

/// Analyses an experiment's exposed users. Never panics and never yields NaN: figures
/// that cannot be computed (an empty arm, no visits, no variance) are `None` with a
/// reason. Rows whose arm is not in the definition are counted in `ignored_rows`.
pub fn analyze(experiment: &Experiment, rows: &[UserRow], options: &AnalysisOptions) -> Report {
    let options = options.checked();
    let alpha = options.alpha;
    let k = experiment.arms.len();
    let mut by_arm: Vec<Vec<&UserRow>> = vec![Vec::new(); k];
    let mut ignored_rows = 0u64;
    for r in rows {
        match by_arm.get_mut(r.arm) {
            Some(v) => v.push(r),
            None => ignored_rows += 1,
        }
    }
    let counts: Vec<u64> = by_arm.iter().map(|v| v.len() as u64).collect();
    let users: u64 = counts.iter().sum();
    let shares: Vec<f64> = experiment.arms.iter().map(|a| a.share).collect();
    let srm = srm(&counts, &shares, options.srm_alpha);

    let metrics_list = experiment.metrics();
    let mut arms: Vec<ArmSummary> = experiment
        .arms
        .iter()
        .enumerate()
        .map(|(i, a)| ArmSummary {
            name: a.name.clone(),
            share: a.share,
            users: counts[i],
            expected_users: srm.expected.get(i).copied().unwrap_or(0.0),
            means: BTreeMap::new(),
        })
        .collect();

    let mut metrics = Vec::new();
    for &metric in &metrics_list {
        let kind = metric.kind();
        let test = test_of(kind);
        let role = if metric == experiment.primary {
            Role::Primary
        } else if experiment.guardrails.contains(&metric) {
            Role::Guardrail
        } else {
            Role::Secondary
        };
        let samples: Vec<Sample> = by_arm.iter().map(|rows| Sample::of(metric, rows.iter().copied())).collect();
        let stats_per_arm: Vec<ArmStat> = samples.iter().map(|s| ArmStat::of(kind, s)).collect();
        for (a, s) in arms.iter_mut().zip(&stats_per_arm) {
            a.means.insert(metric, s.point.ok().and_then(fin));
        }
        let cuped = cuped_adjusted(kind, &samples);
        let winsor = (metric == Metric::GmvPerUser).then(|| winsorized_samples(&samples, options.winsorize_quantile));
        for arm in 1..k {
            let (t, c) = (&stats_per_arm[arm], &stats_per_arm[0]);
            let estimate = compare(test, t, c, alpha);
            let significant = estimate.p_value.is_some_and(|p| p < alpha);
            let arm_name = experiment.arms[arm].name.clone();
            let winsorized = winsor.as_ref().map(|(cap, capped)| {
                let e = match cap {
                    Some(_) => compare(
                        TestKind::Welch,
                        &ArmStat::of_values(&capped[arm]),
                        &ArmStat::of_values(&capped[0]),
                        alpha,
                    ),
                    None => Estimate { reason: Some(StatsError::NoUsers.to_string()), ..Estimate::default() },
                };
                Winsorized { quantile: options.winsorize_quantile, cap: cap.and_then(fin), decides: false, estimate: e }
            });
            metrics.push(MetricResult {
                metric,
                kind,
                role,
                arm: arm_name.clone(),
                control: experiment.arms[0].name.clone(),
                users: t.n,
                control_users: c.n,
                test,
                cuped: cuped_result(test, &cuped, arm, &estimate, alpha),
                sequential: sequential_result(metric, &arm_name, &estimate, &options),
                power: power_result(kind, t, c, &estimate, &options),
                significant,
                winsorized,
                estimate,
            });
        }
    }

    let guardrails = guardrail_checks(experiment, &metrics, &options);
    let breakdown = breakdown(experiment, &by_arm, alpha);
    let decision = decide(experiment, &srm, &metrics, &guardrails, &options);
    Report {
        experiment: experiment.name.clone(),
        primary: experiment.primary,
        alpha,
        srm_alpha: options.srm_alpha,
        min_effect: options.min_effect,
        power: options.power,
        decision_rule: options.decision_rule,
        users,
        ignored_rows,
        srm,
        arms,
        metrics,
        guardrails,
        breakdown,
        decision,
    }
}

/// The cap at the pooled quantile and every arm's capped values.
fn winsorized_samples(samples: &[Sample], q: f64) -> (Option<f64>, Vec<Vec<f64>>) {
    let mut all: Vec<f64> = samples.iter().flat_map(|s| s.y.iter().copied()).filter(|v| v.is_finite()).collect();
    all.sort_by(f64::total_cmp);
    let cap = stats::quantile_sorted(&all, q);
    let capped = samples.iter().map(|s| s.y.iter().map(|&v| cap.map_or(v, |c| v.min(c))).collect()).collect();
    (cap, capped)
}

fn srm(counts: &[u64], shares: &[f64], srm_alpha: f64) -> Srm {
    let total: u64 = counts.iter().sum();
    let share_sum: f64 = shares.iter().sum();
    let expected: Vec<f64> =
        shares.iter().map(|s| if share_sum > 0.0 { total as f64 * s / share_sum } else { 0.0 }).collect();
    let df = counts.len().saturating_sub(1);
    match stats::chi_square_gof(counts, shares) {
        Ok(g) => {
            let p = fin(g.p_value);
            Srm {
                p_value: p,
                flag: p.is_some_and(|p| p < srm_alpha),
                chi_square: fin(g.chi_square),
                df: g.df,
                observed: counts.to_vec(),
                expected: g.expected,
                reason: None,
            }
        }
        Err(e) => Srm {
            p_value: None,
            flag: false,
            chi_square: None,
            df,
            observed: counts.to_vec(),
            expected,
            reason: Some(e.to_string()),
        },
    }
}

fn guardrail_checks(
    experiment: &Experiment,
    metrics: &[MetricResult],
    options: &AnalysisOptions,
) -> Vec<GuardrailCheck> {
    let mut out = Vec::new();
    for &g in &experiment.guardrails {
        for m in metrics.iter().filter(|m| m.metric == g) {
            let p_value = match options.decision_rule {
                DecisionRule::FixedHorizon => m.estimate.p_value,
                DecisionRule::Sequential => m.sequential.p_value,
            };
            let status = match reading(m, options.decision_rule, options.alpha) {
                None => GuardrailStatus::NotComputable,
                Some((significant, direction)) => {
                    let worse = if g.higher_is_better() { direction < 0.0 } else { direction > 0.0 };
                    if significant && worse { GuardrailStatus::Fail } else { GuardrailStatus::Pass }
                }
            };
            out.push(GuardrailCheck {
                metric: g,
                arm: m.arm.clone(),
                lift: m.estimate.lift,
                p_value,
                status,
                passed: status != GuardrailStatus::Fail,
            });
        }
    }
    out
}

fn segments(
    experiment: &Experiment,
    by_arm: &[Vec<&UserRow>],
    key: impl Fn(&UserRow) -> String,
    alpha: f64,
) -> Vec<Segment> {
    let metric = experiment.primary;
    let kind = metric.kind();
    let mut groups: BTreeMap<String, Vec<Vec<&UserRow>>> = BTreeMap::new();
    for (arm, rows) in by_arm.iter().enumerate() {
        for r in rows {
            groups.entry(key(r)).or_insert_with(|| vec![Vec::new(); by_arm.len()])[arm].push(r);
        }
    }
    groups
        .into_iter()
        .map(|(value, per_arm)| {
            let st: Vec<ArmStat> =
                per_arm.iter().map(|rows| ArmStat::of(kind, &Sample::of(metric, rows.iter().copied()))).collect();
            let arms = experiment
                .arms
                .iter()
                .zip(&st)
                .map(|(a, s)| SegmentArm { arm: a.name.clone(), users: s.n, mean: s.point.ok().and_then(fin) })
                .collect();
            let comparisons = (1..st.len())
                .map(|i| SegmentComparison {
                    arm: experiment.arms[i].name.clone(),
                    estimate: compare(test_of(kind), &st[i], &st[0], alpha),
                })
                .collect();
            Segment { value, arms, comparisons }
        })
        .collect()
}

fn breakdown(experiment: &Experiment, by_arm: &[Vec<&UserRow>], alpha: f64) -> Breakdown {
    Breakdown {
        metric: Some(experiment.primary),
        platform: segments(experiment, by_arm, |r| r.platform.as_str().to_owned(), alpha),
        category: segments(experiment, by_arm, |r| r.category.clone(), alpha),
    }
}

fn percent(x: Option<f64>) -> String {
    x.map_or_else(|| "n/a".to_owned(), |v| format!("{:+.2}%", 100.0 * v))
}

fn decide(
    experiment: &Experiment,
    srm: &Srm,
    metrics: &[MetricResult],
    guardrails: &[GuardrailCheck],
    options: &AnalysisOptions,
) -> Decision {
    let primary = experiment.primary;
    let test_name = match options.decision_rule {
        DecisionRule::FixedHorizon => "fixed-horizon",
        DecisionRule::Sequential => "sequential",
    };
    let mut arms = Vec::new();
    for m in metrics.iter().filter(|m| m.metric == primary) {
        let failed: Vec<String> = guardrails
            .iter()
            .filter(|g| g.arm == m.arm && g.status == GuardrailStatus::Fail)
            .map(|g| format!("{} {}", g.metric, percent(g.lift)))
            .collect();
        let p = match options.decision_rule {
            DecisionRule::FixedHorizon => m.estimate.p_value,
            DecisionRule::Sequential => m.sequential.p_value,
        };
        let p_text = p.map_or_else(|| "n/a".to_owned(), crate::html::p_text);
        let summary = format!("{primary} {} ({test_name} p = {p_text})", percent(m.estimate.lift));
        let (verdict, reason, additional) = if srm.flag {
            (Verdict::Invalid, "sample-ratio mismatch: do not read the result".to_owned(), None)
        } else {
            match reading(m, options.decision_rule, options.alpha) {
                _ if !failed.is_empty() => {
                    (Verdict::Stop, format!("guardrail failed: {}; {summary}", failed.join(", ")), None)
                }
                Some((true, d)) if (d > 0.0) == primary.higher_is_better() && d != 0.0 => {
                    (Verdict::Ship, format!("{summary}, significantly better; no guardrail failed"), None)
                }
                Some((true, d)) if d != 0.0 => (Verdict::Stop, format!("{summary}, significantly worse"), None),
                Some(_) => {
                    let more = m.power.additional_users_per_arm;
                    let need = more.map_or_else(String::new, |n| {
                        format!(
                            "; {n} more users per arm to detect {:.1}% at {:.0}% power",
                            100.0 * options.min_effect,
                            100.0 * options.power
                        )
                    });
                    (Verdict::KeepRunning, format!("{summary}, not significant{need}"), more)
                }
                None => (
                    Verdict::KeepRunning,
                    format!("{primary} not computable yet: {}", m.estimate.reason.as_deref().unwrap_or("no data")),
                    None,
                ),
            }
        };
        arms.push(ArmDecision { arm: m.arm.clone(), verdict, reason, additional_users_per_arm: additional });
    }
    if srm.flag {
        let p = srm.p_value.map_or_else(|| "n/a".to_owned(), crate::html::p_text);
        return Decision {
            verdict: Verdict::Invalid,
            arm: None,
            reason: format!(
                "sample-ratio mismatch (p = {p} < {}): assignment or exposure logging is broken; do not read the result",
                options.srm_alpha
            ),
            additional_users_per_arm: None,
            arms,
        };
    }
    let lift_of = |a: &ArmDecision| {
        metrics.iter().find(|m| m.metric == primary && m.arm == a.arm).and_then(|m| m.estimate.lift).unwrap_or(f64::MIN)
    };
    if let Some(best) =
        arms.iter().filter(|a| a.verdict == Verdict::Ship).max_by(|a, b| lift_of(a).total_cmp(&lift_of(b)))
    {
        return Decision {
            verdict: Verdict::Ship,
            arm: Some(best.arm.clone()),
            reason: format!("ship {}: {}", best.arm, best.reason),
            additional_users_per_arm: None,
            arms: arms.clone(),
        };
    }
    if !arms.is_empty() && arms.iter().all(|a| a.verdict == Verdict::Stop) {
        let reason = arms.iter().map(|a| format!("{}: {}", a.arm, a.reason)).collect::<Vec<_>>().join("; ");
        return Decision {
            verdict: Verdict::Stop,
            arm: None,
            reason: format!("stop: {reason}"),
            additional_users_per_arm: None,
            arms,
        };
    }
    let additional =
        arms.iter().filter(|a| a.verdict == Verdict::KeepRunning).filter_map(|a| a.additional_users_per_arm).max();
    let reason = if arms.is_empty() {
        "no treatment arm".to_owned()
    } else {
        arms.iter().map(|a| format!("{}: {}", a.arm, a.reason)).collect::<Vec<_>>().join("; ")
    };
    Decision {
        verdict: Verdict::KeepRunning,
        arm: None,
        reason: format!("keep running: {reason}"),
        additional_users_per_arm: additional,
        arms,
    }
}
