//! The measured side as data: every run's per-image outcomes, accuracy curves under resampling
//! weights, and the two-level bootstrap behind every interval the reports print.
//!
//! **Bootstrap** (documented in the guide, docs/src/reading-results.md): a replicate draws the seeds of
//! a dataset with replacement (the same draw for every strategy, so strategies stay paired by
//! seed) and the evaluation images with replacement (one draw per evaluation set, shared by every
//! run that evaluated those images, so strategies, steps and radii stay paired by image). Each
//! drawn seed's curves are recomputed from its per-image outcomes under the image weights; a
//! statistic (mean AUC over the drawn seeds, a rank, a difference of curve values) is computed on
//! the replicate, and the 95% interval is the 2.5–97.5% percentile range over replicates. Runs
//! recorded without per-image outcomes (schema 1) are resampled over seeds only.
//!
//! Here a folder's runs grouped by dataset ([`Study`]) with its views and replicates; one run's
//! curves in `run` ([`RunData`], [`Curves`]), configurations in words in `words`.

use std::collections::BTreeMap;

use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::engine::peft::Strategy;
use crate::error::Result;
use crate::tradeoff::bootstrap::{resample_counts, resample_indices};
use crate::validate::sweep::records::{self, RunRecords};

mod run;
mod words;

pub use run::{Curves, RunData};
pub use words::{describe_attack, describe_training, training_kind};

/// Which evaluation images a view or bootstrap uses: all, or one half (even or odd positions in
/// the evaluation list) — the rise-then-fall test picks its peak on one half and tests on the
/// other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Images {
    /// Every evaluation image.
    All,
    /// Positions 0, 2, 4, …
    Even,
    /// Positions 1, 3, 5, …
    Odd,
}

impl Images {
    fn keeps(self, i: usize) -> bool {
        match self {
            Images::All => true,
            Images::Even => i.is_multiple_of(2),
            Images::Odd => i % 2 == 1,
        }
    }

    /// Weights selecting the half (None for all images).
    fn mask(self, n: usize) -> Option<Vec<f64>> {
        (self != Images::All).then(|| (0..n).map(|i| f64::from(u8::from(self.keeps(i)))).collect())
    }
}

/// The complete runs of one dataset.
#[derive(Debug, Clone)]
pub struct DatasetData {
    /// Dataset name.
    pub name: String,
    /// Seeds present (sorted).
    pub seeds: Vec<u64>,
    /// Strategy → run per seed position (None where that seed is missing).
    pub runs: BTreeMap<Strategy, Vec<Option<RunData>>>,
    /// Attack radii.
    pub eps: Vec<f64>,
    /// Evaluated steps (the schedule).
    pub steps: Vec<u64>,
    /// Whether a bootstrap has anything to resample: per-image outcomes in every run, or at
    /// least [`MIN_SEEDS_WITHOUT_OUTCOMES`] seeds. Otherwise every interval is undefined (and
    /// every verdict undecided) rather than a zero-width interval around one number.
    pub resamplable: bool,
}

/// Seeds needed to bootstrap runs recorded without per-image outcomes (schema 1).
pub const MIN_SEEDS_WITHOUT_OUTCOMES: usize = 3;

impl DatasetData {
    /// Strategies in the canonical order.
    pub fn strategies(&self) -> Vec<Strategy> {
        Strategy::ALL
            .iter()
            .copied()
            .filter(|s| self.runs.contains_key(s))
            .collect()
    }

    /// Any run (for header fields every run of the dataset shares).
    pub fn any_run(&self) -> &RunData {
        self.runs
            .values()
            .flatten()
            .flatten()
            .next()
            .expect("a dataset has at least one run")
    }
}

