//! riffle-driver: the program side of Riffle.
//!
//! - [`Context`]: the entry point; owns the embedded executors, the
//!   shuffle store and the runtime, and creates datasets
//!   (`parallelize`, `text_file`).
//! - [`Dataset`]: the typed, lazy dataset API (transformations in
//!   `dataset::narrow` and `dataset::pair`, actions in `dataset::actions`).
//! - [`scheduler`]: cuts a job into stages at shuffle boundaries and
//!   runs them as tasks on the executors, from one event loop that
//!   publishes [`SchedulerEvent`]s.
//!
//! ```text
//!  Dataset lineage --(action)--> scheduler: stages in dependency order
//!     each stage: StageSpec (ops) + one TaskSpec per partition, as bytes
//!     --> Executor::launch --> TaskStatus (map status | result bytes)
//! ```
//!
//! Architecture invariant: only this crate knows about the cluster as a whole.

mod cluster;
pub mod context;
pub mod dataset;
pub mod error;
mod executors;
mod jobs;
pub mod launch;
pub mod progress;
mod runtime;
pub mod scheduler;
pub mod sql;
mod sql_dataset;
mod sql_insert;
pub mod ui;

pub use context::{Config, Context, ContextBuilder, JobSummary, StageSummary};
pub use dataset::{Data, Dataset};
pub use error::DriverError;
pub use launch::Master;
pub use riffle_planner::function::Shippable;
pub use scheduler::events::{JobOutcome, SchedulerEvent};
pub use scheduler::{JobHandle, SchedulingMode, Speculation};
pub use sql::{SqlFrame, StatementOutput};
pub use ui::UiConfig;
