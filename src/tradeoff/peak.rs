//! Where a curve peaks and whether it "rises then falls": the one definition the training-dynamics
//! model (`simulate dynamics`) and the report's `peaks.csv` use. (The verdict's statistical test
//! of finding 1 builds on the same idea — an interior maximum above both ends — with cross-fitted
//! confidence intervals instead of a fixed margin; see `validate::verdict`.)

/// A rise or fall smaller than this (accuracy units: half an accuracy point) counts as none — the
/// margin of the report's `rises_then_falls` column and the verdict's "negligible" bound.
pub const NEGLIGIBLE: f64 = 0.005;

/// The first maximum of a curve sampled at evaluation points, and how far it stands above the
/// curve's two ends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Peak {
    /// Index of the (first) maximum.
    pub index: usize,
    /// The value there.
    pub value: f64,
    /// The value at the first point.
    pub initial: f64,
    /// The value at the last point.
    pub last: f64,
    /// value − last.
    pub drop: f64,
    /// The maximum is interior (neither the first nor the last point) and more than `margin`
    /// above both ends: the curve rises, then falls.
    pub rises_then_falls: bool,
}

/// The [`Peak`] of `values` (at least one point; NaN points are never the maximum) with a rise
/// and a fall each required to exceed `margin` ≥ 0.
pub fn peak(values: &[f64], margin: f64) -> Peak {
    assert!(!values.is_empty(), "a curve has at least one point");
    let (mut index, mut value) = (0, f64::NEG_INFINITY);
    for (i, &v) in values.iter().enumerate() {
        if v > value {
            (index, value) = (i, v);
        }
    }
    let (initial, last) = (values[0], values[values.len() - 1]);
    Peak {
        index,
        value,
        initial,
        last,
        drop: value - last,
        rises_then_falls: index > 0 && index + 1 < values.len() && value > initial + margin && value > last + margin,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interior_peaks_above_both_ends_by_the_margin() {
        let p = peak(&[0.2, 0.5, 0.5, 0.3], 0.1);
        assert_eq!((p.index, p.value, p.initial, p.last), (1, 0.5, 0.2, 0.3));
        assert!((p.drop - 0.2).abs() < 1e-15);
        assert!(p.rises_then_falls);
        // The fall must exceed the margin: 0.5 → 0.45 does not.
        assert!(!peak(&[0.2, 0.5, 0.45], 0.1).rises_then_falls);
        assert!(peak(&[0.2, 0.5, 0.45], 0.0).rises_then_falls);
        // A maximum at either end never rises then falls.
        assert!(!peak(&[0.9, 0.5, 0.1], 0.0).rises_then_falls);
        assert!(!peak(&[0.1, 0.5, 0.9], 0.0).rises_then_falls);
        assert!(!peak(&[0.5], 0.0).rises_then_falls);
        // Equal rise needs strictly more than the margin.
        assert!(!peak(&[0.25, 0.5, 0.25], 0.25).rises_then_falls);
    }
}
