//! Resuming and checkpointing a run: what it restarts from (records, checkpoint, clock), the
//! checks made before any work (records of this configuration, readable checkpoints), and the
//! checkpoint written at every evaluation.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};

use crate::engine::Vit;
use crate::engine::model::save_atomic;
use crate::engine::train::AdamW;
use crate::error::{Error, Result};
use crate::validate::sweep::config::ValidRun;
use crate::validate::sweep::folder::{check_experiment, finished, run_paths};
use crate::validate::sweep::records::{self, EvalRecord, Header};
use crate::validate::sweep::runner::Clock;

/// Where a run stands: the optimiser steps taken, the wall-clock split so far and the records
/// written.
pub(super) struct Progress {
    pub(super) step: u64,
    pub(super) clock: Clock,
    pub(super) evals: Vec<EvalRecord>,
}

/// Restores a run from its records and checkpoint. Returns None when the records are already
/// complete (possibly written on another machine, without a checkpoint): nothing to redo.
pub(super) fn resume(
    jsonl: &Path,
    ckpt: &Path,
    header: &Header,
    model: &Vit,
    opt: &mut AdamW,
) -> Result<Option<Progress>> {
    let mut p = Progress {
        step: 0,
        clock: Clock::default(),
        evals: Vec::new(),
    };
    if !jsonl.exists() {
        return Ok(Some(p));
    }
    let old = records::read(jsonl)?;
    check_experiment(
        jsonl,
        &old.header,
        &records::experiment_hash(&header.config, Some(&old.header.strategy)),
    )?;
    if header.eval_steps.last().is_some_and(|&l| finished(&old, l)) {
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
            p.clock = Clock::from_slice(&c.to_vec1::<f64>()?);
        }
        p.evals = old.evals.into_iter().filter(|e| e.step <= p.step).collect();
    } else {
        // Records without a checkpoint: only a step-0 evaluation (written before any update
        // and before the first checkpoint) can be kept.
        p.evals = old.evals.into_iter().filter(|e| e.step == 0).collect();
    }
    // Kept records carry the hash of the header they are written under (a grown sweep's
    // configuration differs from theirs in the seed or strategy list only).
    for e in &mut p.evals {
        e.config_hash.clone_from(&header.config_hash);
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
/// record file parses and was written by this experiment (same configuration but for the seed and
/// strategy lists and the other strategies' learning rates, [`records::experiment_hash`]), and the
/// checkpoint of every unfinished run is readable. Errors name the file.
pub fn preflight(run: &ValidRun, out: &Path) -> Result<()> {
    let ours = serde_json::to_value(&run.config).expect("config serialises");
    let last = run.eval_steps.last().copied();
    for d in &run.config.datasets {
        for &s in &run.strategies {
            for &seed in &run.config.seeds {
                let (jsonl, ckpt) = run_paths(out, &d.name, s, seed);
                if !jsonl.exists() {
                    continue;
                }
                let old = records::read(&jsonl)?;
                check_experiment(&jsonl, &old.header, &records::experiment_hash(&ours, Some(s.id())))?;
                if !last.is_some_and(|l| finished(&old, l)) && ckpt.exists() {
                    read_checkpoint(&ckpt, &Device::Cpu)?;
                }
            }
        }
    }
    Ok(())
}

/// The checkpoint stage: the trainable tensors, the optimiser state, the step and the clock,
/// written atomically (after the records they describe).
pub(super) fn save_checkpoint(
    model: &Vit,
    opt: &AdamW,
    step: u64,
    clock: Clock,
    path: &Path,
    device: &Device,
) -> Result<()> {
    let mut state = opt.state()?;
    for (k, v) in model.trainable() {
        state.insert(format!("param.{k}"), v.as_tensor().copy()?);
    }
    state.insert("run.step".into(), Tensor::new(&[step as u32], device)?);
    state.insert("run.clock".into(), Tensor::new(&clock.to_array(), device)?);
    save_atomic(&state, path)
}

/// Crash tests: with `ROBUSTFT_CRASH_AFTER_CHECKPOINTS=N` in the environment the process aborts
/// (SIGABRT: no destructor, no flush, as abrupt as `kill -9`) right after writing its N-th
/// checkpoint, so a test can interrupt a run at an exact point instead of racing a signal.
///
/// Scheduler tests: with `ROBUSTFT_HOLD_CELL=<dataset>/<strategy>/seed<k>`, the run of that cell
/// writes `<record>.held` after its first checkpoint and then waits until it is killed, so a
/// test can cancel it (`scancel`) at a known point, however fast the cell would have finished.
pub(super) fn crash_point(label: &str, jsonl: &Path) {
    static WRITTEN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITTEN.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
    if std::env::var("ROBUSTFT_CRASH_AFTER_CHECKPOINTS").is_ok_and(|v| v.trim() == n.to_string()) {
        std::process::abort();
    }
    if std::env::var("ROBUSTFT_HOLD_CELL").is_ok_and(|v| v.trim() == label) {
        let held = jsonl.with_extension("held");
        let _ = std::fs::write(&held, std::process::id().to_string());
        eprintln!(
            "ROBUSTFT_HOLD_CELL: {label} holds after its first checkpoint ({})",
            held.display()
        );
        loop {
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
    }
}
