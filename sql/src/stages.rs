//! Cutting a DataFusion physical plan into stages at its exchanges.
//!
//! DataFusion exchanges data between partitions in `RepartitionExec`
//! (hash or round-robin) and gathers partitions in `CoalescePartitionsExec`
//! and `SortPreservingMergeExec`. Executed as one task per partition, any
//! of these would make every task recompute all of its input, so each
//! becomes a stage boundary:
//!
//! - `RepartitionExec(p, n)` over `input`: the producer stage is
//!   `ShuffleWriterExec(input, p)`; the consumer reads a
//!   `ShuffleReaderExec` with `n` partitions (one per reduce partition).
//! - `CoalescePartitionsExec` / `SortPreservingMergeExec` over an input of
//!   `m > 1` partitions: the producer writes everything of each input
//!   partition to reduce partition 0; the gathering node stays in the
//!   consumer, over a reader with `m` partitions, one per map task (so a
//!   merge still sees `m` sorted runs).
//!
//! Stages are returned producers first; the last one is the result stage.

use crate::exec::{ReaderLayout, ShuffleReaderExec, ShuffleWriterExec};
use datafusion::common::Result;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::sorts::sort_preserving_merge::SortPreservingMergeExec;
use datafusion::physical_plan::{
    ExecutionPlan, ExecutionPlanProperties, Partitioning, replace_children_if_necessary,
};
use riffle_planner::ids::ShuffleId;
use riffle_planner::task::MapStatus;
use std::collections::HashMap;
use std::sync::Arc;

/// One stage of a distributed SQL plan.
#[derive(Debug, Clone)]
pub struct SqlStage {
    /// The shuffle it writes; `None` for the result stage.
    pub shuffle: Option<ShuffleId>,
    /// Its fragment (a `ShuffleWriterExec` at the root of a map stage).
    pub plan: Arc<dyn ExecutionPlan>,
}

impl SqlStage {
    /// Number of tasks: one per partition of the fragment.
    pub fn tasks(&self) -> usize {
        self.plan.output_partitioning().partition_count()
    }
}

/// Cuts `plan` into stages, naming shuffles with `next_shuffle`.
pub fn split(
    plan: Arc<dyn ExecutionPlan>,
    next_shuffle: &mut dyn FnMut() -> ShuffleId,
) -> Result<Vec<SqlStage>> {
    let mut stages = Vec::new();
    let root = cut(plan, &mut stages, next_shuffle)?;
    stages.push(SqlStage {
        shuffle: None,
        plan: root,
    });
    Ok(stages)
}

fn cut(
    plan: Arc<dyn ExecutionPlan>,
    stages: &mut Vec<SqlStage>,
    next_shuffle: &mut dyn FnMut() -> ShuffleId,
) -> Result<Arc<dyn ExecutionPlan>> {
    // A scalar subquery's expressions refer to the ScalarSubqueryExec above
    // them and cannot be shipped without it: its subtree stays whole in the
    // stage (each task computes the subquery; correct, if slower).
    if plan.name() == "ScalarSubqueryExec" {
        return Ok(plan);
    }
    let children = plan
        .children()
        .into_iter()
        .map(|c| cut(c.clone(), stages, next_shuffle))
        .collect::<Result<Vec<_>>>()?;
    let plan = replace_children_if_necessary(plan, children)?;

    if let Some(repartition) = plan.downcast_ref::<RepartitionExec>()
        && !repartition.preserve_order()
    {
        let n = match repartition.partitioning() {
            Partitioning::Hash(_, n) | Partitioning::RoundRobinBatch(n) => *n,
            // Other partitionings stay inside the stage (correct, if slower).
            _ => return Ok(plan),
        };
        let input = repartition.input().clone();
        let shuffle = next_shuffle();
        let schema = input.schema();
        stages.push(SqlStage {
            shuffle: Some(shuffle),
            plan: Arc::new(ShuffleWriterExec::new(
                input,
                repartition.partitioning().clone(),
            )),
        });
        let hash = matches!(repartition.partitioning(), Partitioning::Hash(..))
            .then(|| repartition.partitioning().clone());
        // What the exchange declared of its rows (no ordering, no
        // per-partition constants) holds of the reader's too.
        let equivalences = repartition.properties().eq_properties.clone();
        return Ok(Arc::new(
            ShuffleReaderExec::unresolved(shuffle, schema, ReaderLayout::ByReducePartition, n)
                .hash_partitioned(hash)
                .with_equivalences(equivalences),
        ));
    }

    let gathers = plan.is::<CoalescePartitionsExec>() || plan.is::<SortPreservingMergeExec>();
    if gathers && let Some(input) = plan.children().first().map(|c| (*c).clone()) {
        let m = input.output_partitioning().partition_count();
        if m > 1 {
            // Reader partition `m` is input partition `m`, in order: what
            // held of each (orderings, per-partition constants) still holds.
            let equivalences = input.equivalence_properties().clone();
            let shuffle = next_shuffle();
            let schema = input.schema();
            stages.push(SqlStage {
                shuffle: Some(shuffle),
                plan: Arc::new(ShuffleWriterExec::new(
                    input,
                    Partitioning::UnknownPartitioning(1),
                )),
            });
            let reader: Arc<dyn ExecutionPlan> = Arc::new(
                ShuffleReaderExec::unresolved(shuffle, schema, ReaderLayout::PerMapTask, m)
                    .with_equivalences(equivalences),
            );
            return replace_children_if_necessary(plan, vec![reader]);
        }
    }
    Ok(plan)
}

