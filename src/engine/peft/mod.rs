//! The strategy registry: the seven fine-tuning strategies of Li et al. 2025 (arXiv:2503.14836),
//! with the placements of the paper's code (AdapterHub `adapters` defaults). Each strategy's file
//! holds every fact about it ([`Definition`]): its names, its ViT-B/16 trainable count, the
//! paper's optimiser preset, how it exports, whether it starts exactly at the pretrained function
//! and whether it leaves the backbone frozen; what it does to a ViT ([`Method`]: the backbone
//! tensors it unfreezes, the tensors it adds, their part in the forward pass, how they merge;
//! the head is trainable in all); and its parameterisation of the theory's two-layer linear
//! network ([`Parameterisation`]). `registry!` below lists them, one line each: adding a
//! strategy is one file implementing the three traits and one line there.
//!
//! Required trainable backbone counts on ViT-B/16 (asserted exactly in tests against the model
//! each strategy builds): Full 85,798,656; Linear probing 0; LoRA 1,179,648; (IA)³ 64,512;
//! Adapter 3,559,680; Compacter 57,088; BitFit 102,912.

use std::collections::HashMap;

use candle_core::{Result as CResult, Tensor};
use serde::{Deserialize, Serialize};

use super::vit::{LayerKeys, ParamSpec, Role, VitConfig, backbone_spec, head_spec};
use super::weights::Weights;
use crate::error::{Error, Result};
use crate::theory::StrategyModel;
pub use crate::theory::dynamics::net::Parameterisation;

/// The registry: every strategy's variant and the unit type in its file that defines it, in the
/// paper's order (the order of [`Strategy::ALL`], of every table and figure). Generates the
/// file's module declaration, the [`Strategy`] enum (serde names: the snake-case variant names, which each file's
/// [`Definition::id`] repeats — a test checks it), [`Strategy::ALL`] and [`Strategy::def`].
macro_rules! registry {
    ($($(#[$doc:meta])* $variant:ident => $module:ident :: $def:ident,)+) => {
        $(pub mod $module;)+

        /// The fine-tuning strategies (see `registry!`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum Strategy {
            $($(#[$doc])* $variant,)+
        }

        /// ```
        /// use robustft::engine::Strategy;
        /// use robustft::engine::peft::{Definition, ExportForm, parse_strategy};
        /// let lora = Strategy::Lora.def();
        /// assert_eq!((lora.name(), lora.vit_b16_params()), ("LoRA", 1_179_648));
        /// assert_eq!(lora.export_form(), ExportForm::Merged);
        /// assert_eq!(parse_strategy("linear-probe")?, Strategy::LinearProbe);
        /// assert_eq!(Strategy::ALL.len(), 7);
        /// # Ok::<(), robustft::Error>(())
        /// ```
        impl Strategy {
            /// Every strategy, in the registry's (the paper's) order.
            pub const ALL: [Strategy; [$(Strategy::$variant),+].len()] = [$(Strategy::$variant),+];

            /// Everything the strategy's file says about it.
            pub fn def(self) -> &'static dyn Definition {
                match self {
                    $(Strategy::$variant => &$module::$def,)+
                }
            }
        }
    };
}

registry! {
    /// Full fine-tuning: every backbone parameter.
    Full => full::Full,
    /// Linear probing: the classification head only.
    LinearProbe => linear_probe::LinearProbe,
    /// LoRA (Hu et al. 2022).
    Lora => lora::Lora,
    /// Houlsby bottleneck adapters (Houlsby et al. 2019).
    Adapter => adapter::Adapter,
    /// Compacter (Karimi Mahabadi et al. 2021).
    Compacter => compacter::Compacter,
    /// BitFit: biases only (Ben Zaken et al. 2022).
    Bitfit => bitfit::Bitfit,
    /// (IA)³ scaling vectors (Liu et al. 2022).
    Ia3 => ia3::Ia3,
}

/// Every fact about one strategy, implemented in its file.
pub trait Definition: Method + Parameterisation {
    /// Display name.
    fn name(&self) -> &'static str;
    /// Short ASCII identifier (file names, CSV columns, configurations): the serde name.
    fn id(&self) -> &'static str;
    /// Other names accepted for it (a configuration's strategy list, `--strategy`), besides the
    /// id; case is ignored and `-` reads as `_`.
    fn aliases(&self) -> &'static [&'static str] {
        &[]
    }
    /// Trainable backbone parameters on ViT-B/16 (ImageNet-21k, HF layout, no pooler, head
    /// excluded), as Li et al. 2025 report them (arXiv:2503.14836, the strategy table of §4) for
    /// AdapterHub `adapters` defaults.
    fn vit_b16_params(&self) -> u64;
    /// The paper's optimiser preset (`optimizer = "paper"`): lr 5e-3 with 800 warm-up steps
    /// unless the strategy says otherwise.
    fn paper_optimiser(&self) -> PaperOptimiser {
        PaperOptimiser {
            lr: 5e-3,
            warmup_steps: 800,
        }
    }
    /// What an exported checkpoint of it is (`validate choose --export`).
    fn export_form(&self) -> ExportForm;
    /// Whether its trainable tensors start at the pretrained function exactly (besides the head),
    /// so that weight-space interpolation from the linear-probe head starts at the linear-probing
    /// run's final model.
    fn exact_start(&self) -> bool {
        true
    }
    /// Whether it leaves every backbone tensor as pretrained and adds none (the backbone's
    /// features can then be computed once and cached).
    fn frozen_backbone(&self) -> bool {
        false
    }
}

/// A learning rate and its linear warm-up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PaperOptimiser {
    /// Peak learning rate.
    pub lr: f64,
    /// Warm-up steps.
    pub warmup_steps: usize,
}

