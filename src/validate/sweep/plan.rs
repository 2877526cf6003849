//! The cells of a sweep: the unit a scheduler runs. Cell 0 pretrains (or checks) the upstream
//! backbone; cells 1.. fine-tune one (dataset, strategy, seed) each, in the order a whole
//! `validate run` walks them (dataset → seed → strategy). Cells write disjoint files (their
//! records, checkpoint and lock under `DIR/<dataset>/<strategy>/`, `DIR/ckpt/…`), so many can
//! run at once over a shared filesystem; the upstream checkpoint is written once, by cell 0.
//!
//! A cell is complete when its output says so, whoever wrote it: the upstream checkpoint and
//! its sidecar exist, or the records' last evaluation is the schedule's last step (as a resume
//! decides, [`crate::validate::sweep::runner::run_one`]). [`status`] reads only the files of the folder and the
//! cell locks, so it works on any cluster, with or without the scheduler's accounting.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::engine::peft::Strategy;
use crate::error::{Error, Result};
use crate::io::lock::{LOCK_FILE, cell_lock_path, is_held};
use crate::validate::sweep::config::ValidRun;
use crate::validate::sweep::folder::run_paths;
use crate::validate::sweep::records;

/// The plan file inside a run folder.
pub const PLAN_FILE: &str = "plan.json";

/// What one cell does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Work {
    /// Pretrain the upstream backbone into `checkpoint` (or check a configured one).
    Upstream {
        /// The checkpoint (relative to the run folder when inside it).
        checkpoint: PathBuf,
        /// The configuration names it (`checkpoint = …`): nothing to pretrain, complete when it
        /// exists.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        configured: bool,
    },
    /// Fine-tune one (dataset, strategy, seed) from the upstream checkpoint.
    FineTune {
        /// Dataset name.
        dataset: String,
        /// Strategy.
        strategy: Strategy,
        /// Seed.
        seed: u64,
        /// Its records (relative to the run folder).
        record: PathBuf,
    },
}

impl Work {
    /// `upstream` or `<dataset>/<strategy>/seed<k>`.
    pub fn label(&self) -> String {
        match self {
            Work::Upstream { .. } => "upstream".into(),
            Work::FineTune {
                dataset,
                strategy,
                seed,
                ..
            } => format!("{dataset}/{}/seed{seed}", strategy.id()),
        }
    }
}

/// One cell of a sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    /// Stable index (`--cell N`, `$SLURM_ARRAY_TASK_ID`).
    pub index: usize,
    /// What it does.
    #[serde(flatten)]
    pub work: Work,
    /// Whether its output is complete in the run folder.
    pub complete: bool,
}

/// Every cell of a sweep, as `DIR/plan.json` holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The configuration's name.
    pub name: String,
    /// Its hash (as in the header of every record it writes).
    pub config_hash: String,
    /// Its [`records::experiment_hash`] per strategy id: records whose configuration differs only
    /// in the seed and strategy lists and the other strategies' learning rates count as this
    /// sweep's. Empty in plans written before it existed (then a record counts only with the
    /// same `config_hash`; `validate plan` rewrites the plan).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub experiment_hashes: BTreeMap<String, String>,
    /// The schedule's last step: a run whose records reach it is complete.
    pub last_step: u64,
    /// The cells, index order.
    pub cells: Vec<Cell>,
}

impl Plan {
    /// Cells not yet complete.
    pub fn incomplete(&self) -> impl Iterator<Item = &Cell> {
        self.cells.iter().filter(|c| !c.complete)
    }

    /// Cell `index`, or an error naming the plan's size.
    pub fn cell(&self, index: usize) -> Result<&Cell> {
        self.cells.get(index).ok_or_else(|| {
            Error::invalid(
                "--cell",
                format!(
                    "a cell of this plan: 0 (upstream) to {} ({} cells; `validate plan` lists them)",
                    self.cells.len() - 1,
                    self.cells.len()
                ),
                index,
            )
        })
    }

