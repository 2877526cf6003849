//! HF ViT model folders load as `transformers` computes them (issue 19): the committed fixture
//! (tests/fixtures/hf, produced once by validation/peer/make_hf_fixture.py with transformers
//! 5.24) gives HF's own logits — to 1e-5 in f32 and 1e-9 in f64 — for mean/std 0.5 and ImageNet
//! mean/std, erf and tanh GELU, qkv_bias true and false, the original and transformers 5's key
//! names; folders edited here check each refusal and the rescale arithmetic.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use robustft::engine::hf::read_folder;
use robustft::engine::peft::Strategy;
use robustft::engine::{Activation, Vit, VitSpec};

mod common;

fn fixture(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/hf")
        .join(case)
}

/// (pixels, logits f32, logits f64) of a fixture case.
fn io(dir: &Path) -> (Tensor, Tensor, Tensor) {
    let mut t = candle_core::safetensors::load(dir.join("io.safetensors"), &Device::Cpu).unwrap();
    (
        t.remove("pixels").unwrap(),
        t.remove("logits").unwrap(),
        t.remove("logits_f64").unwrap(),
    )
}

/// The folder's model (strategy `s`) on its fixture images, in `dtype`.
fn logits(dir: &Path, s: Strategy, dtype: DType) -> Tensor {
    let f = read_folder(dir).unwrap();
    let spec = VitSpec::new(&f.config, s, f.labels.as_ref().unwrap().len(), dtype, &Device::Cpu, 0);
    let m = Vit::load(dir, &spec).unwrap();
    // The fixture's pixels are u8 / 255 stored in f32: exact again in f64 as round(255 x) / 255.
    let x = io(dir).0.to_dtype(dtype).unwrap();
    let x = if dtype == DType::F64 {
        ((x * 255.0).unwrap().round().unwrap() / 255.0).unwrap()
    } else {
        x
    };
    m.forward(&x).unwrap()
}

#[test]
fn fixture_folders_give_hfs_logits() {
    for (case, act, qkv_bias, mean) in [
        ("erf-half", Activation::GeluErf, true, vec![0.5; 3]),
        ("tanh-imagenet", Activation::GeluTanh, true, vec![0.485, 0.456, 0.406]),
        ("gelunew-nobias-newkeys", Activation::GeluTanh, false, vec![0.5; 3]),
    ] {
        let dir = fixture(case);
        let f = read_folder(&dir).unwrap();
        let c = &f.config;
        assert_eq!(
            (c.image_size, c.patch_size, c.dim, c.depth, c.heads, c.mlp_dim),
            (16, 4, 32, 2, 4, 64),
            "{case}"
        );
        assert_eq!(c.layer_norm_eps, 1e-6, "{case}");
        assert_eq!((c.hidden_act, c.qkv_bias), (act, qkv_bias), "{case}");
        assert_eq!(c.normalisation().0, mean, "{case}");
        assert_eq!(f.labels.as_deref().unwrap(), ["a", "b", "c", "d", "e"]);
        let (_, want32, want64) = io(&dir);
        // Full fine-tuning and LoRA (B = 0 at the start) compute the checkpoint's function.
        for s in [Strategy::Full, Strategy::Lora] {
            let d = common::max_abs_diff(&logits(&dir, s, DType::F32), &want32);
            assert!(d <= 1e-5, "{case} {s:?} f32: max |Δlogit| = {d:e}");
            eprintln!("{case} {s:?} f32: max |Δlogit| = {d:.2e}");
        }
        let d = common::max_abs_diff(&logits(&dir, Strategy::Full, DType::F64), &want64);
        // 1e-9 also catches a wrong layer_norm_eps (1e-12 instead of 1e-6 moves them ≥ 1.7e-6).
        assert!(d <= 1e-9, "{case} f64: max |Δlogit| = {d:e}");
        eprintln!("{case} f64: max |Δlogit| = {d:.2e}");
    }
    // With qkv_bias = false the model has no q/k/v bias parameters (as HF's): 3 × 2 layers × 32 fewer.
    let count = |case: &str| {
        let f = read_folder(&fixture(case)).unwrap();
        robustft::engine::peft::counts(
            &robustft::engine::peft::model_spec(
                &f.config,
                &robustft::engine::peft::PeftConfig::default_for(&f.config),
                Strategy::Full,
                5,
            )
            .unwrap(),
        )
        .total
    };
    assert_eq!(count("erf-half") - count("gelunew-nobias-newkeys"), 3 * 2 * 32);
}

