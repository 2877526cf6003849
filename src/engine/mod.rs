//! The validation engine on candle: ViT (tiny → Base, HF layout), the seven fine-tuning
//! strategies, attacks and data. Runs on CPU at small scale; the same code runs on a GPU.

pub mod attack;
pub mod bench;
pub mod data;
pub mod device;
pub mod eval;
pub mod fused;
pub mod model;
pub mod ops;
pub mod peft;
pub mod pretrain;
pub mod train;
pub mod vit;

pub use model::Vit;
pub use peft::{PeftConfig, Strategy};
pub use vit::VitConfig;

impl From<candle_core::Error> for crate::error::Error {
    fn from(e: candle_core::Error) -> Self {
        // candle appends a captured backtrace to some messages: keep the message line only
        // (set ROBUSTFT_BACKTRACE=1 to keep it).
        let text = e.to_string();
        if std::env::var_os("ROBUSTFT_BACKTRACE").is_some() {
            return crate::error::Error::Engine(text);
        }
        crate::error::Error::Engine(text.lines().next().unwrap_or("tensor operation failed").to_string())
    }
}
