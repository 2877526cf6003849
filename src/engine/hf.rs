//! Hugging Face ViT model folders, read as `transformers` computes them: `config.json` gives
//! every size, `layer_norm_eps`, `hidden_act`, `qkv_bias`, `num_channels` and the labels;
//! `preprocessor_config.json` gives the input normalisation (`image_mean`, `image_std`,
//! `rescale_factor`, `do_rescale`, `do_normalize`) and the input `size`; `model.safetensors`
//! holds the weights in either key layout (the original `encoder.layer.N.attention.attention.query`
//! or transformers 5's in-memory `layers.N.attention.q_proj`, [`canonical_key`]).
//!
//! A key missing from `config.json` takes `ViTConfig`'s default, as `transformers` does
//! (`configuration_vit.py`: hidden_size 768, 12 layers, 12 heads, intermediate 3072, "gelu",
//! layer_norm_eps 1e-12, image_size 224, patch_size 16, 3 channels, qkv_bias true). A value the
//! engine cannot honour — another `model_type`, an activation without an exact equivalent here,
//! non-square images, a processor size other than the model's — is an error naming the file and
//! the key, never a silent substitute.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::vit::{Activation, VitConfig};
use crate::error::{Error, Result};

/// The weights file inside a model folder.
pub const WEIGHTS: &str = "model.safetensors";

/// A model folder, read.
#[derive(Debug, Clone)]
pub struct HfFolder {
    /// The folder.
    pub dir: PathBuf,
    /// The architecture and input normalisation.
    pub config: VitConfig,
    /// `id2label` in id order, when the config has labels.
    pub labels: Option<Vec<String>>,
}

impl HfFolder {
    /// The weights file (`model.safetensors`).
    pub fn weights(&self) -> PathBuf {
        self.dir.join(WEIGHTS)
    }
}

fn bad(path: &Path, key: &str, message: impl std::fmt::Display) -> Error {
    Error::Config {
        path: path.to_path_buf(),
        message: format!("{key}: {message}"),
    }
}

fn read_json(path: &Path) -> Result<serde_json::Map<String, Value>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(bad(path, "(top level)", "expected a JSON object")),
        Err(e) => Err(bad(path, "(syntax)", e)),
    }
}

/// `v` as a positive integer, or an error naming `key`.
fn positive(v: &Value, path: &Path, key: &str) -> Result<usize> {
    v.as_u64()
        .filter(|n| *n > 0)
        .map(|n| n as usize)
        .ok_or_else(|| bad(path, key, format!("expected a positive integer, got {v}")))
}

/// A positive integer at `key`, or `default` when absent.
fn count(m: &serde_json::Map<String, Value>, path: &Path, key: &str, default: usize) -> Result<usize> {
    m.get(key).map_or(Ok(default), |v| positive(v, path, key))
}

/// A side in pixels: an integer, or a `[h, w]` pair with h = w.
fn side(m: &serde_json::Map<String, Value>, path: &Path, key: &str, default: usize) -> Result<usize> {
    match m.get(key) {
        Some(Value::Array(a)) if a.len() == 2 && a[0] == a[1] => positive(&a[0], path, key),
        Some(Value::Array(a)) => Err(bad(path, key, format!("only square sizes are supported, got {a:?}"))),
        _ => count(m, path, key, default),
    }
}

/// Per-channel values at `key` (a number for every channel, or one list of `channels` numbers).
fn per_channel(
    m: &serde_json::Map<String, Value>,
    path: &Path,
    key: &str,
    channels: usize,
) -> Result<Option<Vec<f64>>> {
    let v = match m.get(key) {
        None | Some(Value::Null) => return Ok(None),
        Some(v) => v,
    };
    let vals: Option<Vec<f64>> = match v {
        Value::Number(n) => n.as_f64().map(|x| vec![x; channels]),
        Value::Array(a) if a.len() == channels => a.iter().map(Value::as_f64).collect(),
        _ => None,
    };
    vals.map(Some).ok_or_else(|| {
        bad(
            path,
            key,
            format!("expected {channels} numbers (one per channel), got {v}"),
        )
    })
}

