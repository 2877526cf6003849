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
//!
//! Here the specification, the results' types and the command; one run's path in `path`, the
//! statistics and tables in `summary`, the figures in `figures`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::Device;
use serde::{Deserialize, Serialize};

use crate::engine::peft::Strategy;
use crate::error::{Error, Result};
use crate::tradeoff::Point;
use crate::validate::checkpoints::replay::{check_spec, for_each_run, load_results, selected_datasets, selected_seeds};
use crate::validate::sweep::config::ValidRun;
use crate::validate::sweep::runner;

mod figures;
mod path;
mod summary;

use path::interpolate_run;
pub(crate) use path::{LpHead, lp_head, path_start};
use summary::write_summary;
pub use summary::{InterpRow, summarise};

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

/// A strategy's name from its id (the id itself when this build does not know it).
pub(crate) fn strategy_name(id: &str) -> &str {
    Strategy::ALL.iter().find(|s| s.id() == id).map_or(id, |s| s.name())
}

/// (clean, robust at radius `k`) over the image positions `pos`.
pub(crate) fn point(o: &Outcomes, k: usize, pos: &[usize]) -> Point {
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
