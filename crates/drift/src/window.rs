//! Live histograms over a rolling window: the window is cut into sub-windows of equal
//! length; a row counts in the sub-window of its time, and the window's histograms are the
//! sum of the newest sub-windows, so old traffic leaves a sub-window at a time.

use crate::reference::{Reference, ReferenceError, bin_of};
use std::collections::VecDeque;

/// Counts per bin of every column of a reference (features, then outputs), and missing
/// values per column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveHistograms {
    /// Rows counted.
    pub rows: u64,
    /// Per column, its bins' counts.
    pub counts: Vec<Vec<u64>>,
    /// Per column, missing values.
    pub missing: Vec<u64>,
}

impl LiveHistograms {
    /// Empty histograms over the reference's bins.
    pub fn empty(reference: &Reference) -> Self {
        let counts: Vec<Vec<u64>> = reference.columns().map(|c| vec![0; c.counts.len()]).collect();
        let missing = vec![0; counts.len()];
        LiveHistograms { rows: 0, counts, missing }
    }

    /// Counts one row: its features in schema order and its output columns in order.
    /// A row whose features or outputs are not exactly as many as the reference's columns
    /// is refused ([`ReferenceError::RowWidth`]) and nothing of it is counted, so no value
    /// is ever counted in another column's histogram.
    pub fn add_row(&mut self, reference: &Reference, features: &[f32], outputs: &[f32]) -> Result<(), ReferenceError> {
        if features.len() != reference.features.len() || outputs.len() != reference.outputs.len() {
            return Err(ReferenceError::RowWidth {
                features: features.len(),
                outputs: outputs.len(),
                expected_features: reference.features.len(),
                expected_outputs: reference.outputs.len(),
            });
        }
        self.rows += 1;
        for (k, (column, &v)) in reference.columns().zip(features.iter().chain(outputs)).enumerate() {
            match bin_of(&column.edges, v) {
                Some(b) => self.counts[k][b] += 1,
                None => self.missing[k] += 1,
            }
        }
        Ok(())
    }

    /// Adds another histogram over the same reference.
    pub fn merge(&mut self, other: &LiveHistograms) {
        self.rows += other.rows;
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            for (x, y) in a.iter_mut().zip(b) {
                *x += y;
            }
        }
        for (a, b) in self.missing.iter_mut().zip(&other.missing) {
            *a += b;
        }
    }
}

/// A rolling window of live histograms: `sub_windows` sub-windows of `sub_window_ms` each.
#[derive(Debug, Clone)]
pub struct Window {
    sub_window_ms: u64,
    sub_windows: usize,
    /// (sub-window number, its histograms), oldest first.
    parts: VecDeque<(u64, LiveHistograms)>,
}

impl Window {
    /// A window of `sub_windows` (at least 1) sub-windows of `sub_window_ms` (at least 1) ms.
    pub fn new(sub_windows: usize, sub_window_ms: u64) -> Self {
        Window { sub_window_ms: sub_window_ms.max(1), sub_windows: sub_windows.max(1), parts: VecDeque::new() }
    }

    /// Forgets sub-windows that ended before the window that ends at `now_ms`.
    pub fn advance(&mut self, now_ms: u64) {
        let current = now_ms / self.sub_window_ms;
        let oldest = current.saturating_sub(self.sub_windows as u64 - 1);
        while self.parts.front().is_some_and(|(n, _)| *n < oldest) {
            self.parts.pop_front();
        }
    }

    /// The histograms of the sub-window of `now_ms`, made when new (rows of an earlier time
    /// than the newest sub-window count in the newest).
    pub fn current(&mut self, reference: &Reference, now_ms: u64) -> &mut LiveHistograms {
        self.advance(now_ms);
        let n = now_ms / self.sub_window_ms;
        if self.parts.back().is_none_or(|(last, _)| *last < n) {
            self.parts.push_back((n, LiveHistograms::empty(reference)));
        }
        &mut self.parts.back_mut().expect("just pushed").1
    }

    /// The histograms of the whole window that ends at `now_ms`.
    pub fn totals(&mut self, reference: &Reference, now_ms: u64) -> LiveHistograms {
        self.advance(now_ms);
        let mut sum = LiveHistograms::empty(reference);
        for (_, h) in &self.parts {
            sum.merge(h);
        }
        sum
    }

    /// Rows in the window that ends at `now_ms`.
    pub fn rows(&mut self, now_ms: u64) -> u64 {
        self.advance(now_ms);
        self.parts.iter().map(|(_, h)| h.rows).sum()
    }
}
