//! Reading records: per-run analysis ([`analysis`]), the report ([`report`]), the verdict on each
//! finding of the paper ([`verdict`]), theory against measurement ([`compare`]), standard against
//! robust fine-tuning ([`versus`]) and the best robustness reached at a clean target
//! ([`at_target`]).

pub mod analysis;
pub mod at_target;
pub mod compare;
pub mod report;
pub mod verdict;
pub mod versus;
