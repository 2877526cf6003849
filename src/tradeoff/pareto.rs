//! Pareto frontier of (accuracy, robustness) points and the area under it.
//!
//! Li et al. 2025 (arXiv:2503.14836, §4) compare fine-tuning strategies by the area under the
//! Pareto frontier of the (clean accuracy, adversarial robustness) pairs a run passes through.
//! Both coordinates are maximised.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, check};

/// One (accuracy, robustness) pair, both in [0, 1].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// Clean accuracy.
    pub acc: f64,
    /// Robust accuracy.
    pub rob: f64,
}

impl Point {
    /// Validates both coordinates in [0, 1].
    pub fn new(acc: f64, rob: f64) -> Result<Self> {
        check::closed("acc", acc, 0.0, 1.0)?;
        check::closed("rob", rob, 0.0, 1.0)?;
        Ok(Self { acc, rob })
    }

    /// `self` is at least as good as `other` on both axes and better on one.
    pub fn dominates(&self, other: &Point) -> bool {
        self.acc >= other.acc && self.rob >= other.rob && (self.acc > other.acc || self.rob > other.rob)
    }
}

/// Validates raw pairs into points; the error names the index.
pub fn points(pairs: &[(f64, f64)]) -> Result<Vec<Point>> {
    pairs
        .iter()
        .enumerate()
        .map(|(i, &(a, r))| {
            Point::new(a, r).map_err(|e| {
                e.rename_field("acc", &format!("points[{i}].acc"))
                    .rename_field("rob", &format!("points[{i}].rob"))
            })
        })
        .collect()
}

/// The non-dominated points, sorted by increasing accuracy (so decreasing robustness).
/// Duplicates appear once; of points with equal accuracy only the most robust survives.
/// O(n log n).
pub fn frontier(points: &[Point]) -> Vec<Point> {
    let mut sorted = points.to_vec();
    // Accuracy descending, robustness descending: a point is on the frontier iff it is strictly
    // more robust than everything more accurate (or as accurate and listed before it).
    sorted.sort_by(|a, b| b.acc.total_cmp(&a.acc).then(b.rob.total_cmp(&a.rob)));
    let mut out: Vec<Point> = Vec::new();
    for p in sorted {
        if out.last().is_none_or(|best| p.rob > best.rob) {
            out.push(p);
        }
    }
    out.reverse();
    out
}

/// How the area under a frontier is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AucRule {
    /// Area dominated by the frontier with reference point (0, 0): the union of the rectangles
    /// [0, acc_i] × [0, rob_i]. Σ (acc_i − acc_{i−1})·rob_i over the frontier sorted by accuracy,
    /// acc_0 = 0. A single point (a, r) gives a·r. The default.
    #[default]
    Step,
    /// Area under the piecewise-linear frontier, extended flat to accuracy 0 on the left:
    /// acc_1·rob_1 + Σ_{i≥2} (acc_i − acc_{i−1})·(rob_i + rob_{i−1})/2.
    Trapezoid,
}

impl AucRule {
    /// Name used in CSV headers and legends.
    pub fn id(self) -> &'static str {
        match self {
            AucRule::Step => "step",
            AucRule::Trapezoid => "trapezoid",
        }
    }
}

/// Area under the Pareto frontier of `points` (any order, duplicates allowed) by `rule`.
/// Zero for no points.
///
/// ```
/// use robustft::tradeoff::{AucRule, Point, auc};
/// // (0.9, 0.2) dominates (0.8, 0.1); the step rule integrates robustness over accuracy.
/// let pts = [Point { acc: 0.5, rob: 0.4 }, Point { acc: 0.9, rob: 0.2 }, Point { acc: 0.8, rob: 0.1 }];
/// assert!((auc(&pts, AucRule::Step) - (0.5 * 0.4 + 0.4 * 0.2)).abs() < 1e-12);
/// ```
pub fn auc(points: &[Point], rule: AucRule) -> f64 {
    let f = frontier(points);
    let mut area = 0.0;
    let mut prev: Option<Point> = None;
    for p in &f {
        area += match (rule, prev) {
            (_, None) => p.acc * p.rob,
            (AucRule::Step, Some(q)) => (p.acc - q.acc) * p.rob,
            (AucRule::Trapezoid, Some(q)) => (p.acc - q.acc) * 0.5 * (p.rob + q.rob),
        };
        prev = Some(*p);
    }
    area
}

/// How far one AUC lies above the mean of all: auc_i / mean(all) − 1 (Li et al. 2025 report
/// e.g. "over 75% above the average" for BitFit on CIFAR-10).
pub fn above_average(auc_i: f64, all: &[f64]) -> Result<f64> {
    if all.is_empty() {
        return Err(Error::invalid("all", "need at least one AUC", "[]"));
    }
    let mean = all.iter().sum::<f64>() / all.len() as f64;
    if mean <= 0.0 || !mean.is_finite() {
        return Err(Error::invalid("all", "the mean AUC must be finite and > 0", mean));
    }
    Ok(auc_i / mean - 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pts(v: &[(f64, f64)]) -> Vec<Point> {
        points(v).unwrap()
    }

    #[test]
    fn hand_computed_frontier_and_areas() {
        // (0.2, 0.9), (0.5, 0.6), (0.8, 0.3) on the frontier; (0.4, 0.5) and (0.8, 0.1) dominated.
        let p = pts(&[(0.8, 0.3), (0.4, 0.5), (0.2, 0.9), (0.8, 0.1), (0.5, 0.6)]);
        assert_eq!(frontier(&p), pts(&[(0.2, 0.9), (0.5, 0.6), (0.8, 0.3)]));
        // Step: 0.2·0.9 + 0.3·0.6 + 0.3·0.3 = 0.18 + 0.18 + 0.09.
        assert!((auc(&p, AucRule::Step) - 0.45).abs() < 1e-15);
        // Trapezoid: 0.2·0.9 + 0.3·0.75 + 0.3·0.45 = 0.18 + 0.225 + 0.135.
        assert!((auc(&p, AucRule::Trapezoid) - 0.54).abs() < 1e-15);
    }

    #[test]
    fn single_point_and_empty() {
        let p = pts(&[(0.7, 0.4)]);
        assert!((auc(&p, AucRule::Step) - 0.28).abs() < 1e-16);
        assert!((auc(&p, AucRule::Trapezoid) - 0.28).abs() < 1e-16);
        assert_eq!(auc(&[], AucRule::Step), 0.0);
    }

    #[test]
    fn ties_keep_one_point() {
        let p = pts(&[(0.5, 0.5), (0.5, 0.5), (0.5, 0.2), (0.3, 0.5)]);
        assert_eq!(frontier(&p), pts(&[(0.5, 0.5)]));
    }

    #[test]
    fn above_average_formula() {
        let all = [0.2, 0.4, 0.6];
        assert!((above_average(0.6, &all).unwrap() - 0.5).abs() < 1e-15);
        assert!(above_average(0.1, &[]).is_err());
        assert!(
            points(&[(0.1, 0.2), (1.2, 0.0)])
                .unwrap_err()
                .to_string()
                .contains("points[1].acc")
        );
    }
}
