//! The evaluation stage of a run: clean, robust (every radius) and OOD outcomes on the fixed
//! evaluation images, and the record counted from them.

use std::time::Instant;

use crate::engine::Vit;
use crate::engine::eval::{clean_correct, robust_levels};
use crate::error::Result;
use crate::tradeoff::wilson;
use crate::validate::sweep::config::ValidRun;
use crate::validate::sweep::data::TaskData;
use crate::validate::sweep::records::{self, EvalRecord, Header, RobustAt, SCHEMA_VERSION};
use crate::validate::sweep::runner::Clock;

/// Outcomes of one scheduled evaluation.
pub(crate) struct Evaluation {
    pub(crate) levels: Vec<u8>,
    pub(crate) ood: Option<Vec<bool>>,
    pub(super) eval_s: f64,
    pub(super) attack_s: f64,
}

/// Clean, robust (every radius, one nested pass) and OOD outcomes of `model` on the evaluation
/// images. The attack's random starts are seeded by (seed, step).
pub(crate) fn evaluate(
    model: &Vit,
    run: &ValidRun,
    data: &TaskData,
    eval_ids: &[usize],
    seed: u64,
    step: u64,
) -> Result<Evaluation> {
    let device = model.device();
    let t1 = Instant::now();
    let ood = match &data.ood {
        Some(o) => Some(clean_correct(model, o, eval_ids, 128, device)?),
        None => None,
    };
    let eval_s = t1.elapsed().as_secs_f64();
    let t2 = Instant::now();
    let attack_seed = crate::seeds::attack(seed, step);
    let levels = robust_levels(model, &data.test, eval_ids, 128, &run.attacks, attack_seed, device)?;
    Ok(Evaluation {
        levels,
        ood,
        eval_s,
        attack_s: t2.elapsed().as_secs_f64(),
    })
}

/// The record of one evaluation: accuracies with Wilson intervals, counted from the outcomes.
pub(super) fn record(
    header: &Header,
    step: u64,
    ev: &Evaluation,
    loss: Option<f64>,
    clock: Clock,
) -> Result<EvalRecord> {
    let n = ev.levels.len() as u64;
    let count = |min: u8| ev.levels.iter().filter(|l| **l >= min).count() as u64;
    let clean = count(1);
    let robust = header
        .eps
        .iter()
        .enumerate()
        .map(|(k, &eps)| {
            let r = count(k as u8 + 2);
            Ok(RobustAt {
                eps,
                acc: r as f64 / n as f64,
                ci: wilson(r, n)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let ood_ok = ev.ood.as_ref().map(|o| o.iter().filter(|b| **b).count() as u64);
    Ok(EvalRecord {
        kind: "eval".into(),
        schema_version: SCHEMA_VERSION,
        config_hash: header.config_hash.clone(),
        seed: header.seed,
        step,
        clean_acc: clean as f64 / n as f64,
        clean_ci: wilson(clean, n)?,
        robust,
        ood_acc: ood_ok.map(|o| o as f64 / n as f64),
        ood_ci: ood_ok.map(|o| wilson(o, n)).transpose()?,
        n_eval: n as usize,
        outcomes: records::encode_levels(&ev.levels),
        ood_outcomes: ev.ood.as_deref().map(records::encode_bools),
        loss,
        elapsed_s: clock.elapsed,
        train_s: clock.train,
        eval_s: clock.eval,
        attack_s: clock.attack,
    })
}
