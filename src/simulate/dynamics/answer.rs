//! The sweep's answer: in how many settings each phenomenon of Li et al. 2025 appears.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::{SweepPoint, ValidDynamics, full_lp_bottom, ranking, rows};
use crate::engine::peft::Strategy;
use crate::io::Csv;
use crate::io::num;
use crate::simulate::dynamics::Trajectory;

/// Best strategy at the simplest and at the most complex d of one (p, overlap, lr) setting.
#[derive(Debug, Clone, Copy, Default)]
struct BestPair {
    /// Best (highest AUC) at the simplest d.
    simple: Option<Strategy>,
    /// Best at the most complex d.
    complex: Option<Strategy>,
}

/// Cells of one d with a rise-then-fall curve, out of all cells of that d.
#[derive(Debug, Clone, Copy, Default)]
struct RiseCount {
    /// Cells where at least one strategy rises then falls.
    rising: usize,
    /// Cells of this d.
    cells: usize,
}

/// One cell's verdicts: the AUC ranking, whether Full and linear probing are at the bottom, and
/// which strategies rise then fall.
struct CellVerdict {
    /// Strategies from highest to lowest AUC.
    rank: Vec<Strategy>,
    /// Full and linear probing have the two lowest AUCs.
    bottom: bool,
    /// Strategies whose robustness rises, then falls.
    rtf: Vec<Strategy>,
}

impl CellVerdict {
    /// The verdicts on one cell's seven trajectories.
    fn of(cfg: &ValidDynamics, trajs: &[Trajectory]) -> Self {
        let r = rows(cfg, trajs);
        let rank = ranking(&r);
        let bottom = full_lp_bottom(&r);
        let rtf: Vec<Strategy> = r.iter().filter(|x| x.rises_then_falls).map(|x| x.strategy).collect();
        Self { rank, bottom, rtf }
    }

    /// The sweep table's row of this cell.
    fn row(&self, cfg: &ValidDynamics, s: &SweepPoint) -> Vec<String> {
        vec![
            num(s.p),
            num(s.overlap),
            num(s.lr),
            s.d.to_string(),
            num(cfg.eta(s.d)),
            self.rank.iter().map(|x| x.id()).collect::<Vec<_>>().join(">"),
            self.bottom.to_string(),
            self.rank[0].id().into(),
            self.rtf.iter().map(|x| x.id()).collect::<Vec<_>>().join("+"),
        ]
    }
}

/// What the answer counts over the sweep's cells.
#[derive(Default)]
struct Tally {
    /// Cells seen.
    n_cells: usize,
    /// Cells where at least one strategy rises then falls.
    n_rtf_any: usize,
    /// Cells with Full and linear probing at the bottom.
    n_bottom: usize,
    /// Rise-then-fall cells per strategy.
    rtf_by_strategy: BTreeMap<Strategy, usize>,
    /// Settings in which each strategy is best at the simplest d.
    best_simple: BTreeMap<Strategy, usize>,
    /// Settings in which each strategy is best at the most complex d.
    best_complex: BTreeMap<Strategy, usize>,
    /// The cells with Full and linear probing at the bottom, in sweep order.
    bottom_cells: Vec<SweepPoint>,
    /// Rise-then-fall cells per d.
    rtf_by_d: BTreeMap<usize, RiseCount>,
    /// Best strategies per (p, overlap, lr), keyed by their bit patterns.
    per_setting: BTreeMap<(u64, u64, u64), BestPair>,
}

impl Tally {
    /// Counts one cell; `d_simple` and `d_complex` are the sweep's smallest and largest d.
    fn add(&mut self, s: &SweepPoint, v: &CellVerdict, d_simple: usize, d_complex: usize) {
        self.n_cells += 1;
        self.n_rtf_any += usize::from(!v.rtf.is_empty());
        let e = self.rtf_by_d.entry(s.d).or_default();
        e.rising += usize::from(!v.rtf.is_empty());
        e.cells += 1;
        self.n_bottom += usize::from(v.bottom);
        if v.bottom {
            self.bottom_cells.push(*s);
        }
        for st in &v.rtf {
            *self.rtf_by_strategy.entry(*st).or_default() += 1;
        }
        let key = (s.p.to_bits(), s.overlap.to_bits(), s.lr.to_bits());
        let e = self.per_setting.entry(key).or_default();
        if s.d == d_simple {
            e.simple = Some(v.rank[0]);
            *self.best_simple.entry(v.rank[0]).or_default() += 1;
        }
        if s.d == d_complex {
            e.complex = Some(v.rank[0]);
            *self.best_complex.entry(v.rank[0]).or_default() += 1;
        }
    }