/// A copy of the `erf-half` fixture folder, edited by `edit(config, processor)`, and the guard
/// that removes it when dropped (see [`common::scratch`]).
fn edited(
    name: &str,
    edit: impl FnOnce(&mut serde_json::Value, &mut serde_json::Value),
) -> (tempfile::TempDir, PathBuf) {
    let src = fixture("erf-half");
    let (tmp, dir) = common::scratch("hf", name);
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["model.safetensors", "io.safetensors"] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    let read =
        |f: &str| serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(src.join(f)).unwrap()).unwrap();
    let (mut c, mut p) = (read("config.json"), read("preprocessor_config.json"));
    edit(&mut c, &mut p);
    std::fs::write(dir.join("config.json"), c.to_string()).unwrap();
    std::fs::write(dir.join("preprocessor_config.json"), p.to_string()).unwrap();
    (tmp, dir)
}

#[test]
fn processor_arithmetic_is_folded_exactly() {
    let (_, want, _) = io(&fixture("erf-half"));
    // (raw/127.5 − 1)/1 is (raw/255 − 0.5)/0.5: the same function as the fixture's.
    let (_dir_tmp, dir) = edited("rescale", |_, p| {
        p["rescale_factor"] = serde_json::json!(1.0 / 127.5);
        p["image_mean"] = serde_json::json!([1.0, 1.0, 1.0]);
        p["image_std"] = serde_json::json!([1.0, 1.0, 1.0]);
    });
    let d = common::max_abs_diff(&logits(&dir, Strategy::Full, DType::F32), &want);
    assert!(d <= 1e-5, "rescale folded: {d:e}");
    // Without normalisation the function differs (the check above can fail).
    let (_raw_tmp, raw) = edited("raw", |_, p| p["do_normalize"] = serde_json::json!(false));
    assert_eq!(
        read_folder(&raw).unwrap().config.normalisation(),
        (vec![0.0; 3], vec![1.0; 3])
    );
    assert!(common::max_abs_diff(&logits(&raw, Strategy::Full, DType::F32), &want) > 1e-2);
    // Keys HF defaults when absent take HF's defaults (layer_norm_eps 1e-12: the logits move).
    let (_eps_tmp, eps) = edited("eps", |c, _| {
        c.as_object_mut().unwrap().remove("layer_norm_eps");
    });
    assert_eq!(read_folder(&eps).unwrap().config.layer_norm_eps, 1e-12);
}

/// An edit of a fixture folder's `config.json` and `preprocessor_config.json`.
type Edit = Box<dyn FnOnce(&mut serde_json::Value, &mut serde_json::Value)>;

