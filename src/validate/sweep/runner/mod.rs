//! The tracking runner: pretrain (or load) the upstream backbone, then fine-tune every
//! (dataset, strategy, seed), evaluating clean, robust and OOD accuracy at exactly the scheduled
//! steps. Records and checkpoints are written atomically at every evaluation; a run resumes where
//! it stopped and produces the records an uninterrupted run would (timing fields aside).
//!
//! Determinism: the batch at step t is a pure function of (seed, t) (a seeded permutation per
//! epoch), every attack's random start is seeded by (seed, step, batch), so a checkpoint needs
//! only the trainable tensors, the optimiser state and the step.
//!
//! A run is four stages, each a function with typed input and output: resume
//! (`resume::resume`: records and checkpoint → `resume::Progress`), train
//! (`trainer::Trainer::step`: one optimiser step), evaluate (`evaluate::evaluate` →
//! `evaluate::Evaluation` → `evaluate::record` → an `EvalRecord`) and checkpoint
//! (`resume::save_checkpoint`); [`run_one`] sequences them, [`run_all`] runs every cell.

pub(crate) mod evaluate;
mod resume;
mod trainer;

use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device};

use crate::engine::peft::Strategy;
use crate::engine::train::AdamW;
use crate::engine::{Vit, VitSpec};
use crate::error::{Error, Result};
use crate::progress::{bar, progress_line};
use crate::validate::sweep::config::{HeadChoice, ValidRun};
use crate::validate::sweep::data::{TaskData, prepare};
use crate::validate::sweep::folder::run_paths;
use crate::validate::sweep::records::{self, Header, RunRecords, SCHEMA_VERSION, Separability};
use crate::validate::sweep::upstream::{Upstream, upstream};
use evaluate::{evaluate, record};
pub use resume::preflight;
use resume::{Progress, crash_point, resume, save_checkpoint};
pub(crate) use trainer::Trainer;

/// What every run of one dataset shares: the prepared data, the backbone and the task's
/// measured separability.
pub struct DatasetRuns<'a> {
    /// The data.
    pub data: &'a TaskData,
    /// The backbone.
    pub upstream: &'a Upstream,
    /// Separability measured on the pretrained backbone.
    pub separability: Option<Separability>,
    /// Device the runs use.
    pub device: Device,
}

/// The header of one run's records.
fn header(run: &ValidRun, ctx: &DatasetRuns, strategy: Strategy, seed: u64, model: &Vit, eval_ids: &[usize]) -> Header {
    let config = serde_json::to_value(&run.config).expect("config serialises");
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
        // What happened, not only what was asked: unset `head` re-initialises a head that does
        // not fit, and that is recorded as a new head.
        new_head: Some(!model.head_from_checkpoint()),
        capped: ctx.data.capped.clone(),
        theory_d: Some(ctx.data.theory_d),
    }
}

/// Wall-clock seconds a run has spent so far: in all, and in training, evaluation (clean and
/// OOD) and attacks. Recorded in every eval record and carried across resumes in the checkpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Clock {
    /// Since the run started (over every resumed segment).
    pub elapsed: f64,
    /// In optimiser steps.
    pub train: f64,
    /// In clean and OOD evaluation.
    pub eval: f64,
    /// In attacks.
    pub attack: f64,
}

impl Clock {
    /// As the checkpoint stores it: [elapsed, train, eval, attack].
    fn to_array(self) -> [f64; 4] {
        [self.elapsed, self.train, self.eval, self.attack]
    }
    /// From the checkpoint's [elapsed, train, eval, attack].
    fn from_slice(v: &[f64]) -> Self {
        Clock {
            elapsed: v[0],
            train: v[1],
            eval: v[2],
            attack: v[3],
        }
    }
}

/// Times one segment of a run (from its start or a resume) on top of the clock it resumed from.
struct Stopwatch {
    base: Clock,
    start: Instant,
    segment: Clock,
}

