//! Compacter (Karimi Mahabadi et al. 2021, NeurIPS; `adapters` CompacterConfig): adapters at the
//! same two sites as [`super::adapter`], reduction factor 32 (768 → 24), whose projections are
//! parameterised hypercomplex multiplication (PHM) layers: W = Σᵢ Aᵢ ⊗ Bᵢ with n = 4, the "rule"
//! matrices Aᵢ ∈ R^{n×n} shared by all adapters (one n×n×n tensor), and each Bᵢ factorised to rank
//! one, Bᵢ = sᵢ tᵢᵀ with sᵢ ∈ R^{in/n}, tᵢ ∈ R^{out/n}. GELU in between, residual around.
//! 57,088 parameters on ViT-B/16: 24 adapters × (792 + 792 + 24 + 768) + 64.
//!
//! Initialisation: rule ~ N(0, 0.1²); s, t ~ U(−√(6/(fan_in+fan_out)), …) (Glorot uniform over
//! the factor sizes, as `adapters`), except the up projection's t ~ N(0, 1e-4²): the adapter
//! starts near the identity map, like the Houlsby one.

use std::borrow::Cow;

use super::{Definition, ExportForm};
use crate::theory::dynamics::net::{Layer, ModuleSizes, Parameterisation};
use crate::theory::dynamics::net::{bottleneck_backbone, bottleneck_grads, compacter_backward, compacter_mats};
use candle_core::{Result as CResult, Tensor};

use super::{Method, PeftConfig, SiteAt, SiteModule};
use crate::engine::ops::{gelu, linear};
use crate::engine::vit::{Init, LayerKeys, ParamSpec, Role, VitConfig};
use crate::engine::weights::Weights;
use crate::error::Result;

/// Compacter.
pub struct Compacter;

/// Key of the shared rule tensor [n, n, n].
pub const RULE_KEY: &str = "compacter.phm_rule";

/// The two Compacter sites of layer `k` (same places as the Houlsby adapter).
pub fn sites(k: &LayerKeys) -> [String; 2] {
    [
        format!("{}.attention.output.compacter", k.prefix),
        format!("{}.output.compacter", k.prefix),
    ]
}

fn pspec(key: String, shape: Vec<usize>, init: Init) -> ParamSpec {
    ParamSpec {
        key,
        shape,
        init,
        role: Role::Peft,
        trainable: true,
    }
}

/// One PHM layer's tensors: `{prefix}.s` [n, in/n], `{prefix}.t` [n, out/n], `{prefix}.bias` [out].
fn phm_spec(prefix: &str, inp: usize, out: usize, n: usize, t_init: Init) -> Vec<ParamSpec> {
    let glorot = (6.0 / ((inp / n + out / n) as f64)).sqrt();
    vec![
        pspec(format!("{prefix}.s"), vec![n, inp / n], Init::Uniform(glorot)),
        pspec(format!("{prefix}.t"), vec![n, out / n], t_init),
        pspec(format!("{prefix}.bias"), vec![out], Init::Zeros),
    ]
}

impl Method for Compacter {
    /// The shared rule plus down/up PHM layers at both sites of every layer.
    fn added(&self, cfg: &VitConfig, p: &PeftConfig) -> Vec<ParamSpec> {
        let n = p.phm_n;
        let r = cfg.dim / p.compacter_reduction;
        let mut out = vec![pspec(RULE_KEY.into(), vec![n, n, n], Init::Normal(0.1))];
        let glorot_down = (6.0 / ((cfg.dim / n + r / n) as f64)).sqrt();
        for i in 0..cfg.depth {
            for site in sites(&LayerKeys::new(i)) {
                out.extend(phm_spec(
                    &format!("{site}.down"),
                    cfg.dim,
                    r,
                    n,
                    Init::Uniform(glorot_down),
                ));
                out.extend(phm_spec(&format!("{site}.up"), r, cfg.dim, n, Init::Normal(1e-4)));
            }
        }
        out
    }

    /// The Compacter at `at` of `layer`, with the shared rule.
    fn site(&self, w: &Weights, layer: &LayerKeys, at: SiteAt) -> Result<Option<Box<dyn SiteModule>>> {
        let site = w.pp(&at.pick(sites(layer)));
        let phm = |name: &str| -> Result<[Tensor; 3]> {
            let p = site.pp(name);
            Ok([p.get("s")?, p.get("t")?, p.get("bias")?])
        };
        Ok(Some(Box::new(Phm {
            rule: w.get(RULE_KEY)?,
            down: phm("down")?,
            up: phm("up")?,
        })))
    }
}

/// One Compacter: the shared rule, and the down and up PHM layers' (s, t, bias).
struct Phm {
    rule: Tensor,
    down: [Tensor; 3],
    up: [Tensor; 3],
}

impl SiteModule for Phm {
    fn forward(&self, h: Tensor) -> CResult<Tensor> {
        let [ds, dt, db] = &self.down;
        let [us, ut, ub] = &self.up;
        forward(&h, &self.rule, [ds, dt, db], [us, ut, ub])
    }
}

