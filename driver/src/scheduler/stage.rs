//! Stage states and planning a stage's tasks once its parents are
//! available.
//!
//! ```text
//!   Waiting ──parents available──► Running ──all tasks succeeded──► Available
//!      ▲                             │                                 │
//!      │  fetch failure: this stage's attempt ends; its parent's lost  │
//!      └── outputs are recomputed first (new attempts of both) ◄───────┘
//!                                                  (an output of it was lost)
//!   any state ── job failed or cancelled ──► Failed
//! ```
//!
//! A stage is planned each time an attempt of it is submitted, because
//! its tasks name the exact map outputs (from the tracker) of the attempts
//! that won; an attempt runs only the partitions that have no output.

use super::graph::{PipelineSink, StageKind, StageNode};
use super::map_output::MapOutputTracker;
use super::task_set::TaskSet;
use crate::dataset::{Node, NodeKind, WriterSpec};
use crate::error::DriverError;
use crate::executors::StageMessage;
use riffle_planner::function::FnRef;
use riffle_planner::ids::{JobId, ShuffleId, StageId};
use riffle_planner::task::{
    MapStatus, OpIndex, PartitionPlan, ShuffleInput, StageSink, StageSpec, TaskOutput, encode,
};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

/// Where a stage is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StageState {
    /// Some parent is not available yet.
    Waiting,
    /// Its task set runs.
    Running,
    /// Every partition's output is registered.
    Available,
    /// The job failed or was cancelled before it finished.
    Failed,
}

/// A stage's run state within its job.
pub(crate) struct StageRun {
    pub(crate) state: StageState,
    /// The current stage attempt, from 0 (the next one, while waiting to
    /// be resubmitted).
    pub(crate) attempt: u32,
    /// Whether an attempt was ever submitted (the next submission is then
    /// a new attempt).
    pub(crate) submitted_once: bool,
    /// Attempts of this stage that ended in a fetch failure.
    pub(crate) fetch_failed_attempts: u32,
    /// Outputs of the partitions that succeeded, across attempts (result,
    /// sample and file stages; map outputs live in the tracker).
    pub(crate) outputs: Vec<Option<TaskOutput>>,
    /// Each partition's next task attempt number, across stage attempts.
    pub(crate) next_attempt: Vec<u32>,
    /// The current attempt's tasks (while running).
    pub(crate) tasks: Option<TaskSet>,
    /// The encoded spec, sent once to each executor running its tasks.
    pub(crate) message: Option<Arc<StageMessage>>,
    /// When the current attempt was submitted.
    pub(crate) submitted: Option<Instant>,
}

impl StageRun {
    pub(crate) fn new(partitions: usize) -> StageRun {
        StageRun {
            state: StageState::Waiting,
            attempt: 0,
            submitted_once: false,
            fetch_failed_attempts: 0,
            outputs: vec![None; partitions],
            next_attempt: vec![0; partitions],
            tasks: None,
            message: None,
            submitted: None,
        }
    }
}

/// The spec and per-partition plans of a stage whose parents are
/// available. `samples` holds the results of finished sampling stages.
pub(crate) fn plan_stage(
    job: JobId,
    node: &StageNode,
    attempt: u32,
    tracker: &MapOutputTracker,
    samples: &HashMap<StageId, Vec<Vec<u8>>>,
) -> Result<(StageSpec, Vec<PartitionPlan>), DriverError> {
    let available = tracker.available();
    match &node.kind {
        StageKind::Pipeline { node: root, sink } => {
            let mut builder = StageBuilder {
                ops: Vec::new(),
                index: HashMap::new(),
                map_outputs: &available,
            };
            let plans = (0..root.partitions)
                .map(|p| builder.plan(root, p))
                .collect::<Result<Vec<_>, _>>()?;
            let mut ops = builder.ops;
            let mut push = |f: FnRef| {
                ops.push(f);
                (ops.len() - 1) as OpIndex
            };
            let sink = match sink {
                PipelineSink::Shuffle {
                    shuffle,
                    writer,
                    partitions,
                    samples: sampled,
                } => {
                    let writer = match writer {
                        WriterSpec::Ready(f) => f.clone(),
                        WriterSpec::Sampled {
                            make, ascending, ..
                        } => {
                            let results = sampled
                                .and_then(|s| samples.get(&s))
                                .cloned()
                                .ok_or_else(|| {
                                    DriverError::Internal(format!(
                                        "{}: range bounds needed before their samples",
                                        node.id
                                    ))
                                })?;
                            make(results, *partitions as usize, *ascending)
                                .map_err(|e| DriverError::Internal(format!("range bounds: {e}")))?
                        }
                    };
                    StageSink::Shuffle {
                        shuffle: *shuffle,
                        writer: push(writer),
                        partitions: *partitions,
                    }
                }
                PipelineSink::Sample { sampler } => StageSink::Result {
                    op: push(sampler.clone()),
                },
                PipelineSink::Arrow { shuffle, op } => StageSink::Arrow {
                    shuffle: *shuffle,
                    op: push(op.clone()),
                },
                PipelineSink::Result(op) => StageSink::Result {
                    op: push(op.clone()),
                },
                PipelineSink::SaveText { op, dir } => StageSink::SaveText {
                    op: push(op.clone()),
                    dir: dir.clone(),
                },
            };
            let spec = StageSpec {
                job,
                stage: node.id,
                attempt,
                ops,
                sink,
            };
            Ok((spec, plans))
        }
        StageKind::Sql { plan, output } => {
            let plan_error = |e: riffle_sql::datafusion::error::DataFusionError| {
                DriverError::Plan(riffle_planner::report(&e))
            };
            // Dataset tables were written by parent stages: read them.
            let plan = crate::sql_dataset::as_shipped(plan.clone()).map_err(plan_error)?;
            let plan = riffle_sql::stages::resolve(plan, &available).map_err(plan_error)?;
            let bytes = riffle_sql::codec::encode_plan(plan).map_err(plan_error)?;
            let spec = StageSpec {
                job,
                stage: node.id,
                attempt,
                ops: Vec::new(),
                sink: StageSink::Sql {
                    plan: bytes,
                    output: output.clone(),
                },
            };
            let plans = (0..node.partitions as u32)
                .map(|partition| PartitionPlan::Sql { partition })
                .collect();
            Ok((spec, plans))
        }
    }
}