/// What an exported checkpoint of a strategy is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportForm {
    /// Every tensor is a plain ViT's (no added modules).
    Plain,
    /// The added tensors fold into the backbone weights ([`Method::merge`]): a plain ViT.
    Merged,
    /// The added modules stay: the model needs the strategy's modules to load.
    Modules,
}

impl Strategy {
    /// Display name.
    pub fn name(self) -> &'static str {
        self.def().name()
    }
    /// Short ASCII identifier (file names, CSV columns): the serde name.
    pub fn id(self) -> &'static str {
        self.def().id()
    }
    /// Other accepted names ([`Definition::aliases`]).
    pub fn aliases(self) -> &'static [&'static str] {
        self.def().aliases()
    }
    /// Trainable backbone parameters on ViT-B/16 ([`Definition::vit_b16_params`]).
    pub fn vit_b16_params(self) -> u64 {
        self.def().vit_b16_params()
    }
    /// Fraction of the full backbone this strategy trains ([`StrategyModel::param_fraction`]).
    pub fn param_fraction(self) -> f64 {
        StrategyModel::param_fraction(self)
    }
    /// k = d · params/params_full ([`StrategyModel::k_for`]).
    pub fn k_for(self, d: f64) -> f64 {
        StrategyModel::k_for(self, d)
    }
}

impl StrategyModel for Strategy {
    fn name(self) -> &'static str {
        self.def().name()
    }
    fn id(self) -> &'static str {
        self.def().id()
    }
    fn vit_b16_params(self) -> u64 {
        self.def().vit_b16_params()
    }
    fn dynamics(self) -> &'static dyn Parameterisation {
        self.def()
    }
}

/// What a strategy does to a ViT: which backbone tensors it trains, which tensors it adds (shapes
/// and initialisation), what those tensors contribute to the forward pass and how they fold into
/// the backbone. Each strategy's file implements it; [`method`] maps a [`Strategy`] to its
/// implementation. Every hook has a default that does nothing, so a strategy implements only what
/// it uses.
pub trait Method: Sync {
    /// Marks the backbone tensors the strategy trains (the head always trains).
    fn unfreeze(&self, _specs: &mut [ParamSpec]) {}

