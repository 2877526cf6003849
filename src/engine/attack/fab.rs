//! FAB-T, ℓ∞ (Croce & Hein 2020, "Minimally distorted adversarial examples with a fast adaptive
//! boundary attack", ICML, Algorithm 1 with the targeted boundary of §3.3; AutoAttack's third
//! member), following the reference implementation (`autoattack/fab_base.py`,
//! `fab_projections.py::projection_linf`) as AutoAttack's standard version runs it: one restart
//! (no random start, so no randomness at all), 100 iterations, α_max = 0.1, η = 1.05, β = 0.9,
//! one run per target class — the classes ranked 2nd … 10th by the clean logits — each on the
//! points no earlier target broke.
//!
//! One iteration at x⁽ᵏ⁾ (x⁽⁰⁾ = x, the clean point), towards target t of a point with label y:
//! * linearise the boundary: f = z_t − z_y, g = ∇ₓf, hyperplane {z : gᵀz = gᵀx⁽ᵏ⁾ − f};
//! * δ₁, δ₂ = the smallest ℓ∞ steps from x⁽ᵏ⁾ and from x onto it inside [0, 1]ⁿ
//!   ([`project_linf`], the paper's eq. 8 by bisection over the sorted coordinates);
//! * α = min(‖δ₁‖∞ / (‖δ₁‖∞ + ‖δ₂‖∞), α_max) (both norms at least 10⁻⁸);
//!   x⁽ᵏ⁺¹⁾ = clip₀¹((1 − α)(x⁽ᵏ⁾ + η δ₁) + α(x + η δ₂)) — the overshoot η crosses the boundary;
//! * if x⁽ᵏ⁺¹⁾ is misclassified (any class but y), it is kept when closer to x (ℓ∞) than the best
//!   so far, and the iterate steps back: x⁽ᵏ⁺¹⁾ ← x + β(x⁽ᵏ⁺¹⁾ − x).
//!
//! A point counts as broken when its closest misclassified iterate lies within ε (the reference's
//! `res > eps` test, in f32) and is misclassified again when re-checked. FAB minimises the
//! distance; to score robustness at a fixed ε a point is dropped as soon as it has such an iterate
//! (the reference keeps minimising it, which cannot change whether it is ≤ ε) — the early exit
//! every attack here uses. The images returned are projected onto the ε-ball (a no-op up to
//! rounding); points not broken keep the clean image, as the reference returns them.

use candle_core::{DType, Result as CResult, Tensor};

use super::{AttackOutcome, Classifier, Objective, cascade, correct, loss_grad, project};

/// FAB-T's settings (defaults: AutoAttack's standard version).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FabConfig {
    /// ℓ∞ radius in [0, 1] pixel units: a point is broken by an iterate within it.
    pub eps: f64,
    /// Iterations per target class: 100.
    pub steps: usize,
    /// Target classes: 9 (fewer with fewer classes: every class but the top one at most).
    pub targets: usize,
    /// The largest weight of the step from the clean point: 0.1.
    pub alpha_max: f64,
    /// Overshoot of each projection: 1.05.
    pub eta: f64,
    /// The step back towards the clean point after a success: 0.9.
    pub beta: f64,
}

impl Default for FabConfig {
    fn default() -> Self {
        Self {
            eps: 1.0 / 255.0,
            steps: 100,
            targets: 9,
            alpha_max: 0.1,
            eta: 1.05,
            beta: 0.9,
        }
    }
}

impl FabConfig {
    /// The target classes tried for a model with `classes` outputs: `targets`, at most
    /// `classes − 1`.
    pub fn runs(&self, classes: usize) -> usize {
        self.targets.min(classes.saturating_sub(1))
    }
}

/// Runs FAB-T on the clean-correct points of `x` (labels `y`), one run per target class, the
/// target of a point in run r being the class ranked r + 1 by its clean logits. FAB-T draws
/// nothing at random; `_seed` keeps the signature of the other attacks.
pub fn fab_t<M: Classifier + ?Sized>(
    model: &M,
    x: &Tensor,
    y: &Tensor,
    cfg: &FabConfig,
    _seed: u64,
) -> CResult<AttackOutcome> {
    let b = x.dim(0)?;
    let clean_logits = model.logits(x)?.detach();
    let clean_correct = correct(&clean_logits, y)?;
    let runs = if cfg.steps == 0 {
        0
    } else {
        cfg.runs(clean_logits.dim(1)?)
    };
    let ranked: Vec<Vec<u32>> = clean_logits.arg_sort_last_dim(false)?.to_vec2()?;
    let done = cascade(x, y, clean_correct.clone(), runs, false, |run, ids, xs, ys| {
        let targets: Vec<u32> = ids.iter().map(|&i| ranked[i][run + 1]).collect();
        attack_points(model, xs, ys, &targets, cfg)
    })?;
    Ok(done.outcome(clean_correct, b))
}

