//! `validate versus STANDARD ROBUST`: standard and robust (adversarial) fine-tuning side by side
//! (issue 18, part 1) — per task, radius and strategy the AUC of the (clean, robust) frontier
//! under both, the final clean and robust accuracies, and whether the strategy ranking changes:
//! Spearman ρ between the two AUC rankings over the strategies both folders ran, with a
//! bootstrap interval.
//!
//! The two folders must measure the same thing: the same tasks (by name), the same radii and the
//! same evaluation images; the robust folder's strategies must all be in the standard one.
//! Intervals: each folder's own bootstrap over its evaluation images and seeds (as its report),
//! drawn independently, and ρ recomputed on the pair of replicates r (conservative for images
//! shared by both folders).
//!
//! Writes `ROBUST/report/versus-standard.md` and `.csv`.

use std::collections::BTreeMap;
use std::path::Path;

use super::analysis::{Images, Study, describe_training, mean_of};
use super::report::eps_label;
use crate::engine::peft::Strategy;
use crate::error::{Error, Result};
use crate::plot::{Csv, write_atomic};
use crate::simulate::figures::num;
use crate::tradeoff::bootstrap::percentile_interval;
use crate::tradeoff::stats::spearman;
use crate::tradeoff::{AucRule, Interval};

/// Bootstrap seed of the comparison (each folder's replicates: this ^ folder index).
const SEED: u64 = 0x007e_2505;

/// One folder's AUCs: (task, radius index, strategy) → point estimate, and per replicate.
struct Aucs {
    point: BTreeMap<(String, usize, Strategy), f64>,
    reps: Vec<BTreeMap<(String, usize, Strategy), f64>>,
    final_acc: BTreeMap<(String, usize, Strategy), (f64, f64)>,
}

fn aucs(study: &Study, keys: &[(String, usize, Strategy)], reps: usize, seed: u64) -> Aucs {
    let di = |name: &str| study.datasets.iter().position(|d| d.name == name).expect("checked");
    let stat = |v: &super::analysis::View| -> Vec<f64> {
        keys.iter()
            .map(|(d, e, s)| mean_of(&v[&(di(d), *s)], |c| c.auc(*e, AucRule::Step)))
            .collect()
    };
    let to_map = |vals: Vec<f64>| keys.iter().cloned().zip(vals).collect::<BTreeMap<_, _>>();
    let view = study.view(Images::All);
    let final_acc = keys
        .iter()
        .map(|(d, e, s)| {
            let cs = &view[&(di(d), *s)];
            let clean = mean_of(cs, |c| *c.clean.last().unwrap_or(&f64::NAN));
            let rob = mean_of(cs, |c| *c.robust[*e].last().unwrap_or(&f64::NAN));
            ((d.clone(), *e, *s), (clean, rob))
        })
        .collect();
    Aucs {
        point: to_map(stat(&view)),
        reps: study
            .bootstrap(Images::All, reps, seed, stat)
            .into_iter()
            .map(to_map)
            .collect(),
        final_acc,
    }
}

/// The comparison as Markdown, written with its CSV to `robust/report/versus-standard.{md,csv}`.
pub fn versus(standard: &Path, robust: &Path, reps: usize) -> Result<String> {
    let (a, b) = (Study::load(standard)?, Study::load(robust)?);
    let (md, csv) = versus_studies(&a, &b, standard, robust, reps)?;
    let dir = robust.join("report");
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    write_atomic(&dir.join("versus-standard.md"), md.as_bytes())?;
    write_atomic(&dir.join("versus-standard.csv"), csv.as_bytes())?;
    Ok(md)
}

