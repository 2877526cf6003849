//! What a cell records: the scored checkpoints of one run ([`GapCell`], [`GapPoint`],
//! [`ProbeLevels`]), the AutoAttack member codes, and the level strings read back as counts.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Probe;
use crate::engine::peft::parse_strategy;

/// One scored checkpoint of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GapPoint {
    /// `peak`, `final`, or both when the peak is the last step.
    pub which: Vec<String>,
    /// Optimiser steps.
    pub step: u64,
    /// Evaluation images whose replayed clean outcome was checked against the record (all).
    pub verified: usize,
    /// Per image (the first n), one digit: 0 = misclassified clean, 1 + k = robust at the k
    /// smallest radii of the cell's `eps` — under the run's own attack, from its records.
    pub pgd: String,
    /// The same under AutoAttack, measured here.
    pub autoattack: String,
    /// Per image, the AutoAttack member that broke it, at the radius where it fell: `c` APGD-CE,
    /// `t` APGD-T, `f` FAB-T, `s` Square ([`MEMBER_CODES`]); `-` where none did (misclassified
    /// clean, or robust at every radius of the cell). Empty in cells measured before members
    /// were recorded (`validate gap --attribute` measures them again).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub broken_by: String,
    /// AutoAttack's wall time, seconds.
    pub seconds: f64,
    /// Per probe ([`Probe::key`]), its levels on the same images and radii (the digits of
    /// `autoattack`), and its wall time.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub probes: BTreeMap<String, ProbeLevels>,
}

/// A probe's outcome at one checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeLevels {
    /// Per image, as [`GapPoint::autoattack`].
    pub levels: String,
    /// Wall time, seconds.
    pub seconds: f64,
}

/// The code of each AutoAttack member in [`GapPoint::broken_by`], in the order of
/// [`crate::engine::attack::autoattack::MEMBERS`].
pub const MEMBER_CODES: [u8; 4] = *b"ctfs";

/// [`GapPoint::broken_by`] of per-image members (indices into [`MEMBER_CODES`]).
pub(super) fn member_codes(by: &[Option<u8>]) -> String {
    by.iter()
        .map(|b| b.map_or('-', |m| char::from(MEMBER_CODES[m as usize])))
        .collect()
}

/// The gap of one run (`DIR/gap/<dataset>/<strategy>/seed<k>.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GapCell {
    /// Dataset.
    pub dataset: String,
    /// Strategy id.
    pub strategy: String,
    /// Seed.
    pub seed: u64,
    /// The radii the points' level strings cover: the folder's, or its first ones when the
    /// folder's radii grew after this run was scored with `--seeds` leaving it out. Absent from
    /// cells written before radii could grow: those cover their folder's radii, and are read so
    /// (and rewritten so by `validate gap` before the folder's radii change).
    #[serde(default)]
    pub eps: Vec<f64>,
    /// The run's attack in words (what measured `pgd`).
    pub run_attack: String,
    /// The checkpoints scored.
    pub points: Vec<GapPoint>,
}

impl GapCell {
    /// Whether every point records the member that broke each image.
    pub fn attributed(&self) -> bool {
        self.points.iter().all(|p| !p.broken_by.is_empty())
    }

    /// Whether every point records each of `probes`.
    pub fn has_probes(&self, probes: &[Probe]) -> bool {
        self.points
            .iter()
            .all(|p| probes.iter().all(|q| p.probes.contains_key(&q.key())))
    }
}

/// A strategy id's place in the study's order (Full, Linear Probing, LoRA, …; unknown ids last).
pub(super) fn strategy_rank(id: &str) -> usize {
    parse_strategy(id).map_or(usize::MAX, |s| s as usize)
}

/// Level strings counted: (clean, robust per radius) for `radii` radii.
pub fn counts(levels: &str, radii: usize) -> (usize, Vec<usize>) {
    let l: Vec<u8> = levels.bytes().map(|b| b - b'0').collect();
    let at = |min: u8| l.iter().filter(|v| **v >= min).count();
    (at(1), (0..radii).map(|k| at(k as u8 + 2)).collect())
}

/// Whether the image at `i` of a level string is robust at radius index `k` (level ≥ k + 2).
pub(super) fn robust_at(levels: &str, i: usize, k: usize) -> bool {
    (levels.as_bytes()[i] - b'0') as usize >= k + 2
}