/// One target run on the n clean-correct points `xs` (labels `ys`, targets `targets`): up to
/// `cfg.steps` iterations, each point until it has a misclassified iterate within ε. Returns the
/// images (the closest misclassified iterate, projected onto the ε-ball, for broken points; the
/// clean image otherwise), whether each point is still robust, and the image forwards spent.
fn attack_points<M: Classifier + ?Sized>(
    model: &M,
    xs: &Tensor,
    ys: &Tensor,
    targets: &[u32],
    cfg: &FabConfig,
) -> CResult<(Tensor, Vec<bool>, usize)> {
    let n = xs.dim(0)?;
    let (dtype, device) = (xs.dtype(), xs.device());
    let clean: Vec<Vec<f32>> = xs.flatten_from(1)?.to_dtype(DType::F32)?.to_vec2()?;
    let labels: Vec<u32> = ys.to_vec1()?;
    let rows_tensor = |rows: &[&Vec<f32>]| -> CResult<Tensor> {
        let flat: Vec<f32> = rows.iter().flat_map(|r| r.iter().copied()).collect();
        let mut dims = xs.dims().to_vec();
        dims[0] = rows.len();
        Tensor::from_vec(flat, dims, &candle_core::Device::Cpu)?
            .to_dtype(dtype)?
            .to_device(device)
    };
    let mut x1 = clean.clone();
    let mut best = clean.clone();
    let mut dist = vec![f32::INFINITY; n];
    let eps = cfg.eps as f32;
    let mut active: Vec<usize> = (0..n).collect();
    let mut forwards = 0;
    for _ in 0..cfg.steps {
        if active.is_empty() {
            break;
        }
        let xa = rows_tensor(&active.iter().map(|&j| &x1[j]).collect::<Vec<_>>())?;
        let ya: Vec<u32> = active.iter().map(|&j| labels[j]).collect();
        let ta: Vec<u32> = active.iter().map(|&j| targets[j]).collect();
        let ya_t = Tensor::from_vec(ya.clone(), ya.len(), device)?;
        let (g, _, f) = loss_grad(model, &xa, &ya_t, &Objective::Margin(&ta))?;
        forwards += active.len();
        let g: Vec<Vec<f32>> = g.flatten_from(1)?.to_dtype(DType::F32)?.to_vec2()?;
        let f: Vec<f32> = f.to_dtype(DType::F32)?.to_vec1()?;
        for (k, &j) in active.iter().enumerate() {
            x1[j] = fab_step(&x1[j], &clean[j], &g[k], f[k], cfg);
        }
        let xa = rows_tensor(&active.iter().map(|&j| &x1[j]).collect::<Vec<_>>())?;
        let ok = correct(&model.logits(&xa)?, &ya_t)?;
        forwards += active.len();
        for (k, &j) in active.iter().enumerate() {
            if ok[k] {
                continue;
            }
            let d = linf(&x1[j], &clean[j]);
            if d < dist[j] {
                dist[j] = d;
                best[j].clone_from(&x1[j]);
            }
            let beta = cfg.beta as f32;
            for (v, c) in x1[j].iter_mut().zip(&clean[j]) {
                *v = c + (*v - c) * beta;
            }
        }
        active.retain(|&j| dist[j] > eps);
    }
    // Re-check the broken points on their (projected) images, as the reference does.
    let found: Vec<usize> = (0..n).filter(|&j| dist[j] <= eps).collect();
    let mut alive = vec![true; n];
    let adv = if found.is_empty() {
        xs.clone()
    } else {
        let rows = rows_tensor(&(0..n).map(|j| &best[j]).collect::<Vec<_>>())?;
        let rows = project(&rows, xs, cfg.eps)?;
        let idx = super::index_tensor(&found, device)?;
        let ok = correct(&model.logits(&rows.index_select(&idx, 0)?)?, &ys.index_select(&idx, 0)?)?;
        forwards += found.len();
        for (k, &j) in found.iter().enumerate() {
            alive[j] = ok[k];
        }
        let broken: Vec<usize> = (0..n).filter(|&j| !alive[j]).collect();
        super::replace_rows(xs, &rows, &broken)?
    };
    Ok((adv, alive, forwards))
}

