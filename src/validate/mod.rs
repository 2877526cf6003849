//! Tracked fine-tuning runs, JSONL records, reports, verdicts and the predicted-vs-measured
//! comparison.

pub mod analysis;
pub mod compare;
pub mod config;
pub mod data;
pub mod estimate;
pub mod eval;
pub mod lock;
pub mod plan;
pub mod records;
pub mod report;
pub mod runner;
pub mod slurm;
pub mod spec;
pub mod tune;
pub mod upstream;
pub mod verdict;

pub use config::{RunConfig, ValidRun};

/// The checks every job on a run config makes before it writes anything: a configured
/// checkpoint exists, and every data file of every dataset is valid ([`data::check_data`]).
/// Errors are marked [`crate::Error::Refused`] (bad input).
pub fn check_inputs(run: &ValidRun) -> crate::Result<()> {
    upstream::check_checkpoint(run)
        .and_then(|()| data::check_data(run))
        .map_err(crate::Error::refused)
}
