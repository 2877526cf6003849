//! The report's tables: `auc.csv`, `peaks.csv`, `ood_correlation.csv`, `convergence.csv`, and the
//! AUC tables as terminal text and Markdown (`auc.md`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::engine::peft::Strategy;
use crate::error::Result;
use crate::io::num;
use crate::io::{Csv, write_atomic};
use crate::tradeoff::bootstrap::pearson;
use crate::tradeoff::{AucRule, Interval, above_average, spearman};
use crate::validate::study::analysis::{Curves, DatasetData, RunData, View, mean_of};
use crate::validate::study::report::{AucCell, Layout, PerStrategy, convergence, eps_label, stability};

/// The tables, filled dataset by dataset.
pub(super) struct Tables {
    auc: Csv,
    peaks: Csv,
    ood: Csv,
    conv: Csv,
    /// Runs that failed the convergence check.
    pub(super) flags: Vec<String>,
    /// Runs that failed the stability check, with what went wrong.
    pub(super) unstable: Vec<String>,
    /// (dataset, radius index, strategy) → AUC cell.
    pub(super) cells: BTreeMap<(String, usize, Strategy), AucCell>,
}

impl Tables {
    pub(super) fn new() -> Self {
        Self {
            auc: Csv::new(&[
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
            ]),
            peaks: Csv::new(&[
                "dataset",
                "eps",
                "strategy",
                "peak_step",
                "peak_robust",
                "final_step",
                "final_robust",
                "drop",
                "rises_then_falls",
            ]),
            ood: Csv::new(&["dataset", "strategy", "pearson_r", "spearman_rho", "points"]),
            conv: Csv::new(&[
                "dataset",
                "strategy",
                "seed",
                "from_step",
                "from_clean",
                "final_clean",
                "half_width",
                "converged",
                "first_loss",
                "final_loss",
                "diverged",
                "best_step",
                "best_clean",
                "lost_images",
                "gained_images",
                "p_drop",
                "regressed",
            ]),
            flags: Vec::new(),
            unstable: Vec::new(),
            cells: BTreeMap::new(),
        }
    }

    /// The rows of dataset `d` (index `di`).
    pub(super) fn add(&mut self, d: &DatasetData, di: usize, point: &View, lay: &Layout, per: &PerStrategy) {
        let strategies = d.strategies();
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
                self.auc.push(vec![
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
                self.cells.insert((d.name.clone(), e, *s), cell);
                self.add_peak(d, e, *s, &per[s].0[lay.curve(1 + e)]);
            }
        }
        for s in &strategies {
            for r in d.runs[s].iter().flatten() {
                self.add_run(&d.name, *s, r);
            }
            self.add_ood(&d.name, *s, &point[&(di, *s)]);
        }
    }

    /// The `peaks.csv` row of (`d`, radius `e`, `s`) from its seed-mean robust curve `rob`.
    fn add_peak(&mut self, d: &DatasetData, e: usize, s: Strategy, rob: &[f64]) {
        // The shared definition (tradeoff::peak) with a half-point margin; descriptive
        // only: the verdict (findings.md) tests the rise and the fall with intervals.
        let peak = crate::tradeoff::peak(rob, crate::tradeoff::peak::NEGLIGIBLE);
        let last = rob.len() - 1;
        self.peaks.push(vec![
            d.name.clone(),
            num(d.eps[e]),
            s.id().into(),
            d.steps[peak.index].to_string(),
            num(peak.value),
            d.steps[last].to_string(),
            num(peak.last),
            num(peak.drop),
            peak.rises_then_falls.to_string(),
        ]);
    }

    /// The `convergence.csv` row of run `r` (of `dataset`, `s`), and its flags when it failed the
    /// convergence or the stability check.
    fn add_run(&mut self, dataset: &str, s: Strategy, r: &RunData) {
        let (c, st) = (convergence(r), stability(r));
        let run = r.label();
        if !c.converged {
            self.flags.push(run.clone());
        }
        if let Some(why) = st.flag() {
            self.unstable.push(format!("{run} ({why})"));
        }
        let opt = |x: Option<f64>| x.map_or(String::new(), num);
        self.conv.push(vec![
            dataset.to_string(),
            s.id().into(),
            r.header.seed.to_string(),
            c.from_step.to_string(),
            num(c.from_clean),
            num(c.final_clean),
            num(c.half_width),
            c.converged.to_string(),
            opt(st.first_loss),
            opt(st.final_loss),
            st.diverged.to_string(),
            st.best_step.to_string(),
            num(st.best_clean),
            st.lost.to_string(),
            st.gained.to_string(),
            st.p_drop.map_or(String::new(), |p| format!("{p:e}")),
            st.regressed.to_string(),
        ]);
    }

