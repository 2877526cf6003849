//! `validate`: the validation engine — ViTs fine-tuned with the seven strategies, attacked and
//! measured: tracked runs (`validate` with no arguments, `run`), learning-rate sweeps (`tune`),
//! task separability (`tasks`), reports (`report`), verdicts on the paper's findings (`verdict`),
//! the theory comparison (`compare`), sweeps cut into cells for a scheduler (`plan`, `run
//! --cell`, `slurm`, `status`), and `inspect`, `pretrain`, `bench`.

use std::path::PathBuf;
use std::process::ExitCode;

use robustft::cli::{Classify, Failure, Outcome, finish};

use candle_core::Device;
use indicatif::{ProgressBar, ProgressStyle};
use robustft::engine::data::synthetic::SyntheticSpec;
use robustft::engine::peft::{self, PeftConfig, Strategy};
use robustft::engine::pretrain::{PretrainConfig, pretrain};
use robustft::engine::{VitConfig, bench};

/// mimalloc: candle allocates a buffer per op, and the system allocator's map/unmap of large
/// ones cost about 30% of a CPU training step (README, performance). The library leaves the
/// choice to its users; this binary makes it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod args;

use args::{BenchArgs, Cli, Cmd, ConfigArgs, EvalArgs, EvalAttack};

/// The answer of `validate inspect` (fields in this order).
#[derive(serde::Serialize)]
struct Inspect<'a> {
    model: &'a str,
    strategy: &'a str,
    trainable_backbone: usize,
    trainable_head: usize,
    total: usize,
}

/// The configuration named by `--config` or `--preset`, and its output folder (default
/// `runs/<name>`).
fn load_config(args: ConfigArgs) -> robustft::Result<(robustft::validate::ValidRun, PathBuf)> {
    let ConfigArgs { config, preset, out } = args;
    let cfg = match (&config, &preset) {
        (Some(p), _) => robustft::validate::RunConfig::load(p)?,
        (None, Some(name)) => robustft::validate::RunConfig::preset(name)?,
        (None, None) => {
            return Err(robustft::Error::invalid(
                "--config",
                "give --config FILE or --preset NAME",
                "neither",
            ));
        }
    };
    let out = out.unwrap_or_else(|| PathBuf::from("runs").join(&cfg.config.name));
    robustft::cli::check_out_dir(&out)?;
    if let Some(w) = cfg.short_schedule() {
        eprintln!("warning: {w}");
    }
    // The data and checkpoint checks are made by the job itself, before it writes anything
    // (validate::check_inputs; refused errors exit 2).
    Ok((cfg, out))
}

/// `validate run` (and `validate` alone): the sweep, then its report and verdicts.
fn run(args: ConfigArgs, quiet: bool, device: &Device) -> Outcome {
    let (cfg, out) = load_config(args).input()?;
    let start = std::time::Instant::now();
    robustft::validate::sweep::runner::run_all(&cfg, &out, device, quiet).running()?;
    let report = robustft::validate::study::report::write_report(&out).running()?;
    print!("{}", report.summary);
    let f = robustft::validate::study::verdict::verdict(&out, robustft::validate::study::report::REPS).running()?;
    Ok(format!(
        "{}run {} finished in {:.0} s; report in {}\n",
        robustft::validate::study::verdict::table(&f.rows),
        cfg.config.name,
        start.elapsed().as_secs_f64(),
        out.join("report").display()
    ))
}

/// `validate run --cell N`: one cell of the sweep.
fn run_cell(args: ConfigArgs, n: usize, quiet: bool, device: &Device) -> Outcome {
    let (cfg, out) = load_config(args).input()?;
    let start = std::time::Instant::now();
    let cell = robustft::validate::sweep::runner::run_cell(&cfg, &out, n, device, quiet).running()?;
    Ok(format!(
        "cell {n} ({}) complete in {:.1} s{}\n",
        cell.work.label(),
        start.elapsed().as_secs_f64(),
        if cell.complete { " (was already)" } else { "" }
    ))
}

/// `validate plan`.
fn plan(args: ConfigArgs, json: bool) -> Outcome {
    let (cfg, out) = load_config(args).input()?;
    let plan = robustft::validate::sweep::plan::plan(&cfg, &out).input()?;
    let path = robustft::validate::sweep::plan::write_plan(&plan, &out).running()?;
    Ok(if json {
        format!("{}\n", serde_json::to_string_pretty(&plan).expect("serialises"))
    } else {
        format!("{}wrote {}\n", plan.table(), path.display())
    })
}

