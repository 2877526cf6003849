//! The ViT's forward pass as typed modules: each block's norms, projections (with their LoRA and
//! (IA)³ tensors, when the strategy placed them), and adapter or Compacter sites, resolved from the
//! model's HF-keyed tensors once, when the model is built. The forward then follows fields; it
//! formats and looks up no key. The tensors are the model's own (shared storage, trainable ones
//! are its `Var`s'), so optimiser updates and gradients reach them as before.

use std::collections::HashMap;

use candle_core::{IndexOp, Result as CResult, Tensor};

use super::ops::{attention, gelu, layer_norm, linear, scale_cols};
use super::peft::{PeftConfig, adapter, compacter, lora};
use super::vit::{LayerKeys, VitConfig};
use crate::error::{Error, Result};

/// Input normalisation of google/vit-base-patch16-224-in21k (`preprocessor_config.json`:
/// image_mean = image_std = 0.5): x ↦ (x − 0.5)/0.5, inside the model so that attacks work in
/// [0, 1] pixel space.
pub const PIXEL_MEAN: f64 = 0.5;
/// See [`PIXEL_MEAN`].
pub const PIXEL_STD: f64 = 0.5;

/// The model's tensors by HF key, for building the modules.
struct Lookup<'a>(&'a HashMap<String, Tensor>);

impl Lookup<'_> {
    fn get(&self, key: &str) -> Result<Tensor> {
        self.0.get(key).cloned().ok_or_else(|| Error::Engine {
            message: format!("missing tensor {key}"),
            source: None,
        })
    }
    fn opt(&self, key: &str) -> Option<Tensor> {
        self.0.get(key).cloned()
    }
}

/// LayerNorm weight and bias.
struct Norm {
    w: Tensor,
    b: Tensor,
    eps: f64,
}

impl Norm {
    fn new(t: &Lookup, key: &str, eps: f64) -> Result<Self> {
        Ok(Norm {
            w: t.get(&format!("{key}.weight"))?,
            b: t.get(&format!("{key}.bias"))?,
            eps,
        })
    }
    fn forward(&self, x: &Tensor) -> CResult<Tensor> {
        layer_norm(x, &self.w, &self.b, self.eps)
    }
}

/// One projection x·Wᵀ + b with its LoRA factors (A, B) and (IA)³ scale, where present.
struct Proj {
    w: Tensor,
    b: Tensor,
    lora: Option<(Tensor, Tensor)>,
    ia3: Option<Tensor>,
}

impl Proj {
    fn new(t: &Lookup, key: &str) -> Result<Self> {
        let lora = t.opt(&format!("{key}.lora_A")).zip(t.opt(&format!("{key}.lora_B")));
        Ok(Proj {
            w: t.get(&format!("{key}.weight"))?,
            b: t.get(&format!("{key}.bias"))?,
            lora,
            ia3: t.opt(&format!("{key}.ia3_scale")),
        })
    }
}

/// Projections run side by side as one linear layer (query, key and value: one gemm instead of
/// three, and one gradient for x): x Wᵀ + b on the concatenated weights, plus LoRA's update, times
/// (IA)³'s scale; a projection without a hook gets a zero update or a unit scale.
struct Projs {
    parts: Vec<Proj>,
    /// LoRA's α/r.
    lora_scale: f64,
}

impl Projs {
    fn new(t: &Lookup, keys: &[&str], lora_scale: f64) -> Result<Self> {
        Ok(Projs {
            parts: keys.iter().map(|k| Proj::new(t, k)).collect::<Result<_>>()?,
            lora_scale,
        })
    }

