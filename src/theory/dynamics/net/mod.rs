//! The two-layer linear network and the seven strategies as parameterisations of its update.
//!
//! Backbone z = W x + b (W ∈ R^{h×n}, n = 1 + D), head s = uᵀz + c. Every strategy trains the head
//! (u, c) and, on top of it (r: rank, N: Compacter's Kronecker factor):
//!
//! | strategy | backbone (W, b) | extra trainable | count (incl. head h + 1) |
//! |---|---|---|---|
//! | Full | W, b free, from W₀, b₀ | W, b | h·n + h + h + 1 |
//! | Linear probing | W₀, b₀ | – | h + 1 |
//! | BitFit | W₀, b free | b | h + h + 1 |
//! | LoRA | W₀ + B A, b₀ (B = 0 at start) | A ∈ R^{r×n}, B ∈ R^{h×r} | r·(n + h) + h + 1 |
//! | (IA)³ | diag(ℓ)·W₀, ℓ ⊙ b₀ (ℓ = 1 at start) | ℓ ∈ R^h | h + h + 1 |
//! | Adapter | M W₀, M b₀ with M = I + U Dᵀ (U = 0 at start) | U, D ∈ R^{h×r} | 2·h·r + h + 1 |
//! | Compacter | the adapter with U, D = Σᵢ Aᵢ ⊗ (sᵢ tᵢᵀ) | Aᵢ ∈ R^{N×N} shared by U and D; sᵢ ∈ R^{h/N}, tᵢ ∈ R^{r/N} per projection | N³ + 2(h + r) + h + 1 |
//!
//! The adapter is the z + U Dᵀ z: a linear bottleneck without biases or non-linearity, so
//! the whole network stays linear. Compacter follows Karimi Mahabadi et al. 2021 (NeurIPS,
//! "Compacter", eq. (4)–(5)): parameterised hypercomplex multiplication with shared Aᵢ and rank-one
//! "slow" factors Bᵢ = sᵢ tᵢᵀ; its up projection starts at zero through t.
//!
//! A consequence the results depend on: BitFit, (IA)³, Adapter and Compacter change w = Wᵀu only
//! inside the row space of W₀ (for the adapter, w = W₀ᵀ Mᵀ u), exactly like linear probing; only
//! Full and LoRA can reach features the pretrained backbone does not carry. They differ from
//! linear probing through their parameterisation, i.e. through the path gradient descent takes.
//!
//! Parameters live in one flat vector θ = [u, c, strategy block]; [`Net::effective`] maps θ to
//! (w, β) and [`Net::backward`] maps ∂L/∂(w, β) back to ∂L/∂θ. What each strategy does to its
//! block — its length, its start, the backbone it gives and the gradient back — is its
//! [`Parameterisation`], written in the strategy's own file of the registry
//! (`crate::engine::peft`); the shared pieces (the bottleneck [`bottleneck_backbone`] /
//! [`bottleneck_grads`], Compacter's Kronecker sums [`compacter_mats`] / [`compacter_backward`])
//! are here. The theory knows a strategy only through [`StrategyModel`].

use std::borrow::Cow;

use rand::Rng;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand_distr::StandardNormal;

use crate::error::{Error, Result};
use crate::seeds::{Stream, derive, splitmix64};
use crate::theory::StrategyModel;

mod kron;
mod maps;

pub use kron::{compacter_backward, compacter_mats};
pub use maps::{bottleneck_backbone, bottleneck_grads, dot};

/// One strategy as a parameterisation of the backbone update (the table in the module doc): the
/// block of θ it trains after the head, where the block starts, the backbone (W, b) it gives, and
/// ∂L/∂block from ∂L/∂W = u gwᵀ and ∂L/∂b = u·gβ.
pub trait Parameterisation: Sync {
    /// Length of the block (the trainable count less the head's h + 1).
    fn block_len(&self, hidden: usize, inputs: usize, shape: &ModuleSizes) -> usize;
    /// Appends the block's start to `theta`; `gauss(std, k)` draws k module factors N(0, std²)
    /// from the strategy's own stream, in the order they are asked for.
    fn init(&self, layer: &Layer, gauss: &mut dyn FnMut(f64, usize) -> Vec<f64>, theta: &mut Vec<f64>);
    /// The backbone (W row-major h × n, b) the block gives, borrowed where it is W₀ or b₀.
    fn backbone<'a>(&self, layer: &Layer<'a>, blk: &[f64]) -> (Cow<'a, [f64]>, Cow<'a, [f64]>);
    /// Appends ∂L/∂block to `g`, given the head `u`, ∂L/∂w = `gw` and ∂L/∂β = `gbeta`.
    fn backward(&self, layer: &Layer, blk: &[f64], u: &[f64], gw: &[f64], gbeta: f64, g: &mut Vec<f64>);
}

