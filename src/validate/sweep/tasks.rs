//! Task complexity measured in the pretrained features, before fine-tuning: the nearest-class-mean
//! (NCM) separability of each configured task ([`separability`], recorded in every run's
//! header) and `validate tasks`, which measures every task and, with `--pairs`, every pair of its
//! classes: the way to choose a "simple" and a "complex" task by measurement.

use std::path::Path;

use candle_core::{DType, Device};

use crate::engine::data::Dataset;
use crate::engine::eval::dataset_features;
use crate::engine::{Strategy, Vit, VitSpec};
use crate::error::{Error, Result};
use crate::validate::ValidRun;
use crate::validate::sweep::data::TaskData;
use crate::validate::sweep::records::Separability;
use crate::validate::sweep::upstream::{Upstream, upstream};

/// CLS features of the pretrained backbone for every image of `d` ([n, dim], row-major).
fn features(backbone: &Vit, d: &Dataset, device: &Device) -> Result<Vec<Vec<f32>>> {
    Ok(dataset_features(backbone, d, device)?
        .to_dtype(DType::F32)?
        .to_vec2::<f32>()?)
}

/// Per-class mean of `f` over the images selected by `keep`.
fn class_means(f: &[Vec<f32>], labels: &[u32], classes: usize, keep: impl Fn(usize) -> bool) -> Vec<Vec<f64>> {
    let dim = f.first().map_or(0, Vec::len);
    let mut sum = vec![vec![0.0f64; dim]; classes];
    let mut n = vec![0usize; classes];
    for (i, (row, &l)) in f.iter().zip(labels).enumerate().filter(|(i, _)| keep(*i)) {
        let _ = i;
        n[l as usize] += 1;
        for (s, v) in sum[l as usize].iter_mut().zip(row) {
            *s += *v as f64;
        }
    }
    for (s, n) in sum.iter_mut().zip(&n) {
        s.iter_mut().for_each(|v| *v /= (*n).max(1) as f64);
    }
    sum
}

/// Nearest-class-mean accuracy of features `f` with labels: means from the even-indexed rows,
/// accuracy on the odd-indexed ones. Returns (accuracy, rows classified).
pub fn ncm_accuracy(f: &[Vec<f32>], labels: &[u32], classes: usize) -> (f64, usize) {
    let means = class_means(f, labels, classes, |i| i % 2 == 0);
    let (mut ok, mut n) = (0usize, 0usize);
    for (row, &l) in f.iter().zip(labels).skip(1).step_by(2) {
        let dist = |m: &Vec<f64>| m.iter().zip(row).map(|(a, b)| (a - *b as f64).powi(2)).sum::<f64>();
        let best = (0..classes)
            .min_by(|&a, &b| dist(&means[a]).total_cmp(&dist(&means[b])))
            .expect("at least one class");
        ok += usize::from(best == l as usize);
        n += 1;
    }
    (ok as f64 / n.max(1) as f64, n)
}

/// Training images used to measure separability (at most).
const SEPARABILITY_IMAGES: usize = 2000;

