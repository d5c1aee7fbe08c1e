//! The statistics of the analysis, on plain numbers: the normal, Student t and chi-square
//! distributions (through the regularised incomplete beta and gamma functions, to about
//! 1e-13 relative), Welch's t-test, the delta method for ratios of means and for relative
//! lifts, CUPED, the mixture sequential probability ratio test (mSPRT) with its confidence
//! sequence, the sample-ratio-mismatch test and the sample size for a minimum effect.
//!
//! Variances are sample variances (divisor n - 1) throughout. A figure that cannot be
//! computed (too few users, no variance, a zero denominator) is a [`StatsError`], never a
//! NaN.

use serde::{Deserialize, Serialize};
use std::f64::consts::PI;

/// ln(sqrt(2 pi)).
const LN_SQRT_2PI: f64 = 0.918_938_533_204_672_8;
/// Relative precision the iterations stop at.
const EPS: f64 = 1e-16;
/// Smallest magnitude the continued fractions divide by.
const TINY: f64 = 1e-300;

/// Why a figure is not computable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatsError {
    /// An arm has fewer than two users (no sample variance).
    #[error("fewer than 2 users in an arm")]
    TooFewUsers,
    /// Every value is the same in both arms, so the standard error is 0.
    #[error("no variance: every user has the same value")]
    ZeroVariance,
    /// A ratio's denominator (for example visits) sums to 0 in an arm.
    #[error("the denominator sums to 0 in an arm")]
    ZeroDenominator,
    /// The control's value is 0, so a relative lift has no meaning.
    #[error("the control's value is 0: no relative lift")]
    ZeroControl,
    /// The covariate has no variance, so CUPED has nothing to adjust with.
    #[error("the pre-exposure covariate has no variance")]
    ZeroCovariateVariance,
    /// No users at all.
    #[error("no exposed users")]
    NoUsers,
    /// An input is not a finite number or is out of range.
    #[error("an input is not finite or out of range")]
    BadInput,
}

/// Result of a computation that may not be possible on the data.
pub type StatsResult<T> = Result<T, StatsError>;

fn finite(x: f64) -> StatsResult<f64> {
    if x.is_finite() { Ok(x) } else { Err(StatsError::BadInput) }
}

// ---------------------------------------------------------------------------------------
// Special functions
// ---------------------------------------------------------------------------------------

/// Stirling's remainder: ln Γ(x) - [(x - 1/2) ln x - x + ln sqrt(2 pi)], for x > 0.
fn stirling_remainder(x: f64) -> f64 {
    if x >= 10.0 {
        let r = 1.0 / (x * x);
        (1.0 / x) * (1.0 / 12.0 - r * (1.0 / 360.0 - r * (1.0 / 1260.0 - r * (1.0 / 1680.0 - r / 1188.0))))
    } else {
        lanczos_ln_gamma(x) - ((x - 0.5) * x.ln() - x + LN_SQRT_2PI)
    }
}

/// ln Γ(x) for 0.5 <= x by the Lanczos approximation (g = 7, 9 terms).
fn lanczos_ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        return (PI / (PI * x).sin()).ln() - lanczos_ln_gamma(1.0 - x);
    }
    let z = x - 1.0;
    let mut a = C[0];
    for (i, c) in C.iter().enumerate().skip(1) {
        a += c / (z + i as f64);
    }
    let t = z + G + 0.5;
    LN_SQRT_2PI + (z + 0.5) * t.ln() - t + a.ln()
}

/// ln Γ(x) for x > 0.
pub fn ln_gamma(x: f64) -> f64 {
    if x >= 10.0 { (x - 0.5) * x.ln() - x + LN_SQRT_2PI + stirling_remainder(x) } else { lanczos_ln_gamma(x) }
}

/// ln B(a, b) for a, b > 0, without the cancellation of ln Γ(a) + ln Γ(b) - ln Γ(a + b)
/// when an argument is large.
pub fn ln_beta(a: f64, b: f64) -> f64 {
    let (p, q) = if a < b { (a, b) } else { (b, a) };
    if q < 10.0 {
        ln_gamma(p) + ln_gamma(q) - ln_gamma(p + q)
    } else if p < 10.0 {
        // ln Γ(q) - ln Γ(p + q) by Stirling's form of both.
        let corr = stirling_remainder(q) - stirling_remainder(p + q);
        ln_gamma(p) + corr + p - p * (p + q).ln() - (q - 0.5) * (p / q).ln_1p()
    } else {
        let corr = stirling_remainder(p) + stirling_remainder(q) - stirling_remainder(p + q);
        -0.5 * q.ln() + LN_SQRT_2PI + corr + (p - 0.5) * (p / (p + q)).ln() + q * (-p / (p + q)).ln_1p()
    }
}

