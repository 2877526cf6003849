//! The layout of a run folder: where each cell's records and checkpoint live, whether a run is
//! finished, and whether the records a folder holds belong to this experiment.

use std::path::{Path, PathBuf};

use crate::engine::Strategy;
use crate::error::{Error, Result};
use crate::validate::sweep::records;

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

/// Whether records reach the schedule's `last` step: the run is complete (whoever wrote it).
pub fn finished(r: &records::RunRecords, last: u64) -> bool {
    r.evals.last().map(|e| e.step) == Some(last)
}

/// Records at `jsonl` (with `header`) belong to the experiment `ours`, the
/// [`records::experiment_hash`] of our configuration for the run's strategy (only the seed and
/// strategy lists and the other strategies' learning rates may differ), or an error naming the
/// file: records written by another configuration are never resumed, counted or overwritten.
pub fn check_experiment(jsonl: &Path, header: &records::Header, ours: &str) -> Result<()> {
    let theirs = records::run_experiment_hash(header);
    if theirs == ours {
        return Ok(());
    }
    Err(Error::Config {
        path: jsonl.to_path_buf(),
        message: format!(
            "holds a run with another configuration (experiment hash {theirs} vs {ours}; only \
             the seed and strategy lists and the other strategies' learning rates may differ); \
             choose another output folder"
        ),
    })
}
