//! The robust/non-robust feature model and exact accuracies of linear classifiers on it.
//!
//! Model (Tsipras et al. 2019, "Robustness May Be at Odds with Accuracy", ICLR, §2.1, eq. (1);
//! the robust/non-robust split follows Ilyas et al. 2019, "Adversarial Examples Are Not Bugs,
//! They Are Features", NeurIPS, §2):
//!
//! * label y uniform on {−1, +1};
//! * robust feature x₀ = y with probability p, −y otherwise (½ < p < 1);
//! * non-robust features x₁..x_D i.i.d. N(ηy, 1), η > 0.
//!
//! Classifier f(x) = sign(a·x₀ + vᵀx₁..D + β); a score of exactly 0 is an error.
//! An ℓ∞ adversary of size ε moves every coordinate by at most ε; on a linear score the worst
//! case is exact: δ = −y·ε·sign(w), which moves the score by −y·ε·‖w‖₁ with ‖w‖₁ = |a| + Σ|v_j|.

use nalgebra::DVector;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;

use super::normal::phi_ratio;
use crate::error::{Error, Result, check};

/// The data distribution: p, η and the number D of non-robust features.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FeatureModel {
    p: f64,
    eta: f64,
    dim: usize,
}

impl FeatureModel {
    /// Validates p ∈ (0.5, 1), η > 0 (finite) and D ≥ 1.
    pub fn new(p: f64, eta: f64, dim: usize) -> Result<Self> {
        check::open("p", p, 0.5, 1.0)?;
        check::positive("eta", eta)?;
        if dim == 0 {
            return Err(Error::invalid(
                "dim",
                "need at least one non-robust feature (D >= 1)",
                0,
            ));
        }
        Ok(Self { p, eta, dim })
    }

    /// Probability that the robust feature agrees with the label.
    pub fn p(&self) -> f64 {
        self.p
    }
    /// Mean shift η of each non-robust feature.
    pub fn eta(&self) -> f64 {
        self.eta
    }
    /// Number D of non-robust features.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Exact clean accuracy of `clf` (closed form, O(D)).
    pub fn clean_accuracy(&self, clf: &LinearClassifier) -> Result<f64> {
        self.robust_accuracy(clf, 0.0)
    }

    /// Exact robust accuracy of `clf` against the worst ℓ∞ perturbation of size `eps` ≥ 0.
    pub fn robust_accuracy(&self, clf: &LinearClassifier, eps: f64) -> Result<f64> {
        self.check_dim(clf)?;
        check::non_negative("eps", eps)?;
        Ok(accuracy(self.p, self.eta, &clf.summary(), eps))
    }

    fn check_dim(&self, clf: &LinearClassifier) -> Result<()> {
        if clf.v.len() != self.dim {
            return Err(Error::invalid(
                "weights",
                format!("need one weight per non-robust feature (D = {})", self.dim),
                format!("{} weights", clf.v.len()),
            ));
        }
        Ok(())
    }

    /// Seeded Monte Carlo estimate of clean and robust accuracy: samples (y, x), applies the
    /// worst-case perturbation δ = −y·ε·sign(w) coordinate by coordinate, and counts
    /// y·score > 0. Coordinates with zero weight do not enter the score and are not sampled.
    /// An independent check of [`accuracy`]; cost O(samples · nnz(v)).
    pub fn monte_carlo(&self, clf: &LinearClassifier, eps: f64, samples: usize, seed: u64) -> Result<McEstimate> {
        self.check_dim(clf)?;
        check::non_negative("eps", eps)?;
        if samples == 0 {
            return Err(Error::invalid("samples", "must be >= 1", 0));
        }
        // Scale-invariant like the closed form: products of weights near 1e308 must not overflow.
        let clf = &clf.normalised();
        let support: Vec<(f64, f64)> = clf.v.iter().filter(|w| **w != 0.0).map(|&w| (w, sign(w))).collect();
        let sa = sign(clf.a);
        let mut rng = StdRng::seed_from_u64(seed);
        let (mut clean_ok, mut robust_ok) = (0usize, 0usize);
        for _ in 0..samples {
            let y: f64 = if rng.random::<bool>() { 1.0 } else { -1.0 };
            let x0 = if rng.random::<f64>() < self.p { y } else { -y };
            let mut clean = clf.a * x0 + clf.beta;
            let mut robust = clf.a * (x0 - y * eps * sa) + clf.beta;
            for &(w, sw) in &support {
                let z: f64 = rng.sample(StandardNormal);
                let xj = self.eta * y + z;
                clean += w * xj;
                robust += w * (xj - y * eps * sw);
            }
            clean_ok += usize::from(y * clean > 0.0);
            robust_ok += usize::from(y * robust > 0.0);
        }
        let n = samples as f64;
        Ok(McEstimate {
            clean: clean_ok as f64 / n,
            robust: robust_ok as f64 / n,
            samples,
        })
    }
}

