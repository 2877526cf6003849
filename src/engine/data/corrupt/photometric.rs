//! The photometric corruptions: brightness and saturate in HSV (skimage's conversions), contrast
//! per channel.

use super::map_values;

/// HSV value + `b` (clamped to [0, 1]) for a 3-channel image; for other channel counts, `b` added
/// to every value.
pub(super) fn brightness(img: &mut [f32], channels: usize, plane: usize, b: f64) {
    if channels == 3 {
        hsv_map(img, plane, |[h, s, v]| [h, s, (v + b).clamp(0.0, 1.0)]);
    } else {
        map_values(img, |x| x + b);
    }
}

/// (x − mean)·f + mean with one mean per channel plane: numpy `mean(x, axis=(0, 1))` on an HWC
/// image.
pub(super) fn contrast(img: &mut [f32], plane: usize, f: f64) {
    for p in img.chunks_mut(plane) {
        let m = p.iter().map(|&v| f64::from(v)).sum::<f64>() / plane as f64;
        p.iter_mut().for_each(|v| *v = ((f64::from(*v) - m) * f + m) as f32);
    }
}

/// HSV saturation·a + b (clamped to [0, 1]) for a 3-channel image; nothing for other channel
/// counts.
pub(super) fn saturate(img: &mut [f32], channels: usize, plane: usize, (a, b): (f64, f64)) {
    if channels == 3 {
        hsv_map(img, plane, |[h, s, v]| [h, (s * a + b).clamp(0.0, 1.0), v]);
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
