//! `validate compare DIR`: the theory's prediction next to the measurement.
//!
//! The simulator predicts robustness at matched clean accuracy Φ(z − ε√(k+d)) with
//! k = d·params/params_full (disjoint regime; see `theory::bound`), so its ranking of strategies is
//! the order of increasing trainable parameter count, for any ε > 0 and any target accuracy. This
//! module ranks the measured AUCs per dataset against that prediction (Spearman ρ), and both
//! against the AUC table Li et al. 2025 measured on ViT-B (`validation/reference/li2025_auc.csv`,
//! embedded), and says plainly where they disagree. A second theory column comes from the
//! training-dynamics model (`simulate dynamics`, `theory::dynamics`): the AUC of each strategy's
//! predicted trajectory at the dataset's d ([`crate::simulate::dynamics::predicted_auc`], embedded
//! `simulations/dynamics.toml`), ranked against the measurement the same way.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::SeriesLabelPosition;

use crate::engine::data::synthetic::SyntheticSpec;
use crate::engine::peft::Strategy;
use crate::error::{Error, Result};
use crate::io::num;
use crate::io::{Csv, write_atomic};
use crate::plot::{Axis, LineChart, Series, Style, color, write_figure};
use crate::simulate::dynamics::{DynamicsConfig, ValidDynamics, predicted_auc};
use crate::theory::predict_strategies;
use crate::tradeoff::spearman;
use crate::validate::RunConfig;
use crate::validate::study::report::{AucCell, Summary, summarise};

/// Li et al. 2025's measured AUC on ViT-B (their AUC table; CIFAR-10, CIFAR-100, Caltech-256,
/// CUB-200, Stanford Dogs).
pub const PAPER_AUC_CSV: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/validation/reference/li2025_auc.csv"
));

/// The paper's AUC table: dataset names, and per strategy one AUC per dataset.
pub type PaperTable = (Vec<String>, BTreeMap<Strategy, Vec<f64>>);

/// Parsed reference table: (dataset names, strategy → AUC per dataset).
pub fn paper_auc() -> Result<PaperTable> {
    let mut lines = PAPER_AUC_CSV.lines();
    let header: Vec<String> = lines
        .next()
        .unwrap_or("")
        .split(',')
        .skip(1)
        .map(str::to_string)
        .collect();
    let mut map = BTreeMap::new();
    for l in lines.filter(|l| !l.trim().is_empty()) {
        let mut parts = l.split(',');
        let s = crate::engine::peft::parse_strategy(parts.next().unwrap_or(""))?;
        let v = parts
            .map(|x| {
                x.parse::<f64>()
                    .map_err(|_| Error::invalid("li2025_auc.csv", "numbers", x))
            })
            .collect::<Result<Vec<_>>>()?;
        map.insert(s, v);
    }
    Ok((header, map))
}

/// Attack size (feature units) used for the theory's prediction; only the ranking is compared,
/// and it does not depend on this value.
pub const THEORY_EPS: f64 = 0.02;

fn ranks_desc(v: &[f64]) -> Vec<usize> {
    crate::tradeoff::stats::competition_ranks_desc(v)
}

/// The names of the strategies at rank `r` (several when they tie), joined by " = ".
fn at_rank(strategies: &[Strategy], ranks: &[usize], r: usize) -> String {
    let names: Vec<&str> = (0..ranks.len())
        .filter(|&i| ranks[i] == r)
        .map(|i| strategies[i].name())
        .collect();
    names.join(" = ")
}

/// The task complexity d of records written before headers carried it: the configured
/// `theory_d`, else the synthetic task's d, else 10 (what compare has always assumed).
fn legacy_theory_d(header: &crate::validate::sweep::records::Header, ds: &str) -> Result<f64> {
    let cfg: RunConfig = serde_json::from_value(header.config.clone())
        .map_err(|e| Error::invalid("config", "a run configuration", e))?;
    let spec = cfg
        .datasets
        .iter()
        .find(|d| d.name == ds)
        .ok_or_else(|| Error::invalid("dataset", "in the run's configuration", ds))?;
    let image = cfg.model.resolve().map(|m| m.image_size).unwrap_or(28);
    Ok(match (spec.theory_d, spec.task.as_deref()) {
        (Some(d), _) => d,
        (None, Some(t)) => SyntheticSpec::named(t, image).map(|s| s.d as f64).unwrap_or(10.0),
        (None, None) => 10.0,
    })
}

/// One dataset's strategies with the theory's, the measurement's and the dynamics model's values
/// and their competition ranks (1 = best), index-aligned with `strategies`.
struct DatasetRanking {
    /// The strategies with a measured AUC on this dataset, in `Strategy::ALL` order.
    strategies: Vec<Strategy>,
    /// The theory's predicted robust accuracy per strategy.
    predicted: Vec<f64>,
    /// The measured AUC (step rule) per strategy.
    measured: Vec<f64>,
    /// The training-dynamics model's predicted AUC per strategy.
    dynamics: Vec<f64>,
    /// Ranks of `predicted`.
    predicted_rank: Vec<usize>,
    /// Ranks of `measured`.
    measured_rank: Vec<usize>,
    /// Ranks of `dynamics`.
    dynamics_rank: Vec<usize>,
}

