//! `validate tune`: the learning-rate sweep behind an `[optimizer]` table. For every dataset
//! and strategy of a run configuration and every candidate peak learning rate, fine-tune for
//! `max_steps` (same model, head, batch size, warm-up and cosine schedule as the run) on the
//! training images minus a validation split carved from them, and measure clean accuracy on
//! that split — never on test images. The chosen rate per strategy maximises the mean validation
//! accuracy over the datasets. A plateau check then trains the chosen rate for twice as many
//! steps: if validation accuracy gains more than its Wilson 95% half-width, `max_steps` is too
//! short for that strategy and the table says so.
//!
//! Cells are appended to `DIR/tune/cells.jsonl` as they finish, so a killed sweep resumes;
//! `DIR/tune/tune.md` holds the table, the choice and the `[optimizer]` snippet to paste.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use candle_core::Device;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::engine::data::Dataset;
use crate::engine::eval::clean_counts;
use crate::engine::peft::Strategy;
use crate::engine::train::AdamW;
use crate::error::{Error, Result};
use crate::io::write_atomic;
use crate::progress::bar;
use crate::tradeoff::wilson;
use crate::validate::ValidRun;
use crate::validate::sweep::data::prepare;
use crate::validate::sweep::runner::{Trainer, fine_tune_model};
use crate::validate::sweep::upstream::upstream;

/// The default candidate learning rates (half-decades around AdamW's usual range).
pub const DEFAULT_LRS: [f64; 6] = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2];

/// One finished cell of the sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TuneCell {
    /// Dataset name.
    pub dataset: String,
    /// Strategy id.
    pub strategy: String,
    /// Peak learning rate.
    pub lr: f64,
    /// Optimiser steps trained.
    pub steps: usize,
    /// Clean accuracy on the validation split.
    pub val_acc: f64,
    /// Validation images.
    pub val_n: usize,
    /// Mean training loss over the last 10% of steps.
    pub final_loss: f64,
}

/// Settings of a sweep.
#[derive(Debug, Clone)]
pub struct TuneSpec {
    /// Candidate peak learning rates.
    pub lrs: Vec<f64>,
    /// Validation images carved from each dataset's training images.
    pub val_images: usize,
    /// Seed of the split, the head and the batch order.
    pub seed: u64,
}

impl TuneSpec {
    /// Positive, finite learning rates and at least one validation image; errors name the flag.
    pub fn validate(&self) -> Result<()> {
        if self.lrs.is_empty() || self.lrs.iter().any(|l| !(l.is_finite() && *l > 0.0)) {
            return Err(Error::invalid(
                "--lrs",
                "positive learning rates",
                format!("{:?}", self.lrs),
            ));
        }
        if self.val_images == 0 {
            return Err(Error::invalid("--val-images", "must be >= 1", 0));
        }
        Ok(())
    }
}

/// The finished cell of (dataset, strategy, lr, steps), if any.
fn find<'a>(done: &'a [TuneCell], d: &str, s: Strategy, lr: f64, steps: usize) -> Option<&'a TuneCell> {
    done.iter()
        .find(|c| c.dataset == d && c.strategy == s.id() && c.lr == lr && c.steps == steps)
}

/// Splits a training pool: a seeded shuffle, the first `n` go to validation.
pub fn carve(train: &Dataset, n: usize, seed: u64) -> Result<(Dataset, Dataset)> {
    if n == 0 || n >= train.len() {
        return Err(Error::invalid(
            "--val-images",
            format!("must lie in 1..{} (the training images of the dataset)", train.len()),
            n,
        ));
    }
    let mut ids: Vec<usize> = (0..train.len()).collect();
    ids.shuffle(&mut StdRng::seed_from_u64(crate::seeds::derive(
        seed,
        crate::seeds::Stream::TuneSplit,
    )));
    let (val, rest) = ids.split_at(n);
    let (mut val, mut rest) = (val.to_vec(), rest.to_vec());
    val.sort_unstable();
    rest.sort_unstable();
    Ok((train.subset(&rest), train.subset(&val)))
}

/// One dataset of the sweep: its training images minus the validation split, and the split.
struct TuneSplit {
    /// Dataset name.
    name: String,
    /// Training images left after the split.
    train: Dataset,
    /// The validation split.
    val: Dataset,
}

/// One job of the sweep: a strategy trained at a peak learning rate for a number of steps.
#[derive(Debug, Clone, Copy)]
struct Job {
    /// Strategy.
    strategy: Strategy,
    /// Peak learning rate.
    lr: f64,
    /// Optimiser steps.
    steps: usize,
}

