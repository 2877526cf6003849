//! Adversarial fine-tuning (issue 18, part 1): the inner attacks stay in the ε-ball and [0, 1]
//! and increase their loss; on a linear model PGD-AT's gradient is the closed-form gradient of
//! the worst-case loss (Danskin); TRADES' objective has the gradient its finite differences say;
//! TRADES with β = 0 is standard fine-tuning step for step; the configuration refuses what it
//! cannot run, naming the key.

mod common;

use std::path::Path;

use candle_core::{D, DType, Device, Result as CResult, Tensor, Var};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use robustft::engine::attack::{Classifier, kl_per_point, per_point_ce};
use robustft::engine::peft::Strategy;
use robustft::engine::robust::{TrainAttack, Training, adversarial_batch, start_noise, trades_loss};
use robustft::engine::{Vit, VitSpec};

fn uniform(shape: &[usize], lo: f64, hi: f64, seed: u64) -> Tensor {
    let mut rng = StdRng::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n).map(|_| rng.random_range(lo..hi)).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

const ATTACK: TrainAttack = TrainAttack {
    eps: 4.0 / 255.0,
    alpha: 1.0 / 255.0,
    steps: 5,
};

/// On a micro ViT: both inner attacks return images in the ε-ball and in [0, 1] (pixels at the
/// box edges included), move them, and raise the loss they ascend.
#[test]
fn inner_attacks_stay_in_the_ball_and_raise_their_loss() {
    let cfg = common::micro();
    let model = Vit::new(&VitSpec::new(&cfg, Strategy::Full, 3, DType::F32, &Device::Cpu, 3)).unwrap();
    let frozen = model.frozen();
    let mut x = uniform(&[8, 3, 16, 16], 0.0, 1.0, 1).to_dtype(DType::F32).unwrap();
    // Some pixels exactly at 0 and 1, where the box binds.
    x = x
        .clamp(0.05, 0.95)
        .unwrap()
        .affine(1.2, -0.1)
        .unwrap()
        .clamp(0.0, 1.0)
        .unwrap();
    let y = Tensor::from_vec(vec![0u32, 1, 2, 0, 1, 2, 0, 1], 8, &Device::Cpu).unwrap();
    let sum = |t: Tensor| {
        t.sum_all()
            .unwrap()
            .to_dtype(DType::F64)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
    };
    for training in [
        Training::PgdAt(ATTACK),
        Training::Trades {
            attack: ATTACK,
            beta: 6.0,
        },
    ] {
        let noise = start_noise(&training, &x, 7).unwrap();
        let adv = adversarial_batch(&frozen, &training, &x, &y, noise.as_ref()).unwrap();
        let d = common::max_abs_diff(&adv, &x);
        assert!(
            d <= ATTACK.eps + 1e-7 && d > ATTACK.eps / 2.0,
            "{training:?}: moved {d}"
        );
        let (lo, hi) = (
            sum(adv.min_keepdim(0).unwrap().min_all().unwrap()),
            sum(adv.max_all().unwrap()),
        );
        assert!(lo >= 0.0 && hi <= 1.0, "{training:?}: pixels in [{lo}, {hi}]");
        let clean = frozen.logits(&x).unwrap();
        let (before, after) = match training {
            Training::PgdAt(_) => (
                sum(per_point_ce(&clean, &y).unwrap()),
                sum(per_point_ce(&frozen.logits(&adv).unwrap(), &y).unwrap()),
            ),
            _ => {
                let p = candle_nn::ops::softmax(&clean, D::Minus1).unwrap();
                let start = (&x + noise.as_ref().unwrap()).unwrap().clamp(0.0, 1.0).unwrap();
                (
                    sum(kl_per_point(&p, &frozen.logits(&start).unwrap()).unwrap()),
                    sum(kl_per_point(&p, &frozen.logits(&adv).unwrap()).unwrap()),
                )
            }
        };
        assert!(after > before, "{training:?}: loss {before} → {after}");
    }
    // Standard training attacks nothing.
    assert_eq!(
        common::max_abs_diff(
            &adversarial_batch(&frozen, &Training::Standard, &x, &y, None).unwrap(),
            &x
        ),
        0.0
    );
}