/// `validate slurm`.
fn slurm(args: ConfigArgs, opts: &robustft::validate::sweep::slurm::SlurmOptions) -> Outcome {
    use robustft::validate::sweep::slurm::ConfigSource;
    let (file, preset) = (args.config.clone(), args.preset.clone());
    let (cfg, out) = load_config(args).input()?;
    // load_config has refused a call naming neither.
    let source = match (file, preset) {
        (Some(p), _) => {
            ConfigSource::File(std::path::absolute(&p).map_err(|e| Failure::Input(format!("{}: {e}", p.display())))?)
        }
        (None, p) => ConfigSource::Preset(p.expect("--config or --preset")),
    };
    let bin = std::env::current_exe().map_err(|e| Failure::Run(format!("cannot tell this binary's path: {e}")))?;
    let done = robustft::validate::sweep::slurm::submit(&cfg, &source, &out, opts, &bin).running()?;
    Ok(done.summary(&std::path::absolute(&out).unwrap_or(out)))
}

fn strategies(s: &str) -> robustft::Result<Vec<Strategy>> {
    if s == "all" {
        Ok(Strategy::ALL.to_vec())
    } else {
        Ok(vec![peft::parse_strategy(s)?])
    }
}

fn main() -> ExitCode {
    robustft::engine::prefer_batch_parallelism();
    let cli: Cli = match robustft::cli::parse() {
        Ok(c) => c,
        Err(code) => return code,
    };
    let pick = |d: &Option<String>| robustft::engine::device::select(d.as_deref()).input();
    finish(match cli.cmd {
        None => run(
            ConfigArgs {
                config: None,
                preset: Some("cpu-default".into()),
                out: None,
            },
            false,
            &Device::Cpu,
        ),
        Some(Cmd::Run {
            cfg,
            quiet,
            device,
            cell: None,
        }) => pick(&device).and_then(|d| run(cfg, quiet, &d)),
        Some(Cmd::Run {
            cfg,
            quiet,
            device,
            cell: Some(n),
        }) => pick(&device).and_then(|d| run_cell(cfg, n, quiet, &d)),
        Some(Cmd::Plan { cfg, json }) => plan(cfg, json),
        Some(Cmd::Status { dir }) => robustft::validate::sweep::plan::status_table(&dir).input(),
        Some(Cmd::Slurm { cfg, slurm: s }) => slurm(cfg, &s.into()),
        Some(Cmd::Tune {
            cfg,
            lrs,
            val_images,
            seed,
            quiet,
        }) => tune(cfg, lrs, val_images, seed, quiet),
        Some(Cmd::Gap {
            cfg,
            eps,
            n,
            datasets,
            seeds,
            strategies,
            attribute,
            probes,
            steps,
            targets,
            queries,
            quiet,
            device,
        }) => pick(&device).and_then(|d| {
            gap_cmd(
                cfg,
                eps,
                n,
                (datasets, seeds, &strategies, attribute, &probes),
                (steps, targets, queries),
                quiet,
                &d,
            )
        }),
        Some(Cmd::Interpolate {
            cfg,
            alphas,
            head_start,
            seeds,
            quiet,
            device,
        }) => pick(&device).and_then(|d| interpolate_cmd(cfg, alphas, &head_start, &seeds, quiet, &d)),
        Some(Cmd::Tasks { cfg, pairs, quiet }) => load_config(cfg).input().and_then(|(cfg, out)| {
            robustft::validate::sweep::tasks::tasks(&cfg, &out, pairs, &Device::Cpu, quiet).running()
        }),
        Some(Cmd::Verdict {
            dir,
            with,
            min_clean,
            reps,
        }) => verdict(&dir, &with, min_clean, reps),
        Some(Cmd::Report { dir }) => robustft::validate::study::report::write_report(&dir)
            .input()
            .map(|r| r.summary),
        Some(Cmd::Versus { standard, robust, reps }) => {
            if reps < 100 {
                Err(Failure::Input(format!("invalid `--reps`: must be >= 100 (got {reps})")))
            } else {
                robustft::validate::study::versus::versus(&standard, &robust, reps).input()
            }
        }
        Some(Cmd::Choose {
            dirs,
            min_clean,
            eps,
            ood,
            dataset,
            export,
            quiet,
            device,
        }) => choose_cmd(&dirs, min_clean, eps, ood, dataset, export.as_deref(), quiet, &device),
        Some(Cmd::Compare { dir }) => robustft::validate::study::compare::compare(&dir).input(),
        Some(Cmd::Inspect {
            model,
            strategy,
            num_classes,
        }) => inspect(&model, &strategy, num_classes).input(),
        Some(Cmd::Pretrain {
            model,
            task,
            steps,
            batch_size,
            lr,
            seed,
            out,
            device,
        }) => pick(&device).and_then(|d| pretrain_cmd(&model, &task, steps, batch_size, lr, seed, &out, &d)),
        Some(Cmd::Bench(args)) => pick(&args.device).and_then(|d| bench_cmd(args, &d)),
        Some(Cmd::Eval(args)) => pick(&args.device).and_then(|d| eval_cmd(args, &d)),
    })
}

