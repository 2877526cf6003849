//! Small statistics for accuracies and rankings: the Wilson score interval and Spearman's ρ.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// z for a two-sided 95% interval, Φ⁻¹(0.975).
pub const Z95: f64 = 1.959_963_984_540_054;

/// A confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// Lower end.
    pub lo: f64,
    /// Upper end.
    pub hi: f64,
}

/// Wilson score 95% interval for `successes` out of `n` (Wilson 1927, JASA 22(158), eq. for
/// the score interval; Agresti & Coull 1998 recommend it over the Wald interval):
/// centre (p̂ + z²/2n)/(1 + z²/n), half-width z/(1 + z²/n)·√(p̂(1−p̂)/n + z²/4n²).
///
/// ```
/// // 81 of 263 (Newcombe 1998, Table I): [0.2553, 0.3662].
/// let ci = robustft::tradeoff::wilson(81, 263)?;
/// assert!((ci.lo - 0.2553).abs() < 1e-4 && (ci.hi - 0.3662).abs() < 1e-4);
/// // The edges are exact: 0 of 64 starts at 0, 64 of 64 ends at 1.
/// assert_eq!((robustft::tradeoff::wilson(0, 64)?.lo, robustft::tradeoff::wilson(64, 64)?.hi), (0.0, 1.0));
/// # Ok::<(), robustft::Error>(())
/// ```
pub fn wilson(successes: u64, n: u64) -> Result<Interval> {
    if n == 0 {
        return Err(Error::invalid("n", "a Wilson interval needs at least one sample", 0));
    }
    if successes > n {
        return Err(Error::invalid("successes", format!("must be <= n = {n}"), successes));
    }
    let nf = n as f64;
    let ph = successes as f64 / nf;
    let z2 = Z95 * Z95;
    let denom = 1.0 + z2 / nf;
    let centre = (ph + z2 / (2.0 * nf)) / denom;
    let half = Z95 / denom * (ph * (1.0 - ph) / nf + z2 / (4.0 * nf * nf)).sqrt();
    // At p̂ = 0 and p̂ = 1 the bound is exactly 0 (resp. 1); the subtraction leaves ~1e-18.
    Ok(Interval {
        lo: if successes == 0 { 0.0 } else { (centre - half).max(0.0) },
        hi: if successes == n { 1.0 } else { (centre + half).min(1.0) },
    })
}

/// Standard competition ranks ("1224"), largest value first: tied values share the best rank
/// among them, so a tie for first is never reported as one winner.
pub fn competition_ranks_desc(x: &[f64]) -> Vec<usize> {
    x.iter()
        .map(|a| 1 + x.iter().filter(|b| b.total_cmp(a).is_gt()).count())
        .collect()
}

/// The indices holding the largest value (every one of them when several tie).
pub fn argmax_all(x: &[f64]) -> Vec<usize> {
    let r = competition_ranks_desc(x);
    (0..x.len()).filter(|&i| r[i] == 1).collect()
}

/// The median of the finite values of `v` (mean of the middle two for an even count; NaN when
/// none is finite). The one median of the toolkit: verdict summaries and benchmark timings.
pub fn median(v: &[f64]) -> f64 {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if s.is_empty() {
        return f64::NAN;
    }
    s.sort_by(f64::total_cmp);
    let m = s.len() / 2;
    if s.len() % 2 == 1 {
        s[m]
    } else {
        (s[m - 1] + s[m]) / 2.0
    }
}

/// Ranks 1..n with ties given the average of the ranks they span.
pub fn average_ranks(x: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..x.len()).collect();
    idx.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut ranks = vec![0.0; x.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && x[idx[j + 1]] == x[idx[i]] {
            j += 1;
        }
        let r = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            ranks[k] = r;
        }
        i = j + 1;
    }
    ranks
}

