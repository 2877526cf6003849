//! Multi-head attention on packed [Q | K | V] projections, no head transposed or copied, ∂qkv
//! written in the same packed layout; the composed reference splits heads, transposes and uses
//! the composed softmax.
//!
//! When gradients are needed the attention is two ops, so that what the backward needs is an
//! output of the forward, not state kept on the side: [`AttentionProbs`] (qkv → the B·heads·T²
//! probabilities P, kept by autograd as PyTorch's eager attention keeps them) and
//! [`AttentionApply`] ((P, qkv) → P·V per head). Each backward writes only its part of ∂qkv
//! (Q and K, or V); autograd adds the two, and since their nonzero parts are disjoint the sum is
//! exact. Without gradients one op, [`Attention`], computes each head's P in a T×T scratch.

mod backward;

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor, bail};

use super::softmax::{softmax_in_place, softmax_last_dim};
use super::{Float, Mat, Route, contiguous, float_dispatch, gemm_into, out_vec, route, simd, threads};
use backward::{ApplyGradP, ApplyGradV, ProbsGrad};

/// Multi-head attention softmax(Q_h K_hᵀ/√d_h)·V_h on packed projections qkv = [Q | K | V] of
/// shape [B, T, 3D] with `heads` heads side by side within each; output [B, T, D] (heads
/// concatenated, as ViT's context layer). Fused on CPU (see the module docs), composed elsewhere.
pub fn attention(qkv: &Tensor, heads: usize) -> Result<Tensor> {
    if route(qkv) == Route::Fused {
        let qkv = qkv.contiguous()?;
        if !qkv.track_op() {
            return qkv.apply_op1(Attention { heads });
        }
        let p = qkv.apply_op1(AttentionProbs { heads })?;
        return p.apply_op2(&qkv, AttentionApply { heads });
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

/// The sizes of packed attention: batch, tokens, model width D (qkv has 3D columns), heads.
#[derive(Debug, Clone, Copy)]
struct Dims {
    b: usize,
    t: usize,
    d: usize,
    heads: usize,
}

impl Dims {
    /// The sizes of a packed qkv [B, T, 3D] with D divisible by `heads`.
    fn of(qkv: &Layout, heads: usize) -> Result<Self> {
        let (b, t, d3) = qkv.shape().dims3()?;
        if heads == 0 || d3 % (3 * heads) != 0 {
            bail!(
                "fused attention: qkv {:?} is not [B, T, 3·D] with D divisible by {heads} heads",
                qkv.dims()
            );
        }
        Ok(Dims { b, t, d: d3 / 3, heads })
    }
    /// Head width.
    fn hd(&self) -> usize {
        self.d / self.heads
    }
    /// Row stride of qkv.
    fn ld(&self) -> usize {
        3 * self.d
    }
    /// 1/√d_h.
    fn scale<T: Float>(&self) -> T {
        T::from_f64(1.0 / (self.hd() as f64).sqrt())
    }
    /// Columns of head h's Q, K and V within a qkv row.
    fn cols(&self, h: usize) -> (usize, usize, usize) {
        let hd = self.hd();
        (h * hd, self.d + h * hd, 2 * self.d + h * hd)
    }
    /// The probabilities' shape [B, heads, T, T].
    fn probs_shape(&self) -> Shape {
        (self.b, self.heads, self.t, self.t).into()
    }
    /// Offset of the T×T block of (batch b, head h) in the probabilities.
    fn block(&self, b: usize, h: usize) -> usize {
        (b * self.heads + h) * self.t * self.t
    }
}

/// P = softmax(scale·Q_h K_hᵀ) into `p` (T×T) for the head whose columns start at q[0], k[0].
///
/// # Safety
/// q and k hold T rows of stride `ld` from their first element, with the head's hd columns.
unsafe fn attention_probs<T: Float>(q: &[T], k: &[T], (t, ld, hd): (usize, usize, usize), scale: T, p: &mut [T]) {
    // SAFETY: forwarded from the caller; p is t×t.
    unsafe {
        gemm_into(
            (t, t, hd),
            p.as_mut_ptr(),
            t,
            false,
            Mat::rows(q, ld),
            Mat::rows(k, ld).t(),
            scale,
            gemm::Parallelism::None,
        )
    };
    simd(
        #[inline(always)]
        || softmax_in_place(p, t),
    );
}

/// Runs `f(b, out_block, aux_block)` for each batch element's blocks of `out` and `aux`
/// (`len / bsz` values each; `aux` may be empty) on up to candle's thread count; each batch
/// element is computed by one thread, so results do not depend on the thread count.
fn par_batches<T: Send + Sync>(bsz: usize, out: &mut [T], aux: &mut [T], f: impl Fn(usize, &mut [T], &mut [T]) + Sync) {
    let (po, pa) = (out.len() / bsz.max(1), aux.len() / bsz.max(1));
    let mut blocks = Vec::with_capacity(bsz);
    let (mut o, mut a) = (out, aux);
    for _ in 0..bsz {
        let (o1, o2) = std::mem::take(&mut o).split_at_mut(po);
        let (a1, a2) = std::mem::take(&mut a).split_at_mut(pa);
        blocks.push((o1, a1));
        (o, a) = (o2, a2);
    }
    let threads = threads().min(bsz);
    let per_thread = bsz.div_ceil(threads.max(1));
    let run = |i: usize, group: &mut [(&mut [T], &mut [T])]| {
        for (j, (o, a)) in group.iter_mut().enumerate() {
            f(i * per_thread + j, o, a);
        }
    };
    if threads <= 1 {
        return run(0, &mut blocks);
    }
    std::thread::scope(|s| {
        for (i, group) in blocks.chunks_mut(per_thread).enumerate() {
            let run = &run;
            s.spawn(move || run(i, group));
        }
    });
}

/// Attention without gradients: each head's P in a T×T scratch, then P·V. Forward only (the
/// routing sends tensors that track gradients to [`AttentionProbs`] and [`AttentionApply`]).
pub struct Attention {
    /// Number of heads.
    pub heads: usize,
}

fn attention_fwd<T: Float>(qkv: &[T], dm: Dims) -> Result<Vec<T>> {
    let (t, d, ld, hd) = (dm.t, dm.d, dm.ld(), dm.hd());
    let mut out = out_vec::<T>(dm.b * t * d);
    par_batches(dm.b, &mut out, &mut [], |b, o, _| {
        let x = &qkv[b * t * ld..];
        let mut p = vec![T::zero(); t * t];
        for h in 0..dm.heads {
            let (cq, ck, cv) = dm.cols(h);
            // SAFETY: each slice starts at the head's first column of batch b and holds the t
            // rows of stride ld it reads; o is batch b's [t, d] output block.
            unsafe {
                attention_probs(&x[cq..], &x[ck..], (t, ld, hd), dm.scale(), &mut p);
                gemm_into(
                    (t, hd, t),
                    o[h * hd..].as_mut_ptr(),
                    d,
                    false,
                    Mat::rows(&p, t),
                    Mat::rows(&x[cv..], ld),
                    T::one(),
                    gemm::Parallelism::None,
                );
            }
        }
    });
    Ok(out)
}

impl CustomOp1 for Attention {
    fn name(&self) -> &'static str {
        "robustft-attention"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let dm = Dims::of(l, self.heads)?;
        let out = float_dispatch!(s, "fused attention", attention_fwd(contiguous(s, l)?, dm));
        Ok((out, (dm.b, dm.t, dm.d).into()))
    }
}

/// qkv [B, T, 3D] → P [B, heads, T, T], P_h = softmax(Q_h K_hᵀ/√d_h). Backward: with
/// ∂S = P ⊙ (∂P − rowsum(∂P ⊙ P)), ∂Q = s·∂S·K and ∂K = s·∂Sᵀ·Q, written into a packed ∂qkv
/// whose V part is zero (`ProbsGrad`); P is this op's own output, handed back by autograd.
pub struct AttentionProbs {
    /// Number of heads.
    pub heads: usize,
}

fn probs_fwd<T: Float>(qkv: &[T], dm: Dims) -> Result<Vec<T>> {
    let (t, ld, hd) = (dm.t, dm.ld(), dm.hd());
    let mut probs = out_vec::<T>(dm.b * dm.heads * t * t);
    par_batches(dm.b, &mut probs, &mut [], |b, kept, _| {
        let x = &qkv[b * t * ld..];
        for h in 0..dm.heads {
            let (cq, ck, _) = dm.cols(h);
            // SAFETY: as in attention_fwd; kept is batch b's [heads, t, t] block.
            unsafe {
                attention_probs(
                    &x[cq..],
                    &x[ck..],
                    (t, ld, hd),
                    dm.scale(),
                    &mut kept[h * t * t..(h + 1) * t * t],
                )
            };
        }
    });
    Ok(probs)
}

impl CustomOp1 for AttentionProbs {
    fn name(&self) -> &'static str {
        "robustft-attention-probs"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let dm = Dims::of(l, self.heads)?;
        let out = float_dispatch!(s, "fused attention", probs_fwd(contiguous(s, l)?, dm));
        Ok((out, dm.probs_shape()))
    }
    fn bwd(&self, qkv: &Tensor, p: &Tensor, dp: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(qkv.apply_op3_no_bwd(
            p,
            &dp.contiguous()?,
            &ProbsGrad { heads: self.heads },
        )?))
    }
}

