//! The checkpoint commands: they replay weights from the records of finished run folders (`gap`,
//! `interpolate`, `choose`, given as `DIR`) or score one checkpoint (`eval`).

use std::path::PathBuf;

use candle_core::Device;
use robustft::cli::{Classify, Failure, Outcome};
use robustft::validate::ValidRun;
use robustft::validate::sweep::spec::{EpsSpec, EpsValue};

use crate::options::{ChooseArgs, EvalArgs, GapArgs, InterpolateArgs, OldFolderFlags};

/// The run folder `DIR` of `validate COMMAND` and the configuration its records hold. The old
/// grammar (`--config`/`--preset` with `--out`) is refused with the new form.
fn folder(command: &str, dir: Option<PathBuf>, old: OldFolderFlags) -> Result<(ValidRun, PathBuf), Failure> {
    let named = old
        .out
        .clone()
        .or_else(|| old.preset.as_ref().map(|p| PathBuf::from("runs").join(p)));
    if old.config.is_some() || old.preset.is_some() || old.out.is_some() {
        let example = dir.or(named).unwrap_or_else(|| PathBuf::from("DIR"));
        return Err(Failure::Input(format!(
            "`validate {command}` reads the run folder's configuration from its records: give the folder, \
             as in `validate {command} {}` (--config, --preset and --out are no longer taken)",
            example.display()
        )));
    }
    let dir = dir.ok_or_else(|| {
        Failure::Input(format!(
            "`validate {command}` needs the run folder: `validate {command} DIR` (e.g. runs/smoke)"
        ))
    })?;
    let run = robustft::validate::sweep::folder::recorded_run(&dir).input()?;
    Ok((run, dir))
}

/// An error about `attack.eps` or `attack.eps[i]` (i < `n`) as one about `--eps`.
fn eps_flag(e: robustft::Error, n: usize) -> robustft::Error {
    (0..n).fold(e.rename_field("attack.eps", "--eps"), |e, i| {
        e.rename_field(&format!("attack.eps[{i}]"), "--eps")
    })
}

/// `validate gap DIR`.
pub fn gap(a: GapArgs, quiet: bool, device: impl Fn() -> Result<Device, Failure>) -> Outcome {
    use robustft::validate::checkpoints::gap::{GapSelect, GapSpec, Probe, gap, gap_dir};
    let probes = a
        .probes
        .iter()
        .map(|p| Probe::parse(p))
        .collect::<robustft::Result<Vec<_>>>()
        .input()?;
    let select = GapSelect {
        datasets: a.datasets,
        seeds: a.seeds,
        strategies: a.strategies.iter().map(|s| s.0).collect(),
        attribute: a.attribute,
        probes,
    };
    let (cfg, out) = folder("gap", a.dir, a.old)?;
    let n_eps = a.eps.len();
    let eps = if a.eps.is_empty() {
        cfg.eps()[..1].to_vec()
    } else {
        EpsSpec::Many(a.eps.into_iter().map(EpsValue::Text).collect())
            .values()
            .map_err(|e| eps_flag(e, n_eps))
            .input()?
    };
    let spec = GapSpec {
        eps,
        n: a.n,
        steps: a.steps,
        targets: a.targets,
        queries: a.queries,
    };
    gap(&cfg, &out, &spec, &select, &device()?, quiet).running()?;
    let dir = gap_dir(&out);
    let md = std::fs::read_to_string(dir.join("gap.md")).unwrap_or_default();
    Ok(format!("{md}\nwrote {}\n", dir.join("gap.md").display()))
}

/// `validate interpolate DIR`.
pub fn interpolate(a: InterpolateArgs, quiet: bool, device: impl Fn() -> Result<Device, Failure>) -> Outcome {
    use robustft::validate::checkpoints::interpolate::{InterpSpec, interp_dir, interpolate};
    let (cfg, out) = folder("interpolate", a.dir, a.old)?;
    let spec = InterpSpec::new(a.alphas).input()?.with_head_start(a.head_start);
    interpolate(&cfg, &out, &spec, &a.seeds, &device()?, quiet).running()?;
    let dir = interp_dir(&out, a.head_start);
    let md = std::fs::read_to_string(dir.join("interpolate.md")).unwrap_or_default();
    Ok(format!("{md}\nwrote {}\n", dir.join("interpolate.md").display()))
}

