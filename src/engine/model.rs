//! The ViT as a runnable model: tensors by HF key, the strategy's trainable `Var`s, the forward
//! pass (typed modules resolved once from those tensors: [`super::modules`]), safetensors
//! load/save and LoRA/(IA)³ merging.
//!
//! Frozen tensors are plain `Tensor`s (no gradient is ever computed for them); trainable ones are
//! `Var`s whose tensors are used in the forward pass, so the optimiser updates them in place.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor, Var};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;

use super::modules::Modules;
use super::peft::{self, Counts, PeftConfig, Strategy};
use super::vit::{Init, LayerKeys, ParamSpec, Role, VitConfig};
use crate::error::{Error, Result};

pub use super::modules::{PIXEL_MEAN, PIXEL_STD};

/// What to build: architecture, strategy (with its module sizes), head size, element type,
/// device, and the seed of every freshly initialised tensor.
#[derive(Debug, Clone)]
pub struct VitSpec {
    /// Architecture.
    pub cfg: VitConfig,
    /// PEFT module sizes.
    pub peft: PeftConfig,
    /// Fine-tuning strategy.
    pub strategy: Strategy,
    /// Classes of the head.
    pub num_classes: usize,
    /// Element type.
    pub dtype: DType,
    /// Device.
    pub device: Device,
    /// Initialisation seed (tensors not loaded from a checkpoint).
    pub seed: u64,
}

impl VitSpec {
    /// `strategy` on `cfg` with the default module sizes for `cfg` ([`PeftConfig::default_for`]).
    pub fn new(
        cfg: &VitConfig,
        strategy: Strategy,
        num_classes: usize,
        dtype: DType,
        device: &Device,
        seed: u64,
    ) -> Self {
        Self {
            cfg: cfg.clone(),
            peft: PeftConfig::default_for(cfg),
            strategy,
            num_classes,
            dtype,
            device: device.clone(),
            seed,
        }
    }
}

/// A Vision Transformer with a fine-tuning strategy applied.
pub struct Vit {
    spec: VitSpec,
    specs: Vec<ParamSpec>,
    tensors: HashMap<String, Tensor>,
    vars: Vec<(String, Var)>,
    layers: Vec<LayerKeys>,
    /// The forward pass over the same tensors, resolved once ([`super::modules`]).
    modules: Modules,
    /// Whether every head tensor came from the loaded tensors (shape included).
    head_loaded: bool,
}

/// FNV-1a of a key: gives every tensor its own RNG stream, so a tensor's initial values do not
/// depend on which other tensors were loaded from a checkpoint.
fn key_hash(key: &str) -> u64 {
    crate::seeds::fnv1a(key.as_bytes())
}

fn init_tensor(spec: &ParamSpec, seed: u64, dtype: DType, device: &Device) -> Result<Tensor> {
    let n = spec.numel();
    let mut rng = StdRng::seed_from_u64(seed ^ key_hash(&spec.key));
    let data: Vec<f64> = match spec.init {
        Init::Zeros => vec![0.0; n],
        Init::Ones => vec![1.0; n],
        Init::Normal(std) => (0..n).map(|_| std * rng.sample::<f64, _>(StandardNormal)).collect(),
        Init::Uniform(a) => (0..n).map(|_| rng.random_range(-a..=a)).collect(),
    };
    Ok(Tensor::from_vec(data, spec.shape.as_slice(), device)?.to_dtype(dtype)?)
}

fn shape_str(s: &[usize]) -> String {
    format!("{s:?}")
}

impl Vit {
    /// A freshly initialised model (HF init: N(0, 0.02²) weights, zero biases, unit LayerNorm).
    pub fn new(spec: &VitSpec) -> Result<Self> {
        Self::from_tensors(spec, HashMap::new(), false)
    }

