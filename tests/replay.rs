//! The commands that replay a finished small run. `validate gap` (issue 17's gap report): the
//! replayed checkpoints match the records image by image, the PGD side is the records' own
//! outcomes, AutoAttack finds points the run's 5-step PGD missed, results resume, `validate
//! verdict` gains finding 6. `validate interpolate` (issue 18): α = 0 and α = 1 reproduce the
//! step-0 and final records, every α is stored with its outcomes, results resume, and a figure
//! per strategy is written. Both refuse bad input before anything is written and a record that
//! does not match the replayed model.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use robustft::validate::checkpoints::gap::{GapCell, counts};
use robustft::validate::checkpoints::interpolate::InterpCell;
use robustft::validate::sweep::records;

use common::validate;

/// See [`common::scratch`]: keep the guard bound while the folder is in use.
fn scratch(name: &str) -> (tempfile::TempDir, PathBuf) {
    common::scratch("gap", name)
}

/// A run small enough for the suite whose models are accurate and partly robust at 1/255 (about
/// 15 s in all): 150 pretraining steps, 30 fine-tuning steps, 48 evaluation images, PGD-5.
const CONFIG: &str = r#"
name = "gap-test"
model = "tiny"
strategies = ["linear_probe", "lora", "full"]
seeds = [0]
max_steps = 30
schedule = [0, 10, 20, 30]
eval_subset = 48
batch_size = 32
optimizer = "paper"
head = "new"
keep_checkpoints = "evals"

[pretrain]
steps = 150
batch_size = 64
lr = 1e-3

[attack]
kind = "pgd"
eps = ["1/255", "2/255"]
steps = 5

[[datasets]]
name = "simple"
kind = "synthetic"
task = "synthetic-simple"
train_images = 512
ood = "none"
"#;

fn config(out: &Path) -> String {
    let p = out.with_extension("toml");
    std::fs::write(&p, CONFIG).unwrap();
    p.to_str().unwrap().to_string()
}

