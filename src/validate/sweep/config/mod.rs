//! Run configurations (TOML, `validation/configs/`), validated once at load: an unknown key or
//! an impossible value is an error naming the key and the file.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::engine::VitConfig;
use crate::engine::attack::{ApgdConfig, ApgdLoss, AutoAttackConfig, FabConfig, PgdConfig, SquareConfig, StopRule};
use crate::engine::data::corrupt::Corruption;
use crate::engine::eval::Attack;
use crate::engine::peft::{Strategy, parse_strategy};
use crate::engine::train::TrainConfig;
use crate::error::{Error, Result, check};
use crate::tradeoff::Schedule;
use crate::validate::sweep::spec::{
    DataKind, EpsSpec, ModelSpec, OptimizerPreset, OptimizerSpec, SourceSpec, check_source,
};

/// The embedded presets: (name, TOML text).
pub const PRESETS: [(&str, &str); 3] = [
    (
        "cpu-default",
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/validation/configs/cpu-default.toml"
        )),
    ),
    (
        "smoke",
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/validation/configs/smoke.toml")),
    ),
    (
        "paper-cpu",
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/validation/configs/paper-cpu.toml"
        )),
    ),
];

/// A schedule as written: `"paper"`, `"repo"` or a list of steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ScheduleSpec {
    /// A preset name.
    Name(String),
    /// Explicit steps.
    List(Vec<u64>),
}

/// Upstream pretraining settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PretrainSpec {
    /// Optimiser steps.
    pub steps: usize,
    /// Batch size.
    pub batch_size: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Upstream data (default: the synthetic upstream task), e.g.
    /// `{ kind = "fashion-mnist", classes = [0, 1, 2, 3, 4] }`. Its test split, restricted to the
    /// same classes, measures the held-out accuracy recorded in every run header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<SourceSpec>,
}

/// The attack of the periodic evaluation (`attack.kind`) and of `validate eval --attack` (one
/// list for both; on the command line APGD-CE is `apgd-ce`, also `apgd`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum AttackKind {
    /// PGD (Madry et al. 2018) with step size `alpha` (α = ε/4 and 15 steps unless set).
    Pgd,
    /// APGD-CE (Croce & Hein 2020), step size adapted by the attack (also `apgd-ce`).
    #[serde(alias = "apgd-ce")]
    #[value(name = "apgd-ce", alias = "apgd")]
    Apgd,
    /// APGD with the DLR loss, untargeted.
    ApgdDlr,
    /// APGD-T: targeted DLR over `targets` classes (default 9), `steps` iterations each.
    ApgdT,
    /// FAB-T: targeted minimal-perturbation attack over `targets` classes (default 9), `steps`
    /// iterations each (default 100).
    FabT,
    /// The Square Attack, `queries` per point (default 5,000).
    Square,
    /// AutoAttack's ensemble (APGD-CE, APGD-T, FAB-T, Square) with its standard settings; `steps`
    /// sets the APGD and FAB iterations (default 100).
    Autoattack,
}

/// The head a fine-tuning run starts from (`head`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HeadChoice {
    /// Freshly initialised from the run seed.
    New,
    /// The checkpoint's head; a checkpoint without a head for the task's classes is refused.
    Reuse,
}

/// The attack as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttackSpec {
    /// `pgd`, `apgd` (= `apgd-ce`), `apgd-dlr`, `apgd-t`, `fab-t`, `square` or `autoattack`.
    pub kind: AttackKind,
    /// ℓ∞ radius in [0, 1] pixel units, or a list of radii evaluated in one nested pass
    /// (numbers or fractions such as `"1/255"`).
    pub eps: EpsSpec,
    /// PGD step size (ignored by APGD); only with a single radius. Default: ε/4 for every ε
    /// (the paper's α = 0.25/255 at ε = 1/255).
    #[serde(default)]
    pub alpha: Option<f64>,
    /// Iterations (PGD, APGD; per target for APGD-T and FAB-T; AutoAttack's APGD and FAB
    /// members). Required for `pgd`; default 100 for APGD and FAB; not for `square`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<usize>,
    /// Square's query budget (`square`, and AutoAttack's Square), default 5,000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queries: Option<usize>,
    /// APGD-T and FAB-T (and AutoAttack's): target classes, default 9.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets: Option<usize>,
    /// PGD: `early-exit` (default) or `last-iterate`.
    #[serde(default)]
    pub stop: Option<StopRule>,
}

