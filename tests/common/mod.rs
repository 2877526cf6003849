//! Helpers shared by the integration tests.

use candle_core::Tensor;

/// The allocator the binaries use (the library leaves it to its users; see `src/lib.rs`), so
/// in-process training in the tests runs as it does in the binaries.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// max |a − b| over all elements, as f64 (any float dtype); see `engine::ops::max_abs_diff`.
#[allow(dead_code)] // not every test crate that includes this module compares tensors
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    robustft::engine::ops::max_abs_diff(a, b).unwrap()
}

/// `validate run --quiet --config CFG --out OUT`, ready to run.
#[allow(dead_code)] // not every test crate that includes this module runs the binary
pub fn validate_command(cfg: &std::path::Path, out: &std::path::Path) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_validate"));
    c.args([
        "run",
        "--quiet",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    c
}

/// [`validate_command`] run to completion, its output captured.
#[allow(dead_code)]
pub fn validate_run(cfg: &std::path::Path, out: &std::path::Path) -> std::process::Output {
    validate_command(cfg, out).output().unwrap()
}

/// The lines of a run's records with the fields that differ between two runs of the same
/// configuration removed: wall-clock times (`elapsed_s`, `train_s`, `eval_s`, `attack_s`,
/// the upstream's pretraining `seconds`) and the commits the binary was built from and run in.
#[allow(dead_code)]
pub fn records_timing_aside(path: &std::path::Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            let o = v.as_object_mut().unwrap();
            for k in ["elapsed_s", "train_s", "eval_s", "attack_s", "git_commit", "cwd_commit"] {
                o.remove(k);
            }
            if let Some(u) = o.get_mut("upstream").and_then(|u| u.as_object_mut()) {
                u.remove("seconds");
            }
            v
        })
        .collect()
}

/// Asserts that the run folders `a` and `b` hold the same records (every `*/*/seed*.jsonl`,
/// timing aside, at least one) and byte-identical `report/` folders (same file names).
#[allow(dead_code)]
pub fn assert_same_sweep(a: &std::path::Path, b: &std::path::Path) {
    let mut n = 0;
    for ds in std::fs::read_dir(a)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
    {
        for st in std::fs::read_dir(&ds)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_dir())
        {
            for f in std::fs::read_dir(&st).unwrap().map(|e| e.unwrap().path()) {
                if f.extension().is_some_and(|e| e == "jsonl") {
                    let rel = f.strip_prefix(a).unwrap();
                    assert_eq!(
                        records_timing_aside(&f),
                        records_timing_aside(&b.join(rel)),
                        "records differ: {}",
                        rel.display()
                    );
                    n += 1;
                }
            }
        }
    }
    assert!(n > 0, "no records in {}", a.display());
    let names = |d: &std::path::Path| {
        let mut v: Vec<_> = std::fs::read_dir(d.join("report"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(a), names(b), "report files differ");
    for f in names(a) {
        assert!(
            std::fs::read(a.join("report").join(&f)).unwrap() == std::fs::read(b.join("report").join(&f)).unwrap(),
            "report/{} differs",
            f.to_string_lossy()
        );
    }
}

/// A micro ViT (16 px, patch 4, dim 32, depth 2, 2 heads, MLP 64): fast enough to train or attack
/// in a unit test.
#[allow(dead_code)]
pub fn micro() -> robustft::engine::VitConfig {
    robustft::engine::VitConfig {
        image_size: 16,
        patch_size: 4,
        channels: 3,
        dim: 32,
        depth: 2,
        heads: 2,
        mlp_dim: 64,
        ..robustft::engine::VitConfig::tiny()
    }
}

/// `validate ARGS…` run to completion, its output captured.
#[allow(dead_code)]
pub fn validate(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_validate"))
        .args(args)
        .output()
        .unwrap()
}

/// A scratch folder path `<tmp>/robustft-<prefix>-<name>-XXXXXX/<name>`, not yet created, and
/// the guard of its parent: dropping the guard removes both, however the test ends. Keep the
/// guard bound for the test's duration (`let (_tmp, out) = …`, never `let (_, out)`).
#[allow(dead_code)]
pub fn scratch(prefix: &str, name: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::Builder::new()
        .prefix(&format!("robustft-{prefix}-{name}-"))
        .tempdir()
        .unwrap();
    let path = tmp.path().join(name);
    (tmp, path)
}
