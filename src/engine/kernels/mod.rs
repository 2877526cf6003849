//! Fused CPU kernels with their own backward pass, as candle custom ops, one file per op:
//! [`linear`](mod@linear) (x·Wᵀ + b in one gemm call, weight gradient as one gemm, bias gradient as one row
//! sum), [`attention`](mod@attention) (QKᵀ, softmax, ·V per head straight from the [B, T, D] projections, no
//! head transposes), [`softmax`](mod@softmax) over the last dimension, [`layer_norm`](mod@layer_norm), erf-[`gelu`](mod@gelu) and
//! [`scale_cols`](mod@scale_cols) ((IA)³). candle's composed versions allocate a tensor per primitive op (five
//! for softmax, nine for LayerNorm, a broadcast weight gradient of B·in·out values per linear
//! layer), accumulate every gradient into a fresh zero tensor, and its GELU evaluates a scalar
//! erf; these do one pass over contiguous rows. Element-wise loops are compiled twice (baseline
//! x86-64 and AVX2+FMA, chosen at run time) and use a polynomial `exp` the compiler can
//! vectorise.
//!
//! Each op file holds the public function the model calls, the kernel with its backward, the
//! composed reference built from candle's differentiable primitives, and the test comparing the
//! two (values and gradients, f64 to 1e-12, f32 to 1e-5). This file holds what they share: the
//! float trait, the SIMD and threading helpers, the gemm wrapper, and the one routing rule,
//! [`route`]: the fused kernel for CPU tensors of f32/f64, the composed reference everywhere
//! else (GPU, half precision).

use candle_core::{CpuStorage, Layout, Result, Tensor, WithDType, bail};

pub mod attention;
pub mod gelu;
pub mod layer_norm;
pub mod linear;
pub mod scale_cols;
pub mod softmax;

pub use attention::{attention, attention_composed};
pub use gelu::gelu;
pub use layer_norm::{layer_norm, layer_norm_composed};
pub use linear::linear;
pub use scale_cols::scale_cols;
pub use softmax::{softmax_composed, softmax_last_dim};

/// Which implementation of an op a tensor gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// The fused CPU kernel (CPU tensors of f32 or f64).
    Fused,
    /// The composed reference from candle's primitives (GPU tensors, half precision).
    Composed,
}

/// The routing rule every op follows: [`Route::Fused`] for CPU tensors of f32/f64, else
/// [`Route::Composed`].
pub fn route(x: &Tensor) -> Route {
    if x.device().is_cpu() && matches!(x.dtype(), candle_core::DType::F32 | candle_core::DType::F64) {
        Route::Fused
    } else {
        Route::Composed
    }
}

/// The float types the kernels support, with the few functions they need.
pub trait Float: WithDType + num_traits_like::Real {}
impl Float for f32 {}
impl Float for f64 {}

/// Minimal real-number interface (no extra dependency).
pub mod num_traits_like {
    /// exp, sqrt, erf and constants for f32/f64.
    pub trait Real: Copy + PartialOrd {
        /// e^x (f32: polynomial, relative error ≤ 2e-7, vectorisable; f64: libm).
        fn exp_(self) -> Self;
        /// √x.
        fn sqrt_(self) -> Self;
        /// erf (f32: Abramowitz & Stegun 7.1.26, |error| ≤ 1.5e-7; f64: libm).
        fn erf_(self) -> Self;
        /// (erf x, e^(−x²)).
        fn erf_exp_(self) -> (Self, Self);
        /// −∞.
        const NEG_INF: Self;
    }
    impl Real for f32 {
        #[inline(always)]
        fn exp_(self) -> f32 {
            super::exp_f32(self)
        }
        #[inline(always)]
        fn sqrt_(self) -> f32 {
            self.sqrt()
        }
        #[inline(always)]
        fn erf_(self) -> f32 {
            super::erf_f32(self)
        }
        #[inline(always)]
        fn erf_exp_(self) -> (f32, f32) {
            super::erf_exp_f32(self)
        }
        const NEG_INF: f32 = f32::NEG_INFINITY;
    }
    impl Real for f64 {
        #[inline(always)]
        fn exp_(self) -> f64 {
            self.exp()
        }
        #[inline(always)]
        fn sqrt_(self) -> f64 {
            self.sqrt()
        }
        #[inline(always)]
        fn erf_(self) -> f64 {
            libm::erf(self)
        }
        #[inline(always)]
        fn erf_exp_(self) -> (f64, f64) {
            (libm::erf(self), (-self * self).exp())
        }
        const NEG_INF: f64 = f64::NEG_INFINITY;
    }
}

