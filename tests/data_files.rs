//! File loaders on small files the test writes itself (no downloads), and their errors.

use std::io::Write;
use std::path::{Path, PathBuf};

mod common;

use robustft::engine::data::files::{Cifar, Split, cifar, cifar10, fashion_mnist, image_folder, other_domains};

/// An empty scratch folder (see [`common::scratch`]), created: keep the guard bound while the
/// folder is in use.
fn scratch(name: &str) -> (tempfile::TempDir, PathBuf) {
    let (tmp, d) = common::scratch("data", name);
    std::fs::create_dir_all(&d).unwrap();
    (tmp, d)
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
    write_fmnist_split(dir, "train", n, gzip, labels);
}

/// `{prefix}-images-idx3-ubyte` and `{prefix}-labels-idx1-ubyte` (prefix train or t10k).
fn write_fmnist_split(dir: &Path, prefix: &str, n: usize, gzip: bool, labels: &[u8]) {
    let pixels: Vec<u8> = (0..n * 28 * 28).map(|i| (i % 251) as u8).collect();
    let (img, lab) = (
        idx(3, &[n as u32, 28, 28], &pixels),
        idx(1, &[labels.len() as u32], labels),
    );
    let (ip, lp) = (
        format!("{prefix}-images-idx3-ubyte"),
        format!("{prefix}-labels-idx1-ubyte"),
    );
    if gzip {
        std::fs::write(dir.join(format!("{ip}.gz")), gz(&img)).unwrap();
        std::fs::write(dir.join(format!("{lp}.gz")), gz(&lab)).unwrap();
    } else {
        std::fs::write(dir.join(&ip), img).unwrap();
        std::fs::write(dir.join(&lp), lab).unwrap();
    }
}

#[test]
fn fashion_mnist_idx_plain_and_gzipped() {
    for gzip in [false, true] {
        let (_dir_tmp, dir) = scratch(&format!("fm{gzip}"));
        write_fmnist(&dir, 3, gzip, &[0, 9, 4]);
        let d = fashion_mnist(&dir, Split::Train).unwrap();
        assert_eq!((d.len(), d.channels, d.size, d.classes), (3, 1, 28, 10));
        assert_eq!(d.labels, vec![0, 9, 4]);
        assert_eq!(d.images[1], 1.0 / 255.0);
        assert_eq!(d.images[250], 250.0 / 255.0);
        let rgb = d.to_rgb().resize(32);
        assert_eq!((rgb.channels, rgb.size), (3, 32));
    }
}

#[test]
fn fashion_mnist_errors_name_file_and_record() {
    let (_dir_tmp, dir) = scratch("fmbad");
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
    // Hostile headers: 0 images, 0×0 images, sizes whose product overflows. Each is an error
    // naming the file and its header, never a panic or a huge allocation.
    let header = |dims: [u32; 3]| {
        let mut h = vec![0u8, 0, 8, 3];
        for d in dims {
            h.extend(d.to_be_bytes());
        }
        h.extend([7u8; 64]);
        h
    };
    for (dims, want) in [
        ([0, 28, 28], "non-zero IDX sizes"),
        ([4, 0, 0], "non-zero IDX sizes"),
        ([4, 1 << 31, 1 << 31], "truncated in record 0"),
        ([u32::MAX, u32::MAX, u32::MAX], "truncated in record 0"),
    ] {
        std::fs::write(&p, header(dims)).unwrap();
        let e = fashion_mnist(&dir, Split::Train).unwrap_err().to_string();
        assert!(
            e.contains("train-images-idx3-ubyte") && e.contains(want),
            "{dims:?}: {e}"
        );
    }
    // Missing file.
    std::fs::remove_file(&p).unwrap();
    let e = fashion_mnist(&dir, Split::Train).unwrap_err().to_string();
    assert!(e.contains("train-images-idx3-ubyte"), "{e}");
}

#[test]
fn cifar10_batches_and_errors() {
    let (_dir_tmp, dir) = scratch("cifar");
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
}

