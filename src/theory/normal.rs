//! The standard normal CDF Φ and its inverse Φ⁻¹, plus the degenerate-variance convention used
//! by the closed forms.
//!
//! Accuracy matters here: the bound's tests ask for Φ(η_min·√(k+d)) = A to 1e-12. statrs 0.19.1's
//! `erfc` is off by about 1.4e-11 near x = 0.7 (Φ(1) comes out 0.84134474605494 instead of
//! 0.84134474606854), so Φ uses musl's `erfc` (the `libm` crate, < 1 ulp), and Φ⁻¹ starts from
//! statrs' `Normal::inverse_cdf` and polishes it with two Newton steps on that accurate Φ.

use statrs::distribution::{ContinuousCDF, Normal};

/// 1/√(2π).
const INV_SQRT_2PI: f64 = 0.398_942_280_401_432_7;

/// Φ(x) = ½·erfc(−x/√2), to about 1e-16 absolute (musl erfc).
#[inline]
pub fn phi(x: f64) -> f64 {
    0.5 * libm::erfc(-x * std::f64::consts::FRAC_1_SQRT_2)
}

/// Φ⁻¹(q) for q ∈ (0, 1). Callers validate `q`; outside (0, 1) it returns ±∞ or NaN.
pub fn phi_inv(q: f64) -> f64 {
    if q.is_nan() || q <= 0.0 || q >= 1.0 {
        return if q == 0.0 {
            f64::NEG_INFINITY
        } else if q == 1.0 {
            f64::INFINITY
        } else {
            f64::NAN
        };
    }
    let mut x = standard().inverse_cdf(q);
    for _ in 0..2 {
        let density = INV_SQRT_2PI * (-0.5 * x * x).exp();
        if density > 0.0 {
            x -= (phi(x) - q) / density;
        }
    }
    x
}

/// Φ(t/σ) with the convention for σ = 0: 1 when t > 0 and 0 otherwise
/// (a score of exactly zero is an error).
#[inline]
pub fn phi_ratio(t: f64, sigma: f64) -> f64 {
    if sigma > 0.0 {
        phi(t / sigma)
    } else if t > 0.0 {
        1.0
    } else {
        0.0
    }
}

fn standard() -> Normal {
    // Mean 0, sd 1 is always a valid normal.
    Normal::new(0.0, 1.0).expect("standard normal")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference values of Φ from Abramowitz & Stegun, Table 26.1 (to the 15 digits given by
    /// any arbitrary-precision evaluation of ½erfc(−x/√2)).
    #[test]
    fn phi_matches_tables() {
        let cases = [
            (0.0, 0.5),
            (1.0, 0.841_344_746_068_542_9),
            (-1.0, 0.158_655_253_931_457_05),
            (1.959_963_984_540_054, 0.975),
            (2.326_347_874_040_841, 0.99),
            (-3.0, 0.001_349_898_031_630_094_6),
        ];
        for (x, want) in cases {
            assert!((phi(x) - want).abs() < 1e-14, "phi({x}) = {} want {want}", phi(x));
        }
    }

    #[test]
    fn inverse_round_trips() {
        for q in [1e-9, 0.01, 0.3, 0.5, 0.9, 0.99, 0.999_999] {
            assert!((phi(phi_inv(q)) - q).abs() < 1e-13 * q.max(1e-3), "q = {q}");
        }
        // z for the paper's 99% target (the paper rounds it to 2.33).
        assert!((phi_inv(0.99) - 2.326_347_874_040_841).abs() < 1e-12);
    }

    #[test]
    fn degenerate_sigma_convention() {
        assert_eq!(phi_ratio(0.3, 0.0), 1.0);
        assert_eq!(phi_ratio(0.0, 0.0), 0.0);
        assert_eq!(phi_ratio(-0.3, 0.0), 0.0);
        assert!((phi_ratio(1.0, 2.0) - phi(0.5)).abs() < 1e-16);
    }
}