    fn forward(&self, x: &Tensor) -> CResult<Tensor> {
        let cat = |parts: Vec<Tensor>, dim: usize| match parts.len() {
            1 => Ok(parts.into_iter().next().expect("one part")),
            _ => Tensor::cat(&parts, dim),
        };
        let weights: Vec<Tensor> = self.parts.iter().map(|p| p.w.clone()).collect();
        let outs: Vec<usize> = weights.iter().map(|w| w.dim(0)).collect::<CResult<_>>()?;
        let biases = self.parts.iter().map(|p| p.b.clone()).collect();
        let mut y = linear(x, &cat(weights, 0)?, Some(&cat(biases, 0)?))?;
        let last = y.rank() - 1;
        if self.parts.iter().any(|p| p.lora.is_some()) {
            let parts = self
                .parts
                .iter()
                .zip(&outs)
                .map(|(p, &o)| match &p.lora {
                    Some((a, b)) => lora::delta(x, a, b, self.lora_scale),
                    None => {
                        let mut dims = x.dims().to_vec();
                        dims[last] = o;
                        Tensor::zeros(dims, x.dtype(), x.device())
                    }
                })
                .collect::<CResult<Vec<_>>>()?;
            y = (y + cat(parts, last)?)?;
        }
        if self.parts.iter().any(|p| p.ia3.is_some()) {
            let parts = self
                .parts
                .iter()
                .zip(&outs)
                .map(|(p, &o)| match &p.ia3 {
                    Some(s) => Ok(s.clone()),
                    None => Tensor::ones(o, y.dtype(), y.device()),
                })
                .collect::<CResult<Vec<_>>>()?;
            y = scale_cols(&y, &cat(parts, 0)?)?;
        }
        Ok(y)
    }
}

/// What a strategy placed after a sub-layer's output projection.
enum Site {
    /// Nothing.
    None,
    /// A bottleneck adapter: down (weight, bias), up (weight, bias).
    Adapter([Tensor; 4]),
    /// A Compacter: the shared rule, down (s, t, bias), up (s, t, bias).
    Compacter(Tensor, [Tensor; 3], [Tensor; 3]),
}

impl Site {
    fn new(t: &Lookup, adapter_site: &str, compacter_site: &str) -> Result<Self> {
        if t.opt(&format!("{adapter_site}.down.weight")).is_some() {
            let g = |s: &str| t.get(&format!("{adapter_site}.{s}"));
            return Ok(Site::Adapter([
                g("down.weight")?,
                g("down.bias")?,
                g("up.weight")?,
                g("up.bias")?,
            ]));
        }
        if t.opt(&format!("{compacter_site}.down.s")).is_some() {
            let g = |s: &str| t.get(&format!("{compacter_site}.{s}"));
            return Ok(Site::Compacter(
                t.get(compacter::RULE_KEY)?,
                [g("down.s")?, g("down.t")?, g("down.bias")?],
                [g("up.s")?, g("up.t")?, g("up.bias")?],
            ));
        }
        Ok(Site::None)
    }
    fn forward(&self, h: Tensor) -> CResult<Tensor> {
        match self {
            Site::None => Ok(h),
            Site::Adapter([dw, db, uw, ub]) => adapter::forward(&h, dw, db, uw, ub),
            Site::Compacter(rule, [ds, dt, db], [us, ut, ub]) => {
                compacter::forward(&h, rule, [ds, dt, db], [us, ut, ub])
            }
        }
    }
}

/// One encoder layer (pre-norm): attention with its output site, then the MLP with its own.
struct Block {
    ln_before: Norm,
    qkv: Projs,
    attn_out: Projs,
    attn_site: Site,
    ln_after: Norm,
    fc1: Projs,
    fc2: Projs,
    mlp_site: Site,
    heads: usize,
}

impl Block {
    fn new(t: &Lookup, k: &LayerKeys, cfg: &VitConfig, lora_scale: f64) -> Result<Self> {
        let [ad0, ad1] = adapter::sites(k);
        let [cp0, cp1] = compacter::sites(k);
        let eps = cfg.layer_norm_eps;
        Ok(Block {
            ln_before: Norm::new(t, &k.ln_before, eps)?,
            qkv: Projs::new(t, &[&k.query, &k.key, &k.value], lora_scale)?,
            attn_out: Projs::new(t, &[&k.attn_out], lora_scale)?,
            attn_site: Site::new(t, &ad0, &cp0)?,
            ln_after: Norm::new(t, &k.ln_after, eps)?,
            fc1: Projs::new(t, &[&k.intermediate], lora_scale)?,
            fc2: Projs::new(t, &[&k.output], lora_scale)?,
            mlp_site: Site::new(t, &ad1, &cp1)?,
            heads: cfg.heads,
        })
    }
    fn forward(&self, x: &Tensor) -> CResult<Tensor> {
        let h = self.ln_before.forward(x)?;
        let ctx = attention(&self.qkv.forward(&h)?, self.heads)?;
        let a = self.attn_out.forward(&ctx)?;
        let x = (x + self.attn_site.forward(a)?)?;
        let h = self.ln_after.forward(&x)?;
        let m = gelu(&self.fc1.forward(&h)?)?;
        let o = self.fc2.forward(&m)?;
        &x + self.mlp_site.forward(o)?
    }
}

