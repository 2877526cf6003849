//! `validate report DIR`: figures and tables from a run folder's records, into `DIR/report/`.
//!
//! Per dataset and attack radius: clean, robust and OOD accuracy against step (mean over seeds,
//! 95% bootstrap bands over seeds and evaluation images, see [`crate::validate::study::analysis`]), and the
//! (accuracy, robustness) trajectory with each strategy's Pareto frontier. Tables: `auc.csv` /
//! `auc.md` (per radius: the AUC of each seed's frontier, mean over seeds with its bootstrap 95%
//! interval, both AUC rules, % above the dataset average), `peaks.csv` (step of peak robustness,
//! the drop after it, and `rises_then_falls` by [`crate::tradeoff::peak()`] with a half-point
//! margin, the definition the dynamics model uses), `ood_correlation.csv` (OOD against clean accuracy along training) and
//! `convergence.csv` (is clean accuracy still rising over the last 20% of steps? did the loss end
//! above where it started, or the final model end significantly below the run's best
//! evaluation? [`convergence`], [`stability`]).

mod figures;
mod tables;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::engine::peft::Strategy;
use crate::error::Result;
use crate::io::{num, write_atomic};
use crate::tradeoff::bootstrap::percentile_interval;
use crate::tradeoff::{AucRule, Interval};
use crate::validate::study::analysis::{Curves, Images, RunData, Study, View, column, mean_curve, mean_of};
use figures::figures;
use tables::{Tables, auc_markdown, summary_text};

/// Bootstrap replicates behind every interval of the report.
pub const REPS: usize = 1000;

/// Seed of the report's bootstrap (fixed: the same records give the same report).
pub const BOOTSTRAP_SEED: u64 = 0x5eed_b007;

/// One AUC cell: mean over seeds of the per-seed AUC, its bootstrap interval, the trapezoid
/// rule's mean and the % above the dataset's average (step rule).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AucCell {
    /// Mean over seeds, step rule.
    pub mean: f64,
    /// Bootstrap 95% interval of `mean`.
    pub ci: Interval,
    /// Mean over seeds, trapezoid rule.
    pub trapezoid: f64,
    /// `mean` relative to the dataset's average over strategies, minus 1.
    pub above: f64,
}

/// What `write_report` produced.
pub struct Report {
    /// The text printed at the end of a run (AUC tables and flags).
    pub summary: String,
    /// Files written.
    pub files: Vec<PathBuf>,
    /// (dataset, strategy) → AUC cell at the smallest radius.
    pub aucs: BTreeMap<(String, Strategy), AucCell>,
    /// (dataset, radius index, strategy) → AUC cell.
    pub cells: BTreeMap<(String, usize, Strategy), AucCell>,
}

/// A radius for people: `k/255` when it is one, else the number.
pub fn eps_label(e: f64) -> String {
    let k = e * 255.0;
    if (k - k.round()).abs() < 1e-9 {
        format!("{}/255", k.round())
    } else {
        format!("{e}")
    }
}

/// An estimate with its 95% interval as the tables print it, `0.123 [0.100, 0.150]` (`0.123`
/// without one).
pub fn with_ci(v: f64, ci: Option<Interval>) -> String {
    match ci {
        Some(c) => format!("{v:.3} [{:.3}, {:.3}]", c.lo, c.hi),
        None => format!("{v:.3}"),
    }
}

/// An interval as two CSV cells, its bounds at full precision (both empty without one).
pub fn ci_cells(ci: Option<Interval>) -> [String; 2] {
    ci.map_or([String::new(), String::new()], |c| [num(c.lo), num(c.hi)])
}

/// Clean accuracy still rising at the end of a run: the rise from the last evaluation at or
/// before 80% of the final step to the final evaluation, against the Wilson 95% half-width of the
/// final clean accuracy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Convergence {
    /// The comparison step (last evaluation ≤ 0.8 × final step).
    pub from_step: u64,
    /// Clean accuracy there.
    pub from_clean: f64,
    /// Final clean accuracy.
    pub final_clean: f64,
    /// Wilson 95% half-width of the final clean accuracy.
    pub half_width: f64,
    /// Not still rising by more than `half_width`.
    pub converged: bool,
}

/// The convergence check of one run (the report flags a run that fails it).
pub fn convergence(r: &RunData) -> Convergence {
    let last = r.steps.len() - 1;
    let cut = (0.8 * r.steps[last] as f64).floor() as u64;
    let i = r.steps.iter().rposition(|&s| s <= cut).unwrap_or(0);
    let (from, fin) = (r.recorded.clean[i], r.recorded.clean[last]);
    let half = r.clean_half_width[last];
    Convergence {
        from_step: r.steps[i],
        from_clean: from,
        final_clean: fin,
        half_width: half,
        converged: fin - from <= half,
    }
}