/// Regularised incomplete gamma functions (P(a, x), Q(a, x) = 1 - P(a, x)) for a > 0,
/// x >= 0; the smaller of the two is computed directly, so tails keep their precision.
pub fn gamma_inc(a: f64, x: f64) -> (f64, f64) {
    if x.is_nan() || a.is_nan() || a <= 0.0 {
        return (f64::NAN, f64::NAN);
    }
    if x <= 0.0 {
        return (0.0, 1.0);
    }
    if x.is_infinite() {
        return (1.0, 0.0);
    }
    let ln_front = a * x.ln() - x - ln_gamma(a);
    if x < a + 1.0 {
        // Series: P = x^a e^-x / Γ(a) * sum x^n / (a (a+1) ... (a+n)).
        let mut ap = a;
        let mut term = 1.0 / a;
        let mut sum = term;
        for _ in 0..100_000 {
            ap += 1.0;
            term *= x / ap;
            sum += term;
            if term.abs() < sum.abs() * EPS {
                break;
            }
        }
        let p = (ln_front.exp() * sum).min(1.0);
        (p, 1.0 - p)
    } else {
        // Continued fraction for Q (modified Lentz).
        let mut b = x + 1.0 - a;
        let mut c = 1.0 / TINY;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..100_000 {
            let an = -(i as f64) * (i as f64 - a);
            b += 2.0;
            d = an * d + b;
            if d.abs() < TINY {
                d = TINY;
            }
            c = b + an / c;
            if c.abs() < TINY {
                c = TINY;
            }
            d = 1.0 / d;
            let del = d * c;
            h *= del;
            if (del - 1.0).abs() < EPS {
                break;
            }
        }
        let q = (ln_front.exp() * h).min(1.0);
        (1.0 - q, q)
    }
}

/// The continued fraction of I_x(a, b) (modified Lentz), converging fast for
/// x < (a + 1) / (a + b + 2).
fn beta_fraction(a: f64, b: f64, x: f64) -> f64 {
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..1_000_000 {
        let m = m as f64;
        let m2 = 2.0 * m;
        let aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 + aa * d;
        if d.abs() < TINY {
            d = TINY;
        }
        c = 1.0 + aa / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        h *= d * c;
        let aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 + aa * d;
        if d.abs() < TINY {
            d = TINY;
        }
        c = 1.0 + aa / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        let del = d * c;
        h *= del;
        if (del - 1.0).abs() < EPS {
            break;
        }
    }
    h
}

/// B_2k / (2k)! for k = 1..15 (Bernoulli numbers over factorials).
fn bernoulli_over_factorial() -> [f64; 15] {
    const B: [(f64, f64); 15] = [
        (1.0, 6.0),
        (-1.0, 30.0),
        (1.0, 42.0),
        (-1.0, 30.0),
        (5.0, 66.0),
        (-691.0, 2730.0),
        (7.0, 6.0),
        (-3617.0, 510.0),
        (43867.0, 798.0),
        (-174_611.0, 330.0),
        (854_513.0, 138.0),
        (-236_364_091.0, 2730.0),
        (8_553_103.0, 6.0),
        (-23_749_461_029.0, 870.0),
        (8_615_841_276_005.0, 14322.0),
    ];
    let mut out = [0.0; 15];
    let mut factorial = 1.0f64;
    for (k, (num, den)) in B.iter().enumerate() {
        let n = 2 * (k + 1);
        factorial *= ((n - 1) * n) as f64;
        out[k] = num / den / factorial;
    }
    out
}

