//! Fused CPU kernels with their own backward pass: softmax over the last dimension, LayerNorm
//! and erf-GELU, as candle custom ops. candle's composed versions allocate a tensor per primitive
//! op (five for softmax, nine for LayerNorm) and its GELU evaluates a scalar erf; these do one
//! pass over contiguous rows. Each is checked against the composed reference (`ops::*_composed`)
//! and by finite differences (tests below and the model-level gradient test).
//!
//! The GPU path keeps candle's composed ops (`ops` routes by device).

use candle_core::{CpuStorage, CustomOp1, CustomOp3, D, Layout, Result, Shape, Tensor, bail};

fn contiguous<'a, T: candle_core::WithDType>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&s.as_slice::<T>()?[a..b]),
        None => bail!("fused op: input must be contiguous"),
    }
}

/// Runs `f(rows_in, rows_out)` over row blocks on up to `candle`'s thread count (scoped threads;
/// each row is computed by one thread, so results do not depend on the thread count).
fn par_rows<T: Send + Sync + Copy + Default>(x: &[T], n: usize, f: impl Fn(&[T], &mut [T]) + Sync) -> Vec<T> {
    let mut out = vec![T::default(); x.len()];
    let rows = x.len() / n.max(1);
    let threads = candle_core::utils::get_num_threads().clamp(1, 16);
    if threads == 1 || x.len() < 1 << 15 || rows < 2 {
        f(x, &mut out);
        return out;
    }
    let per = rows.div_ceil(threads) * n;
    std::thread::scope(|s| {
        for (xi, oi) in x.chunks(per).zip(out.chunks_mut(per)) {
            let f = &f;
            s.spawn(move || f(xi, oi));
        }
    });
    out
}

macro_rules! softmax_rows {
    ($t:ty, $x:expr, $n:expr) => {
        par_rows::<$t>($x, $n, |xi, oi| {
            for (r, o) in xi.chunks($n).zip(oi.chunks_mut($n)) {
                let m = r.iter().fold(<$t>::NEG_INFINITY, |a, &v| a.max(v));
                let mut s = 0.0;
                for (o, &v) in o.iter_mut().zip(r) {
                    *o = (v - m).exp();
                    s += *o;
                }
                let inv = 1.0 / s;
                o.iter_mut().for_each(|v| *v *= inv);
            }
        })
    };
}

/// Softmax over the last dimension.
pub struct Softmax;

impl CustomOp1 for Softmax {
    fn name(&self) -> &'static str {
        "robustft-softmax"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let n = *l.dims().last().unwrap_or(&1);
        let out = match s {
            CpuStorage::F32(_) => CpuStorage::F32(softmax_rows!(f32, contiguous::<f32>(s, l)?, n)),
            CpuStorage::F64(_) => CpuStorage::F64(softmax_rows!(f64, contiguous::<f64>(s, l)?, n)),
            _ => bail!("fused softmax: f32 or f64 only"),
        };
        Ok((out, l.shape().clone()))
    }
    /// ∂x = s ⊙ (g − Σ_j g_j s_j).
    fn bwd(&self, _x: &Tensor, s: &Tensor, g: &Tensor) -> Result<Option<Tensor>> {
        let dot = (g * s)?.sum_keepdim(D::Minus1)?;
        Ok(Some((s * g.broadcast_sub(&dot)?)?))
    }
}

/// LayerNorm over the last dimension: (x − μ)/√(σ² + eps)·w + b (biased σ²), args (x, w, b).
pub struct LayerNorm {
    /// ε.
    pub eps: f64,
}

