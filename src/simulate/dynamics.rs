//! `simulate dynamics`: the training-dynamics theory (`theory::dynamics`) run per strategy, with
//! figures, CSVs, AUC against task complexity d, and a sweep that checks whether the phenomena
//! measured by Li et al. 2025 (arXiv:2503.14836, §4–5) appear in this model:
//!
//! 1. robustness rises, then falls, early in fine-tuning;
//! 2. Full fine-tuning and linear probing at the bottom of the AUC ranking;
//! 3. BitFit best on simple tasks, Compacter best on complex ones.
//!
//! Configuration: `simulations/dynamics.toml` (embedded; `--config FILE` replaces it).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use plotters::prelude::SeriesLabelPosition;
use serde::Deserialize;

use super::config::{at_least, non_empty, parse_toml};
use super::figures::num;
use super::progress;
use crate::error::{Error, Result, check};
use crate::plot::{Axis, Csv, LineChart, Series, Style, color, write_atomic, write_figure};
use crate::theory::dynamics::{Backbone, Net, NetShape, Task, TrainSpec, Trajectory, train};
use crate::theory::{Strategy, phi_inv};
use crate::tradeoff::{AucRule, Point, frontier};

/// The embedded default configuration (the text of `simulations/dynamics.toml`).
pub const DYNAMICS_TOML: &str = include_str!("../../simulations/dynamics.toml");

/// The whole configuration, as written in the file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DynamicsConfig {
    /// Data and downstream task.
    pub task: TaskCfg,
    /// Network and PEFT module sizes.
    pub network: NetworkCfg,
    /// Gradient descent and evaluation.
    pub train: TrainCfg,
    /// The d axis and the phenomenon sweep.
    pub sweep: SweepCfg,
}

/// `[task]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TaskCfg {
    /// Robust feature reliability p ∈ (0.5, 1).
    pub p: f64,
    /// Non-robust features D.
    pub dim: usize,
    /// Non-robust features 1..=upstream carried by the pretrained backbone.
    pub upstream: usize,
    /// Label-carrying non-robust features d of the downstream task.
    pub d: usize,
    /// Fraction of the d features that the backbone carries.
    pub overlap: f64,
    /// η = Φ⁻¹(target_acc)/√d unless `eta` is set.
    pub target_acc: f64,
    /// Fixed η (optional).
    pub eta: Option<f64>,
    /// Attack sizes; the first is used for AUC and peaks.
    pub eps: Vec<f64>,
}

/// `[network]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NetworkCfg {
    /// Width h of z.
    pub hidden: usize,
    /// Standard deviation of the initial head.
    pub head_init: f64,
    /// LoRA rank.
    pub lora_rank: usize,
    /// Adapter bottleneck.
    pub adapter_rank: usize,
    /// Compacter Kronecker factor.
    pub compacter_n: usize,
    /// Compacter bottleneck.
    pub compacter_rank: usize,
    /// Seed of backbone and initial parameters.
    pub seed: u64,
}

/// `[train]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrainCfg {
    /// Gradient-descent steps.
    pub steps: u64,
    /// Step size.
    pub lr: f64,
    /// Gauss–Hermite nodes (≥ 32).
    pub nodes: usize,
    /// Log-spaced evaluations after step 0.
    pub evals: usize,
    /// Margin of the rise-then-fall test.
    pub margin: f64,
}

/// `[sweep]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SweepCfg {
    /// Task complexities.
    pub d_values: Vec<usize>,
    /// Robust feature reliabilities.
    pub p_values: Vec<f64>,
    /// Transfer overlaps.
    pub overlap_values: Vec<f64>,
    /// Step sizes.
    pub lr_values: Vec<f64>,
}

/// A configuration that passed [`DynamicsConfig::validate`].
#[derive(Debug, Clone, PartialEq)]
pub struct ValidDynamics(DynamicsConfig);

impl std::ops::Deref for ValidDynamics {
    type Target = DynamicsConfig;
    fn deref(&self) -> &DynamicsConfig {
        &self.0
    }
}

