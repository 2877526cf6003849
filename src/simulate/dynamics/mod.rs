//! `simulate dynamics`: the training-dynamics theory (`theory::dynamics`) run per strategy, with
//! figures, CSVs, AUC against task complexity d, and a sweep that checks whether the phenomena
//! measured by Li et al. 2025 (arXiv:2503.14836, §4–5) appear in this model:
//!
//! 1. robustness rises, then falls, early in fine-tuning;
//! 2. Full fine-tuning and linear probing at the bottom of the AUC ranking;
//! 3. BitFit best on simple tasks, Compacter best on complex ones.
//!
//! Configuration: `simulations/dynamics.toml` (embedded; `--config FILE` replaces it).

mod answer;
mod config;
mod figures;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use super::progress;
use crate::engine::peft::Strategy;
use crate::error::Result;
use crate::io::write_atomic;
use crate::plot::write_figure;
use crate::simulate::config::at_least;
use crate::tradeoff::AucRule;
use answer::sweep_answer;
pub use config::{DYNAMICS_TOML, DynamicsConfig, NetworkCfg, SweepCfg, SweepPoint, TaskCfg, TrainCfg, ValidDynamics};
use figures::{auc_vs_d_figure, curves_figure, frontiers_figure};

/// A trajectory of one of the registry's strategies.
pub type Trajectory = crate::theory::dynamics::Trajectory<Strategy>;

/// Predicted step-rule AUC (first ε of `[task]`) per strategy for a task of complexity `d`, the
/// other parameters from `cfg`: the theory column of `validate compare`.
pub fn predicted_auc(cfg: &ValidDynamics, d: usize) -> Result<Vec<(Strategy, f64)>> {
    at_least("d", d, 1)?;
    let s = SweepPoint {
        d,
        ..cfg.main_setting()
    };
    Ok(cfg
        .trajectories(s)?
        .iter()
        .map(|t| (t.strategy, t.auc(0, AucRule::Step)))
        .collect())
}

/// Runs every (setting, strategy) pair on all cores; results in input order (deterministic:
/// each trajectory depends only on its inputs).
fn run_all(cfg: &ValidDynamics, settings: &[SweepPoint], msg: &'static str) -> Result<Vec<Vec<Trajectory>>> {
    let jobs: Vec<(usize, Strategy)> = (0..settings.len())
        .flat_map(|i| Strategy::ALL.iter().map(move |&s| (i, s)))
        .collect();
    let pb = progress(jobs.len() as u64, msg);
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<Trajectory>>>> = Mutex::new((0..jobs.len()).map(|_| None).collect());
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(jobs.len());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&(i, st)) = jobs.get(k) else { break };
                    let r = cfg.trajectory(settings[i], st);
                    results.lock().expect("no panics while holding the lock")[k] = Some(r);
                    pb.inc(1);
                }
            });
        }
    });
    pb.finish_and_clear();
    let mut flat = results.into_inner().expect("no poisoned lock").into_iter();
    let mut out = Vec::with_capacity(settings.len());
    for _ in settings {
        let mut row = Vec::with_capacity(Strategy::ALL.len());
        for _ in Strategy::ALL {
            row.push(flat.next().flatten().expect("every job ran")?);
        }
        out.push(row);
    }
    Ok(out)
}

/// Per-strategy numbers of one setting (first ε).
#[derive(Debug, Clone, PartialEq)]
pub struct StrategyRow {
    /// Strategy.
    pub strategy: Strategy,
    /// Trainable parameters.
    pub trainable: usize,
    /// Step-rule AUC.
    pub auc: f64,
    /// Trapezoid-rule AUC.
    pub auc_trapezoid: f64,
    /// Step of peak robustness.
    pub peak_step: u64,
    /// Peak robust accuracy.
    pub peak: f64,
    /// Drop after the peak.
    pub drop: f64,
    /// Rise-then-fall by the margin.
    pub rises_then_falls: bool,
    /// Clean accuracy at the end.
    pub final_clean: f64,
    /// Robust accuracy at the end.
    pub final_robust: f64,
}

fn rows(cfg: &ValidDynamics, trajs: &[Trajectory]) -> Vec<StrategyRow> {
    trajs
        .iter()
        .map(|t| {
            let peak = t.peak(0, cfg.train.margin);
            let last = t.points.last().expect("at least two evaluations");
            StrategyRow {
                strategy: t.strategy,
                trainable: t.trainable,
                auc: t.auc(0, AucRule::Step),
                auc_trapezoid: t.auc(0, AucRule::Trapezoid),
                peak_step: t.points[peak.index].step,
                peak: peak.value,
                drop: peak.drop,
                rises_then_falls: peak.rises_then_falls,
                final_clean: last.clean,
                final_robust: last.robust[0],
            }
        })
        .collect()
}

