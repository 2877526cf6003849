//! One figure per (task, strategy): the seed-mean training trajectory against the seed-mean
//! interpolation path, in (clean, robust) accuracy, at every radius.

use std::collections::BTreeMap;
use std::path::Path;

use plotters::prelude::SeriesLabelPosition;

use crate::error::Result;
use crate::io::{Csv, num};
use crate::plot::{Axis, LineChart, Series, Style, color, write_figure};
use crate::tradeoff::Point;
use crate::validate::checkpoints::interpolate::{InterpCell, Outcomes, point, strategy_name};
use crate::validate::study::report::eps_label;

/// One figure per (task, strategy): at each radius the seed-mean trajectory's steps (dots) and
/// frontier (solid) and the seed-mean interpolation path (dashed), clean accuracy against robust accuracy.
pub(super) fn figures(dir: &Path, cells: &[InterpCell]) -> Result<()> {
    let mut groups: BTreeMap<(String, String), Vec<&InterpCell>> = BTreeMap::new();
    for c in cells {
        groups
            .entry((c.dataset.clone(), c.strategy.clone()))
            .or_default()
            .push(c);
    }
    for ((dataset, strategy), g) in groups {
        let n = g[0].trajectory[0].outcomes.len();
        let all: Vec<usize> = (0..n).collect();
        let mean_pts = |pick: &dyn Fn(&InterpCell) -> &[Outcomes], k: usize| -> Vec<Point> {
            (0..pick(g[0]).len())
                .map(|i| {
                    let p: Vec<Point> = g.iter().map(|c| point(&pick(c)[i], k, &all)).collect();
                    Point {
                        acc: p.iter().map(|p| p.acc).sum::<f64>() / p.len() as f64,
                        rob: p.iter().map(|p| p.rob).sum::<f64>() / p.len() as f64,
                    }
                })
                .collect()
        };
        let mut series = Vec::new();
        let mut csv = Csv::new(&["eps", "kind", "step_or_alpha", "clean_acc", "robust_acc"]);
        for (k, &eps) in g[0].eps.iter().enumerate() {
            let traj = mean_pts(&|c: &InterpCell| c.trajectory.as_slice(), k);
            let path = mean_pts(&|c: &InterpCell| c.path.as_slice(), k);
            for (o, p) in g[0].trajectory.iter().zip(&traj) {
                csv.push(vec![
                    num(eps),
                    "trajectory".into(),
                    o.step.unwrap_or(0).to_string(),
                    num(p.acc),
                    num(p.rob),
                ]);
            }
            for (o, p) in g[0].path.iter().zip(&path) {
                csv.push(vec![
                    num(eps),
                    "interpolation".into(),
                    num(o.alpha.unwrap_or(f64::NAN)),
                    num(p.acc),
                    num(p.rob),
                ]);
            }
            series.push(Series::new(
                None,
                traj.iter().map(|p| (p.acc, p.rob)).collect(),
                color(k),
                Style::Markers,
            ));
            let f = crate::tradeoff::frontier(&traj);
            series.push(Series::new(
                Some(format!("training frontier, ε = {}", eps_label(eps))),
                f.iter().map(|p| (p.acc, p.rob)).collect(),
                color(k),
                Style::LineMarkers,
            ));
            series.push(Series::new(
                Some(format!("interpolation α = 0 … 1, ε = {}", eps_label(eps))),
                path.iter().map(|p| (p.acc, p.rob)).collect(),
                color(k),
                Style::Dashed,
            ));
        }
        let name = strategy_name(&strategy);
        let chart = LineChart {
            title: format!("{dataset}, {name}: training trajectory vs weight-space interpolation (seed mean)"),
            x: Axis::linear("clean accuracy", 0.0, 1.0),
            y: Axis::linear("robust accuracy", 0.0, 1.0),
            series,
            legend: SeriesLabelPosition::UpperLeft,
        };
        write_figure(dir, &format!("{dataset}_{strategy}"), &chart, &csv)?;
    }
    Ok(())
}
