//! The map θ ↦ (w, β) of every strategy ([`Net::effective`]) and its transpose, ∂L/∂(w, β) ↦ ∂L/∂θ
//! ([`Net::backward`]).

use std::borrow::Cow;

use super::{Backbone, Effective, Net};
use crate::error::{Error, Result};
use crate::theory::Strategy;

impl<'a> Net<'a> {
    /// θ ↦ (w, β) and the current (W, b).
    pub fn effective(&self, theta: &[f64]) -> Result<Effective<'a>> {
        self.check(theta)?;
        let (h, n) = (self.backbone.hidden, self.backbone.inputs);
        let (u, rest) = theta.split_at(h);
        let (c, blk) = (rest[0], &rest[1..]);
        let backbone: &'a Backbone = self.backbone;
        let (w0, b0) = (&backbone.w, &backbone.b);
        let (bw, bb): (Cow<'a, [f64]>, Cow<'a, [f64]>) = match self.strategy {
            Strategy::Full => (blk[..h * n].to_vec().into(), blk[h * n..].to_vec().into()),
            Strategy::LinearProbe => (w0.as_slice().into(), b0.as_slice().into()),
            Strategy::Bitfit => (w0.as_slice().into(), blk.to_vec().into()),
            Strategy::Ia3 => (
                (0..h * n).map(|k| blk[k / n] * w0[k]).collect::<Vec<_>>().into(),
                (0..h).map(|i| blk[i] * b0[i]).collect::<Vec<_>>().into(),
            ),
            Strategy::Lora => {
                let r = self.shape.lora_rank;
                let (a, bm) = blk.split_at(r * n);
                let mut w = w0.clone();
                for i in 0..h {
                    for k in 0..r {
                        let f = bm[i * r + k];
                        if f != 0.0 {
                            let row = &a[k * n..(k + 1) * n];
                            w[i * n..(i + 1) * n].iter_mut().zip(row).for_each(|(x, y)| *x += f * y);
                        }
                    }
                }
                (w.into(), b0.as_slice().into())
            }
            Strategy::Adapter | Strategy::Compacter => {
                let (up, down, r) = self.adapter_mats(blk);
                // M = I + U Dᵀ applied to W₀ and b₀: M W₀ = W₀ + U (Dᵀ W₀).
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
                let mut w = w0.clone();
                let mut b = b0.clone();
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
                (w.into(), b.into())
            }
        };
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

    /// (U, D, r) of the adapter or Compacter block.
    fn adapter_mats(&self, blk: &[f64]) -> (Vec<f64>, Vec<f64>, usize) {
        let h = self.backbone.hidden;
        match self.strategy {
            Strategy::Compacter => {
                let (u, d) = self.compacter_mats(blk);
                (u, d, self.shape.compacter_rank)
            }
            _ => {
                let r = self.shape.adapter_rank;
                (blk[..h * r].to_vec(), blk[h * r..].to_vec(), r)
            }
        }
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
        let (w0, b0) = (&self.backbone.w, &self.backbone.b);
        let mut g = Vec::with_capacity(self.len);
        // Head: ∂L/∂u = W gw + b·gβ, ∂L/∂c = gβ.
        for i in 0..h {
            let row = &eff.backbone_w[i * n..(i + 1) * n];
            g.push(dot(row, gw) + eff.backbone_b[i] * gbeta);
        }
        g.push(gbeta);
        // Backbone: ∂L/∂W = u gwᵀ, ∂L/∂b = u·gβ, pushed through each parameterisation.
        match self.strategy {
            Strategy::Full => {
                for &ui in u {
                    g.extend(gw.iter().map(|x| ui * x));
                }
                g.extend(u.iter().map(|ui| ui * gbeta));
            }
            Strategy::LinearProbe => {}
            Strategy::Bitfit => g.extend(u.iter().map(|ui| ui * gbeta)),
            Strategy::Ia3 => {
                for i in 0..h {
                    g.push(u[i] * (dot(&w0[i * n..(i + 1) * n], gw) + b0[i] * gbeta));
                }
            }
            Strategy::Lora => {
                let r = self.shape.lora_rank;
                let (a, bm) = blk.split_at(r * n);
                let a_gw: Vec<f64> = (0..r).map(|k| dot(&a[k * n..(k + 1) * n], gw)).collect();
                let bt_u: Vec<f64> = (0..r).map(|k| (0..h).map(|i| bm[i * r + k] * u[i]).sum()).collect();
                for &bk in &bt_u {
                    g.extend(gw.iter().map(|x| bk * x));
                }
                for &ui in u {
                    g.extend(a_gw.iter().map(|x| ui * x));
                }
            }
            Strategy::Adapter | Strategy::Compacter => {
                let (up, down, r) = self.adapter_mats(blk);
                // q = W₀ gw + gβ b₀; ∂L/∂U = u (Dᵀq)ᵀ; ∂L/∂D = q (Uᵀu)ᵀ.
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
                if self.strategy == Strategy::Adapter {
                    g.extend(g_up);
                    g.extend(g_down);
                } else {
                    g.extend(self.compacter_backward(blk, &g_up, &g_down));
                }
            }
        }
        debug_assert_eq!(g.len(), self.len);
        Ok(g)
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
