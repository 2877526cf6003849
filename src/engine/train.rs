//! Training: AdamW with its state kept in tensors we own (so checkpoints can save and resume
//! it), cosine learning-rate schedule with linear warm-up, optional global-norm gradient
//! clipping, and a loud stop on a non-finite loss or gradient.
//!
//! Defaults follow Li et al. 2025 (arXiv:2503.14836, §4): batch 128, lr 2e-5 for full
//! fine-tuning and 5e-3 for the other strategies, cosine schedule with 800 warm-up steps for the
//! non-full strategies.

use std::collections::HashMap;

use candle_core::{DType, Tensor, Var};
use serde::{Deserialize, Serialize};

use super::Vit;
use super::ops::cross_entropy;
use super::peft::Strategy;
use crate::error::{Error, Result};

/// Optimiser and schedule settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Peak learning rate.
    pub lr: f64,
    /// Linear warm-up steps.
    pub warmup_steps: usize,
    /// Total steps of the cosine schedule.
    pub total_steps: usize,
    /// Decoupled weight decay.
    pub weight_decay: f64,
    /// Adam β₁.
    pub beta1: f64,
    /// Adam β₂.
    pub beta2: f64,
    /// Adam ε.
    pub adam_eps: f64,
    /// Clip the global gradient norm to this value (None: no clipping).
    pub clip_grad_norm: Option<f64>,
    /// Batch size.
    pub batch_size: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            lr: 5e-3,
            warmup_steps: 800,
            total_steps: 10_000,
            weight_decay: 0.0,
            beta1: 0.9,
            beta2: 0.999,
            adam_eps: 1e-8,
            clip_grad_norm: None,
            batch_size: 128,
        }
    }
}

impl TrainConfig {
    /// The paper's preset for a strategy (its file's [`crate::engine::peft::Definition::paper_optimiser`]:
    /// lr 2e-5 and no warm-up for full fine-tuning, lr 5e-3 with 800 warm-up steps for the
    /// others); batch 128.
    pub fn paper(strategy: Strategy, total_steps: usize) -> Self {
        let p = strategy.def().paper_optimiser();
        Self {
            lr: p.lr,
            warmup_steps: p.warmup_steps,
            total_steps,
            ..Self::default()
        }
    }

    /// Checks ranges; errors name the field.
    pub fn validate(&self) -> Result<()> {
        use crate::error::check;
        check::positive("train.lr", self.lr)?;
        check::non_negative("train.weight_decay", self.weight_decay)?;
        for (name, b) in [("train.beta1", self.beta1), ("train.beta2", self.beta2)] {
            check::closed(name, b, 0.0, 1.0)?;
            if b >= 1.0 {
                return Err(Error::invalid(name, "must be < 1", b));
            }
        }
        check::positive("train.adam_eps", self.adam_eps)?;
        if let Some(c) = self.clip_grad_norm {
            check::positive("train.clip_grad_norm", c)?;
        }
        if self.batch_size == 0 {
            return Err(Error::invalid("train.batch_size", "must be >= 1", 0));
        }
        if self.total_steps == 0 {
            return Err(Error::invalid("train.total_steps", "must be >= 1", 0));
        }
        Ok(())
    }

    /// Learning rate at `step` (0-based): linear warm-up to `lr`, then cosine decay to 0 at
    /// `total_steps`.
    pub fn lr_at(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return self.lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let span = self.total_steps.saturating_sub(self.warmup_steps).max(1) as f64;
        let t = ((step - self.warmup_steps) as f64 / span).min(1.0);
        self.lr * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
    }
}

/// AdamW (Loshchilov & Hutter 2019) over named `Var`s: θ ← θ − lr·(m̂/(√v̂ + ε) + λθ).
pub struct AdamW {
    params: Vec<(String, Var)>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    step: usize,
    cfg: TrainConfig,
}

impl AdamW {
    /// Fresh state for `params`.
    pub fn new(params: Vec<(String, Var)>, cfg: TrainConfig) -> Result<Self> {
        cfg.validate()?;
        let m = params
            .iter()
            .map(|(_, v)| v.as_tensor().zeros_like())
            .collect::<candle_core::Result<Vec<_>>>()?;
        let v = m.clone();
        Ok(Self {
            params,
            m,
            v,
            step: 0,
            cfg,
        })
    }

    /// Steps taken.
    pub fn step_count(&self) -> usize {
        self.step
    }