fn sign(x: f64) -> f64 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        0.0
    }
}

/// A Monte Carlo estimate of clean and robust accuracy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct McEstimate {
    /// Fraction classified correctly without perturbation.
    pub clean: f64,
    /// Fraction classified correctly after the worst-case perturbation.
    pub robust: f64,
    /// Number of samples.
    pub samples: usize,
}

impl McEstimate {
    /// Binomial standard error of an estimate whose true value is `q`: √(q(1−q)/n).
    pub fn standard_error(&self, q: f64) -> f64 {
        (q * (1.0 - q) / self.samples as f64).sqrt()
    }
}

/// A linear classifier sign(a·x₀ + vᵀx + β).
#[derive(Debug, Clone, PartialEq)]
pub struct LinearClassifier {
    /// Weight on the robust feature.
    pub a: f64,
    /// Weights on the non-robust features.
    pub v: DVector<f64>,
    /// Bias.
    pub beta: f64,
}

impl LinearClassifier {
    /// Validates that every weight and the bias are finite.
    pub fn new(a: f64, v: Vec<f64>, beta: f64) -> Result<Self> {
        check::finite("a", a)?;
        check::finite("bias", beta)?;
        if let Some((j, w)) = v.iter().enumerate().find(|(_, w)| !w.is_finite()) {
            return Err(Error::invalid(
                format!("weights[{}]", j + 1),
                "must be a finite number",
                w,
            ));
        }
        Ok(Self {
            a,
            v: DVector::from_vec(v),
            beta,
        })
    }

    /// Robust-only classifier: a = 1, v = 0, β = 0 (clean accuracy p; robust accuracy p for ε < 1, else 0).
    pub fn robust_only(dim: usize) -> Self {
        Self {
            a: 1.0,
            v: DVector::zeros(dim),
            beta: 0.0,
        }
    }

    /// Uniform average of the first `m` non-robust features (v_j = 1/m), a = 0, β = 0.
    /// Clean accuracy Φ(η√m), robust accuracy Φ((η−ε)√m).
    ///
    /// ```
    /// use robustft::theory::{FeatureModel, LinearClassifier, phi};
    /// let model = FeatureModel::new(0.9, 0.2, 100)?;
    /// let clf = LinearClassifier::uniform(100, 100)?;
    /// // η√m = 2; an adversary of ε = 2η flips the mean: Φ(−2).
    /// assert!((model.clean_accuracy(&clf)? - phi(2.0)).abs() < 1e-12);
    /// assert!((model.robust_accuracy(&clf, 0.4)? - phi(-2.0)).abs() < 1e-12);
    /// # Ok::<(), robustft::Error>(())
    /// ```
    pub fn uniform(dim: usize, m: usize) -> Result<Self> {
        if m == 0 || m > dim {
            return Err(Error::invalid("m", format!("must lie in 1..={dim} (the model's D)"), m));
        }
        let mut v = DVector::zeros(dim);
        v.rows_mut(0, m).fill(1.0 / m as f64);
        Ok(Self { a: 0.0, v, beta: 0.0 })
    }