/// The d at which the dynamics model is evaluated for theory d: rounded, at least 1.
fn dynamics_d(d: f64) -> usize {
    (d.round() as usize).max(1)
}

/// The task complexity d of dataset `ds`: its header's `theory_d`, else the legacy derivation.
fn dataset_theory_d(summary: &Summary, ds: &str) -> Result<f64> {
    let header = &summary
        .study
        .datasets
        .iter()
        .find(|d| d.name == ds)
        .expect("dataset has runs")
        .any_run()
        .header;
    match header.theory_d {
        Some(d) => Ok(d),
        None => legacy_theory_d(header, ds),
    }
}

/// Ranks the strategies measured on `ds` by theory, measurement and dynamics model at task complexity `d`.
fn rank_dataset(
    aucs: &BTreeMap<(String, Strategy), AucCell>,
    ds: &str,
    d: f64,
    dyn_cfg: &ValidDynamics,
) -> Result<DatasetRanking> {
    let pred = predict_strategies(&Strategy::ALL, d, 0.99, THEORY_EPS)?;
    let key = |s: Strategy| (ds.to_string(), s);
    let strategies: Vec<Strategy> = Strategy::ALL
        .iter()
        .copied()
        .filter(|s| aucs.contains_key(&key(*s)))
        .collect();
    let predicted: Vec<f64> = strategies
        .iter()
        .map(|s| {
            pred.iter()
                .find(|x| x.strategy == *s)
                .expect("all predicted")
                .robust_acc
        })
        .collect();
    let measured: Vec<f64> = strategies.iter().map(|s| aucs[&key(*s)].mean).collect();
    let dyn_auc = predicted_auc(dyn_cfg, dynamics_d(d))?;
    let dynamics: Vec<f64> = strategies
        .iter()
        .map(|s| dyn_auc.iter().find(|x| x.0 == *s).expect("all predicted").1)
        .collect();
    Ok(DatasetRanking {
        predicted_rank: ranks_desc(&predicted),
        measured_rank: ranks_desc(&measured),
        dynamics_rank: ranks_desc(&dynamics),
        strategies,
        predicted,
        measured,
        dynamics,
    })
}

/// The CSV of `compare`: one row per (dataset, strategy).
fn compare_csv() -> Csv {
    Csv::new(&[
        "dataset",
        "strategy",
        "params",
        "theory_d",
        "predicted_robust",
        "predicted_rank",
        "measured_auc",
        "measured_rank",
        "dynamics_auc",
        "dynamics_rank",
    ])
}

/// Writes dataset `ds`'s table (heading, one Markdown row and one CSV row per strategy).
fn write_rows(md: &mut String, csv: &mut Csv, ds: &str, d: f64, r: &DatasetRanking) {
    let _ = writeln!(
        md,
        "## {ds} (theory d = {d})\n\n| strategy | trainable params (ViT-B) | predicted robust | predicted rank | measured AUC | measured rank | dynamics AUC | dynamics rank |\n|---|---|---|---|---|---|---|---|"
    );
    let (p, m, q) = (&r.predicted, &r.measured, &r.dynamics);
    let (pr, mr, qr) = (&r.predicted_rank, &r.measured_rank, &r.dynamics_rank);
    for (i, s) in r.strategies.iter().enumerate() {
        let _ = writeln!(
            md,
            "| {} | {} | {:.4} | {} | {:.4} | {} | {:.4} | {} |",
            s.name(),
            s.vit_b16_params(),
            p[i],
            pr[i],
            m[i],
            mr[i],
            q[i],
            qr[i]
        );
        csv.push(vec![
            ds.to_string(),
            s.id().into(),
            s.vit_b16_params().to_string(),
            num(d),
            num(p[i]),
            pr[i].to_string(),
            num(m[i]),
            mr[i].to_string(),
            num(q[i]),
            qr[i].to_string(),
        ]);
    }
}

/// Writes how the measured ranking agrees with the theory's (`rho`) and with the dynamics model's.
fn write_agreement(md: &mut String, r: &DatasetRanking, d: f64, rho: &Result<f64>) {
    let (strategies, mr, qr) = (&r.strategies, &r.measured_rank, &r.dynamics_rank);
    let best = at_rank(strategies, mr, 1);
    let worst = at_rank(strategies, mr, mr.iter().copied().max().unwrap_or(1));
    let _ = writeln!(
        md,
        "\nSpearman ρ(predicted, measured) = {}. Measured best: {}, worst: {}; the theory puts Linear Probing first and Full last.",
        rho.as_ref()
            .map_or("undefined (ties)".to_string(), |r| format!("{r:.3}")),
        best,
        worst
    );
    let verdict = match rho {
        Ok(r) if *r > 0.5 => "The measured ranking agrees with the theory's.",
        Ok(r) if *r < -0.5 => "The measured ranking is close to the reverse of the theory's: they disagree.",
        _ => "The measured ranking is unrelated to the theory's: they disagree.",
    };
    let _ = writeln!(md, "{verdict}");
    let _ = writeln!(
        md,
        "Training-dynamics model (simulations/dynamics.toml at d = {}): ρ(dynamics, measured) = {}; it puts {} first and {} last.",
        dynamics_d(d),
        spearman(&r.dynamics, &r.measured).map_or("undefined (ties)".to_string(), |r| format!("{r:.3}")),
        strategies[qr.iter().position(|&r| r == 1).expect("rank 1 exists")].name(),
        strategies[qr
            .iter()
            .position(|&r| r == strategies.len())
            .expect("last rank exists")]
        .name()
    );
}

