//! The summary's tests, counted by hand: levels and counts, the gap and its bootstrap over seeds,
//! grown radii, AutoAttack's members, the probe rows and the probe pairs.

use std::collections::BTreeMap;

use super::pooled::member_rows;
use super::probe_stats::{pair_rows, probe_rows};
use super::score::to_spec_levels;
use super::*;

/// One radius (1/255), `n` images, a nominal attack budget.
fn spec_at_1_255(n: usize) -> GapSpec {
    GapSpec {
        eps: vec![1.0 / 255.0],
        n,
        steps: 1,
        targets: 1,
        queries: 1,
    }
}

fn cell(strategy: &str, pgd: &str, aa: &str) -> GapCell {
    seed_cell(strategy, 0, pgd, aa)
}

fn seed_cell(strategy: &str, seed: u64, pgd: &str, aa: &str) -> GapCell {
    GapCell {
        dataset: "t".into(),
        strategy: strategy.into(),
        seed,
        eps: vec![1.0 / 255.0],
        run_attack: "pgd".into(),
        points: vec![GapPoint {
            which: vec!["peak".into(), "final".into()],
            step: 10,
            verified: pgd.len(),
            pgd: pgd.into(),
            autoattack: aa.into(),
            broken_by: String::new(),
            seconds: 1.0,
            probes: BTreeMap::new(),
        }],
    }
}

/// Levels over the run's radii become levels over the asked radii; the counts, the paired
/// gap and the ranking come out as counted by hand.
#[test]
fn levels_counts_and_ranking() {
    // Run radii 1, 2, 4, 8 /255 (indices 0…3); asked 2/255 and 8/255 (indices 1, 3).
    assert_eq!(to_spec_levels(&[0, 1, 2, 3, 4, 5], &[1, 3]), "011223");
    assert_eq!(counts("011223", 2), (5, vec![3, 1]));
    let spec = spec_at_1_255(10);
    // a: PGD 8 robust, AA 5 (3 only under PGD); b: PGD 6, AA 6; c: PGD 4, AA 2 (+1 only AA).
    let cells = [
        cell("a", "2222222211", "2222211111"),
        cell("b", "2222221111", "2222221111"),
        cell("c", "2222111111", "2121211111"),
    ];
    let s = summarise(&cells, &spec, 200);
    // One checkpoint labelled peak + final: a row per label.
    assert_eq!(s.rows.len(), 6);
    let a = s.rows.iter().find(|r| r.strategy == "a" && r.which == "final").unwrap();
    assert_eq!(
        (a.n, a.clean, a.pgd, a.autoattack, a.only_pgd_missed, a.only_aa_missed),
        (10, 10, 8, 5, 3, 0)
    );
    assert!((a.gap - 0.3).abs() < 1e-12);
    let c = s.rows.iter().find(|r| r.strategy == "c" && r.which == "peak").unwrap();
    assert_eq!((c.pgd, c.autoattack, c.only_pgd_missed, c.only_aa_missed), (4, 3, 2, 1));
    let r = &s.ranks[0];
    // PGD ranks a > b > c, AutoAttack b > a > c: ρ = 0.5.
    assert!((r.rho.unwrap() - 0.5).abs() < 1e-12, "{r:?}");
    assert_eq!(r.best, ("a".to_string(), "b".to_string()));
    assert!(s.markdown.contains("| t | final | 1/255 | a | 10 |"), "{}", s.markdown);
    // One seed: only the images are resampled, and the header says so.
    assert!(
        s.markdown.contains("bootstrap over image positions (200 replicates)"),
        "{}",
        s.markdown
    );
}

