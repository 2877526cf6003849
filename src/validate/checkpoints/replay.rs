//! Rebuilding the models a finished run measured, shared by `validate gap` and `validate
//! interpolate`.
//!
//! A run's training is a pure function of its configuration and seed, and its records hold the
//! per-image outcome of every evaluation, so any checkpoint of a finished run can be rebuilt by
//! repeating the fine-tuning from the same backbone (`upstream/`, re-pretrained deterministically
//! when absent) — and checked: at every step a caller asks for, the rebuilt model's clean outcome
//! on **every** evaluation image must equal the recorded one, or the replay stops with an error
//! naming the record (another build, another device). Nothing is ever reported for a model other
//! than the one measured.
//!
//! Results of a command over the runs live in `DIR/<name>/`: `spec.json` (what was measured; a
//! folder holds one specification, another is refused) and one JSON file per run,
//! `DIR/<name>/<dataset>/<strategy>/seed<k>.json`, written atomically and read back instead of
//! recomputed, so a killed command resumes run by run.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::engine::Vit;
use crate::engine::eval::clean_correct;
use crate::engine::peft::Strategy;
use crate::engine::train::AdamW;
use crate::error::{Error, Result};
use crate::io::write_atomic;
use crate::validate::sweep::config::ValidRun;
use crate::validate::sweep::records::{self, EvalRecord, RunRecords};
use crate::validate::sweep::runner::{self, DatasetRuns, Trainer, fine_tune_model};

/// The items of `have` (the run's seeds, datasets or strategies, shown by `show`) a command
/// covers: those `asked`, in the run's order, each checked to be one of the run's (`flag` and
/// `what` name them in the refusal); all of them when none is asked.
fn selected<T: PartialEq + Clone>(
    flag: &str,
    what: &str,
    have: &[T],
    asked: &[T],
    show: impl Fn(&T) -> String,
) -> Result<Vec<T>> {
    if let Some(a) = asked.iter().find(|a| !have.contains(a)) {
        let list: Vec<String> = have.iter().map(&show).collect();
        return Err(Error::invalid(flag, format!("not a {what} of this run ({})", list.join(", ")), show(a)).refused());
    }
    Ok(have
        .iter()
        .filter(|h| asked.is_empty() || asked.contains(h))
        .cloned()
        .collect())
}

/// The seeds a command covers: `seeds` (each checked to be one of the run's), or all the run's.
pub(crate) fn selected_seeds(run: &ValidRun, seeds: &[u64]) -> Result<Vec<u64>> {
    selected("--seeds", "seed", &run.config.seeds, seeds, u64::to_string)
}

/// The datasets a command covers, by name: `datasets` (each checked to be one of the run's), or
/// all the run's, in the run's order.
pub(crate) fn selected_datasets(run: &ValidRun, datasets: &[String]) -> Result<Vec<String>> {
    let have: Vec<String> = run.config.datasets.iter().map(|d| d.name.clone()).collect();
    selected("--datasets", "dataset", &have, datasets, String::clone)
}

/// The strategies a command covers: `strategies` (each checked to be one of the run's), or all
/// the run's, in the run's order.
pub(crate) fn selected_strategies(run: &ValidRun, strategies: &[Strategy]) -> Result<Vec<Strategy>> {
    selected("--strategies", "strategy", &run.strategies, strategies, |s| {
        s.id().to_string()
    })
}

/// Refuses a folder `dir` whose `spec.json` holds another specification than `spec` (`what`
/// names the results in the message).
pub(crate) fn check_spec<S: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(
    dir: &Path,
    what: &str,
    spec: &S,
) -> Result<()> {
    check_spec_or(dir, what, spec, |_| false, "")
}

/// [`check_spec`], accepting also an older specification for which `extends(old)` holds (`spec`
/// completes its results); `hint` ends the refusal's message.
pub(crate) fn check_spec_or<S: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(
    dir: &Path,
    what: &str,
    spec: &S,
    extends: impl Fn(&S) -> bool,
    hint: &str,
) -> Result<()> {
    let path = dir.join("spec.json");
    if !path.exists() {
        return Ok(());
    }
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let old: S = serde_json::from_str(&text).map_err(|e| Error::Config {
        path: path.clone(),
        message: format!("unreadable {what} specification: {e}"),
    })?;
    if &old != spec && !extends(&old) {
        return Err(Error::Config {
            path,
            message: format!(
                "holds {what} results for another specification ({old:?}); remove {} to measure this one ({spec:?}){hint}",
                dir.display()
            ),
        }
        .refused());
    }
    Ok(())
}

/// `dir/<dataset>/<strategy>/seed<k>.json`.
pub(crate) fn cell_path(dir: &Path, dataset: &str, strategy: Strategy, seed: u64) -> PathBuf {
    dir.join(dataset).join(strategy.id()).join(format!("seed{seed}.json"))
}

