//! What the two binaries share: parsing with one-line errors (exit 2), the output-folder check,
//! and how a command ends: [`finish`] prints its text or its one-line error with the exit code
//! its [`Failure`] calls for (2: bad input, nothing written; 1: a failure while running).

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

/// Why a command failed, which decides its exit code.
#[derive(Debug)]
pub enum Failure {
    /// Bad input, refused before anything was written: one line, exit 2.
    Input(String),
    /// A failure after valid input (a run-time error): one line, exit 1.
    Run(String),
}

/// A command's result: the text it prints on success, or why it failed.
pub type Outcome = std::result::Result<String, Failure>;

/// Classifies an error as bad input or a run-time failure (`?` then carries it to [`finish`]).
pub trait Classify<T> {
    /// The error is bad input (exit 2).
    fn input(self) -> std::result::Result<T, Failure>;
    /// The error happened while running (exit 1) — except an output folder held by another run
    /// and the input checks a job makes before writing ([`crate::Error::Refused`]), which are
    /// bad input (exit 2).
    fn running(self) -> std::result::Result<T, Failure>;
}

impl<T> Classify<T> for crate::Result<T> {
    fn input(self) -> std::result::Result<T, Failure> {
        self.map_err(|e| Failure::Input(e.to_string()))
    }
    fn running(self) -> std::result::Result<T, Failure> {
        self.map_err(|e| match e {
            crate::Error::Locked { .. } | crate::Error::Refused(_) => Failure::Input(e.to_string()),
            e => Failure::Run(e.to_string()),
        })
    }
}

impl<T> Classify<T> for std::result::Result<T, String> {
    fn input(self) -> std::result::Result<T, Failure> {
        self.map_err(Failure::Input)
    }
    fn running(self) -> std::result::Result<T, Failure> {
        self.map_err(Failure::Run)
    }
}

/// Prints a command's text and exits 0, or prints its one-line error and exits 2 (bad input)
/// or 1 (a run-time failure).
pub fn finish(outcome: Outcome) -> ExitCode {
    match outcome {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(Failure::Input(m)) => fail(m),
        Err(Failure::Run(m)) => fail_run(m),
    }
}
