//! Full fine-tuning: every backbone tensor is trained (85,798,656 on ViT-B/16).

use super::Method;
use crate::engine::vit::{ParamSpec, Role};

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
