//! The ViT engine: gradients against finite differences under every strategy, HF key layout,
//! checkpoint round trips and errors, LoRA/(IA)³ merging.

use std::collections::{BTreeSet, HashMap};

mod common;

use candle_core::{DType, Device, Tensor, Var};
use robustft::engine::ops::cross_entropy;
use robustft::engine::peft::{PeftConfig, Strategy, model_spec};
use robustft::engine::vit::{Role, VitConfig};
use robustft::engine::{Vit, VitSpec};

fn tiny_model(strategy: Strategy, seed: u64) -> Vit {
    let cfg = VitConfig::tiny();
    Vit::new(&VitSpec::new(&cfg, strategy, 5, DType::F64, &Device::Cpu, seed)).unwrap()
}

fn images(n: usize, seed: u64) -> Tensor {
    let cfg = VitConfig::tiny();
    let len = n * 3 * cfg.image_size * cfg.image_size;
    // Deterministic pseudo-random pixels in [0, 1].
    let data: Vec<f64> = (0..len)
        .map(|i| ((i as u64 * 2654435761 + seed * 97) % 1000) as f64 / 999.0)
        .collect();
    Tensor::from_vec(data, (n, 3, cfg.image_size, cfg.image_size), &Device::Cpu).unwrap()
}

fn labels(n: usize) -> Tensor {
    Tensor::from_vec((0..n as u32).map(|i| i % 5).collect::<Vec<_>>(), n, &Device::Cpu).unwrap()
}

/// Moves every trainable tensor away from its initial value (so that e.g. LoRA's B = 0 does not
/// make gradients or merges trivially zero).
fn perturb(model: &Vit, scale: f64, seed: u64) {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    for (_, v) in model.trainable() {
        let noise: Vec<f64> = (0..v.elem_count()).map(|_| rng.random_range(-scale..scale)).collect();
        let noise = Tensor::from_vec(noise, v.shape(), &Device::Cpu).unwrap();
        v.set(&(v.as_tensor() + noise).unwrap()).unwrap();
    }
}

