//! `validate`: the validation engine — ViTs fine-tuned with the seven strategies, attacked and
//! measured: tracked runs (`validate` with no arguments, `run`), learning-rate sweeps (`tune`),
//! task separability (`tasks`), reports (`report`), verdicts on the paper's findings (`verdict`),
//! the theory comparison (`compare`), and `inspect`, `pretrain`, `bench`.

use std::path::PathBuf;
use std::process::ExitCode;

use robustft::cli::{fail, fail_run};

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
    /// Output folder (default: runs/<name>; the upstream backbone is cached there).
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
        /// Element type of model and data: f32, bf16 or f16.
        #[arg(long, default_value = "f32")]
        dtype: String,
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
    let out = out.unwrap_or_else(|| PathBuf::from("runs").join(&cfg.raw.name));
    robustft::cli::check_out_dir(&out)?;
    // Missing data or checkpoint: bad input, refused before anything is written.
    robustft::validate::upstream::check_checkpoint(&cfg)?;
    robustft::validate::data::check_data(&cfg)?;
    Ok((cfg, out))
}

fn run(args: ConfigArgs, quiet: bool, device: &Device) -> ExitCode {
    let (cfg, out) = match load_config(args) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    // Records of another configuration or an unreadable checkpoint: refused before any work.
    if let Err(e) = robustft::validate::runner::preflight(&cfg, &out) {
        return fail(e);
    }
    let start = std::time::Instant::now();
    if let Err(e) = robustft::validate::runner::run_all(&cfg, &out, device, quiet) {
        return fail_after_start(e);
    }
    let reported = robustft::validate::report::write_report(&out).and_then(|r| {
        print!("{}", r.summary);
        let f = robustft::validate::verdict::verdict(&out, robustft::validate::report::REPS)?;
        print!("{}", robustft::validate::verdict::table(&f.rows));
        Ok(())
    });
    match reported {
        Ok(()) => {
            println!(
                "run {} finished in {:.0} s; report in {}",
                cfg.raw.name,
                start.elapsed().as_secs_f64(),
                out.join("report").display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail_run(e),
    }
}

/// Prints `text` or fails (see [`fail_after_start`]).
fn print_or_fail(r: robustft::Result<String>) -> ExitCode {
    match r {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => fail_after_start(e),
    }
}

/// Exit 1 for a run-time error after valid input; exit 2 when the output folder is held by
/// another run (refused before anything was written).
fn fail_after_start(e: robustft::Error) -> ExitCode {
    match e {
        robustft::Error::Locked { .. } => fail(e),
        e => fail_run(e),
    }
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
    let pick = |d: &Option<String>| robustft::engine::device::select(d.as_deref());
    match cli.cmd {
        None => run(
            ConfigArgs {
                config: None,
                preset: Some("cpu-default".into()),
                out: None,
            },
            false,
            &Device::Cpu,
        ),
        Some(Cmd::Tune {
            cfg,
            lrs,
            val_images,
            seed,
            quiet,
        }) => {
            let (cfg, out) = match load_config(cfg) {
                Ok(c) => c,
                Err(e) => return fail(e),
            };
            let spec = robustft::validate::tune::TuneSpec { lrs, val_images, seed };
            if let Err(e) = spec.validate() {
                return fail(e);
            }
            print_or_fail(robustft::validate::tune::tune(&cfg, &out, &spec, &Device::Cpu, quiet))
        }
        Some(Cmd::Tasks { cfg, pairs, quiet }) => {
            let (cfg, out) = match load_config(cfg) {
                Ok(c) => c,
                Err(e) => return fail(e),
            };
            print_or_fail(robustft::validate::upstream::tasks(
                &cfg,
                &out,
                pairs,
                &Device::Cpu,
                quiet,
            ))
        }
        Some(Cmd::Verdict { dir, reps }) => {
            if reps < 100 {
                return fail(format!("invalid `--reps`: must be >= 100 (got {reps})"));
            }
            match robustft::validate::verdict::verdict(&dir, reps) {
                Ok(f) => {
                    print!("{}", robustft::validate::verdict::table(&f.rows));
                    println!("wrote {}", dir.join("report").join("findings.md").display());
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            }
        }
        Some(Cmd::Run { cfg, quiet, device }) => match pick(&device) {
            Ok(d) => run(cfg, quiet, &d),
            Err(e) => fail(e),
        },
        Some(Cmd::Report { dir }) => match robustft::validate::report::write_report(&dir) {
            Ok(r) => {
                print!("{}", r.summary);
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
        Some(Cmd::Compare { dir }) => match robustft::validate::compare::compare(&dir) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
        Some(Cmd::Inspect {
            model,
            strategy,
            num_classes,
        }) => {
            let run = || -> robustft::Result<String> {
                let cfg = VitConfig::from_arg(&model).map_err(|e| e.rename_field("model", "--model"))?;
                let s = peft::parse_strategy(&strategy).map_err(|e| e.rename_field("strategy", "--strategy"))?;
                let specs = peft::model_spec(&cfg, &PeftConfig::default_for(&cfg), s, num_classes)
                    .map_err(|e| e.rename_field("num_classes", "--num-classes"))?;
                let c = peft::counts(&specs);
                Ok(serde_json::to_string(&Inspect {
                    model: &model,
                    strategy: s.id(),
                    trainable_backbone: c.trainable_backbone,
                    trainable_head: c.trainable_head,
                    total: c.total,
                })
                .expect("serialisable"))
            };
            match run() {
                Ok(s) => {
                    println!("{s}");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            }
        }
        Some(Cmd::Pretrain {
            model,
            task,
            steps,
            batch_size,
            lr,
            seed,
            out,
            device,
        }) => {
            let device = match pick(&device) {
                Ok(d) => d,
                Err(e) => return fail(e),
            };
            let setup = || -> robustft::Result<PretrainConfig> {
                let cfg = VitConfig::from_arg(&model).map_err(|e| e.rename_field("model", "--model"))?;
                let task = SyntheticSpec::named(&task, cfg.image_size).map_err(|e| e.rename_field("task", "--task"))?;
                if steps == 0 {
                    return Err(robustft::Error::invalid("--steps", "must be >= 1", 0));
                }
                let mut pc = PretrainConfig::new(cfg, task, steps, seed);
                pc.train.batch_size = batch_size;
                pc.train.lr = lr;
                pc.train.validate().map_err(|e| {
                    e.rename_field("train.lr", "--lr")
                        .rename_field("train.batch_size", "--batch-size")
                })?;
                Ok(pc)
            };
            let pc = match setup() {
                Ok(p) => p,
                Err(e) => return fail(e),
            };
            let pb = ProgressBar::new(steps as u64);
            pb.set_style(
                ProgressStyle::with_template("pretrain [{bar:40}] {pos}/{len} loss {msg} ({elapsed}, eta {eta})")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            let res = pretrain(&pc, &device, &out, |_, loss| {
                pb.set_message(format!("{loss:.4}"));
                pb.inc(1);
            });
            pb.finish_and_clear();
            match res {
                Ok(r) => {
                    println!(
                        "pretrained {} on {} for {} steps in {:.1} s: final loss {:.4}, held-out accuracy {:.3}; wrote {}",
                        model,
                        pc.task.name,
                        r.steps,
                        r.seconds,
                        r.final_loss,
                        r.val_acc,
                        out.display()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => fail_run(e),
            }
        }
        Some(Cmd::Bench {
            model,
            strategy,
            batch_size,
            reps,
            json,
            peer,
            device,
            dtype,
        }) => {
            let dtype = match dtype.as_str() {
                "f32" => candle_core::DType::F32,
                "bf16" => candle_core::DType::BF16,
                "f16" => candle_core::DType::F16,
                other => return fail(format!("invalid `--dtype`: expected f32, bf16 or f16 (got {other})")),
            };
            let device = match pick(&device) {
                Ok(d) => d,
                Err(e) => return fail(e),
            };
            let cfg = match VitConfig::from_arg(&model) {
                Ok(c) => c,
                Err(e) => return fail(e.rename_field("model", "--model")),
            };
            let list = match strategies(&strategy) {
                Ok(l) => l,
                Err(e) => return fail(e.rename_field("strategy", "--strategy")),
            };
            match bench::run(&model, &cfg, &list, batch_size, reps.max(1), dtype, &device) {
                Ok(rows) => {
                    let peer = match peer
                        .map(|p| bench::run_peer(&p, &cfg, batch_size, reps.max(1)))
                        .transpose()
                    {
                        Ok(p) => p,
                        Err(e) => return fail(e),
                    };
                    if json {
                        for r in &rows {
                            println!("{}", serde_json::to_string(r).expect("serialisable"));
                        }
                        if let Some(p) = &peer {
                            println!("{}", serde_json::json!({ "peer": p }));
                        }
                    } else {
                        print!("{}", bench::render(&rows));
                        if let Some(p) = &peer {
                            print!("{}", bench::render_peer(&rows, p));
                        }
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => fail_run(e),
            }
        }
    }
}