/// CIFAR-100's binary format: coarse and fine label bytes before the pixels; the fine label is
/// the class; train.bin/test.bin directly or in cifar-100-binary/; errors name file and record.
#[test]
fn cifar100_fine_labels_and_errors() {
    let (_dir_tmp, dir) = scratch("cifar100");
    let sub = dir.join("cifar-100-binary");
    std::fs::create_dir_all(&sub).unwrap();
    let rec = |coarse: u8, fine: u8, v: u8| {
        let mut r = vec![coarse, fine];
        r.extend(std::iter::repeat_n(v, 3072));
        r
    };
    std::fs::write(
        sub.join("test.bin"),
        [rec(19, 99, 255), rec(4, 7, 0), rec(0, 42, 51)].concat(),
    )
    .unwrap();
    std::fs::write(sub.join("train.bin"), rec(1, 3, 1)).unwrap();
    let d = cifar(Cifar::Hundred, &dir, Split::Test).unwrap();
    assert_eq!((d.len(), d.channels, d.size, d.classes), (3, 3, 32, 100));
    assert_eq!(d.labels, vec![99, 7, 42]);
    assert_eq!((d.images[0], d.images[3072], d.images[2 * 3072]), (1.0, 0.0, 0.2));
    assert_eq!(cifar(Cifar::Hundred, &dir, Split::Train).unwrap().labels, vec![3]);
    robustft::engine::data::files::check("cifar100", &dir).unwrap();
    for (bytes, want) in [
        ([rec(1, 2, 0), rec(1, 100, 0)].concat(), "fine labels 0..99 (record 1)"),
        ([rec(20, 2, 0)].concat(), "coarse labels 0..19 (record 0)"),
        (rec(1, 2, 0)[..3073].to_vec(), "truncated in record 0"),
    ] {
        std::fs::write(sub.join("test.bin"), &bytes).unwrap();
        let e = cifar(Cifar::Hundred, &dir, Split::Test).unwrap_err().to_string();
        assert!(e.contains("test.bin") && e.contains(want), "{want}: {e}");
        let e = robustft::engine::data::files::check("cifar100", &dir)
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "check: {e}");
    }
}

fn write_image(path: &Path, colour: [u8; 3], w: u32, h: u32) {
    let img = image::RgbImage::from_pixel(w, h, image::Rgb(colour));
    img.save(path).unwrap();
}

/// `root/<domain>/{train,test}/<class>/{a.png,b.jpg,…}`: `per` images per class and split, a
/// uniform colour per domain (its shade) and class (its bright channel).
fn write_domains(root: &Path, per: usize) {
    for (domain, shade) in [("clipart", 200u8), ("real", 50u8), ("sketch", 120u8)] {
        for split in ["train", "test"] {
            for (class, c) in [("cat", 0usize), ("dog", 1)] {
                let dir = root.join(domain).join(split).join(class);
                std::fs::create_dir_all(&dir).unwrap();
                let mut colour = [shade; 3];
                colour[c] = 255;
                for k in 0..per {
                    let name = if k % 2 == 0 {
                        format!("{k}.png")
                    } else {
                        format!("{k}.jpg")
                    };
                    write_image(&dir.join(name), colour, 40 - 4 * (k as u32 % 3), 30);
                }
            }
        }
    }
}

/// A run config for the tiny model (BitFit, seed 0, 4 steps, PGD-2 on 8 images) with the given
/// schedule line, upstream pretraining steps and one `[[datasets]]` table's body.
fn tiny_run(schedule: &str, pretrain_steps: usize, dataset: &str) -> String {
    format!(
        r#"
name = "tiny"
model = "tiny"
strategies = ["bitfit"]
seeds = [0]
max_steps = 4
{schedule}
eval_subset = 8
batch_size = 8
optimizer = "paper"
[pretrain]
steps = {pretrain_steps}
batch_size = 8
lr = 1e-3
[attack]
kind = "pgd"
eps = 0.0039
alpha = 0.001
steps = 2
[[datasets]]
{dataset}"#
    )
}

