//! Multi-head attention on packed [Q | K | V] projections ([`Attention`]: no head transposes,
//! ∂qkv written packed); the composed reference splits heads, transposes and uses the composed
//! softmax.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor, WithDType, bail};

use super::softmax::{softmax_in_place, softmax_last_dim};
use super::{Float, Mat, Route, contiguous, dot, gemm_into, out_vec, route, simd, threads};

/// Multi-head attention softmax(Q_h K_hᵀ/√d_h)·V_h on packed projections qkv = [Q | K | V] of
/// shape [B, T, 3D] with `heads` heads side by side within each; output [B, T, D] (heads
/// concatenated, as ViT's context layer). Fused on CPU ([`Attention`]: no head transposes,
/// ∂qkv written packed), composed elsewhere.
pub fn attention(qkv: &Tensor, heads: usize) -> Result<Tensor> {
    if route(qkv) == Route::Fused {
        // Keep the probabilities for the backward only when there will be one.
        let keep = qkv.track_op();
        return qkv.contiguous()?.apply_op1(Attention::new(heads, keep));
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

/// Multi-head scaled dot-product attention softmax(Q_h K_hᵀ/√d_h)·V_h on the packed projections
/// qkv = [Q | K | V] of shape [B, T, 3D] (one linear layer computes all three; heads side by side
/// within each), output [B, T, D] (heads concatenated, as ViT's context layer). Each head's
/// products read and write its column block in place, so no head is transposed or copied, and
/// the backward writes ∂qkv in the same packed layout the linear layer's backward takes. When the
/// input tracks gradients the forward keeps the B·heads·T² probabilities for the backward (as
/// PyTorch's eager attention does); otherwise the backward would recompute them.
pub struct Attention {
    heads: usize,
    keep: bool,
    probs: std::sync::Mutex<Option<CpuStorage>>,
}

impl Attention {
    /// Attention with `heads` heads; `keep`: store the probabilities for the backward pass.
    pub fn new(heads: usize, keep: bool) -> Self {
        Attention {
            heads,
            keep,
            probs: std::sync::Mutex::new(None),
        }
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

/// The forward; with `keep`, also the probabilities [B, heads, T, T].
fn attention_fwd<T: Float>(
    qkv: &[T],
    (bsz, t, d3): (usize, usize, usize),
    heads: usize,
    keep: bool,
) -> Result<(Vec<T>, Vec<T>)> {
    let (d, ld) = (d3 / 3, d3);
    let hd = d / heads;
    let scale = T::from_f64(1.0 / (hd as f64).sqrt());
    let mut out = out_vec::<T>(bsz * t * d);
    let mut probs = out_vec::<T>(if keep { bsz * heads * t * t } else { 0 });
    par_batches(bsz, &mut out, &mut probs, |b, o, kept| {
        let base = b * t * ld;
        let mut scratch = if keep { Vec::new() } else { vec![T::zero(); t * t] };
        for h in 0..heads {
            let (cq, ck, cv) = (base + h * hd, base + d + h * hd, base + 2 * d + h * hd);
            let p = if keep {
                &mut kept[h * t * t..(h + 1) * t * t]
            } else {
                &mut scratch[..]
            };
            // SAFETY: each slice starts at the head's first column of batch b and holds the t
            // rows of stride ld it reads; o is batch b's [t, d] output block.
            unsafe {
                attention_probs(&qkv[cq..], &qkv[ck..], (t, ld, hd), scale, p);
                gemm_into(
                    (t, hd, t),
                    o[h * hd..].as_mut_ptr(),
                    d,
                    false,
                    Mat::rows(p, t),
                    Mat::rows(&qkv[cv..], ld),
                    T::one(),
                    gemm::Parallelism::None,
                );
            }
        }
    });
    Ok((out, probs))
}

impl CustomOp1 for Attention {
    fn name(&self) -> &'static str {
        "robustft-attention"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (b, t, d3) = l.shape().dims3()?;
        if d3 % (3 * self.heads) != 0 {
            bail!(
                "fused attention: qkv {:?} is not [B, T, 3·D] with D divisible by {} heads",
                l.dims(),
                self.heads
            );
        }
        let (out, probs) = match s {
            CpuStorage::F32(_) => {
                let (o, p) = attention_fwd::<f32>(contiguous(s, l)?, (b, t, d3), self.heads, self.keep)?;
                (CpuStorage::F32(o), CpuStorage::F32(p))
            }
            CpuStorage::F64(_) => {
                let (o, p) = attention_fwd::<f64>(contiguous(s, l)?, (b, t, d3), self.heads, self.keep)?;
                (CpuStorage::F64(o), CpuStorage::F64(p))
            }
            _ => bail!("fused attention: f32 or f64 only"),
        };
        if self.keep {
            *self.probs.lock().expect("attention cache lock") = Some(probs);
        }
        Ok((out, (b, t, d3 / 3).into()))
    }
    fn bwd(&self, qkv: &Tensor, _y: &Tensor, g: &Tensor) -> Result<Option<Tensor>> {
        let probs = self.probs.lock().expect("attention cache lock");
        let grad = AttentionGrad {
            heads: self.heads,
            probs: probs.as_ref(),
        };
        Ok(Some(qkv.apply_op2_no_bwd(&g.contiguous()?, &grad)?))
    }
}

/// The backward of [`Attention`]: args (qkv [B, T, 3D], g [B, T, D]), output ∂qkv [B, T, 3D].
/// Per head, with P recomputed: ∂V = Pᵀ·G, ∂P = G·Vᵀ, ∂S = P ⊙ (∂P − rowsum(∂P ⊙ P)),
/// ∂Q = s·∂S·K, ∂K = s·∂Sᵀ·Q. P comes from the forward's store where it kept one.
struct AttentionGrad<'a> {
    heads: usize,
    probs: Option<&'a CpuStorage>,
}

fn attention_bwd<T: Float>(
    qkv: &[T],
    g: &[T],
    (bsz, t, d3): (usize, usize, usize),
    heads: usize,
    kept: Option<&[T]>,
) -> Result<Vec<T>> {
    let (d, ld) = (d3 / 3, d3);
    let hd = d / heads;
    let scale = T::from_f64(1.0 / (hd as f64).sqrt());
    let mut out = out_vec::<T>(qkv.len());
    par_batches(bsz, &mut out, &mut [], |b, o, _| {
        let (mut scratch, mut dp) = (vec![T::zero(); t * t], vec![T::zero(); t * t]);
        let none = gemm::Parallelism::None;
        for h in 0..heads {
            let (cq, ck, cv) = (h * hd, d + h * hd, 2 * d + h * hd);
            let (x, gh) = (&qkv[b * t * ld..], &g[b * t * d + h * hd..]);
            let p: &[T] = match kept {
                Some(all) => &all[(b * heads + h) * t * t..(b * heads + h + 1) * t * t],
                None => {
                    // SAFETY: as in the forward.
                    unsafe { attention_probs(&x[cq..], &x[ck..], (t, ld, hd), scale, &mut scratch) };
                    &scratch
                }
            };
            // SAFETY: as in the forward; o is batch b's [t, 3d] block of ∂qkv and the head writes
            // only its hd columns in each of the three parts.
            unsafe {
                let (gm, vm) = (Mat::rows(gh, d), Mat::rows(&x[cv..], ld));
                gemm_into(
                    (t, hd, t),
                    o[cv..].as_mut_ptr(),
                    ld,
                    false,
                    Mat::rows(p, t).t(),
                    gm,
                    T::one(),
                    none,
                );
                gemm_into((t, t, hd), dp.as_mut_ptr(), t, false, gm, vm.t(), T::one(), none);
            }
            simd(
                #[inline(always)]
                || {
                    for (pr, dr) in p.chunks(t).zip(dp.chunks_mut(t)) {
                        let dot = dot(pr, dr);
                        dr.iter_mut().zip(pr).for_each(|(d, &x)| *d = x * (*d - dot));
                    }
                },
            );
            // SAFETY: as above.
            unsafe {
                let (qm, km, dsm) = (Mat::rows(&x[cq..], ld), Mat::rows(&x[ck..], ld), Mat::rows(&dp, t));
                gemm_into((t, hd, t), o[cq..].as_mut_ptr(), ld, false, dsm, km, scale, none);
                gemm_into((t, hd, t), o[ck..].as_mut_ptr(), ld, false, dsm.t(), qm, scale, none);
            }
        }
    });
    Ok(out)
}

impl CustomOp2 for AttentionGrad<'_> {
    fn name(&self) -> &'static str {
        "robustft-attention-grad"
    }
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let dims = l1.shape().dims3()?;
        let h = self.heads;
        let out = match (s1, self.probs) {
            (CpuStorage::F32(_), p) => CpuStorage::F32(attention_bwd::<f32>(
                contiguous(s1, l1)?,
                contiguous(s2, l2)?,
                dims,
                h,
                p.map(f32::cpu_storage_as_slice).transpose()?,
            )?),
            (CpuStorage::F64(_), p) => CpuStorage::F64(attention_bwd::<f64>(
                contiguous(s1, l1)?,
                contiguous(s2, l2)?,
                dims,
                h,
                p.map(f64::cpu_storage_as_slice).transpose()?,
            )?),
            _ => bail!("fused attention backward: f32 or f64 only"),
        };
        Ok((out, l1.shape().clone()))
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
                // The same op without the kept probabilities recomputes them in the backward.
                compare(
                    "attention (recomputed probabilities)",
                    Box::new(|| qkv.as_tensor().apply_op1(Attention::new(4, false)).unwrap()),
                    Box::new(|| attention_composed(qkv.as_tensor(), 4).unwrap()),
                    &[("qkv", &qkv)],
                    tol,
                );
            }
        }
    }
}
