//! Full fine-tuning: every backbone tensor is trained (85,798,656 on ViT-B/16).

use crate::engine::vit::{ParamSpec, Role};

/// Marks every backbone tensor trainable.
pub fn unfreeze(specs: &mut [ParamSpec]) {
    for s in specs.iter_mut().filter(|s| s.role == Role::Backbone) {
        s.trainable = true;
    }
}
