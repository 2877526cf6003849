//! Findings 2 and 3: rankings of the mean AUC and their bootstrap probabilities.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::{Cell, Finding, Out, P_FAILS, P_HOLDS, Verdict, mean_aucs, tally};
use crate::engine::peft::Strategy;
use crate::validate::analysis::{DatasetData, Images, Study, View};
use crate::validate::report::eps_label;

/// Finding 2 per (task, ε), finding 3 per ε; returns the ranking table's Markdown rows.
pub(super) fn findings_2_and_3(study: &Study, reps: usize, out: &mut Out) -> String {
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
                // Per strategy: how many strategies have a strictly smaller AUC. Best means
                // n − 1 (strictly above every other: a tie for first is nobody's win), in the
                // bottom two means < 2 (a tie at the bottom counts for each tied strategy).
                let a = mean_aucs(v, *di, ss, *e);
                a.iter()
                    .map(|x| a.iter().filter(|y| *y < x).count() as f64)
                    .collect::<Vec<_>>()
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
            out.cells.push(Cell {
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
    out.rows.push(Finding {
        id: "2".into(),
        claim: "Linear probing and full fine-tuning have the worst AUC".into(),
        measured: format!("{}; P per cell in findings_cells.csv", tally(&v2, "task, ε")),
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

    rank_rows
}
