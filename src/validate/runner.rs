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

use super::config::ValidRun;
use super::data::{Prepared, prepare};
use super::records::{self, EvalRecord, Header, RobustAt, RunRecords, SCHEMA_VERSION, Separability};
use super::upstream::{Upstream, upstream};
use crate::engine::data::Dataset;
use crate::engine::eval::{clean_correct, dataset_features, robust_levels};
use crate::engine::model::save_atomic;
use crate::engine::peft::Strategy;
use crate::engine::train::{AdamW, head_step, train_step_split};
use crate::engine::{Vit, VitSpec};
use crate::error::{Error, Result};
use crate::tradeoff::wilson;

/// Whether stderr is a terminal.
pub(crate) fn console_is_terminal() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal()
}

/// A progress bar (hidden when quiet).
pub(crate) fn bar(len: u64, label: &str, quiet: bool) -> ProgressBar {
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

/// What every run of one dataset shares: the prepared data, the backbone and the task's
/// measured separability.
pub struct DatasetRuns<'a> {
    /// The data.
    pub data: &'a Prepared,
    /// The backbone.
    pub upstream: &'a Upstream,
    /// Separability measured on the pretrained backbone.
    pub separability: Option<Separability>,
    /// Device the runs use.
    pub device: Device,
}

/// The header of one run's records.
fn header(run: &ValidRun, ctx: &DatasetRuns, strategy: Strategy, seed: u64, model: &Vit, eval_ids: &[usize]) -> Header {
    let config = serde_json::to_value(&run.raw).expect("config serialises");
    let counts = model.counts();
    Header {
        kind: "header".into(),
        schema_version: SCHEMA_VERSION,
        config_hash: records::config_hash(&config),
        config,
        git_commit: records::build_commit(),
        cwd_commit: records::git_commit().filter(|c| Some(c) != records::build_commit().as_ref()),
        crate_version: env!("CARGO_PKG_VERSION").into(),
        device: crate::engine::device::describe(model.device()),
        dataset: ctx.data.spec.name.clone(),
        strategy: strategy.id().into(),
        seed,
        trainable_backbone: counts.trainable_backbone,
        trainable_head: counts.trainable_head,
        total_params: counts.total,
        eval_steps: run.eval_steps.clone(),
        eps: run.eps(),
        upstream: ctx.upstream.info.clone(),
        class_map: ctx.data.spec.classes.clone(),
        separability: ctx.separability.clone(),
        lr: Some(run.optimiser(strategy).lr),
        eval_set: Some(records::fnv_hex(
            serde_json::to_string(eval_ids).expect("serialises").as_bytes(),
        )),
        new_head: Some(run.new_head),
        capped: ctx.data.capped.clone(),
    }
}

/// Where a run stands: the optimiser steps taken, the wall-clock split so far (elapsed, train,
/// eval, attack) and the records written.
struct Progress {
    step: u64,
    clock: [f64; 4],
    evals: Vec<EvalRecord>,
}

/// Restores a run from its records and checkpoint. Returns None when the records are already
/// complete (possibly written on another machine, without a checkpoint): nothing to redo.
fn resume(jsonl: &Path, ckpt: &Path, header: &Header, model: &Vit, opt: &mut AdamW) -> Result<Option<Progress>> {
    let mut p = Progress {
        step: 0,
        clock: [0.0; 4],
        evals: Vec::new(),
    };
    if !jsonl.exists() {
        return Ok(Some(p));
    }
    let old = records::read(jsonl)?;
    if old.header.config_hash != header.config_hash {
        return Err(foreign(jsonl, &old.header.config_hash, &header.config_hash));
    }
    if old.evals.last().map(|e| e.step) == header.eval_steps.last().copied() {
        return Ok(None);
    }
    if ckpt.exists() {
        let state = read_checkpoint(ckpt, model.device())?;
        for (k, v) in model.trainable() {
            let t = state
                .get(&format!("param.{k}"))
                .ok_or_else(|| Error::invalid(format!("param.{k}"), "missing from the checkpoint", ckpt.display()))?;
            v.set(t)?;
        }
        opt.load_state(&state)?;
        p.step = state
            .get("run.step")
            .map(|t| t.to_vec1::<u32>())
            .transpose()?
            .map_or(0, |v| v[0] as u64);
        if let Some(c) = state.get("run.clock") {
            let v: Vec<f64> = c.to_vec1()?;
            p.clock.copy_from_slice(&v[..4]);
        }
        p.evals = old.evals.into_iter().filter(|e| e.step <= p.step).collect();
    } else {
        // Records without a checkpoint: only a step-0 evaluation (written before any update
        // and before the first checkpoint) can be kept.
        p.evals = old.evals.into_iter().filter(|e| e.step == 0).collect();
    }
    Ok(Some(p))
}

