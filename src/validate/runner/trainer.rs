//! The training side of a run: the seeded batch order and one optimiser step per call.

use std::collections::HashMap;

use candle_core::Tensor;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::engine::Vit;
use crate::engine::data::Dataset;
use crate::engine::eval::dataset_features;
use crate::engine::peft::Strategy;
use crate::engine::train::{AdamW, head_step, train_step_data_parallel};
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
}

impl<'a> Trainer<'a> {
    /// Batches of `batch_size` from `data`, in the order fixed by `seed`.
    pub(crate) fn new(model: &'a Vit, data: &'a Dataset, seed: u64, batch_size: usize) -> Result<Self> {
        let device = model.device();
        let features = if model.strategy() == Strategy::LinearProbe {
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
        })
    }

    /// The update of step `step` (0-based); returns the batch loss.
    pub(crate) fn step(&mut self, opt: &mut AdamW, step: u64) -> Result<f64> {
        let ids = self.order.batch(step, self.batch_size);
        let device = self.model.device();
        match &self.features {
            Some(f) => {
                let idx = Tensor::from_vec(ids.iter().map(|&i| i as u32).collect::<Vec<_>>(), ids.len(), device)?;
                head_step(
                    self.model,
                    opt,
                    &f.index_select(&idx, 0)?,
                    &self.labels.index_select(&idx, 0)?,
                )
            }
            None => {
                let (x, y) = self.data.batch(&ids, device)?;
                train_step_data_parallel(self.model, opt, &x, &y, crate::engine::batch_parts(device))
            }
        }
    }
}
