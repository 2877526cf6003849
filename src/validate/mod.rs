//! Tracked fine-tuning runs, JSONL records, reports and the predicted-vs-measured comparison.

pub mod config;
pub mod records;
pub mod runner;

pub use config::{RunConfig, ValidRun};
pub mod compare;
pub mod report;