/// The name of a node in `plan` that cannot be cut into tasks, if any:
/// a recursive query (`WITH RECURSIVE`) feeds each iteration's output
/// back into its own input through an in-process work table, so the whole
/// plan runs in one process, the driver's, as DataFusion runs it.
pub fn driver_only(plan: &Arc<dyn ExecutionPlan>) -> Option<&'static str> {
    use datafusion::physical_plan::recursive_query::RecursiveQueryExec;
    let node: &dyn std::any::Any = plan.as_ref();
    if node.is::<RecursiveQueryExec>() {
        return Some("RecursiveQueryExec");
    }
    plan.children().into_iter().find_map(driver_only)
}

/// Whether rerunning a task of `plan` gives the same rows: not when an
/// expression is volatile (`random()`, `uuid()`), which a recomputed map
/// output would evaluate anew. (Round-robin exchanges deal a task's input
/// in the order it is read, which is fixed, so they are deterministic
/// here.)
pub fn is_deterministic(plan: &Arc<dyn ExecutionPlan>) -> bool {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    use datafusion::physical_expr_common::physical_expr::is_volatile;
    let mut deterministic = true;
    let _ = plan.apply(|node| {
        node.apply_expressions(&mut |expr| {
            if is_volatile(expr) {
                deterministic = false;
                return Ok(TreeNodeRecursion::Stop);
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        Ok(if deterministic {
            TreeNodeRecursion::Continue
        } else {
            TreeNodeRecursion::Stop
        })
    });
    deterministic
}

/// Fills every shuffle reader of `plan` with the block locations of its
/// finished map stage.
pub fn resolve(
    plan: Arc<dyn ExecutionPlan>,
    outputs: &HashMap<ShuffleId, Vec<MapStatus>>,
) -> Result<Arc<dyn ExecutionPlan>> {
    if let Some(reader) = plan.downcast_ref::<ShuffleReaderExec>() {
        let statuses = outputs.get(&reader.shuffle()).ok_or_else(|| {
            datafusion::common::DataFusionError::Internal(format!(
                "{} was not computed before its reader",
                reader.shuffle()
            ))
        })?;
        return Ok(Arc::new(reader.resolve(statuses)));
    }
    let children = plan
        .children()
        .into_iter()
        .map(|c| resolve(c.clone(), outputs))
        .collect::<Result<Vec<_>>>()?;
    replace_children_if_necessary(plan, children)
}

/// The shuffles read anywhere in `plan`, in plan order: those of earlier
/// stages, and those of scans whose rows some other job part writes (a
/// Dataset table).
pub fn shuffle_reads(plan: &Arc<dyn ExecutionPlan>) -> Vec<ShuffleId> {
    let mut out = Vec::new();
    let mut pending = vec![plan.clone()];
    while let Some(node) = pending.pop() {
        if let Some(reader) = node.downcast_ref::<ShuffleReaderExec>() {
            out.push(reader.shuffle());
        }
        pending.extend(node.children().into_iter().rev().cloned());
    }
    out
}

/// A readable rendering of the stages, for `EXPLAIN`.
pub fn display(stages: &[SqlStage]) -> String {
    use datafusion::physical_plan::displayable;
    let mut out = String::new();
    for (i, stage) in stages.iter().enumerate() {
        let what = match stage.shuffle {
            Some(s) => format!("writes {s}"),
            None => "result".to_string(),
        };
        out.push_str(&format!("Stage {i} ({what}, {} tasks):\n", stage.tasks()));
        for line in displayable(stage.plan.as_ref())
            .indent(false)
            .to_string()
            .lines()
        {
            out.push_str("  ");
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}
