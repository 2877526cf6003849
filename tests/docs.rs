//! The front door and the guide cannot drift from the program (issue 38): every command they
//! show is run here.
//!
//! - A ```` ```console ```` block is run as shown (`$ validate …` or `$ simulate …`, the lines
//!   after it its output, stdout then stderr, `? N` its exit status when not 0), and its output
//!   is matched with snapbox (`[..]` stands for any text within a line, a line `...` for any
//!   lines; trailing blank lines are not compared). Each runs in a fresh folder that links the
//!   repository's `validation/`, `tests/` and `simulations/`, so a command reads the committed
//!   files and anything it writes is thrown away.
//! - Every `validate` and `simulate` command in a ```` ```sh ```` block (the long runs a reader
//!   starts: `cargo run --release --bin validate -- …`) is handed to the binary's own parser
//!   with `--help` appended: a removed command or flag, a misspelt one or a value outside a list
//!   fails here. The runs themselves are what the other tests run, on the smoke configuration.
//! - Every relative link and image in README.md and the guide resolves, and so does its
//!   `#anchor` (a heading of the target, as GitHub and mdBook write slugs).

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and every chapter of the guide.
fn documents() -> Vec<PathBuf> {
    let mut docs = vec![root().join("README.md")];
    let mut chapters: Vec<PathBuf> = std::fs::read_dir(root().join("docs/src"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    chapters.sort();
    docs.extend(chapters);
    docs
}

/// A fenced block: its info string, first line number and lines.
struct Block {
    info: String,
    line: usize,
    lines: Vec<String>,
}

fn blocks(text: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut open: Option<Block> = None;
    for (i, l) in text.lines().enumerate() {
        match (&mut open, l.trim_start().strip_prefix("```")) {
            (None, Some(info)) => {
                open = Some(Block {
                    info: info.trim().to_string(),
                    line: i + 2,
                    lines: Vec::new(),
                })
            }
            (Some(_), Some(_)) => out.push(open.take().expect("open")),
            (Some(b), None) => b.lines.push(l.to_string()),
            (None, None) => {}
        }
    }
    assert!(open.is_none(), "a fenced block is never closed");
    out
}

/// Splits a command line into words (single and double quotes group).
fn words(line: &str) -> Vec<String> {
    let (mut out, mut cur, mut quote, mut any) = (Vec::new(), String::new(), None, false);
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                any = true
            }
            (None, c) if c.is_whitespace() => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                any = false;
            }
            (None, c) => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The binary a word names.
fn binary(name: &str) -> Option<&'static str> {
    match name {
        "validate" => Some(env!("CARGO_BIN_EXE_validate")),
        "simulate" => Some(env!("CARGO_BIN_EXE_simulate")),
        _ => None,
    }
}

/// A fresh folder that sees the repository's committed inputs.
fn sandbox() -> tempfile::TempDir {
    let dir = tempfile::Builder::new().prefix("robustft-docs-").tempdir().unwrap();
    for name in ["validation", "tests", "simulations"] {
        std::os::unix::fs::symlink(root().join(name), dir.path().join(name)).unwrap();
    }
    dir
}

/// One shown command: where, the words, the exit status and the output it shows.
struct Shown {
    place: String,
    argv: Vec<String>,
    status: i32,
    output: String,
}

fn console_commands(doc: &Path) -> Vec<Shown> {
    let text = std::fs::read_to_string(doc).unwrap();
    let name = doc.strip_prefix(root()).unwrap().display().to_string();
    let mut out: Vec<Shown> = Vec::new();
    for b in blocks(&text).into_iter().filter(|b| b.info == "console") {
        for (k, l) in b.lines.iter().enumerate() {
            if let Some(cmd) = l.strip_prefix("$ ") {
                out.push(Shown {
                    place: format!("{name}:{}", b.line + k),
                    argv: words(cmd),
                    status: 0,
                    output: String::new(),
                });
            } else if let (Some(s), Some(c)) = (out.last_mut(), l.strip_prefix("? ")) {
                s.status = c
                    .trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("{name}: `? {c}` is not an exit code"));
            } else if let Some(s) = out.last_mut() {
                s.output += l;
                s.output.push('\n');
            } else {
                panic!("{name}:{}: a console block starts with `$ command`", b.line + k);
            }
        }
    }
    out
}

