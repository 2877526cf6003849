//! The `simulate` job: runs a validated configuration, writes every theory figure (PNG + SVG +
//! CSV) and `bound_sweep.csv`, and returns a summary; plus the machine-readable `bound` and
//! `eval` answers.

pub mod bench;
pub mod config;
pub mod dynamics;
pub mod figures;

use std::path::{Path, PathBuf};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

pub use config::{SimConfig, ValidConfig};

use crate::engine::peft::Strategy;
use crate::error::{Error, Result, check};
use crate::io::write_atomic;
use crate::plot::{Figure, write_figure};
use crate::theory::{
    FeatureModel, LinearClassifier, ScoreSummary, accuracy, eta_min, predict_strategies, tsipras_upper_bound, z_score,
};

/// η_min for one d of `bound.d_lines`: with k = 0 (linear probing) and k = d (full fine-tuning,
/// η = z/√(2d)).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EtaRow {
    /// Task complexity d.
    pub d: f64,
    /// η_min with k = 0.
    pub linear_probe: f64,
    /// η_min with k = d.
    pub full: f64,
}

/// The AUCs of one interpolation frontier (m weak features), under both integration rules.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrontierAuc {
    /// Weak features used.
    pub m: usize,
    /// AUC, step rule.
    pub step: f64,
    /// AUC, trapezoid rule.
    pub trapezoid: f64,
}

/// What a run found, printed as the summary table.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Every file written.
    pub files: Vec<PathBuf>,
    /// z = Φ⁻¹(target).
    pub z: f64,
    /// η_min with k = 0 and k = d, per `bound.d_lines`.
    pub eta_rows: Vec<EtaRow>,
    /// (d, strategies ranked most to least robust at matched accuracy).
    pub rankings: Vec<(f64, Vec<(Strategy, f64)>)>,
    /// AUCs of the interpolation frontiers.
    pub frontier_aucs: Vec<FrontierAuc>,
    /// Largest |z| of Monte Carlo against closed form, and the number of comparisons.
    pub mc_max_abs_z: f64,
    /// Number of closed-form / Monte Carlo comparisons.
    pub mc_checks: usize,
    /// Largest robust − bound over the Theorem 2.1 classifiers (≤ 0 when the theorem holds).
    pub theorem_worst_margin: f64,
    /// Wall time of the whole run, seconds.
    pub elapsed_s: f64,
}

pub(crate) fn progress(len: u64, msg: &'static str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template("{msg:>24} [{bar:40}] {pos}/{len} ({elapsed})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    pb.set_message(msg);
    pb
}

/// Runs every figure of `cfg` into `out` (created if needed).
pub fn run(cfg: &ValidConfig, out: &Path) -> Result<Summary> {
    let start = Instant::now();
    let mut files = Vec::new();
    let mut emit = |stem: &str, fig: &dyn FigureRef, csv: &crate::io::Csv| -> Result<()> {
        files.extend(fig.write(out, stem, csv)?);
        Ok(())
    };

    let (heat, heat_csv, sweep) = figures::eta_min_heatmap(cfg)?;
    emit("eta_min_heatmap", &heat, &heat_csv)?;
    let (fig, csv) = figures::bound_vs_k(cfg)?;
    emit("bound_vs_k", &fig, &csv)?;
    let (fig, csv) = figures::robust_at_matched(cfg)?;
    emit("robust_at_matched_accuracy", &fig, &csv)?;
    let curves = figures::frontier_curves(cfg);
    let (fig, csv) = figures::tradeoff_frontiers(cfg, &curves)?;
    emit("tradeoff_frontiers", &fig, &csv)?;

    let pb = progress(cfg.montecarlo.classifiers as u64, "Monte Carlo check");
    let rows = figures::montecarlo_rows(cfg, &pb)?;
    pb.finish_and_clear();
    let (fig, csv) = figures::montecarlo_check(cfg, &rows);
    emit("montecarlo_check", &fig, &csv)?;

    let pb = progress(cfg.theorem.classifiers as u64, "Theorem 2.1 classifiers");
    let (fig, csv, worst) = figures::theorem_2_1(cfg, &pb)?;
    pb.finish_and_clear();
    emit("theorem_2_1", &fig, &csv)?;

    let (fig, csv) = figures::strategy_prediction(cfg)?;
    emit("strategy_prediction", &fig, &csv)?;

    let sweep_path = out.join("bound_sweep.csv");
    write_atomic(&sweep_path, sweep.render().as_bytes())?;
    files.push(sweep_path);

    let b = &cfg.bound;
    let z = z_score(b.target_acc)?;
    let mut eta_rows = Vec::new();
    let mut rankings = Vec::new();
    for &d in &b.d_lines {
        eta_rows.push(EtaRow {
            d,
            linear_probe: eta_min(0.0, d, b.target_acc)?,
            full: eta_min(d, d, b.target_acc)?,
        });
        let ranked = predict_strategies(&Strategy::ALL, d, cfg.strategies.clean_acc, cfg.strategies.eps)?;
        rankings.push((d, ranked.iter().map(|p| (p.strategy, p.robust_acc)).collect()));
    }
    Ok(Summary {
        files,
        z,
        eta_rows,
        rankings,
        frontier_aucs: curves
            .iter()
            .map(|c| FrontierAuc {
                m: c.m,
                step: c.auc_step,
                trapezoid: c.auc_trapezoid,
            })
            .collect(),
        mc_max_abs_z: rows.iter().map(|r| r.z().abs()).fold(0.0, f64::max),
        mc_checks: rows.len(),
        theorem_worst_margin: worst,
        elapsed_s: start.elapsed().as_secs_f64(),
    })
}

