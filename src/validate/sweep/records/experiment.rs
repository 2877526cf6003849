//! Which experiment a run belongs to: configuration hashes, the experiment hash that lets a
//! sweep grow along its seeds and strategies, the one-experiment-per-folder check, and the
//! commits a header records.

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::validate::sweep::records::Header;

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
///
/// ```
/// use robustft::validate::sweep::records::experiment_hash;
/// let a = serde_json::json!({"seeds": [0], "optimizer": {"lr": {"lora": 0.01, "full": 0.003}}, "max_steps": 10});
/// let grown = serde_json::json!({"seeds": [0, 1], "optimizer": {"lr": {"lora": 0.01, "ia3": 0.3}}, "max_steps": 10});
/// assert_eq!(experiment_hash(&a, Some("lora")), experiment_hash(&grown, Some("lora")));
/// let longer = serde_json::json!({"seeds": [0], "optimizer": {"lr": {"lora": 0.01}}, "max_steps": 20});
/// assert_ne!(experiment_hash(&a, Some("lora")), experiment_hash(&longer, Some("lora")));
/// ```
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::sweep::records::tests::sample;

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