/// Edits the engine cannot honour: (folder name, edit, the file and the key the error names).
fn refused_edits() -> Vec<(&'static str, Edit, &'static str, &'static str)> {
    vec![
        (
            "act",
            Box::new(|c, _| c["hidden_act"] = "mish".into()),
            "config.json",
            "hidden_act",
        ),
        (
            "type",
            Box::new(|c, _| c["model_type"] = "deit".into()),
            "config.json",
            "model_type",
        ),
        (
            "bias",
            Box::new(|c, _| c["qkv_bias"] = "yes".into()),
            "config.json",
            "qkv_bias",
        ),
        (
            "hidden",
            Box::new(|c, _| c["hidden_size"] = (-3).into()),
            "config.json",
            "hidden_size",
        ),
        (
            "heads",
            Box::new(|c, _| c["num_attention_heads"] = 5.into()),
            "config.json",
            "heads",
        ),
        (
            "rect",
            Box::new(|c, _| c["image_size"] = serde_json::json!([16, 32])),
            "config.json",
            "image_size",
        ),
        (
            "size",
            Box::new(|_, p| p["size"] = serde_json::json!({"height": 32, "width": 32})),
            "preprocessor_config.json",
            "size",
        ),
        (
            "mean",
            Box::new(|_, p| p["image_mean"] = serde_json::json!([0.5, 0.5])),
            "preprocessor_config.json",
            "image_mean",
        ),
        (
            "std",
            Box::new(|_, p| p["image_std"] = serde_json::json!([0.5, 0.0, 0.5])),
            "preprocessor_config.json",
            "image_std",
        ),
    ]
}

#[test]
fn folders_the_engine_cannot_honour_are_refused_naming_file_and_key() {
    for (name, edit, file, key) in refused_edits() {
        let (_dir_tmp, dir) = edited(name, edit);
        let e = read_folder(&dir).unwrap_err().to_string();
        assert!(e.contains(file) && e.contains(key), "{name}: {e}");
    }
    // Missing files.
    let (_files_tmp, dir) = edited("files", |_, _| {});
    std::fs::remove_file(dir.join("preprocessor_config.json")).unwrap();
    let e = read_folder(&dir).unwrap_err().to_string();
    assert!(e.contains("preprocessor_config.json") && e.contains("missing"), "{e}");
    let (_weights_tmp, dir) = edited("weights", |_, _| {});
    std::fs::rename(dir.join("model.safetensors"), dir.join("pytorch_model.bin")).unwrap();
    let e = read_folder(&dir).unwrap_err().to_string();
    assert!(
        e.contains("model.safetensors") && e.contains("pytorch_model.bin"),
        "{e}"
    );
    let e = Vit::load(
        &dir,
        &VitSpec::new(
            &robustft::engine::VitConfig::tiny(),
            Strategy::Full,
            5,
            DType::F32,
            &Device::Cpu,
            0,
        ),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("pytorch_model.bin"), "{e}");
}

/// A run config fine-tunes an HF folder (`checkpoint` and `model` both naming it); a `model`
/// that is not the folder's is refused before anything is written.
#[test]
fn run_config_fine_tunes_an_hf_folder() {
    let (_dir_tmp, dir) = common::scratch("hf", "run");
    std::fs::create_dir_all(&dir).unwrap();
    let folder = fixture("tanh-imagenet");
    let cfg_head = |model: &str, head: &str| {
        format!(
            "name = \"hf-folder\"\nmodel = {model:?}\ncheckpoint = {:?}\nstrategies = [\"lora\", \"bitfit\"]\n\
             seeds = [0]\nmax_steps = 6\nschedule = [0, 3, 6]\neval_subset = 32\nbatch_size = 16\n\
             {head}\noptimizer = \"paper\"\n[pretrain]\nsteps = 1\nbatch_size = 16\nlr = 1e-3\n\
             [attack]\nkind = \"pgd\"\neps = [\"1/255\"]\nsteps = 3\n[[datasets]]\nname = \"simple\"\n\
             kind = \"synthetic\"\ntask = \"synthetic-simple\"\ntrain_images = 128\n",
            folder.display().to_string()
        )
    };
    let cfg = |model: &str| cfg_head(model, "head = \"new\"");
    let good = dir.join("good.toml");
    std::fs::write(&good, cfg(&folder.display().to_string())).unwrap();
    let o = common::validate_run(&good, &dir.join("out"));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for s in ["lora", "bitfit"] {
        let r = robustft::validate::sweep::records::read(&dir.join("out/simple").join(s).join("seed0.jsonl")).unwrap();
        assert_eq!(r.evals.iter().map(|e| e.step).collect::<Vec<_>>(), [0, 3, 6]);
    }
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, cfg("tiny")).unwrap();
    let o = common::validate_run(&bad, &dir.join("out2"));
    assert_eq!(o.status.code(), Some(2));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("`model`") && e.contains("tanh-imagenet"), "{e}");
    assert!(!dir.join("out2").exists());

    // The head: the folder's has 5 classes, the task 10. `reuse` is refused naming the
    // checkpoint; unset, a new head is said and recorded (it was recorded as reused before).
    let f = folder.display().to_string();
    let reuse = dir.join("reuse.toml");
    std::fs::write(&reuse, cfg_head(&f, "head = \"reuse\"")).unwrap();
    let o = common::validate_run(&reuse, &dir.join("out3"));
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(
        e.contains("head = \"reuse\"") && e.contains("10") && e.contains("tanh-imagenet"),
        "{e}"
    );
    let unset = dir.join("unset.toml");
    std::fs::write(&unset, cfg_head(&f, "")).unwrap();
    let o = common::validate_run(&unset, &dir.join("out4"));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{e}");
    assert!(
        e.contains(
            "head: simple starts from a new head (head unset: the checkpoint has no head for the task's classes)"
        ),
        "{e}"
    );
    let r = robustft::validate::sweep::records::read(&dir.join("out4/simple/lora/seed0.jsonl")).unwrap();
    assert_eq!(r.header.new_head, Some(true));
}

