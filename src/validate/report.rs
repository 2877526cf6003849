//! `validate report DIR`: figures and tables from a run folder's records, into `DIR/report/`.
//!
//! Per dataset and attack radius: clean, robust and OOD accuracy against step (mean over seeds,
//! 95% bootstrap bands over seeds and evaluation images, see [`super::analysis`]), and the
//! (accuracy, robustness) trajectory with each strategy's Pareto frontier. Tables: `auc.csv` /
//! `auc.md` (per radius: the AUC of each seed's frontier, mean over seeds with its bootstrap 95%
//! interval, both AUC rules, % above the dataset average), `peaks.csv` (step of peak robustness
//! and the drop after it), `ood_correlation.csv` (OOD against clean accuracy along training) and
//! `convergence.csv` (is clean accuracy still rising over the last 20% of steps?).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use plotters::prelude::SeriesLabelPosition;

use super::analysis::{Curves, DatasetData, Images, RunData, Study, column, mean_curve, mean_of};
use super::records::{self, RunRecords};
use crate::engine::peft::Strategy;
use crate::error::{Error, Result};
use crate::plot::{Axis, Csv, LineChart, Series, Style, color, write_atomic, write_figure};
use crate::simulate::figures::num;
use crate::tradeoff::bootstrap::{pearson, percentile_interval};
use crate::tradeoff::{AucRule, Interval, Point, above_average, frontier, spearman};

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
    /// (dataset, strategy) → (AUC step, AUC trapezoid, above average) at the smallest radius.
    pub aucs: BTreeMap<(String, Strategy), (f64, f64, f64)>,
    /// (dataset, radius index, strategy) → AUC cell.
    pub cells: BTreeMap<(String, usize, Strategy), AucCell>,
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