/// One dataset of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetSpec {
    /// Folder name in the output and label in reports.
    pub name: String,
    /// `synthetic`, `fashion-mnist`, `cifar10`, `cifar100`, `image-folder` or `domains`.
    pub kind: DataKind,
    /// Synthetic task name (`synthetic-simple`, `synthetic-complex`).
    #[serde(default)]
    pub task: Option<String>,
    /// `domains` only: the domain trained and tested on (`data_dir/<domain>/{train,test}/…`); the
    /// OOD set (`ood = "domains"`) is the other domains' test images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Data folder for file datasets.
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
    /// Class subset (original labels), remapped to 0..n−1 in the order listed; the map is
    /// recorded in every run header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classes: Option<Vec<u32>>,
    /// Training images used (synthetic: generated; files: the first N of the seeded split).
    pub train_images: usize,
    /// OOD set: `shifted` (synthetic style shift), `corruption:<name>:<severity>`, `domains`
    /// (kind `domains`: the other domains' test images), or `none`.
    #[serde(default = "none")]
    pub ood: String,
    /// Task complexity d for the theory comparison (synthetic: the task's d).
    #[serde(default)]
    pub theory_d: Option<f64>,
}

fn none() -> String {
    "none".into()
}

/// A run configuration as written in TOML.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Run name.
    pub name: String,
    /// Model preset, TOML path or inline table.
    pub model: ModelSpec,
    /// Fine-tune from this HF-layout checkpoint instead of pretraining one: a safetensors file,
    /// or an HF model folder (config.json, preprocessor_config.json, model.safetensors; `model`
    /// must then name the same folder).
    #[serde(default)]
    pub checkpoint: Option<PathBuf>,
    /// Strategies (default: all 7).
    #[serde(default = "all_strategies")]
    pub strategies: Vec<String>,
    /// Seeds.
    pub seeds: Vec<u64>,
    /// Fine-tuning steps per run.
    pub max_steps: usize,
    /// Tracking schedule.
    pub schedule: ScheduleSpec,
    /// For `paper`/`repo`: scale the schedule's first `schedule_reference_steps` steps onto
    /// `max_steps` (0 or absent: no scaling).
    #[serde(default)]
    pub schedule_reference_steps: Option<u64>,
    /// Evaluation subset size (per dataset and seed, fixed).
    pub eval_subset: usize,
    /// Draw the evaluation subset with this seed for every run seed (the same test images for
    /// all seeds); absent: each run seed draws its own subset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_seed: Option<u64>,
    /// The head a fine-tuning run starts from: `new` (freshly initialised from the run seed),
    /// `reuse` (the checkpoint's; refused when it has none for the task's classes) or unset (the
    /// checkpoint's where its class count fits, else a new one). What happened is said once per
    /// dataset and recorded as `new_head` in every header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<HeadChoice>,
    /// Batch size.
    pub batch_size: usize,
    /// Optimiser: the preset `paper` (lr 2e-5 full, 5e-3 others, cosine, 800 warm-up scaled to
    /// the run length for non-full), or a table of per-strategy learning rates.
    pub optimizer: OptimizerSpec,
    /// Upstream pretraining (used when no checkpoint is given).
    pub pretrain: PretrainSpec,
    /// Attack.
    pub attack: AttackSpec,
    /// Fine-tuning objective: `standard` (default), `pgd-at` (Madry et al. 2018) or `trades`
    /// (Zhang et al. 2019); the robust ones need `train_attack`.
    #[serde(default, skip_serializing_if = "TrainingKind::is_standard")]
    pub training: TrainingKind,
    /// The inner attack of `pgd-at` / `trades`: `{ eps = "4/255", alpha = "1/255", steps = 5 }`
    /// (alpha defaults to eps/4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_attack: Option<TrainAttackSpec>,
    /// TRADES' β (default 6, Zhang et al. 2019's CIFAR-10 setting).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trades_beta: Option<f64>,
    /// `"evals"`: keep the trainable tensors at every evaluation step under
    /// `ckpt/<dataset>/<strategy>/seed<k>/step<N>.safetensors` (`param.*`, as `validate eval
    /// --backbone` reads them); default off (only the resume checkpoint is kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_checkpoints: Option<KeepCheckpoints>,
    /// Datasets.
    pub datasets: Vec<DatasetSpec>,
}

fn all_strategies() -> Vec<String> {
    Strategy::ALL.iter().map(|s| s.id().to_string()).collect()
}

/// `training` in a run configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TrainingKind {
    /// Cross-entropy on clean batches.
    #[default]
    Standard,
    /// PGD adversarial training.
    PgdAt,
    /// TRADES.
    Trades,
}

impl TrainingKind {
    /// Standard training (left out of the recorded configuration, so that configurations written
    /// before robust fine-tuning existed keep their hash).
    pub fn is_standard(&self) -> bool {
        *self == TrainingKind::Standard
    }
}

/// `keep_checkpoints` in a run configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeepCheckpoints {
    /// At every evaluation step.
    Evals,
}

/// `train_attack` in a run configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainAttackSpec {
    /// Radius.
    pub eps: crate::validate::sweep::spec::EpsValue,
    /// Step size (default eps/4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpha: Option<crate::validate::sweep::spec::EpsValue>,
    /// Ascent steps.
    pub steps: usize,
}

/// How OOD accuracy is measured.
#[derive(Debug, Clone, PartialEq)]
pub enum Ood {
    /// No OOD set.
    None,
    /// The synthetic task in the shifted style.
    Shifted,
    /// A corruption of the evaluation images.
    Corruption(Corruption, u8),
    /// The test images of the other domains of a `domains` dataset, pooled, drawn (fixed seed)
    /// to as many as the test images: OOD outcome i is not the same image as clean outcome i.
    Domains,
}