/// I_x(a, b) for large a and b <= 1 near x = 1 by the expansion in 1/T^2, T = a + (b-1)/2:
/// with t = e^-w, I_x(a, b) = 1/B(a,b) int_{-ln x}^inf e^{-T w} w^{b-1} g(w) dw where
/// g(w) = (sinh(w/2) / (w/2))^{b-1} = sum c_n w^{2n}, so
/// I_x(a, b) = Γ(a+b)/(Γ(a) T^b) sum c_n (b)_{2n} T^{-2n} Q(b + 2n, -T ln x).
/// The continued fraction loses digits in this region (a large, x close to 1); `None`
/// outside it.
fn beta_inc_large_a(a: f64, b: f64, x: f64, y: f64) -> Option<f64> {
    if !(a >= 100.0 && b <= 1.0 && x > 0.5) {
        return None;
    }
    let u = -(-y).ln_1p();
    if u > 1.0 {
        return None;
    }
    let t = a + 0.5 * (b - 1.0);
    let z = t * u;
    // c_n from ln g = (b - 1) sum_k B_2k / (2k (2k)!) w^{2k}.
    let bf = bernoulli_over_factorial();
    let d: Vec<f64> = bf.iter().enumerate().map(|(k, v)| (b - 1.0) * v / (2 * (k + 1)) as f64).collect();
    let mut c = vec![1.0f64; bf.len() + 1];
    for n in 1..c.len() {
        c[n] = (1..=n).map(|k| k as f64 * d[k - 1] * c[n - k]).sum::<f64>() / n as f64;
    }
    let mut q = gamma_inc(b, z).1;
    // e = z^s e^-z / Γ(s + 1), stepping s = b, b + 1, ...
    let mut e = (b * z.ln() - z - ln_gamma(b + 1.0)).exp();
    let mut s = b;
    let mut rising = 1.0; // (b)_{2n}
    let t2 = 1.0 / (t * t);
    let mut scale = 1.0; // T^{-2n}
    let mut sum = q;
    for (n, cn) in c.iter().enumerate().skip(1) {
        for _ in 0..2 {
            q += e;
            s += 1.0;
            e *= z / s;
        }
        rising *= (b + (2 * n - 2) as f64) * (b + (2 * n - 1) as f64);
        scale *= t2;
        let term = cn * rising * scale * q;
        sum += term;
        if term.abs() < 1e-17 * sum.abs() {
            break;
        }
    }
    let ln_m = -ln_beta(a, b) + ln_gamma(b) - b * t.ln();
    let v = ln_m.exp() * sum;
    (v.is_finite() && (0.0..=1.0).contains(&v)).then_some(v)
}

/// Regularised incomplete beta I_x(a, b) and its complement 1 - I_x(a, b), for a, b > 0,
/// given x and y = 1 - x separately (pass an accurate y when x is close to 1: the
/// complement's precision depends on it).
pub fn beta_inc(a: f64, b: f64, x: f64, y: f64) -> (f64, f64) {
    if !(a > 0.0 && b > 0.0) || x.is_nan() || y.is_nan() {
        return (f64::NAN, f64::NAN);
    }
    if x <= 0.0 {
        return (0.0, 1.0);
    }
    if y <= 0.0 {
        return (1.0, 0.0);
    }
    if let Some(v) = beta_inc_large_a(a, b, x, y) {
        return (v, 1.0 - v);
    }
    if let Some(v) = beta_inc_large_a(b, a, y, x) {
        return (1.0 - v, v);
    }
    let ln_x = if x > 0.5 { (-y).ln_1p() } else { x.ln() };
    let ln_y = if y > 0.5 { (-x).ln_1p() } else { y.ln() };
    let front = |a: f64, b: f64, ln_x: f64, ln_y: f64| (a * ln_x + b * ln_y - ln_beta(a, b)).exp() / a;
    if x < (a + 1.0) / (a + b + 2.0) {
        let v = (front(a, b, ln_x, ln_y) * beta_fraction(a, b, x)).min(1.0);
        (v, 1.0 - v)
    } else {
        let v = (front(b, a, ln_y, ln_x) * beta_fraction(b, a, y)).min(1.0);
        (1.0 - v, v)
    }
}

// ---------------------------------------------------------------------------------------
// Distributions
// ---------------------------------------------------------------------------------------

/// Standard normal upper tail P(Z > z).
pub fn normal_sf(z: f64) -> f64 {
    if z.is_nan() {
        return f64::NAN;
    }
    let q = 0.5 * gamma_inc(0.5, 0.5 * z * z).1;
    if z >= 0.0 { q } else { 1.0 - q }
}

/// Standard normal CDF P(Z <= z).
pub fn normal_cdf(z: f64) -> f64 {
    normal_sf(-z)
}

/// Standard normal density.
pub fn normal_pdf(z: f64) -> f64 {
    (-0.5 * z * z - LN_SQRT_2PI).exp()
}

