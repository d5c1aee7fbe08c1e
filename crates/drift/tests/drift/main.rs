//! Drift: PSI and KS on hand-computed histograms, binning of edge values and of missing
//! values, the rolling window, the report; the shifted-traffic test on simulated users.

mod shifted;
mod stats;
