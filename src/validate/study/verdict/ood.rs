//! Finding 4: OOD accuracy tracks clean accuracy (Pearson r along training) and shows no
//! rise-then-fall.

use crate::engine::peft::Strategy;
use crate::tradeoff::bootstrap::pearson;
use crate::validate::study::analysis::{Images, Study, View, mean_curve};
use crate::validate::study::verdict::rise_fall::rise_fall_cells;
use crate::validate::study::verdict::{Cell, Finding, Out, Verdict, interval, median, tally, trained};

/// Finding 4 per (task, strategy).
pub(super) fn finding_4(study: &Study, reps: usize, out: &mut Out) {
    let point = study.view(Images::All);
    let ood_rf = rise_fall_cells(study, reps, 33, "4", true);
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
        out.cells.push(Cell {
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
    out.cells.extend(ood_rf.into_iter().flatten());
    out.rows.push(Finding {
        id: "4".into(),
        claim: "OOD accuracy tracks clean accuracy and shows no rise-then-fall".into(),
        measured: if rs.is_empty() {
            "no OOD set in these runs".into()
        } else {
            format!("{}; median r {:.3}", tally(&v4, "task, strategy"), median(&rs))
        },
        test: "r's 95% CI > 0.5 and the OOD curve's rise-then-fall test not 'holds': holds; CI < 0.5 or a rise-then-fall: does not hold; majority over cells".into(),
        verdict: Verdict::majority(&v4),
    });
}
