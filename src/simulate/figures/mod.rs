//! The seven theory figures: each function turns a validated config into the chart and the CSV
//! of exactly the numbers it draws, plus what the summary table prints.

use plotters::prelude::SeriesLabelPosition;

use super::config::{ValidConfig, linspace, logspace};
use crate::engine::peft::Strategy;
use crate::error::Result;
use crate::io::{Csv, num};
use crate::plot::{Axis, Heatmap, LineChart, PALETTE, Series, Style, color};
use crate::theory::{
    Regime, ScoreSummary, accuracy, predict_strategies, robust_at_matched_accuracy, tsipras_upper_bound, z_score,
};
use crate::tradeoff::{AucRule, Point, auc, frontier};

mod checks;

pub use checks::{McRow, montecarlo_check, montecarlo_rows, random_classifier, theorem_2_1};

/// One grid point of the η_min sweep.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoundPoint {
    /// Updated parameters k.
    pub k: f64,
    /// Task features d.
    pub d: f64,
    /// η_min = z/√(k+d).
    pub eta_min: f64,
}

/// The k × d sweep of η_min = z/√(k+d) (disjoint regime): z is computed once and the inner loop
/// is one square root and one division per point, no allocation beyond the output.
pub fn bound_grid(ks: &[f64], ds: &[f64], target_acc: f64) -> Result<Vec<BoundPoint>> {
    let z = z_score(target_acc)?;
    let mut out = Vec::with_capacity(ks.len() * ds.len());
    for &d in ds {
        for &k in ks {
            out.push(BoundPoint {
                k,
                d,
                eta_min: z / (k + d).sqrt(),
            });
        }
    }
    Ok(out)
}

/// Geometric cell edges around log-spaced centres.
fn log_edges(c: &[f64]) -> Vec<f64> {
    let n = c.len();
    let mut e = Vec::with_capacity(n + 1);
    e.push(c[0] * (c[0] / c[1]).sqrt());
    for w in c.windows(2) {
        e.push((w[0] * w[1]).sqrt());
    }
    e.push(c[n - 1] * (c[n - 1] / c[n - 2]).sqrt());
    e
}

/// Figure 1, `eta_min_heatmap`, and the rows of `bound_sweep.csv`.
pub fn eta_min_heatmap(cfg: &ValidConfig) -> Result<(Heatmap, Csv, Csv)> {
    let b = &cfg.bound;
    let ks = logspace(b.k_range[0], b.k_range[1], b.grid);
    let ds = logspace(b.d_range[0], b.d_range[1], b.grid);
    let grid = bound_grid(&ks, &ds, b.target_acc)?;
    let (ke, de) = (log_edges(&ks), log_edges(&ds));
    let mut cells = Vec::with_capacity(grid.len());
    let mut csv = Csv::new(&["k", "d", "eta_min"]);
    let mut sweep = Csv::new(&["k", "d", "target_acc", "eta_min"]);
    for (idx, p) in grid.iter().enumerate() {
        let (i, j) = (idx % ks.len(), idx / ks.len());
        cells.push((ke[i], ke[i + 1], de[j], de[j + 1], p.eta_min.log10()));
        csv.push(vec![num(p.k), num(p.d), num(p.eta_min)]);
        sweep.push(vec![num(p.k), num(p.d), num(b.target_acc), num(p.eta_min)]);
    }
    let fig = Heatmap {
        title: format!("Weakest usable feature η_min = Φ⁻¹({})/√(k+d)", b.target_acc),
        x: Axis::log("k = ‖Δw‖₀ (updated parameters)", ke[0], ke[ks.len()]),
        y: Axis::log("d (features the pretrained w₀ uses)", de[0], de[ds.len()]),
        cells,
        value_label: "log₁₀ η_min".into(),
    };
    Ok((fig, csv, sweep))
}

/// Left edge of the k axis in `bound_vs_k`; linear probing (k = 0) is drawn there.
const K_EDGE: f64 = 1e-3;

