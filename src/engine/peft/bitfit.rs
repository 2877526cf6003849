//! BitFit (Ben Zaken et al. 2022, ACL): train every bias of the backbone, LayerNorm biases
//! included (102,912 on ViT-B/16: 12 × (4·768 + 3072 + 768 + 2·768) + 768 patch + 768 final LN).

use super::Method;
use crate::engine::vit::{ParamSpec, Role};

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