    /// Builds a model from loaded tensors (keys with or without the `vit.` prefix, in HF's original
    /// layout or transformers 5's in-memory one, [`super::hf::canonical_key`]; `pooler.*` and
    /// other unknown keys are ignored). With `require_backbone`, every backbone key must be present;
    /// a present tensor of the wrong shape is an error naming the key and both shapes. A head
    /// whose class count differs is re-initialised (fine-tuning to a new label set). PEFT tensors
    /// found in the file are used; missing ones are initialised.
    pub fn from_tensors(spec: &VitSpec, loaded: HashMap<String, Tensor>, require_backbone: bool) -> Result<Self> {
        let spec = VitSpec {
            cfg: spec.cfg.clone().validate()?,
            ..spec.clone()
        };
        let (cfg, dtype, device, seed) = (&spec.cfg, spec.dtype, &spec.device, spec.seed);
        let specs = peft::model_spec(cfg, &spec.peft, spec.strategy, spec.num_classes)?;
        let mut loaded: HashMap<String, Tensor> = loaded
            .into_iter()
            .map(|(k, v)| (super::hf::canonical_key(&k), v))
            .collect();
        let mut tensors = HashMap::with_capacity(specs.len());
        let mut vars = Vec::new();
        let head_loaded = specs
            .iter()
            .filter(|p| p.role == Role::Head)
            .all(|p| loaded.get(&p.key).is_some_and(|t| t.dims() == p.shape.as_slice()));
        for p in &specs {
            let t = match loaded.remove(&p.key) {
                Some(t) if t.dims() == p.shape.as_slice() => t.to_dtype(dtype)?.to_device(device)?,
                Some(t) if p.role == Role::Head => {
                    let _ = t; // different class count: start a new head
                    init_tensor(p, seed, dtype, device)?
                }
                Some(t) => {
                    return Err(Error::invalid(
                        p.key.clone(),
                        format!(
                            "checkpoint tensor has the wrong shape: expected {}",
                            shape_str(&p.shape)
                        ),
                        format!("shape {}", shape_str(t.dims())),
                    ));
                }
                None if require_backbone && p.role == Role::Backbone => {
                    return Err(Error::invalid(
                        p.key.clone(),
                        format!("missing from the checkpoint (expected shape {})", shape_str(&p.shape)),
                        "nothing",
                    ));
                }
                None => init_tensor(p, seed, dtype, device)?,
            };
            let t = if p.trainable {
                let v = Var::from_tensor(&t.contiguous()?)?;
                let t = v.as_tensor().clone();
                vars.push((p.key.clone(), v));
                t
            } else {
                t.detach()
            };
            tensors.insert(p.key.clone(), t);
        }
        let layers: Vec<LayerKeys> = (0..cfg.depth).map(LayerKeys::new).collect();
        Ok(Self {
            modules: Modules::new(cfg, peft::method(spec.strategy), &spec.peft, &layers, &tensors)?,
            layers,
            specs,
            tensors,
            vars,
            spec,
            head_loaded,
        })
    }

    /// Whether the head (`classifier.*`) was loaded from the checkpoint, its shape fitting this
    /// model's classes; false when it was initialised (no head there, another class count, or
    /// [`Vit::load_backbone`]).
    pub fn head_from_checkpoint(&self) -> bool {
        self.head_loaded
    }

    /// Loads a safetensors checkpoint (HF layout), or the `model.safetensors` of an HF model folder
    /// ([`super::hf::read_folder`]); see [`Vit::from_tensors`]. Errors name the file.
    pub fn load(path: &Path, spec: &VitSpec) -> Result<Self> {
        Self::load_filtered(path, spec, |_| true)
    }

    /// Loads the backbone of a checkpoint and ignores its head (`classifier.*`): the head starts
    /// freshly initialised from `spec.seed` whatever the checkpoint holds (a new task, even one
    /// with as many classes as the upstream task, gets a new head).
    pub fn load_backbone(path: &Path, spec: &VitSpec) -> Result<Self> {
        Self::load_filtered(path, spec, |k| !k.trim_start_matches("vit.").starts_with("classifier."))
    }

