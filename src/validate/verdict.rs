//! `validate verdict DIR`: one row per finding of Li et al. 2025 (arXiv:2503.14836), each with
//! the paper's claim, what was measured (with its 95% interval), the test behind the verdict and
//! the verdict itself — **holds**, **does not hold** or **undecided** — written to
//! `DIR/report/findings.md`, `findings.csv` and, per tested cell, `findings_cells.csv`.
//!
//! Every interval is a percentile bootstrap over seeds and evaluation images
//! ([`super::analysis`]). The tests, cell by cell:
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
//!    hold: either ≤ 0.05.
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
//!
//! A finding's verdict over its cells: holds when more than half of its cells hold, does not
//! hold when more than half do not, undecided otherwise; the table says how many of how many.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use super::analysis::{Curves, DatasetData, Images, Study, View, column, mean_curve, mean_of};
use super::report::{eps_label, load_runs};
use super::{RunConfig, records::Header};
use crate::engine::data::synthetic::SyntheticSpec;
use crate::engine::peft::Strategy;
use crate::error::{Error, Result};
use crate::plot::{Csv, write_atomic};
use crate::simulate::dynamics::{DynamicsConfig, predicted_auc};
use crate::simulate::figures::num;
use crate::tradeoff::bootstrap::{pearson, percentile_interval, spearman_permutation};
use crate::tradeoff::{AucRule, Interval};

/// A rise or fall smaller than this (accuracy units) counts as none.
pub const NEGLIGIBLE: f64 = 0.005;

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
    fn of_probability(p: f64) -> Verdict {
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
    /// Finding number ("1" … "5b").
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
    /// "1" … "5b".
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
}

fn interval(reps: &[Vec<f64>], j: usize) -> Option<Interval> {
    percentile_interval(&column(reps, j))
}

fn fmt_ci(x: f64, ci: Option<Interval>) -> String {
    match ci {
        Some(c) => format!("{x:.3} [{:.3}, {:.3}]", c.lo, c.hi),
        None => format!("{x:.3}"),
    }
}

/// Indices of the steps after step 0.
fn trained(d: &DatasetData) -> Vec<usize> {
    (0..d.steps.len()).filter(|&i| d.steps[i] > 0).collect()
}

/// Which curve a rise-then-fall test reads.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Which {
    /// Robust accuracy at radius k.
    Robust(usize),
    /// OOD accuracy.
    Ood,
}

impl Which {
    fn of(self, c: &Curves) -> Option<&Vec<f64>> {
        match self {
            Which::Robust(k) => c.robust.get(k),
            Which::Ood => c.ood.as_ref(),
        }
    }
}