/// `validate choose DIR…`.
pub fn choose(a: ChooseArgs, quiet: bool, device: impl Fn() -> Result<Device, Failure>) -> Outcome {
    use robustft::validate::checkpoints::choose::{ChooseSpec, choose, export, render};
    let eps = a.eps.map(|e| EpsValue::Text(e).value("--eps")).transpose().input()?;
    let spec = ChooseSpec {
        min_clean: a.min_clean,
        eps,
        ood: a.ood,
        dataset: a.dataset,
    };
    if let Some(f) = a.export.as_ref().filter(|f| f.exists()) {
        return Err(robustft::Error::invalid(
            "--export",
            "a file that does not exist yet (nothing is overwritten)",
            f.display(),
        ))
        .input();
    }
    let choices = choose(&a.dirs, &spec).input()?;
    let mut text = render(&choices, &spec).input()?;
    if let Some(file) = &a.export {
        if choices.len() != 1 {
            let tasks: Vec<&str> = choices.iter().map(|c| c.dataset.as_str()).collect();
            return Err(robustft::Error::invalid(
                "--dataset",
                "one task to export from (the folders hold several)",
                tasks.join(", "),
            ))
            .input();
        }
        text += &export(&choices[0], file, &device()?, quiet).running()?;
    }
    Ok(text)
}

/// `validate eval`: one checkpoint scored on n test images under an attack at each radius.
pub fn eval(a: EvalArgs, quiet: bool, device: &Device) -> Outcome {
    use robustft::validate::checkpoints::eval::{EvalSpec, evaluate, load_model, render, save_images};
    let model_arg = a.model.clone().unwrap_or_else(|| {
        if a.checkpoint.is_dir() {
            a.checkpoint.display().to_string()
        } else {
            "tiny".into()
        }
    });
    let cfg = robustft::engine::VitConfig::from_arg(&model_arg)
        .map_err(|e| e.rename_field("model", "--model"))
        .input()?;
    let attacks = eval_attacks(&a).input()?;
    if a.n == 0 {
        return Err(robustft::Error::invalid("--n", "must be >= 1", 0)).input();
    }
    let test = eval_data(&a, cfg.image_size).input()?;
    let spec = EvalSpec {
        checkpoint: a.checkpoint.clone(),
        backbone: a.backbone.clone(),
        model: cfg,
        model_name: model_arg,
        strategy: a.strategy.0,
        dataset: a.data.clone(),
        attacks,
        n: a.n,
        seed: a.seed,
    };
    if let Some(at) = spec.attacks.iter().find(|at| at.min_classes() > test.classes) {
        let why = format!(
            "{} needs at least {} classes; the data has {} (autoattack runs on any task)",
            at.name(),
            at.min_classes(),
            test.classes
        );
        return Err(robustft::Error::invalid("--attack", why, at.name())).input();
    }
    let model = load_model(&spec, test.classes, device).input()?;
    if let Some(p) = &a.save_images {
        if p.exists() {
            let e = robustft::Error::invalid("--save-images", "a file that does not exist yet", p.display());
            return Err(e).input();
        }
        save_images(&test, a.n, a.seed, p).running()?;
    }
    let say = |m: &str| {
        if !quiet {
            eprintln!("{m}");
        }
    };
    let report = evaluate(&spec, &model, &test, &say).running()?;
    Ok(if a.json {
        serde_json::to_string(&report).expect("serialisable") + "\n"
    } else {
        render(&report)
    })
}

/// `validate eval`'s attack at each radius (`--attack`, `--eps`, `--steps`, `--targets`,
/// `--queries`); errors name the flag.
fn eval_attacks(a: &EvalArgs) -> robustft::Result<Vec<robustft::engine::eval::Attack>> {
    use robustft::validate::sweep::config::{AttackKind, AttackSpec};
    let spec = AttackSpec {
        kind: a.attack,
        eps: EpsSpec::Many(a.eps.iter().map(|e| EpsValue::Text(e.clone())).collect()),
        alpha: None,
        steps: a.steps.or((a.attack == AttackKind::Pgd).then_some(15)),
        stop: None,
        targets: a.targets,
        queries: a.queries,
    };
    spec.attacks().map_err(|e| {
        let e = e
            .rename_field("attack.steps", "--steps")
            .rename_field("attack.targets", "--targets")
            .rename_field("attack.queries", "--queries");
        eps_flag(e, a.eps.len())
    })
}

/// `validate eval`'s test images (`--data KIND[:PATH]`, `--classes`) at the model's size.
fn eval_data(a: &EvalArgs, image_size: usize) -> robustft::Result<robustft::engine::data::Dataset> {
    use robustft::validate::sweep::spec::DataKind;
    let (kind, path) = a
        .data
        .split_once(':')
        .map_or((a.data.as_str(), None), |(k, p)| (k, Some(p)));
    let data_kind: DataKind = serde_json::from_value(serde_json::json!(kind))
        .map_err(|e| robustft::Error::invalid("--data", e.to_string(), kind))?;
    let (task, dir) = match data_kind {
        DataKind::Synthetic => (path, None),
        _ => (None, path.map(std::path::Path::new)),
    };
    let loaded = robustft::validate::sweep::data::load_source(
        data_kind,
        task,
        dir,
        a.classes.as_deref(),
        Some(1),
        None,
        image_size,
        "--",
    )?;
    Ok(loaded.test)
}
