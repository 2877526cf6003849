//! Datasets of a run: loading any kind the engine reads (synthetic, Fashion-MNIST, CIFAR-10,
//! image folders, DomainNet-style domains), restricting it to a class subset with labels remapped, and preparing the
//! training pool, the test images and their OOD twin at the model's image size.

use std::path::{Path, PathBuf};

use crate::engine::data::Dataset;
use crate::engine::data::corrupt::corrupt;
use crate::engine::data::files::{self, Split};
use crate::engine::data::synthetic::SyntheticSpec;
use crate::error::{Error, Result};
use crate::validate::sweep::config::{DatasetSpec, Ood};
use crate::validate::sweep::spec::DataKind;

/// A source's training and test images, at the model's size, RGB, restricted to its classes.
pub struct Loaded {
    /// Training images (all of them, or the first `train_images`).
    pub train: Dataset,
    /// Test images (all of them, or the first `test_images`).
    pub test: Dataset,
    /// Synthetic only: the test images in the shifted style (aligned with `test`).
    pub shifted: Option<Dataset>,
    /// Task complexity d (synthetic: the task's d; files: the class count).
    pub d: f64,
}

/// Loads `kind` from `data_dir` (Fashion-MNIST: Debian's folder by
/// default), keeps `classes` (labels remapped in the order listed; errors name `key` + `classes`),
/// takes the first `train_images` / `test_images` of each split (None: all; synthetic: generated)
/// and converts to RGB at `image_size`.
#[allow(clippy::too_many_arguments)]
pub fn load_source(
    kind: DataKind,
    task: Option<&str>,
    data_dir: Option<&Path>,
    classes: Option<&[u32]>,
    train_images: Option<usize>,
    test_images: Option<usize>,
    image_size: usize,
    key: &str,
) -> Result<Loaded> {
    let (mut train, mut test, mut shifted, d) = if kind == DataKind::Synthetic {
        let s = SyntheticSpec::named(task.unwrap_or(""), image_size)?;
        let n_test = test_images.unwrap_or(1000);
        let shifted = s.shifted().generate(n_test, 1)?;
        let train = s.generate(train_images.unwrap_or(4096), 0)?;
        (train, s.generate(n_test, 1)?, Some(shifted), s.d as f64)
    } else {
        let (tr, te) = read_files(kind, data_dir, key)?;
        let d = tr.classes as f64;
        (tr, te, None, d)
    };
    if let Some(cs) = classes {
        let field = format!("{key}classes");
        train = train.select_classes(cs, &field)?;
        test = test.select_classes(cs, &field)?;
        shifted = shifted.map(|s| s.select_classes(cs, &field)).transpose()?;
    }
    let take = |d: Dataset, n: Option<usize>| match n {
        Some(n) if n < d.len() => d.subset(&(0..n).collect::<Vec<_>>()),
        _ => d,
    };
    let prep = |d: Dataset| d.to_rgb().resize(image_size);
    Ok(Loaded {
        train: prep(take(train, train_images)),
        test: prep(take(test, test_images)),
        shifted: shifted.map(|s| prep(take(s, test_images))),
        d,
    })
}

/// The folder of a file dataset; a missing one is an error saying how to install it (`key`
/// prefixes the field name). Synthetic data needs none (Ok(None)).
pub fn data_folder(kind: DataKind, data_dir: Option<&Path>, key: &str) -> Result<Option<PathBuf>> {
    if kind == DataKind::Synthetic {
        return Ok(None);
    }
    let dir = match (kind, data_dir) {
        (_, Some(d)) => d.to_path_buf(),
        (DataKind::FashionMnist, None) => PathBuf::from(files::FASHION_MNIST_DIR),
        (other, None) => {
            return Err(Error::invalid(
                format!("{key}data_dir"),
                format!("a {other} dataset needs data_dir"),
                "nothing",
            ));
        }
    };
    if !dir.is_dir() {
        let hint = if kind == DataKind::FashionMnist {
            "install it with `bash validation/setup-data.sh` (Debian package dataset-fashion-mnist) or set data_dir"
        } else {
            "set data_dir to the folder that holds it"
        };
        return Err(Error::invalid(
            format!("{key}data_dir"),
            format!("the {kind} data folder does not exist: {hint}"),
            dir.display(),
        ));
    }
    Ok(Some(dir))
}

