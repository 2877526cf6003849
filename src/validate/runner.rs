//! The tracking runner: pretrain (or load) the upstream backbone, then fine-tune every
//! (dataset, strategy, seed), evaluating clean, robust and OOD accuracy at exactly the scheduled
//! steps. Records and checkpoints are written atomically at every evaluation; a run resumes where
//! it stopped and produces the records an uninterrupted run would (timing fields aside).
//!
//! Determinism: the batch at step t is a pure function of (seed, t) (a seeded permutation per
//! epoch), every attack's random start is seeded by (seed, step, batch), so a checkpoint needs
//! only the trainable tensors, the optimiser state and the step.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use indicatif::{ProgressBar, ProgressStyle};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::config::{DatasetSpec, Ood, ValidRun};
use super::records::{self, EvalRecord, Header, RunRecords, SCHEMA_VERSION};
use crate::engine::data::Dataset;
use crate::engine::data::corrupt::corrupt;
use crate::engine::data::files::{self, Split};
use crate::engine::data::synthetic::SyntheticSpec;
use crate::engine::eval::{clean_counts, robust_counts};
use crate::engine::model::save_atomic;
use crate::engine::peft::Strategy;
use crate::engine::pretrain::{PretrainConfig, pretrain};
use crate::engine::train::{AdamW, TrainConfig, head_step, train_step_split};
use crate::engine::{Vit, VitSpec};
use crate::error::{Error, Result};
use crate::tradeoff::wilson;

/// A dataset prepared for runs: training pool, test set, its OOD twin, and the task's d.
pub struct Prepared {
    /// Spec as configured.
    pub spec: DatasetSpec,
    /// Training images.
    pub train: Dataset,
    /// Test images (the evaluation subset is drawn from these).
    pub test: Dataset,
    /// OOD images aligned with `test` (same indices), if any.
    pub ood: Option<Dataset>,
    /// Task complexity d for the theory comparison.
    pub theory_d: f64,
}

/// Loads or generates a dataset at the model's image size.
pub fn prepare(spec: &DatasetSpec, ood: &Ood, image_size: usize, eval_subset: usize, seed: u64) -> Result<Prepared> {
    let n_test = eval_subset.max(256);
    let (train, test, shifted, d) = match spec.kind.as_str() {
        "synthetic" => {
            let s = SyntheticSpec::named(spec.task.as_deref().unwrap_or(""), image_size)?;
            let shifted = s.shifted().generate(n_test, 1)?;
            (
                s.generate(spec.train_images, 0)?,
                s.generate(n_test, 1)?,
                Some(shifted),
                s.d as f64,
            )
        }
        kind => {
            let dir = spec
                .data_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from(files::FASHION_MNIST_DIR));
            let (tr, te) = if kind == "cifar10" {
                (files::cifar10(&dir, Split::Train)?, files::cifar10(&dir, Split::Test)?)
            } else {
                (
                    files::fashion_mnist(&dir, Split::Train)?,
                    files::fashion_mnist(&dir, Split::Test)?,
                )
            };
            let classes = tr.classes as f64;
            let (tr, _) = tr.split(0.0, seed)?;
            let take: Vec<usize> = (0..spec.train_images.min(tr.len())).collect();
            let te_ids: Vec<usize> = (0..n_test.min(te.len())).collect();
            (
                tr.subset(&take).to_rgb().resize(image_size),
                te.subset(&te_ids).to_rgb().resize(image_size),
                None,
                classes,
            )
        }
    };
    let ood = match ood {
        Ood::None => None,
        Ood::Shifted => shifted,
        Ood::Corruption(c, s) => Some(corrupt(&test, *c, *s, seed ^ 0x00d)?),
    };
    Ok(Prepared {
        theory_d: spec.theory_d.unwrap_or(d),
        spec: spec.clone(),
        train,
        test,
        ood,
    })
}

