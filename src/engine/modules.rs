//! The ViT's forward pass as typed modules: each block's norms, projections (with the strategy's
//! hooks on them: LoRA's term, (IA)³'s scale) and the modules a strategy places after a
//! sub-layer (adapters, Compacters), resolved from the model's HF-keyed tensors once, when the
//! model is built, by the strategy's own [`Method`]. The forward then follows
//! fields; it formats and looks up no key. The tensors are the model's own (shared storage,
//! trainable ones are its `Var`s'), so optimiser updates and gradients reach them as before.

use std::collections::HashMap;

use candle_core::{IndexOp, Result as CResult, Tensor};

use super::ops::{attention, gelu, layer_norm, linear, scale_cols};
use super::peft::{Delta, Method, PeftConfig, SiteAt, SiteModule};
use super::vit::{Activation, LayerKeys, VitConfig};
use super::weights::Weights;
use crate::error::Result;

/// Default input normalisation, that of google/vit-base-patch16-224-in21k
/// (`preprocessor_config.json`: image_mean = image_std = 0.5): x ↦ (x − 0.5)/0.5, inside the
/// model so that attacks work in [0, 1] pixel space. A model's own (`VitConfig::image_mean`,
/// `image_std`, from an HF folder's processor config) replaces it.
pub const PIXEL_MEAN: f64 = 0.5;
/// See [`PIXEL_MEAN`].
pub const PIXEL_STD: f64 = 0.5;

/// LayerNorm weight and bias.
struct Norm {
    w: Tensor,
    b: Tensor,
    eps: f64,
}

impl Norm {
    fn new(w: &Weights, eps: f64) -> Result<Self> {
        Ok(Norm {
            w: w.get("weight")?,
            b: w.get("bias")?,
            eps,
        })
    }
    fn forward(&self, x: &Tensor) -> CResult<Tensor> {
        layer_norm(x, &self.w, &self.b, self.eps)
    }
}

/// One projection x·Wᵀ + b with the strategy's hooks on it (no b: q/k/v of a `qkv_bias =
/// false` model).
struct Proj {
    w: Tensor,
    b: Option<Tensor>,
    /// A term added to the output (LoRA).
    delta: Option<Box<dyn Delta>>,
    /// A per-output scale ((IA)³).
    scale: Option<Tensor>,
}

impl Proj {
    fn new(w: &Weights, method: &dyn Method, p: &PeftConfig) -> Result<Self> {
        let hooks = method.projection(w, p)?;
        Ok(Proj {
            w: w.get("weight")?,
            b: w.opt("bias"),
            delta: hooks.delta,
            scale: hooks.scale,
        })
    }
}

/// Projections run side by side as one linear layer (query, key and value: one gemm instead of
/// three, and one gradient for x): x Wᵀ + b on the concatenated weights, plus the strategies'
/// terms, times their scales; a projection without a hook gets a zero term or a unit scale.
struct Projs {
    parts: Vec<Proj>,
}

impl Projs {
    fn new(w: &Weights, keys: &[&str], method: &dyn Method, p: &PeftConfig) -> Result<Self> {
        Ok(Projs {
            parts: keys
                .iter()
                .map(|k| Proj::new(&w.pp(k), method, p))
                .collect::<Result<_>>()?,
        })
    }

    fn forward(&self, x: &Tensor) -> CResult<Tensor> {
        let cat = |parts: Vec<Tensor>, dim: usize| match parts.len() {
            1 => Ok(parts.into_iter().next().expect("one part")),
            _ => Tensor::cat(&parts, dim),
        };
        let weights: Vec<Tensor> = self.parts.iter().map(|p| p.w.clone()).collect();
        let outs: Vec<usize> = weights.iter().map(|w| w.dim(0)).collect::<CResult<_>>()?;
        // Biases side by side; a part without one contributes zeros (exact: x + 0 = x).
        let bias = match self.parts.iter().any(|p| p.b.is_some()) {
            false => None,
            true => Some(cat(
                self.parts
                    .iter()
                    .zip(&outs)
                    .map(|(p, &o)| match &p.b {
                        Some(b) => Ok(b.clone()),
                        None => Tensor::zeros(o, x.dtype(), x.device()),
                    })
                    .collect::<CResult<_>>()?,
                0,
            )?),
        };
        let mut y = linear(x, &cat(weights, 0)?, bias.as_ref())?;
        let last = y.rank() - 1;
        if self.parts.iter().any(|p| p.delta.is_some()) {
            let parts = self
                .parts
                .iter()
                .zip(&outs)
                .map(|(p, &o)| match &p.delta {
                    Some(d) => d.forward(x),
                    None => {
                        let mut dims = x.dims().to_vec();
                        dims[last] = o;
                        Tensor::zeros(dims, x.dtype(), x.device())
                    }
                })
                .collect::<CResult<Vec<_>>>()?;
            y = (y + cat(parts, last)?)?;
        }
        if self.parts.iter().any(|p| p.scale.is_some()) {
            let parts = self
                .parts
                .iter()
                .zip(&outs)
                .map(|(p, &o)| match &p.scale {
                    Some(s) => Ok(s.clone()),
                    None => Tensor::ones(o, y.dtype(), y.device()),
                })
                .collect::<CResult<Vec<_>>>()?;
            y = scale_cols(&y, &cat(parts, 0)?)?;
        }
        Ok(y)
    }
}