/// The PHM weight W = Σᵢ Aᵢ ⊗ (sᵢ tᵢᵀ) ∈ R^{in×out} (used as y = x W + b).
pub fn phm_weight(rule: &Tensor, s: &Tensor, t: &Tensor) -> CResult<Tensor> {
    let (n, p) = s.dims2()?;
    let (_, q) = t.dims2()?;
    // Bᵢ = sᵢ tᵢᵀ: [n, p, q].
    let b = s.unsqueeze(2)?.broadcast_mul(&t.unsqueeze(1)?)?;
    // Σᵢ A[i, a, c]·B[i, x, y] → [a, c, x, y] via one matmul over i.
    let a = rule.reshape((n, n * n))?.t()?; // [(a,c), i]
    let w = a.matmul(&b.reshape((n, p * q))?)?; // [(a,c), (x,y)]
    // Kronecker layout: row a·p + x, column c·q + y.
    w.reshape((n, n, p, q))?.permute((0, 2, 1, 3))?.reshape((n * p, n * q))
}

/// h + up(GELU(down(h))) with PHM projections, each through `ops::linear` (x·Wᵀ + b with
/// Wᵀ = the PHM weight: flattened batch, one weight-gradient product, fused on CPU).
pub fn forward(h: &Tensor, rule: &Tensor, down: [&Tensor; 3], up: [&Tensor; 3]) -> CResult<Tensor> {
    let wd = phm_weight(rule, down[0], down[1])?.t()?;
    let wu = phm_weight(rule, up[0], up[1])?.t()?;
    let z = gelu(&linear(h, &wd, Some(down[2]))?)?;
    h + linear(&z, &wu, Some(up[2]))?
}

impl Definition for Compacter {
    fn name(&self) -> &'static str {
        "Compacter"
    }
    fn id(&self) -> &'static str {
        "compacter"
    }
    fn vit_b16_params(&self) -> u64 {
        57_088
    }
    fn export_form(&self) -> ExportForm {
        ExportForm::Modules
    }
    fn exact_start(&self) -> bool {
        false
    }
}

/// The adapter with U, D = Σᵢ Aᵢ ⊗ (sᵢ tᵢᵀ): Aᵢ ~ N(0, 1/N) shared, sᵢ ~ N(0, 1), the up
/// projection's t = 0 and the down projection's t ~ N(0, 1/h): N³ + 2(h + r).
impl Parameterisation for Compacter {
    fn block_len(&self, h: usize, _n: usize, shape: &ModuleSizes) -> usize {
        shape.compacter_n.pow(3) + 2 * (h + shape.compacter_rank)
    }
    fn init(&self, layer: &Layer, gauss: &mut dyn FnMut(f64, usize) -> Vec<f64>, theta: &mut Vec<f64>) {
        let (h, nn, r) = (layer.hidden(), layer.shape.compacter_n, layer.shape.compacter_rank);
        theta.extend(gauss((1.0 / nn as f64).sqrt(), nn * nn * nn));
        theta.extend(gauss(1.0, h)); // up s
        theta.extend(std::iter::repeat_n(0.0, r)); // up t = 0
        theta.extend(gauss(1.0, h)); // down s
        theta.extend(gauss((1.0 / h as f64).sqrt(), r)); // down t
    }
    fn backbone<'a>(&self, layer: &Layer<'a>, blk: &[f64]) -> (Cow<'a, [f64]>, Cow<'a, [f64]>) {
        let (up, down) = compacter_mats(layer, blk);
        let (w, b) = bottleneck_backbone(layer, &up, &down, layer.shape.compacter_rank);
        (w.into(), b.into())
    }
    fn backward(&self, layer: &Layer, blk: &[f64], u: &[f64], gw: &[f64], gbeta: f64, g: &mut Vec<f64>) {
        let (up, down) = compacter_mats(layer, blk);
        let r = layer.shape.compacter_rank;
        let (g_up, g_down) = bottleneck_grads(layer, (&up, &down, r), u, gw, gbeta);
        g.extend(compacter_backward(layer, blk, &g_up, &g_down));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// W = Σᵢ Aᵢ ⊗ Bᵢ checked element by element against the definition of ⊗.
    #[test]
    fn phm_weight_is_a_sum_of_kronecker_products() {
        let dev = Device::Cpu;
        let (n, p, q) = (2, 3, 2);
        let rule = Tensor::arange(0f64, (n * n * n) as f64, &dev)
            .unwrap()
            .reshape((n, n, n))
            .unwrap();
        let s = Tensor::new(&[[1.0f64, 2.0, 3.0], [-1.0, 0.5, 2.0]], &dev).unwrap();
        let t = Tensor::new(&[[1.0f64, -1.0], [2.0, 0.25]], &dev).unwrap();
        let w: Vec<Vec<f64>> = phm_weight(&rule, &s, &t).unwrap().to_vec2().unwrap();
        let r: Vec<Vec<Vec<f64>>> = rule.to_vec3().unwrap();
        let sv: Vec<Vec<f64>> = s.to_vec2().unwrap();
        let tv: Vec<Vec<f64>> = t.to_vec2().unwrap();
        for a in 0..n {
            for x in 0..p {
                for c in 0..n {
                    for y in 0..q {
                        let want: f64 = (0..n).map(|i| r[i][a][c] * sv[i][x] * tv[i][y]).sum();
                        assert!((w[a * p + x][c * q + y] - want).abs() < 1e-12);
                    }
                }
            }
        }
    }
}
