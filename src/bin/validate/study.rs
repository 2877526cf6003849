//! The study's commands: they read the records of finished run folders, given as `DIR`.

use std::path::{Path, PathBuf};

use robustft::cli::{Classify, Failure, Outcome};

/// Bootstrap replicates below this are refused (`--reps`).
const MIN_REPS: usize = 100;

fn check_reps(reps: usize) -> Result<(), Failure> {
    if reps < MIN_REPS {
        return Err(Failure::Input(format!(
            "invalid `--reps`: must be >= {MIN_REPS} (got {reps})"
        )));
    }
    Ok(())
}

/// `validate verdict`.
pub fn verdict(dir: &Path, with: &[PathBuf], min_clean: Option<f64>, reps: usize) -> Outcome {
    check_reps(reps)?;
    let f = robustft::validate::study::verdict::verdict_with(dir, with, min_clean, reps).input()?;
    let targets = f.at_target.as_ref().map_or_else(String::new, |t| {
        let each: Vec<String> = t.targets.iter().map(|(d, c)| format!("{d} ≥ {c:.3}")).collect();
        let cols: Vec<&str> = t.sources.iter().map(|s| s.label.as_str()).collect();
        format!(
            "best robustness at the clean target ({}), per strategy under {}: in findings.md and best_at_target.csv\n",
            each.join(", "),
            cols.join(" | ")
        )
    });
    Ok(format!(
        "{}{targets}wrote {}\n",
        robustft::validate::study::verdict::table(&f.rows),
        dir.join("report").join("findings.md").display()
    ))
}

/// `validate versus`.
pub fn versus(standard: &Path, robust: &Path, reps: usize) -> Outcome {
    check_reps(reps)?;
    robustft::validate::study::versus::versus(standard, robust, reps).input()
}