/// A two-class linear model on images with pixels in [0.2, 0.8]: the ℓ∞ worst case of the
/// cross-entropy is the corner x* = x − ε·sign(w_y − w_o), where the margin drops by ε‖w_y − w_o‖₁,
/// and by Danskin's theorem ∇_W max_δ CE = ∇_W CE(x*): ∂/∂w_y = −σ(−m*)·x*, ∂/∂w_o = σ(−m*)·x*,
/// m* = (w_y − w_o)·x* + b_y − b_o. PGD-AT's inner attack must reach x* and its gradient match.
#[test]
fn pgd_at_gradient_is_the_worst_case_gradient_on_a_linear_model() {
    struct Linear(Var, Var);
    impl Classifier for Linear {
        fn logits(&self, x: &Tensor) -> CResult<Tensor> {
            x.flatten_from(1)?
                .matmul(&self.0.as_tensor().t()?)?
                .broadcast_add(self.1.as_tensor())
        }
    }
    let dim = 2 * 4 * 4;
    let w = Var::from_tensor(&uniform(&[2, dim], -1.0, 1.0, 11)).unwrap();
    let b = Var::from_tensor(&uniform(&[2], -0.1, 0.1, 12)).unwrap();
    let model = Linear(w.clone(), b.clone());
    let n = 6;
    let x = uniform(&[n, 2, 4, 4], 0.2, 0.8, 13);
    let y = Tensor::from_vec((0..n as u32).map(|i| i % 2).collect::<Vec<_>>(), n, &Device::Cpu).unwrap();
    // From anywhere in the ball, ε/4 sign steps reach the corner within 8 steps.
    let attack = TrainAttack {
        eps: 0.05,
        alpha: 0.0125,
        steps: 10,
    };
    let training = Training::PgdAt(attack);
    let noise = start_noise(&training, &x, 5).unwrap();
    let adv = adversarial_batch(&model, &training, &x, &y, noise.as_ref()).unwrap();
    // The training loss at the adversarial batch and its gradient.
    let loss = candle_nn::loss::cross_entropy(&model.logits(&adv).unwrap(), &y).unwrap();
    let grads = loss.backward().unwrap();
    let gw: Vec<Vec<f64>> = grads.get(w.as_tensor()).unwrap().to_vec2().unwrap();
    let gb: Vec<f64> = grads.get(b.as_tensor()).unwrap().to_vec1().unwrap();
    // The closed form.
    let wv: Vec<Vec<f64>> = w.as_tensor().to_vec2().unwrap();
    let bv: Vec<f64> = b.as_tensor().to_vec1().unwrap();
    let xv: Vec<Vec<f64>> = x.flatten_from(1).unwrap().to_vec2().unwrap();
    let advv: Vec<Vec<f64>> = adv.flatten_from(1).unwrap().to_vec2().unwrap();
    let yv: Vec<u32> = y.to_vec1().unwrap();
    let (mut ew, mut eb) = (vec![vec![0.0; dim]; 2], [0.0; 2]);
    for i in 0..n {
        let (c, o) = (yv[i] as usize, 1 - yv[i] as usize);
        let star: Vec<f64> = (0..dim)
            .map(|j| xv[i][j] - attack.eps * (wv[c][j] - wv[o][j]).signum())
            .collect();
        for j in 0..dim {
            assert!(
                (advv[i][j] - star[j]).abs() < 1e-12,
                "image {i} pixel {j}: not the worst-case corner"
            );
        }
        let m: f64 = (0..dim).map(|j| (wv[c][j] - wv[o][j]) * star[j]).sum::<f64>() + bv[c] - bv[o];
        let l1: f64 = (0..dim).map(|j| (wv[c][j] - wv[o][j]).abs()).sum();
        let m_clean: f64 = (0..dim).map(|j| (wv[c][j] - wv[o][j]) * xv[i][j]).sum::<f64>() + bv[c] - bv[o];
        assert!(
            (m - (m_clean - attack.eps * l1)).abs() < 1e-9,
            "the margin drops by ε‖Δw‖₁"
        );
        let s = 1.0 / (1.0 + m.exp()); // σ(−m)
        for j in 0..dim {
            ew[c][j] -= s * star[j] / n as f64;
            ew[o][j] += s * star[j] / n as f64;
        }
        eb[c] -= s / n as f64;
        eb[o] += s / n as f64;
    }
    for k in 0..2 {
        assert!((gb[k] - eb[k]).abs() < 1e-12, "bias {k}: {} vs {}", gb[k], eb[k]);
        for j in 0..dim {
            assert!(
                (gw[k][j] - ew[k][j]).abs() < 1e-12,
                "w[{k}][{j}]: {} vs {}",
                gw[k][j],
                ew[k][j]
            );
        }
    }
}

