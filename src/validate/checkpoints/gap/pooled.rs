//! Rows that pool points: where a row pools ([`Pooled`]: a dataset, checkpoint, radius and
//! strategy, the seeds and images), the points of the cells at each radius they cover, and the
//! member rows ([`MemberRow`]: which AutoAttack member broke the points).

use super::cell::{robust_at, strategy_rank};
use super::{GapCell, GapPoint, GapSpec, MEMBER_CODES};

/// Where a member or probe row pools its cells: a (dataset, checkpoint, radius, strategy), the
/// seeds pooled and their image outcomes.
#[derive(Debug, Clone, PartialEq)]
pub struct Pooled {
    /// Dataset.
    pub dataset: String,
    /// `peak` or `final`.
    pub which: String,
    /// Radius.
    pub eps: f64,
    /// Strategy id.
    pub strategy: String,
    /// The seeds pooled.
    pub seeds: Vec<u64>,
    /// Image outcomes pooled (seeds × n).
    pub n: usize,
}

impl Pooled {
    /// Nothing pooled yet at (`c`'s dataset, `which`, `eps`, `strategy`).
    pub(super) fn new(c: &GapCell, which: &str, eps: f64, strategy: &str) -> Pooled {
        Pooled {
            dataset: c.dataset.clone(),
            which: which.into(),
            eps,
            strategy: strategy.into(),
            seeds: Vec::new(),
            n: 0,
        }
    }

    /// Whether `c`'s checkpoint labelled `which` at `eps` pools here under `strategy` (`c`'s own
    /// or [`ALL_STRATEGIES`]).
    pub(super) fn holds(&self, c: &GapCell, which: &str, eps: f64, strategy: &str) -> bool {
        (&self.dataset, self.which.as_str(), self.eps, self.strategy.as_str()) == (&c.dataset, which, eps, strategy)
    }

    /// Pools `c`'s point `pt` (a seed already pooled, from another strategy, is listed once).
    pub(super) fn add(&mut self, c: &GapCell, pt: &GapPoint) {
        if !self.seeds.contains(&c.seed) {
            self.seeds.push(c.seed);
        }
        self.n += pt.autoattack.len();
    }

    /// Dataset, checkpoint, radius, then strategies in the study's order.
    pub(super) fn order(&self, other: &Pooled) -> std::cmp::Ordering {
        (&self.dataset, &self.which)
            .cmp(&(&other.dataset, &other.which))
            .then(self.eps.total_cmp(&other.eps))
            .then(strategy_rank(&self.strategy).cmp(&strategy_rank(&other.strategy)))
    }

    /// The CSV columns of [`POOLED_CSV`].
    pub(super) fn csv(&self) -> Vec<String> {
        vec![
            self.dataset.clone(),
            self.which.clone(),
            crate::io::num(self.eps),
            self.strategy.clone(),
            self.seeds.iter().map(u64::to_string).collect::<Vec<_>>().join(" "),
            self.n.to_string(),
        ]
    }

    /// The Markdown cells `| task | checkpoint | ε | strategy | seeds | n |`.
    pub(super) fn markdown(&self) -> String {
        format!(
            "| {} | {} | {} | {} | {:?} | {} |",
            self.dataset,
            self.which,
            crate::validate::study::report::eps_label(self.eps),
            self.strategy,
            self.seeds,
            self.n
        )
    }
}

/// The strategy of a probe row that pools every strategy's points (sorted after them).
pub const ALL_STRATEGIES: &str = "all";

/// The CSV header of [`Pooled::csv`].
pub(super) const POOLED_CSV: [&str; 6] = ["dataset", "checkpoint", "eps", "strategy", "seeds", "n"];

/// Per (dataset, checkpoint, radius, strategy), over the cells that record AutoAttack's
/// members: which member broke the points.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberRow {
    /// Where the row pools.
    pub at: Pooled,
    /// Per member ([`MEMBER_CODES`]): points robust at this radius under the run's attack that
    /// AutoAttack broke (at this radius or a smaller one), by the member that broke them.
    pub pgd_missed: [usize; 4],
    /// Per member: every clean-correct point AutoAttack broke at this radius or a smaller one.
    pub broken: [usize; 4],
}

/// The member rows of the cells of `cells` that record the members, per radius of `spec` that
/// they cover.
pub(super) fn member_rows(cells: &[GapCell], spec: &GapSpec) -> Vec<MemberRow> {
    let mut rows: Vec<MemberRow> = Vec::new();
    for (c, k, eps, pt, w) in labelled_points(cells.iter().filter(|c| c.attributed()), spec) {
        let r = row_mut(
            &mut rows,
            |r: &MemberRow| r.at.holds(c, w, eps, &c.strategy),
            || MemberRow {
                at: Pooled::new(c, w, eps, &c.strategy),
                pgd_missed: [0; 4],
                broken: [0; 4],
            },
        );
        r.at.add(c, pt);
        for (i, m) in pt.broken_by.bytes().enumerate() {
            let Some(m) = MEMBER_CODES.iter().position(|&x| x == m) else {
                continue;
            };
            // Broken at radius index level − 1: at or below k unless robust at k.
            if !robust_at(&pt.autoattack, i, k) {
                r.broken[m] += 1;
                if robust_at(&pt.pgd, i, k) {
                    r.pgd_missed[m] += 1;
                }
            }
        }
    }
    rows.sort_by(|a, b| a.at.order(&b.at));
    rows
}

/// Every (cell, radius index, radius, point, checkpoint label) of `cells`, at the radii of `spec`
/// that each cell covers: what the member, probe and pair rows pool.
pub(super) fn labelled_points<'a>(
    cells: impl IntoIterator<Item = &'a GapCell>,
    spec: &'a GapSpec,
) -> impl Iterator<Item = (&'a GapCell, usize, f64, &'a GapPoint, &'a str)> {
    cells.into_iter().flat_map(move |c| {
        let radii = spec.eps.iter().copied().enumerate().take(c.eps.len());
        radii.flat_map(move |(k, eps)| {
            c.points
                .iter()
                .flat_map(move |pt| pt.which.iter().map(move |w| (c, k, eps, pt, w.as_str())))
        })
    })
}

/// The row of `rows` that `is`, pushed from `new` when there is none.
pub(super) fn row_mut<R>(rows: &mut Vec<R>, is: impl Fn(&R) -> bool, new: impl FnOnce() -> R) -> &mut R {
    match rows.iter().position(is) {
        Some(i) => &mut rows[i],
        None => {
            rows.push(new());
            rows.last_mut().expect("pushed")
        }
    }
}