/// A radius for people: `k/255` when it is one, else the number.
pub fn eps_label(e: f64) -> String {
    let k = e * 255.0;
    if (k - k.round()).abs() < 1e-9 {
        format!("{}/255", k.round())
    } else {
        format!("{e}")
    }
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

/// Layout of the report's bootstrap statistics for one dataset: per strategy, per radius the
/// mean AUC (step rule), then the mean curves (clean, each radius, OOD) per step.
struct Layout {
    ne: usize,
    ns: usize,
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
    fn curve(&self, k: usize) -> std::ops::Range<usize> {
        let start = self.ne + k * self.ns;
        start..start + self.ns
    }
}

fn pad(mut v: Vec<f64>, n: usize) -> Vec<f64> {
    v.resize(n, f64::NAN);
    v
}

/// Writes every figure and table; returns the summary.
pub fn write_report(dir: &Path) -> Result<Report> {
    let runs = load_runs(dir)?;
    let study = Study::new(&runs)?;
    if study.datasets.is_empty() {
        return Err(Error::invalid(
            dir.display().to_string(),
            "at least one finished run (every scheduled step evaluated)",
            format!("only unfinished runs: {}", study.incomplete.join(", ")),
        ));
    }
    let out = dir.join("report");
    let mut files = Vec::new();
    let mut cells = BTreeMap::new();
    let mut auc_csv = Csv::new(&[
        "dataset",
        "eps",
        "strategy",
        "auc_mean",
        "auc_lo",
        "auc_hi",
        "auc_trapezoid_mean",
        "above_average",
        "seeds",
        "n_images",
    ]);
    let mut peaks = Csv::new(&[
        "dataset",
        "eps",
        "strategy",
        "peak_step",
        "peak_robust",
        "final_step",
        "final_robust",
        "drop",
    ]);
    let mut oodc = Csv::new(&["dataset", "strategy", "pearson_r", "spearman_rho", "points"]);
    let mut conv = Csv::new(&[
        "dataset",
        "strategy",
        "seed",
        "from_step",
        "from_clean",
        "final_clean",
        "half_width",
        "converged",
    ]);
    let mut flags = Vec::new();
    let point = study.view(Images::All);
    for (di, d) in study.datasets.iter().enumerate() {
        let lay = Layout {
            ne: d.eps.len(),
            ns: d.steps.len(),
        };
        let strategies = d.strategies();
        let reps = study.bootstrap(Images::All, REPS, BOOTSTRAP_SEED ^ di as u64, |v| {
            strategies.iter().flat_map(|s| lay.stats(&v[&(di, *s)])).collect()
        });
        let mut per: BTreeMap<Strategy, (Vec<f64>, Vec<Option<Interval>>)> = BTreeMap::new();
        for (si, s) in strategies.iter().enumerate() {
            let est = lay.stats(&point[&(di, *s)]);
            let ci = (0..lay.width())
                .map(|j| percentile_interval(&column(&reps, si * lay.width() + j)))
                .collect();
            per.insert(*s, (est, ci));
        }
        for e in 0..lay.ne {
            let all: Vec<f64> = strategies.iter().map(|s| per[s].0[e]).collect();
            for s in &strategies {
                let cs = &point[&(di, *s)];
                let cell = AucCell {
                    mean: per[s].0[e],
                    ci: per[s].1[e].unwrap_or(Interval {
                        lo: f64::NAN,
                        hi: f64::NAN,
                    }),
                    trapezoid: mean_of(cs, |c| c.auc(e, AucRule::Trapezoid)),
                    above: above_average(per[s].0[e], &all).unwrap_or(f64::NAN),
                };
                auc_csv.push(vec![
                    d.name.clone(),
                    num(d.eps[e]),
                    s.id().into(),
                    num(cell.mean),
                    num(cell.ci.lo),
                    num(cell.ci.hi),
                    num(cell.trapezoid),
                    num(cell.above),
                    cs.len().to_string(),
                    d.any_run().n.to_string(),
                ]);
                cells.insert((d.name.clone(), e, *s), cell);
                let rob = &per[s].0[lay.curve(1 + e)];
                let (pk, pv) = rob
                    .iter()
                    .enumerate()
                    .fold((0, f64::NEG_INFINITY), |b, (i, v)| if *v > b.1 { (i, *v) } else { b });
                let last = rob.len() - 1;
                peaks.push(vec![
                    d.name.clone(),
                    num(d.eps[e]),
                    s.id().into(),
                    d.steps[pk].to_string(),
                    num(pv),
                    d.steps[last].to_string(),
                    num(rob[last]),
                    num(pv - rob[last]),
                ]);
            }
        }
        for s in &strategies {
            for r in d.runs[s].iter().flatten() {
                let c = convergence(r);
                if !c.converged {
                    flags.push(format!("{}/{}/seed{}", d.name, s.id(), r.header.seed));
                }
                conv.push(vec![
                    d.name.clone(),
                    s.id().into(),
                    r.header.seed.to_string(),
                    c.from_step.to_string(),
                    num(c.from_clean),
                    num(c.final_clean),
                    num(c.half_width),
                    c.converged.to_string(),
                ]);
            }
            let pairs: Vec<(f64, f64)> = point[&(di, *s)]
                .iter()
                .filter_map(|c| c.ood.as_ref().map(|o| c.clean.iter().copied().zip(o.iter().copied())))
                .flatten()
                .collect();
            if pairs.len() >= 3 {
                let (x, y): (Vec<f64>, Vec<f64>) = pairs.iter().copied().unzip();
                oodc.push(vec![
                    d.name.clone(),
                    s.id().into(),
                    pearson(&x, &y).map_or(String::new(), num),
                    spearman(&x, &y).map_or(String::new(), num),
                    pairs.len().to_string(),
                ]);
            }
        }
        files.extend(figures(&out, d, &lay, &per)?);
    }
    for (name, csv) in [
        ("auc.csv", &auc_csv),
        ("peaks.csv", &peaks),
        ("ood_correlation.csv", &oodc),
        ("convergence.csv", &conv),
    ] {
        let p = out.join(name);
        write_atomic(&p, csv.render().as_bytes())?;
        files.push(p);
    }
    let names: Vec<String> = study.datasets.iter().map(|d| d.name.clone()).collect();
    let eps: Vec<f64> = study.datasets[0].eps.clone();
    let md = auc_markdown(&names, &eps, &cells, &flags, &study.incomplete);
    let p = out.join("auc.md");
    write_atomic(&p, md.as_bytes())?;
    files.push(p);
    let summary = summary_text(&names, &eps, &cells, &flags, &study.incomplete);
    let aucs = cells
        .iter()
        .filter(|((_, e, _), _)| *e == 0)
        .map(|((d, _, s), c)| ((d.clone(), *s), (c.mean, c.trapezoid, c.above)))
        .collect();
    Ok(Report {
        summary,
        files,
        aucs,
        cells,
    })
}

/// The curve and frontier figures of one dataset.
fn figures(
    out: &Path,
    d: &DatasetData,
    lay: &Layout,
    per: &BTreeMap<Strategy, (Vec<f64>, Vec<Option<Interval>>)>,
) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let xs: Vec<f64> = d.steps.iter().map(|&s| (s as f64).max(0.5)).collect();
    let max_step = *d.steps.last().unwrap_or(&1) as f64;
    let mut charts: Vec<(String, String, usize)> = vec![("clean_vs_step".into(), "clean accuracy".into(), 0)];
    for (e, &eps) in d.eps.iter().enumerate() {
        charts.push((
            format!("robust_eps{}_vs_step", e + 1),
            format!("robust accuracy, ε = {}", eps_label(eps)),
            1 + e,
        ));
    }
    charts.push(("ood_vs_step".into(), "OOD accuracy".into(), 1 + lay.ne));
    for (stem, title, k) in charts {
        let mut series = Vec::new();
        let mut csv = Csv::new(&["strategy", "step", "mean", "lo", "hi"]);
        for (s, (est, ci)) in per {
            let r = lay.curve(k);
            if est[r.clone()].iter().any(|v| !v.is_finite()) {
                continue;
            }
            let ci_of = |j: usize| ci[j].unwrap_or(Interval { lo: est[j], hi: est[j] });
            let mut ser = Series::new(
                Some(s.name().into()),
                xs.iter().zip(&est[r.clone()]).map(|(x, y)| (*x, *y)).collect(),
                color(Strategy::ALL.iter().position(|x| x == s).unwrap_or(0)),
                Style::LineMarkers,
            );
            ser.band = Some(r.clone().map(|j| (ci_of(j).lo, ci_of(j).hi)).collect());
            for (i, j) in r.enumerate() {
                csv.push(vec![
                    s.id().into(),
                    d.steps[i].to_string(),
                    num(est[j]),
                    num(ci_of(j).lo),
                    num(ci_of(j).hi),
                ]);
            }
            series.push(ser);
        }
        if series.is_empty() {
            continue;
        }
        let chart = LineChart {
            title: format!(
                "{}: {title} (mean over seeds, 95% bootstrap band; step 0 at 0.5)",
                d.name
            ),
            x: Axis::log("fine-tuning step", 0.4, max_step * 1.2),
            y: Axis::linear(title, 0.0, 1.0),
            series,
            legend: SeriesLabelPosition::LowerRight,
        };
        files.extend(write_figure(out, &format!("{}_{stem}", d.name), &chart, &csv)?);
    }
    for (e, &eps) in d.eps.iter().enumerate() {
        let mut series = Vec::new();
        let mut csv = Csv::new(&["strategy", "step", "clean_acc", "robust_acc", "on_frontier"]);
        for (s, (est, ci)) in per {
            let c = color(Strategy::ALL.iter().position(|x| x == s).unwrap_or(0));
            let clean = &est[lay.curve(0)];
            let rob = &est[lay.curve(1 + e)];
            let pts: Vec<Point> = clean.iter().zip(rob).map(|(&acc, &rob)| Point { acc, rob }).collect();
            let f = frontier(&pts);
            for (i, p) in pts.iter().enumerate() {
                csv.push(vec![
                    s.id().into(),
                    d.steps[i].to_string(),
                    num(p.acc),
                    num(p.rob),
                    f.contains(p).to_string(),
                ]);
            }
            let auc = est[e];
            let aci = ci[e].map_or(String::new(), |i| format!(" [{:.3}, {:.3}]", i.lo, i.hi));
            series.push(Series::new(
                None,
                pts.iter().map(|p| (p.acc, p.rob)).collect(),
                c,
                Style::Markers,
            ));
            series.push(Series::new(
                Some(format!("{} (AUC {auc:.3}{aci})", s.name())),
                f.iter().map(|p| (p.acc, p.rob)).collect(),
                c,
                Style::LineMarkers,
            ));
        }
        let chart = LineChart {
            title: format!(
                "{}, ε = {}: mean trajectory and frontier; AUC [95% CI]",
                d.name,
                eps_label(eps)
            ),
            x: Axis::linear("clean accuracy", 0.0, 1.0),
            y: Axis::linear(format!("robust accuracy (ε = {})", eps_label(eps)), 0.0, 1.0),
            series,
            legend: SeriesLabelPosition::UpperLeft,
        };
        files.extend(write_figure(
            out,
            &format!("{}_frontier_eps{}", d.name, e + 1),
            &chart,
            &csv,
        )?);
    }
    Ok(files)
}

