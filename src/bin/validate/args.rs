//! `validate`'s command line: one grammar for every command. A command that makes a sweep takes
//! its configuration (`--config FILE` or `--preset NAME`, and `--out DIR`); a command that reads a
//! finished folder takes it as `DIR` (the configuration comes from the folder's records);
//! `--quiet` and `--device` are global. Strategies, attacks and head starts are value lists.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use robustft::cli::StrategyArg;

pub use crate::options::{BenchArgs, ChooseArgs, EvalArgs, GapArgs, InterpolateArgs, PretrainArgs, SlurmArgs};

#[derive(Parser, Debug)]
#[command(
    name = "validate",
    version,
    about = "Validation engine: fine-tune ViTs with 7 strategies and measure robustness",
    after_help = "With no command: runs the embedded cpu-default preset into runs/cpu-default \
                  (about 2 minutes on 2 cores; resumes if that folder holds a finished or killed run)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Option<Cmd>,
    #[command(flatten)]
    pub global: Global,
}

/// Flags every command takes.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct Global {
    /// No progress bars (without a terminal, in a log or a Slurm job, long loops print one line
    /// per step either way).
    #[arg(long, global = true)]
    pub quiet: bool,
    /// cpu, cuda or cuda:N (default: CUDA if built with it and present, else CPU; `validate` with
    /// no command: CPU). Commands that compute nothing ignore it.
    #[arg(long, global = true, value_name = "DEVICE")]
    pub device: Option<String>,
}

/// Which configuration and where its run folder is (the commands that make a sweep).
#[derive(clap::Args, Debug, Clone)]
pub struct ConfigArgs {
    /// Run configuration (TOML).
    #[arg(long, value_name = "FILE", conflicts_with = "preset")]
    pub config: Option<PathBuf>,
    /// Embedded preset: cpu-default, smoke or paper-cpu.
    #[arg(long)]
    pub preset: Option<String>,
    /// Output folder (default: `runs/<name>`; the upstream backbone is cached there).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// The stage each command belongs to, in `validate --help` (see `main::help_template`).
pub const STAGES: [(&str, &[&str]); 4] = [
    (
        "Sweep (makes records)",
        &["run", "plan", "status", "slurm", "tune", "tasks"],
    ),
    ("Study (reads records)", &["report", "verdict", "compare", "versus"]),
    (
        "Checkpoints (replays weights)",
        &["eval", "gap", "interpolate", "choose"],
    ),
    ("Tools", &["inspect", "pretrain", "bench"]),
];

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Run (or resume) a tracked fine-tuning experiment, then write its report.
    Run {
        #[command(flatten)]
        cfg: ConfigArgs,
        /// Run only this cell of the sweep's plan (0 = upstream; see `validate plan`), as one
        /// task of a job array does; no report.
        #[arg(long, value_name = "N")]
        cell: Option<usize>,
    },
    /// The cells of a sweep (upstream, then every dataset × seed × strategy) with their record
    /// paths and whether each is complete in the output folder; writes DIR/plan.json.
    Plan {
        #[command(flatten)]
        cfg: ConfigArgs,
        /// Print the plan as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Cells done / running / stopped / missing, per dataset and strategy, from DIR's records
    /// and cell locks alone (any cluster, with or without Slurm accounting).
    Status {
        /// A run's output folder (holding plan.json).
        dir: PathBuf,
    },
    /// Run the sweep on a Slurm cluster: write DIR/slurm/{upstream,cells,report}.sbatch and
    /// submit the upstream job, an array over the incomplete cells, and the report job.
    Slurm {
        #[command(flatten)]
        cfg: ConfigArgs,
        #[command(flatten)]
        slurm: SlurmArgs,
    },
    /// Learning-rate sweep on a validation split of the training images; writes DIR/tune/.
    Tune {
        #[command(flatten)]
        cfg: ConfigArgs,
        /// Candidate peak learning rates, comma-separated.
        #[arg(long, value_delimiter = ',', default_values_t = robustft::validate::sweep::tune::DEFAULT_LRS)]
        lrs: Vec<f64>,
        /// Validation images carved from each dataset's training images.
        #[arg(long, default_value_t = 2000)]
        val_images: usize,
        /// Seed of the split, head and batch order.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Separability of each configured task in the pretrained features (and of every class pair).
    Tasks {
        #[command(flatten)]
        cfg: ConfigArgs,
        /// Also measure every pair of each dataset's classes as a two-class task.
        #[arg(long)]
        pairs: bool,
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
        /// Other run folders of the same tasks and evaluation images (robust fine-tuning, say):
        /// extra columns of the section "best achievable robustness at the clean target".
        #[arg(long, value_name = "DIR")]
        with: Vec<PathBuf>,
        /// That section's clean target for every task (default: per task, the best seed-mean
        /// final clean accuracy of DIR's strategies minus one point).
        #[arg(long)]
        min_clean: Option<f64>,
        /// Bootstrap replicates.
        #[arg(long, default_value_t = robustft::validate::study::report::REPS)]
        reps: usize,
    },
    /// Theory's predicted ranking next to the measured AUC ranking, per dataset.
    Compare {
        /// A run's output folder.
        dir: PathBuf,
    },
    /// Standard and robust (adversarial) fine-tuning side by side: AUC and final accuracies per
    /// strategy and radius with paired differences, and whether the ranking changes; writes
    /// ROBUST/report/versus-<STANDARD's training>.md (versus-standard.md).
    Versus {
        /// The standard fine-tuning run folder.
        standard: PathBuf,
        /// The robust fine-tuning run folder (training = pgd-at or trades).
        robust: PathBuf,
        /// Bootstrap replicates.
        #[arg(long, default_value_t = 1000)]
        reps: usize,
    },
    /// Score a checkpoint: clean and robust accuracy per radius under an attack (AutoAttack by default).
    Eval(EvalArgs),
    /// PGD vs AutoAttack at each finished run's peak-robustness and final checkpoints of DIR
    /// (replayed from the records, checked image by image); writes DIR/gap/ (gap.md, gap.csv, per run).
    Gap(GapArgs),
    /// Weight-space interpolation (WiSE-FT) between each finished run's starting and fine-tuned
    /// parameters in DIR, evaluated as the run was; writes DIR/interpolate/ (table, figures, per run).
    Interpolate(InterpolateArgs),
    /// The checkpoint to ship: over the runs, steps and interpolation weights of the folders, the
    /// Pareto-optimal candidates reaching a clean-accuracy target, ranked by robust accuracy
    /// with CIs and ties marked; --export writes the first as an HF-layout safetensors file.
    Choose(ChooseArgs),
    /// Trainable parameter counts of a model under a strategy, as one JSON object.
    Inspect {
        /// tiny, small, base, a TOML file with a custom size, or an HF model folder.
        #[arg(long, default_value = "base")]
        model: String,
        /// The strategy.
        #[arg(long, value_enum, ignore_case = true)]
        strategy: StrategyArg,
        /// Classes of the head.
        #[arg(long, default_value_t = 1000)]
        num_classes: usize,
    },
    /// Pretrain a backbone on the synthetic upstream task and save it (HF layout).
    Pretrain(PretrainArgs),
    /// Time train steps, eval batches and PGD-15 per strategy; with --config, also the expected
    /// time of each cell of that configuration on this machine.
    Bench(BenchArgs),
}
