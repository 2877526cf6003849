//! Reading a Rust source tree as text, for `tests/layout.rs`: functions and their lengths, and
//! the graph of which module uses which.

use std::collections::{BTreeMap, BTreeSet};

/// A module path below `src/` (`["validate", "sweep", "plan"]`; the crate root is empty).
pub type Module = Vec<String>;

/// Each line with comments, string contents and char literals removed (block comments and
/// strings may span lines), as `shared/tools/size_census.py` does.
pub fn strip(lines: &[String]) -> Vec<String> {
    let (mut block, mut string) = (false, false);
    let mut out = Vec::with_capacity(lines.len());
    for line in lines {
        let c: Vec<char> = line.chars().collect();
        let mut s = String::new();
        let mut i = 0;
        while i < c.len() {
            let at = |k: usize, t: &str| c[k..].iter().take(t.len()).copied().eq(t.chars());
            if block {
                if at(i, "*/") {
                    block = false;
                    i += 2;
                } else {
                    i += 1;
                }
            } else if string {
                match c[i] {
                    '\\' => i += 2,
                    '"' => {
                        string = false;
                        i += 1
                    }
                    _ => i += 1,
                }
            } else if at(i, "//") {
                break;
            } else if at(i, "/*") {
                block = true;
                i += 2;
            } else if c[i] == '"' {
                string = true;
                i += 1;
            } else if let Some(end) = char_literal_end(&c, i) {
                i = end;
            } else {
                s.push(c[i]);
                i += 1;
            }
        }
        out.push(s);
    }
    out
}

/// The index after a char literal starting at `i` (`'x'`, `'\n'`, `'\u{..}'`), if one does.
fn char_literal_end(c: &[char], i: usize) -> Option<usize> {
    if c[i] != '\'' || i + 2 >= c.len() {
        return None;
    }
    if c[i + 2] == '\'' {
        return Some(i + 3);
    }
    if c[i + 1] == '\\' {
        let close = c[i + 3..].iter().take(8).position(|&x| x == '\'')?;
        return Some(i + 3 + close + 1);
    }
    None
}

/// The name of the function a line declares (`pub(crate) const unsafe fn name…`), if it does.
fn declared_fn(line: &str) -> Option<String> {
    let mut rest = line.trim_start();
    if let Some(r) = rest.strip_prefix("pub") {
        rest = r.trim_start();
        if rest.starts_with('(') {
            rest = rest[rest.find(')')? + 1..].trim_start();
        } else if !line.trim_start()[3..].starts_with(char::is_whitespace) {
            return None;
        }
    }
    for kw in ["const ", "async ", "unsafe ", "extern \"C\" "] {
        if let Some(r) = rest.strip_prefix(kw) {
            rest = r.trim_start();
        }
    }
    let name: String = rest
        .strip_prefix("fn ")?
        .trim_start()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    (!name.is_empty()).then_some(name)
}

/// Every function with a body: (name, first line, lines from signature to closing brace).
pub fn functions(text: &str) -> Vec<(String, usize, usize)> {
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    let clean = strip(&lines);
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(name) = declared_fn(line) else { continue };
        let (mut depth, mut opened) = (0i64, false);
        'lines: for (j, l) in clean.iter().enumerate().skip(i) {
            for ch in l.chars() {
                match ch {
                    '{' => {
                        depth += 1;
                        opened = true
                    }
                    '}' => depth -= 1,
                    ';' if !opened && depth == 0 => break 'lines,
                    _ => {}
                }
            }
            if opened && depth == 0 {
                out.push((name, i + 1, j - i + 1));
                break;
            }
        }
    }
    out
}

/// The module a file under `src/` is (`a/b/mod.rs` and `a/b.rs` are `a::b`; `lib.rs` the root);
/// binaries (`bin/`) are not modules of the library.
fn module_of(rel: &str) -> Option<Module> {
    if rel.starts_with("bin/") {
        return None;
    }
    let mut parts: Vec<String> = rel.trim_end_matches(".rs").split('/').map(str::to_string).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    Some(parts)
}

/// Paths a file's code names: `use` trees expanded, and every `crate::…`, `super::…`,
/// `self::…` path; a unit-test module at the end of a file is left out.
fn named_paths(text: &str) -> Vec<Vec<String>> {
    let text = text.split("#[cfg(test)]\nmod tests").next().unwrap_or(text);
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    let code = strip(&lines).join("\n");
    let mut out = Vec::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("use ") {
        let before = rest[..at].chars().last();
        let tail = &rest[at + 4..];
        rest = tail;
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let Some(end) = tail.find(';') else { break };
        let tree: String = tail[..end].chars().filter(|c| !c.is_whitespace()).collect();
        expand(&[], &tree, &mut out);
    }
    for w in code.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')) {
        if w.starts_with("crate::") || w.starts_with("super::") || w.starts_with("self::") {
            out.push(w.split("::").filter(|s| !s.is_empty()).map(str::to_string).collect());
        }
    }
    out
}

