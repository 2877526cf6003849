//! The layout of a run folder: where each cell's records and checkpoint live, whether a run is
//! finished, and whether the records a folder holds belong to this experiment.

use std::path::{Path, PathBuf};

use crate::engine::Strategy;
use crate::error::{Error, Result};
use crate::validate::sweep::config::{RunConfig, ValidRun};
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

/// The configuration a finished or growing run folder was written with, read from its records
/// (what `gap` and `interpolate` work from): the one experiment every record shares
/// ([`records::check_one_experiment`]), with the seeds and strategies of every record's
/// configuration and each strategy's own learning rate. Errors name the folder or the record.
///
/// ```
/// // paper-cpu's records: seeds 0–2 were written with `seeds = [0, 1, 2]`, 3 and 4 later.
/// let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("validation/results/paper-cpu");
/// let run = robustft::validate::sweep::folder::recorded_run(&dir)?;
/// assert_eq!(run.config.seeds, [0, 1, 2, 3, 4]);
/// assert_eq!(run.strategies.len(), 7);
/// # Ok::<(), robustft::Error>(())
/// ```
pub fn recorded_run(dir: &Path) -> Result<ValidRun> {
    if dir.is_dir() && records::record_files(dir)?.is_empty() {
        return Err(Error::Config {
            path: dir.to_path_buf(),
            message: "is not a finished run: it holds no records (<dataset>/<strategy>/seed<k>.jsonl); run it first"
                .into(),
        });
    }
    let runs = records::read_folder(dir)?;
    records::check_one_experiment(runs.iter().map(|r| &r.header))?;
    let mut config = runs[0].header.config.clone();
    let (mut seeds, mut strategies) = (Vec::new(), Vec::new());
    for r in &runs {
        let c = &r.header.config;
        for (key, union) in [("seeds", &mut seeds), ("strategies", &mut strategies)] {
            for v in c.get(key).and_then(serde_json::Value::as_array).into_iter().flatten() {
                if !union.contains(v) {
                    union.push(v.clone());
                }
            }
        }
        if let (Some(lr), Some(own)) = (
            config
                .pointer_mut("/optimizer/lr")
                .and_then(serde_json::Value::as_object_mut),
            c.pointer(&format!("/optimizer/lr/{}", r.header.strategy)),
        ) {
            lr.insert(r.header.strategy.clone(), own.clone());
        }
    }
    seeds.sort_by_key(|v| v.as_u64());
    config["seeds"] = serde_json::Value::Array(seeds);
    config["strategies"] = serde_json::Value::Array(strategies);
    let config: RunConfig = serde_json::from_value(config).map_err(|e| Error::Config {
        path: dir.to_path_buf(),
        message: format!("its records' configuration does not parse: {e}"),
    })?;
    config.validate()
}
