//! `validate interpolate`: how much robustness weight-space interpolation between the starting
//! and the fine-tuned parameters gives back, per strategy (issue 18, part 2; WiSE-FT, Wortsman
//! et al. 2022, "Robust fine-tuning of zero-shot models", CVPR, eq. 1).
//!
//! For every finished run, the fine-tuning is replayed (`validate::replay`) and the models
//! θ(α) = (1 − α)·θ₀ + α·θ over the parameters the strategy trains ([`crate::engine::Vit::interpolated`]) are
//! evaluated at each α exactly as the run evaluated its checkpoints: clean, robust at every radius
//! of the run with the run's attack, OOD, on the same images. θ₀ are the values before
//! fine-tuning: the head from its initialisation, LoRA's B from 0 with A at its fine-tuned value
//! (so the path is exactly W₀ + α·ΔW in merged weights), (IA)³'s vectors from one. α = 0 and
//! α = 1 are always evaluated and must reproduce the run's step-0 and final records image for
//! image (clean, every radius, OOD) — their attack is seeded as the run's was at those steps — or
//! the command stops with an error; the α in between use the final step's attack seed.
//!
//! `--head-start linear-probe` (WiSE-FT's own setting, where θ₀ is a zero-shot head, and LP-FT's,
//! Kumar et al. 2022, "Fine-Tuning can Distort Pretrained Features", ICLR) starts the head from the
//! linear-probing run's final head of the same task and seed instead (replayed and checked like
//! any run): θ₀ is then "the pretrained backbone with a trained head". Where the strategy's
//! start is the pretrained function exactly (full, LoRA, BitFit, (IA)³), the model at α = 0 *is*
//! the linear-probing run's final model, and it must reproduce that record image for image
//! (clean, every radius — the attack seeded as at that step — and OOD); Adapter and Compacter
//! start from near-zero (not zero) up-projections, so their α = 0 is only close to it and is not
//! checked. Linear probing's own path would be constant, so only its α = 0 and 1 are evaluated.
//! Results go to `DIR/interpolate-lp-head/`, beside the default start's `DIR/interpolate/`.
//!
//! The comparison per (task, strategy, ε): the AUC of the interpolation path's Pareto frontier
//! against the AUC of the training trajectory's (every recorded step), and the robustness the
//! path gives back at the fine-tuned model's clean accuracy: the best robust accuracy on the
//! (seed-mean) path among the α whose clean accuracy is within [`CLEAN_SLACK`] of the final
//! model's, minus the final robust accuracy — as a share of what the trajectory lost after its
//! robustness peak, when it lost anything. Intervals: 95% percentile bootstrap over seeds and
//! evaluation images — per replicate the seeds are drawn with replacement, then the images (the
//! same draw for every point of a task: paired) — so with several seeds they cover the spread
//! of training as well as the sampling of test images.
//!
//! Results: `DIR/interpolate/spec.json`, one JSON per run (resumable), `interpolate.md`,
//! `interpolate.csv` and one figure per (task, strategy): `<task>_<strategy>.{png,svg,csv}`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::Device;
use plotters::prelude::SeriesLabelPosition;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use crate::validate::checkpoints::replay::{
    RunView, check_spec, for_each_run, load_results, replay, selected_datasets, selected_seeds,
};
use crate::validate::study::report::eps_label;
use crate::validate::sweep::config::ValidRun;
use crate::validate::sweep::records::{encode_bools, encode_levels};
use crate::validate::sweep::runner::{self, DatasetRuns};

use crate::engine::peft::Strategy;
use crate::error::{Error, Result};
use crate::io::num;
use crate::io::{Csv, write_atomic};
use crate::plot::{Axis, LineChart, Series, Style, color, write_figure};
use crate::tradeoff::bootstrap::{percentile_interval, resample_indices};
use crate::tradeoff::{AucRule, Interval, Point, auc};

/// "Equal clean accuracy": a point on the path counts as matching the fine-tuned model's clean
/// accuracy when it is at most this much (one point) below it.
pub const CLEAN_SLACK: f64 = 0.01;

/// The default interpolation weights: 0, 0.1, …, 1.
pub fn default_alphas() -> Vec<f64> {
    (0..=10).map(|i| i as f64 / 10.0).collect()
}

