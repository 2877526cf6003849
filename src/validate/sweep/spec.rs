//! Values of a run configuration that can be written in more than one way: the model (a preset
//! name, a TOML path or an inline table), attack radii (numbers or fractions like `"1/255"`, one
//! or a list), the optimiser (`"paper"` or a table of per-strategy learning rates) and a data
//! source (a dataset kind with an optional class subset).
//!
//! Each keeps the shape it was written in when serialised, so a configuration that does not use
//! a new form hashes exactly as before.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize};

use crate::engine::VitConfig;
use crate::error::{Error, Result};

/// Either a string or a table `T`, with the table's own error messages (an untagged enum would
/// only say that nothing matched).
fn name_or_table<'de, D: Deserializer<'de>, T: DeserializeOwned>(
    d: D,
    key: &str,
    expected: &str,
) -> std::result::Result<std::result::Result<String, T>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Name(String),
        Table(toml::Table),
    }
    match Raw::deserialize(d).map_err(|_| D::Error::custom(format!("`{key}` must be {expected}")))? {
        Raw::Name(n) => Ok(Ok(n)),
        Raw::Table(t) => T::deserialize(toml::Value::Table(t))
            .map(Err)
            .map_err(|e| D::Error::custom(format!("`{key}`: {}", e.message()))),
    }
}

/// The model as written: a preset (`tiny`, `small`, `base`), a TOML file, or an inline table
/// with the [`VitConfig`] keys.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ModelSpec {
    /// Preset name or TOML path.
    Name(String),
    /// Inline size.
    Table(VitConfig),
}

impl<'de> Deserialize<'de> for ModelSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Ok(
            match name_or_table(d, "model", "a preset name, a .toml path or a table of sizes")? {
                Ok(n) => ModelSpec::Name(n),
                Err(t) => ModelSpec::Table(t),
            },
        )
    }
}

impl ModelSpec {
    /// The size it names; errors name `model`.
    pub fn resolve(&self) -> Result<VitConfig> {
        match self {
            ModelSpec::Name(n) => VitConfig::from_arg(n),
            ModelSpec::Table(c) => c.clone().validate(),
        }
    }
}

/// One radius as written: a number or a fraction such as `"1/255"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EpsValue {
    /// A number in pixel units.
    Num(f64),
    /// `"a/b"` or a number as text.
    Text(String),
}

impl EpsValue {
    /// The value; `field` names it in errors. Must lie in [0, 1] (pixel units).
    ///
    /// ```
    /// use robustft::validate::sweep::spec::EpsValue;
    /// assert_eq!(EpsValue::Text("8/255".into()).value("eps")?, 8.0 / 255.0);
    /// assert!(EpsValue::Num(-0.1).value("eps").unwrap_err().to_string().contains("eps"));
    /// # Ok::<(), robustft::Error>(())
    /// ```
    pub fn value(&self, field: &str) -> Result<f64> {
        let v = match self {
            EpsValue::Num(v) => *v,
            EpsValue::Text(t) => parse_fraction(t)
                .ok_or_else(|| Error::invalid(field, "expected a number or a fraction such as \"1/255\"", t))?,
        };
        // Pixels lie in [0, 1]: a larger radius allows any image.
        crate::error::check::closed(field, v, 0.0, 1.0)
    }
}

/// `"a/b"` → a/b, or a plain number; None when unreadable or b = 0.
pub fn parse_fraction(t: &str) -> Option<f64> {
    match t.split_once('/') {
        Some((a, b)) => {
            let (a, b): (f64, f64) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
            (b != 0.0).then_some(a / b)
        }
        None => t.trim().parse().ok(),
    }
}

/// The attack radius or radii as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EpsSpec {
    /// One radius.
    One(EpsValue),
    /// Several radii, evaluated in one pass.
    Many(Vec<EpsValue>),
}

/// At most this many radii: one outcome digit per image holds 0..=`MAX_EPS` + 1.
pub const MAX_EPS: usize = 8;

impl EpsSpec {
    /// The radii in increasing order; errors name `attack.eps` (or `attack.eps[i]`) when a value
    /// is unreadable or negative, when the list is empty or too long, or when a radius repeats.
    pub fn values(&self) -> Result<Vec<f64>> {
        let mut v = match self {
            EpsSpec::One(e) => vec![e.value("attack.eps")?],
            EpsSpec::Many(list) => list
                .iter()
                .enumerate()
                .map(|(i, e)| e.value(&format!("attack.eps[{i}]")))
                .collect::<Result<Vec<_>>>()?,
        };
        if v.is_empty() || v.len() > MAX_EPS {
            return Err(Error::invalid(
                "attack.eps",
                format!("give 1 to {MAX_EPS} radii"),
                v.len(),
            ));
        }
        v.sort_by(f64::total_cmp);
        if let Some(w) = v.windows(2).find(|w| w[0] == w[1]) {
            return Err(Error::invalid("attack.eps", "lists a radius twice", w[0]));
        }
        Ok(v)
    }
}

