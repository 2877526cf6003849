//! Clean and robust evaluation of a model on a dataset, batch by batch.

use candle_core::{Device, Tensor};

use super::Vit;
use super::attack::{ApgdConfig, AttackOutcome, PgdConfig, apgd, pgd_split};
use super::data::Dataset;
use crate::error::Result;

/// Which attack measures robustness.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Attack {
    /// PGD ℓ∞.
    Pgd(PgdConfig),
    /// APGD-CE.
    Apgd(ApgdConfig),
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
/// thread and concatenated in order (CPU data parallelism, as `train_step_split` and `pgd_split`;
/// `parts` = 1 is [`Vit::forward`]). Equal to the whole-batch forward up to float rounding.
pub fn forward_split(model: &Vit, x: &Tensor, parts: usize) -> Result<Tensor> {
    if parts <= 1 {
        return Ok(model.forward(x)?);
    }
    let outs = super::split_batch(x.dim(0)?, parts, |start, len| model.forward(&x.narrow(0, start, len)?))?;
    Ok(Tensor::cat(&outs, 0)?)
}

/// Clean accuracy counts of `model` on `ids` of `data` (batches forwarded with [`forward_split`]).
pub fn clean_counts(model: &Vit, data: &Dataset, ids: &[usize], batch: usize, device: &Device) -> Result<EvalCounts> {
    let mut c = EvalCounts::default();
    for chunk in ids.chunks(batch.max(1)) {
        let (x, y) = data.batch(chunk, device)?;
        let x = x.to_dtype(model.dtype())?;
        let ok = super::attack::correct(&forward_split(model, &x, super::batch_parts(device))?, &y)?;
        c.n += chunk.len();
        c.clean += ok.iter().filter(|b| **b).count();
    }
    Ok(c)
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
    let mut c = EvalCounts::default();
    // Attack a frozen view: input gradients only, no parameter gradients.
    let model = &model.frozen();
    for (bi, chunk) in ids.chunks(batch.max(1)).enumerate() {
        let (x, y) = data.batch(chunk, device)?;
        let x = x.to_dtype(model.dtype())?;
        let out: AttackOutcome = match attack {
            Attack::Pgd(p) => pgd_split(model, &x, &y, p, seed + bi as u64, super::batch_parts(device))?,
            Attack::Apgd(a) => apgd(model, &x, &y, a, seed + bi as u64)?,
        };
        c.n += chunk.len();
        c.clean += out.clean_correct.iter().filter(|b| **b).count();
        c.robust += out.robust.iter().filter(|b| **b).count();
    }
    Ok(c)
}
