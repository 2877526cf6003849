//! Differentiable building blocks: the ops of [`super::kernels`] (fused on CPU, composed from
//! candle's primitives elsewhere — see [`super::kernels::route`]), cross-entropy, and a tensor
//! distance for tests.
//!
//! candle-nn 0.11.1's fused `ops::layer_norm` (used by `LayerNorm::forward` on contiguous input)
//! and `ops::softmax_last_dim` have no backward pass: gradients silently stop there. Every op here
//! has one, so gradients reach every trainable tensor and the input image (attacks need ∂loss/∂x).

use candle_core::{Result, Tensor};

/// max |a − b| over all elements, as f64 (any float dtype): how far two computations of the same
/// tensor (fused vs composed, split vs whole batch, merged vs unmerged) are apart.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> Result<f64> {
    (a - b)?
        .abs()?
        .flatten_all()?
        .max(0)?
        .to_dtype(candle_core::DType::F64)?
        .to_scalar::<f64>()
}

pub use super::kernels::{
    attention, attention_composed, gelu, layer_norm, layer_norm_composed, linear, scale_cols, softmax_composed,
    softmax_last_dim,
};

/// Mean cross-entropy of logits `[N, C]` against u32 labels `[N]` (candle-nn's composition of
/// log-softmax and NLL, both differentiable).
pub fn cross_entropy(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    candle_nn::loss::cross_entropy(logits, labels)
}
