//! Best achievable robustness at a clean-accuracy target, per strategy, under every way of
//! fine-tuning the folders hold (issue 18, part 3): the findings table's last section, written by
//! `validate verdict DIR [--with FOLDER…] [--min-clean C]`.
//!
//! *Sources*: each folder's training trajectory (every evaluated step) and, where `validate
//! interpolate` ran on it, its interpolation path (every α in (0, 1), plus α = 1, the final
//! step) — and the path from the linear-probe head where `--head-start linear-probe` ran. The first folder's trajectory is the baseline. *Target*, per task: `C` when given,
//! else the best seed-mean final clean accuracy of the baseline's strategies minus one point
//! ([`DEFAULT_MARGIN`]) — "how much robustness can one have while giving up at most a point of
//! the best clean accuracy". *Seeds*: those every source of the task has, so no column gains
//! from a larger pool to pick from.
//!
//! Per (task, radius, strategy, source) and seed, the candidate reaching the target with the
//! highest robust accuracy (ties: higher clean accuracy, then the earlier point) is picked; the
//! estimate is the mean over seeds. Intervals: 95% percentile bootstrap over seeds and
//! evaluation images with the picks fixed (every source resampled on the same images, so the
//! gain to the baseline is paired; when each seed drew its own evaluation images, no
//! `eval_seed`, each seed's are resampled independently, and folders must agree per seed). The picks are chosen on those same images, so every
//! level is optimistic by selection (each column alike); the gains compare like with like.
//!
//! Here the section's types and its computation; the pooling, draws and picks in `picks`, the
//! Markdown and CSV in `render`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::engine::peft::Strategy;
use crate::error::{Error, Result};
use crate::tradeoff::Interval;
use crate::validate::checkpoints::choose::{Candidate, candidates};
use crate::validate::checkpoints::interpolate::HeadStart;

mod picks;
mod render;

use picks::{Draws, Last, TaskPicks, pool, task_seeds};

/// Default distance of the target below the best final clean accuracy.
pub const DEFAULT_MARGIN: f64 = 0.01;

/// Bootstrap seed of the section.
const SEED: u64 = 0x00a7_7a26;

/// One way of fine-tuning: a folder's trajectory or its interpolation path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Source {
    /// Position of its folder among those given (0: the baseline's).
    pub folder: usize,
    /// On an interpolation path: where its head starts; None for the trajectory.
    pub path: Option<HeadStart>,
    /// As printed: the training kind ("standard", "pgd-at", "trades"), the folder's name when two
    /// folders share a kind, and ", interpolated" (", … from the linear-probe head") for a path.
    pub label: String,
}

/// One cell of the table.
#[derive(Debug, Clone)]
pub struct Cell {
    /// Task.
    pub dataset: String,
    /// Radius.
    pub eps: f64,
    /// Strategy.
    pub strategy: Strategy,
    /// Index into [`AtTarget::sources`].
    pub source: usize,
    /// Mean over seeds of the picks' robust accuracy (None: some seed has no candidate reaching
    /// the target).
    pub robust: Option<f64>,
    /// Its interval.
    pub ci: Option<Interval>,
    /// Difference to the baseline's cell, with its paired interval (not on the baseline itself).
    pub gain: Option<(f64, Option<Interval>)>,
    /// Mean clean accuracy of the picks; when the target is not reached, the best the source
    /// reaches (seed mean of each seed's best, which can lie above the target when only some
    /// seeds fall short).
    pub clean: f64,
    /// Seeds with a candidate reaching the target: all of them when `robust` is set.
    pub reached: usize,
    /// The pick, with one seed ("step 350", "step 1000, α = 0.8").
    pub point: Option<String>,
}

/// The section.
#[derive(Debug, Clone)]
pub struct AtTarget {
    /// Clean target per task.
    pub targets: BTreeMap<String, f64>,
    /// Seeds used per task.
    pub seeds: BTreeMap<String, Vec<u64>>,
    /// The columns.
    pub sources: Vec<Source>,
    /// Every cell, by task, radius, strategy (canonical order), source.
    pub cells: Vec<Cell>,
    /// Bootstrap replicates.
    pub reps: usize,
}

