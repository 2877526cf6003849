//! `simulate`: the theory simulator. With no arguments it runs `simulations/default.toml`
//! (embedded) and writes every figure into `figures/`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use robustft::cli::{Classify, Failure, Outcome, finish};

use clap::{Parser, Subcommand};
use robustft::simulate::dynamics::DynamicsConfig;
use robustft::simulate::{self, SimConfig, bench};
use robustft::theory::DEFAULT_TARGET_ACC;

/// mimalloc: candle allocates a buffer per op, and the system allocator's map/unmap of large
/// ones cost about 30% of a CPU training step (docs/src/performance.md). The library leaves the
/// choice to its users; this binary makes it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "simulate",
    version,
    about = "Theory simulator: the accuracy/robustness tradeoff of fine-tuning"
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    /// Sweep configuration (TOML); default: the embedded simulations/default.toml.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Output folder for figures and CSVs.
    #[arg(long, value_name = "DIR", default_value = "figures")]
    out: PathBuf,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// η_min = Φ⁻¹(A)/√(k+d) as one JSON object.
    #[command(allow_negative_numbers = true)]
    Bound {
        /// Updated parameters k = ‖Δw‖₀ (≥ 0).
        #[arg(long)]
        k: f64,
        /// Features d the pretrained classifier uses (> 0).
        #[arg(long)]
        d: f64,
        /// Target accuracy A in (0.5, 1).
        #[arg(long, default_value_t = DEFAULT_TARGET_ACC)]
        target_acc: f64,
    },
    /// Exact clean and robust accuracy of one linear classifier, as one JSON object.
    #[command(allow_negative_numbers = true)]
    Eval {
        /// Probability that the robust feature agrees with the label, in (0.5, 1).
        #[arg(long)]
        p: f64,
        /// Non-robust feature strength η > 0.
        #[arg(long)]
        eta: f64,
        /// ℓ∞ attack size ε ≥ 0.
        #[arg(long)]
        eps: f64,
        /// a,v1,v2,…: robust weight then non-robust weights (with --uniform: just a).
        #[arg(long, value_delimiter = ',', allow_hyphen_values = true, required = true)]
        weights: Vec<f64>,
        /// M:B — replace the v list by M copies of B.
        #[arg(long, value_name = "M:B")]
        uniform: Option<String>,
        /// Bias β.
        #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
        bias: f64,
    },
    /// Training dynamics of the seven strategies on a two-layer linear model: trajectories,
    /// frontiers, AUC against d, and the phenomenon sweep (figures/dynamics_*).
    Dynamics {
        /// Dynamics configuration (TOML); default: the embedded simulations/dynamics.toml.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Output folder for figures and CSVs.
        #[arg(long, value_name = "DIR", default_value = "figures")]
        out: PathBuf,
    },
    /// Time the sweep, the closed forms and the full job against baselines; prints ratios.
    Bench {
        /// Timed repetitions per benchmark (median reported).
        #[arg(long, default_value_t = 7)]
        reps: usize,
    },
}

/// `M:B` → (M, B).
fn parse_uniform(spec: &str) -> Result<(usize, f64), String> {
    let bad = || format!("invalid `--uniform`: expected M:B with M a whole number >= 1 and B a number (got {spec})");
    let (m, b) = spec.split_once(':').ok_or_else(bad)?;
    let m: usize = m.trim().parse().map_err(|_| bad())?;
    let b: f64 = b.trim().parse().map_err(|_| bad())?;
    if m == 0 {
        return Err(bad());
    }
    Ok((m, b))
}

fn load(config: &Option<PathBuf>) -> robustft::Result<simulate::ValidConfig> {
    match config {
        Some(path) => SimConfig::load(path),
        None => Ok(SimConfig::default_config()),
    }
}

fn main() -> ExitCode {
    let cli: Cli = match robustft::cli::parse() {
        Ok(c) => c,
        Err(code) => return code,
    };
    finish(match cli.cmd {
        Some(Cmd::Bound { k, d, target_acc }) => {
            simulate::bound_answer(k, d, target_acc).input().map(|a| json_line(&a))
        }
        Some(Cmd::Eval {
            p,
            eta,
            eps,
            weights,
            uniform,
            bias,
        }) => eval(p, eta, eps, weights, uniform, bias),
        Some(Cmd::Dynamics { config, out }) => dynamics(config, &out),
        Some(Cmd::Bench { reps }) => bench_cmd(&cli.config, reps),
        None => run(&cli.config, &cli.out),
    })
}

/// One JSON object and a newline.
fn json_line(v: &impl serde::Serialize) -> String {
    serde_json::to_string(v).expect("serialisable") + "\n"
}

/// `simulate eval`.
fn eval(p: f64, eta: f64, eps: f64, weights: Vec<f64>, uniform: Option<String>, bias: f64) -> Outcome {
    let w = match uniform {
        None => simulate::EvalWeights::Explicit(weights),
        Some(_) if weights.len() != 1 => {
            return Err(Failure::Input(
                "invalid `--weights`: with --uniform give only a (the robust weight)".into(),
            ));
        }
        Some(spec) => {
            let (m, b) = parse_uniform(&spec).input()?;
            simulate::EvalWeights::Uniform { a: weights[0], m, b }
        }
    };
    simulate::eval_weights(p, eta, eps, &w, bias)
        .input()
        .map(|a| json_line(&a))
}

/// `simulate dynamics`.
fn dynamics(config: Option<PathBuf>, out: &Path) -> Outcome {
    let cfg = match config {
        Some(path) => DynamicsConfig::load(&path).input()?,
        None => DynamicsConfig::default_config(),
    };
    robustft::cli::check_out_dir(out).input()?;
    let summary = simulate::dynamics::run(&cfg, out).running()?;
    Ok(summary.render(&cfg))
}

/// `simulate bench`.
fn bench_cmd(config: &Option<PathBuf>, reps: usize) -> Outcome {
    let cfg = load(config).input()?;
    let scratch = std::env::temp_dir().join(format!("robustft-bench-{}", std::process::id()));
    let rows = bench::run(&cfg, reps, &scratch);
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(bench::render(&rows.running()?))
}

/// `simulate [--config FILE] [--out DIR]`: the sweep.
fn run(config: &Option<PathBuf>, out: &Path) -> Outcome {
    let cfg = load(config).input()?;
    robustft::cli::check_out_dir(out).input()?;
    let summary = simulate::run(&cfg, out).running()?;
    Ok(summary.render(&cfg))
}