fn cell_text(c: Option<&AucCell>) -> String {
    match c {
        Some(c) if c.ci.lo.is_finite() => format!(
            "{:.3} [{:.3}, {:.3}] ({:+.0}%)",
            c.mean,
            c.ci.lo,
            c.ci.hi,
            100.0 * c.above
        ),
        Some(c) => format!("{:.3} ({:+.0}%)", c.mean, 100.0 * c.above),
        None => "-".into(),
    }
}

/// One row per strategy with an AUC at radius `e`: its name and one cell text per dataset.
fn table_rows(
    ds: &[String],
    e: usize,
    cells: &BTreeMap<(String, usize, Strategy), AucCell>,
) -> Vec<(&'static str, Vec<String>)> {
    Strategy::ALL
        .iter()
        .filter(|st| ds.iter().any(|d| cells.contains_key(&(d.clone(), e, **st))))
        .map(|st| {
            let row = ds.iter().map(|d| cell_text(cells.get(&(d.clone(), e, *st)))).collect();
            (st.name(), row)
        })
        .collect()
}

fn summary_text(
    ds: &[String],
    eps: &[f64],
    cells: &BTreeMap<(String, usize, Strategy), AucCell>,
    flags: &[String],
    incomplete: &[String],
) -> String {
    let mut s = String::new();
    for (e, &x) in eps.iter().enumerate() {
        let _ = writeln!(
            s,
            "AUC of the (accuracy, robustness) Pareto frontier at eps = {}: mean over seeds [95% bootstrap CI] (% above the dataset average)",
            eps_label(x)
        );
        let _ = write!(s, "{:<16}", "strategy");
        for d in ds {
            let _ = write!(s, " {d:>34}");
        }
        s.push('\n');
        for (name, row) in table_rows(ds, e, cells) {
            let _ = write!(s, "{name:<16}");
            for c in row {
                let _ = write!(s, " {c:>34}");
            }
            s.push('\n');
        }
        for d in ds {
            let best = Strategy::ALL
                .iter()
                .filter_map(|st| cells.get(&(d.clone(), e, *st)).map(|c| (st, c.mean)))
                .max_by(|a, b| a.1.total_cmp(&b.1));
            if let Some((st, _)) = best {
                let _ = writeln!(s, "{d}: best AUC {} (at eps = {})", st.name(), eps_label(x));
            }
        }
    }
    s.push_str(&flag_text(flags, incomplete));
    s
}

