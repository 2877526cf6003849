//! AutoAttack's ensemble, ℓ∞ (Croce & Hein 2020, ICML, §5 "AutoAttack"; `autoattack.py`,
//! `version='standard'`): APGD-CE (100 iterations), APGD-T (targeted DLR, 9 target classes × 100
//! iterations), FAB-T (9 target classes × 100 iterations) and Square (5,000 queries), in that
//! order, each attacking only the points every earlier member left robust; a point is robust when
//! no member breaks it. Per member the count of points it broke is kept.
//!
//! On a model with fewer than 4 classes (a binary task, say) the targeted DLR is undefined and the
//! reference stops; here APGD-T's place is taken by APGD with the targeted logit margin
//! ([`ApgdLoss::MarginTargeted`]) over the same target classes, and the reports say so.

use candle_core::{Result as CResult, Tensor};

use super::apgd::{ApgdConfig, ApgdLoss, apgd};
use super::fab::{FabConfig, fab_t};
use super::square::{SquareConfig, square};
use super::{AttackOutcome, Classifier, cascade, correct};

/// The ensemble's settings (defaults: AutoAttack's standard version).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AutoAttackConfig {
    /// ℓ∞ radius in [0, 1] pixel units.
    pub eps: f64,
    /// APGD and FAB iterations (APGD-CE, and per target for APGD-T and FAB-T): 100.
    #[serde(alias = "apgd_steps")]
    pub steps: usize,
    /// APGD-T and FAB-T target classes: 9 (fewer with fewer classes).
    pub targets: usize,
    /// Square queries: 5,000.
    pub square_queries: usize,
}

impl Default for AutoAttackConfig {
    fn default() -> Self {
        Self {
            eps: 1.0 / 255.0,
            steps: 100,
            targets: 9,
            square_queries: 5000,
        }
    }
}

/// The members, in the order they run.
pub const MEMBERS: [&str; 4] = ["apgd-ce", "apgd-t", "fab-t", "square"];

/// What the ensemble returns: the combined outcome and, per member of [`MEMBERS`], how many points
/// it broke (points it never saw, because an earlier member broke them, are not counted).
#[derive(Debug, Clone)]
pub struct EnsembleOutcome {
    /// Combined: robust = clean-correct and broken by no member.
    pub outcome: AttackOutcome,
    /// Points broken by each member.
    pub broken: [usize; 4],
    /// Per point: the member (index into [`MEMBERS`]) that broke it; `None` when no member did
    /// (robust, or misclassified clean).
    pub broken_by: Vec<Option<u8>>,
}

impl AutoAttackConfig {
    /// The configuration of its APGD member with `loss` (APGD-CE or APGD-T).
    pub fn apgd(&self, loss: ApgdLoss) -> ApgdConfig {
        ApgdConfig {
            eps: self.eps,
            steps: self.steps,
            loss,
            targets: self.targets,
        }
    }

    /// The configuration of its FAB-T member.
    pub fn fab(&self) -> FabConfig {
        FabConfig {
            eps: self.eps,
            steps: self.steps,
            targets: self.targets,
            ..FabConfig::default()
        }
    }

    /// APGD-T's loss on a model with `classes` outputs: the targeted DLR, or the targeted margin
    /// with fewer than 4 classes.
    pub fn apgd_t_loss(classes: usize) -> ApgdLoss {
        if classes >= 4 {
            ApgdLoss::DlrTargeted
        } else {
            ApgdLoss::MarginTargeted
        }
    }

    /// Member `k`'s attack on `xs` (every point clean-correct) of a model with `classes` outputs.
    fn member<M: Classifier + ?Sized>(
        &self,
        k: usize,
        classes: usize,
        model: &M,
        xs: &Tensor,
        ys: &Tensor,
        seed: u64,
    ) -> CResult<AttackOutcome> {
        match k {
            0 => apgd(model, xs, ys, &self.apgd(ApgdLoss::Ce), seed),
            1 => apgd(model, xs, ys, &self.apgd(Self::apgd_t_loss(classes)), seed),
            2 => fab_t(model, xs, ys, &self.fab(), seed),
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
    let clean_logits = model.logits(x)?;
    let classes = clean_logits.dim(1)?;
    let clean_correct = correct(&clean_logits, y)?;
    let mut done = cascade(x, y, clean_correct.clone(), MEMBERS.len(), false, |k, _, xs, ys| {
        let member_seed = seed ^ (k as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let out = cfg.member(k, classes, model, xs, ys, member_seed)?;
        Ok((out.adv, out.robust, out.image_forwards))
    })?;
    let mut broken = [0; MEMBERS.len()];
    for m in done.broken_by.iter().flatten() {
        broken[*m as usize] += 1;
    }
    let broken_by = std::mem::take(&mut done.broken_by);
    Ok(EnsembleOutcome {
        outcome: done.outcome(clean_correct, b),
        broken,
        broken_by,
    })
}

/// [`autoattack`] with the batch split into `parts` slices on separate threads
/// ([`super::split`]); the broken counts are summed, the per-point members joined in order.
pub fn autoattack_split<M: Classifier + Sync + ?Sized>(
    model: &M,
    x: &Tensor,
    y: &Tensor,
    cfg: &AutoAttackConfig,
    seed: u64,
    parts: usize,
) -> CResult<EnsembleOutcome> {
    let outs = super::split(x, y, parts, seed, |x, y, s| autoattack(model, x, y, cfg, s))?;
    let mut broken = [0usize; MEMBERS.len()];
    for o in &outs {
        for (b, k) in broken.iter_mut().zip(o.broken) {
            *b += k;
        }
    }
    let broken_by = outs.iter().flat_map(|o| o.broken_by.iter().copied()).collect();
    Ok(EnsembleOutcome {
        outcome: super::join(outs.into_iter().map(|o| o.outcome).collect())?,
        broken,
        broken_by,
    })
}