/// What a strategy's parameterisation sees: the pretrained backbone and the module sizes.
#[derive(Debug, Clone, Copy)]
pub struct Layer<'a> {
    /// The pretrained backbone (W₀, b₀).
    pub backbone: &'a Backbone,
    /// The PEFT module sizes.
    pub shape: ModuleSizes,
}

impl<'a> Layer<'a> {
    /// Width h of z.
    pub fn hidden(&self) -> usize {
        self.backbone.hidden
    }
    /// Input width n = 1 + D.
    pub fn inputs(&self) -> usize {
        self.backbone.inputs
    }
    /// W₀ (row-major h × n).
    pub fn w0(&self) -> &'a [f64] {
        &self.backbone.w
    }
    /// b₀.
    pub fn b0(&self) -> &'a [f64] {
        &self.backbone.b
    }
}

/// The pretrained backbone (W₀, b₀), h × (1 + D).
#[derive(Debug, Clone, PartialEq)]
pub struct Backbone {
    hidden: usize,
    inputs: usize,
    w: Vec<f64>,
    b: Vec<f64>,
}

impl Backbone {
    /// A backbone from explicit weights (row-major h × inputs) and biases (h).
    pub fn new(hidden: usize, inputs: usize, w: Vec<f64>, b: Vec<f64>) -> Result<Self> {
        if hidden == 0 || inputs < 2 {
            return Err(Error::invalid("hidden", "need h >= 1 and at least 2 inputs", hidden));
        }
        if w.len() != hidden * inputs || b.len() != hidden {
            return Err(Error::invalid(
                "backbone",
                format!("need {} weights and {hidden} biases", hidden * inputs),
                format!("{} weights, {} biases", w.len(), b.len()),
            ));
        }
        if w.iter().chain(&b).any(|x| !x.is_finite()) {
            return Err(Error::invalid("backbone", "weights must be finite", "NaN or inf"));
        }
        Ok(Self { hidden, inputs, w, b })
    }

    /// The pretrained backbone of an upstream task that used the robust feature and the
    /// non-robust features `upstream` (1-based): W₀ = Q·E, where E selects coordinates
    /// {0} ∪ upstream and Q ∈ R^{h×(1+|upstream|)} has orthonormal columns (Gram–Schmidt on a seeded
    /// Gaussian matrix; needs h ≥ 1 + |upstream|), b₀ = 0. So z carries exactly those coordinates,
    /// isometrically, and nothing else: W₀ᵀW₀ is the projection onto them.
    pub fn pretrained(hidden: usize, dim: usize, upstream: &[usize], seed: u64) -> Result<Self> {
        let cols: Vec<usize> = std::iter::once(0).chain(upstream.iter().copied()).collect();
        if let Some(&j) = upstream.iter().find(|&&j| j == 0 || j > dim) {
            return Err(Error::invalid("upstream", format!("indices must lie in 1..={dim}"), j));
        }
        if hidden < cols.len() {
            return Err(Error::invalid(
                "hidden",
                format!("must be >= 1 + upstream features = {}", cols.len()),
                hidden,
            ));
        }
        let mut rng = StdRng::seed_from_u64(seed);
        let mut q: Vec<Vec<f64>> = Vec::with_capacity(cols.len());
        while q.len() < cols.len() {
            let mut v: Vec<f64> = (0..hidden).map(|_| rng.sample(StandardNormal)).collect();
            for _ in 0..2 {
                for e in &q {
                    let d: f64 = v.iter().zip(e).map(|(a, b)| a * b).sum();
                    v.iter_mut().zip(e).for_each(|(a, b)| *a -= d * b);
                }
            }
            let norm = v.iter().map(|a| a * a).sum::<f64>().sqrt();
            if norm > 1e-8 {
                q.push(v.into_iter().map(|a| a / norm).collect());
            }
        }
        let inputs = 1 + dim;
        let mut w = vec![0.0; hidden * inputs];
        for (k, &j) in cols.iter().enumerate() {
            for i in 0..hidden {
                w[i * inputs + j] = q[k][i];
            }
        }
        Self::new(hidden, inputs, w, vec![0.0; hidden])
    }

    /// Width h of z.
    pub fn hidden(&self) -> usize {
        self.hidden
    }
    /// Input width n = 1 + D.
    pub fn inputs(&self) -> usize {
        self.inputs
    }
    /// W₀ (row-major).
    pub fn weights(&self) -> &[f64] {
        &self.w
    }
    /// b₀.
    pub fn biases(&self) -> &[f64] {
        &self.b
    }
}

/// Sizes of the PEFT modules and the scale of the random head.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModuleSizes {
    /// LoRA rank r.
    pub lora_rank: usize,
    /// Adapter bottleneck r.
    pub adapter_rank: usize,
    /// Compacter's Kronecker factor N (divides h and the bottleneck).
    pub compacter_n: usize,
    /// Compacter bottleneck r.
    pub compacter_rank: usize,
    /// Standard deviation of the initial head weights u (c starts at 0).
    pub head_init: f64,
}

