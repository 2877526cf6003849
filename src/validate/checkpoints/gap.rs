//! `validate gap`: by how much the study's PGD overestimated robustness (issue 17's gap report).
//!
//! For every finished run (dataset, strategy, seed) of a run folder, two checkpoints — the
//! **peak**-robustness step (the step after 0 with the highest recorded PGD robust accuracy at the
//! smallest radius asked; the earliest on a tie) and the **final** step — are scored with
//! AutoAttack's standard ensemble (APGD-CE → APGD-T → FAB-T → Square) on the first `n` of the
//! run's own evaluation images, and set against the PGD outcomes the run recorded for those same
//! images. The comparison is paired, image by image.
//!
//! The checkpoints are rebuilt by replaying the run: its records hold per-image outcomes and its
//! training is a pure function of the configuration and the seed, so the fine-tuning is repeated
//! from the same backbone (`upstream/`, re-pretrained deterministically when absent) to each step.
//! Before anything is attacked, the replayed model's clean outcome on **every** evaluation image
//! of the record is compared with the recorded one; any difference (another build, another
//! device) is an error — a gap is never reported for a model other than the one measured.
//!
//! Results, resumable cell by cell (each written atomically): `DIR/gap/spec.json` (radii, n and
//! the attack's budget: a folder holds one specification, whose radii may grow),
//! `DIR/gap/<dataset>/<strategy>/seed<k>.json`, and the summary `DIR/gap/gap.md` + `gap.csv`.
//! `validate verdict` reads them as finding 6.
//!
//! **Adding radii.** A folder's radii may grow: asked again with the same radii plus larger ones
//! (nothing else changed), `validate gap` completes each run's cell — the same checkpoints (the peak
//! is picked at the smallest radius, which stays), replayed and checked again, and AutoAttack at
//! the new radii on the images still robust at the largest old one, with the random streams a
//! single pass over all the radii would use ([`crate::engine::eval::robust_levels_from`]): the result is
//! the one a fresh folder with every radius would hold, and the old radii are not attacked again.
//! Each cell records the radii it covers; with `--seeds`, some cells may cover fewer radii than
//! the folder, and each radius's rows then pool the seeds that cover it (the summary says which).
//!
//! **Members.** Each point records, per image, the AutoAttack member that broke it at the radius
//! where it fell ([`GapPoint::broken_by`]), and the summary counts them per strategy
//! ([`MemberRow`]): among the images PGD left robust that AutoAttack broke — APGD-CE (PGD's loss
//! with a larger, adaptive budget), APGD-T (another loss), FAB-T (a boundary search) or Square
//! (no gradient at all) — and among every image AutoAttack broke. Cells written before members
//! were recorded are measured again with [`GapSelect::attribute`], and must reproduce their
//! recorded outcome on every image.
//!
//! **Probes.** PGD variants ([`Probe`]: `--probe pgd:100:1/4` is PGD-100 with α = ε/4) and
//! APGD-CE alone (`--probe apgd-ce:15`) scored beside AutoAttack at the same checkpoints, images and radii ([`GapPoint::probes`]) say *why*
//! the run's PGD missed a point AutoAttack broke: more iterations at the run's step size, a
//! larger step at the run's budget, APGD's algorithm, or — the run's own steps and α from another
//! random start — chance. The summary counts, per strategy, how many of the points PGD missed each probe
//! breaks, by the AutoAttack member that broke them ([`ProbeRow`]), and pooled over the
//! strategies ([`ALL_STRATEGIES`]); each row's McNemar p is adjusted for the table (Holm, and
//! the Benjamini–Hochberg q: [`crate::tradeoff::stats::holm`]). Probes recorded on the same
//! points are also set against each other, every strategy pooled ([`PairRow`]: two-sided exact
//! McNemar, Holm over the pair table; `probe-pairs.csv`). A probe asked for on a
//! finished cell is measured alone (AutoAttack is not run again); a grown cell completes its
//! probes at the new radii as it completes AutoAttack.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::Device;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use crate::engine::attack::{ApgdConfig, ApgdLoss, AutoAttackConfig, PgdConfig, StopRule};
use crate::engine::eval::{Attack, robust_levels_from};
use crate::engine::peft::{Strategy, parse_strategy};
use crate::error::{Error, Result};
use crate::io::write_atomic;
use crate::tradeoff::Interval;
use crate::tradeoff::bootstrap::{percentile_interval, resample_indices};
use crate::tradeoff::stats::{benjamini_hochberg, holm, sign_test_two_sided, sign_test_upper, spearman, wilson};
use crate::validate::checkpoints::replay::{
    RunView, cell_path, check_spec_or, for_each_run, load_results, replay, selected_datasets, selected_seeds,
    selected_strategies,
};
use crate::validate::sweep::config::ValidRun;
use crate::validate::sweep::records::{self, RunRecords};
use crate::validate::sweep::runner::{self, DatasetRuns};

/// What a gap folder measures (`DIR/gap/spec.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GapSpec {
    /// Radii, increasing; each one of the run's radii (PGD's outcomes come from its records).
    pub eps: Vec<f64>,
    /// Images per checkpoint: the first n of each run's evaluation images.
    pub n: usize,
    /// AutoAttack's iterations (APGD, FAB), target classes and Square queries.
    pub steps: usize,
    /// See `steps`.
    pub targets: usize,
    /// See `steps`.
    pub queries: usize,
}

impl GapSpec {
    /// Whether `new` completes this specification: the same images and budget, these radii
    /// followed by larger ones.
    pub fn grows_into(&self, new: &GapSpec) -> bool {
        (self.n, self.steps, self.targets, self.queries) == (new.n, new.steps, new.targets, new.queries)
            && self.eps.len() < new.eps.len()
            && new.eps[..self.eps.len()] == self.eps[..]
    }

    /// AutoAttack at each radius.
    fn attacks(&self) -> Vec<Attack> {
        self.eps
            .iter()
            .map(|&eps| {
                Attack::AutoAttack(AutoAttackConfig {
                    eps,
                    steps: self.steps,
                    targets: self.targets,
                    square_queries: self.queries,
                })
            })
            .collect()
    }
}

/// One scored checkpoint of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GapPoint {
    /// `peak`, `final`, or both when the peak is the last step.
    pub which: Vec<String>,
    /// Optimiser steps.
    pub step: u64,
    /// Evaluation images whose replayed clean outcome was checked against the record (all).
    pub verified: usize,
    /// Per image (the first n), one digit: 0 = misclassified clean, 1 + k = robust at the k
    /// smallest radii of the cell's `eps` — under the run's own attack, from its records.
    pub pgd: String,
    /// The same under AutoAttack, measured here.
    pub autoattack: String,
    /// Per image, the AutoAttack member that broke it, at the radius where it fell: `c` APGD-CE,
    /// `t` APGD-T, `f` FAB-T, `s` Square ([`MEMBER_CODES`]); `-` where none did (misclassified
    /// clean, or robust at every radius of the cell). Empty in cells measured before members
    /// were recorded (`validate gap --attribute` measures them again).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub broken_by: String,
    /// AutoAttack's wall time, seconds.
    pub seconds: f64,
    /// Per probe ([`Probe::key`]), its levels on the same images and radii (the digits of
    /// `autoattack`), and its wall time.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub probes: BTreeMap<String, ProbeLevels>,
}

/// A probe's outcome at one checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeLevels {
    /// Per image, as [`GapPoint::autoattack`].
    pub levels: String,
    /// Wall time, seconds.
    pub seconds: f64,
}

/// An attack scored beside AutoAttack (`--probe`): a PGD variant (`pgd:STEPS:ALPHA`, ALPHA a
/// fraction of ε: `pgd:100:1/4` is 100 steps of size ε/4 at every radius; `pgd:15:2` 15 steps of
/// size 2ε) — random start, early exit, cross-entropy, the run's PGD with another budget — or
/// APGD-CE at a given iteration count (`apgd-ce:STEPS`: AutoAttack's first member, Croce & Hein
/// 2020 Algorithm 1, with its adaptive step size from 2ε, momentum and restarts from the best
/// point; `apgd-ce:15` is APGD at the run's PGD-15 budget). A PGD probe's random start is drawn
/// as the run's evaluation draws it, per batch of 128 and per index among the gap's radii: when
/// those are all of the run's radii, the run's own steps and α reproduce the run's record
/// (tested); when they are a later subset (4/255 and 8/255 of 1–8/255), the start is another
/// one, and the run's own steps and α measure what a second random start alone catches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Probe {
    /// Iterations.
    pub steps: usize,
    /// The step size.
    pub step: ProbeStep,
}

/// How a [`Probe`] sizes its steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ProbeStep {
    /// PGD with α = ε·num/den, a reduced fraction.
    Fixed {
        /// Numerator.
        num: u64,
        /// Denominator.
        den: u64,
    },
    /// APGD-CE's adaptive step size.
    ApgdCe,
}

impl Probe {
    /// Parses `pgd:STEPS:ALPHA` (ALPHA `N` or `N/D`, a multiple of ε) or `apgd-ce:STEPS`. Errors
    /// name `--probe`.
    pub fn parse(text: &str) -> Result<Probe> {
        let bad = |why: &str| {
            Error::invalid(
                "--probe",
                format!(
                    "{why}; give pgd:STEPS:ALPHA, ALPHA a fraction of ε (pgd:100:1/4 is PGD-100 with α = ε/4), or \
                     apgd-ce:STEPS"
                ),
                text,
            )
            .refused()
        };
        let whole = |v: &str| v.trim().parse::<u64>().ok().filter(|&v| v >= 1);
        let fields = text.trim().split(':').collect::<Vec<_>>();
        let steps = |v: &str| {
            whole(v)
                .ok_or_else(|| bad("STEPS must be a whole number >= 1"))
                .map(|v| v as usize)
        };
        match fields[..] {
            ["apgd-ce", n] => Ok(Probe {
                steps: steps(n)?,
                step: ProbeStep::ApgdCe,
            }),
            ["apgd-ce", ..] => Err(bad("two fields separated by ':' for APGD-CE")),
            ["pgd", n, alpha] => {
                let steps = steps(n)?;
                let (num, den) = match alpha.split_once('/') {
                    Some((a, b)) => (whole(a), whole(b)),
                    None => (whole(alpha), Some(1)),
                };
                let (Some(num), Some(den)) = (num, den) else {
                    return Err(bad("ALPHA must be N or N/D with whole N, D >= 1"));
                };
                let g = gcd(num, den);
                Ok(Probe {
                    steps,
                    step: ProbeStep::Fixed {
                        num: num / g,
                        den: den / g,
                    },
                })
            }
            ["pgd", ..] => Err(bad("three fields separated by ':' for PGD")),
            _ => Err(bad("only PGD and APGD-CE probes (pgd:…, apgd-ce:…)")),
        }
    }

    /// The probe a [`GapPoint::probes`] key names, when the key is its canonical text.
    pub fn canonical(key: &str) -> Option<Probe> {
        Probe::parse(key).ok().filter(|p| p.key() == key)
    }

    /// The canonical text (`pgd:100:1/4`, `pgd:15:1`, `apgd-ce:15`): the key in
    /// [`GapPoint::probes`].
    pub fn key(&self) -> String {
        match self.step {
            ProbeStep::Fixed { num, den: 1 } => format!("pgd:{}:{num}", self.steps),
            ProbeStep::Fixed { num, den } => format!("pgd:{}:{num}/{den}", self.steps),
            ProbeStep::ApgdCe => format!("apgd-ce:{}", self.steps),
        }
    }

    /// In words: `PGD-100, α = ε/4`, `APGD-CE-15`.
    pub fn label(&self) -> String {
        let ProbeStep::Fixed { num, den } = self.step else {
            return format!("APGD-CE-{}", self.steps);
        };
        let num = if num == 1 { String::new() } else { num.to_string() };
        let den = if den == 1 { String::new() } else { format!("/{den}") };
        format!("PGD-{}, α = {num}ε{den}", self.steps)
    }