/// For every run of `run` in `out` on a dataset named in `datasets`, with a seed in `seeds` and
/// a strategy in `strategies`, in run order: the result cached in
/// `dir` when `current(cached)`, or else `compute(context, strategy, seed, cached)` (`cached`:
/// the stale result to complete, if any), written there atomically. Every selected run must be
/// finished before anything is computed; `spec` is written to `dir/spec.json` first.
#[allow(clippy::too_many_arguments)]
pub(crate) fn for_each_run<T: Serialize + DeserializeOwned, S: Serialize>(
    run: &ValidRun,
    out: &Path,
    dir: &Path,
    spec: &S,
    (datasets, seeds, strategies): (&[String], &[u64], &[Strategy]),
    device: &candle_core::Device,
    quiet: bool,
    current: impl Fn(&T) -> bool,
    mut compute: impl FnMut(&DatasetRuns, Strategy, u64, Option<T>) -> Result<T>,
) -> Result<Vec<T>> {
    let last = *run.eval_steps.last().expect("validated non-empty");
    let chosen = |name: &String| datasets.contains(name);
    for d in run.config.datasets.iter().filter(|d| chosen(&d.name)) {
        for &seed in seeds {
            for &s in strategies {
                let (jsonl, _) = crate::validate::sweep::folder::run_paths(out, &d.name, s, seed);
                if !jsonl.exists() || !crate::validate::sweep::folder::finished(&records::read(&jsonl)?, last) {
                    return Err(Error::Config {
                        path: jsonl,
                        message: format!("is not a finished run (step {last}): finish the run first"),
                    }
                    .refused());
                }
            }
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    write_atomic(
        &dir.join("spec.json"),
        serde_json::to_string_pretty(spec).expect("serialises").as_bytes(),
    )?;
    // The backbone is rebuilt (or read) only when something is computed.
    let mut up = None;
    let mut cells = Vec::new();
    for (i, d) in run.config.datasets.iter().enumerate().filter(|(_, d)| chosen(&d.name)) {
        for &seed in seeds {
            let mut data = None;
            for &s in strategies {
                let path = cell_path(dir, &d.name, s, seed);
                let mut cached = None;
                if path.exists() {
                    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
                    let cell: T = serde_json::from_str(&text).map_err(|e| Error::Config {
                        path: path.clone(),
                        message: format!("unreadable result: {e}"),
                    })?;
                    if current(&cell) {
                        cells.push(cell);
                        continue;
                    }
                    cached = Some(cell);
                }
                if data.is_none() {
                    data = Some(runner::prepared(run, i, seed, false)?);
                }
                if up.is_none() {
                    up = Some(crate::validate::sweep::upstream::upstream(run, out, device, quiet)?);
                }
                let ctx = DatasetRuns {
                    data: data.as_ref().expect("just set"),
                    upstream: up.as_ref().expect("just set"),
                    separability: None,
                    device: device.clone(),
                };
                let cell = compute(&ctx, s, seed, cached)?;
                std::fs::create_dir_all(path.parent().expect("has parent")).map_err(|e| Error::io(&path, e))?;
                write_atomic(
                    &path,
                    serde_json::to_string_pretty(&cell).expect("serialises").as_bytes(),
                )?;
                cells.push(cell);
            }
        }
    }
    Ok(cells)
}

/// The specification and the per-run results in `dir` (every `seed*.json` below it, in no
/// particular order); `None` without `dir/spec.json`. `what` names the results in errors.
pub(crate) fn load_results<S: DeserializeOwned, T: DeserializeOwned>(
    dir: &Path,
    what: &str,
) -> Result<Option<(S, Vec<T>)>> {
    let spec_path = dir.join("spec.json");
    if !spec_path.exists() {
        return Ok(None);
    }
    let read = |p: &Path| std::fs::read_to_string(p).map_err(|e| Error::io(p, e));
    let spec: S = serde_json::from_str(&read(&spec_path)?).map_err(|e| Error::Config {
        path: spec_path.clone(),
        message: format!("unreadable {what} specification: {e}"),
    })?;
    let mut cells = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).map_err(|e| Error::io(&d, e))? {
            let p = entry.map_err(|e| Error::io(&d, e))?.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|f| f.to_string_lossy().starts_with("seed")) {
                cells.push(serde_json::from_str::<T>(&read(&p)?).map_err(|e| Error::Config {
                    path: p.clone(),
                    message: format!("unreadable {what} result: {e}"),
                })?);
            }
        }
    }
    Ok(Some((spec, cells)))
}

