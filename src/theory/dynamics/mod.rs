//! Theory of the training trajectory: fine-tuning a two-layer *linear* network on the feature
//! model, with each of the seven strategies as a parameterisation of the update, trained by
//! gradient descent on the exact population logistic loss.
//!
//! * Data ([`Task`]): label y = ±1; robust feature x₀ = y with probability p, else −y; non-robust
//!   features x_j ~ N(μ_j·y, 1), j = 1..D, with μ_j = η on the task's label-carrying set T and 0
//!   elsewhere (Tsipras et al. 2019, §2.1, with T = {1..D}; letting the downstream task choose T
//!   is what makes transfer from an upstream backbone partial).
//! * Network ([`net::Net`]): backbone z = W x + b (W ∈ R^{h×(1+D)}), head s = uᵀz + c. Everything
//!   is linear, so the effective classifier is w = Wᵀu, β = uᵀb + c and the simulator's exact
//!   clean and robust accuracies ([`crate::theory::accuracy`]) apply at every step.
//! * Loss: the population logistic loss L = E[log(1 + e^{−y s})]. Given y and x₀ the margin
//!   t = y·s is Gaussian, N(m, σ²) with m = ±a + Σ_j μ_j v_j ± β (a = w₀, v = w₁..D) and σ = ‖v‖₂,
//!   so L and its gradient are four one-dimensional Gaussian integrals, computed by Gauss–Hermite
//!   quadrature ([`crate::theory::quadrature`]). The gradient in v uses Stein's lemma,
//!   E[ℓ'(t)·ξ_j] = v_j·E[ℓ''(t)] for t = m + vᵀξ: every ∂L/∂v_j is μ_j·E[ℓ'] + v_j·κ with one
//!   scalar κ, so a step costs O(h·D) and has no sampling noise. κ is computed as E[ℓ'(t)ξ]/σ on the
//!   quadrature nodes — equal to E[ℓ''(t)] by Stein's lemma and, unlike E[ℓ''] on the nodes, the
//!   exact derivative of the quadrature loss, so gradient descent descends the loss it reports.
//!
//! Mini-batch SGD on sampled data ([`sampled_gradient`]) is provided as the check that the
//! population trajectory is the large-batch limit.

pub mod net;
pub mod train;

use rand::Rng;
use rand_distr::StandardNormal;

use super::feature_model::{FeatureModel, ScoreSummary, accuracy};
use super::quadrature::GaussHermite;
use crate::error::{Error, Result, check};

pub use crate::tradeoff::Peak;
pub use net::{Backbone, ModuleSizes, Net};
pub use train::{TrainSpec, TrajPoint, Trajectory, train};

/// log(1 + eᶻ), without overflow.
#[inline]
pub fn softplus(z: f64) -> f64 {
    z.max(0.0) + (-z.abs()).exp().ln_1p()
}

/// 1/(1 + e^{−z}), without overflow.
#[inline]
pub fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// The downstream task: the feature model with a label-carrying set T of non-robust features.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    p: f64,
    eta: f64,
    /// μ_j for j = 1..D (stored 0-based): η on T, 0 elsewhere.
    mu: Vec<f64>,
}

impl Task {
    /// p ∈ (0.5, 1), η > 0, D ≥ 1 non-robust features of which those in `relevant` (1-based
    /// indices into 1..=D, no repeats) carry the label.
    pub fn new(p: f64, eta: f64, dim: usize, relevant: &[usize]) -> Result<Self> {
        // Same admissible p, η and D as the feature model (one validation, one set of messages).
        FeatureModel::new(p, eta, dim)?;
        let mut mu = vec![0.0; dim];
        for &j in relevant {
            if j == 0 || j > dim {
                return Err(Error::invalid("relevant", format!("indices must lie in 1..={dim}"), j));
            }
            if mu[j - 1] != 0.0 {
                return Err(Error::invalid("relevant", "indices must not repeat", j));
            }
            mu[j - 1] = eta;
        }
        Ok(Self { p, eta, mu })
    }

    /// Probability that the robust feature agrees with the label.
    pub fn p(&self) -> f64 {
        self.p
    }
    /// Feature strength η on the label-carrying set.
    pub fn eta(&self) -> f64 {
        self.eta
    }
    /// Number D of non-robust features (inputs are 1 + D wide).
    pub fn dim(&self) -> usize {
        self.mu.len()
    }
    /// Number d = |T| of label-carrying non-robust features.
    pub fn relevant(&self) -> usize {
        self.mu.iter().filter(|m| **m != 0.0).count()
    }
    /// Mean of y·x_j, j = 1..D (0-based).
    pub fn mu(&self) -> &[f64] {
        &self.mu
    }

    fn check_len(&self, w: &[f64]) -> Result<()> {
        if w.len() != 1 + self.dim() {
            return Err(Error::invalid(
                "w",
                format!("need 1 + D = {} weights (robust first)", 1 + self.dim()),
                w.len(),
            ));
        }
        Ok(())
    }

