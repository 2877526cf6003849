//! The fine-tuning bound η_min = Φ⁻¹(A)/√(k+d) and robustness at matched accuracy.

use proptest::prelude::*;
use robustft::engine::Strategy;
use robustft::theory::{Regime, eta_min, phi, predict_strategies, robust_at_matched_accuracy, z_score};

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    /// η_min·√(k+d) = z and Φ(η_min·√(k+d)) = A, both to 1e-12.
    #[test]
    fn eta_min_inverts_the_accuracy(k in 0.0f64..1e6, d in 1e-3f64..1e6, a in 0.501f64..0.9999) {
        let e = eta_min(k, d, a).unwrap();
        let z = z_score(a).unwrap();
        prop_assert!((e * (k + d).sqrt() - z).abs() < 1e-12);
        prop_assert!((phi(e * (k + d).sqrt()) - a).abs() < 1e-12);
    }

    /// Robust accuracy at matched clean accuracy never increases with k.
    #[test]
    fn robust_at_matched_is_non_increasing_in_k(
        d in 1.0f64..1e4, k1 in 0.0f64..1e4, dk in 0.0f64..1e4, a in 0.6f64..0.999, eps in 0.0f64..0.5,
    ) {
        let r1 = robust_at_matched_accuracy(a, k1 + d, eps).unwrap();
        let r2 = robust_at_matched_accuracy(a, k1 + dk + d, eps).unwrap();
        prop_assert!(r2 <= r1);
    }

    /// No overflow at the top of the range: η_min·√(k+d) = z to 1e-12 relative, for k, d up to
    /// f64::MAX (k + d itself overflows there; the old formula returned 0).
    #[test]
    fn eta_min_without_overflow(ke in 0.0f64..308.25, de in -3.0f64..308.25, a in 0.501f64..0.9999) {
        let (k, d) = (10f64.powf(ke).min(f64::MAX), 10f64.powf(de).min(f64::MAX));
        let e = eta_min(k, d, a).unwrap();
        let z = z_score(a).unwrap();
        prop_assert!(e > 0.0);
        prop_assert!((e * k.sqrt().hypot(d.sqrt()) / z - 1.0).abs() < 1e-12, "{} {} {}", k, d, e);
        let r = Regime::Disjoint.eta_min(k, d, a).unwrap();
        prop_assert_eq!(r, e);
    }

    /// Overlapping support: the bound does not move with k.
    #[test]
    fn overlapping_bound_is_flat(d in 1.0f64..1e4, frac in 0.0f64..=1.0) {
        let k = frac * d;
        let e = Regime::Overlapping.eta_min(k, d, 0.99).unwrap();
        prop_assert!((e - z_score(0.99).unwrap() / d.sqrt()).abs() < 1e-15);
    }
}

/// The paper's numbers: z ≈ 2.33 and, for full fine-tuning on d features, z/√(2d).
#[test]
fn paper_values() {
    let z = z_score(0.99).unwrap();
    assert!((z - 2.33).abs() < 0.005);
    let d = 768.0;
    let full = eta_min(Strategy::Full.k_for(d), d, 0.99).unwrap();
    assert!((full - z / (2.0 * d).sqrt()).abs() < 1e-15);
    // At matched accuracy A, robustness is Φ(z − ε√m): check one value by hand.
    // m = 100, ε = 0.1: Φ(2.3263 − 1) = Φ(1.3263) = 0.907624...
    let r = robust_at_matched_accuracy(0.99, 100.0, 0.1).unwrap();
    assert!((r - phi(z - 1.0)).abs() < 1e-15);
    assert!((r - 0.907_63).abs() < 1e-4);
}

/// Predicted ranking at several d: linear probing first, full fine-tuning last, counts exact.
#[test]
fn ranking_per_d() {
    for d in [10.0, 100.0, 1e4] {
        let ranked = predict_strategies(&Strategy::ALL, d, 0.99, 0.01).unwrap();
        assert_eq!(ranked.len(), 7);
        assert_eq!(ranked[0].strategy, Strategy::LinearProbe);
        assert_eq!(ranked[6].strategy, Strategy::Full);
        for w in ranked.windows(2) {
            assert!(w[0].robust_acc >= w[1].robust_acc);
            assert!(w[0].strategy.vit_b16_params() <= w[1].strategy.vit_b16_params());
        }
    }
    let counts: Vec<u64> = Strategy::ALL.iter().map(|s| s.vit_b16_params()).collect();
    assert_eq!(
        counts,
        vec![85_798_656, 0, 1_179_648, 3_559_680, 57_088, 102_912, 64_512]
    );
}
