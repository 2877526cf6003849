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