/// The rise-then-fall cells (finding 1 on robust accuracy at every radius, or on OOD accuracy for
/// finding 4): per curve, the cross-fitted rise and drop and the all-image excess.
fn rise_fall_cells(study: &Study, reps: usize, seed: u64, finding: &str, ood: bool) -> Vec<[Cell; 3]> {
    let even = study.view(Images::Even);
    // (dataset index, strategy, curve, peak, first, last) per testable cell.
    let mut plan: Vec<(usize, Strategy, Which, usize, usize, usize)> = Vec::new();
    for (di, d) in study.datasets.iter().enumerate() {
        let idx = trained(d);
        if idx.len() < 3 {
            continue;
        }
        let curves: Vec<Which> = if ood {
            vec![Which::Ood]
        } else {
            (0..d.eps.len()).map(Which::Robust).collect()
        };
        for s in d.strategies() {
            for &w in &curves {
                let a = mean_curve(&even[&(di, s)], |c| w.of(c));
                if a.is_empty() {
                    continue;
                }
                // First maximum over the steps after 0.
                let peak = idx.iter().copied().fold(idx[0], |b, i| if a[i] > a[b] { i } else { b });
                plan.push((di, s, w, peak, idx[0], *idx.last().expect("non-empty")));
            }
        }
    }
    let stat = |v: &View| -> Vec<f64> {
        plan.iter()
            .flat_map(|&(di, s, w, p, f, l)| {
                let cs = &v[&(di, s)];
                [
                    mean_of_opt(cs, |c| w.of(c).map(|r| r[p] - r[f])),
                    mean_of_opt(cs, |c| w.of(c).map(|r| r[p] - r[l])),
                ]
            })
            .collect()
    };
    let est = stat(&study.view(Images::Odd));
    let boot = study.bootstrap(Images::Odd, reps, seed, stat);
    // The excess of the best interior step over the better end, on all images and re-maximised
    // in every replicate (biased upwards, so conservative for "does not hold").
    let excess = |v: &View| -> Vec<f64> {
        plan.iter()
            .map(|&(di, s, w, _, f, l)| {
                let m = mean_curve(&v[&(di, s)], |c| w.of(c));
                let inner = (f + 1..l).map(|i| m[i]).fold(f64::NEG_INFINITY, f64::max);
                inner - m[f].max(m[l])
            })
            .collect()
    };
    let ex_est = excess(&study.view(Images::All));
    let ex_boot = study.bootstrap(Images::All, reps, seed ^ 0xe4, excess);
    let mut out = Vec::new();
    for (j, &(di, s, w, p, f, l)) in plan.iter().enumerate() {
        let d = &study.datasets[di];
        let (rci, dci, eci) = (
            interval(&boot, 2 * j),
            interval(&boot, 2 * j + 1),
            interval(&ex_boot, j),
        );
        let v = match (rci, dci, eci) {
            (Some(r), Some(dd), _) if r.lo > 0.0 && dd.lo > 0.0 => Verdict::Holds,
            (_, _, Some(e)) if e.hi < NEGLIGIBLE => Verdict::DoesNotHold,
            _ => Verdict::Undecided,
        };
        let (eps, what) = match w {
            Which::Robust(k) => (Some(d.eps[k]), "robust accuracy"),
            Which::Ood => (None, "OOD accuracy"),
        };
        let note = format!(
            "peak step {} (picked on the even-positioned images), first {}, last {}",
            d.steps[p], d.steps[f], d.steps[l]
        );
        let cell = |stat: &str, x: f64, ci| Cell {
            finding: finding.into(),
            dataset: d.name.clone(),
            strategy: Some(s),
            eps,
            statistic: format!("{what}: {stat}"),
            estimate: x,
            ci,
            verdict: v,
            note: note.clone(),
        };
        out.push([
            cell("rise to peak", est[2 * j], rci),
            cell("drop after peak", est[2 * j + 1], dci),
            cell("best interior step minus the better end", ex_est[j], eci),
        ]);
    }
    out
}

