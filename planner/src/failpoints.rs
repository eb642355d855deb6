//! Failpoints: faults compiled into the code and injected only when the
//! `RIFFLE_FAILPOINTS` environment variable names them, so tests and the
//! chaos benchmark can fail, delay or damage exactly the task they mean,
//! in embedded mode and in executor processes alike (children inherit the
//! variable).
//!
//! The idea is TiKV's `fail` crate (and FoundationDB's `BUGGIFY`); Riffle
//! has its own because its points match on task identity (stage,
//! partition, attempt, executor) across processes, which a name-keyed
//! registry cannot express, and because an unset variable must cost one
//! atomic load per task, not a lock.
//!
//! The variable holds `;`-separated points, each `NAME(key=value,...)`:
//!
//! | point | where | effect |
//! |---|---|---|
//! | `task-fail(kind=K)` | executor, before the task runs | fails it with kind `retryable`, `user`, `bad-input`, `internal` or `executor-lost` |
//! | `task-delay(ms=N)` | executor, before the task runs | sleeps N ms (a kill still stops it) |
//! | `map-output-delete` | executor, after a map task stored its output | deletes the data object (the status still reports it) |
//! | `map-output-corrupt` | executor, after a map task stored its output | flips a byte of its first non-empty block |
//! | `heartbeat-drop` | executor process | stops sending heartbeats (a hung machine) |
//!
//! Every point takes the filters `job`, `stage`, `partition`, `attempt`
//! and `executor` (numbers; an absent filter matches everything). So
//! `task-fail(stage=1,partition=0,attempt=0)` fails one task once, and
//! `task-fail(stage=1,partition=0)` fails every attempt of it.

use crate::ids::{ExecutorId, TaskId};
use std::sync::OnceLock;
use std::time::Duration;

/// The environment variable failpoints are read from.
pub const ENV: &str = "RIFFLE_FAILPOINTS";

/// What a failpoint does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Fail the task with this kind of failure.
    TaskFail(crate::task::FailureKind),
    /// Sleep before running the task.
    TaskDelay(Duration),
    /// Delete the map output just stored.
    MapOutputDelete,
    /// Damage the map output just stored.
    MapOutputCorrupt,
    /// Stop heartbeating.
    HeartbeatDrop,
}

/// Where a failpoint sits (an [`Action`] without its argument).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    /// Before a task runs: `task-fail` and `task-delay`.
    TaskStart,
    /// After a map task stored its output: `map-output-delete` and
    /// `map-output-corrupt`.
    MapOutputStored,
    /// In the heartbeat loop: `heartbeat-drop`.
    Heartbeat,
}

/// One configured failpoint: an action and the tasks it applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failpoint {
    /// What it does.
    pub action: Action,
    job: Option<u32>,
    stage: Option<u32>,
    partition: Option<u32>,
    attempt: Option<u32>,
    executor: Option<u32>,
}

impl Failpoint {
    fn point(&self) -> Point {
        match self.action {
            Action::TaskFail(_) | Action::TaskDelay(_) => Point::TaskStart,
            Action::MapOutputDelete | Action::MapOutputCorrupt => Point::MapOutputStored,
            Action::HeartbeatDrop => Point::Heartbeat,
        }
    }

    fn matches(&self, task: Option<&TaskId>, executor: ExecutorId) -> bool {
        let is = |filter: Option<u32>, value: Option<u32>| {
            filter.is_none_or(|f| value.is_some_and(|v| v == f))
        };
        is(self.executor, Some(executor.0))
            && is(self.job, task.map(|t| t.job.0))
            && is(self.stage, task.map(|t| t.stage.0))
            && is(self.partition, task.map(|t| t.partition))
            && is(self.attempt, task.map(|t| t.attempt))
    }
}

/// Parses a `RIFFLE_FAILPOINTS` value; the error names the point and what
/// is wrong with it.
pub fn parse(spec: &str) -> Result<Vec<Failpoint>, String> {
    spec.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(parse_one)
        .collect()
}