    /// The configuration.
    pub fn config(&self) -> &TrainConfig {
        &self.cfg
    }

    /// One update from `grads` at the scheduled learning rate. A parameter without a gradient
    /// (unused in the loss) is left unchanged.
    pub fn step(&mut self, grads: &candle_core::backprop::GradStore) -> Result<()> {
        let g: Vec<Option<Tensor>> = self
            .params
            .iter()
            .map(|(_, v)| grads.get(v.as_tensor()).cloned())
            .collect();
        self.step_with(&g)
    }

    /// One update from per-parameter gradients (in the order of the parameters).
    pub fn step_with(&mut self, grads: &[Option<Tensor>]) -> Result<()> {
        let lr = self.cfg.lr_at(self.step);
        self.step += 1;
        let t = self.step as i32;
        let (b1, b2) = (self.cfg.beta1, self.cfg.beta2);
        let (c1, c2) = (1.0 - b1.powi(t), 1.0 - b2.powi(t));
        let clip = match self.cfg.clip_grad_norm {
            Some(max) => {
                let mut sq = 0.0;
                for g in grads.iter().flatten() {
                    sq += g.to_dtype(DType::F64)?.sqr()?.sum_all()?.to_scalar::<f64>()?;
                }
                let norm = sq.sqrt();
                if norm > max { max / (norm + 1e-6) } else { 1.0 }
            }
            None => 1.0,
        };
        for (i, (_, var)) in self.params.iter().enumerate() {
            let Some(g) = &grads[i] else { continue };
            let g = if clip != 1.0 { (g * clip)? } else { g.clone() };
            let m = ((&self.m[i] * b1)? + (&g * (1.0 - b1))?)?;
            let v = ((&self.v[i] * b2)? + (g.sqr()? * (1.0 - b2))?)?;
            let update = ((&m / c1)? / ((&v / c2)?.sqrt()? + self.cfg.adam_eps)?)?;
            let theta = var.as_tensor();
            let decayed = if self.cfg.weight_decay > 0.0 {
                (theta * (1.0 - lr * self.cfg.weight_decay))?
            } else {
                theta.clone()
            };
            var.set(&(decayed - (update * lr)?)?)?;
            self.m[i] = m;
            self.v[i] = v;
        }
        Ok(())
    }

    /// Optimiser state as named tensors (`adamw.m.<key>`, `adamw.v.<key>`, `adamw.step`).
    pub fn state(&self) -> Result<HashMap<String, Tensor>> {
        let mut out = HashMap::new();
        for (i, (k, _)) in self.params.iter().enumerate() {
            out.insert(format!("adamw.m.{k}"), self.m[i].clone());
            out.insert(format!("adamw.v.{k}"), self.v[i].clone());
        }
        let dev = self
            .m
            .first()
            .map(|t| t.device().clone())
            .unwrap_or(candle_core::Device::Cpu);
        out.insert("adamw.step".into(), Tensor::new(&[self.step as u32], &dev)?);
        Ok(out)
    }

    /// Restores [`AdamW::state`]; every key must be present with the right shape.
    pub fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        for (i, (k, var)) in self.params.iter().enumerate() {
            for (which, slot) in [("m", &mut self.m[i]), ("v", &mut self.v[i])] {
                let key = format!("adamw.{which}.{k}");
                let t = state
                    .get(&key)
                    .ok_or_else(|| Error::invalid(key.clone(), "missing from the optimiser state", "nothing"))?;
                if t.dims() != var.dims() {
                    return Err(Error::invalid(
                        key,
                        format!("expected shape {:?}", var.dims()),
                        format!("{:?}", t.dims()),
                    ));
                }
                *slot = t.to_dtype(var.dtype())?.to_device(var.device())?;
            }
        }
        let s = state
            .get("adamw.step")
            .ok_or_else(|| Error::invalid("adamw.step", "missing from the optimiser state", "nothing"))?;
        self.step = s.to_vec1::<u32>()?[0] as usize;
        Ok(())
    }
}

/// One training step on a batch: forward, cross-entropy, backward, AdamW. Returns the loss.
/// A non-finite loss or gradient stops training (see `check_loss` and `check_update`); the parameters are left
/// as they were before the step.
pub fn train_step(model: &Vit, opt: &mut AdamW, x: &Tensor, y: &Tensor) -> Result<f64> {
    train_step_with(model, opt, y, |m| m.forward(x))
}

