//! Presets load, and every configuration error names its key and file.

use crate::validate::sweep::config::*;

#[test]
fn presets_are_valid() {
    let c = RunConfig::preset("cpu-default").unwrap();
    assert_eq!(c.strategies.len(), 7);
    // Paper schedule (50..700 by 50, 1000, 2000, 3000) scaled from 3000 to 150 steps.
    assert_eq!(
        c.eval_steps,
        vec![3, 5, 8, 10, 13, 15, 18, 20, 23, 25, 28, 30, 33, 35, 50, 100, 150]
    );
    let smoke = RunConfig::preset("smoke").unwrap();
    assert_eq!(smoke.eval_steps, vec![0, 4, 8, 12]);
    assert_eq!(smoke.eps(), vec![1.0 / 255.0, 4.0 / 255.0]);
    // α = ε/4 for each radius.
    assert!(matches!(smoke.attacks[1], Attack::Pgd(p) if p.alpha == 1.0 / 255.0));
    assert!(smoke.new_head);
    let paper = RunConfig::preset("paper-cpu").unwrap();
    assert_eq!(paper.eps(), vec![1.0 / 255.0, 2.0 / 255.0, 4.0 / 255.0, 8.0 / 255.0]);
    assert_eq!(paper.eval_steps[0], 0);
    assert_eq!(paper.model.patch_size, 7);
    assert!(paper.config.seeds.len() >= 3 && paper.config.eval_subset >= 1000);
    // Per-strategy learning rates from the table; the paper preset keeps Li et al.'s.
    for s in &paper.strategies {
        let OptimizerSpec::Custom(t) = &paper.config.optimizer else {
            panic!("a table")
        };
        assert_eq!(paper.optimiser(*s).lr, t.lr[s.id()]);
    }
    assert_eq!(smoke.optimiser(Strategy::Full).lr, 2e-5);
    assert!(RunConfig::preset("nope").is_err());
    for p in ["cpu-default", "smoke", "paper-cpu"] {
        assert_eq!(RunConfig::preset(p).unwrap().short_schedule(), None, "{p}");
    }
}

/// The paper's schedule evaluates every 6000 steps after 3000: with max_steps = 10000 the run
/// would end at 6000 with the learning rate not annealed, which is said; at 12000 it is not.
#[test]
fn a_schedule_ending_before_max_steps_is_said() {
    let text = PRESETS[1]
        .1
        .replace("max_steps = 12", "max_steps = 10000")
        .replace("schedule = [0, 4, 8, 12]", "schedule = \"paper\"");
    assert!(text.contains("max_steps = 10000") && text.contains("schedule = \"paper\""));
    let c = crate::error::load_toml_str::<RunConfig>(&text, Path::new("t.toml")).unwrap();
    assert_eq!(c.eval_steps.last(), Some(&6000));
    let w = c.short_schedule().unwrap();
    assert!(
        w.contains("stops at step 6000") && w.contains("max_steps = 10000"),
        "{w}"
    );
    let c = crate::error::load_toml_str::<RunConfig>(&text.replace("10000", "12000"), Path::new("t.toml")).unwrap();
    assert_eq!((c.eval_steps.last(), c.short_schedule()), (Some(&12000), None));
}

/// Edits of the smoke preset that make a bad configuration — (text, replacement, what the
/// error must name) — each refused by the parser or by the checks.
const BAD_VALUES: &[(&str, &str, &str)] = &[
    ("eps = [\"1/255\", \"4/255\"]", "eps = -0.1", "attack.eps"),
    (
        "eps = [\"1/255\", \"4/255\"]",
        "eps = [\"1/255\", \"1:255\"]",
        "attack.eps[1]",
    ),
    ("eps = [\"1/255\", \"4/255\"]", "eps = [0.1, 0.1]", "twice"),
    ("steps = 5", "steps = 5\nalpha = 0.001", "attack.alpha"),
    ("steps = 5", "steps = 0", "attack.steps"),
    ("head = \"new\"", "head = \"old\"", "head"),
    (
        "ood = \"shifted\"",
        "ood = \"shifted\"\nclasses = [3, 10]",
        "datasets[0].classes",
    ),
    ("ood = \"shifted\"", "ood = \"shifted\"\nclasses = [3, 3]", "twice"),
    (
        "ood = \"shifted\"",
        "ood = \"shifted\"\n[[datasets]]\nname = \"simple\"\nkind = \"synthetic\"\ntask = \"synthetic-simple\"\ntrain_images = 8",
        "datasets[1].name",
    ),
    ("name = \"simple\"", "name = \"..\"", "datasets[0].name"),
    (
        "optimizer = \"paper\"",
        "optimizer = { lr = { lora = 1e-3, bitfit = 1e-3 } }",
        "optimizer.lr.linear_probe",
    ),
    (
        "optimizer = \"paper\"",
        "optimizer = { lr = { lora = 1e-3, bitfit = 1e-3, linear_probe = -1.0 } }",
        "optimizer.lr.linear_probe",
    ),
    (
        "optimizer = \"paper\"",
        "optimizer = { lr = { lora = 1e-3, bitfit = 1e-3, linear_probe = 1.0, lp = 1.0 } }",
        "optimizer.lr.lp",
    ),
    (
        "optimizer = \"paper\"",
        "optimizer = { lr = { lora = 1e-3, bitfit = 1e-3, linear_probe = 1.0 }, warmup_steps = 12 }",
        "optimizer.warmup_steps",
    ),
    (
        "lr = 1e-3",
        "lr = 1e-3\ndataset = { kind = \"fashion-mnist\", classes = [11] }",
        "pretrain.dataset.classes",
    ),
    (
        "lr = 1e-3",
        "lr = 1e-3\ndataset = { kind = \"mnist\" }",
        "pretrain.dataset.kind",
    ),
    ("ood = \"shifted\"", "ood = \"corruption:fog:3\"", "datasets[0].ood"),
    ("kind = \"synthetic\"", "kind = \"imagenet\"", "datasets[0].kind"),
    (
        "strategies = [\"linear_probe\"",
        "strategies = [\"prefix\"",
        "strategies",
    ),
    ("schedule = [0, 4, 8, 12]", "schedule = [40]", "schedule"),
    ("schedule = [0, 4, 8, 12]", "schedule = [0]", "schedule"),
];

#[test]
fn errors_name_key_and_file() {
    let text = PRESETS[1].1;
    assert!(
        text.contains("eps = [\"1/255\", \"4/255\"]"),
        "the smoke preset's radii moved: update this test"
    );
    let bad = text.replace("max_steps = 12", "max_steps = 12\nmax_stepz = 3");
    let e = RunConfig::from_toml(&bad, Path::new("x.toml")).unwrap_err().to_string();
    assert!(e.contains("x.toml") && e.contains("max_stepz"), "{e}");
    // A syntax error: one line naming the file, the line and the column.
    let line = text.lines().position(|l| l.starts_with("max_steps")).unwrap() + 1;
    let e = RunConfig::from_toml(&text.replace("max_steps = 12", "max_steps == 12"), Path::new("x.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("x.toml") && e.contains(&format!("line {line}, column")) && !e.contains('\n'),
        "{e}"
    );
    for &(from, to, key) in BAD_VALUES {
        let t = text.replacen(from, to, 1);
        assert_ne!(t, text, "{from}");
        // Refused by the parser (typed values) or by the checks: either way the key is named.
        let e = RunConfig::from_toml(&t, Path::new("x.toml"))
            .and_then(RunConfig::validate)
            .unwrap_err()
            .to_string();
        assert!(e.contains(key), "{key}: {e}");
    }
}
