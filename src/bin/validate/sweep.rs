//! The sweep's commands: they make records from a configuration (`--config FILE` or `--preset
//! NAME`) into its run folder (`--out DIR`, default `runs/<name>`).

use std::path::PathBuf;

use candle_core::Device;
use robustft::cli::{Classify, Failure, Outcome};
use robustft::validate::ValidRun;

use crate::args::ConfigArgs;

/// The configuration named by `--config` or `--preset`, and its output folder (default
/// `runs/<name>`).
pub fn load_config(args: ConfigArgs) -> robustft::Result<(ValidRun, PathBuf)> {
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
    // (validate::sweep::inputs::check_inputs; refused errors exit 2).
    Ok((cfg, out))
}

/// `validate run` (and `validate` alone): the sweep, then its report and verdicts.
pub fn run(args: ConfigArgs, quiet: bool, device: &Device) -> Outcome {
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
pub fn run_cell(args: ConfigArgs, n: usize, quiet: bool, device: &Device) -> Outcome {
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
pub fn plan(args: ConfigArgs, json: bool) -> Outcome {
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
pub fn slurm(args: ConfigArgs, opts: &robustft::validate::sweep::slurm::SlurmOptions) -> Outcome {
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

/// `validate tune`.
pub fn tune(cfg: ConfigArgs, lrs: Vec<f64>, val_images: usize, seed: u64, quiet: bool, device: &Device) -> Outcome {
    let (cfg, out) = load_config(cfg).input()?;
    let spec = robustft::validate::sweep::tune::TuneSpec { lrs, val_images, seed };
    robustft::validate::sweep::tune::tune(&cfg, &out, &spec, device, quiet).running()
}

/// `validate tasks`.
pub fn tasks(cfg: ConfigArgs, pairs: bool, quiet: bool, device: &Device) -> Outcome {
    let (cfg, out) = load_config(cfg).input()?;
    robustft::validate::sweep::tasks::tasks(&cfg, &out, pairs, device, quiet).running()
}
