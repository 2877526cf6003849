//! What the two binaries share: parsing with one-line errors (exit 2) and failing with one line.

use std::process::ExitCode;

/// Prints one line on stderr and returns exit code 2 (bad input; nothing has been written).
pub fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(2)
}

/// Parses the command line. `--help`/`--version` print and exit 0; a parse error prints clap's
/// message (up to its usage block, folded onto one line) and exits 2.
pub fn parse<T: clap::Parser>() -> Result<T, ExitCode> {
    match T::try_parse() {
        Ok(c) => Ok(c),
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            Err(ExitCode::SUCCESS)
        }
        Err(e) => {
            let text = e.render().to_string();
            let head: Vec<&str> = text
                .lines()
                .take_while(|l| !l.trim().is_empty())
                .map(str::trim)
                .collect();
            Err(fail(head.join(" ").trim_start_matches("error: ")))
        }
    }
}

/// An output folder given on the command line must be a folder or a path where one can be
/// created: an existing file is bad input (exit 2, before any work), not a run-time failure.
pub fn check_out_dir(path: &std::path::Path) -> crate::Result<()> {
    if path.exists() && !path.is_dir() {
        return Err(crate::Error::invalid(
            "--out",
            "must be a folder (or a path where one can be created), not a file",
            path.display(),
        ));
    }
    Ok(())
}

/// Exit 1 with one line on stderr: a run-time failure after valid input.
pub fn fail_run(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::FAILURE
}
