//! Findings 2 and 3: rankings of the mean AUC and their bootstrap probabilities.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::engine::peft::Strategy;
use crate::validate::study::analysis::{DatasetData, Images, Study, View};
use crate::validate::study::report::eps_label;
use crate::validate::study::verdict::{Cell, Finding, Out, P_FAILS, P_HOLDS, Verdict, mean_aucs, tally};

/// One (task, ε) cell of the ranking: its strategies are ranked against each other.
struct RankCell {
    /// Index of the dataset in `Study::datasets`.
    dataset: usize,
    /// Index of ε in the dataset's radii.
    eps: usize,
    /// The strategies the dataset ran, in their order in the ranks.
    strategies: Vec<Strategy>,
}

/// P(best) per (dataset index, ε index, strategy); finding 3 reads it.
type BestProbabilities = BTreeMap<(usize, usize, Strategy), f64>;

/// Every (task, ε) cell, dataset by dataset, ε by ε.
fn ranking_plan(study: &Study) -> Vec<RankCell> {
    let mut plan = Vec::new();
    for (di, d) in study.datasets.iter().enumerate() {
        for e in 0..d.eps.len() {
            plan.push(RankCell {
                dataset: di,
                eps: e,
                strategies: d.strategies(),
            });
        }
    }
    plan
}