/// A resume checkpoint's tensors; a truncated or foreign file is an error naming it.
fn read_checkpoint(ckpt: &Path, device: &Device) -> Result<HashMap<String, Tensor>> {
    candle_core::safetensors::load(ckpt, device).map_err(|e| Error::Config {
        path: ckpt.to_path_buf(),
        message: format!(
            "not a readable resume checkpoint ({e}); delete it to redo this run from its last \
             step-0 record"
        ),
    })
}

/// Checks what a run into `out` would resume from, before anything is written: every existing
/// record file parses and was written by this configuration (same `config_hash`), and the
/// checkpoint of every unfinished run is readable. Errors name the file.
pub fn preflight(run: &ValidRun, out: &Path) -> Result<()> {
    let hash = records::config_hash(&serde_json::to_value(&run.raw).expect("config serialises"));
    let last = run.eval_steps.last().copied();
    for d in &run.raw.datasets {
        for &s in &run.strategies {
            for &seed in &run.raw.seeds {
                let (jsonl, ckpt) = run_paths(out, &d.name, s, seed);
                if !jsonl.exists() {
                    continue;
                }
                let old = records::read(&jsonl)?;
                if old.header.config_hash != hash {
                    return Err(foreign(&jsonl, &old.header.config_hash, &hash));
                }
                if old.evals.last().map(|e| e.step) != last && ckpt.exists() {
                    read_checkpoint(&ckpt, &Device::Cpu)?;
                }
            }
        }
    }
    Ok(())
}

/// The error for records written by another configuration.
fn foreign(jsonl: &Path, theirs: &str, ours: &str) -> Error {
    Error::Config {
        path: jsonl.to_path_buf(),
        message: format!(
            "holds a run with another configuration (hash {theirs} vs {ours}); choose another output folder"
        ),
    }
}

/// Outcomes of one scheduled evaluation.
struct Evaluation {
    levels: Vec<u8>,
    ood: Option<Vec<bool>>,
    eval_s: f64,
    attack_s: f64,
}

/// Clean, robust (every radius, one nested pass) and OOD outcomes of `model` on the evaluation
/// images. The attack's random starts are seeded by (seed, step).
fn evaluate(
    model: &Vit,
    run: &ValidRun,
    data: &Prepared,
    eval_ids: &[usize],
    seed: u64,
    step: u64,
) -> Result<Evaluation> {
    let device = model.device();
    let t1 = Instant::now();
    let ood = match &data.ood {
        Some(o) => Some(clean_correct(model, o, eval_ids, 128, device)?),
        None => None,
    };
    let eval_s = t1.elapsed().as_secs_f64();
    let t2 = Instant::now();
    let attack_seed = seed.wrapping_mul(1_000_003) ^ (step << 16);
    let levels = robust_levels(model, &data.test, eval_ids, 128, &run.attacks, attack_seed, device)?;
    Ok(Evaluation {
        levels,
        ood,
        eval_s,
        attack_s: t2.elapsed().as_secs_f64(),
    })
}