/// The model's architecture from `config.json`.
fn read_config(path: &Path) -> Result<(VitConfig, Option<Vec<String>>)> {
    let m = read_json(path)?;
    if let Some(t) = m.get("model_type")
        && t != "vit"
    {
        return Err(bad(
            path,
            "model_type",
            format!("only \"vit\" models load here, got {t}"),
        ));
    }
    let hidden_act = match m.get("hidden_act") {
        None => Activation::GeluErf,
        Some(Value::String(s)) => Activation::from_hf(s).ok_or_else(|| {
            bad(
                path,
                "hidden_act",
                format!(
                    "{s:?} has no exact equivalent here (supported: {})",
                    Activation::HF_NAMES
                ),
            )
        })?,
        Some(v) => return Err(bad(path, "hidden_act", format!("expected a name, got {v}"))),
    };
    let qkv_bias = match m.get("qkv_bias") {
        None => true,
        Some(Value::Bool(b)) => *b,
        Some(v) => return Err(bad(path, "qkv_bias", format!("expected true or false, got {v}"))),
    };
    let layer_norm_eps = match m.get("layer_norm_eps") {
        None => 1e-12,
        Some(v) => v
            .as_f64()
            .filter(|e| *e > 0.0 && e.is_finite())
            .ok_or_else(|| bad(path, "layer_norm_eps", format!("expected a number > 0, got {v}")))?,
    };
    let cfg = VitConfig {
        image_size: side(&m, path, "image_size", 224)?,
        patch_size: side(&m, path, "patch_size", 16)?,
        channels: count(&m, path, "num_channels", 3)?,
        dim: count(&m, path, "hidden_size", 768)?,
        depth: count(&m, path, "num_hidden_layers", 12)?,
        heads: count(&m, path, "num_attention_heads", 12)?,
        mlp_dim: count(&m, path, "intermediate_size", 3072)?,
        layer_norm_eps,
        hidden_act,
        qkv_bias,
        image_mean: Vec::new(),
        image_std: Vec::new(),
    };
    let labels = match m.get("id2label") {
        Some(Value::Object(l)) => {
            let mut pairs: Vec<(usize, String)> = l
                .iter()
                .map(|(k, v)| {
                    let id = k
                        .parse::<usize>()
                        .map_err(|_| bad(path, "id2label", format!("key {k:?} is not an id")))?;
                    Ok((id, v.as_str().map_or_else(|| v.to_string(), str::to_string)))
                })
                .collect::<Result<_>>()?;
            pairs.sort();
            if pairs.iter().enumerate().any(|(i, (id, _))| *id != i) {
                return Err(bad(path, "id2label", "ids must be 0, 1, …, n − 1"));
            }
            Some(pairs.into_iter().map(|(_, l)| l).collect())
        }
        _ => None,
    };
    Ok((cfg, labels))
}

/// Folds `preprocessor_config.json` into `cfg`: the engine's inputs are pixels / 255 in [0, 1];
/// the processor computes (pixels · r − mean)/std with r = `rescale_factor` (1 without
/// `do_rescale`), which is (x − mean/(255r)) / (std/(255r)) on those inputs.
fn read_processor(path: &Path, cfg: &mut VitConfig) -> Result<()> {
    let m = read_json(path)?;
    let flag = |key: &str| match m.get(key) {
        None => Ok(true),
        Some(Value::Bool(b)) => Ok(*b),
        Some(v) => Err(bad(path, key, format!("expected true or false, got {v}"))),
    };
    let r = if flag("do_rescale")? {
        match m.get("rescale_factor") {
            None => 1.0 / 255.0,
            Some(v) => v
                .as_f64()
                .filter(|x| *x > 0.0 && x.is_finite())
                .ok_or_else(|| bad(path, "rescale_factor", format!("expected a number > 0, got {v}")))?,
        }
    } else {
        1.0
    };
    // 255 · (1/255) is 1 up to rounding: keep the common case exact.
    let k = if (255.0 * r - 1.0).abs() < 1e-12 {
        1.0
    } else {
        255.0 * r
    };
    let (mean, std) = if flag("do_normalize")? {
        let c = cfg.channels;
        let mean = per_channel(&m, path, "image_mean", c)?
            .ok_or_else(|| bad(path, "image_mean", "missing (needed with do_normalize)"))?;
        let std = per_channel(&m, path, "image_std", c)?
            .ok_or_else(|| bad(path, "image_std", "missing (needed with do_normalize)"))?;
        if let Some(s) = std.iter().find(|s| **s <= 0.0) {
            return Err(bad(path, "image_std", format!("must be > 0, got {s}")));
        }
        (mean, std)
    } else {
        (vec![0.0; cfg.channels], vec![1.0; cfg.channels])
    };
    cfg.image_mean = mean.iter().map(|v| v / k).collect();
    cfg.image_std = std.iter().map(|v| v / k).collect();
    if flag("do_resize")? {
        let size = match m.get("size") {
            Some(Value::Object(s)) => match (s.get("height"), s.get("width"), s.get("shortest_edge")) {
                (Some(h), Some(w), _) if h == w => h.as_u64(),
                (_, _, Some(e)) => e.as_u64(),
                _ => None,
            },
            Some(v) => v.as_u64(),
            None => Some(224),
        };
        if size != Some(cfg.image_size as u64) {
            return Err(bad(
                path,
                "size",
                format!(
                    "the processor resizes to {}, the model takes {} px (config.json image_size)",
                    m.get("size").map_or("224 (default)".into(), Value::to_string),
                    cfg.image_size
                ),
            ));
        }
    }
    Ok(())
}

