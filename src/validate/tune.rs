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

use super::ValidRun;
use super::data::prepare;
use super::runner::{Trainer, bar, fine_tune_model};
use super::upstream::upstream;
use crate::engine::data::Dataset;
use crate::engine::eval::clean_counts;
use crate::engine::peft::Strategy;
use crate::engine::train::AdamW;
use crate::error::{Error, Result};
use crate::plot::write_atomic;
use crate::tradeoff::wilson;

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

/// Fine-tunes one (dataset, strategy, lr) for `steps` and measures validation accuracy.
#[allow(clippy::too_many_arguments)]
fn cell(
    run: &ValidRun,
    ckpt: &Path,
    (train, val): (&Dataset, &Dataset),
    name: &str,
    strategy: Strategy,
    lr: f64,
    steps: usize,
    spec: &TuneSpec,
    device: &Device,
    quiet: bool,
) -> Result<TuneCell> {
    let model = fine_tune_model(run, ckpt, strategy, train.classes, device, spec.seed)?;
    let mut tc = run.optimiser(strategy);
    tc.lr = lr;
    tc.total_steps = steps;
    let mut opt = AdamW::new(model.trainable().to_vec(), tc)?;
    let mut trainer = Trainer::new(&model, train, spec.seed, run.raw.batch_size)?;
    let pb = bar(steps as u64, &format!("{name}/{}/lr {lr:e}", strategy.id()), quiet);
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

/// Runs (or resumes) the sweep into `out/tune/` and returns the Markdown summary. Holds `out`'s
/// [lock](super::lock::RunLock), as a run does (both write the upstream cache).
pub fn tune(run: &ValidRun, out: &Path, spec: &TuneSpec, device: &Device, quiet: bool) -> Result<String> {
    spec.validate().map_err(Error::refused)?;
    super::check_inputs(run)?;
    let _lock = super::lock::RunLock::acquire(out)?;
    let dir = out.join("tune");
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let log = dir.join("cells.jsonl");
    let mut done: Vec<TuneCell> = match std::fs::read_to_string(&log) {
        Ok(text) => text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .enumerate()
            .map(|(i, l)| {
                serde_json::from_str(l).map_err(|e| Error::Config {
                    path: log.clone(),
                    message: format!("line {}: not a sweep cell ({e})", i + 1),
                })
            })
            .collect::<Result<Vec<_>>>()?,
        Err(_) => Vec::new(),
    };
    let up = upstream(run, out, device, quiet)?;
    let max = run.raw.max_steps;
    let mut datasets = Vec::new();
    for (i, (d, ood)) in run.raw.datasets.iter().zip(&run.ood).enumerate() {
        let key = format!("datasets[{i}].");
        let p = prepare(d, ood, run.model.image_size, run.raw.eval_subset, spec.seed, &key)?;
        let (train, val) = carve(&p.train, spec.val_images, spec.seed)?;
        datasets.push((d.name.clone(), train, val));
    }
    let save = |done: &Vec<TuneCell>| -> Result<()> {
        let text: String = done
            .iter()
            .map(|c| serde_json::to_string(c).expect("serialises") + "\n")
            .collect();
        write_atomic(&log, text.as_bytes())
    };
    // Runs every (strategy, lr, steps) job not yet in the log, on every dataset.
    let fill = |done: &mut Vec<TuneCell>, jobs: &[(Strategy, f64, usize)]| -> Result<()> {
        for &(s, lr, steps) in jobs {
            for (name, train, val) in &datasets {
                if find(done, name, s, lr, steps).is_none() {
                    done.push(cell(
                        run,
                        &up.path,
                        (train, val),
                        name,
                        s,
                        lr,
                        steps,
                        spec,
                        device,
                        quiet,
                    )?);
                    save(done)?;
                }
            }
        }
        Ok(())
    };
    let sweep: Vec<(Strategy, f64, usize)> = run
        .strategies
        .iter()
        .flat_map(|&s| spec.lrs.iter().map(move |&lr| (s, lr, max)))
        .collect();
    fill(&mut done, &sweep)?;
    // Choice: the best mean validation accuracy over datasets (ties: the smaller rate).
    let mut chosen: BTreeMap<Strategy, f64> = BTreeMap::new();
    for &s in &run.strategies {
        let mean = |lr: f64| {
            let v: Vec<f64> = datasets
                .iter()
                .filter_map(|(n, _, _)| find(&done, n, s, lr, max).map(|c| c.val_acc))
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
    // Plateau check at twice the steps.
    let plateau: Vec<(Strategy, f64, usize)> = chosen.iter().map(|(&s, &lr)| (s, lr, 2 * max)).collect();
    fill(&mut done, &plateau)?;
    let md = render(
        run,
        spec,
        &done,
        &chosen,
        &datasets.iter().map(|d| d.0.clone()).collect::<Vec<_>>(),
    )?;
    write_atomic(&dir.join("tune.md"), md.as_bytes())?;
    Ok(md)
}

fn render(
    run: &ValidRun,
    spec: &TuneSpec,
    done: &[TuneCell],
    chosen: &BTreeMap<Strategy, f64>,
    names: &[String],
) -> Result<String> {
    let max = run.raw.max_steps;
    let get = |d: &str, s: Strategy, lr: f64, steps: usize| find(done, d, s, lr, steps);
    let mut md = format!(
        "# Learning-rate sweep ({}: {} steps, batch {}, {} validation images carved from each dataset's training images, seed {})\n\n\
         Validation clean accuracy after `max_steps` per peak learning rate (AdamW, cosine schedule, warm-up as configured); \
         the chosen rate (bold) maximises the mean over datasets.\n\n| strategy | dataset |",
        run.raw.name, max, run.raw.batch_size, spec.val_images, spec.seed
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
                let v = get(d, s, lr, max).map_or("-".into(), |c| format!("{:.3}", c.val_acc));
                let _ = if lr == best {
                    write!(md, " **{v}** |")
                } else {
                    write!(md, " {v} |")
                };
            }
            md.push('\n');
        }
    }
    md.push_str(&format!(
        "\n## Plateau check: the chosen rate trained for {} steps instead of {max}\n\n\
         | strategy | dataset | val acc at {max} | at {} | gain | 95% half-width | verdict |\n|---|---|---|---|---|---|---|\n",
        2 * max,
        2 * max
    ));
    let mut short = Vec::new();
    for (&s, &lr) in chosen {
        for d in names {
            if let (Some(a), Some(b)) = (get(d, s, lr, max), get(d, s, lr, 2 * max)) {
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
    md.push_str("\n## Paste into the run configuration\n\n```toml\n[optimizer]\nlr = { ");
    let parts: Vec<String> = chosen.iter().map(|(s, lr)| format!("{} = {lr:e}", s.id())).collect();
    md.push_str(&parts.join(", "));
    md.push_str(" }\n");
    if let super::spec::OptimizerSpec::Custom(t) = &run.raw.optimizer {
        let _ = writeln!(md, "warmup_steps = {}", t.warmup_steps);
        if t.weight_decay > 0.0 {
            let _ = writeln!(md, "weight_decay = {}", t.weight_decay);
        }
    }
    md.push_str("```\n");
    Ok(md)
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
