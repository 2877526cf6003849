//! Replaying weights: a run's checkpoints rebuilt from its records and checked image by image
//! (`replay`), scored under any attack ([`eval`]), PGD against AutoAttack ([`gap`]), weight-space
//! interpolation ([`interpolate`]), and the checkpoint to ship ([`choose`]); the attack benchmark
//! against torchattacks ([`attack_bench`]).

pub mod attack_bench;
pub mod choose;
pub mod eval;
pub mod gap;
pub mod interpolate;
pub(crate) mod replay;