/// Strategies ordered by decreasing AUC.
fn ranking(rows: &[StrategyRow]) -> Vec<Strategy> {
    let mut r: Vec<&StrategyRow> = rows.iter().collect();
    r.sort_by(|a, b| b.auc.total_cmp(&a.auc));
    r.iter().map(|x| x.strategy).collect()
}

/// Full and linear probing hold the two lowest AUCs.
fn full_lp_bottom(rows: &[StrategyRow]) -> bool {
    let r = ranking(rows);
    let tail = &r[r.len() - 2..];
    tail.contains(&Strategy::Full) && tail.contains(&Strategy::LinearProbe)
}

/// What `simulate dynamics` found.
#[derive(Debug, Clone)]
pub struct DynSummary {
    /// Files written.
    pub files: Vec<PathBuf>,
    /// Main setting's rows.
    pub main: Vec<StrategyRow>,
    /// η of the main setting.
    pub eta: f64,
    /// Largest quadrature gap |L(n) − L(2n)| over the main trajectories.
    pub max_quad_gap: f64,
    /// The written answer (also `dynamics_answer.md`).
    pub answer: String,
    /// Wall time, seconds.
    pub elapsed_s: f64,
}

/// Runs the main setting, the d axis and the sweep; writes figures and CSVs into `out`.
pub fn run(cfg: &ValidDynamics, out: &Path) -> Result<DynSummary> {
    let start = Instant::now();
    let mut files = Vec::new();
    let main_s = cfg.main_setting();
    let main = run_all(cfg, &[main_s], "main trajectories")?.remove(0);
    let (fig, csv) = curves_figure(cfg, &main);
    files.extend(write_figure(out, "dynamics_curves", &fig, &csv)?);
    let (fig, csv) = frontiers_figure(cfg, &main);
    files.extend(write_figure(out, "dynamics_frontiers", &fig, &csv)?);

    let d_settings: Vec<SweepPoint> = cfg.sweep.d_values.iter().map(|&d| SweepPoint { d, ..main_s }).collect();
    let by_d = run_all(cfg, &d_settings, "AUC against d")?;
    let (fig, csv) = auc_vs_d_figure(cfg, &d_settings, &by_d);
    files.extend(write_figure(out, "dynamics_auc_vs_d", &fig, &csv)?);
    let pred = out.join("predicted_auc.csv");
    write_atomic(&pred, csv.render().as_bytes())?;
    files.push(pred);

    let mut grid = Vec::new();
    for &p in &cfg.sweep.p_values {
        for &overlap in &cfg.sweep.overlap_values {
            for &lr in &cfg.sweep.lr_values {
                for &d in &cfg.sweep.d_values {
                    grid.push(SweepPoint { p, d, overlap, lr });
                }
            }
        }
    }
    let swept = run_all(cfg, &grid, "phenomenon sweep")?;
    let (csv, answer) = sweep_answer(cfg, &grid, &swept);
    let path = out.join("dynamics_sweep.csv");
    write_atomic(&path, csv.render().as_bytes())?;
    files.push(path);
    let path = out.join("dynamics_answer.md");
    write_atomic(&path, answer.as_bytes())?;
    files.push(path);
    Ok(DynSummary {
        files,
        max_quad_gap: main.iter().map(Trajectory::max_quad_gap).fold(0.0, f64::max),
        main: rows(cfg, &main),
        eta: cfg.eta(main_s.d),
        answer,
        elapsed_s: start.elapsed().as_secs_f64(),
    })
}

impl DynSummary {
    /// The human-readable summary.
    pub fn render(&self, cfg: &ValidDynamics) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "Training dynamics (population GD, {} Gauss–Hermite nodes; max |L(n) − L(2n)| = {:.1e}): p = {}, d = {}, η = {:.4}, overlap = {}, ε = {}\n",
            cfg.train.nodes, self.max_quad_gap, cfg.task.p, cfg.task.d, self.eta, cfg.task.overlap, cfg.task.eps[0]
        );
        let _ = writeln!(
            s,
            "{:<16} {:>9} {:>8} {:>11} {:>8} {:>8} {:>12} {:>12}",
            "strategy", "trainable", "AUC", "peak step", "peak", "drop", "final clean", "final robust"
        );
        for r in &self.main {
            let _ = writeln!(
                s,
                "{:<16} {:>9} {:>8.4} {:>11} {:>8.4} {:>8.4} {:>12.4} {:>12.4}",
                r.strategy.name(),
                r.trainable,
                r.auc,
                r.peak_step,
                r.peak,
                r.drop,
                r.final_clean,
                r.final_robust
            );
        }
        s.push('\n');
        s.push_str(&self.answer);
        let _ = writeln!(s, "\n{} files written in {:.1} s", self.files.len(), self.elapsed_s);
        s
    }
}
