//! LoRA (Hu et al. 2022, ICLR): W x + (α/r)·B A x on query, key, value, intermediate dense and
//! output dense of every layer (the paper's code: `adapters` LoRAConfig with r = 8, α = 8,
//! selfattn on q, k, v plus intermediate_lora and output_lora). A ~ U(−1/√in, 1/√in) (Kaiming
//! uniform with a = √5, as peft/adapters), B = 0, so the model starts exactly at the pretrained
//! function. 1,179,648 parameters on ViT-B/16: 12 × (3·8·(768+768) + 2·8·(768+3072)).

use std::collections::HashMap;

use candle_core::{Result as CResult, Tensor};

use super::{Delta, Method, PeftConfig, ProjectionHooks};
use crate::engine::ops::linear;
use crate::engine::vit::{Init, LayerKeys, ParamSpec, Role, VitConfig};
use crate::engine::weights::Weights;
use crate::error::Result;

/// LoRA.
pub struct Lora;

/// The keys of the projections LoRA wraps in layer `k`.
fn target_keys(k: &LayerKeys) -> [&String; 5] {
    [&k.query, &k.key, &k.value, &k.intermediate, &k.output]
}

/// The projections LoRA wraps, with (out, in) sizes.
pub fn targets(cfg: &VitConfig, k: &LayerKeys) -> Vec<(String, usize, usize)> {
    let (d, m) = (cfg.dim, cfg.mlp_dim);
    let sizes = [(d, d), (d, d), (d, d), (m, d), (d, m)];
    target_keys(k)
        .into_iter()
        .zip(sizes)
        .map(|(key, (o, i))| (key.clone(), o, i))
        .collect()
}

/// LoRA's α/r.
fn scale(p: &PeftConfig) -> f64 {
    p.lora_alpha / p.lora_rank as f64
}

impl Method for Lora {
    /// `{proj}.lora_A` [r, in] and `{proj}.lora_B` [out, r] for every target of every layer.
    fn added(&self, cfg: &VitConfig, p: &PeftConfig) -> Vec<ParamSpec> {
        let mut out = Vec::new();
        for i in 0..cfg.depth {
            for (proj, o, inp) in targets(cfg, &LayerKeys::new(i)) {
                let bound = 1.0 / (inp as f64).sqrt();
                out.push(ParamSpec {
                    key: format!("{proj}.lora_A"),
                    shape: vec![p.lora_rank, inp],
                    init: Init::Uniform(bound),
                    role: Role::Peft,
                    trainable: true,
                });
                out.push(ParamSpec {
                    key: format!("{proj}.lora_B"),
                    shape: vec![o, p.lora_rank],
                    init: Init::Zeros,
                    role: Role::Peft,
                    trainable: true,
                });
            }
        }
        out
    }

    /// The low-rank term on the projections that carry `lora_A`/`lora_B`.
    fn projection(&self, w: &Weights, p: &PeftConfig) -> Result<ProjectionHooks> {
        let delta = match w.opt("lora_A") {
            Some(a) => Some(Box::new(LowRank {
                a,
                b: w.get("lora_B")?,
                scale: scale(p),
            }) as Box<dyn Delta>),
            None => None,
        };
        Ok(ProjectionHooks { delta, scale: None })
    }

    /// W ← W + (α/r)·B A on every target; A and B are removed.
    fn merge(&self, tensors: &mut HashMap<String, Tensor>, layers: &[LayerKeys], p: &PeftConfig) -> Result<bool> {
        for k in layers {
            for proj in target_keys(k) {
                if let (Some(a), Some(b)) = (
                    tensors.remove(&format!("{proj}.lora_A")),
                    tensors.remove(&format!("{proj}.lora_B")),
                ) {
                    let wk = format!("{proj}.weight");
                    let merged = merge(&tensors[&wk], &a, &b, scale(p))?;
                    tensors.insert(wk, merged);
                }
            }
        }
        Ok(true)
    }
}

/// One projection's factors A [r, in], B [out, r] and α/r.
struct LowRank {
    a: Tensor,
    b: Tensor,
    scale: f64,
}

impl Delta for LowRank {
    fn forward(&self, x: &Tensor) -> CResult<Tensor> {
        delta(x, &self.a, &self.b, self.scale)
    }
}

/// The low-rank update (α/r)·x Aᵀ Bᵀ, added to the frozen projection's output.
pub fn delta(x: &Tensor, a: &Tensor, b: &Tensor, scale: f64) -> CResult<Tensor> {
    linear(&linear(x, a, None)?, b, None)? * scale
}

/// Folds the update into the weight: W + (α/r)·B A.
pub fn merge(w: &Tensor, a: &Tensor, b: &Tensor, scale: f64) -> CResult<Tensor> {
    w + (b.matmul(a)? * scale)?
}
