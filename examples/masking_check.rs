//! Gradient-masking check for a finished run (not part of the suite): reloads the final
//! checkpoint of one (dataset, strategy, seed) of a run folder, reports the logit margins on its
//! evaluation images (a cross-entropy gradient underflows in f32 once the margin passes ≈ 88),
//! and compares PGD on cross-entropy with PGD on the Carlini–Wagner margin loss
//! max_{j≠y} z_j − z_y (which does not saturate), both 15 steps, α = ε/4, random start, at each
//! of the run's radii, on the clean-correct images.
//!
//! `cargo run --release --example masking_check -- DIR DATASET STRATEGY SEED`
use std::path::{Path, PathBuf};

use candle_core::{D, DType, Device, Tensor, Var};
use robustft::engine::attack::{correct, per_point_ce, project, uniform_noise};
use robustft::engine::peft::{Strategy, parse_strategy};
use robustft::engine::{Vit, VitSpec};
use robustft::validate::sweep::records;

/// Per-point CW margin loss: max_{j≠y} z_j − z_y (positive once misclassified).
fn margin_loss(logits: &Tensor, y: &Tensor) -> candle_core::Result<Tensor> {
    let k = logits.dim(1)?;
    let onehot = candle_nn::encoding::one_hot(y.clone(), k, 1f32, 0f32)?;
    let zy = (logits * &onehot)?.sum(1)?;
    let others = (logits - (onehot * 1e4)?)?.max(D::Minus1)?;
    others - zy
}

fn pgd(model: &Vit, x: &Tensor, y: &Tensor, eps: f64, cw: bool, seed: u64) -> candle_core::Result<Vec<bool>> {
    let noise = uniform_noise(x.dims(), eps, seed, DType::F32, x.device())?;
    let mut adv = project(&(x + noise)?, x, eps)?;
    let mut robust = correct(&model.forward(&adv)?, y)?;
    for _ in 0..15 {
        let v = Var::from_tensor(&adv)?;
        let logits = model.forward(v.as_tensor())?;
        let loss = if cw {
            margin_loss(&logits, y)?
        } else {
            per_point_ce(&logits, y)?
        };
        let g = loss
            .sum_all()?
            .backward()?
            .get(v.as_tensor())
            .cloned()
            .expect("input gradient");
        adv = project(&(&adv + (g.sign()? * (eps / 4.0))?)?, x, eps)?;
        for (r, ok) in robust.iter_mut().zip(correct(&model.forward(&adv)?, y)?) {
            *r &= ok;
        }
    }
    Ok(robust)
}

fn main() -> robustft::Result<()> {
    robustft::engine::prefer_batch_parallelism();
    let a: Vec<String> = std::env::args().collect();
    let (dir, ds, strategy, seed) = (
        PathBuf::from(&a[1]),
        a[2].clone(),
        parse_strategy(&a[3])?,
        a[4].parse::<u64>().expect("seed"),
    );
    let (run, model) = load_final(&dir, &ds, strategy, seed)?;
    let dev = Device::Cpu;
    let i = run.config.datasets.iter().position(|d| d.name == ds).expect("dataset");
    let data = robustft::validate::sweep::data::prepare(
        &run.config.datasets[i],
        &run.ood[i],
        run.model.image_size,
        run.config.eval_subset,
        seed,
        "",
    )?;
    let ids = robustft::validate::sweep::runner::eval_ids(&run, &data, seed);
    let (margins, ok_all, rob) = measure(&model, &run, &data, &ids, &dev)?;
    let n = ids.len() as f64;
    let correct_margins: Vec<f32> = margins
        .iter()
        .zip(&ok_all)
        .filter(|(_, o)| **o)
        .map(|(m, _)| *m)
        .collect();
    let mut sorted = correct_margins.clone();
    sorted.sort_by(f32::total_cmp);
    let q = |p: f64| sorted[((sorted.len() - 1) as f64 * p) as usize];
    println!(
        "{ds}/{}/seed{seed}: clean {:.3}; logit margin of correct points: median {:.1}, 90% {:.1}, max {:.1}; margin > 80: {}",
        strategy.id(),
        ok_all.iter().filter(|o| **o).count() as f64 / n,
        q(0.5),
        q(0.9),
        q(1.0),
        correct_margins.iter().filter(|m| **m > 80.0).count()
    );
    for (e, eps) in run.eps().iter().enumerate() {
        println!(
            "  eps {:.4}: robust, PGD-15 cross-entropy {:.3} | PGD-15 CW margin {:.3}",
            eps,
            rob[e].0 as f64 / n,
            rob[e].1 as f64 / n
        );
    }
    Ok(())
}

