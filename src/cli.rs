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
    parse_with::<T>(|c| c)
}

/// [`parse`] with the command edited first (a help template, say).
pub fn parse_with<T: clap::Parser>(edit: impl FnOnce(clap::Command) -> clap::Command) -> Result<T, ExitCode> {
    let parsed = edit(T::command())
        .try_get_matches()
        .and_then(|m| T::from_arg_matches(&m));
    match parsed {
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

/// A strategy on the command line (`--strategy`, `--strategies`): its id, or one of its
/// aliases with `-` for `_` (`linear-probe`, `lp`, …; give `ignore_case = true` on the argument).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StrategyArg(pub crate::engine::Strategy);

/// Every strategy as a command-line value, in the registry's order.
static STRATEGY_ARGS: std::sync::LazyLock<Vec<StrategyArg>> =
    std::sync::LazyLock::new(|| crate::engine::Strategy::ALL.iter().map(|&s| StrategyArg(s)).collect());

/// The spellings each strategy is accepted under (in the registry's order): its aliases as
/// written and with `_` as `-`, and its id with `_` as `-` (the id itself is the value's name).
/// Made once per process (clap takes `'static` names).
static SPELLINGS: std::sync::LazyLock<Vec<Vec<&'static str>>> = std::sync::LazyLock::new(|| {
    crate::engine::Strategy::ALL
        .iter()
        .map(|s| {
            let mut v: Vec<&'static str> = Vec::new();
            for a in std::iter::once(s.id()).chain(s.aliases().iter().copied()) {
                for t in [a.to_string(), a.replace('_', "-")] {
                    if t != s.id() && !v.contains(&t.as_str()) {
                        v.push(Box::leak(t.into_boxed_str()));
                    }
                }
            }
            v
        })
        .collect()
});

impl clap::ValueEnum for StrategyArg {
    fn value_variants<'a>() -> &'a [Self] {
        &STRATEGY_ARGS
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        let i = crate::engine::Strategy::ALL.iter().position(|s| *s == self.0)?;
        Some(clap::builder::PossibleValue::new(self.0.id()).aliases(SPELLINGS[i].iter().copied()))
    }
}

/// `--strategy` where `all` is allowed too (`validate bench`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrategyChoice {
    /// Every strategy.
    All,
    /// One.
    One(crate::engine::Strategy),
}

impl StrategyChoice {
    /// The strategies chosen, in the registry's order.
    pub fn strategies(self) -> Vec<crate::engine::Strategy> {
        match self {
            StrategyChoice::All => crate::engine::Strategy::ALL.to_vec(),
            StrategyChoice::One(s) => vec![s],
        }
    }
}

/// `all`, then every strategy.
static STRATEGY_CHOICES: std::sync::LazyLock<Vec<StrategyChoice>> = std::sync::LazyLock::new(|| {
    std::iter::once(StrategyChoice::All)
        .chain(crate::engine::Strategy::ALL.iter().map(|&s| StrategyChoice::One(s)))
        .collect()
});

impl clap::ValueEnum for StrategyChoice {
    fn value_variants<'a>() -> &'a [Self] {
        &STRATEGY_CHOICES
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        match self {
            StrategyChoice::All => Some(clap::builder::PossibleValue::new("all")),
            StrategyChoice::One(s) => StrategyArg(*s).to_possible_value(),
        }
    }
}