/// One point of parameter space: everything that the sweep varies.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Setting {
    /// Robust feature reliability.
    pub p: f64,
    /// Label-carrying features.
    pub d: usize,
    /// Transfer overlap.
    pub overlap: f64,
    /// Step size.
    pub lr: f64,
}

impl crate::error::Validate for DynamicsConfig {
    type Valid = ValidDynamics;
    fn check(self) -> Result<ValidDynamics> {
        self.validate()
    }
}

impl DynamicsConfig {
    /// Parses TOML text; `origin` names the file in errors.
    pub fn from_toml(text: &str, origin: &Path) -> Result<Self> {
        parse_toml(text, origin)
    }

    /// Reads, parses and validates a file; errors name the file and the key.
    pub fn load(path: &Path) -> Result<ValidDynamics> {
        crate::error::load_toml::<Self>(path)
    }

    /// The embedded default.
    pub fn default_config() -> ValidDynamics {
        crate::error::load_toml_str::<Self>(DYNAMICS_TOML, &PathBuf::from("simulations/dynamics.toml"))
            .expect("the embedded dynamics configuration is valid")
    }

    /// Checks every value once; the error names the key as `section.key`.
    pub fn validate(self) -> Result<ValidDynamics> {
        let t = &self.task;
        check::open("task.p", t.p, 0.5, 1.0)?;
        at_least("task.dim", t.dim, 1)?;
        at_least("task.d", t.d, 1)?;
        check::closed("task.overlap", t.overlap, 0.0, 1.0)?;
        check::open("task.target_acc", t.target_acc, 0.5, 1.0)?;
        if let Some(eta) = t.eta {
            check::positive("task.eta", eta)?;
        }
        non_empty("task.eps", &t.eps)?;
        for (i, &e) in t.eps.iter().enumerate() {
            check::non_negative(&format!("task.eps[{i}]"), e)?;
        }
        let n = &self.network;
        if n.hidden < 1 + t.upstream {
            return Err(Error::invalid(
                "network.hidden",
                format!("must be >= 1 + task.upstream = {}", 1 + t.upstream),
                n.hidden,
            ));
        }
        let tr = &self.train;
        at_least("train.steps", tr.steps as usize, 1)?;
        check::positive("train.lr", tr.lr)?;
        at_least("train.nodes", tr.nodes, 32)?;
        if tr.nodes > 500 {
            return Err(Error::invalid("train.nodes", "must be <= 500", tr.nodes));
        }
        at_least("train.evals", tr.evals, 2)?;
        check::non_negative("train.margin", tr.margin)?;
        let s = &self.sweep;
        non_empty("sweep.d_values", &s.d_values)?;
        for (i, &d) in s.d_values.iter().enumerate() {
            at_least(&format!("sweep.d_values[{i}]"), d, 1)?;
        }
        non_empty("sweep.p_values", &s.p_values)?;
        for (i, &p) in s.p_values.iter().enumerate() {
            check::open(&format!("sweep.p_values[{i}]"), p, 0.5, 1.0)?;
        }
        non_empty("sweep.overlap_values", &s.overlap_values)?;
        for (i, &o) in s.overlap_values.iter().enumerate() {
            check::closed(&format!("sweep.overlap_values[{i}]"), o, 0.0, 1.0)?;
        }
        non_empty("sweep.lr_values", &s.lr_values)?;
        for (i, &l) in s.lr_values.iter().enumerate() {
            check::positive(&format!("sweep.lr_values[{i}]"), l)?;
        }
        check_work(&self)?;
        let v = ValidDynamics(self);
        // Module shapes (ranks, N dividing h) are checked by building one net per strategy.
        let bb = v.backbone(v.task.dim)?;
        for s in Strategy::ALL {
            Net::new(&bb, s, v.shape()).map_err(|e| prefix(e, "network."))?;
        }
        for &d in std::iter::once(&v.task.d).chain(&v.sweep.d_values) {
            for &o in std::iter::once(&v.task.overlap).chain(&v.sweep.overlap_values) {
                let need = v.relevant(d, o).into_iter().max().unwrap_or(0);
                if need > v.task.dim {
                    return Err(Error::invalid(
                        "task.dim",
                        format!("d = {d} with overlap {o} needs features up to {need} (upstream + new ones)"),
                        v.task.dim,
                    ));
                }
            }
        }
        Ok(v)
    }
}