/// Standard normal quantile: the z with P(Z <= z) = p (Acklam's rational approximation,
/// refined by one Halley step on [`normal_cdf`]).
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] =
        [7.784_695_709_041_462e-3, 3.224_671_290_700_398e-1, 2.445_134_137_142_996, 3.754_408_661_907_416];
    if p.is_nan() || !(0.0..=1.0).contains(&p) {
        return f64::NAN;
    }
    if p == 0.0 {
        return f64::NEG_INFINITY;
    }
    if p == 1.0 {
        return f64::INFINITY;
    }
    // Work in the lower half, where p is exact, and mirror.
    let q = if p > 0.5 { 1.0 - p } else { p };
    let low = 0.024_25;
    let mut x = if q < low {
        let r = (-2.0 * q.ln()).sqrt();
        (((((C[0] * r + C[1]) * r + C[2]) * r + C[3]) * r + C[4]) * r + C[5])
            / ((((D[0] * r + D[1]) * r + D[2]) * r + D[3]) * r + 1.0)
    } else {
        let r = q - 0.5;
        let s = r * r;
        (((((A[0] * s + A[1]) * s + A[2]) * s + A[3]) * s + A[4]) * s + A[5]) * r
            / (((((B[0] * s + B[1]) * s + B[2]) * s + B[3]) * s + B[4]) * s + 1.0)
    };
    // Halley refinement on the lower tail (x <= 0 here).
    let e = normal_cdf(x) - q;
    let u = e * (2.0 * PI).sqrt() * (0.5 * x * x).exp();
    if u.is_finite() {
        x -= u / (1.0 + 0.5 * x * u);
    }
    if p > 0.5 { -x } else { x }
}

/// Two-sided tail P(|T| > |t|) of Student's t with `df` > 0 degrees of freedom (any real
/// df; infinite df is the normal).
pub fn t_two_sided_p(t: f64, df: f64) -> f64 {
    if t.is_nan() || df.is_nan() || df <= 0.0 {
        return f64::NAN;
    }
    if df.is_infinite() {
        return 2.0 * normal_sf(t.abs());
    }
    if t.is_infinite() {
        return 0.0;
    }
    let r = t * t / df;
    if !r.is_finite() {
        return 0.0;
    }
    // P(|T| > |t|) = I_x(df/2, 1/2) with x = df / (df + t^2).
    let x = 1.0 / (1.0 + r);
    let y = r / (1.0 + r);
    beta_inc(0.5 * df, 0.5, x, y).0
}

/// Student t upper tail P(T > t).
pub fn t_sf(t: f64, df: f64) -> f64 {
    let half = 0.5 * t_two_sided_p(t, df);
    if t >= 0.0 { half } else { 1.0 - half }
}

/// Student t CDF P(T <= t).
pub fn t_cdf(t: f64, df: f64) -> f64 {
    t_sf(-t, df)
}

/// Student t density.
pub fn t_pdf(t: f64, df: f64) -> f64 {
    if df.is_infinite() {
        return normal_pdf(t);
    }
    (-0.5 * (df + 1.0) * (t * t / df).ln_1p() - 0.5 * df.ln() - ln_beta(0.5 * df, 0.5)).exp()
}

/// Student t quantile: the t with P(T <= t) = p, for any real df > 0 (a safeguarded
/// Newton iteration on [`t_sf`] from the Cornish-Fisher start).
pub fn t_quantile(p: f64, df: f64) -> f64 {
    if p.is_nan() || df.is_nan() || !(0.0..=1.0).contains(&p) || df <= 0.0 {
        return f64::NAN;
    }
    if df.is_infinite() {
        return normal_quantile(p);
    }
    if p == 0.0 {
        return f64::NEG_INFINITY;
    }
    if p == 1.0 {
        return f64::INFINITY;
    }
    if p == 0.5 {
        return 0.0;
    }
    // Solve the upper tail P(T > t) = q for t > 0, then mirror.
    let (q, sign) = if p > 0.5 { (1.0 - p, 1.0) } else { (p, -1.0) };
    let z = -normal_quantile(q);
    let mut t = z + (z * z * z + z) / (4.0 * df) + (5.0 * z.powi(5) + 16.0 * z.powi(3) + 3.0 * z) / (96.0 * df * df);
    if !(t.is_finite() && t > 0.0) {
        t = z.max(1.0);
    }
    let mut lo = 0.0;
    let mut hi = t.max(1.0);
    while t_sf(hi, df) > q {
        lo = hi;
        hi *= 2.0;
        if hi > 1e300 {
            return sign * hi;
        }
    }
    t = t.clamp(lo, hi);
    for _ in 0..5000 {
        let f = t_sf(t, df) - q;
        if f == 0.0 {
            break;
        }
        if f > 0.0 {
            lo = t;
        } else {
            hi = t;
        }
        let step = f / t_pdf(t, df);
        let mut next = t + step;
        if !(next > lo && next < hi && next.is_finite()) {
            next = 0.5 * (lo + hi);
        }
        if (next - t).abs() <= 1e-15 * t.abs() || hi - lo <= 1e-15 * hi {
            t = next;
            break;
        }
        t = next;
    }
    sign * t
}