    /// Bayes-optimal classifier: the log-likelihood ratio, a = ln(p/(1−p)), v_j = 2η, β = 0
    /// (Tsipras et al. 2019, §2.1: the LLR of N(ηy,1) is 2ηx).
    pub fn bayes_optimal(model: &FeatureModel) -> Self {
        Self {
            a: (model.p / (1.0 - model.p)).ln(),
            v: DVector::from_element(model.dim, 2.0 * model.eta),
            beta: 0.0,
        }
    }

    /// The same classifier with its weights and bias divided by the power of two nearest their
    /// largest magnitude (exact; the classifier is scale-invariant).
    pub fn normalised(&self) -> Self {
        let e = self.scale();
        Self {
            a: libm::ldexp(self.a, e),
            v: self.v.map(|w| libm::ldexp(w, e)),
            beta: libm::ldexp(self.beta, e),
        }
    }

    /// The exponent that normalises the weights and bias (see [`scale_exponent`]).
    fn scale(&self) -> i32 {
        scale_exponent(
            self.v
                .iter()
                .fold(self.a.abs().max(self.beta.abs()), |m, w| m.max(w.abs())),
        )
    }

    /// The numbers the closed forms need, computed once in O(D), with every weight and the bias
    /// first divided by the power of two nearest their largest magnitude (an exact operation):
    /// the classifier is scale-invariant, so the answer must not depend on scale, and Σw² must
    /// neither overflow (weights near 1e200) nor underflow (near 1e-200). For weights of
    /// ordinary size the division is by a power of two, so the numbers are unchanged bit for bit.
    pub fn summary(&self) -> ScoreSummary {
        let e = self.scale();
        let (mut sum, mut sq, mut l1) = (0.0, 0.0, libm::ldexp(self.a, e).abs());
        for &w in self.v.iter() {
            let w = libm::ldexp(w, e);
            sum += w;
            sq += w * w;
            l1 += w.abs();
        }
        ScoreSummary {
            a: libm::ldexp(self.a, e),
            beta: libm::ldexp(self.beta, e),
            sum_v: sum,
            sigma: sq.sqrt(),
            l1,
        }
    }
}

/// The exponent e such that x·2^e lies in [0.5, 1) (0 for x = 0): scaling by 2^e is exact.
fn scale_exponent(x: f64) -> i32 {
    if x == 0.0 { 0 } else { -libm::frexp(x).1 }
}

/// Sufficient statistics of a linear classifier for the closed forms:
/// S = Σv_j, σ = ‖v‖₂, ‖w‖₁ = |a| + Σ|v_j|. Lets sweeps evaluate millions of classifiers
/// without allocating.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoreSummary {
    /// Weight on the robust feature.
    pub a: f64,
    /// Bias.
    pub beta: f64,
    /// S = Σ v_j.
    pub sum_v: f64,
    /// σ = ‖v‖₂.
    pub sigma: f64,
    /// ‖w‖₁ = |a| + Σ|v_j|.
    pub l1: f64,
}

impl ScoreSummary {
    /// The uniform classifier a·x₀ + b·(x₁ + … + x_m) + β in closed form, without materialising
    /// its m weights (so m can be 10¹⁰): S = m·b, σ = |b|·√m, ‖w‖₁ = |a| + m·|b|, after the same
    /// power-of-two normalisation as [`LinearClassifier::summary`].
    pub fn uniform(a: f64, m: usize, b: f64, beta: f64) -> Self {
        let e = scale_exponent(a.abs().max(b.abs()).max(beta.abs()));
        let (a, b, beta, m) = (libm::ldexp(a, e), libm::ldexp(b, e), libm::ldexp(beta, e), m as f64);
        Self {
            a,
            beta,
            sum_v: m * b,
            sigma: b.abs() * m.sqrt(),
            l1: a.abs() + m * b.abs(),
        }
    }

