//! The training side of a run: the seeded batch order and one optimiser step per call.

use std::collections::HashMap;

use candle_core::Tensor;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::engine::Vit;
use crate::engine::data::Dataset;
use crate::engine::eval::dataset_features;
use crate::engine::robust::{Training, adversarial_batch, start_noise, trades_loss};
use crate::engine::train::{AdamW, head_step, train_step_chunks, train_step_data_parallel, train_step_loss};
use crate::error::Result;

/// Indices of the batch at step t: position p = t·B + j of an endless sequence of seeded
/// per-epoch permutations of 0..n.
struct BatchOrder {
    n: usize,
    seed: u64,
    perms: HashMap<usize, Vec<usize>>,
}

impl BatchOrder {
    fn new(n: usize, seed: u64) -> Self {
        Self {
            n,
            seed,
            perms: HashMap::new(),
        }
    }
    fn batch(&mut self, step: u64, size: usize) -> Vec<usize> {
        let start = step as usize * size;
        (start..start + size)
            .map(|p| {
                let (epoch, off) = (p / self.n, p % self.n);
                let n = self.n;
                let seed = self.seed;
                let perm = self.perms.entry(epoch).or_insert_with(|| {
                    let mut v: Vec<usize> = (0..n).collect();
                    v.shuffle(&mut StdRng::seed_from_u64(crate::seeds::epoch(seed, epoch as u64)));
                    v
                });
                perm[off]
            })
            .collect()
    }
}

/// The training side of a fine-tuning run: batches in the seeded order of [`BatchOrder`], and for
/// linear probing the frozen backbone's features computed once (the head trains on them).
pub(crate) struct Trainer<'a> {
    model: &'a Vit,
    data: &'a Dataset,
    order: BatchOrder,
    features: Option<Tensor>,
    labels: Tensor,
    batch_size: usize,
    training: Training,
    attack_seed: u64,
}

impl<'a> Trainer<'a> {
    /// Batches of `batch_size` from `data`, in the order fixed by `seed`.
    pub(crate) fn new(model: &'a Vit, data: &'a Dataset, seed: u64, batch_size: usize) -> Result<Self> {
        let device = model.device();
        let features = if model.strategy().def().frozen_backbone() {
            Some(dataset_features(model, data, device)?)
        } else {
            None
        };
        Ok(Self {
            model,
            data,
            order: BatchOrder::new(data.len(), crate::seeds::derive(seed, crate::seeds::Stream::BatchOrder)),
            features,
            labels: Tensor::from_vec(data.labels.clone(), data.len(), device)?,
            batch_size,
            training: Training::Standard,
            attack_seed: crate::seeds::derive(seed, crate::seeds::Stream::TrainAttack),
        })
    }

    /// The same with the objective `training` (standard by default).
    pub(crate) fn with_training(mut self, training: Training) -> Self {
        self.training = training;
        self
    }

    /// The inner maximisation of step `step` on the batch, split over the device's parts (the
    /// starting noise drawn for the whole batch first).
    fn adversarial(&self, x: &Tensor, y: &Tensor, step: u64) -> Result<Tensor> {
        let frozen = self.model.frozen();
        let noise = start_noise(&self.training, x, crate::seeds::attack(self.attack_seed, step))?;
        let n = x.dim(0)?;
        let parts = crate::engine::batch_parts(self.model.device()).clamp(1, n.max(1));
        let chunks = crate::engine::data_parallel(n, parts, |start, len| {
            let nz = noise.as_ref().map(|t| t.narrow(0, start, len)).transpose()?;
            adversarial_batch(
                &frozen,
                &self.training,
                &x.narrow(0, start, len)?,
                &y.narrow(0, start, len)?,
                nz.as_ref(),
            )
        })?;
        Ok(Tensor::cat(&chunks, 0)?)
    }

    /// The update of step `step` (0-based); returns the batch loss.
    pub(crate) fn step(&mut self, opt: &mut AdamW, step: u64) -> Result<f64> {
        let ids = self.order.batch(step, self.batch_size);
        let device = self.model.device();
        let parts = crate::engine::batch_parts(device);
        match (&self.features, self.training) {
            (Some(f), training) => {
                let idx = Tensor::from_vec(ids.iter().map(|&i| i as u32).collect::<Vec<_>>(), ids.len(), device)?;
                let (clean, y) = (f.index_select(&idx, 0)?, self.labels.index_select(&idx, 0)?);
                if training == Training::Standard {
                    return head_step(self.model, opt, &clean, &y);
                }
                // Linear probing trains the head alone: the attack goes through the whole model,
                // the head then sees the frozen backbone's features of the adversarial images.
                let (x, _) = self.data.batch(&ids, device)?;
                let adv = self.model.features(&self.adversarial(&x, &y, step)?)?.detach();
                match training {
                    Training::Trades { beta, .. } => train_step_loss(self.model, opt, |m| {
                        trades_loss(&m.head(&clean)?, &m.head(&adv)?, &y, beta)
                    }),
                    _ => head_step(self.model, opt, &adv, &y),
                }
            }
            (None, Training::Standard) => {
                let (x, y) = self.data.batch(&ids, device)?;
                train_step_data_parallel(self.model, opt, &x, &y, parts)
            }
            (None, Training::PgdAt(_)) => {
                let (x, y) = self.data.batch(&ids, device)?;
                let adv = self.adversarial(&x, &y, step)?;
                train_step_data_parallel(self.model, opt, &adv, &y, parts)
            }
            (None, Training::Trades { beta, .. }) => {
                let (x, y) = self.data.batch(&ids, device)?;
                let adv = self.adversarial(&x, &y, step)?;
                let m = self.model;
                train_step_chunks(m, opt, x.dim(0)?, parts, |s, l| {
                    let (xs, advs, ys) = (x.narrow(0, s, l)?, adv.narrow(0, s, l)?, y.narrow(0, s, l)?);
                    trades_loss(&m.forward(&xs)?, &m.forward(&advs)?, &ys, beta)
                })
            }
        }
    }
}