    /// The tensors the strategy adds, with their shapes and initialisation.
    fn added(&self, _cfg: &VitConfig, _p: &PeftConfig) -> Vec<ParamSpec> {
        Vec::new()
    }

    /// The strategy's hooks on one linear projection, whose tensors `w` holds (`w` is rooted at
    /// the projection's HF key, e.g. `encoder.layer.0.attention.attention.query`).
    fn projection(&self, _w: &Weights, _p: &PeftConfig) -> Result<ProjectionHooks> {
        Ok(ProjectionHooks::default())
    }

    /// The module the strategy places after the output projection of a block's sub-layer, if any.
    fn site(&self, _w: &Weights, _layer: &LayerKeys, _at: SiteAt) -> Result<Option<Box<dyn SiteModule>>> {
        Ok(None)
    }

    /// Folds the strategy's tensors into the backbone weights in `tensors` (removing them), so
    /// that the model computes the same function without them; false when the strategy cannot be
    /// folded (nothing is changed then).
    fn merge(&self, _tensors: &mut HashMap<String, Tensor>, _layers: &[LayerKeys], _p: &PeftConfig) -> Result<bool> {
        Ok(false)
    }

    /// Whether weight-space interpolation keeps the trainable tensor `key` at its fine-tuned value
    /// (instead of starting it from its initial one), for the path to interpolate the function.
    fn keeps_fine_tuned_on_path(&self, _key: &str) -> bool {
        false
    }
}

/// What `strategy` does to a ViT ([`Strategy::def`] as its [`Method`]).
pub fn method(strategy: Strategy) -> &'static dyn Method {
    strategy.def()
}

/// Where in a pre-norm block a strategy may place a module: after the attention output
/// projection, or after the MLP output projection (both before the residual add).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SiteAt {
    /// After `attention.output.dense`.
    Attention,
    /// After `output.dense`.
    Mlp,
}

impl SiteAt {
    /// The one of a layer's two sites (`[attention, mlp]`) this names.
    pub fn pick<T>(self, [attention, mlp]: [T; 2]) -> T {
        match self {
            SiteAt::Attention => attention,
            SiteAt::Mlp => mlp,
        }
    }
}

/// A strategy's term added to a projection's output (LoRA's (α/r)·x Aᵀ Bᵀ).
pub trait Delta: Send + Sync {
    /// The term for input `x` (same shape as the projection's output).
    fn forward(&self, x: &Tensor) -> CResult<Tensor>;
}

/// A module after a sub-layer's output projection (bottleneck adapters): h ↦ module(h).
pub trait SiteModule: Send + Sync {
    /// The module's output for the sub-layer output `h`.
    fn forward(&self, h: Tensor) -> CResult<Tensor>;
}

/// What a strategy adds to one projection y = x Wᵀ + b: a term added to y, and a per-output
/// scale of y (applied after the term, as `adapters` does for (IA)³).
#[derive(Default)]
pub struct ProjectionHooks {
    /// Added to the output.
    pub delta: Option<Box<dyn Delta>>,
    /// Multiplies each output column.
    pub scale: Option<Tensor>,
}

/// Hyper-parameters of the strategies (defaults: the paper's).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PeftConfig {
    /// LoRA rank r.
    pub lora_rank: usize,
    /// LoRA α (the update is scaled by α/r).
    pub lora_alpha: f64,
    /// Adapter bottleneck reduction factor (768 → 96 for 8).
    pub adapter_reduction: usize,
    /// Compacter bottleneck reduction factor (768 → 24 for 32).
    pub compacter_reduction: usize,
    /// Compacter PHM dimension n (Kronecker factors).
    pub phm_n: usize,
}