/// P(X ≥ k) for X ~ Binomial(n, 1/2): the one-sided p-value of the exact sign test (McNemar's
/// exact test on k of n discordant pairs going one way). Summed in log space, so exact to rounding
/// for any n; 1 when k = 0, 0 when k > n.
pub fn sign_test_upper(k: u64, n: u64) -> f64 {
    if k > n {
        return 0.0;
    }
    // ln P(X = i), from ln P(X = 0) = −n ln 2 by the ratio (n − i)/(i + 1).
    let mut ln_p = -(n as f64) * std::f64::consts::LN_2;
    let mut terms = Vec::with_capacity((n - k + 1) as usize);
    for i in 0..=n {
        if i >= k {
            terms.push(ln_p);
        }
        if i < n {
            ln_p += ((n - i) as f64 / (i + 1) as f64).ln();
        }
    }
    let top = terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (top + terms.iter().map(|t| (t - top).exp()).sum::<f64>().ln())
        .exp()
        .min(1.0)
}

/// The two-sided p-value of the exact sign test (McNemar's exact test) on k of n discordant pairs
/// going one way: twice the smaller tail of Binomial(n, 1/2), at most 1 (P(X ≤ k) = P(X ≥ n − k)
/// by symmetry). 1 when n = 0.
pub fn sign_test_two_sided(k: u64, n: u64) -> f64 {
    let k = k.min(n);
    (2.0 * sign_test_upper(k, n).min(sign_test_upper(n - k, n))).min(1.0)
}

/// Holm's step-down adjusted p-values (Holm 1979, Scand. J. Statist. 6:65, the sequentially
/// rejective Bonferroni test): with the m p-values sorted ascending, the i-th (from 0) becomes
/// max over j ≤ i of min(1, (m − j)·p₍ⱼ₎). Rejecting where the adjusted value is below α holds
/// the family-wise error rate at α under any dependence. `None` entries (no test) are left out of
/// the family and stay `None`; the result is in the input's order.
pub fn holm(p: &[Option<f64>]) -> Vec<Option<f64>> {
    let order = tested_ascending(p);
    let m = order.len();
    let mut out = vec![None; p.len()];
    let mut running = 0.0f64;
    for (j, &i) in order.iter().enumerate() {
        running = running.max(((m - j) as f64 * p[i].unwrap_or(1.0)).min(1.0));
        out[i] = Some(running);
    }
    out
}

/// Benjamini–Hochberg q-values (Benjamini & Hochberg 1995, JRSS B 57:289, the step-up
/// procedure): with the m p-values sorted ascending, the i-th (rank r = i + 1) becomes
/// min over j ≥ i of min(1, m·p₍ⱼ₎/(j + 1)). Rejecting where q is below α holds the false
/// discovery rate at α for independent or positively dependent tests. `None` entries are left
/// out of the family and stay `None`; the result is in the input's order.
pub fn benjamini_hochberg(p: &[Option<f64>]) -> Vec<Option<f64>> {
    let order = tested_ascending(p);
    let m = order.len();
    let mut out = vec![None; p.len()];
    let mut running = 1.0f64;
    for (j, &i) in order.iter().enumerate().rev() {
        running = running.min((m as f64 * p[i].unwrap_or(1.0) / (j + 1) as f64).min(1.0));
        out[i] = Some(running);
    }
    out
}

/// The positions of `p`'s tested entries, by p ascending (ties by position).
fn tested_ascending(p: &[Option<f64>]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..p.len()).filter(|&i| p[i].is_some()).collect();
    order.sort_by(|&a, &b| p[a].unwrap_or(1.0).total_cmp(&p[b].unwrap_or(1.0)).then(a.cmp(&b)));
    order
}

