//! The `simulate` and `validate` binaries as a user runs them.

use std::path::PathBuf;
use std::process::{Command, Output};

use robustft::simulate::{bound_answer, eval_answer};

fn simulate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_simulate"))
        .args(args)
        .output()
        .expect("run simulate")
}

/// `simulate` with a command line split on whitespace (for arguments without spaces).
fn simulate_line(line: &str) -> Output {
    simulate(&line.split_whitespace().collect::<Vec<_>>())
}

fn json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    assert_eq!(text.trim().lines().count(), 1, "one JSON object on one line: {text}");
    serde_json::from_str(&text).expect("valid JSON")
}

/// A scratch folder path `<tmp>/robustft-cli-<name>-XXXXXX/<name>`, not yet created, and the
/// guard of its parent: dropping the guard removes both, however the test ends. Keep the guard
/// bound while the folder is in use.
fn scratch(name: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::Builder::new()
        .prefix(&format!("robustft-cli-{name}-"))
        .tempdir()
        .unwrap();
    let dir = tmp.path().join(name);
    (tmp, dir)
}

#[test]
fn bound_matches_library() {
    let v = json(&simulate(&["bound", "--k", "1179648", "--d", "768"]));
    let lib = bound_answer(1_179_648.0, 768.0, 0.99).unwrap();
    assert_eq!(v["eta_min"].as_f64().unwrap(), lib.eta_min);
    assert_eq!(v["z"].as_f64().unwrap(), lib.z);
    assert_eq!(v["target_acc"].as_f64().unwrap(), 0.99);
    assert_eq!(v["k"].as_f64().unwrap(), 1_179_648.0);
    let v = json(&simulate(&["bound", "--k", "0", "--d", "100", "--target-acc", "0.9"]));
    assert!((v["eta_min"].as_f64().unwrap() - 1.281_551_565_544_600_5 / 10.0).abs() < 1e-12);
}

#[test]
fn eval_matches_library_and_uniform_shorthand() {
    let v = json(&simulate_line(
        "eval --p 0.9 --eta 0.1 --eps 0.25 --weights 0.5,0.2,-0.1,0.3 --bias -0.05",
    ));
    let lib = eval_answer(0.9, 0.1, 0.25, &[0.5, 0.2, -0.1, 0.3], -0.05).unwrap();
    assert_eq!(v["clean_acc"].as_f64().unwrap(), lib.clean_acc);
    assert_eq!(v["robust_acc"].as_f64().unwrap(), lib.robust_acc);
    assert_eq!(v["tsipras_bound"].as_f64().unwrap(), lib.tsipras_bound.unwrap());
    // ε < 2η: no bound, null.
    let v = json(&simulate_line(
        "eval --p 0.9 --eta 0.1 --eps 0.05 --weights 0 --uniform 16:0.0625",
    ));
    assert!(v["tsipras_bound"].is_null());
    // Uniform-16, a = 0: clean Φ(η·4), robust Φ((η−ε)·4).
    let phi = robustft::theory::phi;
    assert!((v["clean_acc"].as_f64().unwrap() - phi(0.4)).abs() < 1e-14);
    assert!((v["robust_acc"].as_f64().unwrap() - phi(0.2)).abs() < 1e-14);
    // Issue 14: the answer does not depend on the weights' scale (1e200 gave 0.5/0.5, 1e-200
    // gave 0.9/0.9, 1e308 gave null), and --uniform needs no memory per feature (10^10 features).
    let at = |w: &str| {
        let v = json(&simulate_line(&format!(
            "eval --p 0.9 --eta 0.5 --eps 0.3 --weights {w}"
        )));
        (v["clean_acc"].as_f64().unwrap(), v["robust_acc"].as_f64().unwrap())
    };
    let one = at("1,1");
    for w in ["1e200,1e200", "1e-200,1e-200", "1e308,1e308", "1e-310,1e-310"] {
        let got = at(w);
        assert!(
            (got.0 - one.0).abs() < 1e-12 && (got.1 - one.1).abs() < 1e-12,
            "{w}: {got:?} vs {one:?}"
        );
    }
    let v = json(&simulate_line(
        "eval --p 0.9 --eta 0.00001 --eps 0.000005 --weights 0 --uniform 10000000000:0.1",
    ));
    assert!((v["clean_acc"].as_f64().unwrap() - phi(1.0)).abs() < 1e-12, "{v}");
    assert!((v["robust_acc"].as_f64().unwrap() - phi(0.5)).abs() < 1e-12, "{v}");
    // The bound at the top of the range: z/√(2e308), not 0.
    let v = json(&simulate(&["bound", "--k", "1e308", "--d", "1e308"]));
    let want = robustft::theory::z_score(0.99).unwrap() / 2f64.sqrt() / 1e154;
    assert!((v["eta_min"].as_f64().unwrap() / want - 1.0).abs() < 1e-12, "{v}");
}