/// One run's records and evaluation images, checked to be the images this configuration draws.
pub(crate) struct RunView {
    /// The records file.
    pub jsonl: PathBuf,
    /// Its records.
    pub recs: RunRecords,
    /// The evaluation images (indices into the test set), in record order.
    pub eval_ids: Vec<usize>,
}

impl RunView {
    /// Reads the run (dataset of `ctx`, `strategy`, `seed`) in `out`.
    pub(crate) fn read(run: &ValidRun, ctx: &DatasetRuns, strategy: Strategy, seed: u64, out: &Path) -> Result<Self> {
        let (jsonl, _) = crate::validate::sweep::folder::run_paths(out, &ctx.data.spec.name, strategy, seed);
        let recs = records::read(&jsonl)?;
        let eval_ids = runner::eval_ids(run, ctx.data, seed);
        let ids_hash = records::fnv_hex(serde_json::to_string(&eval_ids).expect("serialises").as_bytes());
        if recs.header.eval_set.as_ref().is_some_and(|h| *h != ids_hash) {
            return Err(Error::Config {
                path: jsonl,
                message: "was evaluated on other images than this configuration draws".into(),
            });
        }
        // The backbone it was fine-tuned from: the cached checkpoint's name carries its content
        // hash, so another backbone is refused before anything is replayed.
        if let (Some(was), Some(now)) = (&recs.header.upstream, &ctx.upstream.info)
            && was.checkpoint != now.checkpoint
        {
            return Err(Error::Config {
                path: jsonl,
                message: format!(
                    "was fine-tuned from the backbone {} but this folder's upstream is {} (content hashes differ): \
                     not the model that was measured",
                    was.checkpoint, now.checkpoint
                ),
            });
        }
        Ok(Self { jsonl, recs, eval_ids })
    }

    /// The record of `step`, if the schedule evaluated it.
    pub(crate) fn find(&self, step: u64) -> Option<&EvalRecord> {
        self.recs.evals.iter().find(|e| e.step == step)
    }

    /// The record of `step`.
    pub(crate) fn at(&self, step: u64) -> &EvalRecord {
        self.find(step).expect("a recorded step")
    }

    /// The error for a rebuilt model that does not reproduce the record of `step`.
    pub(crate) fn mismatch(&self, step: u64, what: &str, differ: usize) -> Error {
        Error::Config {
            path: self.jsonl.clone(),
            message: format!(
                "replayed to step {step}, the model classifies {differ} of {} evaluation images differently from \
                 the record ({what}): not the model that was measured (another build or device?)",
                self.eval_ids.len()
            ),
        }
    }
}

/// Replays the fine-tuning of one run and calls `at(model, step)` at each of `steps` (recorded
/// steps, increasing; 0 allowed: the model before any update), after checking that the model's
/// clean outcome on every evaluation image equals the record of that step (step 0 only when the
/// schedule evaluated it). The progress bar is
/// labelled with the run.
#[allow(clippy::too_many_arguments)]
pub(crate) fn replay(
    run: &ValidRun,
    ctx: &DatasetRuns,
    view: &RunView,
    strategy: Strategy,
    seed: u64,
    steps: &[u64],
    quiet: bool,
    mut at: impl FnMut(&Vit, u64) -> Result<()>,
) -> Result<()> {
    let data = ctx.data;
    let model = fine_tune_model(run, &ctx.upstream.path, strategy, data.train.classes, &ctx.device, seed)?;
    let mut opt = AdamW::new(model.trainable().to_vec(), run.optimiser(strategy))?;
    let mut trainer = Trainer::new(&model, &data.train, seed, run.config.batch_size)?.with_training(run.training);
    let label = format!("{}/{}/seed{seed}", data.spec.name, strategy.id());
    let pb = crate::progress::bar(steps.last().copied().unwrap_or(0), &label, quiet);
    let mut step = 0;
    for &target in steps {
        while step < target {
            trainer.step(&mut opt, step)?;
            step += 1;
            pb.inc(1);
        }
        // Step 0 of a schedule that does not evaluate it has no record to check against.
        if target > 0 || view.find(0).is_some() {
            let levels = records::decode_digits(&view.at(target).outcomes, "outcomes")?;
            let clean = clean_correct(&model, &data.test, &view.eval_ids, 128, &ctx.device)?;
            let differ = clean.iter().zip(&levels).filter(|(c, l)| **c != (**l >= 1)).count();
            if differ > 0 || levels.len() != view.eval_ids.len() {
                return Err(view.mismatch(target, "clean outcome", differ.max(1)));
            }
        }
        pb.set_message(format!("at step {target}"));
        at(&model, target)?;
        crate::progress::progress_line(&pb, &label, || format!("step {target} replayed and measured"));
    }
    pb.finish_and_clear();
    Ok(())
}
