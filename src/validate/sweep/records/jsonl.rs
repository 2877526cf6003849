//! Reading and writing run files: JSONL rendering and parsing (schema checks, the schema 1
//! upgrade, domain and step-order checks per eval record), one file, a run folder, atomic writes.

use std::path::{Path, PathBuf};

use crate::engine::peft::Strategy;
use crate::error::{Error, Result};
use crate::validate::sweep::records::{EvalRecord, Header, READABLE, RunRecords};

/// Renders records as JSONL text.
pub fn render(rec: &RunRecords) -> String {
    let mut s = serde_json::to_string(&rec.header).expect("header serialises");
    s.push('\n');
    for e in &rec.evals {
        s.push_str(&serde_json::to_string(e).expect("record serialises"));
        s.push('\n');
    }
    s
}

/// Parses JSONL text; `path` names the file in errors. Rejects unknown schema versions and
/// malformed lines, naming the line; upgrades schema 1 records (see the module docs).
pub fn parse(text: &str, path: &Path) -> Result<RunRecords> {
    let err = |line: usize, msg: String| Error::Config {
        path: path.to_path_buf(),
        message: format!("line {line}: {msg}"),
    };
    let mut header: Option<Header> = None;
    let mut evals = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let mut v: serde_json::Value = serde_json::from_str(line).map_err(|e| err(i + 1, format!("not JSON ({e})")))?;
        let version = v.get("schema_version").and_then(|x| x.as_u64());
        if !version.is_some_and(|x| READABLE.contains(&(x as u32))) {
            return Err(err(
                i + 1,
                format!(
                    "unknown schema version {} (this build reads versions {READABLE:?})",
                    version.map_or("none".into(), |x| x.to_string())
                ),
            ));
        }
        match v.get("type").and_then(|t| t.as_str()) {
            Some("header") if i == 0 => {
                let mut h: Header = serde_json::from_value(v).map_err(|e| err(i + 1, format!("bad header ({e})")))?;
                if h.eps.is_empty() {
                    h.eps = vec![v1_eps(&h.config).ok_or_else(|| err(i + 1, "no attack.eps in the config".into()))?];
                }
                header = Some(h);
            }
            Some("eval") => {
                if version == Some(1) {
                    let eps = header.as_ref().map_or(f64::NAN, |h| h.eps[0]);
                    upgrade_v1(&mut v, eps).map_err(|m| err(i + 1, m))?;
                }
                let e: EvalRecord =
                    serde_json::from_value(v).map_err(|e| err(i + 1, format!("bad eval record ({e})")))?;
                check_eval(&e, evals.last()).map_err(|m| err(i + 1, m))?;
                evals.push(e);
            }
            other => return Err(err(i + 1, format!("unexpected record type {other:?}"))),
        }
    }
    let header = header.ok_or_else(|| err(1, "the first line must be a header record".into()))?;
    Ok(RunRecords { header, evals })
}

/// An eval record's values lie in their domains and its step follows the previous one's.
fn check_eval(e: &EvalRecord, prev: Option<&EvalRecord>) -> std::result::Result<(), String> {
    let accs = [("clean_acc", Some(e.clean_acc)), ("ood_acc", e.ood_acc)]
        .into_iter()
        .chain(e.robust.iter().map(|r| ("robust acc", Some(r.acc))));
    for (name, v) in accs {
        if let Some(v) = v
            && !(0.0..=1.0).contains(&v)
        {
            return Err(format!("{name} must lie in [0, 1] (got {v})"));
        }
    }
    if let Some(p) = prev
        && e.step <= p.step
    {
        return Err(format!(
            "step {} does not follow step {} (repeated or out of order)",
            e.step, p.step
        ));
    }
    Ok(())
}

/// A schema 1 header's radius: its config's `attack.eps` (one number).
fn v1_eps(config: &serde_json::Value) -> Option<f64> {
    config.get("attack")?.get("eps")?.as_f64()
}

/// Schema 1 → 2 for an eval line: `robust_acc`/`robust_ci` become a one-radius `robust` list.
fn upgrade_v1(v: &mut serde_json::Value, eps: f64) -> std::result::Result<(), String> {
    let o = v.as_object_mut().ok_or("an eval record must be an object")?;
    let acc = o
        .remove("robust_acc")
        .ok_or("schema 1 eval record without robust_acc")?;
    let ci = o.remove("robust_ci").ok_or("schema 1 eval record without robust_ci")?;
    o.insert(
        "robust".into(),
        serde_json::json!([{ "eps": eps, "acc": acc, "ci": ci }]),
    );
    Ok(())
}

/// Reads a JSONL run file.
pub fn read(path: &Path) -> Result<RunRecords> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    parse(&text, path)
}

/// Every run's records under `dir` (`dir/<dataset>/<strategy>/seed*.jsonl`).
pub fn read_folder(dir: &Path) -> Result<Vec<RunRecords>> {
    let out = record_files(dir)?.iter().map(|f| read(f)).collect::<Result<Vec<_>>>()?;
    if out.is_empty() {
        return Err(Error::invalid(
            dir.display().to_string(),
            "a run folder with <dataset>/<strategy>/seed<N>.jsonl records",
            "none",
        ));
    }
    Ok(out)
}

/// The record files under `dir` (`dir/<dataset>/<strategy>/seed*.jsonl`), datasets and files in
/// name order, strategies in the registry's; an error only when `dir` cannot be read.
pub fn record_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut ds: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    ds.sort();
    for d in ds {
        for s in Strategy::ALL {
            let sd = d.join(s.id());
            let Ok(files) = std::fs::read_dir(&sd) else { continue };
            let mut files: Vec<PathBuf> = files
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
                .collect();
            files.sort();
            out.extend(files);
        }
    }
    Ok(out)
}

/// Writes records atomically.
pub fn write(path: &Path, rec: &RunRecords) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    crate::io::write_atomic(path, render(rec).as_bytes())
}
