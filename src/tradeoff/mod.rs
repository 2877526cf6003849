//! Tradeoff curves shared by the simulator and the validation runs: Pareto frontiers and the
//! area under them, tracking schedules, and ranking statistics.

pub mod bootstrap;
pub mod pareto;
pub mod peak;
pub mod schedule;
pub mod stats;

pub use pareto::{AucRule, Point, above_average, auc, frontier, points};
pub use peak::{Peak, peak};
pub use schedule::{Schedule, Segment};
pub use stats::{Interval, spearman, wilson};
