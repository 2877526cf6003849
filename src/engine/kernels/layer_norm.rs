//! LayerNorm over the last dimension, PyTorch's `nn.LayerNorm` (biased variance): one pass per
//! row forward, one for ∂x with per-thread partial sums for ∂w and ∂b ([`LayerNorm`]); the
//! composed reference from candle's primitives.

use candle_core::{CpuStorage, CustomOp3, D, Layout, Result, Shape, Tensor};

use super::{Float, Route, contiguous, float_dispatch, out_vec, par_rows, reduce8, route, simd, threads};

/// LayerNorm over the last dimension: (x − mean)/√(var + eps)·w + b, biased variance as in
/// PyTorch's `nn.LayerNorm`. Fused kernel on CPU, composed ops elsewhere.
pub fn layer_norm(x: &Tensor, w: &Tensor, b: &Tensor, eps: f64) -> Result<Tensor> {
    if route(x) == Route::Fused {
        return x
            .contiguous()?
            .apply_op3(&w.contiguous()?, &b.contiguous()?, LayerNorm { eps });
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

/// LayerNorm over the last dimension: (x − μ)/√(σ² + eps)·w + b (biased σ²), args (x, w, b).
pub struct LayerNorm {
    /// ε.
    pub eps: f64,
}

/// Mean and 1/√(σ² + eps) of one row.
#[inline(always)]
fn moments<T: Float>(r: &[T], eps: T) -> (T, T) {
    let n = T::from_f64(r.len() as f64);
    let mean = reduce8(r.len(), T::zero(), |i| r[i], |a, v| a + v) / n;
    let var = reduce8(r.len(), T::zero(), |i| (r[i] - mean) * (r[i] - mean), |a, v| a + v) / n;
    (mean, T::one() / (var + eps).sqrt_())
}

fn ln_fwd<T: Float>(x: &[T], w: &[T], b: &[T], n: usize, eps: f64) -> Result<Vec<T>> {
    let eps = T::from_f64(eps);
    let mut out = out_vec::<T>(x.len());
    par_rows(
        x,
        n,
        &mut out,
        n,
        #[inline(always)]
        |_, xi, oi| {
            for (r, o) in xi.chunks(n).zip(oi.chunks_mut(n)) {
                let (mean, rstd) = moments(r, eps);
                for (((o, &v), &w), &b) in o.iter_mut().zip(r).zip(w).zip(b) {
                    *o = (v - mean) * rstd * w + b;
                }
            }
        },
    );
    Ok(out)
}

/// The backward of [`LayerNorm`]: args (x [N, n], w, g [N, n]), output [N + 2, n] = ∂x rows,
/// then ∂w, then ∂b. With x̂ = (x − μ)·r, ĝ = g ⊙ w:
/// ∂x = r·(ĝ − mean(ĝ) − x̂·mean(ĝ ⊙ x̂)), ∂w = Σ_rows g ⊙ x̂, ∂b = Σ_rows g.
struct LayerNormGrad {
    eps: f64,
}

/// ∂x rows of [`ln_bwd`] for the rows starting at `r0`, adding ∂w and ∂b into `acc` ([2n]).
#[inline(always)]
fn ln_bwd_rows<T: Float>(x: &[T], w: &[T], g: &[T], eps: T, r0: usize, dxi: &mut [T], acc: &mut [T]) {
    let n = w.len();
    let (dw, db) = acc.split_at_mut(n);
    let inv_n = T::one() / T::from_f64(n as f64);
    for (i, dr) in dxi.chunks_mut(n).enumerate() {
        let (r, gr) = (&x[(r0 + i) * n..(r0 + i + 1) * n], &g[(r0 + i) * n..(r0 + i + 1) * n]);
        let (mean, rstd) = moments(r, eps);
        let m1 = reduce8(n, T::zero(), |j| gr[j] * w[j], |a, v| a + v) * inv_n;
        let m2 = reduce8(n, T::zero(), |j| gr[j] * w[j] * (r[j] - mean) * rstd, |a, v| a + v) * inv_n;
        for j in 0..n {
            dw[j] += gr[j] * (r[j] - mean) * rstd;
            db[j] += gr[j];
        }
        for j in 0..n {
            dr[j] = rstd * (gr[j] * w[j] - m1 - (r[j] - mean) * rstd * m2);
        }
    }
}

fn ln_bwd<T: Float>(x: &[T], w: &[T], g: &[T], n: usize, eps: f64) -> Result<Vec<T>> {
    let eps = T::from_f64(eps);
    let rows = x.len() / n;
    let mut out = out_vec::<T>(x.len() + 2 * n);
    let (dx, dwb) = out.split_at_mut(x.len());
    // ∂w, ∂b: per-thread partial sums over each thread's rows, added in thread order below.
    let threads = if threads() == 1 || x.len() < 1 << 15 {
        1
    } else {
        threads()
    };
    let per = rows.div_ceil(threads);
    let mut partial = vec![T::zero(); threads * 2 * n];
    if threads == 1 {
        simd(
            #[inline(always)]
            || ln_bwd_rows(x, w, g, eps, 0, dx, &mut partial),
        );
    } else {
        std::thread::scope(|s| {
            for (i, (dxi, acc)) in dx.chunks_mut(per * n).zip(partial.chunks_mut(2 * n)).enumerate() {
                s.spawn(move || {
                    simd(
                        #[inline(always)]
                        || ln_bwd_rows(x, w, g, eps, i * per, dxi, acc),
                    )
                });
            }
        });
    }
    dwb.iter_mut().for_each(|v| *v = T::zero());
    for acc in partial.chunks(2 * n) {
        dwb.iter_mut().zip(acc).for_each(|(o, &a)| *o += a);
    }
    Ok(out)
}

impl CustomOp3 for LayerNorm {
    fn name(&self) -> &'static str {
        "robustft-layernorm"
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
        let n = *l1.dims().last().unwrap_or(&1);
        let out = float_dispatch!(
            s1,
            "fused layer_norm",
            ln_fwd(
                contiguous(s1, l1)?,
                contiguous(s2, l2)?,
                contiguous(s3, l3)?,
                n,
                self.eps
            )
        );
        Ok((out, l1.shape().clone()))
    }
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _y: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let n = x.dim(candle_core::D::Minus1)?;
        let rows = x.elem_count() / n;
        let packed = x.apply_op3_no_bwd(w, &g.contiguous()?, &LayerNormGrad { eps: self.eps })?;
        // Frozen (non-tracking) arguments get no gradient, as with candle's own ops.
        let dx = if x.track_op() {
            Some(packed.narrow(0, 0, rows)?.reshape(x.dims())?)
        } else {
            None
        };
        let dw = if w.track_op() { Some(packed.get(rows)?) } else { None };
        let db = if b.track_op() {
            Some(packed.get(rows + 1)?)
        } else {
            None
        };
        Ok((dx, dw, db))
    }
}

