//! The probes' keys ([`Probe`]): `pgd:STEPS:ALPHA` and `apgd-ce:STEPS` parsed to their canonical
//! text, in words, as attacks at each radius, and in the order the tables list them.

use crate::engine::attack::{ApgdConfig, ApgdLoss, PgdConfig, StopRule};
use crate::engine::eval::Attack;
use crate::error::{Error, Result};

/// An attack scored beside AutoAttack (`--probe`): a PGD variant (`pgd:STEPS:ALPHA`, ALPHA a
/// fraction of ε: `pgd:100:1/4` is 100 steps of size ε/4 at every radius; `pgd:15:2` 15 steps of
/// size 2ε) — random start, early exit, cross-entropy, the run's PGD with another budget — or
/// APGD-CE at a given iteration count (`apgd-ce:STEPS`: AutoAttack's first member, Croce & Hein
/// 2020 Algorithm 1, with its adaptive step size from 2ε, momentum and restarts from the best
/// point; `apgd-ce:15` is APGD at the run's PGD-15 budget). A PGD probe's random start is drawn
/// as the run's evaluation draws it, per batch of 128 and per index among the gap's radii: when
/// those are all of the run's radii, the run's own steps and α reproduce the run's record
/// (tested); when they are a later subset (4/255 and 8/255 of 1–8/255), the start is another
/// one, and the run's own steps and α measure what a second random start alone catches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Probe {
    /// Iterations.
    pub steps: usize,
    /// The step size.
    pub step: ProbeStep,
}

/// How a [`Probe`] sizes its steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ProbeStep {
    /// PGD with α = ε·num/den, a reduced fraction.
    Fixed {
        /// Numerator.
        num: u64,
        /// Denominator.
        den: u64,
    },
    /// APGD-CE's adaptive step size.
    ApgdCe,
}

impl Probe {
    /// Parses `pgd:STEPS:ALPHA` (ALPHA `N` or `N/D`, a multiple of ε) or `apgd-ce:STEPS`. Errors
    /// name `--probe`.
    pub fn parse(text: &str) -> Result<Probe> {
        let bad = |why: &str| {
            Error::invalid(
                "--probe",
                format!(
                    "{why}; give pgd:STEPS:ALPHA, ALPHA a fraction of ε (pgd:100:1/4 is PGD-100 with α = ε/4), or \
                     apgd-ce:STEPS"
                ),
                text,
            )
            .refused()
        };
        let whole = |v: &str| v.trim().parse::<u64>().ok().filter(|&v| v >= 1);
        let fields = text.trim().split(':').collect::<Vec<_>>();
        let steps = |v: &str| {
            whole(v)
                .ok_or_else(|| bad("STEPS must be a whole number >= 1"))
                .map(|v| v as usize)
        };
        match fields[..] {
            ["apgd-ce", n] => Ok(Probe {
                steps: steps(n)?,
                step: ProbeStep::ApgdCe,
            }),
            ["apgd-ce", ..] => Err(bad("two fields separated by ':' for APGD-CE")),
            ["pgd", n, alpha] => {
                let steps = steps(n)?;
                let (num, den) = match alpha.split_once('/') {
                    Some((a, b)) => (whole(a), whole(b)),
                    None => (whole(alpha), Some(1)),
                };
                let (Some(num), Some(den)) = (num, den) else {
                    return Err(bad("ALPHA must be N or N/D with whole N, D >= 1"));
                };
                let g = gcd(num, den);
                Ok(Probe {
                    steps,
                    step: ProbeStep::Fixed {
                        num: num / g,
                        den: den / g,
                    },
                })
            }
            ["pgd", ..] => Err(bad("three fields separated by ':' for PGD")),
            _ => Err(bad("only PGD and APGD-CE probes (pgd:…, apgd-ce:…)")),
        }
    }

    /// The probe a [`GapPoint::probes`](super::GapPoint::probes) key names, when the key is its
    /// canonical text.
    pub fn canonical(key: &str) -> Option<Probe> {
        Probe::parse(key).ok().filter(|p| p.key() == key)
    }

    /// The canonical text (`pgd:100:1/4`, `pgd:15:1`, `apgd-ce:15`): the key in
    /// [`GapPoint::probes`](super::GapPoint::probes).
    pub fn key(&self) -> String {
        match self.step {
            ProbeStep::Fixed { num, den: 1 } => format!("pgd:{}:{num}", self.steps),
            ProbeStep::Fixed { num, den } => format!("pgd:{}:{num}/{den}", self.steps),
            ProbeStep::ApgdCe => format!("apgd-ce:{}", self.steps),
        }
    }

