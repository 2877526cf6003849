//! `validate verdict DIR`: one row per finding of Li et al. 2025 (arXiv:2503.14836), each with
//! the paper's claim, what was measured (with its 95% interval), the test behind the verdict and
//! the verdict itself — **holds**, **does not hold** or **undecided** — written to
//! `DIR/report/findings.md`, `findings.csv` and, per tested cell, `findings_cells.csv`.
//!
//! Every interval is a percentile bootstrap over seeds and evaluation images
//! ([`crate::validate::study::analysis`]). The tests, cell by cell:
//!
//! 1. *Robustness rises, then falls, early in fine-tuning* (paper §5, Fig. 3), per (task,
//!    strategy, ε). Cross-fitted so that picking the peak cannot manufacture a fall: the peak
//!    step p is the argmax of the seed-mean robust accuracy on the even-positioned evaluation
//!    images; on the odd-positioned ones, rise = rob(p) − rob(first step after 0) and
//!    drop = rob(p) − rob(last step), each with its bootstrap interval. Holds: both intervals
//!    above 0. Does not hold: on all images, the best interior step exceeds the better of the
//!    two ends by less than [`NEGLIGIBLE`] (half an accuracy point) with 95% confidence — the
//!    maximum is re-taken in every replicate, which biases this statistic upwards, so the
//!    rule errs towards "undecided". Otherwise undecided.
//! 2. *Linear probing and full fine-tuning have the worst AUC* (paper Table 2), per (task, ε):
//!    P = bootstrap probability that they are the two lowest mean AUCs. Holds: P ≥ 0.95; does not
//!    hold: P ≤ 0.05.
//! 3. *BitFit best on simple tasks, Compacter on complex ones* (paper §5), per ε: "simple" and
//!    "complex" are the tasks with the highest and lowest measured separability (κ of the
//!    nearest-class-mean accuracy of the pretrained features, recorded in the headers).
//!    Holds: P(BitFit best on simple) ≥ 0.95 and P(Compacter best on complex) ≥ 0.95; does not
//!    hold: either ≤ 0.05. "Best" is strictly best: a replicate where strategies tie for the top
//!    AUC counts as a win for none of them (and a tie at the bottom counts for each, in 2).
//! 4. *OOD accuracy tracks clean accuracy and shows no rise-then-fall* (paper §5), per (task,
//!    strategy): Pearson r between the seed-mean OOD and clean curves over the steps after 0,
//!    and the test of finding 1 on the OOD curve. Holds: r's interval above 0.5 and no
//!    rise-then-fall (test 1 not "holds"); does not hold: r's interval below 0.5 or a
//!    rise-then-fall that holds.
//! 5. *The theory predicts the measured ranking*, per (task, ε), for (a) the k+d bound (robustness
//!    at matched accuracy falls with the trainable count k of the model actually trained) and (b)
//!    the training-dynamics model's AUC at the task's d: Spearman ρ with its exact one-sided
//!    permutation p-value and its bootstrap interval. Holds: p < 0.05 and the interval above 0;
//!    does not hold: the interval below 0.5 (at best a weak association).
//! 6. *The ranking measured with PGD survives a stronger attack* (the paper's first stated
//!    limitation), per (task, checkpoint, ε), only when `validate gap` has scored the folder's
//!    peak-robustness and final checkpoints with AutoAttack ([`crate::validate::checkpoints::gap`]): Spearman ρ between
//!    the strategies' robust accuracies under PGD and under AutoAttack on the same images, with
//!    its bootstrap interval over images. Holds: the interval at or above 0.8; does not hold: the
//!    interval below 0.8.
//!
//! A finding's verdict over its cells: holds when more than half of its cells hold, does not
//! hold when more than half do not, undecided otherwise; the table says how many of how many.
//!
//! After the verdicts and rankings, `findings.md` gives the best achievable robustness at a clean
//! target per strategy, under the folder's training trajectory, its interpolation path where
//! `validate interpolate` ran, and any other folders given (`validate verdict DIR --with
//! ROBUST_DIR`): [`crate::validate::study::at_target`], also written to `best_at_target.csv`; and, per
//! `--with` folder that fine-tuned robustly, `validate versus` against this one (AUC per
//! strategy and ε, Spearman ρ between the rankings with its CI).

mod ood;
mod ranking;
mod render;
mod rise_fall;
mod stronger;
mod theory;

use std::fmt::Write as _;
use std::path::Path;

use crate::engine::peft::Strategy;
use crate::error::{Error, Result};
use crate::io::num;
use crate::io::{Csv, write_atomic};
use crate::tradeoff::bootstrap::percentile_interval;
use crate::tradeoff::{AucRule, Interval};
use crate::validate::study::analysis::{Curves, DatasetData, Study, View, column, mean_of};

pub use crate::tradeoff::peak::NEGLIGIBLE;