/// Where the head's path starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum HeadStart {
    /// Its initialisation (the fresh head), like every other trainable tensor.
    #[default]
    Init,
    /// The linear-probing run's final head (same task and seed).
    #[value(alias = "linear_probe", alias = "lp")]
    LinearProbe,
}

impl HeadStart {
    /// From `--head-start` (`init` or `linear-probe`).
    pub fn parse(s: &str) -> Result<HeadStart> {
        match s {
            "init" => Ok(HeadStart::Init),
            "linear-probe" | "linear_probe" | "lp" => Ok(HeadStart::LinearProbe),
            _ => Err(Error::invalid("--head-start", "init or linear-probe", s)),
        }
    }

    fn is_init(&self) -> bool {
        *self == HeadStart::Init
    }

    /// The folder of its results in a run folder: `interpolate/` or `interpolate-lp-head/`.
    pub fn folder(self) -> &'static str {
        match self {
            HeadStart::Init => "interpolate",
            HeadStart::LinearProbe => "interpolate-lp-head",
        }
    }

    /// As printed after "interpolated".
    pub fn words(self) -> &'static str {
        match self {
            HeadStart::Init => "",
            HeadStart::LinearProbe => " from the linear-probe head",
        }
    }
}

/// What an interpolation folder measures (`DIR/interpolate/spec.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterpSpec {
    /// Interpolation weights, increasing, in [0, 1], always with 0 and 1.
    pub alphas: Vec<f64>,
    /// Where the head starts (absent in the file when `init`, so older folders keep their spec).
    #[serde(default, skip_serializing_if = "HeadStart::is_init")]
    pub head_start: HeadStart,
}

impl InterpSpec {
    /// Checks the weights (each in [0, 1], no repeats) and adds 0 and 1 when missing: they are the
    /// checks against the records. Errors name `--alphas`.
    pub fn new(mut alphas: Vec<f64>) -> Result<Self> {
        if let Some(a) = alphas.iter().find(|a| !(0.0..=1.0).contains(*a)) {
            return Err(Error::invalid("--alphas", "interpolation weights in [0, 1]", a).refused());
        }
        alphas.extend([0.0, 1.0]);
        alphas.sort_by(f64::total_cmp);
        alphas.dedup();
        Ok(Self {
            alphas,
            head_start: HeadStart::Init,
        })
    }

    /// The same weights with the head starting from `head_start`.
    pub fn with_head_start(self, head_start: HeadStart) -> Self {
        Self { head_start, ..self }
    }
}

/// One evaluated model: per-image outcomes on the run's evaluation images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcomes {
    /// Step of the trajectory, or `None` on the interpolation path.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub step: Option<u64>,
    /// Interpolation weight, or `None` on the trajectory.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub alpha: Option<f64>,
    /// One digit per image: 0 = misclassified clean, 1 + k = robust at the k smallest radii.
    pub outcomes: String,
    /// One digit per image, 1 = its OOD version classified correctly (runs with an OOD set).
    pub ood_outcomes: Option<String>,
}

/// The interpolation of one run (`DIR/interpolate/<dataset>/<strategy>/seed<k>.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InterpCell {
    /// Dataset.
    pub dataset: String,
    /// Strategy id.
    pub strategy: String,
    /// Seed.
    pub seed: u64,
    /// The run's radii.
    pub eps: Vec<f64>,
    /// The run's attack in words.
    pub run_attack: String,
    /// Every recorded step (from the records).
    pub trajectory: Vec<Outcomes>,
    /// Every α (measured here).
    pub path: Vec<Outcomes>,
    /// Wall time of the evaluations along the path, seconds.
    pub seconds: f64,
}

/// The folder of a run folder's interpolation results from `head_start`.
pub fn interp_dir(out: &Path, head_start: HeadStart) -> PathBuf {
    out.join(head_start.folder())
}

