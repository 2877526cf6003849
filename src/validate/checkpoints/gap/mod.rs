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
//!
//! **Layout.** This file holds the entry ([`gap`]) and what it is asked ([`GapSpec`],
//! [`GapSelect`]); `cell` what a cell records, `probe` the probe keys, `io` the folder (checks,
//! reading, paths), `score` the replay and the attacks of one run, `summary` the gap and ranking
//! rows and their bootstrap, `pooled` the pooled (member) rows, `probe_stats` the probe and pair
//! rows with their McNemar tests, and `markdown` and `csv` the summary's files.

mod cell;
mod csv;
mod io;
mod markdown;
mod pooled;
mod probe;
mod probe_stats;
mod score;
mod summary;
#[cfg(test)]
mod tests;

use std::path::Path;

use candle_core::Device;
use serde::{Deserialize, Serialize};

use crate::engine::attack::AutoAttackConfig;
use crate::engine::eval::Attack;
use crate::engine::peft::Strategy;
use crate::error::{Error, Result};
use crate::io::write_atomic;
use crate::validate::checkpoints::replay::{for_each_run, selected_datasets, selected_seeds, selected_strategies};
use crate::validate::sweep::config::ValidRun;
use crate::validate::sweep::runner;

pub use cell::{GapCell, GapPoint, MEMBER_CODES, ProbeLevels, counts};
pub use io::{gap_dir, load};
pub use pooled::{ALL_STRATEGIES, MemberRow, Pooled};
pub use probe::{Probe, ProbeStep};
pub use probe_stats::{PairRow, ProbeRow};
pub use summary::{GapRow, GapSummary, RankRow, seeds_by_radius, seeds_text, summarise};

use io::{check, read};
use score::{Todo, radius_index, score};

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

/// Whether the asked radius `eps` is the run's radius `run` (up to a relative 1e-12).
fn same_radius(run: f64, eps: f64) -> bool {
    (run - eps).abs() <= 1e-12 * run.abs().max(1.0)
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
    let files = [
        ("gap.md", Some(&summary.markdown)),
        ("gap.csv", Some(&summary.csv)),
        ("members.csv", summary.members_csv.as_ref()),
        ("probes.csv", summary.probes_csv.as_ref()),
        ("probe-pairs.csv", summary.pairs_csv.as_ref()),
    ];
    for (name, text) in files {
        if let Some(text) = text {
            write_atomic(&dir.join(name), text.as_bytes())?;
        }
    }
    Ok(cells)
}
