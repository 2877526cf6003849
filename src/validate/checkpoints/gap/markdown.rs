//! `gap.md`: the setting, the ranking and per-strategy tables, and the sections on AutoAttack's
//! members, the probes and probe against probe.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::probe::probe_label;
use super::{GapCell, GapRow, GapSpec, MemberRow, PairRow, ProbeRow, RankRow, seeds_by_radius, seeds_text};
use crate::tradeoff::stats::wilson;

/// `gap.md` up to the member, probe and pair sections: the setting, the ranking table, the
/// per-strategy table and the checkpoints scored.
pub(super) fn render(rows: &[GapRow], ranks: &[RankRow], cells: &[GapCell], spec: &GapSpec, reps: usize) -> String {
    let mut s = setting(cells, spec, reps);
    s.push_str(&ranks_table(ranks));
    s.push_str(&rows_table(rows));
    s.push_str(&checkpoints(cells));
    s
}

/// The title and the setting: the attacks, the images and seeds, the intervals (`reps`
/// replicates) and AutoAttack's time.
fn setting(cells: &[GapCell], spec: &GapSpec, reps: usize) -> String {
    let mut s = String::from("# PGD vs AutoAttack at the peak-robustness and final checkpoints\n\n");
    let by_radius = seeds_by_radius(cells, spec);
    let seeds = seeds_text(&by_radius);
    let over = if by_radius.iter().any(|(_, s)| s.len() > 1) {
        "seeds, then image positions"
    } else {
        "image positions"
    };
    let secs: f64 = cells.iter().flat_map(|c| &c.points).map(|p| p.seconds).sum();
    let _ = writeln!(
        s,
        "Runs' attack: {}. Stronger attack: AutoAttack (apgd-ce → apgd-t → fab-t → square), {} iterations, {} \
         targets, {} queries. Images: the first {} evaluation images of each run × seeds {} (the same images for \
         every strategy); every replayed checkpoint's clean outcome matched its record on all evaluation images. \
         Intervals: accuracies Wilson 95%; gap and ρ 95% percentile bootstrap over {over} ({reps} \
         replicates). AutoAttack time {:.0} s over {} checkpoints.\n",
        cells.first().map_or("?", |c| c.run_attack.as_str()),
        spec.steps,
        spec.targets,
        spec.queries,
        spec.n,
        seeds,
        secs,
        cells.iter().map(|c| c.points.len()).sum::<usize>()
    );
    s
}

/// The ranking table: per (task, checkpoint, radius), Spearman ρ and the best strategies.
fn ranks_table(ranks: &[RankRow]) -> String {
    let mut s = String::from(
        "## Does the ranking survive?\n\n| task | checkpoint | ε | Spearman ρ (PGD vs AutoAttack) | best under PGD | best under AutoAttack |\n|---|---|---|---|---|---|\n",
    );
    for r in ranks {
        let rho = match (r.rho, r.rho_ci) {
            (Some(x), Some(c)) => format!("{x:.3} [{:.3}, {:.3}]", c.lo, c.hi),
            (Some(x), None) => format!("{x:.3}"),
            _ => "– (a constant side)".into(),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {rho} | {} | {} |",
            r.dataset,
            r.which,
            crate::validate::study::report::eps_label(r.eps),
            r.best.0,
            r.best.1
        );
    }
    s
}

/// The per-strategy table: accuracies, the gap and the points only one attack left robust.
fn rows_table(rows: &[GapRow]) -> String {
    let mut s = String::from(
        "\n## Per strategy\n\n| task | checkpoint | ε | strategy | n | clean | robust, PGD | robust, AutoAttack | gap (PGD − AA) | robust only under PGD / only under AA |\n|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let gap = match r.gap_ci {
            Some(c) => format!("{:+.1} [{:+.1}, {:+.1}] pts", 100.0 * r.gap, 100.0 * c.lo, 100.0 * c.hi),
            None => format!("{:+.1} pts", 100.0 * r.gap),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {gap} | {} / {} |",
            r.dataset,
            r.which,
            crate::validate::study::report::eps_label(r.eps),
            r.strategy,
            r.n,
            pct_ci(r.clean, r.n),
            pct_ci(r.pgd, r.n),
            pct_ci(r.autoattack, r.n),
            r.only_pgd_missed,
            r.only_aa_missed
        );
    }
    s
}

