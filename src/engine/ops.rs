//! Differentiable building blocks.
//!
//! candle-nn 0.11.1's fused `ops::layer_norm` (used by `LayerNorm::forward` on contiguous input)
//! and `ops::softmax_last_dim` have no backward pass: gradients silently stop there. These
//! versions are composed from primitive ops that all have a backward, so gradients reach every
//! trainable tensor and the input image (attacks need ∂loss/∂x).

use candle_core::{D, Result, Tensor};

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

/// Whether the fused CPU kernels apply (CPU tensors of f32/f64).
fn fused(x: &Tensor) -> bool {
    x.device().is_cpu() && matches!(x.dtype(), candle_core::DType::F32 | candle_core::DType::F64)
}

/// LayerNorm over the last dimension: (x − mean)/√(var + eps)·w + b, biased variance as in
/// PyTorch's `nn.LayerNorm`. Fused kernel on CPU, composed ops elsewhere.
pub fn layer_norm(x: &Tensor, w: &Tensor, b: &Tensor, eps: f64) -> Result<Tensor> {
    if fused(x) {
        return x
            .contiguous()?
            .apply_op3(&w.contiguous()?, &b.contiguous()?, super::fused::LayerNorm { eps });
    }
    layer_norm_composed(x, w, b, eps)
}

/// LayerNorm from primitive differentiable ops (the reference and the GPU path).
pub fn layer_norm_composed(x: &Tensor, w: &Tensor, b: &Tensor, eps: f64) -> Result<Tensor> {
    let mean = x.mean_keepdim(D::Minus1)?;
    let xc = x.broadcast_sub(&mean)?;
    let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
    let rstd = (var + eps)?.sqrt()?.recip()?;
    xc.broadcast_mul(&rstd)?.broadcast_mul(w)?.broadcast_add(b)
}

/// Softmax over the last dimension. The row maximum is subtracted for stability and detached:
/// softmax is shift-invariant, so its gradient through the maximum is exactly zero.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    if fused(x) {
        return x.contiguous()?.apply_op1(super::fused::Softmax);
    }
    softmax_composed(x)
}

/// Softmax from primitive differentiable ops (the reference and the GPU path).
pub fn softmax_composed(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let e = x.broadcast_sub(&max)?.exp()?;
    let s = e.sum_keepdim(D::Minus1)?;
    e.broadcast_div(&s)
}

/// GELU, erf form (as ViT uses): x·Φ(x). Fused kernel (vectorisable erf) on CPU, candle's
/// `gelu_erf` elsewhere (it has a backward pass).
pub fn gelu(x: &Tensor) -> Result<Tensor> {
    if fused(x) {
        return x.contiguous()?.apply_op1(super::fused::Gelu);
    }
    x.gelu_erf()
}

/// y = x·Wᵀ + b for x of shape [..., in] and W of shape [out, in] (PyTorch `nn.Linear` layout).
/// The leading dimensions are flattened first, so the weight gradient is one [out, in] product
/// (a broadcast matmul would form one per batch element and sum them). With a bias, on CPU, one
/// fused op (`fused::Linear`: bias-initialised gemm forward; gemm ∂x and ∂W, one-pass ∂b).
pub fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    let dims = x.dims();
    let (k, lead) = (dims[dims.len() - 1], x.elem_count() / dims[dims.len() - 1].max(1));
    let x2 = x.contiguous()?.reshape((lead, k))?;
    let y = match b {
        Some(b) if fused(x) => x2.apply_op3(&w.contiguous()?, &b.contiguous()?, super::fused::Linear)?,
        Some(b) => x2.matmul(&w.t()?)?.broadcast_add(b)?,
        None => x2.matmul(&w.t()?)?,
    };
    let mut out = dims.to_vec();
    *out.last_mut().expect("x has a last dimension") = w.dim(0)?;
    y.reshape(out)
}

