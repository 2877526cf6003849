//! APGD-CE (Croce & Hein 2020, "Reliable evaluation of adversarial robustness with an ensemble
//! of diverse parameter-free attacks", ICML, Algorithm 1; the first attack of AutoAttack),
//! following the reference implementation (`autoattack/autopgd_base.py`, ℓ∞, cross-entropy):
//!
//! * start x⁽⁰⁾ = x + ε·t/‖t‖∞ with t ~ U(−1, 1)ⁿ per image, clipped to [0, 1];
//! * per-point step size η = 2ε; z = P(x⁽ᵏ⁾ + η·sign ∇), and momentum
//!   x⁽ᵏ⁺¹⁾ = P(x⁽ᵏ⁾ + a(z − x⁽ᵏ⁾) + (1 − a)(x⁽ᵏ⁾ − x⁽ᵏ⁻¹⁾)), a = 0.75 (1 on the first step);
//! * checkpoints every k iterations, k starting at ⌈0.22·N⌉ and shrinking by ⌈0.03·N⌉ down to
//!   ⌈0.06·N⌉ (the reference uses int(·), clamped to ≥ 1); at a checkpoint a point halves its
//!   step size and restarts from its best-loss iterate if (1) the loss increased in at most
//!   75% of the last k steps, or (2) its step size was not reduced at the previous checkpoint
//!   and its best loss has not improved since;
//! * a point counts as non-robust if *any* iterate is misclassified (AutoAttack's rule).
//!
//! One detail differs on purpose: the reference compares loss_steps[j − k] with
//! loss_steps[j − k − 1], which at the first checkpoint reads index −1 (Python wraps to the
//! last, still-zero row). Here index −1 is the loss at the starting point.

use candle_core::{Result as CResult, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::pgd::assemble;
use super::{AttackOutcome, Classifier, correct, index_tensor, loss_grad, project};

/// APGD hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApgdConfig {
    /// ℓ∞ radius in [0, 1] pixel units.
    pub eps: f64,
    /// Iterations N (AutoAttack's standard version uses 100).
    pub steps: usize,
}

impl Default for ApgdConfig {
    /// ε = 1/255 (the paper's budget), 100 iterations (AutoAttack).
    fn default() -> Self {
        Self {
            eps: 1.0 / 255.0,
            steps: 100,
        }
    }
}