    /// The (p, overlap, lr) settings with BitFit best at the simplest d and Compacter at the most
    /// complex, and the number of settings.
    fn paper_pattern(&self) -> (Vec<(f64, f64, f64)>, usize) {
        let (mut paper_pattern, mut n_settings) = (Vec::new(), 0);
        for (&(p, o, lr), best) in &self.per_setting {
            n_settings += 1;
            if best.simple == Some(Strategy::Bitfit) && best.complex == Some(Strategy::Compacter) {
                paper_pattern.push((f64::from_bits(p), f64::from_bits(o), f64::from_bits(lr)));
            }
        }
        (paper_pattern, n_settings)
    }
}

/// The sweep table and the written answer.
pub(super) fn sweep_answer(cfg: &ValidDynamics, grid: &[SweepPoint], swept: &[Vec<Trajectory>]) -> (Csv, String) {
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
    let mut tally = Tally::default();
    for (s, trajs) in grid.iter().zip(swept) {
        let v = CellVerdict::of(cfg, trajs);
        tally.add(s, &v, d_simple, d_complex);
        csv.push(v.row(cfg, s));
    }
    let mut a = String::from("# Does the training-dynamics model reproduce the measured phenomena?\n\n");
    write_sweep(&mut a, cfg, tally.n_cells);
    write_rises_then_falls(&mut a, cfg, &tally);
    write_bottom(&mut a, &tally);
    write_best(&mut a, &tally, d_simple, d_complex);
    (csv, a)
}

/// "Strategy n, …" counts of a per-strategy tally.
fn count(m: &BTreeMap<Strategy, usize>) -> String {
    m.iter()
        .map(|(s, n)| format!("{} {n}", s.name()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The answer's line describing the sweep.
fn write_sweep(a: &mut String, cfg: &ValidDynamics, n_cells: usize) {
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
}

/// Phenomenon 1: robustness rises, then falls (overall, per strategy and per d).
fn write_rises_then_falls(a: &mut String, cfg: &ValidDynamics, t: &Tally) {
    let (n_rtf_any, n_cells) = (t.n_rtf_any, t.n_cells);
    let _ = writeln!(
        a,
        "1. **Robustness rises, then falls** (interior peak more than {} above both ends): in {n_rtf_any} of {n_cells} \
         cells for at least one strategy. Per strategy (cells): {}.",
        cfg.train.margin,
        if t.rtf_by_strategy.is_empty() {
            "none".into()
        } else {
            count(&t.rtf_by_strategy)
        }
    );
    let _ = writeln!(
        a,
        "   By task complexity (ε/η in brackets): {}.",
        t.rtf_by_d
            .iter()
            .map(|(d, RiseCount { rising: k, cells: n })| {
                format!("d = {d} [{:.2}]: {k}/{n}", cfg.task.eps[0] / cfg.eta(*d))
            })
            .collect::<Vec<_>>()
            .join(", ")
    );
}

/// Phenomenon 2: Full and linear probing at the bottom, with up to six example cells.
fn write_bottom(a: &mut String, t: &Tally) {
    let (n_bottom, n_cells) = (t.n_bottom, t.n_cells);
    let _ = writeln!(
        a,
        "2. **Full and linear probing at the bottom** (the two lowest AUCs): in {n_bottom} of {n_cells} cells{}.",
        if t.bottom_cells.is_empty() {
            String::new()
        } else {
            format!(
                ", e.g. {}",
                t.bottom_cells
                    .iter()
                    .take(6)
                    .map(|s| format!("(p {}, overlap {}, lr {}, d {})", s.p, s.overlap, s.lr, s.d))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    );
}

/// Phenomenon 3: BitFit best on the simplest task and Compacter on the most complex.
fn write_best(a: &mut String, t: &Tally, d_simple: usize, d_complex: usize) {
    let (paper_pattern, n_settings) = t.paper_pattern();
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
        count(&t.best_simple),
        count(&t.best_complex)
    );
}