    /// The plan as a table: index, work, state.
    pub fn table(&self) -> String {
        let mut s = format!(
            "plan of {}: {} cells (1 upstream, {} fine-tuning), {} complete\n",
            self.name,
            self.cells.len(),
            self.cells.len() - 1,
            self.cells.iter().filter(|c| c.complete).count()
        );
        s += "  cell  work                                      state     output\n";
        for c in &self.cells {
            let out = match &c.work {
                Work::Upstream { checkpoint, .. } => checkpoint,
                Work::FineTune { record, .. } => record,
            };
            s += &format!(
                "  {:>4}  {:<40}  {:<8}  {}\n",
                c.index,
                c.work.label(),
                if c.complete { "complete" } else { "to do" },
                out.display()
            );
        }
        s
    }
}

/// `path` relative to `out` when inside it.
fn relative(path: &Path, out: &Path) -> PathBuf {
    path.strip_prefix(out)
        .map_or_else(|_| path.to_path_buf(), Path::to_path_buf)
}

/// Whether the records at `jsonl` are complete for `plan` (an error when they were written by
/// another configuration, naming the file).
fn records_complete(jsonl: &Path, plan: &Plan) -> Result<bool> {
    if !jsonl.exists() {
        return Ok(false);
    }
    let r = records::read(jsonl)?;
    match plan.experiment_hashes.get(&r.header.strategy) {
        Some(h) => crate::validate::sweep::folder::check_experiment(jsonl, &r.header, h)?,
        None if r.header.config_hash != plan.config_hash => {
            return Err(Error::Config {
                path: jsonl.to_path_buf(),
                message: format!(
                    "holds a run with another configuration (hash {} vs the plan's {}; the plan.json \
                     predates experiment hashes and compares whole configurations: run `validate \
                     plan` again)",
                    r.header.config_hash, plan.config_hash
                ),
            });
        }
        None => {}
    }
    Ok(crate::validate::sweep::folder::finished(&r, plan.last_step))
}

/// The plan of `run` in `out`, each cell marked complete or not from the files there. Loads
/// the upstream data when it is real (to fingerprint the cached checkpoint's name); writes
/// nothing.
pub fn plan(run: &ValidRun, out: &Path) -> Result<Plan> {
    let config = serde_json::to_value(&run.config).expect("config serialises");
    let mut plan = Plan {
        name: run.config.name.clone(),
        config_hash: records::config_hash(&config),
        experiment_hashes: run
            .strategies
            .iter()
            .map(|s| (s.id().to_string(), records::experiment_hash(&config, Some(s.id()))))
            .collect(),
        last_step: *run.eval_steps.last().expect("validated non-empty"),
        cells: Vec::new(),
    };
    let (checkpoint, up_done) = crate::validate::sweep::upstream::upstream_checkpoint(run, out)?;
    // A configured checkpoint is named relative to where `validate` runs: keep it absolute, so
    // the plan means the same from anywhere (`status` reads it against the run folder).
    let checkpoint = match run.config.checkpoint {
        Some(_) => std::path::absolute(&checkpoint).map_err(|e| Error::io(&checkpoint, e))?,
        None => checkpoint,
    };
    plan.cells.push(Cell {
        index: 0,
        work: Work::Upstream {
            checkpoint: relative(&checkpoint, out),
            configured: run.config.checkpoint.is_some(),
        },
        complete: up_done,
    });
    for d in &run.config.datasets {
        for &seed in &run.config.seeds {
            for &strategy in &run.strategies {
                let jsonl = run_paths(out, &d.name, strategy, seed).0;
                let complete = records_complete(&jsonl, &plan)?;
                plan.cells.push(Cell {
                    index: plan.cells.len(),
                    complete,
                    work: Work::FineTune {
                        dataset: d.name.clone(),
                        strategy,
                        seed,
                        record: relative(&jsonl, out),
                    },
                });
            }
        }
    }
    Ok(plan)
}

/// Writes `out/plan.json` (atomically; creates `out`).
pub fn write_plan(plan: &Plan, out: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let path = out.join(PLAN_FILE);
    crate::io::write_atomic(
        &path,
        serde_json::to_string_pretty(plan).expect("serialises").as_bytes(),
    )?;
    Ok(path)
}

