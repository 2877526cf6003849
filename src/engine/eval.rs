//! Clean and robust evaluation of a model on a dataset, batch by batch.

use candle_core::{Device, Tensor};

use super::Vit;
use super::attack::{
    ApgdConfig, ApgdLoss, AttackOutcome, AutoAttackConfig, FabConfig, PgdConfig, SquareConfig, apgd, autoattack_split,
    fab_t, join, pgd_data_parallel, split, square,
};
use super::data::Dataset;
use crate::error::Result;

/// Which attack measures robustness.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Attack {
    /// PGD ℓ∞.
    Pgd(PgdConfig),
    /// APGD (CE, DLR or targeted DLR: [`ApgdConfig::loss`]).
    Apgd(ApgdConfig),
    /// FAB-T (targeted, minimal perturbation).
    Fab(FabConfig),
    /// The Square Attack (score-based).
    Square(SquareConfig),
    /// AutoAttack's ensemble (APGD-CE, APGD-T, FAB-T, Square).
    AutoAttack(AutoAttackConfig),
}

impl Default for Attack {
    fn default() -> Self {
        Attack::Pgd(PgdConfig::default())
    }
}

/// Counts from an evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct EvalCounts {
    /// Points evaluated.
    pub n: usize,
    /// Correct without attack.
    pub clean: usize,
    /// Correct under attack (0 when no attack ran).
    pub robust: usize,
}

/// Logits of `x` with the batch cut into `parts` contiguous slices, each forwarded on its own
/// thread and concatenated in order (CPU data parallelism, as `train_step_data_parallel` and `pgd_data_parallel`;
/// `parts` = 1 is [`Vit::forward`]). Equal to the whole-batch forward up to float rounding.
pub fn forward_data_parallel(model: &Vit, x: &Tensor, parts: usize) -> Result<Tensor> {
    if parts <= 1 {
        return Ok(model.forward(x)?);
    }
    let outs = super::data_parallel(x.dim(0)?, parts, |start, len| model.forward(&x.narrow(0, start, len)?))?;
    Ok(Tensor::cat(&outs, 0)?)
}

/// CLS features of every image of `data` ([N, dim], detached), forwarded in batches of 256:
/// what a linear probe trains on, and what task-separability measurements read.
pub fn dataset_features(model: &Vit, data: &Dataset, device: &Device) -> Result<Tensor> {
    let ids: Vec<usize> = (0..data.len()).collect();
    let parts = ids
        .chunks(256)
        .map(|chunk| {
            let (x, _) = data.batch(chunk, device)?;
            Ok(model.features(&x)?.detach().contiguous()?)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Tensor::cat(&parts, 0)?)
}

/// Per-image correctness of `model` on `ids` of `data` (batches forwarded with [`forward_data_parallel`]).
pub fn clean_correct(model: &Vit, data: &Dataset, ids: &[usize], batch: usize, device: &Device) -> Result<Vec<bool>> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(batch.max(1)) {
        let (x, y) = data.batch(chunk, device)?;
        let x = x.to_dtype(model.dtype())?;
        out.extend(super::attack::correct(
            &forward_data_parallel(model, &x, super::batch_parts(device))?,
            &y,
        )?);
    }
    Ok(out)
}

/// Clean accuracy counts of `model` on `ids` of `data` (batches forwarded with [`forward_data_parallel`]).
pub fn clean_counts(model: &Vit, data: &Dataset, ids: &[usize], batch: usize, device: &Device) -> Result<EvalCounts> {
    let ok = clean_correct(model, data, ids, batch, device)?;
    Ok(EvalCounts {
        n: ok.len(),
        clean: ok.iter().filter(|b| **b).count(),
        robust: 0,
    })
}

impl Attack {
    /// The ℓ∞ radius.
    pub fn eps(&self) -> f64 {
        match self {
            Attack::Pgd(p) => p.eps,
            Attack::Apgd(a) => a.eps,
            Attack::Fab(f) => f.eps,
            Attack::Square(q) => q.eps,
            Attack::AutoAttack(a) => a.eps,
        }
    }

