//! ImageNet-C-style common corruptions (Hendrycks & Dietterich 2019, "Benchmarking Neural Network
//! Robustness to Common Corruptions and Perturbations", ICLR): the ten corruptions that need no
//! external assets (noise, blur, photometric, pixelate), five severities each.
//!
//! Images smaller than 64 px use the CIFAR-10-C constants, larger ones the ImageNet-C constants.
//! The formulas follow the reference scripts (numpy / skimage / OpenCV / PIL semantics noted at
//! each helper); the one deliberate difference is that results stay f32 instead of being
//! quantised to uint8 (and, for ImageNet-C, JPEG-saved).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Poisson, StandardNormal};
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
        Corruption::GaussianNoise => {
            let sd = t.gaussian_noise[s];
            map_values(img, |x| x + sd * rng.sample::<f64, _>(StandardNormal));
        }
        // Poisson(0) is 0 (`Poisson::new` rejects λ ≤ 0).
        Corruption::ShotNoise => {
            let lam = t.shot_noise[s];
            map_values(img, |x| Poisson::new(x * lam).map_or(0.0, |p| p.sample(rng)) / lam);
        }
        // skimage `random_noise(mode='s&p', amount=c)`: each value flipped with prob. c, to 0 or 1 (half each).
        Corruption::ImpulseNoise => {
            let a = t.impulse_noise[s];
            map_values(img, |x| {
                if rng.random::<f64>() < a {
                    f64::from(u8::from(rng.random::<bool>()))
                } else {
                    x
                }
            });
        }
        Corruption::SpeckleNoise => {
            let sd = t.speckle_noise[s];
            map_values(img, |x| x + x * sd * rng.sample::<f64, _>(StandardNormal));
        }
        Corruption::GaussianBlur => {
            // skimage `gaussian` = scipy `gaussian_filter`: truncate 4σ, mode 'nearest' (clamp to edge).
            let sigma = t.gaussian_blur[s];
            let k = gauss_kernel(sigma, (4.0 * sigma + 0.5) as usize);
            for p in img.chunks_mut(plane) {
                let mut q: Vec<f64> = p.iter().map(|&v| f64::from(v)).collect();
                blur_plane(&mut q, size, &k, false);
                p.iter_mut().zip(&q).for_each(|(v, &w)| *v = w as f32);
            }
        }
        Corruption::DefocusBlur => {
            let (radius, alias) = t.defocus_blur[s];
            let (k, r) = disk_kernel(radius, alias);
            filter2d(img, size, &k, r);
        }
        Corruption::Brightness => {
            let b = t.brightness[s];
            if channels == 3 {
                hsv_map(img, plane, |[h, s, v]| [h, s, (v + b).clamp(0.0, 1.0)]);
            } else {
                map_values(img, |x| x + b);
            }
        }
        Corruption::Contrast => {
            // numpy `mean(x, axis=(0, 1))` on an HWC image: one mean per channel.
            let f = t.contrast[s];
            for p in img.chunks_mut(plane) {
                let m = p.iter().map(|&v| f64::from(v)).sum::<f64>() / plane as f64;
                p.iter_mut().for_each(|v| *v = ((f64::from(*v) - m) * f + m) as f32);
            }
        }
        Corruption::Saturate => {
            let (a, b) = t.saturate[s];
            if channels == 3 {
                hsv_map(img, plane, |[h, s, v]| [h, (s * a + b).clamp(0.0, 1.0), v]);
            }
        }
        Corruption::Pixelate => pixelate(img, size, t.pixelate[s]),
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

/// Normalised 1-D Gaussian weights at offsets −radius..=radius.
fn gauss_kernel(sigma: f64, radius: usize) -> Vec<f64> {
    let k: Vec<f64> = (0..=2 * radius)
        .map(|i| {
            let d = i as f64 - radius as f64;
            (-d * d / (2.0 * sigma * sigma)).exp()
        })
        .collect();
    let sum: f64 = k.iter().sum();
    k.into_iter().map(|w| w / sum).collect()
}

/// `i` mapped into 0..n: clamp to edge, or reflect-101 (OpenCV's default: …2 1 | 0 1 2 … n−1 | n−2 …).
fn border(i: isize, n: usize, reflect: bool) -> usize {
    let n = n as isize;
    if !reflect || n == 1 {
        return i.clamp(0, n - 1) as usize;
    }
    let m = i.rem_euclid(2 * (n - 1));
    (if m < n { m } else { 2 * (n - 1) - m }) as usize
}

