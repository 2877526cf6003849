//! The simulator's TOML configuration (`simulations/default.toml`), validated once at load.
//! An unknown key or an impossible value is an error naming the key and the file.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result, check};

/// The embedded default configuration (the text of `simulations/default.toml`).
pub const DEFAULT_TOML: &str = include_str!("../../simulations/default.toml");

/// Whole configuration, as written in the file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SimConfig {
    /// η_min sweep and the bound-vs-k curves.
    pub bound: BoundCfg,
    /// Robust accuracy at matched clean accuracy.
    pub matched: MatchedCfg,
    /// Robust-to-non-robust interpolation frontiers.
    pub frontier: FrontierCfg,
    /// Closed form against Monte Carlo.
    pub montecarlo: MonteCarloCfg,
    /// Theorem 2.1 scatter.
    pub theorem: TheoremCfg,
    /// Per-strategy prediction.
    pub strategies: StrategiesCfg,
}

/// `[bound]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BoundCfg {
    /// Accuracy target A of η_min = Φ⁻¹(A)/√(k+d).
    pub target_acc: f64,
    /// k range of the heat map (log-spaced, both ends > 0).
    pub k_range: [f64; 2],
    /// d range of the heat map.
    pub d_range: [f64; 2],
    /// Points per axis of the heat map.
    pub grid: usize,
    /// One bound-vs-k curve per value.
    pub d_lines: Vec<f64>,
}

/// `[matched]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MatchedCfg {
    /// Clean accuracy held fixed.
    pub clean_acc: f64,
    /// Task complexities.
    pub d_values: Vec<f64>,
    /// Attack sizes.
    pub eps_values: Vec<f64>,
    /// k range (log-spaced).
    pub k_range: [f64; 2],
}

/// `[frontier]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FrontierCfg {
    /// Robust feature reliability.
    pub p: f64,
    /// Non-robust feature strength.
    pub eta: f64,
    /// Attack size.
    pub eps: f64,
    /// Numbers of non-robust features averaged.
    pub m_values: Vec<usize>,
    /// Number of λ values in [0, 1].
    pub lambdas: usize,
}

/// `[montecarlo]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MonteCarloCfg {
    /// Robust feature reliability.
    pub p: f64,
    /// Non-robust feature strength.
    pub eta: f64,
    /// Number D of non-robust features.
    pub dim: usize,
    /// Number of random classifiers.
    pub classifiers: usize,
    /// Attack sizes (clean accuracy is always checked too).
    pub eps_values: Vec<f64>,
    /// Monte Carlo samples per estimate.
    pub samples: usize,
    /// RNG seed.
    pub seed: u64,
}

/// `[theorem]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TheoremCfg {
    /// Robust feature reliability.
    pub p: f64,
    /// Non-robust feature strength (ε = 2η).
    pub eta: f64,
    /// Number D of non-robust features.
    pub dim: usize,
    /// Number of random classifiers.
    pub classifiers: usize,
    /// RNG seed.
    pub seed: u64,
}

/// `[strategies]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StrategiesCfg {
    /// Matched clean accuracy.
    pub clean_acc: f64,
    /// Attack size.
    pub eps: f64,
    /// d range (log-spaced).
    pub d_range: [f64; 2],
}

/// A configuration that passed [`SimConfig::validate`].
#[derive(Debug, Clone, PartialEq)]
pub struct ValidConfig(SimConfig);

impl std::ops::Deref for ValidConfig {
    type Target = SimConfig;
    fn deref(&self) -> &SimConfig {
        &self.0
    }
}

fn range(field: &str, r: [f64; 2]) -> Result<()> {
    check::positive(&format!("{field}[0]"), r[0])?;
    check::positive(&format!("{field}[1]"), r[1])?;
    if r[1] <= r[0] {
        return Err(Error::invalid(field, "must be [lo, hi] with lo < hi", format!("{r:?}")));
    }
    Ok(())
}

pub(crate) fn non_empty<T: std::fmt::Debug>(field: &str, v: &[T]) -> Result<()> {
    if v.is_empty() {
        return Err(Error::invalid(field, "needs at least one value", "[]"));
    }
    Ok(())
}

pub(crate) fn at_least(field: &str, v: usize, min: usize) -> Result<()> {
    if v < min {
        return Err(Error::invalid(field, format!("must be >= {min}"), v));
    }
    Ok(())
}

/// `v <= max`; `why` says what the bound protects (memory, time), in the error.
pub(crate) fn at_most(field: &str, v: f64, max: f64, why: &str) -> Result<()> {
    if v > max {
        return Err(Error::invalid(field, format!("must be <= {max:e} ({why})"), v));
    }
    Ok(())
}

