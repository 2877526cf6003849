//! `validate`: the validation engine — ViTs fine-tuned with the seven strategies, attacked and
//! measured. Its commands, by stage (`validate --help` lists them so): the sweep makes records
//! (`run`, `plan`, `status`, `slurm`, `tune`, `tasks`; `validate` alone runs the cpu-default
//! preset), the study reads them (`report`, `verdict`, `compare`, `versus`), the checkpoint
//! commands replay weights (`eval`, `gap`, `interpolate`, `choose`), and tools (`inspect`,
//! `pretrain`, `bench`). Each command parses here and makes one library call in its stage's file.

use std::process::ExitCode;

use robustft::cli::{Classify, Outcome, finish};

/// mimalloc: candle allocates a buffer per op, and the system allocator's map/unmap of large
/// ones cost about 30% of a CPU training step (guide, performance). The library leaves the
/// choice to its users; this binary makes it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod args;
mod checkpoints;
mod options;
mod study;
mod sweep;
mod tools;

use args::{Cli, Cmd, ConfigArgs, Global, STAGES};

fn main() -> ExitCode {
    robustft::engine::prefer_batch_parallelism();
    let cli: Cli = match robustft::cli::parse_with::<Cli>(grouped_help) {
        Ok(c) => c,
        Err(code) => return code,
    };
    finish(match cli.cmd {
        None => {
            let preset = ConfigArgs {
                config: None,
                preset: Some("cpu-default".into()),
                out: None,
            };
            let device = match &cli.global.device {
                None => Ok(candle_core::Device::Cpu),
                Some(d) => robustft::engine::device::select(Some(d)).input(),
            };
            device.and_then(|d| sweep::run(preset, cli.global.quiet, &d))
        }
        Some(cmd) => dispatch(cmd, &cli.global),
    })
}

/// One library call per command, in its stage's file.
fn dispatch(cmd: Cmd, g: &Global) -> Outcome {
    let device = || robustft::engine::device::select(g.device.as_deref()).input();
    let quiet = g.quiet;
    match cmd {
        Cmd::Run { cfg, cell: None } => sweep::run(cfg, quiet, &device()?),
        Cmd::Run { cfg, cell: Some(n) } => sweep::run_cell(cfg, n, quiet, &device()?),
        Cmd::Plan { cfg, json } => sweep::plan(cfg, json),
        Cmd::Status { dir } => robustft::validate::sweep::plan::status_table(&dir).input(),
        Cmd::Slurm { cfg, slurm } => sweep::slurm(cfg, &slurm.into()),
        Cmd::Tune {
            cfg,
            lrs,
            val_images,
            seed,
        } => sweep::tune(cfg, lrs, val_images, seed, quiet, &device()?),
        Cmd::Tasks { cfg, pairs } => sweep::tasks(cfg, pairs, quiet, &device()?),
        Cmd::Report { dir } => robustft::validate::study::report::write_report(&dir)
            .input()
            .map(|r| r.summary),
        Cmd::Verdict {
            dir,
            with,
            min_clean,
            reps,
        } => study::verdict(&dir, &with, min_clean, reps),
        Cmd::Compare { dir } => robustft::validate::study::compare::compare(&dir).input(),
        Cmd::Versus { standard, robust, reps } => study::versus(&standard, &robust, reps),
        Cmd::Eval(args) => checkpoints::eval(args, quiet, &device()?),
        Cmd::Gap(args) => checkpoints::gap(args, quiet, device),
        Cmd::Interpolate(args) => checkpoints::interpolate(args, quiet, device),
        Cmd::Choose(args) => checkpoints::choose(args, quiet, device),
        Cmd::Inspect {
            model,
            strategy,
            num_classes,
        } => tools::inspect(&model, strategy.0, num_classes).input(),
        Cmd::Pretrain(args) => tools::pretrain(&args, &device()?),
        Cmd::Bench(args) => tools::bench(args, &device()?),
    }
}

/// `validate --help` with the commands grouped by stage ([`STAGES`]), each with its one-line
/// description as clap gives it; every command is in exactly one stage (a test checks the help).
fn grouped_help(cmd: clap::Command) -> clap::Command {
    let mut list = String::new();
    for (stage, names) in STAGES {
        list += &format!("{stage}:\n");
        for name in names {
            let about = cmd
                .find_subcommand(name)
                .and_then(|c| c.get_about())
                .map(|a| a.to_string())
                .unwrap_or_default();
            list += &format!("  {name:<12} {about}\n");
        }
        list += "\n";
    }
    cmd.help_template(format!(
        "{{about-with-newline}}\n{{usage-heading}} {{usage}}\n\n{list}Options:\n{{options}}{{after-help}}"
    ))
}
