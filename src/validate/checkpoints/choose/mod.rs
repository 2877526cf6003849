//! `validate choose DIR… --min-clean C`: the checkpoint a user should ship (issue 18, part 3).
//!
//! Candidates, per task: every evaluated step of every finished run in the folders given
//! (standard or robust fine-tuning alike — each folder's training is named) and, where a folder
//! has `validate interpolate` results, every interpolation weight strictly between 0 and 1 (α = 0
//! and α = 1 are the runs' first and last steps). Those whose clean accuracy reaches `C` are
//! kept, reduced to the Pareto-optimal ones in (clean, robust at the chosen radius[, OOD]), and
//! ranked by robust accuracy, each with its Wilson 95% interval. A candidate is *tied* with the
//! best when the paired 95% bootstrap interval of (best − candidate) robust accuracy over the
//! shared evaluation images reaches 0: the data cannot tell them apart.
//!
//! Per strategy, the best robust accuracy at the clean target under each source (trajectory,
//! interpolation; per folder) is tabulated as well — the finding "best achievable robustness at
//! the clean target".
//!
//! `--export FILE` rebuilds the top candidate of a task (the run replayed from its recorded
//! configuration and checked against its records, then interpolated when the candidate is on a
//! path) and writes it as one HF-layout safetensors file with its head: LoRA and (IA)³ merged
//! into the backbone weights, Adapter and Compacter with their adapter tensors (they cannot be
//! merged; said in the output).
//!
//! Here the candidates' type and the choice; reading the folders into candidates in
//! `candidates`, the export in `export`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::engine::peft::Strategy;
use crate::error::{Error, Result};
use crate::tradeoff::bootstrap::{percentile_interval, resample_indices};
use crate::tradeoff::stats::wilson;
use crate::validate::checkpoints::interpolate::HeadStart;
use crate::validate::study::report::eps_label;

mod candidates;
mod export;

pub(crate) use candidates::candidates;
pub use export::export;

/// One candidate model.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The folder it comes from.
    pub folder: PathBuf,
    /// Its training in words.
    pub training: String,
    /// Its training's kind: "standard", "pgd-at" or "trades".
    pub kind: String,
    /// The evaluation images' identity, as the run's header records it.
    pub eval_set: Option<String>,
    /// Task.
    pub dataset: String,
    /// Strategy.
    pub strategy: Strategy,
    /// Seed.
    pub seed: u64,
    /// Training step (the final one on an interpolation path).
    pub step: u64,
    /// Interpolation weight, on a path.
    pub alpha: Option<f64>,
    /// Where the path's head starts (`Init` off a path).
    pub head_start: HeadStart,
    /// Level digits per evaluation image.
    pub outcomes: String,
    /// OOD digits, when measured.
    pub ood_outcomes: Option<String>,
}

impl Candidate {
    fn share(&self, min: u8) -> f64 {
        let b = self.outcomes.as_bytes();
        b.iter().filter(|c| **c - b'0' >= min).count() as f64 / b.len().max(1) as f64
    }
    /// Clean accuracy.
    pub fn clean(&self) -> f64 {
        self.share(1)
    }
    /// Robust accuracy at radius index `k`.
    pub fn robust(&self, k: usize) -> f64 {
        self.share(k as u8 + 2)
    }
    /// Robust accuracy at radius index `k` on the image positions `pos` (repeats counted, as a
    /// bootstrap draw has them).
    pub fn robust_on(&self, k: usize, pos: &[usize]) -> f64 {
        let b = self.outcomes.as_bytes();
        pos.iter().filter(|&&i| b[i] - b'0' >= k as u8 + 2).count() as f64 / pos.len() as f64
    }
    /// OOD accuracy.
    pub fn ood(&self) -> Option<f64> {
        self.ood_outcomes.as_ref().map(|o| {
            let b = o.as_bytes();
            b.iter().filter(|c| **c == b'1').count() as f64 / b.len().max(1) as f64
        })
    }
    /// "step 500", "step 1000, α = 0.6" or "step 1000, α = 0.6 from the linear-probe head".
    pub fn point(&self) -> String {
        match self.alpha {
            Some(a) => format!("step {}, α = {a}{}", self.step, self.head_start.words()),
            None => format!("step {}", self.step),
        }
    }
}

