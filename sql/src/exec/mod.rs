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

/// Flattens a stream of batch lists (one per fetched block or file) into a
/// stream of batches, passing errors through.
pub(crate) fn flatten<S>(
    lists: S,
) -> impl futures::Stream<Item = datafusion::common::Result<arrow_array::RecordBatch>>
where
    S: futures::Stream<Item = datafusion::common::Result<Vec<arrow_array::RecordBatch>>>,
{
    use futures::StreamExt;
    lists.flat_map(|list| {
        futures::stream::iter(match list {
            Ok(batches) => batches.into_iter().map(Ok).collect::<Vec<_>>(),
            Err(e) => vec![Err(e)],
        })
    })
}
