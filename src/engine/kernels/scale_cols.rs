//! (IA)³'s per-column rescaling y ⊙ s, the scale's gradient in one pass over the rows
//! ([`ScaleCols`]); elsewhere candle's broadcast multiply.

use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor, bail};

use super::{Float, Route, contiguous, float_dispatch, out_vec, par_rows, route, simd};

/// y ⊙ s with s `[n]` scaling the last dimension of y `[..., n]` ((IA)³). Fused on CPU
/// ([`ScaleCols`]: the scale's gradient in one pass over the rows), broadcast elsewhere.
pub fn scale_cols(y: &Tensor, s: &Tensor) -> Result<Tensor> {
    if route(y) == Route::Fused {
        return y.contiguous()?.apply_op2(&s.contiguous()?, ScaleCols);
    }
    y.broadcast_mul(s)
}

/// y ⊙ s for y `[N, n]` and a per-column scale s `[n]` ((IA)³'s rescaling), both contiguous:
/// ∂y = g ⊙ s, ∂s = Σ_rows g ⊙ y in one pass (a broadcast multiply would reduce a strided
/// [N, n] product over its leading dimensions).
pub struct ScaleCols;

fn scale_cols_fwd<T: Float>(y: &[T], s: &[T]) -> Result<Vec<T>> {
    let n = s.len();
    let mut out = out_vec::<T>(y.len());
    par_rows(
        y,
        n,
        &mut out,
        n,
        #[inline(always)]
        |_, yi, oi| {
            for (r, o) in yi.chunks(n).zip(oi.chunks_mut(n)) {
                o.iter_mut().zip(r).zip(s).for_each(|((o, &v), &c)| *o = v * c);
            }
        },
    );
    Ok(out)
}

/// Σ_rows g ⊙ y → [n] (the scale's gradient), args (g, y).
struct ScaleColsGrad;

fn scale_cols_grad<T: Float>(g: &[T], y: &[T], n: usize) -> Result<Vec<T>> {
    let mut acc = vec![T::zero(); n];
    simd(
        #[inline(always)]
        || {
            for (gr, yr) in g.chunks(n).zip(y.chunks(n)) {
                acc.iter_mut().zip(gr).zip(yr).for_each(|((a, &u), &v)| *a += u * v);
            }
        },
    );
    Ok(acc)
}

impl CustomOp2 for ScaleCols {
    fn name(&self) -> &'static str {
        "robustft-scale-cols"
    }
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let n = *l1.dims().last().unwrap_or(&1);
        if l2.shape().elem_count() != n {
            bail!("fused scale: y {:?} and scale {:?} do not match", l1.dims(), l2.dims());
        }
        let out = float_dispatch!(
            s1,
            "fused scale",
            scale_cols_fwd(contiguous(s1, l1)?, contiguous(s2, l2)?)
        );
        Ok((out, l1.shape().clone()))
    }
    fn bwd(&self, y: &Tensor, s: &Tensor, _out: &Tensor, g: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = g.contiguous()?;
        let dy = if y.track_op() {
            Some(g.apply_op2_no_bwd(s, &ScaleCols)?)
        } else {
            None
        };
        let ds = if s.track_op() {
            Some(g.apply_op2_no_bwd(y, &ScaleColsGrad)?.reshape(s.dims())?)
        } else {
            None
        };
        Ok((dy, ds))
    }
}

impl CustomOp2 for ScaleColsGrad {
    fn name(&self) -> &'static str {
        "robustft-scale-cols-grad"
    }
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let n = *l1.dims().last().unwrap_or(&1);
        let out = float_dispatch!(
            s1,
            "fused scale backward",
            scale_cols_grad(contiguous(s1, l1)?, contiguous(s2, l2)?, n)
        );
        Ok((out, (n,).into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::kernels::testing::{compare, for_row_cases};

    /// Fused against composed, values and gradients (see `testing::for_row_cases`).
    #[test]
    fn scale_cols_matches_the_composed_reference() {
        for_row_cases(|tol, c| {
            let (x, w) = (&c.x, &c.w);
            compare(
                "scale",
                Box::new(|| scale_cols(x.as_tensor(), w.as_tensor()).unwrap()),
                Box::new(|| x.as_tensor().broadcast_mul(w.as_tensor()).unwrap()),
                &[("x", x), ("w", w)],
                tol,
            );
        });
    }
}
