//! Run configurations (TOML, `validation/configs/`), validated once at load: an unknown key or
//! an impossible value is an error naming the key and the file.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::engine::VitConfig;
use crate::engine::attack::{ApgdConfig, PgdConfig, StopRule};
use crate::engine::data::corrupt::Corruption;
use crate::engine::data::synthetic::SyntheticSpec;
use crate::engine::eval::Attack;
use crate::engine::peft::{Strategy, parse_strategy};
use crate::error::{Error, Result, check};
use crate::tradeoff::Schedule;

/// The embedded presets: (name, TOML text).
pub const PRESETS: [(&str, &str); 2] = [
    ("cpu-default", include_str!("../../validation/configs/cpu-default.toml")),
    ("smoke", include_str!("../../validation/configs/smoke.toml")),
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
}

/// The attack as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttackSpec {
    /// `pgd` or `apgd`.
    pub kind: String,
    /// ℓ∞ radius in [0, 1] pixel units.
    pub eps: f64,
    /// PGD step size (ignored by APGD).
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
    /// `synthetic`, `fashion-mnist` or `cifar10`.
    pub kind: String,
    /// Synthetic task name (`synthetic-simple`, `synthetic-complex`).
    #[serde(default)]
    pub task: Option<String>,
    /// Data folder for file datasets.
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
    /// Training images used (synthetic: generated; files: the first N of the seeded split).
    pub train_images: usize,
    /// OOD set: `shifted` (synthetic style shift), `corruption:<name>:<severity>`, or `none`.
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
    /// Model preset or TOML path.
    pub model: String,
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
    /// Batch size.
    pub batch_size: usize,
    /// Optimiser preset: `paper` (lr 2e-5 full, 5e-3 others, cosine, 800 warm-up scaled to the
    /// run length for non-full).
    pub optimizer: String,
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
}

/// A validated configuration with parsed fields.
#[derive(Debug, Clone)]
pub struct ValidRun {
    /// The configuration as written (recorded in headers).
    pub raw: RunConfig,
    /// Model size.
    pub model: VitConfig,
    /// Strategies.
    pub strategies: Vec<Strategy>,
    /// Evaluation steps (exact list).
    pub eval_steps: Vec<u64>,
    /// Attack.
    pub attack: Attack,
    /// OOD per dataset.
    pub ood: Vec<Ood>,
}

