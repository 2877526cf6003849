//! Bottleneck adapters (Houlsby et al. 2019, ICML; `adapters` "double_seq_bn"): one after the
//! attention output projection and one after the FFN output projection of every layer, each
//! h + up(GELU(down(h))) with reduction factor 8 (768 → 96 → 768). The up-projection starts near
//! zero (N(0, 1e-4²)), so the adapted model starts at the pretrained function up to ~1e-4.
//! 3,559,680 parameters on ViT-B/16: 24 × ((768·96 + 96) + (96·768 + 768)).

use std::borrow::Cow;

use super::{Definition, ExportForm};
use crate::theory::dynamics::net::{Layer, ModuleSizes, Parameterisation};
use crate::theory::dynamics::net::{bottleneck_backbone, bottleneck_grads};
use candle_core::{Result as CResult, Tensor};

use super::{Method, PeftConfig, SiteAt, SiteModule};
use crate::engine::ops::{gelu, linear};
use crate::engine::vit::{INIT_STD, Init, LayerKeys, ParamSpec, Role, VitConfig};
use crate::engine::weights::Weights;
use crate::error::Result;

/// Houlsby bottleneck adapters.
pub struct Adapter;

/// Standard deviation of the up-projection at initialisation ("near 0").
pub const UP_INIT_STD: f64 = 1e-4;

/// The two adapter sites of layer `k`: after `attention.output.dense` and after `output.dense`.
pub fn sites(k: &LayerKeys) -> [String; 2] {
    [
        format!("{}.attention.output.adapter", k.prefix),
        format!("{}.output.adapter", k.prefix),
    ]
}

/// A linear layer's two tensors as specs.
pub(crate) fn linear_spec(prefix: &str, out: usize, inp: usize, w: Init) -> [ParamSpec; 2] {
    [
        ParamSpec {
            key: format!("{prefix}.weight"),
            shape: vec![out, inp],
            init: w,
            role: Role::Peft,
            trainable: true,
        },
        ParamSpec {
            key: format!("{prefix}.bias"),
            shape: vec![out],
            init: Init::Zeros,
            role: Role::Peft,
            trainable: true,
        },
    ]
}

impl Method for Adapter {
    /// `…adapter.down.{weight,bias}` and `…adapter.up.{weight,bias}` at both sites of every layer.
    fn added(&self, cfg: &VitConfig, p: &PeftConfig) -> Vec<ParamSpec> {
        let r = cfg.dim / p.adapter_reduction;
        let mut out = Vec::new();
        for i in 0..cfg.depth {
            for site in sites(&LayerKeys::new(i)) {
                out.extend(linear_spec(&format!("{site}.down"), r, cfg.dim, Init::Normal(INIT_STD)));
                out.extend(linear_spec(
                    &format!("{site}.up"),
                    cfg.dim,
                    r,
                    Init::Normal(UP_INIT_STD),
                ));
            }
        }
        out
    }

    /// The adapter at `at` of `layer`.
    fn site(&self, w: &Weights, layer: &LayerKeys, at: SiteAt) -> Result<Option<Box<dyn SiteModule>>> {
        let w = w.pp(&at.pick(sites(layer)));
        Ok(Some(Box::new(Bottleneck {
            down_w: w.get("down.weight")?,
            down_b: w.get("down.bias")?,
            up_w: w.get("up.weight")?,
            up_b: w.get("up.bias")?,
        })))
    }
}

/// One adapter's tensors.
struct Bottleneck {
    down_w: Tensor,
    down_b: Tensor,
    up_w: Tensor,
    up_b: Tensor,
}

impl SiteModule for Bottleneck {
    fn forward(&self, h: Tensor) -> CResult<Tensor> {
        forward(&h, &self.down_w, &self.down_b, &self.up_w, &self.up_b)
    }
}

/// h + up(GELU(down(h))).
pub fn forward(h: &Tensor, dw: &Tensor, db: &Tensor, uw: &Tensor, ub: &Tensor) -> CResult<Tensor> {
    h + linear(&gelu(&linear(h, dw, Some(db))?)?, uw, Some(ub))?
}

impl Definition for Adapter {
    fn name(&self) -> &'static str {
        "Adapter"
    }
    fn id(&self) -> &'static str {
        "adapter"
    }
    fn vit_b16_params(&self) -> u64 {
        3_559_680
    }
    fn export_form(&self) -> ExportForm {
        ExportForm::Modules
    }
    fn exact_start(&self) -> bool {
        false
    }
}

/// M W₀, M b₀ with M = I + U Dᵀ; U = 0 at start, D ~ N(0, 1/h): 2·h·r.
impl Parameterisation for Adapter {
    fn block_len(&self, h: usize, _n: usize, shape: &ModuleSizes) -> usize {
        2 * h * shape.adapter_rank
    }
    fn init(&self, layer: &Layer, gauss: &mut dyn FnMut(f64, usize) -> Vec<f64>, theta: &mut Vec<f64>) {
        let (h, r) = (layer.hidden(), layer.shape.adapter_rank);
        theta.extend(std::iter::repeat_n(0.0, h * r));
        theta.extend(gauss((1.0 / h as f64).sqrt(), h * r));
    }
    fn backbone<'a>(&self, layer: &Layer<'a>, blk: &[f64]) -> (Cow<'a, [f64]>, Cow<'a, [f64]>) {
        let (h, r) = (layer.hidden(), layer.shape.adapter_rank);
        let (w, b) = bottleneck_backbone(layer, &blk[..h * r], &blk[h * r..], r);
        (w.into(), b.into())
    }
    fn backward(&self, layer: &Layer, blk: &[f64], u: &[f64], gw: &[f64], gbeta: f64, g: &mut Vec<f64>) {
        let (h, r) = (layer.hidden(), layer.shape.adapter_rank);
        let (g_up, g_down) = bottleneck_grads(layer, (&blk[..h * r], &blk[h * r..], r), u, gw, gbeta);
        g.extend(g_up);
        g.extend(g_down);
    }
}