macro_rules! ln_fwd {
    ($t:ty, $x:expr, $w:expr, $b:expr, $n:expr, $eps:expr) => {{
        let (w, b, eps) = ($w, $b, $eps as $t);
        par_rows::<$t>($x, $n, |xi, oi| {
            for (r, o) in xi.chunks($n).zip(oi.chunks_mut($n)) {
                let mean = r.iter().sum::<$t>() / $n as $t;
                let var = r.iter().map(|v| (v - mean) * (v - mean)).sum::<$t>() / $n as $t;
                let rstd = 1.0 / (var + eps).sqrt();
                for j in 0..$n {
                    o[j] = (r[j] - mean) * rstd * w[j] + b[j];
                }
            }
        })
    }};
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
        let out = match s1 {
            CpuStorage::F32(_) => CpuStorage::F32(ln_fwd!(
                f32,
                contiguous::<f32>(s1, l1)?,
                contiguous::<f32>(s2, l2)?,
                contiguous::<f32>(s3, l3)?,
                n,
                self.eps
            )),
            CpuStorage::F64(_) => CpuStorage::F64(ln_fwd!(
                f64,
                contiguous::<f64>(s1, l1)?,
                contiguous::<f64>(s2, l2)?,
                contiguous::<f64>(s3, l3)?,
                n,
                self.eps
            )),
            _ => bail!("fused layer_norm: f32 or f64 only"),
        };
        Ok((out, l1.shape().clone()))
    }
    /// With x̂ = (x − μ)·r, r = 1/√(σ² + eps), ĝ = g ⊙ w:
    /// ∂x = r·(ĝ − mean(ĝ) − x̂·mean(ĝ ⊙ x̂)), ∂w = Σ_rows g ⊙ x̂, ∂b = Σ_rows g.
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _y: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let n = x.dim(D::Minus1)?;
        let dtype = x.dtype();
        let xv: Vec<f64> = x.to_dtype(candle_core::DType::F64)?.flatten_all()?.to_vec1()?;
        let gv: Vec<f64> = g
            .to_dtype(candle_core::DType::F64)?
            .contiguous()?
            .flatten_all()?
            .to_vec1()?;
        let wv: Vec<f64> = w.to_dtype(candle_core::DType::F64)?.to_vec1()?;
        let mut dx = vec![0.0; xv.len()];
        let mut dw = vec![0.0; n];
        let mut db = vec![0.0; n];
        let mut xhat = vec![0.0; n];
        let mut gh = vec![0.0; n];
        for ((r, gr), dr) in xv.chunks(n).zip(gv.chunks(n)).zip(dx.chunks_mut(n)) {
            let mean = r.iter().sum::<f64>() / n as f64;
            let var = r.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n as f64;
            let rstd = 1.0 / (var + self.eps).sqrt();
            let (mut m1, mut m2) = (0.0, 0.0);
            for j in 0..n {
                xhat[j] = (r[j] - mean) * rstd;
                gh[j] = gr[j] * wv[j];
                m1 += gh[j];
                m2 += gh[j] * xhat[j];
                dw[j] += gr[j] * xhat[j];
                db[j] += gr[j];
            }
            let (m1, m2) = (m1 / n as f64, m2 / n as f64);
            for j in 0..n {
                dr[j] = rstd * (gh[j] - m1 - xhat[j] * m2);
            }
        }
        let dev = x.device();
        let t = |v: Vec<f64>, shape: &[usize]| -> Result<Tensor> { Tensor::from_vec(v, shape, dev)?.to_dtype(dtype) };
        // Frozen (non-tracking) arguments get no gradient, as with candle's own ops.
        let dx = if x.track_op() { Some(t(dx, x.dims())?) } else { None };
        let dw = if w.track_op() { Some(t(dw, &[n])?) } else { None };
        let db = if b.track_op() { Some(t(db, &[n])?) } else { None };
        Ok((dx, dw, db))
    }
}

/// erf, Abramowitz & Stegun 7.1.26 (|error| ≤ 1.5e-7), for the f32 path.
#[inline]
pub fn erf_f32(x: f32) -> f32 {
    let s = x.signum();
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let y = 1.0
        - (((((1.061_405_4 * t - 1.453_152_1) * t) + 1.421_413_8) * t - 0.284_496_72) * t + 0.254_829_6)
            * t
            * (-a * a).exp();
    s * y
}

/// GELU, erf form: x·Φ(x) = ½x(1 + erf(x/√2)).
pub struct Gelu;
/// dGELU/dx = Φ(x) + x·φ(x) (no backward of its own: used inside `Gelu::bwd`).
struct GeluGrad;

const FRAC_1_SQRT_2PI: f64 = 0.398_942_280_401_432_7;

fn map<T: Copy + Default + Send + Sync>(x: &[T], f: impl Fn(T) -> T + Sync) -> Vec<T> {
    par_rows(x, x.len().max(1), |xi, oi| {
        oi.iter_mut().zip(xi).for_each(|(o, &v)| *o = f(v))
    })
}

impl CustomOp1 for Gelu {
    fn name(&self) -> &'static str {
        "robustft-gelu"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let out = match s {
            CpuStorage::F32(_) => CpuStorage::F32(map(contiguous::<f32>(s, l)?, |v| {
                0.5 * v * (1.0 + erf_f32(v * std::f32::consts::FRAC_1_SQRT_2))
            })),
            CpuStorage::F64(_) => CpuStorage::F64(map(contiguous::<f64>(s, l)?, |v| {
                0.5 * v * (1.0 + libm::erf(v * std::f64::consts::FRAC_1_SQRT_2))
            })),
            _ => bail!("fused gelu: f32 or f64 only"),
        };
        Ok((out, l.shape().clone()))
    }
    fn bwd(&self, x: &Tensor, _y: &Tensor, g: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some((g * x.contiguous()?.apply_op1_no_bwd(&GeluGrad)?)?))
    }
}

