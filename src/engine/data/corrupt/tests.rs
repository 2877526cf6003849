use super::blur::{disk_kernel, gauss_kernel};
use super::pixelate::pixelate;
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