    /// The probe at each radius.
    fn attacks(&self, eps: &[f64]) -> Vec<Attack> {
        eps.iter()
            .map(|&eps| match self.step {
                ProbeStep::Fixed { num, den } => Attack::Pgd(PgdConfig {
                    eps,
                    alpha: eps * num as f64 / den as f64,
                    steps: self.steps,
                    random_start: true,
                    stop: StopRule::EarlyExit,
                }),
                ProbeStep::ApgdCe => Attack::Apgd(ApgdConfig {
                    eps,
                    steps: self.steps,
                    loss: ApgdLoss::Ce,
                    targets: 1,
                }),
            })
            .collect()
    }

    /// Sort key: PGD before APGD-CE, then fewer steps, then smaller α.
    fn order(&self) -> (bool, usize, f64) {
        match self.step {
            ProbeStep::Fixed { num, den } => (false, self.steps, num as f64 / den as f64),
            ProbeStep::ApgdCe => (true, self.steps, 0.0),
        }
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// The code of each AutoAttack member in [`GapPoint::broken_by`], in the order of
/// [`crate::engine::attack::autoattack::MEMBERS`].
pub const MEMBER_CODES: [u8; 4] = *b"ctfs";

/// [`GapPoint::broken_by`] of per-image members (indices into [`MEMBER_CODES`]).
fn member_codes(by: &[Option<u8>]) -> String {
    by.iter()
        .map(|b| b.map_or('-', |m| char::from(MEMBER_CODES[m as usize])))
        .collect()
}

impl GapCell {
    /// Whether every point records the member that broke each image.
    pub fn attributed(&self) -> bool {
        self.points.iter().all(|p| !p.broken_by.is_empty())
    }

    /// Whether every point records each of `probes`.
    pub fn has_probes(&self, probes: &[Probe]) -> bool {
        self.points
            .iter()
            .all(|p| probes.iter().all(|q| p.probes.contains_key(&q.key())))
    }
}

/// The gap of one run (`DIR/gap/<dataset>/<strategy>/seed<k>.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GapCell {
    /// Dataset.
    pub dataset: String,
    /// Strategy id.
    pub strategy: String,
    /// Seed.
    pub seed: u64,
    /// The radii the points' level strings cover: the folder's, or its first ones when the
    /// folder's radii grew after this run was scored with `--seeds` leaving it out. Absent from
    /// cells written before radii could grow: those cover their folder's radii, and are read so
    /// (and rewritten so by `validate gap` before the folder's radii change).
    #[serde(default)]
    pub eps: Vec<f64>,
    /// The run's attack in words (what measured `pgd`).
    pub run_attack: String,
    /// The checkpoints scored.
    pub points: Vec<GapPoint>,
}

/// The folder a run folder's gap results live in.
pub fn gap_dir(out: &Path) -> PathBuf {
    out.join("gap")
}

/// Level strings counted: (clean, robust per radius) for `radii` radii.
pub fn counts(levels: &str, radii: usize) -> (usize, Vec<usize>) {
    let l: Vec<u8> = levels.bytes().map(|b| b - b'0').collect();
    let at = |min: u8| l.iter().filter(|v| **v >= min).count();
    (at(1), (0..radii).map(|k| at(k as u8 + 2)).collect())
}

/// Whether the image at `i` of a level string is robust at radius index `k` (level ≥ k + 2).
fn robust_at(levels: &str, i: usize, k: usize) -> bool {
    (levels.as_bytes()[i] - b'0') as usize >= k + 2
}

/// Checks `spec` against the run and the folder before anything is computed: radii among the
/// run's, n ≥ 1, and an existing `gap/spec.json` equal to it or grown into it
/// ([`GapSpec::grows_into`]). Errors name the option.
fn check(run: &ValidRun, out: &Path, spec: &GapSpec) -> Result<()> {
    let run_eps = run.eps();
    if spec.eps.is_empty() || spec.eps.windows(2).any(|w| w[1] <= w[0]) {
        return Err(Error::invalid("--eps", "give one or more radii, increasing", format!("{:?}", spec.eps)).refused());
    }
    for e in &spec.eps {
        if !run_eps.iter().any(|r| (r - e).abs() <= 1e-12 * r.abs().max(1.0)) {
            return Err(Error::invalid(
                "--eps",
                format!(
                    "not a radius of this run (its PGD outcomes come from the records; the run has {})",
                    run_eps
                        .iter()
                        .map(|r| format!("{}/255", r * 255.0))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                format!("{}/255", e * 255.0),
            )
            .refused());
        }
    }
    if spec.n == 0 || spec.steps == 0 || spec.targets == 0 || spec.queries == 0 {
        return Err(Error::invalid("--n/--steps/--targets/--queries", "must be >= 1", 0).refused());
    }
    let dir = gap_dir(out);
    check_spec_or(
        &dir,
        "gap",
        spec,
        |old: &GapSpec| old.grows_into(spec),
        ", or ask for its radii followed by larger ones, with the same --n, --steps, --targets and --queries, to \
         add radii",
    )?;
    // Cells written before radii could grow cover the folder's radii: say so in each, before
    // the folder's radii change.
    if let Some((old, cells)) = load_results::<GapSpec, GapCell>(&dir, "gap")? {
        for mut c in cells.into_iter().filter(|c| c.eps.is_empty()) {
            c.eps = old.eps.clone();
            let path = cell_path(&dir, &c.dataset, parse_strategy(&c.strategy)?, c.seed);
            write_atomic(&path, serde_json::to_string_pretty(&c).expect("serialises").as_bytes())?;
        }
    }
    Ok(())
}

/// The index of each spec radius among the run's radii.
fn radius_index(run_eps: &[f64], eps: &[f64]) -> Vec<usize> {
    eps.iter()
        .map(|e| {
            run_eps
                .iter()
                .position(|r| (r - e).abs() <= 1e-12 * r.abs().max(1.0))
                .expect("checked")
        })
        .collect()
}

/// Recorded run levels (radii of the run) → levels over the spec's radii (`idx` their indices).
fn to_spec_levels(levels: &[u8], idx: &[usize]) -> String {
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

/// Which runs `validate gap` scores, and whether it attributes.
#[derive(Debug, Clone, Default)]
pub struct GapSelect {
    /// Only these datasets (all the run's when empty).
    pub datasets: Vec<String>,
    /// Only these seeds (all the run's when empty).
    pub seeds: Vec<u64>,
    /// Only these strategies (all the run's when empty).
    pub strategies: Vec<Strategy>,
    /// Measure AutoAttack again on the selected cells that do not record which member broke
    /// each image, checking that every image's outcome is the recorded one.
    pub attribute: bool,
    /// Score these probes (PGD variants, APGD-CE) on the selected cells that do not record them
    /// yet.
    pub probes: Vec<Probe>,
}

/// Scores every finished run of `run` in `out` selected by `select` and writes the summary of
/// every cell in the folder; returns those cells, sorted. Cells already in `DIR/gap/` are read,
/// not recomputed (completed when the folder's radii grew; measured again with
/// `select.attribute` when they lack the members; given the probes of `select.probes` they lack,
/// AutoAttack aside).
pub fn gap(
    run: &ValidRun,
    out: &Path,
    spec: &GapSpec,
    select: &GapSelect,
    device: &Device,
    quiet: bool,
) -> Result<Vec<GapCell>> {
    crate::validate::sweep::inputs::check_inputs(run)?;
    runner::preflight(run, out).map_err(Error::refused)?;
    let seeds = selected_seeds(run, &select.seeds)?;
    let strategies = selected_strategies(run, &select.strategies)?;
    let datasets = selected_datasets(run, &select.datasets)?;
    check(run, out, spec)?;
    let idx = radius_index(&run.eps(), &spec.eps);
    let dir = gap_dir(out);
    for_each_run(
        run,
        out,
        &dir,
        spec,
        (&datasets, &seeds, &strategies),
        device,
        quiet,
        |c: &GapCell| c.eps == spec.eps && (!select.attribute || c.attributed()) && c.has_probes(&select.probes),
        |ctx, s, seed, prior| {
            let again = select.attribute && prior.as_ref().is_some_and(|p| !p.attributed());
            let todo = Todo {
                idx: &idx,
                probes: &select.probes,
                prior: prior.map(|p| (p, again)),
            };
            score(run, ctx, (s, seed), out, spec, todo, quiet)
        },
    )?;
    // The summary covers every cell of the folder, not only the runs asked for.
    let (_, cells) = read(&dir)?.expect("spec.json written");
    let summary = summarise(&cells, spec, 1000);
    write_atomic(&dir.join("gap.md"), summary.markdown.as_bytes())?;
    write_atomic(&dir.join("gap.csv"), summary.csv.as_bytes())?;
    if let Some(csv) = &summary.members_csv {
        write_atomic(&dir.join("members.csv"), csv.as_bytes())?;
    }
    if let Some(csv) = &summary.probes_csv {
        write_atomic(&dir.join("probes.csv"), csv.as_bytes())?;
    }
    if let Some(csv) = &summary.pairs_csv {
        write_atomic(&dir.join("probe-pairs.csv"), csv.as_bytes())?;
    }
    Ok(cells)
}

/// What [`score`] measures on a run besides what its prior cell holds.
struct Todo<'a> {
    /// The index of each gap radius among the run's.
    idx: &'a [usize],
    /// Probes to add where the cell lacks them.
    probes: &'a [Probe],
    /// The run's cell as the folder holds it, and whether to measure AutoAttack on it again.
    prior: Option<(GapCell, bool)>,
}

/// Replays one run (`strategy`, seed) to its peak and final steps and scores both. With a prior
/// cell ([`Todo::prior`]): grown, only the radii after the prior's are attacked, by AutoAttack
/// and by the prior's probes (the members of the earlier ones are kept if it has them); measured
/// again, every radius is attacked and each image's outcome at the prior's radii must be the
/// recorded one; otherwise AutoAttack is not run and only the probes it lacks are scored.
fn score(
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
    let idx = todo.idx;
    let view = RunView::read(run, ctx, strategy, seed, out)?;
    let points = points_of(&view.recs, idx[0]);
    let steps: Vec<u64> = points.iter().map(|p| p.0).collect();
    let n = spec.n.min(view.eval_ids.len());
    let cell_path = cell_path(&gap_dir(out), &ctx.data.spec.name, strategy, seed);
    let stale = |what: String| Error::Config {
        path: cell_path.clone(),
        message: format!("cannot be completed to the radii asked: {what}; remove it to score the run again"),
    };
    if let Some(p) = &prior {
        let done = p.eps.len();
        if done == 0 || done > spec.eps.len() || p.eps[..] != spec.eps[..done] {
            return Err(stale(format!("it covers {:?}, the folder {:?}", p.eps, spec.eps)));
        }
        let had: Vec<(u64, &Vec<String>)> = p.points.iter().map(|q| (q.step, &q.which)).collect();
        let want: Vec<(u64, &Vec<String>)> = points.iter().map(|q| (q.0, &q.1)).collect();
        if had != want || p.points.iter().any(|q| q.autoattack.len() != n) {
            return Err(stale(format!(
                "its checkpoints or images differ from the records' ({had:?} vs {want:?})"
            )));
        }
    }
    // AutoAttack runs on a new cell, a grown one, or one measured again.
    let attack = prior.as_ref().is_none_or(|p| again || p.eps.len() < spec.eps.len());
    let mut scored = Vec::new();
    replay(run, ctx, &view, strategy, seed, &steps, quiet, |model, target| {
        let levels = records::decode_digits(&view.at(target).outcomes, "outcomes")?;
        let (ids, attack_seed) = (&view.eval_ids[..n], crate::seeds::attack(seed, target));
        let before = prior
            .as_ref()
            .map(|p| (p, p.points.iter().find(|q| q.step == target).expect("checked")));
        let done = match before {
            Some((p, q)) => Some((records::decode_digits(&q.autoattack, "autoattack")?, p.eps.len())),
            None => None,
        };
        let grown = done.as_ref().filter(|_| !again).map(|(l, k)| (&l[..], *k));
        // The checkpoint's images under `attacks` (one per gap radius), completing `prior`.
        let measure = |attacks: &[Attack], prior: Option<(&[u8], usize)>| {
            robust_levels_from(
                model,
                &ctx.data.test,
                ids,
                128,
                attacks,
                attack_seed,
                &ctx.device,
                prior,
            )
        };
        let which = points.iter().find(|p| p.0 == target).expect("asked for").1.clone();
        let mut point = match before {
            Some((_, q)) if !attack => q.clone(),
            _ => {
                let t = Instant::now();
                let aa = measure(&spec.attacks(), grown)?;
                let broken_by = match (before, again) {
                    (None, _) => member_codes(&aa.broken_by),
                    (Some((_, q)), false) if !q.broken_by.is_empty() => q
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
                            return Err(Error::Config {
                                path: cell_path.clone(),
                                message: format!(
                                    "measured again at step {target} to record AutoAttack's members, {differ} of {n} \
                                     images have another outcome than recorded: not the measurement this folder \
                                     holds (another build or device?)"
                                ),
                            });
                        }
                        member_codes(&aa.broken_by)
                    }
                };
                let earlier = before.filter(|_| !again).map_or(0.0, |(_, q)| q.seconds);
                GapPoint {
                    which,
                    step: target,
                    verified: view.eval_ids.len(),
                    pgd: to_spec_levels(&levels[..n], idx),
                    autoattack: records::encode_levels(&aa.levels),
                    broken_by,
                    seconds: t.elapsed().as_secs_f64() + earlier,
                    probes: before.map(|(_, q)| q.probes.clone()).unwrap_or_default(),
                }
            }
        };
        // The prior's probes completed to the new radii (when grown), then the missing ones.
        let mut probes = Vec::new();
        for k in point.probes.keys() {
            probes.push(Probe::canonical(k).ok_or_else(|| bad_probe(cell_path.clone(), k, target, ""))?);
        }
        probes.extend(todo.probes.iter().filter(|q| !point.probes.contains_key(&q.key())));
        for probe in probes {
            let had = point.probes.get(&probe.key());
            let prior_levels = match (had, &done) {
                (Some(h), Some((_, k))) if *k < spec.eps.len() => {
                    Some((records::decode_digits(&h.levels, "probe levels")?, *k))
                }
                (Some(_), _) => continue,
                (None, _) => None,
            };
            let t = Instant::now();
            let lv = measure(
                &probe.attacks(&spec.eps),
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
        scored.push(point);
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

/// One (dataset, checkpoint, radius, strategy) row of the summary, pooled over seeds.
#[derive(Debug, Clone, PartialEq)]
pub struct GapRow {
    /// Dataset.
    pub dataset: String,
    /// `peak` or `final`.
    pub which: String,
    /// Radius.
    pub eps: f64,
    /// Strategy id.
    pub strategy: String,
    /// Image outcomes pooled (seeds × n).
    pub n: usize,
    /// Clean-correct.
    pub clean: usize,
    /// Robust under the run's attack.
    pub pgd: usize,
    /// Robust under AutoAttack.
    pub autoattack: usize,
    /// Robust under PGD, broken by AutoAttack.
    pub only_pgd_missed: usize,
    /// Robust under AutoAttack, broken by PGD.
    pub only_aa_missed: usize,
    /// (pgd − autoattack) / n and its 95% bootstrap interval over seeds, then images.
    pub gap: f64,
    /// See `gap`.
    pub gap_ci: Option<Interval>,
}

/// Per (dataset, checkpoint, radius): do the strategies rank the same under both attacks?
#[derive(Debug, Clone, PartialEq)]
pub struct RankRow {
    /// Dataset.
    pub dataset: String,
    /// `peak` or `final`.
    pub which: String,
    /// Radius.
    pub eps: f64,
    /// Spearman ρ between the strategies' robust accuracies under PGD and under AutoAttack (None
    /// when one side is constant).
    pub rho: Option<f64>,
    /// Its 95% bootstrap interval over seeds, then images.
    pub rho_ci: Option<Interval>,
    /// Best strategy under PGD and under AutoAttack.
    pub best: (String, String),
}

/// Where a member or probe row pools its cells: a (dataset, checkpoint, radius, strategy), the
/// seeds pooled and their image outcomes.
#[derive(Debug, Clone, PartialEq)]
pub struct Pooled {
    /// Dataset.
    pub dataset: String,
    /// `peak` or `final`.
    pub which: String,
    /// Radius.
    pub eps: f64,
    /// Strategy id.
    pub strategy: String,
    /// The seeds pooled.
    pub seeds: Vec<u64>,
    /// Image outcomes pooled (seeds × n).
    pub n: usize,
}

impl Pooled {
    /// Nothing pooled yet at (`c`'s dataset, `which`, `eps`, `strategy`).
    fn new(c: &GapCell, which: &str, eps: f64, strategy: &str) -> Pooled {
        Pooled {
            dataset: c.dataset.clone(),
            which: which.into(),
            eps,
            strategy: strategy.into(),
            seeds: Vec::new(),
            n: 0,
        }
    }

    /// Whether `c`'s checkpoint labelled `which` at `eps` pools here under `strategy` (`c`'s own
    /// or [`ALL_STRATEGIES`]).
    fn holds(&self, c: &GapCell, which: &str, eps: f64, strategy: &str) -> bool {
        (&self.dataset, self.which.as_str(), self.eps, self.strategy.as_str()) == (&c.dataset, which, eps, strategy)
    }

    /// Pools `c`'s point `pt` (a seed already pooled, from another strategy, is listed once).
    fn add(&mut self, c: &GapCell, pt: &GapPoint) {
        if !self.seeds.contains(&c.seed) {
            self.seeds.push(c.seed);
        }
        self.n += pt.autoattack.len();
    }

    /// Dataset, checkpoint, radius, then strategies in the study's order.
    fn order(&self, other: &Pooled) -> std::cmp::Ordering {
        let rank = |s: &str| parse_strategy(s).map_or(usize::MAX, |s| s as usize);
        (&self.dataset, &self.which)
            .cmp(&(&other.dataset, &other.which))
            .then(self.eps.total_cmp(&other.eps))
            .then(rank(&self.strategy).cmp(&rank(&other.strategy)))
    }

    /// The CSV columns of [`POOLED_CSV`].
    fn csv(&self) -> Vec<String> {
        vec![
            self.dataset.clone(),
            self.which.clone(),
            crate::io::num(self.eps),
            self.strategy.clone(),
            self.seeds.iter().map(u64::to_string).collect::<Vec<_>>().join(" "),
            self.n.to_string(),
        ]
    }

    /// The Markdown cells `| task | checkpoint | ε | strategy | seeds | n |`.
    fn markdown(&self) -> String {
        format!(
            "| {} | {} | {} | {} | {:?} | {} |",
            self.dataset,
            self.which,
            crate::validate::study::report::eps_label(self.eps),
            self.strategy,
            self.seeds,
            self.n
        )
    }
}

/// The strategy of a probe row that pools every strategy's points (sorted after them).
pub const ALL_STRATEGIES: &str = "all";

/// The CSV header of [`Pooled::csv`].
const POOLED_CSV: [&str; 6] = ["dataset", "checkpoint", "eps", "strategy", "seeds", "n"];

/// Per (dataset, checkpoint, radius, strategy), over the cells that record AutoAttack's
/// members: which member broke the points.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberRow {
    /// Where the row pools.
    pub at: Pooled,
    /// Per member ([`MEMBER_CODES`]): points robust at this radius under the run's attack that
    /// AutoAttack broke (at this radius or a smaller one), by the member that broke them.
    pub pgd_missed: [usize; 4],
    /// Per member: every clean-correct point AutoAttack broke at this radius or a smaller one.
    pub broken: [usize; 4],
}

/// Per (dataset, checkpoint, radius, strategy, probe), over the cells that record the probe:
/// what the probe breaks, set against the run's PGD and AutoAttack on the same images.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeRow {
    /// Where the row pools.
    pub at: Pooled,
    /// The probe ([`Probe::key`]).
    pub probe: String,
    /// Robust at this radius under the run's attack, the probe and AutoAttack.
    pub robust: [usize; 3],
    /// Robust under the run's attack, broken by AutoAttack: the points PGD missed.
    pub missed: usize,
    /// Of `missed`, those the probe broke.
    pub caught: usize,
    /// `missed` per AutoAttack member that broke the point ([`MEMBER_CODES`]), over the cells
    /// that record the members.
    pub missed_by: [usize; 4],
    /// `caught` likewise.
    pub caught_by: [usize; 4],
    /// Broken by the probe and robust under the run's attack, and the reverse.
    pub vs_run: (usize, usize),
    /// Broken by the probe, robust under AutoAttack.
    pub beyond_aa: usize,
    /// [`ProbeRow::p_stronger`] adjusted by Holm's step-down over every row of the summary
    /// with a p (family-wise error rate).
    pub p_holm: Option<f64>,
    /// Benjamini–Hochberg q of [`ProbeRow::p_stronger`] over the same family (false discovery
    /// rate).
    pub q_bh: Option<f64>,
}

impl ProbeRow {
    /// The one-sided p-value of "the probe is stronger than the run's attack on these images":
    /// exact McNemar on [`ProbeRow::vs_run`] (None without discordant points). Under the null the
    /// two attacks are exchangeable, so a probe that differs from the run only in its random start
    /// should not reach significance.
    pub fn p_stronger(&self) -> Option<f64> {
        let (k, m) = (self.vs_run.0 as u64, (self.vs_run.0 + self.vs_run.1) as u64);
        (m > 0).then(|| sign_test_upper(k, m))
    }

    /// Counts `pt`'s images at radius index `k`, the probe's outcomes being `levels`.
    fn count(&mut self, pt: &GapPoint, levels: &str, k: usize) {
        for i in 0..pt.autoattack.len() {
            let (run, q, aa) = (
                robust_at(&pt.pgd, i, k),
                robust_at(levels, i, k),
                robust_at(&pt.autoattack, i, k),
            );
            for (j, ok) in [run, q, aa].into_iter().enumerate() {
                self.robust[j] += usize::from(ok);
            }
            self.vs_run.0 += usize::from(run && !q);
            self.vs_run.1 += usize::from(q && !run);
            self.beyond_aa += usize::from(aa && !q);
            if run && !aa {
                self.missed += 1;
                self.caught += usize::from(!q);
                let member = pt.broken_by.as_bytes().get(i);
                if let Some(m) = member.and_then(|m| MEMBER_CODES.iter().position(|x| x == m)) {
                    self.missed_by[m] += 1;
                    self.caught_by[m] += usize::from(!q);
                }
            }
        }
    }
}

/// Per (dataset, checkpoint, radius) and pair of probes, every strategy's points that record both
/// pooled: which of the two attacks breaks more of the same images.
#[derive(Debug, Clone, PartialEq)]
pub struct PairRow {
    /// Where the row pools (strategy [`ALL_STRATEGIES`]).
    pub at: Pooled,
    /// The strategies pooled.
    pub strategies: Vec<String>,
    /// The two probes ([`Probe::key`]), PGD before APGD-CE, then fewer steps, then smaller α.
    pub probes: (String, String),
    /// Robust at this radius under each.
    pub robust: (usize, usize),
    /// Broken by the first and robust under the second, and the reverse.
    pub discordant: (usize, usize),
    /// The points PGD missed ([`ProbeRow::missed`]), and of them those each probe broke.
    pub missed: (usize, usize, usize),
    /// [`PairRow::p`] adjusted by Holm's step-down over every pair row with a p.
    pub p_holm: Option<f64>,
}

impl PairRow {
    /// The two-sided p-value of "the two probes break the same share of these images": exact
    /// McNemar on [`PairRow::discordant`] (None without discordant points).
    pub fn p(&self) -> Option<f64> {
        let (k, m) = (self.discordant.0 as u64, (self.discordant.0 + self.discordant.1) as u64);
        (m > 0).then(|| sign_test_two_sided(k, m))
    }

    /// Counts `pt`'s images at radius index `k`, the probes' outcomes being `a` and `b`.
    fn count(&mut self, pt: &GapPoint, (a, b): (&str, &str), k: usize) {
        for i in 0..pt.autoattack.len() {
            let (ra, rb) = (robust_at(a, i, k), robust_at(b, i, k));
            self.robust.0 += usize::from(ra);
            self.robust.1 += usize::from(rb);
            self.discordant.0 += usize::from(!ra && rb);
            self.discordant.1 += usize::from(ra && !rb);
            if robust_at(&pt.pgd, i, k) && !robust_at(&pt.autoattack, i, k) {
                self.missed.0 += 1;
                self.missed.1 += usize::from(!ra);
                self.missed.2 += usize::from(!rb);
            }
        }
    }
}

/// The summary: rows, ranking rows, and their Markdown and CSV.
pub struct GapSummary {
    /// Per strategy.
    pub rows: Vec<GapRow>,
    /// Per ranking.
    pub ranks: Vec<RankRow>,
    /// Per strategy, where the cells record AutoAttack's members.
    pub members: Vec<MemberRow>,
    /// Per strategy and probe, where the cells record probes.
    pub probes: Vec<ProbeRow>,
    /// Per pair of probes recorded on the same points, strategies pooled.
    pub pairs: Vec<PairRow>,
    /// `gap.md`.
    pub markdown: String,
    /// `gap.csv`.
    pub csv: String,
    /// `members.csv`, when some cell records the members.
    pub members_csv: Option<String>,
    /// `probes.csv`, when some cell records a probe.
    pub probes_csv: Option<String>,
    /// `probe-pairs.csv`, when some point records two probes.
    pub pairs_csv: Option<String>,
}

/// The member rows of the cells of `cells` that record the members, per radius of `spec` that
/// they cover.
fn member_rows(cells: &[GapCell], spec: &GapSpec) -> Vec<MemberRow> {
    let mut rows: Vec<MemberRow> = Vec::new();
    for (c, k, eps, pt, w) in labelled_points(cells.iter().filter(|c| c.attributed()), spec) {
        let r = row_mut(
            &mut rows,
            |r: &MemberRow| r.at.holds(c, w, eps, &c.strategy),
            || MemberRow {
                at: Pooled::new(c, w, eps, &c.strategy),
                pgd_missed: [0; 4],
                broken: [0; 4],
            },
        );
        r.at.add(c, pt);
        for (i, m) in pt.broken_by.bytes().enumerate() {
            let Some(m) = MEMBER_CODES.iter().position(|&x| x == m) else {
                continue;
            };
            // Broken at radius index level − 1: at or below k unless robust at k.
            if !robust_at(&pt.autoattack, i, k) {
                r.broken[m] += 1;
                if robust_at(&pt.pgd, i, k) {
                    r.pgd_missed[m] += 1;
                }
            }
        }
    }
    rows.sort_by(|a, b| a.at.order(&b.at));
    rows
}

/// Every (cell, radius index, radius, point, checkpoint label) of `cells`, at the radii of `spec`
/// that each cell covers: what the member, probe and pair rows pool.
fn labelled_points<'a>(
    cells: impl IntoIterator<Item = &'a GapCell>,
    spec: &'a GapSpec,
) -> impl Iterator<Item = (&'a GapCell, usize, f64, &'a GapPoint, &'a str)> {
    cells.into_iter().flat_map(move |c| {
        let radii = spec.eps.iter().copied().enumerate().take(c.eps.len());
        radii.flat_map(move |(k, eps)| {
            c.points
                .iter()
                .flat_map(move |pt| pt.which.iter().map(move |w| (c, k, eps, pt, w.as_str())))
        })
    })
}

/// The row of `rows` that `is`, pushed from `new` when there is none.
fn row_mut<R>(rows: &mut Vec<R>, is: impl Fn(&R) -> bool, new: impl FnOnce() -> R) -> &mut R {
    match rows.iter().position(is) {
        Some(i) => &mut rows[i],
        None => {
            rows.push(new());
            rows.last_mut().expect("pushed")
        }
    }
}

/// The probe rows of `cells`, per radius of `spec` that each cell covers: one per strategy and,
/// where two or more strategies record the probe, one pooling them all ([`ALL_STRATEGIES`]).
/// Every row with a p then gets its Holm and Benjamini–Hochberg adjustment over all of them.
fn probe_rows(cells: &[GapCell], spec: &GapSpec) -> Vec<ProbeRow> {
    let mut rows: Vec<ProbeRow> = Vec::new();
    for (c, k, eps, pt, w) in labelled_points(cells, spec) {
        for (key, probe) in &pt.probes {
            for strategy in [c.strategy.as_str(), ALL_STRATEGIES] {
                let r = row_mut(
                    &mut rows,
                    |r: &ProbeRow| r.at.holds(c, w, eps, strategy) && r.probe == *key,
                    || ProbeRow {
                        at: Pooled::new(c, w, eps, strategy),
                        probe: key.clone(),
                        robust: [0; 3],
                        missed: 0,
                        caught: 0,
                        missed_by: [0; 4],
                        caught_by: [0; 4],
                        vs_run: (0, 0),
                        beyond_aa: 0,
                        p_holm: None,
                        q_bh: None,
                    },
                );
                r.at.add(c, pt);
                r.count(pt, &probe.levels, k);
            }
        }
    }
    // A pooled row over one strategy repeats that strategy's row: keep it where two or more
    // strategies share its (dataset, checkpoint, radius, probe).
    let key = |r: &ProbeRow| {
        (
            r.at.dataset.clone(),
            r.at.which.clone(),
            r.at.eps.to_bits(),
            r.probe.clone(),
        )
    };
    let mut strategies: BTreeMap<_, usize> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.at.strategy != ALL_STRATEGIES) {
        *strategies.entry(key(r)).or_default() += 1;
    }
    rows.retain(|r| r.at.strategy != ALL_STRATEGIES || strategies.get(&key(r)).is_some_and(|&n| n >= 2));
    rows.sort_by(|a, b| a.at.order(&b.at).then_with(|| probe_order(&a.probe, &b.probe)));
    let p: Vec<Option<f64>> = rows.iter().map(ProbeRow::p_stronger).collect();
    for ((r, h), q) in rows.iter_mut().zip(holm(&p)).zip(benjamini_hochberg(&p)) {
        (r.p_holm, r.q_bh) = (h, q);
    }
    rows
}

/// The pair rows of `cells`, per radius of `spec` that each cell covers: per (dataset,
/// checkpoint, radius) and pair of probes recorded on the same points, every strategy pooled; each
/// row with a p gets its Holm adjustment over all of them.
fn pair_rows(cells: &[GapCell], spec: &GapSpec) -> Vec<PairRow> {
    let mut rows: Vec<PairRow> = Vec::new();
    for (c, k, eps, pt, w) in labelled_points(cells, spec) {
        let mut keys: Vec<&String> = pt.probes.keys().collect();
        keys.sort_by(|a, b| probe_order(a, b));
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                let r = row_mut(
                    &mut rows,
                    |r: &PairRow| r.at.holds(c, w, eps, ALL_STRATEGIES) && (&r.probes.0, &r.probes.1) == (*a, *b),
                    || PairRow {
                        at: Pooled::new(c, w, eps, ALL_STRATEGIES),
                        strategies: Vec::new(),
                        probes: ((*a).clone(), (*b).clone()),
                        robust: (0, 0),
                        discordant: (0, 0),
                        missed: (0, 0, 0),
                        p_holm: None,
                    },
                );
                r.at.add(c, pt);
                if !r.strategies.contains(&c.strategy) {
                    r.strategies.push(c.strategy.clone());
                }
                r.count(pt, (&pt.probes[*a].levels, &pt.probes[*b].levels), k);
            }
        }
    }
    rows.sort_by(|a, b| {
        a.at.order(&b.at)
            .then_with(|| probe_order(&a.probes.0, &b.probes.0))
            .then_with(|| probe_order(&a.probes.1, &b.probes.1))
    });
    let p: Vec<Option<f64>> = rows.iter().map(PairRow::p).collect();
    for (r, h) in rows.iter_mut().zip(holm(&p)) {
        r.p_holm = h;
    }
    rows
}

