//! A/B experiments on models, from definition to decision.
//!
//! - [`definition`]: the TOML definition of an experiment (salt, target, window, arms with
//!   the model versions they answer with, primary and guardrail metrics) and the checks
//!   against loaded models and other running experiments.
//! - [`assignment`]: a user's arm from the salt and the unified user id, with nothing
//!   stored (the same on every platform, replica and restart).
//! - [`exposure`]: the first answer an experiment gave a user, and its Parquet form.
//! - [`metric`]: the business KPIs, defined once over the event contract.
//! - [`kpis`]: the KPI report per platform, category and China day, from an event file.
//! - [`outcomes`]: per-experiment, per-user sums before and after the first exposure,
//!   updated event by event, live in the profile store or offline over files.
//! - [`stats`]: the distributions and tests the analysis uses.
//! - [`analysis`]: treatment against control on every metric, CUPED, sequential tests,
//!   sample-ratio mismatch, guardrails, segments and the decision.
//! - [`report`]: the report as JSON and HTML, and the per-user table as Parquet.

pub mod analysis;
pub mod assignment;
pub mod definition;
pub mod exposure;
mod html;
pub mod kpis;
pub mod metric;
pub mod outcomes;
pub mod report;
pub mod stats;

pub use analysis::{AnalysisOptions, analyze};
pub use assignment::{BUCKETS, assign, bucket};
pub use definition::{ArmSpec, DefinitionError, Experiment, Target, check_conflicts, check_models};
pub use exposure::{Exposure, ExposureIoError, exposure_schema, read_exposures, write_exposures};
pub use kpis::{KpiAccumulator, KpiCell, KpiError, KpiFiles, KpiReport, kpis_from_file, write_kpis};
pub use metric::{Metric, MetricKind, Sums};
pub use outcomes::{ExperimentOutcomes, ExposureError, FirstExposure, UserRow};
pub use report::{
    DecisionRule, Report, ReportError, SequentialState, Verdict, user_table_schema, write_report, write_user_table,
};
