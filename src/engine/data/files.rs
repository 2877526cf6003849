//! Datasets from files: Fashion-MNIST (IDX, gzipped or not), CIFAR-10 (binary batches) and image
//! folders (one sub-folder per class, PNG/JPEG). Every loader validates what it reads: a wrong
//! magic number, a truncated file, a label out of range or an unreadable image is an error naming
//! the file (and the record) and what was expected.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::Dataset;
use crate::error::{Error, Result};

/// Where the Debian package `dataset-fashion-mnist` installs the IDX files.
pub const FASHION_MNIST_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// Training or test split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// The training files.
    Train,
    /// The test files.
    Test,
}

fn bad(path: &Path, what: impl Into<String>, got: impl ToString) -> Error {
    Error::invalid(path.display().to_string(), what, got)
}

/// Reads a file, transparently gunzipping `.gz`.
fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| bad(path, "a readable gzip stream", format!("a damaged one ({e})")))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// Parses an IDX file of unsigned bytes with `ndims` dimensions: returns (dims, data).
/// IDX (LeCun et al., the MNIST format): magic 0x00 0x00 0x08 ndims, then ndims big-endian u32
/// sizes, then the bytes.
pub fn parse_idx(path: &Path, bytes: &[u8], ndims: u8) -> Result<(Vec<usize>, Vec<u8>)> {
    let want = [0u8, 0, 0x08, ndims];
    if bytes.len() < 4 || bytes[..4] != want {
        let got: Vec<String> = bytes.iter().take(4).map(|b| format!("{b:02x}")).collect();
        return Err(bad(
            path,
            format!("IDX magic number 00 00 08 {ndims:02x}"),
            got.join(" "),
        ));
    }
    let header = 4 + 4 * ndims as usize;
    if bytes.len() < header {
        return Err(bad(
            path,
            format!("a {header}-byte IDX header"),
            format!("{} bytes (truncated)", bytes.len()),
        ));
    }
    let dims: Vec<usize> = (0..ndims as usize)
        .map(|i| u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().expect("4 bytes")) as usize)
        .collect();
    if dims.contains(&0) {
        return Err(bad(
            path,
            "non-zero IDX sizes (at least one record, of at least one byte)",
            format!("{dims:?}"),
        ));
    }
    // Checked arithmetic: a hostile header (e.g. [4, 2^31, 2^31]) must not overflow.
    let sizes = dims[1..]
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .and_then(|per| Some((per, dims[0].checked_mul(per)?.checked_add(header)?)));
    let Some((_, need)) = sizes.filter(|&(_, need)| need <= bytes.len()) else {
        let complete = (bytes.len() - header) / sizes.map_or(usize::MAX, |(per, _)| per);
        return Err(bad(
            path,
            format!("the {}-record file its header {dims:?} describes", dims[0]),
            format!("{} bytes: truncated in record {complete}", bytes.len()),
        ));
    };
    Ok((dims, bytes[header..need].to_vec()))
}

fn find(dir: &Path, stem: &str) -> Result<PathBuf> {
    for name in [stem.to_string(), format!("{stem}.gz")] {
        let p = dir.join(&name);
        if p.exists() {
            return Ok(p);
        }
    }
    Err(Error::io(
        dir.join(format!("{stem}[.gz]")),
        std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
    ))
}

/// Fashion-MNIST's validated bytes of one split: (image side, pixels, labels).
fn fashion_mnist_bytes(dir: &Path, split: Split) -> Result<(usize, Vec<u8>, Vec<u8>)> {
    let prefix = if split == Split::Train { "train" } else { "t10k" };
    let ip = find(dir, &format!("{prefix}-images-idx3-ubyte"))?;
    let lp = find(dir, &format!("{prefix}-labels-idx1-ubyte"))?;
    let (idims, pixels) = parse_idx(&ip, &read_maybe_gz(&ip)?, 3)?;
    let (ldims, labels) = parse_idx(&lp, &read_maybe_gz(&lp)?, 1)?;
    if idims[1] != idims[2] {
        return Err(bad(&ip, "square images", format!("{}×{}", idims[1], idims[2])));
    }
    if ldims[0] != idims[0] {
        return Err(bad(
            &lp,
            format!("{} labels, one per image of {}", idims[0], ip.display()),
            ldims[0],
        ));
    }
    if let Some((i, l)) = labels.iter().enumerate().find(|(_, l)| **l >= 10) {
        return Err(bad(&lp, format!("labels 0..9 (record {i})"), l));
    }
    Ok((idims[1], pixels, labels))
}

