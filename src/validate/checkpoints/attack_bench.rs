//! `validate bench --autoattack N`: AutoAttack's standard version (APGD-CE → APGD-T → FAB-T →
//! Square; 100 iterations, 9 targets, 5,000 queries) timed on one model and N images, and with
//! `--peer` the same ensemble in torchattacks (`validation/peer/attack_peer.py`) on the same
//! weights and images in the same command — issue 17's speed check.
//!
//! An untrained model is no test of an attack (every point falls to the first APGD step), so the
//! model is first pretrained on `synthetic-upstream` (300 steps, seed 0, as
//! `validation/peer/attack_compare.sh` does); model and images go to a temporary folder that is
//! removed afterwards. Both sides attack the points the model classifies correctly; the robust
//! counts should agree within the Wilson half-width (random starts differ), and the times are
//! the comparison.

use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::Device;

use crate::engine::VitConfig;
use crate::engine::data::Dataset;
use crate::engine::data::synthetic::SyntheticSpec;
use crate::engine::eval::Attack;
use crate::engine::peft::Strategy;
use crate::engine::pretrain::{PretrainConfig, pretrain};
use crate::error::{Error, Result};
use crate::validate::checkpoints::eval::{EvalSpec, evaluate, load_model, save_images};
use crate::validate::sweep::config::{AttackKind, AttackSpec};
use crate::validate::sweep::spec::{DataKind, EpsSpec, EpsValue};

/// The torchattacks script, relative to the project root.
pub const PEER_SCRIPT: &str = "validation/peer/attack_peer.py";

/// Pretraining steps of the attacked model.
pub const PRETRAIN_STEPS: usize = 300;

/// One side's result.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Side {
    /// Clean accuracy on the N images.
    pub clean: f64,
    /// Points robust after the ensemble.
    pub robust: usize,
    /// Seconds for the ensemble (both sides: after the clean forward).
    pub seconds: f64,
    /// Versions of the software (torch, torchattacks for the peer; robustft).
    pub version: String,
}

/// The autoattack row.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AutoattackBench {
    /// Images.
    pub n: usize,
    /// ℓ∞ radius.
    pub eps: f64,
    /// Steps the attacked model was pretrained.
    pub pretrain_steps: usize,
    /// Seconds spent pretraining it (not part of either side).
    pub pretrain_s: f64,
    /// Its held-out upstream accuracy.
    pub pretrain_acc: f64,
    /// This engine.
    pub robustft: Side,
    /// torchattacks, with `--peer`.
    pub torchattacks: Option<Side>,
}

