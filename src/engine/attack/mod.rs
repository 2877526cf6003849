//! ℓ∞ attacks in [0, 1] pixel space: PGD (Madry et al. 2018, as torchattacks implements it, the
//! paper's evaluation) and APGD-CE (Croce & Hein 2020, the first attack of AutoAttack).
//!
//! Both attack only the points the model classifies correctly (the others count as non-robust
//! anyway) and report per-point robustness.

pub mod apgd;
pub mod pgd;

use candle_core::{D, DType, Device, Result as CResult, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub use apgd::{ApgdConfig, apgd};
pub use pgd::{PgdConfig, StopRule, pgd, pgd_data_parallel};

/// Anything that maps images [B, C, H, W] in [0, 1] to logits [B, classes].
pub trait Classifier {
    /// Logits.
    fn logits(&self, x: &Tensor) -> CResult<Tensor>;
}

impl Classifier for crate::engine::Vit {
    fn logits(&self, x: &Tensor) -> CResult<Tensor> {
        self.forward(x)
    }
}

/// What an attack returns.
#[derive(Debug, Clone)]
pub struct AttackOutcome {
    /// The adversarial images (the input itself for points that were not attacked).
    pub adv: Tensor,
    /// Per point: classified correctly without attack.
    pub clean_correct: Vec<bool>,
    /// Per point: still classified correctly under attack.
    pub robust: Vec<bool>,
    /// Forward passes spent (summed over points, in units of one image).
    pub image_forwards: usize,
}

impl AttackOutcome {
    /// Share of points classified correctly without attack.
    pub fn clean_accuracy(&self) -> f64 {
        share(&self.clean_correct)
    }
    /// Share of points still correct under attack.
    pub fn robust_accuracy(&self) -> f64 {
        share(&self.robust)
    }
}

fn share(v: &[bool]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().filter(|b| **b).count() as f64 / v.len() as f64
    }
}

/// Per-point cross-entropy `[B]` of logits against u32 labels.
pub fn per_point_ce(logits: &Tensor, y: &Tensor) -> CResult<Tensor> {
    let ls = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    ls.gather(&y.unsqueeze(1)?, 1)?.squeeze(1)?.neg()
}

/// Per-point correctness of logits.
pub fn correct(logits: &Tensor, y: &Tensor) -> CResult<Vec<bool>> {
    let pred: Vec<u32> = logits.argmax(D::Minus1)?.to_vec1()?;
    let y: Vec<u32> = y.to_vec1()?;
    Ok(pred.iter().zip(&y).map(|(a, b)| a == b).collect())
}

/// Uniform noise in [−eps, eps] of `shape`, seeded (candle's CPU RNG cannot be seeded).
pub fn uniform_noise(shape: &[usize], eps: f64, seed: u64, dtype: DType, device: &Device) -> CResult<Tensor> {
    let n: usize = shape.iter().product();
    let mut rng = StdRng::seed_from_u64(seed);
    let v: Vec<f32> = (0..n).map(|_| rng.random_range(-eps..=eps) as f32).collect();
    Tensor::from_vec(v, shape, &Device::Cpu)?
        .to_dtype(dtype)?
        .to_device(device)
}

/// Projection onto the ε-ball around x intersected with [0, 1].
pub fn project(adv: &Tensor, x: &Tensor, eps: f64) -> CResult<Tensor> {
    let delta = (adv - x)?.clamp(-eps, eps)?;
    (x + delta)?.clamp(0.0, 1.0)
}

/// Indices as a u32 tensor.
pub(crate) fn index_tensor(ids: &[usize], device: &Device) -> CResult<Tensor> {
    Tensor::from_vec(ids.iter().map(|&i| i as u32).collect::<Vec<_>>(), ids.len(), device)
}

/// ∂(Σ per-point loss)/∂x and the logits, at `x`.
pub(crate) fn loss_grad<M: Classifier + ?Sized>(
    model: &M,
    x: &Tensor,
    y: &Tensor,
) -> CResult<(Tensor, Tensor, Tensor)> {
    let v = candle_core::Var::from_tensor(x)?;
    let logits = model.logits(v.as_tensor())?;
    let loss = per_point_ce(&logits, y)?;
    let grads = loss.sum_all()?.backward()?;
    let g = grads
        .get(v.as_tensor())
        .cloned()
        .ok_or_else(|| candle_core::Error::Msg("the model gives no gradient with respect to its input".into()))?;
    Ok((g, logits.detach(), loss.detach()))
}
