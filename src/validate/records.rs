//! JSONL run records: one header line, then one line per scheduled evaluation. Readers reject an
//! unknown schema version with a clear error.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::tradeoff::Interval;

/// Version of the record schema written by this build.
pub const SCHEMA_VERSION: u32 = 1;

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
    /// `git rev-parse HEAD` of the working directory, if any.
    pub git_commit: Option<String>,
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
    /// Robust accuracy under the configured attack.
    pub robust_acc: f64,
    /// Wilson 95% interval of `robust_acc`.
    pub robust_ci: Interval,
    /// OOD accuracy (null without an OOD set).
    pub ood_acc: Option<f64>,
    /// Wilson 95% interval of `ood_acc`.
    pub ood_ci: Option<Interval>,
    /// Points evaluated.
    pub n_eval: usize,
    /// Mean training loss since the previous evaluation.
    pub loss: f64,
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
    let h = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{h:016x}")
}

/// The hash of a configuration: FNV-1a of its canonical (key-sorted) JSON.
pub fn config_hash(config: &serde_json::Value) -> String {
    fnv_hex(serde_json::to_string(config).expect("JSON value serialises").as_bytes())
}

/// The current git commit, if the working directory is a checkout.
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

/// Renders records as JSONL text.
pub fn render(rec: &RunRecords) -> String {
    let mut s = serde_json::to_string(&rec.header).expect("header serialises");
    s.push('\n');
    for e in &rec.evals {
        s.push_str(&serde_json::to_string(e).expect("record serialises"));
        s.push('\n');
    }
    s
}

/// Parses JSONL text; `path` names the file in errors. Rejects unknown schema versions and
/// malformed lines, naming the line.
pub fn parse(text: &str, path: &Path) -> Result<RunRecords> {
    let err = |line: usize, msg: String| Error::Config {
        path: path.to_path_buf(),
        message: format!("line {line}: {msg}"),
    };
    let mut header: Option<Header> = None;
    let mut evals = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| err(i + 1, format!("not JSON ({e})")))?;
        let version = v.get("schema_version").and_then(|x| x.as_u64());
        if version != Some(SCHEMA_VERSION as u64) {
            return Err(err(
                i + 1,
                format!(
                    "unknown schema version {} (this build reads version {SCHEMA_VERSION})",
                    version.map_or("none".into(), |x| x.to_string())
                ),
            ));
        }
        match v.get("type").and_then(|t| t.as_str()) {
            Some("header") if i == 0 => {
                header = Some(serde_json::from_value(v).map_err(|e| err(i + 1, format!("bad header ({e})")))?)
            }
            Some("eval") => {
                evals.push(serde_json::from_value(v).map_err(|e| err(i + 1, format!("bad eval record ({e})")))?)
            }
            other => return Err(err(i + 1, format!("unexpected record type {other:?}"))),
        }
    }
    let header = header.ok_or_else(|| err(1, "the first line must be a header record".into()))?;
    Ok(RunRecords { header, evals })
}

/// Reads a JSONL run file.
pub fn read(path: &Path) -> Result<RunRecords> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    parse(&text, path)
}

/// Writes records atomically.
pub fn write(path: &Path, rec: &RunRecords) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    crate::plot::write_atomic(path, render(rec).as_bytes())
}

#[cfg(test)]
mod tests {
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
        };
        let e = EvalRecord {
            kind: "eval".into(),
            schema_version: SCHEMA_VERSION,
            config_hash: header.config_hash.clone(),
            seed: 0,
            step: 5,
            clean_acc: 0.5,
            clean_ci: Interval { lo: 0.4, hi: 0.6 },
            robust_acc: 0.25,
            robust_ci: Interval { lo: 0.2, hi: 0.3 },
            ood_acc: None,
            ood_ci: None,
            n_eval: 64,
            loss: 1.25,
            elapsed_s: 3.5,
            train_s: 2.0,
            eval_s: 1.0,
            attack_s: 0.5,
        };
        RunRecords { header, evals: vec![e] }
    }

    #[test]
    fn round_trip() {
        let r = sample();
        assert_eq!(parse(&render(&r), Path::new("x.jsonl")).unwrap(), r);
    }

    #[test]
    fn unknown_schema_version_is_rejected() {
        let text = render(&sample()).replacen("\"schema_version\":1", "\"schema_version\":2", 1);
        let e = parse(&text, Path::new("run.jsonl")).unwrap_err().to_string();
        assert!(
            e.contains("run.jsonl") && e.contains("line 1") && e.contains("unknown schema version 2"),
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