/// The upstream checkpoint: the configured one, or one pretrained into `out/upstream/` (reused
/// when a checkpoint with the same pretraining settings is already there).
pub fn upstream(run: &ValidRun, out: &Path, device: &Device, quiet: bool) -> Result<PathBuf> {
    if let Some(p) = &run.raw.checkpoint {
        return Ok(p.clone());
    }
    let key = serde_json::json!({"model": run.raw.model, "pretrain": run.raw.pretrain});
    let tag = records::config_hash(&key);
    let path = out.join("upstream").join(format!("pretrained-{tag}.safetensors"));
    if path.exists() {
        return Ok(path);
    }
    let p = &run.raw.pretrain;
    let mut pc = PretrainConfig::new(
        run.model.clone(),
        SyntheticSpec::upstream(run.model.image_size),
        p.steps,
        0,
    );
    pc.train.batch_size = p.batch_size;
    pc.train.lr = p.lr;
    let pb = bar(p.steps as u64, "pretrain upstream", quiet);
    let r = pretrain(&pc, device, &path, |_, loss| {
        pb.set_message(format!("loss {loss:.3}"));
        pb.inc(1);
    })?;
    pb.finish_and_clear();
    if !quiet || !console_is_terminal() {
        eprintln!(
            "upstream: {} steps, loss {:.3}, held-out accuracy {:.3} ({:.0} s)",
            r.steps, r.final_loss, r.val_acc, r.seconds
        );
    }
    Ok(path)
}

fn console_is_terminal() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal()
}

