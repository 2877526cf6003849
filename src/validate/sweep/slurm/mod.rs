//! `validate slurm`: a sweep as Slurm jobs. Writes `DIR/slurm/{upstream,cells,report}.sbatch`
//! and submits, with `sbatch`, the upstream cell, then a job array over the fine-tuning cells
//! that are not complete (`--dependency=afterok:<upstream>`, throttled by `%K`), then a report
//! job (`afterany`) running `validate report`, `verdict` and `compare`. Array indices are the
//! [plan](crate::validate::sweep::plan)'s cell indices, so each task runs `validate run --cell
//! $SLURM_ARRAY_TASK_ID`; submitting again submits only what is still incomplete, and a task
//! requeued after preemption resumes from its checkpoint.
//!
//! The scripts name the binary and the configuration by absolute path and need nothing else
//! from the submitting shell; they log to `DIR/slurm/logs/`. Every option is checked, and the
//! configuration and its data validated, before anything is written or submitted; when a
//! submission is rejected, the jobs this call already submitted are cancelled (`scancel`), so a
//! failed call leaves nothing queued.

use std::path::{Path, PathBuf};
use std::process::Command;

mod script;

use script::scripts;
pub use script::{ConfigSource, SlurmOptions, array_spec};

use crate::error::{Error, Result};
use crate::validate::sweep::config::ValidRun;
use crate::validate::sweep::plan::{Plan, Work, plan, write_plan};

/// The first `name` on PATH that is an executable file.
fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// One submission to make: a script, its extra `sbatch` arguments, and which earlier
/// submissions it waits for.
struct Job {
    part: &'static str,
    script: PathBuf,
    array: Option<String>,
    after: Option<(&'static str, Vec<usize>)>,
}

/// The jobs a sweep needs now: upstream when incomplete, the array over the incomplete
/// fine-tuning cells that are not running now (`running`), and the report after them. Empty
/// when there is nothing to submit.
fn jobs(plan: &Plan, dir: &Path, opts: &SlurmOptions, running: &[usize]) -> Vec<Job> {
    let mut jobs = Vec::new();
    let upstream_todo = plan
        .cells
        .iter()
        .any(|c| matches!(c.work, Work::Upstream { .. }) && !c.complete);
    let todo: Vec<usize> = plan
        .incomplete()
        .filter(|c| matches!(c.work, Work::FineTune { .. }) && !running.contains(&c.index))
        .map(|c| c.index)
        .collect();
    if upstream_todo {
        jobs.push(Job {
            part: "upstream",
            script: dir.join("upstream.sbatch"),
            array: None,
            after: None,
        });
    }
    if !todo.is_empty() {
        jobs.push(Job {
            part: "cells",
            script: dir.join("cells.sbatch"),
            array: Some(array_spec(&todo, opts.array_max)),
            after: upstream_todo.then(|| ("afterok", vec![0])),
        });
    }
    if !jobs.is_empty() {
        let last = jobs.len() - 1;
        jobs.push(Job {
            part: "report",
            script: dir.join("report.sbatch"),
            array: None,
            after: Some(("afterany", vec![last])),
        });
    }
    jobs
}

/// Runs `sbatch --parsable ARGS script`; the job id, or an error carrying sbatch's message.
fn sbatch(sbatch: &Path, args: &[String]) -> Result<String> {
    let o = Command::new(sbatch)
        .arg("--parsable")
        .args(args)
        .output()
        .map_err(|e| Error::io(sbatch, e))?;
    let stdout = String::from_utf8_lossy(&o.stdout);
    if !o.status.success() {
        // A submission the scheduler refuses (partition, account, limits) is bad input.
        return Err(Error::Scheduler(format!(
            "{} rejected the submission `sbatch --parsable {}`: {}",
            sbatch.display(),
            args.join(" "),
            String::from_utf8_lossy(&o.stderr).trim().replace('\n', "; ")
        ))
        .refused());
    }
    // --parsable prints `id` or `id;cluster`.
    let id = stdout.trim().split(';').next().unwrap_or("").to_string();
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::Scheduler(format!(
            "{} printed no job id ({stdout:?})",
            sbatch.display()
        )));
    }
    Ok(id)
}

/// What `validate slurm` did: the plan, the scripts, and the jobs submitted (part, id,
/// command), or the commands it would run (`--dry-run`, ids as `<part>`).
#[derive(Debug)]
pub struct Submitted {
    /// The plan at submission.
    pub plan: Plan,
    /// The sbatch scripts.
    pub scripts: Vec<PathBuf>,
    /// (part, job id or `<part>` when dry, sbatch arguments).
    pub jobs: Vec<(String, String, Vec<String>)>,
    /// Whether nothing was submitted on purpose.
    pub dry_run: bool,
    /// Cells not complete but running now (their locks held): not submitted.
    pub running: Vec<usize>,
}

impl Submitted {
    /// The summary `validate slurm` prints.
    pub fn summary(&self, out: &Path) -> String {
        let done = self.plan.cells.iter().filter(|c| c.complete).count();
        let mut s = format!(
            "plan: {} cells (1 upstream, {} fine-tuning), {done} complete; {}\n",
            self.plan.cells.len(),
            self.plan.cells.len() - 1,
            out.join(crate::validate::sweep::plan::PLAN_FILE).display()
        );
        for p in &self.scripts {
            s += &format!("wrote {}\n", p.display());
        }
        if self.jobs.is_empty() && !self.running.is_empty() {
            s += &format!(
                "nothing submitted: the cells not complete ({}) are running now; `validate status {}` follows them\n",
                self.running.iter().map(usize::to_string).collect::<Vec<_>>().join(","),
                out.display()
            );
            return s;
        }
        if self.jobs.is_empty() {
            s += &format!(
                "every cell is complete: nothing submitted (`validate report {}` writes the report)\n",
                out.display()
            );
            return s;
        }
        for (part, id, args) in &self.jobs {
            if self.dry_run {
                s += &format!("would run: sbatch --parsable {}\n", args.join(" "));
            } else {
                s += &format!("submitted {part}: job {id} (sbatch {})\n", args.join(" "));
            }
        }
        if !self.dry_run {
            let ids: Vec<&str> = self.jobs.iter().map(|(_, id, _)| id.as_str()).collect();
            s += &format!(
                "watch: squeue -j {ids}   ·   sacct -j {ids} (with accounting)   ·   validate status {}\nlogs: {}\n",
                out.display(),
                out.join("slurm").join("logs").display(),
                ids = ids.join(",")
            );
        }
        s
    }
}

