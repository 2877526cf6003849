//! Full fine-tuning: every backbone tensor is trained (85,798,656 on ViT-B/16).

use std::borrow::Cow;

use super::Method;
use super::{Definition, ExportForm};
use crate::engine::vit::{ParamSpec, Role};
use crate::theory::dynamics::net::{Layer, ModuleSizes, Parameterisation};

/// Full fine-tuning.
pub struct Full;

impl Method for Full {
    /// Marks every backbone tensor trainable.
    fn unfreeze(&self, specs: &mut [ParamSpec]) {
        for s in specs.iter_mut().filter(|s| s.role == Role::Backbone) {
            s.trainable = true;
        }
    }
}

impl Definition for Full {
    fn name(&self) -> &'static str {
        "Full"
    }
    fn id(&self) -> &'static str {
        "full"
    }
    fn vit_b16_params(&self) -> u64 {
        85_798_656
    }
    /// lr 2e-5 and no warm-up (the paper's full fine-tuning preset).
    fn paper_optimiser(&self) -> super::PaperOptimiser {
        super::PaperOptimiser {
            lr: 2e-5,
            warmup_steps: 0,
        }
    }
    fn export_form(&self) -> ExportForm {
        ExportForm::Plain
    }
}

/// W and b free, from W₀ and b₀: h·n + h.
impl Parameterisation for Full {
    fn block_len(&self, h: usize, n: usize, _shape: &ModuleSizes) -> usize {
        h * n + h
    }
    fn init(&self, layer: &Layer, _gauss: &mut dyn FnMut(f64, usize) -> Vec<f64>, theta: &mut Vec<f64>) {
        theta.extend_from_slice(layer.w0());
        theta.extend_from_slice(layer.b0());
    }
    fn backbone<'a>(&self, layer: &Layer<'a>, blk: &[f64]) -> (Cow<'a, [f64]>, Cow<'a, [f64]>) {
        let hn = layer.hidden() * layer.inputs();
        (blk[..hn].to_vec().into(), blk[hn..].to_vec().into())
    }
    fn backward(&self, _layer: &Layer, _blk: &[f64], u: &[f64], gw: &[f64], gbeta: f64, g: &mut Vec<f64>) {
        for &ui in u {
            g.extend(gw.iter().map(|x| ui * x));
        }
        g.extend(u.iter().map(|ui| ui * gbeta));
    }
}