/// Interpolates every finished run of `run` in `out` (seeds `seeds`, all when empty) and writes
/// the summary and figures; runs already in `DIR/interpolate/` are read, not recomputed.
pub fn interpolate(
    run: &ValidRun,
    out: &Path,
    spec: &InterpSpec,
    seeds: &[u64],
    device: &Device,
    quiet: bool,
) -> Result<Vec<InterpCell>> {
    crate::validate::sweep::inputs::check_inputs(run)?;
    runner::preflight(run, out).map_err(Error::refused)?;
    let seeds = selected_seeds(run, seeds)?;
    if spec.head_start == HeadStart::LinearProbe && !run.strategies.contains(&Strategy::LinearProbe) {
        return Err(Error::invalid(
            "--head-start",
            "a configuration with linear_probe among its strategies (its runs give the head)",
            "linear-probe",
        )
        .refused());
    }
    let dir = interp_dir(out, spec.head_start);
    check_spec(&dir, "interpolation", spec)?;
    // The linear-probing run's final head and record per (task, seed), replayed once.
    let mut heads: BTreeMap<(String, u64), LpHead> = BTreeMap::new();
    let cells = for_each_run(
        run,
        out,
        &dir,
        spec,
        (&selected_datasets(run, &[])?, &seeds, &run.strategies),
        device,
        quiet,
        |_| true,
        |ctx, s, seed, _| {
            let head = match spec.head_start {
                HeadStart::Init => None,
                HeadStart::LinearProbe => {
                    let key = (ctx.data.spec.name.clone(), seed);
                    if !heads.contains_key(&key) {
                        heads.insert(key.clone(), lp_head(run, ctx, seed, out, quiet)?);
                    }
                    Some(&heads[&key])
                }
            };
            interpolate_run(run, ctx, s, seed, out, spec, head, quiet)
        },
    )?;
    write_summary(&dir, &cells, spec, 1000)?;
    Ok(cells)
}

