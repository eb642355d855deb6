//! Newtype ids. They are never bare integers so that a stage id cannot be
//! passed where a shuffle id is expected.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub struct $name(pub u32);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "-{}"), self.0)
            }
        }
    };
}

id_type!(
    /// One action run by the driver (`collect`, `count`, ...).
    JobId,
    "job"
);
id_type!(
    /// A stage of a job: a fused pipeline of narrow operators.
    StageId,
    "stage"
);
id_type!(
    /// One shuffle: the output of a map stage, read by one reduce side.
    ShuffleId,
    "shuffle"
);
id_type!(
    /// An executor (an embedded slot group or a remote process).
    ExecutorId,
    "executor"
);

/// A task: one partition of one stage, in one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TaskId {
    /// The job the task belongs to.
    pub job: JobId,
    /// The stage the task belongs to.
    pub stage: StageId,
    /// The partition of the stage the task computes.
    pub partition: u32,
    /// The attempt number, starting at 0.
    pub attempt: u32,
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/task-{} (attempt {})",
            self.job, self.stage, self.partition, self.attempt
        )
    }
}