/// Probes by key ([`Probe::order`]: PGD before APGD-CE, then fewer steps, then smaller α; keys in
/// cells parse: `read` checks them).
fn probe_order(a: &str, b: &str) -> std::cmp::Ordering {
    let key = |k: &str| Probe::parse(k).map_or((true, usize::MAX, f64::INFINITY), |p| p.order());
    let (x, y) = (key(a), key(b));
    (x.0, x.1).cmp(&(y.0, y.1)).then(x.2.total_cmp(&y.2)).then(a.cmp(b))
}

/// Per (dataset, which): per strategy, the per-seed level strings (pgd, autoattack).
type Pools = std::collections::BTreeMap<(String, String), Vec<(String, Vec<(String, String)>)>>;

/// The pools of the cells covering at least `radii` radii.
fn pools(cells: &[GapCell], radii: usize) -> Pools {
    let mut p: Pools = Default::default();
    for c in cells.iter().filter(|c| c.eps.len() >= radii) {
        for pt in &c.points {
            for w in &pt.which {
                let list = p.entry((c.dataset.clone(), w.clone())).or_default();
                match list.iter_mut().find(|(s, _)| *s == c.strategy) {
                    Some((_, v)) => v.push((pt.pgd.clone(), pt.autoattack.clone())),
                    None => list.push((c.strategy.clone(), vec![(pt.pgd.clone(), pt.autoattack.clone())])),
                }
            }
        }
    }
    p
}