/// Reads the model folder `dir`: `config.json`, `preprocessor_config.json` (both required) and
/// the presence of `model.safetensors` (a sharded or PyTorch-pickle checkpoint is an error
/// saying so). Errors name the file and the key.
pub fn read_folder(dir: &Path) -> Result<HfFolder> {
    let config = dir.join("config.json");
    if !config.is_file() {
        return Err(bad(&config, "(file)", "missing: an HF model folder has config.json"));
    }
    let (mut cfg, labels) = read_config(&config)?;
    let processor = dir.join("preprocessor_config.json");
    if !processor.is_file() {
        return Err(bad(
            &processor,
            "(file)",
            "missing: without it the input normalisation would be a guess (save the model's \
             image processor into the folder with save_pretrained)",
        ));
    }
    read_processor(&processor, &mut cfg)?;
    let cfg = cfg.validate().map_err(|e| Error::Config {
        path: config.clone(),
        message: e.to_string(),
    })?;
    let weights = dir.join(WEIGHTS);
    if !weights.is_file() {
        let why = if dir.join("model.safetensors.index.json").is_file() {
            "the weights are sharded (model.safetensors.index.json); save them as one file"
        } else if dir.join("pytorch_model.bin").is_file() {
            "only pytorch_model.bin is there; save with safe_serialization=True"
        } else {
            "missing"
        };
        return Err(bad(&weights, "(file)", why));
    }
    Ok(HfFolder {
        dir: dir.to_path_buf(),
        config: cfg,
        labels,
    })
}

/// Within a layer: (original name, transformers 5 in-memory name), as transformers'
/// `conversion_mapping.py` renames `ViTModel` weights (`layers.N.` for `encoder.layer.N.`).
const RENAMES: [(&str, &str); 6] = [
    ("attention.attention.query.", "attention.q_proj."),
    ("attention.attention.key.", "attention.k_proj."),
    ("attention.attention.value.", "attention.v_proj."),
    ("attention.output.dense.", "attention.o_proj."),
    ("intermediate.dense.", "mlp.fc1."),
    ("output.dense.", "mlp.fc2."),
];

/// A tensor key in the engine's layout (HF's original one, `vit.` prefix dropped): transformers
/// 5's in-memory names (`layers.N.attention.q_proj`, `…o_proj`, `mlp.fc1`, `mlp.fc2`) are
/// mapped back as its `conversion_mapping.py` maps the original ones forward.
pub fn canonical_key(key: &str) -> String {
    let k = key.strip_prefix("vit.").unwrap_or(key);
    let Some(rest) = k.strip_prefix("layers.") else {
        return k.to_string();
    };
    let Some((n, tail)) = rest.split_once('.') else {
        return k.to_string();
    };
    let tail = RENAMES
        .iter()
        .find_map(|(old, new)| tail.strip_prefix(new).map(|t| format!("{old}{t}")))
        .unwrap_or_else(|| tail.to_string());
    format!("encoder.layer.{n}.{tail}")
}