/// Every complete run of a folder, grouped by dataset; incomplete runs are listed apart.
#[derive(Debug, Clone)]
pub struct Study {
    /// Datasets in name order.
    pub datasets: Vec<DatasetData>,
    /// Runs whose schedule is not finished ("dataset/strategy/seedN").
    pub incomplete: Vec<String>,
    /// The attack behind the robust accuracies, as configured ([`describe_attack`]).
    pub attack: String,
    /// What fine-tuning optimised ([`describe_training`]).
    pub training: String,
}

/// Per (dataset index, strategy): curves of the seeds drawn (skipping seeds that are missing).
pub type View = BTreeMap<(usize, Strategy), Vec<Curves>>;

impl Study {
    /// Groups parsed runs. Records of more than one experiment in one folder (configurations
    /// that differ in more than the seed and strategy lists and the other strategies' learning
    /// rates, [`records::experiment_hash`]:
    /// another radius, another schedule, …) are refused, naming each hash and its runs, rather
    /// than mixed into one table.
    pub fn new(runs: &[RunRecords]) -> Result<Study> {
        records::check_one_experiment(runs.iter().map(|r| &r.header))?;
        let mut by_ds: BTreeMap<String, Vec<RunData>> = BTreeMap::new();
        let mut incomplete = Vec::new();
        for r in runs {
            let d = RunData::from_records(r)?;
            if d.complete() {
                by_ds.entry(d.header.dataset.clone()).or_default().push(d);
            } else {
                incomplete.push(d.label());
            }
        }
        let datasets = by_ds
            .into_iter()
            .map(|(name, rs)| {
                let mut seeds: Vec<u64> = rs.iter().map(|r| r.header.seed).collect();
                seeds.sort_unstable();
                seeds.dedup();
                let eps = rs[0].header.eps.clone();
                let steps = rs[0].steps.clone();
                let mut runs: BTreeMap<Strategy, Vec<Option<RunData>>> = BTreeMap::new();
                for r in rs {
                    let pos = seeds.iter().position(|s| *s == r.header.seed).expect("listed");
                    let slots = runs.entry(r.strategy).or_insert_with(|| vec![None; seeds.len()]);
                    slots[pos] = Some(r);
                }
                let outcomes = runs.values().flatten().flatten().all(RunData::has_outcomes);
                DatasetData {
                    resamplable: outcomes || seeds.len() >= MIN_SEEDS_WITHOUT_OUTCOMES,
                    name,
                    seeds,
                    runs,
                    eps,
                    steps,
                }
            })
            .collect();
        let attack = runs
            .first()
            .map_or_else(String::new, |r| describe_attack(&r.header.config));
        let training = runs
            .first()
            .map_or_else(String::new, |r| describe_training(&r.header.config));
        Ok(Study {
            datasets,
            incomplete,
            attack,
            training,
        })
    }

    /// The same study on the seeds `keep` lists for each task (a task it does not list keeps all
    /// of its seeds); a strategy left without runs drops out of its task.
    pub fn on_seeds(&self, keep: &BTreeMap<String, Vec<u64>>) -> Study {
        let mut study = self.clone();
        for d in &mut study.datasets {
            let Some(k) = keep.get(&d.name) else { continue };
            let pos: Vec<usize> = (0..d.seeds.len()).filter(|&i| k.contains(&d.seeds[i])).collect();
            d.seeds = pos.iter().map(|&i| d.seeds[i]).collect();
            for runs in d.runs.values_mut() {
                *runs = pos.iter().map(|&i| runs[i].take()).collect();
            }
            d.runs.retain(|_, runs| runs.iter().any(Option::is_some));
            let outcomes = d.runs.values().flatten().flatten().all(RunData::has_outcomes);
            d.resamplable = outcomes || d.seeds.len() >= MIN_SEEDS_WITHOUT_OUTCOMES;
        }
        study
    }

    /// The fine-tuning objective its runs share ([`training_kind`]: "standard", "pgd-at",
    /// "trades"); "standard" for a study without runs.
    pub fn training_kind(&self) -> &str {
        self.datasets
            .iter()
            .flat_map(|d| d.runs.values().flatten().flatten())
            .next()
            .map_or("standard", |r| training_kind(&r.header.config))
    }