/// Measures how separable `data`'s task is in the pretrained backbone's features (nearest class
/// mean, [`ncm_accuracy`], on up to 2000 training images, never test images) and how close its
/// classes sit to the upstream classes (cosine of centred class means).
pub fn separability(up: &Upstream, run: &ValidRun, data: &TaskData, device: &Device) -> Result<Separability> {
    let spec = VitSpec::new(
        &run.model,
        Strategy::LinearProbe,
        data.train.classes,
        DType::F32,
        device,
        0,
    );
    let backbone = Vit::load_backbone(&up.path, &spec)?;
    let n = data.train.len().min(SEPARABILITY_IMAGES);
    let sub = data.train.subset(&(0..n).collect::<Vec<_>>());
    let f = features(&backbone, &sub, device)?;
    let k = data.train.classes;
    let (acc, n_cls) = ncm_accuracy(&f, &sub.labels, k);
    let chance = 1.0 / k as f64;
    let upstream_similarity = match &up.reference {
        Some(r) => {
            let m = r.len().min(SEPARABILITY_IMAGES);
            let rsub = r.subset(&(0..m).collect::<Vec<_>>());
            let g = features(&backbone, &rsub, device)?;
            let dim = f.first().map_or(0, Vec::len);
            let mut centre = vec![0.0f64; dim];
            for row in f.iter().chain(&g) {
                centre.iter_mut().zip(row).for_each(|(c, v)| *c += *v as f64);
            }
            let total = (f.len() + g.len()).max(1) as f64;
            centre.iter_mut().for_each(|c| *c /= total);
            let centred = |ms: Vec<Vec<f64>>| -> Vec<Vec<f64>> {
                ms.into_iter()
                    .map(|m| m.iter().zip(&centre).map(|(a, c)| a - c).collect())
                    .collect()
            };
            let down = centred(class_means(&f, &sub.labels, k, |_| true));
            let upm = centred(class_means(&g, &rsub.labels, r.classes, |_| true));
            let cos = |a: &[f64], b: &[f64]| {
                let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
                let na = a.iter().map(|x| x * x).sum::<f64>().sqrt();
                let nb = b.iter().map(|x| x * x).sum::<f64>().sqrt();
                if na == 0.0 || nb == 0.0 { 0.0 } else { dot / (na * nb) }
            };
            let best: Vec<f64> = down
                .iter()
                .map(|d| upm.iter().map(|u| cos(d, u)).fold(f64::NEG_INFINITY, f64::max))
                .collect();
            Some(best.iter().sum::<f64>() / best.len().max(1) as f64)
        }
        None => None,
    };
    Ok(Separability {
        ncm_acc: acc,
        ncm_kappa: if k > 1 { (acc - chance) / (1.0 - chance) } else { 1.0 },
        n: n_cls,
        upstream_similarity,
    })
}

/// `validate tasks`: the separability of every configured dataset (and, with `pairs`, of every
/// pair of its classes as a two-class task) in the pretrained backbone's features, as Markdown
/// (also written to `out/tasks.md`). The way to choose a "simple" and a "complex" task by
/// measurement.
pub fn tasks(run: &ValidRun, out: &Path, pairs: bool, device: &Device, quiet: bool) -> Result<String> {
    crate::validate::sweep::inputs::check_inputs(run)?;
    let up = upstream(run, out, device, quiet)?;
    let mut md = String::from(
        "| task | classes | NCM accuracy | κ (chance-corrected) | upstream similarity | images |\n|---|---|---|---|---|---|\n",
    );
    for (i, (d, ood)) in run.config.datasets.iter().zip(&run.ood).enumerate() {
        let key = format!("datasets[{i}].");
        let mut specs = vec![(d.name.clone(), d.clone())];
        if pairs {
            let classes: Vec<u32> = match &d.classes {
                Some(c) => c.clone(),
                None => (0..crate::validate::sweep::data::prepare(d, ood, run.model.image_size, 1, 0, &key)?
                    .train
                    .classes as u32)
                    .collect(),
            };
            // A two-class task is its own only pair.
            for (a, &x) in classes.iter().enumerate().filter(|_| classes.len() > 2) {
                for &y in &classes[a + 1..] {
                    let mut p = d.clone();
                    p.classes = Some(vec![x, y]);
                    specs.push((format!("{} pair", d.name), p));
                }
            }
        }
        for (label, spec) in specs {
            let data = crate::validate::sweep::data::prepare(&spec, ood, run.model.image_size, 1, 0, &key)?;
            let s = separability(&up, run, &data, device)?;
            md.push_str(&format!(
                "| {label} | {} | {:.3} | {:.3} | {} | {} |\n",
                spec.classes.as_ref().map_or("all".into(), |c| format!("{c:?}")),
                s.ncm_acc,
                s.ncm_kappa,
                s.upstream_similarity.map_or("-".into(), |v| format!("{v:.3}")),
                s.n
            ));
        }
    }
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    crate::io::write_atomic(&out.join("tasks.md"), md.as_bytes())?;
    Ok(md)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ncm_on_separated_and_mixed_points() {
        // Two well separated clusters: every odd row is classified correctly.
        let f: Vec<Vec<f32>> = (0..20)
            .map(|i| vec![if i % 4 < 2 { 0.0 } else { 10.0 } + (i as f32) * 0.01])
            .collect();
        let labels: Vec<u32> = (0..20).map(|i| u32::from(i % 4 >= 2)).collect();
        assert_eq!(ncm_accuracy(&f, &labels, 2), (1.0, 10));
        // Identical features for both classes: the nearest mean is class 0 for every row (ties go
        // to the first), so accuracy = share of class 0 among odd rows = 0.5.
        let same = vec![vec![1.0f32]; 20];
        assert_eq!(ncm_accuracy(&same, &labels, 2).0, 0.5);
    }
}
