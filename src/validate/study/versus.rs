//! `validate versus STANDARD ROBUST`: standard and robust (adversarial) fine-tuning side by side
//! (issue 18, part 1) — per task, radius and strategy the AUC of the (clean, robust) frontier
//! under both, the final clean and robust accuracies, and whether the strategy ranking changes:
//! Spearman ρ between the two AUC rankings over the strategies both folders ran, with a
//! bootstrap interval.
//!
//! The two folders must measure the same thing: the same tasks (by name), the same radii and the
//! same evaluation images; the robust folder's strategies must all be in the standard one.
//! Intervals: 95% percentile bootstrap over seeds and evaluation images. When both folders hold
//! the same tasks with the same seeds — the usual case, one experiment fine-tuned two ways —
//! every replicate draws the **same** seeds and images in both (paired), so the differences
//! robust − standard (AUC, final clean and robust accuracy) get intervals that leave out what both
//! folders share. When one folder holds seeds the other lacks (a standard study grown to five
//! seeds beside robust runs of three), both are compared on the seeds they share, paired, and the
//! Markdown names the seeds left out; with no seed in common for some task, the folders are drawn
//! independently (unpaired, wider) and the Markdown says so. ρ is recomputed on each pair of
//! replicates.
//!
//! Writes `ROBUST/report/versus-<kind>.md` and `.csv`, `<kind>` the first folder's training
//! (`versus-standard` for the usual standard-vs-robust comparison).

use std::collections::BTreeMap;
use std::path::Path;

use crate::engine::peft::Strategy;
use crate::error::{Error, Result};
use crate::io::num;
use crate::io::{Csv, write_atomic};
use crate::tradeoff::bootstrap::percentile_interval;
use crate::tradeoff::stats::spearman;
use crate::tradeoff::{AucRule, Interval};
use crate::validate::study::analysis::{Images, Study, mean_of};
use crate::validate::study::report::{ci_cells, eps_label, with_ci};

/// Bootstrap seed of the comparison: both folders' replicates when paired, the second folder's
/// `SEED ^ 1` when not.
const SEED: u64 = 0x007e_2505;

/// One folder's statistics per (task, radius index, strategy): AUC, final clean and final robust
/// accuracy (seed means), as point estimates and per bootstrap replicate.
struct Aucs {
    point: Stats,
    reps: Vec<Stats>,
}

/// (task, radius index, strategy): what the tables have one row of.
type Key = (String, usize, Strategy);

/// (task, radius index, strategy) → [AUC, final clean, final robust].
type Stats = BTreeMap<Key, [f64; 3]>;

impl Aucs {
    /// Statistic `j` (0 AUC, 1 final clean, 2 final robust) of `k`, per replicate.
    fn column(&self, k: &Key, j: usize) -> Vec<f64> {
        self.reps.iter().map(|r| r[k][j]).collect()
    }
}

fn aucs(study: &Study, keys: &[Key], reps: usize, seed: u64) -> Aucs {
    let di = |name: &str| study.datasets.iter().position(|d| d.name == name).expect("checked");
    let stat = |v: &crate::validate::study::analysis::View| -> Vec<f64> {
        keys.iter()
            .flat_map(|(d, e, s)| {
                let cs = &v[&(di(d), *s)];
                [
                    mean_of(cs, |c| c.auc(*e, AucRule::Step)),
                    mean_of(cs, |c| *c.clean.last().unwrap_or(&f64::NAN)),
                    mean_of(cs, |c| *c.robust[*e].last().unwrap_or(&f64::NAN)),
                ]
            })
            .collect()
    };
    let to_map = |vals: Vec<f64>| {
        keys.iter()
            .cloned()
            .zip(vals.chunks(3).map(|c| [c[0], c[1], c[2]]))
            .collect::<BTreeMap<_, _>>()
    };
    Aucs {
        point: to_map(stat(&study.view(Images::All))),
        reps: study
            .bootstrap(Images::All, reps, seed, stat)
            .into_iter()
            .map(to_map)
            .collect(),
    }
}

/// Whether one bootstrap seed draws the same seeds and images in both studies: the same tasks in
/// the same order, each with the same seeds and evaluation images of the same size
/// ([`Study::replicate`] draws per task the seed positions, then one weight vector per
/// evaluation set, in that order).
fn paired(a: &Study, b: &Study) -> bool {
    // Per task: name, seeds, (evaluation set, size) of its runs.
    type Shape = (String, Vec<u64>, Vec<(Option<String>, usize)>);
    let shape = |s: &Study| -> Vec<Shape> {
        s.datasets
            .iter()
            .map(|d| {
                let mut sets: Vec<(Option<String>, usize)> = d
                    .runs
                    .values()
                    .flatten()
                    .flatten()
                    .map(|r| (r.header.eval_set.clone(), r.n))
                    .collect();
                sets.sort();
                sets.dedup();
                (d.name.clone(), d.seeds.clone(), sets)
            })
            .collect()
    };
    let ok = |s: &Study| {
        s.datasets
            .iter()
            .all(|d| d.resamplable && d.runs.values().flatten().all(|r| r.is_some()))
    };
    ok(a) && ok(b) && shape(a) == shape(b)
}