/// Every data folder a run reads exists and every file in it is valid ([`files::check`]: headers,
/// sizes, labels; each folder once), checked before anything is written, so a damaged file is
/// found before upstream pretraining, not after. Errors name the key (`pretrain.dataset.data_dir`,
/// `datasets[i].data_dir`) and say how to install the data, or name the file and record.
pub fn check_data(run: &crate::validate::ValidRun) -> Result<()> {
    let mut sources = Vec::new();
    if run.config.checkpoint.is_none()
        && let Some(d) = &run.config.pretrain.dataset
    {
        sources.push((d.kind, d.data_dir.as_deref(), "pretrain.dataset.".to_string()));
    }
    for (i, d) in run.config.datasets.iter().enumerate() {
        if let (DataKind::Domains, Some(domain)) = (d.kind, &d.domain) {
            let key = format!("datasets[{i}].");
            let root =
                data_folder(DataKind::Domains, d.data_dir.as_deref(), &key)?.expect("a domains dataset has a folder");
            files::check_domains(&root, domain)?;
            continue;
        }
        sources.push((d.kind, d.data_dir.as_deref(), format!("datasets[{i}].")));
    }
    let mut checked: Vec<(DataKind, PathBuf)> = Vec::new();
    for (kind, dir, key) in sources {
        if let Some(dir) = data_folder(kind, dir, &key)?
            && !checked.iter().any(|(k, d)| *k == kind && *d == dir)
        {
            files::check(kind.as_str(), &dir)?;
            checked.push((kind, dir));
        }
    }
    Ok(())
}

/// Both splits of a file dataset; a missing folder gets an error saying how to install it.
fn read_files(kind: DataKind, data_dir: Option<&Path>, key: &str) -> Result<(Dataset, Dataset)> {
    let dir = data_folder(kind, data_dir, key)?.expect("a file dataset has a folder");
    match kind {
        DataKind::FashionMnist => Ok((
            files::fashion_mnist(&dir, Split::Train)?,
            files::fashion_mnist(&dir, Split::Test)?,
        )),
        DataKind::Cifar10 => Ok((files::cifar10(&dir, Split::Train)?, files::cifar10(&dir, Split::Test)?)),
        DataKind::Cifar100 => Ok((
            files::cifar(files::Cifar::Hundred, &dir, Split::Train)?,
            files::cifar(files::Cifar::Hundred, &dir, Split::Test)?,
        )),
        DataKind::ImageFolder => {
            let (tr, te) = (dir.join("train"), dir.join("test"));
            if files::class_names(&tr)? != files::class_names(&te)? {
                return Err(Error::invalid(
                    te.display().to_string(),
                    format!("the same class folders as {}", tr.display()),
                    "different ones",
                ));
            }
            // Image folders are read at their stored size and resized by the caller.
            let size = first_image_size(&tr)?;
            Ok((files::image_folder(&tr, size)?, files::image_folder(&te, size)?))
        }
        other @ (DataKind::Synthetic | DataKind::Domains) => Err(Error::invalid("kind", "a file dataset kind", other)),
    }
}

