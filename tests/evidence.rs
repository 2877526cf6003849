//! The evidence machinery: upstream pretraining on a real-format dataset (class subset,
//! determinism, content-hash cache), class remaps in run headers, step 0, the learning-rate
//! sweep, and the verdict logic on hand-made records with planted answers.

mod common;

use std::path::{Path, PathBuf};

use candle_core::Device;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use robustft::engine::peft::Strategy;
use robustft::tradeoff::wilson;
use robustft::validate::RunConfig;
use robustft::validate::ValidRun;
use robustft::validate::study::verdict::{Verdict, verdict};
use robustft::validate::sweep::data;
use robustft::validate::sweep::records::{
    self, EvalRecord, Header, RobustAt, RunRecords, SCHEMA_VERSION, Separability,
};
use robustft::validate::sweep::runner;
use robustft::validate::sweep::tune;
use robustft::validate::sweep::upstream;

/// An empty scratch folder (see [`common::scratch`]), created: keep the guard bound while the
/// folder is in use.
fn scratch(name: &str) -> (tempfile::TempDir, PathBuf) {
    let (tmp, d) = common::scratch("evidence", name);
    std::fs::create_dir_all(&d).unwrap();
    (tmp, d)
}

/// A Fashion-MNIST-format folder: `n_train` / `n_test` 28×28 images, labels cycling 0..9, each
/// image a class-dependent pattern (so a model can learn something).
fn write_fmnist(dir: &Path, n_train: usize, n_test: usize) {
    let idx = |ndims: u8, dims: &[u32], data: &[u8]| {
        let mut v = vec![0, 0, 8, ndims];
        for d in dims {
            v.extend(d.to_be_bytes());
        }
        v.extend_from_slice(data);
        v
    };
    for (prefix, n, salt) in [("train", n_train, 0usize), ("t10k", n_test, 7)] {
        let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
        let pixels: Vec<u8> = (0..n * 784)
            .map(|p| {
                let (i, j) = (p / 784, p % 784);
                let l = labels[i] as usize;
                (((j / 28 + l * 3) % 10) * 25 + (i * 13 + j + salt) % 7) as u8
            })
            .collect();
        std::fs::write(
            dir.join(format!("{prefix}-images-idx3-ubyte")),
            idx(3, &[n as u32, 28, 28], &pixels),
        )
        .unwrap();
        std::fs::write(
            dir.join(format!("{prefix}-labels-idx1-ubyte")),
            idx(1, &[n as u32], &labels),
        )
        .unwrap();
    }
}

fn transfer_config(data_dir: &Path) -> ValidRun {
    let text = format!(
        r#"
name = "transfer"
model = {{ image_size = 14, patch_size = 7, dim = 32, depth = 1, heads = 2, mlp_dim = 64 }}
strategies = ["linear_probe", "bitfit"]
seeds = [0]
max_steps = 4
schedule = [0, 2, 4]
eval_subset = 20
eval_seed = 0
batch_size = 8
head = "new"
optimizer = {{ lr = {{ linear_probe = 1e-2, bitfit = 1e-2 }}, warmup_steps = 1 }}
[pretrain]
steps = 6
batch_size = 16
lr = 1e-3
dataset = {{ kind = "fashion-mnist", data_dir = "{d}", classes = [0, 1, 2] }}
[attack]
kind = "pgd"
eps = ["1/255", "8/255"]
steps = 3
[[datasets]]
name = "pair"
kind = "fashion-mnist"
data_dir = "{d}"
classes = [7, 3]
train_images = 60
ood = "corruption:gaussian_noise:3"
"#,
        d = data_dir.display()
    );
    RunConfig::from_toml(&text, Path::new("transfer.toml"))
        .unwrap()
        .validate()
        .unwrap()
}

