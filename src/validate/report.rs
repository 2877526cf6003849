//! `validate report DIR`: figures and tables from a run's JSONL records, into `DIR/report/`.
//!
//! Per dataset: clean, robust and OOD accuracy against step (log-x, Wilson bands), and the
//! (accuracy, robustness) points with each strategy's Pareto frontier and AUC. Across datasets:
//! `auc.csv`/`auc.md` (both AUC rules, step as headline, "% above average"), `peaks.csv` (step of
//! peak robustness and the drop after it: Li et al. 2025's "robustness rises then falls"), and
//! `ood_correlation.csv` (does OOD accuracy follow clean accuracy?).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use plotters::prelude::SeriesLabelPosition;

use super::records::{self, RunRecords};
use crate::engine::peft::Strategy;
use crate::error::{Error, Result};
use crate::plot::{Axis, Csv, LineChart, Series, Style, color, write_atomic, write_figure};
use crate::simulate::figures::num;
use crate::tradeoff::{AucRule, Point, above_average, auc, frontier, spearman};

/// What `write_report` produced.
pub struct Report {
    /// The text printed at the end of a run (AUC table and findings).
    pub summary: String,
    /// Files written.
    pub files: Vec<PathBuf>,
    /// (dataset, strategy) → (AUC step, AUC trapezoid, above average).
    pub aucs: BTreeMap<(String, Strategy), (f64, f64, f64)>,
}

/// Every run's records under `dir` (`dir/<dataset>/<strategy>/seed*.jsonl`).
pub fn load_runs(dir: &Path) -> Result<Vec<RunRecords>> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut ds: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    ds.sort();
    for d in ds {
        for s in Strategy::ALL {
            let sd = d.join(s.id());
            let Ok(files) = std::fs::read_dir(&sd) else { continue };
            let mut files: Vec<PathBuf> = files
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
                .collect();
            files.sort();
            for f in files {
                out.push(records::read(&f)?);
            }
        }
    }
    if out.is_empty() {
        return Err(Error::invalid(
            dir.display().to_string(),
            "a run folder with <dataset>/<strategy>/seed<N>.jsonl records",
            "none",
        ));
    }
    Ok(out)
}

/// Mean over seeds at each step: (step, clean, clean_ci, robust, robust_ci, ood, ood_ci).
#[derive(Debug, Clone)]
struct Curve {
    steps: Vec<f64>,
    clean: Vec<(f64, (f64, f64))>,
    robust: Vec<(f64, (f64, f64))>,
    ood: Vec<Option<(f64, (f64, f64))>>,
}

fn mean_curve(runs: &[&RunRecords]) -> Curve {
    let mut by_step: BTreeMap<u64, Vec<&records::EvalRecord>> = BTreeMap::new();
    for r in runs {
        for e in &r.evals {
            by_step.entry(e.step).or_default().push(e);
        }
    }
    let avg = |v: &[&records::EvalRecord], f: &dyn Fn(&records::EvalRecord) -> (f64, f64, f64)| {
        let n = v.len() as f64;
        let (a, lo, hi) = v
            .iter()
            .map(|e| f(e))
            .fold((0.0, 0.0, 0.0), |s, x| (s.0 + x.0, s.1 + x.1, s.2 + x.2));
        (a / n, (lo / n, hi / n))
    };
    let mut c = Curve {
        steps: vec![],
        clean: vec![],
        robust: vec![],
        ood: vec![],
    };
    for (step, v) in by_step {
        c.steps.push(step as f64);
        c.clean.push(avg(&v, &|e| (e.clean_acc, e.clean_ci.lo, e.clean_ci.hi)));
        c.robust
            .push(avg(&v, &|e| (e.robust_acc, e.robust_ci.lo, e.robust_ci.hi)));
        let has = v.iter().all(|e| e.ood_acc.is_some());
        c.ood.push(has.then(|| {
            avg(&v, &|e| {
                let ci = e.ood_ci.expect("present with ood_acc");
                (e.ood_acc.expect("checked"), ci.lo, ci.hi)
            })
        }));
    }
    c
}

fn pearson(x: &[f64], y: &[f64]) -> Option<f64> {
    let n = x.len() as f64;
    if x.len() < 2 {
        return None;
    }
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx).powi(2);
        syy += (b - my).powi(2);
    }
    (sxx > 0.0 && syy > 0.0).then(|| sxy / (sxx * syy).sqrt())
}

