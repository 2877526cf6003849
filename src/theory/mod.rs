//! Theory: the robust/non-robust feature model, exact accuracies, Theorem 2.1 of Tsipras et al.,
//! the fine-tuning bound η ≥ Φ⁻¹(A)/√(k+d), and the training dynamics of the seven strategies on a
//! two-layer linear model (`dynamics`). Pure f64 math, no candle; a strategy is anything that is a
//! [`StrategyModel`] (the registry's are `crate::engine::Strategy`).

pub mod bound;
pub mod dynamics;
pub mod feature_model;
pub mod normal;
pub mod quadrature;
pub mod strategy;

pub use bound::{
    DEFAULT_TARGET_ACC, Regime, StrategyPrediction, eta_min, predict_strategies, robust_at_matched_accuracy, z_score,
};
pub use feature_model::{FeatureModel, LinearClassifier, McEstimate, ScoreSummary, accuracy, tsipras_upper_bound};
pub use normal::{phi, phi_inv};
pub use strategy::{StrategyModel, VIT_B16_BACKBONE};