#[test]
fn upstream_on_a_dataset_is_deterministic_cached_and_recorded() {
    let (_dir_tmp, dir) = scratch("upstream");
    let data_dir = dir.join("fmnist");
    std::fs::create_dir_all(&data_dir).unwrap();
    write_fmnist(&data_dir, 300, 100);
    let run = transfer_config(&data_dir);
    let dev = Device::Cpu;
    let (a, b) = (dir.join("a"), dir.join("b"));
    let up = upstream::upstream(&run, &a, &dev, true).unwrap();
    let info = up.info.clone().expect("pretrained here");
    assert_eq!(info.classes, Some(vec![0, 1, 2]));
    // 300 training images, 30 of each of the three classes; 10 held-out test images each.
    assert_eq!((info.train_images, info.held_out_n), (90, 30));
    assert!((0.0..=1.0).contains(&info.held_out_acc));
    let bytes = std::fs::read(&up.path).unwrap();
    let mtime = std::fs::metadata(&up.path).unwrap().modified().unwrap();
    // Cached: the same folder returns the same file untouched, and the sidecar's record.
    let again = upstream::upstream(&run, &a, &dev, true).unwrap();
    assert_eq!(again.path, up.path);
    assert_eq!(std::fs::metadata(&up.path).unwrap().modified().unwrap(), mtime);
    assert_eq!(again.info, Some(info.clone()));
    // Deterministic: another folder recomputes the same bytes under the same hash.
    let other = upstream::upstream(&run, &b, &dev, true).unwrap();
    assert_eq!(other.path.file_name(), up.path.file_name());
    assert_eq!(std::fs::read(&other.path).unwrap(), bytes);
    assert_eq!(other.info.unwrap().held_out_acc, info.held_out_acc);
    // Content hash: changed data files give another checkpoint.
    write_fmnist(&data_dir, 310, 100);
    let changed = upstream::upstream(&run, &dir.join("c"), &dev, true).unwrap();
    assert_ne!(changed.path.file_name(), up.path.file_name());
    write_fmnist(&data_dir, 300, 100);

    // The downstream class subset: labels 7 → 0 and 3 → 1, 30 training images each.
    let p = data::prepare(&run.config.datasets[0], &run.ood[0], 14, 20, 0, "datasets[0].").unwrap();
    assert_eq!(p.train.classes, 2);
    for l in [0, 1] {
        assert_eq!(p.train.labels.iter().filter(|x| **x == l).count(), 30);
    }
    let raw =
        robustft::engine::data::files::fashion_mnist(&data_dir, robustft::engine::data::files::Split::Train).unwrap();
    let first7 = raw.labels.iter().position(|l| *l == 7).unwrap();
    let want = raw.subset(&[first7]).to_rgb().resize(14);
    let got0 = p.train.labels.iter().position(|l| *l == 0).unwrap();
    assert_eq!(
        p.train.subset(&[got0]).images,
        want.images,
        "label 0 is the first image of class 7"
    );

    // A run records the remap, the upstream, the separability, step 0 and both radii.
    runner::run_all(&run, &a, &dev, true).unwrap();
    let mut step0 = Vec::new();
    for s in ["linear_probe", "bitfit"] {
        let r = records::read(&a.join("pair").join(s).join("seed0.jsonl")).unwrap();
        assert_eq!(r.header.class_map, Some(vec![7, 3]));
        assert_eq!(r.header.upstream.as_ref(), Some(&info));
        assert_eq!(r.header.eps, vec![1.0 / 255.0, 8.0 / 255.0]);
        assert_eq!(r.header.new_head, Some(true));
        let sep = r.header.separability.clone().unwrap();
        assert!((0.0..=1.0).contains(&sep.ncm_acc) && sep.upstream_similarity.is_some());
        assert_eq!(r.evals.iter().map(|e| e.step).collect::<Vec<_>>(), vec![0, 2, 4]);
        assert_eq!(r.evals[0].loss, None);
        for e in &r.evals {
            assert_eq!(e.outcomes.len(), 20);
            assert!(e.robust[1].acc <= e.robust[0].acc && e.robust[0].acc <= e.clean_acc);
            let clean = e.outcomes.bytes().filter(|b| *b >= b'1').count();
            assert_eq!(clean as f64 / 20.0, e.clean_acc);
        }
        step0.push(r.evals[0].clone());
    }
    // Step 0 is the pretrained backbone with the seed's fresh head: the same function for linear
    // probing and BitFit (which differ only in what trains), so the same outcomes.
    assert_eq!(step0[0].outcomes, step0[1].outcomes);
}

#[test]
fn tune_sweeps_chooses_and_resumes() {
    let (_dir_tmp, dir) = scratch("tune");
    let run = RunConfig::preset("smoke").unwrap();
    let spec = tune::TuneSpec {
        lrs: vec![1e-3, 1e-2],
        val_images: 64,
        seed: 0,
    };
    let md = tune::tune(&run, &dir, &spec, &Device::Cpu, true).unwrap();
    let cells = std::fs::read_to_string(dir.join("tune/cells.jsonl")).unwrap();
    // 3 strategies × 2 rates at max_steps, plus the chosen rate at twice the steps.
    assert_eq!(cells.lines().count(), 3 * 2 + 3);
    let parsed: Vec<tune::TuneCell> = cells.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    for s in ["linear_probe", "lora", "bitfit"] {
        let at = |lr: f64| {
            parsed
                .iter()
                .find(|c| c.strategy == s && c.lr == lr && c.steps == 12)
                .unwrap()
                .val_acc
        };
        let best = if at(1e-2) > at(1e-3) { 1e-2 } else { 1e-3 };
        assert!(md.contains(&format!("{s} = {best:e}")), "{s}: {md}");
        assert!(parsed.iter().any(|c| c.strategy == s && c.lr == best && c.steps == 24));
        assert!(parsed.iter().all(|c| c.val_n == 64));
    }
    assert!(md.contains("Plateau check") && md.contains("[optimizer]"), "{md}");
    // Resumed: nothing recomputed.
    let before = std::fs::read_to_string(dir.join("tune/cells.jsonl")).unwrap();
    tune::tune(&run, &dir, &spec, &Device::Cpu, true).unwrap();
    assert_eq!(std::fs::read_to_string(dir.join("tune/cells.jsonl")).unwrap(), before);
}

