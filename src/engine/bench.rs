//! `validate bench`: per strategy, ms per AdamW train step, ms per clean eval batch, seconds for
//! PGD-15 on a batch, and peak memory — measured in one run on the same machine (no timed tests).

use std::time::Instant;

use candle_core::{DType, Device, Tensor};

use super::attack::{PgdConfig, StopRule, pgd, pgd_data_parallel};
use super::data::synthetic::SyntheticSpec;
use super::eval::forward_data_parallel;
use super::peft::Strategy;
use super::train::{AdamW, TrainConfig, train_step, train_step_data_parallel};
use super::{Vit, VitConfig, VitSpec};
use crate::error::Result;
use crate::tradeoff::stats::median;

/// One strategy's timings (JSON field names as the CPU-speed issue asks; times in ms/s as named).
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchRow {
    /// Model preset or file.
    pub model: String,
    /// Strategy id.
    pub strategy: String,
    /// Batch size.
    pub batch: usize,
    /// Element type (f32, bf16, …).
    pub dtype: String,
    /// Worker threads candle uses (rayon).
    pub threads: usize,
    /// Median seconds per AdamW step (forward + backward + update).
    pub train_step_s: f64,
    /// Median seconds per clean forward of one batch.
    pub eval_batch_s: f64,
    /// Median seconds per clean forward with the batch split over the machine's cores
    /// (`eval::forward_data_parallel`, what evaluation uses on the CPU).
    pub eval_batch_split_s: f64,
    /// Median seconds per data-parallel AdamW step (batch split over the machine's cores,
    /// `train_step_data_parallel`).
    pub train_step_data_parallel_s: f64,
    /// Seconds for PGD-15 on one batch, last-iterate (every point takes all 15 steps).
    pub pgd15_s: f64,
    /// Seconds for PGD-15 (last-iterate) with the batch split over the machine's cores.
    pub pgd15_split_s: f64,
    /// Seconds for PGD-15 with the early-exit rule (only clean-correct points, stop on success).
    pub pgd15_early_exit_s: f64,
    /// Peak resident memory of the process so far, MiB (VmHWM).
    pub peak_rss_mb: f64,
}

/// Peak resident set size of this process in MiB (Linux `VmHWM`), 0 where unavailable.
pub fn peak_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(|l| l.to_string()))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<f64>().ok()))
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Median seconds of `reps` timed calls of `f`.
fn median_secs(reps: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    let mut t = Vec::new();
    for _ in 0..reps {
        let st = Instant::now();
        f()?;
        t.push(st.elapsed().as_secs_f64());
    }
    Ok(median(&t))
}

/// Seconds of one call of `f`.
fn secs(f: impl FnOnce() -> Result<()>) -> Result<f64> {
    let st = Instant::now();
    f()?;
    Ok(st.elapsed().as_secs_f64())
}

/// The shared inputs of every strategy's timings: model, batch, repetitions and device.
struct Bench<'a> {
    /// Model preset or file.
    model_name: &'a str,
    /// The model's configuration.
    cfg: &'a VitConfig,
    /// Batch size.
    batch: usize,
    /// Timed repetitions (median).
    reps: usize,
    /// Element type of the model and the images.
    dtype: DType,
    /// Device.
    device: &'a Device,
}

impl Bench<'_> {
    /// One strategy's row: train steps, clean forwards and PGD-15 on the batch (`x`, `y`).
    fn strategy(&self, s: Strategy, x: &Tensor, y: &Tensor) -> Result<BenchRow> {
        let (reps, dtype) = (self.reps, self.dtype);
        let model = Vit::new(&VitSpec::new(self.cfg, s, 10, dtype, self.device, 0))?;
        let mut opt = AdamW::new(model.trainable().to_vec(), TrainConfig::paper(s, 1000))?;
        train_step(&model, &mut opt, x, y)?; // warm-up
        let train_step_s = median_secs(reps, || train_step(&model, &mut opt, x, y).map(drop))?;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let train_step_data_parallel_s = median_secs(reps, || {
            train_step_data_parallel(&model, &mut opt, x, y, cores).map(drop)
        })?;
        let eval_batch_s = median_secs(reps, || {
            let _ = model.forward(x)?.to_dtype(DType::F32)?.to_vec2::<f32>()?;
            Ok(())
        })?;
        let eval_batch_split_s = median_secs(reps, || {
            let _ = forward_data_parallel(&model, x, cores)?
                .to_dtype(DType::F32)?
                .to_vec2::<f32>()?;
            Ok(())
        })?;
        // Attacks run on the frozen view, as evaluation does (input gradients only).
        let frozen = model.frozen();
        let cfg_pgd = PgdConfig {
            stop: StopRule::LastIterate,
            ..PgdConfig::default()
        };
        let pgd15_s = secs(|| {
            pgd(&frozen, x, y, &cfg_pgd, 0)?;
            Ok(())
        })?;
        let pgd15_split_s = secs(|| {
            pgd_data_parallel(&frozen, x, y, &cfg_pgd, 0, cores)?;
            Ok(())
        })?;
        let pgd15_early_exit_s = secs(|| {
            pgd(&frozen, x, y, &PgdConfig::default(), 0)?;
            Ok(())
        })?;
        Ok(BenchRow {
            model: self.model_name.into(),
            strategy: s.id().into(),
            batch: self.batch,
            dtype: format!("{dtype:?}").to_lowercase(),
            threads: candle_core::utils::get_num_threads(),
            train_step_s,
            eval_batch_s,
            eval_batch_split_s,
            train_step_data_parallel_s,
            pgd15_s,
            pgd15_split_s,
            pgd15_early_exit_s,
            peak_rss_mb: peak_mib(),
        })
    }
}