    fn load_filtered(path: &Path, spec: &VitSpec, keep: impl Fn(&str) -> bool) -> Result<Self> {
        let (path, mut loaded) = read_checkpoint(path, &spec.device)?;
        loaded.retain(|k, _| keep(k));
        Self::from_tensors(spec, loaded, true).map_err(|e| Error::Config {
            path,
            message: e.to_string(),
        })
    }

    /// Writes every tensor (backbone in HF layout, PEFT tensors, head) atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let map: BTreeMap<&String, &Tensor> = self.tensors.iter().collect();
        let owned: HashMap<String, Tensor> = map.into_iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        save_atomic(&owned, path)
    }

    /// Configuration.
    pub fn config(&self) -> &VitConfig {
        &self.spec.cfg
    }
    /// What the model was built from.
    pub fn spec(&self) -> &VitSpec {
        &self.spec
    }
    /// Strategy.
    pub fn strategy(&self) -> Strategy {
        self.spec.strategy
    }
    /// Number of classes of the head.
    pub fn num_classes(&self) -> usize {
        self.spec.num_classes
    }
    /// Device.
    pub fn device(&self) -> &Device {
        &self.spec.device
    }
    /// Element type.
    pub fn dtype(&self) -> DType {
        self.spec.dtype
    }
    /// The specification the model was built from.
    pub fn specs(&self) -> &[ParamSpec] {
        &self.specs
    }
    /// Trainable tensors, in specification order.
    pub fn trainable(&self) -> &[(String, Var)] {
        &self.vars
    }
    /// Trainable parameter counts.
    pub fn counts(&self) -> Counts {
        peft::counts(&self.specs)
    }
    /// A tensor by key.
    pub fn tensor(&self, key: &str) -> Option<&Tensor> {
        self.tensors.get(key)
    }

    /// CLS features after the final LayerNorm: [B, dim]. Everything a linear probe sees.
    pub fn features(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.modules.features(x)
    }

    /// The head on features: [B, classes].
    pub fn head(&self, features: &Tensor) -> candle_core::Result<Tensor> {
        self.modules.head(features)
    }

    /// Logits of images [B, C, H, W] in [0, 1].
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.head(&self.features(x)?)
    }

    /// The same model with every tensor detached and no trainable `Var`s: tensors share storage
    /// with `self` (no copy). Attacks run on it, so that backpropagating to the input does not also
    /// compute parameter gradients (weight matmuls and the bias reductions of broadcast adds),
    /// which candle would otherwise do for every tracked `Var`.
    pub fn frozen(&self) -> Vit {
        let tensors: HashMap<String, Tensor> = self.tensors.iter().map(|(k, v)| (k.clone(), v.detach())).collect();
        Vit {
            spec: self.spec.clone(),
            specs: self.specs.clone(),
            modules: Modules::new(
                &self.spec.cfg,
                peft::method(self.spec.strategy),
                &self.spec.peft,
                &self.layers,
                &tensors,
            )
            .expect("built from the same tensors"),
            tensors,
            vars: Vec::new(),
            layers: self.layers.clone(),
            head_loaded: self.head_loaded,
        }
    }

    /// The current values of the trainable tensors, copied (a snapshot that later optimiser steps
    /// do not change).
    pub fn trainable_snapshot(&self) -> Result<HashMap<String, Tensor>> {
        self.vars
            .iter()
            .map(|(k, v)| Ok((k.clone(), v.as_tensor().detach().copy()?)))
            .collect()
    }

    /// Where weight-space interpolation starts for this (fine-tuned) model, given the trainable
    /// tensors before fine-tuning (`initial`, from [`Vit::trainable_snapshot`] at step 0): every
    /// trainable tensor from its initial value, except those the strategy keeps
    /// ([`peft::Method::keeps_fine_tuned_on_path`]): LoRA's A matrices, which stay at their
    /// fine-tuned value — B starts from 0, so the update along the path is α·(α_lora/r)·B·A, exactly
    /// the interpolation of the merged weights W₀ + α·ΔW (and the function at α = 0 is the
    /// initial one, B being 0). (IA)³'s vectors start from 1, the head from its initialisation.
    pub fn interpolation_start(&self, initial: &HashMap<String, Tensor>) -> Result<HashMap<String, Tensor>> {
        self.vars
            .iter()
            .map(|(k, v)| {
                let t = if peft::method(self.spec.strategy).keeps_fine_tuned_on_path(k) {
                    v.as_tensor().detach()
                } else {
                    initial
                        .get(k)
                        .ok_or_else(|| Error::invalid("initial", "a value for every trainable tensor", k))?
                        .clone()
                };
                Ok((k.clone(), t))
            })
            .collect()
    }

    /// The model whose trainable tensors are θ(α) = (1 − α)·θ₀ + α·θ — θ their current values,
    /// θ₀ = `start` ([`Vit::interpolation_start`]) — and every other tensor shared: WiSE-FT's
    /// weight-space ensemble (Wortsman et al. 2022, "Robust fine-tuning of zero-shot models",
    /// eq. 1) over the parameters the strategy trains. Frozen (no trainable `Var`s). Exact at the
    /// ends: α = 0 gives `start` and α = 1 the current values, bit for bit (x·1 + y·0 = x in IEEE
    /// arithmetic for finite y).
    pub fn interpolated(&self, start: &HashMap<String, Tensor>, alpha: f64) -> Result<Vit> {
        if !(0.0..=1.0).contains(&alpha) {
            return Err(Error::invalid("alpha", "an interpolation weight in [0, 1]", alpha));
        }
        let mut tensors: HashMap<String, Tensor> = self.tensors.iter().map(|(k, v)| (k.clone(), v.detach())).collect();
        for (k, v) in &self.vars {
            let s = start
                .get(k)
                .ok_or_else(|| Error::invalid("start", "a value for every trainable tensor", k))?;
            let t = (s.affine(1.0 - alpha, 0.0)? + v.as_tensor().detach().affine(alpha, 0.0)?)?;
            tensors.insert(k.clone(), t);
        }
        Ok(Vit::from_tensors(&self.spec, tensors, true)?.frozen())
    }

    /// Folds LoRA and (IA)³ into the backbone weights (W + (α/r)BA; diag(ℓ)W, ℓ⊙b) and returns a
    /// model with the same function and no extra tensors (inference only: only the head trains).
    /// Other strategies are returned unchanged (cloned).
    pub fn merge(&self) -> Result<Vit> {
        let mut tensors: HashMap<String, Tensor> = self.tensors.iter().map(|(k, v)| (k.clone(), v.detach())).collect();
        let merged = peft::method(self.spec.strategy).merge(&mut tensors, &self.layers, &self.spec.peft)?;
        let strategy = if merged {
            Strategy::LinearProbe
        } else {
            self.spec.strategy
        };
        let spec = VitSpec {
            strategy,
            seed: 0,
            ..self.spec.clone()
        };
        Vit::from_tensors(&spec, tensors, true)
    }
}

/// The tensors of a safetensors checkpoint, or of an HF model folder's `model.safetensors`
/// (`hf::read_folder` says why when a folder has none), with the file they came from; an
/// unreadable file is an error naming it.
pub fn read_checkpoint(path: &Path, device: &Device) -> Result<(PathBuf, HashMap<String, Tensor>)> {
    let file = if path.is_dir() {
        super::hf::read_folder(path)?.weights()
    } else {
        path.to_path_buf()
    };
    let loaded = candle_core::safetensors::load(&file, device).map_err(|e| Error::Config {
        path: file.clone(),
        message: format!("not a readable safetensors file: {e}"),
    })?;
    Ok((file, loaded))
}

/// Saves tensors to a safetensors file atomically (temp file in the same folder + rename).
pub fn save_atomic(tensors: &HashMap<String, Tensor>, path: &Path) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let tmp = crate::io::temp_path(path);
    candle_core::safetensors::save(tensors, &tmp)?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}