/// Figure 2, `bound_vs_k`: η_min against k for several d in both regimes, with full fine-tuning
/// (k = d) and the 7 strategies (k = d·params/params_full) marked.
pub fn bound_vs_k(cfg: &ValidConfig) -> Result<(LineChart, Csv)> {
    let b = &cfg.bound;
    let k_hi = b.k_range[1].max(b.d_lines.iter().cloned().fold(0.0, f64::max));
    let ks = logspace(K_EDGE, k_hi, 200);
    let mut series = Vec::new();
    let mut csv = Csv::new(&["series", "d", "k", "eta_min"]);
    let shades = |i: usize| {
        let g = (170.0 * (1.0 - i as f64 / b.d_lines.len().max(1) as f64)) as u8;
        plotters::style::RGBColor(g, g, g)
    };
    for (i, &d) in b.d_lines.iter().enumerate() {
        let mut dis = Vec::new();
        for &k in &ks {
            let e = Regime::Disjoint.eta_min(k, d, b.target_acc)?;
            dis.push((k, e));
            csv.push(vec!["disjoint".into(), num(d), num(k), num(e)]);
        }
        let mut ovl = Vec::new();
        for &k in ks.iter().filter(|&&k| k <= d) {
            let e = Regime::Overlapping.eta_min(k, d, b.target_acc)?;
            ovl.push((k, e));
            csv.push(vec!["overlapping".into(), num(d), num(k), num(e)]);
        }
        series.push(Series::new(
            Some(format!("d = {d} (disjoint: m = k + d)")),
            dis,
            shades(i),
            Style::Line,
        ));
        let label = (i == 0).then(|| "dashed: overlapping support (m = d)".to_string());
        series.push(Series::new(label, ovl, shades(i), Style::Dashed));
    }
    for (si, s) in Strategy::ALL.iter().enumerate() {
        let mut pts = Vec::new();
        for &d in &b.d_lines {
            let k = s.k_for(d);
            let e = Regime::Disjoint.eta_min(k, d, b.target_acc)?;
            pts.push((k.max(K_EDGE), e));
            csv.push(vec![format!("strategy:{}", s.id()), num(d), num(k), num(e)]);
        }
        let label = if s.param_fraction() == 0.0 {
            format!("{} (k = 0, at left edge)", s.name())
        } else if s.param_fraction() == 1.0 {
            format!("{} (k = d)", s.name())
        } else {
            s.name().to_string()
        };
        series.push(Series::new(Some(label), pts, color(si), Style::Highlight));
    }
    let y_lo = z_score(b.target_acc)? / (k_hi + b.d_lines.iter().cloned().fold(0.0, f64::max)).sqrt();
    let y_hi = z_score(b.target_acc)? / b.d_lines.iter().cloned().fold(f64::INFINITY, f64::min).sqrt();
    let fig = LineChart {
        title: format!(
            "Fine-tuning bound η ≥ Φ⁻¹({})/√m against updated parameters k",
            b.target_acc
        ),
        x: Axis::log("k = ‖Δw‖₀ (updated parameters)", K_EDGE, k_hi),
        y: Axis::log("η_min (feature strength needed)", y_lo * 0.8, y_hi * 1.25),
        series,
        legend: SeriesLabelPosition::LowerLeft,
    };
    Ok((fig, csv))
}

/// Figure 3, `robust_at_matched_accuracy`: Φ(Φ⁻¹(A) − ε√(k+d)) against k.
pub fn robust_at_matched(cfg: &ValidConfig) -> Result<(LineChart, Csv)> {
    let m = &cfg.matched;
    let ks = logspace(m.k_range[0], m.k_range[1], 200);
    let mut series = Vec::new();
    let mut csv = Csv::new(&["d", "eps", "k", "robust_acc"]);
    for (i, &d) in m.d_values.iter().enumerate() {
        for (j, &eps) in m.eps_values.iter().enumerate() {
            let mut pts = Vec::new();
            for &k in &ks {
                let r = robust_at_matched_accuracy(m.clean_acc, k + d, eps)?;
                pts.push((k, r));
                csv.push(vec![num(d), num(eps), num(k), num(r)]);
            }
            let style = if j % 2 == 0 { Style::Line } else { Style::Dashed };
            series.push(Series::new(Some(format!("d = {d}, ε = {eps}")), pts, color(i), style));
        }
    }
    let fig = LineChart {
        title: format!(
            "Robust accuracy at matched clean accuracy {} (disjoint regime)",
            m.clean_acc
        ),
        x: Axis::log("k = ‖Δw‖₀ (updated parameters)", m.k_range[0], m.k_range[1]),
        y: Axis::linear("robust accuracy Φ(Φ⁻¹(A) − ε√(k+d))", 0.0, 1.0),
        series,
        legend: SeriesLabelPosition::LowerLeft,
    };
    Ok((fig, csv))
}

/// One curve of the tradeoff-frontier figure.
#[derive(Debug, Clone)]
pub struct FrontierCurve {
    /// Number of non-robust features averaged.
    pub m: usize,
    /// (clean, robust) per λ.
    pub points: Vec<Point>,
    /// Pareto frontier of `points`.
    pub frontier: Vec<Point>,
    /// Step-rule AUC.
    pub auc_step: f64,
    /// Trapezoid-rule AUC.
    pub auc_trapezoid: f64,
}

