//! The measured side as data: every run's per-image outcomes, accuracy curves under resampling
//! weights, and the two-level bootstrap behind every interval the reports print.
//!
//! **Bootstrap** (documented in README, "Measurement with power"): a replicate draws the seeds of
//! a dataset with replacement (the same draw for every strategy, so strategies stay paired by
//! seed) and the evaluation images with replacement (one draw per evaluation set, shared by every
//! run that evaluated those images, so strategies, steps and radii stay paired by image). Each
//! drawn seed's curves are recomputed from its per-image outcomes under the image weights; a
//! statistic (mean AUC over the drawn seeds, a rank, a difference of curve values) is computed on
//! the replicate, and the 95% interval is the 2.5–97.5% percentile range over replicates. Runs
//! recorded without per-image outcomes (schema 1) are resampled over seeds only.

use std::collections::BTreeMap;

use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::engine::peft::{Strategy, parse_strategy};
use crate::error::Result;
use crate::tradeoff::bootstrap::{resample_counts, resample_indices};
use crate::tradeoff::{AucRule, Point, auc};
use crate::validate::sweep::records::{self, Header, RunRecords};

/// Accuracy curves of one run, one value per evaluated step.
#[derive(Debug, Clone, PartialEq)]
pub struct Curves {
    /// Clean accuracy.
    pub clean: Vec<f64>,
    /// Robust accuracy per radius: `robust[e][step]`.
    pub robust: Vec<Vec<f64>>,
    /// OOD accuracy.
    pub ood: Option<Vec<f64>>,
}

impl Curves {
    /// The same shape, every value NaN (a replicate that cannot be drawn).
    pub fn undefined(&self) -> Curves {
        let nan = |v: &Vec<f64>| vec![f64::NAN; v.len()];
        Curves {
            clean: nan(&self.clean),
            robust: self.robust.iter().map(nan).collect(),
            ood: self.ood.as_ref().map(nan),
        }
    }

    /// Area under the Pareto frontier of (clean, robust at radius `e`) over the run's steps.
    pub fn auc(&self, e: usize, rule: AucRule) -> f64 {
        let pts: Vec<Point> = self
            .clean
            .iter()
            .zip(&self.robust[e])
            .map(|(&acc, &rob)| Point { acc, rob })
            .collect();
        auc(&pts, rule)
    }
}

/// One run: its header, steps and per-image outcomes.
#[derive(Debug, Clone)]
pub struct RunData {
    /// The run's header.
    pub header: Header,
    /// Strategy.
    pub strategy: Strategy,
    /// Evaluated steps.
    pub steps: Vec<u64>,
    /// Evaluation images.
    pub n: usize,
    /// Outcome levels per step and image (empty for schema 1 records).
    levels: Vec<Vec<u8>>,
    /// OOD correctness per step and image.
    ood: Option<Vec<Vec<u8>>>,
    /// The accuracies as recorded.
    pub recorded: Curves,
    /// Wilson 95% half-width of the recorded clean accuracy per step.
    pub clean_half_width: Vec<f64>,
    /// Mean training loss since the previous evaluation, per step (None at step 0).
    pub loss: Vec<Option<f64>>,
}

