//! The training-dynamics theory (`theory::dynamics`): quadrature gradients against finite
//! differences and Monte Carlo, monotone descent, initial classifiers, trainable counts, SGD's
//! large-batch limit, and `simulate dynamics` end to end.

use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;
use robustft::engine::Strategy;
use robustft::simulate::dynamics::{DynamicsConfig, predicted_auc};
use robustft::theory::dynamics::net::trainable_count;
use robustft::theory::dynamics::{Backbone, ModuleSizes, Net, Task, TrainSpec, example_gradient, train};
use robustft::theory::quadrature::GaussHermite;

const SHAPE: ModuleSizes = ModuleSizes {
    lora_rank: 2,
    adapter_rank: 2,
    compacter_n: 2,
    compacter_rank: 2,
    head_init: 0.3,
};

/// D = 6 non-robust features; upstream {1, 2}; the task uses {2, 3, 5} (one shared, two new).
fn small() -> (Task, Backbone) {
    let task = Task::new(0.85, 0.6, 6, &[2, 3, 5]).unwrap();
    let bb = Backbone::pretrained(4, 6, &[1, 2], 11).unwrap();
    (task, bb)
}

/// Population loss at θ by quadrature.
fn loss(task: &Task, net: &Net<Strategy>, gh: &GaussHermite, theta: &[f64]) -> f64 {
    let e = net.effective(theta).unwrap();
    task.population(gh, &e.w, e.beta).unwrap().loss
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    /// ∂L/∂θ from Stein's lemma and the chain rule equals the central finite difference of the
    /// quadrature loss, for every strategy at random parameters (the init plus a random perturbation,
    /// so zero-initialised factors are off zero too).
    #[test]
    fn quadrature_gradient_matches_finite_differences(seed in 0u64..1_000_000, scale in 0.05f64..0.8) {
        let (task, bb) = small();
        let gh = GaussHermite::new(40).unwrap();
        for strategy in Strategy::ALL {
            let net = Net::new(&bb, strategy, SHAPE).unwrap();
            let mut rng = StdRng::seed_from_u64(seed);
            let mut theta = net.init(seed);
            for t in theta.iter_mut() {
                *t += scale * rand_distr::Distribution::<f64>::sample(&rand_distr::StandardNormal, &mut rng);
            }
            let eff = net.effective(&theta).unwrap();
            let g = task.population(&gh, &eff.w, eff.beta).unwrap();
            let grad = net.backward(&theta, &eff, &g.w, g.beta).unwrap();
            prop_assert_eq!(grad.len(), net.trainable());
            let h = 1e-5;
            for k in 0..theta.len() {
                let mut tp = theta.clone();
                tp[k] += h;
                let mut tm = theta.clone();
                tm[k] -= h;
                let fd = (loss(&task, &net, &gh, &tp) - loss(&task, &net, &gh, &tm)) / (2.0 * h);
                prop_assert!(
                    (grad[k] - fd).abs() <= 1e-7 + 1e-6 * fd.abs(),
                    "{} θ[{}]: analytic {} vs finite difference {}",
                    strategy.name(),
                    k,
                    grad[k],
                    fd
                );
            }
        }
    }
}

/// The quadrature loss and gradient in (w, β) against a 400,000-sample Monte Carlo mean of the
/// per-example logistic loss gradient: every component within 4 standard errors.
#[test]
fn quadrature_gradient_matches_monte_carlo() {
    let task = Task::new(0.8, 0.4, 5, &[1, 2, 4]).unwrap();
    let gh = GaussHermite::new(48).unwrap();
    let w = [0.7, 0.5, -0.3, 0.9, 0.2, -0.6];
    let beta = 0.15;
    let q = task.population(&gh, &w, beta).unwrap();
    let n = 400_000;
    let mut rng = StdRng::seed_from_u64(2025);
    let k = w.len() + 2; // loss, w…, β
    let (mut sum, mut sq) = (vec![0.0; k], vec![0.0; k]);
    for _ in 0..n {
        let (y, x) = task.sample(&mut rng);
        let g = example_gradient(&w, beta, y, &x);
        let v: Vec<f64> = std::iter::once(g.loss).chain(g.w).chain([g.beta]).collect();
        for i in 0..k {
            sum[i] += v[i];
            sq[i] += v[i] * v[i];
        }
    }
    let want: Vec<f64> = std::iter::once(q.loss)
        .chain(q.w.iter().copied())
        .chain([q.beta])
        .collect();
    let mut worst: f64 = 0.0;
    for i in 0..k {
        let mean = sum[i] / n as f64;
        let se = ((sq[i] / n as f64 - mean * mean) / n as f64).sqrt();
        let z = (mean - want[i]) / se;
        worst = worst.max(z.abs());
        assert!(
            z.abs() < 4.0,
            "component {i}: quadrature {} vs Monte Carlo {mean} ± {se} (z = {z})",
            want[i]
        );
    }
    // The check has power: drop Stein's term v₁·κ from ∂L/∂v₁ (feature 1 carries the label;
    // feature 3 does not, so ∂L/∂v₃ = v₃·κ gives κ) and Monte Carlo rejects the result.
    let e1 = q.w[1] - w[1] * (q.w[3] / w[3]);
    let mean1 = sum[2] / n as f64;
    let se1 = ((sq[2] / n as f64 - mean1 * mean1) / n as f64).sqrt();
    assert!(
        ((mean1 - e1) / se1).abs() > 10.0,
        "without Stein's term the gradient should be rejected"
    );
    println!("largest |z| over {k} components: {worst:.2}");
}