/// Object-safe wrapper so figures of different types share one writer.
trait FigureRef {
    fn write(&self, dir: &Path, stem: &str, csv: &crate::io::Csv) -> Result<Vec<PathBuf>>;
}

impl<F: Figure> FigureRef for F {
    fn write(&self, dir: &Path, stem: &str, csv: &crate::io::Csv) -> Result<Vec<PathBuf>> {
        write_figure(dir, stem, self, csv)
    }
}

impl Summary {
    /// The human-readable summary table.
    pub fn render(&self, cfg: &ValidConfig) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let b = &cfg.bound;
        let _ = writeln!(
            s,
            "Fine-tuning bound: eta_min = z/sqrt(k+d), z = Phi^-1({}) = {:.4}",
            b.target_acc, self.z
        );
        let _ = writeln!(s, "{:>10} {:>16} {:>22}", "d", "eta_min (k=0)", "eta_full (k=d)");
        for EtaRow {
            d,
            linear_probe: e0,
            full: ef,
        } in &self.eta_rows
        {
            let _ = writeln!(s, "{d:>10} {e0:>16.5} {ef:>22.5}");
        }
        let st = &cfg.strategies;
        let _ = writeln!(
            s,
            "\nPredicted ranking, robust accuracy at matched clean accuracy {} (eps = {}, disjoint regime):",
            st.clean_acc, st.eps
        );
        for (d, ranked) in &self.rankings {
            let list: Vec<String> = ranked.iter().map(|(st, r)| format!("{} {:.4}", st.name(), r)).collect();
            let _ = writeln!(s, "  d = {d}: {}", list.join(" > "));
        }
        let f = &cfg.frontier;
        let _ = writeln!(
            s,
            "\nInterpolation frontiers (p = {}, eta = {}, eps = {}):",
            f.p, f.eta, f.eps
        );
        let _ = writeln!(s, "{:>8} {:>10} {:>15}", "m", "AUC step", "AUC trapezoid");
        for FrontierAuc {
            m,
            step: a,
            trapezoid: t,
        } in &self.frontier_aucs
        {
            let _ = writeln!(s, "{m:>8} {a:>10.4} {t:>15.4}");
        }
        let _ = writeln!(
            s,
            "\nMonte Carlo check: {} comparisons, max |z| = {:.2} (expect < 4)",
            self.mc_checks, self.mc_max_abs_z
        );
        let _ = writeln!(
            s,
            "Theorem 2.1: {} classifiers, max(robust - bound) = {:.3e} (must be <= 0)",
            cfg.theorem.classifiers, self.theorem_worst_margin
        );
        let _ = writeln!(s, "\nWrote {} files in {:.2} s", self.files.len(), self.elapsed_s);
        s
    }
}

/// The answer of `simulate bound`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BoundAnswer {
    /// Updated parameters.
    pub k: f64,
    /// Task features.
    pub d: f64,
    /// Accuracy target.
    pub target_acc: f64,
    /// Φ⁻¹(target_acc).
    pub z: f64,
    /// z/√(k+d).
    pub eta_min: f64,
}

