//! Linear layers: x·Wᵀ + b as one bias-initialised gemm, ∂x and ∂W as one gemm each, ∂b as one
//! row sum ([`Linear`]); elsewhere candle's matmul and broadcast add.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor, bail};

use super::{Float, Mat, Route, contiguous, float_dispatch, gemm_into, gemm_par, out_vec, route, simd};

/// y = x·Wᵀ + b for x of shape [..., in] and W of shape [out, in] (PyTorch `nn.Linear` layout).
/// The leading dimensions are flattened first, so the weight gradient is one [out, in] product
/// (a broadcast matmul would form one per batch element and sum them). With a bias, on CPU, one
/// fused op ([`Linear`]: bias-initialised gemm forward; gemm ∂x and ∂W, one-pass ∂b).
pub fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    let dims = x.dims();
    let (k, lead) = (dims[dims.len() - 1], x.elem_count() / dims[dims.len() - 1].max(1));
    let x2 = x.contiguous()?.reshape((lead, k))?;
    let y = match b {
        Some(b) if route(x) == Route::Fused => x2.apply_op3(&w.contiguous()?, &b.contiguous()?, Linear)?,
        Some(b) => x2.matmul(&w.t()?)?.broadcast_add(b)?,
        None => x2.matmul(&w.t()?)?,
    };
    let mut out = dims.to_vec();
    *out.last_mut().expect("x has a last dimension") = w.dim(0)?;
    y.reshape(out)
}

/// x·Wᵀ + b for x `[N, in]`, W `[out, in]`, b `[out]` (PyTorch `nn.Linear`), all contiguous. The
/// output is filled with the bias rows and the product accumulated onto it by one gemm call.
pub struct Linear;

fn linear_fwd<T: Float>(x: &[T], w: &[T], b: &[T], n: usize, k: usize, o: usize) -> Result<Vec<T>> {
    let mut out = Vec::with_capacity(n * o);
    for _ in 0..n {
        out.extend_from_slice(b);
    }
    // SAFETY: out is n×o; x is n×k (row stride k); Wᵀ is a k×o view of W (o×k).
    unsafe {
        gemm_into(
            (n, o, k),
            out.as_mut_ptr(),
            o,
            true,
            Mat::rows(x, k),
            Mat::rows(w, k).t(),
            T::one(),
            gemm_par(n),
        )
    };
    Ok(out)
}

impl CustomOp3 for Linear {
    fn name(&self) -> &'static str {
        "robustft-linear"
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
        let (n, k) = l1.shape().dims2()?;
        let (o, k2) = l2.shape().dims2()?;
        if k != k2 || l3.shape().elem_count() != o {
            bail!("fused linear: x {:?}, w {:?}, b {:?}", l1.dims(), l2.dims(), l3.dims());
        }
        let out = float_dispatch!(
            s1,
            "fused linear",
            linear_fwd(contiguous(s1, l1)?, contiguous(s2, l2)?, contiguous(s3, l3)?, n, k, o)
        );
        Ok((out, (n, o).into()))
    }
    /// ∂x = g·W, ∂W = gᵀ·x (one gemm each, no transposed copies), ∂b = Σ_rows g.
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _y: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let g = g.contiguous()?;
        let dx = if x.track_op() {
            Some(g.apply_op2_no_bwd(w, &MatMul { ta: false, tb: false })?)
        } else {
            None
        };
        let dw = if w.track_op() {
            Some(g.apply_op2_no_bwd(x, &MatMul { ta: true, tb: false })?)
        } else {
            None
        };
        let db = if b.track_op() {
            Some(g.apply_op1_no_bwd(&ColSum)?)
        } else {
            None
        };
        Ok((dx, dw, db))
    }
}

/// op(a)·op(b) of two contiguous 2-D tensors, op = transpose where `ta`/`tb` (no backward: used
/// inside backward passes).
pub struct MatMul {
    /// Transpose the first operand.
    pub ta: bool,
    /// Transpose the second operand.
    pub tb: bool,
}

