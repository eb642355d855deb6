//! Keeping DataFusion's joins correct when each partition is a task.
//!
//! In one DataFusion process a `CollectLeft` hash join (and every nested
//! loop join) builds its left side once and shares it between the probe
//! partitions. In Riffle each probe partition is a separate task, which
//! builds its own copy of the left side from a broadcast read of its
//! stage: for inner, right, right-semi and right-anti joins that is a
//! broadcast join, correct and cheap when the left side is small.
//!
//! Joins that also emit the *unmatched* left rows (left, left-semi,
//! left-anti, left-mark and full) need every probe partition's matches
//! before emitting, which DataFusion counts in state shared between the
//! partitions. Split into tasks, each would emit its own idea of the
//! unmatched rows. [`SplittableJoins`] rewrites those:
//!
//! - before distribution is enforced, a `CollectLeft` hash join of such a
//!   type becomes `Partitioned`: both sides are hash-shuffled on the keys,
//!   and each task sees all matches of its keys;
//! - after, a null-aware anti join (which must stay `CollectLeft`, since it
//!   also watches the whole probe side for NULL keys) and a nested loop
//!   join of such a type get their probe side gathered into one partition,
//!   so one task sees every probe row.

use datafusion::common::JoinType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::error::Result;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_optimizer::optimizer::PhysicalOptimizer;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::joins::{HashJoinExec, NestedLoopJoinExec, PartitionMode};
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::{
    ExecutionPlan, ExecutionPlanProperties, Partitioning, replace_children_if_necessary,
};
use std::sync::Arc;

/// When a [`SplittableJoins`] pass runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Right after DataFusion chooses join modes, before exchanges are
    /// added: unsafe `CollectLeft` hash joins become `Partitioned`.
    BeforeDistribution,
    /// At the end: joins that must see the whole probe side in one task
    /// get it gathered.
    Final,
}

/// The physical optimizer pass that makes every join splittable into one
/// task per partition (see the module documentation).
#[derive(Debug)]
pub struct SplittableJoins {
    phase: Phase,
}

impl SplittableJoins {
    /// The pass for `phase`.
    pub fn new(phase: Phase) -> Self {
        SplittableJoins { phase }
    }
}

/// DataFusion's physical optimizer rules with both [`SplittableJoins`]
/// passes in place: the first right after join selection, the last before
/// the final sanity check.
pub fn optimizer_rules() -> Vec<Arc<dyn PhysicalOptimizerRule + Send + Sync>> {
    let mut rules = PhysicalOptimizer::new().rules;
    let after_selection = rules
        .iter()
        .position(|r| r.name() == "join_selection")
        .map_or(0, |i| i + 1);
    rules.insert(
        after_selection,
        Arc::new(SplittableJoins::new(Phase::BeforeDistribution)),
    );
    let before_check = rules
        .iter()
        .position(|r| r.name() == "SanityCheckPlan")
        .unwrap_or(rules.len());
    rules.insert(before_check, Arc::new(SplittableJoins::new(Phase::Final)));
    rules
}

/// Join types that emit unmatched left rows once every probe partition is
/// done.
fn emits_unmatched_left(join_type: JoinType) -> bool {
    matches!(
        join_type,
        JoinType::Left
            | JoinType::LeftAnti
            | JoinType::LeftSemi
            | JoinType::LeftMark
            | JoinType::Full
    )
}

impl PhysicalOptimizerRule for SplittableJoins {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let phase = self.phase;
        plan.transform_up(|node| rewrite(node, phase)).data()
    }

    fn name(&self) -> &str {
        match self.phase {
            Phase::BeforeDistribution => "riffle_splittable_joins",
            Phase::Final => "riffle_splittable_joins_final",
        }
    }

    fn schema_check(&self) -> bool {
        true
    }
}

fn rewrite(
    node: Arc<dyn ExecutionPlan>,
    phase: Phase,
) -> Result<Transformed<Arc<dyn ExecutionPlan>>> {
    if let Some(join) = node.downcast_ref::<HashJoinExec>() {
        let unsafe_collect = *join.partition_mode() == PartitionMode::CollectLeft
            && emits_unmatched_left(*join.join_type());
        if !unsafe_collect {
            return Ok(Transformed::no(node));
        }
        return match (phase, join.null_aware) {
            (Phase::BeforeDistribution, false) => Ok(Transformed::yes(Arc::new(
                join.builder()
                    .with_partition_mode(PartitionMode::Partitioned)
                    .build()?,
            ))),
            (Phase::Final, true) => gather_probe_side(node),
            _ => Ok(Transformed::no(node)),
        };
    }
    if let Some(join) = node.downcast_ref::<NestedLoopJoinExec>()
        && phase == Phase::Final
        && emits_unmatched_left(*join.join_type())
    {
        return gather_probe_side(node);
    }
    Ok(Transformed::no(node))
}

/// Replaces the right (probe) input of a two-input join with one partition.
fn gather_probe_side(join: Arc<dyn ExecutionPlan>) -> Result<Transformed<Arc<dyn ExecutionPlan>>> {
    let children = join.children();
    let (Some(left), Some(right)) = (children.first(), children.get(1)) else {
        return Ok(Transformed::no(join));
    };
    let (left, mut right) = ((*left).clone(), (*right).clone());
    if right.output_partitioning().partition_count() <= 1 {
        return Ok(Transformed::no(join));
    }
    // A round-robin split added only for parallelism is undone rather
    // than gathered again.
    if let Some(repartition) = right.downcast_ref::<RepartitionExec>()
        && matches!(repartition.partitioning(), Partitioning::RoundRobinBatch(_))
    {
        right = repartition.input().clone();
    }
    if right.output_partitioning().partition_count() > 1 {
        right = Arc::new(CoalescePartitionsExec::new(right));
    }
    Ok(Transformed::yes(replace_children_if_necessary(
        join,
        vec![left, right],
    )?))
}
