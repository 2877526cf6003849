//! Vision Transformer: configuration presets, the parameter specification in the Hugging Face
//! `ViTModel` key layout, and the model itself.
//!
//! Structure follows Dosovitskiy et al. 2021 ("An Image is Worth 16x16 Words", ICLR) and the HF
//! `transformers` implementation (`modeling_vit.py`): patch embedding (a stride-P convolution,
//! computed here as one matmul over flattened patches), CLS token, learned position embeddings,
//! pre-LN encoder layers (`layernorm_before` → attention → residual, `layernorm_after` → MLP with
//! erf-GELU → residual), final `layernorm`, and a linear head on the CLS token.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Size of a ViT. Deserialises from TOML for custom sizes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VitConfig {
    /// Input side in pixels (square images).
    pub image_size: usize,
    /// Patch side in pixels.
    pub patch_size: usize,
    /// Input channels.
    #[serde(default = "three")]
    pub channels: usize,
    /// Hidden size.
    pub dim: usize,
    /// Number of encoder layers.
    pub depth: usize,
    /// Attention heads.
    pub heads: usize,
    /// MLP hidden size.
    pub mlp_dim: usize,
    /// LayerNorm epsilon.
    #[serde(default = "ln_eps")]
    pub layer_norm_eps: f64,
    /// The MLP's activation (HF `hidden_act`); erf GELU unless said.
    #[serde(default, skip_serializing_if = "Activation::is_default")]
    pub hidden_act: Activation,
    /// Whether the query, key and value projections have biases (HF `qkv_bias`); true unless said.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub qkv_bias: bool,
    /// Per-channel input mean in [0, 1] pixel units (HF processor `image_mean`); 0.5 for every
    /// channel when empty. Applied inside the model, so attacks work in [0, 1] pixel space.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_mean: Vec<f64>,
    /// Per-channel input standard deviation (HF processor `image_std`); 0.5 when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_std: Vec<f64>,
}

fn three() -> usize {
    3
}
fn ln_eps() -> f64 {
    1e-12
}
fn yes() -> bool {
    true
}
fn is_true(b: &bool) -> bool {
    *b
}

/// The MLP activation of a ViT, by the names HF configs use (`hidden_act`, transformers'
/// `activations.py`). The fields that default keep their serialisation unchanged, so a model
/// written before these existed hashes the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Activation {
    /// x·Φ(x), Φ by erf (HF `gelu`, `gelu_python`).
    #[default]
    #[serde(rename = "gelu")]
    GeluErf,
    /// ½x(1 + tanh(√(2/π)(x + 0.044715x³))) (HF `gelu_new`, `gelu_pytorch_tanh`, `gelu_fast`).
    #[serde(rename = "gelu_tanh")]
    GeluTanh,
    /// x·σ(1.702x) (HF `quick_gelu`).
    #[serde(rename = "quick_gelu")]
    QuickGelu,
    /// max(x, 0).
    #[serde(rename = "relu")]
    Relu,
    /// x·σ(x) (HF `silu`, `swish`).
    #[serde(rename = "silu")]
    Silu,
}

impl Activation {
    fn is_default(&self) -> bool {
        *self == Activation::GeluErf
    }

    /// The activation an HF config's `hidden_act` names, or None when the engine has no exact
    /// equivalent.
    pub fn from_hf(name: &str) -> Option<Self> {
        Some(match name {
            "gelu" | "gelu_python" => Activation::GeluErf,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Activation::GeluTanh,
            "quick_gelu" => Activation::QuickGelu,
            "relu" => Activation::Relu,
            "silu" | "swish" => Activation::Silu,
            _ => return None,
        })
    }

    /// The name an HF config gives this activation (`hidden_act`).
    pub fn hf_name(self) -> &'static str {
        match self {
            Activation::GeluErf => "gelu",
            Activation::GeluTanh => "gelu_pytorch_tanh",
            Activation::QuickGelu => "quick_gelu",
            Activation::Relu => "relu",
            Activation::Silu => "silu",
        }
    }

    /// The HF `hidden_act` names this engine computes exactly.
    pub const HF_NAMES: &'static str =
        "gelu, gelu_python, gelu_new, gelu_pytorch_tanh, gelu_fast, quick_gelu, relu, silu, swish";
}

impl crate::error::Validate for VitConfig {
    type Valid = VitConfig;
    fn check(self) -> Result<VitConfig> {
        self.validate()
    }
}

impl VitConfig {
    /// `tiny`: dim 64, depth 4, 4 heads, MLP 256, 28 px, patch 4 — for tests and CPU runs.
    pub fn tiny() -> Self {
        Self {
            image_size: 28,
            patch_size: 4,
            channels: 3,
            dim: 64,
            depth: 4,
            heads: 4,
            mlp_dim: 256,
            layer_norm_eps: 1e-12,
            ..Self::defaults()
        }
    }

    /// `small`: dim 192, depth 6, 3 heads, MLP 768, 32 px, patch 4.
    pub fn small() -> Self {
        Self {
            image_size: 32,
            patch_size: 4,
            channels: 3,
            dim: 192,
            depth: 6,
            heads: 3,
            mlp_dim: 768,
            layer_norm_eps: 1e-12,
            ..Self::defaults()
        }
    }

