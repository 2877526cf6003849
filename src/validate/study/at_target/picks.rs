//! The picks behind the cells: candidates pooled by (task, strategy, source, seed), the seeds a
//! task's sources share, the bootstrap draws of a task, and per (radius, strategy) the most
//! robust candidate of each source and seed that reaches the target, with the cells they give.

use std::collections::{BTreeMap, BTreeSet};

use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::engine::peft::Strategy;
use crate::tradeoff::bootstrap::{percentile_interval, resample_indices};
use crate::validate::checkpoints::choose::Candidate;
use crate::validate::study::at_target::{Cell, SEED, Source};

/// Candidates by (task, strategy, source, seed).
pub(super) type Pool<'a> = BTreeMap<(String, Strategy, usize, u64), Vec<&'a Candidate>>;

/// The final step of each trajectory, by (folder, task, strategy, seed).
pub(super) type Last<'a> = BTreeMap<(usize, String, Strategy, u64), &'a Candidate>;

/// The candidates of `all` pooled by (task, strategy, source, seed), and each trajectory's final
/// step, which also opens the paths of its folder (α = 1).
pub(super) fn pool<'a>(
    all: &'a [Candidate],
    sources: &[Source],
    folder_of: impl Fn(&Candidate) -> usize,
) -> (Pool<'a>, Last<'a>) {
    let source_of = |c: &Candidate| {
        let f = folder_of(c);
        sources
            .iter()
            .position(|s| s.folder == f && s.path == c.alpha.map(|_| c.head_start))
            .expect("listed")
    };
    let mut pool = Pool::new();
    let mut last = Last::new();
    for c in all {
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
    (pool, last)
}

/// The seeds every source of `task` has (of `sources` sources); None when there are none, or the
/// baseline's trajectory (source 0) has no run of the task: the task is left out.
pub(super) fn task_seeds(pool: &Pool, task: &str, sources: usize) -> Option<Vec<u64>> {
    let present: Vec<usize> = (0..sources)
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
    (!seeds.is_empty() && present.contains(&0)).then_some(seeds)
}

/// The bootstrap draws of one task: per replicate the seed positions, then the images — one
/// shared resample when every seed has the same images, else each seed's own images resampled
/// independently.
pub(super) struct Draws {
    reps: Vec<(Vec<usize>, Vec<Vec<usize>>)>,
    shared: bool,
}

impl Draws {
    /// `reps` replicates over `seeds` of `task` (images per seed from `all`), seeded with [`SEED`].
    pub(super) fn new(all: &[Candidate], task: &str, seeds: &[u64], shared: bool, reps: usize) -> Draws {
        let ns: Vec<usize> = seeds
            .iter()
            .map(|sd| {
                all.iter()
                    .find(|c| c.dataset == task && c.seed == *sd)
                    .map_or(0, |c| c.outcomes.len())
            })
            .collect();
        let mut rng = StdRng::seed_from_u64(crate::seeds::splitmix64(SEED));
        let reps = (0..reps)
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
        Draws { reps, shared }
    }

    /// Per replicate, the mean over the drawn seeds of the pick's robust accuracy at radius `k`
    /// (`p`: one pick per seed).
    fn robust(&self, p: &[&Candidate], k: usize) -> Vec<f64> {
        let img = |j: usize| if self.shared { 0 } else { j };
        self.reps
            .iter()
            .map(|(s, imgs)| s.iter().map(|&j| p[j].robust_on(k, &imgs[img(j)])).sum::<f64>() / s.len() as f64)
            .collect()
    }
}

/// One task's picks: what the cells of each (radius, strategy) are computed from.
pub(super) struct TaskPicks<'a> {
    pub(super) task: &'a String,
    pub(super) seeds: &'a [u64],
    pub(super) target: f64,
    pub(super) pool: &'a Pool<'a>,
    pub(super) sources: &'a [Source],
    pub(super) draws: &'a Draws,
}

impl TaskPicks<'_> {
    /// The cells of (radius `k` = `eps`, `strategy`), one per source that ran it (none when no
    /// source did).
    pub(super) fn cells(&self, k: usize, eps: f64, strategy: Strategy) -> Vec<Cell> {
        // Picks per source and seed (None: not run; a seed's None: it does not reach the target).
        let picks: Vec<Option<Vec<Option<&Candidate>>>> =
            (0..self.sources.len()).map(|i| self.picks(strategy, i, k)).collect();
        if picks.iter().all(Option::is_none) {
            return Vec::new();
        }
        // Per source, the picks when every seed reaches the target.
        let complete: Vec<Option<Vec<&Candidate>>> = picks
            .iter()
            .map(|p| p.as_ref().and_then(|per| per.iter().copied().collect()))
            .collect();
        // Per source with picks: the seed-mean robust accuracy and its bootstrap replicates.
        let stats: Vec<Option<(f64, Vec<f64>)>> = complete
            .iter()
            .map(|p| p.as_ref().map(|p| (mean(p, |c| c.robust(k)), self.draws.robust(p, k))))
            .collect();
        let mut cells = Vec::new();
        for (i, p) in picks.iter().enumerate() {
            let Some(per) = p else { continue };
            let mut cell = Cell {
                dataset: self.task.clone(),
                eps,
                strategy,
                source: i,
                robust: None,
                ci: None,
                gain: None,
                clean: 0.0,
                reached: per.iter().flatten().count(),
                point: None,
            };
            match (&complete[i], &stats[i]) {
                (Some(p), Some((robust, r))) => {
                    cell.robust = Some(*robust);
                    cell.ci = percentile_interval(r);
                    cell.gain = match (i, &stats[0]) {
                        (1.., Some((bp, b))) => Some((
                            robust - bp,
                            percentile_interval(&r.iter().zip(b).map(|(x, y)| x - y).collect::<Vec<_>>()),
                        )),
                        _ => None,
                    };
                    cell.clean = mean(p, Candidate::clean);
                    cell.point = (self.seeds.len() == 1).then(|| match (self.sources[i].path, p[0].alpha) {
                        (Some(_), None) => format!("{}, α = 1", p[0].point()),
                        _ => p[0].point(),
                    });
                }
                _ => cell.clean = self.best_clean(strategy, i),
            }
            cells.push(cell);
        }
        cells
    }

    /// Per seed, the pick of source `i` for `strategy` at radius `k`; None when some seed has no
    /// run of it.
    fn picks(&self, strategy: Strategy, i: usize, k: usize) -> Option<Vec<Option<&Candidate>>> {
        let per_seed: Vec<Option<&Vec<&Candidate>>> = self
            .seeds
            .iter()
            .map(|sd| self.pool.get(&(self.task.clone(), strategy, i, *sd)))
            .collect();
        if per_seed.iter().any(Option::is_none) {
            return None;
        }
        Some(
            per_seed
                .into_iter()
                .map(|v| pick(v.expect("checked"), self.target, k))
                .collect(),
        )
    }

    /// The seed mean of each seed's best clean accuracy under source `i` for `strategy`.
    fn best_clean(&self, strategy: Strategy, i: usize) -> f64 {
        self.seeds
            .iter()
            .map(|sd| {
                self.pool[&(self.task.clone(), strategy, i, *sd)]
                    .iter()
                    .map(|c| c.clean())
                    .fold(0.0, f64::max)
            })
            .sum::<f64>()
            / self.seeds.len() as f64
    }
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
