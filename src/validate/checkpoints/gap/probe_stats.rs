//! The probe rows ([`ProbeRow`]: what each probe breaks against the run's PGD and AutoAttack, with
//! a one-sided exact McNemar p, Holm and Benjamini–Hochberg over the table) and the pair rows
//! ([`PairRow`]: two probes on the same points, two-sided exact McNemar, Holm over the table).

use std::collections::BTreeMap;

use super::cell::robust_at;
use super::pooled::{labelled_points, row_mut};
use super::probe::probe_order;
use super::{ALL_STRATEGIES, GapCell, GapPoint, GapSpec, MEMBER_CODES, Pooled};
use crate::tradeoff::stats::{benjamini_hochberg, holm, sign_test_two_sided, sign_test_upper};

/// Per (dataset, checkpoint, radius, strategy, probe), over the cells that record the probe:
/// what the probe breaks, set against the run's PGD and AutoAttack on the same images.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeRow {
    /// Where the row pools.
    pub at: Pooled,
    /// The probe ([`Probe::key`](super::Probe::key)).
    pub probe: String,
    /// Robust at this radius under the run's attack, the probe and AutoAttack.
    pub robust: [usize; 3],
    /// Robust under the run's attack, broken by AutoAttack: the points PGD missed.
    pub missed: usize,
    /// Of `missed`, those the probe broke.
    pub caught: usize,
    /// `missed` per AutoAttack member that broke the point ([`MEMBER_CODES`]), over the cells
    /// that record the members.
    pub missed_by: [usize; 4],
    /// `caught` likewise.
    pub caught_by: [usize; 4],
    /// Broken by the probe and robust under the run's attack, and the reverse.
    pub vs_run: (usize, usize),
    /// Broken by the probe, robust under AutoAttack.
    pub beyond_aa: usize,
    /// [`ProbeRow::p_stronger`] adjusted by Holm's step-down over every row of the summary
    /// with a p (family-wise error rate).
    pub p_holm: Option<f64>,
    /// Benjamini–Hochberg q of [`ProbeRow::p_stronger`] over the same family (false discovery
    /// rate).
    pub q_bh: Option<f64>,
}

impl ProbeRow {
    /// The one-sided p-value of "the probe is stronger than the run's attack on these images":
    /// exact McNemar on [`ProbeRow::vs_run`] (None without discordant points). Under the null the
    /// two attacks are exchangeable, so a probe that differs from the run only in its random start
    /// should not reach significance.
    pub fn p_stronger(&self) -> Option<f64> {
        exact_mcnemar(self.vs_run, sign_test_upper)
    }

    /// Counts `pt`'s images at radius index `k`, the probe's outcomes being `levels`.
    fn count(&mut self, pt: &GapPoint, levels: &str, k: usize) {
        for i in 0..pt.autoattack.len() {
            let (run, q, aa) = (
                robust_at(&pt.pgd, i, k),
                robust_at(levels, i, k),
                robust_at(&pt.autoattack, i, k),
            );
            for (j, ok) in [run, q, aa].into_iter().enumerate() {
                self.robust[j] += usize::from(ok);
            }
            self.vs_run.0 += usize::from(run && !q);
            self.vs_run.1 += usize::from(q && !run);
            self.beyond_aa += usize::from(aa && !q);
            if run && !aa {
                self.missed += 1;
                self.caught += usize::from(!q);
                let member = pt.broken_by.as_bytes().get(i);
                if let Some(m) = member.and_then(|m| MEMBER_CODES.iter().position(|x| x == m)) {
                    self.missed_by[m] += 1;
                    self.caught_by[m] += usize::from(!q);
                }
            }
        }
    }
}

/// Per (dataset, checkpoint, radius) and pair of probes, every strategy's points that record both
/// pooled: which of the two attacks breaks more of the same images.
#[derive(Debug, Clone, PartialEq)]
pub struct PairRow {
    /// Where the row pools (strategy [`ALL_STRATEGIES`]).
    pub at: Pooled,
    /// The strategies pooled.
    pub strategies: Vec<String>,
    /// The two probes ([`Probe::key`](super::Probe::key)), PGD before APGD-CE, then fewer steps, then smaller α.
    pub probes: (String, String),
    /// Robust at this radius under each.
    pub robust: (usize, usize),
    /// Broken by the first and robust under the second, and the reverse.
    pub discordant: (usize, usize),
    /// The points PGD missed ([`ProbeRow::missed`]), and of them those each probe broke.
    pub missed: (usize, usize, usize),
    /// [`PairRow::p`] adjusted by Holm's step-down over every pair row with a p.
    pub p_holm: Option<f64>,
}

impl PairRow {
    /// The two-sided p-value of "the two probes break the same share of these images": exact
    /// McNemar on [`PairRow::discordant`] (None without discordant points).
    pub fn p(&self) -> Option<f64> {
        exact_mcnemar(self.discordant, sign_test_two_sided)
    }