/// Chi-square survival function P(X > x) with `df` > 0 degrees of freedom.
pub fn chi2_sf(x: f64, df: f64) -> f64 {
    if x.is_nan() || df.is_nan() || df <= 0.0 {
        return f64::NAN;
    }
    gamma_inc(0.5 * df, 0.5 * x.max(0.0)).1
}

// ---------------------------------------------------------------------------------------
// Sample moments
// ---------------------------------------------------------------------------------------

/// Size, mean and sample variance of one sample.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Moments {
    /// Number of values.
    pub n: u64,
    /// Mean (0 for an empty sample).
    pub mean: f64,
    /// Sample variance with divisor n - 1 (0 when n < 2).
    pub variance: f64,
}

impl Moments {
    /// Moments of `values` (two passes: the mean, then squared deviations).
    pub fn of(values: &[f64]) -> Moments {
        let n = values.len();
        if n == 0 {
            return Moments { n: 0, mean: 0.0, variance: 0.0 };
        }
        let mean = values.iter().sum::<f64>() / n as f64;
        let variance =
            if n < 2 { 0.0 } else { values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (n - 1) as f64 };
        Moments { n: n as u64, mean, variance }
    }

    /// Variance of the mean, s^2 / n.
    pub fn variance_of_mean(&self) -> StatsResult<f64> {
        if self.n < 2 {
            return Err(StatsError::TooFewUsers);
        }
        finite(self.variance / self.n as f64)
    }
}

/// Sample moments of per-user pairs (numerator Y, denominator X) of a ratio metric.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RatioMoments {
    /// Users.
    pub n: u64,
    /// Mean of Y.
    pub mean_y: f64,
    /// Mean of X.
    pub mean_x: f64,
    /// Sample variance of Y.
    pub var_y: f64,
    /// Sample variance of X.
    pub var_x: f64,
    /// Sample covariance of X and Y.
    pub cov_xy: f64,
}

impl RatioMoments {
    /// Moments of the pairs (`y[i]`, `x[i]`); the slices must have the same length (extra
    /// values of the longer one are ignored).
    pub fn of(y: &[f64], x: &[f64]) -> RatioMoments {
        let n = y.len().min(x.len());
        let (y, x) = (&y[..n], &x[..n]);
        if n == 0 {
            return RatioMoments { n: 0, mean_y: 0.0, mean_x: 0.0, var_y: 0.0, var_x: 0.0, cov_xy: 0.0 };
        }
        let mean_y = y.iter().sum::<f64>() / n as f64;
        let mean_x = x.iter().sum::<f64>() / n as f64;
        let (mut syy, mut sxx, mut sxy) = (0.0, 0.0, 0.0);
        for (a, b) in y.iter().zip(x) {
            let (dy, dx) = (a - mean_y, b - mean_x);
            syy += dy * dy;
            sxx += dx * dx;
            sxy += dx * dy;
        }
        let d = if n < 2 { f64::INFINITY } else { (n - 1) as f64 };
        RatioMoments { n: n as u64, mean_y, mean_x, var_y: syy / d, var_x: sxx / d, cov_xy: sxy / d }
    }

    /// The ratio of means R = mean(Y) / mean(X).
    pub fn ratio(&self) -> StatsResult<f64> {
        if self.n == 0 {
            return Err(StatsError::NoUsers);
        }
        if self.mean_x == 0.0 {
            return Err(StatsError::ZeroDenominator);
        }
        finite(self.mean_y / self.mean_x)
    }

    /// Delta-method variance of R (Deng, Knoblich, Lu, KDD 2018):
    /// (1/n) [s_Y^2/mu_X^2 - 2 mu_Y s_XY/mu_X^3 + mu_Y^2 s_X^2/mu_X^4].
    pub fn ratio_variance(&self) -> StatsResult<f64> {
        let r = self.ratio()?;
        if self.n < 2 {
            return Err(StatsError::TooFewUsers);
        }
        let mx = self.mean_x;
        let v = (self.var_y - 2.0 * r * self.cov_xy + r * r * self.var_x) / (mx * mx) / self.n as f64;
        finite(v.max(0.0))
    }
}

