//! The engine side through the public API, in one page: a tiny ViT fine-tuned with LoRA on a
//! synthetic task, then attacked with PGD-ℓ∞ — clean and robust accuracy on held-out images.
//! (From a random backbone, so only the mechanics matter here; `validate run` does the study.)
//!
//! `cargo run --release --example lora_then_pgd`

use candle_core::{DType, Device};
use robustft::engine::attack::{PgdConfig, StopRule};
use robustft::engine::data::synthetic::SyntheticSpec;
use robustft::engine::eval::{Attack, clean_counts, robust_counts};
use robustft::engine::peft::Strategy;
use robustft::engine::train::{AdamW, TrainConfig, train_step};
use robustft::engine::{Vit, VitConfig, VitSpec};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> robustft::Result<()> {
    let dev = Device::Cpu;
    let cfg = VitConfig::from_arg("tiny")?;
    let task = SyntheticSpec::simple(cfg.image_size);
    let (train, test) = (task.generate(1024, 0)?, task.generate(256, 1)?);
    // LoRA on every attention projection (rank and α from the defaults for this size), a new
    // 10-class head; only the LoRA factors and the head train.
    let model = Vit::new(&VitSpec::new(&cfg, Strategy::Lora, 10, DType::F32, &dev, 0))?;
    println!("trainable parameters: {:?}", model.counts());
    let steps = 60;
    let tc = TrainConfig {
        lr: 1e-2,
        warmup_steps: steps / 10,
        total_steps: steps,
        batch_size: 64,
        ..TrainConfig::default()
    };
    let mut opt = AdamW::new(model.trainable().to_vec(), tc)?;
    for step in 0..steps {
        let ids: Vec<usize> = (0..64).map(|i| (step * 64 + i) % train.len()).collect();
        let (x, y) = train.batch(&ids, &dev)?;
        let loss = train_step(&model, &mut opt, &x, &y)?;
        if step % 20 == 0 {
            println!("step {step:>3}: loss {loss:.4}");
        }
    }
    // PGD-ℓ∞ as the paper runs it: ε = 1/255, α = 0.25/255, 15 steps, random start; every point
    // attacked for all 15 steps and judged on the last iterate (the torchattacks rule).
    let eps = 1.0 / 255.0;
    let pgd = Attack::Pgd(PgdConfig {
        eps,
        alpha: eps / 4.0,
        steps: 15,
        random_start: true,
        stop: StopRule::LastIterate,
    });
    let ids: Vec<usize> = (0..test.len()).collect();
    let clean = clean_counts(&model, &test, &ids, 128, &dev)?;
    let robust = robust_counts(&model, &test, &ids, 128, &pgd, 7, &dev)?;
    println!(
        "held-out: clean {}/{}, robust at ε = 1/255: {}/{}",
        clean.clean, clean.n, robust.robust, robust.n
    );
    Ok(())
}