#[test]
fn image_folders_and_domains() {
    let (_root_tmp, root) = scratch("domains");
    write_domains(&root, 2);
    let d = image_folder(&root.join("real/train"), 16).unwrap();
    assert_eq!((d.len(), d.classes, d.size, d.channels), (4, 2, 16, 3));
    assert_eq!(d.labels, vec![0, 0, 1, 1]);
    // PNG is lossless: the resized uniform image keeps its colour exactly.
    assert!((d.images[0] - 1.0).abs() < 1e-6 && (d.images[256] - 50.0 / 255.0).abs() < 1e-6);
    // The other domains' test splits, pooled in sorted order: clipart's 4, then sketch's 4.
    let ood = other_domains(&root, "real", 16).unwrap();
    assert_eq!((ood.len(), ood.classes), (8, 2));
    assert_eq!(ood.labels, vec![0, 0, 1, 1, 0, 0, 1, 1]);
    assert!((ood.images[256] - 200.0 / 255.0).abs() < 1e-6, "clipart first");
    robustft::engine::data::files::check_domains(&root, "real").unwrap();
    // An unreadable image is named, by the loader and by the check runs make first.
    std::fs::write(root.join("sketch/test/dog/broken.png"), b"not a png").unwrap();
    let e = other_domains(&root, "real", 16).unwrap_err().to_string();
    assert!(e.contains("broken.png"), "{e}");
    let e = robustft::engine::data::files::check_domains(&root, "real")
        .unwrap_err()
        .to_string();
    assert!(e.contains("broken.png"), "{e}");
    std::fs::remove_file(root.join("sketch/test/dog/broken.png")).unwrap();
    // A domain with other classes, and a missing domain, are named.
    std::fs::create_dir_all(root.join("clipart/test/bird")).unwrap();
    let e = other_domains(&root, "real", 16).unwrap_err().to_string();
    assert!(e.contains("clipart/test") && e.contains("class folders"), "{e}");
    let e = other_domains(&root, "photo", 16).unwrap_err().to_string();
    assert!(e.contains("photo"), "{e}");
}

/// A run on a DomainNet-style folder: trained and tested on `real`, OOD on the other domains'
/// test images; bad `domain`/`ood` combinations are refused naming the key.
#[test]
fn domains_run_end_to_end() {
    let (_dir_tmp, dir) = scratch("domrun");
    let root = dir.join("dn");
    write_domains(&root, 6);
    let cfg = dir.join("run.toml");
    let text = tiny_run(
        "schedule = [0, 4]",
        2,
        &format!(
            "name = \"dn\"\nkind = \"domains\"\ndomain = \"real\"\ndata_dir = \"{}\"\ntrain_images = 12\nood = \"domains\"\n",
            root.display()
        ),
    );
    std::fs::write(&cfg, &text).unwrap();
    let out = dir.join("out");
    let run = || common::validate_run(&cfg, &out);
    let o = run();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r = robustft::validate::sweep::records::read(&out.join("dn/bitfit/seed0.jsonl")).unwrap();
    assert_eq!(r.evals.len(), 2);
    for e in &r.evals {
        assert_eq!(e.n_eval, 8);
        assert_eq!(e.ood_outcomes.as_ref().map(|o| o.len()), Some(8));
        assert!(e.ood_acc.is_some());
    }
    let _ = std::fs::remove_dir_all(&out);
    for (from, to, key) in [
        ("domain = \"real\"\n", "", "datasets[0].domain"),
        ("domain = \"real\"", "domain = \"../x\"", "datasets[0].domain"),
        ("kind = \"domains\"", "kind = \"image-folder\"", "datasets[0].domain"),
    ] {
        std::fs::write(&cfg, text.replace(from, to)).unwrap();
        let o = run();
        assert_eq!(o.status.code(), Some(2), "{to}");
        let e = String::from_utf8(o.stderr).unwrap();
        assert!(e.contains(key), "{to}: {e}");
        assert!(!out.exists());
    }
    // `ood = "domains"` on another kind.
    let other = text
        .replace("kind = \"domains\"", "kind = \"image-folder\"")
        .replace("domain = \"real\"\n", "");
    std::fs::write(&cfg, other).unwrap();
    let o = run();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8(o.stderr).unwrap().contains("datasets[0].ood"));
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