#[test]
fn console_blocks_print_what_they_show() {
    let mut failures = Vec::new();
    let mut ran = 0;
    for doc in documents() {
        for s in console_commands(&doc) {
            let bin = binary(&s.argv[0]).unwrap_or_else(|| panic!("{}: runs only validate or simulate", s.place));
            let dir = sandbox();
            let o = std::process::Command::new(bin)
                .args(&s.argv[1..])
                .current_dir(dir.path())
                .output()
                .unwrap();
            ran += 1;
            let mut actual = String::from_utf8_lossy(&o.stdout).into_owned();
            actual += &String::from_utf8_lossy(&o.stderr);
            let code = o.status.code().unwrap_or(-1);
            let (actual, expected) = (actual.trim_end().to_string(), s.output.trim_end().to_string());
            let same = snapbox::Assert::new().try_eq(None, actual.clone().into(), expected.into());
            if code != s.status || same.is_err() {
                failures.push(format!(
                    "{} `{}`: exit {code} (shown {}); it prints:\n{actual}\n{}",
                    s.place,
                    s.argv.join(" "),
                    s.status,
                    same.err().map(|e| e.to_string()).unwrap_or_default()
                ));
            }
        }
    }
    assert!(
        ran >= 6,
        "only {ran} console commands found: a block lost its `console` tag?"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The `validate`/`simulate` commands of a sh block (a trailing `\` continues a line; `#`
/// starts a comment), as (line, words after the binary's name).
fn sh_commands(b: &Block) -> Vec<(usize, &'static str, Vec<String>)> {
    let mut out = Vec::new();
    let mut pending = String::new();
    for (k, l) in b.lines.iter().enumerate() {
        let l = l.split(" #").next().unwrap_or("").trim();
        if let Some(head) = l.strip_suffix('\\') {
            pending += head;
            pending.push(' ');
            continue;
        }
        let line = std::mem::take(&mut pending) + l;
        let w = words(&line);
        let (bin, rest) = match w.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
            ["cargo", "run", "--release", "--bin", name, rest @ ..] => (*name, rest.to_vec()),
            [name @ ("validate" | "simulate"), rest @ ..] => (*name, rest.to_vec()),
            _ => continue,
        };
        let rest: Vec<String> = rest.iter().skip_while(|x| **x == "--").map(|x| x.to_string()).collect();
        let bin = binary(bin).unwrap_or_else(|| panic!("line {}: unknown binary {bin}", b.line + k));
        out.push((b.line + k, bin, rest));
    }
    out
}

#[test]
fn sh_commands_parse() {
    let mut failures = Vec::new();
    let mut parsed = 0;
    for doc in documents() {
        let text = std::fs::read_to_string(&doc).unwrap();
        let name = doc.strip_prefix(root()).unwrap().display().to_string();
        for b in blocks(&text).iter().filter(|b| b.info == "sh") {
            for (line, bin, args) in sh_commands(b) {
                let dir = sandbox();
                let o = std::process::Command::new(bin)
                    .args(&args)
                    .arg("--help")
                    .current_dir(dir.path())
                    .output()
                    .unwrap();
                parsed += 1;
                if !o.status.success() {
                    failures.push(format!(
                        "{name}:{line} `{}`: {}",
                        args.join(" "),
                        String::from_utf8_lossy(&o.stderr).trim()
                    ));
                }
            }
        }
    }
    assert!(parsed >= 30, "only {parsed} commands found in sh blocks");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The check fails on what it should: a removed flag does not parse.
#[test]
fn a_removed_form_fails_to_parse() {
    let b = Block {
        info: "sh".into(),
        line: 1,
        lines: vec!["cargo run --release --bin validate -- run --preset smoke --no-such-flag  # x".into()],
    };
    let cmds = sh_commands(&b);
    assert_eq!(cmds.len(), 1);
    let o = std::process::Command::new(cmds[0].1)
        .args(&cmds[0].2)
        .arg("--help")
        .output()
        .unwrap();
    assert!(!o.status.success());
}

/// GitHub's and mdBook's heading anchors: lower case, spaces to `-`, other punctuation dropped.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

fn anchors(doc: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(doc).unwrap_or_default();
    let fenced: Vec<usize> = blocks(&text)
        .iter()
        .flat_map(|b| b.line - 1..b.line + b.lines.len())
        .collect();
    text.lines()
        .enumerate()
        .filter(|(i, l)| l.starts_with('#') && !fenced.contains(&(i + 1)))
        .map(|(_, l)| slug(l.trim_start_matches('#').replace('`', "").as_str()))
        .collect()
}

/// Every `](target)` of a document outside code.
fn links(text: &str) -> Vec<String> {
    let mut in_code = false;
    let mut out = Vec::new();
    for l in text.lines() {
        if l.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        let mut rest = l;
        while let Some(i) = rest.find("](") {
            let tail = &rest[i + 2..];
            let end = tail.find(')').unwrap_or(tail.len());
            out.push(tail[..end].split_whitespace().next().unwrap_or("").to_string());
            rest = &tail[end..];
        }
    }
    out
}

#[test]
fn links_resolve() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for doc in documents() {
        let text = std::fs::read_to_string(&doc).unwrap();
        for target in links(&text) {
            if target.contains("://") || target.starts_with("mailto:") || target.is_empty() {
                continue;
            }
            checked += 1;
            let (path, anchor) = target.split_once('#').unwrap_or((&target, ""));
            let file = if path.is_empty() {
                doc.clone()
            } else {
                doc.parent().unwrap().join(path)
            };
            if !file.exists() {
                broken.push(format!("{}: {target} (no such file)", doc.display()));
            } else if !anchor.is_empty()
                && file.extension().is_some_and(|x| x == "md")
                && !anchors(&file).contains(&anchor.to_string())
            {
                broken.push(format!("{}: {target} (no such heading)", doc.display()));
            }
        }
    }
    assert!(checked >= 20, "only {checked} links found");
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}

/// The link check fails on what it should.
#[test]
fn a_broken_link_or_anchor_is_found() {
    assert_eq!(
        links("see [x](a.md#b) and ![y](p.png)\n```\n[z](no.md)\n```\n"),
        ["a.md#b", "p.png"]
    );
    assert_eq!(
        slug("The evidence experiment: `paper-cpu`".replace('`', "").as_str()),
        "the-evidence-experiment-paper-cpu"
    );
    assert!(!anchors(&root().join("README.md")).contains(&"no-such-heading".to_string()));
}
