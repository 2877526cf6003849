//! Square Attack, ℓ∞ (Andriushchenko et al. 2020, "Square Attack: a query-efficient black-box
//! adversarial attack via random search", ECCV, Algorithm 1 with the ℓ∞ sampling of §3.1), the
//! score-based member of AutoAttack, following its reference implementation
//! (`autoattack/square.py`, `attack_single_run`, norm `Linf`, loss `margin`):
//!
//! * start: vertical stripes, x⁽⁰⁾ = clip₀₁(x + ε·s) with one sign s ∈ {−1, 1} per point,
//!   channel and column;
//! * iteration i: a square of side s = max(round(√(p·h·w)), 1) at a random position (top-left
//!   corner uniform in 0 … h − s − 1, the reference's `random_int(0, h − s)`, the same for every
//!   point of the batch) gets the perturbation ±2ε per channel (one sign per channel, shared by
//!   the batch), then projected back onto the ε-ball and [0, 1];
//!   (The exclusive upper bound is the reference's: the last row and column are never a corner,
//!   so a 1-pixel square never lands there — visible on tiny images, negligible at 224 px.)
//! * p follows the reference's piecewise-constant schedule in the iteration number (p_init, then
//!   halved after 10, 50, 200, 500, 1000, 2000, 4000, 6000 and 8000 iterations; AutoAttack
//!   runs it unrescaled with p_init = 0.8 and 5,000 queries);
//! * a candidate replaces a point's current image when its margin z_y − max_{i≠y} z_i is lower,
//!   or when it is misclassified; a point leaves the attack once misclassified (argmax ≠ y).
//!
//! It uses logits only (no gradient): it cannot be fooled by masked gradients, which is why
//! AutoAttack includes it.

use candle_core::{DType, Result as CResult, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{AttackOutcome, Classifier, correct, index_tensor, scatter_rows};

/// Square Attack hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SquareConfig {
    /// ℓ∞ radius in [0, 1] pixel units.
    pub eps: f64,
    /// Query budget per point after the start (AutoAttack's standard version: 5,000).
    pub queries: usize,
    /// Initial fraction of pixels changed per iteration (AutoAttack: 0.8).
    pub p_init: f64,
}

impl Default for SquareConfig {
    /// ε = 1/255, 5,000 queries, p_init = 0.8 (AutoAttack's standard version).
    fn default() -> Self {
        Self {
            eps: 1.0 / 255.0,
            queries: 5000,
            p_init: 0.8,
        }
    }
}

/// The fraction of pixels changed at iteration `it` (the reference's `p_selection`).
pub fn p_at(p_init: f64, it: usize) -> f64 {
    let halvings = [10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000]
        .iter()
        .filter(|&&t| it > t)
        .count();
    p_init / f64::from(1u32 << halvings)
}

/// Per point, the margin z_y − max_{i≠y} z_i of `logits` and whether argmax = y.
fn margins(logits: &Tensor, y: &[u32]) -> CResult<(Vec<f64>, Vec<bool>)> {
    let z: Vec<Vec<f64>> = logits.to_dtype(DType::F64)?.to_vec2()?;
    let m = z
        .iter()
        .zip(y)
        .map(|(row, &l)| {
            let other = row
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != l as usize)
                .fold(f64::NEG_INFINITY, |a, (_, v)| a.max(*v));
            row[l as usize] - other
        })
        .collect();
    let yt = Tensor::from_vec(y.to_vec(), y.len(), logits.device())?;
    Ok((m, correct(logits, &yt)?))
}

/// ±1 with probability ½ each, `n` of them, as f32.
fn signs(rng: &mut StdRng, n: usize) -> Vec<f32> {
    (0..n).map(|_| if rng.random_bool(0.5) { 1.0 } else { -1.0 }).collect()
}

/// The perturbation of one iteration, `[c, h, w]` flattened: a square of side
/// max(round(√(p·h·w)), 1) at a random corner (row, then column), ±2ε per channel (one sign per
/// channel, drawn after the corner), 0 elsewhere.
fn square_delta(rng: &mut StdRng, p: f64, (c, h, w): (usize, usize, usize), eps: f64) -> Vec<f32> {
    let s = ((p * (h * w) as f64).sqrt().round() as usize).clamp(1, h.min(w));
    let corner = |rng: &mut StdRng, side: usize| if side > s { rng.random_range(0..side - s) } else { 0 };
    let (vh, vw) = (corner(rng, h), corner(rng, w));
    let sign = signs(rng, c);
    let mut delta = vec![0f32; c * h * w];
    for (ch, sg) in sign.iter().enumerate() {
        for r in vh..vh + s {
            let row = ch * h * w + r * w;
            delta[row + vw..row + vw + s].fill(2.0 * eps as f32 * sg);
        }
    }
    delta
}

