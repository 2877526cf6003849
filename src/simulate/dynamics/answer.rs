//! The sweep's answer: in how many settings each phenomenon of Li et al. 2025 appears.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::{Setting, ValidDynamics, full_lp_bottom, ranking, rows};
use crate::plot::Csv;
use crate::simulate::figures::num;
use crate::theory::Strategy;
use crate::theory::dynamics::Trajectory;

/// Best strategy at the simplest and at the most complex d of one (p, overlap, lr) setting.
type BestPair = (Option<Strategy>, Option<Strategy>);

/// The sweep table and the written answer.
pub(super) fn sweep_answer(cfg: &ValidDynamics, grid: &[Setting], swept: &[Vec<Trajectory>]) -> (Csv, String) {
    let mut csv = Csv::new(&[
        "p",
        "overlap",
        "lr",
        "d",
        "eta",
        "ranking_by_auc",
        "full_lp_bottom",
        "best",
        "rises_then_falls",
    ]);
    let (d_simple, d_complex) = (
        *cfg.sweep.d_values.iter().min().expect("non-empty"),
        *cfg.sweep.d_values.iter().max().expect("non-empty"),
    );
    let (mut n_cells, mut n_rtf_any, mut n_bottom) = (0, 0, 0);
    let mut rtf_by_strategy: BTreeMap<Strategy, usize> = BTreeMap::new();
    let mut best_simple: BTreeMap<Strategy, usize> = BTreeMap::new();
    let mut best_complex: BTreeMap<Strategy, usize> = BTreeMap::new();
    let (mut paper_pattern, mut n_settings) = (Vec::new(), 0);
    let mut bottom_cells = Vec::new();
    let mut rtf_by_d: BTreeMap<usize, (usize, usize)> = BTreeMap::new();
    let mut per_setting: BTreeMap<(u64, u64, u64), BestPair> = BTreeMap::new();
    for (s, trajs) in grid.iter().zip(swept) {
        let r = rows(cfg, trajs);
        let rank = ranking(&r);
        let bottom = full_lp_bottom(&r);
        let rtf: Vec<Strategy> = r.iter().filter(|x| x.rises_then_falls).map(|x| x.strategy).collect();
        n_cells += 1;
        n_rtf_any += usize::from(!rtf.is_empty());
        let e = rtf_by_d.entry(s.d).or_default();
        e.0 += usize::from(!rtf.is_empty());
        e.1 += 1;
        n_bottom += usize::from(bottom);
        if bottom {
            bottom_cells.push(*s);
        }
        for st in &rtf {
            *rtf_by_strategy.entry(*st).or_default() += 1;
        }
        let key = (s.p.to_bits(), s.overlap.to_bits(), s.lr.to_bits());
        let e = per_setting.entry(key).or_default();
        if s.d == d_simple {
            e.0 = Some(rank[0]);
            *best_simple.entry(rank[0]).or_default() += 1;
        }
        if s.d == d_complex {
            e.1 = Some(rank[0]);
            *best_complex.entry(rank[0]).or_default() += 1;
        }
        csv.push(vec![
            num(s.p),
            num(s.overlap),
            num(s.lr),
            s.d.to_string(),
            num(cfg.eta(s.d)),
            rank.iter().map(|x| x.id()).collect::<Vec<_>>().join(">"),
            bottom.to_string(),
            rank[0].id().into(),
            rtf.iter().map(|x| x.id()).collect::<Vec<_>>().join("+"),
        ]);
    }
    for (&(p, o, lr), &(bs, bc)) in &per_setting {
        n_settings += 1;
        if bs == Some(Strategy::Bitfit) && bc == Some(Strategy::Compacter) {
            paper_pattern.push((f64::from_bits(p), f64::from_bits(o), f64::from_bits(lr)));
        }
    }
    let count = |m: &BTreeMap<Strategy, usize>| {
        m.iter()
            .map(|(s, n)| format!("{} {n}", s.name()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut a = String::from("# Does the training-dynamics model reproduce the measured phenomena?\n\n");
    let _ = writeln!(
        a,
        "Sweep: p ∈ {:?}, overlap ∈ {:?}, lr ∈ {:?}, d ∈ {:?} ({} cells of 7 trajectories each); ε = {}, \
         η = {}, {} steps of population gradient descent, h = {}, upstream = {}.\n",
        cfg.sweep.p_values,
        cfg.sweep.overlap_values,
        cfg.sweep.lr_values,
        cfg.sweep.d_values,
        n_cells,
        cfg.task.eps[0],
        if cfg.task.eta.is_some() {
            "fixed".to_string()
        } else {
            format!("Φ⁻¹({})/√d", cfg.task.target_acc)
        },
        cfg.train.steps,
        cfg.network.hidden,
        cfg.task.upstream
    );
    let _ = writeln!(
        a,
        "1. **Robustness rises, then falls** (interior peak more than {} above both ends): in {n_rtf_any} of {n_cells} \
         cells for at least one strategy. Per strategy (cells): {}.",
        cfg.train.margin,
        if rtf_by_strategy.is_empty() {
            "none".into()
        } else {
            count(&rtf_by_strategy)
        }
    );
    let _ = writeln!(
        a,
        "   By task complexity (ε/η in brackets): {}.",
        rtf_by_d
            .iter()
            .map(|(d, (k, n))| format!("d = {d} [{:.2}]: {k}/{n}", cfg.task.eps[0] / cfg.eta(*d)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        a,
        "2. **Full and linear probing at the bottom** (the two lowest AUCs): in {n_bottom} of {n_cells} cells{}.",
        if bottom_cells.is_empty() {
            String::new()
        } else {
            format!(
                ", e.g. {}",
                bottom_cells
                    .iter()
                    .take(6)
                    .map(|s| format!("(p {}, overlap {}, lr {}, d {})", s.p, s.overlap, s.lr, s.d))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    );
    let _ = writeln!(
        a,
        "3. **BitFit best on the simplest task (d = {d_simple}) and Compacter on the most complex (d = {d_complex})**: \
         in {} of {n_settings} (p, overlap, lr) settings{}. Best at d = {d_simple}: {}. Best at d = {d_complex}: {}.",
        paper_pattern.len(),
        if paper_pattern.is_empty() {
            String::new()
        } else {
            format!(
                " ({})",
                paper_pattern
                    .iter()
                    .map(|(p, o, l)| format!("p {p}, overlap {o}, lr {l}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        },
        count(&best_simple),
        count(&best_complex)
    );
    (csv, a)
}