fn mean_of_opt(cs: &[Curves], f: impl Fn(&Curves) -> Option<f64>) -> f64 {
    let v: Vec<f64> = cs.iter().filter_map(f).collect();
    if v.is_empty() {
        f64::NAN
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// Mean AUC per strategy (canonical order) at radius `e`.
fn mean_aucs(v: &View, di: usize, strategies: &[Strategy], e: usize) -> Vec<f64> {
    strategies
        .iter()
        .map(|s| mean_of(&v[&(di, *s)], |c| c.auc(e, AucRule::Step)))
        .collect()
}

/// Ascending ranks (0 = lowest) of `x`, ties broken by position.
fn order(x: &[f64]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..x.len()).collect();
    idx.sort_by(|&a, &b| x[a].total_cmp(&x[b]).then(a.cmp(&b)));
    idx
}

/// The theory's d for a dataset: configured `theory_d`, else the synthetic task's d, else its
/// class count.
fn theory_d(h: &Header) -> f64 {
    let cfg: Option<RunConfig> = serde_json::from_value(h.config.clone()).ok();
    let spec = cfg
        .as_ref()
        .and_then(|c| c.datasets.iter().find(|d| d.name == h.dataset).cloned());
    let size = cfg
        .as_ref()
        .and_then(|c| c.model.resolve().ok())
        .map_or(28, |m| m.image_size);
    match spec {
        Some(s) => s.theory_d.unwrap_or_else(|| match s.task.as_deref() {
            Some(t) => SyntheticSpec::named(t, size).map_or(10.0, |x| x.d as f64),
            None => h.class_map.as_ref().map_or(10.0, |m| m.len() as f64),
        }),
        None => 10.0,
    }
}

/// Runs every test on the records in `dir` and writes the findings files.
pub fn verdict(dir: &Path, reps: usize) -> Result<Findings> {
    let runs = load_runs(dir)?;
    let study = Study::new(&runs)?;
    if study.datasets.is_empty() {
        return Err(Error::invalid(
            dir.display().to_string(),
            "at least one finished run",
            "none",
        ));
    }
    let mut cells: Vec<Cell> = Vec::new();
    let mut rows: Vec<Finding> = Vec::new();

    // 1. Rise then fall (robust accuracy).
    let rf = rise_fall_cells(&study, reps, 11, "1", false);
    let v1: Vec<Verdict> = rf.iter().map(|c| c[0].verdict).collect();
    let drops: Vec<f64> = rf.iter().map(|c| c[1].estimate).collect();
    rows.push(Finding {
        id: "1".into(),
        claim: "Robustness rises, then falls, early in fine-tuning".into(),
        measured: format!(
            "{} of {} (task, strategy, ε) cells hold, {} do not, {} undecided; median drop after the peak {:.3}",
            count(&v1, Verdict::Holds),
            v1.len(),
            count(&v1, Verdict::DoesNotHold),
            count(&v1, Verdict::Undecided),
            median(&drops)
        ),
        test: format!(
            "peak picked on half of the images, rise and drop measured on the other half: both 95% CIs > 0 holds; best interior step minus the better end (all images) with CI < {NEGLIGIBLE}: does not hold; majority over cells"
        ),
        verdict: Verdict::majority(&v1),
    });
    cells.extend(rf.into_iter().flatten());

    // 2 and 3: rankings of the mean AUC.
    let point = study.view(Images::All);
    let mut plan: Vec<(usize, usize, Vec<Strategy>)> = Vec::new();
    for (di, d) in study.datasets.iter().enumerate() {
        for e in 0..d.eps.len() {
            plan.push((di, e, d.strategies()));
        }
    }
    let ranks = |v: &View| -> Vec<f64> {
        plan.iter()
            .flat_map(|(di, e, ss)| {
                let o = order(&mean_aucs(v, *di, ss, *e));
                // Per strategy: its ascending rank.
                let mut r = vec![0.0; ss.len()];
                for (pos, &i) in o.iter().enumerate() {
                    r[i] = pos as f64;
                }
                r
            })
            .collect()
    };
    let boot = study.bootstrap(Images::All, reps, 22, ranks);
    let est_ranks = ranks(&point);
    let mut off = 0;
    let mut v2 = Vec::new();
    let mut p_best: BTreeMap<(usize, usize, Strategy), f64> = BTreeMap::new();
    let mut rank_rows = String::new();
    for (di, e, ss) in &plan {
        let d = &study.datasets[*di];
        let n = ss.len();
        let prob = |f: &dyn Fn(&[f64]) -> bool| {
            if d.resamplable {
                boot.iter().filter(|r| f(&r[off..off + n])).count() as f64 / reps as f64
            } else {
                f64::NAN
            }
        };
        let aucs = mean_aucs(&point, *di, ss, *e);
        for (i, s) in ss.iter().enumerate() {
            let pb = prob(&|r: &[f64]| r[i] as usize == n - 1);
            let pbot = prob(&|r: &[f64]| (r[i] as usize) < 2);
            p_best.insert((*di, *e, *s), pb);
            let _ = writeln!(
                rank_rows,
                "| {} | {} | {} | {:.4} | {} | {:.3} | {:.3} |",
                d.name,
                eps_label(d.eps[*e]),
                s.name(),
                aucs[i],
                n - est_ranks[off + i] as usize,
                pb,
                pbot
            );
        }
        let (lp, full) = (
            ss.iter().position(|s| *s == Strategy::LinearProbe),
            ss.iter().position(|s| *s == Strategy::Full),
        );
        if let (Some(lp), Some(full)) = (lp, full) {
            let p = prob(&|r: &[f64]| (r[lp] as usize) < 2 && (r[full] as usize) < 2);
            let v = Verdict::of_probability(p);
            v2.push(v);
            cells.push(Cell {
                finding: "2".into(),
                dataset: d.name.clone(),
                strategy: None,
                eps: Some(d.eps[*e]),
                statistic: "P(Linear Probing and Full are the two lowest AUCs)".into(),
                estimate: p,
                ci: None,
                verdict: v,
                note: format!(
                    "measured ranks (1 = best): Full {}, Linear Probing {}",
                    n - est_ranks[off + full] as usize,
                    n - est_ranks[off + lp] as usize
                ),
            });
        }
        off += n;
    }
    rows.push(Finding {
        id: "2".into(),
        claim: "Linear probing and full fine-tuning have the worst AUC".into(),
        measured: format!(
            "{} of {} (task, ε) cells hold, {} do not; P per cell in findings_cells.csv",
            count(&v2, Verdict::Holds),
            v2.len(),
            count(&v2, Verdict::DoesNotHold)
        ),
        test: format!("bootstrap probability that both are the two lowest mean AUCs: ≥ {P_HOLDS} holds, ≤ {P_FAILS} does not; majority over cells"),
        verdict: Verdict::majority(&v2),
    });

    // 3. BitFit on simple, Compacter on complex.
    let kappa = |d: &DatasetData| d.any_run().header.separability.as_ref().map(|s| s.ncm_kappa);
    let measured: Vec<(usize, f64)> = study
        .datasets
        .iter()
        .enumerate()
        .filter_map(|(i, d)| kappa(d).map(|k| (i, k)))
        .collect();
    let mut v3 = Vec::new();
    let mut m3 = String::from("needs two tasks with measured separability");
    if measured.len() >= 2 {
        let simple = measured.iter().max_by(|a, b| a.1.total_cmp(&b.1)).expect("two").0;
        let complex = measured.iter().min_by(|a, b| a.1.total_cmp(&b.1)).expect("two").0;
        let (ds, dc) = (&study.datasets[simple], &study.datasets[complex]);
        let mut parts = Vec::new();
        for e in 0..ds.eps.len().min(dc.eps.len()) {
            // A strategy that did not run cannot be tested: NaN gives "undecided".
            let pb = p_best.get(&(simple, e, Strategy::Bitfit)).copied().unwrap_or(f64::NAN);
            let pc = p_best
                .get(&(complex, e, Strategy::Compacter))
                .copied()
                .unwrap_or(f64::NAN);
            let v = if pb >= P_HOLDS && pc >= P_HOLDS {
                Verdict::Holds
            } else if pb <= P_FAILS || pc <= P_FAILS {
                Verdict::DoesNotHold
            } else {
                Verdict::Undecided
            };
            v3.push(v);
            parts.push(format!("ε {}: {pb:.2} / {pc:.2}", eps_label(ds.eps[e])));
            cells.push(Cell {
                finding: "3".into(),
                dataset: format!("{} (simple) / {} (complex)", ds.name, dc.name),
                strategy: None,
                eps: Some(ds.eps[e]),
                statistic: "P(BitFit best on simple), P(Compacter best on complex)".into(),
                estimate: pb,
                ci: None,
                verdict: v,
                note: format!("P(Compacter best on complex) = {pc:.3}"),
            });
        }
        m3 = format!(
            "simple = {} (κ {:.3}), complex = {} (κ {:.3}); P(BitFit best) / P(Compacter best): {}",
            ds.name,
            kappa(ds).unwrap_or(f64::NAN),
            dc.name,
            kappa(dc).unwrap_or(f64::NAN),
            parts.join("; ")
        );
    }
    rows.push(Finding {
        id: "3".into(),
        claim: "BitFit is best on simple tasks, Compacter on complex ones".into(),
        measured: m3,
        test: format!("tasks ordered by measured separability; both probabilities ≥ {P_HOLDS}: holds; either ≤ {P_FAILS}: does not hold; majority over ε"),
        verdict: Verdict::majority(&v3),
    });

    // 4. OOD tracks clean, no rise-then-fall.
    let ood_rf = rise_fall_cells(&study, reps, 33, "4", true);
    let corr_plan: Vec<(usize, Strategy)> = study
        .datasets
        .iter()
        .enumerate()
        .flat_map(|(di, d)| d.strategies().into_iter().map(move |s| (di, s)))
        .collect();
    let corr = |v: &View| -> Vec<f64> {
        corr_plan
            .iter()
            .map(|&(di, s)| {
                let idx = trained(&study.datasets[di]);
                let cs = &v[&(di, s)];
                let clean = mean_curve(cs, |c| Some(&c.clean));
                let ood = mean_curve(cs, |c| c.ood.as_ref());
                if ood.is_empty() {
                    return f64::NAN;
                }
                let pick = |x: &[f64]| idx.iter().map(|&i| x[i]).collect::<Vec<_>>();
                pearson(&pick(&clean), &pick(&ood)).unwrap_or(f64::NAN)
            })
            .collect()
    };
    let est = corr(&point);
    let boot = study.bootstrap(Images::All, reps, 44, corr);
    let mut v4 = Vec::new();
    let mut rs = Vec::new();
    for (j, &(di, s)) in corr_plan.iter().enumerate() {
        if !est[j].is_finite() {
            continue;
        }
        let d = &study.datasets[di];
        let ci = interval(&boot, j);
        let rf = ood_rf
            .iter()
            .find(|c| c[0].dataset == d.name && c[0].strategy == Some(s))
            .map(|c| c[0].verdict);
        let v = match ci {
            _ if rf == Some(Verdict::Holds) => Verdict::DoesNotHold,
            Some(c) if c.hi < 0.5 => Verdict::DoesNotHold,
            Some(c) if c.lo > 0.5 => Verdict::Holds,
            _ => Verdict::Undecided,
        };
        v4.push(v);
        rs.push(est[j]);
        cells.push(Cell {
            finding: "4".into(),
            dataset: d.name.clone(),
            strategy: Some(s),
            eps: None,
            statistic: "Pearson r(OOD, clean) over the steps after 0".into(),
            estimate: est[j],
            ci,
            verdict: v,
            note: format!("OOD rise-then-fall: {}", rf.map_or("not tested", Verdict::text)),
        });
    }
    cells.extend(ood_rf.into_iter().flatten());
    rows.push(Finding {
        id: "4".into(),
        claim: "OOD accuracy tracks clean accuracy and shows no rise-then-fall".into(),
        measured: if rs.is_empty() {
            "no OOD set in these runs".into()
        } else {
            format!(
                "{} of {} (task, strategy) cells hold, {} do not; median r {:.3}",
                count(&v4, Verdict::Holds),
                v4.len(),
                count(&v4, Verdict::DoesNotHold),
                median(&rs)
            )
        },
        test: "r's 95% CI > 0.5 and the OOD curve's rise-then-fall test not 'holds': holds; CI < 0.5 or a rise-then-fall: does not hold; majority over cells".into(),
        verdict: Verdict::majority(&v4),
    });

    // 5. Theory's rankings.
    for (id, name) in [("5a", "k+d bound"), ("5b", "training-dynamics model")] {
        let (v5, measured) = theory_cells(&study, &point, reps, id, name, &mut cells)?;
        rows.push(Finding {
            id: id.into(),
            claim: format!("The {name} predicts the measured AUC ranking"),
            measured,
            test: "Spearman ρ(predicted, measured mean AUC), exact one-sided permutation p and bootstrap 95% CI: p < 0.05 and CI > 0 holds; CI < 0.5 does not hold; majority over (task, ε)".into(),
            verdict: Verdict::majority(&v5),
        });
    }

    let markdown = render(&rows, &cells, &rank_rows, &study, reps);
    let out = dir.join("report");
    std::fs::create_dir_all(&out).map_err(|e| Error::io(&out, e))?;
    write_atomic(&out.join("findings.md"), markdown.as_bytes())?;
    let mut csv = Csv::new(&["finding", "claim", "measured", "test", "verdict"]);
    for r in &rows {
        csv.push(vec![
            r.id.clone(),
            quote(&r.claim),
            quote(&r.measured),
            quote(&r.test),
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
    ]);
    for c in &cells {
        cc.push(vec![
            c.finding.clone(),
            quote(&c.dataset),
            c.strategy.map_or(String::new(), |s| s.id().into()),
            c.eps.map_or(String::new(), num),
            quote(&c.statistic),
            num(c.estimate),
            c.ci.map_or(String::new(), |i| num(i.lo)),
            c.ci.map_or(String::new(), |i| num(i.hi)),
            c.verdict.text().into(),
            quote(&c.note),
        ]);
    }
    write_atomic(&out.join("findings_cells.csv"), cc.render().as_bytes())?;
    Ok(Findings { rows, cells, markdown })
}

/// Finding 5 for one theory: cells per (task, ε); returns the verdicts and the summary text.
fn theory_cells(
    study: &Study,
    point: &View,
    reps: usize,
    id: &str,
    name: &str,
    cells: &mut Vec<Cell>,
) -> Result<(Vec<Verdict>, String)> {
    let dyn_cfg = DynamicsConfig::default_config();
    let mut plan: Vec<(usize, usize, Vec<Strategy>, Vec<f64>)> = Vec::new();
    for (di, d) in study.datasets.iter().enumerate() {
        let ss = d.strategies();
        if ss.len() < 3 {
            continue;
        }
        let pred: Vec<f64> = if id == "5a" {
            // Fewer trainable parameters: more robust at matched accuracy (Φ(z − ε√(k+d))).
            ss.iter()
                .map(|s| {
                    let r = d.runs[s].iter().flatten().next().expect("a run");
                    -(r.header.trainable_backbone as f64)
                })
                .collect()
        } else {
            let td = theory_d(&d.any_run().header);
            let p = predicted_auc(&dyn_cfg, (td.round() as usize).max(1))?;
            ss.iter()
                .map(|s| p.iter().find(|x| x.0 == *s).map_or(f64::NAN, |x| x.1))
                .collect()
        };
        for e in 0..d.eps.len() {
            plan.push((di, e, ss.clone(), pred.clone()));
        }
    }
    let rho = |v: &View| -> Vec<f64> {
        plan.iter()
            .map(|(di, e, ss, pred)| crate::tradeoff::spearman(pred, &mean_aucs(v, *di, ss, *e)).unwrap_or(f64::NAN))
            .collect()
    };
    let boot = study.bootstrap(Images::All, reps, if id == "5a" { 55 } else { 56 }, rho);
    let mut verdicts = Vec::new();
    let mut parts = Vec::new();
    for (j, (di, e, ss, pred)) in plan.iter().enumerate() {
        let d = &study.datasets[*di];
        let m = mean_aucs(point, *di, ss, *e);
        let (r, p) = spearman_permutation(pred, &m).unwrap_or((f64::NAN, f64::NAN));
        let ci = interval(&boot, j);
        let v = match ci {
            Some(c) if p < 0.05 && c.lo > 0.0 => Verdict::Holds,
            Some(c) if c.hi < 0.5 => Verdict::DoesNotHold,
            _ => Verdict::Undecided,
        };
        verdicts.push(v);
        parts.push(format!("{} ε {}: ρ {}", d.name, eps_label(d.eps[*e]), fmt_ci(r, ci)));
        cells.push(Cell {
            finding: id.into(),
            dataset: d.name.clone(),
            strategy: None,
            eps: Some(d.eps[*e]),
            statistic: format!("Spearman ρ({name}, measured AUC)"),
            estimate: r,
            ci,
            verdict: v,
            note: format!("permutation p = {p:.4}"),
        });
    }
    Ok((verdicts, parts.join("; ")))
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

fn count(v: &[Verdict], x: Verdict) -> usize {
    v.iter().filter(|c| **c == x).count()
}

fn median(v: &[f64]) -> f64 {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if s.is_empty() {
        return f64::NAN;
    }
    s.sort_by(f64::total_cmp);
    let m = s.len() / 2;
    if s.len() % 2 == 1 {
        s[m]
    } else {
        (s[m - 1] + s[m]) / 2.0
    }
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "'"))
}

/// Where the backbone came from and how separable each task is (from the run headers).
fn context(study: &Study) -> String {
    let mut s = String::from("## Backbone and tasks\n\n");
    if let Some(u) = study.datasets.iter().find_map(|d| d.any_run().header.upstream.clone()) {
        let _ = writeln!(
            s,
            "Backbone pretrained on {} ({} images, {} steps): held-out accuracy {:.3} [{:.3}, {:.3}] on {} upstream test images (`{}`).\n",
            u.source,
            u.train_images,
            u.steps,
            u.held_out_acc,
            u.held_out_ci.lo,
            u.held_out_ci.hi,
            u.held_out_n,
            u.checkpoint
        );
    } else {
        s.push_str("Backbone: a configured checkpoint (no upstream accuracy recorded).\n\n");
    }
    let kappas: Vec<f64> = study
        .datasets
        .iter()
        .filter_map(|d| d.any_run().header.separability.as_ref().map(|x| x.ncm_kappa))
        .collect();
    let (hi, lo) = kappas
        .iter()
        .fold((f64::NEG_INFINITY, f64::INFINITY), |(a, b), &k| (a.max(k), b.min(k)));
    s.push_str("| task | classes (original labels) | NCM accuracy of the pretrained features | κ | upstream similarity | role |\n|---|---|---|---|---|---|\n");
    for d in &study.datasets {
        let h = &d.any_run().header;
        let classes = h.class_map.as_ref().map_or("all".into(), |c| format!("{c:?}"));
        match &h.separability {
            Some(x) => {
                let role = if kappas.len() < 2 {
                    "-"
                } else if x.ncm_kappa == hi {
                    "simple"
                } else if x.ncm_kappa == lo {
                    "complex"
                } else {
                    "-"
                };
                let _ = writeln!(
                    s,
                    "| {} | {classes} | {:.3} (n = {}) | {:.3} | {} | {role} |",
                    d.name,
                    x.ncm_acc,
                    x.n,
                    x.ncm_kappa,
                    x.upstream_similarity.map_or("-".into(), |v| format!("{v:.3}"))
                );
            }
            None => {
                let _ = writeln!(s, "| {} | {classes} | - | - | - | - |", d.name);
            }
        }
    }
    s
}

fn render(rows: &[Finding], cells: &[Cell], rank_rows: &str, study: &Study, reps: usize) -> String {
    let mut s = String::from("# Findings of Li et al. 2025, tested\n\n");
    let seeds: Vec<String> = study
        .datasets
        .iter()
        .map(|d| {
            let note = if d.resamplable && d.seeds.len() == 1 {
                " (one seed: intervals cover evaluation-image sampling only, not training randomness)"
            } else if d.resamplable {
                ""
            } else {
                " (no intervals: records without per-image outcomes and fewer than 3 seeds, so every verdict is undecided)"
            };
            format!("{}: {} seeds × {} images{note}", d.name, d.seeds.len(), d.any_run().n)
        })
        .collect();
    let _ = writeln!(
        s,
        "Sample: {}. Intervals: 95% percentile bootstrap over seeds and evaluation images ({reps} replicates). \
         Tests and thresholds: `src/validate/verdict.rs` (module docs) and README.\n",
        seeds.join("; ")
    );
    s.push_str(&context(study));
    s.push_str("\n## Verdicts\n\n| # | paper's claim | measured | test | verdict |\n|---|---|---|---|---|\n");
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | **{}** |",
            r.id,
            r.claim,
            r.measured,
            r.test,
            r.verdict.text()
        );
    }
    s.push_str("\n## Rankings (mean AUC over seeds; P from the bootstrap)\n\n| task | ε | strategy | mean AUC | rank | P(best) | P(bottom two) |\n|---|---|---|---|---|---|---|\n");
    s.push_str(rank_rows);
    s.push_str("\n## Cells\n\n| finding | task | strategy | ε | statistic | estimate [95% CI] | verdict | note |\n|---|---|---|---|---|---|---|---|\n");
    for c in cells {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            c.finding,
            c.dataset,
            c.strategy.map_or("-", |x| x.name()),
            c.eps.map_or("-".into(), eps_label),
            c.statistic,
            fmt_ci(c.estimate, c.ci),
            c.verdict.text(),
            c.note
        );
    }
    s
}
