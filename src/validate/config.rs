//! Run configurations (TOML, `validation/configs/`), validated once at load: an unknown key or
//! an impossible value is an error naming the key and the file.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::spec::{DataKind, EpsSpec, ModelSpec, OptimizerSpec, SourceSpec, check_source};
use crate::engine::VitConfig;
use crate::engine::attack::{ApgdConfig, PgdConfig, StopRule};
use crate::engine::data::corrupt::Corruption;
use crate::engine::eval::Attack;
use crate::engine::peft::{Strategy, parse_strategy};
use crate::engine::train::TrainConfig;
use crate::error::{Error, Result, check};
use crate::tradeoff::Schedule;

/// The embedded presets: (name, TOML text).
pub const PRESETS: [(&str, &str); 3] = [
    ("cpu-default", include_str!("../../validation/configs/cpu-default.toml")),
    ("smoke", include_str!("../../validation/configs/smoke.toml")),
    ("paper-cpu", include_str!("../../validation/configs/paper-cpu.toml")),
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

/// The attack of the periodic evaluation (`attack.kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttackKind {
    /// PGD (Madry et al. 2018) with step size `alpha`.
    Pgd,
    /// APGD-CE (Croce & Hein 2020), step size adapted by the attack.
    Apgd,
}

/// The head a fine-tuning run starts from (`head`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HeadChoice {
    /// Freshly initialised from the run seed.
    New,
    /// The checkpoint's head where its class count matches.
    Reuse,
}

/// The attack as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttackSpec {
    /// `pgd` or `apgd`.
    pub kind: AttackKind,
    /// ℓ∞ radius in [0, 1] pixel units, or a list of radii evaluated in one nested pass
    /// (numbers or fractions such as `"1/255"`).
    pub eps: EpsSpec,
    /// PGD step size (ignored by APGD); only with a single radius. Default: ε/4 for every ε
    /// (the paper's α = 0.25/255 at ε = 1/255).
    #[serde(default)]
    pub alpha: Option<f64>,
    /// Iterations.
    pub steps: usize,
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
    /// `synthetic`, `fashion-mnist`, `cifar10`, `image-folder` or `domains`.
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
    /// Fine-tune from this HF-layout checkpoint instead of pretraining one.
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
    /// The head a fine-tuning run starts from: `new` (freshly initialised from the run seed) or
    /// `reuse` (the checkpoint's head where its class count matches; the default, as before).
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
    /// Datasets.
    pub datasets: Vec<DatasetSpec>,
}

