//! The experiment report: its serialisable form ([`Report`], written as `report.json`), the
//! self-contained HTML page beside it, and the per-user table as Parquet
//! ([`write_user_table`]) from which anyone can redo the statistics.
//!
//! Every file is published the same way: written under a hidden temporary name in the
//! target folder, synced, then renamed into place, so a reader never sees half a file.
//! A figure that cannot be computed is `null` with a `reason`; the JSON never holds NaN.

use crate::definition::Experiment;
use crate::metric::{Metric, MetricKind};
use crate::outcomes::UserRow;
use arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Name of the JSON report in its folder.
pub const REPORT_JSON: &str = "report.json";
/// Name of the HTML report in its folder.
pub const REPORT_HTML: &str = "report.html";

/// What one analysis found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Experiment name.
    pub experiment: String,
    /// The metric that decides.
    pub primary: Metric,
    /// Significance level of the fixed-horizon and sequential tests.
    pub alpha: f64,
    /// Significance level of the sample-ratio-mismatch test.
    pub srm_alpha: f64,
    /// Relative minimum effect of interest (the mSPRT's tau and the sample size).
    pub min_effect: f64,
    /// Power the sample size is computed for.
    pub power: f64,
    /// Which test the decision reads.
    pub decision_rule: DecisionRule,
    /// Exposed users analysed.
    pub users: u64,
    /// Rows whose arm index is not an arm of the definition (not analysed).
    pub ignored_rows: u64,
    /// Sample-ratio mismatch.
    pub srm: Srm,
    /// Users and metric values per arm, control first.
    pub arms: Vec<ArmSummary>,
    /// One entry per metric and treatment arm, metrics in [`Experiment::metrics`] order.
    pub metrics: Vec<MetricResult>,
    /// One entry per guardrail metric and treatment arm.
    pub guardrails: Vec<GuardrailCheck>,
    /// The primary metric by platform and by category of the first exposure.
    pub breakdown: Breakdown,
    /// What to do.
    pub decision: Decision,
}

/// Which test the decision reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecisionRule {
    /// The fixed-horizon test: valid once, at the planned end (the default).
    #[default]
    FixedHorizon,
    /// The always-valid (mSPRT) test: valid at every look, for reading the experiment
    /// daily before its end.
    Sequential,
}

/// Sample-ratio-mismatch test of exposed users per arm against the configured shares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Srm {
    /// Chi-square goodness-of-fit p-value.
    pub p_value: Option<f64>,
    /// Whether `p_value < srm_alpha`: assignment or exposure logging is broken and the
    /// result must not be read.
    pub flag: bool,
    /// The chi-square statistic.
    pub chi_square: Option<f64>,
    /// Degrees of freedom (arms - 1).
    pub df: usize,
    /// Users per arm.
    pub observed: Vec<u64>,
    /// Users per arm the shares expect.
    pub expected: Vec<f64>,
    /// Why the test was not computable.
    pub reason: Option<String>,
}

/// One arm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArmSummary {
    /// Arm name.
    pub name: String,
    /// Configured share (percent).
    pub share: f64,
    /// Exposed users.
    pub users: u64,
    /// Users the share expects out of all exposed users.
    pub expected_users: f64,
    /// Value of every metric (`null` when not computable, e.g. no visits).
    pub means: BTreeMap<Metric, Option<f64>>,
}

/// The part a metric plays in the experiment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The metric that decides.
    Primary,
    /// Must not get significantly worse.
    Guardrail,
    /// Reported only.
    Secondary,
}

/// How a difference is tested.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TestKind {
    /// Welch's t-test on per-user values.
    Welch,
    /// Normal test with the delta-method variance of a ratio of means.
    Delta,
}