/// `validate tune`.
fn tune(cfg: ConfigArgs, lrs: Vec<f64>, val_images: usize, seed: u64, quiet: bool) -> Outcome {
    let (cfg, out) = load_config(cfg).input()?;
    let spec = robustft::validate::sweep::tune::TuneSpec { lrs, val_images, seed };
    robustft::validate::sweep::tune::tune(&cfg, &out, &spec, &Device::Cpu, quiet).running()
}

/// An error about `attack.eps` or `attack.eps[i]` (i < `n`) as one about `--eps`.
fn eps_flag(e: robustft::Error, n: usize) -> robustft::Error {
    (0..n).fold(e.rename_field("attack.eps", "--eps"), |e, i| {
        e.rename_field(&format!("attack.eps[{i}]"), "--eps")
    })
}

/// `validate gap`.
fn gap_cmd(
    cfg: ConfigArgs,
    eps: Vec<String>,
    n: usize,
    (datasets, seeds, strategies, attribute, probes): (Vec<String>, Vec<u64>, &[String], bool, &[String]),
    (steps, targets, queries): (usize, usize, usize),
    quiet: bool,
    device: &Device,
) -> Outcome {
    use robustft::validate::sweep::spec::{EpsSpec, EpsValue};
    let strategies = strategies
        .iter()
        .map(|s| robustft::engine::peft::parse_strategy(s).map_err(|e| e.rename_field("strategy", "--strategies")))
        .collect::<robustft::Result<Vec<_>>>()
        .input()?;
    let probes = probes
        .iter()
        .map(|p| robustft::validate::checkpoints::gap::Probe::parse(p))
        .collect::<robustft::Result<Vec<_>>>()
        .input()?;
    let select = robustft::validate::checkpoints::gap::GapSelect {
        datasets,
        seeds,
        strategies,
        attribute,
        probes,
    };
    let (cfg, out) = load_config(cfg).input()?;
    let n_eps = eps.len();
    let eps = if eps.is_empty() {
        cfg.eps()[..1].to_vec()
    } else {
        EpsSpec::Many(eps.into_iter().map(EpsValue::Text).collect())
            .values()
            .map_err(|e| eps_flag(e, n_eps))
            .input()?
    };
    let spec = robustft::validate::checkpoints::gap::GapSpec {
        eps,
        n,
        steps,
        targets,
        queries,
    };
    robustft::validate::checkpoints::gap::gap(&cfg, &out, &spec, &select, device, quiet).running()?;
    let dir = robustft::validate::checkpoints::gap::gap_dir(&out);
    let md = std::fs::read_to_string(dir.join("gap.md")).unwrap_or_default();
    Ok(format!("{md}\nwrote {}\n", dir.join("gap.md").display()))
}

/// `validate interpolate`.
fn interpolate_cmd(
    cfg: ConfigArgs,
    alphas: Vec<f64>,
    head_start: &str,
    seeds: &[u64],
    quiet: bool,
    device: &Device,
) -> Outcome {
    use robustft::validate::checkpoints::interpolate::{HeadStart, InterpSpec, interp_dir, interpolate};
    let head_start = HeadStart::parse(head_start).input()?;
    let (cfg, out) = load_config(cfg).input()?;
    let spec = InterpSpec::new(alphas).input()?.with_head_start(head_start);
    interpolate(&cfg, &out, &spec, seeds, device, quiet).running()?;
    let dir = interp_dir(&out, head_start);
    let md = std::fs::read_to_string(dir.join("interpolate.md")).unwrap_or_default();
    Ok(format!("{md}\nwrote {}\n", dir.join("interpolate.md").display()))
}