/// Calls `f` compiled with AVX2+FMA where the CPU has them (closures inline into the
/// feature-enabled frame, so their loops vectorise 8-wide), plainly elsewhere.
#[inline(always)]
pub(crate) fn simd<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2,fma")]
        fn avx2<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the features were just detected.
            return unsafe { avx2(f) };
        }
    }
    f()
}

/// e^x for f32: Cody–Waite reduction x = n·ln2 + r, |r| ≤ ln2/2, Cephes' degree-6 polynomial,
/// 2ⁿ assembled in the exponent bits. Relative error ≤ 2e-7 on [−87, 88]; inputs are clamped
/// there (e^−87 ≈ 1.6e-38 stands in for 0); NaN propagates. Branch-free, so loops vectorise.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    let x = if x > 88.0 { 88.0 } else { x };
    let x = if x < -87.0 { -87.0 } else { x };
    const MAGIC: f32 = 12_582_912.0; // 1.5·2²³: adding it rounds to an integer in the low bits.
    let t = x * std::f32::consts::LOG2_E + MAGIC;
    let n = t - MAGIC;
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let z = r * r;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r + 1.666_666_5e-1)
        * r
        + 0.5;
    let y = p * z + r + 1.0;
    let bits = (t.to_bits() as i32 - MAGIC.to_bits() as i32 + 127) << 23;
    y * f32::from_bits(bits as u32)
}

/// erf, Abramowitz & Stegun 7.1.26 (|error| ≤ 1.5e-7), for the f32 path.
#[inline(always)]
pub fn erf_f32(x: f32) -> f32 {
    erf_exp_f32(x).0
}

/// (erf x, e^(−x²)): the formula evaluates e^(−x²) anyway, and GELU's derivative needs it too
/// (φ(x) = e^(−x²/2)/√(2π) at x/√2), so its backward pays for one exponential, not two.
#[inline(always)]
pub(crate) fn erf_exp_f32(x: f32) -> (f32, f32) {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let e = exp_f32(-a * a);
    let y =
        1.0 - (((((1.061_405_4 * t - 1.453_152_1) * t) + 1.421_413_8) * t - 0.284_496_72) * t + 0.254_829_6) * t * e;
    (y.copysign(x), e)
}

pub(crate) fn contiguous<'a, T: WithDType>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&T::cpu_storage_as_slice(s)?[a..b]),
        None => bail!("fused op: input must be contiguous"),
    }
}

/// Runs the generic kernel `$f::<T>(args…) -> Result<Vec<T>>` for the storage's float type and
/// wraps its output as storage (returns an error from the caller for other types).
macro_rules! float_dispatch {
    ($s:expr, $name:expr, $f:ident ( $($arg:expr),* )) => {
        match $s {
            candle_core::CpuStorage::F32(_) => candle_core::CpuStorage::F32($f::<f32>($($arg),*)?),
            candle_core::CpuStorage::F64(_) => candle_core::CpuStorage::F64($f::<f64>($($arg),*)?),
            _ => candle_core::bail!("{}: f32 or f64 only", $name),
        }
    };
}
pub(crate) use float_dispatch;

pub(crate) fn threads() -> usize {
    candle_core::utils::get_num_threads().clamp(1, 16)
}

