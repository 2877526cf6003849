//! Scoring one run: its peak and final checkpoints replayed and checked against the records, then
//! attacked by AutoAttack and the probes at each radius, completing the cell the folder holds.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::cell::member_codes;
use super::io::bad_probe;
use super::{GapCell, GapPoint, GapSpec, Probe, ProbeLevels, gap_dir, same_radius};
use crate::engine::Vit;
use crate::engine::eval::{Attack, Levels, robust_levels_from};
use crate::engine::peft::Strategy;
use crate::error::{Error, Result};
use crate::validate::checkpoints::replay::{RunView, cell_path, replay};
use crate::validate::sweep::config::ValidRun;
use crate::validate::sweep::records::{self, RunRecords};
use crate::validate::sweep::runner::DatasetRuns;

/// The index of each spec radius among the run's radii.
pub(super) fn radius_index(run_eps: &[f64], eps: &[f64]) -> Vec<usize> {
    eps.iter()
        .map(|e| run_eps.iter().position(|r| same_radius(*r, *e)).expect("checked"))
        .collect()
}

/// Recorded run levels (radii of the run) → levels over the spec's radii (`idx` their indices).
pub(super) fn to_spec_levels(levels: &[u8], idx: &[usize]) -> String {
    levels
        .iter()
        .map(|&l| {
            if l == 0 {
                '0'
            } else {
                let k = idx.iter().filter(|&&r| l as usize >= r + 2).count();
                char::from(b'1' + k as u8)
            }
        })
        .collect()
}

/// The peak (first step after 0 with the highest PGD robust accuracy at run radius `r`) and
/// final steps of a run, as (step, labels).
fn points_of(recs: &RunRecords, r: usize) -> Vec<(u64, Vec<String>)> {
    let last = recs.evals.last().expect("finished").step;
    let mut best: Option<(f64, u64)> = None;
    for e in recs.evals.iter().filter(|e| e.step > 0) {
        let acc = e.robust.get(r).map_or(f64::NAN, |x| x.acc);
        if best.is_none_or(|(b, _)| acc > b) {
            best = Some((acc, e.step));
        }
    }
    let peak = best.map_or(last, |(_, s)| s);
    if peak == last {
        vec![(last, vec!["peak".into(), "final".into()])]
    } else {
        vec![(peak, vec!["peak".into()]), (last, vec!["final".into()])]
    }
}

/// What [`score`] measures on a run besides what its prior cell holds.
pub(super) struct Todo<'a> {
    /// The index of each gap radius among the run's.
    pub(super) idx: &'a [usize],
    /// Probes to add where the cell lacks them.
    pub(super) probes: &'a [Probe],
    /// The run's cell as the folder holds it, and whether to measure AutoAttack on it again.
    pub(super) prior: Option<(GapCell, bool)>,
}

/// Replays one run (`strategy`, seed) to its peak and final steps and scores both. With a prior
/// cell ([`Todo::prior`]): grown, only the radii after the prior's are attacked, by AutoAttack
/// and by the prior's probes (the members of the earlier ones are kept if it has them); measured
/// again, every radius is attacked and each image's outcome at the prior's radii must be the
/// recorded one; otherwise AutoAttack is not run and only the probes it lacks are scored.
pub(super) fn score(
    run: &ValidRun,
    ctx: &DatasetRuns,
    (strategy, seed): (Strategy, u64),
    out: &Path,
    spec: &GapSpec,
    todo: Todo,
    quiet: bool,
) -> Result<GapCell> {
    let again = todo.prior.as_ref().is_some_and(|p| p.1);
    let prior = todo.prior.map(|p| p.0);
    let view = RunView::read(run, ctx, strategy, seed, out)?;
    let points = points_of(&view.recs, todo.idx[0]);
    let steps: Vec<u64> = points.iter().map(|p| p.0).collect();
    // AutoAttack runs on a new cell, a grown one, or one measured again.
    let attack = prior.as_ref().is_none_or(|p| again || p.eps.len() < spec.eps.len());
    let scoring = Scoring {
        spec,
        idx: todo.idx,
        probes: todo.probes,
        n: spec.n.min(view.eval_ids.len()),
        path: cell_path(&gap_dir(out), &ctx.data.spec.name, strategy, seed),
        points,
        prior,
        again,
        attack,
        ctx,
        view: &view,
        seed,
    };
    scoring.check_prior()?;
    let mut scored = Vec::new();
    replay(run, ctx, &view, strategy, seed, &steps, quiet, |model, target| {
        scored.push(scoring.checkpoint(model, target)?);
        Ok(())
    })?;
    Ok(GapCell {
        dataset: ctx.data.spec.name.clone(),
        strategy: strategy.id().into(),
        seed,
        eps: spec.eps.clone(),
        run_attack: crate::validate::study::analysis::describe_attack(&view.recs.header.config),
        points: scored,
    })
}

