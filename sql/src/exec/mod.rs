//! Riffle's own physical plan nodes: the two ends of a shuffle.
//!
//! The stage splitter (`crate::stages`) replaces every exchange of a
//! DataFusion plan (`RepartitionExec`, and the inputs of
//! `CoalescePartitionsExec` / `SortPreservingMergeExec`) with a
//! [`ShuffleWriterExec`] at the root of the producing stage and a
//! [`ShuffleReaderExec`] in the consuming one.

mod shuffle_reader;
mod shuffle_writer;

pub use shuffle_reader::{ReaderLayout, ShuffleReaderExec};
pub use shuffle_writer::ShuffleWriterExec;

use arrow_schema::SchemaRef;
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::{Partitioning, PlanProperties};
use std::sync::Arc;

/// Plan properties of a node with `partitions` unordered partitions.
pub fn properties(schema: SchemaRef, partitions: usize) -> Arc<PlanProperties> {
    Arc::new(PlanProperties::new(
        EquivalenceProperties::new(schema),
        Partitioning::UnknownPartitioning(partitions),
        EmissionType::Incremental,
        Boundedness::Bounded,
    ))
}