fn gap(out: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["gap", out.to_str().unwrap(), "--quiet"];
    args.extend_from_slice(&["--n", "24", "--steps", "5", "--targets", "1", "--queries", "30"]);
    args.extend_from_slice(extra);
    validate(&args)
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The cell `simple/S/seed0.json` of the gap folder `dir`.
fn gap_cell(dir: &Path, s: &str) -> GapCell {
    serde_json::from_str(&std::fs::read_to_string(dir.join("simple").join(s).join("seed0.json")).unwrap()).unwrap()
}

/// `validate interpolate OUT --quiet EXTRA…`.
fn interp(out: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["interpolate", out.to_str().unwrap(), "--quiet"];
    args.extend_from_slice(extra);
    validate(&args)
}

/// `validate choose OUT --quiet EXTRA…`.
fn choose(out: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["choose", out.to_str().unwrap(), "--quiet"];
    args.extend_from_slice(extra);
    validate(&args)
}

/// One run, replayed by every command in turn: each phase reads what the earlier ones left in
/// `out` (the run, then gap/, interpolate/, interpolate-lp-head/), so they run in this order.
#[test]
fn gap_and_interpolate_replay_and_refuse() {
    let (_tmp, out) = scratch("smoke");
    let cfg = config(&out);
    refused_before_the_run(&out, &cfg);
    run_keeps_a_checkpoint_per_evaluation(&out, &cfg);
    gap_refuses_radii_and_seeds_the_run_lacks(&out);
    gap_replays_the_records_and_finds_more(&out);
    gap_resumes_and_refuses_another_specification(&out);
    probes_on_finished_cells(&out);
    probes_resume_and_refuse_bad_keys(&out);
    radii_added_later_equal_a_fresh_folder(&out);
    a_cell_without_radii_covers_its_folders(&out);
    members_are_summarised(&out);
    let was_full = attribute_measures_again_with_the_members(&out);
    an_outcome_not_reproduced_is_refused(&out, &was_full);
    gap_refuses_strategies_and_datasets_the_run_lacks(&out);
    bad_members_and_probes_are_refused(&out, &was_full);
    verdict_gains_finding_6(&out);
    let before = interpolation_reproduces_the_ends(&out);
    interpolation_from_the_linear_probe_head(&out, &before);
    choose_ranks_steps_and_interpolation_points(&out);
    findings_best_at_the_clean_target(&out);
    choose_refuses_and_exports(&out);
    records_that_do_not_match_the_model_are_refused(&out);
}

/// Before the run: `gap` on a plan only, and a run with APGD-T on a binary task.
fn refused_before_the_run(out: &Path, cfg: &str) {
    let dir = out.to_str().unwrap();
    // Refused before the run exists: nothing to replay, nothing written.
    let o = validate(&["plan", "--config", cfg, "--out", dir]);
    assert!(o.status.success(), "{}", err(&o));
    let o = gap(out, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("not a finished run"), "{}", err(&o));
    assert!(!out.join("gap").exists());

    // APGD-T needs 4 classes; this binary task is refused before anything runs, naming the key.
    let apgd_t = out.with_extension("apgdt.toml");
    let two = CONFIG.replace("kind = \"pgd\"", "kind = \"apgd-t\"").replace(
        "task = \"synthetic-simple\"",
        "task = \"synthetic-simple\"\nclasses = [0, 1]",
    );
    std::fs::write(&apgd_t, two).unwrap();
    let o = validate(&["run", "--config", apgd_t.to_str().unwrap(), "--quiet", "--out", dir]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(
        err(&o).contains("attack.kind") && err(&o).contains("4 classes"),
        "{}",
        err(&o)
    );
    assert!(!out.join("simple").exists() && !out.join("upstream").exists());
    let _ = std::fs::remove_file(&apgd_t);
}

/// The run, keeping the trainable tensors at every evaluation step.
fn run_keeps_a_checkpoint_per_evaluation(out: &Path, cfg: &str) {
    let dir = out.to_str().unwrap();
    let o = validate(&["run", "--config", cfg, "--quiet", "--out", dir]);
    assert!(o.status.success(), "{}", err(&o));
    // keep_checkpoints = "evals": the trainable tensors at every evaluation step; the last one
    // is the resume checkpoint's parameters, the first LoRA's initial B = 0.
    let load = |p: PathBuf| candle_core::safetensors::load(&p, &candle_core::Device::Cpu).unwrap();
    for s in ["linear_probe", "lora", "full"] {
        for step in [0, 10, 20, 30] {
            let p = out.join(format!("ckpt/simple/{s}/seed0/step{step}.safetensors"));
            assert!(p.exists(), "{}", p.display());
        }
        let kept = load(out.join(format!("ckpt/simple/{s}/seed0/step30.safetensors")));
        let resume = load(out.join(format!("ckpt/simple/{s}/seed0.safetensors")));
        assert!(!kept.is_empty());
        for (k, v) in &kept {
            let d = (v - &resume[k])
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert_eq!(d, 0.0, "{s} {k}");
        }
    }
    let first = load(out.join("ckpt/simple/lora/seed0/step0.safetensors"));
    let b = first.iter().find(|(k, _)| k.ends_with("lora_B")).expect("a LoRA B").1;
    assert_eq!(b.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap(), 0.0);
}

/// A radius the run did not measure, a seed it did not run: refused, naming the flag.
fn gap_refuses_radii_and_seeds_the_run_lacks(out: &Path) {
    for (extra, flag) in [(vec!["--eps", "4/255"], "--eps"), (vec!["--seeds", "5"], "--seeds")] {
        let o = gap(out, &extra);
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {}", err(&o));
        assert!(err(&o).contains(flag), "{extra:?}: {}", err(&o));
        assert!(!out.join("gap").exists(), "{extra:?} wrote something");
    }
}

/// The replayed checkpoints match the records; AutoAttack finds points PGD-5 missed.
fn gap_replays_the_records_and_finds_more(out: &Path) {
    let o = gap(out, &["--eps", "1/255,2/255"]);
    assert!(o.status.success(), "{}", err(&o));
    let md = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(md.contains("Does the ranking survive?"), "{md}");
    // No terminal: every replayed checkpoint is a line of the log (--quiet hides only bars).
    assert!(
        err(&o).contains("simple/lora/seed0: step 30 replayed and measured ("),
        "{}",
        err(&o)
    );
    let mut stronger = 0;
    for s in ["linear_probe", "lora", "full"] {
        let path = out.join("gap/simple").join(s).join("seed0.json");
        let cell: GapCell = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let recs = records::read(&out.join("simple").join(s).join("seed0.jsonl")).unwrap();
        assert!(cell.points.iter().any(|p| p.which.contains(&"final".into())));
        assert!(cell.points.iter().any(|p| p.which.contains(&"peak".into())));
        for p in &cell.points {
            let rec = recs.evals.iter().find(|e| e.step == p.step).unwrap();
            // Every evaluation image was checked, 24 were attacked.
            assert_eq!((p.verified, p.pgd.len(), p.autoattack.len()), (rec.n_eval, 24, 24));
            // The PGD side is the record's outcomes on the first 24 images (both radii).
            assert_eq!(p.pgd, rec.outcomes[..24], "{s} step {}", p.step);
            let (clean_p, rob_p) = counts(&p.pgd, 2);
            let (clean_a, rob_a) = counts(&p.autoattack, 2);
            assert_eq!(
                clean_p, clean_a,
                "{s}: the same model is clean-correct on the same images"
            );
            assert!(rob_a[0] >= rob_a[1] && rob_p[0] >= rob_p[1]);
            assert!(rob_a[0] <= clean_a);
            stronger += usize::from(rob_a[0] < rob_p[0]);
        }
        // The peak is the step after 0 with the highest recorded robust accuracy at 1/255.
        let best = recs
            .evals
            .iter()
            .filter(|e| e.step > 0)
            .map(|e| e.robust[0].acc)
            .fold(f64::NEG_INFINITY, f64::max);
        let peak = cell.points.iter().find(|p| p.which.contains(&"peak".into())).unwrap();
        let first = recs
            .evals
            .iter()
            .find(|e| e.step > 0 && e.robust[0].acc == best)
            .unwrap();
        assert_eq!(peak.step, first.step, "{s}");
    }
    // AutoAttack (even at 5 iterations, 1 target, 30 queries) finds points PGD-5 left robust.
    assert!(stronger > 0, "AutoAttack never stronger than PGD-5");
    let gap_md = std::fs::read_to_string(out.join("gap/gap.md")).unwrap();
    assert!(gap_md.contains("| simple | final | 2/255 | lora | 24 |"), "{gap_md}");
}

/// Resumes: a second call reads the cells (same bytes), another specification is refused.
fn gap_resumes_and_refuses_another_specification(out: &Path) {
    let before = std::fs::read(out.join("gap/simple/lora/seed0.json")).unwrap();
    let o = gap(out, &["--eps", "1/255,2/255"]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(std::fs::read(out.join("gap/simple/lora/seed0.json")).unwrap(), before);
    let o = gap(out, &["--eps", "1/255"]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("another specification"), "{}", err(&o));
    assert!(err(&o).contains("to add radii"), "{}", err(&o));
}

/// Probes on finished cells: only the probes run.
fn probes_on_finished_cells(out: &Path) {
    // A probe on finished cells: only the probe runs (AutoAttack's outcomes, members and time
    // stay as they were). The run's own attack (PGD-5, α = ε/4) at the run's own radii on the
    // first images starts where the run's evaluation started, so it reproduces the record.
    let aa_only = |s: &str| gap_cell(&out.join("gap"), s);
    let before_probe: Vec<GapCell> = ["linear_probe", "lora", "full"].map(aa_only).into();
    // APGD-CE at the run's budget rides along: recorded under its key, with the run's clean
    // outcome on every image (the same model) and its own row in the summary.
    let o = gap(out, &["--eps", "1/255,2/255", "--probe", "pgd:5:2/8,apgd-ce:5"]);
    assert!(o.status.success(), "{}", err(&o));
    for (s, was) in ["linear_probe", "lora", "full"].iter().zip(&before_probe) {
        let mut cell = aa_only(s);
        for p in cell.points.iter_mut() {
            let probe = p
                .probes
                .remove("pgd:5:1/4")
                .expect("the probe, under its canonical key");
            let apgd = p.probes.remove("apgd-ce:5").expect("the APGD-CE probe");
            assert_eq!(apgd.levels.len(), p.pgd.len());
            for (a, r) in apgd.levels.bytes().zip(p.pgd.bytes()) {
                assert_eq!(a == b'0', r == b'0', "{s} step {}: clean outcomes differ", p.step);
            }
            assert!(p.probes.is_empty());
            assert_eq!(probe.levels, p.pgd, "{s} step {}: the run's attack, replayed", p.step);
        }
        assert_eq!(&cell, was, "{s}: AutoAttack's side changed");
    }
    let gap_md = std::fs::read_to_string(out.join("gap/gap.md")).unwrap();
    assert!(
        gap_md.contains("## Probes: other attacks on the points PGD missed"),
        "{gap_md}"
    );
    assert!(
        gap_md.contains("| simple | final | 2/255 | lora | [0] | 24 | PGD-5, α = ε/4 |"),
        "{gap_md}"
    );
    assert!(
        gap_md.contains("| simple | final | 2/255 | lora | [0] | 24 | APGD-CE-5 |"),
        "{gap_md}"
    );
    assert!(out.join("gap/probes.csv").exists());
    // The two probes against each other, on the same images, every strategy pooled.
    assert!(gap_md.contains("### Probe against probe"), "{gap_md}");
    assert!(
        gap_md.contains("| simple | final | 2/255 | all | [0] | 72 | 3 | PGD-5, α = ε/4 | APGD-CE-5 |"),
        "{gap_md}"
    );
    assert!(out.join("gap/probe-pairs.csv").exists());
}

/// Probes asked again compute nothing; a probe or a recorded key that is not canonical is refused.
fn probes_resume_and_refuse_bad_keys(out: &Path) {
    // Asked again: nothing is computed, nothing changes. A probe that is not one: refused,
    // naming the flag, nothing written.
    let probed = std::fs::read(out.join("gap/simple/lora/seed0.json")).unwrap();
    let o = gap(out, &["--eps", "1/255,2/255", "--probe", "pgd:5:1/4"]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(std::fs::read(out.join("gap/simple/lora/seed0.json")).unwrap(), probed);
    let o = gap(out, &["--eps", "1/255,2/255", "--probe", "pgd:5:0.25"]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("--probe"), "{}", err(&o));
    assert_eq!(std::fs::read(out.join("gap/simple/lora/seed0.json")).unwrap(), probed);
    // A recorded probe under a key that is not canonical (a cell edited by hand): refused,
    // naming the cell and the key; the summary is not rewritten.
    let cell = out.join("gap/simple/lora/seed0.json");
    let summary = std::fs::read(out.join("gap/gap.md")).unwrap();
    let edited = String::from_utf8(probed.clone())
        .unwrap()
        .replace("\"pgd:5:1/4\"", "\"pgd:5:0.25\"");
    std::fs::write(&cell, edited).unwrap();
    let o = gap(out, &["--eps", "1/255,2/255"]);
    assert!(!o.status.success());
    assert!(
        err(&o).contains("gap/simple/lora/seed0.json")
            && err(&o).contains("probe `pgd:5:0.25`")
            && err(&o).contains("not a canonical pgd:STEPS:ALPHA or apgd-ce:STEPS key"),
        "{}",
        err(&o)
    );
    assert_eq!(std::fs::read(out.join("gap/gap.md")).unwrap(), summary);
    std::fs::write(&cell, &probed).unwrap();
}

/// Radii added later give the cells of a folder scored at all of them at once.
fn radii_added_later_equal_a_fresh_folder(out: &Path) {
    // Radii added later: a folder scored at 1/255, then asked for 1/255 and 2/255, holds exactly
    // the cells of the folder scored at both at once (wall times aside) — probes included, PGD
    // and APGD-CE: asked for at 1/255, completed at 2/255 with AutoAttack.
    let fresh = out.join("gap-fresh");
    std::fs::rename(out.join("gap"), &fresh).unwrap();
    let o = gap(out, &["--eps", "1/255", "--probe", "pgd:5:1/4,apgd-ce:5"]);
    assert!(o.status.success(), "{}", err(&o));
    let o = gap(out, &["--eps", "1/255,2/255"]);
    assert!(o.status.success(), "{}", err(&o));
    for s in ["linear_probe", "lora", "full"] {
        let read = |dir: &Path| gap_cell(dir, s);
        let (mut a, mut b) = (read(&fresh), read(&out.join("gap")));
        assert_eq!(b.eps, [1.0 / 255.0, 2.0 / 255.0]);
        for p in a.points.iter_mut().chain(b.points.iter_mut()) {
            p.seconds = 0.0;
            for q in p.probes.values_mut() {
                q.seconds = 0.0;
            }
        }
        assert_eq!(a, b, "{s}: grown and fresh differ");
    }
    std::fs::remove_dir_all(&fresh).unwrap();
}

/// A cell written before radii could grow covers its folder's radii.
fn a_cell_without_radii_covers_its_folders(out: &Path) {
    // A cell written before radii could grow (no "eps"): it covers its folder's radii, and the
    // next call says so in the file (the bytes a current cell has), computing nothing.
    let lora = out.join("gap/simple/lora/seed0.json");
    let current = std::fs::read_to_string(&lora).unwrap();
    let mut legacy: serde_json::Value = serde_json::from_str(&current).unwrap();
    legacy.as_object_mut().unwrap().remove("eps").unwrap();
    std::fs::write(&lora, serde_json::to_string_pretty(&legacy).unwrap()).unwrap();
    let o = gap(out, &["--eps", "1/255,2/255"]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(std::fs::read_to_string(&lora).unwrap(), current);
}

/// Which member broke each image: summarised in gap.md and members.csv.
fn members_are_summarised(out: &Path) {
    // Which member broke each image: recorded with every cell (and, above, equal in a grown
    // cell and a fresh one), summarised in gap.md and members.csv.
    let gap_md = std::fs::read_to_string(out.join("gap/gap.md")).unwrap();
    assert!(
        gap_md.contains("## Which AutoAttack member broke the points"),
        "{gap_md}"
    );
    assert!(
        gap_md.contains("| simple | final | 2/255 | lora | [0] | 24 |"),
        "{gap_md}"
    );
    let members = std::fs::read_to_string(out.join("gap/members.csv")).unwrap();
    assert_eq!(members.lines().count(), 1 + 2 * 3 * 2, "{members}");
}

/// A cell measured before members were recorded: `--attribute` measures it again (only the
/// strategies asked for), with the same outcomes. Returns the full-fine-tuning cell as it was.
fn attribute_measures_again_with_the_members(out: &Path) -> GapCell {
    let cell_of = |s: &str| gap_cell(&out.join("gap"), s);
    // A cell measured before members were recorded (no "broken_by"): `--attribute` measures it
    // again — only the strategies asked for — and gets the same outcomes and the same members;
    // without `--attribute` it is read as it is.
    let (was_lora, was_full) = (cell_of("lora"), cell_of("full"));
    strip_members(out, "lora");
    strip_members(out, "full");
    let o = gap(out, &["--eps", "1/255,2/255"]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(!cell_of("lora").attributed());
    let o = gap(
        out,
        &[
            "--eps",
            "1/255,2/255",
            "--attribute",
            "--strategies",
            "lora",
            "--datasets",
            "simple",
        ],
    );
    assert!(o.status.success(), "{}", err(&o));
    let (mut now, mut was) = (cell_of("lora"), was_lora.clone());
    for p in now.points.iter_mut().chain(was.points.iter_mut()) {
        p.seconds = 0.0;
    }
    assert_eq!(now, was, "measured again with the members");
    assert!(!cell_of("full").attributed(), "not asked for");
    let gap_md = std::fs::read_to_string(out.join("gap/gap.md")).unwrap();
    let members_md = gap_md.split("## Which AutoAttack member").nth(1).unwrap();
    let members_md = members_md.split("## Probes: other attacks").next().unwrap();
    assert!(!members_md.contains("| final | 2/255 | full | [0]"), "{gap_md}");
    was_full
}

/// Removes the members (`broken_by`) from every point of the gap cell of `s`.
fn strip_members(out: &Path, s: &str) {
    let path = out.join("gap/simple").join(s).join("seed0.json");
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    for p in v["points"].as_array_mut().unwrap() {
        p.as_object_mut().unwrap().remove("broken_by").unwrap();
    }
    std::fs::write(&path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

/// A recorded outcome that the measurement does not reproduce: refused, the cell untouched.
fn an_outcome_not_reproduced_is_refused(out: &Path, was_full: &GapCell) {
    let full_path = out.join("gap/simple").join("full").join("seed0.json");
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&full_path).unwrap()).unwrap();
    let aa = v["points"][0]["autoattack"].as_str().unwrap().to_string();
    let i = aa.find(|c| c != '0').unwrap();
    let flipped = format!(
        "{}{}{}",
        &aa[..i],
        if &aa[i..=i] == "3" { "1" } else { "3" },
        &aa[i + 1..]
    );
    v["points"][0]["autoattack"] = serde_json::Value::String(flipped);
    let tampered = serde_json::to_string_pretty(&v).unwrap();
    std::fs::write(&full_path, &tampered).unwrap();
    let o = gap(out, &["--eps", "1/255,2/255", "--attribute", "--strategies", "full"]);
    assert!(!o.status.success());
    assert!(err(&o).contains("another outcome than recorded"), "{}", err(&o));
    assert_eq!(std::fs::read_to_string(&full_path).unwrap(), tampered);
    std::fs::write(&full_path, serde_json::to_string_pretty(was_full).unwrap()).unwrap();
}

/// A strategy that is not one, or not the run's, a dataset the run does not have: refused.
fn gap_refuses_strategies_and_datasets_the_run_lacks(out: &Path) {
    for (flag, v) in [
        ("--strategies", "nonsense"),
        ("--strategies", "bitfit"),
        ("--datasets", "complex"),
    ] {
        let o = gap(out, &["--eps", "1/255,2/255", flag, v]);
        assert_eq!(o.status.code(), Some(2), "{v}: {}", err(&o));
        assert!(err(&o).contains(flag), "{v}: {}", err(&o));
    }
}

/// A member string or a probe that does not fit the cell: the folder is refused, naming the cell.
fn bad_members_and_probes_are_refused(out: &Path, was_full: &GapCell) {
    let full_path = out.join("gap/simple").join("full").join("seed0.json");
    let mut bad = was_full.clone();
    bad.points[0].broken_by = "x".repeat(24);
    let mut other_key = was_full.clone();
    let probe = other_key.points[0].probes.remove("pgd:5:1/4").unwrap();
    other_key.points[0].probes.insert("pgd:5:2/8".into(), probe.clone());
    let mut other_clean = was_full.clone();
    let flipped: String = probe.levels.chars().map(|c| if c == '0' { '1' } else { '0' }).collect();
    other_clean.points[0].probes.get_mut("pgd:5:1/4").unwrap().levels = flipped;
    for (bad, what) in [(bad, "broken_by"), (other_key, "pgd:5:2/8"), (other_clean, "pgd:5:1/4")] {
        let text = serde_json::to_string_pretty(&bad).unwrap();
        std::fs::write(&full_path, &text).unwrap();
        // Read as it is, or met while adding the probe it lacks under the canonical key.
        for extra in [&[][..], &["--probe", "pgd:5:1/4"][..]] {
            let o = gap(out, &[&["--eps", "1/255,2/255"][..], extra].concat());
            assert!(!o.status.success());
            assert!(err(&o).contains(what) && err(&o).contains("full"), "{}", err(&o));
            assert_eq!(std::fs::read_to_string(&full_path).unwrap(), text, "{what}");
        }
    }
    std::fs::write(&full_path, serde_json::to_string_pretty(was_full).unwrap()).unwrap();
}

/// The verdict gains finding 6.
fn verdict_gains_finding_6(out: &Path) {
    let dir = out.to_str().unwrap();
    let o = validate(&["verdict", dir, "--reps", "100"]);
    assert!(o.status.success(), "{}", err(&o));
    let findings = std::fs::read_to_string(out.join("report/findings.md")).unwrap();
    assert!(
        findings.contains("| 6 | The strategy ranking measured with PGD survives"),
        "{findings}"
    );
    // One seed: its test says so, and the interval resamples images only.
    assert!(
        findings.contains("first 24 evaluation images of seeds {0}")
            && findings.contains("bootstrap 95% CI over images:"),
        "{findings}"
    );
}

/// Interpolation: α = 0 and α = 1 are the step-0 and final records; results resume. Returns the
/// bytes of LoRA's cell.
fn interpolation_reproduces_the_ends(out: &Path) -> Vec<u8> {
    // Interpolation: a weight outside [0, 1] is refused before anything is written.
    let o = interp(out, &["--alphas", "0.5,1.5"]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("--alphas"), "{}", err(&o));
    assert!(!out.join("interpolate").exists());
    let o = interp(out, &["--alphas", "0.3,0.6"]);
    assert!(o.status.success(), "{}", err(&o));
    for s in ["linear_probe", "lora", "full"] {
        let path = out.join("interpolate/simple").join(s).join("seed0.json");
        let cell: InterpCell = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let recs = records::read(&out.join("simple").join(s).join("seed0.jsonl")).unwrap();
        // 0 and 1 are added; the ends are the step-0 and final records, image for image.
        let alphas: Vec<f64> = cell.path.iter().map(|p| p.alpha.unwrap()).collect();
        assert_eq!(alphas, [0.0, 0.3, 0.6, 1.0], "{s}");
        assert_eq!(cell.path[0].outcomes, recs.evals[0].outcomes, "{s} α = 0");
        assert_eq!(cell.path[3].outcomes, recs.evals.last().unwrap().outcomes, "{s} α = 1");
        assert_eq!(cell.trajectory.len(), recs.evals.len());
        assert!(cell.path.iter().all(|p| p.outcomes.len() == 48));
        assert!(
            out.join(format!("interpolate/simple_{s}.png")).exists(),
            "{s}: no figure"
        );
    }
    let md = std::fs::read_to_string(out.join("interpolate/interpolate.md")).unwrap();
    assert!(md.contains("## simple, ε = 2/255") && md.contains("| LoRA | "), "{md}");
    let before = std::fs::read(out.join("interpolate/simple/lora/seed0.json")).unwrap();
    let o = interp(out, &["--alphas", "0.3,0.6"]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(
        std::fs::read(out.join("interpolate/simple/lora/seed0.json")).unwrap(),
        before
    );
    let o = interp(out, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("another specification"), "{}", err(&o));
    before
}

/// From the linear-probe head: α = 0 is the linear-probing run's final model.
fn interpolation_from_the_linear_probe_head(out: &Path, before: &[u8]) {
    // From the linear-probe head: for full fine-tuning and LoRA, α = 0 is the linear-probing
    // run's final model (checked inside, image for image; compared again here); linear probing's
    // own path is constant, so only its ends are evaluated. The default start's folder is kept.
    let o = interp(out, &["--head-start", "zero-shot"]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("--head-start"), "{}", err(&o));
    let o = interp(out, &["--head-start", "linear-probe", "--alphas", "0.5"]);
    assert!(o.status.success(), "{}", err(&o));
    let lp_final = records::read(&out.join("simple/linear_probe/seed0.jsonl"))
        .unwrap()
        .evals
        .last()
        .unwrap()
        .clone();
    for s in ["linear_probe", "lora", "full"] {
        let path = out.join("interpolate-lp-head/simple").join(s).join("seed0.json");
        let cell: InterpCell = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let recs = records::read(&out.join("simple").join(s).join("seed0.jsonl")).unwrap();
        let alphas: Vec<f64> = cell.path.iter().map(|p| p.alpha.unwrap()).collect();
        let want: &[f64] = if s == "linear_probe" {
            &[0.0, 1.0]
        } else {
            &[0.0, 0.5, 1.0]
        };
        assert_eq!(alphas, want, "{s}");
        assert_eq!(cell.path[0].outcomes, lp_final.outcomes, "{s} α = 0");
        assert_eq!(cell.path[0].ood_outcomes, lp_final.ood_outcomes, "{s} α = 0, OOD");
        assert_eq!(
            cell.path.last().unwrap().outcomes,
            recs.evals.last().unwrap().outcomes,
            "{s} α = 1"
        );
    }
    let md = std::fs::read_to_string(out.join("interpolate-lp-head/interpolate.md")).unwrap();
    assert!(md.contains("linear-probing run's final head"), "{md}");
    assert_eq!(
        std::fs::read(out.join("interpolate/simple/lora/seed0.json")).unwrap(),
        before
    );
}

/// Choosing the checkpoint to ship, over the steps and the interpolation weights.
fn choose_ranks_steps_and_interpolation_points(out: &Path) {
    let o = choose(out, &["--min-clean", "0.5", "--eps", "2/255"]);
    assert!(o.status.success(), "{}", err(&o));
    let table = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        table.contains("## simple: clean ≥ 0.500, robust at ε = 2/255"),
        "{table}"
    );
    // The first row: the highest robust accuracy at 2/255 among every recorded step and path
    // point with clean ≥ 0.5, tied with itself.
    let mut best = (f64::NEG_INFINITY, String::new());
    for s in ["linear_probe", "lora", "full"] {
        let recs = records::read(&out.join("simple").join(s).join("seed0.jsonl")).unwrap();
        let cell: InterpCell = serde_json::from_str(
            &std::fs::read_to_string(out.join("interpolate/simple").join(s).join("seed0.json")).unwrap(),
        )
        .unwrap();
        let lp_cell: InterpCell = serde_json::from_str(
            &std::fs::read_to_string(out.join("interpolate-lp-head/simple").join(s).join("seed0.json")).unwrap(),
        )
        .unwrap();
        let outcomes = recs
            .evals
            .iter()
            .map(|e| e.outcomes.clone())
            .chain(cell.path.iter().map(|p| p.outcomes.clone()))
            .chain(lp_cell.path.iter().map(|p| p.outcomes.clone()));
        for o in outcomes {
            let (clean, rob) = counts(&o, 2);
            if clean as f64 / 48.0 >= 0.5 && (rob[1] as f64 / 48.0) > best.0 {
                best = (rob[1] as f64 / 48.0, s.to_string());
            }
        }
    }
    // The per-strategy table carries each best candidate's Wilson interval.
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("| LoRA | standard fine-tuning | ") && l.contains("% [")),
        "{table}"
    );
    let first = table.lines().find(|l| l.starts_with("| 1 |")).expect("a first row");
    let pct = format!("{:.1}%", 100.0 * best.0);
    assert!(
        first.contains(&pct) && first.ends_with("| yes |"),
        "{first} vs {best:?}"
    );
}

/// The findings' "best robustness at the clean target", recomputed here.
fn findings_best_at_the_clean_target(out: &Path) {
    let dir = out.to_str().unwrap();
    // The findings' "best robustness at the clean target": per strategy, the trajectory's best
    // step and the path's best point (α in (0, 1) or the final step) at 2/255, recomputed here.
    let o = validate(&["verdict", dir, "--reps", "100", "--min-clean", "0.5"]);
    assert!(o.status.success(), "{}", err(&o));
    let t = robustft::validate::study::at_target::at_target(&[out.to_path_buf()], Some(0.5), 100)
        .unwrap()
        .unwrap();
    let labels: Vec<&str> = t.sources.iter().map(|x| x.label.as_str()).collect();
    assert_eq!(
        labels,
        [
            "standard",
            "standard, interpolated",
            "standard, interpolated from the linear-probe head"
        ]
    );
    for s in ["linear_probe", "lora", "full"] {
        let recs = records::read(&out.join("simple").join(s).join("seed0.jsonl")).unwrap();
        let cell: InterpCell = serde_json::from_str(
            &std::fs::read_to_string(out.join("interpolate/simple").join(s).join("seed0.json")).unwrap(),
        )
        .unwrap();
        let best = |outcomes: Vec<&String>| {
            outcomes
                .into_iter()
                .map(|o| counts(o, 2))
                .filter(|(clean, _)| *clean as f64 / 48.0 >= 0.5)
                .map(|(_, rob)| rob[1] as f64 / 48.0)
                .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))))
        };
        let traj = best(recs.evals.iter().map(|e| &e.outcomes).collect());
        let path = best(
            cell.path
                .iter()
                .filter(|p| p.alpha.is_some_and(|a| a > 0.0))
                .map(|p| &p.outcomes)
                .collect(),
        );
        let strategy = robustft::engine::peft::parse_strategy(s).unwrap();
        for (source, want) in [(0, traj), (1, path)] {
            let got = t
                .cells
                .iter()
                .find(|c| c.strategy == strategy && c.source == source && (c.eps - 2.0 / 255.0).abs() < 1e-12)
                .unwrap();
            assert_eq!(got.robust, want, "{s} source {source}");
        }
    }
}