/// What a submission starts from, once every check has passed: the absolute output folder,
/// `sbatch` (None when dry), the plan and the cells running now.
struct Checked {
    out: PathBuf,
    sbatch: Option<PathBuf>,
    plan: Plan,
    running: Vec<usize>,
}

/// Every check `validate slurm` makes before it writes anything (options, output path, sbatch
/// on PATH, configuration inputs, foreign records, an upstream cell running now).
fn check(run: &ValidRun, out: &Path, opts: &SlurmOptions) -> Result<Checked> {
    opts.check()?;
    let out = std::path::absolute(out).map_err(|e| Error::io(out, e))?;
    if out.to_string_lossy().contains(|c: char| c.is_whitespace() || c == '%') {
        return Err(Error::invalid(
            "--out",
            "a path without spaces or '%' (Slurm's #SBATCH --output lines cannot quote them)",
            out.display(),
        ));
    }
    let sbatch = match opts.dry_run {
        true => None,
        false => Some(on_path("sbatch").ok_or_else(|| {
            Error::invalid(
                "sbatch",
                "Slurm's sbatch on PATH (validate slurm submits with it; --dry-run writes the scripts only)",
                "not found",
            )
        })?),
    };
    crate::validate::sweep::inputs::check_inputs(run)?;
    let plan = plan(run, &out)?;
    let running: Vec<usize> = plan
        .incomplete()
        .filter(|c| crate::validate::sweep::plan::is_running(&out, c))
        .map(|c| c.index)
        .collect();
    if running.contains(&0) {
        return Err(Error::Config {
            path: out.join("upstream"),
            message: "is being pretrained now by the upstream cell (its lock is held): submit \
                      again when it has finished (`validate status` tells)"
                .into(),
        });
    }
    Ok(Checked {
        out,
        sbatch,
        plan,
        running,
    })
}

/// Plans the sweep of `run` in `out`, writes the plan and the scripts, and submits the jobs
/// still needed (see the module doc). `bin` is the `validate` binary the jobs run.
pub fn submit(run: &ValidRun, source: &ConfigSource, out: &Path, opts: &SlurmOptions, bin: &Path) -> Result<Submitted> {
    let Checked {
        out,
        sbatch: sbatch_path,
        plan,
        running,
    } = check(run, out, opts).map_err(Error::refused)?;
    for tmp in ["/tmp", "/var/tmp", "/dev/shm"] {
        if out.starts_with(tmp) {
            eprintln!(
                "warning: {} is under {tmp}, which is usually local to each node: on a cluster, \
                 give --out a folder on a filesystem every node sees",
                out.display()
            );
        }
    }
    if !running.is_empty() {
        eprintln!(
            "note: cells {} are running now (their locks are held): not submitted again, and the \
             report job does not wait for them",
            running.iter().map(usize::to_string).collect::<Vec<_>>().join(",")
        );
    }
    write_plan(&plan, &out)?;
    let dir = out.join("slurm");
    std::fs::create_dir_all(dir.join("logs")).map_err(|e| Error::io(dir.join("logs"), e))?;
    let s = scripts(bin, source, &out, &run.config.name, opts);
    let mut written = Vec::new();
    for (part, text) in [("upstream", &s.upstream), ("cells", &s.cells), ("report", &s.report)] {
        let p = dir.join(format!("{part}.sbatch"));
        crate::io::write_atomic(&p, text.as_bytes())?;
        written.push(p);
    }
    let mut done: Vec<(String, String, Vec<String>)> = Vec::new();
    for job in jobs(&plan, &dir, opts, &running) {
        let mut args = Vec::new();
        if let Some(a) = &job.array {
            args.push(format!("--array={a}"));
        }
        if let Some((kind, on)) = &job.after {
            let ids: Vec<&str> = on.iter().map(|&i| done[i].1.as_str()).collect();
            args.push(format!("--dependency={kind}:{}", ids.join(":")));
        }
        args.push(job.script.display().to_string());
        let id = match &sbatch_path {
            None => format!("<{}>", job.part),
            Some(sb) => sbatch(sb, &args).inspect_err(|_| cancel(&done))?,
        };
        done.push((job.part.to_string(), id, args));
    }
    Ok(Submitted {
        plan,
        scripts: written,
        jobs: done,
        dry_run: opts.dry_run,
        running,
    })
}

/// Cancels the jobs already submitted by a call that then failed (best effort; said on stderr).
fn cancel(done: &[(String, String, Vec<String>)]) {
    if done.is_empty() {
        return;
    }
    let ids: Vec<&str> = done.iter().map(|(_, id, _)| id.as_str()).collect();
    let ok = Command::new("scancel").args(&ids).status().is_ok_and(|s| s.success());
    eprintln!(
        "{} the jobs this call had submitted ({})",
        if ok { "cancelled" } else { "could not cancel" },
        ids.join(",")
    );
}

#[cfg(test)]
mod tests;
