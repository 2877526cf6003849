//! PGD ℓ∞ (Madry et al. 2018, ICLR), following torchattacks' `PGD`: uniform random start in
//! [−ε, ε] (clamped to [0, 1]), `steps` sign-gradient ascent steps of size α on cross-entropy,
//! each followed by projection onto the ε-ball and clamping to [0, 1]. The paper's defaults
//! (Li et al. 2025, §4): ε = 1/255, α = 0.25/255, 15 steps.
//!
//! Two stopping rules:
//! * [`StopRule::LastIterate`] reproduces torchattacks: every point takes all steps; a point is
//!   robust if the *last* iterate is classified correctly.
//! * [`StopRule::EarlyExit`] (default, cheaper): only clean-correct points are attacked, and a
//!   point leaves the attack as soon as an iterate (the random start included) is misclassified.
//!   It is at least as strong as the last-iterate rule with the same seed: the model sees each
//!   point independently (no batch statistics), so every point still under attack follows exactly
//!   the last-iterate trajectory; a point that survives early exit is correct at every iterate,
//!   the last one included. Robust accuracy under early exit ≤ under last-iterate (tested).

use candle_core::{Result as CResult, Tensor};

use super::{AttackOutcome, Classifier, Objective, correct, index_tensor, loss_grad, project, uniform_noise};

/// When a point stops being attacked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StopRule {
    /// Stop a point once it is misclassified (only clean-correct points are attacked).
    #[default]
    EarlyExit,
    /// torchattacks: all steps for every point, judge the last iterate.
    LastIterate,
}

/// PGD hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PgdConfig {
    /// ℓ∞ radius in [0, 1] pixel units.
    pub eps: f64,
    /// Step size.
    pub alpha: f64,
    /// Number of steps.
    pub steps: usize,
    /// Uniform random start in [−ε, ε].
    pub random_start: bool,
    /// Stopping rule.
    pub stop: StopRule,
}

impl Default for PgdConfig {
    /// The paper's: ε = 1/255, α = 0.25/255, 15 steps, random start, early exit.
    fn default() -> Self {
        Self {
            eps: 1.0 / 255.0,
            alpha: 0.25 / 255.0,
            steps: 15,
            random_start: true,
            stop: StopRule::EarlyExit,
        }
    }
}

/// Runs PGD on images `x` [B, C, H, W] in [0, 1] with u32 labels `y` `[B]`. `seed` fixes the
/// random start.
pub fn pgd<M: Classifier + ?Sized>(
    model: &M,
    x: &Tensor,
    y: &Tensor,
    cfg: &PgdConfig,
    seed: u64,
) -> CResult<AttackOutcome> {
    let noise = start_noise(x, cfg, seed)?;
    pgd_from(model, x, y, cfg, noise.as_ref())
}

/// The random start's noise for the whole batch (None without a random start).
fn start_noise(x: &Tensor, cfg: &PgdConfig, seed: u64) -> CResult<Option<Tensor>> {
    if cfg.random_start && cfg.eps > 0.0 {
        Ok(Some(uniform_noise(x.dims(), cfg.eps, seed, x.dtype(), x.device())?))
    } else {
        Ok(None)
    }
}

/// PGD with the batch split into `parts` contiguous chunks attacked on separate threads. The
/// random start is drawn for the whole batch first, so each point starts where [`pgd`] would start
/// it with the same seed; points are attacked independently, so the outcome is [`pgd`]'s up to
/// floating-point differences of batch-size-dependent matmul blocking. Pays off when candle's own
/// pool is single-threaded (`CANDLE_NUM_THREADS=1`).
pub fn pgd_data_parallel<M: Classifier + Sync + ?Sized>(
    model: &M,
    x: &Tensor,
    y: &Tensor,
    cfg: &PgdConfig,
    seed: u64,
    parts: usize,
) -> CResult<AttackOutcome> {
    let b = x.dim(0)?;
    let parts = parts.clamp(1, b.max(1));
    let noise = start_noise(x, cfg, seed)?;
    if parts == 1 {
        return pgd_from(model, x, y, cfg, noise.as_ref());
    }
    let outs = crate::engine::data_parallel(b, parts, |start, len| {
        let n = noise.as_ref().map(|t| t.narrow(0, start, len)).transpose()?;
        pgd_from(
            model,
            &x.narrow(0, start, len)?,
            &y.narrow(0, start, len)?,
            cfg,
            n.as_ref(),
        )
    })?;
    super::join(outs)
}