/// (P [B, heads, T, T], qkv [B, T, 3D]) → [B, T, D], head h's block P_h·V_h. Backward:
/// ∂P_h = G_h·V_hᵀ (`ApplyGradP`) and ∂V_h = P_hᵀ·G_h into a packed ∂qkv whose Q and K parts
/// are zero (`ApplyGradV`).
pub struct AttentionApply {
    /// Number of heads.
    pub heads: usize,
}

fn apply_fwd<T: Float>(p: &[T], qkv: &[T], dm: Dims) -> Result<Vec<T>> {
    let (t, d, ld, hd) = (dm.t, dm.d, dm.ld(), dm.hd());
    let mut out = out_vec::<T>(dm.b * t * d);
    par_batches(dm.b, &mut out, &mut [], |b, o, _| {
        let x = &qkv[b * t * ld..];
        for h in 0..dm.heads {
            let (_, _, cv) = dm.cols(h);
            let at = dm.block(b, h);
            // SAFETY: as in attention_fwd; p's block is t×t.
            unsafe {
                gemm_into(
                    (t, hd, t),
                    o[h * hd..].as_mut_ptr(),
                    d,
                    false,
                    Mat::rows(&p[at..at + t * t], t),
                    Mat::rows(&x[cv..], ld),
                    T::one(),
                    gemm::Parallelism::None,
                );
            }
        }
    });
    Ok(out)
}

