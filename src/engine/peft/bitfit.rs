//! BitFit (Ben Zaken et al. 2022, ACL): train every bias of the backbone, LayerNorm biases
//! included (102,912 on ViT-B/16: 12 × (4·768 + 3072 + 768 + 2·768) + 768 patch + 768 final LN).

use std::borrow::Cow;

use super::Method;
use super::{Definition, ExportForm};
use crate::engine::vit::{ParamSpec, Role};
use crate::theory::dynamics::net::{Layer, ModuleSizes, Parameterisation};

/// BitFit.
pub struct Bitfit;

impl Method for Bitfit {
    /// Marks every backbone `*.bias` trainable.
    fn unfreeze(&self, specs: &mut [ParamSpec]) {
        for s in specs
            .iter_mut()
            .filter(|s| s.role == Role::Backbone && s.key.ends_with(".bias"))
        {
            s.trainable = true;
        }
    }
}

impl Definition for Bitfit {
    fn name(&self) -> &'static str {
        "BitFit"
    }
    fn id(&self) -> &'static str {
        "bitfit"
    }
    fn vit_b16_params(&self) -> u64 {
        102_912
    }
    fn export_form(&self) -> ExportForm {
        ExportForm::Plain
    }
}

/// W₀, b free from b₀: h.
impl Parameterisation for Bitfit {
    fn block_len(&self, h: usize, _n: usize, _shape: &ModuleSizes) -> usize {
        h
    }
    fn init(&self, layer: &Layer, _gauss: &mut dyn FnMut(f64, usize) -> Vec<f64>, theta: &mut Vec<f64>) {
        theta.extend_from_slice(layer.b0());
    }
    fn backbone<'a>(&self, layer: &Layer<'a>, blk: &[f64]) -> (Cow<'a, [f64]>, Cow<'a, [f64]>) {
        (layer.w0().into(), blk.to_vec().into())
    }
    fn backward(&self, _layer: &Layer, _blk: &[f64], u: &[f64], _gw: &[f64], gbeta: f64, g: &mut Vec<f64>) {
        g.extend(u.iter().map(|ui| ui * gbeta));
    }
}
