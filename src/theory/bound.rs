//! The fine-tuning bound: how weak (η) the features of a fine-tuned linear model can be
//! while it still reaches a target accuracy, and what that costs in robustness.
//!
//! Fine-tuning view (Li et al. 2025, "On the Robustness Tradeoff in Fine-Tuning", ICCV,
//! arXiv:2503.14836, §3): f(x) = sign((w₀ + Δw)ᵀx), where the pretrained w₀ uses d task
//! features and Δw has k = ‖Δw‖₀ non-zeros. A classifier averaging m features of strength η
//! reaches accuracy Φ(η√m) (Tsipras et al. 2019, §2.1), so reaching a target A needs
//! η ≥ Φ⁻¹(A)/√m.
//!
//! Which m applies depends on where Δw lives:
//! * [`Regime::Disjoint`]: Δw reaches k *further* non-robust features, m = k + d. This is the
//!   regime the paper's k+d bound needs: η ≥ z/√(k+d), full fine-tuning (k = d) giving z/√(2d).
//! * [`Regime::Overlapping`]: Δw re-weights w₀'s own d coordinates (k ≤ d), so m = d whatever k
//!   is and the bound stays z/√d.

use serde::{Deserialize, Serialize};

use super::normal::{phi, phi_inv};
use super::strategy::StrategyModel;
use crate::error::{Error, Result, check};

/// The paper's default accuracy target for the bound (99%; z = Φ⁻¹(0.99) = 2.3263…, rounded to
/// 2.33 in Li et al. 2025).
pub const DEFAULT_TARGET_ACC: f64 = 0.99;

/// z = Φ⁻¹(target_acc) for a target in (0.5, 1).
pub fn z_score(target_acc: f64) -> Result<f64> {
    check::open("target_acc", target_acc, 0.5, 1.0)?;
    Ok(phi_inv(target_acc))
}

/// Checks k ≥ 0 and d > 0 (both finite; real-valued so that the strategy mapping
/// k = d·params/params_full can be used without rounding).
fn check_kd(k: f64, d: f64) -> Result<()> {
    check::non_negative("k", k)?;
    check::positive("d", d)?;
    Ok(())
}

/// η_min(k, d, A) = Φ⁻¹(A)/√(k+d): the weakest feature strength at which a classifier averaging
/// k+d features still reaches accuracy A (disjoint regime).
///
/// ```
/// // Full fine-tuning of ViT-B's 768 features (k = d): 99% needs η ≥ 2.3263/√1536.
/// let e = robustft::theory::eta_min(768.0, 768.0, 0.99)?;
/// assert!((e - 2.326_347_874 / 1536f64.sqrt()).abs() < 1e-9);
/// # Ok::<(), robustft::Error>(())
/// ```
pub fn eta_min(k: f64, d: f64, target_acc: f64) -> Result<f64> {
    check_kd(k, d)?;
    Ok(z_score(target_acc)? / sqrt_sum(k, d))
}

/// √(k+d) without overflow: k + d itself when it is finite (so ordinary inputs give the same bits
/// as the formula as written), else √k ⊕ √d (`hypot`), e.g. k = d = 1e308 gives 1.414e154.
fn sqrt_sum(k: f64, d: f64) -> f64 {
    let s = k + d;
    if s.is_finite() {
        s.sqrt()
    } else {
        k.sqrt().hypot(d.sqrt())
    }
}

/// Where the update Δw lives relative to the pretrained weights w₀.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Regime {
    /// Δw reaches k further features: m = k + d (the paper's k+d argument).
    Disjoint,
    /// Δw lies on w₀'s d coordinates (needs k ≤ d): m = d.
    Overlapping,
}

impl Regime {
    /// Number m of features the fine-tuned classifier can average (an error when k + d is not
    /// representable).
    pub fn features_used(self, k: f64, d: f64) -> Result<f64> {
        check_kd(k, d)?;
        match self {
            Regime::Disjoint if (k + d).is_finite() => Ok(k + d),
            Regime::Disjoint => Err(Error::invalid(
                "k",
                "k + d must be a finite number",
                format!("{k} + {d}"),
            )),
            Regime::Overlapping if k <= d => Ok(d),
            Regime::Overlapping => Err(Error::invalid(
                "k",
                format!("the overlapping regime needs k <= d = {d}"),
                k,
            )),
        }
    }

    /// η_min in this regime: z/√m.
    pub fn eta_min(self, k: f64, d: f64, target_acc: f64) -> Result<f64> {
        let root = match self {
            Regime::Disjoint => {
                check_kd(k, d)?;
                sqrt_sum(k, d)
            }
            Regime::Overlapping => self.features_used(k, d)?.sqrt(),
        };
        Ok(z_score(target_acc)? / root)
    }
}

/// Robust accuracy at matched clean accuracy: a classifier that reaches clean accuracy A by
/// averaging m features at the smallest admissible η = Φ⁻¹(A)/√m has robust accuracy
/// Φ((η − ε)√m) = Φ(Φ⁻¹(A) − ε√m). Non-increasing in m: more features, weaker each, more fragile.
pub fn robust_at_matched_accuracy(clean_acc: f64, m: f64, eps: f64) -> Result<f64> {
    let z = z_score(clean_acc).map_err(|e| e.rename_field("target_acc", "clean_acc"))?;
    check::positive("m", m)?;
    check::non_negative("eps", eps)?;
    Ok(phi(z - eps * m.sqrt()))
}

