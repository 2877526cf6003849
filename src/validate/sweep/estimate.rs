//! `validate bench --config FILE`: the expected time of each cell of a configuration on this
//! machine, from the timings `validate bench` measures with the configuration's own model and
//! batch size (`engine::bench`), and the configuration's step count, schedule, evaluation images,
//! radii and OOD.
//!
//! A fine-tuning cell costs
//!
//! - training: `S · T · B / b` with S the schedule's last evaluation step (where a run stops), T
//!   the measured AdamW step at the timed batch size b, B the configuration's batch size (the same
//!   unless `--batch-size` says otherwise; linear in between) — for linear probing instead one forward pass over the training images
//!   (`Trainer` caches the frozen backbone's features; the head steps are negligible);
//! - evaluation, at each of the E evaluation steps, per image: a clean forward and an OOD forward
//!   when the dataset has OOD;
//! - attacks, at each evaluation step, per image and radius: at most `Attack::max_steps`
//!   gradient steps (PGD/APGD iterations, × targets for APGD-T, Square queries counted as a third
//!   of a step, AutoAttack's members summed), costed as the measured last-iterate PGD-15 per image
//!   × steps/15. The runner attacks only the points
//!   still robust and drops a point once broken, so this is an upper bound, reached when every
//!   point stays robust at every radius; the cell's time lies between training + evaluation and
//!   that bound.
//!
//! On the CPU the runner splits batches over the cores, so the split timings are used; on a GPU
//! it does not, so the whole-batch ones are.

use crate::engine::bench::BenchRow;
use crate::validate::sweep::config::{Ood, ValidRun};

/// The expected seconds of one fine-tuning cell.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CellEstimate {
    /// Dataset name.
    pub dataset: String,
    /// Strategy id.
    pub strategy: String,
    /// Training seconds.
    pub train_s: f64,
    /// Clean and OOD forward seconds of every evaluation.
    pub eval_s: f64,
    /// Attack seconds if every point stayed robust (the upper bound: see the module doc).
    pub attack_max_s: f64,
}

impl CellEstimate {
    /// The least a cell takes: training and evaluation, every point broken at once.
    pub fn min_s(&self) -> f64 {
        self.train_s + self.eval_s
    }
    /// The most: every point attacked for every iteration at every radius.
    pub fn max_s(&self) -> f64 {
        self.min_s() + self.attack_max_s
    }
}

/// One estimate per dataset × strategy of `run` that `rows` timed (rows of other strategies and
/// strategies without a row are left out); `cpu` picks the timings the runner's path uses.
pub fn estimate(run: &ValidRun, rows: &[BenchRow], cpu: bool) -> Vec<CellEstimate> {
    let steps = *run.eval_steps.last().expect("validated non-empty") as f64;
    let evals = run.eval_steps.len() as f64;
    let n = run.config.eval_subset as f64;
    let mut out = Vec::new();
    for (d, ood) in run.config.datasets.iter().zip(&run.ood) {
        for s in &run.strategies {
            let Some(r) = rows.iter().find(|r| r.strategy == s.id()) else {
                continue;
            };
            let b = r.batch as f64;
            let (step, forward, pgd15) = if cpu {
                (
                    r.train_step_data_parallel_s,
                    r.eval_batch_split_s / b,
                    r.pgd15_split_s / b,
                )
            } else {
                (r.train_step_s, r.eval_batch_s / b, r.pgd15_s / b)
            };
            let train_s = if s.def().frozen_backbone() {
                d.train_images as f64 * forward
            } else {
                steps * step * run.config.batch_size as f64 / b
            };
            let forwards = if matches!(ood, Ood::None) { 1.0 } else { 2.0 };
            let attack: f64 = run.attacks.iter().map(|a| pgd15 * a.max_steps(usize::MAX) / 15.0).sum();
            out.push(CellEstimate {
                dataset: d.name.clone(),
                strategy: s.id().into(),
                train_s,
                eval_s: evals * n * forwards * forward,
                attack_max_s: evals * n * attack,
            });
        }
    }
    out
}

/// Hours, minutes or seconds, whichever reads best.
fn human(s: f64) -> String {
    if s >= 3600.0 {
        format!("{:.1} h", s / 3600.0)
    } else if s >= 60.0 {
        format!("{:.1} min", s / 60.0)
    } else {
        format!("{s:.1} s")
    }
}

