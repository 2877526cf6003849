//! Compacter's parameterised hypercomplex multiplication: the sums of Kronecker products that
//! build its two h × r matrices from θ's block, and their gradients.

use super::Layer;

/// Compacter's two h × r matrices (up, down) from θ's block.
pub fn compacter_mats(layer: &Layer, blk: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let (h, nn, r) = (layer.hidden(), layer.shape.compacter_n, layer.shape.compacter_rank);
    let (a, rest) = blk.split_at(nn * nn * nn);
    let (us, rest) = rest.split_at(h);
    let (ut, rest) = rest.split_at(r);
    let (ds, dt) = rest.split_at(h);
    (kron_sum(a, us, ut, nn, h, r), kron_sum(a, ds, dt, nn, h, r))
}

/// ∂L/∂(Compacter block) from the gradients of its two h × r matrices (up, down).
pub fn compacter_backward(layer: &Layer, blk: &[f64], g_up: &[f64], g_down: &[f64]) -> Vec<f64> {
    let (h, nn, r) = (layer.hidden(), layer.shape.compacter_n, layer.shape.compacter_rank);
    let (a, rest) = blk.split_at(nn * nn * nn);
    let (us, rest) = rest.split_at(h);
    let (ut, rest) = rest.split_at(r);
    let (ds, dt) = rest.split_at(h);
    let (ga1, gus, gut) = kron_sum_backward(a, us, ut, g_up, nn, h, r);
    let (ga2, gds, gdt) = kron_sum_backward(a, ds, dt, g_down, nn, h, r);
    let mut g: Vec<f64> = ga1.iter().zip(&ga2).map(|(x, y)| x + y).collect();
    g.extend(gus);
    g.extend(gut);
    g.extend(gds);
    g.extend(gdt);
    g
}

/// Σᵢ Aᵢ ⊗ (sᵢ tᵢᵀ) as an h × r row-major matrix; `a` holds N matrices N × N, `s` N vectors of
/// h/N, `t` N vectors of r/N. Entry (p·h/N + q, p'·r/N + k) = Σᵢ Aᵢ[p, p']·sᵢ[q]·tᵢ[k].
fn kron_sum(a: &[f64], s: &[f64], t: &[f64], nn: usize, h: usize, r: usize) -> Vec<f64> {
    let (hh, rr) = (h / nn, r / nn);
    let mut m = vec![0.0; h * r];
    for i in 0..nn {
        for p in 0..nn {
            for pp in 0..nn {
                let aij = a[i * nn * nn + p * nn + pp];
                for q in 0..hh {
                    let f = aij * s[i * hh + q];
                    for k in 0..rr {
                        m[(p * hh + q) * r + pp * rr + k] += f * t[i * rr + k];
                    }
                }
            }
        }
    }
    m
}

/// Gradients of a loss with respect to (A, s, t) given its gradient `gm` with respect to
/// [`kron_sum`]'s output.
fn kron_sum_backward(
    a: &[f64],
    s: &[f64],
    t: &[f64],
    gm: &[f64],
    nn: usize,
    h: usize,
    r: usize,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (hh, rr) = (h / nn, r / nn);
    let (mut ga, mut gs, mut gt) = (vec![0.0; a.len()], vec![0.0; s.len()], vec![0.0; t.len()]);
    for i in 0..nn {
        for p in 0..nn {
            for pp in 0..nn {
                let aij = a[i * nn * nn + p * nn + pp];
                for q in 0..hh {
                    let sq = s[i * hh + q];
                    for k in 0..rr {
                        let gv = gm[(p * hh + q) * r + pp * rr + k];
                        let tk = t[i * rr + k];
                        ga[i * nn * nn + p * nn + pp] += gv * sq * tk;
                        gs[i * hh + q] += gv * aij * tk;
                        gt[i * rr + k] += gv * aij * sq;
                    }
                }
            }
        }
    }
    (ga, gs, gt)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// kron_sum against the Kronecker product written out for N = 2, h = 4, r = 2.
    #[test]
    fn kron_sum_is_the_sum_of_kronecker_products() {
        let a = [1.0, 2.0, 3.0, 4.0, -1.0, 0.5, 0.0, 2.0]; // A₀ = [[1,2],[3,4]], A₁ = [[-1,.5],[0,2]]
        let s = [1.0, -2.0, 0.5, 3.0]; // s₀ = (1, −2), s₁ = (0.5, 3)
        let t = [2.0, -1.0]; // t₀ = (2), t₁ = (−1)
        let m = kron_sum(&a, &s, &t, 2, 4, 2);
        // A ⊗ (s tᵀ) with s tᵀ a 2×1 block: entry (2p + q, p') = A[p][p']·s[q]·t.
        let mut want = [0.0; 8];
        for i in 0..2 {
            for p in 0..2 {
                for pp in 0..2 {
                    for q in 0..2 {
                        want[(2 * p + q) * 2 + pp] += a[4 * i + 2 * p + pp] * s[2 * i + q] * t[i];
                    }
                }
            }
        }
        assert_eq!(m, want.to_vec());
        assert_eq!(m[0], 2.0 + 0.5); // (0,0): A₀[0][0]s₀[0]t₀ + A₁[0][0]s₁[0]t₁ = 1·1·2 + (−1)·0.5·(−1)
    }
}