impl Stopwatch {
    fn new(base: Clock) -> Self {
        Stopwatch {
            base,
            start: Instant::now(),
            segment: Clock::default(),
        }
    }
    /// Runs one optimiser step, counting its time as training.
    fn train<T>(&mut self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let t0 = Instant::now();
        let r = f();
        self.segment.train += t0.elapsed().as_secs_f64();
        r
    }
    /// Counts an evaluation's time and returns the run's clock at its end.
    fn evaluated(&mut self, eval_s: f64, attack_s: f64) -> Clock {
        self.segment.eval += eval_s;
        self.segment.attack += attack_s;
        Clock {
            elapsed: self.base.elapsed + self.start.elapsed().as_secs_f64(),
            train: self.base.train + self.segment.train,
            eval: self.base.eval + self.segment.eval,
            attack: self.base.attack + self.segment.attack,
        }
    }
}

/// The evaluation images of a run: drawn with `eval_seed` when configured (the same for every
/// seed), else with the run's seed.
pub fn eval_ids(run: &ValidRun, data: &TaskData, seed: u64) -> Vec<usize> {
    data.test
        .eval_indices(run.config.eval_subset, run.config.eval_seed.unwrap_or(seed))
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
        return Vit::load_backbone(checkpoint, &spec);
    }
    let model = Vit::load(checkpoint, &spec)?;
    if run.config.head == Some(HeadChoice::Reuse) && !model.head_from_checkpoint() {
        return Err(Error::Config {
            path: checkpoint.to_path_buf(),
            message: format!(
                "head = \"reuse\", but this checkpoint has no classifier head for the task's {classes} \
                 classes; set head = \"new\" to start from a fresh one"
            ),
        }
        .refused());
    }
    Ok(model)
}

/// Says once per dataset (per process), whatever --quiet says, which head its runs start from
/// and why (recorded as `new_head` in every header).
fn announce_head(run: &ValidRun, dataset: &str, model: &Vit) {
    static SAID: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut said = SAID.lock().unwrap_or_else(|e| e.into_inner());
    if said.iter().any(|d| d == dataset) {
        return;
    }
    said.push(dataset.to_string());
    let why = match (run.config.head, model.head_from_checkpoint()) {
        (Some(HeadChoice::New), _) => "head = \"new\"",
        (Some(HeadChoice::Reuse), _) => "head = \"reuse\"",
        (None, true) => "head unset: the checkpoint's head fits the task's classes",
        (None, false) => "head unset: the checkpoint has no head for the task's classes",
    };
    let what = if model.head_from_checkpoint() {
        "the checkpoint's head"
    } else {
        "a new head"
    };
    eprintln!("head: {dataset} starts from {what} ({why})");
}