/// One hand-made run: per image and step, clean-correct with probability `clean[t]`, robust with
/// probability `robust[t]` overall; OOD outcomes copy the clean ones.
#[allow(clippy::too_many_arguments)]
fn planted(
    dir: &Path,
    ds: &str,
    kappa: f64,
    s: Strategy,
    seed: u64,
    n: usize,
    clean: &[f64],
    robust: &[f64],
    rng: &mut StdRng,
) {
    let levels: Vec<Vec<u8>> = (0..5)
        .map(|t| {
            (0..n)
                .map(|_| {
                    let u: f64 = rng.random();
                    if u < robust[t] {
                        2
                    } else if u < clean[t] {
                        1
                    } else {
                        0
                    }
                })
                .collect()
        })
        .collect();
    let run = Planted {
        kappa,
        ..Planted::new(ds, s, seed)
    };
    run.write(dir, &levels);
}

/// A hand-made run's header fields; levels per step and image are given to [`Planted::write`].
struct Planted {
    ds: String,
    s: Strategy,
    seed: u64,
    kappa: f64,
    config: serde_json::Value,
    eval_set: String,
    /// Training loss per step after step 0 (None: 0.5 everywhere).
    losses: Option<[f64; 4]>,
}

impl Planted {
    fn new(ds: &str, s: Strategy, seed: u64) -> Planted {
        Planted {
            ds: ds.into(),
            s,
            seed,
            kappa: 0.5,
            config: serde_json::json!({}),
            eval_set: format!("planted-{ds}"),
            losses: None,
        }
    }

    /// Writes the run's records: steps 0, 10, 20, 40, 80, one radius (1/255), OOD = clean.
    fn write(&self, dir: &Path, levels: &[Vec<u8>]) {
        let steps: Vec<u64> = vec![0, 10, 20, 40, 80];
        assert_eq!(levels.len(), steps.len());
        let (ds, s, seed) = (self.ds.as_str(), self.s, self.seed);
        let eps = 1.0 / 255.0;
        let header = Header {
            kind: "header".into(),
            schema_version: SCHEMA_VERSION,
            config: self.config.clone(),
            config_hash: "planted".into(),
            git_commit: None,
            crate_version: "test".into(),
            device: "cpu".into(),
            dataset: ds.into(),
            strategy: s.id().into(),
            seed,
            trainable_backbone: s.vit_b16_params() as usize,
            trainable_head: 10,
            total_params: 100,
            eval_steps: steps.clone(),
            eps: vec![eps],
            upstream: None,
            class_map: None,
            separability: Some(Separability {
                ncm_acc: self.kappa,
                ncm_kappa: self.kappa,
                n: 100,
                upstream_similarity: None,
            }),
            lr: Some(1e-3),
            eval_set: Some(self.eval_set.clone()),
            new_head: Some(true),
            capped: Vec::new(),
            cwd_commit: None,
            theory_d: None,
        };
        let evals = steps
            .iter()
            .zip(levels)
            .enumerate()
            .map(|(t, (&step, levels))| {
                let n = levels.len();
                let c = levels.iter().filter(|l| **l >= 1).count() as u64;
                let r = levels.iter().filter(|l| **l >= 2).count() as u64;
                let ood: Vec<bool> = levels.iter().map(|l| *l >= 1).collect();
                EvalRecord {
                    kind: "eval".into(),
                    schema_version: SCHEMA_VERSION,
                    config_hash: "planted".into(),
                    seed,
                    step,
                    clean_acc: c as f64 / n as f64,
                    clean_ci: wilson(c, n as u64).unwrap(),
                    robust: vec![RobustAt {
                        eps,
                        acc: r as f64 / n as f64,
                        ci: wilson(r, n as u64).unwrap(),
                    }],
                    ood_acc: Some(c as f64 / n as f64),
                    ood_ci: Some(wilson(c, n as u64).unwrap()),
                    n_eval: n,
                    outcomes: records::encode_levels(levels),
                    ood_outcomes: Some(records::encode_bools(&ood)),
                    loss: (step > 0).then(|| self.losses.map_or(0.5, |l| l[t - 1])),
                    elapsed_s: 0.0,
                    train_s: 0.0,
                    eval_s: 0.0,
                    attack_s: 0.0,
                }
            })
            .collect();
        let path = dir.join(ds).join(s.id()).join(format!("seed{seed}.jsonl"));
        records::write(&path, &RunRecords { header, evals }).unwrap();
    }
}

/// Levels of `n` images with exactly `clean` clean-correct and, among them, the first `robust`
/// robust ones.
fn counted(n: usize, clean: usize, robust: usize) -> Vec<u8> {
    (0..n)
        .map(|i| {
            if i < robust {
                2
            } else if i < clean {
                1
            } else {
                0
            }
        })
        .collect()
}

/// Levels of 200 images per step, from (clean, robust) counts (see [`counted`]).
fn curve(pts: &[(usize, usize)]) -> Vec<Vec<u8>> {
    pts.iter().map(|&(c, r)| counted(200, c, r)).collect()
}

/// The findings' section "best achievable robustness at the clean target" on hand-made folders
/// with known counts (200 images): a standard folder (Full and LoRA, seeds 0 and 1) and a PGD-AT
/// one (Full, seeds 0 and 1). The default target is the best seed-mean final clean accuracy
/// minus a point (Full: (196 + 194) / 400 − 0.01 = 0.965); per seed the most robust step at
/// or above it is picked.
#[test]
fn best_robustness_at_the_clean_target() {
    let (_root_tmp, root) = scratch("at-target");
    let (standard, robust) = (root.join("standard"), root.join("pgd"));
    plant_standard_and_pgd_at(&standard, &robust);
    the_default_target_picks_the_most_robust_step(&standard, &robust);
    an_explicit_target_and_other_images(&root, &standard, &robust);
}