/// Linear probing is convex in (u, c): with a small step the population loss never increases.
#[test]
fn linear_probe_loss_decreases_monotonically() {
    let (task, bb) = small();
    let net = Net::new(&bb, Strategy::LinearProbe, SHAPE).unwrap();
    let spec = TrainSpec {
        steps: 300,
        lr: 0.5,
        eval_steps: (0..=300).collect(),
        eps: vec![0.1],
        nodes: 32,
        batch: None,
        seed: 0,
    };
    let t = train(&task, &net, &net.init(3), &spec).unwrap();
    let l: Vec<f64> = t.points.iter().map(|p| p.loss).collect();
    for (i, w) in l.windows(2).enumerate() {
        assert!(
            w[1] <= w[0] + 1e-15,
            "loss rose at step {}: {} -> {}",
            i + 1,
            w[0],
            w[1]
        );
    }
    assert!(l[300] < l[0] - 0.1, "and it actually descends: {} -> {}", l[0], l[300]);
}

/// Every strategy starts from the pretrained classifier: w = W₀ᵀu₀, β = u₀ᵀb₀ + 0, with the
/// same random head (B = 0, ℓ = 1, U = 0 and t = 0 make the modules invisible at step 0).
#[test]
fn initial_effective_classifier_is_the_pretrained_one() {
    let (_, bb) = small();
    let (h, n) = (bb.hidden(), bb.inputs());
    let lp = Net::new(&bb, Strategy::LinearProbe, SHAPE).unwrap();
    let u = lp.init(9)[..h].to_vec();
    // w = W₀ᵀu: column j of W₀ dotted with u.
    let want: Vec<f64> = (0..n)
        .map(|j| u.iter().enumerate().map(|(i, ui)| bb.weights()[i * n + j] * ui).sum())
        .collect();
    assert!(want.iter().any(|x| x.abs() > 1e-3), "a non-trivial head");
    for s in Strategy::ALL {
        let net = Net::new(&bb, s, SHAPE).unwrap();
        let theta = net.init(9);
        assert_eq!(&theta[..h], &u[..], "{}: same head", s.name());
        let e = net.effective(&theta).unwrap();
        for (j, (got, want)) in e.w.iter().zip(&want).enumerate() {
            assert!((got - want).abs() < 1e-15, "{} w[{j}]: {} vs {}", s.name(), got, want);
        }
        assert!(e.beta.abs() < 1e-15, "{}: β = {}", s.name(), e.beta);
    }
}

/// The pretrained backbone is an isometry on {x₀} ∪ upstream and blind to everything else.
#[test]
fn pretrained_backbone_is_a_projection() {
    let bb = Backbone::pretrained(5, 7, &[2, 6], 4).unwrap();
    let (h, n) = (bb.hidden(), bb.inputs());
    for a in 0..n {
        for b in 0..n {
            let g: f64 = (0..h).map(|i| bb.weights()[i * n + a] * bb.weights()[i * n + b]).sum();
            let want = if a == b && [0, 2, 6].contains(&a) { 1.0 } else { 0.0 };
            assert!((g - want).abs() < 1e-12, "(W₀ᵀW₀)[{a},{b}] = {g}");
        }
    }
    assert!(
        Backbone::pretrained(2, 7, &[2, 6], 4)
            .unwrap_err()
            .to_string()
            .contains("hidden")
    );
    assert!(
        Backbone::pretrained(5, 7, &[8], 4)
            .unwrap_err()
            .to_string()
            .contains("upstream")
    );
}