/// Parameters of one network (hidden × dim weights and their moments) held in memory.
const MAX_HIDDEN_DIM: f64 = 1e7;
/// CPU seconds per (trajectory, step, quadrature node) of the default network (hidden 48, dim
/// 256): measured, 45 CPU-s for the default run's 805 trajectories × 2000 steps × 64 nodes.
const SECONDS_PER_NODE_STEP: f64 = 4.4e-7;
/// The most estimated CPU time a config may ask for (about a day on one core).
const MAX_CPU_SECONDS: f64 = 1e5;

/// Refuses a config the machine cannot hold or finish, before anything runs or is written: the
/// network's size, and the estimated CPU time of every trajectory (7 strategies × (main setting,
/// d axis and sweep grid)) × steps × quadrature nodes, scaled by the network's size against the
/// default's.
fn check_work(c: &DynamicsConfig) -> Result<()> {
    let (t, n, tr, s) = (&c.task, &c.network, &c.train, &c.sweep);
    let size = n.hidden as f64 * t.dim as f64;
    if size > MAX_HIDDEN_DIM {
        return Err(Error::invalid(
            "network.hidden",
            format!("network.hidden × task.dim must be <= {MAX_HIDDEN_DIM:e} (weights held in memory)"),
            format!("{} × {}", n.hidden, t.dim),
        ));
    }
    if tr.evals as u64 > tr.steps {
        return Err(Error::invalid(
            "train.evals",
            format!("must be <= train.steps = {}", tr.steps),
            tr.evals,
        ));
    }
    let grid = s.p_values.len() * s.overlap_values.len() * s.lr_values.len() * s.d_values.len();
    let trajectories = 7.0 * (1 + s.d_values.len() + grid) as f64;
    let cpu =
        trajectories * tr.steps as f64 * tr.nodes as f64 * SECONDS_PER_NODE_STEP * (size / (48.0 * 256.0)).max(1.0);
    if cpu > MAX_CPU_SECONDS {
        return Err(Error::invalid(
            "sweep",
            format!(
                "the run would take about {:.1e} CPU seconds ({trajectories} trajectories × train.steps {} × \
                 train.nodes {}); the bound is {MAX_CPU_SECONDS:e} (about a day): shrink the sweep or the steps",
                cpu, tr.steps, tr.nodes
            ),
            format!("{grid} sweep settings"),
        ));
    }
    Ok(())
}

fn prefix(e: Error, section: &str) -> Error {
    match e {
        Error::InvalidParameter { field, reason, value } => Error::InvalidParameter {
            field: format!("{section}{field}"),
            reason,
            value,
        },
        other => other,
    }
}

impl ValidDynamics {
    /// The main setting of `[task]` and `[train]`.
    pub fn main_setting(&self) -> Setting {
        Setting {
            p: self.task.p,
            d: self.task.d,
            overlap: self.task.overlap,
            lr: self.train.lr,
        }
    }

    /// PEFT module sizes.
    pub fn shape(&self) -> NetShape {
        let n = &self.network;
        NetShape {
            lora_rank: n.lora_rank,
            adapter_rank: n.adapter_rank,
            compacter_n: n.compacter_n,
            compacter_rank: n.compacter_rank,
            head_init: n.head_init,
        }
    }

    fn backbone(&self, dim: usize) -> Result<Backbone> {
        let upstream: Vec<usize> = (1..=self.task.upstream).collect();
        Backbone::pretrained(self.network.hidden, dim, &upstream, self.network.seed)
    }

