//! One run as data: its recorded accuracy curves and per-image outcomes ([`RunData`]), and the
//! curves recomputed under image weights ([`Curves`]) that every bootstrap replicate draws.

use crate::engine::peft::{Strategy, parse_strategy};
use crate::error::Result;
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
