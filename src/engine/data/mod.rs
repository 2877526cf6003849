//! Datasets as f32 images in [0, 1] (channel-major [N, C, H, W]) with u32 labels: synthetic
//! planted-feature tasks ([`synthetic`]), Fashion-MNIST IDX, CIFAR-10 binary batches, image
//! folders and DomainNet-style domains ([`files`]), and the corruption suite ([`corrupt`]).

pub mod corrupt;
pub mod files;
pub mod synthetic;

use candle_core::{Device, Tensor};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::error::{Error, Result};

/// An in-memory image classification dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// Name for records and errors.
    pub name: String,
    /// Pixels, [N, C, H, W] row-major, each in [0, 1].
    pub images: Vec<f32>,
    /// Labels in 0..classes.
    pub labels: Vec<u32>,
    /// Channels.
    pub channels: usize,
    /// Height = width.
    pub size: usize,
    /// Number of classes.
    pub classes: usize,
}

impl Dataset {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    /// No images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    /// Pixels per image.
    pub fn image_len(&self) -> usize {
        self.channels * self.size * self.size
    }

    /// The images and labels at `ids` as tensors (`[B, C, H, W]` f32, `[B]` u32).
    pub fn batch(&self, ids: &[usize], device: &Device) -> Result<(Tensor, Tensor)> {
        let il = self.image_len();
        let mut px = Vec::with_capacity(ids.len() * il);
        let mut ys = Vec::with_capacity(ids.len());
        for &i in ids {
            px.extend_from_slice(&self.images[i * il..(i + 1) * il]);
            ys.push(self.labels[i]);
        }
        let x = Tensor::from_vec(px, (ids.len(), self.channels, self.size, self.size), device)?;
        let y = Tensor::from_vec(ys, ids.len(), device)?;
        Ok((x, y))
    }

    /// The images at `ids` as a new dataset.
    pub fn subset(&self, ids: &[usize]) -> Dataset {
        let il = self.image_len();
        let mut images = Vec::with_capacity(ids.len() * il);
        for &i in ids {
            images.extend_from_slice(&self.images[i * il..(i + 1) * il]);
        }
        Dataset {
            images,
            labels: ids.iter().map(|&i| self.labels[i]).collect(),
            ..self.clone_meta()
        }
    }

    fn clone_meta(&self) -> Dataset {
        Dataset {
            name: self.name.clone(),
            images: Vec::new(),
            labels: Vec::new(),
            channels: self.channels,
            size: self.size,
            classes: self.classes,
        }
    }

    /// Deterministic train/validation split from a seed: a seeded shuffle, the first
    /// ⌊val_fraction·N⌋ indices go to validation.
    pub fn split(&self, val_fraction: f64, seed: u64) -> Result<(Dataset, Dataset)> {
        crate::error::check::closed("val_fraction", val_fraction, 0.0, 1.0)?;
        let mut ids: Vec<usize> = (0..self.len()).collect();
        ids.shuffle(&mut StdRng::seed_from_u64(seed));
        let nv = (val_fraction * self.len() as f64) as usize;
        let (val, train) = ids.split_at(nv);
        let (mut train, mut val) = (train.to_vec(), val.to_vec());
        train.sort_unstable();
        val.sort_unstable();
        Ok((self.subset(&train), self.subset(&val)))
    }

    /// A fixed evaluation subset: `n` indices (all if n ≥ N) chosen by a seeded shuffle, sorted.
    pub fn eval_indices(&self, n: usize, seed: u64) -> Vec<usize> {
        let mut ids: Vec<usize> = (0..self.len()).collect();
        ids.shuffle(&mut StdRng::seed_from_u64(crate::seeds::derive(
            seed,
            crate::seeds::Stream::EvalImages,
        )));
        ids.truncate(n.min(self.len()));
        ids.sort_unstable();
        ids
    }

    /// The images of `classes` only, relabelled in the order given: original label `classes[j]`
    /// becomes `j` (so the returned dataset has `classes.len()` classes and `classes` is its
    /// label map). Errors name `field` when the list is empty, repeats a class or names a class
    /// the dataset does not have.
    pub fn select_classes(&self, classes: &[u32], field: &str) -> Result<Dataset> {
        if classes.is_empty() {
            return Err(Error::invalid(field, "need at least one class", "[]"));
        }
        let mut new_label = vec![None; self.classes];
        for (j, &c) in classes.iter().enumerate() {
            let slot = new_label.get_mut(c as usize).ok_or_else(|| {
                Error::invalid(
                    field,
                    format!("classes must be < {} for {}", self.classes, self.name),
                    c,
                )
            })?;
            if slot.is_some() {
                return Err(Error::invalid(field, "lists a class twice", c));
            }
            *slot = Some(j as u32);
        }
        let ids: Vec<usize> = (0..self.len())
            .filter(|&i| new_label[self.labels[i] as usize].is_some())
            .collect();
        let mut out = self.subset(&ids);
        for l in &mut out.labels {
            *l = new_label[*l as usize].expect("kept only listed classes");
        }
        out.classes = classes.len();
        Ok(out)
    }

