//! BitFit (Ben Zaken et al. 2022, ACL): train every bias of the backbone, LayerNorm biases
//! included (102,912 on ViT-B/16: 12 × (4·768 + 3072 + 768 + 2·768) + 768 patch + 768 final LN).

use crate::engine::vit::{ParamSpec, Role};

/// Marks every backbone `*.bias` trainable.
pub fn unfreeze(specs: &mut [ParamSpec]) {
    for s in specs
        .iter_mut()
        .filter(|s| s.role == Role::Backbone && s.key.ends_with(".bias"))
    {
        s.trainable = true;
    }
}