    /// The label-carrying features (1-based) of a task with `d` features and transfer `overlap`:
    /// the first min(round(overlap·d), upstream) upstream features, then new ones after the
    /// upstream block.
    pub fn relevant(&self, d: usize, overlap: f64) -> Vec<usize> {
        let up = self.task.upstream;
        let shared = ((overlap * d as f64).round() as usize).min(up).min(d);
        (1..=shared).chain(up + 1..=up + d - shared).collect()
    }

    /// η of a task with `d` features.
    pub fn eta(&self, d: usize) -> f64 {
        self.task
            .eta
            .unwrap_or_else(|| phi_inv(self.task.target_acc) / (d as f64).sqrt())
    }

    /// Step 0 and `evals` log-spaced steps up to `steps`.
    pub fn eval_steps(&self) -> Vec<u64> {
        let steps = self.train.steps;
        let mut v = vec![0u64];
        let n = self.train.evals;
        for i in 0..n {
            let s = (steps as f64).powf(i as f64 / (n - 1) as f64).round() as u64;
            if s > *v.last().expect("non-empty") {
                v.push(s.min(steps));
            }
        }
        if *v.last().expect("non-empty") != steps {
            v.push(steps);
        }
        v
    }

    /// The seven trajectories of one setting, in [`Strategy::ALL`] order.
    pub fn trajectories(&self, s: Setting) -> Result<Vec<Trajectory>> {
        Strategy::ALL.iter().map(|&st| self.trajectory(s, st)).collect()
    }

    /// One strategy's trajectory in setting `s` (D grows to fit d if needed).
    pub fn trajectory(&self, s: Setting, strategy: Strategy) -> Result<Trajectory> {
        let relevant = self.relevant(s.d, s.overlap);
        let dim = self.task.dim.max(relevant.iter().copied().max().unwrap_or(0));
        let task = Task::new(s.p, self.eta(s.d), dim, &relevant)?;
        let bb = self.backbone(dim)?;
        let net = Net::new(&bb, strategy, self.shape())?;
        let theta = net.init(self.network.seed);
        let spec = TrainSpec {
            steps: self.train.steps,
            lr: s.lr,
            eval_steps: self.eval_steps(),
            eps: self.task.eps.clone(),
            nodes: self.train.nodes,
            batch: None,
            seed: self.network.seed,
        };
        train(&task, &net, &theta, &spec)
    }
}

