//! The summary's CSV files: `gap.csv` (the gap rows), and `members.csv`, `probes.csv` and
//! `probe-pairs.csv`, each a [`Pooled`] row's columns followed by its own.

use super::pooled::POOLED_CSV;
use super::{GapRow, MemberRow, PairRow, Pooled, ProbeRow};

/// `gap.csv`: a row per gap row.
pub(super) fn gap_csv(rows: &[GapRow]) -> String {
    let mut csv = crate::io::Csv::new(&[
        "dataset",
        "checkpoint",
        "eps",
        "strategy",
        "n",
        "clean",
        "pgd_robust",
        "autoattack_robust",
        "pgd_only_robust",
        "autoattack_only_robust",
        "gap",
        "gap_lo",
        "gap_hi",
    ]);
    for r in rows {
        csv.push(vec![
            r.dataset.clone(),
            r.which.clone(),
            crate::io::num(r.eps),
            r.strategy.clone(),
            r.n.to_string(),
            r.clean.to_string(),
            r.pgd.to_string(),
            r.autoattack.to_string(),
            r.only_pgd_missed.to_string(),
            r.only_aa_missed.to_string(),
            crate::io::num(r.gap),
            r.gap_ci.map_or(String::new(), |c| crate::io::num(c.lo)),
            r.gap_ci.map_or(String::new(), |c| crate::io::num(c.hi)),
        ]);
    }
    csv.render()
}

/// `members.csv`: a row per member row.
pub(super) fn members_csv(members: &[MemberRow]) -> String {
    let columns = [
        "pgd_missed_apgd_ce",
        "pgd_missed_apgd_t",
        "pgd_missed_fab_t",
        "pgd_missed_square",
        "broken_apgd_ce",
        "broken_apgd_t",
        "broken_fab_t",
        "broken_square",
    ];
    pooled_csv(
        &columns,
        members.iter().map(|r| {
            let counts = r.pgd_missed.iter().chain(&r.broken);
            (&r.at, counts.map(usize::to_string).collect())
        }),
    )
}

/// `probes.csv`: a row per probe row.
pub(super) fn probes_csv(probes: &[ProbeRow]) -> String {
    let columns = [
        "probe",
        "run_robust",
        "probe_robust",
        "autoattack_robust",
        "run_missed",
        "probe_broke_of_missed",
        "run_missed_apgd_ce",
        "run_missed_apgd_t",
        "run_missed_fab_t",
        "run_missed_square",
        "probe_broke_apgd_ce",
        "probe_broke_apgd_t",
        "probe_broke_fab_t",
        "probe_broke_square",
        "probe_broke_run_robust",
        "run_broke_probe_robust",
        "probe_broke_autoattack_robust",
        "p_probe_stronger",
        "p_holm",
        "q_bh",
    ];
    pooled_csv(
        &columns,
        probes.iter().map(|r| {
            let counts = r
                .robust
                .iter()
                .chain([&r.missed, &r.caught])
                .chain(&r.missed_by)
                .chain(&r.caught_by)
                .chain([&r.vs_run.0, &r.vs_run.1, &r.beyond_aa]);
            let row = std::iter::once(r.probe.clone())
                .chain(counts.map(usize::to_string))
                .chain(p_cells([r.p_stronger(), r.p_holm, r.q_bh]));
            (&r.at, row.collect())
        }),
    )
}

/// `probe-pairs.csv`: a row per pair row.
pub(super) fn pairs_csv(pairs: &[PairRow]) -> String {
    let columns = [
        "strategies",
        "probe_a",
        "probe_b",
        "a_robust",
        "b_robust",
        "a_broke_b_robust",
        "b_broke_a_robust",
        "run_missed",
        "a_broke_of_missed",
        "b_broke_of_missed",
        "p_two_sided",
        "p_holm",
    ];
    pooled_csv(
        &columns,
        pairs.iter().map(|r| {
            let counts = [
                r.robust.0,
                r.robust.1,
                r.discordant.0,
                r.discordant.1,
                r.missed.0,
                r.missed.1,
                r.missed.2,
            ];
            let row = [r.strategies.join(" "), r.probes.0.clone(), r.probes.1.clone()]
                .into_iter()
                .chain(counts.iter().map(usize::to_string))
                .chain(p_cells([r.p(), r.p_holm]));
            (&r.at, row.collect())
        }),
    )
}

/// A CSV of [`POOLED_CSV`]'s columns followed by `columns`, a row per (where, the rest).
fn pooled_csv<'a>(columns: &[&str], rows: impl Iterator<Item = (&'a Pooled, Vec<String>)>) -> String {
    let mut csv = crate::io::Csv::new(&[&POOLED_CSV[..], columns].concat());
    for (at, rest) in rows {
        let mut row = at.csv();
        row.extend(rest);
        csv.push(row);
    }
    csv.render()
}

/// p-values as CSV cells (empty where there is no test).
fn p_cells<const N: usize>(p: [Option<f64>; N]) -> impl Iterator<Item = String> {
    p.into_iter().map(|p| p.map_or(String::new(), crate::io::num))
}