impl CustomOp1 for GeluGrad {
    fn name(&self) -> &'static str {
        "robustft-gelu-grad"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let out = match s {
            CpuStorage::F32(_) => CpuStorage::F32(map(contiguous::<f32>(s, l)?, |v| {
                0.5 * (1.0 + erf_f32(v * std::f32::consts::FRAC_1_SQRT_2))
                    + v * FRAC_1_SQRT_2PI as f32 * (-0.5 * v * v).exp()
            })),
            CpuStorage::F64(_) => CpuStorage::F64(map(contiguous::<f64>(s, l)?, |v| {
                0.5 * (1.0 + libm::erf(v * std::f64::consts::FRAC_1_SQRT_2))
                    + v * FRAC_1_SQRT_2PI * (-0.5 * v * v).exp()
            })),
            _ => bail!("fused gelu grad: f32 or f64 only"),
        };
        Ok((out, l.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_approximation_is_within_1e6() {
        let mut worst = 0f64;
        for i in -4000..=4000 {
            let x = i as f64 / 1000.0;
            worst = worst.max((erf_f32(x as f32) as f64 - libm::erf(x)).abs());
        }
        assert!(worst < 1e-6, "max error {worst}");
    }
}

#[cfg(test)]
mod reference {
    use candle_core::{DType, Device, Tensor, Var};
    use rand::{Rng, SeedableRng};

    use crate::engine::ops::{gelu, layer_norm, layer_norm_composed, softmax_composed, softmax_last_dim};

    fn rand_t(shape: &[usize], scale: f64, seed: u64, dtype: DType) -> Tensor {
        let mut r = rand::rngs::StdRng::seed_from_u64(seed);
        let n: usize = shape.iter().product();
        let v: Vec<f64> = (0..n).map(|_| r.random_range(-scale..scale)).collect();
        Tensor::from_vec(v, shape, &Device::Cpu)
            .unwrap()
            .to_dtype(dtype)
            .unwrap()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
        crate::engine::ops::max_abs_diff(a, b).unwrap()
    }

    /// Fused against composed, values and gradients (of a random linear functional of the
    /// output): f64 to 1e-12, f32 to 1e-5 (the tolerance; erf approximation ≤ 1.5e-7).
    #[test]
    fn fused_ops_match_the_composed_reference() {
        for (dtype, tol) in [(DType::F64, 1e-12), (DType::F32, 1e-5)] {
            // 64 rows of 100 (above the threading threshold for 2+ threads: 6400·… use a large one too).
            for shape in [vec![3usize, 7, 10], vec![512, 130]] {
                let x = Var::from_tensor(&rand_t(&shape, 3.0, 1, dtype)).unwrap();
                let n = *shape.last().unwrap();
                let w = Var::from_tensor(&rand_t(&[n], 1.5, 2, dtype)).unwrap();
                let b = Var::from_tensor(&rand_t(&[n], 0.5, 3, dtype)).unwrap();
                let probe = rand_t(&shape, 1.0, 4, dtype);
                type F<'a> = Box<dyn Fn() -> Tensor + 'a>;
                let pairs: Vec<(&str, F, F)> = vec![
                    (
                        "softmax",
                        Box::new(|| softmax_last_dim(x.as_tensor()).unwrap()),
                        Box::new(|| softmax_composed(x.as_tensor()).unwrap()),
                    ),
                    (
                        "layer_norm",
                        Box::new(|| layer_norm(x.as_tensor(), w.as_tensor(), b.as_tensor(), 1e-5).unwrap()),
                        Box::new(|| layer_norm_composed(x.as_tensor(), w.as_tensor(), b.as_tensor(), 1e-5).unwrap()),
                    ),
                    (
                        "gelu",
                        Box::new(|| gelu(x.as_tensor()).unwrap()),
                        Box::new(|| x.as_tensor().gelu_erf().unwrap()),
                    ),
                ];
                for (name, ours, reference) in pairs {
                    let (a, r) = (ours(), reference());
                    let d = max_diff(&a, &r);
                    assert!(d < tol, "{name} {dtype:?} {shape:?}: forward differs by {d}");
                    let ga = (a * &probe).unwrap().sum_all().unwrap().backward().unwrap();
                    let gr = (r * &probe).unwrap().sum_all().unwrap().backward().unwrap();
                    for (which, v) in [("x", &x), ("w", &w), ("b", &b)] {
                        match (ga.get(v.as_tensor()), gr.get(v.as_tensor())) {
                            (Some(p), Some(q)) => {
                                // The reference GELU backward uses 0.398942 for 1/√(2π) (7e-7 relative).
                                let t = if name == "gelu" { tol.max(2e-6) } else { tol }
                                    * (1.0 + max_diff(q, &q.zeros_like().unwrap()));
                                let d = max_diff(p, q);
                                assert!(d < t, "{name} {dtype:?} {shape:?}: ∂{which} differs by {d}");
                            }
                            (None, None) => {}
                            _ => panic!("{name}: gradient for {which} present on one side only"),
                        }
                    }
                }
            }
        }
    }
}