/// Per cell of `plan` and strategy, in order: how many strategies have a strictly smaller mean AUC in `v`.
fn strict_ranks(plan: &[RankCell], v: &View) -> Vec<f64> {
    plan.iter()
        .flat_map(|c| {
            // Per strategy: how many strategies have a strictly smaller AUC. Best means
            // n − 1 (strictly above every other: a tie for first is nobody's win), in the
            // bottom two means < 2 (a tie at the bottom counts for each tied strategy).
            let a = mean_aucs(v, c.dataset, &c.strategies, c.eps);
            a.iter()
                .map(|x| a.iter().filter(|y| *y < x).count() as f64)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The strict ranks of the whole plan: on the records, and on each bootstrap replicate.
struct RankDraws {
    /// Ranks on the records themselves.
    estimate: Vec<f64>,
    /// Ranks per bootstrap replicate.
    boot: Vec<Vec<f64>>,
    /// Number of replicates.
    reps: usize,
}

impl RankDraws {
    /// Share of replicates whose ranks at `off..off + n` satisfy `f`; NaN when `d` cannot be resampled.
    fn probability(&self, d: &DatasetData, off: usize, n: usize, f: &dyn Fn(&[f64]) -> bool) -> f64 {
        if d.resamplable {
            self.boot.iter().filter(|r| f(&r[off..off + n])).count() as f64 / self.reps as f64
        } else {
            f64::NAN
        }
    }
}

/// What finding 2 leaves for the caller: the ranking table, P(best) for finding 3, the verdicts.
struct Finding2 {
    /// The ranking table's Markdown rows.
    rank_rows: String,
    /// P(best) per cell and strategy.
    p_best: BestProbabilities,
    /// One verdict per cell where both Linear Probing and Full ran.
    verdicts: Vec<Verdict>,
}

/// Finding 2 per (task, ε): ranking rows and P(best) per strategy, a cell per (task, ε) with both extremes.
fn finding_2(study: &Study, plan: &[RankCell], draws: &RankDraws, point: &View, out: &mut Out) -> Finding2 {
    let mut off = 0;
    let mut f2 = Finding2 {
        rank_rows: String::new(),
        p_best: BTreeMap::new(),
        verdicts: Vec::new(),
    };
    for cell in plan {
        let d = &study.datasets[cell.dataset];
        let n = cell.strategies.len();
        let aucs = mean_aucs(point, cell.dataset, &cell.strategies, cell.eps);
        for (i, s) in cell.strategies.iter().enumerate() {
            let pb = draws.probability(d, off, n, &|r: &[f64]| r[i] as usize == n - 1);
            let pbot = draws.probability(d, off, n, &|r: &[f64]| (r[i] as usize) < 2);
            f2.p_best.insert((cell.dataset, cell.eps, *s), pb);
            let _ = writeln!(
                f2.rank_rows,
                "| {} | {} | {} | {:.4} | {} | {:.3} | {:.3} |",
                d.name,
                eps_label(d.eps[cell.eps]),
                s.name(),
                aucs[i],
                n - draws.estimate[off + i] as usize,
                pb,
                pbot
            );
        }
        if let Some(v) = extremes_lowest(d, cell, off, draws, out) {
            f2.verdicts.push(v);
        }
        off += n;
    }
    f2
}

/// Finding 2's cell for one (task, ε) whose ranks start at `off`: P(Linear Probing and Full are the two
/// lowest); `None` when either did not run.
fn extremes_lowest(d: &DatasetData, cell: &RankCell, off: usize, draws: &RankDraws, out: &mut Out) -> Option<Verdict> {
    let ss = &cell.strategies;
    let n = ss.len();
    let (lp, full) = (
        ss.iter().position(|s| *s == Strategy::LinearProbe),
        ss.iter().position(|s| *s == Strategy::Full),
    );
    let (Some(lp), Some(full)) = (lp, full) else {
        return None;
    };
    let p = draws.probability(d, off, n, &|r: &[f64]| (r[lp] as usize) < 2 && (r[full] as usize) < 2);
    let v = Verdict::of_probability(p);
    out.cells.push(Cell {
        finding: "2".into(),
        dataset: d.name.clone(),
        strategy: None,
        eps: Some(d.eps[cell.eps]),
        statistic: "P(Linear Probing and Full are the two lowest AUCs)".into(),
        estimate: p,
        ci: None,
        verdict: v,
        note: format!(
            "measured ranks (1 = best): Full {}, Linear Probing {}",
            n - draws.estimate[off + full] as usize,
            n - draws.estimate[off + lp] as usize
        ),
    });
    Some(v)
}

/// Finding 2 per (task, ε), finding 3 per ε; returns the ranking table's Markdown rows.
pub(super) fn findings_2_and_3(study: &Study, reps: usize, out: &mut Out) -> String {
    let point = study.view(Images::All);
    let plan = ranking_plan(study);
    let ranks = |v: &View| strict_ranks(&plan, v);
    let boot = study.bootstrap(Images::All, reps, 22, ranks);
    let draws = RankDraws {
        estimate: ranks(&point),
        boot,
        reps,
    };
    let f2 = finding_2(study, &plan, &draws, &point, out);
    out.rows.push(Finding {
        id: "2".into(),
        claim: "Linear probing and full fine-tuning have the worst AUC".into(),
        measured: format!("{}; P per cell in findings_cells.csv", tally(&f2.verdicts, "task, ε")),
        test: format!("bootstrap probability that both are the two lowest mean AUCs: ≥ {P_HOLDS} holds, ≤ {P_FAILS} does not; majority over cells"),
        verdict: Verdict::majority(&f2.verdicts),
    });
    finding_3(study, &f2.p_best, out);
    f2.rank_rows
}

/// Finding 3 per ε: both P(best) at least `P_HOLDS` holds, either at most `P_FAILS` does not.
fn best_on_both(pb: f64, pc: f64) -> Verdict {
    if pb >= P_HOLDS && pc >= P_HOLDS {
        Verdict::Holds
    } else if pb <= P_FAILS || pc <= P_FAILS {
        Verdict::DoesNotHold
    } else {
        Verdict::Undecided
    }
}

/// Finding 3: BitFit best on the most separable task, Compacter on the least, per ε.
fn finding_3(study: &Study, p_best: &BestProbabilities, out: &mut Out) {
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
            let v = best_on_both(pb, pc);
            v3.push(v);
            parts.push(format!("ε {}: {pb:.2} / {pc:.2}", eps_label(ds.eps[e])));
            out.cells.push(Cell {
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
    out.rows.push(Finding {
        id: "3".into(),
        claim: "BitFit is best on simple tasks, Compacter on complex ones".into(),
        measured: m3,
        test: format!("tasks ordered by measured separability; both probabilities ≥ {P_HOLDS}: holds; either ≤ {P_FAILS}: does not hold; majority over ε"),
        verdict: Verdict::majority(&v3),
    });
}
