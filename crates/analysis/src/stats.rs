//! Small statistics: Wilson intervals for proportions, and the chi-square test of a 2x2
//! table through the complementary error function.

/// z for a two-sided 95% interval.
pub const Z95: f64 = 1.959_963_984_540_054;

/// Wilson score interval of `successes` out of `n` at `z`; `(0, 1)` when `n` is 0.
pub fn wilson(successes: u64, n: u64, z: f64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let n = n as f64;
    let p = successes as f64 / n;
    let z2 = z * z;
    let denom = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denom;
    let half = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denom;
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// Complementary error function, relative error below 1.2e-7 (Chebyshev fit of
/// Numerical Recipes' `erfcc`).
pub fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98 + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

/// Upper tail of the chi-square distribution with one degree of freedom.
pub fn chi2_1_p_value(chi2: f64) -> f64 {
    if chi2 <= 0.0 { 1.0 } else { erfc((chi2 / 2.0).sqrt()) }
}

/// Two-sided p-value of a standard normal statistic.
pub fn normal_two_sided_p(z: f64) -> f64 {
    erfc(z.abs() / std::f64::consts::SQRT_2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_matches_the_textbook_values() {
        let (lo, hi) = wilson(50, 100, Z95);
        assert!((lo - 0.403_8).abs() < 1e-4 && (hi - 0.596_2).abs() < 1e-4, "{lo} {hi}");
        let (lo, hi) = wilson(0, 10, Z95);
        assert_eq!(lo, 0.0);
        assert!((hi - 0.277_5).abs() < 1e-4, "{hi}");
    }

    #[test]
    fn chi_square_tail() {
        // 3.841 is the 95% point of chi-square(1); 6.635 the 99% point.
        assert!((chi2_1_p_value(3.841_459) - 0.05).abs() < 1e-6);
        assert!((chi2_1_p_value(6.634_897) - 0.01).abs() < 1e-6);
        assert!((normal_two_sided_p(1.959_964) - 0.05).abs() < 1e-6);
        assert_eq!(chi2_1_p_value(0.0), 1.0);
    }
}
