//! Helpers shared by the integration tests.

use candle_core::Tensor;

/// max |a − b| over all elements, as f64 (any float dtype); see `engine::ops::max_abs_diff`.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    robustft::engine::ops::max_abs_diff(a, b).unwrap()
}