/// Significance level of [`stability`]'s regression test (after its Bonferroni correction).
pub const REGRESSION_ALPHA: f64 = 0.05;

/// Training that went wrong, read from a run's records: the loss ending above where it started,
/// or the final model significantly worse on clean images than the run's best evaluation.
/// Neither is caught by [`convergence`] (a collapsed run is flat at the end).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stability {
    /// Mean training loss up to the first evaluation after step 0 (None without losses).
    pub first_loss: Option<f64>,
    /// Mean training loss since the evaluation before the final one.
    pub final_loss: Option<f64>,
    /// The final loss is above the first: training ended worse than its first steps left it
    /// (for a new head, worse than chance-level loss).
    pub diverged: bool,
    /// The evaluation with the highest clean accuracy (the earliest of ties).
    pub best_step: u64,
    /// Its clean accuracy.
    pub best_clean: f64,
    /// Images right at the best step and wrong at the final one.
    pub lost: usize,
    /// Images wrong at the best step and right at the final one.
    pub gained: usize,
    /// One-sided exact McNemar p-value of "the final model is worse than the best step's" on
    /// those images, Bonferroni-corrected for the evaluations the best was picked from (1 when
    /// the final step is the best; None without per-image outcomes).
    pub p_drop: Option<f64>,
    /// `p_drop` < [`REGRESSION_ALPHA`].
    pub regressed: bool,
}

impl Stability {
    /// What went wrong, in words (None when nothing did).
    pub fn flag(&self) -> Option<String> {
        let mut why = Vec::new();
        if self.diverged {
            why.push(format!(
                "loss {} → {}",
                num3(self.first_loss.unwrap_or(f64::NAN)),
                num3(self.final_loss.unwrap_or(f64::NAN))
            ));
        }
        if self.regressed {
            why.push(format!(
                "clean {:.3} at step {} → final, {} images lost, {} gained, p = {:.1e}",
                self.best_clean,
                self.best_step,
                self.lost,
                self.gained,
                self.p_drop.unwrap_or(f64::NAN)
            ));
        }
        (!why.is_empty()).then(|| why.join("; "))
    }
}

/// What [`stability`] flags, in words (the reports' UNSTABLE TRAINING lines).
pub fn stability_rule() -> String {
    format!(
        "loss ended above its first interval's, or the final model is significantly worse on clean images than \
         the run's best evaluation: exact McNemar, Bonferroni over the evaluations, p < {REGRESSION_ALPHA}"
    )
}

fn num3(x: f64) -> String {
    format!("{x:.3}")
}

/// The stability check of one run (the report flags a run that fails it).
pub fn stability(r: &RunData) -> Stability {
    let last = r.steps.len() - 1;
    let first_loss = r.loss.iter().flatten().next().copied();
    let final_loss = r.loss[last];
    let diverged = matches!((first_loss, final_loss), (Some(a), Some(b)) if b > a);
    let clean = &r.recorded.clean;
    let best = (0..clean.len()).fold(0, |b, i| if clean[i] > clean[b] { i } else { b });
    let (mut lost, mut gained, mut p_drop) = (0, 0, None);
    if let (Some(at_best), Some(at_end)) = (r.clean_correct(best), r.clean_correct(last)) {
        for (b, e) in at_best.iter().zip(&at_end) {
            lost += usize::from(*b && !*e);
            gained += usize::from(!*b && *e);
        }
        p_drop = Some(if best == last {
            1.0
        } else {
            let p = crate::tradeoff::stats::sign_test_upper(lost as u64, (lost + gained) as u64);
            (p * last as f64).min(1.0)
        });
    }
    Stability {
        first_loss,
        final_loss,
        diverged,
        best_step: r.steps[best],
        best_clean: clean[best],
        lost,
        gained,
        p_drop,
        regressed: p_drop.is_some_and(|p| p < REGRESSION_ALPHA),
    }
}

/// Layout of the report's bootstrap statistics for one dataset: per strategy, per radius the
/// mean AUC (step rule), then the mean curves (clean, each radius, OOD) per step.
pub(super) struct Layout {
    pub(super) ne: usize,
    pub(super) ns: usize,
}