// ---------------------------------------------------------------------------------------
// Tests of a difference
// ---------------------------------------------------------------------------------------

/// A two-sided test of treatment - control with its confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// Treatment estimate minus control estimate.
    pub difference: f64,
    /// Standard error of the difference.
    pub std_error: f64,
    /// Degrees of freedom (Welch-Satterthwaite), or `None` for a normal (z) test.
    pub df: Option<f64>,
    /// t or z statistic.
    pub statistic: f64,
    /// Two-sided p-value.
    pub p_value: f64,
    /// Lower bound of the 1 - alpha interval of the difference.
    pub ci_low: f64,
    /// Upper bound.
    pub ci_high: f64,
}

/// Welch's unequal-variance t-test of mean(treatment) - mean(control), with the
/// Welch-Satterthwaite degrees of freedom and the 1 - `alpha` t interval (what
/// `scipy.stats.ttest_ind(equal_var=False)` computes).
pub fn welch(treatment: &Moments, control: &Moments, alpha: f64) -> StatsResult<Comparison> {
    let vt = treatment.variance_of_mean()?;
    let vc = control.variance_of_mean()?;
    let var = vt + vc;
    if var <= 0.0 {
        return Err(StatsError::ZeroVariance);
    }
    let se = var.sqrt();
    let df = var * var / (vt * vt / (treatment.n - 1) as f64 + vc * vc / (control.n - 1) as f64);
    let difference = finite(treatment.mean - control.mean)?;
    let statistic = difference / se;
    let q = t_quantile(1.0 - 0.5 * alpha, df);
    Ok(Comparison {
        difference,
        std_error: se,
        df: Some(df),
        statistic,
        p_value: t_two_sided_p(statistic, df),
        ci_low: difference - q * se,
        ci_high: difference + q * se,
    })
}

/// Two-sided normal (z) test of a difference with a known variance (the delta method's).
pub fn z_test(difference: f64, variance: f64, alpha: f64) -> StatsResult<Comparison> {
    finite(difference)?;
    if !(variance.is_finite() && variance >= 0.0) {
        return Err(StatsError::BadInput);
    }
    if variance == 0.0 {
        return Err(StatsError::ZeroVariance);
    }
    let se = variance.sqrt();
    let statistic = difference / se;
    let q = normal_quantile(1.0 - 0.5 * alpha);
    Ok(Comparison {
        difference,
        std_error: se,
        df: None,
        statistic,
        p_value: 2.0 * normal_sf(statistic.abs()),
        ci_low: difference - q * se,
        ci_high: difference + q * se,
    })
}

/// A relative lift with its delta-method interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Lift {
    /// treatment / control - 1 (0.15 is +15%).
    pub lift: f64,
    /// Delta-method standard error of the lift.
    pub std_error: f64,
    /// Lower bound of the 1 - alpha normal interval.
    pub ci_low: f64,
    /// Upper bound.
    pub ci_high: f64,
}

/// Relative lift Δ = t / c - 1 of two independent estimates with variances `var_t` and
/// `var_c`; Var(Δ) ≈ (t/c)^2 [Var_t/t^2 + Var_c/c^2] = Var_t/c^2 + t^2 Var_c/c^4 (the
/// second form holds at t = 0 too).
pub fn relative_lift(t: f64, var_t: f64, c: f64, var_c: f64, alpha: f64) -> StatsResult<Lift> {
    for v in [t, var_t, c, var_c] {
        finite(v)?;
    }
    if c == 0.0 {
        return Err(StatsError::ZeroControl);
    }
    let lift = t / c - 1.0;
    let var = var_t / (c * c) + t * t * var_c / (c * c * c * c);
    let se = finite(var.max(0.0).sqrt())?;
    let q = normal_quantile(1.0 - 0.5 * alpha);
    Ok(Lift { lift, std_error: se, ci_low: lift - q * se, ci_high: lift + q * se })
}

// ---------------------------------------------------------------------------------------
// CUPED
// ---------------------------------------------------------------------------------------

/// CUPED's theta = cov(Y, X) / var(X) over all the given pairs (pooled over arms), and the
/// mean of X it centres on.
pub fn cuped_theta(y: &[f64], x: &[f64]) -> StatsResult<(f64, f64)> {
    let m = RatioMoments::of(y, x);
    if m.n < 2 {
        return Err(StatsError::TooFewUsers);
    }
    if m.var_x <= 0.0 || !m.var_x.is_finite() {
        return Err(StatsError::ZeroCovariateVariance);
    }
    Ok((finite(m.cov_xy / m.var_x)?, m.mean_x))
}

