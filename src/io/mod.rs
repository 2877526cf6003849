//! File I/O: the one place that writes files for the jobs — atomic writes (temp file + rename)
//! with temp names unique across processes and hosts, folder locks ([`lock`]), and CSV tables
//! written through the `csv` crate ([`Csv`]).

pub mod lock;

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Full-precision formatting for CSV cells and tables (shortest round-trip representation).
pub fn num(x: f64) -> String {
    format!("{x}")
}

/// How a CSV column's cells are quoted: where needed (a cell holding a comma, a quote or a line
/// break; the default), or always (text columns, quoted in every row so that a reader sees the
/// column as text whatever a row holds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Quote {
    /// Only cells holding a delimiter, a quote or a line break.
    #[default]
    Needed,
    /// Every cell.
    Always,
}

/// A table written as CSV (RFC 4180 quoting by the `csv` crate: a quote inside a cell is
/// doubled), one row per line, `\n` line ends.
#[derive(Debug, Clone, Default)]
pub struct Csv {
    /// Column names.
    pub header: Vec<String>,
    /// How each column's cells are quoted (the header never is).
    pub quote: Vec<Quote>,
    /// Rows, already formatted.
    pub rows: Vec<Vec<String>>,
}

impl Csv {
    /// An empty table with these columns, each quoted where needed.
    pub fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|s| s.to_string()).collect(),
            quote: vec![Quote::Needed; header.len()],
            rows: Vec::new(),
        }
    }

    /// The same table with these columns quoted in every row.
    pub fn always_quoted(mut self, columns: &[&str]) -> Self {
        for c in columns {
            let i = self.header.iter().position(|h| h == c).expect("a column of the table");
            self.quote[i] = Quote::Always;
        }
        self
    }

    /// Appends one row (numbers formatted with full precision by the caller).
    pub fn push(&mut self, row: Vec<String>) {
        debug_assert_eq!(row.len(), self.header.len(), "CSV row width");
        self.rows.push(row);
    }

    /// The CSV text.
    ///
    /// ```
    /// let mut t = robustft::io::Csv::new(&["name", "note"]).always_quoted(&["name"]);
    /// t.push(vec!["lora".into(), "r = 8, α = 8".into()]);
    /// t.push(vec!["say \"hi\"".into(), String::new()]);
    /// assert_eq!(t.render(), "name,note\n\"lora\",\"r = 8, α = 8\"\n\"say \"\"hi\"\"\",\n");
    /// ```
    pub fn render(&self) -> String {
        let mut s = self.header.join(",");
        s.push('\n');
        for r in &self.rows {
            let cells: Vec<String> = r.iter().zip(&self.quote).map(|(c, q)| cell(c, *q)).collect();
            s.push_str(&cells.join(","));
            s.push('\n');
        }
        s
    }
}

/// One cell as the `csv` crate writes it with quote style `q`. An empty cell is written empty
/// (the crate quotes a record made of one empty field, which a cell among others is not).
fn cell(text: &str, q: Quote) -> String {
    if text.is_empty() && q == Quote::Needed {
        return String::new();
    }
    let style = match q {
        Quote::Needed => csv::QuoteStyle::Necessary,
        Quote::Always => csv::QuoteStyle::Always,
    };
    let mut w = csv::WriterBuilder::new()
        .quote_style(style)
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    w.write_record([text]).expect("writing to memory");
    let mut bytes = w.into_inner().expect("writing to memory");
    bytes.pop(); // the record's '\n'
    String::from_utf8(bytes).expect("UTF-8 in, UTF-8 out")
}

/// Writes `bytes` to `path` atomically: a temp file in the same folder, then rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temp_path(path);
    fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// `dir/.name.tmp-HOST-PID-N.ext`, unique to this process and call, so two writers never share
/// a temporary file, even processes of two cluster nodes writing into one shared folder (their
/// pids may be equal); keeps the extension (the PNG encoder picks its format from it).
pub fn temp_path(path: &Path) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let host = HOST.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().chars().filter(char::is_ascii_alphanumeric).collect())
            .unwrap_or_default()
    });
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("out");
    let ext = path.extension().and_then(|s| s.to_str()).unwrap_or("tmp");
    path.with_file_name(format!(".{name}.tmp-{host}-{}-{n}.{ext}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cells the old hand-joined writer got wrong are quoted; plain cells are as before.
    #[test]
    fn quoting() {
        assert_eq!(cell("0.5", Quote::Needed), "0.5");
        assert_eq!(cell("a,b", Quote::Needed), "\"a,b\"");
        assert_eq!(cell("line\nbreak", Quote::Needed), "\"line\nbreak\"");
        assert_eq!(cell("it's \"x\"", Quote::Always), "\"it's \"\"x\"\"\"");
        assert_eq!(cell("", Quote::Always), "\"\"");
        assert_eq!(cell("", Quote::Needed), "");
    }
}
