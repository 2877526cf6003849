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

use super::{AttackOutcome, Classifier, Objective, bcast_shape, cascade, correct, loss_grad, project, replace_rows};

/// The loss APGD ascends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ApgdLoss {
    /// Cross-entropy: APGD-CE.
    #[default]
    Ce,
    /// The difference-of-logits ratio (Croce & Hein 2020, eq. 6): APGD-DLR.
    Dlr,
    /// The targeted DLR (eq. 7), one run per target class — the classes ranked 2nd, 3rd, … by
    /// the clean logits, `targets` of them (fewer with fewer classes): APGD-T.
    DlrTargeted,
    /// The targeted logit margin z_t − z_y over the same target classes: what AutoAttack's
    /// ensemble runs in APGD-T's place on a model with fewer than 4 classes, where the targeted
    /// DLR (which reads the 4th logit) is undefined — the reference implementation stops there
    /// with a warning (`checks.py::check_n_classes`); the margin is DLR without its scale
    /// normalisation.
    MarginTargeted,
}

impl ApgdLoss {
    /// Whether each run attacks towards one target class.
    pub fn targeted(self) -> bool {
        matches!(self, ApgdLoss::DlrTargeted | ApgdLoss::MarginTargeted)
    }
}

/// APGD hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApgdConfig {
    /// ℓ∞ radius in [0, 1] pixel units.
    pub eps: f64,
    /// Iterations N per run (AutoAttack's standard version uses 100).
    pub steps: usize,
    /// The loss.
    pub loss: ApgdLoss,
    /// APGD-T: target classes tried (AutoAttack's standard version: 9).
    pub targets: usize,
}

impl Default for ApgdConfig {
    /// ε = 1/255 (the paper's budget), 100 iterations, cross-entropy (AutoAttack's APGD-CE).
    fn default() -> Self {
        Self {
            eps: 1.0 / 255.0,
            steps: 100,
            loss: ApgdLoss::Ce,
            targets: 9,
        }
    }
}

impl ApgdConfig {
    /// The target classes tried for a model with `classes` outputs: `targets`, at most
    /// `classes − 1` (every class but the top one); 1 run for the untargeted losses.
    pub fn runs(&self, classes: usize) -> usize {
        if self.loss.targeted() {
            self.targets.min(classes.saturating_sub(1))
        } else {
            1
        }
    }
}

