//! The gap folder on disk: where it and its cells live, the checks of a specification against the
//! run and the folder before anything is computed, and the cells read back and checked.

use std::path::{Path, PathBuf};

use super::cell::strategy_rank;
use super::{GapCell, GapPoint, GapSpec, MEMBER_CODES, Probe, same_radius};
use crate::engine::peft::parse_strategy;
use crate::error::{Error, Result};
use crate::io::write_atomic;
use crate::validate::checkpoints::replay::{cell_path, check_spec_or, load_results};
use crate::validate::sweep::config::ValidRun;

/// The folder a run folder's gap results live in.
pub fn gap_dir(out: &Path) -> PathBuf {
    out.join("gap")
}

/// The file of cell `c` in the gap folder `dir`.
pub(super) fn cell_file(dir: &Path, c: &GapCell) -> Result<PathBuf> {
    Ok(cell_path(dir, &c.dataset, parse_strategy(&c.strategy)?, c.seed))
}

/// Checks `spec` against the run and the folder before anything is computed: radii among the
/// run's, n ≥ 1, and an existing `gap/spec.json` equal to it or grown into it
/// ([`GapSpec::grows_into`]). Errors name the option.
pub(super) fn check(run: &ValidRun, out: &Path, spec: &GapSpec) -> Result<()> {
    let run_eps = run.eps();
    if spec.eps.is_empty() || spec.eps.windows(2).any(|w| w[1] <= w[0]) {
        return Err(Error::invalid("--eps", "give one or more radii, increasing", format!("{:?}", spec.eps)).refused());
    }
    for e in &spec.eps {
        if !run_eps.iter().any(|r| same_radius(*r, *e)) {
            return Err(Error::invalid(
                "--eps",
                format!(
                    "not a radius of this run (its PGD outcomes come from the records; the run has {})",
                    run_eps
                        .iter()
                        .map(|r| format!("{}/255", r * 255.0))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                format!("{}/255", e * 255.0),
            )
            .refused());
        }
    }
    if spec.n == 0 || spec.steps == 0 || spec.targets == 0 || spec.queries == 0 {
        return Err(Error::invalid("--n/--steps/--targets/--queries", "must be >= 1", 0).refused());
    }
    let dir = gap_dir(out);
    check_spec_or(
        &dir,
        "gap",
        spec,
        |old: &GapSpec| old.grows_into(spec),
        ", or ask for its radii followed by larger ones, with the same --n, --steps, --targets and --queries, to \
         add radii",
    )?;
    // Cells written before radii could grow cover the folder's radii: say so in each, before
    // the folder's radii change.
    if let Some((old, cells)) = load_results::<GapSpec, GapCell>(&dir, "gap")? {
        for mut c in cells.into_iter().filter(|c| c.eps.is_empty()) {
            c.eps = old.eps.clone();
            let path = cell_file(&dir, &c)?;
            write_atomic(&path, serde_json::to_string_pretty(&c).expect("serialises").as_bytes())?;
        }
    }
    Ok(())
}

/// The gap results of a run folder, when `validate gap` has written a complete summary.
pub fn load(out: &Path) -> Result<Option<(GapSpec, Vec<GapCell>)>> {
    let dir = gap_dir(out);
    if !dir.join("gap.md").exists() {
        return Ok(None);
    }
    read(&dir)
}

/// A cell (at `path`) whose probe `key` at `step` is not a canonical probe key (`and` says what
/// else it must have).
pub(super) fn bad_probe(path: PathBuf, key: &str, step: u64, and: &str) -> Error {
    Error::Config {
        path,
        message: format!("probe `{key}` at step {step} is not a canonical pgd:STEPS:ALPHA or apgd-ce:STEPS key{and}"),
    }
}

/// The specification and every cell of the gap folder `dir`, sorted by dataset, strategy (in
/// the study's order) and seed; cells written before radii could grow get the folder's radii.
pub(super) fn read(dir: &Path) -> Result<Option<(GapSpec, Vec<GapCell>)>> {
    let Some((spec, mut cells)) = load_results::<GapSpec, GapCell>(dir, "gap")? else {
        return Ok(None);
    };
    for c in cells.iter_mut().filter(|c| c.eps.is_empty()) {
        c.eps = spec.eps.clone();
    }
    for c in &cells {
        for p in &c.points {
            check_point(dir, c, p)?;
        }
    }
    // Strategies in the study's order (Full, Linear Probing, LoRA, …), as the runs are.
    cells.sort_by(|a, b| read_order(a).cmp(&read_order(b)));
    Ok(Some((spec, cells)))
}

/// Where [`read`] sorts cell `c`: dataset, strategy in the study's order, strategy id, seed.
fn read_order(c: &GapCell) -> (&String, usize, &String, u64) {
    (&c.dataset, strategy_rank(&c.strategy), &c.strategy, c.seed)
}

/// Checks point `p` of cell `c` (of the folder `dir`) as read: a member for exactly the images
/// AutoAttack broke; each probe under its canonical key, with a level per image, the clean outcome
/// AutoAttack's (the same model), and no more radii than the cell's.
fn check_point(dir: &Path, c: &GapCell, p: &GapPoint) -> Result<()> {
    let top = c.eps.len() + 1;
    let ok = p.broken_by.is_empty()
        || (p.broken_by.len() == p.autoattack.len()
            && p.broken_by.bytes().zip(p.autoattack.bytes()).all(|(m, l)| {
                let fell = l > b'0' && ((l - b'0') as usize) < top;
                if fell { MEMBER_CODES.contains(&m) } else { m == b'-' }
            }));
    if !ok {
        return Err(Error::Config {
            path: cell_file(dir, c)?,
            message: format!(
                "broken_by at step {} does not name a member (c, t, f, s) for exactly the images AutoAttack broke \
                 (`-` elsewhere)",
                p.step
            ),
        });
    }
    for (key, probe) in &p.probes {
        let ok = Probe::canonical(key).is_some()
            && probe.levels.len() == p.autoattack.len()
            && probe
                .levels
                .bytes()
                .zip(p.autoattack.bytes())
                .all(|(l, a)| (b'0'..=b'0' + top as u8).contains(&l) && (l == b'0') == (a == b'0'));
        if !ok {
            let path = cell_file(dir, c)?;
            let levels = format!(" with a level (0 to {top}) per image and AutoAttack's clean outcomes");
            return Err(bad_probe(path, key, p.step, &levels));
        }
    }
    Ok(())
}
