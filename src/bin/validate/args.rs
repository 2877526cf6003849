//! `validate`'s command line: the subcommands and their flags.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use super::Dtype;

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
}

/// Which configuration and where its run folder is (shared by run, tune and tasks).
#[derive(clap::Args, Debug)]
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

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Run (or resume) a tracked fine-tuning experiment, then write its report.
    Run {
        #[command(flatten)]
        cfg: ConfigArgs,
        /// No progress bars (without a terminal, in a log or a Slurm job, each evaluation prints
        /// one line either way).
        #[arg(long)]
        quiet: bool,
        /// cpu, cuda or cuda:N (default: CUDA if built with it and present, else CPU).
        #[arg(long)]
        device: Option<String>,
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
        /// No progress bars.
        #[arg(long)]
        quiet: bool,
    },
    /// PGD vs AutoAttack at each finished run's peak-robustness and final checkpoints (replayed
    /// from the records, checked image by image); writes DIR/gap/ (gap.md, gap.csv, per run).
    Gap {
        #[command(flatten)]
        cfg: ConfigArgs,
        /// Radii (each one of the run's), comma-separated (default: the run's smallest). A folder's radii
        /// followed by larger ones complete its cells instead of redoing them.
        #[arg(long, value_delimiter = ',')]
        eps: Vec<String>,
        /// Images per checkpoint: the first N of each run's evaluation images.
        #[arg(long, default_value_t = 1000)]
        n: usize,
        /// Only these seeds (default: all the run's), comma-separated.
        #[arg(long, value_delimiter = ',')]
        seeds: Vec<u64>,
        /// Only these datasets (default: all the run's), comma-separated names.
        #[arg(long, value_delimiter = ',')]
        datasets: Vec<String>,
        /// Only these strategies (default: all the run's), comma-separated ids (full, lora, …).
        #[arg(long, value_delimiter = ',')]
        strategies: Vec<String>,
        /// Measure AutoAttack again on the selected cells that do not record which member broke
        /// each image (cells from before members were recorded), checking every image's outcome
        /// against the recorded one; the summary then says which member broke the points PGD
        /// missed.
        #[arg(long)]
        attribute: bool,
        /// Attacks to score beside AutoAttack on the selected cells, comma-separated: PGD variants
        /// pgd:STEPS:ALPHA with ALPHA a fraction of ε (pgd:100:1/4 is PGD-100 with α = ε/4; the
        /// run's own steps and α give another random start) and APGD-CE at STEPS iterations
        /// (apgd-ce:15); on finished cells only the probes they lack run.
        #[arg(long = "probe", value_delimiter = ',')]
        probes: Vec<String>,
        /// AutoAttack's APGD and FAB iterations.
        #[arg(long, default_value_t = 100)]
        steps: usize,
        /// AutoAttack's target classes (APGD-T, FAB-T).
        #[arg(long, default_value_t = 9)]
        targets: usize,
        /// AutoAttack's Square queries.
        #[arg(long, default_value_t = 5000)]
        queries: usize,
        /// No progress bars.
        #[arg(long)]
        quiet: bool,
        /// cpu, cuda or cuda:N (default: CUDA if built with it and present, else CPU).
        #[arg(long)]
        device: Option<String>,
    },
    /// Weight-space interpolation (WiSE-FT) between each finished run's starting and fine-tuned
    /// parameters, evaluated as the run was; writes DIR/interpolate/ (table, figures, per run).
    Interpolate {
        #[command(flatten)]
        cfg: ConfigArgs,
        /// Interpolation weights in [0, 1], comma-separated (0 and 1 are always added: they are
        /// checked against the run's step-0 and final records).
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1"
        )]
        alphas: Vec<f64>,
        /// Where the head's path starts: its initialisation (init; results in DIR/interpolate/)
        /// or the linear-probing run's final head of the same task and seed (linear-probe;
        /// DIR/interpolate-lp-head/).
        #[arg(long, default_value = "init")]
        head_start: String,
        /// Only these seeds (default: all the run's), comma-separated.
        #[arg(long, value_delimiter = ',')]
        seeds: Vec<u64>,
        /// No progress bars.
        #[arg(long)]
        quiet: bool,
        /// cpu, cuda or cuda:N (default: CUDA if built with it and present, else CPU).
        #[arg(long)]
        device: Option<String>,
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
    /// The checkpoint to ship: over the runs, steps and interpolation weights of the folders, the
    /// Pareto-optimal candidates reaching a clean-accuracy target, ranked by robust accuracy
    /// with CIs and ties marked; --export writes the first as an HF-layout safetensors file.
    Choose {
        /// Run folders (standard and robust fine-tuning may be mixed; interpolation results are
        /// read where present).
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// Minimum clean accuracy, in [0, 1].
        #[arg(long)]
        min_clean: f64,
        /// The radius robust accuracy is read at (one of the runs'; default the smallest).
        #[arg(long)]
        eps: Option<String>,
        /// Also require Pareto-optimality in OOD accuracy.
        #[arg(long)]
        ood: bool,
        /// Only this task (required with --export when the folders hold several).
        #[arg(long)]
        dataset: Option<String>,
        /// Write the first candidate to this file (HF layout; LoRA and (IA)³ merged).
        #[arg(long, value_name = "FILE")]
        export: Option<PathBuf>,
        /// No progress bars.
        #[arg(long)]
        quiet: bool,
        /// cpu, cuda or cuda:N (for --export).
        #[arg(long)]
        device: Option<String>,
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
    /// Score a checkpoint: clean and robust accuracy per radius under an attack (AutoAttack by default).
    Eval(EvalArgs),
    /// Time train steps, eval batches and PGD-15 per strategy; with --config, also the expected
    /// time of each cell of that configuration on this machine.
    Bench(BenchArgs),
}

