//! Tools: parameter counts (`inspect`), a synthetic upstream backbone (`pretrain`) and timings
//! (`bench`).

use candle_core::Device;
use indicatif::{ProgressBar, ProgressStyle};
use robustft::cli::{Classify, Outcome};
use robustft::engine::data::synthetic::SyntheticSpec;
use robustft::engine::peft::{self, PeftConfig, Strategy};
use robustft::engine::pretrain::{PretrainConfig, pretrain as pretrain_model};
use robustft::engine::{VitConfig, bench as timing};
use robustft::validate::ValidRun;
use robustft::validate::checkpoints::attack_bench;
use robustft::validate::sweep::estimate;

use crate::options::{BenchArgs, PretrainArgs};

/// The answer of `validate inspect` (fields in this order).
#[derive(serde::Serialize)]
struct Inspect<'a> {
    model: &'a str,
    strategy: &'a str,
    trainable_backbone: usize,
    trainable_head: usize,
    total: usize,
}

/// `validate inspect`: one JSON line.
pub fn inspect(model: &str, s: Strategy, num_classes: usize) -> robustft::Result<String> {
    let cfg = VitConfig::from_arg(model).map_err(|e| e.rename_field("model", "--model"))?;
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
pub fn pretrain(a: &PretrainArgs, device: &Device) -> Outcome {
    let setup = || -> robustft::Result<PretrainConfig> {
        let cfg = VitConfig::from_arg(&a.model).map_err(|e| e.rename_field("model", "--model"))?;
        let task = SyntheticSpec::named(&a.task, cfg.image_size).map_err(|e| e.rename_field("task", "--task"))?;
        if a.steps == 0 {
            return Err(robustft::Error::invalid("--steps", "must be >= 1", 0));
        }
        let pc = PretrainConfig::new(cfg, task, a.steps, a.seed).with_optimiser(a.batch_size, a.lr);
        pc.train.validate().map_err(|e| {
            e.rename_field("train.lr", "--lr")
                .rename_field("train.batch_size", "--batch-size")
        })?;
        Ok(pc)
    };
    let pc = setup().input()?;
    let pb = ProgressBar::new(a.steps as u64);
    pb.set_style(
        ProgressStyle::with_template("pretrain [{bar:40}] {pos}/{len} loss {msg} ({elapsed}, eta {eta})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let res = pretrain_model(&pc, device, &a.out, |_, loss| {
        pb.set_message(format!("{loss:.4}"));
        pb.inc(1);
    });
    pb.finish_and_clear();
    let r = res.running()?;
    Ok(format!(
        "pretrained {} on {} for {} steps in {:.1} s: final loss {:.4}, held-out accuracy {:.3}; wrote {}\n",
        a.model,
        pc.task.name,
        r.steps,
        r.seconds,
        r.final_loss,
        r.val_acc,
        a.out.display()
    ))
}

/// What `validate bench` times: the model's name and size, the strategies, and the configuration
/// they come from (if any).
struct Bench {
    name: String,
    cfg: VitConfig,
    strategies: Vec<Strategy>,
    run: Option<ValidRun>,
}

/// The model (a preset, file or folder, or a configuration's) and the strategies to time; with a
/// configuration, only its strategies.
fn bench_setup(args: &BenchArgs) -> robustft::Result<Bench> {
    let run = args
        .config
        .as_deref()
        .map(robustft::validate::RunConfig::load)
        .transpose()?;
    let model = args.model.as_deref().unwrap_or("tiny");
    let (name, cfg) = match &run {
        Some(r) => (r.model_name(), r.model.clone()),
        None => (
            model.to_string(),
            VitConfig::from_arg(model).map_err(|e| e.rename_field("model", "--model"))?,
        ),
    };
    let mut strategies = args.strategy.strategies();
    if let Some(r) = &run {
        strategies.retain(|s| r.strategies.contains(s));
        if strategies.is_empty() {
            let theirs = r.config.strategies.join(", ");
            let asked = args
                .strategy
                .strategies()
                .iter()
                .map(|s| s.id())
                .collect::<Vec<_>>()
                .join(", ");
            return Err(robustft::Error::invalid(
                "--strategy",
                format!("one of the configuration's strategies ({theirs})"),
                asked,
            ));
        }
    }
    Ok(Bench {
        name,
        cfg,
        strategies,
        run,
    })
}

/// `validate bench`: the model timed per strategy; with a configuration, the expected time of
/// its cells; with `--peer`, PyTorch on the same model; with `--autoattack`, the ensemble.
pub fn bench(args: BenchArgs, device: &Device) -> Outcome {
    let b = bench_setup(&args).input()?;
    let batch = args
        .batch_size
        .or(b.run.as_ref().map(|r| r.config.batch_size))
        .unwrap_or(128);
    let reps = args.reps.max(1);
    let rows = timing::run(&b.name, &b.cfg, &b.strategies, batch, reps, args.dtype.dtype(), device).running()?;
    let peer = args
        .peer
        .as_ref()
        .map(|p| timing::run_peer(p, &b.cfg, batch, reps))
        .transpose()
        .input()?;
    let aa = args
        .autoattack
        .map(|n| {
            let peer = args
                .peer
                .is_some()
                .then(|| std::path::Path::new(attack_bench::PEER_SCRIPT));
            let steps = attack_bench::PRETRAIN_STEPS;
            attack_bench::run(&b.cfg, steps, n, &args.autoattack_eps, peer, device, &|m| {
                eprintln!("{m}")
            })
        })
        .transpose()
        .input()?;
    let est = b.run.as_ref().map(|r| estimate::estimate(r, &rows, device.is_cpu()));
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
            let cell = serde_json::json!({ "cell": e, "min_s": e.min_s(), "max_s": e.max_s() });
            text += &format!("{cell}\n");
        }
    } else {
        text += &timing::render(&rows);
        if let Some(p) = &peer {
            text += &timing::render_peer(&rows, p);
        }
        if let Some(a) = &aa {
            text += &attack_bench::render(a);
        }
        if let (Some(r), Some(e)) = (&b.run, &est) {
            text += &estimate::render(r, e, &format!("{device:?}").to_lowercase());
        }
    }
    Ok(text)
}