/// A damaged data file is found before anything is written: `validate run` checks every file of
/// every dataset (here the test labels of `datasets[0]`, truncated) before upstream pretraining,
/// exits 2 naming the file, and creates no output folder.
#[test]
fn run_checks_every_data_file_before_writing() {
    let (_dir_tmp, dir) = scratch("runcheck");
    let data = dir.join("fm");
    std::fs::create_dir_all(&data).unwrap();
    let labels: Vec<u8> = (0..20).map(|i| (i % 10) as u8).collect();
    write_fmnist_split(&data, "train", 20, true, &labels);
    write_fmnist_split(&data, "t10k", 20, false, &labels);
    let lp = data.join("t10k-labels-idx1-ubyte");
    let bytes = std::fs::read(&lp).unwrap();
    std::fs::write(&lp, &bytes[..bytes.len() - 5]).unwrap();
    let cfg = dir.join("run.toml");
    let text = tiny_run(
        "schedule = [4]",
        200,
        &format!(
            "name = \"fm\"\nkind = \"fashion-mnist\"\ndata_dir = \"{}\"\ntrain_images = 20\n",
            data.display()
        ),
    );
    std::fs::write(&cfg, text).unwrap();
    let out = dir.join("out");
    let o = common::validate_run(&cfg, &out);
    assert_eq!(o.status.code(), Some(2));
    let e = String::from_utf8(o.stderr).unwrap();
    assert!(e.contains("t10k-labels-idx1-ubyte") && e.contains("truncated"), "{e}");
    assert!(!out.exists(), "wrote before checking the data");
    // tune and tasks make the same checks first (validate::check_inputs): exit 2, nothing written.
    for job in ["tune", "tasks"] {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_validate"))
            .args([
                job,
                "--quiet",
                "--config",
                cfg.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{job}");
        let e = String::from_utf8(o.stderr).unwrap();
        assert!(e.contains("t10k-labels-idx1-ubyte"), "{job}: {e}");
        assert!(!out.exists(), "{job} wrote before checking the data");
    }
    // The same check, called directly, passes on intact files and names the file otherwise.
    std::fs::write(&lp, &bytes).unwrap();
    robustft::engine::data::files::check("fashion-mnist", &data).unwrap();
    std::fs::write(&lp, &bytes[..9]).unwrap();
    let e = robustft::engine::data::files::check("fashion-mnist", &data)
        .unwrap_err()
        .to_string();
    assert!(e.contains("t10k-labels-idx1-ubyte"), "{e}");
    // Sizes larger than the data: the run uses what there is and says so, on the console and in
    // every record header (20 training and 20 test images; 100 and 64 asked for).
    std::fs::write(&lp, &bytes).unwrap();
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        text.replace("train_images = 20", "train_images = 100")
            .replace("eval_subset = 8", "eval_subset = 64")
            .replace("steps = 200", "steps = 2"),
    )
    .unwrap();
    let o = common::validate_run(&cfg, &out);
    let e = String::from_utf8(o.stderr).unwrap();
    assert!(o.status.success(), "{e}");
    let want = [
        "datasets[0].train_images = 100 but its classes hold 20 training images: using 20",
        "eval_subset = 64 but fm's classes hold 20 test images: evaluating on 20",
    ];
    for w in want {
        assert_eq!(e.matches(&format!("note: {w}")).count(), 1, "{e}");
    }
    let r = robustft::validate::sweep::records::read(&out.join("fm/bitfit/seed0.jsonl")).unwrap();
    assert_eq!(r.header.capped, want);
    // A file dataset without theory_d: its class count (10).
    assert_eq!(r.header.theory_d, Some(10.0));
    assert_eq!(r.evals[0].n_eval, 20);
}
