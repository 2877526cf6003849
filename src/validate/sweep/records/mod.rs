//! JSONL run records: one header line, then one line per scheduled evaluation. Readers reject an
//! unknown schema version with a clear error.
//!
//! Schema 2 (written now): robust accuracy per attack radius (`robust`, increasing ε) and the
//! per-image outcomes behind every accuracy (`outcomes`, `ood_outcomes`), so that reports can
//! bootstrap over evaluation images; the header says where the backbone came from (upstream
//! data, classes, held-out accuracy), the downstream class map, the task's measured
//! separability, the learning rate and the evaluation images. Schema 1 files (one radius, counts
//! only) are still read: their robust accuracy becomes a one-radius list and their outcomes are
//! empty.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::tradeoff::Interval;

mod jsonl;

pub use jsonl::{parse, read, read_folder, render, write};

/// Version of the record schema written by this build.
pub const SCHEMA_VERSION: u32 = 2;

/// Schema versions this build reads.
pub const READABLE: [u32; 2] = [1, 2];

/// Where the backbone of a run came from (absent for a configured checkpoint, which the toolkit
/// did not train and cannot vouch for).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpstreamInfo {
    /// Upstream data, e.g. `fashion-mnist classes [0, 1, 2, 3, 4]` or `synthetic-upstream`.
    pub source: String,
    /// Upstream classes (original labels), when a subset.
    pub classes: Option<Vec<u32>>,
    /// Training images used upstream.
    pub train_images: usize,
    /// Optimiser steps.
    pub steps: usize,
    /// Clean accuracy on held-out upstream images (the upstream test split).
    pub held_out_acc: f64,
    /// Held-out images.
    pub held_out_n: usize,
    /// Wilson 95% interval of `held_out_acc`.
    pub held_out_ci: Interval,
    /// The cached checkpoint's file name (it carries the content hash).
    pub checkpoint: String,
    /// Pretraining wall time, seconds (None when it was not measured here).
    pub seconds: Option<f64>,
}

/// How separable a downstream task is in the pretrained backbone's features, and how close it
/// is to the upstream classes (the paper's two faces of "task complexity"), measured before any
/// fine-tuning on training images only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Separability {
    /// Nearest-class-mean accuracy of the pretrained CLS features: class means from the
    /// even-indexed images, accuracy on the odd-indexed ones.
    pub ncm_acc: f64,
    /// Chance-corrected: Cohen's κ = (acc − 1/K)/(1 − 1/K) for K classes.
    pub ncm_kappa: f64,
    /// Images classified.
    pub n: usize,
    /// Mean over downstream classes of the largest cosine similarity between the class's
    /// (centred) feature mean and an upstream class mean; None without upstream images.
    pub upstream_similarity: Option<f64>,
}

/// The first line of a run's JSONL file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    /// Always "header".
    #[serde(rename = "type")]
    pub kind: String,
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The full run configuration.
    pub config: serde_json::Value,
    /// FNV-1a 64 of the canonical JSON of `config`, hex.
    pub config_hash: String,
    /// The commit the binary was built from ([`build_commit`]; records before it hold the working
    /// directory's commit).
    pub git_commit: Option<String>,
    /// The working directory's commit, recorded only when it differs from the build's (a binary
    /// run from another checkout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd_commit: Option<String>,
    /// This crate's version.
    pub crate_version: String,
    /// Device description.
    pub device: String,
    /// Dataset name.
    pub dataset: String,
    /// Strategy id.
    pub strategy: String,
    /// Seed.
    pub seed: u64,
    /// Trainable backbone parameters (the paper's count).
    pub trainable_backbone: usize,
    /// Trainable head parameters.
    pub trainable_head: usize,
    /// All parameters.
    pub total_params: usize,
    /// The scheduled evaluation steps.
    pub eval_steps: Vec<u64>,
    /// Attack radii, increasing (schema 2).
    #[serde(default)]
    pub eps: Vec<f64>,
    /// Origin of the backbone (schema 2; None for a configured checkpoint).
    #[serde(default)]
    pub upstream: Option<UpstreamInfo>,
    /// Original label of each class of the task (schema 2; None: all classes, unchanged).
    #[serde(default)]
    pub class_map: Option<Vec<u32>>,
    /// Measured task complexity (schema 2).
    #[serde(default)]
    pub separability: Option<Separability>,
    /// Peak learning rate of this run (schema 2).
    #[serde(default)]
    pub lr: Option<f64>,
    /// Hash of the evaluation image indices (schema 2): runs with equal hashes share images.
    #[serde(default)]
    pub eval_set: Option<String>,
    /// Whether the run started from a fresh head (schema 2).
    #[serde(default)]
    pub new_head: Option<bool>,
    /// Sizes the data could not honour (`train_images` or `eval_subset` larger than what the
    /// dataset's classes hold), each as one sentence; absent when every size was honoured.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capped: Vec<String>,
    /// Task complexity d the theory comparison uses for this dataset (the configured `theory_d`,
    /// else the synthetic task's d, else the class count); absent in earlier records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub theory_d: Option<f64>,
}

