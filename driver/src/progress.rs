//! Progress bars on the console: one line per running stage attempt with
//! tasks done/total, rows and bytes read, elapsed time and an estimate of
//! what is left (Spark's `ConsoleProgressBar`, drawn with `indicatif`).
//!
//! Off unless asked for (`ContextBuilder::progress(true)` or
//! `RIFFLE_PROGRESS=1`); even then nothing is drawn when stderr is not a
//! terminal. All bars live in one [`MultiProgress`] per process, and log
//! lines go through [`suspend`] (see `riffle::init_logging`), which clears
//! the bars, writes the line and redraws them, so logging never tears a
//! bar.

use crate::scheduler::events::{EventListener, SchedulerEvent};
use indicatif::{
    HumanBytes, HumanCount, MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle,
};
use riffle_planner::ids::{JobId, StageId, TaskId};
use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::Duration;

/// The process's bars, drawn on stderr (hidden when it is not a terminal).
static BARS: LazyLock<MultiProgress> =
    LazyLock::new(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));

/// Whether bars on this process's stderr would be drawn (it is a
/// terminal). When not, the context registers no progress listener: its
/// per-task bookkeeping would cost every task for nothing.
pub(crate) fn drawn() -> bool {
    !BARS.is_hidden()
}

/// Runs `f` (which writes to stderr) with the bars cleared, then redraws
/// them.
pub fn suspend<R>(f: impl FnOnce() -> R) -> R {
    BARS.suspend(f)
}

/// How often a bar redraws by itself, so elapsed time moves between tasks.
const TICK: Duration = Duration::from_millis(250);

struct StageBar {
    bar: ProgressBar,
    records: u64,
    bytes: u64,
}

/// Draws a bar per running stage attempt from scheduler events.
pub(crate) struct ProgressListener {
    multi: MultiProgress,
    bars: HashMap<(JobId, StageId, u32), StageBar>,
    /// The stage attempt of each running task attempt.
    task_stage: HashMap<TaskId, u32>,
}

impl ProgressListener {
    /// Bars on the process's stderr.
    pub(crate) fn new() -> Self {
        Self::with_bars(BARS.clone())
    }

    /// Bars in `multi` (tests draw into an in-memory terminal).
    pub(crate) fn with_bars(multi: MultiProgress) -> Self {
        ProgressListener {
            multi,
            bars: HashMap::new(),
            task_stage: HashMap::new(),
        }
    }

    fn style() -> ProgressStyle {
        ProgressStyle::with_template(
            "{prefix:>14} [{bar:30.cyan/blue}] {pos}/{len} tasks {percent:>3}% | {msg} | {elapsed} elapsed, ~{eta} left",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
    }
}

impl EventListener for ProgressListener {
    fn on_event(&mut self, event: &SchedulerEvent) {
        match event {
            SchedulerEvent::StageSubmitted {
                job,
                stage,
                attempt,
                tasks,
                ..
            } => {
                let bar = self.multi.add(ProgressBar::new(*tasks as u64));
                bar.set_style(Self::style());
                bar.set_prefix(format!("{job} {stage}.{attempt}"));
                bar.set_message("0 rows, 0 B read");
                bar.enable_steady_tick(TICK);
                self.bars.insert(
                    (*job, *stage, *attempt),
                    StageBar {
                        bar,
                        records: 0,
                        bytes: 0,
                    },
                );
            }
            SchedulerEvent::TaskStarted {
                task,
                stage_attempt,
                ..
            } => {
                self.task_stage.insert(*task, *stage_attempt);
            }
            SchedulerEvent::TaskEnded {
                task,
                metrics,
                failure,
                ..
            } => {
                let Some(attempt) = self.task_stage.remove(task) else {
                    return;
                };
                if let Some(s) = self.bars.get_mut(&(task.job, task.stage, attempt)) {
                    s.records += metrics.records_read;
                    s.bytes += metrics.bytes_read;
                    if failure.is_none() {
                        s.bar.inc(1);
                    }
                    s.bar.set_message(format!(
                        "{} rows, {} read",
                        HumanCount(s.records),
                        HumanBytes(s.bytes)
                    ));
                }
            }
            SchedulerEvent::StageCompleted {
                job,
                stage,
                attempt,
                ..
            } => {
                if let Some(s) = self.bars.remove(&(*job, *stage, *attempt)) {
                    // Drawn once at its end state, then cleared, as
                    // Spark's console bar disappears with its stage.
                    s.bar.finish();
                    s.bar.finish_and_clear();
                    self.multi.remove(&s.bar);
                }
            }
            SchedulerEvent::JobEnded { job, .. } => {
                let ended: Vec<_> = self.bars.keys().filter(|k| k.0 == *job).copied().collect();
                for key in ended {
                    if let Some(s) = self.bars.remove(&key) {
                        s.bar.finish_and_clear();
                        self.multi.remove(&s.bar);
                    }
                }
                self.task_stage.retain(|t, _| t.job != *job);
            }
            SchedulerEvent::JobStarted { .. }
            | SchedulerEvent::ExecutorAdded { .. }
            | SchedulerEvent::ExecutorRemoved { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use indicatif::InMemoryTerm;
    use riffle_planner::ids::ExecutorId;
    use riffle_planner::task::TaskMetrics;

    #[test]
    fn a_stage_bar_counts_tasks_rows_and_bytes_up_to_100_percent() {
        let term = InMemoryTerm::new(10, 160);
        let multi =
            MultiProgress::with_draw_target(ProgressDrawTarget::term_like(Box::new(term.clone())));
        let mut progress = ProgressListener::with_bars(multi);
        let (job, stage) = (JobId(3), StageId(1));
        progress.on_event(&SchedulerEvent::StageSubmitted {
            job,
            stage,
            attempt: 0,
            tasks: 4,
            name: "map".into(),
        });
        for partition in 0..4 {
            let task = TaskId {
                job,
                stage,
                partition,
                attempt: 0,
            };
            progress.on_event(&SchedulerEvent::TaskStarted {
                task,
                executor: ExecutorId(0),
                stage_attempt: 0,
                speculative: false,
            });
            progress.on_event(&SchedulerEvent::TaskEnded {
                task,
                executor: ExecutorId(0),
                duration: Duration::from_millis(5),
                metrics: TaskMetrics {
                    records_read: 1000,
                    bytes_read: 1 << 20,
                    ..Default::default()
                },
                failure: None,
            });
        }
        // Draws are rate-limited: the bar's finish draws its end state.
        let s = &progress.bars[&(job, stage, 0)];
        s.bar.finish();
        let screen = term.contents();
        assert!(screen.contains("job-3 stage-1.0"), "{screen}");
        assert!(screen.contains("4/4 tasks 100%"), "{screen}");
        assert!(screen.contains("4,000 rows, 4.00 MiB read"), "{screen}");
        progress.on_event(&SchedulerEvent::StageCompleted {
            job,
            stage,
            attempt: 0,
            elapsed: Duration::from_millis(20),
            failure: None,
        });
        assert!(progress.bars.is_empty());
        assert_eq!(
            term.contents().trim(),
            "",
            "a finished stage's bar is cleared"
        );
    }
}