/// A one-channel folder loads (the engine computes it) but a run config naming it is refused
/// before anything is written: runs feed RGB images.
#[test]
fn one_channel_folders_are_refused_for_runs() {
    let (_dir_tmp, dir) = edited("grey", |c, p| {
        c["num_channels"] = serde_json::json!(1);
        p["image_mean"] = serde_json::json!([0.5]);
        p["image_std"] = serde_json::json!([0.5]);
    });
    assert_eq!(read_folder(&dir).unwrap().config.channels, 1);
    let toml = dir.join("run.toml");
    std::fs::write(
        &toml,
        format!(
            "name = \"grey\"\nmodel = {:?}\nstrategies = [\"lora\"]\nseeds = [0]\nmax_steps = 2\n\
             schedule = [2]\neval_subset = 8\nbatch_size = 8\noptimizer = \"paper\"\n[pretrain]\nsteps = 1\n\
             batch_size = 8\nlr = 1e-3\n[attack]\nkind = \"pgd\"\neps = [\"1/255\"]\nsteps = 2\n[[datasets]]\nname = \"f\"\nkind = \"synthetic\"\n\
             task = \"synthetic-simple\"\ntrain_images = 16\n",
            dir.display().to_string()
        ),
    )
    .unwrap();
    let o = common::validate_run(&toml, &dir.join("out"));
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(
        e.contains("`model`") && e.contains("num_channels") && e.contains("1 channel"),
        "{e}"
    );
    assert!(!dir.join("out").exists());
}

