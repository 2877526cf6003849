//! `validate eval`: scores one checkpoint the way RobustBench reports a model — clean accuracy
//! and robust accuracy per ℓ∞ radius under a chosen attack (AutoAttack's ensemble by default), on
//! n fixed test images, with Wilson 95% intervals, the points each attack (or ensemble member)
//! broke, and the time — without a tracked run.
//!
//! The radii are attacked in increasing order, each on the points still robust at the smaller
//! one: exact, since an adversarial image inside the ε-ball lies in every larger ball (the
//! argument of `engine::eval::robust_levels`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor};

use crate::engine::attack::{autoattack::MEMBERS, autoattack_split};
use crate::engine::data::Dataset;
use crate::engine::eval::Attack;
use crate::engine::model::read_checkpoint;
use crate::engine::peft::{Strategy, model_spec};
use crate::engine::{Vit, VitConfig, VitSpec};
use crate::error::{Error, Result};
use crate::tradeoff::stats::wilson;

/// What to score, and how.
#[derive(Debug, Clone)]
pub struct EvalSpec {
    /// The checkpoint: a full model (`Vit::save`, `validate pretrain`, an HF folder), or a run
    /// checkpoint (`param.*` tensors), which needs `backbone`.
    pub checkpoint: PathBuf,
    /// The backbone a run checkpoint's parameters go into (the run's upstream checkpoint).
    pub backbone: Option<PathBuf>,
    /// Model size.
    pub model: VitConfig,
    /// Model name as given, for the report.
    pub model_name: String,
    /// The strategy the checkpoint was trained with (which tensors it must hold).
    pub strategy: Strategy,
    /// Dataset label for the report.
    pub dataset: String,
    /// One attack per radius, increasing.
    pub attacks: Vec<Attack>,
    /// Images (the first n of a seeded draw of the test split).
    pub n: usize,
    /// Seed of the image draw and the attacks.
    pub seed: u64,
}

/// Robust accuracy at one radius.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RobustRow {
    /// ℓ∞ radius.
    pub eps: f64,
    /// Robust accuracy.
    pub acc: f64,
    /// Wilson 95% interval.
    pub ci: [f64; 2],
    /// Points robust.
    pub robust: usize,
    /// Points each attack broke at this radius (ensemble: per member, in order).
    pub broken: Vec<(String, usize)>,
    /// Seconds spent at this radius.
    pub seconds: f64,
}

/// The report, RobustBench-like.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EvalReport {
    /// Model as given.
    pub model: String,
    /// Checkpoint path.
    pub checkpoint: String,
    /// Strategy.
    pub strategy: String,
    /// Dataset.
    pub dataset: String,
    /// Threat model (ℓ∞ only).
    pub threat_model: &'static str,
    /// Attack name.
    pub attack: String,
    /// Members run, in order (the attack itself when not an ensemble).
    pub members: Vec<String>,
    /// Images.
    pub n: usize,
    /// Seed.
    pub seed: u64,
    /// Clean accuracy.
    pub clean: f64,
    /// Its Wilson 95% interval.
    pub clean_ci: [f64; 2],
    /// Per radius.
    pub robust: Vec<RobustRow>,
    /// Total seconds.
    pub seconds: f64,
    /// Versions: this crate and the commit it was built from.
    pub versions: HashMap<&'static str, String>,
}

