//! Synthetic planted-feature images: the feature model of the simulator (Tsipras et al. 2019,
//! §2.1) rendered as pictures, so that the same question can be asked of a real ViT.
//!
//! Every image is 0.5 (grey) plus
//! * a **robust** component: a large-amplitude, low-frequency, human-visible class shape (a sum
//!   of two-dimensional cosines of at most 2 cycles per image, coloured per class), showing the
//!   true class with probability p and another, uniformly chosen class otherwise — the analogue
//!   of x₀;
//! * a **non-robust** component: d high-frequency ±1 pixel patterns P_j from a bank shared by
//!   every task, with coefficients z_j ~ N(η·μ_{y,j}, 1), μ_y ∈ {±1}^d a class code, scaled by
//!   `nr_amplitude`/√d so its per-pixel size stays comparable to the attack budget ε whatever d —
//!   the analogue of x₁..x_D: many weak features, each moved by an ℓ∞ attack of size ε;
//! * Gaussian pixel noise, then clipping to [0, 1].
//!
//! Tasks of different complexity use different d (simple: few directions, complex: many, each
//! weaker); an upstream task for pretraining and downstream tasks share part of the bank
//! (`direction_offset`), so pretrained features transfer partly. The `Shifted` style renders the
//! same class shapes as hard-edged silhouettes in other colours: a domain shift for OOD tests.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use serde::Deserialize;

use super::Dataset;
use crate::error::{Error, Result, check};
use crate::seeds::{Stream, derive};

/// How the robust shapes are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ShapeStyle {
    /// Smooth shapes in the class colour.
    #[default]
    Plain,
    /// Thresholded silhouettes in a different palette (a domain shift).
    Shifted,
}

/// Parameters of a synthetic task.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyntheticSpec {
    /// Name in records.
    pub name: String,
    /// Number of classes.
    pub classes: usize,
    /// Image side in pixels.
    pub image_size: usize,
    /// Probability that the robust shape shows the true class.
    pub p: f64,
    /// Label correlation of each non-robust coefficient.
    pub eta: f64,
    /// Number of non-robust directions (task complexity).
    pub d: usize,
    /// First direction of the shared bank this task uses.
    pub direction_offset: usize,
    /// Per-pixel size of the non-robust component (≈ the attack budget).
    pub nr_amplitude: f64,
    /// Amplitude of the robust shapes.
    pub shape_amplitude: f64,
    /// Standard deviation of the pixel noise.
    pub noise: f64,
    /// Seed of the class shapes and codes.
    pub seed: u64,
    /// Seed of the shared bank of non-robust patterns.
    pub bank_seed: u64,
    /// Shape style.
    #[serde(default)]
    pub style: ShapeStyle,
}

impl SyntheticSpec {
    fn base(name: &str, image_size: usize) -> Self {
        Self {
            name: name.into(),
            classes: 10,
            image_size,
            p: 0.9,
            eta: 1.0,
            d: 16,
            direction_offset: 0,
            nr_amplitude: 2.0 / 255.0,
            shape_amplitude: 0.25,
            noise: 0.03,
            seed: 1,
            bank_seed: 2019,
            style: ShapeStyle::Plain,
        }
    }

    /// The upstream (pretraining) task: 10 classes, 32 non-robust directions (bank 0..32).
    pub fn upstream(image_size: usize) -> Self {
        Self {
            d: 32,
            seed: 100,
            ..Self::base("synthetic-upstream", image_size)
        }
    }

    /// A simple downstream task: few directions (4), all covered by the upstream bank.
    pub fn simple(image_size: usize) -> Self {
        Self {
            d: 4,
            seed: 200,
            ..Self::base("synthetic-simple", image_size)
        }
    }

    /// A complex downstream task: many directions (64), half of them outside the upstream bank.
    pub fn complex(image_size: usize) -> Self {
        Self {
            d: 64,
            direction_offset: 16,
            seed: 300,
            ..Self::base("synthetic-complex", image_size)
        }
    }

    /// The same task with shifted shape style (OOD).
    pub fn shifted(&self) -> Self {
        Self {
            name: format!("{}-shifted", self.name),
            style: ShapeStyle::Shifted,
            ..self.clone()
        }
    }