/// Writes `config.json` and `preprocessor_config.json` for `cfg` into `dir` (created), as
/// `save_pretrained` lays them out for a `ViTForImageClassification` with `labels`: reading the
/// folder back gives `cfg` ([`read_folder`], once `model.safetensors` is beside them). The
/// processor rescales by 1/255 and normalises with the model's mean and std.
pub fn write_config(dir: &Path, cfg: &VitConfig, labels: &[String]) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let id2label: serde_json::Map<String, Value> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| (i.to_string(), Value::from(l.as_str())))
        .collect();
    let label2id: serde_json::Map<String, Value> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| (l.clone(), Value::from(i)))
        .collect();
    let config = serde_json::json!({
        "architectures": ["ViTForImageClassification"],
        "model_type": "vit",
        "hidden_size": cfg.dim,
        "num_hidden_layers": cfg.depth,
        "num_attention_heads": cfg.heads,
        "intermediate_size": cfg.mlp_dim,
        "hidden_act": cfg.hidden_act.hf_name(),
        "layer_norm_eps": cfg.layer_norm_eps,
        "image_size": cfg.image_size,
        "patch_size": cfg.patch_size,
        "num_channels": cfg.channels,
        "qkv_bias": cfg.qkv_bias,
        "encoder_stride": cfg.patch_size,
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "initializer_range": 0.02,
        "id2label": id2label,
        "label2id": label2id,
    });
    let (mean, std) = cfg.normalisation();
    let processor = serde_json::json!({
        "image_processor_type": "ViTImageProcessor",
        "do_resize": true,
        "size": {"height": cfg.image_size, "width": cfg.image_size},
        "resample": 2,
        "do_rescale": true,
        "rescale_factor": 1.0 / 255.0,
        "do_normalize": true,
        "image_mean": mean,
        "image_std": std,
    });
    for (name, v) in [("config.json", config), ("preprocessor_config.json", processor)] {
        let text = serde_json::to_string_pretty(&v).expect("serialises");
        crate::io::write_atomic(&dir.join(name), text.as_bytes())?;
    }
    Ok(())
}

/// The transformers 5 in-memory name of an engine key (the inverse of [`canonical_key`], with
/// the `vit.` prefix of a `ViTForImageClassification`; the head keeps its name).
pub fn new_layout_key(key: &str) -> String {
    if key.starts_with("classifier.") {
        return key.to_string();
    }
    let Some(rest) = key.strip_prefix("encoder.layer.") else {
        return format!("vit.{key}");
    };
    let (n, tail) = rest.split_once('.').unwrap_or((rest, ""));
    let tail = RENAMES
        .iter()
        .find_map(|(old, new)| tail.strip_prefix(old).map(|t| format!("{new}{t}")))
        .unwrap_or_else(|| tail.to_string());
    format!("vit.layers.{n}.{tail}")
}

impl VitConfig {
    /// A preset name, the path of a TOML file with a custom size (keys as in this struct), or an
    /// HF model folder (its `config.json` and `preprocessor_config.json`, this module).
    pub fn from_arg(arg: &str) -> Result<Self> {
        if std::path::Path::new(arg).is_dir() {
            return Ok(read_folder(std::path::Path::new(arg))?.config);
        }
        if arg.ends_with(".toml") {
            return crate::error::load_toml::<VitConfig>(std::path::Path::new(arg));
        }
        Self::preset(arg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_key_names_map_to_the_original_layout() {
        for (new, old) in [
            (
                "vit.layers.3.attention.q_proj.weight",
                "encoder.layer.3.attention.attention.query.weight",
            ),
            (
                "vit.layers.3.attention.k_proj.bias",
                "encoder.layer.3.attention.attention.key.bias",
            ),
            (
                "layers.0.attention.v_proj.weight",
                "encoder.layer.0.attention.attention.value.weight",
            ),
            (
                "vit.layers.11.attention.o_proj.bias",
                "encoder.layer.11.attention.output.dense.bias",
            ),
            (
                "vit.layers.1.mlp.fc1.weight",
                "encoder.layer.1.intermediate.dense.weight",
            ),
            ("vit.layers.1.mlp.fc2.bias", "encoder.layer.1.output.dense.bias"),
            (
                "vit.layers.1.layernorm_before.weight",
                "encoder.layer.1.layernorm_before.weight",
            ),
            (
                "vit.encoder.layer.2.output.dense.weight",
                "encoder.layer.2.output.dense.weight",
            ),
            ("vit.embeddings.cls_token", "embeddings.cls_token"),
            ("classifier.weight", "classifier.weight"),
        ] {
            assert_eq!(canonical_key(new), old, "{new}");
            if new.starts_with("vit.layers.") || new == "classifier.weight" {
                assert_eq!(new_layout_key(old), new, "{old}");
            }
        }
    }
}
