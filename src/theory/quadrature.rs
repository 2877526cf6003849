//! Gauss–Hermite quadrature for expectations over a standard normal: E[f(ξ)], ξ ~ N(0, 1).
//!
//! Nodes and weights come from the Golub–Welsch algorithm (Golub & Welsch 1969, "Calculation of
//! Gauss quadrature rules", Math. Comp. 23): for the probabilists' Hermite polynomials the Jacobi
//! matrix is tridiagonal with zero diagonal and off-diagonal √k (k = 1..n−1); the nodes are its
//! eigenvalues (each then polished by Newton's method on the orthonormal polynomial), and each
//! weight is 1/Σ_{k<n} p_k(x)² (the Christoffel function, equal to the squared first eigenvector
//! component but accurate in the tails). With `n` nodes the rule is exact for polynomials of
//! degree ≤ 2n − 1.
//!
//! Accuracy on the integrands of the dynamics (`theory::dynamics`): the logistic loss and its
//! derivatives along a Gaussian score N(m, σ²). They are analytic but vary on a scale of 1 in the
//! score, i.e. 1/σ in ξ (the softplus has poles at t = ±iπ, a distance π/σ from the real ξ axis),
//! so the error grows with σ = ‖v‖₂. Measured against a 400-node rule over m ∈ [−3, 5]
//! (`error_table` in this module's tests prints the grid), largest absolute loss error:
//!
//! | nodes | σ = 0.5 | σ = 2 | σ = 4 | σ = 6 |
//! |---|---|---|---|---|
//! | 32 | 1e-15 | 2.7e-8 | 8.3e-5 | 1.4e-3 |
//! | 48 | 9e-16 | 4.2e-10 | 9.2e-6 | 2.9e-4 |
//! | 64 | 1e-15 | 1.3e-11 | 1.5e-6 | 8.3e-5 |
//!
//! The dynamics use 64 nodes by default and report |L(n) − L(2n)| at every evaluation, so a
//! configuration that drives σ up (many strong features) shows its quadrature error.

use nalgebra::{DMatrix, SymmetricEigen};

use crate::error::{Error, Result};

/// A Gauss–Hermite rule for the standard normal density (weights sum to 1).
#[derive(Debug, Clone, PartialEq)]
pub struct GaussHermite {
    nodes: Vec<f64>,
    weights: Vec<f64>,
}

impl GaussHermite {
    /// The `n`-node rule (1 ≤ n ≤ 1000).
    pub fn new(n: usize) -> Result<Self> {
        if n == 0 || n > 1000 {
            return Err(Error::invalid("quadrature_nodes", "must lie in 1..=1000", n));
        }
        let mut jacobi = DMatrix::<f64>::zeros(n, n);
        for k in 1..n {
            let off = (k as f64).sqrt();
            jacobi[(k - 1, k)] = off;
            jacobi[(k, k - 1)] = off;
        }
        let eig = SymmetricEigen::new(jacobi);
        let mut nodes: Vec<f64> = eig.eigenvalues.iter().copied().collect();
        nodes.sort_by(f64::total_cmp);
        // Polish each node by Newton on the orthonormal polynomial pₙ (pₙ' = √n·pₙ₋₁) and take the
        // weight from the Christoffel function 1/Σ_{k<n} p_k(x)²: accurate to a few ulps in the
        // tails, where the eigenvector components lose relative accuracy.
        let mut weights = Vec::with_capacity(n);
        for x in nodes.iter_mut() {
            for _ in 0..3 {
                let (pn, pn1, _) = orthonormal(n, *x);
                let d = (n as f64).sqrt() * pn1;
                if d != 0.0 {
                    *x -= pn / d;
                }
            }
            weights.push(1.0 / orthonormal(n, *x).2);
        }
        // Symmetrise (the rule is symmetric about 0).
        for i in 0..n / 2 {
            let j = n - 1 - i;
            let x = 0.5 * (nodes[j] - nodes[i]);
            let w = 0.5 * (weights[i] + weights[j]);
            (nodes[i], nodes[j], weights[i], weights[j]) = (-x, x, w, w);
        }
        if n % 2 == 1 {
            nodes[n / 2] = 0.0;
        }
        let total: f64 = weights.iter().sum();
        weights.iter_mut().for_each(|w| *w /= total);
        Ok(Self { nodes, weights })
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Always false (a rule has at least one node).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// (node, weight) pairs, nodes increasing.
    pub fn iter(&self) -> impl Iterator<Item = (f64, f64)> + '_ {
        self.nodes.iter().copied().zip(self.weights.iter().copied())
    }