/// Runs (or resumes) one (dataset, strategy, seed): resume → (evaluate step 0) → train,
/// evaluating, recording and checkpointing at every scheduled step. Returns its records.
pub fn run_one(
    run: &ValidRun,
    ctx: &DatasetRuns,
    strategy: Strategy,
    seed: u64,
    out: &Path,
    quiet: bool,
) -> Result<RunRecords> {
    let data = ctx.data;
    let (jsonl, ckpt) = run_paths(out, &data.spec.name, strategy, seed);
    let model = fine_tune_model(run, &ctx.upstream.path, strategy, data.train.classes, &ctx.device, seed)?;
    let eval_ids = eval_ids(run, data, seed);
    let header = header(run, ctx, strategy, seed, &model, &eval_ids);
    announce_head(run, &data.spec.name, &model);
    let mut opt = AdamW::new(model.trainable().to_vec(), run.optimiser(strategy))?;
    let Some(Progress { mut step, clock, evals }) = resume(&jsonl, &ckpt, &header, &model, &mut opt)? else {
        return records::read(&jsonl);
    };
    write_eval_ids(out, &data.spec.name, seed, &eval_ids)?;
    let mut recs = RunRecords { header, evals };
    let mut trainer = Trainer::new(&model, &data.train, seed, run.config.batch_size)?.with_training(run.training);
    let last = *run.eval_steps.last().expect("validated non-empty");
    let label = format!("{}/{}/seed{seed}", data.spec.name, strategy.id());
    let pb = bar(last, &label, quiet);
    pb.set_position(step);
    let mut watch = Stopwatch::new(clock);
    let mut losses: Vec<f64> = Vec::new();
    loop {
        let due = run.eval_steps.binary_search(&step).is_ok() && recs.evals.last().is_none_or(|e| e.step < step);
        if due {
            let ev = evaluate(&model, run, data, &eval_ids, seed, step)?;
            let clock = watch.evaluated(ev.eval_s, ev.attack_s);
            let loss = (!losses.is_empty()).then(|| losses.iter().sum::<f64>() / losses.len() as f64);
            let rec = record(&recs.header, step, &ev, loss, clock)?;
            pb.set_message(format!("acc {:.2} rob {:.2}", rec.clean_acc, rec.robust_acc()));
            progress_line(&pb, &label, || {
                let robust: Vec<String> = rec.robust.iter().map(|r| format!("{:.3}", r.acc)).collect();
                format!(
                    "step {step}/{last}, clean {:.3}, robust {}",
                    rec.clean_acc,
                    robust.join(" / ")
                )
            });
            losses.clear();
            recs.evals.push(rec);
            if run.config.keep_checkpoints.is_some() {
                keep_checkpoint(&model, out, &data.spec.name, strategy, seed, step)?;
            }
            records::write(&jsonl, &recs)?;
            if step > 0 {
                save_checkpoint(&model, &opt, step, clock, &ckpt, &ctx.device)?;
                crash_point(&label, &jsonl);
            }
        }
        if step >= last {
            break;
        }
        losses.push(watch.train(|| trainer.step(&mut opt, step))?);
        step += 1;
        pb.inc(1);
    }
    pb.finish_and_clear();
    Ok(recs)
}

/// `keep_checkpoints = "evals"`: the trainable tensors at evaluation step `step`, as `param.*`
/// (`validate eval --backbone` reads them), written atomically before the record that
/// announces the step.
pub fn kept_checkpoint(out: &Path, dataset: &str, strategy: Strategy, seed: u64, step: u64) -> PathBuf {
    out.join("ckpt")
        .join(dataset)
        .join(strategy.id())
        .join(format!("seed{seed}"))
        .join(format!("step{step}.safetensors"))
}

fn keep_checkpoint(model: &Vit, out: &Path, dataset: &str, strategy: Strategy, seed: u64, step: u64) -> Result<()> {
    let tensors = model
        .trainable()
        .iter()
        .map(|(k, v)| Ok((format!("param.{k}"), v.as_tensor().copy()?)))
        .collect::<Result<std::collections::HashMap<_, _>>>()?;
    crate::engine::model::save_atomic(&tensors, &kept_checkpoint(out, dataset, strategy, seed, step))
}

/// `out/<dataset>/eval_indices_seed<seed>.json`: the evaluation images of a seed (written once).
fn write_eval_ids(out: &Path, dataset: &str, seed: u64, eval_ids: &[usize]) -> Result<()> {
    let path = out.join(dataset).join(format!("eval_indices_seed{seed}.json"));
    if path.exists() {
        return Ok(());
    }
    std::fs::create_dir_all(path.parent().expect("has parent")).map_err(|e| Error::io(&path, e))?;
    crate::io::write_atomic(&path, serde_json::to_string(eval_ids).expect("serialises").as_bytes())
}

/// The data of `run`'s dataset `i` for `seed`, and its notes (said on stderr when `say`).
pub(crate) fn prepared(run: &ValidRun, i: usize, seed: u64, say: bool) -> Result<TaskData> {
    let data = prepare(
        &run.config.datasets[i],
        &run.ood[i],
        run.model.image_size,
        run.config.eval_subset,
        seed,
        &format!("datasets[{i}]."),
    )?;
    if let Some(a) = run.attacks.iter().find(|a| a.min_classes() > data.train.classes) {
        return Err(crate::validate::sweep::inputs::attack_classes_error(
            a,
            i,
            &run.config.datasets[i].name,
            data.train.classes,
        )
        .refused());
    }
    if say {
        // Said once per dataset, whatever --quiet says; also recorded in every header.
        for c in &data.capped {
            eprintln!("note: {c}");
        }
    }
    Ok(data)
}

