//! Conversions between protocol messages and Riffle's types, both ways.
//! Decoding validates: a message missing a required field is an error that
//! names the field, never a default that changes meaning.

use super::v1;
use crate::ids::{ExecutorId, JobId, ShuffleId, StageId, TaskId};
use crate::task::{
    BlockInfo, FailureKind, MapStatus, TaskFailure, TaskMetrics, TaskOutput, TaskStatus,
};
use thiserror::Error;

/// A protocol message that does not describe a valid value.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("invalid {message}: {problem}")]
pub struct ConvertError {
    /// The message type.
    pub message: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

fn missing(message: &'static str, field: &str) -> ConvertError {
    ConvertError {
        message,
        problem: format!("field `{field}` is missing"),
    }
}

impl From<TaskId> for v1::TaskKey {
    fn from(id: TaskId) -> Self {
        v1::TaskKey {
            job: id.job.0,
            stage: id.stage.0,
            partition: id.partition,
            attempt: id.attempt,
        }
    }
}

impl From<v1::TaskKey> for TaskId {
    fn from(key: v1::TaskKey) -> Self {
        TaskId {
            job: JobId(key.job),
            stage: StageId(key.stage),
            partition: key.partition,
            attempt: key.attempt,
        }
    }
}

impl From<&TaskMetrics> for v1::TaskMetrics {
    fn from(m: &TaskMetrics) -> Self {
        v1::TaskMetrics {
            run_micros: m.run_micros,
            records_read: m.records_read,
            bytes_read: m.bytes_read,
            shuffle_bytes_written: m.shuffle_bytes_written,
            invalid_utf8_lines: m.invalid_utf8_lines,
            shuffle_records_written: m.shuffle_records_written,
            shuffle_bytes_read: m.shuffle_bytes_read,
            spilled_bytes: m.spilled_bytes,
            spill_count: m.spill_count,
        }
    }
}

impl From<v1::TaskMetrics> for TaskMetrics {
    fn from(m: v1::TaskMetrics) -> Self {
        TaskMetrics {
            run_micros: m.run_micros,
            records_read: m.records_read,
            bytes_read: m.bytes_read,
            shuffle_bytes_written: m.shuffle_bytes_written,
            invalid_utf8_lines: m.invalid_utf8_lines,
            shuffle_records_written: m.shuffle_records_written,
            shuffle_bytes_read: m.shuffle_bytes_read,
            spilled_bytes: m.spilled_bytes,
            spill_count: m.spill_count,
        }
    }
}

impl From<&TaskFailure> for v1::TaskFailure {
    fn from(f: &TaskFailure) -> Self {
        let mut proto = v1::TaskFailure {
            message: f.message.clone(),
            ..Default::default()
        };
        let kind = match &f.kind {
            FailureKind::Retryable => v1::FailureKind::Retryable,
            FailureKind::ExecutorLost => v1::FailureKind::ExecutorLost,
            FailureKind::FetchFailed {
                shuffle,
                map_partition,
                data_path,
            } => {
                proto.shuffle = shuffle.0;
                proto.map_partition = *map_partition;
                proto.data_path = data_path.clone();
                v1::FailureKind::FetchFailed
            }
            FailureKind::User => v1::FailureKind::User,
            FailureKind::BadInput => v1::FailureKind::BadInput,
            FailureKind::Internal => v1::FailureKind::Internal,
            FailureKind::Killed => v1::FailureKind::Killed,
        };
        proto.kind = kind as i32;
        proto
    }
}

impl TryFrom<v1::TaskFailure> for TaskFailure {
    type Error = ConvertError;

