//! `simulate bench`: times the simulator's hot paths against a baseline measured in the same
//! run and prints the ratios (no timed assertions anywhere: speed is reported, not tested).

use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

use super::config::{ValidConfig, logspace};
use super::figures::bound_grid;
use crate::error::Result;
use crate::theory::{FeatureModel, LinearClassifier, eta_min};

/// One benchmark line: median seconds of the baseline and of ours.
#[derive(Debug, Clone)]
pub struct BenchRow {
    /// What is timed.
    pub name: String,
    /// What ours is compared with.
    pub baseline: String,
    /// Median seconds, baseline (`None`: reported alone, no baseline).
    pub baseline_s: Option<f64>,
    /// Median seconds, ours.
    pub ours_s: f64,
}

impl BenchRow {
    /// baseline / ours (> 1: ours is faster).
    pub fn speedup(&self) -> Option<f64> {
        self.baseline_s.map(|b| b / self.ours_s)
    }
}

fn median_secs(reps: usize, mut f: impl FnMut()) -> f64 {
    f(); // warm-up
    let t: Vec<f64> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64()
        })
        .collect();
    crate::tradeoff::stats::median(&t)
}

/// Runs the benchmarks with `reps` timed repetitions each (after one warm-up); the full figure
/// run writes into `scratch`.
pub fn run(cfg: &ValidConfig, reps: usize, scratch: &Path) -> Result<Vec<BenchRow>> {
    let reps = reps.max(1);
    let b = &cfg.bound;
    let ks = logspace(b.k_range[0], b.k_range[1], b.grid);
    let ds = logspace(b.d_range[0], b.d_range[1], b.grid);
    let n = ks.len() * ds.len();
    let mut rows = Vec::new();

    // 1. The k×d sweep: z computed once (ours) against calling the validated `eta_min` per point,
    //    which re-checks inputs and re-evaluates Φ⁻¹ every time.
    let naive = median_secs(reps, || {
        let mut v = Vec::new();
        for &d in &ds {
            for &k in &ks {
                v.push(eta_min(k, d, b.target_acc).expect("valid grid"));
            }
        }
        black_box(v);
    });
    let ours = median_secs(reps, || {
        black_box(bound_grid(&ks, &ds, b.target_acc).expect("valid grid"));
    });
    rows.push(BenchRow {
        name: format!("eta_min sweep, {n} points"),
        baseline: "eta_min() per point".into(),
        baseline_s: Some(naive),
        ours_s: ours,
    });

    // 2. Exact accuracy of a D = 1000 classifier: closed form against 10⁴-sample Monte Carlo.
    let model = FeatureModel::new(0.8, 0.05, 1000)?;
    let clf = LinearClassifier::bayes_optimal(&model);
    let mc = median_secs(reps, || {
        black_box(model.monte_carlo(&clf, 0.1, 10_000, 1).expect("valid"));
    });
    let exact = median_secs(reps, || {
        black_box((
            model.clean_accuracy(&clf).expect("valid"),
            model.robust_accuracy(&clf, 0.1).expect("valid"),
        ));
    });
    rows.push(BenchRow {
        name: "clean+robust accuracy, D = 1000".into(),
        baseline: "Monte Carlo, 10^4 samples".into(),
        baseline_s: Some(mc),
        ours_s: exact,
    });

    // 3. The whole default job (all 7 figures + bound_sweep.csv), reported alone.
    let all = median_secs(reps.min(3), || {
        black_box(super::run(cfg, scratch).expect("simulate run"));
    });
    rows.push(BenchRow {
        name: "all figures (simulate)".into(),
        baseline: "-".into(),
        baseline_s: None,
        ours_s: all,
    });
    Ok(rows)
}

/// The table `simulate bench` prints.
pub fn render(rows: &[BenchRow]) -> String {
    let mut s = format!(
        "{:<34} {:<28} {:>13} {:>13} {:>10}\n",
        "benchmark", "baseline", "baseline", "ours", "ratio"
    );
    for r in rows {
        let base = r.baseline_s.map_or("-".to_string(), |b| format!("{:.3}ms", b * 1e3));
        let ratio = r.speedup().map_or("-".to_string(), |x| format!("{x:.1}x"));
        s.push_str(&format!(
            "{:<34} {:<28} {:>13} {:>11.3}ms {:>10}\n",
            r.name,
            r.baseline,
            base,
            r.ours_s * 1e3,
            ratio
        ));
    }
    s
}