/// Encodes a stage spec once, for every executor that runs its tasks.
pub(crate) fn stage_message(spec: &StageSpec) -> Result<Arc<StageMessage>, DriverError> {
    Ok(Arc::new(StageMessage {
        job: spec.job,
        stage: spec.stage,
        attempt: spec.attempt,
        bytes: Arc::new(encode(spec).map_err(|e| DriverError::Plan(riffle_planner::report(&e)))?),
    }))
}

/// Builds the partition plans of one Dataset stage, collecting its
/// operators (each node's operator once, shared by index).
struct StageBuilder<'a> {
    ops: Vec<FnRef>,
    /// Operator index of each node already seen (by node address).
    index: HashMap<*const Node, OpIndex>,
    map_outputs: &'a HashMap<ShuffleId, Vec<MapStatus>>,
}

impl StageBuilder<'_> {
    fn op(&mut self, node: &Arc<Node>, f: &FnRef) -> OpIndex {
        *self.index.entry(Arc::as_ptr(node)).or_insert_with(|| {
            self.ops.push(f.clone());
            (self.ops.len() - 1) as OpIndex
        })
    }

    fn statuses(&self, shuffle: &ShuffleId) -> Result<&Vec<MapStatus>, DriverError> {
        self.map_outputs.get(shuffle).ok_or_else(|| {
            DriverError::Internal(format!("{shuffle} was not computed before its reader"))
        })
    }

    fn plan(&mut self, node: &Arc<Node>, p: usize) -> Result<PartitionPlan, DriverError> {
        Ok(match &node.kind {
            NodeKind::Invalid { error } => return Err(DriverError::Plan(error.clone())),
            NodeKind::Parallelize { op, slices } => PartitionPlan::Parallelize {
                op: self.op(node, op),
                data: slices[p].clone(),
            },
            NodeKind::TextFile { splits } => PartitionPlan::TextFile(splits[p].clone()),
            NodeKind::SqlResult {
                shuffle, decode, ..
            } => {
                let status = self.statuses(shuffle)?.get(p).ok_or_else(|| {
                    DriverError::Internal(format!("{shuffle} has no map partition {p}"))
                })?;
                let blocks = status.block_location(p as u32, 0).into_iter().collect();
                PartitionPlan::ArrowBlocks {
                    op: self.op(node, decode),
                    shuffle: *shuffle,
                    blocks,
                }
            }
            NodeKind::Narrow { op, parent } => {
                let input = Box::new(self.plan(parent, p)?);
                PartitionPlan::Narrow {
                    op: self.op(node, op),
                    input,
                }
            }
            NodeKind::Union { parents } => {
                let mut offset = p;
                for parent in parents {
                    if offset < parent.partitions {
                        return self.plan(parent, offset);
                    }
                    offset -= parent.partitions;
                }
                return Err(DriverError::Internal(format!("union has no partition {p}")));
            }
            NodeKind::Coalesce { op, parent, groups } => {
                let inputs = groups[p]
                    .clone()
                    .map(|q| self.plan(parent, q))
                    .collect::<Result<Vec<_>, _>>()?;
                PartitionPlan::Concat {
                    op: self.op(node, op),
                    inputs,
                }
            }
            NodeKind::Shuffled { reducer, deps } => {
                let mut inputs = Vec::with_capacity(deps.len());
                for dep in deps {
                    let blocks = self
                        .statuses(&dep.shuffle)?
                        .iter()
                        .enumerate()
                        .filter_map(|(m, status)| status.block_location(m as u32, p))
                        .collect();
                    inputs.push(ShuffleInput {
                        shuffle: dep.shuffle,
                        partition: p as u32,
                        blocks,
                    });
                }
                PartitionPlan::Shuffled {
                    op: self.op(node, reducer),
                    inputs,
                }
            }
        })
    }
}