    /// The fewest classes the attack is defined for: 3 for APGD-DLR (it reads the third logit), 4
    /// for APGD-T (the targeted DLR reads the fourth), 2 otherwise (AutoAttack's ensemble swaps
    /// its APGD-T loss below 4 classes).
    pub fn min_classes(&self) -> usize {
        match self {
            Attack::Apgd(a) if a.loss == ApgdLoss::Dlr => 3,
            Attack::Apgd(a) if a.loss == ApgdLoss::DlrTargeted => 4,
            _ => 2,
        }
    }

    /// The attack's name as reports print it (`pgd`, `apgd-ce`, `apgd-dlr`, `apgd-t`, `fab-t`,
    /// `square`, `autoattack`).
    pub fn name(&self) -> &'static str {
        match self {
            Attack::Pgd(_) => "pgd",
            Attack::Apgd(a) => match a.loss {
                ApgdLoss::Ce => "apgd-ce",
                ApgdLoss::Dlr => "apgd-dlr",
                ApgdLoss::DlrTargeted => "apgd-t",
                ApgdLoss::MarginTargeted => "apgd-t-margin",
            },
            Attack::Fab(_) => "fab-t",
            Attack::Square(_) => "square",
            Attack::AutoAttack(_) => "autoattack",
        }
    }

    /// Its cost in gradient steps per point when every point stays robust (a forward-only query
    /// counted as a third of a step): PGD/APGD iterations (× targets for APGD-T), FAB-T's
    /// iterations × targets × 4/3 (a gradient and a prediction each), Square queries / 3, and the
    /// sum of AutoAttack's members. `classes` bounds the targets.
    pub fn max_steps(&self, classes: usize) -> f64 {
        match self {
            Attack::Pgd(p) => p.steps as f64,
            Attack::Apgd(a) => (a.steps * a.runs(classes)) as f64,
            Attack::Fab(f) => (f.steps * f.runs(classes)) as f64 * 4.0 / 3.0,
            Attack::Square(q) => q.queries as f64 / 3.0,
            Attack::AutoAttack(a) => {
                [ApgdLoss::Ce, AutoAttackConfig::apgd_t_loss(classes)]
                    .map(|l| Attack::Apgd(a.apgd(l)).max_steps(classes))
                    .iter()
                    .sum::<f64>()
                    + Attack::Fab(a.fab()).max_steps(classes)
                    + a.square_queries as f64 / 3.0
            }
        }
    }

    /// Runs the attack on the batch (`x`, `y`); `seed` fixes its random draws.
    pub fn run(&self, model: &Vit, x: &Tensor, y: &Tensor, seed: u64, device: &Device) -> Result<AttackOutcome> {
        Ok(self.run_attributed(model, x, y, seed, device)?.0)
    }

    /// [`Attack::run`], and per point the member that broke it: AutoAttack's (an index into
    /// [`super::attack::autoattack::MEMBERS`]), 0 for a single attack; `None` for a point that is
    /// robust or misclassified clean.
    pub fn run_attributed(
        &self,
        model: &Vit,
        x: &Tensor,
        y: &Tensor,
        seed: u64,
        device: &Device,
    ) -> Result<(AttackOutcome, Vec<Option<u8>>)> {
        let parts = super::batch_parts(device);
        let out = match self {
            Attack::Pgd(p) => pgd_data_parallel(model, x, y, p, seed, parts)?,
            // Split over the cores as PGD is (one batch at a time would use one of them).
            Attack::Apgd(a) => join(split(x, y, parts, seed, |x, y, s| apgd(model, x, y, a, s))?)?,
            Attack::Fab(f) => join(split(x, y, parts, seed, |x, y, s| fab_t(model, x, y, f, s))?)?,
            Attack::Square(q) => join(split(x, y, parts, seed, |x, y, s| square(model, x, y, q, s))?)?,
            Attack::AutoAttack(a) => {
                let e = autoattack_split(model, x, y, a, seed, parts)?;
                return Ok((e.outcome, e.broken_by));
            }
        };
        let by = out
            .clean_correct
            .iter()
            .zip(&out.robust)
            .map(|(c, r)| (*c && !*r).then_some(0))
            .collect();
        Ok((out, by))
    }
}