/// With several seeds the gap's interval covers their spread (seeds resampled), not only the
/// images: three seeds with planted gaps 0, 0.3 and 0.6 on 20 shared images. Resampling images
/// alone would give about 0.3 ± 0.12; with the seeds drawn the interval reaches 0 (a replicate
/// of seed 0 three times has no gap at all) and beyond 0.5.
#[test]
fn the_interval_of_the_gap_covers_the_seeds() {
    let spec = spec_at_1_255(20);
    let robust = "2".repeat(20);
    let broken = |k: usize| format!("{}{}", "1".repeat(k), "2".repeat(20 - k));
    let cells = [
        seed_cell("a", 0, &robust, &robust),
        seed_cell("a", 1, &robust, &broken(6)),
        seed_cell("a", 2, &robust, &broken(12)),
        seed_cell("b", 0, &broken(10), &broken(10)),
    ];
    let s = summarise(&cells, &spec, 1000);
    let a = s.rows.iter().find(|r| r.strategy == "a" && r.which == "final").unwrap();
    assert_eq!((a.n, a.pgd, a.autoattack, a.only_pgd_missed), (60, 60, 42, 18));
    assert!((a.gap - 0.3).abs() < 1e-12);
    let ci = a.gap_ci.unwrap();
    assert!(ci.lo < 0.1 && ci.hi > 0.5, "{ci:?}");
    // One seed, no gap: a degenerate interval at 0.
    let b = s.rows.iter().find(|r| r.strategy == "b" && r.which == "final").unwrap();
    assert_eq!((b.gap, b.gap_ci.map(|c| (c.lo, c.hi))), (0.0, Some((0.0, 0.0))));
    assert!(
        s.markdown.contains("over seeds, then image positions"),
        "{}",
        s.markdown
    );
}

/// A folder grown to a second radius for seed 0 only: the first radius pools both seeds, the
/// second seed 0 alone (never seed 1's strings, which say nothing about it), and the summary
/// names the seeds per radius. Refusals of other growth: a smaller radius, another n.
#[test]
fn grown_radii_pool_the_seeds_that_cover_them() {
    let mut spec = spec_at_1_255(4);
    let one = spec.clone();
    spec.eps.push(2.0 / 255.0);
    assert!(one.grows_into(&spec) && !spec.grows_into(&one) && !one.grows_into(&one));
    let smaller = GapSpec {
        eps: vec![0.5 / 255.0, 1.0 / 255.0],
        ..one.clone()
    };
    assert!(!one.grows_into(&smaller));
    assert!(!one.grows_into(&GapSpec { n: 5, ..spec.clone() }));
    let grown = |strategy: &str, pgd: &str, aa: &str| {
        let mut c = seed_cell(strategy, 0, pgd, aa);
        c.eps = spec.eps.clone();
        c
    };
    let cells = [
        grown("a", "3333", "3322"),
        seed_cell("a", 1, "2222", "2211"),
        grown("b", "3322", "3322"),
        seed_cell("b", 1, "2221", "2221"),
    ];
    let s = summarise(&cells, &spec, 100);
    let row = |e: f64, st: &str| {
        s.rows
            .iter()
            .find(|r| r.eps == e && r.strategy == st && r.which == "final")
            .unwrap()
    };
    let a1 = row(1.0 / 255.0, "a");
    assert_eq!((a1.n, a1.pgd, a1.autoattack), (8, 8, 6));
    let a2 = row(2.0 / 255.0, "a");
    assert_eq!((a2.n, a2.pgd, a2.autoattack, a2.only_pgd_missed), (4, 4, 2, 2));
    let b2 = row(2.0 / 255.0, "b");
    assert_eq!((b2.n, b2.pgd, b2.autoattack), (4, 2, 2));
    assert_eq!(s.ranks.len(), 4, "two checkpoints × two radii");
    assert!(
        s.markdown.contains("seeds {0, 1} at 1/255, {0} at 2/255"),
        "{}",
        s.markdown
    );
    // Complete again: one set of seeds for both radii.
    let all = cells.iter().cloned().map(|mut c| {
        c.eps = spec.eps.clone();
        c
    });
    let full = summarise(&all.collect::<Vec<_>>(), &spec, 100);
    assert!(full.markdown.contains("× seeds {0, 1} (the same"), "{}", full.markdown);
}

/// The cell the member and probe tests count by hand: 1/255 and 2/255, seed 0 of strategy
/// `a`, seven images (see the members test), each image's member recorded.
fn two_radii_cell() -> (GapSpec, GapCell) {
    let mut spec = spec_at_1_255(7);
    spec.eps.push(2.0 / 255.0);
    let mut a = seed_cell("a", 0, "0323323", "0111223");
    a.eps = spec.eps.clone();
    a.points[0].broken_by = "-ctscf-".into();
    (spec, a)
}

/// `c` as (strategy, seed), its point recording these (probe, levels).
fn probed(mut c: GapCell, (strategy, seed): (&str, u64), probes: &[(&str, &str)]) -> GapCell {
    (c.strategy, c.seed) = (strategy.into(), seed);
    for (key, levels) in probes {
        let levels = ProbeLevels {
            levels: levels.to_string(),
            seconds: 1.0,
        };
        c.points[0].probes.insert(key.to_string(), levels);
    }
    c
}