/// A training step of the head alone on cached backbone features [B, dim] (linear probing: the
/// backbone is frozen, so its features never change and are computed once).
pub fn head_step(model: &Vit, opt: &mut AdamW, features: &Tensor, y: &Tensor) -> Result<f64> {
    train_step_with(model, opt, y, |m| m.head(features))
}

/// A training step on logits produced by `logits(model)`.
pub fn train_step_with(
    model: &Vit,
    opt: &mut AdamW,
    y: &Tensor,
    logits: impl FnOnce(&Vit) -> candle_core::Result<Tensor>,
) -> Result<f64> {
    train_step_loss(model, opt, |m| cross_entropy(&logits(m)?, y))
}

/// A training step on the scalar loss produced by `loss(model)` (the same checks as
/// [`train_step`]).
pub fn train_step_loss(
    model: &Vit,
    opt: &mut AdamW,
    loss: impl FnOnce(&Vit) -> candle_core::Result<Tensor>,
) -> Result<f64> {
    let loss = loss(model)?;
    let value = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
    check_loss(model, opt, value)?;
    let grads = loss.backward()?;
    let grads: Vec<Option<Tensor>> = model
        .trainable()
        .iter()
        .map(|(_, v)| grads.get(v.as_tensor()).cloned())
        .collect();
    check_update(model, opt, &grads)?;
    opt.step_with(&grads)?;
    Ok(value)
}

/// The number the failing update would give the run: updates are numbered from 1, as records
/// number steps (record step s is written after s updates), on every training path.
fn update_number(opt: &AdamW) -> usize {
    opt.step_count() + 1
}

/// A non-finite loss stops training: the error names the step (see [`update_number`]) and the
/// first trainable tensor that is not finite (else the input batch or the loss itself).
fn check_loss(model: &Vit, opt: &AdamW, value: f64) -> Result<()> {
    if value.is_finite() {
        return Ok(());
    }
    let culprit = match model
        .trainable()
        .iter()
        .find(|(_, v)| !finite(v.as_tensor()).unwrap_or(false))
    {
        Some((k, _)) => format!("offending tensor: {k}"),
        None => {
            // Every weight is finite: the forward pass overflowed. Name the largest weight.
            let mut top = (0.0f64, "none");
            for (k, v) in model.trainable() {
                let m = v
                    .as_tensor()
                    .abs()?
                    .max_all()?
                    .to_dtype(DType::F64)?
                    .to_scalar::<f64>()?;
                if m > top.0 {
                    top = (m, k.as_str());
                }
            }
            format!(
                "no trainable tensor is NaN/inf: the forward pass overflowed (largest weight {:.3e} in {}; \
                 learning rate too high?) or the input batch is not finite",
                top.0, top.1
            )
        }
    };
    Err(Error::invalid(
        format!("loss at step {}", update_number(opt)),
        format!("is not finite ({culprit})"),
        value,
    ))
}

/// A non-finite gradient stops training before the update: the error names the step and the
/// parameter whose gradient it is. `grads` is in the order of `model.trainable()`.
fn check_update(model: &Vit, opt: &AdamW, grads: &[Option<Tensor>]) -> Result<()> {
    for ((k, _), g) in model.trainable().iter().zip(grads) {
        if let Some(g) = g
            && !finite(g)?
        {
            return Err(Error::invalid(
                format!("gradient at step {}", update_number(opt)),
                format!("is not finite in {k}"),
                "NaN/inf",
            ));
        }
    }
    Ok(())
}

/// One chunk's share of a data-parallel step: (mean loss, chunk size, gradient per parameter).
type ChunkGrads = (f64, usize, Vec<Option<Tensor>>);

/// A data-parallel training step: the batch is split into `parts` contiguous chunks whose
/// forward and backward passes run on separate threads; the chunk gradients are combined with
/// weights n_i/n (the mean loss over the batch), then one AdamW update. Same gradient as
/// [`train_step`] up to floating-point summation order; deterministic for a fixed `parts`.
/// The same loss and gradient checks, with the same messages and step numbers, as
/// [`train_step`]. Pays off when candle's own pool is single-threaded (`CANDLE_NUM_THREADS=1`).
pub fn train_step_data_parallel(model: &Vit, opt: &mut AdamW, x: &Tensor, y: &Tensor, parts: usize) -> Result<f64> {
    let n = x.dim(0)?;
    let parts = parts.clamp(1, n.max(1));
    if parts == 1 {
        return train_step(model, opt, x, y);
    }
    train_step_chunks(model, opt, n, parts, |start, len| {
        cross_entropy(&model.forward(&x.narrow(0, start, len)?)?, &y.narrow(0, start, len)?)
    })
}