/// `validate slurm`'s resources and limits (see `robustft::validate::sweep::slurm::SlurmOptions`).
#[derive(clap::Args, Debug)]
pub struct SlurmArgs {
    /// Partition (sbatch --partition).
    #[arg(long)]
    pub partition: Option<String>,
    /// Time limit per job, in Slurm's format (e.g. 30, 4:00:00, 1-12:00:00).
    #[arg(long)]
    pub time: Option<String>,
    /// GPUs per task (1 for ViT-B on a GPU cluster).
    #[arg(long)]
    pub gpus_per_task: Option<u32>,
    /// CPUs per task.
    #[arg(long)]
    pub cpus_per_task: Option<u32>,
    /// Memory per job (e.g. 16G).
    #[arg(long)]
    pub mem: Option<String>,
    /// At most this many array tasks at once (%K).
    #[arg(long, value_name = "K")]
    pub array_max: Option<usize>,
    /// Account to charge (sbatch --account).
    #[arg(long)]
    pub account: Option<String>,
    /// Write the plan and scripts and print the sbatch commands; submit nothing.
    #[arg(long)]
    pub dry_run: bool,
}

impl From<SlurmArgs> for robustft::validate::sweep::slurm::SlurmOptions {
    fn from(a: SlurmArgs) -> Self {
        robustft::validate::sweep::slurm::SlurmOptions {
            partition: a.partition,
            time: a.time,
            gpus_per_task: a.gpus_per_task,
            cpus_per_task: a.cpus_per_task,
            mem: a.mem,
            array_max: a.array_max,
            account: a.account,
            dry_run: a.dry_run,
        }
    }
}

