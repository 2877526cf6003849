//! The dynamics figures: robustness and accuracy curves, (accuracy, robustness) frontiers, and
//! AUC against task complexity d.

use std::collections::BTreeMap;

use plotters::prelude::SeriesLabelPosition;

use super::{SweepPoint, ValidDynamics, rows};
use crate::engine::peft::Strategy;
use crate::io::Csv;
use crate::io::num;
use crate::plot::{Axis, LineChart, Series, Style, color};
use crate::simulate::dynamics::Trajectory;
use crate::tradeoff::{AucRule, Point, frontier};

pub(super) fn curves_figure(cfg: &ValidDynamics, trajs: &[Trajectory]) -> (LineChart, Csv) {
    let eps_cols: Vec<String> = cfg.task.eps.iter().map(|e| format!("robust_eps_{}", num(*e))).collect();
    let mut header = vec!["strategy", "trainable", "step", "loss", "clean_acc"];
    header.extend(eps_cols.iter().map(String::as_str));
    header.extend(["robust_share", "quad_gap"]);
    let mut csv = Csv::new(&header);
    let mut series = Vec::new();
    for (i, t) in trajs.iter().enumerate() {
        for p in &t.points {
            let mut row = vec![
                t.strategy.id().to_string(),
                t.trainable.to_string(),
                p.step.to_string(),
                num(p.loss),
                num(p.clean),
            ];
            row.extend(p.robust.iter().map(|r| num(*r)));
            row.extend([num(p.robust_share), format!("{:.3e}", p.quad_gap)]);
            csv.push(row);
        }
        let x = |p: &crate::theory::dynamics::TrajPoint| (p.step + 1) as f64;
        series.push(Series::new(
            Some(t.strategy.name().to_string()),
            t.points.iter().map(|p| (x(p), p.clean)).collect(),
            color(i),
            Style::Line,
        ));
        series.push(Series::new(
            None,
            t.points.iter().map(|p| (x(p), p.robust[0])).collect(),
            color(i),
            Style::Dashed,
        ));
    }
    let fig = LineChart {
        title: format!(
            "Population GD, p = {}, d = {}, η = {:.3}: clean (solid), robust at ε = {} (dashed)",
            cfg.task.p,
            cfg.task.d,
            cfg.eta(cfg.task.d),
            cfg.task.eps[0]
        ),
        x: Axis::log("step + 1", 1.0, (cfg.train.steps + 1) as f64),
        y: Axis::linear("accuracy", 0.0, 1.0),
        series,
        legend: SeriesLabelPosition::LowerRight,
    };
    (fig, csv)
}

pub(super) fn frontiers_figure(cfg: &ValidDynamics, trajs: &[Trajectory]) -> (LineChart, Csv) {
    let mut csv = Csv::new(&["strategy", "clean_acc", "robust_acc", "auc_step", "auc_trapezoid"]);
    let mut series = Vec::new();
    for (i, t) in trajs.iter().enumerate() {
        let pts: Vec<Point> = t.pairs(0).into_iter().map(|(acc, rob)| Point { acc, rob }).collect();
        let f = frontier(&pts);
        let (a, at) = (t.auc(0, AucRule::Step), t.auc(0, AucRule::Trapezoid));
        for p in &f {
            csv.push(vec![t.strategy.id().into(), num(p.acc), num(p.rob), num(a), num(at)]);
        }
        series.push(Series::new(None, t.pairs(0), color(i), Style::Dashed));
        series.push(Series::new(
            Some(format!("{} (AUC {a:.3})", t.strategy.name())),
            f.iter().map(|p| (p.acc, p.rob)).collect(),
            color(i),
            Style::LineMarkers,
        ));
    }
    // Zoom on the data (the early steps sit far from the frontiers).
    let all: Vec<(f64, f64)> = trajs.iter().flat_map(|t| t.pairs(0)).collect();
    let lo = |f: fn(&(f64, f64)) -> f64| (all.iter().map(f).fold(1.0, f64::min) - 0.02).max(0.0);
    let fig = LineChart {
        title: format!(
            "Pareto frontiers of the trajectories (dashed: path), ε = {}",
            cfg.task.eps[0]
        ),
        x: Axis::linear("clean accuracy", lo(|p| p.0), 1.0),
        y: Axis::linear("robust accuracy", lo(|p| p.1), 1.0),
        series,
        legend: SeriesLabelPosition::UpperLeft,
    };
    (fig, csv)
}

pub(super) fn auc_vs_d_figure(
    cfg: &ValidDynamics,
    settings: &[SweepPoint],
    by_d: &[Vec<Trajectory>],
) -> (LineChart, Csv) {
    let mut csv = Csv::new(&[
        "d",
        "eta",
        "strategy",
        "trainable",
        "auc_step",
        "auc_trapezoid",
        "peak_step",
        "peak_robust",
        "drop_after_peak",
        "rises_then_falls",
        "final_clean",
        "final_robust",
    ]);
    let mut per: BTreeMap<usize, Vec<(f64, f64)>> = BTreeMap::new();
    for (s, trajs) in settings.iter().zip(by_d) {
        for (i, r) in rows(cfg, trajs).iter().enumerate() {
            csv.push(vec![
                s.d.to_string(),
                num(cfg.eta(s.d)),
                r.strategy.id().into(),
                r.trainable.to_string(),
                num(r.auc),
                num(r.auc_trapezoid),
                r.peak_step.to_string(),
                num(r.peak),
                num(r.drop),
                r.rises_then_falls.to_string(),
                num(r.final_clean),
                num(r.final_robust),
            ]);
            per.entry(i).or_default().push((s.d as f64, r.auc));
        }
    }
    let series = per
        .into_iter()
        .map(|(i, pts)| Series::new(Some(Strategy::ALL[i].name().into()), pts, color(i), Style::LineMarkers))
        .collect();
    let (lo, hi) = settings.iter().fold((f64::INFINITY, 0.0f64), |(l, h), s| {
        (l.min(s.d as f64), h.max(s.d as f64))
    });
    let fig = LineChart {
        title: format!(
            "Predicted AUC (ε = {}) against task complexity d, η = {}",
            cfg.task.eps[0],
            if cfg.task.eta.is_some() {
                "fixed".to_string()
            } else {
                format!("Φ⁻¹({})/√d", cfg.task.target_acc)
            }
        ),
        x: Axis::log("d (label-carrying non-robust features)", lo * 0.8, hi * 1.25),
        y: Axis::linear("AUC of the (clean, robust) frontier, step rule", 0.0, 1.0),
        series,
        legend: SeriesLabelPosition::UpperRight,
    };
    (fig, csv)
}