/// What [`robust_levels_from`] returns: per image, its level (see [`robust_levels`]) and the
/// member of the attack that broke it at the radius where it fell (see
/// [`Attack::run_attributed`]); `None` for an image misclassified clean, robust at every radius,
/// or not attacked here (a `prior` image broken at an earlier radius).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Levels {
    /// Per image: 0 = misclassified clean, 1 + the number of radii it survives.
    pub levels: Vec<u8>,
    /// Per image: the member that broke it.
    pub broken_by: Vec<Option<u8>>,
}

/// The seed of attack `k` (0-based, in order of increasing ε) on batch `b`: attack 0 uses
/// `seed + b` (what a single-ε evaluation has always used), later ones a distinct stream.
fn attack_seed(seed: u64, batch: usize, k: usize) -> u64 {
    let base = seed.wrapping_add(batch as u64);
    if k == 0 {
        base
    } else {
        base ^ (k as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }
}

/// Per-image outcome of a nested multi-ε evaluation: `levels[i]` = 0 when image i is
/// misclassified clean; otherwise 1 + the number of radii (in increasing order) it survives.
/// So `levels[i] >= 1` is clean-correct and `levels[i] >= k + 2` is robust at `attacks[k]`.
///
/// `attacks` must be ordered by increasing ε. The first attack runs on every image (its clean
/// forward is the clean evaluation; it attacks only the clean-correct points); each later,
/// larger-ε attack runs only on the points that survived the previous one. This is exact, not
/// an approximation: an adversarial example inside the ε-ball is inside every larger ball, so a
/// point broken at ε_k is broken at every ε_j > ε_k. Robust accuracy is therefore
/// non-increasing in ε by construction, and each attack pays only for the points still robust.
/// With one attack the outcome equals [`robust_counts`] with the same seed (it is that).
pub fn robust_levels(
    model: &Vit,
    data: &Dataset,
    ids: &[usize],
    batch: usize,
    attacks: &[Attack],
    seed: u64,
    device: &Device,
) -> Result<Vec<u8>> {
    Ok(robust_levels_from(model, data, ids, batch, attacks, seed, device, None)?.levels)
}

/// [`robust_levels`], resumed when `prior` is `Some((levels, done))`: `levels` are what the first
/// `done` attacks of `attacks` gave (as [`robust_levels`] with `attacks[..done]` returned them),
/// and only the later, larger radii are attacked — on the points robust at every earlier one,
/// batch by batch, with the same random streams. The result is exactly what [`robust_levels`]
/// with all of `attacks` returns: adding a radius never repeats the work already done, nor
/// changes its numbers. With the levels comes, per image, the member that broke it ([`Levels`]).
#[allow(clippy::too_many_arguments)]
pub fn robust_levels_from(
    model: &Vit,
    data: &Dataset,
    ids: &[usize],
    batch: usize,
    attacks: &[Attack],
    seed: u64,
    device: &Device,
    prior: Option<(&[u8], usize)>,
) -> Result<Levels> {
    check_levels_input(ids, attacks, prior)?;
    // Attack a frozen view: input gradients only, no parameter gradients.
    let nested = Nested {
        model: &model.frozen(),
        attacks,
        seed,
        device,
    };
    let mut levels = Vec::with_capacity(ids.len());
    let mut broken_by = Vec::with_capacity(ids.len());
    for (bi, chunk) in ids.chunks(batch.max(1)).enumerate() {
        let start = bi * batch.max(1);
        // Positions (within the chunk) still robust after the attacks so far.
        let (lv, alive, done) = match prior {
            Some((p, done)) => {
                let lv = p[start..start + chunk.len()].to_vec();
                let alive: Vec<usize> = (0..chunk.len()).filter(|&i| lv[i] as usize == done + 1).collect();
                if alive.is_empty() || done == attacks.len() {
                    levels.extend(lv);
                    broken_by.extend(std::iter::repeat_n(None, chunk.len()));
                    continue;
                }
                (lv, alive, done)
            }
            None => (vec![0u8; chunk.len()], Vec::new(), 0),
        };
        let (x, y) = data.batch(chunk, device)?;
        let x = x.to_dtype(nested.model.dtype())?;
        let (lv, by) = nested.batch(&x, &y, bi, (lv, alive, done))?;
        levels.extend(lv);
        broken_by.extend(by);
    }
    Ok(Levels { levels, broken_by })
}

/// The checks of [`robust_levels_from`]: `prior` levels that fit `ids` and the first radii of
/// `attacks`, and `attacks` in increasing ε.
fn check_levels_input(ids: &[usize], attacks: &[Attack], prior: Option<(&[u8], usize)>) -> Result<()> {
    if let Some((levels, done)) = prior
        && (done == 0
            || done > attacks.len()
            || levels.len() != ids.len()
            || levels.iter().any(|&l| l as usize > done + 1))
    {
        return Err(crate::Error::invalid(
            "prior levels",
            format!(
                "must be {} levels of the first {done} of {} radii",
                ids.len(),
                attacks.len()
            ),
            format!("{} levels, max {:?}", levels.len(), levels.iter().max()),
        ));
    }
    if attacks.windows(2).any(|w| w[1].eps() < w[0].eps()) {
        return Err(crate::Error::invalid(
            "attack.eps",
            "radii must be in increasing order",
            format!("{:?}", attacks.iter().map(Attack::eps).collect::<Vec<_>>()),
        ));
    }
    Ok(())
}

/// A nested multi-ε evaluation ([`robust_levels`]) of a frozen model, batch by batch.
struct Nested<'a> {
    model: &'a Vit,
    /// By increasing ε.
    attacks: &'a [Attack],
    seed: u64,
    device: &'a Device,
}