    /// Every run folder's records (`dir/<dataset>/<strategy>/seed*.jsonl`), grouped; an error when
    /// no run has finished (naming the unfinished ones) or the folder mixes configurations.
    pub fn load(dir: &std::path::Path) -> Result<Study> {
        let study = Study::new(&records::read_folder(dir)?)?;
        if study.datasets.is_empty() {
            return Err(crate::error::Error::invalid(
                dir.display().to_string(),
                "at least one finished run (every scheduled step evaluated)",
                format!("only unfinished runs: {}", study.incomplete.join(", ")),
            ));
        }
        Ok(study)
    }

    /// The curves of every run on `images`, each seed once (the point estimate).
    pub fn view(&self, images: Images) -> View {
        let mut v = View::new();
        for (di, d) in self.datasets.iter().enumerate() {
            for (s, runs) in &d.runs {
                let c = runs
                    .iter()
                    .flatten()
                    .map(|r| r.curves(images.mask(r.n).as_deref()))
                    .collect();
                v.insert((di, *s), c);
            }
        }
        v
    }

    /// One bootstrap replicate (see the module docs) restricted to `images`.
    pub fn replicate(&self, images: Images, rng: &mut StdRng) -> View {
        let mut v = View::new();
        for (di, d) in self.datasets.iter().enumerate() {
            let draw = resample_indices(d.seeds.len(), d.seeds.len(), rng);
            // One image weight vector per evaluation set.
            let mut weights: BTreeMap<Option<String>, Vec<f64>> = BTreeMap::new();
            for (s, runs) in &d.runs {
                let mut cs = Vec::with_capacity(draw.len());
                for &k in &draw {
                    let Some(r) = &runs[k] else { continue };
                    let w = weights.entry(r.header.eval_set.clone()).or_insert_with(|| {
                        let kept: Vec<usize> = (0..r.n).filter(|&i| images.keeps(i)).collect();
                        let counts = resample_counts(kept.len(), rng);
                        let mut w = vec![0.0; r.n];
                        for (&i, c) in kept.iter().zip(counts) {
                            w[i] = c;
                        }
                        w
                    });
                    // A run whose outcomes do not match the set's size cannot share its weights.
                    let c = r.curves((w.len() == r.n).then_some(w.as_slice()));
                    cs.push(if d.resamplable { c } else { c.undefined() });
                }
                v.insert((di, *s), cs);
            }
        }
        v
    }

    /// `reps` replicates of `stat` (a vector of statistics per replicate), seeded.
    pub fn bootstrap(&self, images: Images, reps: usize, seed: u64, stat: impl Fn(&View) -> Vec<f64>) -> Vec<Vec<f64>> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..reps).map(|_| stat(&self.replicate(images, &mut rng))).collect()
    }
}

/// Mean over a list of curves of one statistic per curve.
pub fn mean_of(cs: &[Curves], f: impl Fn(&Curves) -> f64) -> f64 {
    if cs.is_empty() {
        return f64::NAN;
    }
    cs.iter().map(f).sum::<f64>() / cs.len() as f64
}

/// The step-wise mean of a curve family (`pick` selects clean, a radius or OOD).
pub fn mean_curve(cs: &[Curves], pick: impl Fn(&Curves) -> Option<&Vec<f64>>) -> Vec<f64> {
    let rows: Vec<&Vec<f64>> = cs.iter().filter_map(pick).collect();
    let Some(first) = rows.first() else { return Vec::new() };
    (0..first.len())
        .map(|i| rows.iter().map(|r| r[i]).sum::<f64>() / rows.len() as f64)
        .collect()
}

/// Column `j` of replicate statistics.
pub fn column(reps: &[Vec<f64>], j: usize) -> Vec<f64> {
    reps.iter().map(|r| r[j]).collect()
}