/// `validate bench`'s options.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// tiny, small, base, an HF model folder or a TOML file with a custom size (default tiny;
    /// with --config, the configuration's model).
    #[arg(long)]
    pub model: Option<String>,
    /// A strategy or `all` (with --config: all of the configuration's).
    #[arg(long, default_value = "all")]
    pub strategy: String,
    /// Batch size (default 128; with --config, the configuration's).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Timed repetitions (median).
    #[arg(long, default_value_t = 5)]
    pub reps: usize,
    /// Element type of model and data.
    #[arg(long, value_enum, default_value_t = Dtype::F32)]
    pub dtype: Dtype,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// cpu, cuda or cuda:N.
    #[arg(long)]
    pub device: Option<String>,
    /// Also run the PyTorch peer (default validation/peer/vit_bench.py; validation/gpu/peer_bench.py
    /// on a GPU) in the same run and print the ratios.
    #[arg(long, value_name = "SCRIPT", num_args = 0..=1, default_missing_value = "validation/peer/vit_bench.py")]
    pub peer: Option<PathBuf>,
    /// A run configuration: time its model at its batch size and print the expected time of each
    /// of its cells on this machine (training steps, evaluations, radii, OOD).
    #[arg(long, conflicts_with = "model")]
    pub config: Option<PathBuf>,
    /// Also time AutoAttack's standard version on N images of a model pretrained 300 steps on
    /// synthetic-upstream; with --peer, torchattacks' on the same weights and images too
    /// (validation/peer/attack_peer.py). Minutes per side: 1000 images take ≈ 20 min each on 2 cores.
    #[arg(long, value_name = "N")]
    pub autoattack: Option<usize>,
    /// The radius of --autoattack.
    #[arg(long, value_name = "EPS", default_value = "0.5/255")]
    pub autoattack_eps: String,
}

/// The attacks `validate eval` runs.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvalAttack {
    /// PGD (α = ε/4, early exit), 15 steps unless --steps.
    Pgd,
    /// APGD with cross-entropy.
    ApgdCe,
    /// APGD with the DLR loss.
    ApgdDlr,
    /// APGD-T: targeted DLR over the top --targets classes.
    ApgdT,
    /// FAB-T: targeted minimal-perturbation attack over the top --targets classes.
    FabT,
    /// The Square Attack (--queries, default 5000).
    Square,
    /// AutoAttack's ensemble: APGD-CE → APGD-T → FAB-T → Square.
    Autoattack,
}

/// `validate eval`'s options.
#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// A full model (validate pretrain's output, an HF model folder) or a run checkpoint
    /// (then --backbone).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// The upstream backbone a run checkpoint's parameters were trained from.
    #[arg(long)]
    pub backbone: Option<PathBuf>,
    /// tiny, small, base, a TOML file, or an HF folder (default: the checkpoint when it is an
    /// HF folder, else tiny).
    #[arg(long)]
    pub model: Option<String>,
    /// The strategy the checkpoint was trained with.
    #[arg(long, default_value = "full")]
    pub strategy: String,
    /// KIND or KIND:PATH — synthetic:TASK, fashion-mnist (Debian's folder) or fashion-mnist:DIR,
    /// cifar10:DIR, cifar100:DIR, image-folder:DIR.
    #[arg(long)]
    pub data: String,
    /// Keep these classes (labels remapped in this order), e.g. 0,2,4.
    #[arg(long, value_delimiter = ',')]
    pub classes: Option<Vec<u32>>,
    /// Test images (a seeded draw).
    #[arg(long, default_value_t = 1000)]
    pub n: usize,
    /// The attack.
    #[arg(long, value_enum, default_value_t = EvalAttack::Autoattack)]
    pub attack: EvalAttack,
    /// ℓ∞ radii in [0, 1] (numbers or fractions), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "8/255")]
    pub eps: Vec<String>,
    /// Iterations (PGD: 15, APGD, FAB-T and AutoAttack's members: 100; per target for APGD-T and
    /// FAB-T).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Square's query budget (square, autoattack): 5000.
    #[arg(long)]
    pub queries: Option<usize>,
    /// APGD-T and FAB-T target classes (default 9, fewer with fewer classes).
    #[arg(long)]
    pub targets: Option<usize>,
    /// Seed of the image draw and the attacks.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print the report as JSON (RobustBench-like).
    #[arg(long)]
    pub json: bool,
    /// Also write the evaluated images and labels, in order, to this safetensors file
    /// (`pixels`, n × C × H × W in 0…1, and `labels`): for a peer to attack the same points.
    /// An existing file is refused.
    #[arg(long)]
    pub save_images: Option<PathBuf>,
    /// No progress lines on stderr.
    #[arg(long)]
    pub quiet: bool,
    /// cpu, cuda or cuda:N.
    #[arg(long)]
    pub device: Option<String>,
}