/// TRADES' objective CE(z, y) + β·mean KL(softmax z ‖ softmax z'): the gradient candle computes,
/// with respect to both the clean and the adversarial logits, against central differences (f64).
#[test]
fn trades_gradient_matches_finite_differences() {
    let clean = Var::from_tensor(&uniform(&[4, 3], -2.0, 2.0, 21)).unwrap();
    let adv = Var::from_tensor(&uniform(&[4, 3], -2.0, 2.0, 22)).unwrap();
    let y = Tensor::from_vec(vec![0u32, 2, 1, 2], 4, &Device::Cpu).unwrap();
    let beta = 6.0;
    let f = |c: &Tensor, a: &Tensor| trades_loss(c, a, &y, beta).unwrap().to_scalar::<f64>().unwrap();
    let grads = trades_loss(clean.as_tensor(), adv.as_tensor(), &y, beta)
        .unwrap()
        .backward()
        .unwrap();
    let h = 1e-6;
    for (which, var) in [("clean", &clean), ("adversarial", &adv)] {
        let g: Vec<Vec<f64>> = grads.get(var.as_tensor()).unwrap().to_vec2().unwrap();
        let base: Vec<Vec<f64>> = var.as_tensor().to_vec2().unwrap();
        for i in 0..4 {
            for j in 0..3 {
                let bump = |d: f64| {
                    let mut v = base.clone();
                    v[i][j] += d;
                    Tensor::new(v, &Device::Cpu).unwrap()
                };
                let (plus, minus) = if which == "clean" {
                    (f(&bump(h), adv.as_tensor()), f(&bump(-h), adv.as_tensor()))
                } else {
                    (f(clean.as_tensor(), &bump(h)), f(clean.as_tensor(), &bump(-h)))
                };
                let fd = (plus - minus) / (2.0 * h);
                assert!(
                    (g[i][j] - fd).abs() < 1e-7,
                    "{which} logit [{i}, {j}]: {} vs {fd}",
                    g[i][j]
                );
            }
        }
    }
    // The KL term matters: β changes the gradient with respect to the adversarial logits.
    let g0 = trades_loss(clean.as_tensor(), adv.as_tensor(), &y, 0.0)
        .unwrap()
        .backward()
        .unwrap();
    assert!(
        g0.get(adv.as_tensor())
            .is_none_or(|g| common::max_abs_diff(g, &g.zeros_like().unwrap()) == 0.0)
    );
}

fn config(training: &str) -> String {
    format!(
        r#"
name = "robust-test"
model = "tiny"
strategies = ["linear_probe", "lora"]
seeds = [0]
max_steps = 12
schedule = [0, 6, 12]
eval_subset = 32
batch_size = 16
optimizer = "paper"
head = "new"
{training}

[pretrain]
steps = 40
batch_size = 32
lr = 1e-3

[attack]
kind = "pgd"
eps = ["2/255"]
steps = 3

[[datasets]]
name = "simple"
kind = "synthetic"
task = "synthetic-simple"
train_images = 256
ood = "none"
"#
    )
}

/// `validate versus A B --reps 100`.
fn versus(a: &str, b: &str) -> std::process::Output {
    common::validate(&["versus", a, b, "--reps", "100"])
}

/// Per strategy (linear probing, LoRA), each evaluation's step, loss and outcomes.
type Trajectories = Vec<Vec<(u64, Option<f64>, String)>>;

/// Through `validate run`: TRADES with β = 0 records the same losses and the same per-image
/// outcomes as standard fine-tuning at every step (its inner attack runs, its KL weight is 0);
/// PGD-AT changes them, and its records say which training ran.
#[test]
fn trades_with_zero_beta_is_standard_training() {
    let (_base_tmp, base) = common::scratch("robust", "base");
    std::fs::create_dir_all(&base).unwrap();
    let evals = run_standard_trades0_and_pgd_at(&base);
    assert_eq!(
        evals[0], evals[1],
        "TRADES with β = 0 differs from standard fine-tuning"
    );
    for (standard, pgd_at) in evals[0].iter().zip(&evals[2]) {
        assert_ne!(standard, pgd_at, "PGD-AT changed nothing");
    }
    robust_report_and_versus_standard(&base);
    versus_trades0_is_paired_and_exactly_equal(&base);
    two_robust_folders_and_other_radii(&base);
}

