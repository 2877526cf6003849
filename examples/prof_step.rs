//! Profiling harness (not part of the suite): N train steps / PGD steps of the tiny ViT on one thread.
use candle_core::{DType, Device};
use robustft::engine::attack::{PgdConfig, StopRule, pgd};
use robustft::engine::data::synthetic::SyntheticSpec;
use robustft::engine::peft::Strategy;
use robustft::engine::train::{AdamW, TrainConfig, train_step};
use robustft::engine::{Vit, VitConfig, VitSpec};
use std::time::Instant;

/// mimalloc: candle allocates a buffer per op, and the system allocator's map/unmap of large
/// ones cost about 30% of a CPU training step (README, performance). The library leaves the
/// choice to its users; this binary makes it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let what = args.get(1).map(String::as_str).unwrap_or("train");
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10);
    let batch: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(64);
    let cfg = VitConfig::from_arg(args.get(4).map(String::as_str).unwrap_or("tiny")).unwrap();
    let dev = Device::Cpu;
    let data = SyntheticSpec::simple(cfg.image_size).generate(batch, 0).unwrap();
    let ids: Vec<usize> = (0..batch).collect();
    let (x, y) = data.batch(&ids, &dev).unwrap();
    let model = Vit::new(&VitSpec::new(&cfg, Strategy::Full, 10, DType::F32, &dev, 0)).unwrap();
    let mut opt = AdamW::new(model.trainable().to_vec(), TrainConfig::paper(Strategy::Full, 1000)).unwrap();
    train_step(&model, &mut opt, &x, &y).unwrap();
    let st = Instant::now();
    match what {
        "train" => {
            for _ in 0..n {
                train_step(&model, &mut opt, &x, &y).unwrap();
            }
        }
        "fwd" => {
            for _ in 0..n {
                let _ = model.forward(&x).unwrap().to_vec2::<f32>().unwrap();
            }
        }
        "fwdbwd" => {
            for _ in 0..n {
                let l = robustft::engine::ops::cross_entropy(&model.forward(&x).unwrap(), &y).unwrap();
                let _ = l.backward().unwrap();
            }
        }
        _ => {
            let f = model.frozen();
            let c = PgdConfig {
                stop: StopRule::LastIterate,
                ..PgdConfig::default()
            };
            for _ in 0..n {
                pgd(&f, &x, &y, &c, 0).unwrap();
            }
        }
    }
    println!(
        "{what}: {:.1} ms per iteration",
        st.elapsed().as_secs_f64() * 1e3 / n as f64
    );
}
