//! The report's figures: accuracy against step per radius (mean over seeds with bootstrap bands)
//! and the (clean, robust) trajectory with its Pareto frontier per radius.

use plotters::prelude::SeriesLabelPosition;

use crate::engine::peft::Strategy;
use crate::error::Result;
use crate::io::Csv;
use crate::io::num;
use crate::plot::{Axis, LineChart, Series, Style, color, write_figure};
use crate::tradeoff::{Interval, Point, frontier};
use crate::validate::study::analysis::DatasetData;
use crate::validate::study::report::{Layout, PerStrategy, eps_label};
use std::path::{Path, PathBuf};

/// One accuracy-against-step figure: which curve of the layout it draws.
struct CurveChart {
    /// File stem after the dataset name.
    stem: String,
    /// What the y axis measures.
    title: String,
    /// Curve index in the layout: 0 clean, 1 + e robust at radius e, 1 + ne OOD.
    curve: usize,
}

/// The accuracy-against-step figures of a dataset: clean, robust per radius, OOD.
fn curve_charts(d: &DatasetData, lay: &Layout) -> Vec<CurveChart> {
    let mut charts = vec![CurveChart {
        stem: "clean_vs_step".into(),
        title: "clean accuracy".into(),
        curve: 0,
    }];
    for (e, &eps) in d.eps.iter().enumerate() {
        charts.push(CurveChart {
            stem: format!("robust_eps{}_vs_step", e + 1),
            title: format!("robust accuracy, ε = {}", eps_label(eps)),
            curve: 1 + e,
        });
    }
    charts.push(CurveChart {
        stem: "ood_vs_step".into(),
        title: "OOD accuracy".into(),
        curve: 1 + lay.ne,
    });
    charts
}

/// One accuracy-against-step figure with bootstrap bands; writes nothing when no strategy has a finite curve.
fn curve_figure(
    out: &Path,
    d: &DatasetData,
    lay: &Layout,
    per: &PerStrategy,
    chart: CurveChart,
) -> Result<Vec<PathBuf>> {
    let xs: Vec<f64> = d.steps.iter().map(|&s| (s as f64).max(0.5)).collect();
    let max_step = *d.steps.last().unwrap_or(&1) as f64;
    let CurveChart { stem, title, curve: k } = chart;
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
        return Ok(Vec::new());
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
    write_figure(out, &format!("{}_{stem}", d.name), &chart, &csv)
}

/// The (clean, robust) trajectory and Pareto frontier figure at radius `e`.
fn frontier_figure(out: &Path, d: &DatasetData, lay: &Layout, per: &PerStrategy, e: usize) -> Result<Vec<PathBuf>> {
    let eps = d.eps[e];
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
    write_figure(out, &format!("{}_frontier_eps{}", d.name, e + 1), &chart, &csv)
}

/// The curve and frontier figures of one dataset.
pub(super) fn figures(out: &Path, d: &DatasetData, lay: &Layout, per: &PerStrategy) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for chart in curve_charts(d, lay) {
        files.extend(curve_figure(out, d, lay, per, chart)?);
    }
    for e in 0..d.eps.len() {
        files.extend(frontier_figure(out, d, lay, per, e)?);
    }
    Ok(files)
}
