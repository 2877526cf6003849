//! Figures 5 and 6: random linear classifiers checking the closed forms, against Monte Carlo
//! (`montecarlo_check`) and under the bound of Theorem 2.1 (`theorem_2_1`).

use plotters::prelude::SeriesLabelPosition;
use rand::rngs::StdRng;
use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;

use crate::error::Result;
use crate::io::{Csv, num};
use crate::plot::{Axis, LineChart, PALETTE, Series, Style, color};
use crate::simulate::config::{ValidConfig, linspace};
use crate::theory::{FeatureModel, LinearClassifier, tsipras_upper_bound};

/// A random linear classifier with a spread of clean accuracies: a mixture weight λ between the
/// robust feature and a random sparse, noisy, partly sign-flipped set of non-robust features,
/// plus a random bias.
pub fn random_classifier(rng: &mut StdRng, dim: usize) -> LinearClassifier {
    let lambda: f64 = rng.random();
    let m = rng.random_range(1..=dim);
    let mut v = vec![0.0; dim];
    for j in sample(rng, dim, m) {
        let noise: f64 = rng.sample(StandardNormal);
        let flip = if rng.random::<f64>() < 0.1 { -1.0 } else { 1.0 };
        v[j] = flip * lambda / m as f64 * (1.0 + 0.5 * noise);
    }
    let a_sign = if rng.random::<f64>() < 0.1 { -1.0 } else { 1.0 };
    let a = a_sign * (1.0 - lambda) * rng.random_range(0.5..1.5);
    let beta = 0.1 * rng.sample::<f64, _>(StandardNormal);
    LinearClassifier::new(a, v, beta).expect("finite by construction")
}

/// One closed-form / Monte Carlo comparison.
#[derive(Debug, Clone, Copy)]
pub struct McRow {
    /// Classifier index.
    pub classifier: usize,
    /// Attack size (0 = clean).
    pub eps: f64,
    /// Closed form.
    pub exact: f64,
    /// Monte Carlo estimate.
    pub mc: f64,
    /// Binomial standard error at the exact value.
    pub se: f64,
}

impl McRow {
    /// (mc − exact)/se; 0 when both agree exactly.
    pub fn z(&self) -> f64 {
        if self.se > 0.0 {
            (self.mc - self.exact) / self.se
        } else if self.mc == self.exact {
            0.0
        } else {
            f64::INFINITY
        }
    }
}

/// The comparisons behind figure 5: for every random classifier, clean accuracy and robust
/// accuracy at every configured ε, exact and sampled.
pub fn montecarlo_rows(cfg: &ValidConfig, progress: &indicatif::ProgressBar) -> Result<Vec<McRow>> {
    let c = &cfg.montecarlo;
    let model = FeatureModel::new(c.p, c.eta, c.dim)?;
    let mut rng = StdRng::seed_from_u64(c.seed);
    let mut rows = Vec::new();
    for i in 0..c.classifiers {
        let clf = random_classifier(&mut rng, c.dim);
        let mut eps_list = vec![0.0];
        eps_list.extend(&c.eps_values);
        for (j, &eps) in eps_list.iter().enumerate() {
            let est = model.monte_carlo(&clf, eps, c.samples, c.seed ^ ((i as u64) << 20) ^ j as u64)?;
            let exact = model.robust_accuracy(&clf, eps)?;
            rows.push(McRow {
                classifier: i,
                eps,
                exact,
                mc: est.robust,
                se: est.standard_error(exact),
            });
        }
        progress.inc(1);
    }
    Ok(rows)
}