/// The members' counts, by hand: two radii, seed 0 recording the members (seed 1 does not
/// and is left out). Images: 0 misclassified; 1 (APGD-CE), 2 (APGD-T) and 3 (Square) fall at
/// the first radius, 4 (APGD-CE) and 5 (FAB-T) at the second; 6 survives. PGD left 1, 3, 4 and 6
/// robust at both radii, 2 and 5 at the first only.
#[test]
fn members_are_counted_at_the_radius_where_the_image_fell() {
    let (spec, mut a) = two_radii_cell();
    let mut b = seed_cell("a", 1, "0323323", "0111223");
    b.eps = spec.eps.clone();
    let rows = member_rows(&[a.clone(), b], &spec);
    // Two labels (peak + final) × two radii.
    assert_eq!(rows.len(), 4);
    let at = |e: f64| rows.iter().find(|r| r.at.eps == e && r.at.which == "final").unwrap();
    let r1 = at(1.0 / 255.0);
    assert_eq!((r1.at.seeds.clone(), r1.at.n), (vec![0], 7));
    // Broken at 1/255: images 1 (c), 2 (t), 3 (s), all robust there under PGD.
    assert_eq!((r1.pgd_missed, r1.broken), ([1, 1, 0, 1], [1, 1, 0, 1]));
    let r2 = at(2.0 / 255.0);
    // Broken at 2/255 or below: also 4 (c) and 5 (f); PGD robust at 2/255: 1, 3, 4 (and 6).
    assert_eq!((r2.pgd_missed, r2.broken), ([2, 0, 0, 1], [2, 1, 1, 1]));
    let s = summarise(std::slice::from_ref(&a), &spec, 10);
    assert!(
        s.markdown
            .contains("| t | final | 2/255 | a | [0] | 7 | 2 / 0 / 0 / 1 (of 3) | 2 / 1 / 1 / 1 (of 5) |"),
        "{}",
        s.markdown
    );
    assert!(s.members_csv.unwrap().contains("t,final,"));
    // Without any cell recording the members: no section, no file.
    a.points[0].broken_by.clear();
    let s = summarise(&[a], &spec, 10);
    assert!(s.members.is_empty() && s.members_csv.is_none() && !s.markdown.contains("member broke"));
}

/// A probe's counts, by hand, on the members test's cell: images 1–6 as there, the probe
/// breaking 1 at the first radius and 3 at the second, and leaving 2 and 5 (which the run's
/// PGD broke at the second radius) robust.
#[test]
fn probes_are_counted_against_the_run_and_autoattack() {
    let (spec, mut a) = two_radii_cell();
    let levels = ProbeLevels {
        levels: "0132333".into(),
        seconds: 2.0,
    };
    a.points[0].probes.insert("pgd:5:1/4".into(), levels);
    let rows = probe_rows(std::slice::from_ref(&a), &spec);
    assert_eq!(rows.len(), 4, "two labels × two radii");
    let at = |e: f64| rows.iter().find(|r| r.at.eps == e && r.at.which == "final").unwrap();
    let r1 = at(1.0 / 255.0);
    // 1/255: the run leaves 1–6 robust, AutoAttack 4–6, the probe 2–6; missed 1 (c), 2 (t),
    // 3 (s), the probe breaks 1.
    assert_eq!((r1.robust, r1.missed, r1.caught), ([6, 5, 3], 3, 1));
    assert_eq!((r1.missed_by, r1.caught_by), ([1, 1, 0, 1], [1, 0, 0, 0]));
    assert_eq!((r1.vs_run, r1.beyond_aa), ((1, 0), 0));
    let r2 = at(2.0 / 255.0);
    // 2/255: the run leaves 1, 3, 4, 6 robust, AutoAttack 6, the probe 2, 4, 5, 6; missed 1
    // (c), 3 (s), 4 (c), the probe breaks 1 and 3.
    assert_eq!((r2.robust, r2.missed, r2.caught), ([4, 4, 1], 3, 2));
    assert_eq!((r2.missed_by, r2.caught_by), ([2, 0, 0, 1], [1, 0, 0, 1]));
    assert_eq!((r2.vs_run, r2.beyond_aa), ((2, 2), 0));
    // P(X ≥ 2) for X ~ Binomial(4, 1/2) = 11/16; at 1/255, P(X ≥ 1 | n = 1) = 1/2.
    assert!((r2.p_stronger().unwrap() - 11.0 / 16.0).abs() < 1e-12);
    assert!((r1.p_stronger().unwrap() - 0.5).abs() < 1e-12);
    let s = summarise(std::slice::from_ref(&a), &spec, 10);
    assert!(
        s.markdown.contains(
            "| t | final | 2/255 | a | [0] | 7 | PGD-5, α = ε/4 | 4 / 4 / 1 | 3 | 66.7% [20.8, 93.9] | 1 of 2 / 0 of 0 | 2 / 2 (p = 0.688; Holm = 1.000, BH = 0.688) | 0 |"
        ),
        "{}",
        s.markdown
    );
    assert!(
        s.markdown
            .contains("- `pgd:5:1/4` (PGD-5, α = ε/4): 2 s over 1 checkpoints"),
        "{}",
        s.markdown
    );
    let csv = s.probes_csv.unwrap();
    assert!(csv.contains("t,final,"), "{csv}");
    // Without members the split is not claimed.
    a.points[0].broken_by.clear();
    let s = summarise(&[a], &spec, 10);
    assert!(s.markdown.contains("| 66.7% [20.8, 93.9] | – |"), "{}", s.markdown);
}