/// Counts by hand for h = 48, n = 1 + 256, r = 4, N = 2 (the default configuration), and the
/// formula against the parameter vectors for other shapes.
#[test]
fn trainable_counts_match_their_formulas() {
    let shape = ModuleSizes {
        lora_rank: 4,
        adapter_rank: 4,
        compacter_n: 2,
        compacter_rank: 4,
        head_init: 0.01,
    };
    let by_hand = [
        (Strategy::Full, 48 * 257 + 48 + 49),
        (Strategy::LinearProbe, 49),
        (Strategy::Lora, 4 * 257 + 48 * 4 + 49),
        (Strategy::Adapter, 2 * 48 * 4 + 49),
        (Strategy::Compacter, 8 + 2 * (48 + 4) + 49),
        (Strategy::Bitfit, 48 + 49),
        (Strategy::Ia3, 48 + 49),
    ];
    let bb = Backbone::pretrained(48, 256, &(1..=32).collect::<Vec<_>>(), 1).unwrap();
    for (s, n) in by_hand {
        assert_eq!(trainable_count(s, 48, 257, &shape), n, "{}", s.name());
        let net = Net::new(&bb, s, shape).unwrap();
        assert_eq!(net.trainable(), n);
        assert_eq!(net.init(0).len(), n);
    }
    assert_eq!(by_hand.map(|x| x.1), [12433, 49, 1269, 433, 161, 97, 97]);
    let (_, small_bb) = small();
    for s in Strategy::ALL {
        let net = Net::new(&small_bb, s, SHAPE).unwrap();
        assert_eq!(net.init(1).len(), trainable_count(s, 4, 7, &SHAPE));
    }
    let bad = ModuleSizes {
        compacter_n: 3,
        ..SHAPE
    };
    assert!(
        Net::new(&small_bb, Strategy::Compacter, bad)
            .unwrap_err()
            .to_string()
            .contains("compacter_n")
    );
}

/// Mini-batch SGD approaches the population trajectory as the batch grows: the largest
/// clean-accuracy gap along the path shrinks roughly like 1/√B.
#[test]
fn sgd_approaches_population_gd_as_the_batch_grows() {
    let (task, bb) = small();
    let net = Net::new(&bb, Strategy::Lora, SHAPE).unwrap();
    let theta = net.init(5);
    let mut spec = TrainSpec {
        steps: 150,
        lr: 0.3,
        eval_steps: (0..=150).step_by(10).collect(),
        eps: vec![0.2],
        nodes: 48,
        batch: None,
        seed: 0,
    };
    let pop = train(&task, &net, &theta, &spec).unwrap();
    let mut gap = |batch: usize| -> f64 {
        let mut worst: f64 = 0.0;
        for seed in 0..4 {
            spec.batch = Some(batch);
            spec.seed = seed;
            let t = train(&task, &net, &theta, &spec).unwrap();
            for (a, b) in t.points.iter().zip(&pop.points) {
                worst = worst
                    .max((a.clean - b.clean).abs())
                    .max((a.robust[0] - b.robust[0]).abs());
            }
        }
        worst
    };
    let (g16, g256, g4096) = (gap(16), gap(256), gap(4096));
    println!("max accuracy gap: B=16 {g16:.4}, B=256 {g256:.4}, B=4096 {g4096:.4}");
    assert!(g256 < g16 && g4096 < g256, "gaps must shrink: {g16} {g256} {g4096}");
    assert!(
        g4096 < 0.5 * g256 && g4096 < 0.02,
        "B = 4096 close to the population path: {g4096}"
    );
}

fn tiny_config(extra: &str) -> String {
    format!(
        r#"
[task]
p = 0.9
dim = 24
upstream = 6
d = 6
overlap = 0.5
target_acc = 0.99
eps = [0.3]
{extra}
[network]
hidden = 8
head_init = 0.01
lora_rank = 2
adapter_rank = 2
compacter_n = 2
compacter_rank = 2
seed = 3

[train]
steps = 60
lr = 0.5
nodes = 32
evals = 12
margin = 0.001

[sweep]
d_values = [2, 8]
p_values = [0.9]
overlap_values = [0.0, 1.0]
lr_values = [0.5]
"#
    )
}

/// An empty scratch folder `<tmp>/robustft-dyn-<name>-XXXXXX/<name>`, and the guard of its
/// parent: dropping the guard removes both, however the test ends. Keep the guard bound while
/// the folder is in use.
fn scratch(name: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::Builder::new()
        .prefix(&format!("robustft-dyn-{name}-"))
        .tempdir()
        .unwrap();
    let dir = tmp.path().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    (tmp, dir)
}

