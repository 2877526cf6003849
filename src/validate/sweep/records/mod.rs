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
//!
//! Here the record types; reading and writing files in `jsonl`, the outcome digits in `outcomes`,
//! configuration and experiment hashes in `experiment` (all re-exported).

use serde::{Deserialize, Serialize};

use crate::tradeoff::Interval;

mod experiment;
mod jsonl;
mod outcomes;

pub use experiment::{
    SWEEP_KEYS, build_commit, check_one_experiment, config_hash, experiment_hash, fnv_hex, git_commit,
    run_experiment_hash,
};
pub use jsonl::{parse, read, read_folder, record_files, render, write};
pub use outcomes::{decode_digits, encode_bools, encode_levels};

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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// One run of two scheduled steps with its first evaluation (shared by the submodules' tests).
    pub(super) fn sample() -> RunRecords {
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
}