    /// Counts `pt`'s images at radius index `k`, the probes' outcomes being `a` and `b`.
    fn count(&mut self, pt: &GapPoint, (a, b): (&str, &str), k: usize) {
        for i in 0..pt.autoattack.len() {
            let (ra, rb) = (robust_at(a, i, k), robust_at(b, i, k));
            self.robust.0 += usize::from(ra);
            self.robust.1 += usize::from(rb);
            self.discordant.0 += usize::from(!ra && rb);
            self.discordant.1 += usize::from(ra && !rb);
            if robust_at(&pt.pgd, i, k) && !robust_at(&pt.autoattack, i, k) {
                self.missed.0 += 1;
                self.missed.1 += usize::from(!ra);
                self.missed.2 += usize::from(!rb);
            }
        }
    }
}

/// The probe rows of `cells`, per radius of `spec` that each cell covers: one per strategy and,
/// where two or more strategies record the probe, one pooling them all ([`ALL_STRATEGIES`]).
/// Every row with a p then gets its Holm and Benjamini–Hochberg adjustment over all of them.
pub(super) fn probe_rows(cells: &[GapCell], spec: &GapSpec) -> Vec<ProbeRow> {
    let mut rows: Vec<ProbeRow> = Vec::new();
    for (c, k, eps, pt, w) in labelled_points(cells, spec) {
        for (key, probe) in &pt.probes {
            for strategy in [c.strategy.as_str(), ALL_STRATEGIES] {
                let r = row_mut(
                    &mut rows,
                    |r: &ProbeRow| r.at.holds(c, w, eps, strategy) && r.probe == *key,
                    || ProbeRow {
                        at: Pooled::new(c, w, eps, strategy),
                        probe: key.clone(),
                        robust: [0; 3],
                        missed: 0,
                        caught: 0,
                        missed_by: [0; 4],
                        caught_by: [0; 4],
                        vs_run: (0, 0),
                        beyond_aa: 0,
                        p_holm: None,
                        q_bh: None,
                    },
                );
                r.at.add(c, pt);
                r.count(pt, &probe.levels, k);
            }
        }
    }
    // A pooled row over one strategy repeats that strategy's row: keep it where two or more
    // strategies share its (dataset, checkpoint, radius, probe).
    let key = |r: &ProbeRow| {
        (
            r.at.dataset.clone(),
            r.at.which.clone(),
            r.at.eps.to_bits(),
            r.probe.clone(),
        )
    };
    let mut strategies: BTreeMap<_, usize> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.at.strategy != ALL_STRATEGIES) {
        *strategies.entry(key(r)).or_default() += 1;
    }
    rows.retain(|r| r.at.strategy != ALL_STRATEGIES || strategies.get(&key(r)).is_some_and(|&n| n >= 2));
    rows.sort_by(|a, b| a.at.order(&b.at).then_with(|| probe_order(&a.probe, &b.probe)));
    let p: Vec<Option<f64>> = rows.iter().map(ProbeRow::p_stronger).collect();
    for ((r, h), q) in rows.iter_mut().zip(holm(&p)).zip(benjamini_hochberg(&p)) {
        (r.p_holm, r.q_bh) = (h, q);
    }
    rows
}

/// The pair rows of `cells`, per radius of `spec` that each cell covers: per (dataset,
/// checkpoint, radius) and pair of probes recorded on the same points, every strategy pooled; each
/// row with a p gets its Holm adjustment over all of them.
pub(super) fn pair_rows(cells: &[GapCell], spec: &GapSpec) -> Vec<PairRow> {
    let mut rows: Vec<PairRow> = Vec::new();
    for (c, k, eps, pt, w) in labelled_points(cells, spec) {
        let mut keys: Vec<&String> = pt.probes.keys().collect();
        keys.sort_by(|a, b| probe_order(a, b));
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                let r = row_mut(
                    &mut rows,
                    |r: &PairRow| r.at.holds(c, w, eps, ALL_STRATEGIES) && (&r.probes.0, &r.probes.1) == (*a, *b),
                    || PairRow {
                        at: Pooled::new(c, w, eps, ALL_STRATEGIES),
                        strategies: Vec::new(),
                        probes: ((*a).clone(), (*b).clone()),
                        robust: (0, 0),
                        discordant: (0, 0),
                        missed: (0, 0, 0),
                        p_holm: None,
                    },
                );
                r.at.add(c, pt);
                if !r.strategies.contains(&c.strategy) {
                    r.strategies.push(c.strategy.clone());
                }
                r.count(pt, (&pt.probes[*a].levels, &pt.probes[*b].levels), k);
            }
        }
    }
    rows.sort_by(|a, b| {
        a.at.order(&b.at)
            .then_with(|| probe_order(&a.probes.0, &b.probes.0))
            .then_with(|| probe_order(&a.probes.1, &b.probes.1))
    });
    let p: Vec<Option<f64>> = rows.iter().map(PairRow::p).collect();
    for (r, h) in rows.iter_mut().zip(holm(&p)) {
        r.p_holm = h;
    }
    rows
}

/// Exact McNemar on the discordant points (`k` one way, `l` the other): `test(k, k + l)`, None
/// without discordant points.
fn exact_mcnemar((k, l): (usize, usize), test: fn(u64, u64) -> f64) -> Option<f64> {
    let (k, m) = (k as u64, (k + l) as u64);
    (m > 0).then(|| test(k, m))
}