/// Runs `f(first_row, rows_in, rows_out)` over blocks of whole rows (`n` values each, `n_out`
/// outputs each) on up to candle's thread count (scoped threads). Each row is computed by one
/// thread with the same code, so results do not depend on the thread count.
pub(crate) fn par_rows<T: Send + Sync + Copy>(
    x: &[T],
    n: usize,
    out: &mut [T],
    n_out: usize,
    f: impl Fn(usize, &[T], &mut [T]) + Sync,
) {
    let rows = x.len() / n.max(1);
    let threads = threads();
    if threads == 1 || x.len() < 1 << 15 || rows < 2 {
        simd(
            #[inline(always)]
            || f(0, x, out),
        );
        return;
    }
    let per = rows.div_ceil(threads);
    std::thread::scope(|s| {
        for (i, (xi, oi)) in x.chunks(per * n).zip(out.chunks_mut(per * n_out)).enumerate() {
            let f = &f;
            s.spawn(move || {
                simd(
                    #[inline(always)]
                    || f(i * per, xi, oi),
                )
            });
        }
    });
}

/// An output buffer of `n` values every element of which the kernel overwrites. (Zeroed all the
/// same: reading uninitialised floats would be undefined behaviour, and mimalloc hands back
/// recycled blocks, so the memset is the only cost.)
pub(crate) fn out_vec<T: Float>(n: usize) -> Vec<T> {
    vec![T::zero(); n]
}

// ---------------------------------------------------------------------------------------------
// Matrix products

/// A strided matrix operand: base pointer and (row, column) strides in elements.
#[derive(Clone, Copy)]
pub(crate) struct Mat<T> {
    ptr: *const T,
    rs: isize,
    cs: isize,
}

impl<T> Mat<T> {
    /// Row-major with row stride `ld`, starting at `s[0]`.
    pub(crate) fn rows(s: &[T], ld: usize) -> Self {
        Mat {
            ptr: s.as_ptr(),
            rs: ld as isize,
            cs: 1,
        }
    }
    /// The transpose (a view: strides swapped).
    pub(crate) fn t(self) -> Self {
        Mat {
            ptr: self.ptr,
            rs: self.cs,
            cs: self.rs,
        }
    }
}

pub(crate) fn gemm_par(rows: usize) -> gemm::Parallelism {
    match threads() {
        n if n > 1 && rows >= 64 => gemm::Parallelism::Rayon(n),
        _ => gemm::Parallelism::None,
    }
}

/// dst[m×n] (row stride `ldd`) = acc·dst + scale·a·b, with a m×k and b k×n strided views
/// (acc = 0: dst is only written, never read).
///
/// # Safety
/// `dst` must hold an m×n block at row stride `ldd`, and `a`, `b` point into live buffers
/// large enough for their strides.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm_into<T: Float>(
    (m, n, k): (usize, usize, usize),
    dst: *mut T,
    ldd: usize,
    acc: bool,
    a: Mat<T>,
    b: Mat<T>,
    scale: T,
    par: gemm::Parallelism,
) {
    // SAFETY: forwarded from the caller.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            ldd as isize,
            acc,
            a.ptr,
            a.cs,
            a.rs,
            b.ptr,
            b.cs,
            b.rs,
            T::one(),
            scale,
            false,
            false,
            false,
            par,
        )
    }
}

/// Reduces `f(x_i)` with `op` over 8 interleaved lanes, then the lanes in order (a fixed order:
/// the result does not depend on threads). Floating-point reductions written as one running
/// accumulator cannot be vectorised (reassociation changes the rounding); eight can.
#[inline(always)]
pub(crate) fn reduce8<T: Float>(n: usize, init: T, f: impl Fn(usize) -> T, op: impl Fn(T, T) -> T) -> T {
    let mut acc = [init; 8];
    let full = n / 8 * 8;
    for i in (0..full).step_by(8) {
        for (l, a) in acc.iter_mut().enumerate() {
            *a = op(*a, f(i + l));
        }
    }
    let mut r = acc.into_iter().fold(init, &op);
    for i in full..n {
        r = op(r, f(i));
    }
    r
}

