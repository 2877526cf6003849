//! (IA)³ (Liu et al. 2022, NeurIPS): learned vectors that rescale activations, initialised to 1,
//! on the key and value projections, the intermediate dense (3072 on ViT-B) and the output dense
//! (768) of every layer (the paper's code: `adapters` IA3Config). As in `adapters`, the scale
//! multiplies the wrapped linear layer's output, so it folds exactly into W and b.
//! 64,512 parameters on ViT-B/16: 12 × (768 + 768 + 3072 + 768).

use std::borrow::Cow;

use super::{Definition, ExportForm};
use crate::theory::dynamics::net::dot;
use crate::theory::dynamics::net::{Layer, ModuleSizes, Parameterisation};
use std::collections::HashMap;

use candle_core::{Result as CResult, Tensor};

use super::{Method, PeftConfig, ProjectionHooks};
use crate::engine::vit::{Init, LayerKeys, ParamSpec, Role, VitConfig};
use crate::engine::weights::Weights;
use crate::error::Result;

/// (IA)³.
pub struct Ia3;

/// The keys of the projections (IA)³ rescales in layer `k`.
fn target_keys(k: &LayerKeys) -> [&String; 4] {
    [&k.key, &k.value, &k.intermediate, &k.output]
}

/// The projections (IA)³ rescales, with their output sizes.
pub fn targets(cfg: &VitConfig, k: &LayerKeys) -> Vec<(String, usize)> {
    let sizes = [cfg.dim, cfg.dim, cfg.mlp_dim, cfg.dim];
    target_keys(k)
        .into_iter()
        .zip(sizes)
        .map(|(key, o)| (key.clone(), o))
        .collect()
}

impl Method for Ia3 {
    /// `{proj}.ia3_scale` `[out]` for every target of every layer.
    fn added(&self, cfg: &VitConfig, _p: &PeftConfig) -> Vec<ParamSpec> {
        let mut out = Vec::new();
        for i in 0..cfg.depth {
            for (proj, o) in targets(cfg, &LayerKeys::new(i)) {
                out.push(ParamSpec {
                    key: format!("{proj}.ia3_scale"),
                    shape: vec![o],
                    init: Init::Ones,
                    role: Role::Peft,
                    trainable: true,
                });
            }
        }
        out
    }

    /// The output scale on the projections that carry `ia3_scale`.
    fn projection(&self, w: &Weights, _p: &PeftConfig) -> Result<ProjectionHooks> {
        Ok(ProjectionHooks {
            delta: None,
            scale: w.opt("ia3_scale"),
        })
    }

    /// W ← diag(ℓ)·W and b ← ℓ ⊙ b on every target; ℓ is removed.
    fn merge(&self, tensors: &mut HashMap<String, Tensor>, layers: &[LayerKeys], _p: &PeftConfig) -> Result<bool> {
        for k in layers {
            for proj in target_keys(k) {
                if let Some(s) = tensors.remove(&format!("{proj}.ia3_scale")) {
                    let (wk, bk) = (format!("{proj}.weight"), format!("{proj}.bias"));
                    let (w, b) = merge(&tensors[&wk], &tensors[&bk], &s)?;
                    tensors.insert(wk, w);
                    tensors.insert(bk, b);
                }
            }
        }
        Ok(true)
    }
}

/// Folds the scale into a linear layer: diag(ℓ)·W and ℓ ⊙ b.
pub fn merge(w: &Tensor, b: &Tensor, scale: &Tensor) -> CResult<(Tensor, Tensor)> {
    Ok((w.broadcast_mul(&scale.unsqueeze(1)?)?, (b * scale)?))
}

impl Definition for Ia3 {
    fn name(&self) -> &'static str {
        "(IA)³"
    }
    fn id(&self) -> &'static str {
        "ia3"
    }
    fn aliases(&self) -> &'static [&'static str] {
        &["(ia)3", "ia³"]
    }
    fn vit_b16_params(&self) -> u64 {
        64_512
    }
    fn export_form(&self) -> ExportForm {
        ExportForm::Merged
    }
}

/// diag(ℓ)·W₀ and ℓ ⊙ b₀, ℓ = 1 at start: h.
impl Parameterisation for Ia3 {
    fn block_len(&self, h: usize, _n: usize, _shape: &ModuleSizes) -> usize {
        h
    }
    fn init(&self, layer: &Layer, _gauss: &mut dyn FnMut(f64, usize) -> Vec<f64>, theta: &mut Vec<f64>) {
        theta.extend(std::iter::repeat_n(1.0, layer.hidden()));
    }
    fn backbone<'a>(&self, layer: &Layer<'a>, blk: &[f64]) -> (Cow<'a, [f64]>, Cow<'a, [f64]>) {
        let (h, n, w0, b0) = (layer.hidden(), layer.inputs(), layer.w0(), layer.b0());
        (
            (0..h * n).map(|k| blk[k / n] * w0[k]).collect::<Vec<_>>().into(),
            (0..h).map(|i| blk[i] * b0[i]).collect::<Vec<_>>().into(),
        )
    }
    fn backward(&self, layer: &Layer, _blk: &[f64], u: &[f64], gw: &[f64], gbeta: f64, g: &mut Vec<f64>) {
        let (h, n, w0, b0) = (layer.hidden(), layer.inputs(), layer.w0(), layer.b0());
        for i in 0..h {
            g.push(u[i] * (dot(&w0[i * n..(i + 1) * n], gw) + b0[i] * gbeta));
        }
    }
}