/// ‖a − b‖∞.
fn linf(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).fold(0f32, |m, (u, v)| m.max((u - v).abs()))
}

/// One FAB iteration of a point at `x1` (clean point `x0`) with boundary value `f` = z_t − z_y
/// and its gradient `g`: the projections onto the linearised boundary from both points, their
/// convex combination with overshoot, clipped to [0, 1].
fn fab_step(x1: &[f32], x0: &[f32], g: &[f32], f: f32, cfg: &FabConfig) -> Vec<f32> {
    // gᵀz = gᵀx⁽ᵏ⁾ − f: the reference's b = −df + gᵀx1.
    let b = -(f as f64) + dot(g, x1);
    let d1 = project_linf(x1, g, b);
    let d2 = project_linf(x0, g, b);
    let a1 = linf_norm(&d1).max(1e-8);
    let a2 = linf_norm(&d2).max(1e-8);
    let alpha = (a1 / (a1 + a2)).clamp(0.0, cfg.alpha_max as f32);
    let eta = cfg.eta as f32;
    (0..x1.len())
        .map(|i| ((x1[i] + eta * d1[i]) * (1.0 - alpha) + (x0[i] + d2[i] * eta) * alpha).clamp(0.0, 1.0))
        .collect()
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(u, v)| *u as f64 * *v as f64).sum()
}

fn linf_norm(d: &[f32]) -> f32 {
    d.iter().fold(0f32, |m, v| m.max(v.abs()))
}

