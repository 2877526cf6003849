//! Gradient descent along the population loss (or mini-batch SGD on sampled data), evaluated
//! exactly at chosen steps: loss, clean and robust accuracy, and the quadrature check.

use rand::SeedableRng;
use rand::rngs::StdRng;

use super::net::Net;
use super::{Task, sampled_gradient};
use crate::error::{Error, Result, check};
use crate::theory::StrategyModel;
use crate::theory::quadrature::GaussHermite;
use crate::tradeoff::{AucRule, Peak, Point, auc};

/// How to train and where to look.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainSpec {
    /// Number of updates.
    pub steps: u64,
    /// Step size of plain gradient descent.
    pub lr: f64,
    /// Steps after which to evaluate (0 = before training); sorted, ≤ `steps`.
    pub eval_steps: Vec<u64>,
    /// Attack sizes ε ≥ 0 for robust accuracy.
    pub eps: Vec<f64>,
    /// Gauss–Hermite nodes (≥ 32 in configurations; tests may use fewer).
    pub nodes: usize,
    /// `Some(B)`: mini-batch SGD with B fresh samples per step instead of the population gradient.
    pub batch: Option<usize>,
    /// Seed of the SGD sampler.
    pub seed: u64,
}

impl TrainSpec {
    /// Validates lr > 0, ε ≥ 0, the evaluation steps and the batch.
    pub fn check(&self) -> Result<()> {
        check::positive("lr", self.lr)?;
        for &e in &self.eps {
            check::non_negative("eps", e)?;
        }
        if self.eval_steps.windows(2).any(|w| w[0] >= w[1]) {
            return Err(Error::invalid(
                "eval_steps",
                "must be strictly increasing",
                format!("{:?}", self.eval_steps),
            ));
        }
        if let Some(&last) = self.eval_steps.last()
            && last > self.steps
        {
            return Err(Error::invalid(
                "eval_steps",
                format!("must be <= steps = {}", self.steps),
                last,
            ));
        }
        if self.batch == Some(0) {
            return Err(Error::invalid("batch", "must be >= 1", 0));
        }
        Ok(())
    }
}

/// One evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct TrajPoint {
    /// Updates done.
    pub step: u64,
    /// Population logistic loss (quadrature).
    pub loss: f64,
    /// Exact clean accuracy.
    pub clean: f64,
    /// Exact robust accuracy per ε of the spec.
    pub robust: Vec<f64>,
    /// Share of the robust feature in the ℓ₁ norm of w: |w₀|/‖w‖₁.
    pub robust_share: f64,
    /// |L(n nodes) − L(2n nodes)|: the quadrature error estimate at this point.
    pub quad_gap: f64,
}

/// A strategy's trajectory.
#[derive(Debug, Clone, PartialEq)]
pub struct Trajectory<S> {
    /// Strategy trained.
    pub strategy: S,
    /// Trainable parameters.
    pub trainable: usize,
    /// Evaluations in step order.
    pub points: Vec<TrajPoint>,
    /// Effective classifier at the end (w, β).
    pub final_w: Vec<f64>,
    /// Final bias β.
    pub final_beta: f64,
}

impl<S> Trajectory<S> {
    /// (clean, robust at ε index `ei`) pairs.
    pub fn pairs(&self, ei: usize) -> Vec<(f64, f64)> {
        self.points.iter().map(|p| (p.clean, p.robust[ei])).collect()
    }

    /// Area under the Pareto frontier of the trajectory's (clean, robust) points at ε index `ei`.
    pub fn auc(&self, ei: usize, rule: AucRule) -> f64 {
        let pts: Vec<Point> = self
            .pairs(ei)
            .into_iter()
            .map(|(acc, rob)| Point { acc, rob })
            .collect();
        auc(&pts, rule)
    }

    /// The robustness peak at ε index `ei` ([`crate::tradeoff::peak()`]: rise and fall must each
    /// exceed `margin`); its `index` is a position in `points`.
    pub fn peak(&self, ei: usize, margin: f64) -> Peak {
        let r: Vec<f64> = self.points.iter().map(|p| p.robust[ei]).collect();
        crate::tradeoff::peak(&r, margin)
    }

    /// Largest quadrature error estimate along the trajectory.
    pub fn max_quad_gap(&self) -> f64 {
        self.points.iter().map(|p| p.quad_gap).fold(0.0, f64::max)
    }
}

/// Trains `net` from θ₀ on `task` and evaluates at `spec.eval_steps`. A non-finite loss stops
/// with an error naming the strategy, the step and the step size.
pub fn train<S: StrategyModel>(task: &Task, net: &Net<S>, theta0: &[f64], spec: &TrainSpec) -> Result<Trajectory<S>> {
    spec.check()?;
    let gh = GaussHermite::new(spec.nodes)?;
    let gh2 = GaussHermite::new(2 * spec.nodes)?;
    let mut theta = theta0.to_vec();
    let mut rng = StdRng::seed_from_u64(spec.seed);
    let mut points = Vec::with_capacity(spec.eval_steps.len());
    let mut next = spec.eval_steps.iter().peekable();
    let mut eff = net.effective(&theta)?;
    for step in 0..=spec.steps {
        let at_eval = next.peek() == Some(&&step);
        // The population gradient is needed to step (GD) or to report the loss (evaluations);
        // SGD between evaluations needs only its sampled gradient.
        let pop = if spec.batch.is_none() || at_eval {
            Some(task.population(&gh, &eff.w, eff.beta)?)
        } else {
            None
        };
        if at_eval {
            next.next();
            let loss = pop.as_ref().expect("computed at evaluations").loss;
            let l2 = task.population(&gh2, &eff.w, eff.beta)?.loss;
            let l1: f64 = eff.w.iter().map(|x| x.abs()).sum();
            points.push(TrajPoint {
                step,
                loss,
                clean: task.accuracy(&eff.w, eff.beta, 0.0)?,
                robust: spec
                    .eps
                    .iter()
                    .map(|&e| task.accuracy(&eff.w, eff.beta, e))
                    .collect::<Result<_>>()?,
                robust_share: if l1 > 0.0 { eff.w[0].abs() / l1 } else { 0.0 },
                quad_gap: (loss - l2).abs(),
            });
        }
        if step == spec.steps {
            break;
        }
        let g = match (spec.batch, pop) {
            (None, Some(pop)) => pop,
            (Some(b), _) => sampled_gradient(task, &eff.w, eff.beta, b, &mut rng)?,
            (None, None) => unreachable!("population gradient computed for GD"),
        };
        if !g.loss.is_finite() || g.w.iter().any(|x| !x.is_finite()) {
            return Err(Error::invalid(
                "lr",
                format!(
                    "{} diverged at step {step} (loss {}); use a smaller step size",
                    net.strategy().name(),
                    g.loss
                ),
                spec.lr,
            ));
        }
        let grad = net.backward(&theta, &eff, &g.w, g.beta)?;
        theta.iter_mut().zip(&grad).for_each(|(t, g)| *t -= spec.lr * g);
        eff = net.effective(&theta)?;
    }
    Ok(Trajectory {
        strategy: net.strategy(),
        trainable: net.trainable(),
        points,
        final_w: eff.w,
        final_beta: eff.beta,
    })
}