/// `head = "reuse"` with a checkpoint whose head fits starts from that head, says so and records
/// it; the step-0 evaluation is the checkpoint's own accuracy on those images.
#[test]
fn reused_head_is_the_checkpoints() {
    let (_dir_tmp, dir) = common::scratch("hf", "reuse");
    std::fs::create_dir_all(&dir).unwrap();
    let ckpt = dir.join("simple.safetensors");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_validate"))
        .args([
            "pretrain",
            "--model",
            "tiny",
            "--task",
            "synthetic-simple",
            "--steps",
            "120",
            "--batch-size",
            "32",
        ])
        .arg("--out")
        .arg(&ckpt)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let cfg = format!(
        "name = \"reuse\"\nmodel = \"tiny\"\ncheckpoint = {:?}\nstrategies = [\"linear_probe\"]\nseeds = [0]\n\
         max_steps = 2\nschedule = [0, 2]\neval_subset = 64\nbatch_size = 16\nhead = \"reuse\"\n\
         optimizer = \"paper\"\n[pretrain]\nsteps = 1\nbatch_size = 16\nlr = 1e-3\n[attack]\nkind = \"pgd\"\n\
         eps = [\"1/255\"]\nsteps = 2\n[[datasets]]\nname = \"simple\"\nkind = \"synthetic\"\n\
         task = \"synthetic-simple\"\ntrain_images = 128\n",
        ckpt.display().to_string()
    );
    let toml = dir.join("run.toml");
    std::fs::write(&toml, cfg).unwrap();
    let o = common::validate_run(&toml, &dir.join("out"));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{e}");
    assert!(
        e.contains("head: simple starts from the checkpoint's head (head = \"reuse\")"),
        "{e}"
    );
    let r = robustft::validate::sweep::records::read(&dir.join("out/simple/linear_probe/seed0.jsonl")).unwrap();
    assert_eq!(r.header.new_head, Some(false));
    // The pretrained head (held-out accuracy 0.89 after 120 steps) classifies the simple task at
    // step 0, before any update; a fresh head would sit near chance (0.1, 10 classes).
    assert!(r.evals[0].clean_acc > 0.6, "step-0 accuracy {}", r.evals[0].clean_acc);
}

/// validation/configs/paper-vit-b.toml validates and plans against a folder laid out as its
/// comment says, with google/vit-base-patch16-224-in21k's own config.json and its (older,
/// feature-extractor style) preprocessor_config.json (copies in
/// validation/reference/vit-base-patch16-224-in21k/): ViT-B/16 exactly as the `base` preset,
/// 1 + 2 datasets × 3 seeds × 7 strategies cells.
#[test]
fn paper_config_plans_on_an_in21k_style_folder() {
    let (_root_tmp, root) = common::scratch("hf", "paper");
    let vit = root.join("data/vit-base-patch16-224-in21k");
    std::fs::create_dir_all(&vit).unwrap();
    let reference = Path::new(env!("CARGO_MANIFEST_DIR")).join("validation/reference/vit-base-patch16-224-in21k");
    for f in ["config.json", "preprocessor_config.json"] {
        std::fs::copy(reference.join(f), vit.join(f)).unwrap();
    }
    std::fs::write(vit.join("model.safetensors"), b"").unwrap();
    let cfg = robustft::engine::hf::read_folder(&vit).unwrap().config;
    let base = robustft::engine::VitConfig::base();
    assert_eq!(
        (
            cfg.image_size,
            cfg.patch_size,
            cfg.dim,
            cfg.depth,
            cfg.heads,
            cfg.mlp_dim,
            cfg.layer_norm_eps
        ),
        (
            base.image_size,
            base.patch_size,
            base.dim,
            base.depth,
            base.heads,
            base.mlp_dim,
            base.layer_norm_eps
        )
    );
    assert_eq!((cfg.hidden_act, cfg.qkv_bias), (Activation::GeluErf, true));
    assert_eq!(cfg.normalisation(), base.normalisation());
    let toml = Path::new(env!("CARGO_MANIFEST_DIR")).join("validation/configs/paper-vit-b.toml");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_validate"))
        .args(["plan", "--config", toml.to_str().unwrap(), "--out", "out"])
        .current_dir(&root)
        .output()
        .unwrap();
    let (s, e) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{e}");
    assert!(
        s.contains("plan of paper-vit-b: 43 cells (1 upstream, 42 fine-tuning), 1 complete"),
        "{s}"
    );
    assert!(s.contains("cifar100/ia3/seed2"), "{s}");
    // A configured checkpoint is a complete upstream cell for status too (no sidecar needed).
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_validate"))
        .args(["status", "out"])
        .current_dir(&root)
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(
        s.contains("upstream: done") && s.contains("cells: 1 done, 0 running, 0 stopped, 42 missing of 43"),
        "{s}"
    );
}

