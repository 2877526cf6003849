//! `validate`: the validation engine — ViTs fine-tuned with the seven strategies, attacked and
//! measured: tracked runs (`validate` with no arguments, `run`), learning-rate sweeps (`tune`),
//! task separability (`tasks`), reports (`report`), verdicts on the paper's findings (`verdict`),
//! the theory comparison (`compare`), and `inspect`, `pretrain`, `bench`.

use std::path::PathBuf;
use std::process::ExitCode;

use robustft::cli::{Classify, Failure, Outcome, finish};

use candle_core::Device;
use clap::{Parser, Subcommand};
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

#[derive(Parser, Debug)]
#[command(
    name = "validate",
    version,
    about = "Validation engine: fine-tune ViTs with 7 strategies and measure robustness",
    after_help = "With no command: runs the embedded cpu-default preset into runs/cpu-default \
                  (about 2 minutes on 2 cores; resumes if that folder holds a finished or killed run)."
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

/// Which configuration and where its run folder is (shared by run, tune and tasks).
#[derive(clap::Args, Debug)]
struct ConfigArgs {
    /// Run configuration (TOML).
    #[arg(long, value_name = "FILE", conflicts_with = "preset")]
    config: Option<PathBuf>,
    /// Embedded preset: cpu-default, smoke or paper-cpu.
    #[arg(long)]
    preset: Option<String>,
    /// Output folder (default: `runs/<name>`; the upstream backbone is cached there).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run (or resume) a tracked fine-tuning experiment, then write its report.
    Run {
        #[command(flatten)]
        cfg: ConfigArgs,
        /// No progress bars.
        #[arg(long)]
        quiet: bool,
        /// cpu, cuda or cuda:N (default: CUDA if built with it and present, else CPU).
        #[arg(long)]
        device: Option<String>,
    },
    /// Learning-rate sweep on a validation split of the training images; writes DIR/tune/.
    Tune {
        #[command(flatten)]
        cfg: ConfigArgs,
        /// Candidate peak learning rates, comma-separated.
        #[arg(long, value_delimiter = ',', default_values_t = robustft::validate::tune::DEFAULT_LRS)]
        lrs: Vec<f64>,
        /// Validation images carved from each dataset's training images.
        #[arg(long, default_value_t = 2000)]
        val_images: usize,
        /// Seed of the split, head and batch order.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// No progress bars.
        #[arg(long)]
        quiet: bool,
    },
    /// Separability of each configured task in the pretrained features (and of every class pair).
    Tasks {
        #[command(flatten)]
        cfg: ConfigArgs,
        /// Also measure every pair of each dataset's classes as a two-class task.
        #[arg(long)]
        pairs: bool,
        /// No progress bars.
        #[arg(long)]
        quiet: bool,
    },
    /// Write DIR/report/ from the records in DIR.
    Report {
        /// A run's output folder.
        dir: PathBuf,
    },
    /// Test each finding of Li et al. 2025 on DIR's records: DIR/report/findings.{md,csv}.
    Verdict {
        /// A run's output folder.
        dir: PathBuf,
        /// Bootstrap replicates.
        #[arg(long, default_value_t = robustft::validate::report::REPS)]
        reps: usize,
    },
    /// Theory's predicted ranking next to the measured AUC ranking, per dataset.
    Compare {
        /// A run's output folder.
        dir: PathBuf,
    },
    /// Trainable parameter counts of a model under a strategy, as one JSON object.
    Inspect {
        /// tiny, small, base, or a TOML file with a custom size.
        #[arg(long, default_value = "base")]
        model: String,
        /// full, linear_probe, lora, adapter, compacter, bitfit or ia3.
        #[arg(long)]
        strategy: String,
        /// Classes of the head.
        #[arg(long, default_value_t = 1000)]
        num_classes: usize,
    },
    /// Pretrain a backbone on the synthetic upstream task and save it (HF layout).
    Pretrain {
        /// tiny, small, base, or a TOML file with a custom size.
        #[arg(long, default_value = "tiny")]
        model: String,
        /// synthetic-upstream (or synthetic-simple / synthetic-complex).
        #[arg(long, default_value = "synthetic-upstream")]
        task: String,
        /// Optimiser steps.
        #[arg(long, default_value_t = 300)]
        steps: usize,
        /// Batch size.
        #[arg(long, default_value_t = 128)]
        batch_size: usize,
        /// Peak learning rate.
        #[arg(long, default_value_t = 1e-3)]
        lr: f64,
        /// Seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Output checkpoint (.safetensors).
        #[arg(long)]
        out: PathBuf,
        /// cpu, cuda or cuda:N.
        #[arg(long)]
        device: Option<String>,
    },
    /// Time train steps, eval batches and PGD-15 per strategy.
    Bench {
        /// tiny, small, base, or a TOML file with a custom size.
        #[arg(long, default_value = "tiny")]
        model: String,
        /// A strategy or `all`.
        #[arg(long, default_value = "all")]
        strategy: String,
        /// Batch size.
        #[arg(long, default_value_t = 128)]
        batch_size: usize,
        /// Timed repetitions (median).
        #[arg(long, default_value_t = 5)]
        reps: usize,
        /// Element type of model and data.
        #[arg(long, value_enum, default_value_t = Dtype::F32)]
        dtype: Dtype,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// cpu, cuda or cuda:N.
        #[arg(long)]
        device: Option<String>,
        /// Also run the PyTorch peer (default validation/peer/vit_bench.py; validation/gpu/peer_bench.py
        /// on a GPU) in the same run and print the ratios.
        #[arg(long, value_name = "SCRIPT", num_args = 0..=1, default_missing_value = "validation/peer/vit_bench.py")]
        peer: Option<PathBuf>,
    },
}

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
    // The data and checkpoint checks are made by the job itself, before it writes anything
    // (validate::check_inputs; refused errors exit 2).
    Ok((cfg, out))
}