/// Per radius of `spec`, the seeds whose cells cover it.
pub fn seeds_by_radius(cells: &[GapCell], spec: &GapSpec) -> Vec<(f64, std::collections::BTreeSet<u64>)> {
    spec.eps
        .iter()
        .enumerate()
        .map(|(k, &e)| (e, cells.iter().filter(|c| c.eps.len() > k).map(|c| c.seed).collect()))
        .collect()
}

/// The seeds attacked, in words: `{0, 1, 2}`, or per radius when they differ
/// (`{0, 1, 2} at 4/255, {0} at 8/255`, `none yet at 8/255`).
pub fn seeds_text(by_radius: &[(f64, std::collections::BTreeSet<u64>)]) -> String {
    match by_radius {
        [(_, first), rest @ ..] if rest.iter().all(|(_, s)| s == first) => format!("{first:?}"),
        _ => by_radius
            .iter()
            .map(|(e, s)| {
                let e = crate::validate::study::report::eps_label(*e);
                if s.is_empty() {
                    format!("none yet at {e}")
                } else {
                    format!("{s:?} at {e}")
                }
            })
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// Robust share at radius `k` under (pgd, aa) over the image positions `pos` of the seeds `pick`
/// (indices into `seeds`, repeats counted).
fn shares(seeds: &[(String, String)], pick: &[usize], k: usize, pos: &[usize]) -> (f64, f64) {
    let (mut a, mut b, mut n) = (0usize, 0usize, 0usize);
    for (p, q) in pick.iter().map(|&j| &seeds[j]) {
        for &i in pos {
            a += usize::from(robust_at(p, i, k));
            b += usize::from(robust_at(q, i, k));
            n += 1;
        }
    }
    (a as f64 / n as f64, b as f64 / n as f64)
}

/// The summary of `cells`, with `reps` bootstrap replicates. Each replicate draws, per strategy,
/// its seeds with replacement (nothing drawn for a strategy with one seed), then one set of image
/// positions shared by every strategy and seed (the runs share their evaluation images): with
/// several seeds the intervals cover the spread between trainings, not only the images. A
/// radius pools the cells that cover it (all of them unless the folder's radii grew under
/// `--seeds`); radii pooling the same cells share their replicates.
pub fn summarise(cells: &[GapCell], spec: &GapSpec, reps: usize) -> GapSummary {
    let mut rows = Vec::new();
    let mut ranks = Vec::new();
    let mut rng = StdRng::seed_from_u64(crate::seeds::splitmix64(0x0067_6170));
    // Radii grouped by the cells covering them: (first radius, radii).
    let mut groups: Vec<(usize, usize)> = Vec::new();
    for k in 0..spec.eps.len() {
        let covering = |k: usize| cells.iter().filter(|c| c.eps.len() > k).count();
        match groups.last_mut() {
            Some((first, len)) if covering(*first) == covering(k) => *len += 1,
            _ => groups.push((k, 1)),
        }
    }
    let mut by_pool = Vec::new();
    for &(first, len) in &groups {
        for (key, strategies) in pools(cells, first + 1) {
            by_pool.push((key, strategies, first..first + len));
        }
    }
    by_pool.sort_by(|a, b| (&a.0, a.2.start).cmp(&(&b.0, b.2.start)));
    for ((dataset, which), strategies, radii) in by_pool {
        let n_img = strategies[0].1[0].0.len();
        let all: Vec<usize> = (0..n_img).collect();
        let every: Vec<Vec<usize>> = strategies.iter().map(|(_, s)| (0..s.len()).collect()).collect();
        // Per replicate: each strategy's seeds, then the image positions.
        let draws: Vec<(Vec<Vec<usize>>, Vec<usize>)> = (0..reps)
            .map(|_| {
                let seeds = every
                    .iter()
                    .map(|e| match e.len() {
                        1 => e.clone(),
                        m => resample_indices(m, m, &mut rng),
                    })
                    .collect();
                (seeds, resample_indices(n_img, n_img, &mut rng))
            })
            .collect();
        for (k, &eps) in spec.eps.iter().enumerate().take(radii.end).skip(radii.start) {
            let mut pgd_acc = Vec::new();
            let mut aa_acc = Vec::new();
            for (i, (strategy, seeds)) in strategies.iter().enumerate() {
                let (p, a) = shares(seeds, &every[i], k, &all);
                pgd_acc.push(p);
                aa_acc.push(a);
                let boot: Vec<f64> = draws
                    .iter()
                    .map(|(sd, d)| {
                        let (p, a) = shares(seeds, &sd[i], k, d);
                        p - a
                    })
                    .collect();
                let (mut only_p, mut only_a, mut clean) = (0, 0, 0);
                for (p, a) in seeds {
                    for i in 0..n_img {
                        clean += usize::from(p.as_bytes()[i] != b'0');
                        only_p += usize::from(robust_at(p, i, k) && !robust_at(a, i, k));
                        only_a += usize::from(robust_at(a, i, k) && !robust_at(p, i, k));
                    }
                }
                let n = seeds.len() * n_img;
                rows.push(GapRow {
                    dataset: dataset.clone(),
                    which: which.clone(),
                    eps,
                    strategy: strategy.clone(),
                    n,
                    clean,
                    pgd: (p * n as f64).round() as usize,
                    autoattack: (a * n as f64).round() as usize,
                    only_pgd_missed: only_p,
                    only_aa_missed: only_a,
                    gap: p - a,
                    gap_ci: percentile_interval(&boot),
                });
            }
            let best = |v: &[f64]| {
                let m = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                strategies
                    .iter()
                    .zip(v)
                    .filter(|(_, x)| **x == m)
                    .map(|((s, _), _)| s.clone())
                    .collect::<Vec<_>>()
                    .join(" = ")
            };
            let boot: Vec<f64> = draws
                .iter()
                .filter_map(|(sd, d)| {
                    let (p, a): (Vec<f64>, Vec<f64>) = strategies
                        .iter()
                        .zip(sd)
                        .map(|((_, s), pick)| shares(s, pick, k, d))
                        .unzip();
                    spearman(&p, &a).ok()
                })
                .collect();
            ranks.push(RankRow {
                dataset: dataset.clone(),
                which: which.clone(),
                eps,
                rho: spearman(&pgd_acc, &aa_acc).ok(),
                rho_ci: percentile_interval(&boot),
                best: (best(&pgd_acc), best(&aa_acc)),
            });
        }
    }
    let members = member_rows(cells, spec);
    let probes = probe_rows(cells, spec);
    let pairs = pair_rows(cells, spec);
    let mut markdown = render(&rows, &ranks, cells, spec, reps);
    let members_csv = (!members.is_empty()).then(|| {
        markdown.push_str(&render_members(&members));
        let columns = [
            "pgd_missed_apgd_ce",
            "pgd_missed_apgd_t",
            "pgd_missed_fab_t",
            "pgd_missed_square",
            "broken_apgd_ce",
            "broken_apgd_t",
            "broken_fab_t",
            "broken_square",
        ];
        pooled_csv(
            &columns,
            members.iter().map(|r| {
                let counts = r.pgd_missed.iter().chain(&r.broken);
                (&r.at, counts.map(usize::to_string).collect())
            }),
        )
    });
    let probes_csv = (!probes.is_empty()).then(|| {
        markdown.push_str(&render_probes(&probes, cells));
        let columns = [
            "probe",
            "run_robust",
            "probe_robust",
            "autoattack_robust",
            "run_missed",
            "probe_broke_of_missed",
            "run_missed_apgd_ce",
            "run_missed_apgd_t",
            "run_missed_fab_t",
            "run_missed_square",
            "probe_broke_apgd_ce",
            "probe_broke_apgd_t",
            "probe_broke_fab_t",
            "probe_broke_square",
            "probe_broke_run_robust",
            "run_broke_probe_robust",
            "probe_broke_autoattack_robust",
            "p_probe_stronger",
            "p_holm",
            "q_bh",
        ];
        pooled_csv(
            &columns,
            probes.iter().map(|r| {
                let counts = r
                    .robust
                    .iter()
                    .chain([&r.missed, &r.caught])
                    .chain(&r.missed_by)
                    .chain(&r.caught_by)
                    .chain([&r.vs_run.0, &r.vs_run.1, &r.beyond_aa]);
                let row = std::iter::once(r.probe.clone())
                    .chain(counts.map(usize::to_string))
                    .chain(p_cells([r.p_stronger(), r.p_holm, r.q_bh]));
                (&r.at, row.collect())
            }),
        )
    });
    let pairs_csv = (!pairs.is_empty()).then(|| {
        markdown.push_str(&render_pairs(&pairs));
        let columns = [
            "strategies",
            "probe_a",
            "probe_b",
            "a_robust",
            "b_robust",
            "a_broke_b_robust",
            "b_broke_a_robust",
            "run_missed",
            "a_broke_of_missed",
            "b_broke_of_missed",
            "p_two_sided",
            "p_holm",
        ];
        pooled_csv(
            &columns,
            pairs.iter().map(|r| {
                let counts = [
                    r.robust.0,
                    r.robust.1,
                    r.discordant.0,
                    r.discordant.1,
                    r.missed.0,
                    r.missed.1,
                    r.missed.2,
                ];
                let row = [r.strategies.join(" "), r.probes.0.clone(), r.probes.1.clone()]
                    .into_iter()
                    .chain(counts.iter().map(usize::to_string))
                    .chain(p_cells([r.p(), r.p_holm]));
                (&r.at, row.collect())
            }),
        )
    });
    let mut csv = crate::io::Csv::new(&[
        "dataset",
        "checkpoint",
        "eps",
        "strategy",
        "n",
        "clean",
        "pgd_robust",
        "autoattack_robust",
        "pgd_only_robust",
        "autoattack_only_robust",
        "gap",
        "gap_lo",
        "gap_hi",
    ]);
    for r in &rows {
        csv.push(vec![
            r.dataset.clone(),
            r.which.clone(),
            crate::io::num(r.eps),
            r.strategy.clone(),
            r.n.to_string(),
            r.clean.to_string(),
            r.pgd.to_string(),
            r.autoattack.to_string(),
            r.only_pgd_missed.to_string(),
            r.only_aa_missed.to_string(),
            crate::io::num(r.gap),
            r.gap_ci.map_or(String::new(), |c| crate::io::num(c.lo)),
            r.gap_ci.map_or(String::new(), |c| crate::io::num(c.hi)),
        ]);
    }
    GapSummary {
        rows,
        ranks,
        members,
        probes,
        pairs,
        markdown,
        csv: csv.render(),
        members_csv,
        probes_csv,
        pairs_csv,
    }
}

/// A CSV of [`POOLED_CSV`]'s columns followed by `columns`, a row per (where, the rest).
fn pooled_csv<'a>(columns: &[&str], rows: impl Iterator<Item = (&'a Pooled, Vec<String>)>) -> String {
    let mut csv = crate::io::Csv::new(&[&POOLED_CSV[..], columns].concat());
    for (at, rest) in rows {
        let mut row = at.csv();
        row.extend(rest);
        csv.push(row);
    }
    csv.render()
}

