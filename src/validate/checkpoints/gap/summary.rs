//! The summary ([`summarise`]): the gap and ranking rows, pooled over seeds with their bootstrap
//! (seeds, then images), gathered with the member, probe and pair rows and their files.

use std::collections::BTreeSet;
use std::ops::Range;

use rand::SeedableRng;
use rand::rngs::StdRng;

use super::cell::robust_at;
use super::pooled::member_rows;
use super::probe_stats::{pair_rows, probe_rows};
use super::{GapCell, GapSpec, MemberRow, PairRow, ProbeRow, csv, markdown};
use crate::tradeoff::Interval;
use crate::tradeoff::bootstrap::{percentile_interval, resample_indices};
use crate::tradeoff::stats::spearman;

/// One (dataset, checkpoint, radius, strategy) row of the summary, pooled over seeds.
#[derive(Debug, Clone, PartialEq)]
pub struct GapRow {
    /// Dataset.
    pub dataset: String,
    /// `peak` or `final`.
    pub which: String,
    /// Radius.
    pub eps: f64,
    /// Strategy id.
    pub strategy: String,
    /// Image outcomes pooled (seeds × n).
    pub n: usize,
    /// Clean-correct.
    pub clean: usize,
    /// Robust under the run's attack.
    pub pgd: usize,
    /// Robust under AutoAttack.
    pub autoattack: usize,
    /// Robust under PGD, broken by AutoAttack.
    pub only_pgd_missed: usize,
    /// Robust under AutoAttack, broken by PGD.
    pub only_aa_missed: usize,
    /// (pgd − autoattack) / n and its 95% bootstrap interval over seeds, then images.
    pub gap: f64,
    /// See `gap`.
    pub gap_ci: Option<Interval>,
}

/// Per (dataset, checkpoint, radius): do the strategies rank the same under both attacks?
#[derive(Debug, Clone, PartialEq)]
pub struct RankRow {
    /// Dataset.
    pub dataset: String,
    /// `peak` or `final`.
    pub which: String,
    /// Radius.
    pub eps: f64,
    /// Spearman ρ between the strategies' robust accuracies under PGD and under AutoAttack (None
    /// when one side is constant).
    pub rho: Option<f64>,
    /// Its 95% bootstrap interval over seeds, then images.
    pub rho_ci: Option<Interval>,
    /// Best strategy under PGD and under AutoAttack.
    pub best: (String, String),
}

/// The summary: rows, ranking rows, and their Markdown and CSV.
pub struct GapSummary {
    /// Per strategy.
    pub rows: Vec<GapRow>,
    /// Per ranking.
    pub ranks: Vec<RankRow>,
    /// Per strategy, where the cells record AutoAttack's members.
    pub members: Vec<MemberRow>,
    /// Per strategy and probe, where the cells record probes.
    pub probes: Vec<ProbeRow>,
    /// Per pair of probes recorded on the same points, strategies pooled.
    pub pairs: Vec<PairRow>,
    /// `gap.md`.
    pub markdown: String,
    /// `gap.csv`.
    pub csv: String,
    /// `members.csv`, when some cell records the members.
    pub members_csv: Option<String>,
    /// `probes.csv`, when some cell records a probe.
    pub probes_csv: Option<String>,
    /// `probe-pairs.csv`, when some point records two probes.
    pub pairs_csv: Option<String>,
}

/// Per strategy, the per-seed level strings (pgd, autoattack).
type Strategies = Vec<(String, Vec<(String, String)>)>;

/// Per (dataset, which): per strategy, the per-seed level strings (pgd, autoattack).
type Pools = std::collections::BTreeMap<(String, String), Strategies>;

/// The pools of the cells covering at least `radii` radii.
fn pools(cells: &[GapCell], radii: usize) -> Pools {
    let mut p: Pools = Default::default();
    for c in cells.iter().filter(|c| c.eps.len() >= radii) {
        for pt in &c.points {
            for w in &pt.which {
                let list = p.entry((c.dataset.clone(), w.clone())).or_default();
                match list.iter_mut().find(|(s, _)| *s == c.strategy) {
                    Some((_, v)) => v.push((pt.pgd.clone(), pt.autoattack.clone())),
                    None => list.push((c.strategy.clone(), vec![(pt.pgd.clone(), pt.autoattack.clone())])),
                }
            }
        }
    }
    p
}

/// Per radius of `spec`, the seeds whose cells cover it.
pub fn seeds_by_radius(cells: &[GapCell], spec: &GapSpec) -> Vec<(f64, BTreeSet<u64>)> {
    spec.eps
        .iter()
        .enumerate()
        .map(|(k, &e)| (e, cells.iter().filter(|c| c.eps.len() > k).map(|c| c.seed).collect()))
        .collect()
}