fn all_strategies() -> Vec<String> {
    Strategy::ALL.iter().map(|s| s.id().to_string()).collect()
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
    pub fn preset(name: &str) -> Result<ValidRun> {
        let (_, text) = PRESETS
            .iter()
            .find(|(n, _)| *n == name)
            .ok_or_else(|| Error::invalid("--preset", "expected cpu-default, smoke or paper-cpu", name))?;
        let origin = PathBuf::from(format!("<preset {name}>"));
        crate::error::load_toml_str::<Self>(text, &origin)
    }

    /// Checks every value; errors name the key.
    pub fn validate(self) -> Result<ValidRun> {
        let model = self.model.resolve()?;
        if self.strategies.is_empty() {
            return Err(Error::invalid("strategies", "need at least one strategy", "[]"));
        }
        let strategies = self
            .strategies
            .iter()
            .map(|s| parse_strategy(s))
            .collect::<Result<Vec<_>>>()
            .map_err(|e| e.rename_field("strategy", "strategies"))?;
        if self.seeds.is_empty() {
            return Err(Error::invalid("seeds", "need at least one seed", "[]"));
        }
        for (k, v) in [
            ("max_steps", self.max_steps),
            ("eval_subset", self.eval_subset),
            ("batch_size", self.batch_size),
            ("pretrain.steps", self.pretrain.steps),
            ("pretrain.batch_size", self.pretrain.batch_size),
        ] {
            if v == 0 {
                return Err(Error::invalid(k, "must be >= 1", 0));
            }
        }
        self.check_pretrain(model.image_size)?;
        self.check_optimizer(&strategies)?;
        let new_head = self.head == Some(HeadChoice::New);
        let eval_steps = self.eval_steps()?;
        let attacks = self.attacks()?;
        let ood = self.check_datasets(model.image_size)?;
        Ok(ValidRun {
            model,
            strategies,
            eval_steps,
            attacks,
            new_head,
            ood,
            config: self,
        })
    }

    /// `[pretrain]`: rate and steps, and its dataset (never a `domains` one).
    fn check_pretrain(&self, image_size: usize) -> Result<()> {
        check::positive("pretrain.lr", self.pretrain.lr)?;
        if let Some(d) = &self.pretrain.dataset {
            if d.kind == DataKind::Domains {
                return Err(Error::invalid(
                    "pretrain.dataset.kind",
                    "pretrain on one domain with kind = \"image-folder\" and data_dir = ROOT/<domain>",
                    d.kind,
                ));
            }
            check_source(
                d.kind,
                d.task.as_deref(),
                d.classes.as_deref(),
                image_size,
                "pretrain.dataset.",
            )?;
            if d.train_images == Some(0) {
                return Err(Error::invalid("pretrain.dataset.train_images", "must be >= 1", 0));
            }
        }
        Ok(())
    }

    /// The evaluation steps of `schedule` at `max_steps`; at least one must train.
    fn eval_steps(&self) -> Result<Vec<u64>> {
        let schedule = match &self.schedule {
            ScheduleSpec::Name(n) if n == "paper" => Schedule::Paper,
            ScheduleSpec::Name(n) if n == "repo" => Schedule::Repo,
            ScheduleSpec::Name(n) => {
                return Err(Error::invalid("schedule", "expected paper, repo or a list of steps", n));
            }
            ScheduleSpec::List(v) => Schedule::list(v.clone())?,
        };
        let eval_steps = scaled_steps(&schedule, self.max_steps as u64, self.schedule_reference_steps);
        if eval_steps.iter().all(|&s| s == 0) {
            return Err(Error::invalid(
                "schedule",
                format!("has no step in 1..=max_steps = {}", self.max_steps),
                schedule,
            ));
        }
        Ok(eval_steps)
    }

    /// Every `[[datasets]]` table: source, sizes, a unique plain name, domain and OOD; returns
    /// the parsed OOD of each.
    fn check_datasets(&self, image_size: usize) -> Result<Vec<Ood>> {
        if self.datasets.is_empty() {
            return Err(Error::invalid(
                "datasets",
                "need at least one [[datasets]] table",
                "none",
            ));
        }
        let mut ood = Vec::new();
        for (i, d) in self.datasets.iter().enumerate() {
            let key = |k: &str| format!("datasets[{i}].{k}");
            check_source(d.kind, d.task.as_deref(), d.classes.as_deref(), image_size, &key(""))?;
            if d.train_images == 0 {
                return Err(Error::invalid(key("train_images"), "must be >= 1", 0));
            }
            if d.name.is_empty() || d.name == "." || d.name == ".." || d.name.contains(['/', '\\']) {
                return Err(Error::invalid(key("name"), "must be a plain folder name", &d.name));
            }
            if self.datasets[..i].iter().any(|o| o.name == d.name) {
                return Err(Error::invalid(key("name"), "is used by an earlier dataset", &d.name));
            }
            match (d.kind, &d.domain) {
                (DataKind::Domains, None) => {
                    return Err(Error::invalid(
                        key("domain"),
                        "a domains dataset needs the domain it trains on",
                        "nothing",
                    ));
                }
                (DataKind::Domains, Some(dom))
                    if dom.is_empty() || dom == "." || dom == ".." || dom.contains(['/', '\\']) =>
                {
                    return Err(Error::invalid(key("domain"), "must be a plain folder name", dom));
                }
                (DataKind::Domains, Some(_)) => {}
                (_, Some(dom)) => {
                    return Err(Error::invalid(
                        key("domain"),
                        "only a dataset of kind `domains` has one",
                        dom,
                    ));
                }
                (_, None) => {}
            }
            ood.push(parse_ood(&d.ood, d.kind).map_err(|e| e.rename_field("ood", &key("ood")))?);
        }
        Ok(ood)
    }

    fn check_optimizer(&self, strategies: &[Strategy]) -> Result<()> {
        match &self.optimizer {
            OptimizerSpec::Preset(p) if p == "paper" => Ok(()),
            OptimizerSpec::Preset(p) => Err(Error::invalid("optimizer", "expected \"paper\" or a table", p)),
            OptimizerSpec::Custom(t) => {
                for (k, v) in &t.lr {
                    let s = parse_strategy(k).map_err(|e| e.rename_field("strategy", &format!("optimizer.lr.{k}")))?;
                    if s.id() != k {
                        return Err(Error::invalid(
                            format!("optimizer.lr.{k}"),
                            format!("write the strategy as {}", s.id()),
                            k,
                        ));
                    }
                    check::positive(&format!("optimizer.lr.{k}"), *v)?;
                }
                if let Some(s) = strategies.iter().find(|s| !t.lr.contains_key(s.id())) {
                    return Err(Error::invalid(
                        format!("optimizer.lr.{}", s.id()),
                        "every strategy of the run needs a learning rate",
                        "nothing",
                    ));
                }
                if t.warmup_steps >= self.max_steps {
                    return Err(Error::invalid(
                        "optimizer.warmup_steps",
                        format!("must be < max_steps = {}", self.max_steps),
                        t.warmup_steps,
                    ));
                }
                check::non_negative("optimizer.weight_decay", t.weight_decay)?;
                if let Some(c) = t.clip_grad_norm {
                    check::positive("optimizer.clip_grad_norm", c)?;
                }
                Ok(())
            }
        }
    }

    fn attacks(&self) -> Result<Vec<Attack>> {
        let a = &self.attack;
        let eps = a.eps.values()?;
        if a.alpha.is_some() && eps.len() > 1 {
            return Err(Error::invalid(
                "attack.alpha",
                "give alpha only with a single eps (with several, alpha = eps/4 for each)",
                a.alpha.unwrap_or_default(),
            ));
        }
        if a.steps == 0 {
            return Err(Error::invalid("attack.steps", "must be >= 1", 0));
        }
        eps.iter()
            .map(|&e| match a.kind {
                AttackKind::Pgd => {
                    let alpha = a.alpha.unwrap_or(e / 4.0);
                    check::non_negative("attack.alpha", alpha)?;
                    Ok(Attack::Pgd(PgdConfig {
                        eps: e,
                        alpha,
                        steps: a.steps,
                        random_start: true,
                        stop: a.stop.unwrap_or_default(),
                    }))
                }
                AttackKind::Apgd => Ok(Attack::Apgd(ApgdConfig { eps: e, steps: a.steps })),
            })
            .collect()
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

fn parse_ood(s: &str, kind: DataKind) -> Result<Ood> {
    match s {
        "none" => Ok(Ood::None),
        "shifted" if kind == DataKind::Synthetic => Ok(Ood::Shifted),
        "shifted" => Err(Error::invalid("ood", "`shifted` needs a synthetic dataset", s)),
        "domains" if kind == DataKind::Domains => Ok(Ood::Domains),
        "domains" => Err(Error::invalid("ood", "`domains` needs a dataset of kind `domains`", s)),
        other => {
            let parts: Vec<&str> = other.split(':').collect();
            if parts.len() == 3 && parts[0] == "corruption" {
                let c = Corruption::parse(parts[1]).map_err(|e| e.rename_field("corruption", "ood"))?;
                let sev: u8 = parts[2]
                    .parse()
                    .map_err(|_| Error::invalid("ood", "severity must be 1..5", parts[2]))?;
                if !(1..=5).contains(&sev) {
                    return Err(Error::invalid("ood", "severity must be 1..5", sev));
                }
                return Ok(Ood::Corruption(c, sev));
            }
            Err(Error::invalid(
                "ood",
                "expected none, shifted, domains or corruption:<name>:<severity>",
                other,
            ))
        }
    }
}

/// The schedule's steps, optionally scaled: the steps ≤ `reference` are mapped by
/// k ↦ round(k·max/reference) (duplicates dropped; a step that rounds to 0 is dropped unless the
/// schedule itself lists 0), so a short run keeps the schedule's shape (dense early, sparse
/// late). Without a reference, the schedule's own steps ≤ max. Step 0 (the model before any
/// update) is evaluated whenever the schedule lists it.
pub fn scaled_steps(s: &Schedule, max: u64, reference: Option<u64>) -> Vec<u64> {
    match reference {
        Some(r) if r > 0 && !matches!(s, Schedule::List(_)) => {
            let mut out: Vec<u64> = s
                .steps(r)
                .into_iter()
                .map(|k| (k, ((k as f64) * max as f64 / r as f64).round() as u64))
                .filter(|&(k, m)| (m > 0 || k == 0) && m <= max)
                .map(|(_, m)| m)
                .collect();
            out.dedup();
            out
        }
        _ => s.steps(max),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid() {
        let c = RunConfig::preset("cpu-default").unwrap();
        assert_eq!(c.strategies.len(), 7);
        // Paper schedule (50..700 by 50, 1000, 2000, 3000) scaled from 3000 to 150 steps.
        assert_eq!(
            c.eval_steps,
            vec![3, 5, 8, 10, 13, 15, 18, 20, 23, 25, 28, 30, 33, 35, 50, 100, 150]
        );
        let smoke = RunConfig::preset("smoke").unwrap();
        assert_eq!(smoke.eval_steps, vec![0, 4, 8, 12]);
        assert_eq!(smoke.eps(), vec![1.0 / 255.0, 4.0 / 255.0]);
        // α = ε/4 for each radius.
        assert!(matches!(smoke.attacks[1], Attack::Pgd(p) if p.alpha == 1.0 / 255.0));
        assert!(smoke.new_head);
        let paper = RunConfig::preset("paper-cpu").unwrap();
        assert_eq!(paper.eps(), vec![1.0 / 255.0, 2.0 / 255.0, 4.0 / 255.0, 8.0 / 255.0]);
        assert_eq!(paper.eval_steps[0], 0);
        assert_eq!(paper.model.patch_size, 7);
        assert!(paper.config.seeds.len() >= 3 && paper.config.eval_subset >= 1000);
        // Per-strategy learning rates from the table; the paper preset keeps Li et al.'s.
        for s in &paper.strategies {
            let OptimizerSpec::Custom(t) = &paper.config.optimizer else {
                panic!("a table")
            };
            assert_eq!(paper.optimiser(*s).lr, t.lr[s.id()]);
        }
        assert_eq!(smoke.optimiser(Strategy::Full).lr, 2e-5);
        assert!(RunConfig::preset("nope").is_err());
    }

    #[test]
    fn errors_name_key_and_file() {
        let text = PRESETS[1].1;
        assert!(
            text.contains("eps = [\"1/255\", \"4/255\"]"),
            "the smoke preset's radii moved: update this test"
        );
        let bad = text.replace("max_steps = 12", "max_steps = 12\nmax_stepz = 3");
        let e = RunConfig::from_toml(&bad, Path::new("x.toml")).unwrap_err().to_string();
        assert!(e.contains("x.toml") && e.contains("max_stepz"), "{e}");
        // A syntax error: one line naming the file, the line and the column.
        let line = text.lines().position(|l| l.starts_with("max_steps")).unwrap() + 1;
        let e = RunConfig::from_toml(&text.replace("max_steps = 12", "max_steps == 12"), Path::new("x.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("x.toml") && e.contains(&format!("line {line}, column")) && !e.contains('\n'),
            "{e}"
        );
        for (from, to, key) in [
            ("eps = [\"1/255\", \"4/255\"]", "eps = -0.1", "attack.eps"),
            (
                "eps = [\"1/255\", \"4/255\"]",
                "eps = [\"1/255\", \"1:255\"]",
                "attack.eps[1]",
            ),
            ("eps = [\"1/255\", \"4/255\"]", "eps = [0.1, 0.1]", "twice"),
            ("steps = 5", "steps = 5\nalpha = 0.001", "attack.alpha"),
            ("steps = 5", "steps = 0", "attack.steps"),
            ("head = \"new\"", "head = \"old\"", "head"),
            (
                "ood = \"shifted\"",
                "ood = \"shifted\"\nclasses = [3, 10]",
                "datasets[0].classes",
            ),
            ("ood = \"shifted\"", "ood = \"shifted\"\nclasses = [3, 3]", "twice"),
            (
                "ood = \"shifted\"",
                "ood = \"shifted\"\n[[datasets]]\nname = \"simple\"\nkind = \"synthetic\"\ntask = \"synthetic-simple\"\ntrain_images = 8",
                "datasets[1].name",
            ),
            ("name = \"simple\"", "name = \"..\"", "datasets[0].name"),
            (
                "optimizer = \"paper\"",
                "optimizer = { lr = { lora = 1e-3, bitfit = 1e-3 } }",
                "optimizer.lr.linear_probe",
            ),
            (
                "optimizer = \"paper\"",
                "optimizer = { lr = { lora = 1e-3, bitfit = 1e-3, linear_probe = -1.0 } }",
                "optimizer.lr.linear_probe",
            ),
            (
                "optimizer = \"paper\"",
                "optimizer = { lr = { lora = 1e-3, bitfit = 1e-3, linear_probe = 1.0, lp = 1.0 } }",
                "optimizer.lr.lp",
            ),
            (
                "optimizer = \"paper\"",
                "optimizer = { lr = { lora = 1e-3, bitfit = 1e-3, linear_probe = 1.0 }, warmup_steps = 12 }",
                "optimizer.warmup_steps",
            ),
            (
                "lr = 1e-3",
                "lr = 1e-3\ndataset = { kind = \"fashion-mnist\", classes = [11] }",
                "pretrain.dataset.classes",
            ),
            (
                "lr = 1e-3",
                "lr = 1e-3\ndataset = { kind = \"mnist\" }",
                "pretrain.dataset.kind",
            ),
            ("ood = \"shifted\"", "ood = \"corruption:fog:3\"", "datasets[0].ood"),
            ("kind = \"synthetic\"", "kind = \"imagenet\"", "datasets[0].kind"),
            (
                "strategies = [\"linear_probe\"",
                "strategies = [\"prefix\"",
                "strategies",
            ),
            ("schedule = [0, 4, 8, 12]", "schedule = [40]", "schedule"),
            ("schedule = [0, 4, 8, 12]", "schedule = [0]", "schedule"),
        ] {
            let t = text.replacen(from, to, 1);
            assert_ne!(t, text, "{from}");
            let e = RunConfig::from_toml(&t, Path::new("x.toml"))
                .unwrap()
                .validate()
                .unwrap_err()
                .to_string();
            assert!(e.contains(key), "{key}: {e}");
        }
    }
}
