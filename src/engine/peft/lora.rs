//! LoRA (Hu et al. 2022, ICLR): W x + (α/r)·B A x on query, key, value, intermediate dense and
//! output dense of every layer (the paper's code: `adapters` LoRAConfig with r = 8, α = 8,
//! selfattn on q, k, v plus intermediate_lora and output_lora). A ~ U(−1/√in, 1/√in) (Kaiming
//! uniform with a = √5, as peft/adapters), B = 0, so the model starts exactly at the pretrained
//! function. 1,179,648 parameters on ViT-B/16: 12 × (3·8·(768+768) + 2·8·(768+3072)).

use std::borrow::Cow;

use super::{Definition, ExportForm};
use crate::theory::dynamics::net::dot;
use crate::theory::dynamics::net::{Layer, ModuleSizes, Parameterisation};
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
    /// The A matrices: B starts from 0, so with A at its fine-tuned value the path's update is
    /// α·(α_lora/r)·B·A, exactly the interpolation of the merged weights W₀ + α·ΔW.
    fn keeps_fine_tuned_on_path(&self, key: &str) -> bool {
        key.ends_with(".lora_A")
    }

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

impl Definition for Lora {
    fn name(&self) -> &'static str {
        "LoRA"
    }
    fn id(&self) -> &'static str {
        "lora"
    }
    fn vit_b16_params(&self) -> u64 {
        1_179_648
    }
    fn export_form(&self) -> ExportForm {
        ExportForm::Merged
    }
}

/// W₀ + B A, b₀; A ∈ R^{r×n} ~ N(0, 1/n), B ∈ R^{h×r} = 0 at start: r·(n + h).
impl Parameterisation for Lora {
    fn block_len(&self, h: usize, n: usize, shape: &ModuleSizes) -> usize {
        shape.lora_rank * (n + h)
    }
    fn init(&self, layer: &Layer, gauss: &mut dyn FnMut(f64, usize) -> Vec<f64>, theta: &mut Vec<f64>) {
        let (h, n, r) = (layer.hidden(), layer.inputs(), layer.shape.lora_rank);
        theta.extend(gauss((1.0 / n as f64).sqrt(), r * n));
        theta.extend(std::iter::repeat_n(0.0, h * r));
    }
    fn backbone<'a>(&self, layer: &Layer<'a>, blk: &[f64]) -> (Cow<'a, [f64]>, Cow<'a, [f64]>) {
        let (h, n, r) = (layer.hidden(), layer.inputs(), layer.shape.lora_rank);
        let (a, bm) = blk.split_at(r * n);
        let mut w = layer.w0().to_vec();
        for i in 0..h {
            for k in 0..r {
                let f = bm[i * r + k];
                if f != 0.0 {
                    let row = &a[k * n..(k + 1) * n];
                    w[i * n..(i + 1) * n].iter_mut().zip(row).for_each(|(x, y)| *x += f * y);
                }
            }
        }
        (w.into(), layer.b0().into())
    }
    fn backward(&self, layer: &Layer, blk: &[f64], u: &[f64], gw: &[f64], _gbeta: f64, g: &mut Vec<f64>) {
        let (h, n, r) = (layer.hidden(), layer.inputs(), layer.shape.lora_rank);
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
}
