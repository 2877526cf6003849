//! Linear probing: the backbone stays frozen; only the head is trained (0 backbone parameters).
//! Because the backbone never changes, its CLS features can be computed once and cached.

use std::borrow::Cow;

use super::Method;
use super::{Definition, ExportForm};
use crate::theory::dynamics::net::{Layer, ModuleSizes, Parameterisation};

/// Linear probing: every hook keeps its default (nothing unfrozen, nothing added).
pub struct LinearProbe;

impl Method for LinearProbe {}

impl Definition for LinearProbe {
    fn name(&self) -> &'static str {
        "Linear Probing"
    }
    fn id(&self) -> &'static str {
        "linear_probe"
    }
    fn aliases(&self) -> &'static [&'static str] {
        &["lp", "linear", "linear_probing"]
    }
    fn vit_b16_params(&self) -> u64 {
        0
    }
    fn export_form(&self) -> ExportForm {
        ExportForm::Plain
    }
    fn frozen_backbone(&self) -> bool {
        true
    }
}

/// W₀ and b₀ unchanged: an empty block.
impl Parameterisation for LinearProbe {
    fn block_len(&self, _h: usize, _n: usize, _shape: &ModuleSizes) -> usize {
        0
    }
    fn init(&self, _layer: &Layer, _gauss: &mut dyn FnMut(f64, usize) -> Vec<f64>, _theta: &mut Vec<f64>) {}
    fn backbone<'a>(&self, layer: &Layer<'a>, _blk: &[f64]) -> (Cow<'a, [f64]>, Cow<'a, [f64]>) {
        (layer.w0().into(), layer.b0().into())
    }
    fn backward(&self, _layer: &Layer, _blk: &[f64], _u: &[f64], _gw: &[f64], _gbeta: f64, _g: &mut Vec<f64>) {}
}