/// A validated configuration with parsed fields.
#[derive(Debug, Clone)]
pub struct ValidRun {
    /// The configuration as written (recorded in headers).
    pub config: RunConfig,
    /// Model size.
    pub model: VitConfig,
    /// Strategies.
    pub strategies: Vec<Strategy>,
    /// Evaluation steps (exact list; 0 = before the first update).
    pub eval_steps: Vec<u64>,
    /// One attack per radius, in increasing order of ε.
    pub attacks: Vec<Attack>,
    /// Start every fine-tuning run from a fresh head.
    pub new_head: bool,
    /// What fine-tuning optimises.
    pub training: crate::engine::robust::Training,
    /// OOD per dataset.
    pub ood: Vec<Ood>,
}

impl crate::error::Validate for RunConfig {
    type Valid = ValidRun;
    fn check(self) -> Result<ValidRun> {
        self.validate()
    }
}

impl RunConfig {
    /// Parses TOML; `origin` names the file in errors.
    pub fn from_toml(text: &str, origin: &Path) -> Result<Self> {
        crate::error::parse_toml(text, origin)
    }

    /// Reads and validates a file.
    pub fn load(path: &Path) -> Result<ValidRun> {
        crate::error::load_toml::<Self>(path)
    }

    /// An embedded preset by name.
    ///
    /// ```
    /// let run = robustft::validate::RunConfig::preset("paper-cpu")?;
    /// assert_eq!((run.strategies.len(), run.config.seeds.len(), run.eps().len()), (7, 5, 4));
    /// assert!(robustft::validate::RunConfig::preset("paper-gpu").is_err());
    /// # Ok::<(), robustft::Error>(())
    /// ```
    pub fn preset(name: &str) -> Result<ValidRun> {
        let (_, text) = PRESETS
            .iter()
            .find(|(n, _)| *n == name)
            .ok_or_else(|| Error::invalid("--preset", "expected cpu-default, smoke or paper-cpu", name))?;
        let origin = PathBuf::from(format!("<preset {name}>"));
        crate::error::load_toml_str::<Self>(text, &origin)
    }
}

impl ValidRun {
    /// The model as written, for messages: a preset name or path, or the inline size.
    pub fn model_name(&self) -> String {
        match &self.config.model {
            ModelSpec::Name(n) => n.clone(),
            ModelSpec::Table(c) => format!(
                "ViT {}px/patch {} (dim {}, depth {}, {} heads, MLP {})",
                c.image_size, c.patch_size, c.dim, c.depth, c.heads, c.mlp_dim
            ),
        }
    }

    /// Said when training would stop before `max_steps`: a run ends at the schedule's last
    /// evaluation step, and `max_steps` then only sets where the cosine decay would reach 0.
    pub fn short_schedule(&self) -> Option<String> {
        let last = *self.eval_steps.last()?;
        (last < self.config.max_steps as u64).then(|| {
            format!(
                "training stops at step {last}, the schedule's last evaluation step; max_steps = {} \
                 only sets where the cosine decay would reach 0 (the learning rate is not annealed). \
                 Make max_steps an evaluation step (schedule {})",
                self.config.max_steps,
                match &self.config.schedule {
                    ScheduleSpec::Name(n) => n.clone(),
                    ScheduleSpec::List(_) => "as listed".into(),
                }
            )
        })
    }

    /// The attack radii, in increasing order.
    pub fn eps(&self) -> Vec<f64> {
        self.attacks.iter().map(Attack::eps).collect()
    }

    /// The optimiser for `strategy`: the `paper` preset (Li et al.'s learning rates, with the
    /// 800-step warm-up scaled by the same factor as the schedule, max_steps / reference, or
    /// capped at a quarter of the run without a reference), or the configured table.
    pub fn optimiser(&self, strategy: Strategy) -> TrainConfig {
        let max = self.config.max_steps;
        let mut tc = match &self.config.optimizer {
            OptimizerSpec::Custom(t) => TrainConfig {
                lr: t.lr[strategy.id()],
                warmup_steps: t.warmup_steps,
                total_steps: max,
                weight_decay: t.weight_decay,
                clip_grad_norm: t.clip_grad_norm,
                ..TrainConfig::default()
            },
            OptimizerSpec::Preset(_) => {
                let mut tc = TrainConfig::paper(strategy, max);
                if tc.warmup_steps > 0 {
                    tc.warmup_steps = match self.config.schedule_reference_steps {
                        Some(r) if r > 0 => ((800.0 * max as f64 / r as f64).round() as usize).max(1),
                        _ => 800.min(max / 4),
                    };
                }
                tc
            }
        };
        tc.batch_size = self.config.batch_size;
        tc
    }
}

pub use checks::scaled_steps;

mod checks;

#[cfg(test)]
mod tests;