/// Robust accuracy at one radius.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RobustAt {
    /// ℓ∞ radius.
    pub eps: f64,
    /// Robust accuracy.
    pub acc: f64,
    /// Wilson 95% interval.
    pub ci: Interval,
}

/// One scheduled evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRecord {
    /// Always "eval".
    #[serde(rename = "type")]
    pub kind: String,
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Config hash (as in the header).
    pub config_hash: String,
    /// Seed.
    pub seed: u64,
    /// Optimiser steps taken.
    pub step: u64,
    /// Clean accuracy on the evaluation subset.
    pub clean_acc: f64,
    /// Wilson 95% interval of `clean_acc`.
    pub clean_ci: Interval,
    /// Robust accuracy per radius, increasing ε.
    pub robust: Vec<RobustAt>,
    /// OOD accuracy (null without an OOD set).
    pub ood_acc: Option<f64>,
    /// Wilson 95% interval of `ood_acc`.
    pub ood_ci: Option<Interval>,
    /// Points evaluated.
    pub n_eval: usize,
    /// Per evaluation image, one digit: 0 = misclassified clean, 1 + k = clean-correct and
    /// robust at the k smallest radii ([`crate::engine::eval::robust_levels`]). Empty in
    /// schema 1 files.
    #[serde(default)]
    pub outcomes: String,
    /// Per evaluation image: 1 = correct on its OOD version, 0 = not (None without OOD set or
    /// in schema 1 files).
    #[serde(default)]
    pub ood_outcomes: Option<String>,
    /// Mean training loss since the previous evaluation (None at step 0).
    pub loss: Option<f64>,
    /// Wall time since the run started (including earlier, resumed segments), seconds.
    pub elapsed_s: f64,
    /// Of which training, seconds.
    pub train_s: f64,
    /// Of which clean and OOD evaluation, seconds.
    pub eval_s: f64,
    /// Of which the attack, seconds.
    pub attack_s: f64,
}

impl EvalRecord {
    /// Robust accuracy at the smallest radius (the one every schema has).
    pub fn robust_acc(&self) -> f64 {
        self.robust.first().map_or(f64::NAN, |r| r.acc)
    }

    /// The record without its wall-time fields (what must be identical across a resume).
    pub fn without_timing(&self) -> EvalRecord {
        EvalRecord {
            elapsed_s: 0.0,
            train_s: 0.0,
            eval_s: 0.0,
            attack_s: 0.0,
            ..self.clone()
        }
    }
}

impl Header {
    /// The run as `dataset/strategy/seedN`, the name reports and errors use.
    pub fn label(&self) -> String {
        format!("{}/{}/seed{}", self.dataset, self.strategy, self.seed)
    }
}

/// A parsed JSONL run file.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecords {
    /// The header.
    pub header: Header,
    /// Evaluations in step order.
    pub evals: Vec<EvalRecord>,
}

/// FNV-1a 64-bit hash as 16 hex digits.
pub fn fnv_hex(bytes: &[u8]) -> String {
    format!("{:016x}", crate::seeds::fnv1a(bytes))
}

/// The hash of a configuration: FNV-1a of its canonical (key-sorted) JSON.
pub fn config_hash(config: &serde_json::Value) -> String {
    fnv_hex(serde_json::to_string(config).expect("JSON value serialises").as_bytes())
}

/// The configuration keys a sweep may grow along: a folder's runs belong to one experiment when
/// their configurations agree on everything else, so seeds or strategies can be added to a
/// finished sweep (each run's own seed and strategy are in its header).
pub const SWEEP_KEYS: [&str; 2] = ["seeds", "strategies"];

