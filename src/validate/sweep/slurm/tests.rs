//! Options, scripts and array specs of `validate slurm` (submission itself: tests/slurm.rs).

use crate::validate::sweep::slurm::script::*;
use crate::validate::sweep::slurm::*;

#[test]
fn array_specs_fold_runs_and_throttle() {
    assert_eq!(array_spec(&[1, 2, 3, 5, 7, 8, 9], None), "1-3,5,7-9");
    assert_eq!(array_spec(&[4], Some(2)), "4%2");
    assert_eq!(array_spec(&[1, 3], Some(8)), "1,3%8");
}

#[test]
fn slurm_times_and_sizes() {
    for ok in ["30", "30:00", "1:30:00", "2-0", "2-12:00", "2-12:00:00", "UNLIMITED"] {
        assert!(is_slurm_time(ok), "{ok}");
    }
    for bad in ["", "1h", "1:2:3:4", "-1", "2-", "1.5", "2-1:2:3:4"] {
        assert!(!is_slurm_time(bad), "{bad}");
    }
    for ok in ["4000", "16G", "512M", "1t"] {
        assert!(is_slurm_mem(ok), "{ok}");
    }
    for bad in ["", "G", "16GB", "1.5G", "-4G"] {
        assert!(!is_slurm_mem(bad), "{bad}");
    }
}

#[test]
fn bad_options_name_the_option() {
    let cases: [(SlurmOptions, &str); 5] = [
        (
            SlurmOptions {
                time: Some("1h".into()),
                ..Default::default()
            },
            "--time",
        ),
        (
            SlurmOptions {
                mem: Some("lots".into()),
                ..Default::default()
            },
            "--mem",
        ),
        (
            SlurmOptions {
                partition: Some("a b".into()),
                ..Default::default()
            },
            "--partition",
        ),
        (
            SlurmOptions {
                array_max: Some(0),
                ..Default::default()
            },
            "--array-max",
        ),
        (
            SlurmOptions {
                gpus_per_task: Some(0),
                ..Default::default()
            },
            "--gpus-per-task",
        ),
    ];
    for (o, name) in cases {
        let e = o.check().unwrap_err().to_string();
        assert!(e.contains(name), "{name}: {e}");
    }
    SlurmOptions::default().check().unwrap();
}

#[test]
fn scripts_carry_resources_and_the_cell_index() {
    let opts = SlurmOptions {
        partition: Some("gpu".into()),
        time: Some("4:00:00".into()),
        gpus_per_task: Some(1),
        ..Default::default()
    };
    let s = scripts(
        Path::new("/opt/bin/validate"),
        &ConfigSource::File("/home/u/it's.toml".into()),
        Path::new("/scratch/sweep"),
        "sweep",
        &opts,
    );
    for text in [&s.upstream, &s.cells, &s.report] {
        assert!(text.starts_with("#!/bin/bash\n"));
        assert!(text.contains("#SBATCH --partition=gpu\n#SBATCH --time=4:00:00\n#SBATCH --gpus-per-task=1\n"));
    }
    assert!(s.upstream.contains("--cell 0 "), "{}", s.upstream);
    assert!(s.upstream.contains("#SBATCH --requeue"));
    assert!(
        s.cells
            .contains("--config '/home/u/it'\\''s.toml' --out '/scratch/sweep' --cell \"$SLURM_ARRAY_TASK_ID\"")
    );
    assert!(
        s.cells
            .contains("#SBATCH --output=/scratch/sweep/slurm/logs/cells-%A_%a.out")
    );
    assert!(s.report.contains("'/opt/bin/validate' report '/scratch/sweep'\n"));
    assert!(!s.report.contains("--requeue"));
}
