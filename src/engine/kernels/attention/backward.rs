//! The backward ops of the fused attention: `ProbsGrad` (of [`AttentionProbs`](super::AttentionProbs))
//! and `ApplyGradP`, `ApplyGradV` (of [`AttentionApply`](super::AttentionApply)), each writing its
//! part of ∂qkv or ∂P.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape};

use super::{Dims, par_batches};
use crate::engine::kernels::{Float, Mat, contiguous, dot, float_dispatch, gemm_into, out_vec, simd};

/// The backward of [`AttentionProbs`](super::AttentionProbs): args (qkv, P, ∂P), output the Q and
/// K parts of ∂qkv.
pub(super) struct ProbsGrad {
    pub(super) heads: usize,
}

fn probs_bwd<T: Float>(qkv: &[T], p: &[T], dp: &[T], dm: Dims) -> Result<Vec<T>> {
    let (t, ld, hd) = (dm.t, dm.ld(), dm.hd());
    let mut out = out_vec::<T>(qkv.len());
    par_batches(dm.b, &mut out, &mut [], |b, o, _| {
        let x = &qkv[b * t * ld..];
        let mut ds = vec![T::zero(); t * t];
        let none = gemm::Parallelism::None;
        for h in 0..dm.heads {
            let (cq, ck, _) = dm.cols(h);
            let at = dm.block(b, h);
            let ph = &p[at..at + t * t];
            ds.copy_from_slice(&dp[at..at + t * t]);
            simd(
                #[inline(always)]
                || {
                    for (pr, dr) in ph.chunks(t).zip(ds.chunks_mut(t)) {
                        let dot = dot(pr, dr);
                        dr.iter_mut().zip(pr).for_each(|(d, &x)| *d = x * (*d - dot));
                    }
                },
            );
            // SAFETY: as in attention_fwd; o is batch b's [t, 3d] block of ∂qkv and the head
            // writes only its hd columns of the Q and K parts.
            unsafe {
                let (qm, km, dsm) = (Mat::rows(&x[cq..], ld), Mat::rows(&x[ck..], ld), Mat::rows(&ds, t));
                gemm_into((t, hd, t), o[cq..].as_mut_ptr(), ld, false, dsm, km, dm.scale(), none);
                gemm_into(
                    (t, hd, t),
                    o[ck..].as_mut_ptr(),
                    ld,
                    false,
                    dsm.t(),
                    qm,
                    dm.scale(),
                    none,
                );
            }
        }
    });
    Ok(out)
}

impl CustomOp3 for ProbsGrad {
    fn name(&self) -> &'static str {
        "robustft-attention-probs-grad"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let dm = Dims::of(l1, self.heads)?;
        let out = float_dispatch!(
            s1,
            "fused attention backward",
            probs_bwd(contiguous(s1, l1)?, contiguous(s2, l2)?, contiguous(s3, l3)?, dm)
        );
        Ok((out, l1.shape().clone()))
    }
}

/// ∂P_h = G_h·V_hᵀ: args (G [B, T, D], qkv), output [B, heads, T, T].
pub(super) struct ApplyGradP {
    pub(super) heads: usize,
}

fn apply_grad_p<T: Float>(g: &[T], qkv: &[T], dm: Dims) -> Result<Vec<T>> {
    let (t, d, ld, hd) = (dm.t, dm.d, dm.ld(), dm.hd());
    let mut dp = out_vec::<T>(dm.b * dm.heads * t * t);
    par_batches(dm.b, &mut dp, &mut [], |b, o, _| {
        let x = &qkv[b * t * ld..];
        for h in 0..dm.heads {
            let (_, _, cv) = dm.cols(h);
            // SAFETY: as in attention_fwd; o is batch b's [heads, t, t] block.
            unsafe {
                let (gm, vm) = (Mat::rows(&g[b * t * d + h * hd..], d), Mat::rows(&x[cv..], ld));
                gemm_into(
                    (t, t, hd),
                    o[h * t * t..].as_mut_ptr(),
                    t,
                    false,
                    gm,
                    vm.t(),
                    T::one(),
                    gemm::Parallelism::None,
                );
            }
        }
    });
    Ok(dp)
}

impl CustomOp2 for ApplyGradP {
    fn name(&self) -> &'static str {
        "robustft-attention-apply-grad-p"
    }
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let dm = Dims::of(l2, self.heads)?;
        let out = float_dispatch!(
            s1,
            "fused attention backward",
            apply_grad_p(contiguous(s1, l1)?, contiguous(s2, l2)?, dm)
        );
        Ok((out, dm.probs_shape()))
    }
}

/// ∂V_h = P_hᵀ·G_h: args (P, G [B, T, D]), output a packed ∂qkv [B, T, 3D] with only V filled.
pub(super) struct ApplyGradV;

fn apply_grad_v<T: Float>(p: &[T], g: &[T], dm: Dims) -> Result<Vec<T>> {
    let (t, d, ld, hd) = (dm.t, dm.d, dm.ld(), dm.hd());
    let mut out = out_vec::<T>(dm.b * t * ld);
    par_batches(dm.b, &mut out, &mut [], |b, o, _| {
        for h in 0..dm.heads {
            let (_, _, cv) = dm.cols(h);
            let at = dm.block(b, h);
            // SAFETY: as in attention_fwd; o is batch b's [t, 3d] block of ∂qkv and the head
            // writes only its hd columns of the V part.
            unsafe {
                gemm_into(
                    (t, hd, t),
                    o[cv..].as_mut_ptr(),
                    ld,
                    false,
                    Mat::rows(&p[at..at + t * t], t).t(),
                    Mat::rows(&g[b * t * d + h * hd..], d),
                    T::one(),
                    gemm::Parallelism::None,
                );
            }
        }
    });
    Ok(out)
}

impl CustomOp2 for ApplyGradV {
    fn name(&self) -> &'static str {
        "robustft-attention-apply-grad-v"
    }
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, heads, t, _) = l1.shape().dims4()?;
        let (_, _, d) = l2.shape().dims3()?;
        let dm = Dims { b, t, d, heads };
        let out = float_dispatch!(
            s1,
            "fused attention backward",
            apply_grad_v(contiguous(s1, l1)?, contiguous(s2, l2)?, dm)
        );
        Ok((out, (b, t, 3 * d).into()))
    }
}