impl RunData {
    /// From parsed records; errors name the run when outcome strings are malformed.
    pub fn from_records(r: &RunRecords) -> Result<RunData> {
        let h = &r.header;
        let what = format!("{} outcomes", h.label());
        let has = !r.evals.is_empty() && r.evals.iter().all(|e| e.outcomes.len() == e.n_eval && e.n_eval > 0);
        let levels = if has {
            r.evals
                .iter()
                .map(|e| records::decode_digits(&e.outcomes, &what))
                .collect::<Result<Vec<_>>>()?
        } else {
            Vec::new()
        };
        let ood = if has
            && r.evals
                .iter()
                .all(|e| e.ood_outcomes.as_ref().is_some_and(|o| o.len() == e.n_eval))
        {
            Some(
                r.evals
                    .iter()
                    .map(|e| records::decode_digits(e.ood_outcomes.as_deref().unwrap_or(""), &what))
                    .collect::<Result<Vec<_>>>()?,
            )
        } else {
            None
        };
        let ne = h.eps.len();
        let recorded = Curves {
            clean: r.evals.iter().map(|e| e.clean_acc).collect(),
            robust: (0..ne)
                .map(|k| {
                    r.evals
                        .iter()
                        .map(|e| e.robust.get(k).map_or(f64::NAN, |x| x.acc))
                        .collect()
                })
                .collect(),
            ood: r
                .evals
                .iter()
                .map(|e| e.ood_acc)
                .collect::<Option<Vec<f64>>>()
                .filter(|v| !v.is_empty()),
        };
        Ok(RunData {
            strategy: parse_strategy(&h.strategy)?,
            steps: r.evals.iter().map(|e| e.step).collect(),
            n: r.evals.first().map_or(0, |e| e.n_eval),
            clean_half_width: r.evals.iter().map(|e| (e.clean_ci.hi - e.clean_ci.lo) / 2.0).collect(),
            loss: r.evals.iter().map(|e| e.loss).collect(),
            header: h.clone(),
            levels,
            ood,
            recorded,
        })
    }

    /// Whether every scheduled step has been evaluated.
    pub fn complete(&self) -> bool {
        self.steps == self.header.eval_steps
    }

    /// Whether per-image outcomes were recorded (schema 2).
    pub fn has_outcomes(&self) -> bool {
        !self.levels.is_empty()
    }

    /// The run as `dataset/strategy/seedN`, the name reports use.
    pub fn label(&self) -> String {
        self.header.label()
    }

    /// Per image, whether the model at evaluation `i` classified it correctly (None without
    /// per-image outcomes).
    pub fn clean_correct(&self, i: usize) -> Option<Vec<bool>> {
        self.levels.get(i).map(|l| l.iter().map(|&x| x > 0).collect())
    }

    /// Accuracy curves with image i counted `w[i]` times (None: every image once). Without
    /// per-image outcomes: the recorded accuracies, whatever `w`.
    pub fn curves(&self, w: Option<&[f64]>) -> Curves {
        if !self.has_outcomes() {
            return self.recorded.clone();
        }
        let ne = self.header.eps.len();
        let total: f64 = w.map_or(self.n as f64, |w| w.iter().sum());
        let mut c = Curves {
            clean: Vec::with_capacity(self.steps.len()),
            robust: vec![Vec::with_capacity(self.steps.len()); ne],
            ood: self.ood.as_ref().map(|_| Vec::with_capacity(self.steps.len())),
        };
        let mut hist = vec![0.0f64; ne + 2];
        for (si, lv) in self.levels.iter().enumerate() {
            hist.iter_mut().for_each(|h| *h = 0.0);
            match w {
                Some(w) => lv
                    .iter()
                    .zip(w)
                    .for_each(|(&l, &wi)| hist[(l as usize).min(ne + 1)] += wi),
                None => lv.iter().for_each(|&l| hist[(l as usize).min(ne + 1)] += 1.0),
            }
            // Suffix sums: share with level ≥ k.
            let mut at_least = vec![0.0f64; ne + 3];
            for k in (0..ne + 2).rev() {
                at_least[k] = at_least[k + 1] + hist[k];
            }
            c.clean.push(at_least[1] / total);
            for (e, r) in c.robust.iter_mut().enumerate() {
                r.push(at_least[e + 2] / total);
            }
            if let (Some(o), Some(out)) = (&self.ood, c.ood.as_mut()) {
                let ok: f64 = match w {
                    Some(w) => o[si].iter().zip(w).map(|(&b, &wi)| b as f64 * wi).sum(),
                    None => o[si].iter().map(|&b| b as f64).sum(),
                };
                out.push(ok / total);
            }
        }
        c
    }
}

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

