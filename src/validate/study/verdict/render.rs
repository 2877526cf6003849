//! The Markdown of `findings.md`: sample, backbone and tasks, verdicts, rankings, cells.

use std::fmt::Write as _;

use crate::validate::study::analysis::Study;
use crate::validate::study::report::eps_label;
use crate::validate::study::verdict::{Cell, Finding, fmt_ci};

/// Where the backbone came from and how separable each task is (from the run headers).
pub(super) fn context(study: &Study) -> String {
    let mut s = String::from("## Backbone and tasks\n\n");
    if let Some(u) = study.datasets.iter().find_map(|d| d.any_run().header.upstream.clone()) {
        let _ = writeln!(
            s,
            "Backbone pretrained on {} ({} images, {} steps): held-out accuracy {:.3} [{:.3}, {:.3}] on {} upstream test images (`{}`).\n",
            u.source,
            u.train_images,
            u.steps,
            u.held_out_acc,
            u.held_out_ci.lo,
            u.held_out_ci.hi,
            u.held_out_n,
            u.checkpoint
        );
    } else {
        s.push_str("Backbone: a configured checkpoint (no upstream accuracy recorded).\n\n");
    }
    let kappas: Vec<f64> = study
        .datasets
        .iter()
        .filter_map(|d| d.any_run().header.separability.as_ref().map(|x| x.ncm_kappa))
        .collect();
    let (hi, lo) = kappas
        .iter()
        .fold((f64::NEG_INFINITY, f64::INFINITY), |(a, b), &k| (a.max(k), b.min(k)));
    s.push_str("| task | classes (original labels) | NCM accuracy of the pretrained features | κ | upstream similarity | role |\n|---|---|---|---|---|---|\n");
    for d in &study.datasets {
        let h = &d.any_run().header;
        let classes = h.class_map.as_ref().map_or("all".into(), |c| format!("{c:?}"));
        match &h.separability {
            Some(x) => {
                let role = if kappas.len() < 2 {
                    "-"
                } else if x.ncm_kappa == hi {
                    "simple"
                } else if x.ncm_kappa == lo {
                    "complex"
                } else {
                    "-"
                };
                let _ = writeln!(
                    s,
                    "| {} | {classes} | {:.3} (n = {}) | {:.3} | {} | {role} |",
                    d.name,
                    x.ncm_acc,
                    x.n,
                    x.ncm_kappa,
                    x.upstream_similarity.map_or("-".into(), |v| format!("{v:.3}"))
                );
            }
            None => {
                let _ = writeln!(s, "| {} | {classes} | - | - | - | - |", d.name);
            }
        }
    }
    s
}

/// The whole of `findings.md`: its sample and flagged runs, the backbone and tasks
/// ([`context`]), then the verdicts `rows`, the rankings `rank_rows` and the `cells`.
pub(super) fn render(rows: &[Finding], cells: &[Cell], rank_rows: &str, study: &Study, reps: usize) -> String {
    let mut s = String::from("# Findings of Li et al. 2025, tested\n\n");
    s.push_str(&sample(study, reps));
    s.push_str(&flagged(study));
    s.push_str(&context(study));
    s.push_str("\n## Verdicts\n\n| # | paper's claim | measured | test | verdict |\n|---|---|---|---|---|\n");
    for r in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | **{}** |",
            r.id,
            r.claim,
            r.measured,
            r.test,
            r.verdict.text()
        );
    }
    s.push_str("\n## Rankings (mean AUC over seeds; P from the bootstrap)\n\n| task | ε | strategy | mean AUC | rank | P(best) | P(bottom two) |\n|---|---|---|---|---|---|---|\n");
    s.push_str(rank_rows);
    s.push_str("\n## Cells\n\n| finding | task | strategy | ε | statistic | estimate [95% CI] | verdict | note |\n|---|---|---|---|---|---|---|---|\n");
    for c in cells {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            c.finding,
            c.dataset,
            c.strategy.map_or("-", |x| x.name()),
            c.eps.map_or("-".into(), eps_label),
            c.statistic,
            fmt_ci(c.estimate, c.ci),
            c.verdict.text(),
            c.note
        );
    }
    s
}

/// The sample (seeds and images per task, with what the intervals can cover) and the intervals.
fn sample(study: &Study, reps: usize) -> String {
    let seeds: Vec<String> = study
        .datasets
        .iter()
        .map(|d| {
            let note = if d.resamplable && d.seeds.len() == 1 {
                " (one seed: intervals cover evaluation-image sampling only, not training randomness)"
            } else if d.resamplable {
                ""
            } else {
                " (no intervals: records without per-image outcomes and fewer than 3 seeds, so every verdict is undecided)"
            };
            format!("{}: {} seeds × {} images{note}", d.name, d.seeds.len(), d.any_run().n)
        })
        .collect();
    format!(
        "Sample: {}. Intervals: 95% percentile bootstrap over seeds and evaluation images ({reps} replicates). \
         Tests and thresholds: `src/validate/verdict/mod.rs` (module docs) and README.\n\n",
        seeds.join("; ")
    )
}

/// The runs that did not converge and those that trained unstably, one paragraph each (nothing
/// when there are none).
fn flagged(study: &Study) -> String {
    let mut s = String::new();
    let runs = || study.datasets.iter().flat_map(|d| d.runs.values().flatten().flatten());
    let flagged: Vec<String> = runs()
        .filter(|r| !crate::validate::study::report::convergence(r).converged)
        .map(|r| r.label())
        .collect();
    if !flagged.is_empty() {
        let _ = writeln!(
            s,
            "Not converged (clean accuracy still rising by more than its 95% half-width over the last 20% of steps; \
             kept in every statistic, flagged here): {}.\n",
            flagged.join(", ")
        );
    }
    let unstable: Vec<String> = runs()
        .filter_map(|r| {
            Some(format!(
                "{} ({})",
                r.label(),
                crate::validate::study::report::stability(r).flag()?
            ))
        })
        .collect();
    if !unstable.is_empty() {
        let _ = writeln!(
            s,
            "Unstable training ({}; kept in every statistic, flagged here): {}.\n",
            crate::validate::study::report::stability_rule(),
            unstable.join(", ")
        );
    }
    s
}