/// One run being scored: what is asked, what its cell held, and where the cell lives.
struct Scoring<'a> {
    /// The folder's specification.
    spec: &'a GapSpec,
    /// The index of each gap radius among the run's.
    idx: &'a [usize],
    /// Probes to add where the cell lacks them.
    probes: &'a [Probe],
    /// Images per checkpoint (the spec's n, at most the run's evaluation images).
    n: usize,
    /// The cell's file.
    path: PathBuf,
    /// The checkpoints to score, as (step, labels).
    points: Vec<(u64, Vec<String>)>,
    /// The run's cell as the folder holds it.
    prior: Option<GapCell>,
    /// Whether AutoAttack is measured again on `prior` (to record its members).
    again: bool,
    /// Whether AutoAttack runs at all: on a new cell, a grown one, or one measured again.
    attack: bool,
    /// The run's dataset and device.
    ctx: &'a DatasetRuns<'a>,
    /// The run's records and evaluation images.
    view: &'a RunView,
    /// The run's seed.
    seed: u64,
}

/// A checkpoint's images under attack: the model, the images and the attack's random seed.
struct Measure<'a> {
    model: &'a Vit,
    ctx: &'a DatasetRuns<'a>,
    ids: &'a [usize],
    seed: u64,
}

impl Measure<'_> {
    /// The images under `attacks` (one per gap radius), completing `prior`.
    fn levels(&self, attacks: &[Attack], prior: Option<(&[u8], usize)>) -> Result<Levels> {
        let ctx = self.ctx;
        robust_levels_from(
            self.model,
            &ctx.data.test,
            self.ids,
            128,
            attacks,
            self.seed,
            &ctx.device,
            prior,
        )
    }
}