/// y ⊙ s with s [n] scaling the last dimension of y [..., n] ((IA)³). Fused on CPU
/// (`fused::ScaleCols`: the scale's gradient in one pass over the rows), broadcast elsewhere.
pub fn scale_cols(y: &Tensor, s: &Tensor) -> Result<Tensor> {
    if fused(y) {
        return y.contiguous()?.apply_op2(&s.contiguous()?, super::fused::ScaleCols);
    }
    y.broadcast_mul(s)
}

/// Multi-head attention softmax(Q_h K_hᵀ/√d_h)·V_h on packed projections qkv = [Q | K | V] of
/// shape [B, T, 3D] with `heads` heads side by side within each; output [B, T, D] (heads
/// concatenated, as ViT's context layer). Fused on CPU (`fused::Attention`: no head transposes,
/// ∂qkv written packed), composed elsewhere.
pub fn attention(qkv: &Tensor, heads: usize) -> Result<Tensor> {
    if fused(qkv) {
        // Keep the probabilities for the backward only when there will be one.
        let keep = qkv.track_op();
        return qkv.contiguous()?.apply_op1(super::fused::Attention::new(heads, keep));
    }
    attention_composed(qkv, heads)
}

/// Attention from primitive differentiable ops (the reference and the GPU path).
pub fn attention_composed(qkv: &Tensor, heads: usize) -> Result<Tensor> {
    let (b, t, d3) = qkv.dims3()?;
    let (d, hd) = (d3 / 3, d3 / 3 / heads);
    let split = |i: usize| {
        qkv.narrow(2, i * d, d)?
            .reshape((b, t, heads, hd))?
            .transpose(1, 2)?
            .contiguous()
    };
    let (q, k, v) = (split(0)?, split(1)?, split(2)?);
    let att = (q.matmul(&k.t()?)? * (1.0 / (hd as f64).sqrt()))?;
    let att = softmax_last_dim(&att)?;
    att.matmul(&v)?.transpose(1, 2)?.reshape((b, t, d))
}

/// Mean cross-entropy of logits [N, C] against u32 labels [N] (candle-nn's composition of
/// log-softmax and NLL, both differentiable).
pub fn cross_entropy(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    candle_nn::loss::cross_entropy(logits, labels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Var};

    #[test]
    fn layer_norm_matches_definition_and_has_gradient() {
        let dev = Device::Cpu;
        let x = Var::from_vec(vec![1.0f64, 2.0, 4.0, -1.0, 0.0, 1.0], (2, 3), &dev).unwrap();
        let w = Tensor::new(&[1.0f64, 2.0, 0.5], &dev).unwrap();
        let b = Tensor::new(&[0.0f64, 1.0, -1.0], &dev).unwrap();
        let y = layer_norm(x.as_tensor(), &w, &b, 1e-12).unwrap();
        let row: Vec<f64> = y.get(1).unwrap().to_vec1().unwrap();
        // Row (−1, 0, 1): mean 0, var 2/3 → (−1.2247, 0, 1.2247)·w + b.
        let s = (1.5f64).sqrt();
        for (got, want) in row.iter().zip([-s, 1.0, s * 0.5 - 1.0]) {
            assert!((got - want).abs() < 1e-9, "{got} vs {want}");
        }
        let g = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        assert!(g.get(x.as_tensor()).is_some(), "gradient must reach the input");
    }

    #[test]
    fn softmax_rows_sum_to_one_and_match_candle() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 3.0, (4, 7), &dev).unwrap();
        let ours = softmax_last_dim(&x).unwrap();
        let theirs = candle_nn::ops::softmax_last_dim(&x).unwrap();
        let diff = (ours.clone() - theirs)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff < 1e-6);
        let sums: Vec<f32> = ours.sum(1).unwrap().to_vec1().unwrap();
        assert!(sums.iter().all(|s| (s - 1.0).abs() < 1e-6));
        assert_eq!(ours.dtype(), DType::F32);
    }
}