/// Per task of `b`, the seeds both studies hold, when every such task has some and some task
/// leaves seeds of either study out (None: compare every seed as it is).
fn shared_seeds(a: &Study, b: &Study) -> Option<BTreeMap<String, Vec<u64>>> {
    let mut keep = BTreeMap::new();
    let mut fewer = false;
    for d in &b.datasets {
        let s = a.datasets.iter().find(|x| x.name == d.name)?;
        let both: Vec<u64> = d.seeds.iter().copied().filter(|k| s.seeds.contains(k)).collect();
        if both.is_empty() {
            return None;
        }
        fewer |= both.len() < d.seeds.len() || both.len() < s.seeds.len();
        keep.insert(d.name.clone(), both);
    }
    fewer.then_some(keep)
}

/// ", on the seeds both folders hold (task: seeds; left out: …)" for the Markdown.
fn seeds_left_out(a: &Study, b: &Study, keep: &BTreeMap<String, Vec<u64>>, (la, lb): (&str, &str)) -> String {
    let list = |v: &[u64]| v.iter().map(u64::to_string).collect::<Vec<_>>().join(", ");
    let out = |st: &Study, task: &str, label: &str| -> Option<String> {
        let d = st.datasets.iter().find(|x| x.name == task)?;
        let gone: Vec<u64> = d.seeds.iter().copied().filter(|k| !keep[task].contains(k)).collect();
        (!gone.is_empty()).then(|| format!("{label}'s {}", list(&gone)))
    };
    let parts: Vec<String> = keep
        .iter()
        .map(|(task, seeds)| {
            let gone: Vec<String> = [out(a, task, la), out(b, task, lb)].into_iter().flatten().collect();
            let gone = if gone.is_empty() {
                String::new()
            } else {
                format!(", left out: {}", gone.join(" and "))
            };
            format!("{task} {}{gone}", list(seeds))
        })
        .collect();
    format!(", on the seeds both folders hold ({})", parts.join("; "))
}

/// The comparison as Markdown, written with its CSV to `robust/report/versus-<kind>.{md,csv}`,
/// `<kind>` the first folder's training (`standard`, `pgd-at`, `trades`): a PGD-AT folder set
/// against a TRADES folder leaves the TRADES folder's comparison with standard training in place.
pub fn versus(standard: &Path, robust: &Path, reps: usize) -> Result<String> {
    let (a, b) = (Study::load(standard)?, Study::load(robust)?);
    let (md, csv) = versus_studies(&a, &b, standard, robust, reps)?;
    let dir = robust.join("report");
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let stem = format!("versus-{}", a.training_kind());
    write_atomic(&dir.join(format!("{stem}.md")), md.as_bytes())?;
    write_atomic(&dir.join(format!("{stem}.csv")), csv.as_bytes())?;
    Ok(md)
}