/// p-values as CSV cells (empty where there is no test).
fn p_cells<const N: usize>(p: [Option<f64>; N]) -> impl Iterator<Item = String> {
    p.into_iter().map(|p| p.map_or(String::new(), crate::io::num))
}

/// The members section of `gap.md`.
fn render_members(rows: &[MemberRow]) -> String {
    use std::fmt::Write as _;
    let mut s = String::from(
        "\n## Which AutoAttack member broke the points\n\nPer image, the member that broke it at the radius where it \
         fell (AutoAttack runs APGD-CE, then APGD-T on what it left, then FAB-T, then Square; a larger radius attacks \
         only the points robust at the smaller one). On a 2-class task APGD-T is APGD with the targeted logit margin. \
         Counts pooled over the seeds listed (cells measured before members were recorded are left out; \
         `validate gap --attribute` measures them again). \"PGD missed\": robust at this radius under the run's \
         attack, broken by AutoAttack.\n\n| task | checkpoint | ε | strategy | seeds | n | PGD missed: APGD-CE / \
         APGD-T / FAB-T / Square | all broken by AutoAttack: APGD-CE / APGD-T / FAB-T / Square |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    let four = |v: &[usize; 4]| v.iter().map(usize::to_string).collect::<Vec<_>>().join(" / ");
    for r in rows {
        let _ = writeln!(
            s,
            "{} {} (of {}) | {} (of {}) |",
            r.at.markdown(),
            four(&r.pgd_missed),
            r.pgd_missed.iter().sum::<usize>(),
            four(&r.broken),
            r.broken.iter().sum::<usize>()
        );
    }
    s
}

/// The probes section of `gap.md`.
fn render_probes(rows: &[ProbeRow], cells: &[GapCell]) -> String {
    use std::fmt::Write as _;
    let mut time: BTreeMap<&str, (f64, usize)> = BTreeMap::new();
    for (k, p) in cells.iter().flat_map(|c| &c.points).flat_map(|p| &p.probes) {
        let t = time.entry(k).or_default();
        t.0 += p.seconds;
        t.1 += 1;
    }
    let tested = rows.iter().filter(|r| r.p_holm.is_some()).count();
    let mut s = format!(
        "\n## Probes: other attacks on the points PGD missed\n\nEach probe is PGD (random start, early exit, cross-entropy) \
         with another budget, or APGD-CE (AutoAttack's first member alone: adaptive step size, momentum, restarts \
         from the best point) at a given iteration count, scored on the same checkpoints, images and radii as \
         AutoAttack; a PGD probe's random start is the run's only when the gap's radii are all of the run's. \
         \"PGD missed\": robust at this radius under the run's attack, broken by AutoAttack. A probe \
         with more steps at the run's α that breaks them says the run's budget was short; one with the run's steps \
         and a larger α, the step size; one with the run's own steps and α, that a second random start is enough; \
         APGD-CE at the run's steps, that the algorithm is. \
         Split by the AutoAttack member that broke the point where the cell records it; intervals Wilson 95% over \
         the pooled points (seeds pooled, points treated as independent). Strategy `all`: every strategy's points \
         pooled (the same images once per strategy and seed, still treated as independent). p: is the probe \
         stronger than the run's attack on all the images (one-sided exact McNemar on the points only one of them \
         broke); Holm: p adjusted by Holm's step-down over the family of the table's {tested} rows with a p \
         (family-wise error; a checkpoint that is both peak and final counts twice, which only makes it \
         stricter); BH: the Benjamini–Hochberg q over the same family (false discovery rate).\n\n",
    );
    for (k, (secs, pts)) in &time {
        let _ = writeln!(s, "- `{k}` ({}): {secs:.0} s over {pts} checkpoints", probe_label(k));
    }
    s.push_str(
        "\n| task | checkpoint | ε | strategy | seeds | n | probe | robust: run / probe / AA | PGD missed | broken by \
         the probe | of APGD-CE's / APGD-T's | probe broke, run did not / run broke, probe did not (p) | probe \
         broke, AA did not |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let by = if r.missed_by.iter().sum::<usize>() == r.missed {
            format!(
                "{} of {} / {} of {}",
                r.caught_by[0], r.missed_by[0], r.caught_by[1], r.missed_by[1]
            )
        } else {
            "–".into()
        };
        let caught = if r.missed == 0 {
            "–".into()
        } else {
            pct_ci(r.caught, r.missed)
        };
        let p = match (r.p_stronger(), r.p_holm, r.q_bh) {
            (Some(p), Some(h), Some(q)) => format!(" (p {}; Holm {}, BH {})", p_text(p), p_text(h), p_text(q)),
            _ => String::new(),
        };
        let _ = writeln!(
            s,
            "{} {} | {} / {} / {} | {} | {caught} | {by} | {} / {}{p} | {} |",
            r.at.markdown(),
            probe_label(&r.probe),
            r.robust[0],
            r.robust[1],
            r.robust[2],
            r.missed,
            r.vs_run.0,
            r.vs_run.1,
            r.beyond_aa
        );
    }
    s
}