/// `validate choose`.
#[allow(clippy::too_many_arguments)]
fn choose_cmd(
    dirs: &[std::path::PathBuf],
    min_clean: f64,
    eps: Option<String>,
    ood: bool,
    dataset: Option<String>,
    export: Option<&std::path::Path>,
    quiet: bool,
    device: &Option<String>,
) -> Outcome {
    use robustft::validate::checkpoints::choose::{ChooseSpec, choose, export as export_model, render};
    let eps = eps
        .map(|e| {
            robustft::validate::sweep::spec::EpsValue::Text(e)
                .value("--eps")
                .map_err(|e| e.rename_field("--eps", "--eps"))
        })
        .transpose()
        .input()?;
    let spec = ChooseSpec {
        min_clean,
        eps,
        ood,
        dataset,
    };
    if let Some(f) = export.filter(|f| f.exists()) {
        return Err(robustft::Error::invalid(
            "--export",
            "a file that does not exist yet (nothing is overwritten)",
            f.display(),
        ))
        .input();
    }
    let choices = choose(dirs, &spec).input()?;
    let mut text = render(&choices, &spec).input()?;
    if let Some(file) = export {
        if choices.len() != 1 {
            return Err(robustft::Error::invalid(
                "--dataset",
                "one task to export from (the folders hold several)",
                choices
                    .iter()
                    .map(|c| c.dataset.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            ))
            .input();
        }
        let d = robustft::engine::device::select(device.as_deref()).input()?;
        text += &export_model(&choices[0], file, &d, quiet).running()?;
    }
    Ok(text)
}

/// `validate verdict`.
fn verdict(dir: &std::path::Path, with: &[PathBuf], min_clean: Option<f64>, reps: usize) -> Outcome {
    if reps < 100 {
        return Err(Failure::Input(format!("invalid `--reps`: must be >= 100 (got {reps})")));
    }
    let f = robustft::validate::study::verdict::verdict_with(dir, with, min_clean, reps).input()?;
    let targets = f.at_target.as_ref().map_or_else(String::new, |t| {
        let each: Vec<String> = t.targets.iter().map(|(d, c)| format!("{d} ≥ {c:.3}")).collect();
        let cols: Vec<&str> = t.sources.iter().map(|s| s.label.as_str()).collect();
        format!(
            "best robustness at the clean target ({}), per strategy under {}: in findings.md and best_at_target.csv\n",
            each.join(", "),
            cols.join(" | ")
        )
    });
    Ok(format!(
        "{}{targets}wrote {}\n",
        robustft::validate::study::verdict::table(&f.rows),
        dir.join("report").join("findings.md").display()
    ))
}

/// `validate inspect`: one JSON line.
fn inspect(model: &str, strategy: &str, num_classes: usize) -> robustft::Result<String> {
    let cfg = VitConfig::from_arg(model).map_err(|e| e.rename_field("model", "--model"))?;
    let s = peft::parse_strategy(strategy).map_err(|e| e.rename_field("strategy", "--strategy"))?;
    let specs = peft::model_spec(&cfg, &PeftConfig::default_for(&cfg), s, num_classes)
        .map_err(|e| e.rename_field("num_classes", "--num-classes"))?;
    let c = peft::counts(&specs);
    let answer = Inspect {
        model,
        strategy: s.id(),
        trainable_backbone: c.trainable_backbone,
        trainable_head: c.trainable_head,
        total: c.total,
    };
    Ok(serde_json::to_string(&answer).expect("serialisable") + "\n")
}

/// `validate pretrain`.
#[allow(clippy::too_many_arguments)]
fn pretrain_cmd(
    model: &str,
    task: &str,
    steps: usize,
    batch_size: usize,
    lr: f64,
    seed: u64,
    out: &std::path::Path,
    device: &Device,
) -> Outcome {
    let setup = || -> robustft::Result<PretrainConfig> {
        let cfg = VitConfig::from_arg(model).map_err(|e| e.rename_field("model", "--model"))?;
        let task = SyntheticSpec::named(task, cfg.image_size).map_err(|e| e.rename_field("task", "--task"))?;
        if steps == 0 {
            return Err(robustft::Error::invalid("--steps", "must be >= 1", 0));
        }
        let pc = PretrainConfig::new(cfg, task, steps, seed).with_optimiser(batch_size, lr);
        pc.train.validate().map_err(|e| {
            e.rename_field("train.lr", "--lr")
                .rename_field("train.batch_size", "--batch-size")
        })?;
        Ok(pc)
    };
    let pc = setup().input()?;
    let pb = ProgressBar::new(steps as u64);
    pb.set_style(
        ProgressStyle::with_template("pretrain [{bar:40}] {pos}/{len} loss {msg} ({elapsed}, eta {eta})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let res = pretrain(&pc, device, out, |_, loss| {
        pb.set_message(format!("{loss:.4}"));
        pb.inc(1);
    });
    pb.finish_and_clear();
    let r = res.running()?;
    Ok(format!(
        "pretrained {} on {} for {} steps in {:.1} s: final loss {:.4}, held-out accuracy {:.3}; wrote {}\n",
        model,
        pc.task.name,
        r.steps,
        r.seconds,
        r.final_loss,
        r.val_acc,
        out.display()
    ))
}

/// `--dtype`: the element type of model and data in `bench` (clap lists the allowed values).
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Dtype {
    /// 32-bit float.
    F32,
    /// bfloat16.
    Bf16,
    /// IEEE half.
    F16,
}

/// `validate bench`: the model (a preset, file or folder, or a configuration's) timed per
/// strategy; with a configuration, the expected time of its cells.
fn bench_cmd(args: BenchArgs, device: &Device) -> Outcome {
    let dtype = match args.dtype {
        Dtype::F32 => candle_core::DType::F32,
        Dtype::Bf16 => candle_core::DType::BF16,
        Dtype::F16 => candle_core::DType::F16,
    };
    let run = args
        .config
        .as_deref()
        .map(robustft::validate::RunConfig::load)
        .transpose()
        .input()?;
    let model = args.model.as_deref().unwrap_or("tiny");
    let (name, cfg) = match &run {
        Some(r) => (r.model_name(), r.model.clone()),
        None => (
            model.to_string(),
            VitConfig::from_arg(model)
                .map_err(|e| e.rename_field("model", "--model"))
                .input()?,
        ),
    };
    let mut list = strategies(&args.strategy)
        .map_err(|e| e.rename_field("strategy", "--strategy"))
        .input()?;
    if let Some(r) = &run {
        list.retain(|s| r.strategies.contains(s));
        if list.is_empty() {
            return Err(robustft::Error::invalid(
                "--strategy",
                format!(
                    "one of the configuration's strategies ({})",
                    r.config.strategies.join(", ")
                ),
                &args.strategy,
            ))
            .input();
        }
    }
    let batch = args
        .batch_size
        .or(run.as_ref().map(|r| r.config.batch_size))
        .unwrap_or(128);
    let reps = args.reps.max(1);
    let rows = bench::run(&name, &cfg, &list, batch, reps, dtype, device).running()?;
    let peer = args
        .peer
        .as_ref()
        .map(|p| bench::run_peer(p, &cfg, batch, reps))
        .transpose()
        .input()?;
    let aa = args
        .autoattack
        .map(|n| {
            let peer = args
                .peer
                .is_some()
                .then(|| std::path::Path::new(robustft::validate::checkpoints::attack_bench::PEER_SCRIPT));
            robustft::validate::checkpoints::attack_bench::run(
                &cfg,
                robustft::validate::checkpoints::attack_bench::PRETRAIN_STEPS,
                n,
                &args.autoattack_eps,
                peer,
                device,
                &|m| eprintln!("{m}"),
            )
        })
        .transpose()
        .input()?;
    let est = run
        .as_ref()
        .map(|r| robustft::validate::sweep::estimate::estimate(r, &rows, device.is_cpu()));
    let mut text = String::new();
    if args.json {
        for r in &rows {
            text += &(serde_json::to_string(r).expect("serialisable") + "\n");
        }
        if let Some(p) = &peer {
            text += &format!("{}\n", serde_json::json!({ "peer": p }));
        }
        if let Some(a) = &aa {
            text += &format!("{}\n", serde_json::json!({ "autoattack": a }));
        }
        for e in est.iter().flatten() {
            text += &format!(
                "{}\n",
                serde_json::json!({ "cell": e, "min_s": e.min_s(), "max_s": e.max_s() })
            );
        }
    } else {
        text += &bench::render(&rows);
        if let Some(p) = &peer {
            text += &bench::render_peer(&rows, p);
        }
        if let Some(a) = &aa {
            text += &robustft::validate::checkpoints::attack_bench::render(a);
        }
        if let (Some(r), Some(e)) = (&run, &est) {
            let where_ = format!("{device:?}").to_lowercase();
            text += &robustft::validate::sweep::estimate::render(r, e, &where_);
        }
    }
    Ok(text)
}

/// `validate eval`: one checkpoint scored on n test images under an attack at each radius.
fn eval_cmd(a: EvalArgs, device: &Device) -> Outcome {
    let quiet = a.quiet;
    use robustft::validate::sweep::config::{AttackKind, AttackSpec};
    use robustft::validate::sweep::spec::{DataKind, EpsSpec, EpsValue};
    let model_arg = a.model.clone().unwrap_or_else(|| {
        if a.checkpoint.is_dir() {
            a.checkpoint.display().to_string()
        } else {
            "tiny".into()
        }
    });
    let cfg = VitConfig::from_arg(&model_arg)
        .map_err(|e| e.rename_field("model", "--model"))
        .input()?;
    let strategy = peft::parse_strategy(&a.strategy)
        .map_err(|e| e.rename_field("strategy", "--strategy"))
        .input()?;
    let kind = match a.attack {
        EvalAttack::Pgd => AttackKind::Pgd,
        EvalAttack::ApgdCe => AttackKind::Apgd,
        EvalAttack::ApgdDlr => AttackKind::ApgdDlr,
        EvalAttack::ApgdT => AttackKind::ApgdT,
        EvalAttack::FabT => AttackKind::FabT,
        EvalAttack::Square => AttackKind::Square,
        EvalAttack::Autoattack => AttackKind::Autoattack,
    };
    let spec = AttackSpec {
        kind,
        eps: EpsSpec::Many(a.eps.iter().map(|e| EpsValue::Text(e.clone())).collect()),
        alpha: None,
        steps: a.steps.or((kind == AttackKind::Pgd).then_some(15)),
        stop: None,
        targets: a.targets,
        queries: a.queries,
    };
    let attacks = spec
        .attacks()
        .map_err(|e| {
            let e = e
                .rename_field("attack.steps", "--steps")
                .rename_field("attack.targets", "--targets")
                .rename_field("attack.queries", "--queries");
            eps_flag(e, a.eps.len())
        })
        .input()?;
    if a.n == 0 {
        return Err(robustft::Error::invalid("--n", "must be >= 1", 0)).input();
    }
    let (kind_s, path) = a
        .data
        .split_once(':')
        .map_or((a.data.as_str(), None), |(k, p)| (k, Some(p)));
    let data_kind: DataKind = serde_json::from_value(serde_json::json!(kind_s))
        .map_err(|e| robustft::Error::invalid("--data", e.to_string(), kind_s))
        .input()?;
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
        cfg.image_size,
        "--",
    )
    .input()?;
    let eval = robustft::validate::checkpoints::eval::EvalSpec {
        checkpoint: a.checkpoint.clone(),
        backbone: a.backbone.clone(),
        model: cfg,
        model_name: model_arg,
        strategy,
        dataset: a.data.clone(),
        attacks,
        n: a.n,
        seed: a.seed,
    };
    if let Some(a) = eval.attacks.iter().find(|a| a.min_classes() > loaded.test.classes) {
        return Err(robustft::Error::invalid(
            "--attack",
            format!(
                "{} needs at least {} classes; the data has {} (autoattack runs on any task)",
                a.name(),
                a.min_classes(),
                loaded.test.classes
            ),
            a.name(),
        ))
        .input();
    }
    let model = robustft::validate::checkpoints::eval::load_model(&eval, loaded.test.classes, device).input()?;
    if let Some(p) = &a.save_images {
        if p.exists() {
            return Err(robustft::Error::invalid(
                "--save-images",
                "a file that does not exist yet",
                p.display(),
            ))
            .input();
        }
        robustft::validate::checkpoints::eval::save_images(&loaded.test, a.n, a.seed, p).running()?;
    }
    let say = |m: &str| {
        if !quiet {
            eprintln!("{m}");
        }
    };
    let report = robustft::validate::checkpoints::eval::evaluate(&eval, &model, &loaded.test, &say).running()?;
    Ok(if a.json {
        serde_json::to_string(&report).expect("serialisable") + "\n"
    } else {
        robustft::validate::checkpoints::eval::render(&report)
    })
}