impl CustomOp2 for AttentionApply {
    fn name(&self) -> &'static str {
        "robustft-attention-apply"
    }
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let dm = Dims::of(l2, self.heads)?;
        if l1.shape() != &dm.probs_shape() {
            bail!(
                "fused attention: probabilities {:?} do not match qkv {:?}",
                l1.dims(),
                l2.dims()
            );
        }
        let out = float_dispatch!(
            s1,
            "fused attention",
            apply_fwd(contiguous(s1, l1)?, contiguous(s2, l2)?, dm)
        );
        Ok((out, (dm.b, dm.t, dm.d).into()))
    }
    fn bwd(&self, p: &Tensor, qkv: &Tensor, _out: &Tensor, g: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = g.contiguous()?;
        let heads = self.heads;
        let dp = if p.track_op() {
            Some(g.apply_op2_no_bwd(qkv, &ApplyGradP { heads })?)
        } else {
            None
        };
        let dqkv = if qkv.track_op() {
            Some(p.apply_op2_no_bwd(&g, &ApplyGradV)?)
        } else {
            None
        };
        Ok((dp, dqkv))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::kernels::testing::{compare, rand_t};
    use candle_core::{DType, Var};

    /// Attention on packed [B, T, 3·32] with 4 heads of 8, against the composed reference (values
    /// and ∂qkv; f64 to 1e-12, f32 to 1e-5); T = 65 as in tiny (odd sizes for gemm); 16 batch
    /// elements cross the threading split on 2+ cores.
    #[test]
    fn attention_matches_the_composed_reference() {
        for (dtype, tol) in [(DType::F64, 1e-12), (DType::F32, 1e-5)] {
            for (bsz, t) in [(2usize, 5usize), (16, 65)] {
                let qkv = Var::from_tensor(&rand_t(&[bsz, t, 96], 2.0, 10, dtype)).unwrap();
                compare(
                    "attention",
                    Box::new(|| attention(qkv.as_tensor(), 4).unwrap()),
                    Box::new(|| attention_composed(qkv.as_tensor(), 4).unwrap()),
                    &[("qkv", &qkv)],
                    tol,
                );
                // The forward-only op (no probabilities kept: inputs that track no gradient).
                let frozen = qkv.as_tensor().detach();
                let d = crate::engine::ops::max_abs_diff(
                    &attention(&frozen, 4).unwrap(),
                    &attention_composed(&frozen, 4).unwrap(),
                )
                .unwrap();
                assert!(d < tol, "attention without gradients {dtype:?}: forward differs by {d}");
            }
        }
    }
}
