//! Seeds and hashes. Every random stream of the toolkit is derived from a user's seed here, by
//! one of the named [`Stream`]s (or one of the few structured derivations below), so a reader
//! sees which streams exist and that no two share a seed by accident. The tags are part of the
//! recorded results: changing one changes every record drawn from that stream.

/// SplitMix64's finaliser (Steele, Lea & Flood 2014, "Fast splittable pseudorandom number
/// generators"): a bijective bit mixer that decorrelates derived seeds.
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// FNV-1a 64 offset basis and prime (Fowler, Noll & Vo).
const FNV_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0100_0000_01b3;

/// FNV-1a 64 of a byte string.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    fnv1a_words(bytes.iter().map(|&b| b as u32))
}

/// FNV-1a 64 over a sequence of words, each XORed in whole (the dataset fingerprint hashes
/// 32-bit words: labels and pixel bit patterns).
pub fn fnv1a_words(words: impl IntoIterator<Item = u32>) -> u64 {
    words
        .into_iter()
        .fold(FNV_BASIS, |h, w| (h ^ w as u64).wrapping_mul(FNV_PRIME))
}

/// The named streams derived from a seed by XOR with a fixed tag ([`derive`](fn@derive)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Which test images a run evaluates (`Dataset::eval_indices`).
    EvalImages,
    /// The batch order of upstream pretraining.
    Pretrain,
    /// The batch order of fine-tuning.
    BatchOrder,
    /// The random draws of an OOD corruption of the test images.
    Corruption,
    /// The validation split carved from the training images by `validate tune`.
    TuneSplit,
    /// A synthetic task's class codes (signs of the non-robust means).
    ClassCodes,
    /// A synthetic task's class shapes (the robust feature).
    ClassShapes,
    /// The all-image bootstrap of the rise-then-fall excess (finding 1).
    ExcessBootstrap,
    /// The dynamics model's random head.
    DynamicsHead,
    /// The dynamics model's strategy factors.
    DynamicsModules,
    /// The fixed draw of other-domain test images of a `domains` dataset (seed-independent:
    /// the tag itself is the seed).
    OtherDomains,
    /// The random starts of adversarial fine-tuning's inner attack (`engine::robust`).
    TrainAttack,
}

impl Stream {
    /// The tag XORed into the seed.
    pub const fn tag(self) -> u64 {
        match self {
            Stream::EvalImages => 0x5eed_e7a1,
            Stream::Pretrain => 0xba7c,
            Stream::BatchOrder => 0x0bad_cafe,
            Stream::Corruption => 0x00d,
            Stream::TuneSplit => 0x7a11,
            Stream::ClassCodes => 0xc0de,
            Stream::ClassShapes => 0x5aa9e,
            Stream::ExcessBootstrap => 0xe4,
            Stream::DynamicsHead => 0xa5a5_a5a5_a5a5_a5a5,
            Stream::DynamicsModules => 0x9e37_79b9_7f4a_7c15,
            Stream::OtherDomains => 0xd0_3a15,
            Stream::TrainAttack => 0x007a_a77a,
        }
    }
}

/// The seed of `stream` under `seed`.
pub const fn derive(seed: u64, stream: Stream) -> u64 {
    seed ^ stream.tag()
}

/// The attack seed of evaluation step `step` of a run with seed `seed` (its batches and radii
/// are derived from it by `engine::eval`).
pub const fn attack(seed: u64, step: u64) -> u64 {
    seed.wrapping_mul(1_000_003) ^ (step << 16)
}

/// The seed of the permutation of training epoch `epoch` under a batch-order seed.
pub const fn epoch(seed: u64, epoch: u64) -> u64 {
    seed ^ epoch.wrapping_mul(0x9e37_79b9)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values_and_distinct_tags() {
        // FNV-1a 64 reference values (the empty string is the offset basis; "a" from the spec).
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        // SplitMix64 of 0 (first output of the reference generator seeded with 0).
        assert_eq!(splitmix64(0), 0xe220_a839_7b1d_cdaf);
        let all = [
            Stream::EvalImages,
            Stream::Pretrain,
            Stream::BatchOrder,
            Stream::Corruption,
            Stream::TuneSplit,
            Stream::ClassCodes,
            Stream::ClassShapes,
            Stream::ExcessBootstrap,
            Stream::DynamicsHead,
            Stream::DynamicsModules,
            Stream::OtherDomains,
            Stream::TrainAttack,
        ];
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(a.tag(), b.tag(), "{a:?} and {b:?} share a tag");
            }
        }
    }
}
