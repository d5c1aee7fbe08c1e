//! Which tags go together. A user carries a tag when its probability is at least the
//! threshold; for every pair of tags the 2x2 table over users gives support, Jaccard,
//! lift and the phi correlation, with a chi-square p-value, so that a pair seen on ten
//! users is not reported like a pair seen on a hundred thousand.

use crate::stats::chi2_1_p_value;
use crate::table::TagTable;
use serde::Serialize;

/// Figures of one pair of tags.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PairStats {
    /// First tag.
    pub a: String,
    /// Second tag.
    pub b: String,
    /// Users with both.
    pub both: u64,
    /// Users with `a` only.
    pub a_only: u64,
    /// Users with `b` only.
    pub b_only: u64,
    /// Users with neither.
    pub neither: u64,
    /// Share of users with both.
    pub support: f64,
    /// Both over either.
    pub jaccard: f64,
    /// P(a and b) / (P(a) P(b)); 1 means independent.
    pub lift: f64,
    /// Phi correlation of the two indicators (-1 to 1).
    pub phi: f64,
    /// Chi-square statistic of the 2x2 table (users x phi squared).
    pub chi2: f64,
    /// Its p-value (one degree of freedom).
    pub p_value: f64,
    /// Whether the pair passes the minimum support and count and its p-value is below
    /// alpha divided by the number of pairs (Bonferroni).
    pub reported: bool,
}

/// Settings of the pair analysis.
#[derive(Debug, Clone, Copy)]
pub struct PairOptions {
    /// Probability from which a user carries a tag.
    pub threshold: f64,
    /// Smallest support of a reported pair.
    pub min_support: f64,
    /// Smallest number of users with both tags of a reported pair.
    pub min_count: u64,
    /// Family-wise significance level.
    pub alpha: f64,
}

impl Default for PairOptions {
    fn default() -> Self {
        PairOptions { threshold: 0.5, min_support: 0.001, min_count: 30, alpha: 0.05 }
    }
}

/// Bitsets of the users that carry each tag.
fn carriers(table: &TagTable, threshold: f64) -> Vec<Vec<u64>> {
    let words = table.len().div_ceil(64);
    let t = table.tags.len();
    let mut sets = vec![vec![0u64; words]; t];
    for u in 0..table.len() {
        for (k, p) in table.row(u).iter().enumerate() {
            if *p >= threshold {
                sets[k][u / 64] |= 1 << (u % 64);
            }
        }
    }
    sets
}

fn count(a: &[u64]) -> u64 {
    a.iter().map(|w| u64::from(w.count_ones())).sum()
}

/// Figures of the 2x2 table `[both, a_only; b_only, neither]`.
pub fn pair_from_counts(a: &str, b: &str, both: u64, a_only: u64, b_only: u64, neither: u64) -> PairStats {
    let n = (both + a_only + b_only + neither) as f64;
    let (n11, n10, n01, n00) = (both as f64, a_only as f64, b_only as f64, neither as f64);
    let (na, nb) = (n11 + n10, n11 + n01);
    let union = n11 + n10 + n01;
    let denom = (na * (n - na) * nb * (n - nb)).sqrt();
    let phi = if denom > 0.0 { (n11 * n00 - n10 * n01) / denom } else { 0.0 };
    let chi2 = n * phi * phi;
    PairStats {
        a: a.to_owned(),
        b: b.to_owned(),
        both,
        a_only,
        b_only,
        neither,
        support: if n > 0.0 { n11 / n } else { 0.0 },
        jaccard: if union > 0.0 { n11 / union } else { 0.0 },
        lift: if na > 0.0 && nb > 0.0 { n11 * n / (na * nb) } else { 0.0 },
        phi,
        chi2,
        p_value: chi2_1_p_value(chi2),
        reported: false,
    }
}

/// Every pair of tags, strongest association (phi) first among the reported ones.
pub fn pairs(table: &TagTable, options: &PairOptions) -> Vec<PairStats> {
    let sets = carriers(table, options.threshold);
    let n = table.len() as u64;
    let t = table.tags.len();
    let tests = (t * t.saturating_sub(1) / 2).max(1) as f64;
    let counts: Vec<u64> = sets.iter().map(|s| count(s)).collect();
    let mut out = Vec::new();
    for i in 0..t {
        let ci = counts[i];
        for j in i + 1..t {
            let cj = counts[j];
            let both: u64 = sets[i].iter().zip(&sets[j]).map(|(x, y)| u64::from((x & y).count_ones())).sum();
            let (a_only, b_only) = (ci - both, cj - both);
            let neither = n - both - a_only - b_only;
            let mut s = pair_from_counts(&table.tags[i], &table.tags[j], both, a_only, b_only, neither);
            s.reported =
                both >= options.min_count && s.support >= options.min_support && s.p_value < options.alpha / tests;
            out.push(s);
        }
    }
    out.sort_by(|x, y| y.reported.cmp(&x.reported).then(y.phi.total_cmp(&x.phi)));
    out
}