/// The seeds attacked, in words: `{0, 1, 2}`, or per radius when they differ
/// (`{0, 1, 2} at 4/255, {0} at 8/255`, `none yet at 8/255`).
pub fn seeds_text(by_radius: &[(f64, BTreeSet<u64>)]) -> String {
    match by_radius {
        [(_, first), rest @ ..] if rest.iter().all(|(_, s)| s == first) => format!("{first:?}"),
        _ => by_radius
            .iter()
            .map(|(e, s)| {
                let e = crate::validate::study::report::eps_label(*e);
                if s.is_empty() {
                    format!("none yet at {e}")
                } else {
                    format!("{s:?} at {e}")
                }
            })
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// Robust share at radius `k` under (pgd, aa) over the image positions `pos` of the seeds `pick`
/// (indices into `seeds`, repeats counted).
fn shares(seeds: &[(String, String)], pick: &[usize], k: usize, pos: &[usize]) -> (f64, f64) {
    let (mut a, mut b, mut n) = (0usize, 0usize, 0usize);
    for (p, q) in pick.iter().map(|&j| &seeds[j]) {
        for &i in pos {
            a += usize::from(robust_at(p, i, k));
            b += usize::from(robust_at(q, i, k));
            n += 1;
        }
    }
    (a as f64 / n as f64, b as f64 / n as f64)
}

/// The summary of `cells`, with `reps` bootstrap replicates. Each replicate draws, per strategy,
/// its seeds with replacement (nothing drawn for a strategy with one seed), then one set of image
/// positions shared by every strategy and seed (the runs share their evaluation images): with
/// several seeds the intervals cover the spread between trainings, not only the images. A
/// radius pools the cells that cover it (all of them unless the folder's radii grew under
/// `--seeds`); radii pooling the same cells share their replicates.
pub fn summarise(cells: &[GapCell], spec: &GapSpec, reps: usize) -> GapSummary {
    let mut rows = Vec::new();
    let mut ranks = Vec::new();
    let mut rng = StdRng::seed_from_u64(crate::seeds::splitmix64(0x0067_6170));
    for (key, strategies, radii) in blocks(cells, spec) {
        let block = Block::new(key, strategies, reps, &mut rng);
        for (k, &eps) in spec.eps.iter().enumerate().take(radii.end).skip(radii.start) {
            let mut pgd_acc = Vec::new();
            let mut aa_acc = Vec::new();
            for i in 0..block.strategies.len() {
                let (row, (p, a)) = block.gap_row(i, k, eps);
                pgd_acc.push(p);
                aa_acc.push(a);
                rows.push(row);
            }
            ranks.push(block.rank_row(k, eps, (&pgd_acc, &aa_acc)));
        }
    }
    gather(cells, spec, reps, rows, ranks)
}

/// What the summary pools: per group of radii covered by the same cells, per (dataset,
/// checkpoint), each strategy's seeds; sorted by (dataset, checkpoint), then first radius.
fn blocks(cells: &[GapCell], spec: &GapSpec) -> Vec<((String, String), Strategies, Range<usize>)> {
    // Radii grouped by the cells covering them: (first radius, radii).
    let mut groups: Vec<(usize, usize)> = Vec::new();
    for k in 0..spec.eps.len() {
        let covering = |k: usize| cells.iter().filter(|c| c.eps.len() > k).count();
        match groups.last_mut() {
            Some((first, len)) if covering(*first) == covering(k) => *len += 1,
            _ => groups.push((k, 1)),
        }
    }
    let mut by_pool = Vec::new();
    for &(first, len) in &groups {
        for (key, strategies) in pools(cells, first + 1) {
            by_pool.push((key, strategies, first..first + len));
        }
    }
    by_pool.sort_by(|a, b| (&a.0, a.2.start).cmp(&(&b.0, b.2.start)));
    by_pool
}

/// One (dataset, checkpoint) over a group of radii: each strategy's seeds and the bootstrap
/// replicates its rows share.
struct Block {
    /// Dataset.
    dataset: String,
    /// `peak` or `final`.
    which: String,
    /// Per strategy, the per-seed level strings (pgd, autoattack).
    strategies: Strategies,
    /// Images per seed.
    n_img: usize,
    /// Every image position.
    all: Vec<usize>,
    /// Per strategy, every seed (indices).
    every: Vec<Vec<usize>>,
    /// Per replicate: each strategy's seeds, then the image positions.
    draws: Vec<(Vec<Vec<usize>>, Vec<usize>)>,
}

impl Block {
    /// The block of (`dataset`, `which`) with `reps` replicates drawn from `rng`.
    fn new((dataset, which): (String, String), strategies: Strategies, reps: usize, rng: &mut StdRng) -> Block {
        let n_img = strategies[0].1[0].0.len();
        let all: Vec<usize> = (0..n_img).collect();
        let every: Vec<Vec<usize>> = strategies.iter().map(|(_, s)| (0..s.len()).collect()).collect();
        // Per replicate: each strategy's seeds, then the image positions.
        let draws: Vec<(Vec<Vec<usize>>, Vec<usize>)> = (0..reps)
            .map(|_| {
                let seeds = every
                    .iter()
                    .map(|e| match e.len() {
                        1 => e.clone(),
                        m => resample_indices(m, m, &mut *rng),
                    })
                    .collect();
                (seeds, resample_indices(n_img, n_img, &mut *rng))
            })
            .collect();
        Block {
            dataset,
            which,
            strategies,
            n_img,
            all,
            every,
            draws,
        }
    }

    /// The row of strategy `i` at radius `eps` (index `k`), and its robust shares (pgd, aa).
    fn gap_row(&self, i: usize, k: usize, eps: f64) -> (GapRow, (f64, f64)) {
        let (strategy, seeds) = &self.strategies[i];
        let n_img = self.n_img;
        let (p, a) = shares(seeds, &self.every[i], k, &self.all);
        let boot: Vec<f64> = self
            .draws
            .iter()
            .map(|(sd, d)| {
                let (p, a) = shares(seeds, &sd[i], k, d);
                p - a
            })
            .collect();
        let (mut only_p, mut only_a, mut clean) = (0, 0, 0);
        for (p, a) in seeds {
            for i in 0..n_img {
                clean += usize::from(p.as_bytes()[i] != b'0');
                only_p += usize::from(robust_at(p, i, k) && !robust_at(a, i, k));
                only_a += usize::from(robust_at(a, i, k) && !robust_at(p, i, k));
            }
        }
        let n = seeds.len() * n_img;
        let row = GapRow {
            dataset: self.dataset.clone(),
            which: self.which.clone(),
            eps,
            strategy: strategy.clone(),
            n,
            clean,
            pgd: (p * n as f64).round() as usize,
            autoattack: (a * n as f64).round() as usize,
            only_pgd_missed: only_p,
            only_aa_missed: only_a,
            gap: p - a,
            gap_ci: percentile_interval(&boot),
        };
        (row, (p, a))
    }

    /// The ranking row at radius `eps` (index `k`), the strategies' robust shares being
    /// (`pgd_acc`, `aa_acc`).
    fn rank_row(&self, k: usize, eps: f64, (pgd_acc, aa_acc): (&[f64], &[f64])) -> RankRow {
        let boot: Vec<f64> = self
            .draws
            .iter()
            .filter_map(|(sd, d)| {
                let (p, a): (Vec<f64>, Vec<f64>) = self
                    .strategies
                    .iter()
                    .zip(sd)
                    .map(|((_, s), pick)| shares(s, pick, k, d))
                    .unzip();
                spearman(&p, &a).ok()
            })
            .collect();
        RankRow {
            dataset: self.dataset.clone(),
            which: self.which.clone(),
            eps,
            rho: spearman(pgd_acc, aa_acc).ok(),
            rho_ci: percentile_interval(&boot),
            best: (self.best(pgd_acc), self.best(aa_acc)),
        }
    }

    /// The strategies with the largest of `v` (one per strategy), joined by ` = `.
    fn best(&self, v: &[f64]) -> String {
        let m = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        self.strategies
            .iter()
            .zip(v)
            .filter(|(_, x)| **x == m)
            .map(|((s, _), _)| s.clone())
            .collect::<Vec<_>>()
            .join(" = ")
    }
}

/// The summary of the gap `rows` and ranking `ranks` of `cells`, with the member, probe and pair
/// rows, the Markdown (`reps` replicates) and the CSV files.
fn gather(cells: &[GapCell], spec: &GapSpec, reps: usize, rows: Vec<GapRow>, ranks: Vec<RankRow>) -> GapSummary {
    let members: Vec<MemberRow> = member_rows(cells, spec);
    let probes: Vec<ProbeRow> = probe_rows(cells, spec);
    let pairs: Vec<PairRow> = pair_rows(cells, spec);
    let mut markdown = markdown::render(&rows, &ranks, cells, spec, reps);
    if !members.is_empty() {
        markdown.push_str(&markdown::render_members(&members));
    }
    if !probes.is_empty() {
        markdown.push_str(&markdown::render_probes(&probes, cells));
    }
    if !pairs.is_empty() {
        markdown.push_str(&markdown::render_pairs(&pairs));
    }
    let members_csv = (!members.is_empty()).then(|| csv::members_csv(&members));
    let probes_csv = (!probes.is_empty()).then(|| csv::probes_csv(&probes));
    let pairs_csv = (!pairs.is_empty()).then(|| csv::pairs_csv(&pairs));
    let gap_csv = csv::gap_csv(&rows);
    GapSummary {
        rows,
        ranks,
        members,
        probes,
        pairs,
        markdown,
        csv: gap_csv,
        members_csv,
        probes_csv,
        pairs_csv,
    }
}
