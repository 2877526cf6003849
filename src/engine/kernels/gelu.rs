//! GELU, erf form (as ViT uses): x·Φ(x) with a vectorisable erf, backward g·(Φ(x) + x·φ(x))
//! with one exponential ([`Gelu`]); elsewhere candle's `gelu_erf`.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};

use super::{Float, Route, contiguous, float_dispatch, out_vec, par_rows, route};

/// GELU, erf form (as ViT uses): x·Φ(x). Fused kernel (vectorisable erf) on CPU, candle's
/// `gelu_erf` elsewhere (it has a backward pass).
pub fn gelu(x: &Tensor) -> Result<Tensor> {
    if route(x) == Route::Fused {
        return x.contiguous()?.apply_op1(Gelu);
    }
    x.gelu_erf()
}

/// GELU, erf form: x·Φ(x) = ½x(1 + erf(x/√2)).
pub struct Gelu;
/// g·dGELU/dx = g·(Φ(x) + x·φ(x)), args (x, g) (no backward of its own: used inside `Gelu::bwd`).
struct GeluGrad;

fn gelu_fwd<T: Float>(x: &[T]) -> Result<Vec<T>> {
    let (half, r2) = (T::from_f64(0.5), T::from_f64(std::f64::consts::FRAC_1_SQRT_2));
    let mut out = out_vec::<T>(x.len());
    par_rows(
        x,
        1,
        &mut out,
        1,
        #[inline(always)]
        |_, xi, oi| {
            oi.iter_mut()
                .zip(xi)
                .for_each(|(o, &v)| *o = half * v * (T::one() + (v * r2).erf_()));
        },
    );
    Ok(out)
}

fn gelu_bwd<T: Float>(x: &[T], g: &[T]) -> Result<Vec<T>> {
    let (half, r2) = (T::from_f64(0.5), T::from_f64(std::f64::consts::FRAC_1_SQRT_2));
    let c = T::from_f64(0.398_942_280_401_432_7); // 1/√(2π)
    let mut out = out_vec::<T>(x.len());
    par_rows(
        x,
        1,
        &mut out,
        1,
        #[inline(always)]
        |r0, xi, oi| {
            let gi = &g[r0..r0 + xi.len()];
            for ((o, &v), &gv) in oi.iter_mut().zip(xi).zip(gi) {
                let (erf, e) = (v * r2).erf_exp_();
                *o = gv * (half * (T::one() + erf) + v * c * e);
            }
        },
    );
    Ok(out)
}

impl CustomOp1 for Gelu {
    fn name(&self) -> &'static str {
        "robustft-gelu"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let out = float_dispatch!(s, "fused gelu", gelu_fwd(contiguous(s, l)?));
        Ok((out, l.shape().clone()))
    }
    fn bwd(&self, x: &Tensor, _y: &Tensor, g: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(x.contiguous()?.apply_op2_no_bwd(&g.contiguous()?, &GeluGrad)?))
    }
}

impl CustomOp2 for GeluGrad {
    fn name(&self) -> &'static str {
        "robustft-gelu-grad"
    }
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let out = float_dispatch!(
            s1,
            "fused gelu backward",
            gelu_bwd(contiguous(s1, l1)?, contiguous(s2, l2)?)
        );
        Ok((out, l1.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::kernels::testing::{compare, for_row_cases};

    /// Fused against candle's `gelu_erf`, values and gradients; its backward uses 0.398942 for
    /// 1/√(2π) (7e-7 relative), hence at least 2e-6.
    #[test]
    fn gelu_matches_the_composed_reference() {
        for_row_cases(|tol, c| {
            let x = &c.x;
            compare(
                "gelu",
                Box::new(|| gelu(x.as_tensor()).unwrap()),
                Box::new(|| x.as_tensor().gelu_erf().unwrap()),
                &[("x", x)],
                tol.max(2e-6),
            );
        });
    }
}