    /// `base`: ViT-B/16 as in google/vit-base-patch16-224-in21k (`config.json`: hidden_size 768,
    /// num_hidden_layers 12, num_attention_heads 12, intermediate_size 3072, image_size 224,
    /// patch_size 16, layer_norm_eps 1e-12, hidden_act "gelu").
    pub fn base() -> Self {
        Self {
            image_size: 224,
            patch_size: 16,
            channels: 3,
            dim: 768,
            depth: 12,
            heads: 12,
            mlp_dim: 3072,
            layer_norm_eps: 1e-12,
            ..Self::defaults()
        }
    }

    /// The fields every preset shares: erf GELU, q/k/v biases, mean = std = 0.5.
    fn defaults() -> Self {
        Self {
            image_size: 0,
            patch_size: 0,
            channels: 3,
            dim: 0,
            depth: 0,
            heads: 0,
            mlp_dim: 0,
            layer_norm_eps: 1e-12,
            hidden_act: Activation::GeluErf,
            qkv_bias: true,
            image_mean: Vec::new(),
            image_std: Vec::new(),
        }
    }

    /// The input normalisation (mean, std) per channel.
    pub fn normalisation(&self) -> (Vec<f64>, Vec<f64>) {
        let fill = |v: &Vec<f64>| {
            if v.is_empty() {
                vec![0.5; self.channels]
            } else {
                v.clone()
            }
        };
        (fill(&self.image_mean), fill(&self.image_std))
    }

    /// A preset by name: `tiny`, `small` or `base`.
    pub fn preset(name: &str) -> Result<Self> {
        match name {
            "tiny" => Ok(Self::tiny()),
            "small" => Ok(Self::small()),
            "base" => Ok(Self::base()),
            other => Err(Error::invalid(
                "model",
                "expected tiny, small, base, a .toml file or an HF model folder that exists",
                other,
            )),
        }
    }

    /// Checks divisibility and positivity once; errors name the field.
    pub fn validate(self) -> Result<Self> {
        for (name, v) in [
            ("image_size", self.image_size),
            ("patch_size", self.patch_size),
            ("channels", self.channels),
            ("dim", self.dim),
            ("depth", self.depth),
            ("heads", self.heads),
            ("mlp_dim", self.mlp_dim),
        ] {
            if v == 0 {
                return Err(Error::invalid(name, "must be >= 1", 0));
            }
        }
        if !self.image_size.is_multiple_of(self.patch_size) {
            return Err(Error::invalid(
                "patch_size",
                format!("must divide image_size = {}", self.image_size),
                self.patch_size,
            ));
        }
        if !self.dim.is_multiple_of(self.heads) {
            return Err(Error::invalid(
                "heads",
                format!("must divide dim = {}", self.dim),
                self.heads,
            ));
        }
        if !(self.layer_norm_eps > 0.0 && self.layer_norm_eps.is_finite()) {
            return Err(Error::invalid("layer_norm_eps", "must be > 0", self.layer_norm_eps));
        }
        for (name, v, positive) in [
            ("image_mean", &self.image_mean, false),
            ("image_std", &self.image_std, true),
        ] {
            if !v.is_empty() && v.len() != self.channels {
                return Err(Error::invalid(
                    name,
                    format!("one value per channel ({})", self.channels),
                    format!("{v:?}"),
                ));
            }
            if v.iter().any(|x| !x.is_finite() || (positive && *x <= 0.0)) {
                return Err(Error::invalid(
                    name,
                    if positive { "finite values > 0" } else { "finite values" },
                    format!("{v:?}"),
                ));
            }
        }
        Ok(self)
    }

    /// Patches per image.
    pub fn num_patches(&self) -> usize {
        (self.image_size / self.patch_size).pow(2)
    }

    /// Tokens per image (patches + CLS).
    pub fn tokens(&self) -> usize {
        self.num_patches() + 1
    }

    /// Per-head dimension.
    pub fn head_dim(&self) -> usize {
        self.dim / self.heads
    }
}

/// How a tensor is initialised when it is not loaded from a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    /// All zeros.
    Zeros,
    /// All ones.
    Ones,
    /// N(0, std²).
    Normal(f64),
    /// U(−a, a).
    Uniform(f64),
}

/// Which part of the network a tensor belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The pretrained backbone (HF `ViTModel` keys).
    Backbone,
    /// Parameters a PEFT strategy adds.
    Peft,
    /// The classification head.
    Head,
}

/// One tensor of the model: key, shape, initialiser, role and whether it is trained.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamSpec {
    /// Key (HF layout for the backbone).
    pub key: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Initialiser.
    pub init: Init,
    /// Part of the network.
    pub role: Role,
    /// Trained by the optimiser (otherwise a frozen plain tensor, no gradient computed).
    pub trainable: bool,
}

