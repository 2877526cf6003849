//! Pixelate: PIL box downsampling, then nearest-neighbour upsampling.

/// PIL `resize((int(size·c),)*2, BOX)` then `resize((size,)*2, BOX)`. Downsampling: output cell o
/// averages the input pixels whose centres lie in (o·s, (o+1)·s], s = size/small (PIL's box filter
/// weighs by centre, not by area). Upsampling with BOX is nearest-neighbour: ⌊(o + ½)·small/size⌋.
pub(super) fn pixelate(img: &mut [f32], size: usize, c: f64) {
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