fn bar(len: u64, label: &str, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template("{prefix:>28} [{bar:30}] {pos}/{len} {msg} ({elapsed})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    pb.set_prefix(label.to_string());
    pb
}

/// Indices of the batch at step t: position p = t·B + j of an endless sequence of seeded
/// per-epoch permutations of 0..n.
struct BatchOrder {
    n: usize,
    seed: u64,
    perms: HashMap<usize, Vec<usize>>,
}

impl BatchOrder {
    fn new(n: usize, seed: u64) -> Self {
        Self {
            n,
            seed,
            perms: HashMap::new(),
        }
    }
    fn batch(&mut self, step: u64, size: usize) -> Vec<usize> {
        let start = step as usize * size;
        (start..start + size)
            .map(|p| {
                let (epoch, off) = (p / self.n, p % self.n);
                let n = self.n;
                let seed = self.seed;
                let perm = self.perms.entry(epoch).or_insert_with(|| {
                    let mut v: Vec<usize> = (0..n).collect();
                    v.shuffle(&mut StdRng::seed_from_u64(
                        seed ^ (epoch as u64).wrapping_mul(0x9e37_79b9),
                    ));
                    v
                });
                perm[off]
            })
            .collect()
    }
}

/// Paths of one run's files.
pub fn run_paths(out: &Path, dataset: &str, strategy: Strategy, seed: u64) -> (PathBuf, PathBuf) {
    let dir = out.join(dataset).join(strategy.id());
    (
        dir.join(format!("seed{seed}.jsonl")),
        out.join("ckpt")
            .join(dataset)
            .join(strategy.id())
            .join(format!("seed{seed}.safetensors")),
    )
}

/// The optimiser preset `paper` for a run of `max_steps`: Li et al.'s learning rates, with the
/// 800-step warm-up scaled by the same factor as the schedule (max_steps / reference), or capped
/// at a quarter of the run without a reference.
pub fn optimiser(run: &ValidRun, strategy: Strategy) -> TrainConfig {
    let max = run.raw.max_steps;
    let mut tc = TrainConfig::paper(strategy, max);
    tc.batch_size = run.raw.batch_size;
    if tc.warmup_steps > 0 {
        tc.warmup_steps = match run.raw.schedule_reference_steps {
            Some(r) if r > 0 => ((800.0 * max as f64 / r as f64).round() as usize).max(1),
            _ => 800.min(max / 4),
        };
    }
    tc
}

/// Runs (or resumes) one (dataset, strategy, seed). Returns its records.
#[allow(clippy::too_many_arguments)]
pub fn run_one(
    run: &ValidRun,
    data: &Prepared,
    strategy: Strategy,
    seed: u64,
    upstream_ckpt: &Path,
    out: &Path,
    device: &Device,
    quiet: bool,
) -> Result<RunRecords> {
    let config = serde_json::to_value(&run.raw).expect("config serialises");
    let hash = records::config_hash(&config);
    let (jsonl, ckpt) = run_paths(out, &data.spec.name, strategy, seed);
    let model = Vit::load(
        upstream_ckpt,
        &VitSpec::new(&run.model, strategy, data.train.classes, DType::F32, device, seed),
    )?;
    let counts = model.counts();
    let header = Header {
        kind: "header".into(),
        schema_version: SCHEMA_VERSION,
        config,
        config_hash: hash.clone(),
        git_commit: records::git_commit(),
        crate_version: env!("CARGO_PKG_VERSION").into(),
        device: crate::engine::device::describe(device),
        dataset: data.spec.name.clone(),
        strategy: strategy.id().into(),
        seed,
        trainable_backbone: counts.trainable_backbone,
        trainable_head: counts.trainable_head,
        total_params: counts.total,
        eval_steps: run.eval_steps.clone(),
    };
    let mut opt = AdamW::new(model.trainable().to_vec(), optimiser(run, strategy))?;

    // Resume.
    let mut recs = RunRecords {
        header: header.clone(),
        evals: Vec::new(),
    };
    let mut step: u64 = 0;
    let mut clock = [0.0f64; 4]; // elapsed, train, eval, attack
    if jsonl.exists() {
        let old = records::read(&jsonl)?;
        if old.header.config_hash != hash {
            return Err(Error::Config {
                path: jsonl.clone(),
                message: format!(
                    "holds a run with another configuration (hash {} vs {hash}); choose another output folder",
                    old.header.config_hash
                ),
            });
        }
        let last = *run.eval_steps.last().expect("validated non-empty");
        if old.evals.last().map(|e| e.step) == Some(last) {
            // Finished (possibly on another machine, without its checkpoint): nothing to redo.
            return Ok(old);
        }
        if ckpt.exists() {
            let state = candle_core::safetensors::load(&ckpt, device)?;
            for (k, v) in model.trainable() {
                let t = state.get(&format!("param.{k}")).ok_or_else(|| {
                    Error::invalid(format!("param.{k}"), "missing from the checkpoint", ckpt.display())
                })?;
                v.set(t)?;
            }
            opt.load_state(&state)?;
            step = state
                .get("run.step")
                .map(|t| t.to_vec1::<u32>())
                .transpose()?
                .map_or(0, |v| v[0] as u64);
            if let Some(c) = state.get("run.clock") {
                let v: Vec<f64> = c.to_vec1()?;
                clock.copy_from_slice(&v[..4]);
            }
            recs.evals = old.evals.into_iter().filter(|e| e.step <= step).collect();
        }
    }
    let last = *run.eval_steps.last().expect("validated non-empty");
    if step >= last && recs.evals.last().map(|e| e.step) == Some(last) {
        return Ok(recs);
    }

    let eval_ids = data.test.eval_indices(run.raw.eval_subset, seed);
    let idx_path = out.join(&data.spec.name).join(format!("eval_indices_seed{seed}.json"));
    if !idx_path.exists() {
        std::fs::create_dir_all(idx_path.parent().expect("has parent")).map_err(|e| Error::io(&idx_path, e))?;
        crate::plot::write_atomic(
            &idx_path,
            serde_json::to_string(&eval_ids).expect("serialises").as_bytes(),
        )?;
    }
    let mut order = BatchOrder::new(data.train.len(), seed ^ 0x0bad_cafe);
    let bs = run.raw.batch_size;
    // Linear probing: the frozen backbone's features are computed once.
    let features = if strategy == Strategy::LinearProbe {
        Some(all_features(&model, &data.train, device)?)
    } else {
        None
    };
    let labels_all = Tensor::from_vec(data.train.labels.clone(), data.train.len(), device)?;

    let label = format!("{}/{}/seed{seed}", data.spec.name, strategy.id());
    let pb = bar(last, &label, quiet);
    pb.set_position(step);
    let segment_start = Instant::now();
    let base_clock = clock;
    let mut losses: Vec<f64> = Vec::new();
    let (mut t_train, mut t_eval, mut t_attack) = (0.0, 0.0, 0.0);
    while step < last {
        let ids = order.batch(step, bs);
        let t0 = Instant::now();
        let loss = match &features {
            Some(f) => {
                let idx = Tensor::from_vec(ids.iter().map(|&i| i as u32).collect::<Vec<_>>(), ids.len(), device)?;
                head_step(
                    &model,
                    &mut opt,
                    &f.index_select(&idx, 0)?,
                    &labels_all.index_select(&idx, 0)?,
                )?
            }
            None => {
                let (x, y) = data.train.batch(&ids, device)?;
                train_step_split(&model, &mut opt, &x, &y, crate::engine::batch_parts(device))?
            }
        };
        t_train += t0.elapsed().as_secs_f64();
        losses.push(loss);
        step += 1;
        pb.inc(1);
        if run.eval_steps.binary_search(&step).is_ok() {
            let t1 = Instant::now();
            let clean = clean_counts(&model, &data.test, &eval_ids, 128, device)?;
            let ood = match &data.ood {
                Some(o) => Some(clean_counts(&model, o, &eval_ids, 128, device)?),
                None => None,
            };
            t_eval += t1.elapsed().as_secs_f64();
            let t2 = Instant::now();
            let rob = robust_counts(
                &model,
                &data.test,
                &eval_ids,
                128,
                &run.attack,
                seed.wrapping_mul(1_000_003) ^ (step << 16),
                device,
            )?;
            t_attack += t2.elapsed().as_secs_f64();
            let n = clean.n as u64;
            let rec = EvalRecord {
                kind: "eval".into(),
                schema_version: SCHEMA_VERSION,
                config_hash: hash.clone(),
                seed,
                step,
                clean_acc: clean.clean as f64 / n as f64,
                clean_ci: wilson(clean.clean as u64, n)?,
                robust_acc: rob.robust as f64 / n as f64,
                robust_ci: wilson(rob.robust as u64, n)?,
                ood_acc: ood.map(|o| o.clean as f64 / o.n as f64),
                ood_ci: ood.map(|o| wilson(o.clean as u64, o.n as u64)).transpose()?,
                n_eval: clean.n,
                loss: losses.iter().sum::<f64>() / losses.len().max(1) as f64,
                elapsed_s: base_clock[0] + segment_start.elapsed().as_secs_f64(),
                train_s: base_clock[1] + t_train,
                eval_s: base_clock[2] + t_eval,
                attack_s: base_clock[3] + t_attack,
            };
            pb.set_message(format!("acc {:.2} rob {:.2}", rec.clean_acc, rec.robust_acc));
            clock = [rec.elapsed_s, rec.train_s, rec.eval_s, rec.attack_s];
            losses.clear();
            recs.evals.push(rec);
            records::write(&jsonl, &recs)?;
            save_checkpoint(&model, &opt, step, clock, &ckpt, device)?;
        }
    }
    pb.finish_and_clear();
    Ok(recs)
}

fn all_features(model: &Vit, data: &Dataset, device: &Device) -> Result<Tensor> {
    let mut parts = Vec::new();
    let ids: Vec<usize> = (0..data.len()).collect();
    for chunk in ids.chunks(256) {
        let (x, _) = data.batch(chunk, device)?;
        parts.push(model.features(&x)?.detach().contiguous()?);
    }
    Ok(Tensor::cat(&parts, 0)?)
}

fn save_checkpoint(model: &Vit, opt: &AdamW, step: u64, clock: [f64; 4], path: &Path, device: &Device) -> Result<()> {
    let mut state = opt.state()?;
    for (k, v) in model.trainable() {
        state.insert(format!("param.{k}"), v.as_tensor().copy()?);
    }
    state.insert("run.step".into(), Tensor::new(&[step as u32], device)?);
    state.insert("run.clock".into(), Tensor::new(&clock, device)?);
    save_atomic(&state, path)
}

/// Runs every (dataset, strategy, seed) of `run` into `out` and returns the JSONL paths.
pub fn run_all(run: &ValidRun, out: &Path, device: &Device, quiet: bool) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let up = upstream(run, out, device, quiet)?;
    let mut paths = Vec::new();
    for (spec, ood) in run.raw.datasets.iter().zip(&run.ood) {
        for &seed in &run.raw.seeds {
            let data = prepare(spec, ood, run.model.image_size, run.raw.eval_subset, seed)?;
            for &s in &run.strategies {
                run_one(run, &data, s, seed, &up, out, device, quiet)?;
                paths.push(run_paths(out, &spec.name, s, seed).0);
            }
        }
    }
    Ok(paths)
}