/// What to choose.
#[derive(Debug, Clone)]
pub struct ChooseSpec {
    /// Minimum clean accuracy.
    pub min_clean: f64,
    /// Radius (one of the runs'); the smallest when None.
    pub eps: Option<f64>,
    /// Also require Pareto-optimality in OOD accuracy.
    pub ood: bool,
    /// Only this task.
    pub dataset: Option<String>,
}

/// A best robust accuracy and the number of images it is measured on.
pub type Best = (f64, usize);

/// One task's choice.
#[derive(Debug, Clone)]
pub struct Choice {
    /// Task.
    pub dataset: String,
    /// Radius.
    pub eps: f64,
    /// Its index among the runs' radii.
    pub k: usize,
    /// Pareto-optimal candidates meeting the target, by decreasing robust accuracy, each with
    /// whether it is tied with the first.
    pub ranked: Vec<(Candidate, bool)>,
    /// Per (strategy, folder training, source): the best robust accuracy at the target and the
    /// number of images it is measured on, if any candidate of that kind meets it.
    pub best_per_strategy: BTreeMap<(usize, String, &'static str), Best>,
}

/// The kinds of candidate in the per-strategy table, as its columns.
const SOURCES: [&str; 3] = [
    "trajectory",
    "interpolation",
    "interpolation from the linear-probe head",
];

fn source_index(c: &Candidate) -> usize {
    match (c.alpha, c.head_start) {
        (None, _) => 0,
        (Some(_), HeadStart::Init) => 1,
        (Some(_), HeadStart::LinearProbe) => 2,
    }
}

/// Chooses, per task, among the candidates of `dirs`.
pub fn choose(dirs: &[PathBuf], spec: &ChooseSpec) -> Result<Vec<Choice>> {
    if !(0.0..=1.0).contains(&spec.min_clean) {
        return Err(Error::invalid("--min-clean", "an accuracy in [0, 1]", spec.min_clean));
    }
    let (all, radii) = candidates(dirs)?;
    let k = radius_index(spec.eps, &radii)?;
    let mut tasks: Vec<String> = all.iter().map(|c| c.dataset.clone()).collect();
    tasks.sort();
    tasks.dedup();
    if let Some(d) = &spec.dataset {
        if !tasks.contains(d) {
            return Err(Error::invalid("--dataset", format!("one of {}", tasks.join(", ")), d));
        }
        tasks.retain(|t| t == d);
    }
    let mut choices = Vec::new();
    for task in tasks {
        let pool: Vec<&Candidate> = all.iter().filter(|c| c.dataset == task).collect();
        let meets: Vec<&Candidate> = pool.iter().copied().filter(|c| c.clean() >= spec.min_clean).collect();
        if meets.is_empty() {
            return Err(unreachable_target(&pool, &task, spec.min_clean));
        }
        let front = pareto_front(&meets, k, spec.ood);
        choices.push(Choice {
            ranked: tied_with_best(&front, k),
            best_per_strategy: best_per_strategy(&meets, k),
            dataset: task,
            eps: radii[k],
            k,
        });
    }
    Ok(choices)
}

/// The index of `--eps` among the runs' `radii` (0, the smallest, when not given).
fn radius_index(eps: Option<f64>, radii: &[f64]) -> Result<usize> {
    match eps {
        None => Ok(0),
        Some(e) => radii
            .iter()
            .position(|r| (r - e).abs() <= 1e-12 * r.abs().max(1.0))
            .ok_or_else(|| {
                Error::invalid(
                    "--eps",
                    format!(
                        "one of the runs' radii ({})",
                        radii.iter().map(|r| eps_label(*r)).collect::<Vec<_>>().join(", ")
                    ),
                    eps_label(e),
                )
            }),
    }
}

/// The error when no candidate of `task` (`pool`) reaches `min_clean`: it names the best clean
/// accuracy there is.
fn unreachable_target(pool: &[&Candidate], task: &str, min_clean: f64) -> Error {
    let best = pool
        .iter()
        .max_by(|a, b| a.clean().total_cmp(&b.clean()))
        .expect("a task has candidates");
    Error::invalid(
        "--min-clean",
        format!(
            "a clean accuracy some candidate of {task} reaches: the best is {:.3} ({} seed {}, {})",
            best.clean(),
            best.strategy.id(),
            best.seed,
            best.point()
        ),
        min_clean,
    )
}

/// The candidates of `meets` no other one dominates in (clean, robust at radius `k`[, OOD when
/// `ood`]), by decreasing robust accuracy, then clean accuracy.
fn pareto_front<'a>(meets: &[&'a Candidate], k: usize, ood: bool) -> Vec<&'a Candidate> {
    let key = |c: &Candidate| {
        let mut v = vec![c.clean(), c.robust(k)];
        if ood {
            v.push(c.ood().unwrap_or(f64::NEG_INFINITY));
        }
        v
    };
    let dominated = |c: &Candidate| {
        let kc = key(c);
        meets.iter().any(|o| {
            let ko = key(o);
            ko.iter().zip(&kc).all(|(a, b)| a >= b) && ko.iter().zip(&kc).any(|(a, b)| a > b)
        })
    };
    let mut front: Vec<&Candidate> = meets.iter().copied().filter(|c| !dominated(c)).collect();
    front.sort_by(|a, b| {
        b.robust(k)
            .total_cmp(&a.robust(k))
            .then(b.clean().total_cmp(&a.clean()))
    });
    front
}

