//! Drift monitoring: does live traffic still look like the data a model was trained on?
//!
//! - [`reference`]: the reference a model package carries (`drift_reference.json`): per
//!   feature (schema order) and per output column, bin edges from the training data's
//!   quantiles and the training rows' counts in each bin; binning of a value.
//! - [`stats`]: PSI and the binned Kolmogorov-Smirnov statistic of live counts against a
//!   reference column, and the flag levels.
//! - [`window`]: live histograms over a rolling window of sub-windows, so the figures
//!   follow the traffic.
//! - [`report`]: the comparison of a model version's live rows with its reference, as
//!   JSON and as a self-contained HTML page with SVG histograms.
//!
//! # Bins
//! A column with at most `bins` distinct finite training values has every one of them as
//! an edge, so each value has a bin of its own however few rows hold it. Otherwise its
//! edges `e_0 < e_1 < ... < e_{k-1}` are the training values at the quantiles `j / bins`
//! for `j = 0..=bins` (the value at sorted position `floor(j (n - 1) / bins)`, always a
//! value that occurs), duplicates removed. Edges make `k + 1` bins: `(-inf, e_0]`,
//! `(e_{i-1}, e_i]` for `i = 1..k`, and `(e_{k-1}, +inf)`, so a value equal to an edge
//! falls in the bin that edge closes, the lowest training value has a bin of its own, and values above every
//! training value land in the last bin (empty in the reference). NaN and infinite values
//! (and nulls of a table) are counted apart as missing, a bin of their own for PSI.

pub mod reference;
pub mod report;
pub mod stats;
pub mod window;

pub use reference::{ColumnReference, REFERENCE_FORMAT, Reference, ReferenceError};
pub use report::{ColumnDrift, DriftReport, Kind};
pub use stats::{Level, PSI_FLOOR, PSI_MAJOR, PSI_MODERATE, ks, psi};
pub use window::{LiveHistograms, Window};

/// Default number of quantile bins per column.
pub const DEFAULT_BINS: usize = 20;
/// Most quantile bins a reference may ask for.
pub const MAX_BINS: usize = 1_000;
/// Default least number of live rows before a model version's figures are reported.
pub const DEFAULT_MIN_ROWS: u64 = 1_000;