/// Writes every figure and table; returns the summary.
pub fn write_report(dir: &Path) -> Result<Report> {
    let runs = load_runs(dir)?;
    let out = dir.join("report");
    let mut files = Vec::new();
    let mut datasets: BTreeMap<String, BTreeMap<Strategy, Vec<&RunRecords>>> = BTreeMap::new();
    for r in &runs {
        let s = crate::engine::peft::parse_strategy(&r.header.strategy)?;
        datasets
            .entry(r.header.dataset.clone())
            .or_default()
            .entry(s)
            .or_default()
            .push(r);
    }
    let mut aucs = BTreeMap::new();
    let mut auc_csv = Csv::new(&[
        "dataset",
        "strategy",
        "auc_step",
        "auc_trapezoid",
        "above_average_step",
        "points",
    ]);
    let mut peaks = Csv::new(&[
        "dataset",
        "strategy",
        "peak_step",
        "peak_robust",
        "final_step",
        "final_robust",
        "drop",
        "rises_then_falls",
    ]);
    let mut oodc = Csv::new(&["dataset", "strategy", "pearson_r", "spearman_rho", "points"]);
    let mut findings = String::new();
    for (ds, strategies) in &datasets {
        let mut curve_series: [Vec<Series>; 3] = [vec![], vec![], vec![]];
        let mut curve_csv = Csv::new(&[
            "strategy",
            "step",
            "clean_acc",
            "clean_lo",
            "clean_hi",
            "robust_acc",
            "robust_lo",
            "robust_hi",
            "ood_acc",
            "ood_lo",
            "ood_hi",
        ]);
        let mut front_series = Vec::new();
        let mut front_csv = Csv::new(&["strategy", "seed", "step", "clean_acc", "robust_acc", "on_frontier"]);
        let mut ds_aucs: Vec<(Strategy, f64, f64, usize)> = Vec::new();
        let max_step = strategies
            .values()
            .flatten()
            .flat_map(|r| r.evals.iter().map(|e| e.step))
            .max()
            .unwrap_or(1) as f64;
        for (si, (s, rs)) in strategies.iter().enumerate() {
            let ci = Strategy::ALL.iter().position(|x| x == s).unwrap_or(si);
            let c = mean_curve(rs);
            for (k, metric) in [&c.clean, &c.robust].into_iter().enumerate() {
                let mut ser = Series::new(
                    Some(s.name().into()),
                    c.steps.iter().zip(metric).map(|(x, (y, _))| (*x, *y)).collect(),
                    color(ci),
                    Style::LineMarkers,
                );
                ser.band = Some(metric.iter().map(|(_, b)| *b).collect());
                curve_series[k].push(ser);
            }
            if c.ood.iter().all(Option::is_some) && !c.ood.is_empty() {
                let o: Vec<(f64, (f64, f64))> = c.ood.iter().map(|v| v.expect("checked")).collect();
                let mut ser = Series::new(
                    Some(s.name().into()),
                    c.steps.iter().zip(&o).map(|(x, (y, _))| (*x, *y)).collect(),
                    color(ci),
                    Style::LineMarkers,
                );
                ser.band = Some(o.iter().map(|(_, b)| *b).collect());
                curve_series[2].push(ser);
            }
            for (i, step) in c.steps.iter().enumerate() {
                let (o, olo, ohi) = c.ood[i].map_or((String::new(), String::new(), String::new()), |(v, (l, h))| {
                    (num(v), num(l), num(h))
                });
                curve_csv.push(vec![
                    s.id().into(),
                    num(*step),
                    num(c.clean[i].0),
                    num(c.clean[i].1.0),
                    num(c.clean[i].1.1),
                    num(c.robust[i].0),
                    num(c.robust[i].1.0),
                    num(c.robust[i].1.1),
                    o,
                    olo,
                    ohi,
                ]);
            }
            // Pareto frontier over every evaluated (accuracy, robustness) point of every seed.
            let pts: Vec<(u64, u64, Point)> = rs
                .iter()
                .flat_map(|r| {
                    r.evals.iter().map(|e| {
                        (
                            r.header.seed,
                            e.step,
                            Point {
                                acc: e.clean_acc,
                                rob: e.robust_acc,
                            },
                        )
                    })
                })
                .collect();
            let just: Vec<Point> = pts.iter().map(|p| p.2).collect();
            let f = frontier(&just);
            let (a_step, a_trap) = (auc(&just, AucRule::Step), auc(&just, AucRule::Trapezoid));
            ds_aucs.push((*s, a_step, a_trap, just.len()));
            for (seed, step, p) in &pts {
                front_csv.push(vec![
                    s.id().into(),
                    seed.to_string(),
                    step.to_string(),
                    num(p.acc),
                    num(p.rob),
                    f.contains(p).to_string(),
                ]);
            }
            front_series.push(Series::new(
                None,
                just.iter().map(|p| (p.acc, p.rob)).collect(),
                color(ci),
                Style::Markers,
            ));
            front_series.push(Series::new(
                Some(format!("{} (AUC {a_step:.3})", s.name())),
                f.iter().map(|p| (p.acc, p.rob)).collect(),
                color(ci),
                Style::LineMarkers,
            ));
            // Peak robustness and the drop after it.
            let (pk, pv) = c.robust.iter().enumerate().fold(
                (0, f64::NEG_INFINITY),
                |b, (i, (v, _))| if *v > b.1 { (i, *v) } else { b },
            );
            let last = c.robust.len() - 1;
            let drop = pv - c.robust[last].0;
            let rises_falls = pk > 0 && pk < last && c.robust[0].0 < pv && drop > 0.0;
            peaks.push(vec![
                ds.clone(),
                s.id().into(),
                num(c.steps[pk]),
                num(pv),
                num(c.steps[last]),
                num(c.robust[last].0),
                num(drop),
                rises_falls.to_string(),
            ]);
            // OOD against clean accuracy along training.
            let pairs: Vec<(f64, f64)> = rs
                .iter()
                .flat_map(|r| r.evals.iter().filter_map(|e| e.ood_acc.map(|o| (e.clean_acc, o))))
                .collect();
            if pairs.len() >= 3 {
                let (x, y): (Vec<f64>, Vec<f64>) = pairs.iter().copied().unzip();
                let r = pearson(&x, &y);
                let rho = spearman(&x, &y).ok();
                oodc.push(vec![
                    ds.clone(),
                    s.id().into(),
                    r.map_or(String::new(), num),
                    rho.map_or(String::new(), num),
                    pairs.len().to_string(),
                ]);
            }
        }
        let all: Vec<f64> = ds_aucs.iter().map(|a| a.1).collect();
        for (s, a, t, n) in &ds_aucs {
            let above = above_average(*a, &all).unwrap_or(f64::NAN);
            aucs.insert((ds.clone(), *s), (*a, *t, above));
            auc_csv.push(vec![
                ds.clone(),
                s.id().into(),
                num(*a),
                num(*t),
                num(above),
                n.to_string(),
            ]);
        }
        let titles = ["clean accuracy", "robust accuracy", "OOD accuracy"];
        for (k, (stem, series)) in ["clean_vs_step", "robust_vs_step", "ood_vs_step"]
            .iter()
            .zip(curve_series)
            .enumerate()
        {
            if series.is_empty() {
                continue;
            }
            let chart = LineChart {
                title: format!("{ds}: {} during fine-tuning (bands: Wilson 95%)", titles[k]),
                x: Axis::log("fine-tuning step", 1.0, max_step * 1.2),
                y: Axis::linear(titles[k], 0.0, 1.0),
                series,
                legend: SeriesLabelPosition::LowerRight,
            };
            files.extend(write_figure(&out, &format!("{ds}_{stem}"), &chart, &curve_csv)?);
        }
        let chart = LineChart {
            title: format!("{ds}: accuracy vs robustness, Pareto frontier per strategy (AUC, step rule)"),
            x: Axis::linear("clean accuracy", 0.0, 1.0),
            y: Axis::linear("robust accuracy", 0.0, 1.0),
            series: front_series,
            legend: SeriesLabelPosition::UpperLeft,
        };
        files.extend(write_figure(&out, &format!("{ds}_frontier"), &chart, &front_csv)?);
        let best = ds_aucs.iter().max_by(|a, b| a.1.total_cmp(&b.1)).map(|a| a.0);
        let _ = writeln!(findings, "{ds}: best AUC {}", best.map_or("-", |s| s.name()));
    }
    for (name, csv) in [
        ("auc.csv", &auc_csv),
        ("peaks.csv", &peaks),
        ("ood_correlation.csv", &oodc),
    ] {
        let p = out.join(name);
        write_atomic(&p, csv.render().as_bytes())?;
        files.push(p);
    }
    let md = auc_markdown(&datasets.keys().cloned().collect::<Vec<_>>(), &aucs, &peaks, &oodc);
    let p = out.join("auc.md");
    write_atomic(&p, md.as_bytes())?;
    files.push(p);
    let mut summary = table_text(&datasets.keys().cloned().collect::<Vec<_>>(), &aucs);
    summary.push_str(&findings);
    Ok(Report { summary, files, aucs })
}