/// Standard Full and LoRA in `standard`, PGD-AT Full in `robust`, seeds 0 and 1.
fn plant_standard_and_pgd_at(standard: &Path, robust: &Path) {
    let base = [(40, 20), (180, 150), (190, 120), (195, 100)];
    for (seed, last) in [(0, (196, 90)), (1, (194, 80))] {
        let mut full = base.to_vec();
        full.push(last);
        Planted::new("t", Strategy::Full, seed).write(standard, &curve(&full));
        let lora = [(40, 20), (150, 100), (180, 90), (185, 80), (190, 60)];
        Planted::new("t", Strategy::Lora, seed).write(standard, &curve(&lora));
        let at = [
            (40, 20),
            (170, 150),
            (180, 160),
            (190, 170),
            (196, 150 - 10 * seed as usize),
        ];
        let run = Planted {
            config: serde_json::json!({ "training": "pgd-at" }),
            ..Planted::new("t", Strategy::Full, seed)
        };
        run.write(robust, &curve(&at));
    }
}

/// The default target (0.965); per seed the most robust step at or above it.
fn the_default_target_picks_the_most_robust_step(standard: &Path, robust: &Path) {
    use robustft::validate::study::verdict::verdict_with;
    let f = verdict_with(standard, &[robust.to_path_buf()], None, 400).unwrap();
    let t = f.at_target.as_ref().expect("outcomes recorded");
    assert!((t.targets["t"] - 0.965).abs() < 1e-12, "{:?}", t.targets);
    assert_eq!(t.seeds["t"], vec![0, 1]);
    let labels: Vec<&str> = t.sources.iter().map(|s| s.label.as_str()).collect();
    assert_eq!(labels, ["standard", "pgd-at"]);
    let cell = |s: Strategy, src: usize| t.cells.iter().find(|c| c.strategy == s && c.source == src);
    // Standard Full: step 40 (0.975, robust 0.5) beats the final step (robust 0.45 / 0.40) on
    // both seeds; step 20 (0.95) is below the target.
    let full = cell(Strategy::Full, 0).unwrap();
    assert!(
        (full.robust.unwrap() - 0.5).abs() < 1e-12 && (full.clean - 0.975).abs() < 1e-12,
        "{full:?}"
    );
    assert!(full.gain.is_none() && full.point.is_none());
    let ci = full.ci.unwrap();
    assert!(ci.lo < 0.5 && ci.hi > 0.5 && ci.hi - ci.lo < 0.2, "{ci:?}");
    // PGD-AT Full: step 40 is below the target (0.95); the final step, robust 0.75 and 0.70.
    let at = cell(Strategy::Full, 1).unwrap();
    assert!((at.robust.unwrap() - 0.725).abs() < 1e-12, "{at:?}");
    let (gain, gci) = at.gain.unwrap();
    assert!((gain - 0.225).abs() < 1e-12 && gci.unwrap().lo > 0.1, "{:?}", at.gain);
    // LoRA never reaches 0.965: "not reached" with its best clean accuracy; not run under PGD-AT.
    let lora = cell(Strategy::Lora, 0).unwrap();
    assert!(
        lora.robust.is_none() && (lora.clean - 0.95).abs() < 1e-12 && lora.reached == 0,
        "{lora:?}"
    );
    assert!(cell(Strategy::Lora, 1).is_none());
    let md = std::fs::read_to_string(standard.join("report/findings.md")).unwrap();
    assert!(
        md.contains("| t | 1/255 | LoRA | not reached (best clean 0.950) | – |"),
        "{md}"
    );
    assert!(md.contains("| standard | pgd-at |"), "{md}");
    assert!(md.contains("standard = this folder, pgd-at = "), "{md}");
    // The robust folder set against this one (validate versus), headings one level down.
    assert!(md.contains("\n## Standard vs PGD-AT fine-tuning: "), "{md}");
    assert!(md.contains("\n### t, ε = 1/255\n"), "{md}");
    assert!(
        !robust.join("report/versus-standard.md").exists(),
        "nothing written to the other folder"
    );
    let csv = std::fs::read_to_string(standard.join("report/best_at_target.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 3, "{csv}");
}

/// An explicit target; a target out of range, a folder evaluated on other images: refused.
fn an_explicit_target_and_other_images(root: &Path, standard: &Path, robust: &Path) {
    use robustft::validate::study::verdict::verdict_with;
    // An explicit target: at 0.98 seed 1 of standard Full never qualifies (its best clean
    // accuracy is 0.975; seed 0's 0.98), so the cell is "not reached" with their mean.
    let f = verdict_with(standard, &[robust.to_path_buf()], Some(0.98), 400).unwrap();
    let t = f.at_target.unwrap();
    let full = t
        .cells
        .iter()
        .find(|c| c.strategy == Strategy::Full && c.source == 0)
        .unwrap();
    assert!(
        full.robust.is_none() && (full.clean - 0.9775).abs() < 1e-12 && full.reached == 1,
        "{full:?}"
    );
    // The seed mean of the bests (0.9775) lies below 0.98 here, but it need not: the table says
    // how many seeds reach the target rather than leave a mean above it next to "not reached".
    let md = t.markdown(&[standard.to_path_buf(), robust.to_path_buf()]);
    assert!(
        md.contains("| t | 1/255 | Full | reached by 1 of 2 seeds only (best clean 0.978) |"),
        "{md}"
    );
    let e = verdict_with(standard, &[], Some(1.5), 400)
        .err()
        .expect("refused")
        .to_string();
    assert!(e.contains("--min-clean"), "{e}");
    // A folder evaluated on other images is refused, naming the task.
    let other = root.join("other");
    let run = Planted {
        eval_set: "elsewhere".into(),
        ..Planted::new("t", Strategy::Full, 0)
    };
    run.write(&other, &curve(&[(1, 0), (1, 0), (1, 0), (1, 0), (1, 0)]));
    let e = verdict_with(standard, &[other], None, 400)
        .err()
        .expect("refused")
        .to_string();
    assert!(e.contains("task t, seed 0, was evaluated on other images"), "{e}");
}

/// Planted answers: on "simple" robustness rises to step 20 and falls (every strategy), AUC grows
/// with the parameter count (the reverse of the k+d bound's ranking; Full best, Linear Probing
/// worst, BitFit mid-table) and OOD copies clean accuracy; on "complex" every curve is flat with
/// noise on 100 images.
#[test]
fn verdicts_on_planted_records() {
    let (_dir_tmp, dir) = scratch("verdict");
    plant_rise_then_fall_and_flat(&dir);
    let f = verdict(&dir, 400).unwrap();
    let cells = |finding: &str, ds: &str| {
        f.cells
            .iter()
            .filter(|c| c.finding == finding && c.dataset == ds)
            .collect::<Vec<_>>()
    };
    // 1: the planted rise-then-fall holds in every strategy (rise and drop cells per strategy).
    let c1 = cells("1", "simple");
    assert_eq!(c1.len(), 21);
    assert!(c1.iter().all(|c| c.verdict == Verdict::Holds), "{:#?}", c1);
    assert!(c1.iter().all(|c| c.note.contains("peak step 20")), "{:#?}", c1);
    assert!(c1.iter().all(|c| c.estimate > 0.05), "{:#?}", c1);
    // A flat, noisy curve: never "holds"; mostly undecided.
    let flat = cells("1", "complex");
    assert!(flat.iter().all(|c| c.verdict != Verdict::Holds), "{:#?}", flat);
    let undecided = flat.iter().filter(|c| c.verdict == Verdict::Undecided).count();
    assert!(2 * undecided > flat.len(), "{:#?}", flat);
    // 2: Linear Probing and Full at opposite ends: "both at the bottom" does not hold.
    let c2 = cells("2", "simple");
    assert_eq!(c2.len(), 1);
    assert_eq!(c2[0].verdict, Verdict::DoesNotHold);
    assert_eq!(c2[0].estimate, 0.0);
    // 3: BitFit is mid-table on the more separable task: does not hold.
    assert_eq!(f.rows[2].verdict, Verdict::DoesNotHold, "{:?}", f.rows[2]);
    assert!(f.rows[2].measured.contains("simple = simple"), "{}", f.rows[2].measured);
    // 4: OOD equal to clean along training and rising throughout: holds.
    let c4: Vec<_> = cells("4", "simple")
        .into_iter()
        .filter(|c| c.statistic.starts_with("Pearson"))
        .collect();
    assert_eq!(c4.len(), 7);
    assert!(
        c4.iter()
            .all(|c| c.verdict == Verdict::Holds && (c.estimate - 1.0).abs() < 1e-12),
        "{:#?}",
        c4
    );
    // 5a: the measured ranking is the bound's reversed: ρ = −1, does not hold.
    let c5 = cells("5a", "simple");
    assert!(
        (c5[0].estimate + 1.0).abs() < 1e-12 && c5[0].verdict == Verdict::DoesNotHold,
        "{:#?}",
        c5
    );
    for name in ["findings.md", "findings.csv", "findings_cells.csv"] {
        assert!(dir.join("report").join(name).exists(), "{name}");
    }
    assert!(
        f.markdown.contains("| 1 | Robustness rises, then falls"),
        "{}",
        f.markdown
    );
}

/// On "simple" every strategy's robustness rises to step 20 and falls, scaled by its rank in
/// parameter count; on "complex" every curve is flat (seeds 0 to 2).
fn plant_rise_then_fall_and_flat(dir: &Path) {
    let mut rng = StdRng::seed_from_u64(2025);
    let mut by_params = Strategy::ALL.to_vec();
    by_params.sort_by_key(|s| s.vit_b16_params());
    for seed in 0..3 {
        for (rank, &s) in by_params.iter().enumerate() {
            let f = 0.4 + 0.1 * rank as f64;
            let rob: Vec<f64> = [0.05, 0.3, 0.6, 0.3, 0.15].iter().map(|r| r * f).collect();
            planted(
                dir,
                "simple",
                0.9,
                s,
                seed,
                400,
                &[0.2, 0.8, 0.85, 0.9, 0.92],
                &rob,
                &mut rng,
            );
            planted(
                dir,
                "complex",
                0.4,
                s,
                seed,
                100,
                &[0.2, 0.8, 0.8, 0.8, 0.8],
                &[0.1, 0.5, 0.5, 0.5, 0.5],
                &mut rng,
            );
        }
    }
}

/// Schema 1 records with one seed (the earlier cpu-default recording) have nothing to resample:
/// no interval, so no verdict but "undecided" — never a zero-width interval around one number.
#[test]
fn one_seed_without_outcomes_decides_nothing() {
    let (_dir_tmp, dir) = scratch("v1");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("validation/results/cpu-default");
    for ds in ["simple", "complex"] {
        for s in Strategy::ALL {
            let from = src.join(ds).join(s.id()).join("seed0.jsonl");
            let to = dir.join(ds).join(s.id());
            std::fs::create_dir_all(&to).unwrap();
            std::fs::copy(&from, to.join("seed0.jsonl")).unwrap();
        }
    }
    let f = verdict(&dir, 200).unwrap();
    assert!(!f.cells.is_empty());
    assert!(
        f.cells
            .iter()
            .all(|c| c.verdict == Verdict::Undecided && c.ci.is_none()),
        "{:#?}",
        f.cells
    );
    assert!(f.rows.iter().all(|r| r.verdict == Verdict::Undecided));
    assert!(f.markdown.contains("no intervals"), "{}", f.markdown);
    let r = robustft::validate::study::report::write_report(&dir).unwrap();
    assert!(r.cells.values().all(|c| c.ci.lo.is_nan()));
}

/// Two strategies with the same outcomes tie in AUC: the summary names both, never one of them as
/// "the" best (it used to print whichever came first).
#[test]
fn a_tie_in_auc_is_reported_as_a_tie() {
    let (_dir_tmp, dir) = scratch("tie");
    for (s, level) in [(Strategy::Full, 0.5), (Strategy::Lora, 0.9), (Strategy::Bitfit, 0.9)] {
        let clean = [0.2, 0.8 * level, 0.85 * level, 0.9 * level, 0.92 * level];
        let robust = [0.1, 0.5 * level, 0.45 * level, 0.4 * level, 0.4 * level];
        // The same seed for LoRA and BitFit: identical outcomes, identical AUC.
        planted(
            &dir,
            "simple",
            0.9,
            s,
            0,
            60,
            &clean,
            &robust,
            &mut StdRng::seed_from_u64(9),
        );
    }
    // On another task, a strategy whose robustness ends far above everywhere else.
    let rising = [0.0, 0.1, 0.2, 0.3, 0.9];
    let clean = [0.2, 0.3, 0.4, 0.5, 0.95];
    planted(
        &dir,
        "other",
        0.5,
        Strategy::Adapter,
        0,
        60,
        &clean,
        &rising,
        &mut StdRng::seed_from_u64(9),
    );
    let rep = robustft::validate::study::report::write_report(&dir).unwrap();
    assert!(
        rep.summary.contains("simple: best AUC tied: LoRA = BitFit"),
        "{}",
        rep.summary
    );
    // peaks.csv's rises_then_falls is tradeoff::peak on the curve it reports: the planted
    // rise-then-fall curves say true, the rising one false.
    let csv = std::fs::read_to_string(dir.join("report/peaks.csv")).unwrap();
    assert!(
        csv.starts_with("dataset,eps,strategy,peak_step,peak_robust,final_step,final_robust,drop,rises_then_falls")
    );
    for line in csv.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let want = if f[2] == "adapter" { "false" } else { "true" };
        assert_eq!(f[8], want, "{line}");
        let (peak, last): (f64, f64) = (f[4].parse().unwrap(), f[6].parse().unwrap());
        assert!((f[7].parse::<f64>().unwrap() - (peak - last)).abs() < 1e-12, "{line}");
    }
}

/// Training that went wrong is flagged from the records: a loss that ends above its first
/// interval's (diverged), or a final model significantly worse on clean images than the run's best
/// evaluation (exact McNemar on the images that changed, Bonferroni over the 4 earlier
/// evaluations). Planted counts (100 images): 25 lost and 0 gained gives p = 4 · 2⁻²⁵; 2 lost
/// gives 4 · 2⁻² = 1, not flagged; a final step that ties the best is not a drop.
#[test]
fn unstable_training_is_flagged() {
    let (_dir_tmp, dir) = scratch("unstable");
    let run = |s: Strategy, clean: [usize; 5], losses: Option<[f64; 4]>| {
        let levels: Vec<Vec<u8>> = clean.iter().map(|&c| counted(100, c, c / 2)).collect();
        Planted {
            losses,
            ..Planted::new("simple", s, 0)
        }
        .write(&dir, &levels);
    };
    run(Strategy::Full, [20, 60, 80, 90, 90], None);
    run(Strategy::Lora, [20, 60, 95, 80, 70], None);
    run(Strategy::Bitfit, [20, 60, 80, 90, 92], Some([1.0, 0.8, 2.0, 3.0]));
    run(Strategy::Ia3, [20, 60, 80, 79, 78], Some([1.0, 0.8, 0.9, 0.95]));
    let study = robustft::validate::study::analysis::Study::load(&dir).unwrap();
    let d = &study.datasets[0];
    let get = |s: Strategy| robustft::validate::study::report::stability(d.runs[&s][0].as_ref().unwrap());
    let full = get(Strategy::Full);
    assert_eq!(
        (full.best_step, full.lost, full.gained, full.p_drop),
        (40, 0, 0, Some(1.0))
    );
    assert!(full.flag().is_none() && !full.diverged && !full.regressed);
    let lora = get(Strategy::Lora);
    assert_eq!(
        (lora.best_step, lora.best_clean, lora.lost, lora.gained),
        (20, 0.95, 25, 0)
    );
    let p = lora.p_drop.unwrap();
    assert!((p - 4.0 / 2f64.powi(25)).abs() < 1e-18, "{p}");
    assert!(lora.regressed && !lora.diverged);
    let bitfit = get(Strategy::Bitfit);
    assert_eq!((bitfit.first_loss, bitfit.final_loss), (Some(1.0), Some(3.0)));
    assert!(bitfit.diverged && !bitfit.regressed);
    let ia3 = get(Strategy::Ia3);
    assert_eq!((ia3.lost, ia3.gained, ia3.p_drop), (2, 0, Some(1.0)));
    assert!(ia3.flag().is_none());
    // The report's summary, convergence.csv and the findings name the flagged runs only.
    let rep = robustft::validate::study::report::write_report(&dir).unwrap();
    let line = rep
        .summary
        .lines()
        .find(|l| l.starts_with("UNSTABLE TRAINING"))
        .unwrap()
        .to_string();
    assert!(
        line.contains("simple/lora/seed0 (clean 0.950 at step 20 → final, 25 images lost, 0 gained, p = 1.2e-7)")
            && line.contains("simple/bitfit/seed0 (loss 1.000 → 3.000)")
            && !line.contains("full")
            && !line.contains("ia3"),
        "{line}"
    );
    let csv = std::fs::read_to_string(dir.join("report/convergence.csv")).unwrap();
    assert!(csv.lines().next().unwrap().ends_with("p_drop,regressed"), "{csv}");
    let lora_row = csv.lines().find(|l| l.starts_with("simple,lora,0,")).unwrap();
    let f: Vec<&str> = lora_row.split(',').collect();
    assert_eq!(&f[11..15], &["20", "0.95", "25", "0"], "{lora_row}");
    assert!(
        (f[15].parse::<f64>().unwrap() - p).abs() < 1e-18 && f[16] == "true",
        "{lora_row}"
    );
    verdict(&dir, 50).unwrap();
    let findings = std::fs::read_to_string(dir.join("report/findings.md")).unwrap();
    assert!(
        findings.contains("Unstable training") && findings.contains("simple/bitfit/seed0 (loss 1.000 → 3.000)"),
        "{findings}"
    );
}

/// One folder, one configuration: records with another config hash are refused by name; a run
/// with only its header (no evaluation yet) is reported as unfinished, not a crash.
#[test]
fn report_refuses_mixed_configs_and_reports_unfinished_runs() {
    let (_dir_tmp, dir) = scratch("mixed");
    let mut rng = StdRng::seed_from_u64(1);
    for s in [Strategy::Lora, Strategy::Bitfit] {
        planted(
            &dir,
            "simple",
            0.9,
            s,
            0,
            50,
            &[0.2, 0.8, 0.85, 0.9, 0.92],
            &[0.1, 0.5, 0.6, 0.5, 0.4],
            &mut rng,
        );
    }
    // A run that has written its header and nothing else.
    let lora = records::read(&dir.join("simple/lora/seed0.jsonl")).unwrap();
    let header_only = RunRecords {
        header: Header {
            seed: 1,
            ..lora.header.clone()
        },
        evals: Vec::new(),
    };
    records::write(&dir.join("simple/lora/seed1.jsonl"), &header_only).unwrap();
    let r = robustft::validate::study::report::write_report(&dir).unwrap();
    assert!(
        r.summary.contains("Unfinished runs left out: simple/lora/seed1"),
        "{}",
        r.summary
    );
    // Only unfinished runs: an error saying so.
    let (_only_tmp, only) = scratch("mixed-only");
    records::write(&only.join("simple/lora/seed1.jsonl"), &header_only).unwrap();
    let e = robustft::validate::study::report::write_report(&only)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("finished run") && e.contains("simple/lora/seed1"), "{e}");
    // The same experiment with a longer seed or strategy list (a grown sweep) is one study.
    let mut grown = lora.clone();
    grown.header.config["seeds"] = serde_json::json!([0, 1, 2, 3]);
    grown.header.config["strategies"] = serde_json::json!(["lora", "ia3", "bitfit"]);
    grown.header.config_hash = "grown".into();
    grown.header.strategy = "bitfit".into();
    records::write(&dir.join("simple/bitfit/seed0.jsonl"), &grown).unwrap();
    let r = robustft::validate::study::report::write_report(&dir).unwrap();
    assert!(
        r.summary.contains("bitfit") || r.summary.contains("BitFit"),
        "{}",
        r.summary
    );
    another_configuration_in_the_folder_is_refused(&dir, &lora, &grown);
}