/// What every cell of one sweep shares: the run, the upstream checkpoint, the datasets and the log.
struct Sweep<'a> {
    /// The run configuration.
    run: &'a ValidRun,
    /// The upstream checkpoint fine-tuning starts from.
    ckpt: &'a Path,
    /// Settings of the sweep.
    spec: &'a TuneSpec,
    /// Device to train on.
    device: &'a Device,
    /// No progress bars.
    quiet: bool,
    /// `DIR/tune/cells.jsonl`.
    log: &'a Path,
    /// The datasets, split.
    datasets: &'a [TuneSplit],
}

impl Sweep<'_> {
    /// Fine-tunes one job on one dataset and measures validation accuracy.
    fn cell(&self, d: &TuneSplit, job: Job) -> Result<TuneCell> {
        let (run, spec, device) = (self.run, self.spec, self.device);
        let Job { strategy, lr, steps } = job;
        let (train, val, name) = (&d.train, &d.val, d.name.as_str());
        let model = fine_tune_model(run, self.ckpt, strategy, train.classes, device, spec.seed)?;
        let mut tc = run.optimiser(strategy);
        tc.lr = lr;
        tc.total_steps = steps;
        let mut opt = AdamW::new(model.trainable().to_vec(), tc)?;
        let mut trainer = Trainer::new(&model, train, spec.seed, run.config.batch_size)?.with_training(run.training);
        let pb = bar(steps as u64, &format!("{name}/{}/lr {lr:e}", strategy.id()), self.quiet);
        let mut losses = Vec::with_capacity(steps);
        for step in 0..steps {
            losses.push(trainer.step(&mut opt, step as u64)?);
            pb.inc(1);
        }
        pb.finish_and_clear();
        let ids: Vec<usize> = (0..val.len()).collect();
        let c = clean_counts(&model, val, &ids, 256, device)?;
        let tail = (steps / 10).max(1);
        Ok(TuneCell {
            dataset: name.into(),
            strategy: strategy.id().into(),
            lr,
            steps,
            val_acc: c.clean as f64 / c.n as f64,
            val_n: c.n,
            final_loss: losses.iter().rev().take(tail).sum::<f64>() / tail as f64,
        })
    }

    /// Rewrites the log with every finished cell.
    fn save(&self, done: &[TuneCell]) -> Result<()> {
        let text: String = done
            .iter()
            .map(|c| serde_json::to_string(c).expect("serialises") + "\n")
            .collect();
        write_atomic(self.log, text.as_bytes())
    }

    /// Runs every job not yet in the log, on every dataset, saving after each cell.
    fn fill(&self, done: &mut Vec<TuneCell>, jobs: &[Job]) -> Result<()> {
        for &job in jobs {
            for d in self.datasets {
                if find(done, &d.name, job.strategy, job.lr, job.steps).is_none() {
                    done.push(self.cell(d, job)?);
                    self.save(done)?;
                }
            }
        }
        Ok(())
    }
}

/// The cells already in the log (none if it cannot be read); a line that is not a cell is an error.
fn read_log(log: &Path) -> Result<Vec<TuneCell>> {
    Ok(match std::fs::read_to_string(log) {
        Ok(text) => text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .enumerate()
            .map(|(i, l)| {
                serde_json::from_str(l).map_err(|e| Error::Config {
                    path: log.to_path_buf(),
                    message: format!("line {}: not a sweep cell ({e})", i + 1),
                })
            })
            .collect::<Result<Vec<_>>>()?,
        Err(_) => Vec::new(),
    })
}

/// Every dataset of the run, prepared and split into training and validation images.
fn split_datasets(run: &ValidRun, spec: &TuneSpec) -> Result<Vec<TuneSplit>> {
    let mut datasets = Vec::new();
    for (i, (d, ood)) in run.config.datasets.iter().zip(&run.ood).enumerate() {
        let key = format!("datasets[{i}].");
        let p = prepare(d, ood, run.model.image_size, run.config.eval_subset, spec.seed, &key)?;
        let (train, val) = carve(&p.train, spec.val_images, spec.seed)?;
        datasets.push(TuneSplit {
            name: d.name.clone(),
            train,
            val,
        });
    }
    Ok(datasets)
}

