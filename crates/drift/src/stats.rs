//! The statistics: population stability index and the binned Kolmogorov-Smirnov
//! statistic, and the levels PSI is read at.

use serde::{Deserialize, Serialize};

/// Share a bin is given in PSI when it holds less (an empty bin would make the
/// logarithm infinite): 0.0001, one row in ten thousand.
pub const PSI_FLOOR: f64 = 1e-4;
/// PSI at which a column counts as moved moderately (and is flagged).
pub const PSI_MODERATE: f64 = 0.1;
/// PSI at which a column counts as moved majorly.
pub const PSI_MAJOR: f64 = 0.25;

/// How far a column moved, read from its PSI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// PSI under [`PSI_MODERATE`].
    Stable,
    /// PSI from [`PSI_MODERATE`] up to [`PSI_MAJOR`]: flagged.
    Moderate,
    /// PSI of [`PSI_MAJOR`] or more: flagged.
    Major,
}

impl Level {
    /// The level of a PSI.
    pub fn of(psi: f64) -> Self {
        if psi >= PSI_MAJOR {
            Level::Major
        } else if psi >= PSI_MODERATE {
            Level::Moderate
        } else {
            Level::Stable
        }
    }

    /// Moderate or major.
    pub fn flagged(self) -> bool {
        self != Level::Stable
    }

    /// `stable`, `moderate`, `major`.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Stable => "stable",
            Level::Moderate => "moderate",
            Level::Major => "major",
        }
    }
}

/// Population stability index of `live` against `reference`, two histograms over the same
/// bins, each with its missing count (`(counts, missing)`): the sum over the bins and the
/// missing bin of `(q - p) ln(q / p)`, with `p` the reference share and `q` the live share,
/// each raised to [`PSI_FLOOR`] when smaller. 0 when either side has no rows.
pub fn psi(reference: (&[u64], u64), live: (&[u64], u64)) -> f64 {
    let total = |(c, m): (&[u64], u64)| c.iter().sum::<u64>() + m;
    let (rt, lt) = (total(reference), total(live));
    if rt == 0 || lt == 0 {
        return 0.0;
    }
    let bins = reference.0.iter().zip(live.0).map(|(&r, &l)| (r, l)).chain([(reference.1, live.1)]);
    bins.map(|(r, l)| {
        let p = (r as f64 / rt as f64).max(PSI_FLOOR);
        let q = (l as f64 / lt as f64).max(PSI_FLOOR);
        (q - p) * (q / p).ln()
    })
    .sum()
}

/// The binned Kolmogorov-Smirnov statistic: the largest gap between the two cumulative
/// shares of finite values at the bin edges (the end of each bin), missing values left
/// out. It is the KS statistic of the binned data: the gap between the unbinned
/// distributions inside a bin is not seen. 0 when neither side has a finite value, 1 when
/// one side has none and the other some.
pub fn ks(reference: &[u64], live: &[u64]) -> f64 {
    let (rt, lt) = (reference.iter().sum::<u64>(), live.iter().sum::<u64>());
    match (rt, lt) {
        (0, 0) => return 0.0,
        (0, _) | (_, 0) => return 1.0,
        _ => {}
    }
    let (mut rc, mut lc, mut gap) = (0u64, 0u64, 0.0f64);
    for (&r, &l) in reference.iter().zip(live) {
        rc += r;
        lc += l;
        gap = gap.max((rc as f64 / rt as f64 - lc as f64 / lt as f64).abs());
    }
    gap
}
