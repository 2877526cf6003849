//! (IA)³ (Liu et al. 2022, NeurIPS): learned vectors that rescale activations, initialised to 1,
//! on the key and value projections, the intermediate dense (3072 on ViT-B) and the output dense
//! (768) of every layer (the paper's code: `adapters` IA3Config). As in `adapters`, the scale
//! multiplies the wrapped linear layer's output, so it folds exactly into W and b.
//! 64,512 parameters on ViT-B/16: 12 × (768 + 768 + 3072 + 768).

use candle_core::{Result as CResult, Tensor};

use crate::engine::vit::{Init, LayerKeys, ParamSpec, Role, VitConfig};

/// The projections (IA)³ rescales, with their output sizes.
pub fn targets(cfg: &VitConfig, k: &LayerKeys) -> Vec<(String, usize)> {
    vec![
        (k.key.clone(), cfg.dim),
        (k.value.clone(), cfg.dim),
        (k.intermediate.clone(), cfg.mlp_dim),
        (k.output.clone(), cfg.dim),
    ]
}

/// `{proj}.ia3_scale` `[out]` for every target of every layer.
pub fn added(cfg: &VitConfig) -> Vec<ParamSpec> {
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

/// Folds the scale into a linear layer: diag(ℓ)·W and ℓ ⊙ b.
pub fn merge(w: &Tensor, b: &Tensor, scale: &Tensor) -> CResult<(Tensor, Tensor)> {
    Ok((w.broadcast_mul(&scale.unsqueeze(1)?)?, (b * scale)?))
}