/// CUPED-adjusted values Y' = Y - theta (X - mean_x).
pub fn cuped_adjust(y: &[f64], x: &[f64], theta: f64, mean_x: f64) -> Vec<f64> {
    y.iter().zip(x).map(|(a, b)| a - theta * (b - mean_x)).collect()
}

/// Per-user linearisation of a ratio of means around R = sum(Y)/sum(X) with mean(X) =
/// `mean_x`: L = R + (Y - R X) / mean_x. mean(L) = R, and var(L)/n is the delta-method
/// variance of R, so tests and CUPED on L are tests and CUPED on R.
pub fn linearise(y: &[f64], x: &[f64], ratio: f64, mean_x: f64) -> Vec<f64> {
    y.iter().zip(x).map(|(a, b)| ratio + (a - ratio * b) / mean_x).collect()
}

// ---------------------------------------------------------------------------------------
// Sequential testing: mSPRT
// ---------------------------------------------------------------------------------------

/// An always-valid p-value and confidence sequence for a difference.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sequential {
    /// Always-valid p-value (the running minimum of 1 / Lambda over the looks).
    pub p_value: f64,
    /// Lower bound of the confidence sequence (running intersection over the looks).
    pub ci_low: f64,
    /// Upper bound.
    pub ci_high: f64,
}

/// ln of the mixture likelihood ratio of the mSPRT with a N(0, tau^2) mixing distribution
/// (Johari et al., Operations Research 2022), for an estimate `theta` of variance `v`
/// tested against `theta0`:
/// ln Lambda = 1/2 ln(v / (v + tau^2)) + tau^2 (theta - theta0)^2 / (2 v (v + tau^2)).
pub fn msprt_ln_lambda(theta: f64, theta0: f64, v: f64, tau: f64) -> f64 {
    let t2 = tau * tau;
    let d = theta - theta0;
    -0.5 * (t2 / v).ln_1p() + t2 * d * d / (2.0 * v * (v + t2))
}

