//! Upstream pretraining: no pretrained weights can be downloaded, so the toolkit trains its own
//! backbone (AdamW, cosine schedule with warm-up, cross-entropy) on the synthetic upstream task
//! ([`pretrain`]) or on any dataset, e.g. a class subset of Fashion-MNIST ([`pretrain_on`]), and
//! saves it in HF layout; fine-tuning then starts from it like from any HF checkpoint.

use std::path::Path;
use std::time::Instant;

use candle_core::{DType, Device};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::data::Dataset;
use super::data::synthetic::SyntheticSpec;
use super::eval::clean_counts;
use super::peft::Strategy;
use super::train::{AdamW, TrainConfig, train_step_data_parallel};
use super::{Vit, VitConfig, VitSpec};
use crate::error::Result;

/// What a pretraining run did.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PretrainReport {
    /// Optimiser steps.
    pub steps: usize,
    /// Mean loss over the last 10% of steps.
    pub final_loss: f64,
    /// Clean accuracy on the held-out upstream images.
    pub val_acc: f64,
    /// Held-out images evaluated.
    pub val_n: usize,
    /// Wall time, seconds.
    pub seconds: f64,
}

/// Pretraining settings.
#[derive(Debug, Clone)]
pub struct PretrainConfig {
    /// Model size.
    pub model: VitConfig,
    /// Upstream task.
    pub task: SyntheticSpec,
    /// Optimiser (steps = `train.total_steps`).
    pub train: TrainConfig,
    /// Training images generated (cycled through in seeded shuffles).
    pub train_images: usize,
    /// Seed of initialisation and batch order.
    pub seed: u64,
}

impl PretrainConfig {
    /// Defaults for `steps` steps: lr 1e-3, 10% warm-up, weight decay 0.05, batch 128,
    /// min(steps·batch, 20000) training images.
    pub fn new(model: VitConfig, task: SyntheticSpec, steps: usize, seed: u64) -> Self {
        let train = TrainConfig {
            lr: 1e-3,
            warmup_steps: steps / 10,
            total_steps: steps,
            weight_decay: 0.05,
            clip_grad_norm: Some(1.0),
            ..TrainConfig::default()
        };
        let train_images = (steps * train.batch_size).clamp(train.batch_size, 20_000);
        Self {
            model,
            task,
            train,
            train_images,
            seed,
        }
    }

    /// The same with batch size `batch_size` and peak learning rate `lr` (the number of training
    /// images stays the one [`PretrainConfig::new`] chose), as `validate pretrain` and a run
    /// config's `[pretrain]` set them.
    pub fn with_optimiser(mut self, batch_size: usize, lr: f64) -> Self {
        self.train.batch_size = batch_size;
        self.train.lr = lr;
        self
    }
}

/// Trains a full model on the upstream task and writes it (backbone + upstream head) to `out`.
/// `on_step(step, loss)` is called after every step (progress bars).
pub fn pretrain(
    cfg: &PretrainConfig,
    device: &Device,
    out: &Path,
    on_step: impl FnMut(usize, f64),
) -> Result<PretrainReport> {
    let task = SyntheticSpec {
        image_size: cfg.model.image_size,
        ..cfg.task.clone()
    };
    let data = task.generate(cfg.train_images, 0)?;
    let val = task.generate(1000, 1)?;
    pretrain_on(&cfg.model, &cfg.train, cfg.seed, &data, &val, device, out, on_step)
}

/// Trains a full model of size `model` on `data` (batches from seeded shuffles of the whole
/// set, `train.total_steps` AdamW steps), writes it to `out` (HF layout, with its head) and
/// reports its accuracy on `val` (held out: the caller keeps it disjoint from `data`).
/// Deterministic for a fixed seed on the CPU.
#[allow(clippy::too_many_arguments)]
pub fn pretrain_on(
    model_cfg: &VitConfig,
    train: &TrainConfig,
    seed: u64,
    data: &Dataset,
    val: &Dataset,
    device: &Device,
    out: &Path,
    mut on_step: impl FnMut(usize, f64),
) -> Result<PretrainReport> {
    let start = Instant::now();
    let model = Vit::new(&VitSpec::new(
        model_cfg,
        Strategy::Full,
        data.classes,
        DType::F32,
        device,
        seed,
    ))?;
    let mut opt = AdamW::new(model.trainable().to_vec(), train.clone())?;
    let mut order: Vec<usize> = Vec::new();
    let mut rng = StdRng::seed_from_u64(crate::seeds::derive(seed, crate::seeds::Stream::Pretrain));
    let mut losses = Vec::with_capacity(train.total_steps);
    let bs = train.batch_size;
    for step in 0..train.total_steps {
        if order.len() < bs {
            let mut ids: Vec<usize> = (0..data.len()).collect();
            ids.shuffle(&mut rng);
            order.extend(ids);
        }
        let ids: Vec<usize> = order.drain(..bs).collect();
        let (x, y) = data.batch(&ids, device)?;
        let loss = train_step_data_parallel(&model, &mut opt, &x, &y, super::batch_parts(device))?;
        losses.push(loss);
        on_step(step, loss);
    }
    model.save(out)?;
    let tail = (losses.len() / 10).max(1);
    let final_loss = losses.iter().rev().take(tail).sum::<f64>() / tail as f64;
    let ids: Vec<usize> = (0..val.len()).collect();
    let c = clean_counts(&model, val, &ids, 256, device)?;
    Ok(PretrainReport {
        steps: train.total_steps,
        final_loss,
        val_acc: c.clean as f64 / c.n as f64,
        val_n: c.n,
        seconds: start.elapsed().as_secs_f64(),
    })
}