/// The optimiser as written: the preset `"paper"` or a table.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum OptimizerSpec {
    /// A preset (`paper`).
    Preset(OptimizerPreset),
    /// Per-strategy learning rates.
    Custom(OptimizerTable),
}

/// What `optimizer` may be, for errors.
const OPTIMIZER_EXPECTED: &str = "\"paper\" or a table with lr = { <strategy> = <rate>, … }";

impl<'de> Deserialize<'de> for OptimizerSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Ok(match name_or_table(d, "optimizer", OPTIMIZER_EXPECTED)? {
            Ok(n) if n == "paper" => OptimizerSpec::Preset(OptimizerPreset::Paper),
            Ok(n) => {
                return Err(D::Error::custom(format!(
                    "`optimizer` must be {OPTIMIZER_EXPECTED} (got \"{n}\")"
                )));
            }
            Err(t) => OptimizerSpec::Custom(t),
        })
    }
}

/// The optimiser presets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerPreset {
    /// Li et al. 2025's: AdamW, lr 2e-5 for full fine-tuning and 5e-3 for the others, cosine
    /// decay, 800 warm-up steps (scaled to the run) for all but full fine-tuning.
    Paper,
}

/// AdamW with a cosine schedule and per-strategy peak learning rates (chosen on a validation
/// split with `validate tune`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimizerTable {
    /// Peak learning rate per strategy id (`full`, `linear_probe`, `lora`, …).
    pub lr: BTreeMap<String, f64>,
    /// Linear warm-up steps (then cosine decay to 0 at `max_steps`).
    #[serde(default)]
    pub warmup_steps: usize,
    /// Decoupled weight decay.
    #[serde(default)]
    pub weight_decay: f64,
    /// Clip the global gradient norm to this value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip_grad_norm: Option<f64>,
}

/// Where images come from: a dataset kind, its folder and an optional class subset (labels
/// remapped to 0..n−1 in the order listed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    /// `synthetic`, `fashion-mnist`, `cifar10`, `cifar100` or `image-folder`.
    pub kind: DataKind,
    /// Synthetic task name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// Data folder of a file dataset (image folders: with `train/` and `test/` inside).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// Class subset, original labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classes: Option<Vec<u32>>,
    /// Training images used (default: all; synthetic: generated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_images: Option<usize>,
}

/// The dataset kinds a run can read (as written in a config: `kind = "fashion-mnist"`; any other
/// value is rejected by the parser with this list).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DataKind {
    /// A generated task (`task` names it).
    Synthetic,
    /// Fashion-MNIST, IDX files.
    FashionMnist,
    /// CIFAR-10, binary batches.
    Cifar10,
    /// CIFAR-100 (fine labels), binary `train.bin` / `test.bin`.
    Cifar100,
    /// `train/<class>/…` and `test/<class>/…` image folders.
    ImageFolder,
    /// One folder per domain, each an image folder (DomainNet-style).
    Domains,
}

impl DataKind {
    /// The name as written in configs and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            DataKind::Synthetic => "synthetic",
            DataKind::FashionMnist => "fashion-mnist",
            DataKind::Cifar10 => "cifar10",
            DataKind::Cifar100 => "cifar100",
            DataKind::ImageFolder => "image-folder",
            DataKind::Domains => "domains",
        }
    }
}