/// Σ a_i·b_i (8 lanes).
#[inline(always)]
pub(crate) fn dot<T: Float>(a: &[T], b: &[T]) -> T {
    let n = a.len().min(b.len());
    reduce8(n, T::zero(), |i| a[i] * b[i], |x, y| x + y)
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

    #[test]
    fn exp_approximation_is_within_2e7_relative() {
        let mut worst = 0f64;
        for i in -87_000..=88_000 {
            let x = i as f32 / 1000.0;
            let want = (x as f64).exp();
            worst = worst.max(((exp_f32(x) as f64 - want) / want).abs());
        }
        assert!(worst < 2e-7, "max relative error {worst}");
        assert!(exp_f32(f32::NAN).is_nan());
        assert_eq!(exp_f32(0.0), 1.0);
    }
}

/// Shared by the op files' tests: random tensors and the fused-against-composed comparison.
#[cfg(test)]
pub(crate) mod testing {
    use candle_core::{DType, Device, Tensor, Var};
    use rand::{Rng, SeedableRng};

    /// A seeded uniform(−scale, scale) tensor.
    pub fn rand_t(shape: &[usize], scale: f64, seed: u64, dtype: DType) -> Tensor {
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

    /// A deferred computation of a tensor.
    pub type F<'a> = Box<dyn Fn() -> Tensor + 'a>;

    /// `ours` against `reference`: values, and the gradients of a random linear functional of the
    /// output with respect to every `var`, to `tol` (relative to the gradient's size).
    pub fn compare(name: &str, ours: F, reference: F, vars: &[(&str, &Var)], tol: f64) {
        let (a, r) = (ours(), reference());
        let d = max_diff(&a, &r);
        assert!(d < tol, "{name} {:?} {:?}: forward differs by {d}", a.dtype(), a.dims());
        let probe = rand_t(a.dims(), 1.0, 4, a.dtype());
        let ga = (&a * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        let gr = (&r * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        for (which, v) in vars {
            match (ga.get(v.as_tensor()), gr.get(v.as_tensor())) {
                (Some(p), Some(q)) => {
                    let t = tol * (1.0 + max_diff(q, &q.zeros_like().unwrap()));
                    let d = max_diff(p, q);
                    assert!(d < t, "{name} {:?} {:?}: ∂{which} differs by {d}", a.dtype(), a.dims());
                }
                (None, None) => {}
                _ => panic!("{name}: gradient for {which} present on one side only"),
            }
        }
    }

    /// The tensors of the row-wise op tests: x of a small shape and of one that crosses the
    /// threading threshold (so the threaded row split is covered on 2+ cores), a row scale w and
    /// shift b, a linear layer's weight wl [37, n] and bias bl.
    pub struct RowCase {
        /// Input.
        pub x: Var,
        /// Per-column weight.
        pub w: Var,
        /// Per-column bias.
        pub b: Var,
        /// Linear weight [37, n].
        pub wl: Var,
        /// Linear bias [37].
        pub bl: Var,
    }

    /// Runs `check(tolerance, case)` for f64 (tolerance 1e-12) and f32 (1e-5: the erf
    /// approximation is within 1.5e-7, exp within 2e-7 relative) on both shapes.
    pub fn for_row_cases(check: impl Fn(f64, &RowCase)) {
        for (dtype, tol) in [(DType::F64, 1e-12), (DType::F32, 1e-5)] {
            for shape in [vec![3usize, 7, 10], vec![512, 130]] {
                let n = *shape.last().unwrap();
                let v = |s: &[usize], scale, seed| Var::from_tensor(&rand_t(s, scale, seed, dtype)).unwrap();
                let case = RowCase {
                    x: v(&shape, 3.0, 1),
                    w: v(&[n], 1.5, 2),
                    b: v(&[n], 0.5, 3),
                    wl: v(&[37, n], 0.5, 5),
                    bl: v(&[37], 0.5, 6),
                };
                check(tol, &case);
            }
        }
    }
}