    /// The interpolation w_λ = (1−λ, λ/m, …, λ/m, 0, …) between the robust-only classifier
    /// (λ = 0) and the uniform average of m non-robust features (λ = 1), β = 0.
    pub fn interpolated(m: usize, lambda: f64) -> Self {
        let m = m as f64;
        Self {
            a: 1.0 - lambda,
            beta: 0.0,
            sum_v: lambda,
            sigma: lambda / m.sqrt(),
            l1: (1.0 - lambda).abs() + lambda.abs(),
        }
    }
}

/// The closed form (no validation; callers check p, η, ε):
///
/// acc(ε) = ½ Σ_{s∈±1} [ p·Φ((a + ηS + sβ − L)/σ) + (1−p)·Φ((ηS − a + sβ − L)/σ) ],  L = ε‖w‖₁,
///
/// where s = +1 is the y = +1 half and s = −1 the y = −1 half. For y = +1 and x₀ = +1 the score
/// is a + β + N(ηS, σ²) shifted by −L; it is positive with probability Φ((a + ηS + β − L)/σ).
/// The other three cases follow by symmetry. ε = 0 gives clean accuracy.
/// σ = 0 uses Φ(t/0) = 1 for t > 0, else 0 ([`phi_ratio`]).
#[inline]
pub fn accuracy(p: f64, eta: f64, s: &ScoreSummary, eps: f64) -> f64 {
    let mean = eta * s.sum_v - eps * s.l1;
    let mut acc = 0.0;
    for sb in [s.beta, -s.beta] {
        acc += p * phi_ratio(s.a + mean + sb, s.sigma) + (1.0 - p) * phi_ratio(mean - s.a + sb, s.sigma);
    }
    0.5 * acc
}