/// The checkpoints scored per run, with their steps and AutoAttack's time.
fn checkpoints(cells: &[GapCell]) -> String {
    let mut s = String::from("\nCheckpoints (step of the peak per run):\n\n");
    for c in cells {
        let pts: Vec<String> = c
            .points
            .iter()
            .map(|p| format!("{} at step {} ({:.0} s)", p.which.join(" + "), p.step, p.seconds))
            .collect();
        let _ = writeln!(s, "- {}/{}/seed{}: {}", c.dataset, c.strategy, c.seed, pts.join(", "));
    }
    s
}

/// The members section of `gap.md`.
pub(super) fn render_members(rows: &[MemberRow]) -> String {
    let mut s = String::from(
        "\n## Which AutoAttack member broke the points\n\nPer image, the member that broke it at the radius where it \
         fell (AutoAttack runs APGD-CE, then APGD-T on what it left, then FAB-T, then Square; a larger radius attacks \
         only the points robust at the smaller one). On a 2-class task APGD-T is APGD with the targeted logit margin. \
         Counts pooled over the seeds listed (cells measured before members were recorded are left out; \
         `validate gap --attribute` measures them again). \"PGD missed\": robust at this radius under the run's \
         attack, broken by AutoAttack.\n\n| task | checkpoint | ε | strategy | seeds | n | PGD missed: APGD-CE / \
         APGD-T / FAB-T / Square | all broken by AutoAttack: APGD-CE / APGD-T / FAB-T / Square |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    let four = |v: &[usize; 4]| v.iter().map(usize::to_string).collect::<Vec<_>>().join(" / ");
    for r in rows {
        let _ = writeln!(
            s,
            "{} {} (of {}) | {} (of {}) |",
            r.at.markdown(),
            four(&r.pgd_missed),
            r.pgd_missed.iter().sum::<usize>(),
            four(&r.broken),
            r.broken.iter().sum::<usize>()
        );
    }
    s
}

/// The probes section of `gap.md`.
pub(super) fn render_probes(rows: &[ProbeRow], cells: &[GapCell]) -> String {
    let mut time: BTreeMap<&str, (f64, usize)> = BTreeMap::new();
    for (k, p) in cells.iter().flat_map(|c| &c.points).flat_map(|p| &p.probes) {
        let t = time.entry(k).or_default();
        t.0 += p.seconds;
        t.1 += 1;
    }
    let tested = rows.iter().filter(|r| r.p_holm.is_some()).count();
    let mut s = format!(
        "\n## Probes: other attacks on the points PGD missed\n\nEach probe is PGD (random start, early exit, cross-entropy) \
         with another budget, or APGD-CE (AutoAttack's first member alone: adaptive step size, momentum, restarts \
         from the best point) at a given iteration count, scored on the same checkpoints, images and radii as \
         AutoAttack; a PGD probe's random start is the run's only when the gap's radii are all of the run's. \
         \"PGD missed\": robust at this radius under the run's attack, broken by AutoAttack. A probe \
         with more steps at the run's α that breaks them says the run's budget was short; one with the run's steps \
         and a larger α, the step size; one with the run's own steps and α, that a second random start is enough; \
         APGD-CE at the run's steps, that the algorithm is. \
         Split by the AutoAttack member that broke the point where the cell records it; intervals Wilson 95% over \
         the pooled points (seeds pooled, points treated as independent). Strategy `all`: every strategy's points \
         pooled (the same images once per strategy and seed, still treated as independent). p: is the probe \
         stronger than the run's attack on all the images (one-sided exact McNemar on the points only one of them \
         broke); Holm: p adjusted by Holm's step-down over the family of the table's {tested} rows with a p \
         (family-wise error; a checkpoint that is both peak and final counts twice, which only makes it \
         stricter); BH: the Benjamini–Hochberg q over the same family (false discovery rate).\n\n",
    );
    for (k, (secs, pts)) in &time {
        let _ = writeln!(s, "- `{k}` ({}): {secs:.0} s over {pts} checkpoints", probe_label(k));
    }
    s.push_str(
        "\n| task | checkpoint | ε | strategy | seeds | n | probe | robust: run / probe / AA | PGD missed | broken by \
         the probe | of APGD-CE's / APGD-T's | probe broke, run did not / run broke, probe did not (p) | probe \
         broke, AA did not |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let by = if r.missed_by.iter().sum::<usize>() == r.missed {
            format!(
                "{} of {} / {} of {}",
                r.caught_by[0], r.missed_by[0], r.caught_by[1], r.missed_by[1]
            )
        } else {
            "–".into()
        };
        let caught = if r.missed == 0 {
            "–".into()
        } else {
            pct_ci(r.caught, r.missed)
        };
        let p = match (r.p_stronger(), r.p_holm, r.q_bh) {
            (Some(p), Some(h), Some(q)) => format!(" (p {}; Holm {}, BH {})", p_text(p), p_text(h), p_text(q)),
            _ => String::new(),
        };
        let _ = writeln!(
            s,
            "{} {} | {} / {} / {} | {} | {caught} | {by} | {} / {}{p} | {} |",
            r.at.markdown(),
            probe_label(&r.probe),
            r.robust[0],
            r.robust[1],
            r.robust[2],
            r.missed,
            r.vs_run.0,
            r.vs_run.1,
            r.beyond_aa
        );
    }
    s
}