    /// E[f(ξ)] for ξ ~ N(0, 1), by the rule.
    pub fn expect(&self, mut f: impl FnMut(f64) -> f64) -> f64 {
        self.iter().map(|(x, w)| w * f(x)).sum()
    }
}

/// (pₙ(x), pₙ₋₁(x), Σ_{k<n} p_k(x)²) for the orthonormal probabilists' Hermite polynomials
/// p_k = He_k/√(k!): p₀ = 1, p_{k+1} = (x·p_k − √k·p_{k−1})/√(k+1).
fn orthonormal(n: usize, x: f64) -> (f64, f64, f64) {
    let (mut prev, mut cur, mut sum) = (0.0, 1.0, 0.0);
    for k in 0..n {
        sum += cur * cur;
        let next = (x * cur - (k as f64).sqrt() * prev) / ((k + 1) as f64).sqrt();
        (prev, cur) = (cur, next);
    }
    (cur, prev, sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn double_factorial_odd(k: u32) -> f64 {
        (1..=k).filter(|i| i % 2 == 1).map(f64::from).product()
    }

    /// Exact for every moment up to degree 2n − 1: E[ξ^{2k}] = (2k − 1)!!, odd moments 0.
    #[test]
    fn moments_are_exact_up_to_degree_2n_minus_1() {
        for n in [1usize, 2, 5, 32, 64] {
            let gh = GaussHermite::new(n).unwrap();
            assert_eq!(gh.len(), n);
            for deg in 0..(2 * n as u32).min(40) {
                let got = gh.expect(|x| x.powi(deg as i32));
                let even = deg + deg % 2;
                let scale = double_factorial_odd(even.max(1) - 1).max(1.0); // E[ξ^even] bounds the terms
                let want = if deg % 2 == 1 { 0.0 } else { scale };
                assert!(
                    (got - want).abs() <= 1e-12 * scale,
                    "n = {n}, degree {deg}: {got} vs {want}"
                );
            }
        }
        // Degree 2n is not exact (the test can fail): E[ξ⁴] with 2 nodes is 1, not 3.
        assert!((GaussHermite::new(2).unwrap().expect(|x| x.powi(4)) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn rejects_zero_and_huge() {
        assert!(
            GaussHermite::new(0)
                .unwrap_err()
                .to_string()
                .contains("quadrature_nodes")
        );
        assert!(GaussHermite::new(1001).is_err());
    }

    /// Error of the logistic loss E[log(1 + e^{−(m + σξ)})] against a 400-node rule; the numbers
    /// quoted in the module documentation. Run with `--nocapture` to print the table.
    #[test]
    fn error_table() {
        let reference = GaussHermite::new(400).unwrap();
        let loss = |gh: &GaussHermite, m: f64, s: f64| gh.expect(|x| crate::theory::dynamics::softplus(-(m + s * x)));
        let mut worst = [[0.0f64; 4]; 3];
        let sigmas = [0.5, 2.0, 4.0, 6.0];
        for (ni, n) in [32usize, 48, 64].into_iter().enumerate() {
            let gh = GaussHermite::new(n).unwrap();
            for (si, &s) in sigmas.iter().enumerate() {
                for m in [-3.0, -1.0, 0.0, 0.5, 2.0, 5.0] {
                    let e = (loss(&gh, m, s) - loss(&reference, m, s)).abs();
                    worst[ni][si] = worst[ni][si].max(e);
                }
            }
            println!("n = {n}: max error for σ = {sigmas:?}: {:?}", worst[ni]);
        }
        // The table in the module documentation, as bounds (each within 2× of the measured value).
        assert!(
            worst[0][0] < 1e-14 && worst[0][1] < 5e-8 && worst[0][3] < 3e-3,
            "32 nodes: {:?}",
            worst[0]
        );
        assert!(
            worst[2][1] < 3e-11 && worst[2][2] < 3e-6 && worst[2][3] < 2e-4,
            "64 nodes: {:?}",
            worst[2]
        );
        // More nodes help at every σ > 0.5.
        for ((w64, w48), w32) in worst[2].iter().zip(&worst[1]).zip(&worst[0]).skip(1) {
            assert!(w64 < w48 && w48 < w32);
        }
    }
}
