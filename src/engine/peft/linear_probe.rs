//! Linear probing: the backbone stays frozen; only the head is trained (0 backbone parameters).
//! Because the backbone never changes, its CLS features can be computed once and cached.

use crate::engine::vit::ParamSpec;

/// Leaves every backbone tensor frozen.
pub fn unfreeze(_specs: &mut [ParamSpec]) {}