/// The curves of figure 4: w_λ = (1−λ, λ/m, …) for λ ∈ [0, 1].
pub fn frontier_curves(cfg: &ValidConfig) -> Vec<FrontierCurve> {
    let f = &cfg.frontier;
    f.m_values
        .iter()
        .map(|&m| {
            let points: Vec<Point> = linspace(0.0, 1.0, f.lambdas)
                .into_iter()
                .map(|l| {
                    let s = ScoreSummary::interpolated(m, l);
                    Point {
                        acc: accuracy(f.p, f.eta, &s, 0.0),
                        rob: accuracy(f.p, f.eta, &s, f.eps),
                    }
                })
                .collect();
            FrontierCurve {
                m,
                frontier: frontier(&points),
                auc_step: auc(&points, AucRule::Step),
                auc_trapezoid: auc(&points, AucRule::Trapezoid),
                points,
            }
        })
        .collect()
}

/// Figure 4, `tradeoff_frontiers`.
pub fn tradeoff_frontiers(cfg: &ValidConfig, curves: &[FrontierCurve]) -> Result<(LineChart, Csv)> {
    let f = &cfg.frontier;
    let lambdas = linspace(0.0, 1.0, f.lambdas);
    let mut series = Vec::new();
    let mut csv = Csv::new(&[
        "m",
        "lambda",
        "clean_acc",
        "robust_acc",
        "on_frontier",
        "auc_step",
        "auc_trapezoid",
    ]);
    for (i, c) in curves.iter().enumerate() {
        for (l, p) in lambdas.iter().zip(&c.points) {
            let on = c.frontier.contains(p);
            csv.push(vec![
                c.m.to_string(),
                num(*l),
                num(p.acc),
                num(p.rob),
                on.to_string(),
                num(c.auc_step),
                num(c.auc_trapezoid),
            ]);
        }
        let pts = c.points.iter().map(|p| (p.acc, p.rob)).collect();
        series.push(Series::new(
            Some(format!(
                "m = {}: AUC step {:.3}, trapezoid {:.3}",
                c.m, c.auc_step, c.auc_trapezoid
            )),
            pts,
            color(i),
            Style::Line,
        ));
        let fr = c.frontier.iter().map(|p| (p.acc, p.rob)).collect();
        series.push(Series::new(None, fr, color(i), Style::Markers));
    }
    if f.eps >= 2.0 * f.eta {
        let bound: Vec<(f64, f64)> = linspace(0.5, 1.0, 101)
            .into_iter()
            .map(|a| (a, tsipras_upper_bound(f.p, a).map(|b| b.min(1.0)).unwrap_or(1.0)))
            .collect();
        series.push(Series::new(
            Some("Tsipras Thm 2.1 bound (ε ≥ 2η)".into()),
            bound,
            PALETTE[8],
            Style::Dashed,
        ));
    }
    let fig = LineChart {
        title: format!(
            "Clean vs robust as weight moves to m non-robust features (p = {}, η = {}, ε = {})",
            f.p, f.eta, f.eps
        ),
        x: Axis::linear("clean accuracy", 0.5, 1.0),
        y: Axis::linear("robust accuracy", 0.0, 1.0),
        series,
        legend: SeriesLabelPosition::LowerLeft,
    };
    Ok((fig, csv))
}

/// Figure 7, `strategy_prediction`: robustness at matched accuracy per strategy against d.
pub fn strategy_prediction(cfg: &ValidConfig) -> Result<(LineChart, Csv)> {
    let s = &cfg.strategies;
    let ds = logspace(s.d_range[0], s.d_range[1], 120);
    let mut csv = Csv::new(&["strategy", "params", "d", "k", "m", "eta_min", "robust_acc"]);
    let mut per: Vec<Vec<(f64, f64)>> = vec![Vec::new(); Strategy::ALL.len()];
    for &d in &ds {
        for p in predict_strategies(&Strategy::ALL, d, s.clean_acc, s.eps)? {
            let i = Strategy::ALL
                .iter()
                .position(|x| *x == p.strategy)
                .expect("known strategy");
            per[i].push((d, p.robust_acc));
            csv.push(vec![
                p.strategy.id().into(),
                p.strategy.vit_b16_params().to_string(),
                num(d),
                num(p.k),
                num(p.m),
                num(p.eta_min),
                num(p.robust_acc),
            ]);
        }
    }
    let series = Strategy::ALL
        .iter()
        .zip(per)
        .enumerate()
        .map(|(i, (st, pts))| {
            let label = format!("{} ({:.3}% of backbone)", st.name(), 100.0 * st.param_fraction());
            Series::new(
                Some(label),
                pts,
                color(i),
                if i % 2 == 0 { Style::Line } else { Style::Dashed },
            )
        })
        .collect();
    let fig = LineChart {
        title: format!(
            "Predicted robustness at matched clean accuracy {} per strategy (ε = {})",
            s.clean_acc, s.eps
        ),
        x: Axis::log("d (task complexity: features w₀ uses)", s.d_range[0], s.d_range[1]),
        y: Axis::linear("robust accuracy Φ(z − ε√(k+d)), k = d·params/params_full", 0.0, 1.0),
        series,
        legend: SeriesLabelPosition::LowerLeft,
    };
    Ok((fig, csv))
}
