//! What the theory needs of a fine-tuning strategy, and nothing more: its names, its trainable
//! count on ViT-B/16 (the k of the fine-tuning bound) and its parameterisation of the two-layer
//! linear network (the training dynamics). The strategies themselves — the registry, one file
//! each — are `crate::engine::peft`'s; the theory is written for any [`StrategyModel`].

use crate::theory::dynamics::net::Parameterisation;

/// Trainable backbone parameters of ViT-B/16 (ImageNet-21k, HF layout, no pooler, head
/// excluded): full fine-tuning's count in Li et al. 2025 (arXiv:2503.14836, the strategy table of
/// §4), the denominator of every strategy's k = d · params/params_full.
pub const VIT_B16_BACKBONE: u64 = 85_798_656;

/// A fine-tuning strategy as the theory sees it.
pub trait StrategyModel:
    Copy + Eq + Ord + std::hash::Hash + std::fmt::Debug + serde::Serialize + Send + Sync + 'static
{
    /// Display name.
    fn name(self) -> &'static str;

    /// Short ASCII identifier (file names, CSV columns).
    fn id(self) -> &'static str;

    /// Trainable backbone parameters on ViT-B/16 (head excluded), as Li et al. 2025 report them.
    fn vit_b16_params(self) -> u64;

    /// Its parameterisation of the two-layer linear network (`theory::dynamics`).
    fn dynamics(self) -> &'static dyn Parameterisation;

    /// Fraction of the full backbone it trains: params / params_full.
    fn param_fraction(self) -> f64 {
        self.vit_b16_params() as f64 / VIT_B16_BACKBONE as f64
    }

    /// Its k on a task whose pretrained classifier uses d features: k = d · params/params_full
    /// (full fine-tuning: k = d; linear probing: k = 0).
    fn k_for(self, d: f64) -> f64 {
        d * self.param_fraction()
    }
}