impl ParamSpec {
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// HF `initializer_range` of ViT configs.
pub const INIT_STD: f64 = 0.02;

/// HF key names of one encoder layer's base tensors, built once per model. (The PEFT modules'
/// tensors are still found by formatted key at each forward: `{key}.lora_A`, `{key}.ia3_scale`,
/// …; typed modules are issue 15's part 1.)
#[derive(Debug, Clone)]
pub struct LayerKeys {
    /// `encoder.layer.N`.
    pub prefix: String,
    /// Query, key, value projections (`attention.attention.{query,key,value}`).
    pub query: String,
    /// Key projection.
    pub key: String,
    /// Value projection.
    pub value: String,
    /// Attention output projection (`attention.output.dense`).
    pub attn_out: String,
    /// MLP up-projection (`intermediate.dense`).
    pub intermediate: String,
    /// MLP down-projection (`output.dense`).
    pub output: String,
    /// `layernorm_before`.
    pub ln_before: String,
    /// `layernorm_after`.
    pub ln_after: String,
}

impl LayerKeys {
    /// Keys of layer `i`.
    pub fn new(i: usize) -> Self {
        let p = format!("encoder.layer.{i}");
        Self {
            query: format!("{p}.attention.attention.query"),
            key: format!("{p}.attention.attention.key"),
            value: format!("{p}.attention.attention.value"),
            attn_out: format!("{p}.attention.output.dense"),
            intermediate: format!("{p}.intermediate.dense"),
            output: format!("{p}.output.dense"),
            ln_before: format!("{p}.layernorm_before"),
            ln_after: format!("{p}.layernorm_after"),
            prefix: p,
        }
    }
}

fn spec(key: String, shape: &[usize], init: Init, role: Role) -> ParamSpec {
    ParamSpec {
        key,
        shape: shape.to_vec(),
        init,
        role,
        trainable: false,
    }
}

/// The backbone's tensors in HF `ViTModel` layout (no pooler), all frozen; strategies unfreeze.
pub fn backbone_spec(cfg: &VitConfig) -> Vec<ParamSpec> {
    let (d, m, c, p) = (cfg.dim, cfg.mlp_dim, cfg.channels, cfg.patch_size);
    let b = Role::Backbone;
    let mut out = vec![
        spec("embeddings.cls_token".into(), &[1, 1, d], Init::Normal(INIT_STD), b),
        spec(
            "embeddings.position_embeddings".into(),
            &[1, cfg.tokens(), d],
            Init::Normal(INIT_STD),
            b,
        ),
        spec(
            "embeddings.patch_embeddings.projection.weight".into(),
            &[d, c, p, p],
            Init::Normal(INIT_STD),
            b,
        ),
        spec(
            "embeddings.patch_embeddings.projection.bias".into(),
            &[d],
            Init::Zeros,
            b,
        ),
    ];
    for i in 0..cfg.depth {
        let k = LayerKeys::new(i);
        for (name, o, inp) in [
            (&k.query, d, d),
            (&k.key, d, d),
            (&k.value, d, d),
            (&k.attn_out, d, d),
            (&k.intermediate, m, d),
            (&k.output, d, m),
        ] {
            out.push(spec(format!("{name}.weight"), &[o, inp], Init::Normal(INIT_STD), b));
            let qkv = [&k.query, &k.key, &k.value].contains(&name);
            if cfg.qkv_bias || !qkv {
                out.push(spec(format!("{name}.bias"), &[o], Init::Zeros, b));
            }
        }
        for name in [&k.ln_before, &k.ln_after] {
            out.push(spec(format!("{name}.weight"), &[d], Init::Ones, b));
            out.push(spec(format!("{name}.bias"), &[d], Init::Zeros, b));
        }
    }
    out.push(spec("layernorm.weight".into(), &[d], Init::Ones, b));
    out.push(spec("layernorm.bias".into(), &[d], Init::Zeros, b));
    out
}

/// The classification head `classifier.{weight,bias}` (HF `ViTForImageClassification`), trainable.
pub fn head_spec(cfg: &VitConfig, num_classes: usize) -> Vec<ParamSpec> {
    let mut w = spec(
        "classifier.weight".into(),
        &[num_classes, cfg.dim],
        Init::Normal(INIT_STD),
        Role::Head,
    );
    let mut b = spec("classifier.bias".into(), &[num_classes], Init::Zeros, Role::Head);
    w.trainable = true;
    b.trainable = true;
    vec![w, b]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_backbone_has_85_798_656_parameters() {
        let n: usize = backbone_spec(&VitConfig::base()).iter().map(ParamSpec::numel).sum();
        assert_eq!(n, 85_798_656);
    }

    #[test]
    fn bad_configs_name_the_field() {
        let mut c = VitConfig::tiny();
        c.patch_size = 5;
        assert!(c.clone().validate().unwrap_err().to_string().contains("patch_size"));
        c = VitConfig::tiny();
        c.heads = 3;
        assert!(c.validate().unwrap_err().to_string().contains("heads"));
        assert!(VitConfig::preset("huge").is_err());
        let t: VitConfig =
            toml::from_str("image_size = 32\npatch_size = 8\ndim = 32\ndepth = 2\nheads = 2\nmlp_dim = 64").unwrap();
        assert_eq!(t.validate().unwrap().tokens(), 17);
    }
}
