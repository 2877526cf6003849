//! AutoAttack's ensemble, ℓ∞ (Croce & Hein 2020, ICML, §5 "AutoAttack"; `autoattack.py`,
//! `version='standard'`): APGD-CE (100 iterations), APGD-T (targeted DLR, 9 target classes × 100
//! iterations) and Square (5,000 queries), in that order, each attacking only the points every
//! earlier member left robust; a point is robust when no member breaks it. Per member the count of
//! points it broke is kept.
//!
//! The standard version also runs FAB-T between APGD-T and Square; it is not implemented here
//! yet, so this ensemble is AutoAttack's standard version without FAB-T (in Croce & Hein's Table
//! 2, FAB-T rarely breaks a point the APGD pair has not; the reports name the members that ran).

use candle_core::{Result as CResult, Tensor};

use super::apgd::{ApgdConfig, ApgdLoss, apgd};
use super::square::{SquareConfig, square};
use super::{AttackOutcome, Classifier, correct, index_tensor, scatter_rows};

/// The ensemble's settings (defaults: AutoAttack's standard version).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AutoAttackConfig {
    /// ℓ∞ radius in [0, 1] pixel units.
    pub eps: f64,
    /// APGD iterations (APGD-CE, and per target for APGD-T): 100.
    pub apgd_steps: usize,
    /// APGD-T target classes: 9 (fewer with fewer classes).
    pub targets: usize,
    /// Square queries: 5,000.
    pub square_queries: usize,
}

impl Default for AutoAttackConfig {
    fn default() -> Self {
        Self {
            eps: 1.0 / 255.0,
            apgd_steps: 100,
            targets: 9,
            square_queries: 5000,
        }
    }
}

/// The members, in the order they run.
pub const MEMBERS: [&str; 3] = ["apgd-ce", "apgd-t", "square"];

/// What the ensemble returns: the combined outcome and, per member of [`MEMBERS`], how many points
/// it broke (points it never saw, because an earlier member broke them, are not counted).
#[derive(Debug, Clone)]
pub struct EnsembleOutcome {
    /// Combined: robust = clean-correct and broken by no member.
    pub outcome: AttackOutcome,
    /// Points broken by each member.
    pub broken: [usize; 3],
}

impl AutoAttackConfig {
    /// The configuration of its APGD member with `loss` (APGD-CE or APGD-T).
    pub fn apgd(&self, loss: ApgdLoss) -> ApgdConfig {
        ApgdConfig {
            eps: self.eps,
            steps: self.apgd_steps,
            loss,
            targets: self.targets,
        }
    }

    /// Member `k`'s attack on `xs` (every point clean-correct).
    fn member<M: Classifier + ?Sized>(
        &self,
        k: usize,
        model: &M,
        xs: &Tensor,
        ys: &Tensor,
        seed: u64,
    ) -> CResult<AttackOutcome> {
        match k {
            0 => apgd(model, xs, ys, &self.apgd(ApgdLoss::Ce), seed),
            1 => apgd(model, xs, ys, &self.apgd(ApgdLoss::DlrTargeted), seed),
            _ => square(
                model,
                xs,
                ys,
                &SquareConfig {
                    eps: self.eps,
                    queries: self.square_queries,
                    ..SquareConfig::default()
                },
                seed,
            ),
        }
    }
}

/// Runs the ensemble on `x` (labels `y`); member k uses a seed derived from `seed` and k.
pub fn autoattack<M: Classifier + ?Sized>(
    model: &M,
    x: &Tensor,
    y: &Tensor,
    cfg: &AutoAttackConfig,
    seed: u64,
) -> CResult<EnsembleOutcome> {
    let b = x.dim(0)?;
    let clean_correct = correct(&model.logits(x)?, y)?;
    let mut forwards = b;
    let mut robust = clean_correct.clone();
    let mut adv = x.clone();
    let mut broken = [0usize; 3];
    for (k, count) in broken.iter_mut().enumerate() {
        let ids: Vec<usize> = (0..b).filter(|&i| robust[i]).collect();
        if ids.is_empty() {
            break;
        }
        let idx = index_tensor(&ids, x.device())?;
        let (xs, ys) = (x.index_select(&idx, 0)?, y.index_select(&idx, 0)?);
        let member_seed = seed ^ (k as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let out = cfg.member(k, model, &xs, &ys, member_seed)?;
        forwards += out.image_forwards;
        let hit: Vec<usize> = (0..ids.len()).filter(|&j| !out.robust[j]).collect();
        *count = hit.len();
        if hit.is_empty() {
            continue;
        }
        let rows = out.adv.index_select(&index_tensor(&hit, x.device())?, 0)?;
        let at: Vec<usize> = hit.iter().map(|&j| ids[j]).collect();
        adv = scatter_rows(&adv, &at, &rows)?;
        for &i in &at {
            robust[i] = false;
        }
    }
    Ok(EnsembleOutcome {
        outcome: AttackOutcome {
            adv,
            clean_correct,
            robust,
            image_forwards: forwards,
        },
        broken,
    })
}

/// [`autoattack`] with the batch split into `parts` slices on separate threads
/// ([`super::split`]); the broken counts are summed.
pub fn autoattack_split<M: Classifier + Sync + ?Sized>(
    model: &M,
    x: &Tensor,
    y: &Tensor,
    cfg: &AutoAttackConfig,
    seed: u64,
    parts: usize,
) -> CResult<EnsembleOutcome> {
    let outs = super::split(x, y, parts, seed, |x, y, s| autoattack(model, x, y, cfg, s))?;
    let mut broken = [0usize; 3];
    for o in &outs {
        for (b, k) in broken.iter_mut().zip(o.broken) {
            *b += k;
        }
    }
    Ok(EnsembleOutcome {
        outcome: super::join(outs.into_iter().map(|o| o.outcome).collect())?,
        broken,
    })
}