    /// Grey images replicated to three channels (a no-op for RGB).
    pub fn to_rgb(self) -> Dataset {
        if self.channels != 1 {
            return self;
        }
        let n = self.size * self.size;
        let mut images = Vec::with_capacity(self.images.len() * 3);
        for img in self.images.chunks(n) {
            for _ in 0..3 {
                images.extend_from_slice(img);
            }
        }
        Dataset {
            images,
            channels: 3,
            ..self
        }
    }

    /// Bilinear resize to `size` × `size` (align-corners = false, as PyTorch's default).
    pub fn resize(self, size: usize) -> Dataset {
        if size == self.size {
            return self;
        }
        let (s0, c) = (self.size, self.channels);
        let scale = s0 as f32 / size as f32;
        let mut images = Vec::with_capacity(self.len() * c * size * size);
        for img in self.images.chunks(c * s0 * s0) {
            for ch in img.chunks(s0 * s0) {
                for oy in 0..size {
                    let fy = ((oy as f32 + 0.5) * scale - 0.5).clamp(0.0, (s0 - 1) as f32);
                    let (y0, wy) = (fy.floor() as usize, fy - fy.floor());
                    let y1 = (y0 + 1).min(s0 - 1);
                    for ox in 0..size {
                        let fx = ((ox as f32 + 0.5) * scale - 0.5).clamp(0.0, (s0 - 1) as f32);
                        let (x0, wx) = (fx.floor() as usize, fx - fx.floor());
                        let x1 = (x0 + 1).min(s0 - 1);
                        let p = |y: usize, x: usize| ch[y * s0 + x];
                        let top = p(y0, x0) * (1.0 - wx) + p(y0, x1) * wx;
                        let bot = p(y1, x0) * (1.0 - wx) + p(y1, x1) * wx;
                        images.push(top * (1.0 - wy) + bot * wy);
                    }
                }
            }
        }
        Dataset { images, size, ..self }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy() -> Dataset {
        Dataset {
            name: "toy".into(),
            images: (0..10 * 4).map(|v| v as f32 / 40.0).collect(),
            labels: (0..10).map(|i| i % 3).collect(),
            channels: 1,
            size: 2,
            classes: 3,
        }
    }

    #[test]
    fn split_is_deterministic_and_complete() {
        let d = toy();
        let (a, b) = d.split(0.3, 7).unwrap();
        let (a2, b2) = d.split(0.3, 7).unwrap();
        assert_eq!((a.len(), b.len()), (7, 3));
        assert_eq!(a, a2);
        assert_eq!(b, b2);
        assert_ne!(d.split(0.3, 8).unwrap().1, b);
        assert_eq!(d.eval_indices(4, 1), d.eval_indices(4, 1));
        assert_eq!(d.eval_indices(100, 1).len(), 10);
    }

    #[test]
    fn class_subset_keeps_and_relabels() {
        // toy labels: i % 3 for i in 0..10 → class 0: 4 images, 1: 3, 2: 3.
        let d = toy();
        let s = d.select_classes(&[2, 0], "classes").unwrap();
        assert_eq!(s.classes, 2);
        assert_eq!(s.len(), 7);
        // Original order kept; label 2 → 0, label 0 → 1.
        assert_eq!(s.labels, vec![1, 0, 1, 0, 1, 0, 1]);
        // The first kept image is original image 0 (label 0), the second original image 2.
        assert_eq!(&s.images[..4], &d.images[..4]);
        assert_eq!(&s.images[4..8], &d.images[8..12]);
        for (bad, why) in [(&[][..], "at least one"), (&[1, 1][..], "twice"), (&[3][..], "< 3")] {
            let e = d.select_classes(bad, "datasets[0].classes").unwrap_err().to_string();
            assert!(e.contains("datasets[0].classes") && e.contains(why), "{e}");
        }
    }

    #[test]
    fn rgb_resize_and_validation() {
        let d = toy().to_rgb();
        assert_eq!(d.channels, 3);
        assert_eq!(d.images.len(), 10 * 12);
        let r = d.clone().resize(4);
        assert_eq!(r.images.len(), 10 * 3 * 16);
        // A constant image stays constant under bilinear resizing.
        let c = Dataset {
            images: vec![0.25; 3 * 4],
            labels: vec![0],
            channels: 3,
            size: 2,
            classes: 1,
            name: "c".into(),
        };
        assert!(c.resize(5).images.iter().all(|v| (v - 0.25).abs() < 1e-7));
    }
}