/// Probability thresholds of the ranking findings.
pub const P_HOLDS: f64 = 0.95;
/// See [`P_HOLDS`].
pub const P_FAILS: f64 = 0.05;

/// One of the three answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    /// The measurement supports the claim.
    Holds,
    /// The measurement contradicts the claim.
    DoesNotHold,
    /// Neither, at this sample size.
    Undecided,
}

impl Verdict {
    /// As printed.
    pub fn text(self) -> &'static str {
        match self {
            Verdict::Holds => "holds",
            Verdict::DoesNotHold => "does not hold",
            Verdict::Undecided => "undecided",
        }
    }

    /// The majority rule over cells (see the module docs).
    pub fn majority(cells: &[Verdict]) -> Verdict {
        let n = cells.len();
        let count = |v: Verdict| cells.iter().filter(|c| **c == v).count();
        if n > 0 && 2 * count(Verdict::Holds) > n {
            Verdict::Holds
        } else if n > 0 && 2 * count(Verdict::DoesNotHold) > n {
            Verdict::DoesNotHold
        } else {
            Verdict::Undecided
        }
    }

    /// From a bootstrap probability.
    pub(crate) fn of_probability(p: f64) -> Verdict {
        if p >= P_HOLDS {
            Verdict::Holds
        } else if p <= P_FAILS {
            Verdict::DoesNotHold
        } else {
            Verdict::Undecided
        }
    }
}

/// One tested cell.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    /// Finding number ("1" … "6").
    pub finding: String,
    /// Dataset (task).
    pub dataset: String,
    /// Strategy, when the cell is per strategy.
    pub strategy: Option<Strategy>,
    /// Radius, when the cell is per radius.
    pub eps: Option<f64>,
    /// What is estimated.
    pub statistic: String,
    /// Point estimate.
    pub estimate: f64,
    /// Its 95% interval (None where the statistic is a probability).
    pub ci: Option<Interval>,
    /// The cell's verdict.
    pub verdict: Verdict,
    /// Extra detail (peak step, p-value, …).
    pub note: String,
}

/// One row of the findings table.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// "1" … "6".
    pub id: String,
    /// The paper's claim.
    pub claim: String,
    /// What was measured, with intervals.
    pub measured: String,
    /// The test behind the verdict.
    pub test: String,
    /// The verdict.
    pub verdict: Verdict,
}

/// Everything `verdict` found.
pub struct Findings {
    /// One row per finding.
    pub rows: Vec<Finding>,
    /// Every tested cell.
    pub cells: Vec<Cell>,
    /// The Markdown written to `findings.md`.
    pub markdown: String,
    /// Its section on the best robustness at the clean target (None without per-image outcomes).
    pub at_target: Option<crate::validate::study::at_target::AtTarget>,
}

/// What the tests accumulate: one row per finding and every tested cell.
#[derive(Default)]
struct Out {
    rows: Vec<Finding>,
    cells: Vec<Cell>,
}

/// Runs every test on the records in `dir` and writes the findings files.
pub fn verdict(dir: &Path, reps: usize) -> Result<Findings> {
    verdict_with(dir, &[], None, reps)
}

