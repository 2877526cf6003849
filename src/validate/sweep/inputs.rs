//! The checks every job on a run configuration makes before it writes anything.

use crate::validate::ValidRun;
use crate::validate::sweep::{data, upstream};

/// The checks every job on a run config makes before it writes anything: a configured
/// checkpoint exists, and every data file of every dataset is valid ([`data::check_data`]).
/// Errors are marked [`crate::Error::Refused`] (bad input).
pub fn check_inputs(run: &ValidRun) -> crate::Result<()> {
    upstream::check_checkpoint(run)
        .and_then(|()| data::check_data(run))
        .and_then(|()| check_attack_classes(run))
        .map_err(crate::Error::refused)
}

/// The attack is defined for every dataset whose class subset is listed (APGD-DLR needs 3
/// classes, APGD-T 4; [`crate::engine::eval::Attack::min_classes`]). Datasets without a list are
/// checked once loaded (`runner::prepared`).
fn check_attack_classes(run: &ValidRun) -> crate::Result<()> {
    for (i, d) in run.config.datasets.iter().enumerate() {
        let Some(classes) = &d.classes else { continue };
        if let Some(a) = run.attacks.iter().find(|a| a.min_classes() > classes.len()) {
            return Err(attack_classes_error(a, i, &d.name, classes.len()));
        }
    }
    Ok(())
}

/// The error for an attack not defined on dataset `i` (`name`, `classes` classes).
pub fn attack_classes_error(a: &crate::engine::eval::Attack, i: usize, name: &str, classes: usize) -> crate::Error {
    crate::Error::invalid(
        "attack.kind",
        format!(
            "{} needs at least {} classes; datasets[{i}] ({name}) has {classes} (autoattack runs on any task)",
            a.name(),
            a.min_classes()
        ),
        a.name(),
    )
}