/// The linear-probing run of a (task, seed): its final head and its final record.
pub(crate) struct LpHead {
    /// The head's tensors at the run's last step.
    pub(crate) tensors: std::collections::HashMap<String, candle_core::Tensor>,
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
    model: &crate::engine::Vit,
    initial: &std::collections::HashMap<String, candle_core::Tensor>,
    head: Option<&LpHead>,
) -> Result<std::collections::HashMap<String, candle_core::Tensor>> {
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
/// head), so that α = 0 with the linear-probe head is the linear-probing run's final model.
fn exact_start(s: Strategy) -> bool {
    !matches!(s, Strategy::Adapter | Strategy::Compacter)
}

/// Replays one run, then evaluates the path.
#[allow(clippy::too_many_arguments)]
fn interpolate_run(
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
    let alphas: Vec<f64> = match (head, strategy) {
        // Linear probing from its own final head: a constant path.
        (Some(_), Strategy::LinearProbe) => vec![0.0, 1.0],
        _ => spec.alphas.clone(),
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
            let m = model.interpolated(&start, alpha)?;
            // α = 0 is the step-0 model, or the linear-probing run's final one.
            // (A schedule without step 0 has no record to check α = 0 against.)
            let (at, reference) = match (alpha == 0.0, head) {
                (true, None) => (0, view.find(0).is_some().then_some(&view)),
                (true, Some(h)) => (last, exact_start(strategy).then_some(&h.view)),
                (false, _) => (last, (alpha == 1.0).then_some(&view)),
            };
            let ev = runner::evaluate::evaluate(&m, run, ctx.data, &view.eval_ids, seed, at)?;
            let got = Outcomes {
                step: None,
                alpha: Some(alpha),
                outcomes: encode_levels(&ev.levels),
                ood_outcomes: ev.ood.as_deref().map(encode_bools),
            };
            if let Some(v) = reference {
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
            }
            path.push(got);
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

/// (clean, robust at radius `k`) over the image positions `pos`.
fn point(o: &Outcomes, k: usize, pos: &[usize]) -> Point {
    let b = o.outcomes.as_bytes();
    let (mut c, mut r) = (0usize, 0usize);
    for &i in pos {
        let l = b[i] - b'0';
        c += usize::from(l >= 1);
        r += usize::from(l as usize >= k + 2);
    }
    Point {
        acc: c as f64 / pos.len() as f64,
        rob: r as f64 / pos.len() as f64,
    }
}

/// The statistics of one (task, strategy, radius) over its seeds, on image positions `pos`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Stats {
    auc_traj: f64,
    auc_path: f64,
    final_clean: f64,
    final_rob: f64,
    /// Best robust on the seed-mean path at clean ≥ final − slack, and its α.
    best_rob: f64,
    best_alpha: f64,
    /// Peak robust over the trajectory's steps after 0, minus the final.
    lost: f64,
}

fn stats(cells: &[&InterpCell], k: usize, pos: &[usize]) -> Stats {
    let ns = cells.len() as f64;
    let mean = |f: &dyn Fn(&InterpCell) -> f64| cells.iter().map(|c| f(c)).sum::<f64>() / ns;
    let pts = |v: &[Outcomes]| v.iter().map(|o| point(o, k, pos)).collect::<Vec<_>>();
    let auc_traj = mean(&|c| auc(&pts(&c.trajectory), AucRule::Step));
    let auc_path = mean(&|c| auc(&pts(&c.path), AucRule::Step));
    let fin = |c: &InterpCell| point(c.trajectory.last().expect("finished"), k, pos);
    let final_clean = mean(&|c| fin(c).acc);
    let final_rob = mean(&|c| fin(c).rob);
    let peak = mean(&|c| {
        c.trajectory
            .iter()
            .filter(|o| o.step != Some(0))
            .map(|o| point(o, k, pos).rob)
            .fold(f64::NEG_INFINITY, f64::max)
    });
    let n_alpha = cells[0].path.len();
    let (mut best_rob, mut best_alpha) = (final_rob, 1.0);
    for a in 0..n_alpha {
        let p = (
            mean(&|c| point(&c.path[a], k, pos).acc),
            mean(&|c| point(&c.path[a], k, pos).rob),
        );
        if p.0 >= final_clean - CLEAN_SLACK - 1e-12 && p.1 > best_rob {
            (best_rob, best_alpha) = (p.1, cells[0].path[a].alpha.unwrap_or(f64::NAN));
        }
    }
    Stats {
        auc_traj,
        auc_path,
        final_clean,
        final_rob,
        best_rob,
        best_alpha,
        lost: peak - final_rob,
    }
}

/// One (task, strategy, radius) row of the summary.
#[derive(Debug, Clone, PartialEq)]
pub struct InterpRow {
    /// Dataset.
    pub dataset: String,
    /// Strategy id.
    pub strategy: String,
    /// Radius.
    pub eps: f64,
    /// Seeds pooled.
    pub seeds: usize,
    /// Mean AUC of the trajectory's frontier over seeds, and its interval.
    pub auc_traj: (f64, Option<Interval>),
    /// The same for the interpolation path.
    pub auc_path: (f64, Option<Interval>),
    /// auc_path − auc_traj, and its (paired) interval.
    pub auc_diff: (f64, Option<Interval>),
    /// The fine-tuned model's clean and robust accuracy (seed mean).
    pub final_acc: (f64, f64),
    /// Best robust accuracy on the path at clean ≥ final − [`CLEAN_SLACK`], and its α.
    pub best: (f64, f64),
    /// best − final robust, and its interval.
    pub gain: (f64, Option<Interval>),
    /// What the trajectory lost after its robustness peak (peak − final).
    pub lost: f64,
    /// gain / lost, when lost > 0.005.
    pub recovered: Option<f64>,
}

/// The rows, from `cells`, with `reps` bootstrap replicates.
pub fn summarise(cells: &[InterpCell], reps: usize) -> Vec<InterpRow> {
    let mut groups: BTreeMap<(String, usize, String), Vec<&InterpCell>> = BTreeMap::new();
    for c in cells {
        let s = Strategy::ALL
            .iter()
            .position(|s| s.id() == c.strategy)
            .unwrap_or(usize::MAX);
        groups
            .entry((c.dataset.clone(), s, c.strategy.clone()))
            .or_default()
            .push(c);
    }
    let mut rng = StdRng::seed_from_u64(crate::seeds::splitmix64(0x1e7e_4a11));
    let mut rows = Vec::new();
    for ((dataset, _, strategy), g) in groups {
        let n = g[0].trajectory[0].outcomes.len();
        let all: Vec<usize> = (0..n).collect();
        // Per replicate: the seeds (with replacement; none drawn with one seed), then the images.
        let draws: Vec<(Vec<&InterpCell>, Vec<usize>)> = (0..reps)
            .map(|_| {
                let seeds = match g.len() {
                    1 => g.clone(),
                    m => resample_indices(m, m, &mut rng).into_iter().map(|j| g[j]).collect(),
                };
                (seeds, resample_indices(n, n, &mut rng))
            })
            .collect();
        for (k, &eps) in g[0].eps.iter().enumerate() {
            let s = stats(&g, k, &all);
            let boot: Vec<Stats> = draws.iter().map(|(sd, d)| stats(sd, k, d)).collect();
            let ci = |f: fn(&Stats) -> f64| percentile_interval(&boot.iter().map(f).collect::<Vec<_>>());
            let gain = s.best_rob - s.final_rob;
            rows.push(InterpRow {
                dataset: dataset.clone(),
                strategy: strategy.clone(),
                eps,
                seeds: g.len(),
                auc_traj: (s.auc_traj, ci(|s| s.auc_traj)),
                auc_path: (s.auc_path, ci(|s| s.auc_path)),
                auc_diff: (s.auc_path - s.auc_traj, ci(|s| s.auc_path - s.auc_traj)),
                final_acc: (s.final_clean, s.final_rob),
                best: (s.best_rob, s.best_alpha),
                gain: (gain, ci(|s| s.best_rob - s.final_rob)),
                lost: s.lost,
                recovered: (s.lost > 0.005).then(|| gain / s.lost),
            });
        }
    }
    rows
}

fn with_ci((v, ci): (f64, Option<Interval>)) -> String {
    match ci {
        Some(c) => format!("{v:.3} [{:.3}, {:.3}]", c.lo, c.hi),
        None => format!("{v:.3}"),
    }
}

/// `interpolate.md`, `interpolate.csv` and the figures.
fn write_summary(dir: &Path, cells: &[InterpCell], spec: &InterpSpec, reps: usize) -> Result<()> {
    let mut rows = summarise(cells, reps);
    let order = |r: &InterpRow| Strategy::ALL.iter().position(|s| s.id() == r.strategy);
    rows.sort_by(|a, b| {
        (&a.dataset, a.eps, order(a))
            .partial_cmp(&(&b.dataset, b.eps, order(b)))
            .expect("finite radii")
    });
    let mut seeds: Vec<u64> = cells.iter().map(|c| c.seed).collect();
    seeds.sort_unstable();
    seeds.dedup();
    let alphas: Vec<String> = spec.alphas.iter().map(|a| format!("{a}")).collect();
    let n = cells.first().map_or(0, |c| c.trajectory[0].outcomes.len());
    let start = match spec.head_start {
        HeadStart::Init => "the head from its initialisation, LoRA's B from 0 with A fine-tuned, (IA)³ from 1). \
                            Every run's α = 0 reproduced its step-0 record"
            .to_string(),
        HeadStart::LinearProbe => "the head from the linear-probing run's final head of the same task and seed, \
                                   LoRA's B from 0 with A fine-tuned, (IA)³ from 1). Full, LoRA, BitFit and (IA)³'s \
                                   α = 0 reproduced the linear-probing run's final record (Adapter and Compacter \
                                   start near, not at, the pretrained function: not checked; linear probing's own \
                                   path is constant: α = 0 and 1 only)"
            .to_string(),
    };
    let mut md = format!(
        "# Weight-space interpolation vs the training trajectory\n\n\
         Path: θ(α) = (1 − α)·θ₀ + α·θ over the parameters each strategy trains (WiSE-FT), α ∈ {{{}}}; θ₀ = their \
         values before fine-tuning ({start} and α = 1 its final record on all {n} evaluation images \
         (clean, every radius, OOD). Attack: {}. Seeds {:?}. AUC: step rule over each seed's Pareto frontier, mean \
         over seeds. \"Best on the path\": the highest seed-mean robust accuracy among the α whose seed-mean clean \
         accuracy is at most {:.0} pt below the fine-tuned model's; \"recovered\": that gain as a share of what the \
         trajectory lost after its robustness peak. Intervals: 95% percentile bootstrap over {} \
         ({reps} replicates, paired).\n",
        alphas.join(", "),
        cells.first().map_or("-", |c| c.run_attack.as_str()),
        seeds,
        CLEAN_SLACK * 100.0,
        if seeds.len() > 1 {
            "the seeds, then the evaluation images"
        } else {
            "the evaluation images"
        }
    );
    let mut csv = Csv::new(&[
        "dataset",
        "strategy",
        "eps",
        "seeds",
        "auc_trajectory",
        "auc_trajectory_lo",
        "auc_trajectory_hi",
        "auc_interpolation",
        "auc_interpolation_lo",
        "auc_interpolation_hi",
        "auc_difference",
        "auc_difference_lo",
        "auc_difference_hi",
        "final_clean",
        "final_robust",
        "best_robust",
        "best_alpha",
        "gain",
        "gain_lo",
        "gain_hi",
        "lost_after_peak",
        "recovered",
    ]);
    let mut last_head = None;
    for r in &rows {
        let head = (r.dataset.clone(), r.eps.to_bits());
        if last_head.as_ref() != Some(&head) {
            md += &format!(
                "\n## {}, ε = {}\n\n| strategy | AUC, trajectory | AUC, interpolation | difference | final clean / robust | \
                 best on the path (α) | gain | lost after the peak | recovered |\n|---|---|---|---|---|---|---|---|---|\n",
                r.dataset,
                eps_label(r.eps)
            );
            last_head = Some(head);
        }
        let name = Strategy::ALL
            .iter()
            .find(|s| s.id() == r.strategy)
            .map_or(r.strategy.as_str(), |s| s.name());
        md += &format!(
            "| {name} | {} | {} | {} | {:.3} / {:.3} | {:.3} ({}) | {} | {:.3} | {} |\n",
            with_ci(r.auc_traj),
            with_ci(r.auc_path),
            with_ci(r.auc_diff),
            r.final_acc.0,
            r.final_acc.1,
            r.best.0,
            r.best.1,
            with_ci(r.gain),
            r.lost,
            r.recovered
                .map_or("nothing lost".into(), |x| format!("{:.0}%", 100.0 * x))
        );
        let lohi = |c: Option<Interval>| c.map_or([String::new(), String::new()], |c| [num(c.lo), num(c.hi)]);
        let mut row = vec![r.dataset.clone(), r.strategy.clone(), num(r.eps), r.seeds.to_string()];
        for (v, c) in [r.auc_traj, r.auc_path, r.auc_diff] {
            row.push(num(v));
            row.extend(lohi(c));
        }
        row.extend([
            num(r.final_acc.0),
            num(r.final_acc.1),
            num(r.best.0),
            num(r.best.1),
            num(r.gain.0),
        ]);
        row.extend(lohi(r.gain.1));
        row.extend([num(r.lost), r.recovered.map_or(String::new(), num)]);
        csv.push(row);
    }
    write_atomic(&dir.join("interpolate.md"), md.as_bytes())?;
    write_atomic(&dir.join("interpolate.csv"), csv.render().as_bytes())?;
    figures(dir, cells)
}

/// One figure per (task, strategy): at each radius the seed-mean trajectory's steps (dots) and
/// frontier (solid) and the seed-mean interpolation path (dashed), clean accuracy against robust accuracy.
fn figures(dir: &Path, cells: &[InterpCell]) -> Result<()> {
    let mut groups: BTreeMap<(String, String), Vec<&InterpCell>> = BTreeMap::new();
    for c in cells {
        groups
            .entry((c.dataset.clone(), c.strategy.clone()))
            .or_default()
            .push(c);
    }
    for ((dataset, strategy), g) in groups {
        let n = g[0].trajectory[0].outcomes.len();
        let all: Vec<usize> = (0..n).collect();
        let mean_pts = |pick: &dyn Fn(&InterpCell) -> &[Outcomes], k: usize| -> Vec<Point> {
            (0..pick(g[0]).len())
                .map(|i| {
                    let p: Vec<Point> = g.iter().map(|c| point(&pick(c)[i], k, &all)).collect();
                    Point {
                        acc: p.iter().map(|p| p.acc).sum::<f64>() / p.len() as f64,
                        rob: p.iter().map(|p| p.rob).sum::<f64>() / p.len() as f64,
                    }
                })
                .collect()
        };
        let mut series = Vec::new();
        let mut csv = Csv::new(&["eps", "kind", "step_or_alpha", "clean_acc", "robust_acc"]);
        for (k, &eps) in g[0].eps.iter().enumerate() {
            let traj = mean_pts(&|c: &InterpCell| c.trajectory.as_slice(), k);
            let path = mean_pts(&|c: &InterpCell| c.path.as_slice(), k);
            for (o, p) in g[0].trajectory.iter().zip(&traj) {
                csv.push(vec![
                    num(eps),
                    "trajectory".into(),
                    o.step.unwrap_or(0).to_string(),
                    num(p.acc),
                    num(p.rob),
                ]);
            }
            for (o, p) in g[0].path.iter().zip(&path) {
                csv.push(vec![
                    num(eps),
                    "interpolation".into(),
                    num(o.alpha.unwrap_or(f64::NAN)),
                    num(p.acc),
                    num(p.rob),
                ]);
            }
            series.push(Series::new(
                None,
                traj.iter().map(|p| (p.acc, p.rob)).collect(),
                color(k),
                Style::Markers,
            ));
            let f = crate::tradeoff::frontier(&traj);
            series.push(Series::new(
                Some(format!("training frontier, ε = {}", eps_label(eps))),
                f.iter().map(|p| (p.acc, p.rob)).collect(),
                color(k),
                Style::LineMarkers,
            ));
            series.push(Series::new(
                Some(format!("interpolation α = 0 … 1, ε = {}", eps_label(eps))),
                path.iter().map(|p| (p.acc, p.rob)).collect(),
                color(k),
                Style::Dashed,
            ));
        }
        let name = Strategy::ALL
            .iter()
            .find(|s| s.id() == strategy)
            .map_or(strategy.as_str(), |s| s.name());
        let chart = LineChart {
            title: format!("{dataset}, {name}: training trajectory vs weight-space interpolation (seed mean)"),
            x: Axis::linear("clean accuracy", 0.0, 1.0),
            y: Axis::linear("robust accuracy", 0.0, 1.0),
            series,
            legend: SeriesLabelPosition::UpperLeft,
        };
        write_figure(dir, &format!("{dataset}_{strategy}"), &chart, &csv)?;
    }
    Ok(())
}

/// The specification and cells of `DIR/interpolate/` (or `interpolate-lp-head/`), when it has a
/// summary.
pub fn load(out: &Path, head_start: HeadStart) -> Result<Option<(InterpSpec, Vec<InterpCell>)>> {
    let dir = interp_dir(out, head_start);
    if !dir.join("interpolate.md").exists() {
        return Ok(None);
    }
    let Some((spec, mut cells)) = load_results::<InterpSpec, InterpCell>(&dir, "interpolation")? else {
        return Ok(None);
    };
    cells.sort_by(|a, b| (&a.dataset, &a.strategy, a.seed).cmp(&(&b.dataset, &b.strategy, b.seed)));
    Ok(Some((spec, cells)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run of 400 images at one radius: the fine-tuned model is correct on 360 and robust on
    /// 200; the path's α = 0.5 keeps the same clean images and is robust on `400·gain` more.
    fn cell(seed: u64, gain: f64) -> InterpCell {
        let levels = |robust: usize| -> String {
            (0..400)
                .map(|i| match i {
                    _ if i < robust => '2',
                    _ if i < 360 => '1',
                    _ => '0',
                })
                .collect()
        };
        let at = |step: Option<u64>, alpha: Option<f64>, robust: usize| Outcomes {
            step,
            alpha,
            outcomes: levels(robust),
            ood_outcomes: None,
        };
        let more = 200 + (400.0 * gain).round() as usize;
        InterpCell {
            dataset: "simple".into(),
            strategy: "lora".into(),
            seed,
            eps: vec![4.0 / 255.0],
            run_attack: "PGD".into(),
            trajectory: vec![at(Some(0), None, 0), at(Some(10), None, 200)],
            path: vec![
                at(None, Some(0.0), 0),
                at(None, Some(0.5), more),
                at(None, Some(1.0), 200),
            ],
            seconds: 0.0,
        }
    }

    /// With several seeds the gain's interval covers their spread (seeds resampled), not only the
    /// images'; with one seed it is the images' alone, around that seed's gain.
    #[test]
    fn the_interval_of_the_gain_covers_the_seeds() {
        let three = [cell(0, 0.0), cell(1, 0.1), cell(2, 0.2)];
        let r = &summarise(&three, 1000)[0];
        assert_eq!(r.seeds, 3);
        assert!((r.gain.0 - 0.1).abs() < 1e-12 && r.best == (0.6, 0.5), "{r:?}");
        let ci = r.gain.1.unwrap();
        // Seed means of a resample of (0, 0.1, 0.2) reach 0 and 0.2 with probability 1/27 each;
        // the images alone would give about 0.1 ± 0.03.
        assert!(ci.lo <= 0.04 && ci.hi >= 0.16, "{ci:?}");
        let one = &summarise(&three[2..], 1000)[0];
        let ci = one.gain.1.unwrap();
        assert!(
            (one.gain.0 - 0.2).abs() < 1e-12 && ci.lo > 0.15 && ci.hi < 0.25,
            "{ci:?}"
        );
    }
}