/// A data-parallel step on any loss that is a mean over the batch: `chunk_loss(start, len)` is
/// the mean loss of rows start..start+len, computed on its own thread; chunk gradients are
/// combined with weights len/n as in [`train_step_data_parallel`], whose checks it shares.
pub fn train_step_chunks(
    model: &Vit,
    opt: &mut AdamW,
    n: usize,
    parts: usize,
    chunk_loss: impl Fn(usize, usize) -> candle_core::Result<Tensor> + Sync,
) -> Result<f64> {
    let parts = parts.clamp(1, n.max(1));
    let results: Vec<ChunkGrads> = super::data_parallel(n, parts, |start, len| -> Result<ChunkGrads> {
        let loss = chunk_loss(start, len)?;
        let value = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        if !value.is_finite() {
            // No backward through a non-finite loss; the combined check below names it.
            return Ok((value, len, Vec::new()));
        }
        let grads = loss.backward()?;
        let g = model
            .trainable()
            .iter()
            .map(|(_, v)| grads.get(v.as_tensor()).cloned())
            .collect();
        Ok((value, len, g))
    })?;
    let mut total = 0.0;
    let mut combined: Vec<Option<Tensor>> = vec![None; model.trainable().len()];
    for (value, len, grads) in results {
        let w = len as f64 / n as f64;
        total += w * value;
        for (slot, g) in combined.iter_mut().zip(grads) {
            if let Some(g) = g {
                let g = (g * w)?;
                *slot = Some(match slot.take() {
                    Some(acc) => (acc + g)?,
                    None => g,
                });
            }
        }
    }
    check_loss(model, opt, total)?;
    check_update(model, opt, &combined)?;
    opt.step_with(&combined)?;
    Ok(total)
}

fn finite(t: &Tensor) -> Result<bool> {
    let s = t.to_dtype(DType::F64)?.abs()?.sum_all()?.to_scalar::<f64>()?;
    Ok(s.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_shape() {
        let c = TrainConfig {
            lr: 1.0,
            warmup_steps: 10,
            total_steps: 110,
            ..TrainConfig::default()
        };
        assert!((c.lr_at(0) - 0.1).abs() < 1e-15);
        assert!((c.lr_at(9) - 1.0).abs() < 1e-15);
        assert!((c.lr_at(10) - 1.0).abs() < 1e-15);
        assert!((c.lr_at(60) - 0.5).abs() < 1e-12);
        assert!(c.lr_at(110).abs() < 1e-15);
        let full = TrainConfig::paper(Strategy::Full, 100);
        assert_eq!((full.lr, full.warmup_steps), (2e-5, 0));
        assert_eq!(TrainConfig::paper(Strategy::Lora, 100).lr, 5e-3);
    }

    /// One AdamW step on f(θ) = ½θ² from θ = 1: m̂ = g = 1, v̂ = 1, so θ ← 1 − lr·(1/(1 + ε)).
    #[test]
    fn adamw_first_step_is_sign_times_lr() {
        let v = Var::new(&[1.0f64, -2.0], &candle_core::Device::Cpu).unwrap();
        let cfg = TrainConfig {
            lr: 0.1,
            warmup_steps: 0,
            total_steps: 10,
            ..TrainConfig::default()
        };
        let mut opt = AdamW::new(vec![("w".into(), v.clone())], cfg).unwrap();
        let loss = (v.as_tensor().sqr().unwrap().sum_all().unwrap() * 0.5).unwrap();
        opt.step(&loss.backward().unwrap()).unwrap();
        let got: Vec<f64> = v.as_tensor().to_vec1().unwrap();
        assert!((got[0] - 0.9).abs() < 1e-7 && (got[1] + 1.9).abs() < 1e-7, "{got:?}");
        let st = opt.state().unwrap();
        let mut again = AdamW::new(vec![("w".into(), v.clone())], opt.config().clone()).unwrap();
        again.load_state(&st).unwrap();
        assert_eq!(again.step_count(), 1);
    }
}