/// The smallest step d in ℓ∞ that puts `t + d` on the hyperplane wᵀz = b inside the box
/// [0, 1]ⁿ (Croce & Hein 2020, FAB, eq. 8; `fab_projections.py::projection_linf`); when the box
/// does not reach the hyperplane, the step to the box corner closest to it.
///
/// With the sign of w chosen so that wᵀt ≥ b, every coordinate moves against its weight — up to
/// 1 where wᵢ < 0, down to 0 where wᵢ > 0 — by min(λ, pᵢ), pᵢ its room to the box. wᵀ(t + d(λ))
/// is non-increasing in λ and piecewise linear with kinks at the pᵢ; with the coordinates sorted
/// by decreasing pᵢ, at λ = p₍ₖ₎ the first k + 1 move by λ and the rest by their pᵢ, so the
/// segment holding the solution is found by bisection and λ solved on it. Coordinates with
/// wᵢ = 0 do not move.
pub fn project_linf(t: &[f32], w: &[f32], b: f64) -> Vec<f32> {
    let n = t.len();
    let sign = if dot(w, t) - b >= 0.0 { 1.0 } else { -1.0 };
    // Required change of the (signed) score: r ≤ 0.
    let r = sign * b - sign * dot(w, t);
    let up: Vec<bool> = w.iter().map(|&wi| sign * (wi as f64) < 0.0).collect();
    let room: Vec<f64> = (0..n)
        .map(|i| if up[i] { 1.0 - t[i] as f64 } else { t[i] as f64 })
        .collect();
    let dir = |i: usize| if up[i] { 1.0 } else { -1.0 };
    let abs_w: Vec<f64> = w.iter().map(|&wi| (wi as f64).abs()).collect();
    // The score change with every coordinate at its bound.
    let b0: f64 = -(0..n).map(|i| abs_w[i] * room[i]).sum::<f64>();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&i, &j| room[j].total_cmp(&room[i]));
    // s[k] = Σ_{j ≤ k} |w|, sb[k] = b0 + Σ_{j ≤ k} |w|·p over the sorted order; the score change
    // at λ = p₍ₖ₎ is sb[k] − s[k]·p₍ₖ₎, non-decreasing in k.
    let (mut s, mut sb) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut acc_s, mut acc_sb) = (0.0, b0);
    for &i in &order {
        acc_s += abs_w[i];
        acc_sb += abs_w[i] * room[i];
        s.push(acc_s);
        sb.push(acc_sb);
    }
    let at = |k: usize| sb[k] - s[k] * room[order[k]];
    let step = |lambda: f64| -> Vec<f32> {
        (0..n)
            .map(|i| {
                if w[i] == 0.0 {
                    0.0
                } else {
                    (dir(i) * lambda.min(room[i])) as f32
                }
            })
            .collect()
    };
    if n == 0 {
        return Vec::new();
    }
    if r > at(n - 1) {
        // Within the smallest room: every coordinate moves by λ.
        let lambda = ((r - sb[n - 1]) / -s[n - 1]).max(0.0);
        step(lambda)
    } else if r > b0 {
        // The last k with score change at p₍ₖ₎ below r: the solution lies on segment k.
        // at(0) = b0 < r ≤ at(n − 1): bisect keeping at(lo) < r ≤ at(hi).
        let (mut lo, mut hi) = (0, n - 1);
        while hi - lo > 1 {
            let mid = (lo + hi) / 2;
            if at(mid) < r { lo = mid } else { hi = mid }
        }
        let k = lo;
        let lambda = ((r - sb[k]) / -s[k]).max(0.0);
        step(lambda)
    } else {
        // Out of reach inside the box: every coordinate to its bound.
        step(f64::INFINITY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The projection solves min ‖d‖∞ s.t. wᵀ(t + d) = b, t + d ∈ [0, 1]ⁿ: checked against a
    /// bisection on λ of the same problem written out directly.
    #[test]
    fn projection_lands_on_the_hyperplane_with_the_least_linf_step() {
        use rand::rngs::StdRng;
        use rand::{Rng, SeedableRng};
        let mut rng = StdRng::seed_from_u64(5);
        for case in 0..200 {
            let n = 1 + case % 17;
            let t: Vec<f32> = (0..n).map(|_| rng.random_range(0.0f32..1.0)).collect();
            let w: Vec<f32> = (0..n)
                .map(|i| {
                    if i % 5 == 4 {
                        0.0
                    } else {
                        rng.random_range(-1.0f32..1.0)
                    }
                })
                .collect();
            let b = dot(&w, &t) + rng.random_range(-1.0..1.0);
            let d = project_linf(&t, &w, b);
            let z: Vec<f32> = t.iter().zip(&d).map(|(a, b)| a + b).collect();
            assert!(z.iter().all(|v| (-1e-6..=1.0 + 1e-6).contains(v)), "box: {z:?}");
            // Reachable: the farthest the box goes in the useful direction.
            let sign = if dot(&w, &t) >= b { -1.0 } else { 1.0 };
            let far: f64 = (0..n)
                .map(|i| {
                    let wi = w[i] as f64;
                    let to = if sign * wi > 0.0 { 1.0 } else { 0.0 };
                    wi * (to - t[i] as f64)
                })
                .sum();
            let need = b - dot(&w, &t);
            if need.abs() <= far.abs() + 1e-9 {
                assert!((dot(&w, &z) - b).abs() < 1e-5, "case {case}: on the hyperplane");
                // The least λ: the moved score at λ, bisected.
                let moved = |lam: f64| -> f64 {
                    (0..n)
                        .map(|i| {
                            let wi = w[i] as f64;
                            let to = if sign * wi > 0.0 { 1.0 } else { 0.0 };
                            let room = (to - t[i] as f64).abs();
                            wi * (to - t[i] as f64).signum() * lam.min(room)
                        })
                        .sum()
                };
                let (mut lo, mut hi) = (0.0, 1.0);
                for _ in 0..60 {
                    let mid = (lo + hi) / 2.0;
                    if moved(mid).abs() < need.abs() {
                        lo = mid
                    } else {
                        hi = mid
                    }
                }
                assert!(
                    (linf_norm(&d) as f64 - hi).abs() < 1e-5,
                    "case {case}: ‖d‖∞ = {} against {hi}",
                    linf_norm(&d)
                );
            } else {
                // Out of reach: every coordinate with a weight at its bound.
                for i in 0..n {
                    if w[i] != 0.0 {
                        assert!(z[i].abs() < 1e-6 || (z[i] - 1.0).abs() < 1e-6, "case {case}: {z:?}");
                    }
                }
            }
            for i in 0..n {
                if w[i] == 0.0 {
                    assert_eq!(d[i], 0.0);
                }
            }
        }
    }
}
