//! One run's path: the linear-probe head a path may start from, where the path starts, and
//! the replay that evaluates every α as the run evaluated its checkpoints, checking α = 0 and 1
//! against the records.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use candle_core::Tensor;

use crate::engine::Vit;
use crate::engine::peft::Strategy;
use crate::error::{Error, Result};
use crate::validate::checkpoints::interpolate::{InterpCell, InterpSpec, Outcomes};
use crate::validate::checkpoints::replay::{RunView, replay};
use crate::validate::sweep::config::ValidRun;
use crate::validate::sweep::records::{encode_bools, encode_levels};
use crate::validate::sweep::runner::{self, DatasetRuns};

/// The linear-probing run of a (task, seed): its final head and its final record.
pub(crate) struct LpHead {
    /// The head's tensors at the run's last step.
    pub(crate) tensors: HashMap<String, Tensor>,
    /// The run's records and images (its final record is α = 0's reference).
    view: RunView,
}

/// Replays the linear-probing run of (the task of `ctx`, `seed`) in `out` to its last step.
pub(crate) fn lp_head(run: &ValidRun, ctx: &DatasetRuns, seed: u64, out: &Path, quiet: bool) -> Result<LpHead> {
    let view = RunView::read(run, ctx, Strategy::LinearProbe, seed, out)?;
    let last = view.recs.evals.last().expect("finished").step;
    let mut tensors = None;
    replay(
        run,
        ctx,
        &view,
        Strategy::LinearProbe,
        seed,
        &[last],
        quiet,
        |model, _| {
            tensors = Some(model.trainable_snapshot()?);
            Ok(())
        },
    )?;
    Ok(LpHead {
        tensors: tensors.expect("replayed to the last step"),
        view,
    })
}

/// Where the path of `model` starts: [`crate::engine::Vit::interpolation_start`] from `initial`,
/// with the head replaced by `head`'s when given (every head tensor must be one of the model's
/// trainable tensors, with the same shape).
pub(crate) fn path_start(
    model: &Vit,
    initial: &HashMap<String, Tensor>,
    head: Option<&LpHead>,
) -> Result<HashMap<String, Tensor>> {
    let mut start = model.interpolation_start(initial)?;
    if let Some(h) = head {
        for (k, v) in &h.tensors {
            match start.get(k) {
                Some(t) if t.dims() == v.dims() => {
                    start.insert(k.clone(), v.clone());
                }
                _ => {
                    return Err(Error::invalid(
                        "--head-start",
                        "a linear-probe head with the fine-tuned model's head keys and shapes",
                        k,
                    ));
                }
            }
        }
    }
    Ok(start)
}

/// Strategies whose trainable tensors start at the pretrained function exactly (besides the
/// head), so that α = 0 with the linear-probe head is the linear-probing run's final model (the
/// registry's [`crate::engine::peft::Definition::exact_start`]).
fn exact_start(s: Strategy) -> bool {
    s.def().exact_start()
}

/// Replays one run, then evaluates the path.
#[allow(clippy::too_many_arguments)]
pub(super) fn interpolate_run(
    run: &ValidRun,
    ctx: &DatasetRuns,
    strategy: Strategy,
    seed: u64,
    out: &Path,
    spec: &InterpSpec,
    head: Option<&LpHead>,
    quiet: bool,
) -> Result<InterpCell> {
    let view = RunView::read(run, ctx, strategy, seed, out)?;
    let last = view.recs.evals.last().expect("finished").step;
    // A strategy that trains nothing but the head (linear probing), from its own final head: a
    // constant path.
    let alphas: Vec<f64> = if head.is_some() && strategy.def().frozen_backbone() {
        vec![0.0, 1.0]
    } else {
        spec.alphas.clone()
    };
    let on_path = OnPath {
        run,
        ctx,
        view: &view,
        strategy,
        seed,
        last,
        head,
    };
    let mut initial = None;
    let mut path = Vec::new();
    let t = Instant::now();
    replay(run, ctx, &view, strategy, seed, &[0, last], quiet, |model, step| {
        if step == 0 {
            initial = Some(model.trainable_snapshot()?);
            return Ok(());
        }
        let start = path_start(model, initial.as_ref().expect("step 0 comes first"), head)?;
        for &alpha in &alphas {
            path.push(on_path.evaluate(model, &start, alpha)?);
        }
        Ok(())
    })?;
    Ok(InterpCell {
        dataset: ctx.data.spec.name.clone(),
        strategy: strategy.id().into(),
        seed,
        eps: view.recs.header.eps.clone(),
        run_attack: crate::validate::study::analysis::describe_attack(&view.recs.header.config),
        trajectory: view
            .recs
            .evals
            .iter()
            .map(|e| Outcomes {
                step: Some(e.step),
                alpha: None,
                outcomes: e.outcomes.clone(),
                ood_outcomes: e.ood_outcomes.clone(),
            })
            .collect(),
        path,
        seconds: t.elapsed().as_secs_f64(),
    })
}

/// The models on one run's path, evaluated as the run evaluated its checkpoints.
struct OnPath<'a> {
    run: &'a ValidRun,
    ctx: &'a DatasetRuns<'a>,
    /// The run's records and evaluation images.
    view: &'a RunView,
    strategy: Strategy,
    seed: u64,
    /// The run's last step (the fine-tuned model, α = 1).
    last: u64,
    /// The linear-probe head the path starts from, if any.
    head: Option<&'a LpHead>,
}

impl OnPath<'_> {
    /// The outcomes of the model at `alpha` on the path from `start` to `model`; at α = 0 and 1
    /// checked image for image against the record they must reproduce, when there is one.
    fn evaluate(&self, model: &Vit, start: &HashMap<String, Tensor>, alpha: f64) -> Result<Outcomes> {
        let m = model.interpolated(start, alpha)?;
        // α = 0 is the step-0 model, or the linear-probing run's final one.
        // (A schedule without step 0 has no record to check α = 0 against.)
        let (at, reference) = match (alpha == 0.0, self.head) {
            (true, None) => (0, self.view.find(0).is_some().then_some(self.view)),
            (true, Some(h)) => (self.last, exact_start(self.strategy).then_some(&h.view)),
            (false, _) => (self.last, (alpha == 1.0).then_some(self.view)),
        };
        let ev = runner::evaluate::evaluate(&m, self.run, self.ctx.data, &self.view.eval_ids, self.seed, at)?;
        let got = Outcomes {
            step: None,
            alpha: Some(alpha),
            outcomes: encode_levels(&ev.levels),
            ood_outcomes: ev.ood.as_deref().map(encode_bools),
        };
        if let Some(v) = reference {
            check(v, at, alpha, &got)?;
        }
        Ok(got)
    }
}

/// `got` (the model at `alpha`) against `v`'s record at step `at`: an error naming the first
/// kind of outcome that differs (clean or robust, then OOD) and on how many images.
fn check(v: &RunView, at: u64, alpha: f64, got: &Outcomes) -> Result<()> {
    let rec = v.at(at);
    let differ = |a: &str, b: &str| a.bytes().zip(b.bytes()).filter(|(x, y)| x != y).count();
    let d = differ(&got.outcomes, &rec.outcomes);
    if d > 0 {
        return Err(v.mismatch(at, &format!("clean or robust outcome at α = {alpha}"), d));
    }
    if let (Some(a), Some(b)) = (&got.ood_outcomes, &rec.ood_outcomes) {
        let d = differ(a, b);
        if d > 0 {
            return Err(v.mismatch(at, &format!("OOD outcome at α = {alpha}"), d));
        }
    }
    Ok(())
}
