//! ImageNet-C-style common corruptions (Hendrycks & Dietterich 2019, "Benchmarking Neural Network
//! Robustness to Common Corruptions and Perturbations", ICLR): the ten corruptions that need no
//! external assets (noise, blur, photometric, pixelate), five severities each.
//!
//! Images smaller than 64 px use the CIFAR-10-C constants, larger ones the ImageNet-C constants.
//! The formulas follow the reference scripts (numpy / skimage / OpenCV / PIL semantics noted at
//! each helper); the one deliberate difference is that results stay f32 instead of being
//! quantised to uint8 (and, for ImageNet-C, JPEG-saved).

mod blur;
mod noise;
mod photometric;
mod pixelate;
#[cfg(test)]
mod tests;

use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use super::Dataset;
use crate::error::{Error, Result};
use crate::seeds::splitmix64;

/// One corruption type of the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Corruption {
    /// x + N(0, c²).
    GaussianNoise,
    /// Poisson(x·c)/c.
    ShotNoise,
    /// Salt and pepper: each value becomes 0 or 1 (half each) with probability c.
    ImpulseNoise,
    /// x + x·N(0, c²).
    SpeckleNoise,
    /// Gaussian blur with σ = c.
    GaussianBlur,
    /// Disk-kernel blur (radius, anti-alias σ).
    DefocusBlur,
    /// HSV value + c.
    Brightness,
    /// (x − mean)·c + mean, mean per channel.
    Contrast,
    /// HSV saturation·c₀ + c₁.
    Saturate,
    /// Box-downsample by c, then nearest-neighbour upsample.
    Pixelate,
}

impl Corruption {
    /// Every corruption, in benchmark order.
    pub const ALL: [Corruption; 10] = [
        Corruption::GaussianNoise,
        Corruption::ShotNoise,
        Corruption::ImpulseNoise,
        Corruption::SpeckleNoise,
        Corruption::GaussianBlur,
        Corruption::DefocusBlur,
        Corruption::Brightness,
        Corruption::Contrast,
        Corruption::Saturate,
        Corruption::Pixelate,
    ];

    /// The snake_case name (as in the reference scripts and in configs).
    pub fn id(self) -> &'static str {
        match self {
            Corruption::GaussianNoise => "gaussian_noise",
            Corruption::ShotNoise => "shot_noise",
            Corruption::ImpulseNoise => "impulse_noise",
            Corruption::SpeckleNoise => "speckle_noise",
            Corruption::GaussianBlur => "gaussian_blur",
            Corruption::DefocusBlur => "defocus_blur",
            Corruption::Brightness => "brightness",
            Corruption::Contrast => "contrast",
            Corruption::Saturate => "saturate",
            Corruption::Pixelate => "pixelate",
        }
    }

    /// The corruption named `s` (its [`id`](Self::id)).
    pub fn parse(s: &str) -> Result<Self> {
        Self::ALL.into_iter().find(|c| c.id() == s).ok_or_else(|| {
            let names: Vec<&str> = Self::ALL.iter().map(|c| c.id()).collect();
            Error::invalid("corruption", format!("expected one of {}", names.join(", ")), s)
        })
    }
}

/// Severity parameters of one benchmark; entry k is severity k + 1.
struct Table {
    gaussian_noise: [f64; 5],
    shot_noise: [f64; 5],
    impulse_noise: [f64; 5],
    speckle_noise: [f64; 5],
    gaussian_blur: [f64; 5],
    defocus_blur: [(f64, f64); 5],
    brightness: [f64; 5],
    contrast: [f64; 5],
    saturate: [(f64, f64); 5],
    pixelate: [f64; 5],
}

/// CIFAR-10-C constants (images < 64 px), transcribed from the reference script
/// `ImageNet-C/create_c/make_cifar_c.py` in github.com/hendrycks/robustness.
const CIFAR_C: Table = Table {
    gaussian_noise: [0.04, 0.06, 0.08, 0.09, 0.10],
    shot_noise: [500.0, 250.0, 100.0, 75.0, 50.0],
    impulse_noise: [0.01, 0.02, 0.03, 0.05, 0.07],
    speckle_noise: [0.06, 0.1, 0.12, 0.16, 0.2],
    gaussian_blur: [0.4, 0.6, 0.7, 0.8, 1.0],
    defocus_blur: [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1.0, 0.2), (1.5, 0.1)],
    brightness: [0.05, 0.1, 0.15, 0.2, 0.3],
    contrast: [0.75, 0.5, 0.4, 0.3, 0.15],
    saturate: [(0.3, 0.0), (0.1, 0.0), (1.5, 0.0), (2.0, 0.1), (2.5, 0.2)],
    pixelate: [0.95, 0.9, 0.85, 0.75, 0.65],
};

