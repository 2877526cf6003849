//! File loaders on small files the test writes itself (no downloads), and their errors.

use std::io::Write;
use std::path::{Path, PathBuf};

use robustft::engine::data::files::{Split, cifar10, domains, fashion_mnist, image_folder};

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("robustft-data-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn idx(ndims: u8, dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 0, 8, ndims];
    for d in dims {
        v.extend(d.to_be_bytes());
    }
    v.extend_from_slice(data);
    v
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn write_fmnist(dir: &Path, n: usize, gzip: bool, labels: &[u8]) {
    let pixels: Vec<u8> = (0..n * 28 * 28).map(|i| (i % 251) as u8).collect();
    let (img, lab) = (
        idx(3, &[n as u32, 28, 28], &pixels),
        idx(1, &[labels.len() as u32], labels),
    );
    let (ip, lp) = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte");
    if gzip {
        std::fs::write(dir.join(format!("{ip}.gz")), gz(&img)).unwrap();
        std::fs::write(dir.join(format!("{lp}.gz")), gz(&lab)).unwrap();
    } else {
        std::fs::write(dir.join(ip), img).unwrap();
        std::fs::write(dir.join(lp), lab).unwrap();
    }
}

#[test]
fn fashion_mnist_idx_plain_and_gzipped() {
    for gzip in [false, true] {
        let dir = scratch(&format!("fm{gzip}"));
        write_fmnist(&dir, 3, gzip, &[0, 9, 4]);
        let d = fashion_mnist(&dir, Split::Train).unwrap();
        assert_eq!((d.len(), d.channels, d.size, d.classes), (3, 1, 28, 10));
        assert_eq!(d.labels, vec![0, 9, 4]);
        assert_eq!(d.images[1], 1.0 / 255.0);
        assert_eq!(d.images[250], 250.0 / 255.0);
        let rgb = d.to_rgb().resize(32);
        assert_eq!((rgb.channels, rgb.size), (3, 32));
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn fashion_mnist_errors_name_file_and_record() {
    let dir = scratch("fmbad");
    // Label out of range.
    write_fmnist(&dir, 3, false, &[0, 12, 4]);
    let e = fashion_mnist(&dir, Split::Train).unwrap_err().to_string();
    assert!(
        e.contains("train-labels-idx1-ubyte") && e.contains("record 1") && e.contains("12"),
        "{e}"
    );
    // Count mismatch.
    write_fmnist(&dir, 3, false, &[0, 1]);
    let e = fashion_mnist(&dir, Split::Train).unwrap_err().to_string();
    assert!(e.contains("train-labels-idx1-ubyte") && e.contains("3 labels"), "{e}");
    // Wrong magic.
    write_fmnist(&dir, 3, false, &[0, 1, 2]);
    let p = dir.join("train-images-idx3-ubyte");
    let mut bytes = std::fs::read(&p).unwrap();
    bytes[3] = 1;
    std::fs::write(&p, &bytes).unwrap();
    let e = fashion_mnist(&dir, Split::Train).unwrap_err().to_string();
    assert!(e.contains("train-images-idx3-ubyte") && e.contains("magic"), "{e}");
    // Truncated: 3 images announced, 2.5 present.
    bytes[3] = 3;
    bytes.truncate(16 + 784 * 2 + 400);
    std::fs::write(&p, &bytes).unwrap();
    let e = fashion_mnist(&dir, Split::Train).unwrap_err().to_string();
    assert!(e.contains("truncated in record 2"), "{e}");
    // Missing file.
    std::fs::remove_file(&p).unwrap();
    let e = fashion_mnist(&dir, Split::Train).unwrap_err().to_string();
    assert!(e.contains("train-images-idx3-ubyte"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn cifar10_batches_and_errors() {
    let dir = scratch("cifar");
    let rec = |label: u8, v: u8| {
        let mut r = vec![label];
        r.extend(std::iter::repeat_n(v, 3072));
        r
    };
    let test: Vec<u8> = [rec(3, 255), rec(7, 0)].concat();
    std::fs::write(dir.join("test_batch.bin"), &test).unwrap();
    let d = cifar10(&dir, Split::Test).unwrap();
    assert_eq!((d.len(), d.channels, d.size), (2, 3, 32));
    assert_eq!(d.labels, vec![3, 7]);
    assert_eq!(d.images[0], 1.0);
    assert_eq!(d.images[3072], 0.0);
    std::fs::write(dir.join("test_batch.bin"), &test[..3073 + 100]).unwrap();
    let e = cifar10(&dir, Split::Test).unwrap_err().to_string();
    assert!(
        e.contains("test_batch.bin") && e.contains("truncated in record 1"),
        "{e}"
    );
    std::fs::write(dir.join("test_batch.bin"), [rec(3, 1), rec(10, 1)].concat()).unwrap();
    let e = cifar10(&dir, Split::Test).unwrap_err().to_string();
    assert!(e.contains("record 1") && e.contains("10"), "{e}");
    let e = cifar10(&dir, Split::Train).unwrap_err().to_string();
    assert!(e.contains("data_batch_1.bin"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn write_image(path: &Path, colour: [u8; 3], w: u32, h: u32) {
    let img = image::RgbImage::from_pixel(w, h, image::Rgb(colour));
    img.save(path).unwrap();
}

#[test]
fn image_folders_and_domains() {
    let root = scratch("domains");
    for (domain, shade) in [("clipart", 200u8), ("real", 50u8), ("sketch", 120u8)] {
        for (class, c) in [("cat", 0usize), ("dog", 1)] {
            let dir = root.join(domain).join(class);
            std::fs::create_dir_all(&dir).unwrap();
            let mut colour = [shade; 3];
            colour[c] = 255;
            write_image(&dir.join("a.png"), colour, 40, 30);
            write_image(&dir.join("b.jpg"), colour, 20, 20);
        }
    }
    let d = image_folder(&root.join("real"), 16).unwrap();
    assert_eq!((d.len(), d.classes, d.size, d.channels), (4, 2, 16, 3));
    assert_eq!(d.labels, vec![0, 0, 1, 1]);
    // PNG is lossless: the resized uniform image keeps its colour exactly.
    assert!((d.images[0] - 1.0).abs() < 1e-6 && (d.images[256] - 50.0 / 255.0).abs() < 1e-6);
    let (train, ood) = domains(&root, "real", 16).unwrap();
    assert_eq!((train.len(), ood.len()), (4, 8));
    // An unreadable image is named.
    std::fs::write(root.join("real/dog/broken.png"), b"not a png").unwrap();
    let e = image_folder(&root.join("real"), 16).unwrap_err().to_string();
    assert!(e.contains("broken.png"), "{e}");
    let e = domains(&root, "photo", 16).unwrap_err().to_string();
    assert!(e.contains("photo"), "{e}");
    let _ = std::fs::remove_dir_all(&root);
}

/// The real Fashion-MNIST from the Debian package `dataset-fashion-mnist`
/// (`apt-get install dataset-fashion-mnist`; run with --ignored).
#[test]
#[ignore]
fn real_fashion_mnist_from_the_debian_package() {
    let dir = Path::new(robustft::engine::data::files::FASHION_MNIST_DIR);
    let train = fashion_mnist(dir, Split::Train).unwrap();
    let test = fashion_mnist(dir, Split::Test).unwrap();
    assert_eq!((train.len(), test.len()), (60_000, 10_000));
    let mut counts = [0usize; 10];
    test.labels.iter().for_each(|l| counts[*l as usize] += 1);
    assert_eq!(counts, [1000; 10]);
}