/// The two folders' names in the text: their trainings ("standard", "PGD-AT", "TRADES"), or
/// "first" and "second" when both trained the same way.
fn labels(a: &Study, b: &Study) -> (String, String) {
    let word = |k: &str| match k {
        "pgd-at" | "trades" => k.to_uppercase(),
        _ => k.to_string(),
    };
    let (ka, kb) = (a.training_kind(), b.training_kind());
    if ka == kb {
        ("first".into(), "second".into())
    } else {
        (word(ka), word(kb))
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map_or_else(String::new, |f| f.to_uppercase().chain(c).collect())
}

/// The comparison of the loaded folders `a` (at `standard`) and `b` (at `robust`) as Markdown
/// and CSV, nothing written (also a section of the standard folder's `findings.md` when
/// `validate verdict --with` names the robust folder).
pub fn versus_studies(a: &Study, b: &Study, standard: &Path, robust: &Path, reps: usize) -> Result<(String, String)> {
    let (la, lb) = labels(a, b);
    // Both folders on the seeds they share, when they share some for every task but not all.
    let (shared_a, shared_b);
    let (a, b, seeds_note) = match shared_seeds(a, b) {
        Some(keep) => {
            let note = seeds_left_out(a, b, &keep, (&la, &lb));
            (shared_a, shared_b) = (a.on_seeds(&keep), b.on_seeds(&keep));
            (&shared_a, &shared_b, note)
        }
        None => (a, b, String::new()),
    };
    let keys = compared_keys(a, b, standard, robust)?;
    let pair = paired(a, b);
    let cmp = Comparison {
        sa: aucs(a, &keys, reps, SEED),
        sb: aucs(b, &keys, reps, if pair { SEED } else { SEED ^ 1 }),
        la,
        lb,
        pair,
    };
    let mut md = cmp.intro(a, b, (standard, robust), reps, &seeds_note);
    let mut csv = Csv::new(&COLUMNS);
    let mut groups: BTreeMap<(String, usize), Vec<Strategy>> = BTreeMap::new();
    for (d, e, s) in &keys {
        groups.entry((d.clone(), *e)).or_default().push(*s);
    }
    for ((d, e), strategies) in &groups {
        let eps = b.datasets.iter().find(|x| &x.name == d).expect("present").eps[*e];
        let (la, lb) = (&cmp.la, &cmp.lb);
        md += &format!(
            "\n## {d}, ε = {}\n\n| strategy | AUC, {la} | AUC, {lb} | Δ AUC | final clean, {la} → {lb} (Δ) | final robust, {la} → {lb} (Δ) |\n|---|---|---|---|---|---|\n",
            eps_label(eps)
        );
        for s in strategies {
            md += &cmp.row(&(d.clone(), *e, *s), eps, &mut csv);
        }
        md += &cmp.ranking(d, *e, strategies);
    }
    Ok((md, csv.render()))
}

/// The columns of `versus-<kind>.csv`.
const COLUMNS: [&str; 21] = [
    "dataset",
    "eps",
    "strategy",
    "auc_standard",
    "auc_standard_lo",
    "auc_standard_hi",
    "auc_robust",
    "auc_robust_lo",
    "auc_robust_hi",
    "auc_diff",
    "auc_diff_lo",
    "auc_diff_hi",
    "final_clean_standard",
    "final_clean_robust",
    "final_clean_diff_lo",
    "final_clean_diff_hi",
    "final_robust_standard",
    "final_robust_robust",
    "final_robust_diff_lo",
    "final_robust_diff_hi",
    "paired",
];

/// The (task, radius index, strategy) both folders are compared on: every one of `b`'s, after
/// checking that `a` has the task with the same radii and evaluation images, and the strategy;
/// errors name `robust` and what differs.
fn compared_keys(a: &Study, b: &Study, standard: &Path, robust: &Path) -> Result<Vec<Key>> {
    let refuse = |what: String| Error::Config {
        path: robust.to_path_buf(),
        message: format!("cannot be set against {}: {what}", standard.display()),
    };
    let mut keys = Vec::new();
    for d in &b.datasets {
        let Some(s) = a.datasets.iter().find(|x| x.name == d.name) else {
            return Err(refuse(format!("the standard folder has no task {}", d.name)));
        };
        if s.eps != d.eps {
            return Err(refuse(format!("{}: radii {:?} vs {:?}", d.name, d.eps, s.eps)));
        }
        let ids = |st: &Study, name: &str| -> Vec<Option<String>> {
            st.datasets
                .iter()
                .filter(|x| x.name == name)
                .flat_map(|x| x.runs.values().flatten().flatten().map(|r| r.header.eval_set.clone()))
                .collect()
        };
        let (ia, ib) = (ids(a, &d.name), ids(b, &d.name));
        if ia.first() != ib.first() {
            return Err(refuse(format!("{}: other evaluation images", d.name)));
        }
        for st in d.strategies() {
            if !s.runs.contains_key(&st) {
                return Err(refuse(format!(
                    "{}: the standard folder has no {} runs",
                    d.name,
                    st.id()
                )));
            }
            for e in 0..d.eps.len() {
                keys.push((d.name.clone(), e, st));
            }
        }
    }
    Ok(keys)
}

/// `+0.012 [-0.003, +0.027]`: a difference with its interval, signs shown.
fn signed((v, c): (f64, Option<Interval>)) -> String {
    c.map_or(format!("{v:+.3}"), |c| format!("{v:+.3} [{:+.3}, {:+.3}]", c.lo, c.hi))
}

/// The two folders' statistics side by side, with their names in the text.
struct Comparison {
    /// The first (standard) folder's.
    sa: Aucs,
    /// The second (robust) folder's.
    sb: Aucs,
    /// The first folder's name in the text ([`labels`]).
    la: String,
    /// The second's.
    lb: String,
    /// Whether their replicates are paired ([`paired`]).
    pair: bool,
}

impl Comparison {
    /// The Markdown's title and first paragraph: the folders, the attack, how intervals are drawn.
    fn intro(&self, a: &Study, b: &Study, (standard, robust): (&Path, &Path), reps: usize, seeds_note: &str) -> String {
        let (la, lb) = (&self.la, &self.lb);
        format!(
            "# {} vs {lb} fine-tuning\n\n{la}: {} ({}). {lb}: {} ({}). Robust accuracy under: {}. AUC: step rule; AUC \
             and final accuracies are means over seeds. Intervals: 95% percentile bootstrap over seeds and evaluation \
             images ({reps} replicates), {}{seeds_note}; Δ = {lb} − {la}, a difference counts when its interval \
             excludes 0. ρ: Spearman between the two AUC rankings of the strategies both ran.\n",
            capitalise(la),
            standard.display(),
            a.training,
            robust.display(),
            b.training,
            b.attack,
            if self.pair {
                "paired: both folders hold the same seeds and images and every replicate draws the same ones in both"
            } else {
                "unpaired: the folders hold different seeds or images, so each is drawn independently (wider Δ intervals)"
            }
        )
    }

    /// The AUC's interval in `m`.
    fn ci(m: &Aucs, k: &Key) -> Option<Interval> {
        percentile_interval(&m.column(k, 0))
    }

    /// Robust − standard of statistic `j`, with its interval over the pairs of replicates.
    fn diff(&self, k: &Key, j: usize) -> (f64, Option<Interval>) {
        let d: Vec<f64> = self
            .sb
            .column(k, j)
            .iter()
            .zip(self.sa.column(k, j))
            .map(|(y, x)| y - x)
            .collect();
        (self.sb.point[k][j] - self.sa.point[k][j], percentile_interval(&d))
    }

    /// The Markdown row of `k` (at radius `eps`); its CSV row goes to `csv`.
    fn row(&self, k: &Key, eps: f64, csv: &mut Csv) -> String {
        let (sa, sb) = (&self.sa, &self.sb);
        let ([auc_a, ca, ra], [auc_b, cb, rb]) = (sa.point[k], sb.point[k]);
        let (dauc, dc, dr) = (self.diff(k, 0), self.diff(k, 1), self.diff(k, 2));
        let md = format!(
            "| {} | {} | {} | {} | {ca:.3} → {cb:.3} ({}) | {ra:.3} → {rb:.3} ({}) |\n",
            k.2.name(),
            with_ci(auc_a, Self::ci(sa, k)),
            with_ci(auc_b, Self::ci(sb, k)),
            signed(dauc),
            signed(dc),
            signed(dr)
        );
        let mut row = vec![k.0.clone(), num(eps), k.2.id().into(), num(auc_a)];
        row.extend(ci_cells(Self::ci(sa, k)));
        row.push(num(auc_b));
        row.extend(ci_cells(Self::ci(sb, k)));
        row.push(num(dauc.0));
        row.extend(ci_cells(dauc.1));
        row.extend([num(ca), num(cb)]);
        row.extend(ci_cells(dc.1));
        row.extend([num(ra), num(rb)]);
        row.extend(ci_cells(dr.1));
        row.push(self.pair.to_string());
        csv.push(row);
        md
    }

    /// The line under a (task `d`, radius `e`) table: each folder's best strategies by AUC and
    /// Spearman ρ between the two rankings of `strategies`, with its interval.
    fn ranking(&self, d: &str, e: usize, strategies: &[Strategy]) -> String {
        let (sa, sb) = (&self.sa, &self.sb);
        let rank = |m: &Stats| -> Vec<f64> { strategies.iter().map(|s| m[&(d.to_string(), e, *s)][0]).collect() };
        // Every strategy at the highest AUC (ties named together).
        let best = |m: &Stats| {
            let v = rank(m);
            let top = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            strategies
                .iter()
                .zip(&v)
                .filter(|(_, x)| **x >= top - 1e-12)
                .map(|(s, _)| s.name())
                .collect::<Vec<_>>()
                .join(" = ")
        };
        let rho = spearman(&rank(&sa.point), &rank(&sb.point)).ok();
        let boot: Vec<f64> = sa
            .reps
            .iter()
            .zip(&sb.reps)
            .filter_map(|(x, y)| spearman(&rank(x), &rank(y)).ok())
            .collect();
        format!(
            "\nBest AUC: {} ({}), {} ({}). Spearman ρ between the rankings ({} strategies): {}.\n",
            best(&sa.point),
            self.la,
            best(&sb.point),
            self.lb,
            strategies.len(),
            rho.map_or("– (a constant side)".into(), |r| with_ci(
                r,
                percentile_interval(&boot)
            ))
        )
    }
}
