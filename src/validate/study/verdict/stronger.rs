//! Finding 6: the strategy ranking measured with the run's attack (PGD) survives AutoAttack —
//! read from `validate gap`'s results when the folder has them (issue 17's gap report).

use std::collections::BTreeSet;

use crate::error::Result;
use crate::validate::checkpoints::gap::{GapSummary, load, seeds_by_radius, seeds_text, summarise};
use crate::validate::study::report::eps_label;
use crate::validate::study::verdict::{Cell, Finding, Out, Verdict, fmt_ci, tally};

/// ρ at or above which a ranking counts as preserved: with 7 strategies, ρ = 0.8 allows about
/// one pair of neighbours swapped and one strategy moved by two places.
pub const RHO_SURVIVES: f64 = 0.8;

/// Finding 6 per (task, checkpoint, ε), when `dir/gap/` holds a summary; nothing otherwise.
pub(super) fn finding_6(dir: &std::path::Path, reps: usize, out: &mut Out) -> Result<()> {
    let Some((spec, cells)) = load(dir)? else {
        return Ok(());
    };
    let GapSummary { rows, ranks, .. } = summarise(&cells, &spec, reps);
    let seeds = seeds_by_radius(&cells, &spec);
    let mut verdicts = Vec::new();
    let mut measured = Vec::new();
    for r in &ranks {
        let verdict = match r.rho_ci {
            Some(c) if c.lo >= RHO_SURVIVES => Verdict::Holds,
            Some(c) if c.hi < RHO_SURVIVES => Verdict::DoesNotHold,
            _ => Verdict::Undecided,
        };
        let worst = rows
            .iter()
            .filter(|g| g.dataset == r.dataset && g.which == r.which && g.eps == r.eps)
            .max_by(|a, b| a.gap.total_cmp(&b.gap));
        let note = format!(
            "best: {} (PGD) / {} (AutoAttack); largest gap {}",
            r.best.0,
            r.best.1,
            match worst {
                Some(g) if g.gap > 0.0 => format!("{} {:+.1} pts", g.strategy, 100.0 * g.gap),
                Some(_) => "none (PGD = AutoAttack for every strategy)".into(),
                None => "-".into(),
            }
        );
        measured.push(format!(
            "{} {} ε {}: ρ {}",
            r.dataset,
            r.which,
            eps_label(r.eps),
            r.rho.map_or("– (constant)".into(), |x| fmt_ci(x, r.rho_ci))
        ));
        out.cells.push(Cell {
            finding: "6".into(),
            dataset: r.dataset.clone(),
            strategy: None,
            eps: Some(r.eps),
            statistic: format!("Spearman ρ(PGD, AutoAttack robust accuracy), {} checkpoint", r.which),
            estimate: r.rho.unwrap_or(f64::NAN),
            ci: r.rho_ci,
            verdict,
            note,
        });
        verdicts.push(verdict);
    }
    let largest = rows.iter().max_by(|a, b| a.gap.total_cmp(&b.gap));
    out.rows.push(Finding {
        id: "6".into(),
        claim: "The strategy ranking measured with PGD survives a stronger attack (AutoAttack)".into(),
        measured: format!(
            "{}; {}; largest PGD − AutoAttack gap {}",
            tally(&verdicts, "task, checkpoint, ε"),
            measured.join("; "),
            largest.map_or("-".into(), |g| format!(
                "{:+.1} pts ({} {} {} ε {})",
                100.0 * g.gap,
                g.dataset,
                g.strategy,
                g.which,
                eps_label(g.eps)
            ))
        ),
        test: test_text(spec.n, &seeds),
        verdict: Verdict::majority(&verdicts),
    });
    Ok(())
}

/// Finding 6's test column: the images and seeds attacked (per radius when they differ), and what
/// the interval resamples (seeds, then images, when there are several seeds: `gap::summarise`).
fn test_text(n: usize, seeds: &[(f64, BTreeSet<u64>)]) -> String {
    let several = seeds.iter().filter(|(_, s)| s.len() > 1).count();
    let attacked = seeds.iter().filter(|(_, s)| !s.is_empty()).count();
    format!(
        "validate gap: peak-robustness and final checkpoints replayed and checked against the records, AutoAttack \
         on the first {n} evaluation images of seeds {}; Spearman ρ between the strategies' robust \
         accuracies under both, bootstrap 95% CI over {}: lower bound ≥ {RHO_SURVIVES} holds, upper bound < \
         {RHO_SURVIVES} does not hold; majority over cells",
        seeds_text(seeds),
        match several {
            0 => "images",
            k if k == attacked => "seeds, then images",
            _ => "seeds, then images (images only where one seed)",
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_test_names_the_seeds_and_what_is_resampled() {
        let (a, b) = (4.0 / 255.0, 8.0 / 255.0);
        let one = test_text(200, &[(a, BTreeSet::from([0]))]);
        assert!(one.contains("first 200 evaluation images of seeds {0};"), "{one}");
        assert!(one.contains("CI over images:"), "{one}");
        let three = test_text(200, &[(a, BTreeSet::from([0, 1, 2])), (b, BTreeSet::from([0, 1, 2]))]);
        assert!(three.contains("seeds {0, 1, 2};"), "{three}");
        assert!(three.contains("CI over seeds, then images:"), "{three}");
        // Radii grown for seed 0 only: each radius names its seeds.
        let grown = test_text(200, &[(a, BTreeSet::from([0, 1, 2])), (b, BTreeSet::from([0]))]);
        assert!(grown.contains("seeds {0, 1, 2} at 4/255, {0} at 8/255;"), "{grown}");
        assert!(
            grown.contains("CI over seeds, then images (images only where one seed):"),
            "{grown}"
        );
        // Grown, nothing scored at the new radius yet.
        let started = test_text(200, &[(a, BTreeSet::from([0, 1])), (b, BTreeSet::new())]);
        assert!(
            started.contains("seeds {0, 1} at 4/255, none yet at 8/255;"),
            "{started}"
        );
        assert!(started.contains("CI over seeds, then images:"), "{started}");
    }
}
