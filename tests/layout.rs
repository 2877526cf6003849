//! The shape of the source tree, checked (issue 38): every file in `src/` is at most 500 lines and
//! every function at most 80 (signature to closing brace, tests included, as
//! `shared/tools/size_census.py` counts), and the modules' imports form no circle. Clippy's
//! `too_many_lines` (clippy.toml, denied in Cargo.toml) checks functions by its own count in
//! every target; this test is the line count the project's sizes are stated in.

#[path = "common/layout.rs"]
mod layout;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use layout::{Module, circles, functions, module_graph, strip};

const FILE_MAX: usize = 500;
const FN_MAX: usize = 80;

/// Files allowed past [`FILE_MAX`], each with its reason. None today.
const FILE_EXCEPTIONS: &[(&str, &str)] = &[];

/// Functions allowed past [`FN_MAX`] (`path:name`), each with its reason. None today.
const FN_EXCEPTIONS: &[(&str, &str)] = &[];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn sources() -> Vec<(String, String)> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(src()).unwrap().to_string_lossy().into_owned();
            (rel, std::fs::read_to_string(&p).unwrap())
        })
        .collect()
}

#[test]
fn files_and_functions_keep_their_sizes() {
    let mut big = Vec::new();
    let mut long = Vec::new();
    for (rel, text) in sources() {
        let lines = text.lines().count();
        if lines > FILE_MAX && !FILE_EXCEPTIONS.iter().any(|(f, _)| *f == rel) {
            big.push(format!("{rel}: {lines} lines"));
        }
        for (name, start, len) in functions(&text) {
            let key = format!("{rel}:{name}");
            if len > FN_MAX && !FN_EXCEPTIONS.iter().any(|(f, _)| *f == key) {
                long.push(format!("{rel}:{start} {name}: {len} lines"));
            }
        }
    }
    assert!(
        big.is_empty() && long.is_empty(),
        "files over {FILE_MAX} lines: {big:#?}\nfunctions over {FN_MAX} lines: {long:#?}"
    );
}

/// The census counts what it should: a function's lines from signature to closing brace, braces
/// in strings, chars and comments ignored, declarations without a body skipped.
#[test]
fn the_census_counts_functions_as_the_shared_tool_does() {
    let text = "pub(crate) fn a() {\n    let s = \"}\";\n    let c = '{';\n    // }\n}\nfn b();\nasync fn c(x: u8)\n    -> u8 {\n    x\n}\n";
    assert_eq!(functions(text), vec![("a".to_string(), 1, 5), ("c".to_string(), 7, 4)]);
    assert_eq!(strip(&["let s = \"a // b\"; // c".to_string()])[0], "let s = ; ");
}

#[test]
fn no_module_imports_form_a_circle() {
    let graph = module_graph(&sources());
    let found: Vec<Vec<String>> = circles(&graph)
        .iter()
        .map(|c| {
            c.iter()
                .flat_map(|a| {
                    graph[a]
                        .iter()
                        .filter(|b| c.contains(*b))
                        .map(move |b| format!("{} → {}", a.join("/"), b.join("/")))
                })
                .collect()
        })
        .collect();
    assert!(
        found.is_empty(),
        "import circles (each: the uses inside it): {found:#?}"
    );
}

/// The check sees a circle when there is one: two modules that use each other.
#[test]
fn a_circle_is_found() {
    let files = vec![
        ("a.rs".to_string(), "use crate::b::f;\npub fn g() {}\n".to_string()),
        ("b.rs".to_string(), "pub fn f() { crate::a::g() }\n".to_string()),
        ("c/mod.rs".to_string(), "pub mod d;\nuse d::h;\n".to_string()),
        ("c/d.rs".to_string(), "pub fn h() {}\n".to_string()),
    ];
    let graph = module_graph(&files);
    let found: Vec<BTreeSet<Module>> = circles(&graph);
    assert_eq!(found.len(), 1, "{graph:?}");
    assert_eq!(found[0], BTreeSet::from([vec!["a".to_string()], vec!["b".to_string()]]));
    let _: &BTreeMap<Module, BTreeSet<Module>> = &graph;
}

/// The layers point one way (shared/DESIGN.md): `theory` and `tradeoff` import neither candle
/// nor the engine, the validation engine nor the jobs; `engine` imports no job and no plotting;
/// `simulate` (the theory's job) imports nothing of the validation engine and of the engine only
/// the strategy registry (`engine::peft`: the strategies it runs the theory for). (`validate`
/// may call the theory job's prediction, `simulate::dynamics::predicted_auc`, for its theory
/// columns.)
#[test]
fn layers_point_one_way() {
    let graph = module_graph(&sources());
    let forbidden: [(&str, &[&str]); 4] = [
        ("theory", &["engine", "validate", "simulate", "plot"]),
        ("tradeoff", &["engine", "validate", "simulate", "plot"]),
        ("engine", &["validate", "simulate", "plot"]),
        ("simulate", &["engine", "validate"]),
    ];
    let mut bad = Vec::new();
    for (from, to) in graph.iter().flat_map(|(a, bs)| bs.iter().map(move |b| (a, b))) {
        let registry = to.len() >= 2 && to[0] == "engine" && to[1] == "peft";
        for (layer, not) in &forbidden {
            let allowed = *layer == "simulate" && registry;
            if !allowed
                && from.first().is_some_and(|f| f == layer)
                && to.first().is_some_and(|t| not.contains(&t.as_str()))
            {
                bad.push(format!("{} → {}", from.join("/"), to.join("/")));
            }
        }
    }
    for (rel, text) in sources() {
        let names_candle = text.lines().any(|l| {
            let l = l.trim_start();
            !l.starts_with("//") && (l.contains("candle_core") || l.contains("candle_nn"))
        });
        if (rel.starts_with("theory/") || rel.starts_with("tradeoff/")) && names_candle {
            bad.push(format!("{rel} names candle"));
        }
    }
    assert!(bad.is_empty(), "imports against the layers: {bad:#?}");
}