/// `simulate bound`: errors name the CLI flag.
pub fn bound_answer(k: f64, d: f64, target_acc: f64) -> Result<BoundAnswer> {
    let flag = |e: Error| {
        e.rename_field("k", "--k")
            .rename_field("d", "--d")
            .rename_field("target_acc", "--target-acc")
    };
    Ok(BoundAnswer {
        k,
        d,
        target_acc,
        z: z_score(target_acc).map_err(flag)?,
        eta_min: eta_min(k, d, target_acc).map_err(flag)?,
    })
}

/// The answer of `simulate eval`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EvalAnswer {
    /// Exact clean accuracy.
    pub clean_acc: f64,
    /// Exact robust accuracy at ε.
    pub robust_acc: f64,
    /// Tsipras et al. Theorem 2.1 bound p/(1−p)·(1 − clean); `None` (null) when ε < 2η.
    pub tsipras_bound: Option<f64>,
}

/// The weights of `simulate eval`.
#[derive(Debug, Clone, PartialEq)]
pub enum EvalWeights {
    /// a, v₁, …, v_D.
    Explicit(Vec<f64>),
    /// a on the robust feature and b on each of m non-robust features (`--uniform M:B`), in
    /// closed form: m is not materialised, so it is bounded only by `usize`.
    Uniform {
        /// Robust weight.
        a: f64,
        /// Number of non-robust features.
        m: usize,
        /// Weight of each.
        b: f64,
    },
}

/// `simulate eval`: `weights` = a, v₁, …, v_D. Errors name the CLI flag.
pub fn eval_answer(p: f64, eta: f64, eps: f64, weights: &[f64], bias: f64) -> Result<EvalAnswer> {
    eval_weights(p, eta, eps, &EvalWeights::Explicit(weights.to_vec()), bias)
}

/// `simulate eval` for either form of the weights. The answer does not depend on the scale of
/// the weights and bias (the classifier is scale-invariant; see [`LinearClassifier::summary`]).
pub fn eval_weights(p: f64, eta: f64, eps: f64, weights: &EvalWeights, bias: f64) -> Result<EvalAnswer> {
    let flag = |e: Error| {
        e.rename_field("p", "--p")
            .rename_field("eta", "--eta")
            .rename_field("eps", "--eps")
            .rename_field("bias", "--bias")
            .rename_field("a", "--weights")
            .rename_field("dim", "--weights")
    };
    // p and η first (the number of features is checked with the weights), then ε.
    FeatureModel::new(p, eta, 1).map_err(flag)?;
    check::non_negative("--eps", eps)?;
    let summary = match weights {
        EvalWeights::Explicit(weights) => {
            let (a, v) = weights
                .split_first()
                .ok_or_else(|| Error::invalid("--weights", "need at least a (the robust weight)", "nothing"))?;
            if v.is_empty() {
                return Err(Error::invalid(
                    "--weights",
                    "need a and at least one non-robust weight (or --uniform M:B)",
                    weights.len(),
                ));
            }
            let clf = LinearClassifier::new(*a, v.to_vec(), bias).map_err(|e| match e {
                Error::InvalidParameter { field, reason, value } if field.starts_with("weights") => {
                    Error::InvalidParameter {
                        field: format!("--{field}"),
                        reason,
                        value,
                    }
                }
                other => flag(other),
            })?;
            clf.summary()
        }
        &EvalWeights::Uniform { a, m, b } => {
            check::finite("--weights", a)?;
            check::finite("--uniform", b)?;
            check::finite("--bias", bias)?;
            if m == 0 {
                return Err(Error::invalid("--uniform", "M must be a whole number >= 1", m));
            }
            ScoreSummary::uniform(a, m, b, bias)
        }
    };
    let clean_acc = accuracy(p, eta, &summary, 0.0);
    let robust_acc = accuracy(p, eta, &summary, eps);
    let tsipras_bound = if eps >= 2.0 * eta {
        Some(tsipras_upper_bound(p, clean_acc).map_err(flag)?)
    } else {
        None
    };
    Ok(EvalAnswer {
        clean_acc,
        robust_acc,
        tsipras_bound,
    })
}
