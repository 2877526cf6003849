//! Linear probing: the backbone stays frozen; only the head is trained (0 backbone parameters).
//! Because the backbone never changes, its CLS features can be computed once and cached.

use super::Method;

/// Linear probing: every hook keeps its default (nothing unfrozen, nothing added).
pub struct LinearProbe;

impl Method for LinearProbe {}