/// Runs every (dataset, strategy, seed) of `run` into `out` and returns the JSONL paths. Holds
/// `out`'s [lock](crate::io::lock::RunLock) throughout: a second run into the same folder is refused.
/// Writes the sweep's [plan](crate::validate::sweep::plan) first, so `validate status` follows it.
pub fn run_all(run: &ValidRun, out: &Path, device: &Device, quiet: bool) -> Result<Vec<PathBuf>> {
    crate::validate::sweep::inputs::check_inputs(run)?;
    let _lock = crate::io::lock::RunLock::acquire(out)?;
    preflight(run, out).map_err(Error::refused)?;
    crate::validate::sweep::plan::write_plan(&crate::validate::sweep::plan::plan(run, out)?, out)?;
    let up = upstream(run, out, device, quiet)?;
    let mut paths = Vec::new();
    for (i, spec) in run.config.datasets.iter().enumerate() {
        let mut separability = None;
        for &seed in &run.config.seeds {
            let data = prepared(run, i, seed, separability.is_none())?;
            if separability.is_none() {
                // The training images (all separability reads) do not depend on the seed.
                separability = Some(crate::validate::sweep::tasks::separability(&up, run, &data, device)?);
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

/// Runs (or resumes) cell `index` of `run`'s [plan](crate::validate::sweep::plan) in `out`: the upstream cell
/// pretrains the backbone (locked: written once however many run it), a fine-tuning cell runs
/// one (dataset, strategy, seed) from the existing upstream checkpoint, with the records a whole
/// `validate run` writes for it. Holds `out`'s lock shared and the cell's lock exclusively.
/// Returns the cell as planned before it ran.
pub fn run_cell(
    run: &ValidRun,
    out: &Path,
    index: usize,
    device: &Device,
    quiet: bool,
) -> Result<crate::validate::sweep::plan::Cell> {
    use crate::io::lock::RunLock;
    use crate::validate::sweep::plan::Work;
    crate::validate::sweep::inputs::check_inputs(run)?;
    let plan = crate::validate::sweep::plan::plan(run, out).map_err(Error::refused)?;
    let cell = plan.cell(index).map_err(Error::refused)?.clone();
    if cell.complete {
        return Ok(cell);
    }
    let _folder = RunLock::acquire_shared(out)?;
    match &cell.work {
        Work::Upstream { .. } => {
            let _cell = RunLock::acquire(&out.join("upstream"))?;
            upstream(run, out, device, quiet)?;
        }
        Work::FineTune {
            dataset,
            strategy,
            seed,
            ..
        } => {
            let (jsonl, _) = run_paths(out, dataset, *strategy, *seed);
            let _cell = RunLock::acquire_cell(&jsonl)?;
            let up = crate::validate::sweep::upstream::existing_upstream(run, out)?.ok_or_else(|| {
                Error::Config {
                    path: out.join("upstream"),
                    message: "holds no upstream checkpoint yet: run the upstream cell first \
                              (`validate run … --cell 0`; `validate slurm` orders them)"
                        .into(),
                }
                .refused()
            })?;
            let i = run
                .config
                .datasets
                .iter()
                .position(|d| &d.name == dataset)
                .expect("planned from the config");
            let data = prepared(run, i, *seed, true)?;
            let ctx = DatasetRuns {
                separability: Some(crate::validate::sweep::tasks::separability(&up, run, &data, device)?),
                data: &data,
                upstream: &up,
                device: device.clone(),
            };
            run_one(run, &ctx, *strategy, *seed, out, quiet)?;
        }
    }
    Ok(cell)
}