/// Reads `dir/plan.json`; an error naming the file and what writes it when it is missing.
pub fn read_plan(dir: &Path) -> Result<Plan> {
    let path = dir.join(PLAN_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::Config {
        path: path.clone(),
        message: format!(
            "cannot read the sweep's plan ({e}); `validate plan`, `validate slurm` and `validate run` write it"
        ),
    })?;
    serde_json::from_str(&text).map_err(|e| Error::Config {
        path,
        message: format!("not a plan written by `validate plan` ({e})"),
    })
}

/// Where one cell stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Output complete.
    Done,
    /// A live process holds the cell's lock.
    Running,
    /// Started (records or checkpoint written) but nobody runs it: killed, cancelled,
    /// preempted or failed; it resumes from its checkpoint when run again.
    Stopped,
    /// Not started.
    Missing,
}

/// Whether a live process runs `cell` in `dir` now (holds its lock).
pub fn is_running(dir: &Path, cell: &Cell) -> bool {
    match &cell.work {
        Work::Upstream { .. } => is_held(&dir.join("upstream").join(LOCK_FILE)),
        Work::FineTune { record, .. } => is_held(&cell_lock_path(&dir.join(record))),
    }
}

/// The state of every cell of the sweep in `dir`, from `dir/plan.json`, the records and the
/// cell locks alone.
pub fn status(dir: &Path) -> Result<Vec<(Cell, State)>> {
    let plan = read_plan(dir)?;
    let mut out = Vec::with_capacity(plan.cells.len());
    for c in &plan.cells {
        let (done, started) = match &c.work {
            Work::Upstream { checkpoint, configured } => {
                let path = dir.join(checkpoint);
                let sidecar = *configured || path.with_extension("json").exists();
                (path.exists() && sidecar, false)
            }
            Work::FineTune { record, .. } => {
                let jsonl = dir.join(record);
                (records_complete(&jsonl, &plan)?, jsonl.exists())
            }
        };
        let state = if done {
            State::Done
        } else if is_running(dir, c) {
            State::Running
        } else if started {
            State::Stopped
        } else {
            State::Missing
        };
        out.push((c.clone(), state));
    }
    Ok(out)
}

/// `validate status`: counts per dataset and strategy (done / running / stopped / missing over
/// the seeds), the upstream cell's state, the totals, and the indices of the cells not done.
pub fn status_table(dir: &Path) -> Result<String> {
    let cells = status(dir)?;
    let count = |s: State, of: &[&(Cell, State)]| of.iter().filter(|(_, x)| *x == s).count();
    let mut s = String::new();
    if let Some((_, st)) = cells.iter().find(|(c, _)| matches!(c.work, Work::Upstream { .. })) {
        s += &format!(
            "upstream: {}\n",
            serde_json::to_value(st).expect("serialises").as_str().unwrap_or("?")
        );
    }
    s += "| dataset | strategy | done | running | stopped | missing |\n|---|---|---|---|---|---|\n";
    let mut groups: Vec<(String, Strategy)> = Vec::new();
    for (c, _) in &cells {
        if let Work::FineTune { dataset, strategy, .. } = &c.work
            && !groups.contains(&(dataset.clone(), *strategy))
        {
            groups.push((dataset.clone(), *strategy));
        }
    }
    for (d, st) in &groups {
        let of: Vec<&(Cell, State)> = cells
            .iter()
            .filter(
                |(c, _)| matches!(&c.work, Work::FineTune { dataset, strategy, .. } if dataset == d && strategy == st),
            )
            .collect();
        s += &format!(
            "| {d} | {} | {} | {} | {} | {} |\n",
            st.id(),
            count(State::Done, &of),
            count(State::Running, &of),
            count(State::Stopped, &of),
            count(State::Missing, &of)
        );
    }
    let all: Vec<&(Cell, State)> = cells.iter().collect();
    s += &format!(
        "cells: {} done, {} running, {} stopped, {} missing of {}\n",
        count(State::Done, &all),
        count(State::Running, &all),
        count(State::Stopped, &all),
        count(State::Missing, &all),
        all.len()
    );
    let todo: Vec<String> = cells
        .iter()
        .filter(|(_, st)| *st != State::Done)
        .map(|(c, _)| c.index.to_string())
        .collect();
    if !todo.is_empty() {
        s += &format!("not done: cells {}\n", todo.join(","));
    }
    Ok(s)
}
