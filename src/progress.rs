//! Progress on the terminal: a bar where stderr is a terminal, one line per step where it is not
//! (a log, a Slurm job), nothing with `--quiet` but those lines.

use indicatif::{ProgressBar, ProgressStyle};

/// Whether stderr is a terminal.
pub fn console_is_terminal() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal()
}

/// Where no bar can be drawn (stderr not a terminal: a log, a Slurm job), one line of progress
/// instead, `--quiet` or not (as the upstream line): `label: what (seconds since pb started)`.
pub fn progress_line(pb: &ProgressBar, label: &str, what: impl FnOnce() -> String) {
    if !console_is_terminal() {
        eprintln!("{label}: {} ({:.0} s)", what(), pb.elapsed().as_secs_f64());
    }
}

/// A progress bar (hidden when quiet).
pub fn bar(len: u64, label: &str, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template("{prefix:>28} [{bar:30}] {pos}/{len} {msg} ({elapsed})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    pb.set_prefix(label.to_string());
    pb
}