    /// Sufficient statistics of the effective classifier (w, β) for the closed forms; the mean
    /// term counts only label-carrying coordinates: sum_v = Σ_j (μ_j/η)·v_j.
    pub fn summary(&self, w: &[f64], beta: f64) -> ScoreSummary {
        let (mut sum, mut sq, mut l1) = (0.0, 0.0, w[0].abs());
        for (v, m) in w[1..].iter().zip(&self.mu) {
            sum += m * v;
            sq += v * v;
            l1 += v.abs();
        }
        ScoreSummary {
            a: w[0],
            beta,
            sum_v: sum / self.eta,
            sigma: sq.sqrt(),
            l1,
        }
    }

    /// Exact clean (ε = 0) or robust accuracy of sign(wᵀx + β) against the worst ℓ∞ attack of size ε.
    pub fn accuracy(&self, w: &[f64], beta: f64, eps: f64) -> Result<f64> {
        self.check_len(w)?;
        check::non_negative("eps", eps)?;
        Ok(accuracy(self.p, self.eta, &self.summary(w, beta), eps))
    }

    /// The four (probability, y·x₀, y) cases given which the margin is Gaussian.
    fn cases(&self) -> [(f64, f64, f64); 4] {
        let (p, q) = (0.5 * self.p, 0.5 * (1.0 - self.p));
        [(p, 1.0, 1.0), (q, -1.0, 1.0), (p, 1.0, -1.0), (q, -1.0, -1.0)]
    }

    /// Population logistic loss and its gradient in (w, β), by quadrature (see the module doc).
    pub fn population(&self, gh: &GaussHermite, w: &[f64], beta: f64) -> Result<Gradient> {
        self.check_len(w)?;
        let s = self.summary(w, beta);
        let mean = self.eta * s.sum_v;
        let sigma = s.sigma;
        let (mut loss, mut ga, mut gb, mut e1, mut kappa) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for (pi, yx0, y) in self.cases() {
            let m = yx0 * s.a + mean + y * beta;
            let (mut l, mut d1, mut k) = (0.0, 0.0, 0.0);
            for (x, wt) in gh.iter() {
                let t = m + sigma * x;
                let sig = sigmoid(-t);
                l += wt * softplus(-t);
                d1 -= wt * sig;
                // κ = E[ℓ'(t)ξ]/σ (exact derivative of the quadrature loss); σ → 0 limit E[ℓ''(m)].
                k += if sigma > 1e-12 {
                    -wt * sig * x / sigma
                } else {
                    wt * sig * (1.0 - sig)
                };
            }
            loss += pi * l;
            ga += pi * yx0 * d1;
            gb += pi * y * d1;
            e1 += pi * d1;
            kappa += pi * k;
        }
        let mut gw = Vec::with_capacity(w.len());
        gw.push(ga);
        gw.extend(w[1..].iter().zip(&self.mu).map(|(v, m)| m * e1 + v * kappa));
        Ok(Gradient { loss, w: gw, beta: gb })
    }

    /// Draws one example (y, x) with x = (x₀, x₁..D).
    pub fn sample(&self, rng: &mut impl Rng) -> (f64, Vec<f64>) {
        let y: f64 = if rng.random::<bool>() { 1.0 } else { -1.0 };
        let mut x = Vec::with_capacity(1 + self.dim());
        x.push(if rng.random::<f64>() < self.p { y } else { -y });
        x.extend(self.mu.iter().map(|m| {
            let z: f64 = rng.sample(StandardNormal);
            m * y + z
        }));
        (y, x)
    }
}

/// Loss and gradient with respect to the effective classifier (w, β).
#[derive(Debug, Clone, PartialEq)]
pub struct Gradient {
    /// Loss value.
    pub loss: f64,
    /// ∂L/∂w (robust coordinate first).
    pub w: Vec<f64>,
    /// ∂L/∂β.
    pub beta: f64,
}

/// Logistic loss of one example and its gradient in (w, β): ℓ(t) with t = y(wᵀx + β).
pub fn example_gradient(w: &[f64], beta: f64, y: f64, x: &[f64]) -> Gradient {
    let t = y * (w.iter().zip(x).map(|(a, b)| a * b).sum::<f64>() + beta);
    let d = -sigmoid(-t);
    Gradient {
        loss: softplus(-t),
        w: x.iter().map(|xi| d * y * xi).collect(),
        beta: d * y,
    }
}

/// Mean loss and gradient over `batch` freshly sampled examples (mini-batch SGD).
pub fn sampled_gradient(task: &Task, w: &[f64], beta: f64, batch: usize, rng: &mut impl Rng) -> Result<Gradient> {
    task.check_len(w)?;
    if batch == 0 {
        return Err(Error::invalid("batch", "must be >= 1", 0));
    }
    let mut acc = Gradient {
        loss: 0.0,
        w: vec![0.0; w.len()],
        beta: 0.0,
    };
    for _ in 0..batch {
        let (y, x) = task.sample(rng);
        let g = example_gradient(w, beta, y, &x);
        acc.loss += g.loss;
        acc.beta += g.beta;
        acc.w.iter_mut().zip(&g.w).for_each(|(a, b)| *a += b);
    }
    let n = batch as f64;
    acc.loss /= n;
    acc.beta /= n;
    acc.w.iter_mut().for_each(|a| *a /= n);
    Ok(acc)
}
