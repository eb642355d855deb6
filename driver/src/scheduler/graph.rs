//! The stage graph of one job, built once from the Dataset lineage or the
//! SQL stages, in one walk.
//!
//! A Dataset stage is the set of nodes reachable from its root without
//! crossing a shuffle; SQL stages come cut from DataFusion's plan
//! (`riffle_sql::stages::split`). Both kinds meet here: a Dataset read of
//! a query (`SqlResult`) depends on the query's stages, and a query over a
//! Dataset table depends on the stage writing the dataset's rows. Stages
//! are numbered in creation order, parents first, so the final stage is
//! the last one; a shuffle read twice is written by one stage.

use crate::dataset::{Node, NodeKind, ShuffleDep, WriterSpec};
use crate::error::DriverError;
use crate::sql_dataset::DatasetScanExec;
use riffle_planner::function::FnRef;
use riffle_planner::ids::{ShuffleId, StageId};
use riffle_planner::task::SqlOutput;
use riffle_sql::datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use riffle_sql::datafusion::physical_plan::ExecutionPlan;
use riffle_sql::exec::ShuffleReaderExec;
use riffle_sql::stages::SqlStage;
use std::collections::HashMap;
use std::sync::Arc;

/// What a job computes, as submitted by an action.
pub(crate) enum JobSpec {
    /// A Dataset action: the lineage ending at `node`, and what its final
    /// stage does with each partition.
    Dataset {
        /// The dataset's last node.
        node: Arc<Node>,
        /// The final stage's sink.
        sink: FinalSink,
    },
    /// A SQL query: its stages, producers first, the last one producing
    /// `output` (result bytes or files).
    Sql {
        /// The stages from `riffle_sql::stages::split`.
        stages: Vec<SqlStage>,
        /// What the result stage does.
        output: SqlOutput,
    },
}

/// What the last stage of a Dataset job does with its partitions.
pub(crate) enum FinalSink {
    /// Return bytes from a `ResultOp` to the driver.
    Result(FnRef),
    /// Write text files under `dir` (a URL) and commit them.
    SaveText {
        /// The `ResultOp` encoding a partition as text.
        op: FnRef,
        /// The output directory URL.
        dir: String,
    },
}

/// Where a job's final output goes, for the committer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum JobOutput {
    /// Result bytes returned to the caller.
    Results,
    /// Files under `dir` named `part-NNNNN{suffix}`, committed at the end.
    Files {
        /// The output directory URL.
        dir: String,
        /// File name suffix (`.parquet`, `.csv`, or none for text).
        suffix: String,
    },
}

/// What a Dataset stage's tasks do with the partition they computed.
pub(crate) enum PipelineSink {
    /// Write a shuffle with `partitions` reduce partitions. A range writer
    /// (`WriterSpec::Sampled`) is made from the results of `samples`.
    Shuffle {
        /// The shuffle written.
        shuffle: ShuffleId,
        /// The map-side writer.
        writer: WriterSpec,
        /// Reduce partitions.
        partitions: u32,
        /// The sampling stage whose results give the range bounds.
        samples: Option<StageId>,
    },
    /// Sample keys for a range writer; results stay in the driver.
    Sample {
        /// The sampling `ResultOp`.
        sampler: FnRef,
    },
    /// Write the rows as Arrow into one shuffle block per task (a Dataset
    /// read by SQL).
    Arrow {
        /// The shuffle written.
        shuffle: ShuffleId,
        /// The `ArrowWriteOp`.
        op: FnRef,
    },
    /// The job's result.
    Result(FnRef),
    /// The job's result, written as text files.
    SaveText {
        /// The `ResultOp`.
        op: FnRef,
        /// Output directory URL.
        dir: String,
    },
}

/// What a stage runs.
pub(crate) enum StageKind {
    /// Fused Dataset operators over the lineage ending at `node`.
    Pipeline {
        /// The stage's root node.
        node: Arc<Node>,
        /// Its sink.
        sink: PipelineSink,
    },
    /// A DataFusion fragment (Dataset-table scans not yet replaced by
    /// shuffle reads; readers not yet resolved).
    Sql {
        /// The fragment.
        plan: Arc<dyn ExecutionPlan>,
        /// What its tasks produce.
        output: SqlOutput,
    },
}