/// Fashion-MNIST (Xiao et al. 2017) from IDX files in `dir`: 28×28 grey, 10 classes.
pub fn fashion_mnist(dir: &Path, split: Split) -> Result<Dataset> {
    let prefix = if split == Split::Train { "train" } else { "t10k" };
    let (size, pixels, labels) = fashion_mnist_bytes(dir, split)?;
    Ok(Dataset {
        name: format!("fashion-mnist-{prefix}"),
        images: pixels.iter().map(|&p| p as f32 / 255.0).collect(),
        labels: labels.iter().map(|&l| l as u32).collect(),
        channels: 1,
        size,
        classes: 10,
    })
}

/// The two CIFAR binary formats (Krizhevsky 2009): CIFAR-10 records are 1 label byte + 3072
/// pixel bytes in `data_batch_1.bin`…`data_batch_5.bin` and `test_batch.bin` (folder
/// `cifar-10-batches-bin/`); CIFAR-100 records are 1 coarse-label byte, 1 fine-label byte + 3072
/// pixel bytes in `train.bin` and `test.bin` (folder `cifar-100-binary/`). Pixels: 1024 R, 1024
/// G, 1024 B, row-major 32×32.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cifar {
    /// CIFAR-10: 10 classes.
    Ten,
    /// CIFAR-100 with its 100 fine labels.
    Hundred,
}

impl Cifar {
    /// Bytes before the pixels of a record.
    fn label_bytes(self) -> usize {
        match self {
            Cifar::Ten => 1,
            Cifar::Hundred => 2,
        }
    }
    /// Bytes per record.
    fn record(self) -> usize {
        self.label_bytes() + 3072
    }
    /// Classes (fine labels for CIFAR-100).
    pub fn classes(self) -> usize {
        match self {
            Cifar::Ten => 10,
            Cifar::Hundred => 100,
        }
    }
    fn name(self) -> &'static str {
        match self {
            Cifar::Ten => "cifar10",
            Cifar::Hundred => "cifar100",
        }
    }
    /// The batch files of a split in `dir` (or in the archive's own subfolder).
    fn files(self, dir: &Path, split: Split) -> Vec<PathBuf> {
        let sub = match self {
            Cifar::Ten => "cifar-10-batches-bin",
            Cifar::Hundred => "cifar-100-binary",
        };
        let dir = if dir.join(sub).is_dir() {
            dir.join(sub)
        } else {
            dir.to_path_buf()
        };
        match (self, split) {
            (Cifar::Ten, Split::Train) => (1..=5).map(|i| dir.join(format!("data_batch_{i}.bin"))).collect(),
            (Cifar::Ten, Split::Test) => vec![dir.join("test_batch.bin")],
            (Cifar::Hundred, Split::Train) => vec![dir.join("train.bin")],
            (Cifar::Hundred, Split::Test) => vec![dir.join("test.bin")],
        }
    }
}

