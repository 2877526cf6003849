//! The option sets of `validate slurm`, `pretrain`, `bench` and `eval`.

use std::path::PathBuf;

use robustft::cli::{StrategyArg, StrategyChoice};
use robustft::validate::checkpoints::interpolate::HeadStart;
use robustft::validate::sweep::config::AttackKind;

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

/// `validate pretrain`'s options.
#[derive(clap::Args, Debug)]
pub struct PretrainArgs {
    /// tiny, small, base, or a TOML file with a custom size.
    #[arg(long, default_value = "tiny")]
    pub model: String,
    /// synthetic-upstream (or synthetic-simple / synthetic-complex).
    #[arg(long, default_value = "synthetic-upstream")]
    pub task: String,
    /// Optimiser steps.
    #[arg(long, default_value_t = 300)]
    pub steps: usize,
    /// Batch size.
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output checkpoint (.safetensors).
    #[arg(long)]
    pub out: PathBuf,
}

/// `--dtype`: the element type of model and data in `bench`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Dtype {
    /// 32-bit float.
    F32,
    /// bfloat16.
    Bf16,
    /// IEEE half.
    F16,
}

impl Dtype {
    /// The tensor element type.
    pub fn dtype(self) -> candle_core::DType {
        match self {
            Dtype::F32 => candle_core::DType::F32,
            Dtype::Bf16 => candle_core::DType::BF16,
            Dtype::F16 => candle_core::DType::F16,
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
    #[arg(long, value_enum, ignore_case = true, default_value = "all")]
    pub strategy: StrategyChoice,
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
    #[arg(long, value_enum, ignore_case = true, default_value = "full")]
    pub strategy: StrategyArg,
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
    /// The attack (the run configuration's `attack.kind` values).
    #[arg(long, value_enum, default_value = "autoattack")]
    pub attack: AttackKind,
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
}

/// The flags of the old grammar that named a finished folder through its configuration
/// (`--config`/`--preset` and `--out`): accepted by the parser only to be refused with the new
/// form (`validate gap DIR`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct OldFolderFlags {
    #[arg(long, hide = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[arg(long, hide = true)]
    pub preset: Option<String>,
    #[arg(long, hide = true, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// `validate gap`'s options.
#[derive(clap::Args, Debug)]
pub struct GapArgs {
    /// A finished run folder (its configuration is read from its records).
    pub dir: Option<PathBuf>,
    #[command(flatten)]
    pub old: OldFolderFlags,
    /// Radii (each one of the run's), comma-separated (default: the run's smallest). A folder's radii
    /// followed by larger ones complete its cells instead of redoing them.
    #[arg(long, value_delimiter = ',')]
    pub eps: Vec<String>,
    /// Images per checkpoint: the first N of each run's evaluation images.
    #[arg(long, default_value_t = 1000)]
    pub n: usize,
    /// Only these seeds (default: all the run's), comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub seeds: Vec<u64>,
    /// Only these datasets (default: all the run's), comma-separated names.
    #[arg(long, value_delimiter = ',')]
    pub datasets: Vec<String>,
    /// Only these strategies (default: all the run's), comma-separated.
    #[arg(long, value_delimiter = ',', value_enum, ignore_case = true)]
    pub strategies: Vec<StrategyArg>,
    /// Measure AutoAttack again on the selected cells that do not record which member broke
    /// each image (cells from before members were recorded), checking every image's outcome
    /// against the recorded one; the summary then says which member broke the points PGD
    /// missed.
    #[arg(long)]
    pub attribute: bool,
    /// Attacks to score beside AutoAttack on the selected cells, comma-separated: PGD variants
    /// pgd:STEPS:ALPHA with ALPHA a fraction of ε (pgd:100:1/4 is PGD-100 with α = ε/4; the
    /// run's own steps and α give another random start) and APGD-CE at STEPS iterations
    /// (apgd-ce:15); on finished cells only the probes they lack run.
    #[arg(long = "probe", value_delimiter = ',')]
    pub probes: Vec<String>,
    /// AutoAttack's APGD and FAB iterations.
    #[arg(long, default_value_t = 100)]
    pub steps: usize,
    /// AutoAttack's target classes (APGD-T, FAB-T).
    #[arg(long, default_value_t = 9)]
    pub targets: usize,
    /// AutoAttack's Square queries.
    #[arg(long, default_value_t = 5000)]
    pub queries: usize,
}

/// `validate interpolate`'s options.
#[derive(clap::Args, Debug)]
pub struct InterpolateArgs {
    /// A finished run folder (its configuration is read from its records).
    pub dir: Option<PathBuf>,
    #[command(flatten)]
    pub old: OldFolderFlags,
    /// Interpolation weights in [0, 1], comma-separated (0 and 1 are always added: they are
    /// checked against the run's step-0 and final records).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1"
    )]
    pub alphas: Vec<f64>,
    /// Where the head's path starts: its initialisation (results in DIR/interpolate/) or the
    /// linear-probing run's final head of the same task and seed (DIR/interpolate-lp-head/).
    #[arg(long, value_enum, default_value = "init")]
    pub head_start: HeadStart,
    /// Only these seeds (default: all the run's), comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub seeds: Vec<u64>,
}

/// `validate choose`'s options.
#[derive(clap::Args, Debug)]
pub struct ChooseArgs {
    /// Run folders (standard and robust fine-tuning may be mixed; interpolation results are
    /// read where present).
    #[arg(required = true)]
    pub dirs: Vec<PathBuf>,
    /// Minimum clean accuracy, in [0, 1].
    #[arg(long)]
    pub min_clean: f64,
    /// The radius robust accuracy is read at (one of the runs'; default the smallest).
    #[arg(long)]
    pub eps: Option<String>,
    /// Also require Pareto-optimality in OOD accuracy.
    #[arg(long)]
    pub ood: bool,
    /// Only this task (required with --export when the folders hold several).
    #[arg(long)]
    pub dataset: Option<String>,
    /// Write the first candidate to this file (HF layout; LoRA and (IA)³ merged).
    #[arg(long, value_name = "FILE")]
    pub export: Option<PathBuf>,
}
