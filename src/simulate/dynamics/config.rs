//! The dynamics configuration (`simulations/dynamics.toml`): task, network, training and sweep
//! sections, checked as a whole (sizes, shapes, and the work the run would take) before anything
//! runs or is written.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::engine::peft::Strategy;
use crate::error::{Error, Result, check};
use crate::simulate::config::{at_least, non_empty, parse_toml};
use crate::simulate::dynamics::Trajectory;
use crate::theory::dynamics::{Backbone, ModuleSizes, Net, Task, TrainSpec, train};
use crate::theory::phi_inv;

/// The embedded default configuration (the text of `simulations/dynamics.toml`).
pub const DYNAMICS_TOML: &str = include_str!("../../../simulations/dynamics.toml");

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
pub struct SweepPoint {
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
    pub fn main_setting(&self) -> SweepPoint {
        SweepPoint {
            p: self.task.p,
            d: self.task.d,
            overlap: self.task.overlap,
            lr: self.train.lr,
        }
    }

    /// PEFT module sizes.
    pub fn shape(&self) -> ModuleSizes {
        let n = &self.network;
        ModuleSizes {
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
    pub fn trajectories(&self, s: SweepPoint) -> Result<Vec<Trajectory>> {
        Strategy::ALL.iter().map(|&st| self.trajectory(s, st)).collect()
    }

    /// One strategy's trajectory in setting `s` (D grows to fit d if needed).
    pub fn trajectory(&self, s: SweepPoint, strategy: Strategy) -> Result<Trajectory> {
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