/// Figure 5, `montecarlo_check`: Monte Carlo minus closed form, with 95% binomial error bars.
pub fn montecarlo_check(cfg: &ValidConfig, rows: &[McRow]) -> (LineChart, Csv) {
    let c = &cfg.montecarlo;
    let mut csv = Csv::new(&["classifier", "eps", "closed_form", "monte_carlo", "std_error", "z"]);
    let mut eps_list = vec![0.0];
    eps_list.extend(&c.eps_values);
    let mut series = Vec::new();
    let mut half = 0.0f64;
    for (j, &eps) in eps_list.iter().enumerate() {
        let sel: Vec<&McRow> = rows.iter().filter(|r| r.eps == eps).collect();
        let pts = sel.iter().map(|r| (r.exact, r.mc - r.exact)).collect();
        let err = sel
            .iter()
            .map(|r| (r.mc - r.exact - 1.96 * r.se, r.mc - r.exact + 1.96 * r.se))
            .collect();
        for r in &sel {
            half = half.max((r.mc - r.exact).abs() + 1.96 * r.se);
        }
        let label = if eps == 0.0 {
            "clean (ε = 0)".to_string()
        } else {
            format!("robust, ε = {eps}")
        };
        let mut s = Series::new(Some(label), pts, color(j), Style::Markers);
        s.err = Some(err);
        series.push(s);
    }
    for r in rows {
        csv.push(vec![
            r.classifier.to_string(),
            num(r.eps),
            num(r.exact),
            num(r.mc),
            num(r.se),
            num(r.z()),
        ]);
    }
    series.push(Series::new(
        None,
        vec![(0.0, 0.0), (1.0, 0.0)],
        PALETTE[8],
        Style::Dashed,
    ));
    let fig = LineChart {
        title: format!(
            "Closed form vs Monte Carlo ({} samples each; bars: 95%), p = {}, η = {}, D = {}",
            c.samples, c.p, c.eta, c.dim
        ),
        x: Axis::linear("accuracy, closed form", 0.0, 1.0),
        y: Axis::linear("Monte Carlo − closed form", -half * 1.3, half * 1.3),
        series,
        legend: SeriesLabelPosition::UpperRight,
    };
    (fig, csv)
}

/// Figure 6, `theorem_2_1`: random classifiers at ε = 2η under the bound p/(1−p)·(1 − clean).
/// Returns the chart, its CSV, and the largest robust − bound found (must be ≤ 0).
pub fn theorem_2_1(cfg: &ValidConfig, progress: &indicatif::ProgressBar) -> Result<(LineChart, Csv, f64)> {
    let t = &cfg.theorem;
    let model = FeatureModel::new(t.p, t.eta, t.dim)?;
    let eps = 2.0 * t.eta;
    let mut rng = StdRng::seed_from_u64(t.seed);
    let mut csv = Csv::new(&["classifier", "clean_acc", "robust_acc", "bound"]);
    let mut pts = Vec::with_capacity(t.classifiers);
    let mut worst = f64::NEG_INFINITY;
    for i in 0..t.classifiers {
        let clf = random_classifier(&mut rng, t.dim);
        let clean = model.clean_accuracy(&clf)?;
        let robust = model.robust_accuracy(&clf, eps)?;
        let bound = tsipras_upper_bound(t.p, clean)?;
        worst = worst.max(robust - bound);
        pts.push((clean, robust));
        csv.push(vec![i.to_string(), num(clean), num(robust), num(bound)]);
        progress.inc(1);
    }
    let best = LinearClassifier::bayes_optimal(&model);
    let bayes = (model.clean_accuracy(&best)?, model.robust_accuracy(&best, eps)?);
    let curve: Vec<(f64, f64)> = linspace(0.0, 1.0, 201)
        .into_iter()
        .map(|a| (a, (t.p / (1.0 - t.p) * (1.0 - a)).min(1.0)))
        .collect();
    let fig = LineChart {
        title: format!(
            "Theorem 2.1 (Tsipras et al.) at ε = 2η: p = {}, η = {}, D = {}",
            t.p, t.eta, t.dim
        ),
        x: Axis::linear("clean accuracy", 0.0, 1.0),
        y: Axis::linear(format!("robust accuracy at ε = 2η = {eps}"), 0.0, 1.0),
        series: vec![
            Series::new(
                Some(format!("{} random linear classifiers", t.classifiers)),
                pts,
                color(0),
                Style::Markers,
            ),
            Series::new(Some("bound p/(1−p)·(1 − clean)".into()), curve, color(1), Style::Line),
            Series::new(
                Some("Bayes-optimal classifier".into()),
                vec![bayes],
                PALETTE[8],
                Style::Highlight,
            ),
        ],
        legend: SeriesLabelPosition::UpperRight,
    };
    Ok((fig, csv, worst))
}