impl Default for PeftConfig {
    fn default() -> Self {
        Self {
            lora_rank: 8,
            lora_alpha: 8.0,
            adapter_reduction: 8,
            compacter_reduction: 32,
            phm_n: 4,
        }
    }
}

impl PeftConfig {
    /// The paper's defaults, with the Compacter reduction factor lowered (32 → 16 → …) where the
    /// model is too narrow for a bottleneck divisible by n (e.g. `tiny`: 64/32 = 2 < n = 4, so
    /// 64/16 = 4 is used). ViT-B keeps exactly the paper's settings.
    pub fn default_for(cfg: &VitConfig) -> Self {
        let mut p = Self::default();
        while p.compacter_reduction > 1
            && (!cfg.dim.is_multiple_of(p.compacter_reduction)
                || !(cfg.dim / p.compacter_reduction).is_multiple_of(p.phm_n))
        {
            p.compacter_reduction /= 2;
        }
        p
    }

    /// Checks the hyper-parameters against a model size; errors name the field.
    pub fn validate(&self, cfg: &VitConfig) -> Result<()> {
        if self.lora_rank == 0 {
            return Err(Error::invalid("lora_rank", "must be >= 1", 0));
        }
        if !(self.lora_alpha > 0.0 && self.lora_alpha.is_finite()) {
            return Err(Error::invalid("lora_alpha", "must be > 0", self.lora_alpha));
        }
        for (name, r) in [
            ("adapter_reduction", self.adapter_reduction),
            ("compacter_reduction", self.compacter_reduction),
        ] {
            if r == 0 || !cfg.dim.is_multiple_of(r) {
                return Err(Error::invalid(name, format!("must divide dim = {}", cfg.dim), r));
            }
        }
        let bottleneck = cfg.dim / self.compacter_reduction;
        if self.phm_n == 0 || !bottleneck.is_multiple_of(self.phm_n) || !cfg.dim.is_multiple_of(self.phm_n) {
            return Err(Error::invalid(
                "phm_n",
                format!(
                    "must divide dim = {} and the Compacter bottleneck = {bottleneck}",
                    cfg.dim
                ),
                self.phm_n,
            ));
        }
        Ok(())
    }
}

/// Parses a strategy name (`full`, `linear_probe`/`lp`, `lora`, `adapter`, `compacter`,
/// `bitfit`, `ia3`).
pub fn parse_strategy(s: &str) -> Result<Strategy> {
    let norm = |t: &str| t.trim().to_ascii_lowercase().replace('-', "_");
    let want = norm(s);
    Strategy::ALL
        .iter()
        .copied()
        .find(|st| st.id() == want || st.aliases().iter().any(|a| norm(a) == want))
        .ok_or_else(|| {
            Error::invalid(
                "strategy",
                "expected full, linear_probe, lora, adapter, compacter, bitfit or ia3",
                s,
            )
        })
}

/// The complete parameter specification of a model fine-tuned with `strategy`: backbone (with
/// the strategy's unfrozen tensors marked trainable), the strategy's added tensors, the head.
pub fn model_spec(
    cfg: &VitConfig,
    peft: &PeftConfig,
    strategy: Strategy,
    num_classes: usize,
) -> Result<Vec<ParamSpec>> {
    peft.validate(cfg)?;
    if num_classes == 0 {
        return Err(Error::invalid("num_classes", "must be >= 1", 0));
    }
    let mut specs = backbone_spec(cfg);
    let m = method(strategy);
    m.unfreeze(&mut specs);
    specs.extend(m.added(cfg, peft));
    specs.extend(head_spec(cfg, num_classes));
    Ok(specs)
}