impl std::fmt::Display for DataKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Checks a source and, where the class count is known without reading files (synthetic tasks,
/// Fashion-MNIST, CIFAR-10: 10), a class subset. `key` prefixes the field names in errors.
pub fn check_source(
    kind: DataKind,
    task: Option<&str>,
    classes: Option<&[u32]>,
    image_size: usize,
    key: &str,
) -> Result<()> {
    let known = match kind {
        DataKind::Synthetic => {
            let t = task
                .ok_or_else(|| Error::invalid(format!("{key}task"), "a synthetic dataset needs a task", "nothing"))?;
            let s = crate::engine::data::synthetic::SyntheticSpec::named(t, image_size)
                .map_err(|e| e.rename_field("task", &format!("{key}task")))?;
            Some(s.classes)
        }
        DataKind::FashionMnist | DataKind::Cifar10 => Some(10),
        DataKind::Cifar100 => Some(100),
        DataKind::ImageFolder | DataKind::Domains => None,
    };
    if let Some(cs) = classes {
        let field = format!("{key}classes");
        if cs.is_empty() {
            return Err(Error::invalid(field, "need at least one class", "[]"));
        }
        let mut seen = std::collections::BTreeSet::new();
        for &c in cs {
            if known.is_some_and(|n| c as usize >= n) {
                return Err(Error::invalid(
                    field,
                    format!("classes of {kind} are 0..{}", known.unwrap_or(0) - 1),
                    c,
                ));
            }
            if !seen.insert(c) {
                return Err(Error::invalid(field, "lists a class twice", c));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractions_and_lists() {
        assert_eq!(parse_fraction("1/255"), Some(1.0 / 255.0));
        assert_eq!(parse_fraction(" 8 / 255 "), Some(8.0 / 255.0));
        assert_eq!(parse_fraction("0.5"), Some(0.5));
        assert_eq!(parse_fraction("1/0"), None);
        assert_eq!(parse_fraction("one"), None);
        let e: EpsSpec = toml::from_str::<toml::Table>("e = [\"4/255\", 0.0, \"1/255\"]").unwrap()["e"]
            .clone()
            .try_into()
            .unwrap();
        assert_eq!(e.values().unwrap(), vec![0.0, 1.0 / 255.0, 4.0 / 255.0]);
        for (text, key) in [
            ("e = [\"1/255\", \"x\"]", "attack.eps[1]"),
            ("e = -0.1", "attack.eps"),
            ("e = 1.5", "[0, 1]"),
            ("e = [\"1/255\", \"300/255\"]", "attack.eps[1]"),
            ("e = [0.1, 0.1]", "twice"),
            ("e = []", "1 to 8"),
        ] {
            let e: EpsSpec = toml::from_str::<toml::Table>(text).unwrap()["e"]
                .clone()
                .try_into()
                .unwrap();
            let msg = e.values().unwrap_err().to_string();
            assert!(msg.contains(key), "{text}: {msg}");
        }
        // A single number serialises as a number (configs without lists hash as before).
        assert_eq!(serde_json::to_string(&EpsSpec::One(EpsValue::Num(0.5))).unwrap(), "0.5");
    }

    #[test]
    fn optimizer_and_model_forms() {
        #[derive(Deserialize)]
        struct W {
            optimizer: OptimizerSpec,
            model: ModelSpec,
        }
        let w: W = toml::from_str("optimizer = \"paper\"\nmodel = \"tiny\"").unwrap();
        assert_eq!(w.optimizer, OptimizerSpec::Preset(OptimizerPreset::Paper));
        assert_eq!(w.model.resolve().unwrap(), VitConfig::tiny());
        let w: W = toml::from_str(
            "model = { image_size = 28, patch_size = 7, dim = 64, depth = 4, heads = 4, mlp_dim = 256 }\n\
             [optimizer]\nlr = { full = 1e-3, lora = 3e-3 }\nwarmup_steps = 10",
        )
        .unwrap();
        assert_eq!(w.model.resolve().unwrap().patch_size, 7);
        let OptimizerSpec::Custom(t) = w.optimizer else {
            panic!("a table")
        };
        assert_eq!((t.lr["lora"], t.warmup_steps), (3e-3, 10));
        let e = toml::from_str::<W>("model = \"tiny\"\n[optimizer]\nlrr = 1")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("optimizer") && e.contains("lrr"), "{e}");
        let e = toml::from_str::<W>("optimizer = \"paper\"\nmodel = { dim = 64 }")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("model") && e.contains("image_size"), "{e}");
    }

    #[test]
    fn sources_are_checked() {
        assert!(check_source(DataKind::FashionMnist, None, Some(&[0, 4, 9]), 28, "").is_ok());
        for (kind, task, classes, want) in [
            (
                DataKind::FashionMnist,
                None,
                Some(&[10u32][..]),
                "pretrain.dataset.classes",
            ),
            (DataKind::FashionMnist, None, Some(&[1, 1][..]), "twice"),
            (DataKind::Synthetic, None, None, "pretrain.dataset.task"),
        ] {
            let e = check_source(kind, task, classes, 28, "pretrain.dataset.")
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{kind}: {e}");
        }
        // An unknown kind no longer reaches check_source: the parser rejects it, naming the key
        // and the kinds it accepts.
        let e = crate::error::parse_toml::<SourceSpec>("kind = \"mnist\"", std::path::Path::new("x.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("kind") && e.contains("fashion-mnist") && e.contains("mnist"),
            "{e}"
        );
    }
}