/// Patch, CLS and position embeddings.
struct Embeddings {
    patch_w: Tensor,
    patch_b: Tensor,
    cls: Tensor,
    pos: Tensor,
}

/// The whole network as modules: embeddings, blocks, final norm, head.
pub(crate) struct Modules {
    cfg: VitConfig,
    emb: Embeddings,
    blocks: Vec<Block>,
    norm: Norm,
    head_w: Tensor,
    head_b: Tensor,
}

impl Modules {
    /// Resolves every module's tensors from `tensors` (HF keys of the model's `layers`) once.
    pub(crate) fn new(
        cfg: &VitConfig,
        peft: &PeftConfig,
        layers: &[LayerKeys],
        tensors: &HashMap<String, Tensor>,
    ) -> Result<Self> {
        let t = Lookup(tensors);
        let lora_scale = peft.lora_alpha / peft.lora_rank as f64;
        Ok(Modules {
            cfg: cfg.clone(),
            emb: Embeddings {
                patch_w: t.get("embeddings.patch_embeddings.projection.weight")?,
                patch_b: t.get("embeddings.patch_embeddings.projection.bias")?,
                cls: t.get("embeddings.cls_token")?,
                pos: t.get("embeddings.position_embeddings")?,
            },
            blocks: layers
                .iter()
                .map(|k| Block::new(&t, k, cfg, lora_scale))
                .collect::<Result<_>>()?,
            norm: Norm::new(&t, "layernorm", cfg.layer_norm_eps)?,
            head_w: t.get("classifier.weight")?,
            head_b: t.get("classifier.bias")?,
        })
    }

    /// Patch + CLS + position embeddings of images [B, C, H, W] in [0, 1]: [B, T, dim].
    fn embed(&self, x: &Tensor) -> CResult<Tensor> {
        let c = &self.cfg;
        let (b, ch, h, w) = x.dims4()?;
        if ch != c.channels || h != c.image_size || w != c.image_size {
            candle_core::bail!(
                "input images have shape [{b}, {ch}, {h}, {w}], the model expects [B, {}, {}, {}]",
                c.channels,
                c.image_size,
                c.image_size
            );
        }
        let p = c.patch_size;
        let g = c.image_size / p;
        let x = ((x - PIXEL_MEAN)? / PIXEL_STD)?;
        // Patches flattened in (channel, row, column) order, matching the conv weight [D, C, P, P].
        let patches = x
            .reshape((b, ch, g, p, g, p))?
            .permute((0, 2, 4, 1, 3, 5))?
            .reshape((b, g * g, ch * p * p))?;
        let wp = self.emb.patch_w.reshape((c.dim, ch * p * p))?;
        let emb = linear(&patches, &wp, Some(&self.emb.patch_b))?;
        let cls = self.emb.cls.broadcast_as((b, 1, c.dim))?;
        Tensor::cat(&[&cls, &emb], 1)?.broadcast_add(&self.emb.pos)
    }

    /// CLS features after the final LayerNorm: [B, dim].
    pub(crate) fn features(&self, x: &Tensor) -> CResult<Tensor> {
        let mut h = self.embed(x)?;
        for b in &self.blocks {
            h = b.forward(&h)?;
        }
        self.norm.forward(&h)?.i((.., 0))
    }

    /// The head on features: [B, classes].
    pub(crate) fn head(&self, features: &Tensor) -> CResult<Tensor> {
        linear(features, &self.head_w, Some(&self.head_b))
    }
}