/// The model of `spec` with `classes` outputs, every tensor from the checkpoint: each parameter
/// the strategy has must be there with its shape, and nothing else may be (but an HF pooler);
/// errors name the key and the file.
pub fn load_model(spec: &EvalSpec, classes: usize, device: &Device) -> Result<Vit> {
    let mut t = read_checkpoint(&spec.checkpoint, &Device::Cpu)?.1;
    let err = |message: String| Error::Config {
        path: spec.checkpoint.clone(),
        message,
    };
    if t.keys().any(|k| k.starts_with("param.")) {
        let Some(b) = &spec.backbone else {
            return Err(err("a run checkpoint (param.* tensors) holds only the trained \
                 parameters: give the run's upstream backbone with --backbone FILE"
                .into()));
        };
        let mut full = read_checkpoint(b, &Device::Cpu)?.1;
        full.retain(|k, _| !k.trim_start_matches("vit.").starts_with("classifier."));
        for (k, v) in t.drain() {
            if let Some(p) = k.strip_prefix("param.") {
                full.insert(p.to_string(), v);
            }
        }
        t = full;
    }
    let t: HashMap<String, Tensor> = t
        .into_iter()
        .map(|(k, v)| (crate::engine::hf::canonical_key(&k), v))
        .filter(|(k, _)| !k.starts_with("pooler."))
        .collect();
    let vspec = VitSpec::new(&spec.model, spec.strategy, classes, DType::F32, device, 0);
    let params = model_spec(&spec.model, &vspec.peft, spec.strategy, classes)?;
    for p in &params {
        match t.get(&p.key) {
            None => {
                return Err(err(format!(
                    "{} is missing: not a {} checkpoint of this model",
                    p.key,
                    spec.strategy.id()
                )));
            }
            Some(v) if v.dims() != p.shape.as_slice() => {
                let what = if p.key.starts_with("classifier.") {
                    format!(" (the dataset has {classes} classes)")
                } else {
                    String::new()
                };
                return Err(err(format!(
                    "{} has shape {:?}, the model needs {:?}{what}",
                    p.key,
                    v.dims(),
                    p.shape
                )));
            }
            Some(_) => {}
        }
    }
    if let Some(k) = t.keys().filter(|k| !params.iter().any(|p| &p.key == *k)).min() {
        return Err(err(format!(
            "{k} is not a tensor of a {} model of this size: is --strategy (or --model) the one it was trained with?",
            spec.strategy.id()
        )));
    }
    Vit::from_tensors(&vspec, t, true).map_err(|e| err(e.to_string()))
}

/// Writes the images `evaluate` scores (the first `n` of the seeded draw, in order) with their
/// labels to `path` (safetensors: `pixels` f32 `[n, C, H, W]`, `labels` u32 `[n]`), atomically.
pub fn save_images(data: &Dataset, n: usize, seed: u64, path: &Path) -> Result<()> {
    let ids = data.eval_indices(n, seed);
    let (x, y) = data.batch(&ids, &Device::Cpu)?;
    let map = HashMap::from([("pixels".to_string(), x), ("labels".to_string(), y)]);
    crate::engine::model::save_atomic(&map, path)
}

/// Evaluates `model` on images `ids` of `data` (batches of 128), attack by attack.
pub fn evaluate(spec: &EvalSpec, model: &Vit, data: &Dataset, progress: &dyn Fn(&str)) -> Result<EvalReport> {
    let start = Instant::now();
    let ids = data.eval_indices(spec.n, spec.seed);
    let frozen = model.frozen();
    let device = model.device().clone();
    let n = ids.len();
    let correct_ids = clean_correct(&frozen, data, &ids, &device)?;
    let clean = correct_ids.len();
    let mut alive = correct_ids;
    let mut rows = Vec::new();
    for (k, attack) in spec.attacks.iter().enumerate() {
        progress(&format!(
            "ε = {:.5} ({} of {}): {} points to attack",
            attack.eps(),
            k + 1,
            spec.attacks.len(),
            alive.len()
        ));
        let t = Instant::now();
        let broken;
        (alive, broken) = attack_points(&frozen, data, attack, (k, spec.seed), &alive, &device)?;
        let r = alive.len();
        let ci = wilson(r as u64, n as u64)?;
        rows.push(RobustRow {
            eps: attack.eps(),
            acc: r as f64 / n as f64,
            ci: [ci.lo, ci.hi],
            robust: r,
            broken,
            seconds: t.elapsed().as_secs_f64(),
        });
    }
    let ci = wilson(clean as u64, n as u64)?;
    let name = spec.attacks.first().map_or("none", Attack::name).to_string();
    Ok(EvalReport {
        model: spec.model_name.clone(),
        checkpoint: spec.checkpoint.display().to_string(),
        strategy: spec.strategy.id().into(),
        dataset: spec.dataset.clone(),
        threat_model: "Linf",
        members: match spec.attacks.first() {
            Some(Attack::AutoAttack(_)) => MEMBERS.iter().map(|m| m.to_string()).collect(),
            _ => vec![name.clone()],
        },
        attack: name,
        n,
        seed: spec.seed,
        clean: clean as f64 / n as f64,
        clean_ci: [ci.lo, ci.hi],
        robust: rows,
        seconds: start.elapsed().as_secs_f64(),
        versions: HashMap::from([
            ("robustft", env!("CARGO_PKG_VERSION").to_string()),
            (
                "git_commit",
                crate::validate::sweep::records::git_commit().unwrap_or_default(),
            ),
        ]),
    })
}