/// Folders written here from known weights (no Python): every activation × qkv_bias × mean/std ×
/// key layout. `read_folder` gives back the configuration, and the loaded model computes exactly
/// the logits of the model that was written.
#[test]
fn folders_written_from_rust_round_trip_every_option() {
    use rand::{Rng, SeedableRng};
    let (_root_tmp, root) = common::scratch("hf", "rust");
    let labels: Vec<String> = ["cat", "dog", "ship"].iter().map(|s| s.to_string()).collect();
    let x = io(&fixture("erf-half")).0;
    let mut n = 0;
    for act in [
        Activation::GeluErf,
        Activation::GeluTanh,
        Activation::QuickGelu,
        Activation::Relu,
        Activation::Silu,
    ] {
        for qkv_bias in [true, false] {
            for imagenet in [false, true] {
                for new_keys in [false, true] {
                    let cfg = robustft::engine::VitConfig {
                        image_size: 16,
                        patch_size: 4,
                        channels: 3,
                        dim: 32,
                        depth: 2,
                        heads: 4,
                        mlp_dim: 64,
                        layer_norm_eps: 1e-6,
                        hidden_act: act,
                        qkv_bias,
                        image_mean: if imagenet {
                            vec![0.485, 0.456, 0.406]
                        } else {
                            vec![0.5; 3]
                        },
                        image_std: if imagenet {
                            vec![0.229, 0.224, 0.225]
                        } else {
                            vec![0.5; 3]
                        },
                    };
                    let spec = VitSpec::new(&cfg, Strategy::Full, 3, DType::F32, &Device::Cpu, 7);
                    // Known weights: HF's init plus seeded noise, so every tensor (biases and
                    // norms included) matters.
                    let init = Vit::new(&spec).unwrap();
                    let mut rng = rand::rngs::StdRng::seed_from_u64(n);
                    let mut tensors = std::collections::HashMap::new();
                    for p in init.specs() {
                        let t = init.tensor(&p.key).unwrap();
                        let noise: Vec<f32> = (0..t.elem_count()).map(|_| rng.random_range(-0.2f32..0.2)).collect();
                        let noise = Tensor::from_vec(noise, t.dims(), &Device::Cpu).unwrap();
                        let key = if new_keys {
                            robustft::engine::hf::new_layout_key(&p.key)
                        } else {
                            p.key.clone()
                        };
                        tensors.insert(key, (t + noise).unwrap());
                    }
                    let dir = root.join(format!("case{n}"));
                    std::fs::create_dir_all(&dir).unwrap();
                    candle_core::safetensors::save(&tensors, dir.join("model.safetensors")).unwrap();
                    robustft::engine::hf::write_config(&dir, &cfg, &labels).unwrap();
                    let f = read_folder(&dir).unwrap();
                    assert_eq!(f.config, cfg, "case {n}");
                    assert_eq!(f.labels.as_deref(), Some(labels.as_slice()));
                    let written = Vit::from_tensors(&spec, tensors, true).unwrap().forward(&x).unwrap();
                    let loaded = Vit::load(&dir, &spec).unwrap().forward(&x).unwrap();
                    let d = common::max_abs_diff(&written, &loaded);
                    assert_eq!(
                        d, 0.0,
                        "case {n} ({act:?}, qkv_bias {qkv_bias}, imagenet {imagenet}, new keys {new_keys})"
                    );
                    n += 1;
                }
            }
        }
    }
    assert_eq!(n, 40);
}

