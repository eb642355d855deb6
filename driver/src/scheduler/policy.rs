//! The limits and switches the scheduler acts on when tasks fail or
//! straggle: one place, so the task set, the job and the loop agree.

use std::time::Duration;

/// When a running task gets a speculative copy (Spark's
/// `spark.speculation.*`): once `quantile` of its stage attempt's tasks
/// have succeeded, a task running longer than `multiplier` times their
/// median (and at least [`Speculation::MIN_RUNTIME`]) is copied to another
/// executor; the first attempt to succeed wins and the other is killed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Speculation {
    /// How many times slower than the median a task must be (Spark: 1.5).
    pub multiplier: f64,
    /// The fraction of tasks that must have succeeded first (Spark: 0.75).
    pub quantile: f64,
}

impl Speculation {
    /// Tasks shorter than this are never copied (Spark's
    /// `spark.speculation.minTaskRuntime`, 100 ms): a copy costs more
    /// than it can save.
    pub const MIN_RUNTIME: Duration = Duration::from_millis(100);

    /// How often running tasks are checked (Spark's
    /// `spark.speculation.interval`).
    pub(crate) const INTERVAL: Duration = Duration::from_millis(100);
}

impl Speculation {
    /// Checks the settings: a multiplier of at least 1 (a finite number)
    /// and a quantile from 0 to 1; the error names what is wrong.
    pub fn check(&self) -> Result<(), String> {
        if !(self.multiplier.is_finite() && self.multiplier >= 1.0) {
            return Err(format!(
                "speculation multiplier {} must be a number of at least 1",
                self.multiplier
            ));
        }
        if !(0.0..=1.0).contains(&self.quantile) {
            return Err(format!(
                "speculation quantile {} must be from 0 to 1",
                self.quantile
            ));
        }
        Ok(())
    }
}

impl Default for Speculation {
    fn default() -> Self {
        Speculation {
            multiplier: 1.5,
            quantile: 0.75,
        }
    }
}

/// What the scheduler tolerates before it gives up.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy {
    /// Failed attempts of one task (of the kinds that count) before its job
    /// fails (Spark's `spark.task.maxFailures`).
    pub(crate) max_task_failures: u32,
    /// Attempts of one stage, counting resubmissions after fetch failures,
    /// before its job fails (Spark's `spark.stage.maxConsecutiveAttempts`).
    pub(crate) max_stage_attempts: u32,
    /// Speculative execution, if on.
    pub(crate) speculation: Option<Speculation>,
}