/// The mSPRT at one look: p = min(previous p, 1 / Lambda), and the confidence sequence
/// {theta0 : Lambda(theta0) < 1/alpha} intersected with the previous interval.
/// `difference` is the estimate (treatment - control), `variance` its variance, `tau` the
/// standard deviation of the mixing distribution.
pub fn msprt(
    difference: f64,
    variance: f64,
    tau: f64,
    alpha: f64,
    previous: Option<&Sequential>,
) -> StatsResult<Sequential> {
    for v in [difference, variance, tau] {
        finite(v)?;
    }
    if !(alpha > 0.0 && alpha < 1.0) || tau <= 0.0 {
        return Err(StatsError::BadInput);
    }
    if variance <= 0.0 {
        return Err(StatsError::ZeroVariance);
    }
    let t2 = tau * tau;
    let p_now = (-msprt_ln_lambda(difference, 0.0, variance, tau)).exp().min(1.0);
    // Lambda(theta0) < 1/alpha  <=>  (theta - theta0)^2 < 2 v (v + tau^2) / tau^2 *
    // [ln(1/alpha) + 1/2 ln((v + tau^2) / v)].
    let half = (2.0 * variance * (variance + t2) / t2 * (-(alpha.ln()) + 0.5 * (t2 / variance).ln_1p())).sqrt();
    let mut out = Sequential { p_value: p_now, ci_low: difference - half, ci_high: difference + half };
    if let Some(prev) = previous {
        out.p_value = out.p_value.min(prev.p_value);
        out.ci_low = out.ci_low.max(prev.ci_low);
        out.ci_high = out.ci_high.min(prev.ci_high);
        if out.ci_low > out.ci_high {
            // The intersection is empty (the model is wrong somewhere): keep today's
            // interval rather than an impossible one.
            out.ci_low = difference - half;
            out.ci_high = difference + half;
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// Sample-ratio mismatch and sample size
// ---------------------------------------------------------------------------------------

/// Chi-square goodness of fit of observed counts against expected shares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GoodnessOfFit {
    /// The statistic sum (o - e)^2 / e.
    pub chi_square: f64,
    /// Degrees of freedom (categories - 1).
    pub df: usize,
    /// P(X > chi_square).
    pub p_value: f64,
    /// Expected counts.
    pub expected: Vec<f64>,
}

/// Chi-square goodness of fit of `observed` counts against `shares` (any positive scale;
/// normalised here), as `scipy.stats.chisquare(observed, expected)`.
pub fn chi_square_gof(observed: &[u64], shares: &[f64]) -> StatsResult<GoodnessOfFit> {
    if observed.len() != shares.len() || observed.len() < 2 {
        return Err(StatsError::BadInput);
    }
    if shares.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
        return Err(StatsError::BadInput);
    }
    let n: u64 = observed.iter().sum();
    if n == 0 {
        return Err(StatsError::NoUsers);
    }
    let total: f64 = shares.iter().sum();
    let expected: Vec<f64> = shares.iter().map(|s| n as f64 * s / total).collect();
    let chi_square: f64 = observed.iter().zip(&expected).map(|(&o, e)| (o as f64 - e) * (o as f64 - e) / e).sum();
    let df = observed.len() - 1;
    Ok(GoodnessOfFit { chi_square, df, p_value: chi2_sf(chi_square, df as f64), expected })
}

/// Users per arm a two-arm comparison needs to detect an absolute `effect` with a
/// two-sided test at `alpha` and the given `power`, when each user's value has standard
/// deviation `sd`: 2 sd^2 (z_{1-alpha/2} + z_power)^2 / effect^2, rounded up.
pub fn sample_size_per_arm(sd: f64, effect: f64, alpha: f64, power: f64) -> StatsResult<u64> {
    if !(sd.is_finite() && effect.is_finite() && sd >= 0.0) || effect == 0.0 {
        return Err(StatsError::BadInput);
    }
    if !(alpha > 0.0 && alpha < 1.0 && power > 0.0 && power < 1.0) {
        return Err(StatsError::BadInput);
    }
    let z = normal_quantile(1.0 - 0.5 * alpha) + normal_quantile(power);
    let n = 2.0 * sd * sd * z * z / (effect * effect);
    if !n.is_finite() || n > u64::MAX as f64 / 2.0 {
        return Err(StatsError::BadInput);
    }
    Ok((n.ceil() as u64).max(2))
}

/// The smallest absolute effect a test with standard error `std_error` detects at `alpha`
/// with the given `power`: (z_{1-alpha/2} + z_power) se.
pub fn minimum_detectable_effect(std_error: f64, alpha: f64, power: f64) -> f64 {
    (normal_quantile(1.0 - 0.5 * alpha) + normal_quantile(power)) * std_error
}

/// The `q` quantile of sorted values by linear interpolation between order statistics
/// (position (n - 1) q; numpy's default method). `None` for an empty slice.
pub fn quantile_sorted(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() || !(0.0..=1.0).contains(&q) {
        return None;
    }
    let h = (sorted.len() - 1) as f64 * q;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    let frac = h - lo as f64;
    let (a, b) = (sorted[lo], sorted[hi]);
    Some(if frac >= 0.5 { b - (b - a) * (1.0 - frac) } else { a + (b - a) * frac })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_forms() {
        // t with 1 df is Cauchy; with 2 df has a closed-form CDF.
        for t in [-30.0f64, -2.5, -0.3, 0.0, 0.7, 4.0] {
            let cauchy = 0.5 + t.atan() / PI;
            assert!((t_cdf(t, 1.0) - cauchy).abs() < 1e-14, "{t}");
            let two = 0.5 + t / (2.0 * (2.0 + t * t).sqrt());
            assert!((t_cdf(t, 2.0) - two).abs() < 1e-14, "{t}");
        }
        // chi-square with 2 df: exp(-x/2).
        for x in [0.1f64, 1.0, 10.0, 80.0] {
            let e = (-0.5 * x).exp();
            assert!((chi2_sf(x, 2.0) / e - 1.0).abs() < 1e-13, "{x}");
        }
        assert!((ln_gamma(0.5) - PI.sqrt().ln()).abs() < 1e-15);
        assert!((ln_gamma(30.0) - (1..30).map(|k| (k as f64).ln()).sum::<f64>()).abs() < 1e-12);
    }

    #[test]
    fn quantiles_invert() {
        for p in [1e-12, 1e-5, 0.025, 0.3, 0.5, 0.8, 0.975, 1.0 - 1e-9] {
            assert!((normal_cdf(normal_quantile(p)) / p - 1.0).abs() < 1e-13, "{p}");
            for df in [0.7, 1.0, 3.5, 30.0, 1e4, 1e7] {
                let t = t_quantile(p, df);
                assert!((t_cdf(t, df) / p - 1.0).abs() < 1e-11, "{p} {df} {t}");
            }
        }
    }
}