/// Upper bounds, so that a config the machine cannot finish is refused before the first file is
/// written. `bound_sweep.csv` has grid² rows (10⁶ rows ≈ 60 MB).
const MAX_GRID: f64 = 1000.0;
/// Points per frontier curve (closed form; the bound keeps the CSV under ~100 MB).
const MAX_LAMBDAS: f64 = 1e6;
/// Features per classifier: one classifier's weights are held in memory (8 bytes each).
const MAX_DIM: f64 = 1e7;
/// Monte Carlo feature draws, classifiers × radii × samples × dim: about 5 ns each on one core,
/// so the bound is about a minute.
const MAX_MC_DRAWS: f64 = 1e10;
/// Theorem check: classifiers × dim weight draws (about a minute).
const MAX_THEOREM_DRAWS: f64 = 1e10;

pub(crate) use crate::error::parse_toml;

impl crate::error::Validate for SimConfig {
    type Valid = ValidConfig;
    fn check(self) -> Result<ValidConfig> {
        self.validate()
    }
}

impl SimConfig {
    /// Parses TOML text; `origin` names the file in errors.
    pub fn from_toml(text: &str, origin: &Path) -> Result<Self> {
        parse_toml(text, origin)
    }

    /// Reads and parses a file.
    pub fn load(path: &Path) -> Result<ValidConfig> {
        crate::error::load_toml::<Self>(path)
    }

    /// The embedded default.
    pub fn default_config() -> ValidConfig {
        crate::error::load_toml_str::<Self>(DEFAULT_TOML, &PathBuf::from("simulations/default.toml"))
            .expect("the embedded default configuration is valid")
    }

    /// Checks every value once; the error names the key as `section.key`.
    pub fn validate(self) -> Result<ValidConfig> {
        self.check_bound()?;
        self.check_matched()?;
        self.check_frontier()?;
        self.check_montecarlo()?;
        self.check_theorem()?;
        self.check_strategies()?;
        Ok(ValidConfig(self))
    }

    /// `[bound]`: the accuracy target, both ranges, the grid size and the d lines.
    fn check_bound(&self) -> Result<()> {
        let b = &self.bound;
        check::open("bound.target_acc", b.target_acc, 0.5, 1.0)?;
        range("bound.k_range", b.k_range)?;
        range("bound.d_range", b.d_range)?;
        at_least("bound.grid", b.grid, 2)?;
        at_most(
            "bound.grid",
            b.grid as f64,
            MAX_GRID,
            "bound_sweep.csv holds grid² rows",
        )?;
        non_empty("bound.d_lines", &b.d_lines)?;
        for (i, &d) in b.d_lines.iter().enumerate() {
            check::positive(&format!("bound.d_lines[{i}]"), d)?;
        }
        Ok(())
    }

    /// `[matched]`: the clean accuracy, the d and ε values and the k range.
    fn check_matched(&self) -> Result<()> {
        let m = &self.matched;
        check::open("matched.clean_acc", m.clean_acc, 0.5, 1.0)?;
        non_empty("matched.d_values", &m.d_values)?;
        for (i, &d) in m.d_values.iter().enumerate() {
            check::positive(&format!("matched.d_values[{i}]"), d)?;
        }
        non_empty("matched.eps_values", &m.eps_values)?;
        for (i, &e) in m.eps_values.iter().enumerate() {
            check::non_negative(&format!("matched.eps_values[{i}]"), e)?;
        }
        range("matched.k_range", m.k_range)
    }

    /// `[frontier]`: the feature model, the m values and the number of λ values.
    fn check_frontier(&self) -> Result<()> {
        let f = &self.frontier;
        check::open("frontier.p", f.p, 0.5, 1.0)?;
        check::positive("frontier.eta", f.eta)?;
        check::non_negative("frontier.eps", f.eps)?;
        non_empty("frontier.m_values", &f.m_values)?;
        for (i, &mv) in f.m_values.iter().enumerate() {
            at_least(&format!("frontier.m_values[{i}]"), mv, 1)?;
        }
        at_least("frontier.lambdas", f.lambdas, 2)?;
        at_most(
            "frontier.lambdas",
            f.lambdas as f64,
            MAX_LAMBDAS,
            "points per frontier curve",
        )
    }