/// One stage of the graph.
pub(crate) struct StageNode {
    /// Its id within the job (its index in [`StageGraph::stages`]).
    pub(crate) id: StageId,
    /// A short description for events and logs.
    pub(crate) name: String,
    /// What it runs.
    pub(crate) kind: StageKind,
    /// Stages whose output it reads (or, for a range shuffle, whose
    /// samples it needs); all must be available before it runs.
    pub(crate) parents: Vec<StageId>,
    /// Tasks, one per partition.
    pub(crate) partitions: usize,
    /// Whether rerunning a task gives the same output as before. Every
    /// Dataset operator is a function of its input in order (shuffle
    /// blocks are read in map order; `repartition` starts its round-robin
    /// at a position derived from the data, not a random seed). A SQL
    /// fragment is not when it deals rows round-robin or calls a volatile
    /// function (`random()`). When a map output of a stage that is not
    /// deterministic is recomputed, every consumer reruns in full.
    pub(crate) deterministic: bool,
}

impl StageNode {
    /// The shuffle this stage writes, if it is a map stage.
    pub(crate) fn shuffle(&self) -> Option<ShuffleId> {
        match &self.kind {
            StageKind::Pipeline {
                sink: PipelineSink::Shuffle { shuffle, .. } | PipelineSink::Arrow { shuffle, .. },
                ..
            }
            | StageKind::Sql {
                output: SqlOutput::Shuffle { shuffle },
                ..
            } => Some(*shuffle),
            _ => None,
        }
    }
}

/// The stages of one job; the last is the final (result) stage.
pub(crate) struct StageGraph {
    pub(crate) stages: Vec<StageNode>,
    /// Where the final stage's output goes.
    pub(crate) output: JobOutput,
}

impl StageGraph {
    /// The stages as events announce them.
    pub(crate) fn stage_infos(&self) -> Vec<super::events::StageInfo> {
        self.stages
            .iter()
            .map(|s| super::events::StageInfo {
                stage: s.id,
                name: s.name.clone(),
                parents: s.parents.clone(),
                partitions: s.partitions,
            })
            .collect()
    }

    /// A description for a job nobody described: its final stage's
    /// operators (which end in the action).
    pub(crate) fn default_description(&self) -> String {
        self.stages
            .last()
            .map(|s| s.name.clone())
            .unwrap_or_default()
    }

    /// Builds the graph of `spec`.
    pub(crate) fn build(spec: JobSpec) -> Result<StageGraph, DriverError> {
        let mut b = Builder::default();
        let output = match spec {
            JobSpec::Dataset { node, sink } => {
                let (sink, output) = match sink {
                    FinalSink::Result(op) => (PipelineSink::Result(op), JobOutput::Results),
                    FinalSink::SaveText { op, dir } => (
                        PipelineSink::SaveText {
                            op,
                            dir: dir.clone(),
                        },
                        JobOutput::Files {
                            dir,
                            suffix: String::new(),
                        },
                    ),
                };
                b.pipeline_stage(&node, sink)?;
                output
            }
            JobSpec::Sql { stages, output } => {
                let job_output = match &output {
                    SqlOutput::Files { dir, format } => JobOutput::Files {
                        dir: dir.clone(),
                        suffix: format.extension().to_string(),
                    },
                    _ => JobOutput::Results,
                };
                b.sql_stages(stages, output)?;
                job_output
            }
        };
        Ok(StageGraph {
            stages: b.stages,
            output,
        })
    }

    /// The final stage.
    pub(crate) fn final_stage(&self) -> StageId {
        StageId(self.stages.len().saturating_sub(1) as u32)
    }
}

#[derive(Default)]
struct Builder {
    stages: Vec<StageNode>,
    /// The stage writing each shuffle (so a shuffle read twice is written
    /// once).
    by_shuffle: HashMap<ShuffleId, StageId>,
}

impl Builder {
    fn push(
        &mut self,
        name: String,
        kind: StageKind,
        parents: Vec<StageId>,
        partitions: usize,
    ) -> StageId {
        let id = StageId(self.stages.len() as u32);
        let deterministic = match &kind {
            StageKind::Pipeline { .. } => true,
            StageKind::Sql { plan, .. } => riffle_sql::stages::is_deterministic(plan),
        };
        let node = StageNode {
            id,
            name,
            kind,
            parents,
            partitions,
            deterministic,
        };
        if let Some(shuffle) = node.shuffle() {
            self.by_shuffle.insert(shuffle, id);
        }
        self.stages.push(node);
        id
    }

    /// Adds the stage rooted at `node` with `sink`, after its parents.
    fn pipeline_stage(
        &mut self,
        node: &Arc<Node>,
        sink: PipelineSink,
    ) -> Result<StageId, DriverError> {
        let mut parents = Vec::new();
        self.parents(node, &mut parents)?;
        Ok(self.pipeline_stage_with(node, sink, parents))
    }

