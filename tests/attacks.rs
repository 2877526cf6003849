//! PGD and APGD on models where the answer is known.

use candle_core::{Device, Result as CResult, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
mod common;

use robustft::engine::attack::{ApgdConfig, Classifier, PgdConfig, StopRule, apgd, pgd};

/// Two-class linear model: logits (0, s) with s = wᵀx + b on flattened pixels.
struct Linear {
    w: Tensor,
    b: f32,
}

impl Classifier for Linear {
    fn logits(&self, x: &Tensor) -> CResult<Tensor> {
        let n = x.dim(0)?;
        let s = (x.flatten_from(1)?.matmul(&self.w.unsqueeze(1)?)? + self.b as f64)?;
        Tensor::cat(&[&Tensor::zeros((n, 1), x.dtype(), x.device())?, &s], 1)
    }
}

fn setup(n: usize, seed: u64) -> (Linear, Tensor, Tensor, Vec<f32>, Vec<f32>) {
    let dim = 2 * 4 * 4;
    let mut rng = StdRng::seed_from_u64(seed);
    let w: Vec<f32> = (0..dim).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    // Pixels in [0.1, 0.9]: the ε-ball never touches the [0, 1] box, so the worst case is exact.
    let x: Vec<f32> = (0..n * dim).map(|_| rng.random_range(0.1f32..0.9)).collect();
    let b = -w.iter().sum::<f32>() * 0.5;
    let scores: Vec<f32> = x
        .chunks(dim)
        .map(|r| r.iter().zip(&w).map(|(a, b)| a * b).sum::<f32>() + b)
        .collect();
    // Labels: the sign of the score for most points, flipped for every 7th (clean errors).
    let y: Vec<u32> = scores
        .iter()
        .enumerate()
        .map(|(i, s)| ((*s > 0.0) ^ (i % 7 == 0)) as u32)
        .collect();
    let dev = Device::Cpu;
    let model = Linear {
        w: Tensor::from_vec(w.clone(), dim, &dev).unwrap(),
        b,
    };
    (
        model,
        Tensor::from_vec(x, (n, 2, 4, 4), &dev).unwrap(),
        Tensor::from_vec(y, n, &dev).unwrap(),
        w,
        scores,
    )
}

/// One PGD step of size α = ε from the clean point is the exact worst case of a linear score:
/// the margin moves by ε‖w‖₁, and robust accuracy is the share of clean-correct points whose
/// margin exceeds it.
#[test]
fn pgd_on_a_linear_model_matches_the_closed_form() {
    let (model, x, y, w, scores) = setup(300, 1);
    let eps = 0.05;
    let l1: f32 = w.iter().map(|v| v.abs()).sum();
    let cfg = PgdConfig {
        eps,
        alpha: eps,
        steps: 1,
        random_start: false,
        stop: StopRule::LastIterate,
    };
    let out = pgd(&model, &x, &y, &cfg, 0).unwrap();
    let adv_scores: Vec<f32> = model
        .logits(&out.adv)
        .unwrap()
        .narrow(1, 1, 1)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let labels: Vec<u32> = y.to_vec1().unwrap();
    let mut expected_robust = 0;
    for i in 0..scores.len() {
        let sign = if labels[i] == 1 { 1.0 } else { -1.0 };
        // Worst case: the score moves against the label by ε‖w‖₁.
        let want = scores[i] - sign * eps as f32 * l1;
        assert!(
            (adv_scores[i] - want).abs() < 1e-4,
            "point {i}: {} vs {want}",
            adv_scores[i]
        );
        if sign * scores[i] > eps as f32 * l1 {
            expected_robust += 1;
        }
    }
    let got = out.robust.iter().filter(|r| **r).count();
    assert_eq!(got, expected_robust);
    assert!(out.robust_accuracy() <= out.clean_accuracy());
}

#[test]
fn attack_invariants() {
    let (model, x, y, _, _) = setup(200, 2);
    let eps = 0.03;
    for stop in [StopRule::EarlyExit, StopRule::LastIterate] {
        let cfg = PgdConfig {
            eps,
            alpha: eps / 4.0,
            steps: 10,
            random_start: true,
            stop,
        };
        let out = pgd(&model, &x, &y, &cfg, 5).unwrap();
        let d = common::max_abs_diff(&out.adv, &x);
        assert!(d <= eps + 1e-6, "{stop:?}: left the ε-ball by {d}");
        let lo = out
            .adv
            .flatten_all()
            .unwrap()
            .min(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let hi = out
            .adv
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(lo >= 0.0 && hi <= 1.0);
        assert!(out.robust_accuracy() <= out.clean_accuracy());
        for (r, c) in out.robust.iter().zip(&out.clean_correct) {
            assert!(!r || *c, "a robust point must be clean-correct");
        }
    }
    // ε = 0: robust accuracy is clean accuracy.
    let cfg = PgdConfig {
        eps: 0.0,
        alpha: 0.0,
        ..PgdConfig::default()
    };
    let out = pgd(&model, &x, &y, &cfg, 1).unwrap();
    assert_eq!(out.robust, out.clean_correct);
    let out = apgd(
        &model,
        &x,
        &y,
        &ApgdConfig {
            eps: 0.0,
            steps: 10,
            ..ApgdConfig::default()
        },
        1,
    )
    .unwrap();
    assert_eq!(out.robust, out.clean_correct);
}

/// Early exit is at least as strong as last-iterate with the same seed, and never weaker than
/// the closed-form bound on a linear model; APGD finds the linear worst case too.
#[test]
fn early_exit_and_apgd_strength() {
    let (model, x, y, w, scores) = setup(400, 3);
    let eps = 0.02;
    let base = PgdConfig {
        eps,
        alpha: eps / 4.0,
        steps: 15,
        random_start: true,
        stop: StopRule::LastIterate,
    };
    let last = pgd(&model, &x, &y, &base, 9).unwrap();
    let early = pgd(
        &model,
        &x,
        &y,
        &PgdConfig {
            stop: StopRule::EarlyExit,
            ..base
        },
        9,
    )
    .unwrap();
    assert!(early.robust_accuracy() <= last.robust_accuracy());
    assert!(early.image_forwards < last.image_forwards, "early exit must save work");
    // The exact robust accuracy of a linear model (no attack can do better).
    let l1: f32 = w.iter().map(|v| v.abs()).sum();
    let labels: Vec<u32> = y.to_vec1().unwrap();
    let exact = scores
        .iter()
        .zip(&labels)
        .filter(|(s, l)| (if **l == 1 { 1.0 } else { -1.0 }) * **s > eps as f32 * l1)
        .count() as f64
        / scores.len() as f64;
    let ap = apgd(
        &model,
        &x,
        &y,
        &ApgdConfig {
            eps,
            steps: 50,
            ..ApgdConfig::default()
        },
        9,
    )
    .unwrap();
    assert!(
        ap.robust_accuracy() >= exact - 1e-12,
        "no attack beats the exact worst case"
    );
    assert!(
        (ap.robust_accuracy() - exact).abs() < 1e-12,
        "APGD reaches the linear worst case: {} vs {exact}",
        ap.robust_accuracy()
    );
    assert!(ap.robust_accuracy() <= early.robust_accuracy());
}

/// Splitting the batch over threads draws the same random starts and attacks each point the same
/// way: on a linear model (row-independent arithmetic) the outcome is identical.
#[test]
fn split_pgd_equals_pgd() {
    use robustft::engine::attack::pgd_data_parallel;
    let (model, x, y, _, _) = setup(101, 4);
    for stop in [StopRule::EarlyExit, StopRule::LastIterate] {
        let cfg = PgdConfig {
            eps: 0.03,
            alpha: 0.01,
            steps: 7,
            random_start: true,
            stop,
        };
        let whole = pgd(&model, &x, &y, &cfg, 11).unwrap();
        let split = pgd_data_parallel(&model, &x, &y, &cfg, 11, 3).unwrap();
        assert_eq!(whole.robust, split.robust, "{stop:?}");
        assert_eq!(whole.clean_correct, split.clean_correct);
        assert!(common::max_abs_diff(&whole.adv, &split.adv) < 1e-6, "{stop:?}");
    }
}

/// Early exit returns, for every point, an image in the ε-ball and in [0, 1] that the model gets
/// wrong exactly when the point is reported broken, whichever step broke it (the last included:
/// with few steps many points fall at the final check).
#[test]
fn early_exit_returns_the_breaking_image_of_every_point() {
    let (model, x, y, _, _) = setup(300, 4);
    let labels: Vec<u32> = y.to_vec1().unwrap();
    let eps = 0.02;
    let mut broken_at_last = 0;
    for steps in 1..=4 {
        let cfg = PgdConfig {
            eps,
            alpha: eps / 4.0,
            steps,
            random_start: true,
            stop: StopRule::EarlyExit,
        };
        let out = pgd(&model, &x, &y, &cfg, 11).unwrap();
        let d = common::max_abs_diff(&out.adv, &x);
        assert!(d <= eps + 1e-6, "{steps} steps: left the ε-ball by {d}");
        let flat: Vec<f32> = out.adv.flatten_all().unwrap().to_vec1().unwrap();
        assert!(
            flat.iter().all(|v| (0.0..=1.0).contains(v)),
            "{steps} steps: left [0, 1]"
        );
        // Re-check each returned image (points within 1e-4 of the boundary are skipped: a
        // different batch may round their score to the other side).
        let logits: Vec<Vec<f32>> = model.logits(&out.adv).unwrap().to_vec2().unwrap();
        for (i, l) in logits.iter().enumerate() {
            let score = l[1] - l[0];
            if score.abs() < 1e-4 {
                continue;
            }
            let right = (score > 0.0) == (labels[i] == 1);
            assert_eq!(
                out.robust[i], right,
                "{steps} steps, point {i}: robust flag vs its image"
            );
        }
        // Points broken at the final check exist, so the last-step path is exercised.
        let fewer = PgdConfig {
            steps: steps - 1,
            ..cfg
        };
        let before = pgd(&model, &x, &y, &fewer, 11).unwrap();
        broken_at_last += before
            .robust
            .iter()
            .zip(&out.robust)
            .filter(|(b, o)| **b && !**o)
            .count();
    }
    assert!(broken_at_last > 0, "no point fell at the last check");
}