/// `simulate dynamics --config CFG --out OUT`.
fn run_dynamics(cfg: &std::path::Path, out: &std::path::Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_simulate"))
        .args([
            "dynamics",
            "--config",
            cfg.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap()
}

#[test]
fn simulate_dynamics_end_to_end() {
    let (_dir_tmp, dir) = scratch("e2e");
    let cfg_path = dir.join("dyn.toml");
    std::fs::write(&cfg_path, tiny_config("")).unwrap();
    let out = dir.join("out");
    let o = run_dynamics(&cfg_path, &out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("Robustness rises, then falls"), "{stdout}");
    for stem in ["dynamics_curves", "dynamics_frontiers", "dynamics_auc_vs_d"] {
        for ext in ["png", "svg", "csv"] {
            assert!(out.join(format!("{stem}.{ext}")).is_file(), "{stem}.{ext}");
        }
    }
    let pred = std::fs::read_to_string(out.join("predicted_auc.csv")).unwrap();
    assert_eq!(pred.lines().count(), 1 + 2 * 7, "header + 2 d values × 7 strategies");
    let sweep = std::fs::read_to_string(out.join("dynamics_sweep.csv")).unwrap();
    assert_eq!(sweep.lines().count(), 1 + 2 * 2, "header + 2 overlaps × 2 d values");
    // The CSV's AUCs are the library's.
    let cfg = DynamicsConfig::load(&cfg_path).unwrap();
    let lib = predicted_auc(&cfg, 8).unwrap();
    for (s, a) in lib {
        let row = pred
            .lines()
            .find(|l| l.starts_with("8,") && l.split(',').nth(2) == Some(s.id()))
            .unwrap_or_else(|| panic!("row for {}", s.id()));
        let got: f64 = row.split(',').nth(4).unwrap().parse().unwrap();
        assert!((got - a).abs() < 1e-9, "{}: {got} vs {a}", s.id());
    }
    // Deterministic: a second run writes the same numbers.
    let out2 = dir.join("out2");
    let o2 = run_dynamics(&cfg_path, &out2);
    assert!(o2.status.success());
    for f in ["dynamics_curves.csv", "predicted_auc.csv", "dynamics_sweep.csv"] {
        assert_eq!(
            std::fs::read(out.join(f)).unwrap(),
            std::fs::read(out2.join(f)).unwrap(),
            "{f}"
        );
    }
}

#[test]
fn bad_dynamics_configs_name_the_key_and_write_nothing() {
    let (_dir_tmp, dir) = scratch("bad");
    let cases = [
        (tiny_config("").replace("p = 0.9\n", "p = 1.2\n"), "task.p"),
        (tiny_config("").replace("hidden = 8", "hidden = 5"), "network.hidden"),
        (
            tiny_config("").replace("compacter_rank = 2", "compacter_rank = 3"),
            "network.compacter_n",
        ),
        (tiny_config("").replace("nodes = 32", "nodes = 8"), "train.nodes"),
        (tiny_config("").replace("eps = [0.3]", "eps = [-0.1]"), "task.eps[0]"),
        (
            tiny_config("").replace("d_values = [2, 8]", "d_values = [2, 80]"),
            "task.dim",
        ),
        (tiny_config("bogus = 1"), "bogus"),
        // Issue 14: unbounded work is refused up front, with the estimate in the error.
        (
            tiny_config("").replace("steps = 60", "steps = 1000000000"),
            "CPU seconds",
        ),
        (
            tiny_config("").replace("hidden = 8", "hidden = 1000000"),
            "network.hidden × task.dim",
        ),
        (tiny_config("").replace("evals = 12", "evals = 100"), "train.evals"),
        (
            tiny_config("").replace("lr = 0.5\n", "lr = \"fast\"\n"),
            "expected f64 (line",
        ),
    ];
    for (i, (text, key)) in cases.iter().enumerate() {
        let path = dir.join(format!("bad{i}.toml"));
        std::fs::write(&path, text).unwrap();
        let out = dir.join(format!("out{i}"));
        let o = run_dynamics(&path, &out);
        assert_eq!(o.status.code(), Some(2), "case {i} should fail with exit 2");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(key), "case {i}: error should name `{key}`: {err}");
        assert!(
            err.contains(path.to_str().unwrap()),
            "case {i}: error should name the file: {err}"
        );
        assert!(!out.exists(), "case {i}: nothing written");
    }
}
