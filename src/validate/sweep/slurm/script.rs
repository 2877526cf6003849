//! The scripts of `validate slurm`: resources and their checks, the three sbatch scripts, and
//! the `--array` value.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Resources and limits of the submitted jobs (each `None` leaves the cluster's default).
#[derive(Debug, Clone, Default)]
pub struct SlurmOptions {
    /// `--partition`.
    pub partition: Option<String>,
    /// `--time` per job (Slurm's formats: `M`, `M:S`, `H:M:S`, `D-H`, `D-H:M`, `D-H:M:S`).
    pub time: Option<String>,
    /// `--gpus-per-task`.
    pub gpus_per_task: Option<u32>,
    /// `--cpus-per-task`.
    pub cpus_per_task: Option<u32>,
    /// `--mem` per job (e.g. `16G`).
    pub mem: Option<String>,
    /// At most this many array tasks at once (`%K`).
    pub array_max: Option<usize>,
    /// `--account`.
    pub account: Option<String>,
    /// Write the scripts and print the commands; submit nothing.
    pub dry_run: bool,
}

/// Where the jobs find the configuration.
#[derive(Debug, Clone)]
pub enum ConfigSource {
    /// A TOML file (made absolute).
    File(PathBuf),
    /// An embedded preset.
    Preset(String),
}

/// Whether `t` is a time limit in one of Slurm's formats.
pub(super) fn is_slurm_time(t: &str) -> bool {
    if matches!(t, "UNLIMITED" | "INFINITE" | "infinite" | "unlimited") {
        return true;
    }
    let num = |s: &str| !s.is_empty() && s.len() <= 6 && s.bytes().all(|b| b.is_ascii_digit());
    match t.split_once('-') {
        // days-hours[:minutes[:seconds]]
        Some((d, rest)) => {
            num(d) && {
                let p: Vec<&str> = rest.split(':').collect();
                (1..=3).contains(&p.len()) && p.iter().all(|s| num(s))
            }
        }
        // minutes, minutes:seconds, hours:minutes:seconds
        None => {
            let p: Vec<&str> = t.split(':').collect();
            (1..=3).contains(&p.len()) && p.iter().all(|s| num(s))
        }
    }
}

/// Whether `m` is a memory size Slurm accepts (`N` megabytes, or `N` with K, M, G or T).
pub(super) fn is_slurm_mem(m: &str) -> bool {
    let digits = m.trim_end_matches(['K', 'M', 'G', 'T', 'k', 'm', 'g', 't']);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) && m.len() - digits.len() <= 1
}

impl SlurmOptions {
    /// Errors naming the first option Slurm would not accept, before anything is written.
    pub fn check(&self) -> Result<()> {
        let word = |name: &str, v: &Option<String>| match v {
            Some(s) if s.is_empty() || s.contains(|c: char| c.is_whitespace() || c == '#') => Err(Error::invalid(
                name,
                "a non-empty name without spaces",
                format!("{s:?}"),
            )),
            _ => Ok(()),
        };
        word("--partition", &self.partition)?;
        word("--account", &self.account)?;
        if let Some(t) = self.time.as_deref().filter(|t| !is_slurm_time(t)) {
            return Err(Error::invalid(
                "--time",
                "a Slurm time limit: minutes, M:S, H:M:S, D-H, D-H:M or D-H:M:S",
                t,
            ));
        }
        if let Some(m) = self.mem.as_deref().filter(|m| !is_slurm_mem(m)) {
            return Err(Error::invalid("--mem", "a size such as 4000, 16G or 512M", m));
        }
        for (name, v) in [
            ("--gpus-per-task", self.gpus_per_task.map(|v| v as usize)),
            ("--cpus-per-task", self.cpus_per_task.map(|v| v as usize)),
            ("--array-max", self.array_max),
        ] {
            if v == Some(0) {
                return Err(Error::invalid(name, "at least 1", 0));
            }
        }
        Ok(())
    }

    /// The `#SBATCH` lines of these resources.
    pub(super) fn directives(&self) -> String {
        let mut s = String::new();
        let mut line = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                s += &format!("#SBATCH --{k}={v}\n");
            }
        };
        line("partition", self.partition.clone());
        line("account", self.account.clone());
        line("time", self.time.clone());
        line("mem", self.mem.clone());
        line("gpus-per-task", self.gpus_per_task.map(|v| v.to_string()));
        line("cpus-per-task", self.cpus_per_task.map(|v| v.to_string()));
        s
    }
}

/// `s` quoted for a POSIX shell.
pub(super) fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The three job scripts of a sweep.
pub(super) struct Scripts {
    pub(super) upstream: String,
    pub(super) cells: String,
    pub(super) report: String,
}

/// Renders the scripts: `bin` and the configuration by absolute path, logs under
/// `out/slurm/logs/`.
pub(super) fn scripts(bin: &Path, source: &ConfigSource, out: &Path, name: &str, opts: &SlurmOptions) -> Scripts {
    let bin = sh_quote(&bin.display().to_string());
    let out_q = sh_quote(&out.display().to_string());
    let cfg = match source {
        ConfigSource::File(p) => format!("--config {}", sh_quote(&p.display().to_string())),
        ConfigSource::Preset(n) => format!("--preset {}", sh_quote(n)),
    };
    let logs = out.join("slurm").join("logs");
    let head = |part: &str, log: &str, requeue: bool| {
        format!(
            "#!/bin/bash\n#SBATCH --job-name=robustft-{name}-{part}\n#SBATCH --output={}/{log}\n\
             #SBATCH --open-mode=append\n#SBATCH --ntasks=1\n{}{}\
             # Written by `validate slurm` (robustft {}); submitted by it, or again by hand with sbatch.\n\
             set -euo pipefail\n",
            logs.display(),
            if requeue { "#SBATCH --requeue\n" } else { "" },
            opts.directives(),
            env!("CARGO_PKG_VERSION"),
        )
    };
    Scripts {
        upstream: format!(
            "{}{bin} run {cfg} --out {out_q} --cell 0 --quiet\n",
            head("upstream", "upstream-%j.out", true)
        ),
        cells: format!(
            "{}# One fine-tuning cell per array task; the array index is the plan's cell index.\n\
             {bin} run {cfg} --out {out_q} --cell \"$SLURM_ARRAY_TASK_ID\" --quiet\n",
            head("cells", "cells-%A_%a.out", true)
        ),
        report: format!(
            "{}{bin} report {out_q}\n{bin} verdict {out_q}\n{bin} compare {out_q}\n",
            head("report", "report-%j.out", false)
        ),
    }
}

/// Slurm's `--array` value for `indices` (ascending): ranges folded (`1-3,5,7-9`), `%K` appended.
pub fn array_spec(indices: &[usize], max: Option<usize>) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < indices.len() {
        let mut j = i;
        while j + 1 < indices.len() && indices[j + 1] == indices[j] + 1 {
            j += 1;
        }
        parts.push(if i == j {
            indices[i].to_string()
        } else {
            format!("{}-{}", indices[i], indices[j])
        });
        i = j + 1;
    }
    let mut s = parts.join(",");
    if let Some(k) = max {
        s += &format!("%{k}");
    }
    s
}
