//! The comparison per (task, strategy, radius): the statistics of the path against the
//! trajectory over seeds and evaluation images with their bootstrap intervals
//! ([`summarise`]), written as `interpolate.md` and `interpolate.csv` beside the figures.

use std::collections::BTreeMap;
use std::path::Path;

use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::engine::peft::Strategy;
use crate::error::Result;
use crate::io::{Csv, num, write_atomic};
use crate::tradeoff::bootstrap::{percentile_interval, resample_indices};
use crate::tradeoff::{AucRule, Interval, auc};
use crate::validate::checkpoints::interpolate::figures::figures;
use crate::validate::checkpoints::interpolate::{
    CLEAN_SLACK, HeadStart, InterpCell, InterpSpec, Outcomes, point, strategy_name,
};
use crate::validate::study::report::{ci_cells, eps_label, with_ci};

/// A strategy's position in [`Strategy::ALL`] from its id (None: an id this build does not know).
fn strategy_order(id: &str) -> Option<usize> {
    Strategy::ALL.iter().position(|s| s.id() == id)
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
        let s = strategy_order(&c.strategy).unwrap_or(usize::MAX);
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

/// `interpolate.md`, `interpolate.csv` and the figures.
pub(super) fn write_summary(dir: &Path, cells: &[InterpCell], spec: &InterpSpec, reps: usize) -> Result<()> {
    let mut rows = summarise(cells, reps);
    let order = |r: &InterpRow| strategy_order(&r.strategy);
    rows.sort_by(|a, b| {
        (&a.dataset, a.eps, order(a))
            .partial_cmp(&(&b.dataset, b.eps, order(b)))
            .expect("finite radii")
    });
    let mut md = intro(cells, spec, reps);
    let mut csv = Csv::new(&COLUMNS);
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
        md += &md_row(r);
        csv.push(csv_row(r));
    }
    write_atomic(&dir.join("interpolate.md"), md.as_bytes())?;
    write_atomic(&dir.join("interpolate.csv"), csv.render().as_bytes())?;
    figures(dir, cells)
}

/// The head of `interpolate.md`: the path and where it starts, what was checked against the
/// records, the attack, the seeds, and how the statistics and their intervals are computed.
fn intro(cells: &[InterpCell], spec: &InterpSpec, reps: usize) -> String {
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
    format!(
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
    )
}

/// The columns of `interpolate.csv`.
const COLUMNS: [&str; 22] = [
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
];

/// A row of a radius's table in `interpolate.md`.
fn md_row(r: &InterpRow) -> String {
    let name = strategy_name(&r.strategy);
    format!(
        "| {name} | {} | {} | {} | {:.3} / {:.3} | {:.3} ({}) | {} | {:.3} | {} |\n",
        with_ci(r.auc_traj.0, r.auc_traj.1),
        with_ci(r.auc_path.0, r.auc_path.1),
        with_ci(r.auc_diff.0, r.auc_diff.1),
        r.final_acc.0,
        r.final_acc.1,
        r.best.0,
        r.best.1,
        with_ci(r.gain.0, r.gain.1),
        r.lost,
        r.recovered
            .map_or("nothing lost".into(), |x| format!("{:.0}%", 100.0 * x))
    )
}

/// A row of `interpolate.csv` ([`COLUMNS`]).
fn csv_row(r: &InterpRow) -> Vec<String> {
    let mut row = vec![r.dataset.clone(), r.strategy.clone(), num(r.eps), r.seeds.to_string()];
    for (v, c) in [r.auc_traj, r.auc_path, r.auc_diff] {
        row.push(num(v));
        row.extend(ci_cells(c));
    }
    row.extend([
        num(r.final_acc.0),
        num(r.final_acc.1),
        num(r.best.0),
        num(r.best.1),
        num(r.gain.0),
    ]);
    row.extend(ci_cells(r.gain.1));
    row.extend([num(r.lost), r.recovered.map_or(String::new(), num)]);
    row
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