/// The probe-against-probe section of `gap.md`.
pub(super) fn render_pairs(rows: &[PairRow]) -> String {
    let tested = rows.iter().filter(|r| r.p_holm.is_some()).count();
    let mut s = format!(
        "\n### Probe against probe\n\nTwo probes on the same images: every strategy's points that record both \
         pooled (seeds and strategies pooled, points treated as independent). p: do the two break the same share \
         of the images (two-sided exact McNemar on the points only one of them broke); Holm: p adjusted by Holm's \
         step-down over the family of the table's {tested} rows with a p. \"PGD missed\" as above; intervals \
         Wilson 95%.\n\n| task | checkpoint | ε | strategy | seeds | n | strategies | A | B | robust: A / B | A \
         broke, B did not / B broke, A did not (p) | PGD missed | broken by A / by B |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let p = match (r.p(), r.p_holm) {
            (Some(p), Some(h)) => format!(" (p {}; Holm {})", p_text(p), p_text(h)),
            _ => String::new(),
        };
        let (missed, a, b) = r.missed;
        let broken = if missed == 0 {
            "–".into()
        } else {
            format!("{} / {}", pct_ci(a, missed), pct_ci(b, missed))
        };
        let _ = writeln!(
            s,
            "{} {} | {} | {} | {} / {} | {} / {}{p} | {missed} | {broken} |",
            r.at.markdown(),
            r.strategies.len(),
            probe_label(&r.probes.0),
            probe_label(&r.probes.1),
            r.robust.0,
            r.robust.1,
            r.discordant.0,
            r.discordant.1,
        );
    }
    s
}

/// A p-value as the tables print it: `< 0.001`, or `= ` and three decimals.
fn p_text(p: f64) -> String {
    match p {
        p if p < 0.001 => "< 0.001".to_string(),
        p => format!("= {p:.3}"),
    }
}

/// `k` of `n` as a percentage with its Wilson 95% interval (where there is one).
fn pct_ci(k: usize, n: usize) -> String {
    let ci = wilson(k as u64, n as u64).ok();
    let p = 100.0 * k as f64 / n.max(1) as f64;
    match ci {
        Some(c) => format!("{p:.1}% [{:.1}, {:.1}]", 100.0 * c.lo, 100.0 * c.hi),
        None => format!("{p:.1}%"),
    }
}