/// Two strategies: a row pooling both (`all`: counts summed, seeds listed once), and the
/// Holm and BH adjustments over the 12 rows with a p, by hand. b's probe breaks every point
/// at the first radius: b vs run (6, 0) at 1/255, p = 1/64, and (4, 0) at 2/255, p = 1/16;
/// `all` (7, 0), p = 1/128, and (6, 2), p = 37/256; a as in the test above (1/2, 11/16);
/// each twice (peak and final). Holm: 12/128 = 0.09375 for `all` at 1/255, 10/64 = 0.15625
/// for b at 1/255, 8/16 = 0.5 for b at 2/255, 6·37/256 = 0.8671875 for `all` at 2/255, 1 for
/// a. BH: 0.046875 (b and `all` at 1/255), (1/16)·12/6 = 0.125 (b, 2/255), (37/256)·12/8 for
/// `all` at 2/255, (1/2)·12/10 = 0.6 and 0.6875 for a.
#[test]
fn probe_rows_pool_strategies_and_adjust_for_the_family() {
    let (spec, a) = two_radii_cell();
    let a = probed(a, ("a", 0), &[("pgd:5:1/4", "0132333")]);
    let b = probed(a.clone(), ("b", 1), &[("pgd:5:1/4", "0111111")]);
    let cells = [a.clone(), b];
    let rows = probe_rows(&cells, &spec);
    assert_eq!(rows.len(), 12, "three strategies (a, b, all) × two labels × two radii");
    let at = |s: &str, e: f64| {
        rows.iter()
            .find(|r| r.at.strategy == s && r.at.eps == e && r.at.which == "final")
            .unwrap()
    };
    let all2 = at(ALL_STRATEGIES, 2.0 / 255.0);
    assert_eq!((all2.at.seeds.clone(), all2.at.n), (vec![0, 1], 14));
    assert_eq!((all2.robust, all2.missed, all2.caught), ([8, 4, 2], 6, 5));
    assert_eq!(all2.vs_run, (6, 2));
    let expect = [
        ("a", 1.0, 1.0, 0.6),
        ("a", 2.0, 1.0, 0.6875),
        ("b", 1.0, 0.15625, 0.046875),
        ("b", 2.0, 0.5, 0.125),
        (ALL_STRATEGIES, 1.0, 0.09375, 0.046875),
        (ALL_STRATEGIES, 2.0, 6.0 * 37.0 / 256.0, 12.0 * 37.0 / 256.0 / 8.0),
    ];
    for (st, e, h, q) in expect {
        let r = at(st, e / 255.0);
        let (rh, rq) = (r.p_holm.unwrap(), r.q_bh.unwrap());
        assert!((rh - h).abs() < 1e-12 && (rq - q).abs() < 1e-12, "{st} {e}: {rh} {rq}");
    }
    // Rows without a discordant point are outside the family.
    let c = probed(a.clone(), ("a", 0), &[("pgd:5:1/4", "0323323")]);
    let rows = probe_rows(&[c], &spec);
    assert!(rows.iter().all(|r| r.p_holm.is_none() && r.q_bh.is_none()), "{rows:?}");
    // One strategy: no `all` row repeating it.
    assert!(probe_rows(&[a], &spec).iter().all(|r| r.at.strategy != ALL_STRATEGIES));
    let s = summarise(&cells, &spec, 10);
    assert!(s.markdown.contains("the table's 12 rows with a p"), "{}", s.markdown);
}

