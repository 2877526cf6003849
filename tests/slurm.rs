//! The smoke sweep on a real one-node Slurm cluster (issue 16): `.ci/run` starts one with
//! `validation/slurm/local-cluster.sh` and runs this test with `ROBUSTFT_REQUIRE_SLURM=1`.
//!
//! Submitted with `validate slurm`, the sweep's records and report equal those of one `validate
//! run` of the same configuration; one array task cancelled mid-run (`scancel` on its index,
//! after its first checkpoint) is the only cell the next submission runs again, and it resumes;
//! a submission the scheduler rejects (unknown partition) leaves nothing queued.
//!
//! Without a cluster the test says so and is skipped; with `ROBUSTFT_REQUIRE_SLURM=1` it fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

mod common;

fn validate(args: &[&str], hold: Option<&str>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_validate"));
    c.args(args).env_remove("ROBUSTFT_HOLD_CELL");
    if let Some(h) = hold {
        c.env("ROBUSTFT_HOLD_CELL", h);
    }
    c.output().unwrap()
}

fn ok(o: Output, what: &str) -> String {
    let (s, e) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{what} failed:\n{s}\n{e}");
    s.into_owned()
}

/// Why Slurm cannot be used here, or None when `sinfo` answers.
fn no_cluster() -> Option<String> {
    match Command::new("sinfo").arg("-h").output() {
        Err(e) => Some(format!("sinfo: {e}")),
        Ok(o) if !o.status.success() => Some(String::from_utf8_lossy(&o.stderr).trim().to_string()),
        Ok(_) => None,
    }
}

/// The id printed for `part` by `validate slurm` ("submitted cells: job N …").
fn job_id(stdout: &str, part: &str) -> Option<String> {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(&format!("submitted {part}: job ")))
        .map(|r| r.split_whitespace().next().unwrap().to_string())
}

fn ids(stdout: &str) -> Vec<String> {
    ["upstream", "cells", "report"]
        .iter()
        .filter_map(|p| job_id(stdout, p))
        .collect()
}