/// `validate run` (and `validate` alone): the sweep, then its report and verdicts.
fn run(args: ConfigArgs, quiet: bool, device: &Device) -> Outcome {
    let (cfg, out) = load_config(args).input()?;
    let start = std::time::Instant::now();
    robustft::validate::runner::run_all(&cfg, &out, device, quiet).running()?;
    let report = robustft::validate::report::write_report(&out).running()?;
    print!("{}", report.summary);
    let f = robustft::validate::verdict::verdict(&out, robustft::validate::report::REPS).running()?;
    Ok(format!(
        "{}run {} finished in {:.0} s; report in {}\n",
        robustft::validate::verdict::table(&f.rows),
        cfg.config.name,
        start.elapsed().as_secs_f64(),
        out.join("report").display()
    ))
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
        Some(Cmd::Run { cfg, quiet, device }) => pick(&device).and_then(|d| run(cfg, quiet, &d)),
        Some(Cmd::Tune {
            cfg,
            lrs,
            val_images,
            seed,
            quiet,
        }) => tune(cfg, lrs, val_images, seed, quiet),
        Some(Cmd::Tasks { cfg, pairs, quiet }) => load_config(cfg).input().and_then(|(cfg, out)| {
            robustft::validate::upstream::tasks(&cfg, &out, pairs, &Device::Cpu, quiet).running()
        }),
        Some(Cmd::Verdict { dir, reps }) => verdict(&dir, reps),
        Some(Cmd::Report { dir }) => robustft::validate::report::write_report(&dir)
            .input()
            .map(|r| r.summary),
        Some(Cmd::Compare { dir }) => robustft::validate::compare::compare(&dir).input(),
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
        Some(Cmd::Bench {
            model,
            strategy,
            batch_size,
            reps,
            json,
            peer,
            device,
            dtype,
        }) => pick(&device).and_then(|d| bench_cmd(&model, &strategy, batch_size, reps, json, peer, &d, dtype)),
    })
}

/// `validate tune`.
fn tune(cfg: ConfigArgs, lrs: Vec<f64>, val_images: usize, seed: u64, quiet: bool) -> Outcome {
    let (cfg, out) = load_config(cfg).input()?;
    let spec = robustft::validate::tune::TuneSpec { lrs, val_images, seed };
    robustft::validate::tune::tune(&cfg, &out, &spec, &Device::Cpu, quiet).running()
}

/// `validate verdict`.
fn verdict(dir: &std::path::Path, reps: usize) -> Outcome {
    if reps < 100 {
        return Err(Failure::Input(format!("invalid `--reps`: must be >= 100 (got {reps})")));
    }
    let f = robustft::validate::verdict::verdict(dir, reps).input()?;
    Ok(format!(
        "{}wrote {}\n",
        robustft::validate::verdict::table(&f.rows),
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

/// `validate bench`.
#[allow(clippy::too_many_arguments)]
fn bench_cmd(
    model: &str,
    strategy: &str,
    batch_size: usize,
    reps: usize,
    json: bool,
    peer: Option<PathBuf>,
    device: &Device,
    dtype: Dtype,
) -> Outcome {
    let dtype = match dtype {
        Dtype::F32 => candle_core::DType::F32,
        Dtype::Bf16 => candle_core::DType::BF16,
        Dtype::F16 => candle_core::DType::F16,
    };
    let cfg = VitConfig::from_arg(model)
        .map_err(|e| e.rename_field("model", "--model"))
        .input()?;
    let list = strategies(strategy)
        .map_err(|e| e.rename_field("strategy", "--strategy"))
        .input()?;
    let rows = bench::run(model, &cfg, &list, batch_size, reps.max(1), dtype, device).running()?;
    let peer = peer
        .map(|p| bench::run_peer(&p, &cfg, batch_size, reps.max(1)))
        .transpose()
        .input()?;
    let mut text = String::new();
    if json {
        for r in &rows {
            text += &(serde_json::to_string(r).expect("serialisable") + "\n");
        }
        if let Some(p) = &peer {
            text += &format!("{}\n", serde_json::json!({ "peer": p }));
        }
    } else {
        text += &bench::render(&rows);
        if let Some(p) = &peer {
            text += &bench::render_peer(&rows, p);
        }
    }
    Ok(text)
}