/// The record of one evaluation: accuracies with Wilson intervals, counted from the outcomes.
fn record(header: &Header, step: u64, ev: &Evaluation, loss: Option<f64>, clock: [f64; 4]) -> Result<EvalRecord> {
    let n = ev.levels.len() as u64;
    let count = |min: u8| ev.levels.iter().filter(|l| **l >= min).count() as u64;
    let clean = count(1);
    let robust = header
        .eps
        .iter()
        .enumerate()
        .map(|(k, &eps)| {
            let r = count(k as u8 + 2);
            Ok(RobustAt {
                eps,
                acc: r as f64 / n as f64,
                ci: wilson(r, n)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let ood_ok = ev.ood.as_ref().map(|o| o.iter().filter(|b| **b).count() as u64);
    Ok(EvalRecord {
        kind: "eval".into(),
        schema_version: SCHEMA_VERSION,
        config_hash: header.config_hash.clone(),
        seed: header.seed,
        step,
        clean_acc: clean as f64 / n as f64,
        clean_ci: wilson(clean, n)?,
        robust,
        ood_acc: ood_ok.map(|o| o as f64 / n as f64),
        ood_ci: ood_ok.map(|o| wilson(o, n)).transpose()?,
        n_eval: n as usize,
        outcomes: records::encode_levels(&ev.levels),
        ood_outcomes: ev.ood.as_deref().map(records::encode_bools),
        loss,
        elapsed_s: clock[0],
        train_s: clock[1],
        eval_s: clock[2],
        attack_s: clock[3],
    })
}

/// The evaluation images of a run: drawn with `eval_seed` when configured (the same for every
/// seed), else with the run's seed.
pub fn eval_ids(run: &ValidRun, data: &Prepared, seed: u64) -> Vec<usize> {
    data.test
        .eval_indices(run.raw.eval_subset, run.raw.eval_seed.unwrap_or(seed))
}

/// The model a fine-tuning run starts from: the backbone of `checkpoint` with `strategy`'s
/// modules, and a fresh head (`head = "new"`) or the checkpoint's where it fits.
pub(crate) fn fine_tune_model(
    run: &ValidRun,
    checkpoint: &Path,
    strategy: Strategy,
    classes: usize,
    device: &Device,
    seed: u64,
) -> Result<Vit> {
    let spec = VitSpec::new(&run.model, strategy, classes, DType::F32, device, seed);
    if run.new_head {
        Vit::load_backbone(checkpoint, &spec)
    } else {
        Vit::load(checkpoint, &spec)
    }
}

/// Runs (or resumes) one (dataset, strategy, seed): resume → (evaluate step 0) → train, evaluating
/// and checkpointing at every scheduled step. Returns its records.
pub fn run_one(
    run: &ValidRun,
    ctx: &DatasetRuns,
    strategy: Strategy,
    seed: u64,
    out: &Path,
    quiet: bool,
) -> Result<RunRecords> {
    let data = ctx.data;
    let device = &ctx.device;
    let (jsonl, ckpt) = run_paths(out, &data.spec.name, strategy, seed);
    let model = fine_tune_model(run, &ctx.upstream.path, strategy, data.train.classes, device, seed)?;
    let eval_ids = eval_ids(run, data, seed);
    let header = header(run, ctx, strategy, seed, &model, &eval_ids);
    let mut opt = AdamW::new(model.trainable().to_vec(), run.optimiser(strategy))?;
    let Some(Progress {
        mut step,
        mut clock,
        evals,
    }) = resume(&jsonl, &ckpt, &header, &model, &mut opt)?
    else {
        return records::read(&jsonl);
    };
    let mut recs = RunRecords { header, evals };
    let last = *run.eval_steps.last().expect("validated non-empty");
    let idx_path = out.join(&data.spec.name).join(format!("eval_indices_seed{seed}.json"));
    if !idx_path.exists() {
        std::fs::create_dir_all(idx_path.parent().expect("has parent")).map_err(|e| Error::io(&idx_path, e))?;
        crate::plot::write_atomic(
            &idx_path,
            serde_json::to_string(&eval_ids).expect("serialises").as_bytes(),
        )?;
    }
    let mut trainer = Trainer::new(&model, &data.train, seed, run.raw.batch_size)?;

    let label = format!("{}/{}/seed{seed}", data.spec.name, strategy.id());
    let pb = bar(last, &label, quiet);
    pb.set_position(step);
    let segment_start = Instant::now();
    let base = clock;
    let mut losses: Vec<f64> = Vec::new();
    let (mut t_train, mut t_eval, mut t_attack) = (0.0, 0.0, 0.0);
    loop {
        let due = run.eval_steps.binary_search(&step).is_ok() && recs.evals.last().is_none_or(|e| e.step < step);
        if due {
            let ev = evaluate(&model, run, data, &eval_ids, seed, step)?;
            t_eval += ev.eval_s;
            t_attack += ev.attack_s;
            clock = [
                base[0] + segment_start.elapsed().as_secs_f64(),
                base[1] + t_train,
                base[2] + t_eval,
                base[3] + t_attack,
            ];
            let loss = (!losses.is_empty()).then(|| losses.iter().sum::<f64>() / losses.len() as f64);
            let rec = record(&recs.header, step, &ev, loss, clock)?;
            pb.set_message(format!("acc {:.2} rob {:.2}", rec.clean_acc, rec.robust_acc()));
            losses.clear();
            recs.evals.push(rec);
            records::write(&jsonl, &recs)?;
            if step > 0 {
                save_checkpoint(&model, &opt, step, clock, &ckpt, device)?;
                crash_point();
            }
        }
        if step >= last {
            break;
        }
        let t0 = Instant::now();
        let loss = trainer.step(&mut opt, step)?;
        t_train += t0.elapsed().as_secs_f64();
        losses.push(loss);
        step += 1;
        pb.inc(1);
    }
    pb.finish_and_clear();
    Ok(recs)
}

/// The training side of a fine-tuning run: batches in the seeded order of [`BatchOrder`], and for
/// linear probing the frozen backbone's features computed once (the head trains on them).
pub(crate) struct Trainer<'a> {
    model: &'a Vit,
    data: &'a Dataset,
    order: BatchOrder,
    features: Option<Tensor>,
    labels: Tensor,
    batch_size: usize,
}

impl<'a> Trainer<'a> {
    /// Batches of `batch_size` from `data`, in the order fixed by `seed`.
    pub(crate) fn new(model: &'a Vit, data: &'a Dataset, seed: u64, batch_size: usize) -> Result<Self> {
        let device = model.device();
        let features = if model.strategy() == Strategy::LinearProbe {
            Some(dataset_features(model, data, device)?)
        } else {
            None
        };
        Ok(Self {
            model,
            data,
            order: BatchOrder::new(data.len(), seed ^ 0x0bad_cafe),
            features,
            labels: Tensor::from_vec(data.labels.clone(), data.len(), device)?,
            batch_size,
        })
    }

    /// The update of step `step` (0-based); returns the batch loss.
    pub(crate) fn step(&mut self, opt: &mut AdamW, step: u64) -> Result<f64> {
        let ids = self.order.batch(step, self.batch_size);
        let device = self.model.device();
        match &self.features {
            Some(f) => {
                let idx = Tensor::from_vec(ids.iter().map(|&i| i as u32).collect::<Vec<_>>(), ids.len(), device)?;
                head_step(
                    self.model,
                    opt,
                    &f.index_select(&idx, 0)?,
                    &self.labels.index_select(&idx, 0)?,
                )
            }
            None => {
                let (x, y) = self.data.batch(&ids, device)?;
                train_step_split(self.model, opt, &x, &y, crate::engine::batch_parts(device))
            }
        }
    }
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

/// Crash tests: with `ROBUSTFT_CRASH_AFTER_CHECKPOINTS=N` in the environment the process aborts
/// (SIGABRT: no destructor, no flush, as abrupt as `kill -9`) right after writing its N-th
/// checkpoint, so a test can interrupt a run at an exact point instead of racing a signal.
fn crash_point() {
    static WRITTEN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITTEN.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
    if std::env::var("ROBUSTFT_CRASH_AFTER_CHECKPOINTS").is_ok_and(|v| v.trim() == n.to_string()) {
        std::process::abort();
    }
}

/// Runs every (dataset, strategy, seed) of `run` into `out` and returns the JSONL paths. Holds
/// `out`'s [lock](super::lock::RunLock) throughout: a second run into the same folder is refused.
pub fn run_all(run: &ValidRun, out: &Path, device: &Device, quiet: bool) -> Result<Vec<PathBuf>> {
    super::upstream::check_checkpoint(run)?;
    super::data::check_data(run)?;
    let _lock = super::lock::RunLock::acquire(out)?;
    preflight(run, out)?;
    let up = upstream(run, out, device, quiet)?;
    let mut paths = Vec::new();
    for (i, (spec, ood)) in run.raw.datasets.iter().zip(&run.ood).enumerate() {
        let key = format!("datasets[{i}].");
        let mut separability = None;
        for &seed in &run.raw.seeds {
            let data = prepare(spec, ood, run.model.image_size, run.raw.eval_subset, seed, &key)?;
            if separability.is_none() {
                // Said once per dataset, whatever --quiet says; also recorded in every header.
                for c in &data.capped {
                    eprintln!("note: {c}");
                }
                separability = Some(super::upstream::separability(&up, run, &data, device)?);
            }
            let ctx = DatasetRuns {
                data: &data,
                upstream: &up,
                separability: separability.clone(),
                device: device.clone(),
            };
            for &s in &run.strategies {
                run_one(run, &ctx, s, seed, out, quiet)?;
                paths.push(run_paths(out, &spec.name, s, seed).0);
            }
        }
    }
    Ok(paths)
}