/// The hash of the experiment a configuration describes, as far as a run of `strategy` is
/// concerned: [`config_hash`] of the configuration without its [`SWEEP_KEYS`] and with a
/// per-strategy learning-rate table (`optimizer.lr`) reduced to `strategy`'s entry (the other
/// entries do not touch that run); with `None`, without the table (what every run shares).
/// Records are checked against this (a resume, `plan`, `status`, the report's
/// one-configuration-per-folder rule, [`check_one_experiment`]), so growing the seed or strategy
/// list — with the new strategies' learning rates — keeps the runs already recorded, while a
/// changed rate of a recorded strategy does not.
pub fn experiment_hash(config: &serde_json::Value, strategy: Option<&str>) -> String {
    let mut c = config.clone();
    if let Some(o) = c.as_object_mut() {
        for k in SWEEP_KEYS {
            o.remove(k);
        }
    }
    if let Some(t) = c.pointer_mut("/optimizer").and_then(serde_json::Value::as_object_mut)
        && let Some(lr) = t.get_mut("lr").and_then(serde_json::Value::as_object_mut)
    {
        lr.retain(|k, _| Some(k.as_str()) == strategy);
    }
    config_hash(&c)
}

/// The experiment hash of the run a header describes ([`experiment_hash`] for its strategy).
pub fn run_experiment_hash(header: &Header) -> String {
    experiment_hash(&header.config, Some(&header.strategy))
}

/// Checks that the runs of `headers` belong to one experiment: they agree on everything but the
/// seed and strategy lists and the other strategies' learning rates ([`experiment_hash`]). The
/// error lists each configuration and its runs ([`Header::label`]).
pub fn check_one_experiment<'a>(headers: impl IntoIterator<Item = &'a Header>) -> Result<()> {
    let mut shared: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut own: BTreeMap<&str, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    for h in headers {
        let name = h.label();
        shared
            .entry(experiment_hash(&h.config, None))
            .or_default()
            .push(name.clone());
        own.entry(h.strategy.as_str())
            .or_default()
            .entry(run_experiment_hash(h))
            .or_default()
            .push(name);
    }
    let groups = std::iter::once(&shared).chain(own.values()).find(|g| g.len() > 1);
    let Some(groups) = groups else { return Ok(()) };
    let list: Vec<String> = groups
        .iter()
        .map(|(h, rs)| format!("config {h}: {}", rs.join(", ")))
        .collect();
    Err(Error::invalid(
        "records",
        "one configuration per run folder (give each configuration its own --out)",
        format!("{} configurations: {}", groups.len(), list.join("; ")),
    ))
}

/// The commit this binary was built from (embedded by `build.rs`), if it was built from a git
/// checkout.
pub fn build_commit() -> Option<String> {
    let c = env!("ROBUSTFT_BUILD_COMMIT");
    (c.len() == 40).then(|| c.to_string())
}

/// The git commit of the working directory, if it is a checkout (not necessarily the build's).
pub fn git_commit() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| s.len() == 40)
}

/// Per-image outcome levels as one digit each ([`EvalRecord::outcomes`]).
pub fn encode_levels(levels: &[u8]) -> String {
    levels.iter().map(|&l| char::from(b'0' + l.min(9))).collect()
}

/// Per-image booleans as `0`/`1`.
pub fn encode_bools(v: &[bool]) -> String {
    v.iter().map(|&b| if b { '1' } else { '0' }).collect()
}