impl Layout {
    fn width(&self) -> usize {
        self.ne + (self.ne + 2) * self.ns
    }
    fn stats(&self, cs: &[Curves]) -> Vec<f64> {
        let mut v: Vec<f64> = (0..self.ne).map(|e| mean_of(cs, |c| c.auc(e, AucRule::Step))).collect();
        v.extend(pad(mean_curve(cs, |c| Some(&c.clean)), self.ns));
        for e in 0..self.ne {
            v.extend(pad(mean_curve(cs, |c| Some(&c.robust[e])), self.ns));
        }
        v.extend(pad(mean_curve(cs, |c| c.ood.as_ref()), self.ns));
        v
    }
    pub(super) fn curve(&self, k: usize) -> std::ops::Range<usize> {
        let start = self.ne + k * self.ns;
        start..start + self.ns
    }
}

fn pad(mut v: Vec<f64>, n: usize) -> Vec<f64> {
    v.resize(n, f64::NAN);
    v
}

/// The per-dataset statistics of the report: per strategy, the point estimates of the layout's
/// statistics and their bootstrap intervals.
type PerStrategy = BTreeMap<Strategy, (Vec<f64>, Vec<Option<Interval>>)>;

/// Point estimates and bootstrap intervals of every statistic of dataset `di`.
fn dataset_stats(study: &Study, point: &View, di: usize, lay: &Layout) -> PerStrategy {
    let strategies = study.datasets[di].strategies();
    let reps = study.bootstrap(Images::All, REPS, BOOTSTRAP_SEED ^ di as u64, |v| {
        strategies.iter().flat_map(|s| lay.stats(&v[&(di, *s)])).collect()
    });
    strategies
        .iter()
        .enumerate()
        .map(|(si, s)| {
            let est = lay.stats(&point[&(di, *s)]);
            let ci = (0..lay.width())
                .map(|j| percentile_interval(&column(&reps, si * lay.width() + j)))
                .collect();
            (*s, (est, ci))
        })
        .collect()
}

/// The report's statistics, computed once from a run folder's records and written nowhere:
/// per dataset its layout and bootstrap statistics, and the tables built from them. Renderers
/// ([`render`]) and `compare` read it.
pub struct Summary {
    /// The records, by dataset.
    pub study: Study,
    per: Vec<(Layout, PerStrategy)>,
    tables: Tables,
}

impl Summary {
    /// (dataset, strategy) → AUC cell at the smallest radius.
    pub fn aucs(&self) -> BTreeMap<(String, Strategy), AucCell> {
        smallest_radius(&self.tables.cells)
    }
}

/// (dataset, strategy) → AUC cell at the smallest radius.
fn smallest_radius(cells: &BTreeMap<(String, usize, Strategy), AucCell>) -> BTreeMap<(String, Strategy), AucCell> {
    cells
        .iter()
        .filter(|((_, e, _), _)| *e == 0)
        .map(|((d, _, s), c)| ((d.clone(), *s), *c))
        .collect()
}

/// Reads `dir`'s records and computes every statistic of the report (no file is written).
pub fn summarise(dir: &Path) -> Result<Summary> {
    let study = Study::load(dir)?;
    let mut t = Tables::new();
    let point = study.view(Images::All);
    let mut per = Vec::new();
    for (di, d) in study.datasets.iter().enumerate() {
        let lay = Layout {
            ne: d.eps.len(),
            ns: d.steps.len(),
        };
        let stats = dataset_stats(&study, &point, di, &lay);
        t.add(d, di, &point, &lay, &stats);
        per.push((lay, stats));
    }
    Ok(Summary { study, per, tables: t })
}

/// Writes every figure and table of `summary` into `dir/report/`; returns what it wrote and the
/// terminal summary.
pub fn render(summary: Summary, dir: &Path) -> Result<Report> {
    let Summary { study, per, tables: t } = summary;
    let out = dir.join("report");
    let mut files = Vec::new();
    for (d, (lay, stats)) in study.datasets.iter().zip(&per) {
        files.extend(figures(&out, d, lay, stats)?);
    }
    files.extend(t.write(&out)?);
    let names: Vec<String> = study.datasets.iter().map(|d| d.name.clone()).collect();
    let eps: Vec<f64> = study.datasets[0].eps.clone();
    let md = auc_markdown(&t, &names, &eps, &study.incomplete, (&study.attack, &study.training));
    let p = out.join("auc.md");
    write_atomic(&p, md.as_bytes())?;
    files.push(p);
    let summary = summary_text(&t, &names, &eps, &study.incomplete);
    let aucs = smallest_radius(&t.cells);
    Ok(Report {
        summary,
        files,
        aucs,
        cells: t.cells,
    })
}

/// Writes every figure and table; returns the summary ([`summarise`], then [`render`]).
pub fn write_report(dir: &Path) -> Result<Report> {
    render(summarise(dir)?, dir)
}