/// Predicted step-rule AUC (first ε of `[task]`) per strategy for a task of complexity `d`, the
/// other parameters from `cfg`: the theory column of `validate compare`.
pub fn predicted_auc(cfg: &ValidDynamics, d: usize) -> Result<Vec<(Strategy, f64)>> {
    at_least("d", d, 1)?;
    let s = Setting {
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
fn run_all(cfg: &ValidDynamics, settings: &[Setting], msg: &'static str) -> Result<Vec<Vec<Trajectory>>> {
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
            let pk = t.peak(0, cfg.train.margin);
            let last = t.points.last().expect("at least two evaluations");
            StrategyRow {
                strategy: t.strategy,
                trainable: t.trainable,
                auc: t.auc(0, AucRule::Step),
                auc_trapezoid: t.auc(0, AucRule::Trapezoid),
                peak_step: t.points[pk.index].step,
                peak: pk.value,
                drop: pk.drop,
                rises_then_falls: pk.rises_then_falls,
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

    let d_settings: Vec<Setting> = cfg.sweep.d_values.iter().map(|&d| Setting { d, ..main_s }).collect();
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
                    grid.push(Setting { p, d, overlap, lr });
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

fn curves_figure(cfg: &ValidDynamics, trajs: &[Trajectory]) -> (LineChart, Csv) {
    let eps_cols: Vec<String> = cfg.task.eps.iter().map(|e| format!("robust_eps_{}", num(*e))).collect();
    let mut header = vec!["strategy", "trainable", "step", "loss", "clean_acc"];
    header.extend(eps_cols.iter().map(String::as_str));
    header.extend(["robust_share", "quad_gap"]);
    let mut csv = Csv::new(&header);
    let mut series = Vec::new();
    for (i, t) in trajs.iter().enumerate() {
        for p in &t.points {
            let mut row = vec![
                t.strategy.id().to_string(),
                t.trainable.to_string(),
                p.step.to_string(),
                num(p.loss),
                num(p.clean),
            ];
            row.extend(p.robust.iter().map(|r| num(*r)));
            row.extend([num(p.robust_share), format!("{:.3e}", p.quad_gap)]);
            csv.push(row);
        }
        let x = |p: &crate::theory::dynamics::TrajPoint| (p.step + 1) as f64;
        series.push(Series::new(
            Some(t.strategy.name().to_string()),
            t.points.iter().map(|p| (x(p), p.clean)).collect(),
            color(i),
            Style::Line,
        ));
        series.push(Series::new(
            None,
            t.points.iter().map(|p| (x(p), p.robust[0])).collect(),
            color(i),
            Style::Dashed,
        ));
    }
    let fig = LineChart {
        title: format!(
            "Population GD, p = {}, d = {}, η = {:.3}: clean (solid), robust at ε = {} (dashed)",
            cfg.task.p,
            cfg.task.d,
            cfg.eta(cfg.task.d),
            cfg.task.eps[0]
        ),
        x: Axis::log("step + 1", 1.0, (cfg.train.steps + 1) as f64),
        y: Axis::linear("accuracy", 0.0, 1.0),
        series,
        legend: SeriesLabelPosition::LowerRight,
    };
    (fig, csv)
}

fn frontiers_figure(cfg: &ValidDynamics, trajs: &[Trajectory]) -> (LineChart, Csv) {
    let mut csv = Csv::new(&["strategy", "clean_acc", "robust_acc", "auc_step", "auc_trapezoid"]);
    let mut series = Vec::new();
    for (i, t) in trajs.iter().enumerate() {
        let pts: Vec<Point> = t.pairs(0).into_iter().map(|(acc, rob)| Point { acc, rob }).collect();
        let f = frontier(&pts);
        let (a, at) = (t.auc(0, AucRule::Step), t.auc(0, AucRule::Trapezoid));
        for p in &f {
            csv.push(vec![t.strategy.id().into(), num(p.acc), num(p.rob), num(a), num(at)]);
        }
        series.push(Series::new(None, t.pairs(0), color(i), Style::Dashed));
        series.push(Series::new(
            Some(format!("{} (AUC {a:.3})", t.strategy.name())),
            f.iter().map(|p| (p.acc, p.rob)).collect(),
            color(i),
            Style::LineMarkers,
        ));
    }
    // Zoom on the data (the early steps sit far from the frontiers).
    let all: Vec<(f64, f64)> = trajs.iter().flat_map(|t| t.pairs(0)).collect();
    let lo = |f: fn(&(f64, f64)) -> f64| (all.iter().map(f).fold(1.0, f64::min) - 0.02).max(0.0);
    let fig = LineChart {
        title: format!(
            "Pareto frontiers of the trajectories (dashed: path), ε = {}",
            cfg.task.eps[0]
        ),
        x: Axis::linear("clean accuracy", lo(|p| p.0), 1.0),
        y: Axis::linear("robust accuracy", lo(|p| p.1), 1.0),
        series,
        legend: SeriesLabelPosition::UpperLeft,
    };
    (fig, csv)
}

fn auc_vs_d_figure(cfg: &ValidDynamics, settings: &[Setting], by_d: &[Vec<Trajectory>]) -> (LineChart, Csv) {
    let mut csv = Csv::new(&[
        "d",
        "eta",
        "strategy",
        "trainable",
        "auc_step",
        "auc_trapezoid",
        "peak_step",
        "peak_robust",
        "drop_after_peak",
        "rises_then_falls",
        "final_clean",
        "final_robust",
    ]);
    let mut per: BTreeMap<usize, Vec<(f64, f64)>> = BTreeMap::new();
    for (s, trajs) in settings.iter().zip(by_d) {
        for (i, r) in rows(cfg, trajs).iter().enumerate() {
            csv.push(vec![
                s.d.to_string(),
                num(cfg.eta(s.d)),
                r.strategy.id().into(),
                r.trainable.to_string(),
                num(r.auc),
                num(r.auc_trapezoid),
                r.peak_step.to_string(),
                num(r.peak),
                num(r.drop),
                r.rises_then_falls.to_string(),
                num(r.final_clean),
                num(r.final_robust),
            ]);
            per.entry(i).or_default().push((s.d as f64, r.auc));
        }
    }
    let series = per
        .into_iter()
        .map(|(i, pts)| Series::new(Some(Strategy::ALL[i].name().into()), pts, color(i), Style::LineMarkers))
        .collect();
    let (lo, hi) = settings.iter().fold((f64::INFINITY, 0.0f64), |(l, h), s| {
        (l.min(s.d as f64), h.max(s.d as f64))
    });
    let fig = LineChart {
        title: format!(
            "Predicted AUC (ε = {}) against task complexity d, η = {}",
            cfg.task.eps[0],
            if cfg.task.eta.is_some() {
                "fixed".to_string()
            } else {
                format!("Φ⁻¹({})/√d", cfg.task.target_acc)
            }
        ),
        x: Axis::log("d (label-carrying non-robust features)", lo * 0.8, hi * 1.25),
        y: Axis::linear("AUC of the (clean, robust) frontier, step rule", 0.0, 1.0),
        series,
        legend: SeriesLabelPosition::UpperRight,
    };
    (fig, csv)
}

/// Best strategy at the simplest and at the most complex d of one (p, overlap, lr) setting.
type BestPair = (Option<Strategy>, Option<Strategy>);

/// The sweep table and the written answer.
fn sweep_answer(cfg: &ValidDynamics, grid: &[Setting], swept: &[Vec<Trajectory>]) -> (Csv, String) {
    let mut csv = Csv::new(&[
        "p",
        "overlap",
        "lr",
        "d",
        "eta",
        "ranking_by_auc",
        "full_lp_bottom",
        "best",
        "rises_then_falls",
    ]);
    let (d_simple, d_complex) = (
        *cfg.sweep.d_values.iter().min().expect("non-empty"),
        *cfg.sweep.d_values.iter().max().expect("non-empty"),
    );
    let (mut n_cells, mut n_rtf_any, mut n_bottom) = (0, 0, 0);
    let mut rtf_by_strategy: BTreeMap<Strategy, usize> = BTreeMap::new();
    let mut best_simple: BTreeMap<Strategy, usize> = BTreeMap::new();
    let mut best_complex: BTreeMap<Strategy, usize> = BTreeMap::new();
    let (mut paper_pattern, mut n_settings) = (Vec::new(), 0);
    let mut bottom_cells = Vec::new();
    let mut rtf_by_d: BTreeMap<usize, (usize, usize)> = BTreeMap::new();
    let mut per_setting: BTreeMap<(u64, u64, u64), BestPair> = BTreeMap::new();
    for (s, trajs) in grid.iter().zip(swept) {
        let r = rows(cfg, trajs);
        let rank = ranking(&r);
        let bottom = full_lp_bottom(&r);
        let rtf: Vec<Strategy> = r.iter().filter(|x| x.rises_then_falls).map(|x| x.strategy).collect();
        n_cells += 1;
        n_rtf_any += usize::from(!rtf.is_empty());
        let e = rtf_by_d.entry(s.d).or_default();
        e.0 += usize::from(!rtf.is_empty());
        e.1 += 1;
        n_bottom += usize::from(bottom);
        if bottom {
            bottom_cells.push(*s);
        }
        for st in &rtf {
            *rtf_by_strategy.entry(*st).or_default() += 1;
        }
        let key = (s.p.to_bits(), s.overlap.to_bits(), s.lr.to_bits());
        let e = per_setting.entry(key).or_default();
        if s.d == d_simple {
            e.0 = Some(rank[0]);
            *best_simple.entry(rank[0]).or_default() += 1;
        }
        if s.d == d_complex {
            e.1 = Some(rank[0]);
            *best_complex.entry(rank[0]).or_default() += 1;
        }
        csv.push(vec![
            num(s.p),
            num(s.overlap),
            num(s.lr),
            s.d.to_string(),
            num(cfg.eta(s.d)),
            rank.iter().map(|x| x.id()).collect::<Vec<_>>().join(">"),
            bottom.to_string(),
            rank[0].id().into(),
            rtf.iter().map(|x| x.id()).collect::<Vec<_>>().join("+"),
        ]);
    }
    for (&(p, o, lr), &(bs, bc)) in &per_setting {
        n_settings += 1;
        if bs == Some(Strategy::Bitfit) && bc == Some(Strategy::Compacter) {
            paper_pattern.push((f64::from_bits(p), f64::from_bits(o), f64::from_bits(lr)));
        }
    }
    let count = |m: &BTreeMap<Strategy, usize>| {
        m.iter()
            .map(|(s, n)| format!("{} {n}", s.name()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut a = String::from("# Does the training-dynamics model reproduce the measured phenomena?\n\n");
    let _ = writeln!(
        a,
        "Sweep: p ∈ {:?}, overlap ∈ {:?}, lr ∈ {:?}, d ∈ {:?} ({} cells of 7 trajectories each); ε = {}, \
         η = {}, {} steps of population gradient descent, h = {}, upstream = {}.\n",
        cfg.sweep.p_values,
        cfg.sweep.overlap_values,
        cfg.sweep.lr_values,
        cfg.sweep.d_values,
        n_cells,
        cfg.task.eps[0],
        if cfg.task.eta.is_some() {
            "fixed".to_string()
        } else {
            format!("Φ⁻¹({})/√d", cfg.task.target_acc)
        },
        cfg.train.steps,
        cfg.network.hidden,
        cfg.task.upstream
    );
    let _ = writeln!(
        a,
        "1. **Robustness rises, then falls** (interior peak more than {} above both ends): in {n_rtf_any} of {n_cells} \
         cells for at least one strategy. Per strategy (cells): {}.",
        cfg.train.margin,
        if rtf_by_strategy.is_empty() {
            "none".into()
        } else {
            count(&rtf_by_strategy)
        }
    );
    let _ = writeln!(
        a,
        "   By task complexity (ε/η in brackets): {}.",
        rtf_by_d
            .iter()
            .map(|(d, (k, n))| format!("d = {d} [{:.2}]: {k}/{n}", cfg.task.eps[0] / cfg.eta(*d)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        a,
        "2. **Full and linear probing at the bottom** (the two lowest AUCs): in {n_bottom} of {n_cells} cells{}.",
        if bottom_cells.is_empty() {
            String::new()
        } else {
            format!(
                ", e.g. {}",
                bottom_cells
                    .iter()
                    .take(6)
                    .map(|s| format!("(p {}, overlap {}, lr {}, d {})", s.p, s.overlap, s.lr, s.d))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    );
    let _ = writeln!(
        a,
        "3. **BitFit best on the simplest task (d = {d_simple}) and Compacter on the most complex (d = {d_complex})**: \
         in {} of {n_settings} (p, overlap, lr) settings{}. Best at d = {d_simple}: {}. Best at d = {d_complex}: {}.",
        paper_pattern.len(),
        if paper_pattern.is_empty() {
            String::new()
        } else {
            format!(
                " ({})",
                paper_pattern
                    .iter()
                    .map(|(p, o, l)| format!("p {p}, overlap {o}, lr {l}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        },
        count(&best_simple),
        count(&best_complex)
    );
    (csv, a)
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