/// Runs APGD-CE on the clean-correct points of `x`; `seed` fixes the start.
pub fn apgd<M: Classifier + ?Sized>(
    model: &M,
    x: &Tensor,
    y: &Tensor,
    cfg: &ApgdConfig,
    seed: u64,
) -> CResult<AttackOutcome> {
    let b = x.dim(0)?;
    let clean_correct = correct(&model.logits(x)?.detach(), y)?;
    let mut forwards = b;
    let ids: Vec<usize> = (0..b).filter(|&i| clean_correct[i]).collect();
    let mut robust = clean_correct.clone();
    let others: Vec<usize> = (0..b).filter(|&i| !clean_correct[i]).collect();
    let mut groups = Vec::new();
    if !others.is_empty() {
        groups.push((others.clone(), x.index_select(&index_tensor(&others, x.device())?, 0)?));
    }
    if ids.is_empty() || cfg.steps == 0 {
        if !ids.is_empty() {
            groups.push((ids.clone(), x.index_select(&index_tensor(&ids, x.device())?, 0)?));
        }
        return Ok(AttackOutcome {
            adv: assemble(b, x, groups)?,
            clean_correct,
            robust,
            image_forwards: forwards,
        });
    }
    let dev = x.device().clone();
    let idx = index_tensor(&ids, &dev)?;
    let xs = x.index_select(&idx, 0)?;
    let ys = y.index_select(&idx, 0)?;
    let n = ids.len();
    let per = xs.elem_count() / n;
    let eps = cfg.eps;

    // Start: x + ε·t/‖t‖∞ per image.
    let mut rng = StdRng::seed_from_u64(seed);
    let mut t: Vec<f32> = (0..n * per).map(|_| rng.random_range(-1.0f32..=1.0)).collect();
    for row in t.chunks_mut(per) {
        let m = row.iter().fold(0f32, |a, v| a.max(v.abs())).max(1e-12);
        row.iter_mut().for_each(|v| *v = *v / m * eps as f32);
    }
    let noise = Tensor::from_vec(t, xs.dims(), &candle_core::Device::Cpu)?
        .to_dtype(xs.dtype())?
        .to_device(&dev)?;
    let mut adv = (&xs + noise)?.clamp(0.0, 1.0)?;

    let (mut grad, logits, loss) = loss_grad(model, &adv, &ys)?;
    forwards += n;
    let mut alive = correct(&logits, &ys)?; // never misclassified so far
    let mut loss_now: Vec<f64> = to_f64(&loss)?;
    let mut best_loss = loss_now.clone();
    let mut x_best = adv.clone();
    let mut grad_best = grad.clone();
    // x_best_adv: the first misclassified iterate of each point (the start if it fails there).
    let mut x_best_adv = adv.clone();

    let steps = cfg.steps;
    let frac = |f: f64| ((f * steps as f64) as usize).max(1);
    let (mut k, size_decr, k_min) = (frac(0.22), frac(0.03), frac(0.06));
    let mut step_size = vec![2.0 * eps; n];
    let mut loss_hist: Vec<Vec<f64>> = vec![loss_now.clone()]; // loss_hist[i + 1] = loss after step i
    let mut counter = 0;
    let mut best_at_last_check = best_loss.clone();
    let mut reduced_last_check = vec![true; n];
    let mut x_old = adv.clone();

    for i in 0..steps {
        let a = if i > 0 { 0.75 } else { 1.0 };
        let eta = Tensor::from_vec(
            step_size.iter().map(|v| *v as f32).collect::<Vec<_>>(),
            n,
            &candle_core::Device::Cpu,
        )?
        .to_dtype(xs.dtype())?
        .to_device(&dev)?
        .reshape(bcast_shape(xs.dims()))?;
        let momentum = (&adv - &x_old)?;
        x_old = adv.clone();
        let z = project(&(&adv + grad.sign()?.broadcast_mul(&eta)?)?, &xs, eps)?;
        adv = project(&((&adv + ((&z - &adv)? * a)?)? + (momentum * (1.0 - a))?)?, &xs, eps)?;

        let (g, logits, loss) = loss_grad(model, &adv, &ys)?;
        forwards += n;
        grad = g;
        let ok = correct(&logits, &ys)?;
        let newly: Vec<usize> = (0..n).filter(|&j| alive[j] && !ok[j]).collect();
        if !newly.is_empty() {
            x_best_adv = replace_rows(&x_best_adv, &adv, &newly)?;
            for &j in &newly {
                alive[j] = false;
            }
        }
        loss_now = to_f64(&loss)?;
        let improved: Vec<usize> = (0..n).filter(|&j| loss_now[j] > best_loss[j]).collect();
        if !improved.is_empty() {
            x_best = replace_rows(&x_best, &adv, &improved)?;
            grad_best = replace_rows(&grad_best, &grad, &improved)?;
            for &j in &improved {
                best_loss[j] = loss_now[j];
            }
        }
        loss_hist.push(loss_now.clone());
        counter += 1;
        if counter == k {
            // (1) oscillation: the loss went up in at most 75% of the last k steps.
            let last = loss_hist.len() - 1;
            let mut reduce = vec![false; n];
            for j in 0..n {
                let ups = (0..k)
                    .filter(|&c| loss_hist[last - c][j] > loss_hist[last - c - 1][j])
                    .count();
                let osc = ups as f64 <= k as f64 * 0.75;
                // (2) not reduced last time and no improvement of the best loss since.
                let stalled = !reduced_last_check[j] && best_at_last_check[j] >= best_loss[j];
                reduce[j] = osc || stalled;
            }
            reduced_last_check = reduce.clone();
            best_at_last_check = best_loss.clone();
            let rows: Vec<usize> = (0..n).filter(|&j| reduce[j]).collect();
            if !rows.is_empty() {
                for &j in &rows {
                    step_size[j] /= 2.0;
                }
                adv = replace_rows(&adv, &x_best, &rows)?;
                grad = replace_rows(&grad, &grad_best, &rows)?;
            }
            k = k.saturating_sub(size_decr).max(k_min);
            counter = 0;
        }
    }
    // Points never misclassified keep their best-loss iterate as the adversarial image.
    let alive_rows: Vec<usize> = (0..n).filter(|&j| alive[j]).collect();
    let final_adv = if alive_rows.is_empty() {
        x_best_adv
    } else {
        replace_rows(&x_best_adv, &x_best, &alive_rows)?
    };
    for (j, &i) in ids.iter().enumerate() {
        robust[i] = alive[j];
    }
    groups.push((ids, final_adv));
    Ok(AttackOutcome {
        adv: assemble(b, x, groups)?,
        clean_correct,
        robust,
        image_forwards: forwards,
    })
}

fn bcast_shape(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![1; dims.len()];
    s[0] = dims[0];
    s
}

fn to_f64(t: &Tensor) -> CResult<Vec<f64>> {
    t.to_dtype(candle_core::DType::F64)?.to_vec1()
}

/// `dst` with rows `rows` replaced by the same rows of `src`.
fn replace_rows(dst: &Tensor, src: &Tensor, rows: &[usize]) -> CResult<Tensor> {
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