impl Nested<'_> {
    /// The levels and the members that broke each image of batch `bi` (`x`, `y`), from `state`:
    /// its levels so far, the positions still robust, and how many attacks already ran on it.
    fn batch(
        &self,
        x: &Tensor,
        y: &Tensor,
        bi: usize,
        (mut lv, mut alive, done): (Vec<u8>, Vec<usize>, usize),
    ) -> Result<(Vec<u8>, Vec<Option<u8>>)> {
        let (model, device, seed) = (self.model, self.device, self.seed);
        let mut by = vec![None; lv.len()];
        for (k, attack) in self.attacks.iter().enumerate().skip(done) {
            let out = if k == 0 {
                let (out, b) = attack.run_attributed(model, x, y, attack_seed(seed, bi, 0), device)?;
                for (i, ok) in out.clean_correct.iter().enumerate() {
                    if *ok {
                        lv[i] = 1;
                    }
                }
                by = b;
                alive = (0..lv.len()).collect();
                out
            } else {
                if alive.is_empty() {
                    break;
                }
                let idx = super::attack::index_tensor(&alive, device)?;
                let (xs, ys) = (x.index_select(&idx, 0)?, y.index_select(&idx, 0)?);
                let (out, b) = attack.run_attributed(model, &xs, &ys, attack_seed(seed, bi, k), device)?;
                for (&i, b) in alive.iter().zip(b) {
                    by[i] = b;
                }
                out
            };
            alive = alive
                .iter()
                .zip(&out.robust)
                .filter(|(_, r)| **r)
                .map(|(&i, _)| i)
                .collect();
            for &i in &alive {
                lv[i] = k as u8 + 2;
            }
        }
        if self.attacks.is_empty() {
            let ok = super::attack::correct(&forward_data_parallel(model, x, super::batch_parts(device))?, y)?;
            for (i, ok) in ok.iter().enumerate() {
                lv[i] = u8::from(*ok);
            }
        }
        Ok((lv, by))
    }
}

/// Clean and robust counts under `attack`; batch b uses seed `seed + b` for its random start.
pub fn robust_counts(
    model: &Vit,
    data: &Dataset,
    ids: &[usize],
    batch: usize,
    attack: &Attack,
    seed: u64,
    device: &Device,
) -> Result<EvalCounts> {
    let levels = robust_levels(model, data, ids, batch, std::slice::from_ref(attack), seed, device)?;
    Ok(EvalCounts {
        n: levels.len(),
        clean: levels.iter().filter(|l| **l >= 1).count(),
        robust: levels.iter().filter(|l| **l >= 2).count(),
    })
}