/// Computes the section over `dirs` (the first is the baseline). None when the records hold no
/// per-image outcomes (schema 1), which the picks need.
pub fn at_target(dirs: &[PathBuf], min_clean: Option<f64>, reps: usize) -> Result<Option<AtTarget>> {
    if let Some(c) = min_clean
        && !(0.0..=1.0).contains(&c)
    {
        return Err(Error::invalid("--min-clean", "an accuracy in [0, 1]", c));
    }
    let (all, radii) = candidates(dirs)?;
    if all.is_empty() || all.iter().any(|c| c.outcomes.is_empty()) {
        return Ok(None);
    }
    let folder_of = |c: &Candidate| dirs.iter().position(|d| *d == c.folder).expect("from dirs");
    let sources = sources(dirs, &all, folder_of);
    let mut tasks: Vec<String> = all.iter().map(|c| c.dataset.clone()).collect();
    tasks.sort();
    tasks.dedup();
    let (pool, last) = pool(&all, &sources, folder_of);
    let mut targets = BTreeMap::new();
    let mut seeds_of = BTreeMap::new();
    let mut cells = Vec::new();
    for task in &tasks {
        let shared = check_images(&all, task)?;
        let Some(seeds) = task_seeds(&pool, task, sources.len()) else {
            continue;
        };
        let target = match min_clean {
            Some(c) => c,
            None => default_target(&last, task, &seeds) - DEFAULT_MARGIN,
        };
        let draws = Draws::new(&all, task, &seeds, shared, reps);
        let picks = TaskPicks {
            task,
            seeds: &seeds,
            target,
            pool: &pool,
            sources: &sources,
            draws: &draws,
        };
        for (k, &eps) in radii.iter().enumerate() {
            for &strategy in &Strategy::ALL {
                cells.extend(picks.cells(k, eps, strategy));
            }
        }
        targets.insert(task.clone(), target);
        seeds_of.insert(task.clone(), seeds);
    }
    Ok(Some(AtTarget {
        targets,
        seeds: seeds_of,
        sources,
        cells,
        reps,
    }))
}

/// The columns: per folder its trajectory and, where interpolated, its path.
fn sources(dirs: &[PathBuf], all: &[Candidate], folder_of: impl Fn(&Candidate) -> usize) -> Vec<Source> {
    let kind = |f: usize| all.iter().find(|c| folder_of(c) == f).map_or("", |c| c.kind.as_str());
    let mut out = Vec::new();
    for f in 0..dirs.len() {
        let shared = (0..dirs.len()).filter(|&g| kind(g) == kind(f)).count() > 1;
        let name = if shared {
            format!(
                "{} ({})",
                kind(f),
                dirs[f]
                    .file_name()
                    .map_or_else(|| dirs[f].display().to_string(), |n| n.to_string_lossy().into())
            )
        } else {
            kind(f).to_string()
        };
        out.push(Source {
            folder: f,
            path: None,
            label: name.clone(),
        });
        for h in [HeadStart::Init, HeadStart::LinearProbe] {
            if all
                .iter()
                .any(|c| folder_of(c) == f && c.alpha.is_some() && c.head_start == h)
            {
                out.push(Source {
                    folder: f,
                    path: Some(h),
                    label: format!("{name}, interpolated{}", h.words()),
                });
            }
        }
    }
    out
}

/// Every folder's runs of `task` with one seed were evaluated on the same images (so gains pair);
/// returns whether every seed's runs share one set too (an `eval_seed` in the configuration)
/// rather than each seed drawing its own.
fn check_images(all: &[Candidate], task: &str) -> Result<bool> {
    let mut seen: BTreeMap<u64, (&Path, &Option<String>, usize)> = BTreeMap::new();
    for c in all.iter().filter(|c| c.dataset == task) {
        match seen.get(&c.seed) {
            None => {
                seen.insert(c.seed, (&c.folder, &c.eval_set, c.outcomes.len()));
            }
            Some(&(f, e, n)) if *e != c.eval_set || n != c.outcomes.len() => {
                return Err(Error::Config {
                    path: c.folder.clone(),
                    message: format!(
                        "task {task}, seed {}, was evaluated on other images than in {} (evaluation set {:?}, {} images, vs {:?}, {n}); \
                         the best robustness at the clean target compares folders on the same images",
                        c.seed,
                        f.display(),
                        c.eval_set,
                        c.outcomes.len(),
                        e
                    ),
                });
            }
            _ => {}
        }
    }
    let mut sets = seen.values().map(|&(_, e, n)| (e, n));
    let first = sets.next();
    Ok(sets.all(|x| Some(x) == first))
}

/// The best seed-mean final clean accuracy of the baseline folder's strategies on `task`.
fn default_target(last: &Last, task: &str, seeds: &[u64]) -> f64 {
    Strategy::ALL
        .iter()
        .filter_map(|s| {
            let v: Vec<f64> = seeds
                .iter()
                .filter_map(|sd| last.get(&(0, task.to_string(), *s, *sd)).map(|c| c.clean()))
                .collect();
            (v.len() == seeds.len()).then(|| v.iter().sum::<f64>() / v.len() as f64)
        })
        .fold(f64::NEG_INFINITY, f64::max)
}