/// CIFAR binary files with a class signal: each class a colour, plus noise (CIFAR-10:
/// `cifar-10-batches-bin/` with five train batches; CIFAR-100: `cifar-100-binary/`, coarse label
/// = fine / 5).
fn write_cifar(data: &Path, hundred: bool, train_per_file: usize, test: usize) {
    let classes = if hundred { 100 } else { 10 };
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut byte = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 56) as u8
    };
    let mut records = |n: usize| -> Vec<u8> {
        let mut out = Vec::new();
        for i in 0..n {
            let class = (i % classes) as u8;
            if hundred {
                out.push(class / 5);
            }
            out.push(class);
            for c in 0..3u8 {
                let level = class.wrapping_mul(37).wrapping_add(c * 85) / 2 + 32;
                for _ in 0..1024 {
                    out.push(level.saturating_add(byte() / 8));
                }
            }
        }
        out
    };
    let (dir, train, test_name) = if hundred {
        (data.join("cifar-100-binary"), vec!["train.bin".to_string()], "test.bin")
    } else {
        (
            data.join("cifar-10-batches-bin"),
            (1..=5).map(|i| format!("data_batch_{i}.bin")).collect(),
            "test_batch.bin",
        )
    };
    std::fs::create_dir_all(&dir).unwrap();
    for f in train {
        std::fs::write(dir.join(f), records(train_per_file)).unwrap();
    }
    std::fs::write(dir.join(test_name), records(test)).unwrap();
}

/// The CPU dry run of validation/configs/paper-vit-b.toml (issue 19): the file itself, with only
/// the sizes changed (steps, batch, images), on the layout its comment asks for — a tiny HF folder
/// (the erf-half fixture: erf GELU, q/k/v biases, mean = std = 0.5, like in21k) in place of ViT-B,
/// generated CIFAR-10 and CIFAR-100 binary files in place of the real ones. Every cell runs
/// (2 datasets × 3 seeds × 7 strategies), each evaluated at the paper schedule's steps with the
/// config's four radii, then report, verdict and compare.
#[test]
fn paper_config_runs_end_to_end_at_toy_size() {
    let (_root_tmp, root) = common::scratch("hf", "paper-run");
    let vit = root.join("data/vit-base-patch16-224-in21k");
    std::fs::create_dir_all(&vit).unwrap();
    for f in ["config.json", "preprocessor_config.json", "model.safetensors"] {
        std::fs::copy(fixture("erf-half").join(f), vit.join(f)).unwrap();
    }
    write_cifar(&root.join("data"), false, 20, 60);
    write_cifar(&root.join("data"), true, 200, 120);
    let toml = Path::new(env!("CARGO_MANIFEST_DIR")).join("validation/configs/paper-vit-b.toml");
    let mut text = std::fs::read_to_string(toml).unwrap();
    for (from, to, count) in [
        ("max_steps = 12000\n", "max_steps = 100\n", 1),
        ("batch_size = 128\n", "batch_size = 16\n", 1),
        ("eval_subset = 1000\n", "eval_subset = 24\n", 1),
        ("train_images = 10000\n", "train_images = 64\n", 2),
    ] {
        assert_eq!(text.matches(from).count(), count, "{from}");
        text = text.replace(from, to);
    }
    std::fs::write(root.join("paper-toy.toml"), &text).unwrap();
    let o = common::validate_command(Path::new("paper-toy.toml"), Path::new("out"))
        .current_dir(&root)
        .output()
        .unwrap();
    let (s, e) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{e}");
    assert!(!e.contains("warning"), "{e}");
    for ds in ["cifar10", "cifar100"] {
        for st in ["full", "linear_probe", "lora", "adapter", "compacter", "bitfit", "ia3"] {
            for seed in 0..3 {
                let path = root.join(format!("out/{ds}/{st}/seed{seed}.jsonl"));
                let r = robustft::validate::sweep::records::read(&path).unwrap();
                assert_eq!(r.header.new_head, Some(true));
                assert_eq!(r.evals.iter().map(|e| e.step).collect::<Vec<_>>(), [50, 100]);
                for ev in &r.evals {
                    assert_eq!(ev.n_eval, 24, "{}", path.display());
                    assert_eq!(ev.robust.len(), 4, "{}", path.display());
                }
            }
        }
    }
    assert!(s.contains("run paper-vit-b finished"), "{s}");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_validate"))
        .args(["compare", "out"])
        .current_dir(&root)
        .output()
        .unwrap();
    let (s, e) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{e}");
    assert!(
        s.contains("cifar10") && s.contains("cifar100") && s.contains("Spearman"),
        "{s}"
    );
}