/// Per (strategy, folder training, source), the best robust accuracy at radius `k` among the
/// candidates meeting the target, and the number of images it is measured on.
fn best_per_strategy(meets: &[&Candidate], k: usize) -> BTreeMap<(usize, String, &'static str), Best> {
    let mut best = BTreeMap::new();
    for c in meets {
        let s = Strategy::ALL
            .iter()
            .position(|s| *s == c.strategy)
            .unwrap_or(usize::MAX);
        let source = SOURCES[source_index(c)];
        let slot = best
            .entry((s, c.training.clone(), source))
            .or_insert((f64::NEG_INFINITY, c.outcomes.len()));
        if c.robust(k) > slot.0 {
            *slot = (c.robust(k), c.outcomes.len());
        }
    }
    best
}

/// The front with, for each candidate, whether the paired bootstrap interval (1000 replicates
/// over the evaluation images) of the first's robust accuracy minus its own reaches 0.
fn tied_with_best(front: &[&Candidate], k: usize) -> Vec<(Candidate, bool)> {
    let Some(best) = front.first() else {
        return Vec::new();
    };
    let n = best.outcomes.len();
    let mut rng = StdRng::seed_from_u64(crate::seeds::splitmix64(0x00c4_0053));
    let draws: Vec<Vec<usize>> = (0..1000).map(|_| resample_indices(n, n, &mut rng)).collect();
    front
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let tied = i == 0
                || c.outcomes.len() != n
                || percentile_interval(
                    &draws
                        .iter()
                        .map(|d| best.robust_on(k, d) - c.robust_on(k, d))
                        .collect::<Vec<_>>(),
                )
                .is_none_or(|ci| ci.lo <= 0.0);
            ((*c).clone(), tied)
        })
        .collect()
}