fn table_text(ds: &[String], aucs: &BTreeMap<(String, Strategy), (f64, f64, f64)>) -> String {
    let mut s = format!(
        "AUC of the (accuracy, robustness) Pareto frontier, step rule (% above the dataset average)\n{:<16}",
        "strategy"
    );
    for d in ds {
        let _ = write!(s, " {d:>22}");
    }
    s.push('\n');
    for st in Strategy::ALL {
        if !ds.iter().any(|d| aucs.contains_key(&(d.clone(), st))) {
            continue;
        }
        let _ = write!(s, "{:<16}", st.name());
        for d in ds {
            match aucs.get(&(d.clone(), st)) {
                Some((a, _, above)) => {
                    let _ = write!(s, " {:>22}", format!("{a:.4} ({:+.0}%)", 100.0 * above));
                }
                None => {
                    let _ = write!(s, " {:>22}", "-");
                }
            }
        }
        s.push('\n');
    }
    s
}

fn auc_markdown(
    ds: &[String],
    aucs: &BTreeMap<(String, Strategy), (f64, f64, f64)>,
    peaks: &Csv,
    oodc: &Csv,
) -> String {
    // "| strategy | d1 | d2 |" and its separator row.
    let header = |s: &mut String| {
        s.push_str("| strategy |");
        for d in ds {
            let _ = write!(s, " {d} |");
        }
        s.push_str("\n|---|");
        s.push_str(&"---|".repeat(ds.len()));
        s.push('\n');
    };
    let mut s = String::from(
        "# AUC of the Pareto frontier\n\nStep rule (area dominated by the frontier, reference (0, 0)); in brackets: % above the dataset's average over strategies.\n\n",
    );
    header(&mut s);
    for rule in [0, 1] {
        if rule == 1 {
            s.push_str("\nTrapezoid rule (area under the piecewise-linear frontier, flat to accuracy 0):\n\n");
            header(&mut s);
        }
        for st in Strategy::ALL {
            if !ds.iter().any(|d| aucs.contains_key(&(d.clone(), st))) {
                continue;
            }
            let _ = write!(s, "| {} |", st.name());
            for d in ds {
                match aucs.get(&(d.clone(), st)) {
                    Some((a, _, above)) if rule == 0 => {
                        let _ = write!(s, " {a:.4} ({:+.0}%) |", 100.0 * above);
                    }
                    Some((_, t, _)) => {
                        let _ = write!(s, " {t:.4} |");
                    }
                    None => s.push_str(" - |"),
                }
            }
            s.push('\n');
        }
    }
    s.push_str("\n# Robustness peak and drop (does robustness rise, then fall?)\n\n| dataset | strategy | peak step | peak robust | final robust | drop | rises then falls |\n|---|---|---|---|---|---|---|\n");
    for r in &peaks.rows {
        let f = |i: usize| r[i].parse::<f64>().map(|v| format!("{v:.3}")).unwrap_or_default();
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} |",
            r[0],
            r[1],
            r[2],
            f(3),
            f(5),
            f(6),
            r[7]
        );
    }
    s.push_str("\n# OOD accuracy against clean accuracy along training\n\n| dataset | strategy | Pearson r | Spearman ρ | points |\n|---|---|---|---|---|\n");
    for r in &oodc.rows {
        let f = |i: usize| {
            r[i].parse::<f64>()
                .map(|v| format!("{v:.3}"))
                .unwrap_or_else(|_| "-".into())
        };
        let _ = writeln!(s, "| {} | {} | {} | {} | {} |", r[0], r[1], f(2), f(3), r[4]);
    }
    s
}