/// Benchmarks `strategies` on `cfg` with batch `batch`, `reps` timed repetitions (median).
pub fn run(
    model_name: &str,
    cfg: &VitConfig,
    strategies: &[Strategy],
    batch: usize,
    reps: usize,
    dtype: DType,
    device: &Device,
) -> Result<Vec<BenchRow>> {
    let data = SyntheticSpec::simple(cfg.image_size).generate(batch, 0)?;
    let ids: Vec<usize> = (0..batch).collect();
    let (x, y) = data.batch(&ids, device)?;
    let x = x.to_dtype(dtype)?;
    let bench = Bench {
        model_name,
        cfg,
        batch,
        reps,
        dtype,
        device,
    };
    strategies.iter().map(|&s| bench.strategy(s, &x, &y)).collect()
}

/// The table `validate bench` prints.
pub fn render(rows: &[BenchRow]) -> String {
    let mut s = format!(
        "{:<14} {:>14} {:>14} {:>14} {:>10} {:>10} {:>10} {:>12} {:>9}\n",
        "strategy",
        "train ms/step",
        "split ms/step",
        "eval ms/batch",
        "split ms",
        "PGD-15 s",
        "split s",
        "PGD early s",
        "peak MiB"
    );
    for r in rows {
        s.push_str(&format!(
            "{:<14} {:>14.1} {:>14.1} {:>14.1} {:>10.1} {:>10.2} {:>10.2} {:>12.2} {:>9.0}\n",
            r.strategy,
            r.train_step_s * 1e3,
            r.train_step_data_parallel_s * 1e3,
            r.eval_batch_s * 1e3,
            r.eval_batch_split_s * 1e3,
            r.pgd15_s,
            r.pgd15_split_s,
            r.pgd15_early_exit_s,
            r.peak_rss_mb
        ));
    }
    s
}

/// Timings of the PyTorch peer (`validation/peer/vit_bench.py`, or `validation/gpu/peer_bench.py`), full fine-tuning.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
pub struct PeerTimings {
    /// PyTorch version.
    pub torch: String,
    /// Threads it used.
    pub threads: usize,
    /// Median ms per AdamW step.
    pub train_step_ms: f64,
    /// Median ms per clean forward.
    pub eval_batch_ms: f64,
    /// Seconds for PGD-15.
    pub pgd15_s: f64,
}

/// Runs the peer script with `python3` and parses its JSON line. For the CPU peer
/// (`vit_bench.py`) the model's dim, depth and MLP size are passed along.
pub fn run_peer(script: &std::path::Path, cfg: &VitConfig, batch: usize, reps: usize) -> Result<PeerTimings> {
    let mut args = vec![
        "--batch".to_string(),
        batch.to_string(),
        "--reps".to_string(),
        reps.to_string(),
    ];
    if script.file_name().is_some_and(|n| n == "vit_bench.py") {
        args.extend([
            "--dim".into(),
            cfg.dim.to_string(),
            "--depth".into(),
            cfg.depth.to_string(),
            "--mlp".into(),
            cfg.mlp_dim.to_string(),
        ]);
    }
    let out = std::process::Command::new("python3")
        .arg(script)
        .args(&args)
        .output()
        .map_err(|e| crate::error::Error::io(script, e))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(crate::error::Error::invalid(
            "--peer",
            "a script that runs (is PyTorch installed? `pip install torch`)",
            err.lines().last().unwrap_or("failed"),
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().last().unwrap_or(""))
        .map_err(|e| crate::error::Error::invalid("--peer", "one JSON line of timings", e))
}

/// Ratios ours/peer for the full fine-tuning row (< 1: we are faster).
pub fn render_peer(rows: &[BenchRow], peer: &PeerTimings) -> String {
    let Some(full) = rows.iter().find(|r| r.strategy == "full") else {
        return "peer comparison needs the `full` strategy in the benchmark\n".into();
    };
    let line = |name: &str, t: f64, e: f64, p: f64| format!("{name:<22} {t:>12.1} {e:>12.1} {p:>14.2}\n");
    let ratio = |name: &str, t: f64, e: f64, p: f64| {
        format!(
            "{name:<22} {:>11.2}x {:>11.2}x {:>13.2}x\n",
            t / peer.train_step_ms,
            e / peer.eval_batch_ms,
            p / peer.pgd15_s
        )
    };
    let (t, ts, e, es) = (
        full.train_step_s * 1e3,
        full.train_step_data_parallel_s * 1e3,
        full.eval_batch_s * 1e3,
        full.eval_batch_split_s * 1e3,
    );
    let mut s = format!(
        "PyTorch {} eager ({} threads), full fine-tuning, same model and batch:\n{:<22} {:>12} {:>12} {:>14}\n",
        peer.torch, peer.threads, "", "train ms", "eval ms", "PGD-15 s"
    );
    s += &line("robustft, whole batch", t, e, full.pgd15_s);
    s += &line("robustft, split", ts, es, full.pgd15_split_s);
    s += &line("pytorch", peer.train_step_ms, peer.eval_batch_ms, peer.pgd15_s);
    s += &ratio("ratio whole/peer", t, e, full.pgd15_s);
    s += &ratio("ratio split/peer", ts, es, full.pgd15_split_s);
    s
}