/// The table `validate bench --config` prints after the timings: per cell, and the whole sweep
/// (× seeds) in device-hours.
pub fn render(run: &ValidRun, est: &[CellEstimate], device: &str) -> String {
    let steps = run.eval_steps.last().copied().unwrap_or(0);
    let mut s = format!(
        "\nexpected time per cell of {} on this machine ({device}): {steps} steps, {} evaluations × \
         {} images × (clean{} + {} radii); attacks at most (every point robust at every radius for \
         every iteration), the cell between the two\n{:<14} {:<14} {:>10} {:>11} {:>12} {:>21}\n",
        run.config.name,
        run.eval_steps.len(),
        run.config.eval_subset,
        if run.ood.iter().any(|o| !matches!(o, Ood::None)) {
            " + OOD"
        } else {
            ""
        },
        run.attacks.len(),
        "dataset",
        "strategy",
        "train",
        "evaluation",
        "attacks ≤",
        "cell"
    );
    for e in est {
        s += &format!(
            "{:<14} {:<14} {:>10} {:>11} {:>12} {:>21}\n",
            e.dataset,
            e.strategy,
            human(e.train_s),
            human(e.eval_s),
            human(e.attack_max_s),
            format!("{} to {}", human(e.min_s()), human(e.max_s()))
        );
    }
    let seeds = run.config.seeds.len();
    let sum = |f: fn(&CellEstimate) -> f64| human(est.iter().map(f).sum::<f64>() * seeds as f64);
    s += &format!(
        "all {} cells × {seeds} seed(s): {} to {} of device time (upstream not included)\n",
        est.len(),
        sum(CellEstimate::min_s),
        sum(CellEstimate::max_s)
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::RunConfig;

    fn row(strategy: &str, batch: usize) -> BenchRow {
        BenchRow {
            model: "m".into(),
            strategy: strategy.into(),
            batch,
            dtype: "f32".into(),
            threads: 2,
            train_step_s: 1.0,
            eval_batch_s: 0.5,
            eval_batch_split_s: 0.25,
            train_step_data_parallel_s: 0.75,
            pgd15_s: 6.0,
            pgd15_split_s: 3.0,
            pgd15_early_exit_s: 1.0,
            peak_rss_mb: 0.0,
        }
    }

    /// The smoke preset: schedule [0, 4, 8, 12] (4 evaluations, stop at 12), eval_subset and
    /// radii as configured; each term by hand.
    #[test]
    fn cells_cost_steps_evaluations_and_attacks() {
        let run = RunConfig::preset("smoke").unwrap();
        let (n, radii) = (run.config.eval_subset as f64, run.attacks.len());
        assert_eq!(run.eval_steps, [0, 4, 8, 12]);
        let iters: Vec<f64> = run.attacks.iter().map(|a| a.max_steps(usize::MAX)).collect();
        assert_eq!(iters.len(), radii);
        let rows = [row("lora", 8), row("linear_probe", 8)];
        let ood = !matches!(run.ood[0], Ood::None);
        let forwards = if ood { 2.0 } else { 1.0 };
        for (cpu, step, fwd, pgd) in [(true, 0.75, 0.25, 3.0), (false, 1.0, 0.5, 6.0)] {
            let est = estimate(&run, &rows, cpu);
            // smoke trains linear_probe, lora and bitfit; bitfit has no row.
            assert_eq!(est.len(), 2 * run.config.datasets.len());
            let lora = est.iter().find(|e| e.strategy == "lora").unwrap();
            // Timed at batch 8, configured 16: twice the step.
            assert_eq!(run.config.batch_size, 16);
            assert_eq!(lora.train_s, 12.0 * step * 2.0);
            let attack: f64 = iters.iter().map(|k| pgd / 8.0 * k / 15.0).sum();
            assert_eq!(lora.eval_s, 4.0 * n * forwards * fwd / 8.0);
            let want = 4.0 * n * attack;
            assert!(
                (lora.attack_max_s - want).abs() < 1e-9 * want,
                "{} vs {want}",
                lora.attack_max_s
            );
            assert_eq!(lora.max_s(), lora.train_s + lora.eval_s + lora.attack_max_s);
            let lp = est.iter().find(|e| e.strategy == "linear_probe").unwrap();
            assert_eq!(lp.train_s, run.config.datasets[0].train_images as f64 * fwd / 8.0);
            assert_eq!((lp.eval_s, lp.attack_max_s), (lora.eval_s, lora.attack_max_s));
        }
        let text = render(&run, &estimate(&run, &rows, true), "cpu");
        assert!(text.contains("12 steps, 4 evaluations"), "{text}");
        assert!(text.contains("lora") && text.contains("of device time"), "{text}");
    }
}