#[test]
fn bad_flags_exit_2_with_one_line_naming_the_flag() {
    // Each case: the command line (no argument contains a space) and the flag the error must name.
    let cases: &[(&str, &str)] = &[
        ("bound --k -1 --d 3", "--k"),
        ("bound --k 1 --d 0", "--d"),
        ("bound --k 1 --d 3 --target-acc 1.5", "--target-acc"),
        ("bound --k x --d 3", "--k"),
        ("bound --d 3", "--k"),
        ("eval --p 1.2 --eta 0.1 --eps 0.1 --weights 1,1", "--p"),
        ("eval --p 0.9 --eta 0 --eps 0.1 --weights 1,1", "--eta"),
        ("eval --p 0.9 --eta 0.1 --eps -0.1 --weights 1,1", "--eps"),
        ("eval --p 0.9 --eta 0.1 --eps 0.1 --weights 1,nan", "--weights"),
        (
            "eval --p 0.9 --eta 0.1 --eps 0.1 --weights 1 --uniform 0:1",
            "--uniform",
        ),
        ("--bogus", "--bogus"),
    ];
    for (args, flag) in cases {
        let out = simulate_line(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(flag), "{args:?} should name {flag}: {err}");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn full_run_writes_every_figure() {
    let (_dir_tmp, dir) = scratch("run");
    let out = simulate(&["--out", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stems = [
        "eta_min_heatmap",
        "bound_vs_k",
        "robust_at_matched_accuracy",
        "tradeoff_frontiers",
        "montecarlo_check",
        "theorem_2_1",
        "strategy_prediction",
    ];
    for stem in stems {
        for ext in ["png", "svg", "csv"] {
            let p = dir.join(format!("{stem}.{ext}"));
            let len = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
            assert!(len > 100, "{} missing or empty", p.display());
        }
        let png = std::fs::read(dir.join(format!("{stem}.png"))).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    }
    let sweep = std::fs::read_to_string(dir.join("bound_sweep.csv")).unwrap();
    let mut lines = sweep.lines();
    assert_eq!(lines.next(), Some("k,d,target_acc,eta_min"));
    let rows: Vec<Vec<f64>> = lines
        .map(|l| l.split(',').map(|x| x.parse().unwrap()).collect())
        .collect();
    assert_eq!(rows.len(), 100 * 100);
    for r in &rows {
        assert!((r[3] - robustft::theory::eta_min(r[0], r[1], r[2]).unwrap()).abs() < 1e-15);
    }
    // No temp files left behind.
    for e in std::fs::read_dir(&dir).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        assert!(!name.contains(".tmp"), "left {name}");
    }
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("Predicted ranking"), "{stdout}");
    // Same seed, same numbers.
    let (_dir2_tmp, dir2) = scratch("run2");
    assert!(simulate(&["--out", dir2.to_str().unwrap()]).status.success());
    for stem in stems {
        let a = std::fs::read(dir.join(format!("{stem}.csv"))).unwrap();
        let b = std::fs::read(dir2.join(format!("{stem}.csv"))).unwrap();
        assert_eq!(a, b, "{stem}.csv differs between two runs");
    }
}

#[test]
fn bad_config_writes_nothing() {
    let (_dir_tmp, dir) = scratch("bad");
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("bad.toml");
    let text = robustft::simulate::config::DEFAULT_TOML.replacen("p = 0.9", "p = 1.3", 1);
    std::fs::write(&cfg, text).unwrap();
    let out_dir = dir.join("out");
    let out = simulate(&["--config", cfg.to_str().unwrap(), "--out", out_dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("frontier.p") && err.contains("bad.toml"), "{err}");
    assert!(!out_dir.exists(), "nothing may be written on bad input");
    // Issue 14: sizes the machine cannot hold or finish are refused before the first file,
    // the error naming the key and the bound's reason.
    let default = robustft::simulate::config::DEFAULT_TOML;
    for (from, to, key) in [
        ("grid = 100", "grid = 1000000000", "bound.grid"),
        ("samples = 40000", "samples = 100000000000", "montecarlo.samples"),
        (
            "classifiers = 3000",
            "classifiers = 100000000000",
            "theorem.classifiers",
        ),
        ("lambdas = 201", "lambdas = 1000000000", "frontier.lambdas"),
        ("dim = 50", "dim = 100000000", "montecarlo.dim"),
    ] {
        assert!(default.contains(from), "{from}");
        std::fs::write(&cfg, default.replacen(from, to, 1)).unwrap();
        let out = simulate(&["--config", cfg.to_str().unwrap(), "--out", out_dir.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{to}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.contains(key) && err.contains("must be <="), "{to}: {err}");
        assert!(!out_dir.exists(), "{to}: nothing may be written on bad input");
    }
    // `--out` naming a file: bad input, exit 2 from both jobs (was 1 for one and 2 for the other).
    let file = dir.join("a-file");
    std::fs::write(&file, "keep").unwrap();
    for args in [vec!["--out"], vec!["dynamics", "--out"]] {
        let mut args = args.clone();
        args.push(file.to_str().unwrap());
        let out = simulate(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(String::from_utf8(out.stderr).unwrap().contains("`--out`"), "{args:?}");
    }
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep");
    // Truncated file: a parse error naming the file.
    std::fs::write(&cfg, "[bound]\ntarget_acc = ").unwrap();
    let out = simulate(&["--config", cfg.to_str().unwrap(), "--out", out_dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8(out.stderr).unwrap().contains("bad.toml"));
    // Missing file.
    let out = simulate(&["--config", dir.join("nope.toml").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8(out.stderr).unwrap().contains("nope.toml"));
    assert!(!out_dir.exists());
}