/// One strategy's prediction at one task complexity d.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct StrategyPrediction<S> {
    /// The strategy.
    pub strategy: S,
    /// Its k = d·params/params_full.
    pub k: f64,
    /// Features used, m = k + d (disjoint regime).
    pub m: f64,
    /// η_min = z/√m.
    pub eta_min: f64,
    /// Robust accuracy at matched clean accuracy A: Φ(z − ε√m).
    pub robust_acc: f64,
}

/// Predictions for `strategies` (the seven: `crate::engine::Strategy::ALL`) at task complexity
/// `d`, clean accuracy `clean_acc` and attack size `eps`, sorted from most to least robust (ties
/// keep the given order). In the disjoint regime this is the order of increasing parameter
/// count: the bound predicts that fewer updated parameters force stronger, more robust features.
pub fn predict_strategies<S: StrategyModel>(
    strategies: &[S],
    d: f64,
    clean_acc: f64,
    eps: f64,
) -> Result<Vec<StrategyPrediction<S>>> {
    let mut out = Vec::with_capacity(strategies.len());
    for &s in strategies {
        let k = s.k_for(d);
        let m = Regime::Disjoint.features_used(k, d)?;
        out.push(StrategyPrediction {
            strategy: s,
            k,
            m,
            eta_min: eta_min(k, d, clean_acc).map_err(|e| e.rename_field("target_acc", "clean_acc"))?,
            robust_acc: robust_at_matched_accuracy(clean_acc, m, eps)?,
        });
    }
    out.sort_by(|a, b| b.robust_acc.total_cmp(&a.robust_acc));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    // The registry's strategies (the theory is written for any `StrategyModel`).
    use crate::engine::Strategy;

    #[test]
    fn eta_min_times_sqrt_m_is_z() {
        let z = z_score(0.99).unwrap();
        assert!((z - 2.326_347_874_040_841).abs() < 1e-12);
        for (k, d) in [(0.0, 1.0), (3.0, 10.0), (1e4, 1e4), (0.5, 7.0)] {
            let e = eta_min(k, d, 0.99).unwrap();
            assert!((e * (k + d).sqrt() - z).abs() < 1e-12);
            assert!((phi(e * (k + d).sqrt()) - 0.99).abs() < 1e-12);
        }
        // Full fine-tuning, k = d: z/√(2d).
        assert!((eta_min(50.0, 50.0, 0.99).unwrap() - z / 10.0).abs() < 1e-15);
    }

    #[test]
    fn regimes() {
        let z = z_score(0.99).unwrap();
        assert_eq!(Regime::Disjoint.features_used(3.0, 10.0).unwrap(), 13.0);
        assert_eq!(Regime::Overlapping.features_used(3.0, 10.0).unwrap(), 10.0);
        assert!(Regime::Overlapping.features_used(11.0, 10.0).is_err());
        assert!((Regime::Overlapping.eta_min(10.0, 25.0, 0.99).unwrap() - z / 5.0).abs() < 1e-15);
    }

    #[test]
    fn bad_inputs_name_the_field() {
        assert!(eta_min(-1.0, 1.0, 0.99).unwrap_err().to_string().contains("`k`"));
        assert!(eta_min(1.0, 0.0, 0.99).unwrap_err().to_string().contains("`d`"));
        assert!(eta_min(1.0, 1.0, 1.0).unwrap_err().to_string().contains("`target_acc`"));
        assert!(
            robust_at_matched_accuracy(0.4, 1.0, 0.1)
                .unwrap_err()
                .to_string()
                .contains("`clean_acc`")
        );
        assert!(
            robust_at_matched_accuracy(0.9, 1.0, -0.1)
                .unwrap_err()
                .to_string()
                .contains("`eps`")
        );
    }

    #[test]
    fn strategy_table_and_mapping() {
        assert_eq!(Strategy::Full.vit_b16_params(), 85_798_656);
        assert_eq!(Strategy::Compacter.vit_b16_params(), 57_088);
        assert_eq!(Strategy::Full.k_for(100.0), 100.0);
        assert_eq!(Strategy::LinearProbe.k_for(100.0), 0.0);
        assert!((Strategy::Lora.k_for(85_798_656.0) - 1_179_648.0).abs() < 1e-6);
        let ids: std::collections::HashSet<_> = Strategy::ALL.iter().map(|s| s.id()).collect();
        assert_eq!(ids.len(), 7);
    }

    /// Disjoint regime: robustness at matched accuracy falls with k, so the predicted ranking is
    /// the order of increasing parameter count.
    #[test]
    fn predicted_ranking_follows_parameter_count() {
        let ranked: Vec<_> = predict_strategies(&Strategy::ALL, 1000.0, 0.99, 0.05)
            .unwrap()
            .iter()
            .map(|p| p.strategy)
            .collect();
        use Strategy::*;
        assert_eq!(ranked, vec![LinearProbe, Compacter, Ia3, Bitfit, Lora, Adapter, Full]);
        let full = predict_strategies(&Strategy::ALL, 1000.0, 0.99, 0.05).unwrap()[6];
        assert!((full.robust_acc - phi(z_score(0.99).unwrap() - 0.05 * 2000f64.sqrt())).abs() < 1e-15);
    }
}