/// Spearman's rank correlation: the Pearson correlation of the average ranks (ties averaged).
/// Errors when the lengths differ, n < 2, a value is NaN, or one side is constant.
pub fn spearman(x: &[f64], y: &[f64]) -> Result<f64> {
    if x.len() != y.len() {
        return Err(Error::invalid(
            "y",
            format!("must have the same length as x ({})", x.len()),
            y.len(),
        ));
    }
    if x.len() < 2 {
        return Err(Error::invalid("x", "need at least two pairs", x.len()));
    }
    for (name, v) in [("x", x), ("y", y)] {
        if v.iter().any(|t| t.is_nan()) {
            return Err(Error::invalid(name, "must not contain NaN", "NaN"));
        }
    }
    let (rx, ry) = (average_ranks(x), average_ranks(y));
    let n = x.len() as f64;
    let (mx, my) = (rx.iter().sum::<f64>() / n, ry.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in rx.iter().zip(&ry) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    if sxx == 0.0 || syy == 0.0 {
        return Err(Error::invalid(
            "x, y",
            "a constant sequence has no rank correlation",
            "all ties",
        ));
    }
    Ok(sxy / (sxx * syy).sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Exact sign-test tails against hand counts: P(X ≥ 8 | 10) = (45 + 10 + 1)/1024,
    /// P(X ≥ 5 | 10) = 638/1024, P(X ≥ 3 | 3) = 1/8; the two tails of 1000 sum to 1.
    #[test]
    fn sign_test_tails() {
        assert_eq!(sign_test_upper(0, 10), 1.0);
        assert!((sign_test_upper(8, 10) - 56.0 / 1024.0).abs() < 1e-15);
        assert!((sign_test_upper(5, 10) - 638.0 / 1024.0).abs() < 1e-15);
        assert!((sign_test_upper(3, 3) - 0.125).abs() < 1e-15);
        assert_eq!(sign_test_upper(4, 3), 0.0);
        assert_eq!(sign_test_upper(0, 0), 1.0);
        let (a, b) = (sign_test_upper(530, 1000), sign_test_upper(471, 1000));
        assert!((a + b - 1.0).abs() < 1e-12, "{a} + {b}");
        // Far in the tail: Σ_{i ≥ 600} C(1000, i)/2^1000 = 1.3642320780330092e-10 (exact
        // integer arithmetic, Python's math.comb).
        let p = sign_test_upper(600, 1000);
        assert!((p / 1.364_232_078_033_009_2e-10 - 1.0).abs() < 1e-9, "{p}");
    }

    /// The two-sided test against hand counts: 8 of 10 one way, 2·56/1024; 2 of 10 the same by
    /// symmetry; 5 of 10 (both tails 638/1024) capped at 1; 3 of 3, 2·1/8; none discordant, 1.
    #[test]
    fn sign_test_two_sided_by_hand() {
        assert!((sign_test_two_sided(8, 10) - 112.0 / 1024.0).abs() < 1e-15);
        assert!((sign_test_two_sided(2, 10) - 112.0 / 1024.0).abs() < 1e-15);
        assert_eq!(sign_test_two_sided(5, 10), 1.0);
        assert!((sign_test_two_sided(3, 3) - 0.25).abs() < 1e-15);
        assert!((sign_test_two_sided(0, 3) - 0.25).abs() < 1e-15);
        assert_eq!(sign_test_two_sided(0, 0), 1.0);
    }

    /// Holm and Benjamini–Hochberg against hand computation on p = (0.01, 0.04, 0.03, 0.005)
    /// plus an untested entry: sorted 0.005, 0.01, 0.03, 0.04 with m = 4. Holm: 4·0.005 = 0.02,
    /// 3·0.01 = 0.03, 2·0.03 = 0.06, max(0.06, 1·0.04) = 0.06. BH: 0.04·4/4 = 0.04,
    /// min(0.04, 0.03·4/3) = 0.04, min(0.04, 0.01·4/2) = 0.02, min(0.02, 0.005·4/1) = 0.02.
    #[test]
    fn holm_and_bh_by_hand() {
        let p = [Some(0.01), Some(0.04), None, Some(0.03), Some(0.005)];
        let close = |a: &[Option<f64>], b: &[Option<f64>]| {
            a.len() == b.len()
                && a.iter().zip(b).all(|(x, y)| match (x, y) {
                    (Some(x), Some(y)) => (x - y).abs() < 1e-12,
                    (None, None) => true,
                    _ => false,
                })
        };
        let h = holm(&p);
        assert!(
            close(&h, &[Some(0.03), Some(0.06), None, Some(0.06), Some(0.02)]),
            "{h:?}"
        );
        let q = benjamini_hochberg(&p);
        assert!(
            close(&q, &[Some(0.02), Some(0.04), None, Some(0.04), Some(0.02)]),
            "{q:?}"
        );
        // Capped at 1, and a single test is its own adjustment.
        assert_eq!(holm(&[Some(0.6), Some(0.7)]), vec![Some(1.0), Some(1.0)]);
        assert_eq!(holm(&[Some(0.2)]), vec![Some(0.2)]);
        assert_eq!(benjamini_hochberg(&[Some(0.2)]), vec![Some(0.2)]);
        assert_eq!(holm(&[None]), vec![None]);
    }

    /// Reference: Newcombe 1998 (Stat. Med. 17:857), Table I, method 3 (Wilson score):
    /// 81/263 → (0.2553, 0.3662); 15/148 → (0.0624, 0.1605); 0/20 → (0, 0.1611).
    #[test]
    fn wilson_matches_newcombe_table() {
        let cases = [
            (81, 263, 0.2553, 0.3662),
            (15, 148, 0.0624, 0.1605),
            (0, 20, 0.0, 0.1611),
        ];
        for (s, n, lo, hi) in cases {
            let ci = wilson(s, n).unwrap();
            // The table prints four decimals: agree to half a unit in the last place.
            assert!((ci.lo - lo).abs() < 5e-5, "{s}/{n}: {ci:?}");
            assert!((ci.hi - hi).abs() < 5e-5, "{s}/{n}: {ci:?}");
        }
        assert!(wilson(1, 0).is_err());
        assert!(wilson(3, 2).is_err());
    }

    #[test]
    fn spearman_known_values() {
        // Perfect monotone, reversed, and a hand-computed case with ties.
        assert!((spearman(&[1.0, 2.0, 3.0], &[10.0, 20.0, 90.0]).unwrap() - 1.0).abs() < 1e-15);
        assert!((spearman(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]).unwrap() + 1.0).abs() < 1e-15);
        assert_eq!(average_ranks(&[5.0, 1.0, 5.0, 3.0]), vec![3.5, 1.0, 3.5, 2.0]);
        assert_eq!(competition_ranks_desc(&[5.0, 1.0, 5.0, 3.0]), vec![1, 4, 1, 3]);
        assert_eq!(competition_ranks_desc(&[1.0, 1.0, 2.0]), vec![2, 2, 1]);
        assert_eq!(argmax_all(&[5.0, 1.0, 5.0, 3.0]), vec![0, 2]);
        assert_eq!(argmax_all(&[0.25, 0.5, 0.125]), vec![1]);
        assert!(argmax_all(&[]).is_empty());
        assert_eq!(median(&[3.0, 1.0, f64::NAN, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&[f64::NAN]).is_nan());
        // x ranks (1,2,3,4), y = (1,2,2,3) → ranks (1, 2.5, 2.5, 4): ρ = 4.5/√(5·4.5) = 0.948683…
        let rho = spearman(&[1.0, 2.0, 3.0, 4.0], &[1.0, 2.0, 2.0, 3.0]).unwrap();
        assert!((rho - 4.5 / (5.0f64 * 4.5).sqrt()).abs() < 1e-15);
        assert!(spearman(&[1.0, 1.0], &[1.0, 2.0]).is_err());
        assert!(spearman(&[1.0], &[1.0]).is_err());
    }
}
