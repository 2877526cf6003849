//! One error type for the crate. Every variant names *what* is wrong and *where*
//! (a field, a flag, a file), so a user sees one clear line.

use std::path::PathBuf;

/// Errors raised by the theory simulator, the tradeoff module and the jobs on top of them.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A parameter is outside its admissible range (or NaN).
    #[error("invalid `{field}`: {reason} (got {value})")]
    InvalidParameter {
        /// The field, flag or key that holds the bad value.
        field: String,
        /// What the admissible range is.
        reason: String,
        /// The offending value, as the user wrote it.
        value: String,
    },
    /// A configuration file could not be parsed.
    #[error("config {path}: {message}")]
    Config {
        /// The file.
        path: PathBuf,
        /// The parser's message (it names the key and line).
        message: String,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A tensor operation failed: the first line of candle's message (set ROBUSTFT_BACKTRACE=1
    /// for all of it), with candle's error kept as the source.
    #[error("engine: {message}")]
    Engine {
        /// What failed.
        message: String,
        /// candle's error, when one caused it.
        #[source]
        source: Option<Box<candle_core::Error>>,
    },
    /// Another process holds the lock of a run folder or of one cell (see `validate::lock`).
    #[error("{path} is in use by {} (lock file {lock}); wait for it to finish or choose another output folder", holder.as_deref().unwrap_or("another process"))]
    Locked {
        /// The run folder, or the record of the cell.
        path: PathBuf,
        /// The lock file.
        lock: PathBuf,
        /// Who holds it (`process N`, or the cell runs holding a folder shared), when known.
        holder: Option<String>,
    },
    /// Bad input found by the checks a job makes before it writes anything (missing or damaged
    /// data, records of another configuration, an unreadable checkpoint): the inner error,
    /// marked so that callers (the binaries' exit codes) can tell it from a failure while running.
    #[error(transparent)]
    Refused(Box<Error>),
    /// The scheduler refused or failed a request (`sbatch`, `scancel`).
    #[error("slurm: {0}")]
    Scheduler(String),
    /// Drawing a figure failed.
    #[error("plot {name}: {message}")]
    Plot {
        /// The figure's stem name.
        name: String,
        /// The backend's message.
        message: String,
    },
}

/// Crate-wide result alias.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An [`Error::InvalidParameter`] for `field` holding `value`.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>, value: impl ToString) -> Self {
        Error::InvalidParameter {
            field: field.into(),
            reason: reason.into(),
            value: value.to_string(),
        }
    }

    /// The same error with its field renamed (e.g. a library field `eps` reported as the CLI flag `--eps`).
    pub fn rename_field(self, from: &str, to: &str) -> Self {
        match self {
            Error::InvalidParameter { field, reason, value } if field == from => Error::InvalidParameter {
                field: to.to_string(),
                reason,
                value,
            },
            other => other,
        }
    }

    /// The same error marked as bad input found before anything was written ([`Error::Refused`]).
    pub fn refused(self) -> Self {
        match self {
            e @ Error::Refused(_) => e,
            e => Error::Refused(Box::new(e)),
        }
    }

    /// An [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// A configuration read from TOML and then checked as a whole: the one interface of the
/// simulator's sweep config, the dynamics config, the run config and a model TOML.
pub trait Validate: serde::de::DeserializeOwned {
    /// The checked form.
    type Valid;
    /// Checks every value once; errors name the key (as `section.key`).
    fn check(self) -> Result<Self::Valid>;
}

/// Reads, parses and checks a TOML configuration file. Every error is one line naming the file:
/// a missing file, a syntax error (with line and column), an unknown key or an impossible value
/// (with the key).
pub fn load_toml<T: Validate>(path: &std::path::Path) -> Result<T::Valid> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    load_toml_str::<T>(&text, path)
}

/// [`load_toml`] for text already in memory (an embedded preset); `origin` names it in errors.
pub fn load_toml_str<T: Validate>(text: &str, origin: &std::path::Path) -> Result<T::Valid> {
    parse_toml::<T>(text, origin)?.check().map_err(|e| match e {
        e @ Error::Config { .. } => e,
        e => Error::Config {
            path: origin.to_path_buf(),
            message: e.to_string(),
        },
    })
}

/// Parses TOML text into `T`; a parser error is one line naming `origin`, the key (its path from
/// the document root, e.g. `datasets[0].kind`), the line and column.
pub(crate) fn parse_toml<T: serde::de::DeserializeOwned>(text: &str, origin: &std::path::Path) -> Result<T> {
    let fail = |key: Option<String>, e: toml::de::Error| Error::Config {
        path: origin.to_path_buf(),
        message: key.map_or(String::new(), |k| format!("{k}: ")) + e.message() + &span(text, e.span()),
    };
    let document = toml::Deserializer::parse(text).map_err(|e| fail(None, e))?;
    serde_path_to_error::deserialize(document).map_err(|e| {
        let key = e.path().to_string();
        fail((key != ".").then_some(key), e.into_inner())
    })
}

/// " (line L, column C)" for a parser error span.
fn span(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    match span {
        Some(r) => {
            let before = &text[..r.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!(" (line {line}, column {col})")
        }
        None => String::new(),
    }
}

/// Checks shared by every validating constructor.
pub(crate) mod check {
    use super::{Error, Result};

    /// `value` must be finite.
    pub fn finite(field: &str, value: f64) -> Result<f64> {
        if value.is_finite() {
            Ok(value)
        } else {
            Err(Error::invalid(field, "must be a finite number", value))
        }
    }

    /// `lo < value < hi`.
    pub fn open(field: &str, value: f64, lo: f64, hi: f64) -> Result<f64> {
        finite(field, value)?;
        if value > lo && value < hi {
            Ok(value)
        } else {
            Err(Error::invalid(field, format!("must lie in ({lo}, {hi})"), value))
        }
    }

    /// `lo <= value <= hi`.
    pub fn closed(field: &str, value: f64, lo: f64, hi: f64) -> Result<f64> {
        finite(field, value)?;
        if value >= lo && value <= hi {
            Ok(value)
        } else {
            Err(Error::invalid(field, format!("must lie in [{lo}, {hi}]"), value))
        }
    }

    /// `value > 0`.
    pub fn positive(field: &str, value: f64) -> Result<f64> {
        finite(field, value)?;
        if value > 0.0 {
            Ok(value)
        } else {
            Err(Error::invalid(field, "must be > 0", value))
        }
    }

    /// `value >= 0`.
    pub fn non_negative(field: &str, value: f64) -> Result<f64> {
        finite(field, value)?;
        if value >= 0.0 {
            Ok(value)
        } else {
            Err(Error::invalid(field, "must be >= 0", value))
        }
    }
}
