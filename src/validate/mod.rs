//! Tracked fine-tuning runs, JSONL records, reports, verdicts and the predicted-vs-measured
//! comparison.

pub mod analysis;
pub mod compare;
pub mod config;
pub mod data;
pub mod lock;
pub mod records;
pub mod report;
pub mod runner;
pub mod spec;
pub mod tune;
pub mod upstream;
pub mod verdict;

pub use config::{RunConfig, ValidRun};