/// Choice per strategy: the best mean validation accuracy over datasets after `max` steps (ties:
/// the smaller rate).
fn choose(run: &ValidRun, spec: &TuneSpec, done: &[TuneCell], datasets: &[TuneSplit]) -> BTreeMap<Strategy, f64> {
    let max = run.config.max_steps;
    let mut chosen: BTreeMap<Strategy, f64> = BTreeMap::new();
    for &s in &run.strategies {
        let mean = |lr: f64| {
            let v: Vec<f64> = datasets
                .iter()
                .filter_map(|d| find(done, &d.name, s, lr, max).map(|c| c.val_acc))
                .collect();
            v.iter().sum::<f64>() / v.len().max(1) as f64
        };
        let best = spec
            .lrs
            .iter()
            .copied()
            .fold(spec.lrs[0], |b, lr| if mean(lr) > mean(b) { lr } else { b });
        chosen.insert(s, best);
    }
    chosen
}

/// Runs (or resumes) the sweep into `out/tune/` and returns the Markdown summary. Holds `out`'s
/// [lock](crate::io::lock::RunLock), as a run does (both write the upstream cache).
pub fn tune(run: &ValidRun, out: &Path, spec: &TuneSpec, device: &Device, quiet: bool) -> Result<String> {
    spec.validate().map_err(Error::refused)?;
    crate::validate::sweep::inputs::check_inputs(run)?;
    let _lock = crate::io::lock::RunLock::acquire(out)?;
    let dir = out.join("tune");
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let log = dir.join("cells.jsonl");
    let mut done = read_log(&log)?;
    let up = upstream(run, out, device, quiet)?;
    let max = run.config.max_steps;
    let datasets = split_datasets(run, spec)?;
    let sweep = Sweep {
        run,
        ckpt: &up.path,
        spec,
        device,
        quiet,
        log: &log,
        datasets: &datasets,
    };
    let jobs: Vec<Job> = run
        .strategies
        .iter()
        .flat_map(|&strategy| {
            spec.lrs.iter().map(move |&lr| Job {
                strategy,
                lr,
                steps: max,
            })
        })
        .collect();
    sweep.fill(&mut done, &jobs)?;
    let chosen = choose(run, spec, &done, &datasets);
    // Plateau check at twice the steps.
    let plateau: Vec<Job> = chosen
        .iter()
        .map(|(&strategy, &lr)| Job {
            strategy,
            lr,
            steps: 2 * max,
        })
        .collect();
    sweep.fill(&mut done, &plateau)?;
    let md = render(
        run,
        spec,
        &done,
        &chosen,
        &datasets.iter().map(|d| d.name.clone()).collect::<Vec<_>>(),
    )?;
    write_atomic(&dir.join("tune.md"), md.as_bytes())?;
    Ok(md)
}

/// `tune.md`: the sweep table, the plateau check, the edge warning and the snippet to paste.
fn render(
    run: &ValidRun,
    spec: &TuneSpec,
    done: &[TuneCell],
    chosen: &BTreeMap<Strategy, f64>,
    names: &[String],
) -> Result<String> {
    let mut md = sweep_table(run, spec, done, chosen, names);
    plateau_table(&mut md, run, done, chosen, names)?;
    edge_note(&mut md, spec, chosen);
    paste_snippet(&mut md, run, chosen);
    Ok(md)
}

/// The heading and the table of validation accuracy per strategy, dataset and rate (chosen in bold).
fn sweep_table(
    run: &ValidRun,
    spec: &TuneSpec,
    done: &[TuneCell],
    chosen: &BTreeMap<Strategy, f64>,
    names: &[String],
) -> String {
    let max = run.config.max_steps;
    let mut md = format!(
        "# Learning-rate sweep ({}: {} steps, batch {}, {} validation images carved from each dataset's training images, seed {})\n\n\
         Validation clean accuracy after `max_steps` per peak learning rate (AdamW, cosine schedule, warm-up as configured); \
         the chosen rate (bold) maximises the mean over datasets.\n\n| strategy | dataset |",
        run.config.name, max, run.config.batch_size, spec.val_images, spec.seed
    );
    for lr in &spec.lrs {
        let _ = write!(md, " {lr:e} |");
    }
    md.push_str("\n|---|---|");
    md.push_str(&"---|".repeat(spec.lrs.len()));
    md.push('\n');
    for (&s, &best) in chosen {
        for d in names {
            let _ = write!(md, "| {} | {d} |", s.name());
            for &lr in &spec.lrs {
                let v = find(done, d, s, lr, max).map_or("-".into(), |c| format!("{:.3}", c.val_acc));
                let _ = if lr == best {
                    write!(md, " **{v}** |")
                } else {
                    write!(md, " {v} |")
                };
            }
            md.push('\n');
        }
    }
    md
}