/// Treatment against control on one metric: values, relative lift with its delta-method
/// interval, and the test of the difference.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    /// The treatment arm's value.
    pub mean: Option<f64>,
    /// The control's value.
    pub control_mean: Option<f64>,
    /// Relative lift mean / control_mean - 1 (0.15 is +15%).
    pub lift: Option<f64>,
    /// Lower bound of the lift's 1 - alpha interval (delta method, normal).
    pub ci_low: Option<f64>,
    /// Upper bound of the lift's interval.
    pub ci_high: Option<f64>,
    /// Two-sided p-value of the difference (Welch or delta method).
    pub p_value: Option<f64>,
    /// mean - control_mean.
    pub difference: Option<f64>,
    /// Lower bound of the difference's 1 - alpha interval (t for Welch, normal for delta).
    pub difference_ci_low: Option<f64>,
    /// Upper bound of the difference's interval.
    pub difference_ci_high: Option<f64>,
    /// Standard error of the difference.
    pub std_error: Option<f64>,
    /// Welch-Satterthwaite degrees of freedom (`null` for the normal test).
    pub df: Option<f64>,
    /// Why a figure above is `null`.
    pub reason: Option<String>,
}

/// One metric, one treatment arm against control.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricResult {
    /// The metric.
    pub metric: Metric,
    /// Per-user mean or ratio of sums.
    pub kind: MetricKind,
    /// Primary, guardrail or secondary.
    pub role: Role,
    /// Treatment arm.
    pub arm: String,
    /// Control arm.
    pub control: String,
    /// Users in the treatment arm.
    pub users: u64,
    /// Users in the control arm.
    pub control_users: u64,
    /// Welch or delta method.
    pub test: TestKind,
    /// The unadjusted comparison (the one that decides).
    #[serde(flatten)]
    pub estimate: Estimate,
    /// Whether `p_value < alpha`.
    pub significant: bool,
    /// The same comparison after CUPED with the pre-exposure value of the metric.
    pub cuped: Cuped,
    /// The always-valid (mSPRT) p-value and confidence sequence of the difference.
    pub sequential: SequentialResult,
    /// Sample size for the minimum effect of interest.
    pub power: Power,
    /// For GMV per user: the comparison with every user's value capped (the raw one
    /// decides).
    pub winsorized: Option<Winsorized>,
}

/// CUPED-adjusted comparison.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cuped {
    /// theta = cov(Y, X) / var(X) over all users (for ratio metrics, of the linearised
    /// values).
    pub theta: Option<f64>,
    /// 1 - Var(adjusted difference) / Var(unadjusted difference).
    pub variance_reduction: Option<f64>,
    /// Adjusted values, lift and test.
    #[serde(flatten)]
    pub estimate: Estimate,
}

/// The mSPRT result of a difference.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SequentialResult {
    /// Standard deviation of the normal mixing distribution (in the metric's units): the
    /// minimum effect of interest times the control's value at the first look, then kept.
    pub tau: Option<f64>,
    /// Always-valid p-value (running minimum over the looks carried in).
    pub p_value: Option<f64>,
    /// Lower bound of the confidence sequence of the difference (absolute units).
    pub ci_low: Option<f64>,
    /// Upper bound.
    pub ci_high: Option<f64>,
    /// Why a figure is `null`.
    pub reason: Option<String>,
}

/// How many users the comparison needs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Power {
    /// Relative effect the current sample detects at alpha with the configured power.
    pub mde: Option<f64>,
    /// Users per arm needed to detect the minimum effect of interest.
    pub required_users_per_arm: Option<u64>,
    /// Users per arm still missing (0 when there are enough).
    pub additional_users_per_arm: Option<u64>,
    /// Why a figure is `null`.
    pub reason: Option<String>,
}

/// A comparison on winsorised values.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Winsorized {
    /// Quantile of the pooled values the cap is.
    pub quantile: f64,
    /// The cap.
    pub cap: Option<f64>,
    /// Whether this variant decides (it does not: the raw comparison does).
    pub decides: bool,
    /// Values, lift and test on capped values.
    #[serde(flatten)]
    pub estimate: Estimate,
}

/// Outcome of a guardrail check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GuardrailStatus {
    /// Not significantly worse.
    Pass,
    /// Significantly worse.
    Fail,
    /// The test could not be computed.
    NotComputable,
}

/// One guardrail for one treatment arm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuardrailCheck {
    /// The guardrail metric.
    pub metric: Metric,
    /// Treatment arm.
    pub arm: String,
    /// Relative lift.
    pub lift: Option<f64>,
    /// The p-value the decision rule reads.
    pub p_value: Option<f64>,
    /// Pass, fail or not computable.
    pub status: GuardrailStatus,
    /// Whether it did not fail.
    pub passed: bool,
}

