//! Pareto frontier, AUC rules, schedules and statistics.

use proptest::prelude::*;
use robustft::tradeoff::{AucRule, Point, Schedule, auc, frontier, points, spearman, wilson};

fn cloud() -> impl Strategy<Value = Vec<Point>> {
    // Coarse grid values so that ties and duplicates are frequent.
    prop::collection::vec((0u8..=20, 0u8..=20), 1..60).prop_map(|v| {
        v.into_iter()
            .map(|(a, r)| Point {
                acc: a as f64 / 20.0,
                rob: r as f64 / 20.0,
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1_000, ..ProptestConfig::default() })]

    #[test]
    fn frontier_properties(pts in cloud()) {
        let f = frontier(&pts);
        // Sorted by accuracy, strictly; robustness strictly decreasing.
        for w in f.windows(2) {
            prop_assert!(w[0].acc < w[1].acc && w[0].rob > w[1].rob);
        }
        // Nothing on the frontier is dominated by any input point.
        for q in &f {
            prop_assert!(!pts.iter().any(|p| p.dominates(q)));
        }
        // Every input point is on the frontier or dominated by a frontier point.
        for p in &pts {
            prop_assert!(f.contains(p) || f.iter().any(|q| q.dominates(p)));
        }
    }

    #[test]
    fn auc_invariant_to_order_and_duplicates(pts in cloud(), seed in any::<u64>()) {
        let mut shuffled = pts.clone();
        // Deterministic permutation from the seed, then duplicate a prefix.
        let n = shuffled.len();
        for i in (1..n).rev() {
            let j = (seed.wrapping_mul(6364136223846793005).wrapping_add(i as u64) % (i as u64 + 1)) as usize;
            shuffled.swap(i, j);
        }
        let extra: Vec<Point> = shuffled.iter().take(n / 2 + 1).copied().collect();
        shuffled.extend(extra);
        for rule in [AucRule::Step, AucRule::Trapezoid] {
            prop_assert_eq!(auc(&pts, rule), auc(&shuffled, rule));
        }
        // Trapezoid never below step; both within [0, 1].
        let (s, t) = (auc(&pts, AucRule::Step), auc(&pts, AucRule::Trapezoid));
        prop_assert!(t + 1e-15 >= s && s >= 0.0 && t <= 1.0);
    }

    #[test]
    fn single_point_auc(a in 0.0f64..=1.0, r in 0.0f64..=1.0) {
        let p = [Point::new(a, r).unwrap()];
        prop_assert_eq!(auc(&p, AucRule::Step), a * r);
        prop_assert_eq!(auc(&p, AucRule::Trapezoid), a * r);
    }
}

/// Hand-computed staircase: frontier (0.1, 1.0), (0.6, 0.5), (1.0, 0.2).
/// Step: 0.1·1.0 + 0.5·0.5 + 0.4·0.2 = 0.43. Trapezoid: 0.1·1.0 + 0.5·0.75 + 0.4·0.35 = 0.615.
#[test]
fn hand_computed_aucs() {
    let p = points(&[(0.6, 0.5), (1.0, 0.2), (0.1, 1.0), (0.5, 0.4), (0.05, 0.9)]).unwrap();
    assert_eq!(frontier(&p).len(), 3);
    assert!((auc(&p, AucRule::Step) - 0.43).abs() < 1e-15);
    assert!((auc(&p, AucRule::Trapezoid) - 0.615).abs() < 1e-15);
}

/// The first 20 steps of each preset, written out by hand from the definitions.
#[test]
fn schedule_presets_first_20() {
    let paper: Vec<u64> = vec![
        50, 100, 150, 200, 250, 300, 350, 400, 450, 500, 550, 600, 650, 700, 1000, 2000, 3000, 6000, 12000, 18000,
    ];
    assert_eq!(Schedule::Paper.steps(1_000_000)[..20], paper[..]);
    let repo: Vec<u64> = vec![
        0, 50, 100, 120, 150, 180, 210, 240, 270, 300, 400, 600, 800, 1000, 2000, 4000, 8000, 12000, 18000, 24000,
    ];
    assert_eq!(Schedule::Repo.steps(1_000_000)[..20], repo[..]);
    // Beyond 30000 the repo schedule evaluates every 20000.
    let tail: Vec<u64> = Schedule::Repo
        .steps(100_000)
        .into_iter()
        .filter(|&s| s > 24000)
        .collect();
    assert_eq!(tail, vec![30000, 40000, 60000, 80000, 100000]);
    assert_eq!(Schedule::parse("3,7,11").unwrap().steps(10), vec![3, 7]);
}

#[test]
fn statistics() {
    // Wilson: 50/100 is symmetric about 0.5: (0.4038, 0.5962) (Newcombe 1998 formula).
    let ci = wilson(50, 100).unwrap();
    assert!(
        (ci.lo - 0.403_8).abs() < 1e-4 && (ci.hi - 0.596_2).abs() < 1e-4,
        "{ci:?}"
    );
    assert!((ci.lo + ci.hi - 1.0).abs() < 1e-15);
    // Spearman with ties: x = (1, 2, 2, 3), y = (1, 3, 2, 4) → 0.9486833 (ranks (1, 2.5, 2.5, 4)
    // and (1, 3, 2, 4): Σ dx·dy = 4.5, Σ dx² = 4.5, Σ dy² = 5).
    let rho = spearman(&[1.0, 2.0, 2.0, 3.0], &[1.0, 3.0, 2.0, 4.0]).unwrap();
    assert!((rho - 4.5 / (4.5f64 * 5.0).sqrt()).abs() < 1e-15);
}