/// ImageNet-C constants (images ≥ 64 px), transcribed from the reference script
/// `ImageNet-C/create_c/make_imagenet_c.py` in github.com/hendrycks/robustness.
const IMAGENET_C: Table = Table {
    gaussian_noise: [0.08, 0.12, 0.18, 0.26, 0.38],
    shot_noise: [60.0, 25.0, 12.0, 5.0, 3.0],
    impulse_noise: [0.03, 0.06, 0.09, 0.17, 0.27],
    speckle_noise: [0.15, 0.2, 0.35, 0.45, 0.6],
    gaussian_blur: [1.0, 2.0, 3.0, 4.0, 6.0],
    defocus_blur: [(3.0, 0.1), (4.0, 0.5), (6.0, 0.5), (8.0, 0.5), (10.0, 0.5)],
    brightness: [0.1, 0.2, 0.3, 0.4, 0.5],
    contrast: [0.4, 0.3, 0.2, 0.1, 0.05],
    saturate: [(0.3, 0.0), (0.1, 0.0), (2.0, 0.0), (5.0, 0.1), (20.0, 0.2)],
    pixelate: [0.6, 0.5, 0.4, 0.3, 0.25],
};

/// Applies corruption `c` at `severity` (1..=5) in place to one channel-major [C, H, W] image,
/// clipping the result to [0, 1]. Brightness and saturate work in HSV when `channels == 3`; for
/// other channel counts brightness adds c to every value and saturate does nothing.
///
/// # Panics
/// If `severity` is outside 1..=5 or `img.len() != channels·size²`.
pub fn corrupt_image(img: &mut [f32], channels: usize, size: usize, c: Corruption, severity: u8, rng: &mut StdRng) {
    assert!((1..=5).contains(&severity), "severity must be in 1..=5, got {severity}");
    assert_eq!(img.len(), channels * size * size, "image length must be channels·size²");
    let t = if size < 64 { &CIFAR_C } else { &IMAGENET_C };
    let s = usize::from(severity - 1);
    let plane = size * size;
    match c {
        Corruption::GaussianNoise => noise::gaussian(img, t.gaussian_noise[s], rng),
        Corruption::ShotNoise => noise::shot(img, t.shot_noise[s], rng),
        Corruption::ImpulseNoise => noise::impulse(img, t.impulse_noise[s], rng),
        Corruption::SpeckleNoise => noise::speckle(img, t.speckle_noise[s], rng),
        Corruption::GaussianBlur => blur::gaussian(img, size, t.gaussian_blur[s]),
        Corruption::DefocusBlur => blur::defocus(img, size, t.defocus_blur[s]),
        Corruption::Brightness => photometric::brightness(img, channels, plane, t.brightness[s]),
        Corruption::Contrast => photometric::contrast(img, plane, t.contrast[s]),
        Corruption::Saturate => photometric::saturate(img, channels, plane, t.saturate[s]),
        Corruption::Pixelate => pixelate::pixelate(img, size, t.pixelate[s]),
    }
    img.iter_mut().for_each(|v| *v = v.clamp(0.0, 1.0));
}

/// `*v = f(*v)` for every value, computed in f64.
fn map_values(img: &mut [f32], mut f: impl FnMut(f64) -> f64) {
    img.iter_mut().for_each(|v| *v = f(f64::from(*v)) as f32);
}

/// A copy of `data` with corruption `c` at `severity` (1..=5) applied to every image, named
/// "{name}-{id}-{severity}". Image i draws from its own RNG seeded by (`seed`, i), so the result
/// is deterministic and independent of how the work is split (it runs on all cores).
pub fn corrupt(data: &Dataset, c: Corruption, severity: u8, seed: u64) -> Result<Dataset> {
    if !(1..=5).contains(&severity) {
        return Err(Error::invalid("severity", "must be in 1..=5", severity));
    }
    let il = data.image_len();
    if data.images.len() != data.len() * il {
        let reason = format!("expected {} images × {il} values", data.len());
        return Err(Error::invalid("images", reason, data.images.len()));
    }
    let mut images = data.images.clone();
    if il > 0 && !images.is_empty() {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let per = data.len().div_ceil(threads);
        std::thread::scope(|sc| {
            for (t, chunk) in images.chunks_mut(per * il).enumerate() {
                sc.spawn(move || {
                    for (j, img) in chunk.chunks_mut(il).enumerate() {
                        let mut rng = image_rng(seed, (t * per + j) as u64);
                        corrupt_image(img, data.channels, data.size, c, severity, &mut rng);
                    }
                });
            }
        });
    }
    Ok(Dataset {
        name: format!("{}-{}-{}", data.name, c.id(), severity),
        images,
        labels: data.labels.clone(),
        channels: data.channels,
        size: data.size,
        classes: data.classes,
    })
}

/// The RNG of image `i` under `seed`.
fn image_rng(seed: u64, i: u64) -> StdRng {
    StdRng::seed_from_u64(splitmix64(seed ^ splitmix64(i)))
}