/// Bad input to `choose`; its export is a plain ViT file `validate eval` loads.
fn choose_refuses_and_exports(out: &Path) {
    // Bad input: a target nobody reaches (the best is named), a radius the runs lack.
    let o = choose(out, &["--min-clean", "0.999"]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(
        err(&o).contains("--min-clean") && err(&o).contains("the best is"),
        "{}",
        err(&o)
    );
    let o = choose(out, &["--min-clean", "0.5", "--eps", "3/255"]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("--eps"), "{}", err(&o));
    // Export: a plain ViT file `validate eval` loads as a linear-probe checkpoint (no PEFT
    // tensor left over); an existing file is never overwritten.
    let file = out.join("chosen.safetensors");
    let o = choose(
        out,
        &[
            "--min-clean",
            "0.5",
            "--eps",
            "2/255",
            "--export",
            file.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", err(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("wrote"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let o = validate(&[
        "eval",
        "--checkpoint",
        file.to_str().unwrap(),
        "--strategy",
        "linear_probe",
        "--data",
        "synthetic:synthetic-simple",
        "--n",
        "8",
        "--attack",
        "pgd",
        "--steps",
        "2",
        "--eps",
        "1/255",
    ]);
    assert!(o.status.success(), "{}", err(&o));
    let o = choose(out, &["--min-clean", "0.5", "--export", file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("overwritten"), "{}", err(&o));
}

/// A record that does not match the replayed model, records naming another backbone: refused.
fn records_that_do_not_match_the_model_are_refused(out: &Path) {
    // A record that does not match the replayed model (one clean outcome flipped) is refused.
    std::fs::remove_dir_all(out.join("gap")).unwrap();
    std::fs::remove_dir_all(out.join("interpolate")).unwrap();
    let jsonl = out.join("simple/full/seed0.jsonl");
    let mut recs = records::read(&jsonl).unwrap();
    let last = recs.evals.last_mut().unwrap();
    let flipped: String = last
        .outcomes
        .chars()
        .enumerate()
        .map(|(i, c)| if i == 5 { if c == '0' { '1' } else { '0' } } else { c })
        .collect();
    last.outcomes = flipped;
    records::write(&jsonl, &recs).unwrap();
    let o = gap(out, &["--eps", "1/255,2/255"]);
    assert!(!o.status.success());
    assert!(
        err(&o).contains("differently from the record") && err(&o).contains("1 of 48"),
        "{}",
        err(&o)
    );
    let o = interp(out, &[]);
    assert!(!o.status.success());
    assert!(err(&o).contains("differently from the record"), "{}", err(&o));
    // Records that name another backbone (content hash) are refused before any replay.
    for s in ["linear_probe", "lora", "full"] {
        let jsonl = out.join("simple").join(s).join("seed0.jsonl");
        let mut recs = records::read(&jsonl).unwrap();
        recs.header.upstream.as_mut().expect("recorded").checkpoint = "pretrained-0000000000000000.safetensors".into();
        records::write(&jsonl, &recs).unwrap();
    }
    let o = interp(out, &[]);
    assert!(!o.status.success());
    assert!(
        err(&o).contains("pretrained-0000000000000000.safetensors") && err(&o).contains("content hashes differ"),
        "{}",
        err(&o)
    );
}
