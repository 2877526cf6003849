//! A sweep cut into cells (issue 16), without a scheduler: `validate plan`, `validate run
//! --cell N` in any order after the upstream cell, `validate status`, the cell locks, and
//! `validate slurm`'s checks and `--dry-run`. The same sweep on a real Slurm cluster is
//! tests/slurm.rs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;

use robustft::validate::sweep::plan::{Plan, Work};

use common::validate;

/// See [`common::scratch`]: keep the guard bound while the folder is in use.
fn scratch(name: &str) -> (tempfile::TempDir, PathBuf) {
    common::scratch("cells", name)
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn cell(out: &Path, n: usize) -> Output {
    validate(&[
        "run",
        "--preset",
        "smoke",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
        "--cell",
        &n.to_string(),
    ])
}

#[test]
fn cells_run_in_any_order_reproduce_the_whole_run() {
    let (_whole_tmp, whole) = scratch("whole");
    whole_run_writes_its_plan(&whole);

    let (_out_tmp, out) = scratch("split");
    plan_lists_the_cells_in_run_order(&out);
    cells_out_of_range_or_before_the_upstream_are_refused(&out);

    for n in [0, 3, 1] {
        let o = cell(&out, n);
        assert!(o.status.success(), "cell {n}: {}", text(&o).1);
    }
    let (s, _) = text(&validate(&["status", out.to_str().unwrap()]));
    assert!(s.contains("| simple | lora | 0 | 0 | 0 | 1 |"), "{s}");
    assert!(s.contains("cells: 3 done, 0 running, 0 stopped, 1 missing of 4"), "{s}");

    let rec = out.join("simple/lora/seed0.jsonl");
    a_running_cell_is_refused_and_not_submitted(&out, &rec);

    let o = cell(&out, 2);
    assert!(o.status.success(), "{}", text(&o).1);
    // A complete cell run again does nothing and says so.
    let before = std::fs::read(&rec).unwrap();
    let (s, _) = text(&cell(&out, 2));
    assert!(s.contains("(was already)"), "{s}");
    assert_eq!(std::fs::read(&rec).unwrap(), before);

    let (s, _) = text(&validate(&[
        "plan",
        "--preset",
        "smoke",
        "--out",
        out.to_str().unwrap(),
    ]));
    assert!(s.contains("4 cells (1 upstream, 3 fine-tuning), 4 complete"), "{s}");
    for d in [&out, &whole] {
        for cmd in ["report", "verdict", "compare"] {
            let o = validate(&[cmd, d.to_str().unwrap()]);
            assert!(o.status.success(), "{cmd}: {}", text(&o).1);
        }
    }
    common::assert_same_sweep(&whole, &out);
}

/// The whole run into `whole`, as one process.
fn whole_run_writes_its_plan(whole: &Path) {
    let o = validate(&["run", "--preset", "smoke", "--quiet", "--out", whole.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o).1);
    // A whole run writes its plan too, every cell complete at the end as status reads it.
    let o = validate(&["status", whole.to_str().unwrap()]);
    assert!(
        text(&o)
            .0
            .contains("cells: 4 done, 0 running, 0 stopped, 0 missing of 4"),
        "{}",
        text(&o).0
    );
}

/// `validate plan --json` before anything ran.
fn plan_lists_the_cells_in_run_order(out: &Path) {
    let o = validate(&["plan", "--preset", "smoke", "--json", "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o).1);
    let plan: Plan = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(plan, robustft::validate::sweep::plan::read_plan(out).unwrap());
    // Upstream, then dataset → seed → strategy, as a whole run walks them.
    let labels: Vec<String> = plan.cells.iter().map(|c| c.work.label()).collect();
    assert_eq!(
        labels,
        [
            "upstream",
            "simple/linear_probe/seed0",
            "simple/lora/seed0",
            "simple/bitfit/seed0"
        ]
    );
    assert!(plan.cells.iter().all(|c| !c.complete));
    assert_eq!(plan.last_step, 12);
    match &plan.cells[2].work {
        Work::FineTune { record, .. } => assert_eq!(record, Path::new("simple/lora/seed0.jsonl")),
        w => panic!("{w:?}"),
    }
    match &plan.cells[0].work {
        Work::Upstream { checkpoint, configured } => {
            assert!(checkpoint.starts_with("upstream") && !configured, "{checkpoint:?}")
        }
        w => panic!("{w:?}"),
    }
}

/// Out of range: the error names the plan's size; a fine-tuning cell before the upstream
/// one: refused, naming cell 0; both exit 2 and write no record.
fn cells_out_of_range_or_before_the_upstream_are_refused(out: &Path) {
    let (_, e) = text(&cell(out, 4));
    assert!(e.contains("0 (upstream) to 3 (4 cells"), "{e}");
    let o = cell(out, 2);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("--cell 0"), "{}", text(&o).1);
    assert!(!out.join("simple/lora/seed0.jsonl").exists());

    // Status before anything ran: the upstream and three cells missing.
    let (s, _) = text(&validate(&["status", out.to_str().unwrap()]));
    assert!(
        s.contains("upstream: missing") && s.contains("cells: 0 done, 0 running, 0 stopped, 4 missing of 4"),
        "{s}"
    );
    assert!(s.contains("not done: cells 0,1,2,3"), "{s}");
}

/// The cell's own lock: a second run of a running cell is refused (exit 2) naming it, and a
/// whole run is refused beside running cells.
fn a_running_cell_is_refused_and_not_submitted(out: &Path, rec: &Path) {
    let held = robustft::io::lock::RunLock::acquire_cell(rec).unwrap();
    let o = cell(out, 2);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).1.contains("in use") && text(&o).1.contains("seed0.jsonl"),
        "{}",
        text(&o).1
    );
    let (s, _) = text(&validate(&["status", out.to_str().unwrap()]));
    assert!(s.contains("| simple | lora | 0 | 1 | 0 | 0 |"), "{s}");
    // A running cell is not submitted again: here nothing is left to submit.
    let o = validate(&[
        "slurm",
        "--preset",
        "smoke",
        "--out",
        out.to_str().unwrap(),
        "--dry-run",
    ]);
    let (s, e) = text(&o);
    assert!(o.status.success(), "{e}");
    assert!(e.contains("cells 2 are running now"), "{e}");
    assert!(
        s.contains("nothing submitted: the cells not complete (2) are running now") && !s.contains("would run"),
        "{s}"
    );
    let shared = robustft::io::lock::RunLock::acquire_shared(out).unwrap();
    let o = validate(&["run", "--preset", "smoke", "--quiet", "--out", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o).1);
    assert!(text(&o).1.contains("cell runs"), "{}", text(&o).1);
    drop((held, shared));
}

