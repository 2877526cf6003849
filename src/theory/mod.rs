//! Theory: the robust/non-robust feature model, exact accuracies, Theorem 2.1 of Tsipras et al.,
//! the fine-tuning bound η ≥ Φ⁻¹(A)/√(k+d), and the training dynamics of the seven strategies on a
//! two-layer linear model (`dynamics`). Pure f64 math, no candle.

pub mod bound;
pub mod dynamics;
pub mod feature_model;
pub mod normal;
pub mod quadrature;

pub use bound::{
    DEFAULT_TARGET_ACC, Regime, Strategy, StrategyPrediction, VIT_B16_TRAINABLE, eta_min, predict_strategies,
    robust_at_matched_accuracy, z_score,
};
pub use feature_model::{FeatureModel, LinearClassifier, McEstimate, ScoreSummary, accuracy, tsipras_upper_bound};
pub use normal::{phi, phi_inv};