/// Runs the Square Attack on the clean-correct points of `x`; `seed` fixes every random draw.
pub fn square<M: Classifier + ?Sized>(
    model: &M,
    x: &Tensor,
    y: &Tensor,
    cfg: &SquareConfig,
    seed: u64,
) -> CResult<AttackOutcome> {
    let b = x.dim(0)?;
    let clean_correct = correct(&model.logits(x)?, y)?;
    let mut forwards = b;
    let ids: Vec<usize> = (0..b).filter(|&i| clean_correct[i]).collect();
    let mut robust = clean_correct.clone();
    if ids.is_empty() || cfg.queries == 0 {
        return Ok(AttackOutcome {
            adv: x.clone(),
            clean_correct,
            robust,
            image_forwards: forwards,
        });
    }
    let (dev, dtype) = (x.device().clone(), x.dtype());
    let idx = index_tensor(&ids, &dev)?;
    let (xs, labels) = (x.index_select(&idx, 0)?, y.index_select(&idx, 0)?.to_vec1::<u32>()?);
    let (n, c, h, w) = xs.dims4()?;
    let eps = cfg.eps;
    let mut rng = StdRng::seed_from_u64(seed);
    let to_t = |v: Vec<f32>, shape: &[usize]| -> CResult<Tensor> {
        Tensor::from_vec(v, shape, &candle_core::Device::Cpu)?
            .to_dtype(dtype)?
            .to_device(&dev)
    };
    let stripes = to_t(signs(&mut rng, n * c * w), &[n, c, 1, w])?;
    let mut best = (&xs + stripes.broadcast_as(xs.dims())?.affine(eps, 0.0)?)?.clamp(0.0, 1.0)?;
    let (mut margin, mut alive) = margins(&model.logits(&best)?, &labels)?;
    forwards += n;
    for it in 0..cfg.queries {
        let live: Vec<usize> = (0..n).filter(|&j| alive[j]).collect();
        if live.is_empty() {
            break;
        }
        let delta = to_t(
            square_delta(&mut rng, p_at(cfg.p_init, it), (c, h, w), eps),
            &[1, c, h, w],
        )?;
        let lidx = index_tensor(&live, &dev)?;
        let (x_cur, b_cur) = (xs.index_select(&lidx, 0)?, best.index_select(&lidx, 0)?);
        let lo = (&x_cur - eps)?;
        let hi = (&x_cur + eps)?;
        let cand = b_cur
            .broadcast_add(&delta)?
            .maximum(&lo)?
            .minimum(&hi)?
            .clamp(0.0, 1.0)?;
        let ys: Vec<u32> = live.iter().map(|&j| labels[j]).collect();
        let (m_new, ok_new) = margins(&model.logits(&cand)?, &ys)?;
        forwards += live.len();
        let take: Vec<usize> = (0..live.len())
            .filter(|&k| m_new[k] < margin[live[k]] || !ok_new[k])
            .collect();
        if take.is_empty() {
            continue;
        }
        let rows = cand.index_select(&index_tensor(&take, &dev)?, 0)?;
        let at: Vec<usize> = take.iter().map(|&k| live[k]).collect();
        best = scatter_rows(&best, &at, &rows)?;
        for &k in &take {
            margin[live[k]] = m_new[k];
            alive[live[k]] = ok_new[k];
        }
    }
    for (j, &i) in ids.iter().enumerate() {
        robust[i] = alive[j];
    }
    Ok(AttackOutcome {
        adv: scatter_rows(x, &ids, &best)?,
        clean_correct,
        robust,
        image_forwards: forwards,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference's schedule at its thresholds: p_init up to 10, halved after each of 10, 50,
    /// 200, … 8000.
    #[test]
    fn p_schedule_matches_the_reference() {
        for (it, want) in [
            (0, 0.8),
            (10, 0.8),
            (11, 0.4),
            (50, 0.4),
            (51, 0.2),
            (201, 0.1),
            (501, 0.05),
            (1001, 0.025),
            (2001, 0.0125),
            (4001, 0.00625),
            (6001, 0.003125),
            (8001, 0.0015625),
            (100_000, 0.0015625),
        ] {
            assert_eq!(p_at(0.8, it), want, "it {it}");
        }
    }
}