/// The digits of an outcome string; `what` names it in errors.
pub fn decode_digits(s: &str, what: &str) -> Result<Vec<u8>> {
    s.bytes()
        .enumerate()
        .map(|(i, b)| {
            b.is_ascii_digit()
                .then(|| b - b'0')
                .ok_or_else(|| Error::invalid(what, format!("digits only (position {i})"), char::from(b)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn sample() -> RunRecords {
        let header = Header {
            kind: "header".into(),
            schema_version: SCHEMA_VERSION,
            config: serde_json::json!({"a": 1}),
            config_hash: config_hash(&serde_json::json!({"a": 1})),
            git_commit: None,
            crate_version: "0.1.0".into(),
            device: "cpu".into(),
            dataset: "simple".into(),
            strategy: "lora".into(),
            seed: 0,
            trainable_backbone: 10,
            trainable_head: 2,
            total_params: 100,
            eval_steps: vec![5, 10],
            eps: vec![1.0 / 255.0, 4.0 / 255.0],
            upstream: None,
            class_map: Some(vec![5, 9]),
            separability: None,
            lr: Some(1e-3),
            eval_set: Some("abc".into()),
            new_head: Some(true),
            capped: Vec::new(),
            cwd_commit: None,
            theory_d: None,
        };
        let e = EvalRecord {
            kind: "eval".into(),
            schema_version: SCHEMA_VERSION,
            config_hash: header.config_hash.clone(),
            seed: 0,
            step: 5,
            clean_acc: 0.5,
            clean_ci: Interval { lo: 0.4, hi: 0.6 },
            robust: vec![
                RobustAt {
                    eps: 1.0 / 255.0,
                    acc: 0.25,
                    ci: Interval { lo: 0.2, hi: 0.3 },
                },
                RobustAt {
                    eps: 4.0 / 255.0,
                    acc: 0.125,
                    ci: Interval { lo: 0.1, hi: 0.2 },
                },
            ],
            ood_acc: None,
            ood_ci: None,
            n_eval: 4,
            outcomes: "0123".into(),
            ood_outcomes: Some("0110".into()),
            loss: Some(1.25),
            elapsed_s: 3.5,
            train_s: 2.0,
            eval_s: 1.0,
            attack_s: 0.5,
        };
        RunRecords { header, evals: vec![e] }
    }

    #[test]
    fn out_of_domain_or_repeated_evals_are_rejected() {
        let text = render(&sample());
        let eval_line = text.lines().nth(1).unwrap().to_string();
        let bad = text.replacen("\"clean_acc\":0.5", "\"clean_acc\":7.5", 1);
        let e = parse(&bad, Path::new("r.jsonl")).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("clean_acc"), "{e}");
        let twice = format!("{text}{eval_line}\n");
        let e = parse(&twice, Path::new("r.jsonl")).unwrap_err().to_string();
        assert!(e.contains("line 3") && e.contains("repeated"), "{e}");
        let nan = text.replacen("\"acc\":0.125", "\"acc\":-0.5", 1);
        assert!(
            parse(&nan, Path::new("r.jsonl"))
                .unwrap_err()
                .to_string()
                .contains("robust acc")
        );
    }

    #[test]
    fn outcome_strings_round_trip() {
        let levels = [0u8, 1, 2, 5, 3];
        assert_eq!(encode_levels(&levels), "01253");
        assert_eq!(decode_digits("01253", "o").unwrap(), levels);
        assert_eq!(encode_bools(&[true, false, true]), "101");
        let e = decode_digits("01x", "outcomes").unwrap_err().to_string();
        assert!(e.contains("outcomes") && e.contains("position 2"), "{e}");
    }

    #[test]
    fn round_trip() {
        let r = sample();
        assert_eq!(parse(&render(&r), Path::new("x.jsonl")).unwrap(), r);
    }

    /// A schema 1 file as the earlier build wrote it (cpu-default's first record, abridged
    /// config) reads as one radius from the config, without outcomes.
    #[test]
    fn schema_1_is_upgraded() {
        let text = concat!(
            r#"{"type":"header","schema_version":1,"config":{"attack":{"eps":0.00392156862745098}},"config_hash":"h","git_commit":null,"crate_version":"0.1.0","device":"cpu","dataset":"simple","strategy":"lora","seed":0,"trainable_backbone":1,"trainable_head":2,"total_params":3,"eval_steps":[3]}"#,
            "\n",
            r#"{"type":"eval","schema_version":1,"config_hash":"h","seed":0,"step":3,"clean_acc":0.5,"clean_ci":{"lo":0.4,"hi":0.6},"robust_acc":0.25,"robust_ci":{"lo":0.2,"hi":0.3},"ood_acc":null,"ood_ci":null,"n_eval":128,"loss":1.0,"elapsed_s":1.0,"train_s":0.5,"eval_s":0.25,"attack_s":0.25}"#,
            "\n"
        );
        let r = parse(text, Path::new("old.jsonl")).unwrap();
        assert_eq!(r.header.eps, vec![1.0 / 255.0]);
        assert_eq!(r.evals[0].robust.len(), 1);
        assert_eq!(r.evals[0].robust[0].eps, 1.0 / 255.0);
        assert_eq!(r.evals[0].robust_acc(), 0.25);
        assert_eq!(r.evals[0].robust[0].ci, Interval { lo: 0.2, hi: 0.3 });
        assert!(r.evals[0].outcomes.is_empty());
    }

    #[test]
    fn unknown_schema_version_is_rejected() {
        let text = render(&sample()).replacen("\"schema_version\":2", "\"schema_version\":3", 1);
        let e = parse(&text, Path::new("run.jsonl")).unwrap_err().to_string();
        assert!(
            e.contains("run.jsonl") && e.contains("line 1") && e.contains("unknown schema version 3"),
            "{e}"
        );
        let e = parse("{\"type\":\"eval\"}\n", Path::new("r.jsonl"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("schema version"), "{e}");
        let e = parse("not json\n", Path::new("r.jsonl")).unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("not JSON"), "{e}");
    }

    /// A run's identity ignores the seed and strategy lists and the other strategies' rates,
    /// not its own rate or anything else; one folder may hold runs whose configurations differ
    /// only there.
    #[test]
    fn experiment_hash_ignores_only_the_sweep_and_the_other_strategies_rates() {
        let cfg = |seeds: &str, strategies: &str, lr: &str, steps: u64| {
            let v: serde_json::Value = serde_json::from_str(&format!(
                r#"{{"seeds": {seeds}, "strategies": {strategies}, "max_steps": {steps},
                    "optimizer": {{"lr": {lr}, "warmup_steps": 5}}}}"#
            ))
            .unwrap();
            v
        };
        let first = cfg("[0]", r#"["lora"]"#, r#"{"lora": 0.01}"#, 100);
        let grown = cfg(
            "[0, 1]",
            r#"["lora", "bitfit"]"#,
            r#"{"lora": 0.01, "bitfit": 0.03}"#,
            100,
        );
        let h = |c: &serde_json::Value, s: &str| experiment_hash(c, Some(s));
        assert_eq!(h(&first, "lora"), h(&grown, "lora"));
        assert_eq!(experiment_hash(&first, None), experiment_hash(&grown, None));
        // Its own rate, the warm-up, the schedule: another experiment.
        let rate = cfg("[0]", r#"["lora"]"#, r#"{"lora": 0.02}"#, 100);
        assert_ne!(h(&first, "lora"), h(&rate, "lora"));
        assert_eq!(experiment_hash(&first, None), experiment_hash(&rate, None));
        let steps = cfg("[0]", r#"["lora"]"#, r#"{"lora": 0.01}"#, 200);
        assert_ne!(h(&first, "lora"), h(&steps, "lora"));
        let mut warm = first.clone();
        warm["optimizer"]["warmup_steps"] = serde_json::json!(6);
        assert_ne!(experiment_hash(&first, None), experiment_hash(&warm, None));
        // The preset (no table) is shared by every strategy.
        let paper = serde_json::json!({"seeds": [0], "optimizer": "paper"});
        assert_eq!(h(&paper, "lora"), h(&paper, "full"));

        let header = |config: serde_json::Value, strategy: &str, seed: u64| Header {
            config,
            strategy: strategy.into(),
            seed,
            ..sample().header
        };
        let runs = [
            header(first.clone(), "lora", 0),
            header(grown.clone(), "bitfit", 1),
            header(grown.clone(), "lora", 2),
        ];
        check_one_experiment(&runs).unwrap();
        // LoRA at another rate beside the others: refused, naming both LoRA configurations.
        let mixed = [runs[0].clone(), runs[1].clone(), header(rate.clone(), "lora", 2)];
        let e = check_one_experiment(&mixed).unwrap_err().to_string();
        assert!(
            e.contains("2 configurations")
                && e.contains(&format!("config {}: simple/lora/seed0", h(&first, "lora")))
                && e.contains(&format!("config {}: simple/lora/seed2", h(&rate, "lora")))
                && !e.contains("simple/bitfit/seed1"),
            "{e}"
        );
        // Another schedule for one run: the shared part differs.
        let e = check_one_experiment(&[runs[0].clone(), header(steps, "bitfit", 1)])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("2 configurations") && e.contains("simple/lora/seed0") && e.contains("simple/bitfit/seed1"),
            "{e}"
        );
    }
}