/// PGD on the batch from x + `noise` projected (from `x` itself when `noise` is None), stopping
/// per `cfg.stop`.
fn pgd_from<M: Classifier + ?Sized>(
    model: &M,
    x: &Tensor,
    y: &Tensor,
    cfg: &PgdConfig,
    noise: Option<&Tensor>,
) -> CResult<AttackOutcome> {
    let clean_logits = model.logits(x)?.detach();
    let clean_correct = correct(&clean_logits, y)?;
    let start = match noise {
        Some(n) => project(&(x + n)?, x, cfg.eps)?,
        None => x.clone(),
    };
    match cfg.stop {
        StopRule::LastIterate => last_iterate(model, x, y, cfg, start, clean_correct),
        StopRule::EarlyExit => early_exit(model, x, y, cfg, &start, clean_correct),
    }
}

/// One PGD step: x' = Π(x + α·sign(g)), projected onto the ε-ball around `x0` and [0, 1].
fn ascend(adv: &Tensor, g: &Tensor, x0: &Tensor, cfg: &PgdConfig) -> CResult<Tensor> {
    project(&(adv + (g.sign()? * cfg.alpha)?)?, x0, cfg.eps)
}

/// `steps` sign-gradient ascent steps of size `alpha` on `objective` from `start` (a point of the
/// ε-ball around `x` in [0, 1]), each projected back onto both; every point takes every step and
/// the last iterate is returned. PGD's last-iterate rule, and the inner maximisation of
/// adversarial training (`engine::robust`).
pub fn ascend_all<M: Classifier + ?Sized>(
    model: &M,
    x: &Tensor,
    y: &Tensor,
    objective: &Objective,
    start: Tensor,
    (eps, alpha, steps): (f64, f64, usize),
) -> CResult<Tensor> {
    let cfg = PgdConfig {
        eps,
        alpha,
        steps,
        random_start: false,
        stop: StopRule::LastIterate,
    };
    let mut adv = start;
    for _ in 0..steps {
        let (g, _, _) = loss_grad(model, &adv, y, objective)?;
        adv = ascend(&adv, &g, x, &cfg)?;
    }
    Ok(adv)
}

/// [`StopRule::LastIterate`] from the start `start`: all steps for every point, then a point is
/// robust if it is clean-correct (`clean_correct`, one forward of the batch already spent) and its
/// last iterate is classified correctly.
fn last_iterate<M: Classifier + ?Sized>(
    model: &M,
    x: &Tensor,
    y: &Tensor,
    cfg: &PgdConfig,
    start: Tensor,
    clean_correct: Vec<bool>,
) -> CResult<AttackOutcome> {
    let b = x.dim(0)?;
    let adv = ascend_all(model, x, y, &Objective::Ce, start, (cfg.eps, cfg.alpha, cfg.steps))?;
    let mut forwards = b * (1 + cfg.steps);
    let robust = correct(&model.logits(&adv)?, y)?;
    forwards += b;
    let robust = robust
        .iter()
        .zip(&clean_correct)
        .map(|(r, c)| *r && *c)
        .collect::<Vec<_>>();
    // A clean-incorrect point cannot be robust; torchattacks' accuracy on the last iterate
    // can count it correct by chance, which we do not (documented difference: ≤ 0).
    Ok(AttackOutcome {
        adv,
        clean_correct,
        robust,
        image_forwards: forwards,
    })
}

