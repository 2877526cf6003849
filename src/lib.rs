//! # robustft
//!
//! How does fine-tuning a pretrained model trade accuracy against robustness, and how does the
//! parameter-efficient fine-tuning (PEFT) strategy change that tradeoff?
//!
//! Layers (see `DESIGN.md` in the shared folder): [`theory`] (math) → [`tradeoff`] (curves) →
//! jobs ([`simulate`]) → binaries. The theory layers never touch tensors.

pub mod engine;
pub mod error;
pub mod plot;
pub mod simulate;
pub mod theory;
pub mod tradeoff;

pub use error::{Error, Result};
