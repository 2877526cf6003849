//! The validation engine's jobs, in three rooms that follow the data:
//!
//! - [`sweep`] makes records: configurations, the plan of cells, the runner and its records, the
//!   upstream backbone, learning-rate tuning, task separability, Slurm;
//! - [`study`] reads records: analysis, the report, the verdicts on the paper's findings, the
//!   theory comparison, standard against robust fine-tuning, the best robustness at a target;
//! - [`checkpoints`] replays weights from the records: `eval`, `gap`, `interpolate`, `choose`
//!   and its export.

pub mod checkpoints;
pub mod study;
pub mod sweep;

pub use sweep::config::{RunConfig, ValidRun};