/// Writes ρ(measured, paper) and ρ(theory, paper) for each paper dataset that covers every strategy.
fn write_paper_agreement(md: &mut String, r: &DatasetRanking, paper: &PaperTable) {
    let (paper_ds, paper) = paper;
    for (pi, pd) in paper_ds.iter().enumerate() {
        let pv: Vec<f64> = r
            .strategies
            .iter()
            .map(|s| paper.get(s).map_or(f64::NAN, |v| v[pi]))
            .collect();
        if pv.iter().any(|v| v.is_nan()) {
            continue;
        }
        let a = spearman(&r.measured, &pv).map_or("-".into(), |r| format!("{r:.2}"));
        let b = spearman(&r.predicted, &pv).map_or("-".into(), |r| format!("{r:.2}"));
        let _ = writeln!(md, "- vs paper {pd}: ρ(measured, paper) = {a}, ρ(theory, paper) = {b}");
    }
}

/// Dataset `ds`'s measured AUC against trainable-parameter fraction, labelled with ρ.
fn measured_series(ds: &str, di: usize, r: &DatasetRanking, rho: Result<f64>) -> Series {
    let pts: Vec<(f64, f64)> = r
        .strategies
        .iter()
        .zip(&r.measured)
        .map(|(s, a)| ((s.param_fraction()).max(1e-4), *a))
        .collect();
    Series::new(
        Some(format!("{ds} (ρ = {})", rho.map_or("-".into(), |r| format!("{r:.2}")))),
        pts,
        color(di),
        Style::Markers,
    )
}

/// The compare figure: measured AUC against trainable-parameter fraction, one series per dataset.
fn compare_chart(series: Vec<Series>) -> LineChart {
    LineChart {
        title: "Measured AUC against trainable-parameter fraction (theory: decreasing)".into(),
        x: Axis::log(
            "trainable backbone parameters / full (ViT-B counts; linear probing drawn at 10⁻⁴)",
            1e-4,
            1.5,
        ),
        y: Axis::linear("measured AUC (step rule)", 0.0, 1.0),
        series,
        legend: SeriesLabelPosition::UpperRight,
    }
}

/// Writes `DIR/report/compare.{md,csv,png,svg}` and returns the Markdown.
pub fn compare(dir: &Path) -> Result<String> {
    let summary = summarise(dir)?;
    let aucs = summary.aucs();
    let paper = paper_auc()?;
    let out = dir.join("report");
    let mut md = String::from("# Theory against measurement\n\n");
    let _ = writeln!(
        md,
        "Theory: robustness at matched clean accuracy Φ(z − ε√(k+d)), k = d·params/params_full (disjoint regime), \
         so it ranks strategies by increasing parameter count (Linear Probing first, Full last). \
         Measured: AUC of each strategy's (clean, robust) Pareto frontier. Paper: Li et al. 2025, ViT-B AUC table.\n"
    );
    let mut csv = compare_csv();
    let dyn_cfg = DynamicsConfig::default_config();
    let mut series = Vec::new();
    let mut datasets: Vec<String> = aucs.keys().map(|(d, _)| d.clone()).collect();
    datasets.dedup();
    for (di, ds) in datasets.iter().enumerate() {
        let d = dataset_theory_d(&summary, ds)?;
        let ranking = rank_dataset(&aucs, ds, d, &dyn_cfg)?;
        write_rows(&mut md, &mut csv, ds, d, &ranking);
        let rho = spearman(&ranking.predicted, &ranking.measured);
        write_agreement(&mut md, &ranking, d, &rho);
        // Against the paper's table.
        write_paper_agreement(&mut md, &ranking, &paper);
        md.push('\n');
        series.push(measured_series(ds, di, &ranking, rho));
    }
    write_figure(&out, "compare", &compare_chart(series), &csv)?;
    write_atomic(&out.join("compare.md"), md.as_bytes())?;
    Ok(md)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_table_parses() {
        let (ds, m) = paper_auc().unwrap();
        assert_eq!(ds.len(), 5);
        assert_eq!(m.len(), 7);
        assert_eq!(m[&Strategy::Bitfit][0], 0.21);
        assert_eq!(m[&Strategy::Compacter][2], 0.34);
        assert_eq!(ranks_desc(&[0.1, 0.3, 0.2]), vec![3, 1, 2]);
    }
}
