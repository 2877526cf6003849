//! `validate`: fine-tune Vision Transformers with the seven strategies and measure the tradeoff.
//! The validation engine is not built yet (see the engine issue); this binary says so and fails.

use std::process::ExitCode;

fn main() -> ExitCode {
    eprintln!(
        "validate: not yet available — the validation engine (ViT, 7 PEFT strategies, attacks) has not landed. \
         Use `cargo run --release --bin simulate` for the theory simulator."
    );
    ExitCode::FAILURE
}