/// Runs the three trainings into `base/standard`, `base/trades0` and `base/pgdat`.
fn run_standard_trades0_and_pgd_at(base: &Path) -> Vec<Trajectories> {
    let attack = "train_attack = { eps = \"8/255\", alpha = \"2/255\", steps = 2 }";
    let kinds = [
        ("standard", String::new()),
        ("trades0", format!("training = \"trades\"\ntrades_beta = 0.0\n{attack}")),
        ("pgdat", format!("training = \"pgd-at\"\n{attack}")),
    ];
    let mut evals = Vec::new();
    for (name, extra) in &kinds {
        let cfg = base.join(format!("{name}.toml"));
        std::fs::write(&cfg, config(extra)).unwrap();
        let out = base.join(name);
        let o = common::validate_run(&cfg, &out);
        assert!(o.status.success(), "{name}: {}", String::from_utf8_lossy(&o.stderr));
        let mut per = Vec::new();
        for s in ["linear_probe", "lora"] {
            let recs =
                robustft::validate::sweep::records::read(&out.join("simple").join(s).join("seed0.jsonl")).unwrap();
            if *name == "pgdat" {
                assert_eq!(recs.header.config["training"], "pgd-at", "{s}");
                assert_eq!(recs.header.config["train_attack"]["steps"], 2, "{s}");
            }
            per.push(
                recs.evals
                    .iter()
                    .map(|e| (e.step, e.loss, e.outcomes.clone()))
                    .collect::<Vec<_>>(),
            );
        }
        evals.push(per);
    }
    evals
}

/// Side by side: the report of the robust folder names its training, `validate versus` sets
/// the two against each other.
fn robust_report_and_versus_standard(base: &Path) {
    let auc = std::fs::read_to_string(base.join("pgdat/report/auc.md")).unwrap();
    assert!(
        auc.contains("Fine-tuning: pgd-at fine-tuning (train attack ε = 8/255, α = 2/255, 2 steps)"),
        "{auc}"
    );
    let (std_dir, at_dir) = (base.join("standard"), base.join("pgdat"));
    let o = versus(std_dir.to_str().unwrap(), at_dir.to_str().unwrap());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let md = std::fs::read_to_string(at_dir.join("report/versus-standard.md")).unwrap();
    assert!(md.contains("## simple, ε = 2/255") && md.contains("| LoRA | "), "{md}");
    assert!(md.contains("Spearman ρ between the rankings (2 strategies)"), "{md}");
    assert!(md.starts_with("# Standard vs PGD-AT fine-tuning\n"), "{md}");
    assert!(
        md.contains("PGD-AT: ") && md.contains("(pgd-at fine-tuning (train attack"),
        "{md}"
    );
    assert!(
        md.contains("| Δ AUC |") && md.contains("paired: both folders hold the same seeds"),
        "{md}"
    );
    let csv = std::fs::read_to_string(at_dir.join("report/versus-standard.csv")).unwrap();
    assert_eq!(csv.lines().count(), 3, "{csv}");
}

