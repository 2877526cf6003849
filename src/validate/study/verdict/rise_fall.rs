//! Finding 1 (and the OOD half of finding 4): does a curve rise, then fall? Cross-fitted rise and
//! drop, and the all-image excess of the best interior step (see the module docs of `verdict`).

use crate::engine::peft::Strategy;
use crate::tradeoff::Interval;
use crate::validate::study::analysis::{Curves, Images, Study, View, mean_curve};
use crate::validate::study::verdict::{
    Cell, Finding, NEGLIGIBLE, Out, Verdict, count, interval, mean_of_opt, median, tally, trained,
};

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

/// One testable rise-then-fall cell: a (dataset, strategy, curve) and the steps it compares.
#[derive(Debug, Clone, Copy)]
struct RiseFallCell {
    /// Index of the dataset in `Study::datasets`.
    dataset: usize,
    /// The strategy.
    strategy: Strategy,
    /// The curve tested.
    curve: Which,
    /// Step index of the peak, picked on the even-positioned images.
    peak: usize,
    /// First trained step index.
    first: usize,
    /// Last step index.
    last: usize,
}

/// Every testable cell: datasets with at least three trained steps, per strategy and curve.
fn rise_fall_plan(study: &Study, ood: bool) -> Vec<RiseFallCell> {
    let even = study.view(Images::Even);
    let mut plan = Vec::new();
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
                plan.push(RiseFallCell {
                    dataset: di,
                    strategy: s,
                    curve: w,
                    peak,
                    first: idx[0],
                    last: *idx.last().expect("non-empty"),
                });
            }
        }
    }
    plan
}

/// Per cell, in order: the rise (peak − first) and the drop (peak − last) of the mean curve in `v`.
fn rise_and_drop(plan: &[RiseFallCell], v: &View) -> Vec<f64> {
    plan.iter()
        .flat_map(|c| {
            let (w, p, f, l) = (c.curve, c.peak, c.first, c.last);
            let cs = &v[&(c.dataset, c.strategy)];
            [
                mean_of_opt(cs, |c| w.of(c).map(|r| r[p] - r[f])),
                mean_of_opt(cs, |c| w.of(c).map(|r| r[p] - r[l])),
            ]
        })
        .collect()
}

/// Per cell: the best interior step of the mean curve in `v` minus the better end.
fn interior_excess(plan: &[RiseFallCell], v: &View) -> Vec<f64> {
    plan.iter()
        .map(|c| {
            let (w, f, l) = (c.curve, c.first, c.last);
            let m = mean_curve(&v[&(c.dataset, c.strategy)], |c| w.of(c));
            let inner = (f + 1..l).map(|i| m[i]).fold(f64::NEG_INFINITY, f64::max);
            inner - m[f].max(m[l])
        })
        .collect()
}

/// Point estimates and bootstrap replicates of the plan's rises, drops and excesses.
struct RiseFallDraws {
    /// Rise and drop per cell (two entries each), on the odd-positioned images.
    est: Vec<f64>,
    /// Replicates of `est`.
    boot: Vec<Vec<f64>>,
    /// Excess per cell, on all images.
    ex_est: Vec<f64>,
    /// Replicates of `ex_est`.
    ex_boot: Vec<Vec<f64>>,
}

/// Holds when rise and drop are both surely positive, does not hold when the excess is surely negligible.
fn rise_fall_verdict(rci: Option<Interval>, dci: Option<Interval>, eci: Option<Interval>) -> Verdict {
    match (rci, dci, eci) {
        (Some(r), Some(dd), _) if r.lo > 0.0 && dd.lo > 0.0 => Verdict::Holds,
        (_, _, Some(e)) if e.hi < NEGLIGIBLE => Verdict::DoesNotHold,
        _ => Verdict::Undecided,
    }
}

/// The three cells (rise, drop, excess) of plan entry `j`, labelled as `finding`.
fn cells_of(study: &Study, draws: &RiseFallDraws, j: usize, rf: &RiseFallCell, finding: &str) -> [Cell; 3] {
    let (s, p, f, l) = (rf.strategy, rf.peak, rf.first, rf.last);
    let d = &study.datasets[rf.dataset];
    let (rci, dci, eci) = (
        interval(&draws.boot, 2 * j),
        interval(&draws.boot, 2 * j + 1),
        interval(&draws.ex_boot, j),
    );
    let v = rise_fall_verdict(rci, dci, eci);
    let (eps, what) = match rf.curve {
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
    [
        cell("rise to peak", draws.est[2 * j], rci),
        cell("drop after peak", draws.est[2 * j + 1], dci),
        cell("best interior step minus the better end", draws.ex_est[j], eci),
    ]
}

/// The rise-then-fall cells (finding 1 on robust accuracy at every radius, or on OOD accuracy for
/// finding 4): per curve, the cross-fitted rise and drop and the all-image excess.
pub(super) fn rise_fall_cells(study: &Study, reps: usize, seed: u64, finding: &str, ood: bool) -> Vec<[Cell; 3]> {
    let plan = rise_fall_plan(study, ood);
    let stat = |v: &View| rise_and_drop(&plan, v);
    let est = stat(&study.view(Images::Odd));
    let boot = study.bootstrap(Images::Odd, reps, seed, stat);
    // The excess of the best interior step over the better end, on all images and re-maximised
    // in every replicate (biased upwards, so conservative for "does not hold").
    let excess = |v: &View| interior_excess(&plan, v);
    let ex_est = excess(&study.view(Images::All));
    let ex_boot = study.bootstrap(
        Images::All,
        reps,
        crate::seeds::derive(seed, crate::seeds::Stream::ExcessBootstrap),
        excess,
    );
    let draws = RiseFallDraws {
        est,
        boot,
        ex_est,
        ex_boot,
    };
    plan.iter()
        .enumerate()
        .map(|(j, rf)| cells_of(study, &draws, j, rf, finding))
        .collect()
}

/// Finding 1 on robust accuracy at every radius.
pub(super) fn finding_1(study: &Study, reps: usize, out: &mut Out) {
    let rf = rise_fall_cells(study, reps, 11, "1", false);
    let v1: Vec<Verdict> = rf.iter().map(|c| c[0].verdict).collect();
    let drops: Vec<f64> = rf.iter().map(|c| c[1].estimate).collect();
    out.rows.push(Finding {
        id: "1".into(),
        claim: "Robustness rises, then falls, early in fine-tuning".into(),
        measured: format!(
            "{}, {} undecided; median drop after the peak {:.3}",
            tally(&v1, "task, strategy, ε"),
            count(&v1, Verdict::Undecided),
            median(&drops)
        ),
        test: format!(
            "peak picked on half of the images, rise and drop measured on the other half: both 95% CIs > 0 holds; best interior step minus the better end (all images) with CI < {NEGLIGIBLE}: does not hold; majority over cells"
        ),
        verdict: Verdict::majority(&v1),
    });
    out.cells.extend(rf.into_iter().flatten());
}