    /// A task by name: `synthetic-upstream`, `synthetic-simple`, `synthetic-complex`.
    pub fn named(name: &str, image_size: usize) -> Result<Self> {
        match name {
            "synthetic-upstream" | "upstream" => Ok(Self::upstream(image_size)),
            "synthetic-simple" | "simple" => Ok(Self::simple(image_size)),
            "synthetic-complex" | "complex" => Ok(Self::complex(image_size)),
            other => Err(Error::invalid(
                "task",
                "expected synthetic-upstream, synthetic-simple or synthetic-complex",
                other,
            )),
        }
    }

    /// Checks every parameter; errors name the field.
    pub fn validate(&self) -> Result<()> {
        if self.classes < 2 {
            return Err(Error::invalid("classes", "must be >= 2", self.classes));
        }
        if self.image_size < 4 {
            return Err(Error::invalid("image_size", "must be >= 4", self.image_size));
        }
        check::closed("p", self.p, 0.0, 1.0)?;
        check::non_negative("eta", self.eta)?;
        check::non_negative("nr_amplitude", self.nr_amplitude)?;
        check::non_negative("shape_amplitude", self.shape_amplitude)?;
        check::non_negative("noise", self.noise)?;
        Ok(())
    }

    /// `n` images of split `split` (different splits are independent draws); image i depends only
    /// on (spec, split, i).
    pub fn generate(&self, n: usize, split: u64) -> Result<Dataset> {
        self.validate()?;
        let s = self.image_size;
        let px = s * s;
        let shapes: Vec<[Vec<f32>; 3]> = (0..self.classes).map(|c| self.shape(c)).collect();
        let codes = self.class_codes();
        let bank: Vec<Vec<f32>> = (0..self.d)
            .map(|j| pattern(self.bank_seed, self.direction_offset + j, 3 * px))
            .collect();
        let scale = if self.d > 0 {
            (self.nr_amplitude / (self.d as f64).sqrt()) as f32
        } else {
            0.0
        };
        let mut images = Vec::with_capacity(n * 3 * px);
        let mut labels = Vec::with_capacity(n);
        for i in 0..n {
            let mut rng =
                StdRng::seed_from_u64(self.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (split << 40) ^ i as u64);
            let y = rng.random_range(0..self.classes);
            let shown = if rng.random::<f64>() < self.p {
                y
            } else {
                let o = rng.random_range(0..self.classes - 1);
                if o >= y { o + 1 } else { o }
            };
            let mut img: Vec<f32> = Vec::with_capacity(3 * px);
            for ch in &shapes[shown] {
                img.extend(ch.iter().map(|v| 0.5 + v));
            }
            for (j, pat) in bank.iter().enumerate() {
                let z = self.eta as f32 * codes[y][j] + rng.sample::<f32, _>(StandardNormal);
                let a = scale * z;
                img.iter_mut().zip(pat).for_each(|(v, p)| *v += a * p);
            }
            for v in img.iter_mut() {
                *v = (*v + self.noise as f32 * rng.sample::<f32, _>(StandardNormal)).clamp(0.0, 1.0);
            }
            images.extend(img);
            labels.push(y as u32);
        }
        Ok(Dataset {
            name: self.name.clone(),
            images,
            labels,
            channels: 3,
            size: s,
            classes: self.classes,
        })
    }

    /// The class codes μ_c ∈ {±1}^d: the sign of each non-robust coefficient's mean for class c.
    pub fn class_codes(&self) -> Vec<Vec<f32>> {
        (0..self.classes)
            .map(|c| {
                let mut rng = StdRng::seed_from_u64(derive(self.seed, Stream::ClassCodes) ^ ((c as u64) << 32));
                (0..self.d)
                    .map(|_| if rng.random::<bool>() { 1.0 } else { -1.0 })
                    .collect()
            })
            .collect()
    }