    /// The `ood_correlation.csv` row of (`dataset`, `s`) from its seeds' curves `cs`: OOD against
    /// clean accuracy over every step of every seed, when there are at least 3 such points.
    fn add_ood(&mut self, dataset: &str, s: Strategy, cs: &[Curves]) {
        let pairs: Vec<(f64, f64)> = cs
            .iter()
            .filter_map(|c| c.ood.as_ref().map(|o| c.clean.iter().copied().zip(o.iter().copied())))
            .flatten()
            .collect();
        if pairs.len() >= 3 {
            let (x, y): (Vec<f64>, Vec<f64>) = pairs.iter().copied().unzip();
            self.ood.push(vec![
                dataset.to_string(),
                s.id().into(),
                pearson(&x, &y).map_or(String::new(), num),
                spearman(&x, &y).map_or(String::new(), num),
                pairs.len().to_string(),
            ]);
        }
    }

    /// Writes the four CSV files; returns their paths.
    pub(super) fn write(&self, out: &Path) -> Result<Vec<PathBuf>> {
        let mut files = Vec::new();
        for (name, csv) in [
            ("auc.csv", &self.auc),
            ("peaks.csv", &self.peaks),
            ("ood_correlation.csv", &self.ood),
            ("convergence.csv", &self.conv),
        ] {
            let p = out.join(name);
            write_atomic(&p, csv.render().as_bytes())?;
            files.push(p);
        }
        Ok(files)
    }
}

pub(super) fn cell_text(c: Option<&AucCell>) -> String {
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
pub(super) fn table_rows(
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

/// The terminal summary: per radius the AUC table and the best strategy per dataset, then the
/// convergence flags.
pub(super) fn summary_text(t: &Tables, ds: &[String], eps: &[f64], incomplete: &[String]) -> String {
    let cells = &t.cells;
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
            let (names, means): (Vec<&str>, Vec<f64>) = Strategy::ALL
                .iter()
                .filter_map(|st| cells.get(&(d.clone(), e, *st)).map(|c| (st.name(), c.mean)))
                .unzip();
            let best: Vec<&str> = crate::tradeoff::stats::argmax_all(&means)
                .into_iter()
                .map(|i| names[i])
                .collect();
            match best.len() {
                0 => {}
                1 => {
                    let _ = writeln!(s, "{d}: best AUC {} (at eps = {})", best[0], eps_label(x));
                }
                _ => {
                    let _ = writeln!(
                        s,
                        "{d}: best AUC tied: {} (at eps = {})",
                        best.join(" = "),
                        eps_label(x)
                    );
                }
            }
        }
    }
    s.push_str(&flag_text(t, incomplete));
    s
}

pub(super) fn flag_text(t: &Tables, incomplete: &[String]) -> String {
    let (flags, unstable) = (&t.flags, &t.unstable);
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
    if unstable.is_empty() {
        let _ = writeln!(
            s,
            "Stable: no run's loss ended above its first interval's, and no final model is significantly worse on clean images than the run's best evaluation (exact McNemar, Bonferroni over the evaluations, p < {}).",
            crate::validate::study::report::REGRESSION_ALPHA
        );
    } else {
        let _ = writeln!(
            s,
            "UNSTABLE TRAINING ({}; kept in every statistic): {}",
            crate::validate::study::report::stability_rule(),
            unstable.join(", ")
        );
    }
    if !incomplete.is_empty() {
        let _ = writeln!(s, "Unfinished runs left out: {}", incomplete.join(", "));
    }
    s
}

/// `auc.md`: per radius the AUC table and the trapezoid rule's means, then the flags.
pub(super) fn auc_markdown(
    t: &Tables,
    ds: &[String],
    eps: &[f64],
    incomplete: &[String],
    (attack, training): (&str, &str),
) -> String {
    let cells = &t.cells;
    let mut s = String::from(
        "# AUC of the Pareto frontier\n\nPer seed, the area dominated by the frontier of the run's (clean, robust) points (step rule, reference (0, 0)); \
         the table gives the mean over seeds, its 95% bootstrap interval (seeds and evaluation images resampled) and, in brackets, \
         the % above the dataset's average over strategies.\n",
    );
    let _ = writeln!(s, "\nRobust accuracy under: {attack}. Fine-tuning: {training}.");
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
    s.push_str(&flag_text(t, incomplete));
    s
}