    /// In words: `PGD-100, α = ε/4`, `APGD-CE-15`.
    pub fn label(&self) -> String {
        let ProbeStep::Fixed { num, den } = self.step else {
            return format!("APGD-CE-{}", self.steps);
        };
        let num = if num == 1 { String::new() } else { num.to_string() };
        let den = if den == 1 { String::new() } else { format!("/{den}") };
        format!("PGD-{}, α = {num}ε{den}", self.steps)
    }

    /// The probe at each radius.
    pub(super) fn attacks(&self, eps: &[f64]) -> Vec<Attack> {
        eps.iter()
            .map(|&eps| match self.step {
                ProbeStep::Fixed { num, den } => Attack::Pgd(PgdConfig {
                    eps,
                    alpha: eps * num as f64 / den as f64,
                    steps: self.steps,
                    random_start: true,
                    stop: StopRule::EarlyExit,
                }),
                ProbeStep::ApgdCe => Attack::Apgd(ApgdConfig {
                    eps,
                    steps: self.steps,
                    loss: ApgdLoss::Ce,
                    targets: 1,
                }),
            })
            .collect()
    }

    /// Sort key: PGD before APGD-CE, then fewer steps, then smaller α.
    fn order(&self) -> (bool, usize, f64) {
        match self.step {
            ProbeStep::Fixed { num, den } => (false, self.steps, num as f64 / den as f64),
            ProbeStep::ApgdCe => (true, self.steps, 0.0),
        }
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Probes by key ([`Probe::order`]: PGD before APGD-CE, then fewer steps, then smaller α; keys in
/// cells parse: `read` checks them).
pub(super) fn probe_order(a: &str, b: &str) -> std::cmp::Ordering {
    let key = |k: &str| Probe::parse(k).map_or((true, usize::MAX, f64::INFINITY), |p| p.order());
    let (x, y) = (key(a), key(b));
    (x.0, x.1).cmp(&(y.0, y.1)).then(x.2.total_cmp(&y.2)).then(a.cmp(b))
}

/// A probe's label ([`Probe::label`]) from its key, the key itself where it does not parse.
pub(super) fn probe_label(key: &str) -> String {
    Probe::parse(key).map_or(key.to_string(), |p| p.label())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Probe texts: canonical keys (fractions reduced), labels, the step size at each radius,
    /// and refusals naming `--probe`.
    #[test]
    fn probes_parse_to_canonical_keys() {
        let p = Probe::parse("pgd:100:2/8").unwrap();
        assert_eq!(
            (p.steps, p.step, p.key()),
            (100, ProbeStep::Fixed { num: 1, den: 4 }, "pgd:100:1/4".to_string())
        );
        assert_eq!(p.label(), "PGD-100, α = ε/4");
        assert_eq!(Probe::parse("pgd:15:1").unwrap().label(), "PGD-15, α = ε");
        assert_eq!(Probe::parse("pgd:15:6/4").unwrap().key(), "pgd:15:3/2");
        assert_eq!(Probe::parse("pgd:15:3/2").unwrap().label(), "PGD-15, α = 3ε/2");
        let attacks = p.attacks(&[4.0 / 255.0, 8.0 / 255.0]);
        let Attack::Pgd(c) = attacks[1] else {
            panic!("{attacks:?}")
        };
        assert_eq!(
            (c.eps, c.alpha, c.steps, c.random_start),
            (8.0 / 255.0, 2.0 / 255.0, 100, true)
        );
        let q = Probe::parse("apgd-ce:15").unwrap();
        assert_eq!(
            (q.steps, q.step, q.key(), q.label()),
            (15, ProbeStep::ApgdCe, "apgd-ce:15".into(), "APGD-CE-15".into())
        );
        let Attack::Apgd(c) = q.attacks(&[8.0 / 255.0])[0] else {
            panic!("{q:?}")
        };
        assert_eq!((c.eps, c.steps, c.loss), (8.0 / 255.0, 15, ApgdLoss::Ce));
        assert_eq!(Probe::canonical("apgd-ce:015"), None);
        // PGD before APGD-CE, then fewer steps, then smaller α.
        let mut keys = ["apgd-ce:15", "pgd:100:1/4", "pgd:15:1", "apgd-ce:5", "pgd:15:1/4"];
        keys.sort_by(|a, b| probe_order(a, b));
        assert_eq!(
            keys,
            ["pgd:15:1/4", "pgd:15:1", "pgd:100:1/4", "apgd-ce:5", "apgd-ce:15"]
        );
        for bad in [
            "fgsm:1:1",
            "apgd-ce:0",
            "apgd-ce:15:1/4",
            "apgd-t:15",
            "pgd:0:1/4",
            "pgd:10:0",
            "pgd:10",
            "pgd:10:1/0",
            "pgd:x:1",
            "pgd:10:0.25",
        ] {
            let e = Probe::parse(bad).unwrap_err().to_string();
            assert!(e.contains("--probe") && e.contains(bad), "{bad}: {e}");
        }
    }
}