/// The probe-against-probe section of `gap.md`.
fn render_pairs(rows: &[PairRow]) -> String {
    use std::fmt::Write as _;
    let tested = rows.iter().filter(|r| r.p_holm.is_some()).count();
    let mut s = format!(
        "\n### Probe against probe\n\nTwo probes on the same images: every strategy's points that record both \
         pooled (seeds and strategies pooled, points treated as independent). p: do the two break the same share \
         of the images (two-sided exact McNemar on the points only one of them broke); Holm: p adjusted by Holm's \
         step-down over the family of the table's {tested} rows with a p. \"PGD missed\" as above; intervals \
         Wilson 95%.\n\n| task | checkpoint | ε | strategy | seeds | n | strategies | A | B | robust: A / B | A \
         broke, B did not / B broke, A did not (p) | PGD missed | broken by A / by B |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let p = match (r.p(), r.p_holm) {
            (Some(p), Some(h)) => format!(" (p {}; Holm {})", p_text(p), p_text(h)),
            _ => String::new(),
        };
        let (missed, a, b) = r.missed;
        let broken = if missed == 0 {
            "–".into()
        } else {
            format!("{} / {}", pct_ci(a, missed), pct_ci(b, missed))
        };
        let _ = writeln!(
            s,
            "{} {} | {} | {} | {} / {} | {} / {}{p} | {missed} | {broken} |",
            r.at.markdown(),
            r.strategies.len(),
            probe_label(&r.probes.0),
            probe_label(&r.probes.1),
            r.robust.0,
            r.robust.1,
            r.discordant.0,
            r.discordant.1,
        );
    }
    s
}

/// A probe's label ([`Probe::label`]) from its key, the key itself where it does not parse.
fn probe_label(key: &str) -> String {
    Probe::parse(key).map_or(key.to_string(), |p| p.label())
}

/// A p-value as the tables print it: `< 0.001`, or `= ` and three decimals.
fn p_text(p: f64) -> String {
    match p {
        p if p < 0.001 => "< 0.001".to_string(),
        p => format!("= {p:.3}"),
    }
}

fn pct_ci(k: usize, n: usize) -> String {
    let ci = wilson(k as u64, n as u64).ok();
    let p = 100.0 * k as f64 / n.max(1) as f64;
    match ci {
        Some(c) => format!("{p:.1}% [{:.1}, {:.1}]", 100.0 * c.lo, 100.0 * c.hi),
        None => format!("{p:.1}%"),
    }
}

fn render(rows: &[GapRow], ranks: &[RankRow], cells: &[GapCell], spec: &GapSpec, reps: usize) -> String {
    use std::fmt::Write as _;
    let mut s = String::from("# PGD vs AutoAttack at the peak-robustness and final checkpoints\n\n");
    let by_radius = seeds_by_radius(cells, spec);
    let seeds = seeds_text(&by_radius);
    let over = if by_radius.iter().any(|(_, s)| s.len() > 1) {
        "seeds, then image positions"
    } else {
        "image positions"
    };
    let secs: f64 = cells.iter().flat_map(|c| &c.points).map(|p| p.seconds).sum();
    let _ = writeln!(
        s,
        "Runs' attack: {}. Stronger attack: AutoAttack (apgd-ce → apgd-t → fab-t → square), {} iterations, {} \
         targets, {} queries. Images: the first {} evaluation images of each run × seeds {} (the same images for \
         every strategy); every replayed checkpoint's clean outcome matched its record on all evaluation images. \
         Intervals: accuracies Wilson 95%; gap and ρ 95% percentile bootstrap over {over} ({reps} \
         replicates). AutoAttack time {:.0} s over {} checkpoints.\n",
        cells.first().map_or("?", |c| c.run_attack.as_str()),
        spec.steps,
        spec.targets,
        spec.queries,
        spec.n,
        seeds,
        secs,
        cells.iter().map(|c| c.points.len()).sum::<usize>()
    );
    s.push_str("## Does the ranking survive?\n\n| task | checkpoint | ε | Spearman ρ (PGD vs AutoAttack) | best under PGD | best under AutoAttack |\n|---|---|---|---|---|---|\n");
    for r in ranks {
        let rho = match (r.rho, r.rho_ci) {
            (Some(x), Some(c)) => format!("{x:.3} [{:.3}, {:.3}]", c.lo, c.hi),
            (Some(x), None) => format!("{x:.3}"),
            _ => "– (a constant side)".into(),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {rho} | {} | {} |",
            r.dataset,
            r.which,
            crate::validate::study::report::eps_label(r.eps),
            r.best.0,
            r.best.1
        );
    }
    s.push_str("\n## Per strategy\n\n| task | checkpoint | ε | strategy | n | clean | robust, PGD | robust, AutoAttack | gap (PGD − AA) | robust only under PGD / only under AA |\n|---|---|---|---|---|---|---|---|---|---|\n");
    for r in rows {
        let gap = match r.gap_ci {
            Some(c) => format!("{:+.1} [{:+.1}, {:+.1}] pts", 100.0 * r.gap, 100.0 * c.lo, 100.0 * c.hi),
            None => format!("{:+.1} pts", 100.0 * r.gap),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {gap} | {} / {} |",
            r.dataset,
            r.which,
            crate::validate::study::report::eps_label(r.eps),
            r.strategy,
            r.n,
            pct_ci(r.clean, r.n),
            pct_ci(r.pgd, r.n),
            pct_ci(r.autoattack, r.n),
            r.only_pgd_missed,
            r.only_aa_missed
        );
    }
    s.push_str("\nCheckpoints (step of the peak per run):\n\n");
    for c in cells {
        let pts: Vec<String> = c
            .points
            .iter()
            .map(|p| format!("{} at step {} ({:.0} s)", p.which.join(" + "), p.step, p.seconds))
            .collect();
        let _ = writeln!(s, "- {}/{}/seed{}: {}", c.dataset, c.strategy, c.seed, pts.join(", "));
    }
    s
}

/// The gap results of a run folder, when `validate gap` has written a complete summary.
pub fn load(out: &Path) -> Result<Option<(GapSpec, Vec<GapCell>)>> {
    let dir = gap_dir(out);
    if !dir.join("gap.md").exists() {
        return Ok(None);
    }
    read(&dir)
}

/// A cell (at `path`) whose probe `key` at `step` is not a canonical probe key (`and` says what
/// else it must have).
fn bad_probe(path: PathBuf, key: &str, step: u64, and: &str) -> Error {
    Error::Config {
        path,
        message: format!("probe `{key}` at step {step} is not a canonical pgd:STEPS:ALPHA or apgd-ce:STEPS key{and}"),
    }
}