/// The side of the first image under `root/<class>/` (image folders are loaded square at it).
fn first_image_size(root: &Path) -> Result<usize> {
    for class in files::class_names(root)? {
        let dir = root.join(&class);
        let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(|e| Error::io(&dir, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        entries.sort();
        if let Some(f) = entries.first() {
            let (w, h) = image::image_dimensions(f)
                .map_err(|e| Error::invalid(f.display().to_string(), "a readable PNG or JPEG image", e))?;
            return Ok(w.max(h) as usize);
        }
    }
    Err(Error::invalid(
        root.display().to_string(),
        "class folders holding images",
        "none",
    ))
}

/// A dataset prepared for runs: training pool, test set, its OOD twin, and the task's d.
pub struct TaskData {
    /// Spec as configured.
    pub spec: DatasetSpec,
    /// Training images.
    pub train: Dataset,
    /// Test images (the evaluation subset is drawn from these).
    pub test: Dataset,
    /// OOD images aligned with `test` (same indices), if any.
    pub ood: Option<Dataset>,
    /// Task complexity d for the theory comparison.
    pub theory_d: f64,
    /// Requested sizes the data could not honour, one sentence each (printed and recorded).
    pub capped: Vec<String>,
}

/// Loads or generates a dataset at the model's image size: the first `train_images` training
/// images and the first max(`eval_subset`, 256) test images of its classes.
pub fn prepare(
    spec: &DatasetSpec,
    ood: &Ood,
    image_size: usize,
    eval_subset: usize,
    seed: u64,
    key: &str,
) -> Result<TaskData> {
    // A `domains` dataset trains and tests on one domain, an image folder under its root.
    let (kind, dir) = match (spec.kind, &spec.domain) {
        (DataKind::Domains, Some(dom)) => (
            DataKind::ImageFolder,
            data_folder(DataKind::Domains, spec.data_dir.as_deref(), key)?.map(|r| r.join(dom)),
        ),
        (k, _) => (k, spec.data_dir.clone()),
    };
    let l = load_source(
        kind,
        spec.task.as_deref(),
        dir.as_deref(),
        spec.classes.as_deref(),
        Some(spec.train_images),
        Some(eval_subset.max(256)),
        image_size,
        key,
    )?;
    let ood = match ood {
        Ood::None => None,
        Ood::Shifted => l.shifted,
        Ood::Corruption(c, s) => Some(corrupt(
            &l.test,
            *c,
            *s,
            crate::seeds::derive(seed, crate::seeds::Stream::Corruption),
        )?),
        Ood::Domains => Some(other_domains(spec, image_size, l.test.len(), key)?),
    };
    let mut capped = Vec::new();
    if l.train.len() < spec.train_images {
        capped.push(format!(
            "{key}train_images = {} but its classes hold {} training images: using {}",
            spec.train_images,
            l.train.len(),
            l.train.len()
        ));
    }
    if l.test.len() < eval_subset {
        capped.push(format!(
            "eval_subset = {eval_subset} but {}'s classes hold {} test images: evaluating on {}",
            spec.name,
            l.test.len(),
            l.test.len()
        ));
    }
    Ok(TaskData {
        theory_d: spec.theory_d.unwrap_or(l.d),
        capped,
        spec: spec.clone(),
        train: l.train,
        test: l.test,
        ood,
    })
}

/// The OOD set of a `domains` dataset: the other domains' test images of its classes, pooled,
/// and a fixed draw of `n` of them (the same for every seed). Fewer than `n` is an error.
fn other_domains(spec: &DatasetSpec, image_size: usize, n: usize, key: &str) -> Result<Dataset> {
    let root = data_folder(DataKind::Domains, spec.data_dir.as_deref(), key)?.expect("a domains dataset has a folder");
    let domain = spec
        .domain
        .as_deref()
        .expect("validated: a domains dataset names its domain");
    let mut pooled = files::other_domains(&root, domain, image_size)?;
    if let Some(cs) = &spec.classes {
        pooled = pooled.select_classes(cs, &format!("{key}classes"))?;
    }
    if pooled.len() < n {
        return Err(Error::invalid(
            root.display().to_string(),
            format!("at least {n} test images in the domains other than {domain} (one per test image of {domain})"),
            pooled.len(),
        ));
    }
    Ok(pooled.subset(&pooled.eval_indices(n, crate::seeds::Stream::OtherDomains.tag())))
}

/// A 64-bit fingerprint of a dataset's labels and pixels (FNV-1a over 32-bit words), hex: part
/// of the cache key of a backbone pretrained on it, so changed data files are never mistaken
/// for the cached ones.
pub fn fingerprint(d: &Dataset) -> String {
    let sizes = [d.channels, d.size, d.classes, d.len()].map(|v| v as u32);
    let words = sizes
        .into_iter()
        .chain(d.labels.iter().copied())
        .chain(d.images.iter().map(|p| p.to_bits()));
    format!("{:016x}", crate::seeds::fnv1a_words(words))
}
