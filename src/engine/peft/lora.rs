//! LoRA (Hu et al. 2022, ICLR): W x + (α/r)·B A x on query, key, value, intermediate dense and
//! output dense of every layer (the paper's code: `adapters` LoRAConfig with r = 8, α = 8,
//! selfattn on q, k, v plus intermediate_lora and output_lora). A ~ U(−1/√in, 1/√in) (Kaiming
//! uniform with a = √5, as peft/adapters), B = 0, so the model starts exactly at the pretrained
//! function. 1,179,648 parameters on ViT-B/16: 12 × (3·8·(768+768) + 2·8·(768+3072)).

use candle_core::{Result as CResult, Tensor};

use super::PeftConfig;
use crate::engine::ops::linear;
use crate::engine::vit::{Init, LayerKeys, ParamSpec, Role, VitConfig};

/// The projections LoRA wraps, with (out, in) sizes.
pub fn targets(cfg: &VitConfig, k: &LayerKeys) -> Vec<(String, usize, usize)> {
    let (d, m) = (cfg.dim, cfg.mlp_dim);
    vec![
        (k.query.clone(), d, d),
        (k.key.clone(), d, d),
        (k.value.clone(), d, d),
        (k.intermediate.clone(), m, d),
        (k.output.clone(), d, m),
    ]
}

/// `{proj}.lora_A` [r, in] and `{proj}.lora_B` [out, r] for every target of every layer.
pub fn added(cfg: &VitConfig, p: &PeftConfig) -> Vec<ParamSpec> {
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

/// The low-rank update (α/r)·x Aᵀ Bᵀ, added to the frozen projection's output.
pub fn delta(x: &Tensor, a: &Tensor, b: &Tensor, scale: f64) -> CResult<Tensor> {
    linear(&linear(x, a, None)?, b, None)? * scale
}

/// Folds the update into the weight: W + (α/r)·B A.
pub fn merge(w: &Tensor, a: &Tensor, b: &Tensor, scale: f64) -> CResult<Tensor> {
    w + (b.matmul(a)? * scale)?
}
