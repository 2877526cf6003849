//! Tracking schedules: at which fine-tuning steps a run is evaluated.
//!
//! Li et al. 2025 (arXiv:2503.14836, §4) track accuracy and robustness densely early in
//! fine-tuning and sparsely later, because robustness moves fastest in the first few hundred
//! steps. A schedule is a list of segments "up to step U, evaluate every N steps", read as the
//! training-loop predicate `step <= U && step % N == 0` (the first segment whose bound covers the
//! step decides).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One segment: steps in (previous bound, `upto`] that are multiples of `every`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    /// Inclusive upper bound of the segment; `None` is unbounded.
    pub upto: Option<u64>,
    /// Evaluate at multiples of this.
    pub every: u64,
}

/// A tracking schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Schedule {
    /// The paper's schedule: every 50 steps up to 700, every 1000 up to 3000, every 6000 after.
    /// Step 0 is not part of it (`steps(120)` = [50, 100]).
    Paper,
    /// The schedule of the paper's released code: ≤ 100 every 50; ≤ 300 every 30; ≤ 1000 every
    /// 200; ≤ 3000 every 2000; ≤ 10000 every 4000; ≤ 30000 every 6000; beyond every 20000; step 0
    /// included.
    Repo,
    /// An explicit, strictly increasing list of steps.
    List(Vec<u64>),
}

const PAPER: [Segment; 3] = [
    Segment {
        upto: Some(700),
        every: 50,
    },
    Segment {
        upto: Some(3000),
        every: 1000,
    },
    Segment {
        upto: None,
        every: 6000,
    },
];

const REPO: [Segment; 7] = [
    Segment {
        upto: Some(100),
        every: 50,
    },
    Segment {
        upto: Some(300),
        every: 30,
    },
    Segment {
        upto: Some(1000),
        every: 200,
    },
    Segment {
        upto: Some(3000),
        every: 2000,
    },
    Segment {
        upto: Some(10000),
        every: 4000,
    },
    Segment {
        upto: Some(30000),
        every: 6000,
    },
    Segment {
        upto: None,
        every: 20000,
    },
];

impl Schedule {
    /// An explicit list, validated strictly increasing and non-empty.
    pub fn list(steps: Vec<u64>) -> Result<Self> {
        if steps.is_empty() {
            return Err(Error::invalid(
                "schedule",
                "an explicit list needs at least one step",
                "[]",
            ));
        }
        if let Some(w) = steps.windows(2).find(|w| w[1] <= w[0]) {
            return Err(Error::invalid(
                "schedule",
                "steps must be strictly increasing",
                format!("{} then {}", w[0], w[1]),
            ));
        }
        Ok(Schedule::List(steps))
    }

    /// Parses `paper`, `repo` or a comma-separated list such as `0,10,100`.
    pub fn parse(s: &str) -> Result<Self> {
        match s.trim() {
            "paper" => Ok(Schedule::Paper),
            "repo" => Ok(Schedule::Repo),
            other => {
                let steps = other
                    .split(',')
                    .map(|t| {
                        t.trim().parse::<u64>().map_err(|_| {
                            Error::invalid(
                                "schedule",
                                "expected `paper`, `repo` or a list of steps like 0,50,100",
                                t,
                            )
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                Schedule::list(steps)
            }
        }
    }

    fn segments(&self) -> (&'static [Segment], bool) {
        match self {
            Schedule::Paper => (&PAPER, false),
            Schedule::Repo => (&REPO, true),
            Schedule::List(_) => (&[], false),
        }
    }

    /// Whether `step` is an evaluation step.
    pub fn contains(&self, step: u64) -> bool {
        if let Schedule::List(v) = self {
            return v.binary_search(&step).is_ok();
        }
        let (segs, zero) = self.segments();
        if step == 0 {
            return zero;
        }
        segs.iter()
            .find(|s| s.upto.is_none_or(|u| step <= u))
            .is_some_and(|s| step.is_multiple_of(s.every))
    }

    /// The exact, increasing list of evaluation steps ≤ `max_step`.
    pub fn steps(&self, max_step: u64) -> Vec<u64> {
        if let Schedule::List(v) = self {
            return v.iter().copied().take_while(|&s| s <= max_step).collect();
        }
        let (segs, zero) = self.segments();
        let mut out = Vec::new();
        if zero {
            out.push(0);
        }
        let mut lo = 0; // exclusive lower bound of the current segment
        for s in segs {
            let hi = s.upto.unwrap_or(u64::MAX).min(max_step);
            // First multiple of `every` strictly above lo.
            let mut step = (lo / s.every + 1) * s.every;
            while step <= hi {
                out.push(step);
                step += s.every;
            }
            match s.upto {
                Some(u) if u < max_step => lo = u,
                _ => break,
            }
        }
        out
    }
}

impl std::fmt::Display for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Schedule::Paper => write!(f, "paper"),
            Schedule::Repo => write!(f, "repo"),
            Schedule::List(v) => {
                let s: Vec<String> = v.iter().map(u64::to_string).collect();
                write!(f, "{}", s.join(","))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_agree_with_the_predicate() {
        for sched in [Schedule::Paper, Schedule::Repo] {
            let brute: Vec<u64> = (0..=100_000).filter(|&s| sched.contains(s)).collect();
            assert_eq!(sched.steps(100_000), brute, "{sched}");
            for max in [0, 49, 50, 700, 701, 3000, 6001, 31_000] {
                let want: Vec<u64> = brute.iter().copied().take_while(|&s| s <= max).collect();
                assert_eq!(sched.steps(max), want, "{sched} up to {max}");
            }
        }
    }

    #[test]
    fn parse_and_list_validation() {
        assert_eq!(Schedule::parse("paper").unwrap(), Schedule::Paper);
        assert_eq!(Schedule::parse("0, 5,9").unwrap().steps(6), vec![0, 5]);
        assert!(Schedule::parse("5,5").is_err());
        assert!(Schedule::parse("x").unwrap_err().to_string().contains("schedule"));
        assert!(Schedule::list(vec![]).is_err());
    }
}
