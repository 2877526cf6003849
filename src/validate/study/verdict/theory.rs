//! Finding 5: does the theory (the k+d bound, the training-dynamics model) predict the measured
//! AUC ranking?

use crate::engine::data::synthetic::SyntheticSpec;
use crate::engine::peft::Strategy;
use crate::error::Result;
use crate::simulate::dynamics::{DynamicsConfig, predicted_auc};
use crate::tradeoff::bootstrap::spearman_permutation;
use crate::validate::RunConfig;
use crate::validate::study::analysis::{Images, Study, View};
use crate::validate::study::report::eps_label;
use crate::validate::study::verdict::{Cell, Finding, Out, Verdict, fmt_ci, interval, mean_aucs};
use crate::validate::sweep::records::Header;

/// Findings 5a (bound) and 5b (dynamics).
pub(super) fn finding_5(study: &Study, reps: usize, out: &mut Out) -> Result<()> {
    let point = study.view(Images::All);
    for (id, name) in [("5a", "k+d bound"), ("5b", "training-dynamics model")] {
        let (v5, measured) = theory_cells(study, &point, reps, id, name, &mut out.cells)?;
        out.rows.push(Finding {
            id: id.into(),
            claim: format!("The {name} predicts the measured AUC ranking"),
            measured,
            test: "Spearman ρ(predicted, measured mean AUC), exact one-sided permutation p and bootstrap 95% CI: p < 0.05 and CI > 0 holds; CI < 0.5 does not hold; majority over (task, ε)".into(),
            verdict: Verdict::majority(&v5),
        });
    }

    Ok(())
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