/// Probe against probe, by hand (two radii; robust at the first radius from level 2, at the
/// second from level 3). Strategy a (seed 0) and b (seed 1) record PGD-100 and APGD-CE-15,
/// b also PGD-15, so that pair pools b alone. First radius: a's PGD-100 breaks 2, 4 and
/// APGD-CE-15 1, 2 (one discordant each way); b's PGD-100 breaks none and APGD-CE-15 all six
/// → robust (10, 4), discordant (1, 7), p = 2·9/256. The run missed 1, 2, 3 on each: PGD-100
/// broke 2 of a's, APGD-CE-15 1, 2 of a's and all of b's → (6, 1, 5). Second radius: a
/// discordant 4, 5 / 1, 3, b 0 / 6 → (2, 8), p = 2·56/1024; missed 1, 3, 4 → (6, 1, 5).
#[test]
fn probe_pairs_are_counted_and_tested_two_sided() {
    let (spec, a) = two_radii_cell();
    let a = probed(a, ("a", 0), &[("pgd:100:1/4", "0313123"), ("apgd-ce:15", "0112333")]);
    let b = probed(
        a.clone(),
        ("b", 1),
        &[
            ("pgd:100:1/4", "0333333"),
            ("apgd-ce:15", "0111111"),
            ("pgd:15:1/4", "0323323"),
        ],
    );
    let rows = pair_rows(&[a, b], &spec);
    assert_eq!(rows.len(), 12, "three pairs × two labels × two radii");
    let at = |x: &str, y: &str, e: f64| {
        rows.iter()
            .find(|r| r.probes == (x.into(), y.into()) && r.at.eps == e / 255.0 && r.at.which == "final")
            .unwrap()
    };
    let r = at("pgd:100:1/4", "apgd-ce:15", 1.0);
    assert_eq!(
        (r.at.seeds.clone(), r.at.n, r.strategies.clone()),
        (vec![0, 1], 14, vec!["a".into(), "b".into()])
    );
    assert_eq!((r.robust, r.discordant, r.missed), ((10, 4), (1, 7), (6, 1, 5)));
    assert!((r.p().unwrap() - 18.0 / 256.0).abs() < 1e-15);
    let r = at("pgd:100:1/4", "apgd-ce:15", 2.0);
    assert_eq!((r.robust, r.discordant, r.missed), ((9, 3), (2, 8), (6, 1, 5)));
    assert!((r.p().unwrap() - 112.0 / 1024.0).abs() < 1e-15);
    // PGD-15 sorts first; it pools b alone.
    let r = at("pgd:15:1/4", "pgd:100:1/4", 1.0);
    assert_eq!(
        (r.at.seeds.clone(), r.at.n, r.discordant, r.p()),
        (vec![1], 7, (0, 0), None)
    );
    let close = |x: &str, y: &str, e: f64, p: f64| {
        let r = at(x, y, e);
        assert!((r.p().unwrap() - p).abs() < 1e-12, "{x} {y} {e}: {r:?}");
        r.discordant
    };
    assert_eq!(close("pgd:15:1/4", "pgd:100:1/4", 2.0, 0.5), (2, 0));
    assert_eq!(close("pgd:15:1/4", "apgd-ce:15", 1.0, 2.0 / 64.0), (0, 6));
    assert_eq!(close("pgd:15:1/4", "apgd-ce:15", 2.0, 2.0 / 16.0), (0, 4));
    // Holm over the 10 rows with a p (each value twice, peak and final).
    for (x, y, e, h) in [
        ("pgd:15:1/4", "apgd-ce:15", 1.0, 0.3125),
        ("pgd:100:1/4", "apgd-ce:15", 1.0, 0.5625),
        ("pgd:100:1/4", "apgd-ce:15", 2.0, 0.65625),
        ("pgd:15:1/4", "apgd-ce:15", 2.0, 0.65625),
        ("pgd:15:1/4", "pgd:100:1/4", 2.0, 1.0),
    ] {
        let got = at(x, y, e).p_holm.unwrap();
        assert!((got - h).abs() < 1e-12, "{x} {y} {e}: {got}");
    }
    assert_eq!(at("pgd:15:1/4", "pgd:100:1/4", 1.0).p_holm, None);
}