fn matmul_fwd<T: Float>(
    a: &[T],
    (ar, ac): (usize, usize),
    b: &[T],
    (br, bc): (usize, usize),
    ta: bool,
    tb: bool,
) -> Result<Vec<T>> {
    let (m, k) = if ta { (ac, ar) } else { (ar, ac) };
    let (k2, n) = if tb { (bc, br) } else { (br, bc) };
    if k != k2 {
        bail!("fused matmul: inner dimensions {k} and {k2} differ");
    }
    let ma = if ta { Mat::rows(a, ac).t() } else { Mat::rows(a, ac) };
    let mb = if tb { Mat::rows(b, bc).t() } else { Mat::rows(b, bc) };
    let mut out = out_vec::<T>(m * n);
    // SAFETY: out is m×n contiguous; a and b are full contiguous buffers viewed with their shapes.
    unsafe {
        gemm_into(
            (m, n, k),
            out.as_mut_ptr(),
            n,
            false,
            ma,
            mb,
            T::one(),
            gemm_par(m.max(n)),
        )
    };
    Ok(out)
}

impl CustomOp2 for MatMul {
    fn name(&self) -> &'static str {
        "robustft-matmul"
    }
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (a, b) = (l1.shape().dims2()?, l2.shape().dims2()?);
        let m = if self.ta { a.1 } else { a.0 };
        let n = if self.tb { b.0 } else { b.1 };
        let out = float_dispatch!(
            s1,
            "fused matmul",
            matmul_fwd(contiguous(s1, l1)?, a, contiguous(s2, l2)?, b, self.ta, self.tb)
        );
        Ok((out, (m, n).into()))
    }
}

/// Σ over rows of a contiguous `[N, n]` tensor → `[n]` (a bias gradient) in one pass, rows in order.
pub struct ColSum;

fn col_sum<T: Float>(g: &[T], n: usize) -> Result<Vec<T>> {
    let mut acc = vec![T::zero(); n];
    simd(
        #[inline(always)]
        || {
            for r in g.chunks(n) {
                acc.iter_mut().zip(r).for_each(|(a, &v)| *a += v);
            }
        },
    );
    Ok(acc)
}

impl CustomOp1 for ColSum {
    fn name(&self) -> &'static str {
        "robustft-col-sum"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let n = *l.dims().last().unwrap_or(&1);
        let out = float_dispatch!(s, "fused col_sum", col_sum(contiguous(s, l)?, n));
        Ok((out, (n,).into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::kernels::testing::{compare, for_row_cases, rand_t};
    use candle_core::{DType, Var};

    /// Fused against composed, values and gradients (see `testing::for_row_cases`).
    #[test]
    fn linear_matches_the_composed_reference() {
        for_row_cases(|tol, c| {
            let (x, wl, bl) = (&c.x, &c.wl, &c.bl);
            compare(
                "linear",
                Box::new(|| linear(x.as_tensor(), wl.as_tensor(), Some(bl.as_tensor())).unwrap()),
                Box::new(|| {
                    let y = x.as_tensor().broadcast_matmul(&wl.as_tensor().t().unwrap()).unwrap();
                    y.broadcast_add(bl.as_tensor()).unwrap()
                }),
                &[("x", x), ("W", wl), ("bias", bl)],
                tol,
            );
        });
    }

    /// Arguments that do not track gradients get none from the fused backward (a frozen weight
    /// must not receive an update), while tracked ones do.
    #[test]
    fn frozen_arguments_get_no_gradient() {
        let x = Var::from_tensor(&rand_t(&[4, 6, 8], 1.0, 1, DType::F32)).unwrap();
        let (w, bias) = (rand_t(&[3, 8], 1.0, 2, DType::F32), rand_t(&[3], 1.0, 3, DType::F32));
        let y = linear(x.as_tensor(), &w, Some(&bias)).unwrap();
        let g = y.sum_all().unwrap().backward().unwrap();
        assert!(g.get(x.as_tensor()).is_some());
        assert!(g.get(&w).is_none() && g.get(&bias).is_none());
    }
}
