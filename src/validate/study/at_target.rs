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

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::engine::peft::Strategy;
use crate::error::{Error, Result};
use crate::io::Csv;
use crate::io::num;
use crate::tradeoff::Interval;
use crate::tradeoff::bootstrap::{percentile_interval, resample_indices};
use crate::validate::checkpoints::choose::{Candidate, candidates};
use crate::validate::checkpoints::interpolate::HeadStart;
use crate::validate::study::report::eps_label;

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
    let source_of = |c: &Candidate| {
        let f = folder_of(c);
        sources
            .iter()
            .position(|s| s.folder == f && s.path == c.alpha.map(|_| c.head_start))
            .expect("listed")
    };
    let mut tasks: Vec<String> = all.iter().map(|c| c.dataset.clone()).collect();
    tasks.sort();
    tasks.dedup();
    // Candidates by (task, strategy, source, seed); the final step also opens the path.
    let mut pool: BTreeMap<(String, Strategy, usize, u64), Vec<&Candidate>> = BTreeMap::new();
    let mut last: BTreeMap<(usize, String, Strategy, u64), &Candidate> = BTreeMap::new();
    for c in &all {
        pool.entry((c.dataset.clone(), c.strategy, source_of(c), c.seed))
            .or_default()
            .push(c);
        if c.alpha.is_none() {
            let slot = last
                .entry((folder_of(c), c.dataset.clone(), c.strategy, c.seed))
                .or_insert(c);
            if c.step > slot.step {
                *slot = c;
            }
        }
    }
    for ((f, d, s, seed), c) in &last {
        for p in (0..sources.len()).filter(|&p| sources[p].folder == *f && sources[p].path.is_some()) {
            if let Some(v) = pool.get_mut(&(d.clone(), *s, p, *seed)) {
                v.push(c);
            }
        }
    }
    let mut targets = BTreeMap::new();
    let mut seeds_of = BTreeMap::new();
    let mut cells = Vec::new();
    for task in &tasks {
        let shared = check_images(&all, task)?;
        let present: Vec<usize> = (0..sources.len())
            .filter(|&i| pool.keys().any(|(d, _, s, _)| d == task && *s == i))
            .collect();
        let seeds: Vec<u64> = present
            .iter()
            .map(|&i| {
                pool.keys()
                    .filter(|(d, _, s, _)| d == task && *s == i)
                    .map(|k| k.3)
                    .collect::<BTreeSet<u64>>()
            })
            .reduce(|a, b| &a & &b)
            .unwrap_or_default()
            .into_iter()
            .collect();
        if seeds.is_empty() || !present.contains(&0) {
            continue;
        }
        let target = match min_clean {
            Some(c) => c,
            None => default_target(&last, task, &seeds) - DEFAULT_MARGIN,
        };
        // Images per seed; one shared resample when every seed has the same images, else each
        // seed's own images resampled independently.
        let ns: Vec<usize> = seeds
            .iter()
            .map(|sd| {
                all.iter()
                    .find(|c| &c.dataset == task && c.seed == *sd)
                    .map_or(0, |c| c.outcomes.len())
            })
            .collect();
        let mut rng = StdRng::seed_from_u64(crate::seeds::splitmix64(SEED));
        let draws: Vec<(Vec<usize>, Vec<Vec<usize>>)> = (0..reps)
            .map(|_| {
                let s = resample_indices(seeds.len(), seeds.len(), &mut rng);
                let imgs = if shared {
                    vec![resample_indices(ns[0], ns[0], &mut rng)]
                } else {
                    ns.iter().map(|&n| resample_indices(n, n, &mut rng)).collect()
                };
                (s, imgs)
            })
            .collect();
        let img = |j: usize| if shared { 0 } else { j };
        for (k, &eps) in radii.iter().enumerate() {
            for &strategy in &Strategy::ALL {
                // Picks per source and seed (None: not run; a seed's None: it does not reach the target).
                let picks: Vec<Option<Vec<Option<&Candidate>>>> = (0..sources.len())
                    .map(|i| {
                        let per_seed: Vec<Option<&Vec<&Candidate>>> = seeds
                            .iter()
                            .map(|sd| pool.get(&(task.clone(), strategy, i, *sd)))
                            .collect();
                        if per_seed.iter().any(Option::is_none) {
                            return None;
                        }
                        Some(
                            per_seed
                                .into_iter()
                                .map(|v| pick(v.expect("checked"), target, k))
                                .collect(),
                        )
                    })
                    .collect();
                if picks.iter().all(Option::is_none) {
                    continue;
                }
                // Per source, the picks when every seed reaches the target.
                let complete: Vec<Option<Vec<&Candidate>>> = picks
                    .iter()
                    .map(|p| p.as_ref().and_then(|per| per.iter().copied().collect()))
                    .collect();
                // Per source with picks: the seed-mean robust accuracy and its bootstrap replicates.
                let stats: Vec<Option<(f64, Vec<f64>)>> = complete
                    .iter()
                    .map(|p| {
                        p.as_ref().map(|p| {
                            let r = draws
                                .iter()
                                .map(|(s, imgs)| {
                                    s.iter().map(|&j| p[j].robust_on(k, &imgs[img(j)])).sum::<f64>() / s.len() as f64
                                })
                                .collect();
                            (mean(p, |c| c.robust(k)), r)
                        })
                    })
                    .collect();
                for (i, p) in picks.iter().enumerate() {
                    let Some(per) = p else { continue };
                    let reached = per.iter().flatten().count();
                    let cell = match (&complete[i], &stats[i]) {
                        (Some(p), Some((robust, r))) => {
                            let robust = *robust;
                            let gain = match (i, &stats[0]) {
                                (1.., Some((bp, b))) => Some((
                                    robust - bp,
                                    percentile_interval(&r.iter().zip(b).map(|(x, y)| x - y).collect::<Vec<_>>()),
                                )),
                                _ => None,
                            };
                            Cell {
                                dataset: task.clone(),
                                eps,
                                strategy,
                                source: i,
                                robust: Some(robust),
                                ci: percentile_interval(r),
                                gain,
                                clean: mean(p, Candidate::clean),
                                reached,
                                point: (seeds.len() == 1).then(|| match (sources[i].path, p[0].alpha) {
                                    (Some(_), None) => format!("{}, α = 1", p[0].point()),
                                    _ => p[0].point(),
                                }),
                            }
                        }
                        _ => Cell {
                            dataset: task.clone(),
                            eps,
                            strategy,
                            source: i,
                            robust: None,
                            ci: None,
                            gain: None,
                            clean: seeds
                                .iter()
                                .map(|sd| {
                                    pool[&(task.clone(), strategy, i, *sd)]
                                        .iter()
                                        .map(|c| c.clean())
                                        .fold(0.0, f64::max)
                                })
                                .sum::<f64>()
                                / seeds.len() as f64,
                            reached,
                            point: None,
                        },
                    };
                    cells.push(cell);
                }
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
fn default_target(last: &BTreeMap<(usize, String, Strategy, u64), &Candidate>, task: &str, seeds: &[u64]) -> f64 {
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

/// The candidate reaching `target` with the highest robust accuracy at radius `k` (ties: higher
/// clean accuracy, then the earlier in the list).
fn pick<'a>(pool: &[&'a Candidate], target: f64, k: usize) -> Option<&'a Candidate> {
    let mut best: Option<&Candidate> = None;
    for c in pool.iter().copied().filter(|c| c.clean() >= target) {
        let better = best.is_none_or(|b| (c.robust(k), c.clean()) > (b.robust(k), b.clean()));
        if better {
            best = Some(c);
        }
    }
    best
}

fn mean(p: &[&Candidate], f: impl Fn(&Candidate) -> f64) -> f64 {
    p.iter().map(|c| f(c)).sum::<f64>() / p.len() as f64
}

impl AtTarget {
    /// The section of `findings.md`.
    pub fn markdown(&self, dirs: &[PathBuf]) -> String {
        let mut s = String::from("\n## Best achievable robustness at the clean target\n\n");
        let targets: Vec<String> = self
            .targets
            .iter()
            .map(|(t, c)| {
                let seeds: Vec<String> = self.seeds[t].iter().map(u64::to_string).collect();
                format!("{t}: clean ≥ {c:.3} (seeds {})", seeds.join(", "))
            })
            .collect();
        let folders: Vec<String> = self
            .sources
            .iter()
            .filter(|x| x.path.is_none())
            .map(|x| match x.folder {
                // This report's own folder, by role: the text stays the same wherever it lies.
                0 => format!("{} = this folder", x.label),
                f => format!("{} = {}", x.label, dirs[f].display()),
            })
            .collect();
        let _ = writeln!(
            s,
            "Targets: {}. Folders: {}. Per seed, the most robust candidate reaching the target (any evaluated step of \
             the trajectory; on an interpolated path any α in (0, 1] of the final model); mean over the seeds every \
             column has; 95% percentile bootstrap over seeds and images ({} replicates) with the picks fixed. The \
             picks are made on the same images, so levels are optimistic by selection, alike in every column; the \
             gain (in points, paired on the same images) to the first column is the comparison. –: not run; \
             \"not reached\" / \"reached by k of n seeds only\": the best clean accuracy of every seed / of some seeds \
             stays below the target (best clean: the seed mean of each seed's best).\n",
            targets.join("; "),
            folders.join(", "),
            self.reps
        );
        let _ = write!(s, "| task | ε | strategy |");
        for x in &self.sources {
            let _ = write!(s, " {} |", x.label);
        }
        s.push_str("\n|---|---|---|");
        s.push_str(&"---|".repeat(self.sources.len()));
        s.push('\n');
        let mut rows: BTreeMap<(String, u64, usize), Vec<&Cell>> = BTreeMap::new();
        for c in &self.cells {
            let si = Strategy::ALL
                .iter()
                .position(|x| *x == c.strategy)
                .unwrap_or(usize::MAX);
            rows.entry((c.dataset.clone(), c.eps.to_bits(), si))
                .or_default()
                .push(c);
        }
        for ((task, eps, si), cs) in rows {
            let _ = write!(
                s,
                "| {task} | {} | {} |",
                eps_label(f64::from_bits(eps)),
                Strategy::ALL[si].name()
            );
            for i in 0..self.sources.len() {
                let text = cs
                    .iter()
                    .find(|c| c.source == i)
                    .map_or("–".into(), |c| cell_text(c, self.seeds[&task].len()));
                let _ = write!(s, " {text} |");
            }
            s.push('\n');
        }
        s
    }

    /// One row per cell.
    pub fn csv(&self) -> String {
        let mut csv = Csv::new(&[
            "dataset",
            "eps",
            "strategy",
            "source",
            "target",
            "seeds",
            "robust",
            "lo",
            "hi",
            "gain",
            "gain_lo",
            "gain_hi",
            "clean",
            "point",
            "seeds_reached",
        ])
        .always_quoted(&["source"]);
        let opt = |v: Option<f64>| v.map_or(String::new(), num);
        for c in &self.cells {
            let g = c.gain.as_ref();
            csv.push(vec![
                c.dataset.clone(),
                num(c.eps),
                c.strategy.id().into(),
                self.sources[c.source].label.clone(),
                num(self.targets[&c.dataset]),
                self.seeds[&c.dataset].len().to_string(),
                opt(c.robust),
                opt(c.ci.map(|i| i.lo)),
                opt(c.ci.map(|i| i.hi)),
                opt(g.map(|g| g.0)),
                opt(g.and_then(|g| g.1).map(|i| i.lo)),
                opt(g.and_then(|g| g.1).map(|i| i.hi)),
                num(c.clean),
                c.point.clone().unwrap_or_default(),
                c.reached.to_string(),
            ]);
        }
        csv.render()
    }
}

/// One cell of the table; `seeds` is how many seeds the task's cells use.
fn cell_text(c: &Cell, seeds: usize) -> String {
    let pct = |x: f64| format!("{:.1}", 100.0 * x);
    let Some(r) = c.robust else {
        return match c.reached {
            0 => format!("not reached (best clean {:.3})", c.clean),
            k => format!("reached by {k} of {seeds} seeds only (best clean {:.3})", c.clean),
        };
    };
    let mut t = match c.ci {
        Some(i) => format!("{} [{}, {}]", pct(r), pct(i.lo), pct(i.hi)),
        None => pct(r),
    };
    if let Some((g, ci)) = &c.gain {
        let _ = write!(t, ", {:+.1}", 100.0 * g);
        if let Some(i) = ci {
            let _ = write!(t, " [{:+.1}, {:+.1}]", 100.0 * i.lo, 100.0 * i.hi);
        }
    }
    if let Some(p) = &c.point {
        let _ = write!(t, " ({p})");
    }
    t
}