/// [`verdict`], with the section "best achievable robustness at the clean target" also taking
/// the folders `with` (robust fine-tuning of the same tasks, say) as columns, and the target
/// `min_clean` for every task instead of the default ([`crate::validate::study::at_target`]).
pub fn verdict_with(dir: &Path, with: &[std::path::PathBuf], min_clean: Option<f64>, reps: usize) -> Result<Findings> {
    let study = Study::load(dir)?;
    let dirs: Vec<std::path::PathBuf> = std::iter::once(dir.to_path_buf()).chain(with.iter().cloned()).collect();
    let at_target = crate::validate::study::at_target::at_target(&dirs, min_clean, reps)?;
    let mut out = Out::default();
    rise_fall::finding_1(&study, reps, &mut out);
    let rank_rows = ranking::findings_2_and_3(&study, reps, &mut out);
    ood::finding_4(&study, reps, &mut out);
    theory::finding_5(&study, reps, &mut out)?;
    stronger::finding_6(dir, reps, &mut out)?;
    let Out { rows, cells } = out;
    let mut markdown = render::render(&rows, &cells, &rank_rows, &study, reps);
    // Before the long per-cell table: the best robustness at the clean target, then each robust
    // fine-tuning folder given set against this one (`validate versus`).
    let mut extra = at_target.as_ref().map_or_else(String::new, |t| t.markdown(&dirs));
    for w in with {
        let other = Study::load(w)?;
        if other.training_kind() != "standard" {
            let (md, _) = crate::validate::study::versus::versus_studies(&study, &other, dir, w, reps)?;
            // The title one level down, naming the folder; its sections with it.
            let (title, body) = md.split_once('\n').unwrap_or((md.as_str(), ""));
            extra += &format!("\n#{title}: {}\n", w.display());
            extra += &body.replace("\n## ", "\n### ");
        }
    }
    let at = markdown.find("\n## Cells\n").unwrap_or(markdown.len());
    markdown.insert_str(at, &extra);
    let out = dir.join("report");
    std::fs::create_dir_all(&out).map_err(|e| Error::io(&out, e))?;
    write_atomic(&out.join("findings.md"), markdown.as_bytes())?;
    if let Some(t) = &at_target {
        write_atomic(&out.join("best_at_target.csv"), t.csv().as_bytes())?;
    }
    let mut csv =
        Csv::new(&["finding", "claim", "measured", "test", "verdict"]).always_quoted(&["claim", "measured", "test"]);
    for r in &rows {
        csv.push(vec![
            r.id.clone(),
            r.claim.clone(),
            r.measured.clone(),
            r.test.clone(),
            r.verdict.text().into(),
        ]);
    }
    write_atomic(&out.join("findings.csv"), csv.render().as_bytes())?;
    let mut cc = Csv::new(&[
        "finding",
        "dataset",
        "strategy",
        "eps",
        "statistic",
        "estimate",
        "lo",
        "hi",
        "verdict",
        "note",
    ])
    .always_quoted(&["dataset", "statistic", "note"]);
    for c in &cells {
        cc.push(vec![
            c.finding.clone(),
            c.dataset.clone(),
            c.strategy.map_or(String::new(), |s| s.id().into()),
            c.eps.map_or(String::new(), num),
            c.statistic.clone(),
            num(c.estimate),
            c.ci.map_or(String::new(), |i| num(i.lo)),
            c.ci.map_or(String::new(), |i| num(i.hi)),
            c.verdict.text().into(),
            c.note.clone(),
        ]);
    }
    write_atomic(&out.join("findings_cells.csv"), cc.render().as_bytes())?;
    Ok(Findings {
        rows,
        cells,
        markdown,
        at_target,
    })
}

/// The findings as terminal text: one block per finding.
pub fn table(rows: &[Finding]) -> String {
    let mut s =
        String::from("Findings of Li et al. 2025 on these runs (report/findings.md has the tests and every cell):\n");
    for r in rows {
        let _ = writeln!(
            s,
            "{:>3}  {:<14} {}\n     measured: {}",
            r.id,
            r.verdict.text().to_uppercase(),
            r.claim,
            r.measured
        );
    }
    s
}

pub(super) fn interval(reps: &[Vec<f64>], j: usize) -> Option<Interval> {
    percentile_interval(&column(reps, j))
}

pub(super) fn fmt_ci(x: f64, ci: Option<Interval>) -> String {
    match ci {
        Some(c) => format!("{x:.3} [{:.3}, {:.3}]", c.lo, c.hi),
        None => format!("{x:.3}"),
    }
}

/// Indices of the steps after step 0.
pub(super) fn trained(d: &DatasetData) -> Vec<usize> {
    (0..d.steps.len()).filter(|&i| d.steps[i] > 0).collect()
}

pub(super) fn mean_of_opt(cs: &[Curves], f: impl Fn(&Curves) -> Option<f64>) -> f64 {
    let v: Vec<f64> = cs.iter().filter_map(f).collect();
    if v.is_empty() {
        f64::NAN
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// Mean AUC per strategy (canonical order) at radius `e`.
pub(super) fn mean_aucs(v: &View, di: usize, strategies: &[Strategy], e: usize) -> Vec<f64> {
    strategies
        .iter()
        .map(|s| mean_of(&v[&(di, *s)], |c| c.auc(e, AucRule::Step)))
        .collect()
}

/// "h of n (unit) cells hold, d do not": how a finding's cells came out.
pub(super) fn tally(v: &[Verdict], unit: &str) -> String {
    format!(
        "{} of {} ({unit}) cells hold, {} do not",
        count(v, Verdict::Holds),
        v.len(),
        count(v, Verdict::DoesNotHold)
    )
}

pub(super) fn count(v: &[Verdict], x: Verdict) -> usize {
    v.iter().filter(|c| **c == x).count()
}

pub(super) use crate::tradeoff::stats::median;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majority_and_probability_rules() {
        use Verdict::*;
        assert_eq!(Verdict::majority(&[Holds, Holds, Undecided]), Holds);
        assert_eq!(Verdict::majority(&[Holds, DoesNotHold]), Undecided);
        assert_eq!(Verdict::majority(&[DoesNotHold, DoesNotHold, Holds]), DoesNotHold);
        assert_eq!(Verdict::majority(&[]), Undecided);
        assert_eq!(Verdict::of_probability(0.95), Holds);
        assert_eq!(Verdict::of_probability(0.05), DoesNotHold);
        assert_eq!(Verdict::of_probability(0.5), Undecided);
        assert_eq!(Verdict::of_probability(f64::NAN), Undecided);
    }
}