/// [`StopRule::EarlyExit`] from the start `start`: only the clean-correct points
/// (`clean_correct`, one forward of the batch already spent) are attacked, and each leaves the
/// attack with the first iterate that is misclassified.
fn early_exit<M: Classifier + ?Sized>(
    model: &M,
    x: &Tensor,
    y: &Tensor,
    cfg: &PgdConfig,
    start: &Tensor,
    clean_correct: Vec<bool>,
) -> CResult<AttackOutcome> {
    let b = x.dim(0)?;
    let mut forwards = b;
    let mut robust = clean_correct.clone();
    let active: Vec<usize> = (0..b).filter(|&i| clean_correct[i]).collect();
    // Points never attacked keep their clean image; attacked ones are filled in below.
    let mut finished: Vec<(Vec<usize>, Tensor)> = Vec::new();
    let inactive: Vec<usize> = (0..b).filter(|&i| !clean_correct[i]).collect();
    if !inactive.is_empty() {
        let idx = index_tensor(&inactive, x.device())?;
        finished.push((inactive, x.index_select(&idx, 0)?));
    }
    let mut pts = Active::select(active, x, y, start)?;
    for step in 0..=cfg.steps {
        if pts.ids.is_empty() {
            break;
        }
        // One forward serves both the check of the current iterate and the gradient.
        let last = step == cfg.steps;
        let (g, logits) = if last {
            (None, model.logits(&pts.adv)?)
        } else {
            let (g, l, _) = loss_grad(model, &pts.adv, &pts.y, &Objective::Ce)?;
            (Some(g), l)
        };
        forwards += pts.ids.len();
        let keep = pts.split_off_misclassified(&correct(&logits, &pts.y)?, &mut finished, &mut robust)?;
        if keep.is_empty() {
            pts.ids.clear();
            break;
        }
        if last {
            // The points just split off are in `finished` already: only the survivors remain.
            pts.retain(&keep)?;
            break;
        }
        pts.step(&g.expect("gradient computed on non-final steps"), &keep, cfg)?;
    }
    if !pts.ids.is_empty() {
        finished.push((pts.ids.clone(), pts.adv));
    }
    let adv = assemble(b, x, finished)?;
    Ok(AttackOutcome {
        adv,
        clean_correct,
        robust,
        image_forwards: forwards,
    })
}

/// The points still under attack in [`early_exit`]: row j of `x`, `y` and `adv` belongs to the
/// batch's point `ids[j]`.
struct Active {
    /// Their positions in the batch.
    ids: Vec<usize>,
    /// Their clean images (the centres of the ε-balls).
    x: Tensor,
    /// Their labels.
    y: Tensor,
    /// Their current iterates.
    adv: Tensor,
}

impl Active {
    /// The points `ids` of the batch (`x`, `y`), starting at their rows of `start`.
    fn select(ids: Vec<usize>, x: &Tensor, y: &Tensor, start: &Tensor) -> CResult<Self> {
        let all_idx = index_tensor(&ids, x.device())?;
        Ok(Active {
            x: x.index_select(&all_idx, 0)?,
            y: y.index_select(&all_idx, 0)?,
            adv: start.index_select(&all_idx, 0)?,
            ids,
        })
    }

    /// Moves the points whose current iterate is misclassified (`ok[j]` false) to `finished` with
    /// that iterate and marks them non-robust; returns the rows still classified correctly. The
    /// rows themselves stay until [`step`](Self::step).
    fn split_off_misclassified(
        &self,
        ok: &[bool],
        finished: &mut Vec<(Vec<usize>, Tensor)>,
        robust: &mut [bool],
    ) -> CResult<Vec<usize>> {
        let (keep, drop): (Vec<usize>, Vec<usize>) = (0..self.ids.len()).partition(|&j| ok[j]);
        if !drop.is_empty() {
            let di = index_tensor(&drop, self.x.device())?;
            finished.push((
                drop.iter().map(|&j| self.ids[j]).collect(),
                self.adv.index_select(&di, 0)?,
            ));
            for &j in &drop {
                robust[self.ids[j]] = false;
            }
        }
        Ok(keep)
    }

    /// One sign-gradient step of size α along `g` on every row, projected onto the ε-ball and
    /// [0, 1]; then only the rows `keep` stay under attack.
    fn step(&mut self, g: &Tensor, keep: &[usize], cfg: &PgdConfig) -> CResult<()> {
        self.adv = ascend(&self.adv, g, &self.x, cfg)?;
        self.retain(keep)
    }

    /// Keeps only the rows `keep` (positions among the current rows) under attack.
    fn retain(&mut self, keep: &[usize]) -> CResult<()> {
        if keep.len() != self.ids.len() {
            let ki = index_tensor(keep, self.x.device())?;
            self.adv = self.adv.index_select(&ki, 0)?;
            self.x = self.x.index_select(&ki, 0)?;
            self.y = self.y.index_select(&ki, 0)?;
            self.ids = keep.iter().map(|&j| self.ids[j]).collect();
        }
        Ok(())
    }
}

/// Puts per-group rows back in their original positions (each index appears exactly once).
pub(crate) fn assemble(b: usize, like: &Tensor, groups: Vec<(Vec<usize>, Tensor)>) -> CResult<Tensor> {
    let mut out = like.zeros_like()?;
    for (ids, rows) in groups {
        if ids.is_empty() {
            continue;
        }
        let idx = index_tensor(&ids, like.device())?;
        out = out.index_add(&idx, &rows, 0)?;
    }
    debug_assert_eq!(out.dim(0).ok(), Some(b));
    Ok(out)
}