/// The run's configuration and the final model of (`ds`, `strategy`, `seed`) in the run folder
/// `dir`: the run's upstream backbone with the resume checkpoint's trainable tensors.
fn load_final(
    dir: &Path,
    ds: &str,
    strategy: Strategy,
    seed: u64,
) -> robustft::Result<(robustft::validate::ValidRun, Vit)> {
    let rec = records::read(&dir.join(ds).join(strategy.id()).join(format!("seed{seed}.jsonl")))?;
    let cfg: robustft::validate::RunConfig = serde_json::from_value(rec.header.config.clone()).expect("config");
    let run = cfg.validate()?;
    let dev = Device::Cpu;
    let up = dir
        .join("upstream")
        .join(&rec.header.upstream.as_ref().expect("upstream").checkpoint);
    let classes = rec.header.class_map.as_ref().map_or(10, Vec::len);
    let model = Vit::load_backbone(
        &up,
        &VitSpec::new(&run.model, strategy, classes, DType::F32, &dev, seed),
    )?;
    let state = candle_core::safetensors::load(
        dir.join("ckpt")
            .join(ds)
            .join(strategy.id())
            .join(format!("seed{seed}.safetensors")),
        &dev,
    )?;
    for (k, v) in model.trainable() {
        v.set(&state[&format!("param.{k}")])?;
    }
    Ok((run, model))
}

/// Per evaluation image its logit margin and whether it is clean-correct; per radius the
/// clean-correct images still robust under PGD-15 on cross-entropy and on the CW margin.
type Measured = (Vec<f32>, Vec<bool>, Vec<(usize, usize)>);

/// [`Measured`] on the images `ids` of `data`'s test split, in batches of 250.
fn measure(
    model: &Vit,
    run: &robustft::validate::ValidRun,
    data: &robustft::validate::sweep::data::TaskData,
    ids: &[usize],
    dev: &Device,
) -> robustft::Result<Measured> {
    let frozen = model.frozen();
    let (mut margins, mut ok_all, mut rob) = (Vec::new(), Vec::new(), vec![(0usize, 0usize); run.eps().len()]);
    for (b, chunk) in ids.chunks(250).enumerate() {
        let (x, y) = data.test.batch(chunk, dev)?;
        let logits = frozen.forward(&x)?;
        let m: Vec<f32> = (margin_loss(&logits, &y)? * -1.0)?.to_vec1()?;
        margins.extend(m);
        let ok = correct(&logits, &y)?;
        let idx: Vec<u32> = (0..chunk.len() as u32).filter(|&j| ok[j as usize]).collect();
        let t = Tensor::new(idx.as_slice(), dev)?;
        let (xc, yc) = (x.index_select(&t, 0)?, y.index_select(&t, 0)?);
        for (e, eps) in run.eps().iter().enumerate() {
            let ce = pgd(&frozen, &xc, &yc, *eps, false, 7 + b as u64)?;
            let cw = pgd(&frozen, &xc, &yc, *eps, true, 7 + b as u64)?;
            rob[e].0 += ce.iter().filter(|r| **r).count();
            rob[e].1 += cw.iter().filter(|r| **r).count();
        }
        ok_all.extend(ok);
    }
    Ok((margins, ok_all, rob))
}
