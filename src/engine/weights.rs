//! A model's tensors by HF key, as the modules and the strategies see them.

use std::collections::HashMap;

use candle_core::Tensor;

use crate::error::{Error, Result};

/// The model's tensors by HF key, seen from a key prefix (as candle's `VarBuilder::pp`): modules
/// are built from `Weights` rooted at their own prefix and name their tensors relative to it.
pub struct Weights<'a> {
    tensors: &'a HashMap<String, Tensor>,
    prefix: String,
}

impl<'a> Weights<'a> {
    /// All of `tensors`, from the root.
    pub fn new(tensors: &'a HashMap<String, Tensor>) -> Self {
        Weights {
            tensors,
            prefix: String::new(),
        }
    }

    /// The same tensors seen from `prefix` below this one (`a.pp("b").get("c")` is `a.b.c`).
    pub fn pp(&self, prefix: &str) -> Weights<'a> {
        Weights {
            tensors: self.tensors,
            prefix: self.key(prefix),
        }
    }

    fn key(&self, name: &str) -> String {
        match self.prefix.as_str() {
            "" => name.to_string(),
            p => format!("{p}.{name}"),
        }
    }

    /// The tensor `name` below the prefix; an error naming the full key when it is missing.
    pub fn get(&self, name: &str) -> Result<Tensor> {
        let key = self.key(name);
        self.tensors.get(&key).cloned().ok_or_else(|| Error::Engine {
            message: format!("missing tensor {key}"),
            source: None,
        })
    }

    /// The tensor `name` below the prefix, if present.
    pub fn opt(&self, name: &str) -> Option<Tensor> {
        self.tensors.get(&self.key(name)).cloned()
    }
}
