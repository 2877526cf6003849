//! Tsipras et al. 2019, Theorem 2.1, checked on ≥ 10,000 random linear classifiers: at ε ≥ 2η
//! no classifier beats robust accuracy p/(1−p)·(1 − clean accuracy).

use proptest::prelude::*;
use robustft::theory::{FeatureModel, LinearClassifier, tsipras_upper_bound};

fn classifier() -> impl Strategy<Value = (f64, f64, usize, Vec<f64>, f64, f64, f64)> {
    (0.501f64..0.999, 0.01f64..1.0, 1usize..=500).prop_flat_map(|(p, eta, dim)| {
        (
            Just(p),
            Just(eta),
            Just(dim),
            // Signed and sparse: about a third of the weights are exactly zero.
            prop::collection::vec(prop_oneof![Just(0.0), -1.0f64..1.0, 0.0f64..2.0], dim),
            -3.0f64..3.0,
            -1.0f64..1.0,
            2.0f64..=4.0,
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10_000, ..ProptestConfig::default() })]

    #[test]
    fn robust_never_exceeds_the_bound((p, eta, dim, v, a, beta, ratio) in classifier()) {
        let model = FeatureModel::new(p, eta, dim).unwrap();
        let clf = LinearClassifier::new(a, v, beta).unwrap();
        let eps = ratio * eta;
        let clean = model.clean_accuracy(&clf).unwrap();
        let robust = model.robust_accuracy(&clf, eps).unwrap();
        let bound = tsipras_upper_bound(p, clean).unwrap();
        prop_assert!(robust <= bound + 1e-12, "robust {} > bound {} (clean {})", robust, bound, clean);
    }
}

/// The bound is attained: robust-only has clean = robust = p and bound p/(1−p)·(1−p) = p.
#[test]
fn bound_is_tight_for_robust_only() {
    let model = FeatureModel::new(0.8, 0.1, 3).unwrap();
    let c = LinearClassifier::robust_only(3);
    let clean = model.clean_accuracy(&c).unwrap();
    let robust = model.robust_accuracy(&c, 0.2).unwrap();
    assert_eq!(robust, 0.8);
    assert!((tsipras_upper_bound(0.8, clean).unwrap() - 0.8).abs() < 1e-12);
}