/// Separable correlation of a size×size plane with the odd 1-D kernel `k` along both axes.
fn blur_plane(p: &mut [f64], size: usize, k: &[f64], reflect: bool) {
    let r = (k.len() / 2) as isize;
    let at = |i: usize, j: usize| border(i as isize + j as isize - r, size, reflect);
    let mut tmp = vec![0.0; p.len()];
    for y in 0..size {
        for x in 0..size {
            tmp[y * size + x] = k.iter().enumerate().map(|(j, w)| w * p[y * size + at(x, j)]).sum();
        }
    }
    for y in 0..size {
        for x in 0..size {
            p[y * size + x] = k.iter().enumerate().map(|(j, w)| w * tmp[at(y, j) * size + x]).sum();
        }
    }
}

/// The reference `disk(radius, alias_blur)`: the aliased disk x² + y² ≤ r² on an integer grid of
/// half-width max(8, ⌈r⌉), normalised to sum 1, then blurred (not renormalised) by OpenCV's 3×3
/// Gaussian (5×5 when r > 8) with σ = alias_blur and reflect-101 borders; so r < 1 gives the centre
/// pixel spread into a 3×3 Gaussian. At r = 8 and 10 (ImageNet-C severities 4, 5) the disk touches the
/// grid edge and the reflect-101 blur leaves the kernel summing to ≈1.013 / 1.011, as in the reference.
/// Trimmed to its non-zero support; returns (kernel, half-width).
fn disk_kernel(radius: f64, alias: f64) -> (Vec<f64>, usize) {
    let (h, ks) = if radius <= 8.0 {
        (8, 3)
    } else {
        (radius.ceil() as usize, 5)
    };
    let n = 2 * h + 1;
    let off = |i: usize| i as f64 - h as f64;
    let mut k: Vec<f64> = (0..n * n)
        .map(|i| f64::from(u8::from(off(i / n).powi(2) + off(i % n).powi(2) <= radius * radius)))
        .collect();
    let sum: f64 = k.iter().sum();
    k.iter_mut().for_each(|w| *w /= sum);
    blur_plane(&mut k, n, &gauss_kernel(alias, ks / 2), true);
    let t = (0..n * n)
        .filter(|&i| k[i] != 0.0)
        .map(|i| (i / n).abs_diff(h).max((i % n).abs_diff(h)))
        .max();
    let t = t.unwrap_or(0);
    let m = 2 * t + 1;
    ((0..m * m).map(|i| k[(i / m + h - t) * n + i % m + h - t]).collect(), t)
}

/// 2-D correlation of every plane with the (2r+1)² kernel `k`, reflect-101 borders (`cv2.filter2D`).
fn filter2d(img: &mut [f32], size: usize, k: &[f64], r: usize) {
    let m = 2 * r + 1;
    let at = |i: usize, d: usize| border(i as isize + d as isize - r as isize, size, true);
    for p in img.chunks_mut(size * size) {
        let src: Vec<f64> = p.iter().map(|&v| f64::from(v)).collect();
        for y in 0..size {
            for x in 0..size {
                let mut acc = 0.0;
                for dy in 0..m {
                    let row = at(y, dy) * size;
                    acc += (0..m).map(|dx| k[dy * m + dx] * src[row + at(x, dx)]).sum::<f64>();
                }
                p[y * size + x] = acc as f32;
            }
        }
    }
}

/// skimage `rgb2hsv`: h in [0, 1), s = (max − min)/max (0 when max = min), v = max.
fn rgb_to_hsv([r, g, b]: [f64; 3]) -> [f64; 3] {
    let (v, mn) = (r.max(g).max(b), r.min(g).min(b));
    let d = v - mn;
    if d <= 0.0 {
        return [0.0, 0.0, v];
    }
    let h = if r == v {
        (g - b) / d
    } else if g == v {
        2.0 + (b - r) / d
    } else {
        4.0 + (r - g) / d
    };
    [(h / 6.0).rem_euclid(1.0), d / v, v]
}

/// skimage `hsv2rgb`.
fn hsv_to_rgb([h, s, v]: [f64; 3]) -> [f64; 3] {
    let h6 = h * 6.0;
    let f = h6 - h6.floor();
    let (p, q, t) = (v * (1.0 - s), v * (1.0 - f * s), v * (1.0 - (1.0 - f) * s));
    match (h6.floor() as i64).rem_euclid(6) {
        0 => [v, t, p],
        1 => [q, v, p],
        2 => [p, v, t],
        3 => [p, q, v],
        4 => [t, p, v],
        _ => [v, p, q],
    }
}

