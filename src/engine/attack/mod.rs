//! ℓ∞ attacks in [0, 1] pixel space: PGD (Madry et al. 2018, as torchattacks implements it, the
//! paper's evaluation), APGD with the CE, DLR and targeted-DLR losses (Croce & Hein 2020), FAB-T
//! (Croce & Hein 2020, "Minimally distorted adversarial examples with a fast adaptive boundary
//! attack"), the Square Attack (Andriushchenko et al. 2020) and AutoAttack's ensemble of them.
//!
//! Every attack attacks only the points the model classifies correctly (the others count as
//! non-robust anyway) and reports per-point robustness.

pub mod apgd;
pub mod autoattack;
pub mod fab;
pub mod pgd;
pub mod square;

use candle_core::{D, DType, Device, Result as CResult, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub use apgd::{ApgdConfig, ApgdLoss, apgd};
pub use autoattack::{AutoAttackConfig, EnsembleOutcome, autoattack, autoattack_split};
pub use fab::{FabConfig, fab_t};
pub use pgd::{PgdConfig, StopRule, ascend_all, pgd, pgd_data_parallel};
pub use square::{SquareConfig, square};

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

/// Σ_j p_ij (log p_ij − log softmax(z)_ij) per row: KL(p_i ‖ softmax(z_i)), differentiable in
/// `logits` (and in `p` when it is tracked); 0·log 0 = 0.
pub fn kl_per_point(p: &Tensor, logits: &Tensor) -> CResult<Tensor> {
    let log_q = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    let log_p = p.clamp(1e-30, 1.0)?.log()?;
    (p * (log_p - log_q)?)?.sum(D::Minus1)
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

/// The per-point loss an attack ascends.
#[derive(Debug, Clone, Copy)]
pub enum Objective<'a> {
    /// Cross-entropy (PGD, APGD-CE).
    Ce,
    /// The difference-of-logits ratio, untargeted (Croce & Hein 2020, eq. 6):
    /// −(z_y − max_{i≠y} z_i) / (z_π1 − z_π3 + 10⁻¹²), π the classes by decreasing logit.
    Dlr,
    /// The targeted DLR towards class t of each point (Croce & Hein 2020, eq. 7):
    /// −(z_y − z_t) / (z_π1 − (z_π3 + z_π4)/2 + 10⁻¹²).
    DlrTargeted(&'a [u32]),
    /// The logit margin towards class t of each point, z_t − z_y (FAB-T's linearised boundary).
    Margin(&'a [u32]),
    /// KL(p ‖ softmax(z)) from fixed probabilities p `[B, classes]` (TRADES' inner maximisation,
    /// p the clean prediction; the labels are not used).
    KlFrom(&'a Tensor),
}

/// Per point, the class at rank `r` (0 = highest logit) of each row of `sorted` (class indices
/// by decreasing logit).
fn ranked(sorted: &[Vec<u32>], r: usize) -> Vec<u32> {
    sorted.iter().map(|row| row[r]).collect()
}

/// `logits[i, cls[i]]` for every row, differentiable in the logits.
fn pick(logits: &Tensor, cls: &[u32]) -> CResult<Tensor> {
    let idx = Tensor::from_vec(cls.to_vec(), (cls.len(), 1), logits.device())?;
    logits.gather(&idx, 1)?.squeeze(1)
}

impl Objective<'_> {
    /// The classes an objective needs at least (DLR reads the third logit, targeted DLR the
    /// fourth).
    pub fn min_classes(&self) -> usize {
        match self {
            Objective::Ce | Objective::Margin(_) | Objective::KlFrom(_) => 2,
            Objective::Dlr => 3,
            Objective::DlrTargeted(_) => 4,
        }
    }

    /// The per-point loss `[B]` of `logits` against labels `y`.
    pub fn per_point(&self, logits: &Tensor, y: &Tensor) -> CResult<Tensor> {
        match self {
            Objective::Ce => return per_point_ce(logits, y),
            Objective::Margin(t) => return pick(logits, t)? - pick(logits, &y.to_vec1::<u32>()?)?,
            Objective::KlFrom(p) => return kl_per_point(p, logits),
            _ => {}
        }
        let classes = logits.dim(1)?;
        if classes < self.min_classes() {
            candle_core::bail!(
                "the DLR loss needs at least {} classes, the model has {classes}",
                self.min_classes()
            );
        }
        let sorted: Vec<Vec<u32>> = logits.detach().arg_sort_last_dim(false)?.to_vec2()?;
        let labels: Vec<u32> = y.to_vec1()?;
        let z_y = pick(logits, &labels)?;
        let top = pick(logits, &ranked(&sorted, 0))?;
        let third = pick(logits, &ranked(&sorted, 2))?;
        match self {
            Objective::Dlr => {
                // The best other class: π2 where the label leads, else π1.
                let other: Vec<u32> = sorted
                    .iter()
                    .zip(&labels)
                    .map(|(row, &l)| if row[0] == l { row[1] } else { row[0] })
                    .collect();
                let num = (z_y - pick(logits, &other)?)?;
                let den = ((top - third)? + 1e-12)?;
                num.div(&den)?.neg()
            }
            Objective::DlrTargeted(t) => {
                let fourth = pick(logits, &ranked(&sorted, 3))?;
                let num = (z_y - pick(logits, t)?)?;
                let den = ((top - ((third + fourth)? * 0.5)?)? + 1e-12)?;
                num.div(&den)?.neg()
            }
            Objective::Ce | Objective::Margin(_) | Objective::KlFrom(_) => unreachable!("handled above"),
        }
    }
}

/// ∂(Σ per-point loss)/∂x, the logits and the per-point loss, at `x`.
pub(crate) fn loss_grad<M: Classifier + ?Sized>(
    model: &M,
    x: &Tensor,
    y: &Tensor,
    objective: &Objective,
) -> CResult<(Tensor, Tensor, Tensor)> {
    let v = candle_core::Var::from_tensor(x)?;
    let logits = model.logits(v.as_tensor())?;
    let loss = objective.per_point(&logits, y)?;
    let grads = loss.sum_all()?.backward()?;
    let g = grads
        .get(v.as_tensor())
        .cloned()
        .ok_or_else(|| candle_core::Error::Msg("the model gives no gradient with respect to its input".into()))?;
    Ok((g, logits.detach(), loss.detach()))
}

/// `[n, 1, …]` for a tensor of shape `dims`: per-point values broadcast over each point.
pub(crate) fn bcast_shape(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![1; dims.len()];
    s[0] = dims[0];
    s
}

/// `dst` with rows `rows` replaced by the same rows of `src`.
pub(crate) fn replace_rows(dst: &Tensor, src: &Tensor, rows: &[usize]) -> CResult<Tensor> {
    let n = dst.dim(0)?;
    let mut mask = vec![0f32; n];
    for &r in rows {
        mask[r] = 1.0;
    }
    let m = Tensor::from_vec(mask, n, &candle_core::Device::Cpu)?
        .to_dtype(dst.dtype())?
        .to_device(dst.device())?
        .reshape(bcast_shape(dst.dims()))?;
    let keep = (1.0 - &m)?;
    dst.broadcast_mul(&keep)? + src.broadcast_mul(&m)?
}

/// `dst` with row `ids[j]` replaced by row j of `rows` (exactly: masked, never added).
pub(crate) fn scatter_rows(dst: &Tensor, ids: &[usize], rows: &Tensor) -> CResult<Tensor> {
    let full = dst
        .zeros_like()?
        .index_add(&index_tensor(ids, dst.device())?, rows, 0)?;
    replace_rows(dst, &full, ids)
}

/// Runs `f(x_part, y_part, seed_part)` on `parts` contiguous slices of the batch, each on its own
/// thread (`engine::data_parallel`), part k with seed `seed` (k = 0) or `seed ^ k·φ64`, and returns
/// the parts' results in order. Attacks treat points independently, so this is the same attack on
/// the same points with other random draws; the split is fixed per device (`batch_parts`), so a
/// seed still fixes the outcome.
pub fn split<T: Send>(
    x: &Tensor,
    y: &Tensor,
    parts: usize,
    seed: u64,
    f: impl Fn(&Tensor, &Tensor, u64) -> CResult<T> + Sync,
) -> CResult<Vec<T>> {
    let b = x.dim(0)?;
    let per = b.div_ceil(parts.clamp(1, b.max(1)));
    crate::engine::data_parallel(b, parts, |start, len| {
        let k = (start / per.max(1)) as u64;
        let s = if k == 0 {
            seed
        } else {
            seed ^ k.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        };
        f(&x.narrow(0, start, len)?, &y.narrow(0, start, len)?, s)
    })
}

/// The outcomes of consecutive slices of a batch as one.
pub fn join(outs: Vec<AttackOutcome>) -> CResult<AttackOutcome> {
    if outs.len() == 1 {
        return Ok(outs.into_iter().next().expect("one"));
    }
    let mut advs = Vec::new();
    let (mut clean_correct, mut robust, mut image_forwards) = (Vec::new(), Vec::new(), 0);
    for o in outs {
        advs.push(o.adv);
        clean_correct.extend(o.clean_correct);
        robust.extend(o.robust);
        image_forwards += o.image_forwards;
    }
    Ok(AttackOutcome {
        adv: Tensor::cat(&advs, 0)?,
        clean_correct,
        robust,
        image_forwards,
    })
}

/// What one stage of a [`cascade`] returns for the points it attacked: per point (row j for
/// point j) its adversarial image, whether it is still robust, and the image forwards spent.
pub(crate) type Stage = (Tensor, Vec<bool>, usize);

/// The result of a [`cascade`].
pub(crate) struct Cascade {
    /// The images: each attacked point's (see `keep_latest`), the input elsewhere.
    pub adv: Tensor,
    /// Per point: robust after every stage.
    pub robust: Vec<bool>,
    /// Per point: the stage that broke it (`None`: robust after every stage, or never attacked).
    pub broken_by: Vec<Option<u8>>,
    /// Image forwards spent by the stages.
    pub forwards: usize,
}

impl Cascade {
    /// The attack's outcome: `clean_correct` as measured before the stages, which spent
    /// `clean_forwards` image forwards themselves.
    pub(crate) fn outcome(self, clean_correct: Vec<bool>, clean_forwards: usize) -> AttackOutcome {
        AttackOutcome {
            adv: self.adv,
            clean_correct,
            robust: self.robust,
            image_forwards: clean_forwards + self.forwards,
        }
    }
}

/// Runs `stages` attacks in order on the batch (`x`, `y`), stage k only on the points that are
/// `robust` after the stages before it (`stage(k, ids, xs, ys)`, `ids` their rows in the batch),
/// as AutoAttack runs its members and APGD-T / FAB-T their target classes; stops early when no
/// point is left. A broken point keeps the image that broke it; with `keep_latest` a point still
/// robust keeps the image of the last stage that attacked it (APGD's best-loss iterate), else the
/// input.
pub(crate) fn cascade(
    x: &Tensor,
    y: &Tensor,
    mut robust: Vec<bool>,
    stages: usize,
    keep_latest: bool,
    mut stage: impl FnMut(usize, &[usize], &Tensor, &Tensor) -> CResult<Stage>,
) -> CResult<Cascade> {
    let mut adv = x.clone();
    let mut forwards = 0;
    let mut broken_by = vec![None; robust.len()];
    for k in 0..stages {
        let ids: Vec<usize> = (0..robust.len()).filter(|&i| robust[i]).collect();
        if ids.is_empty() {
            break;
        }
        let idx = index_tensor(&ids, x.device())?;
        let (xs, ys) = (x.index_select(&idx, 0)?, y.index_select(&idx, 0)?);
        let (rows, alive, f) = stage(k, &ids, &xs, &ys)?;
        forwards += f;
        let hit: Vec<usize> = (0..ids.len()).filter(|&j| !alive[j]).collect();
        for &j in &hit {
            robust[ids[j]] = false;
            broken_by[ids[j]] = Some(k as u8);
        }
        if keep_latest {
            adv = scatter_rows(&adv, &ids, &rows)?;
        } else if !hit.is_empty() {
            let rows = rows.index_select(&index_tensor(&hit, x.device())?, 0)?;
            adv = scatter_rows(&adv, &hit.iter().map(|&j| ids[j]).collect::<Vec<_>>(), &rows)?;
        }
    }
    Ok(Cascade {
        adv,
        robust,
        broken_by,
        forwards,
    })
}