/// Removes the temporary folder however the bench ends.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the row: pretrain (`pretrain_steps`; the CLI uses [`PRETRAIN_STEPS`]), our ensemble, then (with `peer`) torchattacks' through `python3`.
/// `eps` as the CLI takes it (`0.5/255`, `0.002`); `progress` gets one line per phase.
pub fn run(
    cfg: &VitConfig,
    pretrain_steps: usize,
    n: usize,
    eps: &str,
    peer: Option<&Path>,
    device: &Device,
    progress: &dyn Fn(&str),
) -> Result<AutoattackBench> {
    if n == 0 {
        return Err(Error::invalid("--autoattack", "at least 1 image", 0));
    }
    let attacks = autoattack(eps)?;
    if let Some(p) = peer
        && !p.is_file()
    {
        return Err(Error::invalid(
            "--peer",
            "the torchattacks script (run from the project root)",
            p.display(),
        ));
    }
    let dir = TempDir(std::env::temp_dir().join(format!("robustft-autoattack-bench-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).map_err(|e| Error::io(&dir.0, e))?;
    let model_path = dir.0.join("model.safetensors");
    let task = SyntheticSpec::named("synthetic-upstream", cfg.image_size)?;
    progress(&format!(
        "pretraining the attacked model ({pretrain_steps} steps on synthetic-upstream)"
    ));
    let pre = pretrain(
        &PretrainConfig::new(cfg.clone(), task, pretrain_steps, 0),
        device,
        &model_path,
        |_, _| {},
    )?;
    let data = bench_images(cfg, n)?;
    let eval = EvalSpec {
        checkpoint: model_path.clone(),
        backbone: None,
        model: cfg.clone(),
        model_name: "bench".into(),
        strategy: Strategy::Full,
        dataset: "synthetic:synthetic-upstream".into(),
        attacks,
        n,
        seed: 0,
    };
    let model = load_model(&eval, data.classes, device)?;
    progress(&format!("robustft: AutoAttack on {n} images"));
    let ours = evaluate(&eval, &model, &data, &|_| {})?;
    let row = &ours.robust[0];
    let robustft = Side {
        clean: ours.clean,
        robust: row.robust,
        seconds: row.seconds,
        version: format!("robustft {}", env!("CARGO_PKG_VERSION")),
    };
    let torchattacks = match peer {
        None => None,
        Some(script) => {
            let images = dir.0.join("images.safetensors");
            save_images(&data, n, eval.seed, &images)?;
            progress(&format!("torchattacks: AutoAttack on {n} images"));
            Some(run_peer(script, cfg, &model_path, &images, eps)?)
        }
    };
    Ok(AutoattackBench {
        n,
        eps: row.eps,
        pretrain_steps,
        pretrain_s: pre.seconds,
        pretrain_acc: pre.val_acc,
        robustft,
        torchattacks,
    })
}

/// AutoAttack's standard version at `eps` (as the CLI takes it); errors name `--autoattack-eps`.
fn autoattack(eps: &str) -> Result<Vec<Attack>> {
    let spec = AttackSpec {
        kind: AttackKind::Autoattack,
        eps: EpsSpec::Many(vec![EpsValue::Text(eps.to_string())]),
        alpha: None,
        steps: None,
        stop: None,
        targets: None,
        queries: None,
    };
    spec.attacks().map_err(|e| {
        e.rename_field("attack.eps[0]", "--autoattack-eps")
            .rename_field("attack.eps", "--autoattack-eps")
    })
}

/// The attacked images: the test split of `synthetic-upstream` (`n` images, at least 1000; one
/// training image, which the bench does not use).
fn bench_images(cfg: &VitConfig, n: usize) -> Result<Dataset> {
    Ok(crate::validate::sweep::data::load_source(
        DataKind::Synthetic,
        Some("synthetic-upstream"),
        None,
        None,
        Some(1),
        Some(n.max(1000)),
        cfg.image_size,
        "--",
    )?
    .test)
}

fn run_peer(script: &Path, cfg: &VitConfig, weights: &Path, images: &Path, eps: &str) -> Result<Side> {
    let size = |k: &str, v: usize| [format!("--{k}"), v.to_string()];
    let out = Command::new("python3")
        .arg(script)
        .arg("--weights")
        .arg(weights)
        .arg("--images")
        .arg(images)
        .args(size("dim", cfg.dim))
        .args(size("depth", cfg.depth))
        .args(size("heads", cfg.heads))
        .args(size("mlp", cfg.mlp_dim))
        .args(size("image-size", cfg.image_size))
        .args(size("patch", cfg.patch_size))
        .args(["--eps", eps, "--attacks", "autoattack"])
        .output()
        .map_err(|e| Error::io(script, e))?;
    let bad = |what: &str| {
        Error::invalid(
            "--peer",
            "torch, transformers and torchattacks in python3's environment",
            what,
        )
    };
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(bad(err.lines().last().unwrap_or("the script failed")));
    }
    parse_peer(&String::from_utf8_lossy(&out.stdout))
}

/// The ensemble's result from `attack_peer.py`'s output (its last line holds everything).
pub fn parse_peer(stdout: &str) -> Result<Side> {
    let bad = |what: &str| Error::invalid("--peer", "attack_peer.py's JSON line with an autoattack result", what);
    let v: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .map_err(|e| bad(&format!("unreadable output: {e}")))?;
    let aa = &v["robust"][0]["autoattack"];
    match (v["clean"].as_f64(), aa["robust"].as_u64(), aa["seconds"].as_f64()) {
        (Some(clean), Some(robust), Some(seconds)) => Ok(Side {
            clean,
            robust: robust as usize,
            seconds,
            version: format!(
                "torch {}, torchattacks {}",
                v["torch"].as_str().unwrap_or("?"),
                v["torchattacks"].as_str().unwrap_or("?")
            ),
        }),
        _ => Err(bad("no autoattack result in its output")),
    }
}

/// The row as text.
pub fn render(b: &AutoattackBench) -> String {
    let half = |r: usize| {
        crate::tradeoff::stats::wilson(r as u64, b.n as u64).map_or(f64::NAN, |c| (c.hi - c.lo) / 2.0 * b.n as f64)
    };
    let mut s = format!(
        "\nAutoAttack (apgd-ce → apgd-t → fab-t → square; 100 iterations, 9 targets, 5000 queries), {} images, ε = {:.2}/255, \
         on the model pretrained {} steps ({:.1} s, held-out accuracy {:.3}):\n{:<14} {:>8} {:>16} {:>10}\n",
        b.n,
        b.eps * 255.0,
        b.pretrain_steps,
        b.pretrain_s,
        b.pretrain_acc,
        "",
        "clean",
        "robust",
        "seconds"
    );
    let line = |name: &str, x: &Side| {
        format!(
            "{name:<14} {:>8.3} {:>9} ± {:<4.0} {:>10.1}\n",
            x.clean,
            x.robust,
            half(x.robust),
            x.seconds
        )
    };
    s += &line("robustft", &b.robustft);
    if let Some(p) = &b.torchattacks {
        s += &line("torchattacks", p);
        s += &format!(
            "{:<14} {:>8} {:>16} {:>9.2}x   ({}; ± is the Wilson 95% half-width in points)\n",
            "ratio",
            "",
            format!("{:+} points", b.robustft.robust as i64 - p.robust as i64),
            b.robustft.seconds / p.seconds,
            p.version
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The line `attack_peer.py` printed in the recorded comparison parses to its numbers; a
    /// line without the ensemble is an error, not a zero.
    #[test]
    fn parses_the_recorded_peer_output() {
        let text = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/validation/results/attacks-peer/peer-autoattack.json"
        ));
        let side = parse_peer(text).unwrap();
        assert_eq!(side.robust, 369);
        assert!((side.clean - 456.0 / 512.0).abs() < 1e-12);
        assert!((side.seconds - 647.802271604538).abs() < 1e-9);
        assert_eq!(side.version, "torch 2.15.0+cu132, torchattacks 3.5.1");
        let other = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/validation/results/attacks-peer/peer-square.json"
        ));
        assert!(parse_peer(other).unwrap_err().to_string().contains("autoattack"));
        assert!(parse_peer("Traceback").is_err());
    }
}
