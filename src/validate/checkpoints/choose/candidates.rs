//! The candidates of the folders given: every evaluated step of every run, and every
//! interpolation weight strictly between 0 and 1 where a folder has `validate interpolate`
//! results (from either head start).

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::validate::checkpoints::choose::Candidate;
use crate::validate::checkpoints::interpolate::HeadStart;
use crate::validate::study::analysis::{describe_training, training_kind};
use crate::validate::sweep::records::{self, RunRecords};

/// Every candidate of the folders, and the runs' radii (the same in every folder, checked).
pub(crate) fn candidates(dirs: &[PathBuf]) -> Result<(Vec<Candidate>, Vec<f64>)> {
    let mut out = Vec::new();
    let mut radii: Option<Vec<f64>> = None;
    for dir in dirs {
        let runs = records::read_folder(dir)?;
        if runs.is_empty() {
            return Err(Error::invalid(
                dir.display().to_string(),
                "a run folder with records",
                "none",
            ));
        }
        let folder = Folder {
            dir,
            training: describe_training(&runs[0].header.config),
            kind: training_kind(&runs[0].header.config).to_string(),
        };
        for r in &runs {
            match &radii {
                None => radii = Some(r.header.eps.clone()),
                Some(e) if *e != r.header.eps => {
                    return Err(Error::invalid(
                        dir.display().to_string(),
                        format!("runs measured at the same radii as the others ({e:?})"),
                        format!("{:?}", r.header.eps),
                    ));
                }
                _ => {}
            }
            folder.trajectory(r, &mut out);
        }
        folder.paths(&runs, &mut out)?;
    }
    Ok((out, radii.unwrap_or_default()))
}

/// One folder given, and how it trained.
struct Folder<'a> {
    dir: &'a PathBuf,
    /// Its training in words.
    training: String,
    /// Its training's kind.
    kind: String,
}

impl Folder<'_> {
    /// Every evaluated step of run `r` (none when its strategy is unknown to this build).
    fn trajectory(&self, r: &RunRecords, out: &mut Vec<Candidate>) {
        let Ok(strategy) = crate::engine::peft::parse_strategy(&r.header.strategy) else {
            return;
        };
        for e in &r.evals {
            out.push(Candidate {
                folder: self.dir.clone(),
                training: self.training.clone(),
                kind: self.kind.clone(),
                eval_set: r.header.eval_set.clone(),
                dataset: r.header.dataset.clone(),
                strategy,
                seed: r.header.seed,
                step: e.step,
                alpha: None,
                head_start: HeadStart::Init,
                outcomes: e.outcomes.clone(),
                ood_outcomes: e.ood_outcomes.clone(),
            });
        }
    }

    /// Every interpolation weight strictly between 0 and 1 of the folder's interpolation
    /// results, from each head start that has them (`runs`: the folder's records, which name
    /// each run's evaluation images).
    fn paths(&self, runs: &[RunRecords], out: &mut Vec<Candidate>) -> Result<()> {
        // Per (task, seed): without an `eval_seed` each seed draws its own images.
        let eval_sets: BTreeMap<(String, u64), Option<String>> = runs
            .iter()
            .map(|r| ((r.header.dataset.clone(), r.header.seed), r.header.eval_set.clone()))
            .collect();
        for head_start in [HeadStart::Init, HeadStart::LinearProbe] {
            let Some((_, cells)) = crate::validate::checkpoints::interpolate::load(self.dir, head_start)? else {
                continue;
            };
            for c in cells {
                let Ok(strategy) = crate::engine::peft::parse_strategy(&c.strategy) else {
                    continue;
                };
                let step = c.trajectory.last().and_then(|t| t.step).unwrap_or(0);
                for p in c.path.iter().filter(|p| p.alpha.is_some_and(|a| a > 0.0 && a < 1.0)) {
                    out.push(Candidate {
                        folder: self.dir.clone(),
                        training: self.training.clone(),
                        kind: self.kind.clone(),
                        eval_set: eval_sets.get(&(c.dataset.clone(), c.seed)).cloned().flatten(),
                        dataset: c.dataset.clone(),
                        strategy,
                        seed: c.seed,
                        step,
                        alpha: p.alpha,
                        head_start,
                        outcomes: p.outcomes.clone(),
                        ood_outcomes: p.ood_outcomes.clone(),
                    });
                }
            }
        }
        Ok(())
    }
}