    fn try_from(f: v1::TaskFailure) -> Result<Self, ConvertError> {
        let kind = match v1::FailureKind::try_from(f.kind) {
            Ok(v1::FailureKind::Retryable) => FailureKind::Retryable,
            Ok(v1::FailureKind::ExecutorLost) => FailureKind::ExecutorLost,
            Ok(v1::FailureKind::FetchFailed) if f.data_path.is_empty() => {
                return Err(missing("TaskFailure", "data_path"));
            }
            Ok(v1::FailureKind::FetchFailed) => FailureKind::FetchFailed {
                shuffle: ShuffleId(f.shuffle),
                map_partition: f.map_partition,
                data_path: f.data_path,
            },
            Ok(v1::FailureKind::User) => FailureKind::User,
            Ok(v1::FailureKind::BadInput) => FailureKind::BadInput,
            Ok(v1::FailureKind::Internal) => FailureKind::Internal,
            Ok(v1::FailureKind::Killed) => FailureKind::Killed,
            Ok(v1::FailureKind::Unspecified) | Err(_) => {
                return Err(ConvertError {
                    message: "TaskFailure",
                    problem: format!("unknown failure kind {}", f.kind),
                });
            }
        };
        Ok(TaskFailure {
            kind,
            message: f.message,
        })
    }
}

impl From<&TaskStatus> for v1::TaskStatus {
    fn from(s: &TaskStatus) -> Self {
        let result = match &s.result {
            Ok(TaskOutput::Shuffle(status)) => v1::task_status::Outcome::MapOutput(v1::MapOutput {
                data_path: status.data_path.clone(),
                blocks: status
                    .blocks
                    .iter()
                    .map(|b| v1::Block {
                        offset: b.offset,
                        len: b.len,
                        rows: b.rows,
                        checksum: b.checksum,
                    })
                    .collect(),
            }),
            Ok(TaskOutput::Result(bytes)) => v1::task_status::Outcome::ResultBytes(bytes.clone()),
            Ok(TaskOutput::Written { path }) => v1::task_status::Outcome::WrittenPath(path.clone()),
            Err(failure) => v1::task_status::Outcome::Failure(failure.into()),
        };
        v1::TaskStatus {
            task: Some(s.id.into()),
            outcome: Some(result),
            metrics: Some((&s.metrics).into()),
        }
    }
}

/// Decodes a status reported by `executor`.
pub fn status_from_proto(
    s: v1::TaskStatus,
    executor: ExecutorId,
) -> Result<TaskStatus, ConvertError> {
    let id: TaskId = s.task.ok_or_else(|| missing("TaskStatus", "task"))?.into();
    let result = match s.outcome.ok_or_else(|| missing("TaskStatus", "outcome"))? {
        v1::task_status::Outcome::MapOutput(m) => Ok(TaskOutput::Shuffle(MapStatus {
            data_path: m.data_path,
            blocks: m
                .blocks
                .into_iter()
                .map(|b| BlockInfo {
                    offset: b.offset,
                    len: b.len,
                    rows: b.rows,
                    checksum: b.checksum,
                })
                .collect(),
        })),
        v1::task_status::Outcome::ResultBytes(bytes) => Ok(TaskOutput::Result(bytes)),
        v1::task_status::Outcome::WrittenPath(path) => Ok(TaskOutput::Written { path }),
        v1::task_status::Outcome::Failure(f) => Err(TaskFailure::try_from(f)?),
    };
    Ok(TaskStatus {
        id,
        executor,
        result,
        metrics: s.metrics.map(Into::into).unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> TaskId {
        TaskId {
            job: JobId(1),
            stage: StageId(2),
            partition: 3,
            attempt: 1,
        }
    }

    #[test]
    fn statuses_round_trip() {
        let outputs = vec![
            Ok(TaskOutput::Shuffle(MapStatus {
                data_path: "a/b.data".into(),
                blocks: vec![BlockInfo {
                    offset: 0,
                    len: 5,
                    rows: 2,
                    checksum: 0xdead_beef,
                }],
            })),
            Ok(TaskOutput::Result(vec![1, 2, 3])),
            Ok(TaskOutput::Written {
                path: "file:///x".into(),
            }),
            Err(TaskFailure {
                kind: FailureKind::FetchFailed {
                    shuffle: ShuffleId(4),
                    map_partition: 5,
                    data_path: "a/b.data".into(),
                },
                message: "gone".into(),
            }),
            Err(TaskFailure {
                kind: FailureKind::ExecutorLost,
                message: "lost".into(),
            }),
            Err(TaskFailure {
                kind: FailureKind::User,
                message: "panic".into(),
            }),
            Err(TaskFailure {
                kind: FailureKind::Killed,
                message: "cancelled".into(),
            }),
        ];
        for result in outputs {
            let status = TaskStatus {
                id: id(),
                executor: ExecutorId(9),
                result,
                metrics: TaskMetrics {
                    run_micros: 7,
                    ..TaskMetrics::default()
                },
            };
            let back = status_from_proto((&status).into(), ExecutorId(9)).unwrap();
            assert_eq!(format!("{back:?}"), format!("{status:?}"));
        }
    }

    #[test]
    fn killed_travels_as_its_own_kind() {
        let failure = TaskFailure {
            kind: FailureKind::Killed,
            message: "job-1 cancelled".into(),
        };
        let wire = v1::TaskFailure::from(&failure);
        assert_eq!(wire.kind, 6, "FAILURE_KIND_KILLED is 6 on the wire");
        let back = TaskFailure::try_from(wire).unwrap();
        assert_eq!(back, failure);
        assert!(back.kind.is_killed() && !back.kind.retryable());
    }

    #[test]
    fn missing_fields_are_named() {
        let err = status_from_proto(v1::TaskStatus::default(), ExecutorId(0)).unwrap_err();
        assert!(err.to_string().contains("`task`"), "{err}");
        let bad_kind = v1::TaskStatus {
            task: Some(id().into()),
            outcome: Some(v1::task_status::Outcome::Failure(v1::TaskFailure {
                kind: 99,
                ..Default::default()
            })),
            metrics: None,
        };
        assert!(
            status_from_proto(bad_kind, ExecutorId(0))
                .unwrap_err()
                .to_string()
                .contains("99")
        );
    }
}