/// Runs APGD on the clean-correct points of `x`; `seed` fixes the start. APGD-T runs once per
/// target class on the points no earlier target has broken (AutoAttack's `apgd-t`), the target
/// of a point being the class ranked r + 1 by its clean logits in run r.
pub fn apgd<M: Classifier + ?Sized>(
    model: &M,
    x: &Tensor,
    y: &Tensor,
    cfg: &ApgdConfig,
    seed: u64,
) -> CResult<AttackOutcome> {
    let b = x.dim(0)?;
    let clean_logits = model.logits(x)?.detach();
    let clean_correct = correct(&clean_logits, y)?;
    let runs = if cfg.steps == 0 {
        0
    } else {
        cfg.runs(clean_logits.dim(1)?)
    };
    let ranked: Vec<Vec<u32>> = if cfg.loss.targeted() {
        clean_logits.arg_sort_last_dim(false)?.to_vec2()?
    } else {
        Vec::new()
    };
    // Each point keeps the image of its latest run: the breaking one, or the last one's best.
    let done = cascade(x, y, clean_correct.clone(), runs, true, |run, ids, xs, ys| {
        let targets: Vec<u32> = ids.iter().map(|&i| ranked.get(i).map_or(0, |r| r[run + 1])).collect();
        let objective = match cfg.loss {
            ApgdLoss::Ce => Objective::Ce,
            ApgdLoss::Dlr => Objective::Dlr,
            ApgdLoss::DlrTargeted => Objective::DlrTargeted(&targets),
            ApgdLoss::MarginTargeted => Objective::Margin(&targets),
        };
        let run_seed = seed.wrapping_add((run as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        attack_points(model, xs, ys, cfg, &objective, run_seed)
    })?;
    Ok(done.outcome(clean_correct, b))
}

/// Algorithm 1 on the n clean-correct points `xs` (labels `ys`), n ≥ 1 and N = `cfg.steps` ≥ 1:
/// the random start, N momentum steps, and a checkpoint of the step-size schedule after each.
/// Returns each point's adversarial image (its first misclassified iterate, or its best-loss
/// iterate if it was never misclassified), whether it was never misclassified, and the image
/// forwards spent.
fn attack_points<M: Classifier + ?Sized>(
    model: &M,
    xs: &Tensor,
    ys: &Tensor,
    cfg: &ApgdConfig,
    objective: &Objective,
    seed: u64,
) -> CResult<(Tensor, Vec<bool>, usize)> {
    let n = xs.dim(0)?;
    let eps = cfg.eps;
    let mut adv = random_start(xs, eps, seed)?;

    let (mut grad, logits, loss) = loss_grad(model, &adv, ys, objective)?;
    let mut forwards = n;
    let mut best = Best::start(&adv, &grad, correct(&logits, ys)?, to_f64(&loss)?);
    let mut schedule = Schedule::new(cfg.steps, eps, &best.loss);
    let mut x_old = adv.clone();

    for i in 0..cfg.steps {
        let a = if i > 0 { 0.75 } else { 1.0 };
        let eta = schedule.eta(xs)?;
        (adv, x_old) = momentum_step(&adv, &x_old, &grad, &eta, xs, eps, a)?;

        let (g, logits, loss) = loss_grad(model, &adv, ys, objective)?;
        forwards += n;
        grad = g;
        let loss_now = best.record(&adv, &grad, &logits, &loss, ys)?;
        let rows = schedule.after_step(loss_now, &best.loss);
        if !rows.is_empty() {
            adv = replace_rows(&adv, &best.x, &rows)?;
            grad = replace_rows(&grad, &best.grad, &rows)?;
        }
    }
    Ok((best.final_adv()?, best.alive, forwards))
}

/// The random start x⁽⁰⁾ = x + ε·t/‖t‖∞ per image, t ~ U(−1, 1)ⁿ drawn from `seed` (image after
/// image, value after value), clipped to [0, 1].
fn random_start(xs: &Tensor, eps: f64, seed: u64) -> CResult<Tensor> {
    let n = xs.dim(0)?;
    let per = xs.elem_count() / n;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut t: Vec<f32> = (0..n * per).map(|_| rng.random_range(-1.0f32..=1.0)).collect();
    for row in t.chunks_mut(per) {
        let m = row.iter().fold(0f32, |a, v| a.max(v.abs())).max(1e-12);
        row.iter_mut().for_each(|v| *v = *v / m * eps as f32);
    }
    let noise = Tensor::from_vec(t, xs.dims(), &candle_core::Device::Cpu)?
        .to_dtype(xs.dtype())?
        .to_device(xs.device())?;
    (xs + noise)?.clamp(0.0, 1.0)
}

/// One update of Algorithm 1 with per-point step sizes `eta` (shaped to broadcast over an image):
/// z = P(x⁽ᵏ⁾ + η·sign ∇), x⁽ᵏ⁺¹⁾ = P(x⁽ᵏ⁾ + a(z − x⁽ᵏ⁾) + (1 − a)(x⁽ᵏ⁾ − x⁽ᵏ⁻¹⁾)), P the
/// projection onto the ε-ball around `xs` and [0, 1]. Returns (x⁽ᵏ⁺¹⁾, x⁽ᵏ⁾).
fn momentum_step(
    adv: &Tensor,
    x_old: &Tensor,
    grad: &Tensor,
    eta: &Tensor,
    xs: &Tensor,
    eps: f64,
    a: f64,
) -> CResult<(Tensor, Tensor)> {
    let momentum = (adv - x_old)?;
    let z = project(&(adv + grad.sign()?.broadcast_mul(eta)?)?, xs, eps)?;
    let next = project(&((adv + ((&z - adv)? * a)?)? + (momentum * (1.0 - a))?)?, xs, eps)?;
    Ok((next, adv.clone()))
}

/// The best points found so far, per attacked point (row j of each tensor is point j).
struct Best {
    /// The highest loss over all iterates.
    loss: Vec<f64>,
    /// The iterate with that loss (where a checkpoint restarts from).
    x: Tensor,
    /// The gradient at that iterate.
    grad: Tensor,
    /// The first misclassified iterate (the start if it fails there); meaningful where `alive`
    /// is false.
    x_adv: Tensor,
    /// Never misclassified so far.
    alive: Vec<bool>,
}

impl Best {
    /// The bookkeeping at the start x⁽⁰⁾ with gradient `grad`, correctness `ok` and losses `loss`.
    fn start(adv: &Tensor, grad: &Tensor, ok: Vec<bool>, loss: Vec<f64>) -> Self {
        Best {
            loss,
            x: adv.clone(),
            grad: grad.clone(),
            x_adv: adv.clone(),
            alive: ok,
        }
    }

    /// Records the new iterate `adv` (gradient `grad`, `logits`, per-point `loss`): points
    /// misclassified for the first time keep it as their adversarial image, points whose loss
    /// beats their best keep it as their best point. Returns the losses as f64.
    fn record(
        &mut self,
        adv: &Tensor,
        grad: &Tensor,
        logits: &Tensor,
        loss: &Tensor,
        ys: &Tensor,
    ) -> CResult<Vec<f64>> {
        let n = self.alive.len();
        let ok = correct(logits, ys)?;
        let newly: Vec<usize> = (0..n).filter(|&j| self.alive[j] && !ok[j]).collect();
        if !newly.is_empty() {
            self.x_adv = replace_rows(&self.x_adv, adv, &newly)?;
            for &j in &newly {
                self.alive[j] = false;
            }
        }
        let loss_now = to_f64(loss)?;
        let improved: Vec<usize> = (0..n).filter(|&j| loss_now[j] > self.loss[j]).collect();
        if !improved.is_empty() {
            self.x = replace_rows(&self.x, adv, &improved)?;
            self.grad = replace_rows(&self.grad, grad, &improved)?;
            for &j in &improved {
                self.loss[j] = loss_now[j];
            }
        }
        Ok(loss_now)
    }

    /// The adversarial images: points never misclassified keep their best-loss iterate.
    fn final_adv(&self) -> CResult<Tensor> {
        let alive_rows: Vec<usize> = (0..self.alive.len()).filter(|&j| self.alive[j]).collect();
        if alive_rows.is_empty() {
            Ok(self.x_adv.clone())
        } else {
            replace_rows(&self.x_adv, &self.x, &alive_rows)
        }
    }
}

/// The step-size schedule of Algorithm 1: per-point step sizes η (2ε at the start) and the
/// checkpoints every k iterations, k starting at ⌈0.22·N⌉ and shrinking by ⌈0.03·N⌉ down to
/// ⌈0.06·N⌉ (int(·) in the reference, clamped to ≥ 1).
struct Schedule {
    /// Iterations between the previous checkpoint and the next.
    k: usize,
    /// How much k shrinks at each checkpoint.
    size_decr: usize,
    /// The smallest k.
    k_min: usize,
    /// Iterations since the previous checkpoint.
    counter: usize,
    /// Per-point step size η.
    step_size: Vec<f64>,
    /// Per-point losses: entry 0 at the start, entry i + 1 after step i.
    loss_hist: Vec<Vec<f64>>,
    /// The best losses at the previous checkpoint (at the start before the first).
    best_at_last_check: Vec<f64>,
    /// Whether the previous checkpoint halved each point's step size (true before the first).
    reduced_last_check: Vec<bool>,
}

impl Schedule {
    /// The schedule for N = `steps` iterations at radius `eps`, given the losses at the start.
    fn new(steps: usize, eps: f64, start_loss: &[f64]) -> Self {
        let n = start_loss.len();
        let frac = |f: f64| ((f * steps as f64) as usize).max(1);
        Schedule {
            k: frac(0.22),
            size_decr: frac(0.03),
            k_min: frac(0.06),
            counter: 0,
            step_size: vec![2.0 * eps; n],
            loss_hist: vec![start_loss.to_vec()],
            best_at_last_check: start_loss.to_vec(),
            reduced_last_check: vec![true; n],
        }
    }

    /// The step sizes as a tensor of `xs`'s dtype and device, shaped [n, 1, …] to broadcast.
    fn eta(&self, xs: &Tensor) -> CResult<Tensor> {
        Tensor::from_vec(
            self.step_size.iter().map(|v| *v as f32).collect::<Vec<_>>(),
            self.step_size.len(),
            &candle_core::Device::Cpu,
        )?
        .to_dtype(xs.dtype())?
        .to_device(xs.device())?
        .reshape(bcast_shape(xs.dims()))
    }

    /// Records the losses after a step; at a checkpoint, halves the step size of the points that
    /// [`needs_reduction`](Self::needs_reduction) selects and returns them (they restart from
    /// their best-loss iterate). Empty between checkpoints.
    fn after_step(&mut self, loss_now: Vec<f64>, best_loss: &[f64]) -> Vec<usize> {
        self.loss_hist.push(loss_now);
        self.counter += 1;
        if self.counter != self.k {
            return Vec::new();
        }
        let reduce = self.needs_reduction(best_loss);
        self.reduced_last_check = reduce.clone();
        self.best_at_last_check = best_loss.to_vec();
        let rows: Vec<usize> = (0..reduce.len()).filter(|&j| reduce[j]).collect();
        for &j in &rows {
            self.step_size[j] /= 2.0;
        }
        self.k = self.k.saturating_sub(self.size_decr).max(self.k_min);
        self.counter = 0;
        rows
    }

    /// The checkpoint's conditions per point: (1) the loss increased in at most 75% of the last k
    /// steps, or (2) the step size was not reduced at the previous checkpoint and the best loss
    /// has not improved since.
    fn needs_reduction(&self, best_loss: &[f64]) -> Vec<bool> {
        let (k, hist) = (self.k, &self.loss_hist);
        let last = hist.len() - 1;
        (0..best_loss.len())
            .map(|j| {
                // (1) oscillation: the loss went up in at most 75% of the last k steps.
                let ups = (0..k).filter(|&c| hist[last - c][j] > hist[last - c - 1][j]).count();
                let osc = ups as f64 <= k as f64 * 0.75;
                // (2) not reduced last time and no improvement of the best loss since.
                let stalled = !self.reduced_last_check[j] && self.best_at_last_check[j] >= best_loss[j];
                osc || stalled
            })
            .collect()
    }
}

fn to_f64(t: &Tensor) -> CResult<Vec<f64>> {
    t.to_dtype(candle_core::DType::F64)?.to_vec1()
}