/// Waits until none of `ids` is pending or running (squeue lists none of them).
fn wait_for(ids: &[String], limit: Duration) {
    let start = Instant::now();
    loop {
        let o = Command::new("squeue")
            .args(["-h", "-o", "%i %T", "-j", &ids.join(",")])
            .output()
            .unwrap();
        let listed = String::from_utf8_lossy(&o.stdout).trim().to_string();
        if o.status.success() && listed.is_empty() {
            return;
        }
        assert!(
            start.elapsed() < limit,
            "jobs {ids:?} still queued after {limit:?}: {listed}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// `scontrol show job ID`'s JobState.
fn job_state(id: &str) -> String {
    let o = Command::new("scontrol").args(["show", "job", id]).output().unwrap();
    let s = String::from_utf8_lossy(&o.stdout);
    s.split_whitespace()
        .find_map(|w| w.strip_prefix("JobState="))
        .unwrap_or("?")
        .to_string()
}

/// A scratch folder path `<tmp>/robustft-slurm-<name>-XXXXXX/<name>`, not yet created, and the
/// guard of its parent: dropping the guard removes both, however the test ends. `<tmp>` is
/// `std::env::temp_dir()` as before, a folder the cluster's jobs see too. Keep the guard bound
/// while the folder is in use.
fn scratch(name: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::Builder::new()
        .prefix(&format!("robustft-slurm-{name}-"))
        .tempdir_in(std::env::temp_dir())
        .unwrap();
    let d = tmp.path().join(name);
    (tmp, d)
}

fn bytes(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
#[ignore = "needs a Slurm cluster: .ci/run starts one (validation/slurm/local-cluster.sh) and runs this"]
fn smoke_sweep_as_a_job_array_equals_one_process_and_resumes_a_cancelled_cell() {
    if let Some(why) = no_cluster() {
        let msg = format!(
            "no Slurm cluster ({why}); start one with `eval \"$(bash validation/slurm/local-cluster.sh start)\"`"
        );
        assert!(
            std::env::var_os("ROBUSTFT_REQUIRE_SLURM").is_none(),
            "ROBUSTFT_REQUIRE_SLURM is set but {msg}"
        );
        eprintln!("SKIPPED: {msg}");
        return;
    }
    let (_whole_tmp, whole) = scratch("whole");
    let one_process = whole_run(&whole);

    // The array, with cell 2 (simple/lora/seed0) held after its first checkpoint.
    let (_out_tmp, out) = scratch("array");
    let array_wall = array_with_cell_2_cancelled(&out);

    let rerun_wall = resubmission_runs_only_the_cancelled_cell(&out, &whole);

    // Nothing to do: nothing submitted.
    let o = out.to_str().unwrap();
    let third = ok(
        validate(&["slurm", "--preset", "smoke", "--out", o], None),
        "validate slurm a third time",
    );
    assert!(third.contains("nothing submitted") && ids(&third).is_empty(), "{third}");

    // A submission the scheduler rejects: one error naming it, nothing left queued.
    let (_bad_tmp, bad) = scratch("bad");
    a_rejected_submission_leaves_nothing_queued(&bad);

    eprintln!(
        "timings: one process {:.1} s; array (upstream + 3 cells + report, one cell cancelled) {:.1} s; \
         resubmission of the cancelled cell + report {:.1} s",
        one_process.as_secs_f64(),
        array_wall.as_secs_f64(),
        rerun_wall.as_secs_f64()
    );
}

/// `validate run` of the smoke preset into `whole`, then `validate compare`; the run's wall time.
fn whole_run(whole: &Path) -> Duration {
    let w = whole.to_str().unwrap();
    let t = Instant::now();
    ok(
        validate(&["run", "--preset", "smoke", "--quiet", "--out", w], None),
        "validate run",
    );
    let one_process = t.elapsed();
    ok(validate(&["compare", w], None), "validate compare");
    one_process
}

/// `validate slurm` with cell 2 held after its first checkpoint and cancelled there: the report
/// job still completes, status names cell 2 as stopped, its records end mid-run. The wall time.
fn array_with_cell_2_cancelled(out: &Path) -> Duration {
    let o = out.to_str().unwrap();
    let lora = out.join("simple/lora/seed0.jsonl");
    let t = Instant::now();
    let first = ok(
        validate(
            &[
                "slurm",
                "--preset",
                "smoke",
                "--out",
                o,
                "--cpus-per-task",
                "1",
                "--time",
                "10",
            ],
            Some("simple/lora/seed0"),
        ),
        "validate slurm",
    );
    let cells = job_id(&first, "cells").expect("a cells array");
    assert!(first.contains("--array=1-3 --dependency=afterok:"), "{first}");
    let held = lora.with_extension("held");
    let start = Instant::now();
    while !held.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "cell 2 never reached its first checkpoint"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    ok(
        Command::new("scancel").arg(format!("{cells}_2")).output().unwrap(),
        "scancel",
    );
    wait_for(&ids(&first), Duration::from_secs(300));
    let array_wall = t.elapsed();
    assert_eq!(job_state(&job_id(&first, "report").unwrap()), "COMPLETED");
    let status = ok(validate(&["status", o], None), "validate status");
    assert!(status.contains("| simple | lora | 0 | 0 | 1 | 0 |"), "{status}");
    assert!(status.contains("not done: cells 2\n"), "{status}");
    let partial = common::records_timing_aside(&lora);
    assert!(
        partial.len() >= 2 && partial.len() < 5,
        "cell 2 stopped mid-run: {} lines",
        partial.len()
    );
    array_wall
}

/// Resubmitted: only cell 2, no upstream job; the other cells' files untouched. The wall time.
fn resubmission_runs_only_the_cancelled_cell(out: &Path, whole: &Path) -> Duration {
    let o = out.to_str().unwrap();
    let others = [
        out.join("simple/linear_probe/seed0.jsonl"),
        out.join("simple/bitfit/seed0.jsonl"),
    ];
    let before: Vec<Vec<u8>> = others.iter().map(|p| bytes(p)).collect();
    let t = Instant::now();
    let second = ok(
        validate(&["slurm", "--preset", "smoke", "--out", o], None),
        "validate slurm again",
    );
    assert!(job_id(&second, "upstream").is_none(), "{second}");
    assert!(
        second.contains("sbatch --array=2 ") && second.contains("3 complete"),
        "{second}"
    );
    wait_for(&ids(&second), Duration::from_secs(300));
    let rerun_wall = t.elapsed();
    assert_eq!(others.iter().map(|p| bytes(p)).collect::<Vec<_>>(), before);
    let log =
        std::fs::read_to_string(out.join(format!("slurm/logs/cells-{}_2.out", job_id(&second, "cells").unwrap())))
            .unwrap();
    assert!(log.contains("cell 2 (simple/lora/seed0) complete"), "{log}");
    // No terminal in a Slurm job: each evaluation the resumed run made is a line of its log.
    assert!(log.contains("simple/lora/seed0: step 12/12, clean "), "{log}");
    common::assert_same_sweep(whole, out);
    assert!(ok(validate(&["status", o], None), "status").contains("cells: 4 done"));
    rerun_wall
}

/// `validate slurm` into `bad` on a partition that does not exist.
fn a_rejected_submission_leaves_nothing_queued(bad: &Path) {
    let o = validate(
        &[
            "slurm",
            "--preset",
            "smoke",
            "--out",
            bad.to_str().unwrap(),
            "--partition",
            "no-such-partition",
        ],
        None,
    );
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(
        e.contains("rejected the submission") && e.to_lowercase().contains("partition"),
        "{e}"
    );
    let queued = Command::new("squeue")
        .args(["-h", "-n", "robustft-smoke-upstream"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&queued.stdout).trim().is_empty(),
        "left queued after a rejection"
    );
}