    /// `[montecarlo]`: the feature model, the sizes and the total number of feature draws.
    fn check_montecarlo(&self) -> Result<()> {
        let mc = &self.montecarlo;
        check::open("montecarlo.p", mc.p, 0.5, 1.0)?;
        check::positive("montecarlo.eta", mc.eta)?;
        at_least("montecarlo.dim", mc.dim, 1)?;
        at_least("montecarlo.classifiers", mc.classifiers, 1)?;
        at_least("montecarlo.samples", mc.samples, 100)?;
        at_most(
            "montecarlo.dim",
            mc.dim as f64,
            MAX_DIM,
            "weights held in memory per classifier",
        )?;
        let draws = mc.classifiers as f64 * mc.eps_values.len().max(1) as f64 * mc.samples as f64 * mc.dim as f64;
        if draws > MAX_MC_DRAWS {
            return Err(Error::invalid(
                "montecarlo.samples",
                format!(
                    "classifiers × eps_values × samples × dim must be <= {MAX_MC_DRAWS:e} feature draws (about a \
                     minute at ~5 ns each); this config needs {draws:.2e}, about {:.0} s",
                    draws * 5e-9
                ),
                mc.samples,
            ));
        }
        for (i, &e) in mc.eps_values.iter().enumerate() {
            check::non_negative(&format!("montecarlo.eps_values[{i}]"), e)?;
        }
        Ok(())
    }

    /// `[theorem]`: the feature model, the sizes and the total number of weight draws.
    fn check_theorem(&self) -> Result<()> {
        let t = &self.theorem;
        check::open("theorem.p", t.p, 0.5, 1.0)?;
        check::positive("theorem.eta", t.eta)?;
        at_least("theorem.dim", t.dim, 1)?;
        at_least("theorem.classifiers", t.classifiers, 1)?;
        at_most(
            "theorem.dim",
            t.dim as f64,
            MAX_DIM,
            "weights held in memory per classifier",
        )?;
        let draws = t.classifiers as f64 * t.dim as f64;
        if draws > MAX_THEOREM_DRAWS {
            return Err(Error::invalid(
                "theorem.classifiers",
                format!(
                    "classifiers × dim must be <= {MAX_THEOREM_DRAWS:e} weight draws (about a minute); this config needs {draws:.2e}"
                ),
                t.classifiers,
            ));
        }
        Ok(())
    }

    /// `[strategies]`: the clean accuracy, ε and the d range.
    fn check_strategies(&self) -> Result<()> {
        let s = &self.strategies;
        check::open("strategies.clean_acc", s.clean_acc, 0.5, 1.0)?;
        check::non_negative("strategies.eps", s.eps)?;
        range("strategies.d_range", s.d_range)
    }
}

/// `n` log-spaced values from `lo` to `hi` inclusive.
pub fn logspace(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    if n == 1 {
        return vec![lo];
    }
    let (a, b) = (lo.ln(), hi.ln());
    (0..n)
        .map(|i| (a + (b - a) * i as f64 / (n - 1) as f64).exp())
        .collect()
}

/// `n` evenly spaced values from `lo` to `hi` inclusive.
pub fn linspace(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    if n == 1 {
        return vec![lo];
    }
    (0..n).map(|i| lo + (hi - lo) * i as f64 / (n - 1) as f64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        let c = SimConfig::default_config();
        assert_eq!(c.bound.grid, 100);
    }

    #[test]
    fn unknown_key_names_key_and_file() {
        let text = DEFAULT_TOML.replace("grid = 100", "grid = 100\ngird = 3");
        let e = SimConfig::from_toml(&text, Path::new("x.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("x.toml") && e.contains("gird"), "{e}");
    }

    #[test]
    fn impossible_values_name_the_key() {
        for (from, to, key) in [
            ("p = 0.9\neta = 0.2", "p = 1.5\neta = 0.2", "frontier.p"),
            ("eps = 0.4", "eps = -0.4", "frontier.eps"),
            ("target_acc = 0.99", "target_acc = 0.3", "bound.target_acc"),
            ("dim = 50", "dim = 0", "montecarlo.dim"),
            (
                "eps_values = [0.01, 0.05]",
                "eps_values = [0.01, -0.05]",
                "matched.eps_values[1]",
            ),
            (
                "d_range = [1.0, 10000.0]\ngrid",
                "d_range = [10.0, 1.0]\ngrid",
                "bound.d_range",
            ),
        ] {
            let text = DEFAULT_TOML.replacen(from, to, 1);
            assert_ne!(text, DEFAULT_TOML, "pattern {from:?} not found");
            let e = SimConfig::from_toml(&text, Path::new("x.toml"))
                .unwrap()
                .validate()
                .unwrap_err()
                .to_string();
            assert!(e.contains(key), "{key}: {e}");
        }
    }

    #[test]
    fn spaces() {
        let l = logspace(1.0, 1e4, 5);
        for (a, b) in l.iter().zip([1.0, 10.0, 100.0, 1000.0, 1e4]) {
            assert!((a / b - 1.0).abs() < 1e-12);
        }
        assert_eq!(linspace(0.0, 1.0, 3), vec![0.0, 0.5, 1.0]);
    }
}
