//! The validation engine on candle: ViT (tiny → Base, HF layout), the seven fine-tuning
//! strategies, attacks and data. Runs on CPU at small scale; the same code runs on a GPU.

pub mod attack;
pub mod bench;
pub mod data;
pub mod device;
pub mod eval;
pub mod hf;
pub mod kernels;
pub mod model;
pub mod modules;
pub mod ops;
pub mod peft;
pub mod pretrain;
pub mod robust;
pub mod train;
pub mod vit;
pub mod weights;

pub use model::{Vit, VitSpec};
pub use peft::{PeftConfig, Strategy};
pub use vit::{Activation, VitConfig};

/// How many parts a CPU batch is split into for data-parallel training and attacks
/// (`train::train_step_data_parallel`, `attack::pgd_data_parallel`). Fixed (not the core count) so that the same
/// seed gives the same numbers on any CPU; 1 on a GPU, where the batch stays whole.
pub fn batch_parts(device: &candle_core::Device) -> usize {
    if device.is_cpu() { CPU_BATCH_PARTS } else { 1 }
}

/// Runs `f(start, len)` on `parts` contiguous slices of a batch of `n` rows (the last may be
/// shorter), each on its own thread, and returns the results in slice order, or the first error
/// in slice order. `parts` is clamped to 1..=n; a single part runs on the calling thread. The one
/// splitting rule behind `train_step_data_parallel`, `pgd_data_parallel` and `eval::forward_data_parallel`.
pub fn data_parallel<T: Send, E: Send>(
    n: usize,
    parts: usize,
    f: impl Fn(usize, usize) -> std::result::Result<T, E> + Sync,
) -> std::result::Result<Vec<T>, E> {
    let parts = parts.clamp(1, n.max(1));
    if parts == 1 {
        return Ok(vec![f(0, n)?]);
    }
    let per = n.div_ceil(parts);
    let f = &f;
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..parts)
            .filter(|i| i * per < n)
            .map(|i| s.spawn(move || f(i * per, per.min(n - i * per))))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("batch worker thread panicked"))
            .collect()
    })
}

/// See [`batch_parts`]: the machines this project runs on have 2 cores.
pub const CPU_BATCH_PARTS: usize = 2;

/// Makes candle's own CPU thread pool single-threaded unless the user chose otherwise: on these
/// model sizes its second thread buys nothing (docs/src/performance.md), while splitting the batch
/// across threads does. Call at the start of `main`, before any thread exists.
pub fn prefer_batch_parallelism() {
    for var in ["CANDLE_NUM_THREADS", "RAYON_NUM_THREADS"] {
        if std::env::var_os(var).is_none() {
            // SAFETY: called first thing in main, while the process is single-threaded.
            unsafe { std::env::set_var(var, "1") };
        }
    }
}

impl From<candle_core::Error> for crate::error::Error {
    fn from(e: candle_core::Error) -> Self {
        // candle appends a captured backtrace to some messages: keep the message line only
        // (set ROBUSTFT_BACKTRACE=1 to keep it).
        let text = e.to_string();
        let message = if std::env::var_os("ROBUSTFT_BACKTRACE").is_some() {
            text
        } else {
            text.lines().next().unwrap_or("tensor operation failed").to_string()
        };
        crate::error::Error::Engine {
            message,
            source: Some(Box::new(e)),
        }
    }
}

#[cfg(test)]
mod error_tests {
    use candle_core::{Device, Tensor};

    /// A candle failure becomes one line naming it, with candle's error kept as the source.
    #[test]
    fn engine_errors_keep_their_source() {
        let a = Tensor::zeros((2, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
        let b = Tensor::zeros((4, 5), candle_core::DType::F32, &Device::Cpu).unwrap();
        let e: crate::Error = a.matmul(&b).unwrap_err().into();
        let text = e.to_string();
        assert!(text.starts_with("engine: ") && !text.contains('\n'), "{text}");
        let source = std::error::Error::source(&e).expect("candle's error as the source");
        assert!(source.to_string().contains("matmul"), "{source}");
    }
}
