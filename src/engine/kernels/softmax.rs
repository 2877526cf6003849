//! Softmax over the last dimension: one pass per row, backward s ⊙ (g − ⟨g, s⟩) ([`Softmax`]);
//! the composed reference subtracts the detached row maximum, exponentiates and divides.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, D, Layout, Result, Shape, Tensor};

use super::{Float, Route, contiguous, dot, float_dispatch, out_vec, par_rows, reduce8, route};

/// Softmax over the last dimension. The row maximum is subtracted for stability and detached:
/// softmax is shift-invariant, so its gradient through the maximum is exactly zero.
pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
    if route(x) == Route::Fused {
        return x.contiguous()?.apply_op1(Softmax);
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

/// Softmax of each row of `s` (rows of `n`) in place.
#[inline(always)]
pub(super) fn softmax_in_place<T: Float>(s: &mut [T], n: usize) {
    for r in s.chunks_mut(n) {
        let m = reduce8(r.len(), T::NEG_INF, |i| r[i], |a, v| if v > a { v } else { a });
        r.iter_mut().for_each(|v| *v = (*v - m).exp_());
        let sum = reduce8(r.len(), T::zero(), |i| r[i], |a, v| a + v);
        let inv = T::one() / sum;
        r.iter_mut().for_each(|v| *v *= inv);
    }
}

/// Softmax over the last dimension.
pub struct Softmax;

fn softmax_fwd<T: Float>(x: &[T], n: usize) -> Result<Vec<T>> {
    let mut out = out_vec::<T>(x.len());
    par_rows(
        x,
        n,
        &mut out,
        n,
        #[inline(always)]
        |_, xi, oi| {
            oi.copy_from_slice(xi);
            softmax_in_place(oi, n);
        },
    );
    Ok(out)
}

/// ∂x = s ⊙ (g − Σ_j g_j s_j), args (s, g).
struct SoftmaxGrad;

fn softmax_bwd<T: Float>(s: &[T], g: &[T], n: usize) -> Result<Vec<T>> {
    let mut out = out_vec::<T>(s.len());
    par_rows(
        s,
        n,
        &mut out,
        n,
        #[inline(always)]
        |r0, si, oi| {
            let gi = &g[r0 * n..r0 * n + si.len()];
            for ((sr, gr), or) in si.chunks(n).zip(gi.chunks(n)).zip(oi.chunks_mut(n)) {
                let dot = dot(sr, gr);
                for ((o, &x), &y) in or.iter_mut().zip(sr).zip(gr) {
                    *o = x * (y - dot);
                }
            }
        },
    );
    Ok(out)
}

impl CustomOp1 for Softmax {
    fn name(&self) -> &'static str {
        "robustft-softmax"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let n = *l.dims().last().unwrap_or(&1);
        let out = float_dispatch!(s, "fused softmax", softmax_fwd(contiguous(s, l)?, n));
        Ok((out, l.shape().clone()))
    }
    fn bwd(&self, _x: &Tensor, s: &Tensor, g: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(s.apply_op2_no_bwd(&g.contiguous()?, &SoftmaxGrad)?))
    }
}

impl CustomOp2 for SoftmaxGrad {
    fn name(&self) -> &'static str {
        "robustft-softmax-grad"
    }
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let n = *l1.dims().last().unwrap_or(&1);
        let out = float_dispatch!(
            s1,
            "fused softmax backward",
            softmax_bwd(contiguous(s1, l1)?, contiguous(s2, l2)?, n)
        );
        Ok((out, l1.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::kernels::testing::{compare, for_row_cases};
    use candle_core::{DType, Device};

    /// Fused against composed, values and gradients (see `testing::for_row_cases`).
    #[test]
    fn softmax_matches_the_composed_reference() {
        for_row_cases(|tol, c| {
            let x = &c.x;
            compare(
                "softmax",
                Box::new(|| softmax_last_dim(x.as_tensor()).unwrap()),
                Box::new(|| softmax_composed(x.as_tensor()).unwrap()),
                &[("x", x)],
                tol,
            );
        });
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