/// The plateau check: the chosen rate at `max_steps` against twice as many, and which still gain.
fn plateau_table(
    md: &mut String,
    run: &ValidRun,
    done: &[TuneCell],
    chosen: &BTreeMap<Strategy, f64>,
    names: &[String],
) -> Result<()> {
    let max = run.config.max_steps;
    md.push_str(&format!(
        "\n## Plateau check: the chosen rate trained for {} steps instead of {max}\n\n\
         | strategy | dataset | val acc at {max} | at {} | gain | 95% half-width | verdict |\n|---|---|---|---|---|---|---|\n",
        2 * max,
        2 * max
    ));
    let mut short = Vec::new();
    for (&s, &lr) in chosen {
        for d in names {
            if let (Some(a), Some(b)) = (find(done, d, s, lr, max), find(done, d, s, lr, 2 * max)) {
                let ci = wilson((a.val_acc * a.val_n as f64).round() as u64, a.val_n as u64)?;
                let half = (ci.hi - ci.lo) / 2.0;
                let gain = b.val_acc - a.val_acc;
                let ok = gain <= half;
                if !ok {
                    short.push(format!("{}/{d}", s.id()));
                }
                let _ = writeln!(
                    md,
                    "| {} | {d} | {:.3} | {:.3} | {gain:+.3} | {half:.3} | {} |",
                    s.name(),
                    a.val_acc,
                    b.val_acc,
                    if ok { "plateau" } else { "max_steps too short" }
                );
            }
        }
    }
    md.push_str(if short.is_empty() {
        "\nEvery chosen rate has reached its plateau within max_steps.\n"
    } else {
        "\n"
    });
    if !short.is_empty() {
        let _ = writeln!(md, "Still gaining at twice the steps: {}.", short.join(", "));
    }
    Ok(())
}

/// A warning for every rate chosen at the edge of the candidates.
fn edge_note(md: &mut String, spec: &TuneSpec, chosen: &BTreeMap<Strategy, f64>) {
    let (lo, hi) = spec
        .lrs
        .iter()
        .fold((f64::INFINITY, 0.0f64), |(a, b), &l| (a.min(l), b.max(l)));
    let edge: Vec<String> = chosen
        .iter()
        .filter(|(_, lr)| **lr == lo || **lr == hi)
        .map(|(s, lr)| format!("{} ({lr:e})", s.id()))
        .collect();
    if !edge.is_empty() {
        let _ = writeln!(
            md,
            "Chosen at the edge of the candidate rates, so a better rate may lie beyond it: {}.",
            edge.join(", ")
        );
    }
}

/// The `[optimizer]` table to paste into the run configuration.
fn paste_snippet(md: &mut String, run: &ValidRun, chosen: &BTreeMap<Strategy, f64>) {
    md.push_str("\n## Paste into the run configuration\n\n```toml\n[optimizer]\nlr = { ");
    let parts: Vec<String> = chosen.iter().map(|(s, lr)| format!("{} = {lr:e}", s.id())).collect();
    md.push_str(&parts.join(", "));
    md.push_str(" }\n");
    if let crate::validate::sweep::spec::OptimizerSpec::Custom(t) = &run.config.optimizer {
        let _ = writeln!(md, "warmup_steps = {}", t.warmup_steps);
        if t.weight_decay > 0.0 {
            let _ = writeln!(md, "weight_decay = {}", t.weight_decay);
        }
    }
    md.push_str("```\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carve_is_disjoint_deterministic_and_checked() {
        let d = Dataset {
            name: "t".into(),
            images: (0..20).map(|v| v as f32).collect(),
            labels: (0..20).map(|i| i % 2).collect(),
            channels: 1,
            size: 1,
            classes: 2,
        };
        let (tr, va) = carve(&d, 5, 3).unwrap();
        assert_eq!((tr.len(), va.len()), (15, 5));
        let mut all: Vec<f32> = tr.images.iter().chain(&va.images).copied().collect();
        all.sort_by(f32::total_cmp);
        assert_eq!(all, d.images, "every image exactly once");
        assert_eq!(carve(&d, 5, 3).unwrap().1, va);
        assert_ne!(carve(&d, 5, 4).unwrap().1, va);
        for bad in [0, 20] {
            assert!(carve(&d, bad, 3).unwrap_err().to_string().contains("--val-images"));
        }
    }
}