fn parse_one(text: &str) -> Result<Failpoint, String> {
    let bad = |why: String| format!("{ENV}: failpoint {text:?}: {why}");
    let (name, args) = match text.split_once('(') {
        Some((name, rest)) => {
            let args = rest
                .strip_suffix(')')
                .ok_or_else(|| bad("missing `)`".into()))?;
            (name.trim(), args)
        }
        None => (text, ""),
    };
    let mut point = Failpoint {
        action: Action::HeartbeatDrop,
        job: None,
        stage: None,
        partition: None,
        attempt: None,
        executor: None,
    };
    let mut kind = None;
    let mut ms = None;
    for arg in args.split(',').map(str::trim).filter(|a| !a.is_empty()) {
        let (key, value) = arg
            .split_once('=')
            .ok_or_else(|| bad(format!("argument {arg:?} is not key=value")))?;
        let (key, value) = (key.trim(), value.trim());
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| bad(format!("{key}={value:?} is not a number")))
        };
        let small = || {
            number().and_then(|n| {
                u32::try_from(n).map_err(|_| bad(format!("{key}={value} is too large")))
            })
        };
        match key {
            "job" => point.job = Some(small()?),
            "stage" => point.stage = Some(small()?),
            "partition" => point.partition = Some(small()?),
            "attempt" => point.attempt = Some(small()?),
            "executor" => point.executor = Some(small()?),
            "ms" => ms = Some(number()?),
            "kind" => kind = Some(value.to_string()),
            other => return Err(bad(format!("unknown argument {other:?}"))),
        }
    }
    use crate::task::FailureKind;
    point.action = match name {
        "task-fail" => Action::TaskFail(match kind.as_deref().unwrap_or("retryable") {
            "retryable" => FailureKind::Retryable,
            "user" => FailureKind::User,
            "bad-input" => FailureKind::BadInput,
            "internal" => FailureKind::Internal,
            "executor-lost" => FailureKind::ExecutorLost,
            other => {
                return Err(bad(format!(
                    "kind={other:?}: expected retryable, user, bad-input, internal or executor-lost"
                )));
            }
        }),
        "task-delay" => Action::TaskDelay(Duration::from_millis(
            ms.ok_or_else(|| bad("task-delay needs ms=N".into()))?,
        )),
        "map-output-delete" => Action::MapOutputDelete,
        "map-output-corrupt" => Action::MapOutputCorrupt,
        "heartbeat-drop" => Action::HeartbeatDrop,
        other => {
            return Err(bad(format!(
                "unknown failpoint {other:?}: expected task-fail, task-delay, map-output-delete, map-output-corrupt or heartbeat-drop"
            )));
        }
    };
    if kind.is_some() && !matches!(point.action, Action::TaskFail(_)) {
        return Err(bad("kind= applies to task-fail only".into()));
    }
    if ms.is_some() && !matches!(point.action, Action::TaskDelay(_)) {
        return Err(bad("ms= applies to task-delay only".into()));
    }
    Ok(point)
}

/// The failpoints of this process, read from [`ENV`] once. A value that
/// does not parse configures none here (the driver refuses to start with
/// it: see [`check_env`]).
fn configured() -> &'static [Failpoint] {
    static POINTS: OnceLock<Vec<Failpoint>> = OnceLock::new();
    POINTS.get_or_init(|| {
        std::env::var(ENV)
            .ok()
            .and_then(|spec| parse(&spec).ok())
            .unwrap_or_default()
    })
}

/// Checks [`ENV`], so that a driver fails at start-up on a misspelt
/// failpoint instead of silently injecting nothing.
pub fn check_env() -> Result<(), String> {
    match std::env::var(ENV) {
        Ok(spec) => parse(&spec).map(drop),
        Err(_) => Ok(()),
    }
}

/// The first configured failpoint at `point` matching `task` (none for
/// per-process points) on `executor`. With nothing configured this is one
/// load of an initialised `OnceLock`.
pub fn hit(point: Point, task: Option<&TaskId>, executor: ExecutorId) -> Option<&'static Action> {
    configured()
        .iter()
        .find(|f| f.point() == point && f.matches(task, executor))
        .map(|f| &f.action)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{JobId, StageId};
    use crate::task::FailureKind;

    fn task(stage: u32, partition: u32, attempt: u32) -> TaskId {
        TaskId {
            job: JobId(1),
            stage: StageId(stage),
            partition,
            attempt,
        }
    }

    #[test]
    fn points_parse_and_match_on_task_identity() {
        let points = parse(
            "task-fail(stage=1, partition=0, attempt=0, kind=user); task-delay(ms=250,executor=2); map-output-delete(stage=0,partition=3);heartbeat-drop",
        )
        .unwrap();
        assert_eq!(points.len(), 4);
        assert_eq!(points[0].action, Action::TaskFail(FailureKind::User));
        assert!(points[0].matches(Some(&task(1, 0, 0)), ExecutorId(0)));
        assert!(!points[0].matches(Some(&task(1, 0, 1)), ExecutorId(0)));
        assert!(!points[0].matches(Some(&task(2, 0, 0)), ExecutorId(0)));
        assert_eq!(
            points[1].action,
            Action::TaskDelay(Duration::from_millis(250))
        );
        assert!(points[1].matches(Some(&task(5, 5, 5)), ExecutorId(2)));
        assert!(!points[1].matches(Some(&task(5, 5, 5)), ExecutorId(1)));
        assert!(points[2].matches(Some(&task(0, 3, 7)), ExecutorId(0)));
        assert_eq!(points[3].point(), Point::Heartbeat);
        assert!(points[3].matches(None, ExecutorId(4)));
    }

    #[test]
    fn bad_specs_name_the_point_and_the_problem() {
        for (spec, expected) in [
            ("task-explode", "unknown failpoint \"task-explode\""),
            ("task-fail(stage=x)", "stage=\"x\" is not a number"),
            ("task-fail(kind=oops)", "kind=\"oops\""),
            ("task-delay", "needs ms=N"),
            ("task-fail(stage=1", "missing `)`"),
            ("task-fail(colour=red)", "unknown argument \"colour\""),
            ("map-output-delete(ms=5)", "ms= applies to task-delay only"),
            ("task-fail(stage)", "is not key=value"),
            ("task-fail(stage=99999999999)", "too large"),
        ] {
            let err = parse(spec).unwrap_err();
            assert!(err.contains(ENV) && err.contains(expected), "{spec}: {err}");
        }
        assert_eq!(parse(" ; ").unwrap(), Vec::new());
    }
}
