//! # robustft
//!
//! How does fine-tuning a pretrained model trade accuracy against robustness, and how does the
//! parameter-efficient fine-tuning (PEFT) strategy change that tradeoff?
//!
//! Layers (see `DESIGN.md` in the shared folder): [`theory`] (math) → [`tradeoff`] (curves) →
//! jobs ([`simulate`]) → binaries. The theory layers never touch tensors.

pub mod cli;
pub mod engine;
pub mod error;
pub mod io;
pub mod plot;
pub mod progress;
pub mod seeds;
pub mod simulate;
pub mod theory;
pub mod tradeoff;
pub mod validate;

pub use error::{Error, Result};

/// The library leaves the allocator to its users. Our binaries, examples and tests use mimalloc
/// (`#[global_allocator] static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;`): candle
/// allocates a fresh buffer for every op, and the system allocator maps and unmaps large ones
/// each time (about 30% of a CPU training step went to page faults and TLB flushes; see the
/// guide's performance chapter, docs/src/performance.md). This one serves the library's own
/// unit tests.
#[cfg(test)]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