/// Another configuration in the same folder (here: another schedule end): `report` and `verdict`
/// refuse it, naming both configurations; `grown` (a grown sweep) is the same experiment.
fn another_configuration_in_the_folder_is_refused(dir: &Path, lora: &RunRecords, grown: &RunRecords) {
    let mut other = lora.clone();
    other.header.config["max_steps"] = serde_json::json!(12345);
    other.header.config_hash = "another".into();
    other.header.strategy = "ia3".into();
    for ev in &mut other.evals {
        ev.config_hash = "another".into();
    }
    records::write(&dir.join("simple/ia3/seed0.jsonl"), &other).unwrap();
    let theirs = records::experiment_hash(&other.header.config, None);
    let ours = records::experiment_hash(&lora.header.config, None);
    assert_ne!(theirs, ours);
    assert_eq!(ours, records::experiment_hash(&grown.header.config, None));
    for e in [
        robustft::validate::study::report::write_report(dir)
            .err()
            .unwrap()
            .to_string(),
        verdict(dir, 100).err().unwrap().to_string(),
    ] {
        assert!(
            e.contains("2 configurations")
                && e.contains(&format!("config {theirs}: simple/ia3/seed0"))
                && e.contains(&format!("config {ours}: "))
                && e.contains("simple/bitfit/seed0"),
            "{e}"
        );
    }
}