/// Trainable parameter counts of a model.
///
/// ```
/// use robustft::engine::peft::{PeftConfig, counts, model_spec};
/// use robustft::engine::{Strategy, VitConfig};
/// let base = VitConfig::base();
/// let c = counts(&model_spec(&base, &PeftConfig::default(), Strategy::Bitfit, 10)?);
/// // BitFit on ViT-B/16: every bias, 102,912 (Li et al. 2025), and the 10-class head.
/// assert_eq!((c.trainable_backbone, c.trainable_head), (102_912, 768 * 10 + 10));
/// # Ok::<(), robustft::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    /// Trainable backbone parameters, including the ones a strategy adds (the paper's count).
    pub trainable_backbone: usize,
    /// Head parameters (always trainable).
    pub trainable_head: usize,
    /// All parameters, frozen included.
    pub total: usize,
}

/// Counts from a specification.
pub fn counts(specs: &[ParamSpec]) -> Counts {
    let mut c = Counts {
        trainable_backbone: 0,
        trainable_head: 0,
        total: 0,
    };
    for s in specs {
        c.total += s.numel();
        if s.trainable {
            match s.role {
                Role::Head => c.trainable_head += s.numel(),
                Role::Backbone | Role::Peft => c.trainable_backbone += s.numel(),
            }
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Trainable backbone parameters per strategy on ViT-B/16 as Li et al. 2025 report them
    /// (arXiv:2503.14836, the strategy table of §4), written out here independently of the
    /// strategies' files.
    const PAPER: [(Strategy, u64); 7] = [
        (Strategy::Full, 85_798_656),
        (Strategy::LinearProbe, 0),
        (Strategy::Lora, 1_179_648),
        (Strategy::Adapter, 3_559_680),
        (Strategy::Compacter, 57_088),
        (Strategy::Bitfit, 102_912),
        (Strategy::Ia3, 64_512),
    ];

    /// The paper's counts on ViT-B/16, one per strategy, exactly: as each file states them and
    /// as the model each strategy builds counts them.
    #[test]
    fn base_counts_match_the_paper() {
        let cfg = VitConfig::base();
        let peft = PeftConfig::default();
        assert_eq!(PAPER.map(|(s, _)| s), Strategy::ALL);
        for (s, want) in PAPER {
            assert_eq!(s.vit_b16_params(), want, "{}", s.name());
            let c = counts(&model_spec(&cfg, &peft, s, 10).unwrap());
            assert_eq!(c.trainable_backbone as u64, want, "{}", s.name());
            assert_eq!(c.trainable_head, 768 * 10 + 10);
        }
        assert_eq!(Strategy::Full.vit_b16_params(), crate::theory::VIT_B16_BACKBONE);
    }

    /// Each file's id is the registry's serde name, and no id or alias names two strategies.
    #[test]
    fn ids_are_serde_names_and_names_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for s in Strategy::ALL {
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{}\"", s.id()));
            assert_eq!(serde_json::from_str::<Strategy>(&format!("\"{}\"", s.id())).unwrap(), s);
            for name in std::iter::once(s.id()).chain(s.aliases().iter().copied()) {
                assert!(seen.insert(name.replace('-', "_")), "{name} names two strategies");
                assert_eq!(parse_strategy(name).unwrap(), s, "{name}");
            }
        }
    }

    #[test]
    fn parse_names() {
        assert_eq!(parse_strategy("LoRA").unwrap(), Strategy::Lora);
        assert_eq!(parse_strategy("lp").unwrap(), Strategy::LinearProbe);
        assert_eq!(parse_strategy("linear-probe").unwrap(), Strategy::LinearProbe);
        assert!(parse_strategy("prefix").unwrap_err().to_string().contains("strategy"));
    }

    #[test]
    fn bad_hyper_parameters() {
        let cfg = VitConfig::tiny();
        let p = PeftConfig {
            adapter_reduction: 3,
            ..PeftConfig::default()
        };
        assert!(p.validate(&cfg).unwrap_err().to_string().contains("adapter_reduction"));
        // tiny: dim 64 / 32 = 2, not divisible by n = 4.
        assert!(
            PeftConfig::default()
                .validate(&cfg)
                .unwrap_err()
                .to_string()
                .contains("phm_n")
        );
    }
}