/// The images of `ids` that `model` classifies correctly, in order (batches of 128).
fn clean_correct(model: &Vit, data: &Dataset, ids: &[usize], device: &Device) -> Result<Vec<usize>> {
    let mut correct_ids: Vec<usize> = Vec::new();
    for chunk in ids.chunks(128) {
        let (x, y) = data.batch(chunk, device)?;
        let ok = crate::engine::attack::correct(&model.forward(&x)?, &y)?;
        correct_ids.extend(chunk.iter().zip(ok).filter(|(_, o)| *o).map(|(i, _)| *i));
    }
    Ok(correct_ids)
}

/// Points each attack (each member of an ensemble) broke, in order.
type Broken = Vec<(String, usize)>;

/// Attack `k` of the list (`attack`; seeded from `seed`) on the images `alive` (batches of 128):
/// those still robust after it, in order, and the points it broke (per member for AutoAttack).
fn attack_points(
    model: &Vit,
    data: &Dataset,
    attack: &Attack,
    (k, seed): (usize, u64),
    alive: &[usize],
    device: &Device,
) -> Result<(Vec<usize>, Broken)> {
    let mut broken: Broken = match attack {
        Attack::AutoAttack(_) => MEMBERS.iter().map(|m| (m.to_string(), 0)).collect(),
        a => vec![(a.name().to_string(), 0)],
    };
    let mut next = Vec::new();
    for (bi, chunk) in alive.chunks(128).enumerate() {
        let (x, y) = data.batch(chunk, device)?;
        let seed = seed ^ ((k as u64) << 32) ^ bi as u64;
        let robust = match attack {
            Attack::AutoAttack(c) => {
                let out = autoattack_split(model, &x, &y, c, seed, crate::engine::batch_parts(device))?;
                for (b, m) in broken.iter_mut().zip(out.broken) {
                    b.1 += m;
                }
                out.outcome.robust
            }
            a => {
                let out = a.run(model, &x, &y, seed, device)?;
                broken[0].1 += out.robust.iter().filter(|r| !**r).count();
                out.robust
            }
        };
        next.extend(chunk.iter().zip(robust).filter(|(_, r)| *r).map(|(i, _)| *i));
    }
    Ok((next, broken))
}

/// The text table `validate eval` prints.
pub fn render(r: &EvalReport) -> String {
    let pct = |v: f64| format!("{:.1}%", 100.0 * v);
    let mut s = format!(
        "{} ({}, {}) on {}: {} images, ℓ∞, attack {}{}\nclean accuracy {} [{}, {}]\n{:>10} {:>9} {:>18}  broken\n",
        r.checkpoint,
        r.model,
        r.strategy,
        r.dataset,
        r.n,
        r.attack,
        if r.members.len() > 1 {
            format!(" ({})", r.members.join(" → "))
        } else {
            String::new()
        },
        pct(r.clean),
        pct(r.clean_ci[0]),
        pct(r.clean_ci[1]),
        "eps",
        "robust",
        "95% CI"
    );
    for row in &r.robust {
        let b: Vec<String> = row.broken.iter().map(|(m, c)| format!("{m} {c}")).collect();
        s += &format!(
            "{:>10} {:>9} {:>18}  {}  ({:.1} s)\n",
            format!("{:.2}/255", row.eps * 255.0),
            pct(row.acc),
            format!("[{}, {}]", pct(row.ci[0]), pct(row.ci[1])),
            b.join(", "),
            row.seconds
        );
    }
    s += &format!("time {:.1} s\n", r.seconds);
    s
}