/// An image-folder source (`train/` and `test/` with one folder per class) read through the
/// same path as the other kinds: class subset relabelled, RGB at the model's size; a test folder
/// with other classes is refused by name.
#[test]
fn image_folder_source_with_a_class_subset() {
    let (_dir_tmp, dir) = scratch("folders");
    let classes = ["ant", "bee", "cat"];
    for (split, n) in [("train", 3), ("test", 2)] {
        for (c, name) in classes.iter().enumerate() {
            let d = dir.join(split).join(name);
            std::fs::create_dir_all(&d).unwrap();
            for i in 0..n {
                let img = image::RgbImage::from_pixel(8, 8, image::Rgb([40 * c as u8, 10 * i as u8, 200]));
                img.save(d.join(format!("{i}.png"))).unwrap();
            }
        }
    }
    // Classes in sorted folder order: ant 0, bee 1, cat 2; keep cat then ant.
    let l = data::load_source(
        robustft::validate::sweep::spec::DataKind::ImageFolder,
        None,
        Some(&dir),
        Some(&[2, 0]),
        None,
        None,
        16,
        "datasets[0].",
    )
    .unwrap();
    assert_eq!((l.train.len(), l.test.len(), l.train.classes), (6, 4, 2));
    assert_eq!((l.train.channels, l.train.size), (3, 16));
    // The first relabelled-0 training image is cat's (red channel 80/255).
    let first = l.train.labels.iter().position(|x| *x == 0).unwrap();
    assert!((l.train.images[first * 3 * 256] - 80.0 / 255.0).abs() < 1e-6);
    assert_eq!(l.train.labels.iter().filter(|x| **x == 1).count(), 3);
    std::fs::create_dir_all(dir.join("test").join("dog")).unwrap();
    let e = data::load_source(
        robustft::validate::sweep::spec::DataKind::ImageFolder,
        None,
        Some(&dir),
        None,
        None,
        None,
        16,
        "",
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("test") && e.contains("same class folders"), "{e}");
}