/// The specification and every cell of the gap folder `dir`, sorted by dataset, strategy (in
/// the study's order) and seed; cells written before radii could grow get the folder's radii.
fn read(dir: &Path) -> Result<Option<(GapSpec, Vec<GapCell>)>> {
    let Some((spec, mut cells)) = load_results::<GapSpec, GapCell>(dir, "gap")? else {
        return Ok(None);
    };
    for c in cells.iter_mut().filter(|c| c.eps.is_empty()) {
        c.eps = spec.eps.clone();
    }
    // Per point: a member for exactly the images AutoAttack broke; each probe under its
    // canonical key, with a level per image, the clean outcome AutoAttack's (the same model),
    // and no more radii than the cell's.
    for c in &cells {
        for p in &c.points {
            let top = c.eps.len() + 1;
            let ok = p.broken_by.is_empty()
                || (p.broken_by.len() == p.autoattack.len()
                    && p.broken_by.bytes().zip(p.autoattack.bytes()).all(|(m, l)| {
                        let fell = l > b'0' && ((l - b'0') as usize) < top;
                        if fell { MEMBER_CODES.contains(&m) } else { m == b'-' }
                    }));
            if !ok {
                return Err(Error::Config {
                    path: cell_path(dir, &c.dataset, parse_strategy(&c.strategy)?, c.seed),
                    message: format!(
                        "broken_by at step {} does not name a member (c, t, f, s) for exactly the images AutoAttack \
                         broke (`-` elsewhere)",
                        p.step
                    ),
                });
            }
            for (key, probe) in &p.probes {
                let ok = Probe::canonical(key).is_some()
                    && probe.levels.len() == p.autoattack.len()
                    && probe
                        .levels
                        .bytes()
                        .zip(p.autoattack.bytes())
                        .all(|(l, a)| (b'0'..=b'0' + top as u8).contains(&l) && (l == b'0') == (a == b'0'));
                if !ok {
                    let path = cell_path(dir, &c.dataset, parse_strategy(&c.strategy)?, c.seed);
                    let levels = format!(" with a level (0 to {top}) per image and AutoAttack's clean outcomes");
                    return Err(bad_probe(path, key, p.step, &levels));
                }
            }
        }
    }
    // Strategies in the study's order (Full, Linear Probing, LoRA, …), as the runs are.
    let rank = |s: &str| parse_strategy(s).map_or(usize::MAX, |s| s as usize);
    cells.sort_by(|a, b| {
        (&a.dataset, rank(&a.strategy), &a.strategy, a.seed).cmp(&(&b.dataset, rank(&b.strategy), &b.strategy, b.seed))
    });
    Ok(Some((spec, cells)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One radius (1/255), `n` images, a nominal attack budget.
    fn spec_at_1_255(n: usize) -> GapSpec {
        GapSpec {
            eps: vec![1.0 / 255.0],
            n,
            steps: 1,
            targets: 1,
            queries: 1,
        }
    }

    fn cell(strategy: &str, pgd: &str, aa: &str) -> GapCell {
        seed_cell(strategy, 0, pgd, aa)
    }

    fn seed_cell(strategy: &str, seed: u64, pgd: &str, aa: &str) -> GapCell {
        GapCell {
            dataset: "t".into(),
            strategy: strategy.into(),
            seed,
            eps: vec![1.0 / 255.0],
            run_attack: "pgd".into(),
            points: vec![GapPoint {
                which: vec!["peak".into(), "final".into()],
                step: 10,
                verified: pgd.len(),
                pgd: pgd.into(),
                autoattack: aa.into(),
                broken_by: String::new(),
                seconds: 1.0,
                probes: BTreeMap::new(),
            }],
        }
    }

    /// Levels over the run's radii become levels over the asked radii; the counts, the paired
    /// gap and the ranking come out as counted by hand.
    #[test]
    fn levels_counts_and_ranking() {
        // Run radii 1, 2, 4, 8 /255 (indices 0…3); asked 2/255 and 8/255 (indices 1, 3).
        assert_eq!(to_spec_levels(&[0, 1, 2, 3, 4, 5], &[1, 3]), "011223");
        assert_eq!(counts("011223", 2), (5, vec![3, 1]));
        let spec = spec_at_1_255(10);
        // a: PGD 8 robust, AA 5 (3 only under PGD); b: PGD 6, AA 6; c: PGD 4, AA 2 (+1 only AA).
        let cells = [
            cell("a", "2222222211", "2222211111"),
            cell("b", "2222221111", "2222221111"),
            cell("c", "2222111111", "2121211111"),
        ];
        let s = summarise(&cells, &spec, 200);
        // One checkpoint labelled peak + final: a row per label.
        assert_eq!(s.rows.len(), 6);
        let a = s.rows.iter().find(|r| r.strategy == "a" && r.which == "final").unwrap();
        assert_eq!(
            (a.n, a.clean, a.pgd, a.autoattack, a.only_pgd_missed, a.only_aa_missed),
            (10, 10, 8, 5, 3, 0)
        );
        assert!((a.gap - 0.3).abs() < 1e-12);
        let c = s.rows.iter().find(|r| r.strategy == "c" && r.which == "peak").unwrap();
        assert_eq!((c.pgd, c.autoattack, c.only_pgd_missed, c.only_aa_missed), (4, 3, 2, 1));
        let r = &s.ranks[0];
        // PGD ranks a > b > c, AutoAttack b > a > c: ρ = 0.5.
        assert!((r.rho.unwrap() - 0.5).abs() < 1e-12, "{r:?}");
        assert_eq!(r.best, ("a".to_string(), "b".to_string()));
        assert!(s.markdown.contains("| t | final | 1/255 | a | 10 |"), "{}", s.markdown);
        // One seed: only the images are resampled, and the header says so.
        assert!(
            s.markdown.contains("bootstrap over image positions (200 replicates)"),
            "{}",
            s.markdown
        );
    }

    /// With several seeds the gap's interval covers their spread (seeds resampled), not only the
    /// images: three seeds with planted gaps 0, 0.3 and 0.6 on 20 shared images. Resampling images
    /// alone would give about 0.3 ± 0.12; with the seeds drawn the interval reaches 0 (a replicate
    /// of seed 0 three times has no gap at all) and beyond 0.5.
    #[test]
    fn the_interval_of_the_gap_covers_the_seeds() {
        let spec = spec_at_1_255(20);
        let robust = "2".repeat(20);
        let broken = |k: usize| format!("{}{}", "1".repeat(k), "2".repeat(20 - k));
        let cells = [
            seed_cell("a", 0, &robust, &robust),
            seed_cell("a", 1, &robust, &broken(6)),
            seed_cell("a", 2, &robust, &broken(12)),
            seed_cell("b", 0, &broken(10), &broken(10)),
        ];
        let s = summarise(&cells, &spec, 1000);
        let a = s.rows.iter().find(|r| r.strategy == "a" && r.which == "final").unwrap();
        assert_eq!((a.n, a.pgd, a.autoattack, a.only_pgd_missed), (60, 60, 42, 18));
        assert!((a.gap - 0.3).abs() < 1e-12);
        let ci = a.gap_ci.unwrap();
        assert!(ci.lo < 0.1 && ci.hi > 0.5, "{ci:?}");
        // One seed, no gap: a degenerate interval at 0.
        let b = s.rows.iter().find(|r| r.strategy == "b" && r.which == "final").unwrap();
        assert_eq!((b.gap, b.gap_ci.map(|c| (c.lo, c.hi))), (0.0, Some((0.0, 0.0))));
        assert!(
            s.markdown.contains("over seeds, then image positions"),
            "{}",
            s.markdown
        );
    }

    /// A folder grown to a second radius for seed 0 only: the first radius pools both seeds, the
    /// second seed 0 alone (never seed 1's strings, which say nothing about it), and the summary
    /// names the seeds per radius. Refusals of other growth: a smaller radius, another n.
    #[test]
    fn grown_radii_pool_the_seeds_that_cover_them() {
        let mut spec = spec_at_1_255(4);
        let one = spec.clone();
        spec.eps.push(2.0 / 255.0);
        assert!(one.grows_into(&spec) && !spec.grows_into(&one) && !one.grows_into(&one));
        let smaller = GapSpec {
            eps: vec![0.5 / 255.0, 1.0 / 255.0],
            ..one.clone()
        };
        assert!(!one.grows_into(&smaller));
        assert!(!one.grows_into(&GapSpec { n: 5, ..spec.clone() }));
        let grown = |strategy: &str, pgd: &str, aa: &str| {
            let mut c = seed_cell(strategy, 0, pgd, aa);
            c.eps = spec.eps.clone();
            c
        };
        let cells = [
            grown("a", "3333", "3322"),
            seed_cell("a", 1, "2222", "2211"),
            grown("b", "3322", "3322"),
            seed_cell("b", 1, "2221", "2221"),
        ];
        let s = summarise(&cells, &spec, 100);
        let row = |e: f64, st: &str| {
            s.rows
                .iter()
                .find(|r| r.eps == e && r.strategy == st && r.which == "final")
                .unwrap()
        };
        let a1 = row(1.0 / 255.0, "a");
        assert_eq!((a1.n, a1.pgd, a1.autoattack), (8, 8, 6));
        let a2 = row(2.0 / 255.0, "a");
        assert_eq!((a2.n, a2.pgd, a2.autoattack, a2.only_pgd_missed), (4, 4, 2, 2));
        let b2 = row(2.0 / 255.0, "b");
        assert_eq!((b2.n, b2.pgd, b2.autoattack), (4, 2, 2));
        assert_eq!(s.ranks.len(), 4, "two checkpoints × two radii");
        assert!(
            s.markdown.contains("seeds {0, 1} at 1/255, {0} at 2/255"),
            "{}",
            s.markdown
        );
        // Complete again: one set of seeds for both radii.
        let all = cells.iter().cloned().map(|mut c| {
            c.eps = spec.eps.clone();
            c
        });
        let full = summarise(&all.collect::<Vec<_>>(), &spec, 100);
        assert!(full.markdown.contains("× seeds {0, 1} (the same"), "{}", full.markdown);
    }

    /// The cell the member and probe tests count by hand: 1/255 and 2/255, seed 0 of strategy
    /// `a`, seven images (see the members test), each image's member recorded.
    fn two_radii_cell() -> (GapSpec, GapCell) {
        let mut spec = spec_at_1_255(7);
        spec.eps.push(2.0 / 255.0);
        let mut a = seed_cell("a", 0, "0323323", "0111223");
        a.eps = spec.eps.clone();
        a.points[0].broken_by = "-ctscf-".into();
        (spec, a)
    }

    /// `c` as (strategy, seed), its point recording these (probe, levels).
    fn probed(mut c: GapCell, (strategy, seed): (&str, u64), probes: &[(&str, &str)]) -> GapCell {
        (c.strategy, c.seed) = (strategy.into(), seed);
        for (key, levels) in probes {
            let levels = ProbeLevels {
                levels: levels.to_string(),
                seconds: 1.0,
            };
            c.points[0].probes.insert(key.to_string(), levels);
        }
        c
    }

    /// The members' counts, by hand: two radii, seed 0 recording the members (seed 1 does not
    /// and is left out). Images: 0 misclassified; 1 (APGD-CE), 2 (APGD-T) and 3 (Square) fall at
    /// the first radius, 4 (APGD-CE) and 5 (FAB-T) at the second; 6 survives. PGD left 1, 3, 4 and 6
    /// robust at both radii, 2 and 5 at the first only.
    #[test]
    fn members_are_counted_at_the_radius_where_the_image_fell() {
        let (spec, mut a) = two_radii_cell();
        let mut b = seed_cell("a", 1, "0323323", "0111223");
        b.eps = spec.eps.clone();
        let rows = member_rows(&[a.clone(), b], &spec);
        // Two labels (peak + final) × two radii.
        assert_eq!(rows.len(), 4);
        let at = |e: f64| rows.iter().find(|r| r.at.eps == e && r.at.which == "final").unwrap();
        let r1 = at(1.0 / 255.0);
        assert_eq!((r1.at.seeds.clone(), r1.at.n), (vec![0], 7));
        // Broken at 1/255: images 1 (c), 2 (t), 3 (s), all robust there under PGD.
        assert_eq!((r1.pgd_missed, r1.broken), ([1, 1, 0, 1], [1, 1, 0, 1]));
        let r2 = at(2.0 / 255.0);
        // Broken at 2/255 or below: also 4 (c) and 5 (f); PGD robust at 2/255: 1, 3, 4 (and 6).
        assert_eq!((r2.pgd_missed, r2.broken), ([2, 0, 0, 1], [2, 1, 1, 1]));
        let s = summarise(std::slice::from_ref(&a), &spec, 10);
        assert!(
            s.markdown
                .contains("| t | final | 2/255 | a | [0] | 7 | 2 / 0 / 0 / 1 (of 3) | 2 / 1 / 1 / 1 (of 5) |"),
            "{}",
            s.markdown
        );
        assert!(s.members_csv.unwrap().contains("t,final,"));
        // Without any cell recording the members: no section, no file.
        a.points[0].broken_by.clear();
        let s = summarise(&[a], &spec, 10);
        assert!(s.members.is_empty() && s.members_csv.is_none() && !s.markdown.contains("member broke"));
    }

    /// Probe texts: canonical keys (fractions reduced), labels, the step size at each radius,
    /// and refusals naming `--probe`.
    #[test]
    fn probes_parse_to_canonical_keys() {
        let p = Probe::parse("pgd:100:2/8").unwrap();
        assert_eq!(
            (p.steps, p.step, p.key()),
            (100, ProbeStep::Fixed { num: 1, den: 4 }, "pgd:100:1/4".to_string())
        );
        assert_eq!(p.label(), "PGD-100, α = ε/4");
        assert_eq!(Probe::parse("pgd:15:1").unwrap().label(), "PGD-15, α = ε");
        assert_eq!(Probe::parse("pgd:15:6/4").unwrap().key(), "pgd:15:3/2");
        assert_eq!(Probe::parse("pgd:15:3/2").unwrap().label(), "PGD-15, α = 3ε/2");
        let attacks = p.attacks(&[4.0 / 255.0, 8.0 / 255.0]);
        let Attack::Pgd(c) = attacks[1] else {
            panic!("{attacks:?}")
        };
        assert_eq!(
            (c.eps, c.alpha, c.steps, c.random_start),
            (8.0 / 255.0, 2.0 / 255.0, 100, true)
        );
        let q = Probe::parse("apgd-ce:15").unwrap();
        assert_eq!(
            (q.steps, q.step, q.key(), q.label()),
            (15, ProbeStep::ApgdCe, "apgd-ce:15".into(), "APGD-CE-15".into())
        );
        let Attack::Apgd(c) = q.attacks(&[8.0 / 255.0])[0] else {
            panic!("{q:?}")
        };
        assert_eq!((c.eps, c.steps, c.loss), (8.0 / 255.0, 15, ApgdLoss::Ce));
        assert_eq!(Probe::canonical("apgd-ce:015"), None);
        // PGD before APGD-CE, then fewer steps, then smaller α.
        let mut keys = ["apgd-ce:15", "pgd:100:1/4", "pgd:15:1", "apgd-ce:5", "pgd:15:1/4"];
        keys.sort_by(|a, b| probe_order(a, b));
        assert_eq!(
            keys,
            ["pgd:15:1/4", "pgd:15:1", "pgd:100:1/4", "apgd-ce:5", "apgd-ce:15"]
        );
        for bad in [
            "fgsm:1:1",
            "apgd-ce:0",
            "apgd-ce:15:1/4",
            "apgd-t:15",
            "pgd:0:1/4",
            "pgd:10:0",
            "pgd:10",
            "pgd:10:1/0",
            "pgd:x:1",
            "pgd:10:0.25",
        ] {
            let e = Probe::parse(bad).unwrap_err().to_string();
            assert!(e.contains("--probe") && e.contains(bad), "{bad}: {e}");
        }
    }

    /// A probe's counts, by hand, on the members test's cell: images 1–6 as there, the probe
    /// breaking 1 at the first radius and 3 at the second, and leaving 2 and 5 (which the run's
    /// PGD broke at the second radius) robust.
    #[test]
    fn probes_are_counted_against_the_run_and_autoattack() {
        let (spec, mut a) = two_radii_cell();
        let levels = ProbeLevels {
            levels: "0132333".into(),
            seconds: 2.0,
        };
        a.points[0].probes.insert("pgd:5:1/4".into(), levels);
        let rows = probe_rows(std::slice::from_ref(&a), &spec);
        assert_eq!(rows.len(), 4, "two labels × two radii");
        let at = |e: f64| rows.iter().find(|r| r.at.eps == e && r.at.which == "final").unwrap();
        let r1 = at(1.0 / 255.0);
        // 1/255: the run leaves 1–6 robust, AutoAttack 4–6, the probe 2–6; missed 1 (c), 2 (t),
        // 3 (s), the probe breaks 1.
        assert_eq!((r1.robust, r1.missed, r1.caught), ([6, 5, 3], 3, 1));
        assert_eq!((r1.missed_by, r1.caught_by), ([1, 1, 0, 1], [1, 0, 0, 0]));
        assert_eq!((r1.vs_run, r1.beyond_aa), ((1, 0), 0));
        let r2 = at(2.0 / 255.0);
        // 2/255: the run leaves 1, 3, 4, 6 robust, AutoAttack 6, the probe 2, 4, 5, 6; missed 1
        // (c), 3 (s), 4 (c), the probe breaks 1 and 3.
        assert_eq!((r2.robust, r2.missed, r2.caught), ([4, 4, 1], 3, 2));
        assert_eq!((r2.missed_by, r2.caught_by), ([2, 0, 0, 1], [1, 0, 0, 1]));
        assert_eq!((r2.vs_run, r2.beyond_aa), ((2, 2), 0));
        // P(X ≥ 2) for X ~ Binomial(4, 1/2) = 11/16; at 1/255, P(X ≥ 1 | n = 1) = 1/2.
        assert!((r2.p_stronger().unwrap() - 11.0 / 16.0).abs() < 1e-12);
        assert!((r1.p_stronger().unwrap() - 0.5).abs() < 1e-12);
        let s = summarise(std::slice::from_ref(&a), &spec, 10);
        assert!(
            s.markdown.contains(
                "| t | final | 2/255 | a | [0] | 7 | PGD-5, α = ε/4 | 4 / 4 / 1 | 3 | 66.7% [20.8, 93.9] | 1 of 2 / 0 of 0 | 2 / 2 (p = 0.688; Holm = 1.000, BH = 0.688) | 0 |"
            ),
            "{}",
            s.markdown
        );
        assert!(
            s.markdown
                .contains("- `pgd:5:1/4` (PGD-5, α = ε/4): 2 s over 1 checkpoints"),
            "{}",
            s.markdown
        );
        let csv = s.probes_csv.unwrap();
        assert!(csv.contains("t,final,"), "{csv}");
        // Without members the split is not claimed.
        a.points[0].broken_by.clear();
        let s = summarise(&[a], &spec, 10);
        assert!(s.markdown.contains("| 66.7% [20.8, 93.9] | – |"), "{}", s.markdown);
    }

    /// Two strategies: a row pooling both (`all`: counts summed, seeds listed once), and the
    /// Holm and BH adjustments over the 12 rows with a p, by hand. b's probe breaks every point
    /// at the first radius: b vs run (6, 0) at 1/255, p = 1/64, and (4, 0) at 2/255, p = 1/16;
    /// `all` (7, 0), p = 1/128, and (6, 2), p = 37/256; a as in the test above (1/2, 11/16);
    /// each twice (peak and final). Holm: 12/128 = 0.09375 for `all` at 1/255, 10/64 = 0.15625
    /// for b at 1/255, 8/16 = 0.5 for b at 2/255, 6·37/256 = 0.8671875 for `all` at 2/255, 1 for
    /// a. BH: 0.046875 (b and `all` at 1/255), (1/16)·12/6 = 0.125 (b, 2/255), (37/256)·12/8 for
    /// `all` at 2/255, (1/2)·12/10 = 0.6 and 0.6875 for a.
    #[test]
    fn probe_rows_pool_strategies_and_adjust_for_the_family() {
        let (spec, a) = two_radii_cell();
        let a = probed(a, ("a", 0), &[("pgd:5:1/4", "0132333")]);
        let b = probed(a.clone(), ("b", 1), &[("pgd:5:1/4", "0111111")]);
        let cells = [a.clone(), b];
        let rows = probe_rows(&cells, &spec);
        assert_eq!(rows.len(), 12, "three strategies (a, b, all) × two labels × two radii");
        let at = |s: &str, e: f64| {
            rows.iter()
                .find(|r| r.at.strategy == s && r.at.eps == e && r.at.which == "final")
                .unwrap()
        };
        let all2 = at(ALL_STRATEGIES, 2.0 / 255.0);
        assert_eq!((all2.at.seeds.clone(), all2.at.n), (vec![0, 1], 14));
        assert_eq!((all2.robust, all2.missed, all2.caught), ([8, 4, 2], 6, 5));
        assert_eq!(all2.vs_run, (6, 2));
        let expect = [
            ("a", 1.0, 1.0, 0.6),
            ("a", 2.0, 1.0, 0.6875),
            ("b", 1.0, 0.15625, 0.046875),
            ("b", 2.0, 0.5, 0.125),
            (ALL_STRATEGIES, 1.0, 0.09375, 0.046875),
            (ALL_STRATEGIES, 2.0, 6.0 * 37.0 / 256.0, 12.0 * 37.0 / 256.0 / 8.0),
        ];
        for (st, e, h, q) in expect {
            let r = at(st, e / 255.0);
            let (rh, rq) = (r.p_holm.unwrap(), r.q_bh.unwrap());
            assert!((rh - h).abs() < 1e-12 && (rq - q).abs() < 1e-12, "{st} {e}: {rh} {rq}");
        }
        // Rows without a discordant point are outside the family.
        let c = probed(a.clone(), ("a", 0), &[("pgd:5:1/4", "0323323")]);
        let rows = probe_rows(&[c], &spec);
        assert!(rows.iter().all(|r| r.p_holm.is_none() && r.q_bh.is_none()), "{rows:?}");
        // One strategy: no `all` row repeating it.
        assert!(probe_rows(&[a], &spec).iter().all(|r| r.at.strategy != ALL_STRATEGIES));
        let s = summarise(&cells, &spec, 10);
        assert!(s.markdown.contains("the table's 12 rows with a p"), "{}", s.markdown);
    }

    /// Probe against probe, by hand (two radii; robust at the first radius from level 2, at the
    /// second from level 3). Strategy a (seed 0) and b (seed 1) record PGD-100 and APGD-CE-15,
    /// b also PGD-15, so that pair pools b alone. First radius: a's PGD-100 breaks 2, 4 and
    /// APGD-CE-15 1, 2 (one discordant each way); b's PGD-100 breaks none and APGD-CE-15 all six
    /// → robust (10, 4), discordant (1, 7), p = 2·9/256. The run missed 1, 2, 3 on each: PGD-100
    /// broke 2 of a's, APGD-CE-15 1, 2 of a's and all of b's → (6, 1, 5). Second radius: a
    /// discordant 4, 5 / 1, 3, b 0 / 6 → (2, 8), p = 2·56/1024; missed 1, 3, 4 → (6, 1, 5).
    #[test]
    fn probe_pairs_are_counted_and_tested_two_sided() {
        let (spec, a) = two_radii_cell();
        let a = probed(a, ("a", 0), &[("pgd:100:1/4", "0313123"), ("apgd-ce:15", "0112333")]);
        let b = probed(
            a.clone(),
            ("b", 1),
            &[
                ("pgd:100:1/4", "0333333"),
                ("apgd-ce:15", "0111111"),
                ("pgd:15:1/4", "0323323"),
            ],
        );
        let rows = pair_rows(&[a, b], &spec);
        assert_eq!(rows.len(), 12, "three pairs × two labels × two radii");
        let at = |x: &str, y: &str, e: f64| {
            rows.iter()
                .find(|r| r.probes == (x.into(), y.into()) && r.at.eps == e / 255.0 && r.at.which == "final")
                .unwrap()
        };
        let r = at("pgd:100:1/4", "apgd-ce:15", 1.0);
        assert_eq!(
            (r.at.seeds.clone(), r.at.n, r.strategies.clone()),
            (vec![0, 1], 14, vec!["a".into(), "b".into()])
        );
        assert_eq!((r.robust, r.discordant, r.missed), ((10, 4), (1, 7), (6, 1, 5)));
        assert!((r.p().unwrap() - 18.0 / 256.0).abs() < 1e-15);
        let r = at("pgd:100:1/4", "apgd-ce:15", 2.0);
        assert_eq!((r.robust, r.discordant, r.missed), ((9, 3), (2, 8), (6, 1, 5)));
        assert!((r.p().unwrap() - 112.0 / 1024.0).abs() < 1e-15);
        // PGD-15 sorts first; it pools b alone.
        let r = at("pgd:15:1/4", "pgd:100:1/4", 1.0);
        assert_eq!(
            (r.at.seeds.clone(), r.at.n, r.discordant, r.p()),
            (vec![1], 7, (0, 0), None)
        );
        let close = |x: &str, y: &str, e: f64, p: f64| {
            let r = at(x, y, e);
            assert!((r.p().unwrap() - p).abs() < 1e-12, "{x} {y} {e}: {r:?}");
            r.discordant
        };
        assert_eq!(close("pgd:15:1/4", "pgd:100:1/4", 2.0, 0.5), (2, 0));
        assert_eq!(close("pgd:15:1/4", "apgd-ce:15", 1.0, 2.0 / 64.0), (0, 6));
        assert_eq!(close("pgd:15:1/4", "apgd-ce:15", 2.0, 2.0 / 16.0), (0, 4));
        // Holm over the 10 rows with a p (each value twice, peak and final).
        for (x, y, e, h) in [
            ("pgd:15:1/4", "apgd-ce:15", 1.0, 0.3125),
            ("pgd:100:1/4", "apgd-ce:15", 1.0, 0.5625),
            ("pgd:100:1/4", "apgd-ce:15", 2.0, 0.65625),
            ("pgd:15:1/4", "apgd-ce:15", 2.0, 0.65625),
            ("pgd:15:1/4", "pgd:100:1/4", 2.0, 1.0),
        ] {
            let got = at(x, y, e).p_holm.unwrap();
            assert!((got - h).abs() < 1e-12, "{x} {y} {e}: {got}");
        }
        assert_eq!(at("pgd:15:1/4", "pgd:100:1/4", 1.0).p_holm, None);
    }
}