/// The primary metric by segment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Breakdown {
    /// The metric broken down.
    pub metric: Option<Metric>,
    /// By platform of the first exposure.
    pub platform: Vec<Segment>,
    /// By category of the first exposure.
    pub category: Vec<Segment>,
}

/// One segment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    /// The platform or category.
    pub value: String,
    /// Users and value per arm.
    pub arms: Vec<SegmentArm>,
    /// Each treatment arm against control in this segment.
    pub comparisons: Vec<SegmentComparison>,
}

/// One arm in a segment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentArm {
    /// Arm name.
    pub arm: String,
    /// Users.
    pub users: u64,
    /// The metric's value.
    pub mean: Option<f64>,
}

/// One treatment arm against control in a segment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentComparison {
    /// Treatment arm.
    pub arm: String,
    /// Values, lift and test.
    #[serde(flatten)]
    pub estimate: Estimate,
}

/// The decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The primary metric is significantly better, no guardrail failed, no SRM.
    Ship,
    /// The primary metric is significantly worse or a guardrail failed.
    Stop,
    /// Neither yet.
    KeepRunning,
    /// Sample-ratio mismatch: do not read the result.
    Invalid,
}

impl Verdict {
    /// Words for the report.
    pub const fn as_str(self) -> &'static str {
        match self {
            Verdict::Ship => "ship",
            Verdict::Stop => "stop",
            Verdict::KeepRunning => "keep running",
            Verdict::Invalid => "invalid",
        }
    }
}

/// One treatment arm's verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArmDecision {
    /// Treatment arm.
    pub arm: String,
    /// Verdict.
    pub verdict: Verdict,
    /// Why.
    pub reason: String,
    /// Users per arm still needed (keep running).
    pub additional_users_per_arm: Option<u64>,
}

/// The experiment's decision line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// Verdict.
    pub verdict: Verdict,
    /// The arm to ship, when the verdict is ship.
    pub arm: Option<String>,
    /// Why, in one line.
    pub reason: String,
    /// Users per arm still needed (keep running).
    pub additional_users_per_arm: Option<u64>,
    /// Per treatment arm.
    pub arms: Vec<ArmDecision>,
}

/// The running state of one sequential test, carried from one look to the next.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SequentialState {
    /// Metric.
    pub metric: Metric,
    /// Treatment arm.
    pub arm: String,
    /// The mixing distribution's standard deviation fixed at the first look.
    pub tau: f64,
    /// Running minimum p-value.
    pub p_value: f64,
    /// Running interval lower bound.
    pub ci_low: f64,
    /// Running interval upper bound.
    pub ci_high: f64,
}

impl Report {
    /// The sequential tests' states, to pass as
    /// [`AnalysisOptions::previous_sequential`](crate::analysis::AnalysisOptions::previous_sequential)
    /// at the next look.
    pub fn sequential_states(&self) -> Vec<SequentialState> {
        self.metrics
            .iter()
            .filter_map(|m| {
                let s = &m.sequential;
                Some(SequentialState {
                    metric: m.metric,
                    arm: m.arm.clone(),
                    tau: s.tau?,
                    p_value: s.p_value?,
                    ci_low: s.ci_low?,
                    ci_high: s.ci_high?,
                })
            })
            .collect()
    }

    /// The entry of a metric and treatment arm.
    pub fn metric(&self, metric: Metric, arm: &str) -> Option<&MetricResult> {
        self.metrics.iter().find(|m| m.metric == metric && m.arm == arm)
    }
}

/// Failures writing a report.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The file system failed.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Serialisation, Arrow or Parquet failed.
    #[error("{path}: {reason}")]
    Format {
        /// File.
        path: String,
        /// Cause.
        reason: String,
    },
}

/// Writes `path` through `write`, published by rename.
fn publish(path: &Path, write: impl FnOnce(File) -> Result<File, ReportError>) -> Result<(), ReportError> {
    let published =
        |e: liveprofile_publish::PublishError| ReportError::Io { path: e.path.display().to_string(), source: e.source };
    let mut publication = liveprofile_publish::Publication::create(path).map_err(published)?;
    let file = write(publication.take_file())?;
    publication.publish_file(file).map_err(published)
}