fn loss(model: &Vit, x: &Tensor, y: &Tensor) -> f64 {
    cross_entropy(&model.forward(x).unwrap(), y)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

/// Central differences f(θ+h) − f(θ−h) / 2h on a few coordinates of `var`, against autograd.
/// In f64 with h = 1e-5 the truncation error is O(h²) ≈ 1e-10 relative and rounding ≈ 1e-11/h;
/// candle's erf-GELU backward uses 0.398942 for 1/√(2π) (relative error 7e-7), so a tolerance of
/// 1e-7 absolute + 1e-4 relative is tight enough to catch a missing or wrong gradient (which is
/// off by O(1)) and loose enough for those constants.
fn check_fd(model: &Vit, var: &Var, grad: &Tensor, x: &Tensor, y: &Tensor, what: &str) {
    let flat: Vec<f64> = var.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
    let g: Vec<f64> = grad.flatten_all().unwrap().to_vec1().unwrap();
    let n = flat.len();
    let h = 1e-5;
    let mut checked_nonzero = 0;
    for j in [0, n / 3, n / 2, (2 * n) / 3, n - 1] {
        let at = |delta: f64| {
            let mut v = flat.clone();
            v[j] += delta;
            var.set(&Tensor::from_vec(v, var.shape(), &Device::Cpu).unwrap())
                .unwrap();
            loss(model, x, y)
        };
        let fd = (at(h) - at(-h)) / (2.0 * h);
        var.set(&Tensor::from_vec(flat.clone(), var.shape(), &Device::Cpu).unwrap())
            .unwrap();
        assert!(
            (fd - g[j]).abs() <= 1e-7 + 1e-4 * fd.abs(),
            "{what}[{j}]: finite difference {fd}, autograd {}",
            g[j]
        );
        if fd.abs() > 1e-9 {
            checked_nonzero += 1;
        }
    }
    assert!(
        checked_nonzero > 0,
        "{what}: every checked gradient is zero, the test would be vacuous"
    );
}

#[test]
fn gradients_match_finite_differences_under_every_strategy() {
    let (x0, y) = (images(2, 1), labels(2));
    for strategy in Strategy::ALL {
        let model = tiny_model(strategy, 3);
        perturb(&model, 0.05, 7);
        let x = Var::from_tensor(&x0).unwrap();
        let l = cross_entropy(&model.forward(x.as_tensor()).unwrap(), &y).unwrap();
        let grads = l.backward().unwrap();
        // The input image.
        let gx = grads
            .get(x.as_tensor())
            .unwrap_or_else(|| panic!("{}: no input gradient", strategy.name()));
        check_fd(&model, &x, gx, x.as_tensor(), &y, &format!("{} input", strategy.name()));
        // Every trainable tensor receives a gradient; frozen ones get none.
        for (key, v) in model.trainable() {
            assert!(
                grads.get(v.as_tensor()).is_some(),
                "{}: no gradient for {key}",
                strategy.name()
            );
        }
        for spec in model.specs().iter().filter(|s| !s.trainable) {
            assert!(
                grads.get(model.tensor(&spec.key).unwrap()).is_none(),
                "{}: frozen {} got a gradient",
                strategy.name(),
                spec.key
            );
        }
        // One trainable tensor in the first block (linear probing has none: its head instead).
        let key = model
            .trainable()
            .iter()
            .map(|(k, _)| k.as_str())
            .find(|k| k.starts_with("encoder.layer.0.") || k.starts_with("compacter."))
            .unwrap_or("classifier.weight")
            .to_string();
        let (_, var) = model.trainable().iter().find(|(k, _)| *k == key).unwrap();
        let g = grads.get(var.as_tensor()).unwrap();
        check_fd(&model, var, g, x.as_tensor(), &y, &format!("{} {key}", strategy.name()));
    }
}

/// The backbone key set of `base`, written out from HF `ViTModel` (`modeling_vit.py`).
#[test]
fn base_key_set_is_the_hf_layout() {
    let mut want = BTreeSet::new();
    for k in [
        "embeddings.cls_token",
        "embeddings.position_embeddings",
        "embeddings.patch_embeddings.projection.weight",
        "embeddings.patch_embeddings.projection.bias",
        "layernorm.weight",
        "layernorm.bias",
    ] {
        want.insert(k.to_string());
    }
    for i in 0..12 {
        for m in [
            "attention.attention.query",
            "attention.attention.key",
            "attention.attention.value",
            "attention.output.dense",
            "intermediate.dense",
            "output.dense",
            "layernorm_before",
            "layernorm_after",
        ] {
            for p in ["weight", "bias"] {
                want.insert(format!("encoder.layer.{i}.{m}.{p}"));
            }
        }
    }
    let spec = model_spec(&VitConfig::base(), &PeftConfig::default(), Strategy::Full, 1000).unwrap();
    let got: BTreeSet<String> = spec
        .iter()
        .filter(|s| s.role == Role::Backbone)
        .map(|s| s.key.clone())
        .collect();
    assert_eq!(got, want);
    let pos = spec.iter().find(|s| s.key == "embeddings.position_embeddings").unwrap();
    assert_eq!(pos.shape, vec![1, 197, 768]);
    let patch = spec
        .iter()
        .find(|s| s.key == "embeddings.patch_embeddings.projection.weight")
        .unwrap();
    assert_eq!(patch.shape, vec![768, 3, 16, 16]);
}

/// An empty scratch folder (see [`common::scratch`]), created: keep the guard bound while the
/// folder is in use.
fn scratch(name: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let (tmp, d) = common::scratch("engine", name);
    std::fs::create_dir_all(&d).unwrap();
    (tmp, d)
}

use common::max_abs_diff;

#[test]
fn checkpoint_round_trip_prefix_and_errors() {
    let (_dir_tmp, dir) = scratch("ckpt");
    let cfg = VitConfig::tiny();
    // LoRA, 5 classes, f64 on the CPU, seed `seed`.
    let lora = |classes: usize, seed: u64| VitSpec::new(&cfg, Strategy::Lora, classes, DType::F64, &Device::Cpu, seed);
    let model = tiny_model(Strategy::Lora, 11);
    perturb(&model, 0.05, 1);
    let path = dir.join("m.safetensors");
    model.save(&path).unwrap();
    let x = images(3, 5);
    let back = Vit::load(&path, &lora(5, 99)).unwrap();
    assert_eq!(
        max_abs_diff(&model.forward(&x).unwrap(), &back.forward(&x).unwrap()),
        0.0
    );

    // The same file with HF's `vit.` prefix on the backbone (ViTForImageClassification) loads too.
    let raw = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
    let prefixed: HashMap<String, Tensor> = raw
        .iter()
        .map(|(k, v)| {
            (
                if k.starts_with("classifier.") {
                    k.clone()
                } else {
                    format!("vit.{k}")
                },
                v.clone(),
            )
        })
        .collect();
    let m2 = Vit::from_tensors(&lora(5, 0), prefixed, true).unwrap();
    assert_eq!(max_abs_diff(&model.forward(&x).unwrap(), &m2.forward(&x).unwrap()), 0.0);

    // Missing key: named.
    let mut missing = raw.clone();
    missing.remove("encoder.layer.2.attention.attention.key.weight");
    let e = Vit::from_tensors(&lora(5, 0), missing, true).err().unwrap().to_string();
    assert!(
        e.contains("encoder.layer.2.attention.attention.key.weight") && e.contains("missing"),
        "{e}"
    );

    // Mis-shaped tensor: key and both shapes named.
    let mut bad = raw.clone();
    bad.insert(
        "layernorm.weight".into(),
        Tensor::zeros(63, DType::F64, &Device::Cpu).unwrap(),
    );
    let e = Vit::from_tensors(&lora(5, 0), bad, true).err().unwrap().to_string();
    assert!(
        e.contains("layernorm.weight") && e.contains("[64]") && e.contains("[63]"),
        "{e}"
    );

    // A head with another class count is re-initialised, the backbone kept.
    let other = Vit::load(&path, &lora(7, 0)).unwrap();
    assert_eq!(other.forward(&x).unwrap().dims(), &[3, 7]);

    // Truncated file: an error naming the file.
    let bytes = std::fs::read(&path).unwrap();
    let cut = dir.join("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let e = Vit::load(&cut, &lora(5, 0)).err().unwrap().to_string();
    assert!(e.contains("cut.safetensors"), "{e}");
}

#[test]
fn merge_keeps_logits_for_lora_and_ia3() {
    let x = images(4, 2);
    for s in [Strategy::Lora, Strategy::Ia3] {
        let model = tiny_model(s, 21);
        perturb(&model, 0.1, 3);
        let merged = model.merge().unwrap();
        assert!(
            merged.specs().iter().all(|p| p.role != Role::Peft),
            "merged model keeps no extra tensors"
        );
        let d = max_abs_diff(&model.forward(&x).unwrap(), &merged.forward(&x).unwrap());
        // f64 rounding of a re-associated sum over ≤ 256 terms: far below 1e-10.
        assert!(d < 1e-10, "{}: merged logits differ by {d}", s.name());
        // And the update really changed the function (the test would catch a no-op merge).
        let base = tiny_model(Strategy::LinearProbe, 21);
        assert!(max_abs_diff(&base.forward(&x).unwrap(), &merged.forward(&x).unwrap()) > 1e-3);
    }
}

/// LoRA (B = 0) and (IA)³ (ℓ = 1) start exactly at the pretrained function.
#[test]
fn identity_initialisation() {
    let x = images(2, 9);
    let reference = tiny_model(Strategy::LinearProbe, 5).forward(&x).unwrap();
    for s in [Strategy::Lora, Strategy::Ia3, Strategy::Full, Strategy::Bitfit] {
        let out = tiny_model(s, 5).forward(&x).unwrap();
        assert_eq!(max_abs_diff(&reference, &out), 0.0, "{}", s.name());
    }
    // Adapters start near it (up-projection ~ N(0, 1e-4²)).
    for s in [Strategy::Adapter, Strategy::Compacter] {
        let d = max_abs_diff(&reference, &tiny_model(s, 5).forward(&x).unwrap());
        assert!(d > 0.0 && d < 1e-2, "{}: {d}", s.name());
    }
}

/// Weight-space interpolation (WiSE-FT; issue 18): for every strategy θ(α) is the tuned model bit
/// for bit at α = 1 and the initial function bit for bit at α = 0 (LoRA too, whose A stays tuned
/// while B returns to 0), each trained tensor is the affine mix in between, and for LoRA and (IA)³
/// the path is the same function as interpolating the merged weights.
#[test]
fn weight_space_interpolation() {
    let x = images(3, 4);
    let cfg = VitConfig::tiny();
    for s in Strategy::ALL {
        let model = tiny_model(s, 8);
        let initial = model.trainable_snapshot().unwrap();
        let before = model.forward(&x).unwrap();
        perturb(&model, 0.1, 9);
        let after = model.forward(&x).unwrap();
        assert!(
            max_abs_diff(&before, &after) > 1e-3,
            "{}: the update changed nothing",
            s.name()
        );
        let start = model.interpolation_start(&initial).unwrap();
        let at = |a: f64| model.interpolated(&start, a).unwrap();
        assert_eq!(
            max_abs_diff(&after, &at(1.0).forward(&x).unwrap()),
            0.0,
            "{} α = 1",
            s.name()
        );
        assert_eq!(
            max_abs_diff(&before, &at(0.0).forward(&x).unwrap()),
            0.0,
            "{} α = 0",
            s.name()
        );
        let mid = at(0.25);
        assert!(mid.trainable().is_empty(), "the interpolated model is frozen");
        for (k, v) in model.trainable() {
            let want = (start[k].affine(0.75, 0.0).unwrap() + v.as_tensor().affine(0.25, 0.0).unwrap()).unwrap();
            assert!(max_abs_diff(&want, mid.tensor(k).unwrap()) < 1e-15, "{} {k}", s.name());
            let from_initial = max_abs_diff(&start[k], &initial[k]) == 0.0;
            assert_eq!(
                from_initial,
                !(s == Strategy::Lora && k.ends_with(".lora_A")),
                "{} {k}",
                s.name()
            );
        }
        assert!(max_abs_diff(&mid.forward(&x).unwrap(), &after) > 1e-6, "{}", s.name());
        assert!(model.interpolated(&start, 1.5).is_err() && model.interpolated(&start, -0.1).is_err());
    }
    for s in [Strategy::Lora, Strategy::Ia3] {
        let model = tiny_model(s, 8);
        let initial = model.trainable_snapshot().unwrap();
        let merged0 = model.merge().unwrap();
        perturb(&model, 0.1, 9);
        let merged1 = model.merge().unwrap();
        let start = model.interpolation_start(&initial).unwrap();
        for a in [0.3, 0.7] {
            let mixed: HashMap<String, Tensor> = merged1
                .specs()
                .iter()
                .map(|p| {
                    let w0 = merged0.tensor(&p.key).unwrap().affine(1.0 - a, 0.0).unwrap();
                    let w1 = merged1.tensor(&p.key).unwrap().affine(a, 0.0).unwrap();
                    (p.key.clone(), (w0 + w1).unwrap())
                })
                .collect();
            let spec = VitSpec::new(&cfg, Strategy::LinearProbe, 5, DType::F64, &Device::Cpu, 0);
            let merged_path = Vit::from_tensors(&spec, mixed, true).unwrap();
            let path = model.interpolated(&start, a).unwrap();
            let d = max_abs_diff(&path.forward(&x).unwrap(), &merged_path.forward(&x).unwrap());
            assert!(
                d < 1e-10,
                "{} α = {a}: merged and unmerged paths differ by {d}",
                s.name()
            );
            // …and the merge of the interpolated model is that same model.
            let d = max_abs_diff(
                &path.merge().unwrap().forward(&x).unwrap(),
                &merged_path.forward(&x).unwrap(),
            );
            assert!(d < 1e-10, "{} α = {a}: {d}", s.name());
        }
    }
}
