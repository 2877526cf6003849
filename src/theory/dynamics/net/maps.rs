//! The map θ ↦ (w, β) ([`Net::effective`]) and its transpose, ∂L/∂(w, β) ↦ ∂L/∂θ
//! ([`Net::backward`]): the head here, the strategy's block through its [`Parameterisation`];
//! and the bottleneck adapter's map, shared by Adapter and Compacter.
//!
//! [`Parameterisation`]: super::Parameterisation

use std::borrow::Cow;

use super::{Effective, Layer, Net};
use crate::error::{Error, Result};
use crate::theory::StrategyModel;

impl<'a, S: StrategyModel> Net<'a, S> {
    /// θ ↦ (w, β) and the current (W, b).
    pub fn effective(&self, theta: &[f64]) -> Result<Effective<'a>> {
        self.check(theta)?;
        let (h, n) = (self.backbone.hidden, self.backbone.inputs);
        let (u, rest) = theta.split_at(h);
        let (c, blk) = (rest[0], &rest[1..]);
        let (bw, bb): (Cow<'a, [f64]>, Cow<'a, [f64]>) = self.strategy.dynamics().backbone(&self.layer(), blk);
        let mut w = vec![0.0; n];
        for i in 0..h {
            w.iter_mut()
                .zip(&bw[i * n..(i + 1) * n])
                .for_each(|(x, y)| *x += u[i] * y);
        }
        let beta = u.iter().zip(bb.iter()).map(|(a, b)| a * b).sum::<f64>() + c;
        Ok(Effective {
            w,
            beta,
            backbone_w: bw,
            backbone_b: bb,
        })
    }

    /// ∂L/∂θ from ∂L/∂w (`gw`) and ∂L/∂β (`gbeta`) at θ; `eff` is [`Net::effective`] at θ.
    pub fn backward(&self, theta: &[f64], eff: &Effective, gw: &[f64], gbeta: f64) -> Result<Vec<f64>> {
        self.check(theta)?;
        let (h, n) = (self.backbone.hidden, self.backbone.inputs);
        if gw.len() != n {
            return Err(Error::invalid("gw", format!("need {n} entries"), gw.len()));
        }
        let u = &theta[..h];
        let blk = &theta[h + 1..];
        let mut g = Vec::with_capacity(self.len);
        // Head: ∂L/∂u = W gw + b·gβ, ∂L/∂c = gβ.
        for i in 0..h {
            let row = &eff.backbone_w[i * n..(i + 1) * n];
            g.push(dot(row, gw) + eff.backbone_b[i] * gbeta);
        }
        g.push(gbeta);
        // Backbone: ∂L/∂W = u gwᵀ, ∂L/∂b = u·gβ, pushed through the strategy's parameterisation.
        self.strategy
            .dynamics()
            .backward(&self.layer(), blk, u, gw, gbeta, &mut g);
        debug_assert_eq!(g.len(), self.len);
        Ok(g)
    }
}

/// The bottleneck adapter's backbone: M W₀ and M b₀ with M = I + U Dᵀ (U, D ∈ R^{h×r},
/// row-major), computed as W₀ + U (Dᵀ W₀).
pub fn bottleneck_backbone(layer: &Layer, up: &[f64], down: &[f64], r: usize) -> (Vec<f64>, Vec<f64>) {
    let (h, n) = (layer.hidden(), layer.inputs());
    let (w0, b0) = (layer.w0(), layer.b0());
    let mut dw = vec![0.0; r * n];
    let mut db = vec![0.0; r];
    for i in 0..h {
        for k in 0..r {
            let f = down[i * r + k];
            dw[k * n..(k + 1) * n]
                .iter_mut()
                .zip(&w0[i * n..(i + 1) * n])
                .for_each(|(x, y)| *x += f * y);
            db[k] += f * b0[i];
        }
    }
    let mut w = w0.to_vec();
    let mut b = b0.to_vec();
    for i in 0..h {
        for k in 0..r {
            let f = up[i * r + k];
            if f != 0.0 {
                w[i * n..(i + 1) * n]
                    .iter_mut()
                    .zip(&dw[k * n..(k + 1) * n])
                    .for_each(|(x, y)| *x += f * y);
                b[i] += f * db[k];
            }
        }
    }
    (w, b)
}

/// The gradients (∂L/∂U, ∂L/∂D) of the bottleneck adapter: with q = W₀ gw + gβ b₀,
/// ∂L/∂U = u (Dᵀq)ᵀ and ∂L/∂D = q (Uᵀu)ᵀ.
pub fn bottleneck_grads(
    layer: &Layer,
    (up, down, r): (&[f64], &[f64], usize),
    u: &[f64],
    gw: &[f64],
    gbeta: f64,
) -> (Vec<f64>, Vec<f64>) {
    let (h, n) = (layer.hidden(), layer.inputs());
    let (w0, b0) = (layer.w0(), layer.b0());
    let q: Vec<f64> = (0..h)
        .map(|i| dot(&w0[i * n..(i + 1) * n], gw) + gbeta * b0[i])
        .collect();
    let dt_q: Vec<f64> = (0..r).map(|k| (0..h).map(|i| down[i * r + k] * q[i]).sum()).collect();
    let ut_u: Vec<f64> = (0..r).map(|k| (0..h).map(|i| up[i * r + k] * u[i]).sum()).collect();
    let mut g_up = Vec::with_capacity(h * r);
    let mut g_down = Vec::with_capacity(h * r);
    for i in 0..h {
        g_up.extend(dt_q.iter().map(|x| u[i] * x));
        g_down.extend(ut_u.iter().map(|x| q[i] * x));
    }
    (g_up, g_down)
}

/// aᵀb.
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