#[test]
fn slurm_checks_everything_before_writing_and_dry_run_writes_the_scripts() {
    let (_out_tmp, out) = scratch("slurm");
    let o_str = out.to_str().unwrap().to_string();
    let (_empty_tmp, empty) = scratch("no-path");
    std::fs::create_dir_all(&empty).unwrap();
    // No sbatch on PATH.
    let o = Command::new(env!("CARGO_BIN_EXE_validate"))
        .args(["slurm", "--preset", "smoke", "--out", &o_str])
        .env("PATH", &empty)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).1.contains("sbatch") && text(&o).1.contains("--dry-run"),
        "{}",
        text(&o).1
    );
    assert!(!out.exists(), "wrote into --out after refusing");
    // Options Slurm would refuse, named before anything is written.
    for (flag, value) in [
        ("--time", "2h"),
        ("--mem", "lots"),
        ("--array-max", "0"),
        ("--partition", "a b"),
    ] {
        let o = validate(&["slurm", "--preset", "smoke", "--out", &o_str, "--dry-run", flag, value]);
        assert_eq!(o.status.code(), Some(2), "{flag}");
        assert!(text(&o).1.contains(flag), "{flag}: {}", text(&o).1);
        assert!(!out.exists(), "{flag}: wrote into --out after refusing");
    }
    // A configuration that fails validation.
    let bad = empty.join("bad.toml");
    std::fs::write(
        &bad,
        "name = \"x\"\nmodel = \"tiny\"\nstrategies = [\"lora\"]\nseeds = []\n",
    )
    .unwrap();
    let o = validate(&["slurm", "--config", bad.to_str().unwrap(), "--out", &o_str, "--dry-run"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(!out.exists());

    dry_run_writes_the_scripts(&out, &o_str);
}

/// `validate slurm --dry-run` with options: what it would submit, and the scripts it writes.
fn dry_run_writes_the_scripts(out: &Path, o_str: &str) {
    let o = validate(&[
        "slurm",
        "--preset",
        "smoke",
        "--out",
        o_str,
        "--dry-run",
        "--gpus-per-task",
        "1",
        "--time",
        "1:00:00",
        "--array-max",
        "2",
    ]);
    assert!(o.status.success(), "{}", text(&o).1);
    let (s, e) = text(&o);
    assert!(e.contains("warning") && e.contains("/tmp"), "{e}");
    assert!(
        s.contains("would run: sbatch --parsable ") && s.contains("upstream.sbatch"),
        "{s}"
    );
    assert!(s.contains("--array=1-3%2 --dependency=afterok:<upstream>"), "{s}");
    assert!(s.contains("--dependency=afterany:<cells>"), "{s}");
    let cells = std::fs::read_to_string(out.join("slurm/cells.sbatch")).unwrap();
    assert!(
        cells.contains("#SBATCH --gpus-per-task=1\n") && cells.contains("#SBATCH --time=1:00:00\n"),
        "{cells}"
    );
    assert!(
        cells.contains("--preset 'smoke'") && cells.contains("--cell \"$SLURM_ARRAY_TASK_ID\""),
        "{cells}"
    );
    assert!(cells.contains(env!("CARGO_BIN_EXE_validate")), "{cells}");
    let report = std::fs::read_to_string(out.join("slurm/report.sbatch")).unwrap();
    for cmd in ["report", "verdict", "compare"] {
        assert!(report.contains(&format!("' {cmd} '{o_str}'")), "{report}");
    }
    assert!(out.join("slurm/logs").is_dir() && out.join("plan.json").is_file());
}