/// The choices as Markdown.
pub fn render(choices: &[Choice], spec: &ChooseSpec) -> Result<String> {
    let mut s = String::new();
    for ch in choices {
        let pct = |c: &Candidate, v: f64| with_wilson(v, c.outcomes.len() as u64);
        s += &format!(
            "## {}: clean ≥ {:.3}, robust at ε = {}{}\n\n| rank | strategy | training | seed | checkpoint | clean | robust | OOD | tied with the best |\n|---|---|---|---|---|---|---|---|---|\n",
            ch.dataset,
            spec.min_clean,
            eps_label(ch.eps),
            if spec.ood { ", Pareto-optimal in OOD too" } else { "" }
        );
        for (i, (c, tied)) in ch.ranked.iter().enumerate() {
            s += &format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                i + 1,
                c.strategy.name(),
                c.training,
                c.seed,
                c.point(),
                pct(c, c.clean())?,
                pct(c, c.robust(ch.k))?,
                c.ood().map_or("–".into(), |o| format!("{:.1}%", 100.0 * o)),
                if *tied { "yes" } else { "no" }
            );
        }
        // Columns: the trajectory, the interpolation, and the one from the linear-probe head when
        // some folder has it.
        let lp = ch.best_per_strategy.keys().any(|k| k.2 == SOURCES[2]);
        let cols = if lp { 3 } else { 2 };
        s += &format!(
            "\nBest robust accuracy at the clean target, per strategy (over every seed, step and weight; Wilson 95% \
             interval of that one candidate, optimistic by selection):\n\n| strategy | training | {} |\n|---|---|{}\n",
            SOURCES[..cols].join(" | "),
            "---|".repeat(cols)
        );
        let mut rows: BTreeMap<(usize, String), [Option<Best>; 3]> = BTreeMap::new();
        for ((si, training, source), v) in &ch.best_per_strategy {
            let slot = rows.entry((*si, training.clone())).or_default();
            slot[SOURCES.iter().position(|x| x == source).expect("one of them")] = Some(*v);
        }
        for ((si, training), vals) in rows {
            let name = Strategy::ALL.get(si).map_or("?", |s| s.name());
            let cells = vals[..cols]
                .iter()
                .map(|v| match v {
                    None => Ok("–".to_string()),
                    Some((r, n)) => with_wilson(*r, *n as u64),
                })
                .collect::<Result<Vec<String>>>()?;
            s += &format!("| {name} | {training} | {} |\n", cells.join(" | "));
        }
        s += "\n";
    }
    Ok(s)
}

/// An accuracy `v` on `n` images as a percentage with its Wilson 95% interval (`v·n` rounded
/// to the images it counts).
fn with_wilson(v: f64, n: u64) -> Result<String> {
    let w = wilson((v * n as f64).round() as u64, n)?;
    Ok(format!("{:.1}% [{:.1}, {:.1}]", 100.0 * v, 100.0 * w.lo, 100.0 * w.hi))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(outcomes: &str) -> Candidate {
        Candidate {
            folder: PathBuf::new(),
            training: "standard fine-tuning".into(),
            kind: "standard".into(),
            eval_set: None,
            dataset: "t".into(),
            strategy: Strategy::Lora,
            seed: 0,
            step: 1,
            alpha: None,
            head_start: HeadStart::Init,
            outcomes: outcomes.into(),
            ood_outcomes: None,
        }
    }

    /// Robust at radius 0 means digit ≥ 2. A candidate one image behind the best on 200 images
    /// is tied; one 60 images behind is not; the best is tied with itself.
    #[test]
    fn ties_are_paired_bootstrap_intervals_reaching_zero() {
        let best = cand(&"2".repeat(200));
        let close = cand(&format!("1{}", "2".repeat(199)));
        let far = cand(&format!("{}{}", "1".repeat(60), "2".repeat(140)));
        let ranked = tied_with_best(&[&best, &close, &far], 0);
        let tied: Vec<bool> = ranked.iter().map(|(_, t)| *t).collect();
        assert_eq!(tied, [true, true, false]);
        assert!((far.robust(0) - 0.7).abs() < 1e-12 && (far.clean() - 1.0).abs() < 1e-12);
    }
}
