//! Making records: a run configuration ([`config`], [`spec`]) and its plan of cells ([`plan`]), the
//! runner that trains and evaluates each cell and writes its JSONL records ([`runner`],
//! [`records`]), the upstream backbone ([`upstream`]) and the task measurements made with it
//! ([`tasks`]), learning-rate tuning ([`tune`]), the time a configuration will take
//! ([`estimate`]), and Slurm ([`slurm`]).

pub mod config;
pub mod data;
pub mod estimate;
pub mod folder;
pub mod inputs;
pub mod plan;
pub mod records;
pub mod runner;
pub mod slurm;
pub mod spec;
pub mod tasks;
pub mod tune;
pub mod upstream;