/// The fine-tuning objective of a run configuration (as recorded in a header): "standard",
/// "pgd-at" or "trades".
pub fn training_kind(config: &serde_json::Value) -> &str {
    config["training"].as_str().unwrap_or("standard")
}

/// The fine-tuning objective of a run configuration (as recorded in a header) in words:
/// "standard fine-tuning", or e.g. "pgd-at fine-tuning (train attack ε = 4/255, α = 1/255, 5
/// steps)" and "trades fine-tuning (β = 6, train attack …)" as written.
pub fn describe_training(config: &serde_json::Value) -> String {
    let kind = training_kind(config);
    if kind == "standard" {
        return "standard fine-tuning".into();
    }
    let a = &config["train_attack"];
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "ε/4".into(),
        v => v.to_string(),
    };
    let beta = config["trades_beta"].as_f64().unwrap_or(6.0);
    format!(
        "{kind} fine-tuning ({}train attack ε = {}, α = {}, {} steps)",
        if kind == "trades" {
            format!("β = {beta}, ")
        } else {
            String::new()
        },
        text(&a["eps"]),
        text(&a["alpha"]),
        a["steps"].as_u64().unwrap_or(0)
    )
}

/// The `attack` table of a run configuration (as recorded in a header) in words: kind and budget,
/// e.g. "pgd, 15 steps, α = ε/4" or "autoattack (apgd-ce → apgd-t → fab-t → square), 100 iterations, 9
/// targets, 5000 queries"; defaults are the engine's.
pub fn describe_attack(config: &serde_json::Value) -> String {
    let a = &config["attack"];
    let kind = a["kind"].as_str().unwrap_or("pgd");
    let num = |k: &str, d: u64| a[k].as_u64().unwrap_or(d);
    match kind {
        "pgd" => format!(
            "pgd, {} steps, {}",
            num("steps", 15),
            a["alpha"].as_f64().map_or("α = ε/4".into(), |v| format!("α = {v}"))
        ),
        "apgd" | "apgd-ce" | "apgd-dlr" => format!("{kind}, {} iterations", num("steps", 100)),
        "apgd-t" => format!(
            "apgd-t, {} iterations × {} targets",
            num("steps", 100),
            num("targets", 9)
        ),
        "fab-t" => format!(
            "fab-t, {} iterations × {} targets",
            num("steps", 100),
            num("targets", 9)
        ),
        "square" => format!("square, {} queries", num("queries", 5000)),
        "autoattack" => format!(
            "autoattack (apgd-ce → apgd-t → fab-t → square), {} iterations, {} targets, {} queries",
            num("steps", 100),
            num("targets", 9),
            num("queries", 5000)
        ),
        other => other.to_string(),
    }
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

#[cfg(test)]
mod attack_words {
    use super::describe_attack;
    use serde_json::json;

    /// The report names the attack and its budget, with the engine's defaults where the config
    /// leaves them out.
    #[test]
    fn attacks_in_words() {
        for (attack, want) in [
            (json!({"kind": "pgd", "steps": 15}), "pgd, 15 steps, α = ε/4"),
            (
                json!({"kind": "pgd", "steps": 7, "alpha": 0.001}),
                "pgd, 7 steps, α = 0.001",
            ),
            (
                json!({"kind": "apgd-t", "steps": 50}),
                "apgd-t, 50 iterations × 9 targets",
            ),
            (
                json!({"kind": "fab-t", "targets": 4}),
                "fab-t, 100 iterations × 4 targets",
            ),
            (json!({"kind": "square"}), "square, 5000 queries"),
            (
                json!({"kind": "autoattack", "targets": 3, "queries": 100}),
                "autoattack (apgd-ce → apgd-t → fab-t → square), 100 iterations, 3 targets, 100 queries",
            ),
        ] {
            assert_eq!(describe_attack(&json!({ "attack": attack })), want);
        }
    }
}