/// Writes `report.json` and `report.html` into `dir` (created if missing), each published
/// by rename. Returns the two paths.
pub fn write_report(dir: &Path, report: &Report) -> Result<(PathBuf, PathBuf), ReportError> {
    std::fs::create_dir_all(dir).map_err(|source| ReportError::Io { path: dir.display().to_string(), source })?;
    let json_path = dir.join(REPORT_JSON);
    let html_path = dir.join(REPORT_HTML);
    let json = serde_json::to_vec_pretty(report)
        .map_err(|e| ReportError::Format { path: json_path.display().to_string(), reason: e.to_string() })?;
    for (path, bytes) in [(&json_path, json), (&html_path, crate::html::page(report).into_bytes())] {
        let p = path.display().to_string();
        publish(path, |mut f| {
            f.write_all(&bytes).map_err(|source| ReportError::Io { path: p.clone(), source })?;
            Ok(f)
        })?;
    }
    Ok((json_path, html_path))
}

/// Rows per written row group of the user table.
const ROW_GROUP: usize = 64 * 1024;

/// The Parquet schema of the per-user table: `user_id`, `arm` (name), `platform`,
/// `category`, `room_id` (nullable), `first_exposure_ms`, then for every metric of
/// [`Metric::ALL`] `<metric>_num`, `<metric>_den`, `<metric>_pre_num`, `<metric>_pre_den`
/// (float64: [`Metric::value`] of the sums after and before the first exposure).
pub fn user_table_schema() -> SchemaRef {
    let mut fields = vec![
        Field::new("user_id", DataType::Utf8, false),
        Field::new("arm", DataType::Utf8, false),
        Field::new("platform", DataType::Utf8, false),
        Field::new("category", DataType::Utf8, false),
        Field::new("room_id", DataType::Utf8, true),
        Field::new("first_exposure_ms", DataType::Int64, false),
    ];
    for m in Metric::ALL {
        for suffix in ["num", "den", "pre_num", "pre_den"] {
            fields.push(Field::new(format!("{}_{suffix}", m.name()), DataType::Float64, false));
        }
    }
    Arc::new(Schema::new(fields))
}

fn user_batch(experiment: &Experiment, rows: &[&UserRow]) -> Result<RecordBatch, arrow::error::ArrowError> {
    let text = |f: &dyn Fn(&UserRow) -> &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| f(r))))
    };
    let mut columns: Vec<ArrayRef> = vec![
        text(&|r| &r.user_id),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| experiment.arms[r.arm].name.as_str()))),
        text(&|r| r.platform.as_str()),
        text(&|r| &r.category),
        Arc::new(StringArray::from_iter(rows.iter().map(|r| r.room_id.as_deref()))),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.first_exposure_ms))),
    ];
    for m in Metric::ALL {
        columns.push(Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| m.value(&r.post).0))));
        columns.push(Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| m.value(&r.post).1))));
        columns.push(Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| m.value(&r.pre).0))));
        columns.push(Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| m.value(&r.pre).1))));
    }
    RecordBatch::try_new(user_table_schema(), columns)
}

/// Writes the per-user table (schema: [`user_table_schema`]) to `path`, published by
/// rename. Rows whose arm is not in the definition are left out, as in the analysis.
/// Returns the rows written.
pub fn write_user_table(path: &Path, experiment: &Experiment, rows: &[UserRow]) -> Result<u64, ReportError> {
    let p = path.display().to_string();
    let fmt = |e: &dyn std::fmt::Display| ReportError::Format { path: p.clone(), reason: e.to_string() };
    let kept: Vec<&UserRow> = rows.iter().filter(|r| r.arm < experiment.arms.len()).collect();
    publish(path, |file| {
        let mut w = ArrowWriter::try_new(file, user_table_schema(), None).map_err(|e| fmt(&e))?;
        for chunk in kept.chunks(ROW_GROUP) {
            w.write(&user_batch(experiment, chunk).map_err(|e| fmt(&e))?).map_err(|e| fmt(&e))?;
        }
        w.into_inner().map_err(|e| fmt(&e))
    })?;
    Ok(kept.len() as u64)
}
