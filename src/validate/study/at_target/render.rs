//! The section as text: the Markdown table of `findings.md` and its CSV, one row per cell.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use crate::engine::peft::Strategy;
use crate::io::Csv;
use crate::io::num;
use crate::validate::study::at_target::{AtTarget, Cell};
use crate::validate::study::report::eps_label;

impl AtTarget {
    /// The section of `findings.md`.
    pub fn markdown(&self, dirs: &[PathBuf]) -> String {
        let mut s = String::from("\n## Best achievable robustness at the clean target\n\n");
        let targets: Vec<String> = self
            .targets
            .iter()
            .map(|(t, c)| {
                let seeds: Vec<String> = self.seeds[t].iter().map(u64::to_string).collect();
                format!("{t}: clean ≥ {c:.3} (seeds {})", seeds.join(", "))
            })
            .collect();
        let folders: Vec<String> = self
            .sources
            .iter()
            .filter(|x| x.path.is_none())
            .map(|x| match x.folder {
                // This report's own folder, by role: the text stays the same wherever it lies.
                0 => format!("{} = this folder", x.label),
                f => format!("{} = {}", x.label, dirs[f].display()),
            })
            .collect();
        let _ = writeln!(
            s,
            "Targets: {}. Folders: {}. Per seed, the most robust candidate reaching the target (any evaluated step of \
             the trajectory; on an interpolated path any α in (0, 1] of the final model); mean over the seeds every \
             column has; 95% percentile bootstrap over seeds and images ({} replicates) with the picks fixed. The \
             picks are made on the same images, so levels are optimistic by selection, alike in every column; the \
             gain (in points, paired on the same images) to the first column is the comparison. –: not run; \
             \"not reached\" / \"reached by k of n seeds only\": the best clean accuracy of every seed / of some seeds \
             stays below the target (best clean: the seed mean of each seed's best).\n",
            targets.join("; "),
            folders.join(", "),
            self.reps
        );
        let _ = write!(s, "| task | ε | strategy |");
        for x in &self.sources {
            let _ = write!(s, " {} |", x.label);
        }
        s.push_str("\n|---|---|---|");
        s.push_str(&"---|".repeat(self.sources.len()));
        s.push('\n');
        let mut rows: BTreeMap<(String, u64, usize), Vec<&Cell>> = BTreeMap::new();
        for c in &self.cells {
            let si = Strategy::ALL
                .iter()
                .position(|x| *x == c.strategy)
                .unwrap_or(usize::MAX);
            rows.entry((c.dataset.clone(), c.eps.to_bits(), si))
                .or_default()
                .push(c);
        }
        for ((task, eps, si), cs) in rows {
            let _ = write!(
                s,
                "| {task} | {} | {} |",
                eps_label(f64::from_bits(eps)),
                Strategy::ALL[si].name()
            );
            for i in 0..self.sources.len() {
                let text = cs
                    .iter()
                    .find(|c| c.source == i)
                    .map_or("–".into(), |c| cell_text(c, self.seeds[&task].len()));
                let _ = write!(s, " {text} |");
            }
            s.push('\n');
        }
        s
    }

    /// One row per cell.
    pub fn csv(&self) -> String {
        let mut csv = Csv::new(&[
            "dataset",
            "eps",
            "strategy",
            "source",
            "target",
            "seeds",
            "robust",
            "lo",
            "hi",
            "gain",
            "gain_lo",
            "gain_hi",
            "clean",
            "point",
            "seeds_reached",
        ])
        .always_quoted(&["source"]);
        let opt = |v: Option<f64>| v.map_or(String::new(), num);
        for c in &self.cells {
            let g = c.gain.as_ref();
            csv.push(vec![
                c.dataset.clone(),
                num(c.eps),
                c.strategy.id().into(),
                self.sources[c.source].label.clone(),
                num(self.targets[&c.dataset]),
                self.seeds[&c.dataset].len().to_string(),
                opt(c.robust),
                opt(c.ci.map(|i| i.lo)),
                opt(c.ci.map(|i| i.hi)),
                opt(g.map(|g| g.0)),
                opt(g.and_then(|g| g.1).map(|i| i.lo)),
                opt(g.and_then(|g| g.1).map(|i| i.hi)),
                num(c.clean),
                c.point.clone().unwrap_or_default(),
                c.reached.to_string(),
            ]);
        }
        csv.render()
    }
}

/// One cell of the table; `seeds` is how many seeds the task's cells use.
fn cell_text(c: &Cell, seeds: usize) -> String {
    let pct = |x: f64| format!("{:.1}", 100.0 * x);
    let Some(r) = c.robust else {
        return match c.reached {
            0 => format!("not reached (best clean {:.3})", c.clean),
            k => format!("reached by {k} of {seeds} seeds only (best clean {:.3})", c.clean),
        };
    };
    let mut t = match c.ci {
        Some(i) => format!("{} [{}, {}]", pct(r), pct(i.lo), pct(i.hi)),
        None => pct(r),
    };
    if let Some((g, ci)) = &c.gain {
        let _ = write!(t, ", {:+.1}", 100.0 * g);
        if let Some(i) = ci {
            let _ = write!(t, " [{:+.1}, {:+.1}]", 100.0 * i.lo, 100.0 * i.hi);
        }
    }
    if let Some(p) = &c.point {
        let _ = write!(t, " ({p})");
    }
    t
}