/// Trainable parameter count of `strategy` by its formula (the table in the module doc): the head's
/// h + 1 and the strategy's block.
pub fn trainable_count<S: StrategyModel>(strategy: S, hidden: usize, inputs: usize, shape: &ModuleSizes) -> usize {
    hidden + 1 + strategy.dynamics().block_len(hidden, inputs, shape)
}

/// One strategy on one backbone.
#[derive(Debug, Clone)]
pub struct Net<'a, S> {
    backbone: &'a Backbone,
    strategy: S,
    shape: ModuleSizes,
    len: usize,
}

/// The effective classifier (w, β) and the backbone (W, b) that produced it.
#[derive(Debug, Clone, PartialEq)]
pub struct Effective<'a> {
    /// w = Wᵀu (robust coordinate first).
    pub w: Vec<f64>,
    /// β = uᵀb + c.
    pub beta: f64,
    /// Current backbone weights W (row-major h × n).
    /// (Borrowed from the pretrained backbone where the strategy leaves it unchanged.)
    pub backbone_w: Cow<'a, [f64]>,
    /// Current backbone biases b.
    pub backbone_b: Cow<'a, [f64]>,
}

impl<'a, S: StrategyModel> Net<'a, S> {
    /// Validates the shape against the backbone (ranks ≥ 1, N divides h and the Compacter bottleneck).
    pub fn new(backbone: &'a Backbone, strategy: S, shape: ModuleSizes) -> Result<Self> {
        let h = backbone.hidden;
        for (name, r) in [
            ("lora_rank", shape.lora_rank),
            ("adapter_rank", shape.adapter_rank),
            ("compacter_rank", shape.compacter_rank),
            ("compacter_n", shape.compacter_n),
        ] {
            if r == 0 {
                return Err(Error::invalid(name, "must be >= 1", 0));
            }
        }
        if !h.is_multiple_of(shape.compacter_n) || !shape.compacter_rank.is_multiple_of(shape.compacter_n) {
            return Err(Error::invalid(
                "compacter_n",
                format!(
                    "must divide both the hidden width ({h}) and compacter_rank ({})",
                    shape.compacter_rank
                ),
                shape.compacter_n,
            ));
        }
        if !(shape.head_init.is_finite() && shape.head_init >= 0.0) {
            return Err(Error::invalid(
                "head_init",
                "must be a finite number >= 0",
                shape.head_init,
            ));
        }
        let len = trainable_count(strategy, h, backbone.inputs, &shape);
        Ok(Self {
            backbone,
            strategy,
            shape,
            len,
        })
    }

    /// The strategy.
    pub fn strategy(&self) -> S {
        self.strategy
    }
    /// What the strategy's parameterisation sees.
    pub fn layer(&self) -> Layer<'a> {
        Layer {
            backbone: self.backbone,
            shape: self.shape,
        }
    }
    /// Trainable parameters (the length of θ).
    pub fn trainable(&self) -> usize {
        self.len
    }
    /// The backbone.
    pub fn backbone(&self) -> &Backbone {
        self.backbone
    }

    /// Initial θ: u ~ N(0, head_init²), c = 0; B = 0 (LoRA), ℓ = 1 ((IA)³), U = 0 (Adapter;
    /// Compacter through t of the up projection), W = W₀ and b = b₀ (Full, BitFit); the random
    /// factors A ~ N(0, 1/n) (LoRA), D ~ N(0, 1/h) (Adapter), Aᵢ ~ N(0, 1/N), sᵢ ~ N(0, 1),
    /// t'ᵢ ~ N(0, 1/h) (Compacter down projection). So every strategy starts at the same effective
    /// classifier: W₀ with the random head.
    pub fn init(&self, seed: u64) -> Vec<f64> {
        let h = self.backbone.hidden;
        // Streams of their own (the backbone draws from `seed` itself: sharing it would align the
        // head with W₀'s first column); the module factors apart from the head so that the head
        // is the same for every strategy.
        let mut head_rng = StdRng::seed_from_u64(splitmix64(derive(seed, Stream::DynamicsHead)));
        let mut rng = StdRng::seed_from_u64(splitmix64(derive(seed, Stream::DynamicsModules)));
        let mut gauss =
            |std: f64, k: usize| -> Vec<f64> { (0..k).map(|_| std * rng.sample::<f64, _>(StandardNormal)).collect() };
        let mut theta: Vec<f64> = (0..h)
            .map(|_| self.shape.head_init * head_rng.sample::<f64, _>(StandardNormal))
            .collect();
        theta.push(0.0);
        self.strategy.dynamics().init(&self.layer(), &mut gauss, &mut theta);
        debug_assert_eq!(theta.len(), self.len);
        theta
    }

    fn check(&self, theta: &[f64]) -> Result<()> {
        if theta.len() != self.len {
            return Err(Error::invalid(
                "theta",
                format!("{} needs {} parameters", self.strategy.name(), self.len),
                theta.len(),
            ));
        }
        Ok(())
    }
}
