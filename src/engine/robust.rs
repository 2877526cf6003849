//! Adversarial fine-tuning (issue 18, part 1): what a training step optimises, for every
//! strategy, through the same data-parallel step as standard fine-tuning.
//!
//! * **PGD-AT** (Madry et al. 2018, "Towards deep learning models resistant to adversarial
//!   attacks", ICLR, eq. 2.1): min_θ E max_{‖δ‖∞ ≤ ε} CE(f_θ(x + δ), y). The inner maximum is
//!   PGD on cross-entropy from a uniform random start in the ε-ball, every point all steps
//!   (no early exit: the loss is taken at the last iterate); the outer step is the ordinary
//!   cross-entropy step on the adversarial batch.
//! * **TRADES** (Zhang et al. 2019, "Theoretically principled trade-off between robustness and
//!   accuracy", ICML, eq. 5 and Algorithm 1, as their `trades.py`): min_θ E [CE(f_θ(x), y) +
//!   β·max_{‖x'−x‖∞ ≤ ε} KL(p_θ(x) ‖ p_θ(x'))]. The inner maximum starts from x + 0.001·N(0, I)
//!   (projected) and ascends the KL with p_θ(x) held fixed; the outer loss is differentiated
//!   through both p_θ(x) and p_θ(x'). The KL is a mean over the batch (`trades.py`: summed KL
//!   divided by the batch size). β = 0 is standard fine-tuning.
//!
//! The inner attack runs on the model's frozen view (no parameter gradients), its random start
//! seeded by (run seed, step) on a stream of its own, so the batch order is unchanged.

use candle_core::{D, Result as CResult, Tensor};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

use super::attack::{Classifier, Objective, ascend_all, kl_per_point, project, uniform_noise};
use super::ops::cross_entropy;

/// The inner attack of adversarial fine-tuning (ℓ∞).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TrainAttack {
    /// Radius, in [0, 1] pixel units.
    pub eps: f64,
    /// Step size.
    pub alpha: f64,
    /// Ascent steps.
    pub steps: usize,
}

/// What a fine-tuning step optimises.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Training {
    /// Cross-entropy on the clean batch.
    #[default]
    Standard,
    /// Cross-entropy on the PGD batch (Madry et al. 2018).
    PgdAt(TrainAttack),
    /// Clean cross-entropy + β·KL to the worst-case neighbour (Zhang et al. 2019).
    Trades {
        /// The inner attack.
        attack: TrainAttack,
        /// Weight of the robust term.
        beta: f64,
    },
}

impl Training {
    /// `standard`, `pgd-at` or `trades`.
    pub fn id(&self) -> &'static str {
        match self {
            Training::Standard => "standard",
            Training::PgdAt(_) => "pgd-at",
            Training::Trades { .. } => "trades",
        }
    }

    /// In words, for headers and reports.
    pub fn describe(&self) -> String {
        let a = |t: &TrainAttack| {
            format!(
                "ε = {}/255, α = {}/255, {} steps",
                t.eps * 255.0,
                t.alpha * 255.0,
                t.steps
            )
        };
        match self {
            Training::Standard => "standard fine-tuning".into(),
            Training::PgdAt(t) => format!("PGD adversarial fine-tuning ({})", a(t)),
            Training::Trades { attack, beta } => format!("TRADES fine-tuning (β = {beta}, {})", a(attack)),
        }
    }
}

/// Gaussian noise of standard deviation `sd`, seeded.
fn gaussian(like: &Tensor, sd: f64, seed: u64) -> CResult<Tensor> {
    let mut rng = StdRng::seed_from_u64(seed);
    let v: Vec<f32> = (0..like.elem_count())
        .map(|_| (sd * <StandardNormal as Distribution<f64>>::sample(&StandardNormal, &mut rng)) as f32)
        .collect();
    Tensor::from_vec(v, like.dims(), &candle_core::Device::Cpu)?
        .to_dtype(like.dtype())?
        .to_device(like.device())
}

/// The starting noise of the inner attack for a whole batch (drawn once, so a split batch starts
/// every point where the whole batch would): uniform in [−ε, ε] for PGD-AT, 0.001·N(0, 1) for
/// TRADES, None for standard training.
pub fn start_noise(training: &Training, x: &Tensor, seed: u64) -> CResult<Option<Tensor>> {
    match training {
        Training::Standard => Ok(None),
        Training::PgdAt(a) => Ok(Some(uniform_noise(x.dims(), a.eps, seed, x.dtype(), x.device())?)),
        Training::Trades { .. } => Ok(Some(gaussian(x, 0.001, seed)?)),
    }
}

/// The inner maximisation on `x` [B, C, H, W] in [0, 1] with labels `y`, from `x + noise`
/// ([`start_noise`], projected onto the ε-ball and [0, 1]): the adversarial batch, or `x` itself
/// for standard training. `model` should be the frozen view.
pub fn adversarial_batch<M: Classifier + ?Sized>(
    model: &M,
    training: &Training,
    x: &Tensor,
    y: &Tensor,
    noise: Option<&Tensor>,
) -> CResult<Tensor> {
    let (a, clean_p) = match training {
        Training::Standard => return Ok(x.clone()),
        Training::PgdAt(a) => (a, None),
        Training::Trades { attack, .. } => (
            attack,
            Some(candle_nn::ops::softmax(&model.logits(x)?.detach(), D::Minus1)?),
        ),
    };
    let start = match noise {
        Some(n) => project(&(x + n)?, x, a.eps)?,
        None => x.clone(),
    };
    let objective = match &clean_p {
        Some(p) => Objective::KlFrom(p),
        None => Objective::Ce,
    };
    ascend_all(model, x, y, &objective, start, (a.eps, a.alpha, a.steps))
}

/// TRADES' objective on the logits of the clean and the adversarial batch: CE(z, y) +
/// β·mean_i KL(softmax(z_i) ‖ softmax(z'_i)), differentiable in both.
pub fn trades_loss(clean: &Tensor, adv: &Tensor, y: &Tensor, beta: f64) -> CResult<Tensor> {
    let ce = cross_entropy(clean, y)?;
    let p = candle_nn::ops::softmax(clean, D::Minus1)?;
    ce + (kl_per_point(&p, adv)?.mean_all()? * beta)?
}