    /// Class c's shape as three channels of offsets from grey.
    fn shape(&self, c: usize) -> [Vec<f32>; 3] {
        let s = self.image_size;
        let mut rng = StdRng::seed_from_u64(derive(self.seed, Stream::ClassShapes) ^ ((c as u64) << 24));
        // Two low-frequency waves (≤ 2 cycles per image) with random orientation and phase.
        let waves: Vec<(f32, f32, f32)> = (0..2)
            .map(|_| {
                let fx = rng.random_range(-2i32..=2) as f32;
                let mut fy = rng.random_range(-2i32..=2) as f32;
                if fx == 0.0 && fy == 0.0 {
                    fy = 1.0;
                }
                (fx, fy, rng.random_range(0.0..std::f32::consts::TAU))
            })
            .collect();
        let colour: [f32; 3] = std::array::from_fn(|_| rng.random_range(0.3f32..1.0));
        let shifted: [f32; 3] = [colour[2], 1.0 - colour[0] * 0.5, colour[1]];
        let amp = self.shape_amplitude as f32;
        let mut base = vec![0f32; s * s];
        for (y, row) in base.chunks_mut(s).enumerate() {
            for (x, v) in row.iter_mut().enumerate() {
                let (u, w) = (x as f32 / s as f32, y as f32 / s as f32);
                let t: f32 = waves
                    .iter()
                    .map(|(fx, fy, ph)| (std::f32::consts::TAU * (fx * u + fy * w) + ph).cos())
                    .sum::<f32>()
                    / 2.0;
                *v = match self.style {
                    ShapeStyle::Plain => t,
                    ShapeStyle::Shifted => t.signum() * 0.8,
                };
            }
        }
        let pal = if self.style == ShapeStyle::Plain {
            colour
        } else {
            shifted
        };
        std::array::from_fn(|ch| base.iter().map(|v| v * amp * pal[ch]).collect())
    }
}

/// Pattern j of the shared bank: i.i.d. ±1 pixels (the highest frequencies), seeded by (bank, j).
fn pattern(bank_seed: u64, j: usize, len: usize) -> Vec<f32> {
    let mut rng = StdRng::seed_from_u64(bank_seed ^ ((j as u64 + 1) << 20));
    (0..len)
        .map(|_| if rng.random::<bool>() { 1.0 } else { -1.0 })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_in_range_and_balanced() {
        let spec = SyntheticSpec::simple(16);
        let a = spec.generate(300, 0).unwrap();
        assert_eq!(a, spec.generate(300, 0).unwrap());
        assert_ne!(a.images, spec.generate(300, 1).unwrap().images);
        assert!(a.images.iter().all(|v| (0.0..=1.0).contains(v)));
        assert_eq!(a.images.len(), a.len() * a.image_len());
        assert!(a.labels.iter().all(|&l| (l as usize) < a.classes));
        let mut counts = [0usize; 10];
        a.labels.iter().for_each(|l| counts[*l as usize] += 1);
        assert!(counts.iter().all(|c| *c > 10), "{counts:?}");
        // Prefix property: the first 100 of 300 images are the 100 images of a shorter draw.
        let b = spec.generate(100, 0).unwrap();
        assert_eq!(&a.images[..b.images.len()], &b.images[..]);
    }

    /// The non-robust component carries the label: projecting an image on the class codes'
    /// patterns recovers the class far above chance even with the shapes removed (p irrelevant).
    #[test]
    fn non_robust_component_is_predictive() {
        let spec = SyntheticSpec {
            shape_amplitude: 0.0,
            noise: 0.0,
            ..SyntheticSpec::simple(16)
        };
        let d = spec.generate(200, 3).unwrap();
        let px = 3 * 16 * 16;
        let bank: Vec<Vec<f32>> = (0..spec.d).map(|j| pattern(spec.bank_seed, j, px)).collect();
        let codes = spec.class_codes();
        let mut right = 0;
        for (img, y) in d.images.chunks(px).zip(&d.labels) {
            let z: Vec<f32> = bank
                .iter()
                .map(|p| p.iter().zip(img).map(|(a, b)| a * (b - 0.5)).sum())
                .collect();
            let best = (0..spec.classes)
                .max_by(|&a, &b| {
                    let sa: f32 = codes[a].iter().zip(&z).map(|(c, v)| c * v).sum();
                    let sb: f32 = codes[b].iter().zip(&z).map(|(c, v)| c * v).sum();
                    sa.total_cmp(&sb)
                })
                .unwrap();
            right += usize::from(best as u32 == *y);
        }
        assert!(right > 60, "only {right}/200 (chance: 20)");
    }

    #[test]
    fn bad_spec_names_field() {
        let s = SyntheticSpec {
            classes: 1,
            ..SyntheticSpec::simple(8)
        };
        assert!(s.generate(1, 0).unwrap_err().to_string().contains("classes"));
        let s = SyntheticSpec {
            eta: -1.0,
            ..SyntheticSpec::simple(8)
        };
        assert!(s.generate(1, 0).unwrap_err().to_string().contains("eta"));
    }
}