/// What a strategy placed after a sub-layer's output projection (nothing, an adapter, …).
struct Site(Option<Box<dyn SiteModule>>);

impl Site {
    fn forward(&self, h: Tensor) -> CResult<Tensor> {
        match &self.0 {
            None => Ok(h),
            Some(m) => m.forward(h),
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
    act: Activation,
}

impl Block {
    fn new(w: &Weights, k: &LayerKeys, cfg: &VitConfig, method: &dyn Method, p: &PeftConfig) -> Result<Self> {
        let eps = cfg.layer_norm_eps;
        let projs = |keys: &[&str]| Projs::new(w, keys, method, p);
        Ok(Block {
            ln_before: Norm::new(&w.pp(&k.ln_before), eps)?,
            qkv: projs(&[&k.query, &k.key, &k.value])?,
            attn_out: projs(&[&k.attn_out])?,
            attn_site: Site(method.site(w, k, SiteAt::Attention)?),
            ln_after: Norm::new(&w.pp(&k.ln_after), eps)?,
            fc1: projs(&[&k.intermediate])?,
            fc2: projs(&[&k.output])?,
            mlp_site: Site(method.site(w, k, SiteAt::Mlp)?),
            heads: cfg.heads,
            act: cfg.hidden_act,
        })
    }
    fn forward(&self, x: &Tensor) -> CResult<Tensor> {
        let h = self.ln_before.forward(x)?;
        let ctx = attention(&self.qkv.forward(&h)?, self.heads)?;
        let a = self.attn_out.forward(&ctx)?;
        let x = (x + self.attn_site.forward(a)?)?;
        let h = self.ln_after.forward(&x)?;
        let m = activate(&self.fc1.forward(&h)?, self.act)?;
        let o = self.fc2.forward(&m)?;
        &x + self.mlp_site.forward(o)?
    }
}

/// The MLP activation: the fused erf-GELU kernel, else candle's ops (each with its backward).
fn activate(x: &Tensor, act: Activation) -> CResult<Tensor> {
    match act {
        Activation::GeluErf => gelu(x),
        // candle's `gelu` is the tanh approximation, as HF's gelu_new / gelu_pytorch_tanh.
        Activation::GeluTanh => x.gelu(),
        Activation::QuickGelu => x * sigmoid(&(x * 1.702)?)?,
        Activation::Relu => x.relu(),
        Activation::Silu => x.silu(),
    }
}

/// σ(x) = 1/(1 + e^(−x)), composed (differentiable).
fn sigmoid(x: &Tensor) -> CResult<Tensor> {
    (x.neg()?.exp()? + 1.0)?.recip()
}

/// The input normalisation: scalars when every channel shares its mean and std (the presets),
/// else [1, C, 1, 1] tensors broadcast over the batch.
enum Normalise {
    Uniform(f64, f64),
    PerChannel(Tensor, Tensor),
}

impl Normalise {
    fn new(cfg: &VitConfig, like: &Tensor) -> Result<Self> {
        let (m, s) = cfg.normalisation();
        if m.iter().all(|v| *v == m[0]) && s.iter().all(|v| *v == s[0]) {
            return Ok(Normalise::Uniform(m[0], s[0]));
        }
        let t = |v: Vec<f64>| -> Result<Tensor> {
            Ok(Tensor::from_vec(v, (1, cfg.channels, 1, 1), like.device())?.to_dtype(like.dtype())?)
        };
        Ok(Normalise::PerChannel(t(m)?, t(s)?))
    }
    fn forward(&self, x: &Tensor) -> CResult<Tensor> {
        match self {
            Normalise::Uniform(m, s) => (x - *m)? / *s,
            Normalise::PerChannel(m, s) => x.broadcast_sub(m)?.broadcast_div(s),
        }
    }
}

/// Patch, CLS and position embeddings.
struct Embeddings {
    patch_w: Tensor,
    patch_b: Tensor,
    cls: Tensor,
    pos: Tensor,
    norm: Normalise,
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
    /// Resolves every module's tensors from `tensors` (HF keys of the model's `layers`) once; the
    /// strategy's `method` builds its own hooks and modules.
    pub(crate) fn new(
        cfg: &VitConfig,
        method: &dyn Method,
        peft: &PeftConfig,
        layers: &[LayerKeys],
        tensors: &HashMap<String, Tensor>,
    ) -> Result<Self> {
        let w = Weights::new(tensors);
        let patch = w.pp("embeddings.patch_embeddings.projection");
        Ok(Modules {
            cfg: cfg.clone(),
            emb: Embeddings {
                patch_w: patch.get("weight")?,
                patch_b: patch.get("bias")?,
                cls: w.get("embeddings.cls_token")?,
                pos: w.get("embeddings.position_embeddings")?,
                norm: Normalise::new(cfg, &patch.get("weight")?)?,
            },
            blocks: layers
                .iter()
                .map(|k| Block::new(&w, k, cfg, method, peft))
                .collect::<Result<_>>()?,
            norm: Norm::new(&w.pp("layernorm"), cfg.layer_norm_eps)?,
            head_w: w.get("classifier.weight")?,
            head_b: w.get("classifier.bias")?,
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
        let x = self.emb.norm.forward(x)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Every MLP activation against its closed form (transformers' `activations.py`), and its
    /// gradient against central finite differences (f64).
    #[test]
    fn activations_match_their_formulas_and_gradients() {
        let xs = [-3.0f64, -1.2, -0.3, 0.0, 0.4, 1.1, 2.5];
        let phi = |x: f64| 0.5 * (1.0 + series_erf(x / std::f64::consts::SQRT_2));
        let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
        let c = (2.0 / std::f64::consts::PI).sqrt();
        let cases: [(Activation, &dyn Fn(f64) -> f64); 5] = [
            (Activation::GeluErf, &|x| x * phi(x)),
            (Activation::GeluTanh, &|x| {
                0.5 * x * (1.0 + (c * (x + 0.044715 * x.powi(3))).tanh())
            }),
            (Activation::QuickGelu, &|x| x * sig(1.702 * x)),
            (Activation::Relu, &|x| x.max(0.0)),
            (Activation::Silu, &|x| x * sig(x)),
        ];
        for (act, f) in cases {
            let v = candle_core::Var::new(&xs[..], &Device::Cpu).unwrap();
            let y = activate(v.as_tensor(), act).unwrap();
            for (x, got) in xs.iter().zip(y.to_vec1::<f64>().unwrap()) {
                assert!((got - f(*x)).abs() < 1e-12, "{act:?}({x}) = {got}, formula {}", f(*x));
            }
            let g = y.sum_all().unwrap().backward().unwrap();
            let grad = g.get(v.as_tensor()).unwrap().to_vec1::<f64>().unwrap();
            let h = 1e-6;
            for (x, gx) in xs.iter().zip(grad) {
                if act == Activation::Relu && *x == 0.0 {
                    continue; // not differentiable there
                }
                let fd = (f(x + h) - f(x - h)) / (2.0 * h);
                assert!((gx - fd).abs() < 1e-6, "{act:?}'({x}) = {gx}, finite difference {fd}");
            }
        }
    }

    /// erf by its Maclaurin series, 2/√π Σ (−1)ⁿ x²ⁿ⁺¹/(n!(2n+1)): exact to ~1e-15 for the
    /// |x| ≤ 2.2 used here (an independent reference for the erf-GELU kernel).
    fn series_erf(x: f64) -> f64 {
        let mut sum = 0.0;
        let mut term = x;
        let mut n = 0.0;
        while term.abs() > 1e-17 || n < 5.0 {
            sum += term / (2.0 * n + 1.0);
            n += 1.0;
            term *= -x * x / n;
            if n > 200.0 {
                break;
            }
        }
        2.0 / std::f64::consts::PI.sqrt() * sum
    }

    /// `pp` roots a view at a key prefix; `get` names the full key when a tensor is missing.
    #[test]
    fn weights_resolve_keys_below_their_prefix() {
        let t = Tensor::zeros(3, candle_core::DType::F32, &Device::Cpu).unwrap();
        let map = HashMap::from([("encoder.layer.0.output.dense.bias".to_string(), t)]);
        let root = Weights::new(&map);
        let dense = root.pp("encoder.layer.0").pp("output.dense");
        assert_eq!(dense.get("bias").unwrap().dims(), &[3]);
        assert!(dense.opt("weight").is_none());
        assert!(root.opt("encoder.layer.0.output.dense.bias").is_some());
        let e = dense.get("weight").unwrap_err().to_string();
        assert!(e.contains("encoder.layer.0.output.dense.weight"), "{e}");
    }
}