/// Paired: TRADES with β = 0 recorded what standard training did, so every replicate draws
/// the same seeds and images in both and every difference is exactly 0 — an interval of width
/// 0 (independent draws would give each side its own spread).
fn versus_trades0_is_paired_and_exactly_equal(base: &Path) {
    let std_dir = base.join("standard");
    let t0 = base.join("trades0");
    let o = versus(std_dir.to_str().unwrap(), t0.to_str().unwrap());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let csv = std::fs::read_to_string(t0.join("report/versus-standard.csv")).unwrap();
    let head: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let col = |row: &str, name: &str| -> String {
        let i = head.iter().position(|h| *h == name).unwrap();
        row.split(',').nth(i).unwrap().to_string()
    };
    for row in csv.lines().skip(1) {
        assert_eq!(col(row, "paired"), "true", "{csv}");
        assert_ne!(col(row, "auc_standard_lo"), col(row, "auc_standard_hi"), "{csv}");
        for c in [
            "auc_diff",
            "auc_diff_lo",
            "auc_diff_hi",
            "final_clean_diff_lo",
            "final_clean_diff_hi",
        ] {
            assert_eq!(col(row, c).parse::<f64>().unwrap(), 0.0, "{c}: {csv}");
        }
    }
    // The standard folder grown by a seed the TRADES folder lacks: both are compared on the seed
    // they share, still paired and still exactly equal, and the Markdown names the seed left out.
    let grown = base.join("standard-grown.toml");
    std::fs::write(&grown, config("").replace("seeds = [0]", "seeds = [0, 1]")).unwrap();
    let o = common::validate_run(&grown, &std_dir);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(std_dir.join("simple/lora/seed1.jsonl").exists());
    let o = versus(std_dir.to_str().unwrap(), t0.to_str().unwrap());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let md = std::fs::read_to_string(t0.join("report/versus-standard.md")).unwrap();
    assert!(
        md.contains("paired: both folders hold the same seeds")
            && md.contains(", on the seeds both folders hold (simple 0, left out: standard's 1);"),
        "{md}"
    );
    let csv = std::fs::read_to_string(t0.join("report/versus-standard.csv")).unwrap();
    for row in csv.lines().skip(1) {
        assert_eq!(col(row, "paired"), "true", "{csv}");
        for c in ["auc_diff", "auc_diff_lo", "auc_diff_hi"] {
            assert_eq!(col(row, c).parse::<f64>().unwrap(), 0.0, "{c}: {csv}");
        }
    }
}

/// Two robust folders: the file is named by the first folder's training, so the TRADES
/// folder's comparison with standard training stays as it was. Folders that measure
/// different things are refused.
fn two_robust_folders_and_other_radii(base: &Path) {
    let (at_dir, t0) = (base.join("pgdat"), base.join("trades0"));
    let before = std::fs::read(t0.join("report/versus-standard.md")).unwrap();
    let o = versus(at_dir.to_str().unwrap(), t0.to_str().unwrap());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read(t0.join("report/versus-standard.md")).unwrap(), before);
    let md = std::fs::read_to_string(t0.join("report/versus-pgd-at.md")).unwrap();
    assert!(
        md.starts_with("# PGD-AT vs TRADES fine-tuning\n") && md.contains("Δ = TRADES − PGD-AT"),
        "{md}"
    );
    let other = base.join("other.toml");
    std::fs::write(&other, config("").replace("eps = [\"2/255\"]", "eps = [\"1/255\"]")).unwrap();
    let o = common::validate_run(&other, &base.join("other"));
    assert!(o.status.success());
    let o = versus(base.join("other").to_str().unwrap(), at_dir.to_str().unwrap());
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("radii"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Bad robust-training configurations: one error naming the key, nothing written.
#[test]
fn robust_training_config_errors() {
    let (_base_tmp, base) = common::scratch("robust", "bad");
    std::fs::create_dir_all(&base).unwrap();
    let cases = [
        ("training = \"pgd-at\"", "train_attack"),
        ("train_attack = { eps = \"4/255\", steps = 3 }", "train_attack"),
        ("trades_beta = 1.0", "trades_beta"),
        (
            "training = \"trades\"\ntrades_beta = -1.0\ntrain_attack = { eps = \"4/255\", steps = 3 }",
            "trades_beta",
        ),
        (
            "training = \"pgd-at\"\ntrain_attack = { eps = 2.0, steps = 3 }",
            "train_attack.eps",
        ),
        (
            "training = \"pgd-at\"\ntrain_attack = { eps = \"4/255\", steps = 0 }",
            "train_attack.steps",
        ),
        ("training = \"fgsm\"", "training"),
    ];
    for (i, (extra, key)) in cases.iter().enumerate() {
        let cfg = base.join(format!("bad{i}.toml"));
        std::fs::write(&cfg, config(extra)).unwrap();
        let out = base.join(format!("out{i}"));
        let o = common::validate_run(&cfg, &out);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{extra}: {err}");
        assert!(err.contains(key), "{extra}: {err}");
        assert!(!out.exists(), "{extra}: wrote {}", out.display());
    }
}