/// Tsipras et al. 2019, Theorem 2.1: any classifier with clean accuracy ≥ 1 − δ has robust
/// accuracy ≤ p/(1−p)·δ against an ℓ∞ adversary with ε ≥ 2η. Returns p/(1−p)·(1 − clean_acc);
/// a value ≥ 1 is vacuous (it is not clipped, so the formula can be checked as written).
pub fn tsipras_upper_bound(p: f64, clean_acc: f64) -> Result<f64> {
    check::open("p", p, 0.5, 1.0)?;
    check::closed("clean_acc", clean_acc, 0.0, 1.0)?;
    Ok(p / (1.0 - p) * (1.0 - clean_acc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::theory::normal::phi;

    #[test]
    fn constructors_reject_bad_input_naming_the_field() {
        let msg = |e: Error| e.to_string();
        assert!(msg(FeatureModel::new(0.5, 0.1, 3).unwrap_err()).contains("`p`"));
        assert!(msg(FeatureModel::new(1.0, 0.1, 3).unwrap_err()).contains("`p`"));
        assert!(msg(FeatureModel::new(f64::NAN, 0.1, 3).unwrap_err()).contains("`p`"));
        assert!(msg(FeatureModel::new(0.9, 0.0, 3).unwrap_err()).contains("`eta`"));
        assert!(msg(FeatureModel::new(0.9, -1.0, 3).unwrap_err()).contains("`eta`"));
        assert!(msg(FeatureModel::new(0.9, f64::NAN, 3).unwrap_err()).contains("`eta`"));
        assert!(msg(FeatureModel::new(0.9, 0.1, 0).unwrap_err()).contains("`dim`"));
        let m = FeatureModel::new(0.9, 0.1, 3).unwrap();
        let c = LinearClassifier::uniform(3, 2).unwrap();
        assert!(msg(m.robust_accuracy(&c, -0.1).unwrap_err()).contains("`eps`"));
        assert!(msg(m.robust_accuracy(&c, f64::NAN).unwrap_err()).contains("`eps`"));
        assert!(msg(LinearClassifier::new(0.0, vec![1.0, f64::NAN], 0.0).unwrap_err()).contains("weights[2]"));
        assert!(msg(LinearClassifier::new(f64::INFINITY, vec![], 0.0).unwrap_err()).contains("`a`"));
        assert!(msg(m.clean_accuracy(&LinearClassifier::uniform(4, 2).unwrap()).unwrap_err()).contains("weights"));
        assert!(msg(tsipras_upper_bound(0.4, 0.9).unwrap_err()).contains("`p`"));
    }

    /// Known values from the issue: uniform-m, a = 0: clean Φ(η√m), robust Φ((η−ε)√m).
    #[test]
    fn uniform_known_values() {
        let model = FeatureModel::new(0.8, 0.1, 100).unwrap();
        for m in [1, 7, 100] {
            let c = LinearClassifier::uniform(100, m).unwrap();
            let r = (m as f64).sqrt();
            assert!((model.clean_accuracy(&c).unwrap() - phi(0.1 * r)).abs() < 1e-14);
            for eps in [0.03, 0.1, 0.25] {
                let want = phi((0.1 - eps) * r);
                assert!((model.robust_accuracy(&c, eps).unwrap() - want).abs() < 1e-14);
            }
        }
    }

    #[test]
    fn robust_only_is_p_until_eps_one() {
        let model = FeatureModel::new(0.83, 0.2, 5).unwrap();
        let c = LinearClassifier::robust_only(5);
        assert_eq!(model.clean_accuracy(&c).unwrap(), 0.83);
        assert_eq!(model.robust_accuracy(&c, 0.99).unwrap(), 0.83);
        // At ε = 1 the score is exactly 0 for x₀ = y: counted as an error.
        assert_eq!(model.robust_accuracy(&c, 1.0).unwrap(), 0.0);
    }

    /// The Bayes-optimal classifier beats every interpolated classifier on clean accuracy.
    #[test]
    fn bayes_optimal_is_best_clean() {
        let model = FeatureModel::new(0.7, 0.3, 10).unwrap();
        let best = model.clean_accuracy(&LinearClassifier::bayes_optimal(&model)).unwrap();
        for i in 0..=20 {
            let s = ScoreSummary::interpolated(10, i as f64 / 20.0);
            assert!(accuracy(0.7, 0.3, &s, 0.0) <= best + 1e-12);
        }
    }

    #[test]
    fn interpolated_summary_matches_a_built_classifier() {
        for (m, lambda) in [(1, 0.0), (5, 0.3), (40, 1.0)] {
            let mut v = vec![0.0; 50];
            v[..m].fill(lambda / m as f64);
            let c = LinearClassifier::new(1.0 - lambda, v, 0.0).unwrap().summary();
            let s = ScoreSummary::interpolated(m, lambda);
            // `summary` divides by a power of two (scale normalisation): the ratios the closed
            // form uses are the same, so compare the fields scaled back, and the accuracies.
            let k = libm::ldexp(1.0, -scale_exponent((1.0 - lambda).abs().max(lambda / m as f64)));
            for (x, y) in [(c.a, s.a), (c.sum_v, s.sum_v), (c.sigma, s.sigma), (c.l1, s.l1)] {
                assert!((x * k - y).abs() < 1e-14);
            }
            for eps in [0.0, 0.1, 0.4] {
                assert!((accuracy(0.8, 0.2, &c, eps) - accuracy(0.8, 0.2, &s, eps)).abs() < 1e-14);
            }
        }
    }

    #[test]
    fn monte_carlo_is_deterministic_per_seed() {
        let model = FeatureModel::new(0.8, 0.2, 20).unwrap();
        let c = LinearClassifier::bayes_optimal(&model);
        let a = model.monte_carlo(&c, 0.1, 5000, 7).unwrap();
        let b = model.monte_carlo(&c, 0.1, 5000, 7).unwrap();
        let other = model.monte_carlo(&c, 0.1, 5000, 8).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, other);
    }

    #[test]
    fn tsipras_bound_formula() {
        assert!((tsipras_upper_bound(0.9, 0.95).unwrap() - 0.45).abs() < 1e-12);
        assert_eq!(tsipras_upper_bound(0.75, 1.0).unwrap(), 0.0);
    }
}