fn flag_text(flags: &[String], incomplete: &[String]) -> String {
    let mut s = String::new();
    if flags.is_empty() {
        s.push_str(
            "Converged: every run's clean accuracy rose by at most its 95% half-width over the last 20% of steps.\n",
        );
    } else {
        let _ = writeln!(
            s,
            "NOT CONVERGED (clean accuracy still rising by more than its 95% half-width over the last 20% of steps): {}",
            flags.join(", ")
        );
    }
    if !incomplete.is_empty() {
        let _ = writeln!(s, "Unfinished runs left out: {}", incomplete.join(", "));
    }
    s
}

fn auc_markdown(
    ds: &[String],
    eps: &[f64],
    cells: &BTreeMap<(String, usize, Strategy), AucCell>,
    flags: &[String],
    incomplete: &[String],
) -> String {
    let mut s = String::from(
        "# AUC of the Pareto frontier\n\nPer seed, the area dominated by the frontier of the run's (clean, robust) points (step rule, reference (0, 0)); \
         the table gives the mean over seeds, its 95% bootstrap interval (seeds and evaluation images resampled) and, in brackets, \
         the % above the dataset's average over strategies.\n",
    );
    for (e, &x) in eps.iter().enumerate() {
        let _ = write!(s, "\n## ε = {}\n\n| strategy |", eps_label(x));
        for d in ds {
            let _ = write!(s, " {d} |");
        }
        s.push_str("\n|---|");
        s.push_str(&"---|".repeat(ds.len()));
        s.push('\n');
        for (name, row) in table_rows(ds, e, cells) {
            let _ = writeln!(s, "| {name} | {} |", row.join(" | "));
        }
        s.push_str("\nTrapezoid rule (mean over seeds): ");
        let parts: Vec<String> = ds
            .iter()
            .flat_map(|d| {
                Strategy::ALL.iter().filter_map(move |st| {
                    cells
                        .get(&(d.clone(), e, *st))
                        .map(|c| format!("{d}/{} {:.3}", st.id(), c.trapezoid))
                })
            })
            .collect();
        s.push_str(&parts.join(", "));
        s.push('\n');
    }
    s.push('\n');
    s.push_str(&flag_text(flags, incomplete));
    s
}