/// The comparison of the loaded folders `a` (at `standard`) and `b` (at `robust`) as Markdown
/// and CSV, nothing written (also a section of the standard folder's `findings.md` when
/// `validate verdict --with` names the robust folder).
pub fn versus_studies(a: &Study, b: &Study, standard: &Path, robust: &Path, reps: usize) -> Result<(String, String)> {
    let refuse = |what: String| Error::Config {
        path: robust.to_path_buf(),
        message: format!("cannot be set against {}: {what}", standard.display()),
    };
    let mut keys = Vec::new();
    for d in &b.datasets {
        let Some(s) = a.datasets.iter().find(|x| x.name == d.name) else {
            return Err(refuse(format!("the standard folder has no task {}", d.name)));
        };
        if s.eps != d.eps {
            return Err(refuse(format!("{}: radii {:?} vs {:?}", d.name, d.eps, s.eps)));
        }
        let ids = |st: &Study, name: &str| -> Vec<Option<String>> {
            st.datasets
                .iter()
                .filter(|x| x.name == name)
                .flat_map(|x| x.runs.values().flatten().flatten().map(|r| r.header.eval_set.clone()))
                .collect()
        };
        let (ia, ib) = (ids(a, &d.name), ids(b, &d.name));
        if ia.first() != ib.first() {
            return Err(refuse(format!("{}: other evaluation images", d.name)));
        }
        for st in d.strategies() {
            if !s.runs.contains_key(&st) {
                return Err(refuse(format!(
                    "{}: the standard folder has no {} runs",
                    d.name,
                    st.id()
                )));
            }
            for e in 0..d.eps.len() {
                keys.push((d.name.clone(), e, st));
            }
        }
    }
    let sa = aucs(a, &keys, reps, SEED);
    let sb = aucs(b, &keys, reps, SEED ^ 1);
    let ci =
        |m: &Aucs, k: &(String, usize, Strategy)| percentile_interval(&m.reps.iter().map(|r| r[k]).collect::<Vec<_>>());
    let fmt =
        |v: f64, c: Option<Interval>| c.map_or(format!("{v:.3}"), |c| format!("{v:.3} [{:.3}, {:.3}]", c.lo, c.hi));
    let training = |s: &Study| {
        s.datasets
            .first()
            .and_then(|d| d.runs.values().flatten().flatten().next())
            .map_or_else(String::new, |r| describe_training(&r.header.config))
    };
    let mut md = format!(
        "# Standard vs robust fine-tuning\n\nStandard: {} ({}). Robust: {} ({}). Robust accuracy under: {}. \
         AUC: step rule, mean over seeds; intervals 95% percentile bootstrap over each folder's evaluation images \
         and seeds ({reps} replicates, the two folders drawn independently); ρ: Spearman between the two AUC \
         rankings of the strategies both ran.\n",
        standard.display(),
        training(a),
        robust.display(),
        training(b),
        b.attack
    );
    let mut csv = Csv::new(&[
        "dataset",
        "eps",
        "strategy",
        "auc_standard",
        "auc_standard_lo",
        "auc_standard_hi",
        "auc_robust",
        "auc_robust_lo",
        "auc_robust_hi",
        "final_clean_standard",
        "final_clean_robust",
        "final_robust_standard",
        "final_robust_robust",
    ]);
    let mut groups: BTreeMap<(String, usize), Vec<Strategy>> = BTreeMap::new();
    for (d, e, s) in &keys {
        groups.entry((d.clone(), *e)).or_default().push(*s);
    }
    for ((d, e), strategies) in &groups {
        let eps = b.datasets.iter().find(|x| &x.name == d).expect("present").eps[*e];
        md += &format!(
            "\n## {d}, ε = {}\n\n| strategy | AUC, standard | AUC, robust | final clean, standard → robust | final robust, standard → robust |\n|---|---|---|---|---|\n",
            eps_label(eps)
        );
        for s in strategies {
            let k = (d.clone(), *e, *s);
            let (ca, ra) = sa.final_acc[&k];
            let (cb, rb) = sb.final_acc[&k];
            md += &format!(
                "| {} | {} | {} | {ca:.3} → {cb:.3} | {ra:.3} → {rb:.3} |\n",
                s.name(),
                fmt(sa.point[&k], ci(&sa, &k)),
                fmt(sb.point[&k], ci(&sb, &k))
            );
            let lohi = |c: Option<Interval>| c.map_or([String::new(), String::new()], |c| [num(c.lo), num(c.hi)]);
            let mut row = vec![d.clone(), num(eps), s.id().into(), num(sa.point[&k])];
            row.extend(lohi(ci(&sa, &k)));
            row.push(num(sb.point[&k]));
            row.extend(lohi(ci(&sb, &k)));
            row.extend([num(ca), num(cb), num(ra), num(rb)]);
            csv.push(row);
        }
        let rank = |m: &BTreeMap<(String, usize, Strategy), f64>| -> Vec<f64> {
            strategies.iter().map(|s| m[&(d.clone(), *e, *s)]).collect()
        };
        // Every strategy at the highest AUC (ties named together).
        let best = |m: &BTreeMap<(String, usize, Strategy), f64>| {
            let v = rank(m);
            let top = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            strategies
                .iter()
                .zip(&v)
                .filter(|(_, x)| **x >= top - 1e-12)
                .map(|(s, _)| s.name())
                .collect::<Vec<_>>()
                .join(" = ")
        };
        let rho = spearman(&rank(&sa.point), &rank(&sb.point)).ok();
        let boot: Vec<f64> = sa
            .reps
            .iter()
            .zip(&sb.reps)
            .filter_map(|(x, y)| spearman(&rank(x), &rank(y)).ok())
            .collect();
        md += &format!(
            "\nBest AUC: {} (standard), {} (robust). Spearman ρ between the rankings ({} strategies): {}.\n",
            best(&sa.point),
            best(&sb.point),
            strategies.len(),
            rho.map_or("– (a constant side)".into(), |r| fmt(r, percentile_interval(&boot)))
        );
    }
    Ok((md, csv.render()))
}