fn cfg_err(path: &Path, e: Error) -> Error {
    Error::Config {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

impl RunConfig {
    /// Parses TOML; `origin` names the file in errors.
    pub fn from_toml(text: &str, origin: &Path) -> Result<Self> {
        toml::from_str(text).map_err(|e| Error::Config {
            path: origin.to_path_buf(),
            message: e.message().to_string(),
        })
    }

    /// Reads and validates a file.
    pub fn load(path: &Path) -> Result<ValidRun> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_toml(&text, path)?.validate().map_err(|e| cfg_err(path, e))
    }

    /// An embedded preset by name.
    pub fn preset(name: &str) -> Result<ValidRun> {
        let (_, text) = PRESETS
            .iter()
            .find(|(n, _)| *n == name)
            .ok_or_else(|| Error::invalid("--preset", "expected cpu-default or smoke", name))?;
        let origin = PathBuf::from(format!("<preset {name}>"));
        Self::from_toml(text, &origin)?
            .validate()
            .map_err(|e| cfg_err(&origin, e))
    }

    /// Checks every value; errors name the key.
    pub fn validate(self) -> Result<ValidRun> {
        let model = VitConfig::from_arg(&self.model).map_err(|e| e.rename_field("model", "model"))?;
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
        check::positive("pretrain.lr", self.pretrain.lr)?;
        if self.optimizer != "paper" {
            return Err(Error::invalid("optimizer", "expected paper", &self.optimizer));
        }
        let schedule = match &self.schedule {
            ScheduleSpec::Name(n) if n == "paper" => Schedule::Paper,
            ScheduleSpec::Name(n) if n == "repo" => Schedule::Repo,
            ScheduleSpec::Name(n) => {
                return Err(Error::invalid("schedule", "expected paper, repo or a list of steps", n));
            }
            ScheduleSpec::List(v) => Schedule::list(v.clone())?,
        };
        let eval_steps = scaled_steps(&schedule, self.max_steps as u64, self.schedule_reference_steps);
        if eval_steps.is_empty() {
            return Err(Error::invalid(
                "schedule",
                format!("has no step within max_steps = {}", self.max_steps),
                schedule,
            ));
        }
        let a = &self.attack;
        check::non_negative("attack.eps", a.eps)?;
        let attack = match a.kind.as_str() {
            "pgd" => {
                let alpha = a.alpha.unwrap_or(a.eps / 4.0);
                check::non_negative("attack.alpha", alpha)?;
                Attack::Pgd(PgdConfig {
                    eps: a.eps,
                    alpha,
                    steps: a.steps,
                    random_start: true,
                    stop: a.stop.unwrap_or_default(),
                })
            }
            "apgd" => Attack::Apgd(ApgdConfig {
                eps: a.eps,
                steps: a.steps,
            }),
            other => return Err(Error::invalid("attack.kind", "expected pgd or apgd", other)),
        };
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
            match d.kind.as_str() {
                "synthetic" => {
                    let t = d
                        .task
                        .as_deref()
                        .ok_or_else(|| Error::invalid(key("task"), "a synthetic dataset needs a task", "nothing"))?;
                    SyntheticSpec::named(t, model.image_size).map_err(|e| e.rename_field("task", &key("task")))?;
                }
                "fashion-mnist" | "cifar10" => {}
                other => {
                    return Err(Error::invalid(
                        key("kind"),
                        "expected synthetic, fashion-mnist or cifar10",
                        other,
                    ));
                }
            }
            if d.train_images == 0 {
                return Err(Error::invalid(key("train_images"), "must be >= 1", 0));
            }
            if d.name.is_empty() || d.name.contains(['/', '\\']) {
                return Err(Error::invalid(key("name"), "must be a plain folder name", &d.name));
            }
            ood.push(parse_ood(&d.ood, d.kind == "synthetic").map_err(|e| e.rename_field("ood", &key("ood")))?);
        }
        Ok(ValidRun {
            model,
            strategies,
            eval_steps,
            attack,
            ood,
            raw: self,
        })
    }
}

fn parse_ood(s: &str, synthetic: bool) -> Result<Ood> {
    match s {
        "none" => Ok(Ood::None),
        "shifted" if synthetic => Ok(Ood::Shifted),
        "shifted" => Err(Error::invalid("ood", "`shifted` needs a synthetic dataset", s)),
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
                "expected none, shifted or corruption:<name>:<severity>",
                other,
            ))
        }
    }
}

/// The schedule's steps, optionally scaled: the steps ≤ `reference` are mapped by
/// k ↦ round(k·max/reference) (duplicates and 0 dropped), so a short run keeps the schedule's
/// shape (dense early, sparse late). Without a reference, the schedule's own steps ≤ max.
pub fn scaled_steps(s: &Schedule, max: u64, reference: Option<u64>) -> Vec<u64> {
    match reference {
        Some(r) if r > 0 && !matches!(s, Schedule::List(_)) => {
            let mut out: Vec<u64> = s
                .steps(r)
                .into_iter()
                .map(|k| ((k as f64) * max as f64 / r as f64).round() as u64)
                .filter(|&k| k > 0 && k <= max)
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
        assert_eq!(RunConfig::preset("smoke").unwrap().eval_steps, vec![4, 8, 12]);
        assert!(RunConfig::preset("nope").is_err());
    }

    #[test]
    fn errors_name_key_and_file() {
        let text = PRESETS[1].1;
        let bad = text.replace("max_steps = 12", "max_steps = 12\nmax_stepz = 3");
        let e = RunConfig::from_toml(&bad, Path::new("x.toml")).unwrap_err().to_string();
        assert!(e.contains("x.toml") && e.contains("max_stepz"), "{e}");
        for (from, to, key) in [
            ("eps = 0.00392156862745098", "eps = -0.1", "attack.eps"),
            ("ood = \"shifted\"", "ood = \"corruption:fog:3\"", "datasets[0].ood"),
            ("kind = \"synthetic\"", "kind = \"imagenet\"", "datasets[0].kind"),
            (
                "strategies = [\"linear_probe\"",
                "strategies = [\"prefix\"",
                "strategies",
            ),
            ("schedule = [4, 8, 12]", "schedule = [40]", "schedule"),
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