impl Scoring<'_> {
    /// Refuses a prior cell that this run cannot complete: other radii than the folder's first
    /// ones, or other checkpoints or images than the records'.
    fn check_prior(&self) -> Result<()> {
        let Some(p) = &self.prior else {
            return Ok(());
        };
        let (spec, n) = (self.spec, self.n);
        let stale = |what: String| Error::Config {
            path: self.path.clone(),
            message: format!("cannot be completed to the radii asked: {what}; remove it to score the run again"),
        };
        let done = p.eps.len();
        if done == 0 || done > spec.eps.len() || p.eps[..] != spec.eps[..done] {
            return Err(stale(format!("it covers {:?}, the folder {:?}", p.eps, spec.eps)));
        }
        let had: Vec<(u64, &Vec<String>)> = p.points.iter().map(|q| (q.step, &q.which)).collect();
        let want: Vec<(u64, &Vec<String>)> = self.points.iter().map(|q| (q.0, &q.1)).collect();
        if had != want || p.points.iter().any(|q| q.autoattack.len() != n) {
            return Err(stale(format!(
                "its checkpoints or images differ from the records' ({had:?} vs {want:?})"
            )));
        }
        Ok(())
    }

    /// Scores the replayed `model` at step `target`: AutoAttack where it runs (else the prior's
    /// point), then the prior's probes completed to the new radii and the missing ones.
    fn checkpoint(&self, model: &Vit, target: u64) -> Result<GapPoint> {
        let levels = records::decode_digits(&self.view.at(target).outcomes, "outcomes")?;
        let measure = Measure {
            model,
            ctx: self.ctx,
            ids: &self.view.eval_ids[..self.n],
            seed: crate::seeds::attack(self.seed, target),
        };
        let before = self
            .prior
            .as_ref()
            .map(|p| (p, p.points.iter().find(|q| q.step == target).expect("checked")));
        let done = match before {
            Some((p, q)) => Some((records::decode_digits(&q.autoattack, "autoattack")?, p.eps.len())),
            None => None,
        };
        let before = before.map(|(_, q)| q);
        let which = self.points.iter().find(|p| p.0 == target).expect("asked for").1.clone();
        let mut point = match before {
            Some(q) if !self.attack => q.clone(),
            _ => self.autoattack(&measure, (before, &done), (target, which), &levels)?,
        };
        self.complete_probes(&mut point, &measure, &done, target)?;
        Ok(point)
    }

    /// AutoAttack at step `target` (the point labelled `which`, the run's recorded `levels`),
    /// completing the prior's point `before` (its AutoAttack levels and radii `done`) where grown.
    fn autoattack(
        &self,
        measure: &Measure,
        (before, done): (Option<&GapPoint>, &Option<(Vec<u8>, usize)>),
        (target, which): (u64, Vec<String>),
        levels: &[u8],
    ) -> Result<GapPoint> {
        let grown = done.as_ref().filter(|_| !self.again).map(|(l, k)| (&l[..], *k));
        let t = Instant::now();
        let aa = measure.levels(&self.spec.attacks(), grown)?;
        let broken_by = self.members(before, done, &aa, target)?;
        let earlier = before.filter(|_| !self.again).map_or(0.0, |q| q.seconds);
        Ok(GapPoint {
            which,
            step: target,
            verified: self.view.eval_ids.len(),
            pgd: to_spec_levels(&levels[..self.n], self.idx),
            autoattack: records::encode_levels(&aa.levels),
            broken_by,
            seconds: t.elapsed().as_secs_f64() + earlier,
            probes: before.map(|q| q.probes.clone()).unwrap_or_default(),
        })
    }

    /// [`GapPoint::broken_by`] of AutoAttack's outcome `aa` at step `target`: its members on a new
    /// cell; on a grown one, the prior point's members kept where the new radii broke nothing
    /// (none known when the prior has none); measured again, its members once every image's
    /// outcome at the prior's radii (`done`) is the recorded one.
    fn members(
        &self,
        before: Option<&GapPoint>,
        done: &Option<(Vec<u8>, usize)>,
        aa: &Levels,
        target: u64,
    ) -> Result<String> {
        Ok(match (before, self.again) {
            (None, _) => member_codes(&aa.broken_by),
            (Some(q), false) if !q.broken_by.is_empty() => q
                .broken_by
                .bytes()
                .zip(member_codes(&aa.broken_by).bytes())
                .map(|(old, new)| char::from(if new == b'-' { old } else { new }))
                .collect(),
            // Grown from a cell without members: the old radii's are unknown.
            (Some(_), false) => String::new(),
            (Some(_), true) => {
                let (old, k) = done.as_ref().expect("prior");
                let differ = old
                    .iter()
                    .zip(&aa.levels)
                    .filter(|(o, l)| **o != (**l).min(*k as u8 + 1))
                    .count();
                if differ > 0 {
                    let n = self.n;
                    return Err(Error::Config {
                        path: self.path.clone(),
                        message: format!(
                            "measured again at step {target} to record AutoAttack's members, {differ} of {n} images \
                             have another outcome than recorded: not the measurement this folder holds (another \
                             build or device?)"
                        ),
                    });
                }
                member_codes(&aa.broken_by)
            }
        })
    }

    /// Adds to `point` (step `target`) its probes: the prior's completed to the new radii (when
    /// grown past `done`), then those asked that it lacks.
    fn complete_probes(
        &self,
        point: &mut GapPoint,
        measure: &Measure,
        done: &Option<(Vec<u8>, usize)>,
        target: u64,
    ) -> Result<()> {
        let mut probes = Vec::new();
        for k in point.probes.keys() {
            probes.push(Probe::canonical(k).ok_or_else(|| bad_probe(self.path.clone(), k, target, ""))?);
        }
        probes.extend(self.probes.iter().filter(|q| !point.probes.contains_key(&q.key())));
        for probe in probes {
            let had = point.probes.get(&probe.key());
            let prior_levels = match (had, done) {
                (Some(h), Some((_, k))) if *k < self.spec.eps.len() => {
                    Some((records::decode_digits(&h.levels, "probe levels")?, *k))
                }
                (Some(_), _) => continue,
                (None, _) => None,
            };
            let t = Instant::now();
            let lv = measure.levels(
                &probe.attacks(&self.spec.eps),
                prior_levels.as_ref().map(|(l, k)| (&l[..], *k)),
            )?;
            let earlier = had.map_or(0.0, |h| h.seconds);
            point.probes.insert(
                probe.key(),
                ProbeLevels {
                    levels: records::encode_levels(&lv.levels),
                    seconds: t.elapsed().as_secs_f64() + earlier,
                },
            );
        }
        Ok(())
    }
}
