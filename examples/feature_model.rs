//! The theory side through the public API, in one page: the feature model's exact accuracies,
//! the fine-tuning bound η_min = Φ⁻¹(A)/√(k+d), the predicted strategy ranking, and a
//! robustness/accuracy frontier with its AUC.
//!
//! `cargo run --release --example feature_model`

use robustft::theory::{FeatureModel, LinearClassifier, ScoreSummary, accuracy, eta_min, predict_strategies};
use robustft::tradeoff::{AucRule, Point, auc, frontier};

fn main() -> robustft::Result<()> {
    // Tsipras et al. 2019: y = ±1; x₀ = y with probability p; x₁..x_D ~ N(ηy, 1).
    let model = FeatureModel::new(0.9, 0.2, 100)?;
    // Averaging m = 100 weak features: clean Φ(η√m) = Φ(2), robust at ε = 2η: Φ(−2).
    let uniform = LinearClassifier::uniform(100, 100)?;
    let eps = 0.4;
    println!(
        "uniform-100: clean {:.4}, robust at ε = {eps}: {:.4}",
        model.clean_accuracy(&uniform)?,
        model.robust_accuracy(&uniform, eps)?
    );
    // Relying on the robust feature alone: p clean and p robust (for ε < 1).
    let robust_only = LinearClassifier::robust_only(100);
    println!(
        "robust-only: clean {:.4}, robust {:.4}",
        model.clean_accuracy(&robust_only)?,
        model.robust_accuracy(&robust_only, eps)?
    );

    // The fine-tuning bound: 99% accuracy with k updated parameters on a task of d features
    // needs features of strength η ≥ 2.33/√(k+d). Full fine-tuning of ViT-B (k = d = 768):
    println!("η_min(k = 768, d = 768) = {:.5}", eta_min(768.0, 768.0, 0.99)?);

    // The predicted ranking at d = 100: fewer updated parameters, more robust at matched accuracy.
    for p in predict_strategies(&robustft::engine::Strategy::ALL, 100.0, 0.99, 0.02)? {
        println!(
            "{:<16} k = {:>10.3}  robust at matched accuracy {:.4}",
            p.strategy.name(),
            p.k,
            p.robust_acc
        );
    }

    // Moving weight from the robust feature to m = 50 weak ones (λ from 0 to 1) traces a
    // tradeoff curve; its Pareto frontier's area is the AUC the strategies are compared by.
    let pts: Vec<Point> = (0..=20)
        .map(|i| {
            let s = ScoreSummary::interpolated(50, i as f64 / 20.0);
            Point {
                acc: accuracy(model.p(), model.eta(), &s, 0.0),
                rob: accuracy(model.p(), model.eta(), &s, eps),
            }
        })
        .collect();
    println!(
        "frontier: {} of {} points, AUC {:.4}",
        frontier(&pts).len(),
        pts.len(),
        auc(&pts, AucRule::Step)
    );
    Ok(())
}