    fn pipeline_stage_with(
        &mut self,
        node: &Arc<Node>,
        sink: PipelineSink,
        mut parents: Vec<StageId>,
    ) -> StageId {
        parents.sort();
        parents.dedup();
        let what = match &sink {
            PipelineSink::Shuffle { shuffle, .. } => format!("map, writes {shuffle}"),
            PipelineSink::Sample { .. } => "range sample".into(),
            PipelineSink::Arrow { shuffle, .. } => format!("rows as Arrow, writes {shuffle}"),
            PipelineSink::Result(op) => format!("result {}", op.name()),
            PipelineSink::SaveText { .. } => "save_as_text_file".into(),
        };
        self.push(
            format!("{} ({what})", node.label),
            StageKind::Pipeline {
                node: node.clone(),
                sink,
            },
            parents,
            node.partitions,
        )
    }

    /// The stages whose output the stage of `node` reads: one walk of the
    /// lineage down to its shuffle boundaries and SQL sources.
    fn parents(&mut self, node: &Arc<Node>, out: &mut Vec<StageId>) -> Result<(), DriverError> {
        match &node.kind {
            NodeKind::Parallelize { .. } | NodeKind::TextFile { .. } | NodeKind::Invalid { .. } => {
            }
            NodeKind::Narrow { parent, .. } | NodeKind::Coalesce { parent, .. } => {
                self.parents(parent, out)?
            }
            NodeKind::Union { parents } => {
                for p in parents {
                    self.parents(p, out)?;
                }
            }
            NodeKind::Shuffled { deps, .. } => {
                for dep in deps {
                    out.push(self.map_stage(dep, node.partitions)?);
                }
            }
            NodeKind::SqlResult {
                stages, shuffle, ..
            } => match self.by_shuffle.get(shuffle) {
                Some(id) => out.push(*id),
                None => out.push(self.sql_stages(stages.clone(), SqlOutput::Result)?),
            },
        }
        Ok(())
    }

    /// The map stage writing `dep` (with its sampling stage for a range
    /// shuffle), added once.
    fn map_stage(&mut self, dep: &ShuffleDep, reduce: usize) -> Result<StageId, DriverError> {
        if let Some(id) = self.by_shuffle.get(&dep.shuffle) {
            return Ok(*id);
        }
        let mut parents = Vec::new();
        self.parents(&dep.parent, &mut parents)?;
        let samples = match &dep.writer {
            WriterSpec::Ready(_) => None,
            WriterSpec::Sampled { sampler, .. } => Some(self.pipeline_stage_with(
                &dep.parent,
                PipelineSink::Sample {
                    sampler: sampler.clone(),
                },
                parents.clone(),
            )),
        };
        parents.extend(samples);
        let sink = PipelineSink::Shuffle {
            shuffle: dep.shuffle,
            writer: dep.writer.clone(),
            partitions: reduce as u32,
            samples,
        };
        Ok(self.pipeline_stage_with(&dep.parent, sink, parents))
    }

    /// Adds a query's stages; returns the last one's id. Stages that write
    /// no shuffle produce `result`.
    fn sql_stages(
        &mut self,
        stages: Vec<SqlStage>,
        result: SqlOutput,
    ) -> Result<StageId, DriverError> {
        let mut last = None;
        for stage in stages {
            let mut reads = Vec::new();
            let mut scans = Vec::new();
            stage
                .plan
                .apply(|node| {
                    if let Some(reader) = node.downcast_ref::<ShuffleReaderExec>() {
                        reads.push(reader.shuffle());
                    }
                    if let Some(scan) = node.downcast_ref::<DatasetScanExec>() {
                        scans.push((scan.shuffle, scan.node.clone(), scan.writer.clone()));
                    }
                    Ok(TreeNodeRecursion::Continue)
                })
                .map_err(|e| DriverError::Plan(riffle_planner::report(&e)))?;
            let mut parents = Vec::new();
            for shuffle in reads {
                let id = self.by_shuffle.get(&shuffle).ok_or_else(|| {
                    DriverError::Internal(format!("{shuffle} is read before any stage writes it"))
                })?;
                parents.push(*id);
            }
            for (shuffle, node, op) in scans {
                let id = match self.by_shuffle.get(&shuffle) {
                    Some(id) => *id,
                    None => self.pipeline_stage(&node, PipelineSink::Arrow { shuffle, op })?,
                };
                parents.push(id);
            }
            parents.sort();
            parents.dedup();
            let output = match stage.shuffle {
                Some(shuffle) => SqlOutput::Shuffle { shuffle },
                None => result.clone(),
            };
            let partitions = stage.tasks();
            let name = format!("SQL {}", stage.plan.name());
            last = Some(self.push(
                name,
                StageKind::Sql {
                    plan: stage.plan,
                    output,
                },
                parents,
                partitions,
            ));
        }
        last.ok_or_else(|| DriverError::Internal("a SQL query with no stages".into()))
    }
}
