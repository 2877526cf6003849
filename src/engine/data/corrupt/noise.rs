//! The noise corruptions, each value drawn in turn from the image's RNG (numpy / skimage
//! semantics).

use rand::Rng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Poisson, StandardNormal};

use super::map_values;

/// x + N(0, sd²).
pub(super) fn gaussian(img: &mut [f32], sd: f64, rng: &mut StdRng) {
    map_values(img, |x| x + sd * rng.sample::<f64, _>(StandardNormal));
}

/// Poisson(x·lam)/lam; Poisson(0) is 0 (`Poisson::new` rejects λ ≤ 0).
pub(super) fn shot(img: &mut [f32], lam: f64, rng: &mut StdRng) {
    map_values(img, |x| Poisson::new(x * lam).map_or(0.0, |p| p.sample(rng)) / lam);
}

/// skimage `random_noise(mode='s&p', amount=a)`: each value flipped with prob. a, to 0 or 1 (half
/// each).
pub(super) fn impulse(img: &mut [f32], a: f64, rng: &mut StdRng) {
    map_values(img, |x| {
        if rng.random::<f64>() < a {
            f64::from(u8::from(rng.random::<bool>()))
        } else {
            x
        }
    });
}

/// x + x·N(0, sd²).
pub(super) fn speckle(img: &mut [f32], sd: f64, rng: &mut StdRng) {
    map_values(img, |x| x + x * sd * rng.sample::<f64, _>(StandardNormal));
}