/// Copies the folder `from` to `to`, recursively (plain files and folders).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// The recorded verdicts are what the records give today: each committed results folder's
/// `report/` (findings, the clean-target table) regenerates byte for byte from its records with
/// the command its README names. A folder whose records grew (more seeds, an interpolation, an
/// AutoAttack run) without its report being regenerated fails here, naming the file.
#[test]
fn committed_findings_regenerate_from_their_records() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (_dir_tmp, dir) = scratch("committed");
    let results = Path::new("validation/results");
    let folders = [
        "paper-cpu",
        "paper-cpu-pgd-at",
        "paper-cpu-trades",
        "paper-cpu-trades-lp",
    ];
    for f in folders {
        copy_tree(&root.join(results).join(f), &dir.join(results).join(f));
    }
    let at = |f: &str| results.join(f).to_str().unwrap().to_string();
    // Per folder, the command that wrote its report (paper-cpu's sets the robust folders beside it).
    let commands: Vec<(&str, Vec<String>)> = folders
        .iter()
        .map(|&f| {
            let mut args = vec!["verdict".to_string(), at(f)];
            if f == "paper-cpu" {
                for w in ["paper-cpu-pgd-at", "paper-cpu-trades"] {
                    args.extend(["--with".to_string(), at(w)]);
                }
            }
            (f, args)
        })
        .collect();
    for (f, args) in &commands {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_validate"))
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
        let report = results.join(f).join("report");
        for e in std::fs::read_dir(dir.join(&report)).unwrap() {
            let name = e.unwrap().file_name();
            let committed = std::fs::read(root.join(&report).join(&name)).ok();
            let regenerated = std::fs::read(dir.join(&report).join(&name)).unwrap();
            assert!(
                committed.as_deref() == Some(regenerated.as_slice()),
                "{} is not what its records give today: regenerate it with `validate {}`",
                report.join(&name).display(),
                args.join(" ")
            );
        }
    }
}