/// `a::{b, c::{d}}` → `a::b`, `a::c::d` (with `prefix` in front).
fn expand(prefix: &[String], tree: &str, out: &mut Vec<Vec<String>>) {
    if let Some(open) = tree.find("::{").filter(|_| tree.ends_with('}')) {
        let mut p = prefix.to_vec();
        p.extend(tree[..open].split("::").map(str::to_string));
        let inner = &tree[open + 3..tree.len() - 1];
        let (mut depth, mut start) = (0, 0);
        for (i, ch) in inner.char_indices() {
            match ch {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand(&p, &inner[start..i], out);
                    start = i + 1;
                }
                _ => {}
            }
        }
        expand(&p, &inner[start..], out);
    } else if !tree.is_empty() {
        let mut p = prefix.to_vec();
        p.extend(
            tree.split(" as ")
                .next()
                .unwrap_or(tree)
                .split("::")
                .map(str::to_string),
        );
        out.push(p);
    }
}

/// The module a path names from module `cur` (the longest prefix that is a module), for paths
/// from `crate`, `super`, `self`, or a child module named bare.
fn resolve(cur: &Module, path: &[String], modules: &BTreeSet<Module>) -> Option<Module> {
    let (mut base, mut segs) = match path.first().map(String::as_str) {
        Some("crate") => (Vec::new(), &path[1..]),
        Some("super" | "self") => (cur.clone(), path),
        Some(first) => {
            let mut child = cur.clone();
            child.push(first.to_string());
            if !modules.contains(&child) {
                return None;
            }
            (cur.clone(), path)
        }
        None => return None,
    };
    while let Some(s) = segs
        .first()
        .map(String::as_str)
        .filter(|s| *s == "super" || *s == "self")
    {
        if s == "super" {
            base.pop();
        }
        segs = &segs[1..];
    }
    let mut best = None;
    for i in 0..=segs.len() {
        let mut m = base.clone();
        m.extend(segs[..i].iter().cloned());
        if modules.contains(&m) {
            best = Some(m);
        }
    }
    best
}

/// Which module uses which (files as `(path below src/, text)`). A module's own submodule
/// declarations and re-exports (`pub use child::X`) are not uses; a module never uses itself,
/// and uses between a module and the modules inside it (a folder and its files, either way) are
/// that folder's own business and left out: a circle is between modules side by side.
pub fn module_graph(files: &[(String, String)]) -> BTreeMap<Module, BTreeSet<Module>> {
    let modules: BTreeSet<Module> = files.iter().filter_map(|(r, _)| module_of(r)).collect();
    let mut graph = BTreeMap::new();
    for (rel, text) in files {
        let Some(m) = module_of(rel) else { continue };
        let code: String = text
            .lines()
            .filter(|l| !(l.trim_start().starts_with("pub use ") || l.trim_start().starts_with("pub(crate) use ")))
            .collect::<Vec<_>>()
            .join("\n");
        let uses: BTreeSet<Module> = named_paths(&code)
            .iter()
            .filter_map(|p| resolve(&m, p, &modules))
            .filter(|t| !t.is_empty() && !t.starts_with(&m) && !m.starts_with(t))
            .collect();
        graph.insert(m, uses);
    }
    graph
}

/// The strongly connected components of more than one module (Tarjan).
pub fn circles(graph: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<BTreeSet<Module>> {
    struct T<'a> {
        g: &'a BTreeMap<Module, BTreeSet<Module>>,
        index: BTreeMap<&'a Module, usize>,
        low: BTreeMap<&'a Module, usize>,
        stack: Vec<&'a Module>,
        out: Vec<BTreeSet<Module>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a Module) {
        let n = t.index.len();
        t.index.insert(v, n);
        t.low.insert(v, n);
        t.stack.push(v);
        for w in t.g.get(v).into_iter().flatten() {
            if !t.g.contains_key(w) {
                continue;
            }
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                t.low.entry(v).and_modify(|l| *l = (*l).min(lw));
            } else if t.stack.contains(&w) {
                let iw = t.index[w];
                t.low.entry(v).and_modify(|l| *l = (*l).min(iw));
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = BTreeSet::new();
            while let Some(w) = t.stack.pop() {
                comp.insert(w.clone());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                t.out.push(comp);
            }
        }
    }
    let mut t = T {
        g: graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !t.index.contains_key(v) {
            visit(&mut t, v);
        }
    }
    t.out
}