/// The validated records of one split of a CIFAR dataset, file after file: whole records, and
/// labels in range (CIFAR-100: coarse < 20, fine < 100). Errors name the file and the record.
fn cifar_bytes(kind: Cifar, dir: &Path, split: Split) -> Result<Vec<u8>> {
    let rec = kind.record();
    let mut all = Vec::new();
    for f in &kind.files(dir, split) {
        let bytes = std::fs::read(f).map_err(|e| Error::io(f, e))?;
        if bytes.is_empty() || !bytes.len().is_multiple_of(rec) {
            return Err(bad(
                f,
                format!("whole records of {rec} bytes"),
                format!("{} bytes: truncated in record {}", bytes.len(), bytes.len() / rec),
            ));
        }
        let limits: &[(usize, u8, &str)] = match kind {
            Cifar::Ten => &[(0, 10, "labels 0..9")],
            Cifar::Hundred => &[(0, 20, "coarse labels 0..19"), (1, 100, "fine labels 0..99")],
        };
        for &(at, limit, what) in limits {
            if let Some((i, r)) = bytes.chunks(rec).enumerate().find(|(_, r)| r[at] >= limit) {
                return Err(bad(f, format!("{what} (record {i})"), r[at]));
            }
        }
        all.extend(bytes);
    }
    Ok(all)
}

/// A CIFAR dataset's split from its binary files in `dir` ([`Cifar`]); CIFAR-100 by fine label.
pub fn cifar(kind: Cifar, dir: &Path, split: Split) -> Result<Dataset> {
    let bytes = cifar_bytes(kind, dir, split)?;
    let (rec, skip) = (kind.record(), kind.label_bytes());
    let mut images = Vec::with_capacity(bytes.len());
    let mut labels = Vec::with_capacity(bytes.len() / rec);
    for r in bytes.chunks(rec) {
        labels.push(r[skip - 1] as u32);
        images.extend(r[skip..].iter().map(|&p| p as f32 / 255.0));
    }
    let part = if split == Split::Train { "train" } else { "test" };
    Ok(Dataset {
        name: format!("{}-{part}", kind.name()),
        images,
        labels,
        channels: 3,
        size: 32,
        classes: kind.classes(),
    })
}

/// CIFAR-10 ([`cifar`] with [`Cifar::Ten`]).
pub fn cifar10(dir: &Path, split: Split) -> Result<Dataset> {
    cifar(Cifar::Ten, dir, split)
}

/// Validates both splits of a file dataset of `kind` in `dir` without converting any pixel:
/// IDX and CIFAR headers, sizes, truncation and labels; for image folders, the same class folders
/// in `train/` and `test/`, at least one image, and every image's header. Errors name the file
/// (and the record), as the loaders' do. Runs call it before anything is written.
pub fn check(kind: &str, dir: &Path) -> Result<()> {
    match kind {
        "fashion-mnist" => {
            for split in [Split::Train, Split::Test] {
                fashion_mnist_bytes(dir, split)?;
            }
        }
        "cifar10" | "cifar100" => {
            let kind = if kind == "cifar10" { Cifar::Ten } else { Cifar::Hundred };
            for split in [Split::Train, Split::Test] {
                cifar_bytes(kind, dir, split)?;
            }
        }
        "image-folder" => {
            let (tr, te) = (dir.join("train"), dir.join("test"));
            if class_names(&tr)? != class_names(&te)? {
                return Err(bad(
                    &te,
                    format!("the same class folders as {}", tr.display()),
                    "different ones",
                ));
            }
            for root in [tr, te] {
                let files = image_files(&root)?;
                if files.is_empty() {
                    return Err(bad(&root, "class folders holding PNG or JPEG images", "no images"));
                }
                for (f, _) in files {
                    image::image_dimensions(&f).map_err(|e| bad(&f, "a readable PNG or JPEG image", e))?;
                }
            }
        }
        other => return Err(Error::invalid("kind", "a file dataset kind", other)),
    }
    Ok(())
}