impl CustomOp3 for LayerNormGrad {
    fn name(&self) -> &'static str {
        "robustft-layernorm-grad"
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
        let n = *l1.dims().last().unwrap_or(&1);
        let rows = l1.shape().elem_count() / n;
        let out = float_dispatch!(
            s1,
            "fused layer_norm backward",
            ln_bwd(
                contiguous(s1, l1)?,
                contiguous(s2, l2)?,
                contiguous(s3, l3)?,
                n,
                self.eps
            )
        );
        Ok((out, (rows + 2, n).into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::kernels::testing::{compare, for_row_cases, rand_t};
    use candle_core::{DType, Device, Var};

    /// Fused against composed, values and gradients (see `testing::for_row_cases`).
    #[test]
    fn layer_norm_matches_the_composed_reference() {
        for_row_cases(|tol, c| {
            let (x, w, b) = (&c.x, &c.w, &c.b);
            compare(
                "layer_norm",
                Box::new(|| layer_norm(x.as_tensor(), w.as_tensor(), b.as_tensor(), 1e-5).unwrap()),
                Box::new(|| layer_norm_composed(x.as_tensor(), w.as_tensor(), b.as_tensor(), 1e-5).unwrap()),
                &[("x", x), ("w", w), ("b", b)],
                tol,
            );
        });
    }

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

    /// Frozen (non-tracking) weight and bias get no gradient; the tracked input does.
    #[test]
    fn frozen_arguments_get_no_gradient() {
        let x = Var::from_tensor(&rand_t(&[4, 6, 8], 1.0, 1, DType::F32)).unwrap();
        let (lw, lb) = (rand_t(&[8], 1.0, 4, DType::F32), rand_t(&[8], 1.0, 5, DType::F32));
        let y = layer_norm(x.as_tensor(), &lw, &lb, 1e-5).unwrap();
        let g = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        assert!(g.get(x.as_tensor()).is_some());
        assert!(g.get(&lw).is_none() && g.get(&lb).is_none());
    }
}
