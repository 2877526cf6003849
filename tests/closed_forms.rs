//! The closed forms against an independent Monte Carlo estimate (sampling x and applying the
//! worst-case perturbation coordinate by coordinate), for random models and classifiers.

use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use robustft::theory::{FeatureModel, LinearClassifier, ScoreSummary, accuracy, phi};

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    /// sign(c·(a·x₀ + vᵀx + β)) = sign(a·x₀ + vᵀx + β) for c > 0: clean and robust accuracy must
    /// not depend on the scale of the weights and bias, from 1e-250 to 1e250 (before the fix,
    /// 1e200 gave 0.5 and 1e-200 gave p).
    #[test]
    fn accuracy_is_scale_invariant(
        p in 0.55f64..0.99, eta in 0.01f64..1.0, eps in 0.0f64..1.0,
        a in -2.0f64..2.0, v in prop::collection::vec(-1.0f64..1.0, 1..12), beta in -0.5f64..0.5,
        exponent in -250.0f64..250.0,
    ) {
        let model = FeatureModel::new(p, eta, v.len()).unwrap();
        let c = 10f64.powf(exponent);
        let base = LinearClassifier::new(a, v.clone(), beta).unwrap();
        let scaled = LinearClassifier::new(a * c, v.iter().map(|w| w * c).collect(), beta * c).unwrap();
        for e in [0.0, eps] {
            let (x, y) = (model.robust_accuracy(&base, e).unwrap(), model.robust_accuracy(&scaled, e).unwrap());
            prop_assert!((x - y).abs() < 1e-12, "ε {}: {} at scale 1, {} at scale {:e}", e, x, y, c);
        }
        // The Monte Carlo check too (same seed, same samples): identical counts, or off by the
        // rare sample whose score is within rounding of 0.
        let (mb, ms) = (model.monte_carlo(&base, eps, 200, 7).unwrap(), model.monte_carlo(&scaled, eps, 200, 7).unwrap());
        prop_assert!((mb.clean - ms.clean).abs() <= 0.005 && (mb.robust - ms.robust).abs() <= 0.005);
    }

    /// The closed-form uniform summary equals the summary of the m materialised weights.
    #[test]
    fn uniform_summary_matches_explicit(
        a in -2.0f64..2.0, b in -1.0f64..1.0, beta in -0.5f64..0.5, m in 1usize..200,
        p in 0.55f64..0.99, eta in 0.01f64..1.0, eps in 0.0f64..0.5,
    ) {
        let explicit = LinearClassifier::new(a, vec![b; m], beta).unwrap().summary();
        let closed = ScoreSummary::uniform(a, m, b, beta);
        let (x, y) = (accuracy(p, eta, &explicit, eps), accuracy(p, eta, &closed, eps));
        prop_assert!((x - y).abs() < 1e-12, "{} vs {}", x, y);
    }
}

/// Random model, random signed sparse classifier with bias, random ε: the Monte Carlo estimate
/// must lie within 4 binomial standard errors of the closed form. With 40 configurations × 2
/// quantities, a correct formula fails this by chance with probability ≈ 80 · 6.3e-5 ≈ 0.5%
/// (and the seeds are fixed, so it either always passes or always fails); a formula that is off
/// by as little as 0.01 in accuracy shows as ≥ 5 standard errors at n = 40,000.
#[test]
fn closed_forms_match_monte_carlo_within_4_se() {
    let mut rng = StdRng::seed_from_u64(20190501);
    let n = 40_000;
    let mut worst: f64 = 0.0;
    for case in 0..40 {
        let p = rng.random_range(0.55..0.98);
        let eta = rng.random_range(0.02..0.6);
        let dim = rng.random_range(1..=60);
        let model = FeatureModel::new(p, eta, dim).unwrap();
        let v: Vec<f64> = (0..dim)
            .map(|_| {
                if rng.random::<f64>() < 0.3 {
                    0.0
                } else {
                    rng.random_range(-0.3..1.0)
                }
            })
            .collect();
        let a = rng.random_range(-0.5..2.0);
        let beta = rng.random_range(-0.5..0.5);
        let clf = LinearClassifier::new(a, v, beta).unwrap();
        let eps = rng.random_range(0.0..0.5);
        let est = model.monte_carlo(&clf, eps, n, case).unwrap();
        for (exact, mc) in [
            (model.clean_accuracy(&clf).unwrap(), est.clean),
            (model.robust_accuracy(&clf, eps).unwrap(), est.robust),
        ] {
            let se = est.standard_error(exact);
            if se == 0.0 {
                assert_eq!(mc, exact, "case {case}: degenerate accuracy must be matched exactly");
                continue;
            }
            let z = (mc - exact) / se;
            worst = worst.max(z.abs());
            assert!(z.abs() < 4.0, "case {case}: exact {exact}, Monte Carlo {mc}, z = {z}");
        }
    }
    // The check is not vacuous: some deviation was measured.
    assert!(worst > 0.0);
}

/// A wrong formula is caught: dropping the ε·|a| term from L (a plausible slip) moves the
/// closed form well outside 4 standard errors of the Monte Carlo estimate.
#[test]
fn the_monte_carlo_check_has_power() {
    let model = FeatureModel::new(0.9, 0.1, 20).unwrap();
    let clf = LinearClassifier::new(1.0, vec![0.05; 20], 0.0).unwrap();
    let eps = 0.3;
    let est = model.monte_carlo(&clf, eps, 40_000, 3).unwrap();
    let s = clf.summary();
    // Wrong: L = ε·Σ|v| only.
    let l_wrong = eps * (s.l1 - s.a.abs());
    let wrong = 0.5
        * [1.0, -1.0]
            .iter()
            .map(|_| {
                0.9 * phi((s.a + 0.1 * s.sum_v - l_wrong) / s.sigma)
                    + 0.1 * phi((0.1 * s.sum_v - s.a - l_wrong) / s.sigma)
            })
            .sum::<f64>();
    let right = model.robust_accuracy(&clf, eps).unwrap();
    assert!(((est.robust - right) / est.standard_error(right)).abs() < 4.0);
    assert!(
        ((est.robust - wrong) / est.standard_error(wrong)).abs() > 4.0,
        "wrong {wrong}, mc {}",
        est.robust
    );
}

/// The Bayes-optimal classifier (a = ln(p/(1−p)), v = 2η) against its Monte Carlo estimate, and
/// robust-only against its exact value p.
#[test]
fn named_classifiers() {
    let model = FeatureModel::new(0.75, 0.3, 8).unwrap();
    let bayes = LinearClassifier::bayes_optimal(&model);
    let est = model.monte_carlo(&bayes, 0.1, 40_000, 11).unwrap();
    let exact = model.clean_accuracy(&bayes).unwrap();
    assert!(((est.clean - exact) / est.standard_error(exact)).abs() < 4.0);
    let robust_only = LinearClassifier::robust_only(8);
    let est = model.monte_carlo(&robust_only, 0.5, 40_000, 12).unwrap();
    assert!(((est.clean - 0.75) / est.standard_error(0.75)).abs() < 4.0);
    assert_eq!(est.clean, est.robust, "ε < 1 never flips the robust feature");
}