/// `root/<d>/test` for every domain d other than `domain`, in sorted order: `domain` must exist,
/// there must be at least one other, and each must have the class folders of
/// `root/<domain>/train`.
fn other_test_folders(root: &Path, domain: &str) -> Result<Vec<PathBuf>> {
    let names = class_names(root)?;
    if !names.iter().any(|n| n == domain) {
        return Err(bad(root, format!("a domain folder named {domain}"), names.join(", ")));
    }
    let reference = class_names(&root.join(domain).join("train"))?;
    let mut dirs = Vec::new();
    for d in names.iter().filter(|n| *n != domain) {
        let dir = root.join(d).join("test");
        if class_names(&dir)? != reference {
            return Err(bad(
                &dir,
                format!("the class folders of {}", root.join(domain).join("train").display()),
                "different ones",
            ));
        }
        dirs.push(dir);
    }
    if dirs.is_empty() {
        return Err(bad(root, "at least two domain folders", 1));
    }
    Ok(dirs)
}

/// [`check`] for a DomainNet-style root: `root/<domain>` as an image folder, and the test split of
/// every other domain (headers, and the same class folders as `root/<domain>/train`).
pub fn check_domains(root: &Path, domain: &str) -> Result<()> {
    check("image-folder", &root.join(domain))?;
    for dir in other_test_folders(root, domain)? {
        for (f, _) in image_files(&dir)? {
            image::image_dimensions(&f).map_err(|e| bad(&f, "a readable PNG or JPEG image", e))?;
        }
    }
    Ok(())
}

/// Every PNG/JPEG under `root/<class>/`, with its class index (classes and files sorted).
fn image_files(root: &Path) -> Result<Vec<(PathBuf, u32)>> {
    let mut out = Vec::new();
    for (ci, class) in class_names(root)?.iter().enumerate() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(root.join(class))
            .map_err(|e| Error::io(root.join(class), e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg"))
            })
            .collect();
        files.sort();
        out.extend(files.into_iter().map(|f| (f, ci as u32)));
    }
    Ok(out)
}

/// An image folder: `root/<class>/<image>.{png,jpg,jpeg}`, classes in sorted folder order,
/// every image converted to RGB and resized (bilinear) to `size` × `size`.
pub fn image_folder(root: &Path, size: usize) -> Result<Dataset> {
    let classes = class_names(root)?;
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for (f, ci) in image_files(root)? {
        let img = image::open(&f)
            .map_err(|e| bad(&f, "a readable PNG or JPEG image", e))?
            .to_rgb8();
        let img = image::imageops::resize(&img, size as u32, size as u32, image::imageops::FilterType::Triangle);
        for ch in 0..3 {
            images.extend(img.pixels().map(|p| p.0[ch] as f32 / 255.0));
        }
        labels.push(ci);
    }
    if labels.is_empty() {
        return Err(bad(root, "class folders holding PNG or JPEG images", "no images"));
    }
    let name = root
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("images")
        .to_string();
    Ok(Dataset {
        name,
        images,
        labels,
        channels: 3,
        size,
        classes: classes.len(),
    })
}

/// Sorted names of the class sub-folders of `root`.
pub fn class_names(root: &Path) -> Result<Vec<String>> {
    let mut classes: Vec<String> = std::fs::read_dir(root)
        .map_err(|e| Error::io(root, e))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .collect();
    classes.sort();
    Ok(classes)
}

/// DomainNet-style OOD (Li et al. 2025 train on one DomainNet domain and evaluate on the others):
/// `root/<domain>/{train,test}/<class>/…`, each domain an image folder. Returns the test splits
/// of every domain other than `domain`, pooled in sorted domain order, at `size` × `size` RGB.
/// Each must have the class folders of `root/<domain>/train`; at least one other domain.
pub fn other_domains(root: &Path, domain: &str, size: usize) -> Result<Dataset> {
    let mut pooled: Option<Dataset> = None;
    for dir in other_test_folders(root, domain)? {
        let ds = image_folder(&dir, size)?;
        pooled = Some(match pooled {
            None => ds,
            Some(mut p) => {
                p.images.extend(ds.images);
                p.labels.extend(ds.labels);
                p
            }
        });
    }
    let mut ood = pooled.expect("other_test_folders returns at least one");
    ood.name = format!(
        "{}-not-{domain}",
        root.file_name().and_then(|n| n.to_str()).unwrap_or("domains")
    );
    Ok(ood)
}