/// Applies `f` to the HSV form of every pixel of a 3-channel image.
fn hsv_map(img: &mut [f32], plane: usize, f: impl Fn([f64; 3]) -> [f64; 3]) {
    let (r, rest) = img.split_at_mut(plane);
    let (g, b) = rest.split_at_mut(plane);
    for ((r, g), b) in r.iter_mut().zip(g.iter_mut()).zip(b.iter_mut()) {
        let [x, y, z] = hsv_to_rgb(f(rgb_to_hsv([*r, *g, *b].map(f64::from))));
        (*r, *g, *b) = (x as f32, y as f32, z as f32);
    }
}

/// PIL `resize((int(size·c),)*2, BOX)` then `resize((size,)*2, BOX)`. Downsampling: output cell o
/// averages the input pixels whose centres lie in (o·s, (o+1)·s], s = size/small (PIL's box filter
/// weighs by centre, not by area). Upsampling with BOX is nearest-neighbour: ⌊(o + ½)·small/size⌋.
fn pixelate(img: &mut [f32], size: usize, c: f64) {
    let small = ((size as f64 * c) as usize).max(1);
    let s = size as f64 / small as f64;
    // Input pixels j with j + ½ in (o·s, (o+1)·s].
    let cell = |o: usize| {
        let first = |x: f64| ((x - 0.5).floor() + 1.0).clamp(0.0, size as f64) as usize;
        first(o as f64 * s)..first((o + 1) as f64 * s)
    };
    let up = |o: usize| (((o as f64 + 0.5) * small as f64 / size as f64) as usize).min(small - 1);
    for p in img.chunks_mut(size * size) {
        let mut low = vec![0.0f64; small * small];
        for (i, l) in low.iter_mut().enumerate() {
            let (mut sum, mut cnt) = (0.0, 0usize);
            for y in cell(i / small) {
                for x in cell(i % small) {
                    sum += f64::from(p[y * size + x]);
                    cnt += 1;
                }
            }
            *l = sum / cnt.max(1) as f64;
        }
        for (i, v) in p.iter_mut().enumerate() {
            *v = low[up(i / size) * small + up(i % size)] as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Corruption::*;

    fn dataset(channels: usize, size: usize, n: usize) -> Dataset {
        let images = (0..n * channels * size * size).map(pattern).collect();
        Dataset {
            name: "t".into(),
            images,
            labels: vec![0; n],
            channels,
            size,
            classes: 2,
        }
    }
    fn pattern(i: usize) -> f32 {
        (i as f32 * 0.754_877_7).fract()
    }
    fn apply(img: &[f32], channels: usize, size: usize, c: Corruption, sev: u8) -> Vec<f32> {
        let mut v = img.to_vec();
        corrupt_image(&mut v, channels, size, c, sev, &mut StdRng::seed_from_u64(1));
        v
    }
    fn mad(a: &[f32], b: &[f32]) -> f64 {
        a.iter().zip(b).map(|(x, y)| f64::from((x - y).abs())).sum::<f64>() / a.len() as f64
    }
    fn close(a: impl IntoIterator<Item = f64>, b: impl IntoIterator<Item = f64>, tol: f64) -> bool {
        a.into_iter().zip(b).all(|(x, y)| (x - y).abs() < tol)
    }
    const NOISE: [Corruption; 4] = [GaussianNoise, ShotNoise, ImpulseNoise, SpeckleNoise];

    #[test]
    fn ids_parse_and_serde_round_trip() {
        for c in Corruption::ALL {
            assert_eq!(Corruption::parse(c.id()).unwrap(), c);
            assert_eq!(serde_json::to_string(&c).unwrap(), format!("\"{}\"", c.id()));
            assert_eq!(
                serde_json::from_str::<Corruption>(&format!("\"{}\"", c.id())).unwrap(),
                c
            );
        }
        let e = Corruption::parse("fog").unwrap_err().to_string();
        assert!(
            e.contains("`corruption`") && e.contains("gaussian_noise") && e.contains("pixelate"),
            "{e}"
        );
    }

    #[test]
    fn every_corruption_and_severity_stays_in_unit_range_and_changes_the_image() {
        for (channels, size) in [(3, 16), (1, 16), (3, 64)] {
            let d = dataset(channels, size, 2);
            for c in Corruption::ALL {
                for sev in 1..=5 {
                    let out = corrupt(&d, c, sev, 3).unwrap();
                    assert_eq!(out.name, format!("t-{}-{sev}", c.id()));
                    assert_eq!((out.images.len(), &out.labels), (d.images.len(), &d.labels));
                    assert!(out.images.iter().all(|v| (0.0..=1.0).contains(v)), "{c:?} {sev}");
                    let no_op = channels == 1 && c == Saturate;
                    assert_eq!(mad(&out.images, &d.images) > 1e-4, !no_op, "{c:?} {sev} {channels}");
                }
            }
        }
        for sev in [0, 6] {
            let e = corrupt(&dataset(3, 8, 1), Contrast, sev, 0).unwrap_err().to_string();
            assert!(e.contains("`severity`"), "{e}");
        }
    }

    #[test]
    fn noise_is_deterministic_per_seed_and_split_independent() {
        let d = dataset(3, 8, 37);
        let il = d.image_len();
        for c in NOISE {
            let a = corrupt(&d, c, 5, 7).unwrap();
            assert_eq!(a, corrupt(&d, c, 5, 7).unwrap());
            assert_ne!(a.images, corrupt(&d, c, 5, 8).unwrap().images);
            for (i, (orig, got)) in d.images.chunks(il).zip(a.images.chunks(il)).enumerate() {
                let mut img = orig.to_vec();
                corrupt_image(&mut img, 3, 8, c, 5, &mut image_rng(7, i as u64));
                assert_eq!(img, got);
            }
        }
    }

    #[test]
    fn noise_strength_matches_the_constants_and_grows_with_severity() {
        for (size, t) in [(32, &CIFAR_C), (64, &IMAGENET_C)] {
            let grey = vec![0.5f32; 3 * size * size];
            for c in NOISE {
                assert!(
                    mad(&apply(&grey, 3, size, c, 5), &grey) > mad(&apply(&grey, 3, size, c, 1), &grey),
                    "{c:?}"
                );
            }
            // E|N(0, σ²)| = σ·√(2/π).
            let got = mad(&apply(&grey, 3, size, GaussianNoise, 1), &grey);
            let want = t.gaussian_noise[0] * (2.0 / std::f64::consts::PI).sqrt();
            assert!((got / want - 1.0).abs() < 0.05, "{got} vs {want}");
            // Shot noise: Var = x/λ.
            let out = apply(&grey, 3, size, ShotNoise, 1);
            let var = out.iter().map(|&v| (f64::from(v) - 0.5).powi(2)).sum::<f64>() / out.len() as f64;
            assert!((var / (0.5 / t.shot_noise[0]) - 1.0).abs() < 0.1, "{var}");
            // Impulse: a fraction `amount` of values set to 0 or 1, about half each.
            let out = apply(&grey, 3, size, ImpulseNoise, 5);
            let frac = |x: f32| out.iter().filter(|&&v| v == x).count() as f64 / out.len() as f64;
            let (ones, zeros) = (frac(1.0), frac(0.0));
            assert!(
                ((ones + zeros) / t.impulse_noise[4] - 1.0).abs() < 0.2,
                "{ones} {zeros}"
            );
            assert!((ones - zeros).abs() < 0.3 * (ones + zeros), "{ones} {zeros}");
        }
    }

    #[test]
    fn contrast_keeps_constants_and_channel_means_and_scales_spread_by_c() {
        for (size, t) in [(16, &CIFAR_C), (64, &IMAGENET_C)] {
            let constant = vec![0.3f32; 3 * size * size];
            let two = |i: usize| [[0.2, 0.8], [0.1, 0.5], [0.6, 0.9]][i / (size * size)][i % 2];
            let img: Vec<f32> = (0..3 * size * size).map(two).collect();
            for sev in 1..=5u8 {
                assert_eq!(apply(&constant, 3, size, Contrast, sev), constant);
                let (out, f) = (apply(&img, 3, size, Contrast, sev), t.contrast[usize::from(sev - 1)]);
                for (ch, p) in out.chunks(size * size).enumerate() {
                    let (a, b) = (two(ch * size * size), two(ch * size * size + 1));
                    assert!((f64::from(p[1] - p[0]) - f * f64::from(b - a)).abs() < 1e-6, "spread");
                    assert!(
                        (f64::from(p[0] + p[1]) - f64::from(a + b)).abs() < 1e-6,
                        "channel mean moved"
                    );
                }
            }
        }
    }

    #[test]
    fn brightness_and_saturate_act_in_hsv() {
        for (size, t) in [(16, &CIFAR_C), (64, &IMAGENET_C)] {
            for (g, sev) in [(0.4f32, 1u8), (0.4, 5), (0.8, 5)] {
                let out = apply(&vec![g; 3 * size * size], 3, size, Brightness, sev);
                let want = (f64::from(g) + t.brightness[usize::from(sev - 1)]).min(1.0);
                assert!(out.iter().all(|&v| (f64::from(v) - want).abs() < 1e-6), "{g} {sev}");
            }
        }
        // (0.2, 0.4, 0.6): V = 0.6, S = 2/3; brightness scales by (V + c)/V, saturate (0.3, 0) makes S = 0.2.
        let px = |c| apply(&[0.2, 0.4, 0.6], 3, 1, c, 1).into_iter().map(f64::from);
        assert!(close(px(Brightness), [0.2, 0.4, 0.6].map(|x| x * 0.65 / 0.6), 1e-6));
        assert!(close(px(Saturate), [0.48, 0.54, 0.6], 1e-6));
        assert_eq!(apply(&[0.3; 256], 1, 16, Saturate, 5), [0.3; 256]);
    }

    #[test]
    fn blurs_keep_constants_and_mass_and_have_the_right_kernels() {
        for size in [16, 64] {
            for (c, sev) in [GaussianBlur, DefocusBlur]
                .into_iter()
                .flat_map(|c| (1..=5).map(move |s| (c, s)))
            {
                let out = apply(&vec![0.7f32; 3 * size * size], 3, size, c, sev);
                // The reference's r = 8, 10 disks sum to ≈1.013 / 1.011 (see `disk_kernel`).
                let tol = if c == DefocusBlur && size >= 64 && sev >= 4 {
                    0.01
                } else {
                    1e-5
                };
                assert!(out.iter().all(|&v| (v - 0.7).abs() < tol), "{c:?} {sev}");
            }
        }
        // Delta at the centre of a 16×16 plane, σ = 1 (CIFAR severity 5): mass kept, centre = k₀², ratio e^{-1/2}.
        let mut delta = [0.0f32; 256];
        delta[8 * 16 + 8] = 1.0;
        let out = apply(&delta, 1, 16, GaussianBlur, 5);
        let k0 = 1.0 / (-4..=4).map(|d: i32| (-f64::from(d * d) / 2.0).exp()).sum::<f64>();
        assert!((out.iter().map(|&v| f64::from(v)).sum::<f64>() - 1.0).abs() < 1e-5);
        assert!((f64::from(out[8 * 16 + 8]) - k0 * k0).abs() < 1e-6);
        assert!((f64::from(out[8 * 16 + 9] / out[8 * 16 + 8]) - (-0.5f64).exp()).abs() < 1e-5);
        // Radius < 1: the centre pixel blurred by a 3×3 Gaussian with σ = alias_blur.
        let ((k, r), g) = (disk_kernel(0.3, 0.4), gauss_kernel(0.4, 1));
        assert_eq!(r, 1);
        assert!(close(k, (0..9).map(|i| g[i / 3] * g[i % 3]), 1e-12));
        for (radius, alias, half, sum) in [
            (1.0, 0.2, 2, 1.0),
            (1.5, 0.1, 2, 1.0),
            (3.0, 0.1, 4, 1.0),
            (10.0, 0.5, 10, 1.011),
        ] {
            let (k, r) = disk_kernel(radius, alias);
            assert_eq!(r, half);
            assert!((k.iter().sum::<f64>() - sum).abs() < 1e-3, "{radius}");
            assert!(close(k.iter().copied(), k.iter().rev().copied(), 1e-12), "symmetric");
        }
    }

    #[test]
    fn pixelate_box_averages_with_truncated_size() {
        let img: Vec<f32> = (0..2 * 64).map(pattern).collect();
        let mut one = img.clone();
        pixelate(&mut one, 8, 0.1);
        for (p, q) in one.chunks(64).zip(img.chunks(64)) {
            let m = q.iter().map(|&v| f64::from(v)).sum::<f64>() / 64.0;
            assert!(p.iter().all(|&v| (f64::from(v) - m).abs() < 1e-6), "1×1 = channel mean");
        }
        let mut half = img[..64].to_vec();
        pixelate(&mut half, 8, 0.5);
        let block = |i: usize| {
            [0, 1, 8, 9]
                .map(|o| f64::from(img[i / 16 * 16 + i % 8 / 2 * 2 + o]))
                .iter()
                .sum::<f64>()
        };
        assert!(
            close(
                half.iter().map(|&v| f64::from(v)),
                (0..64).map(|i| block(i) / 4.0),
                1e-6
            ),
            "2×2 means"
        );
        // int(32·0.9) = 28 cells (rounding would give 29): a horizontal ramp keeps 28 distinct columns.
        let ramp: Vec<f32> = (0..32 * 32).map(|i| (i % 32) as f32 / 31.0).collect();
        let mut row: Vec<u32> = apply(&ramp, 1, 32, Pixelate, 2)[..32]
            .iter()
            .map(|v| v.to_bits())
            .collect();
        row.dedup();
        assert_eq!(row.len(), 28);
    }
}
