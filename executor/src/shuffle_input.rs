//! The reduce side's input: fetched shuffle blocks as batch iterators.

use arrow_array::{BinaryArray, RecordBatch};
use bytes::Bytes;
use futures::StreamExt;
use riffle_planner::PipelineError;
use riffle_planner::pipeline::{Counters, TaskContext};
use riffle_planner::task::{BlockLocation, ShuffleInput};
use riffle_shuffle::reader::{decode_batches, decode_block, fetch_blocks};
use riffle_shuffle::{ShuffleError, ShuffleStore};
use tokio::sync::mpsc;

/// Range requests outstanding per shuffle input.
const BLOCKS_IN_FLIGHT: usize = 8;

/// Decodes one fetched block.
type BlockDecoder<B> = fn(&str, Bytes) -> Result<Vec<B>, ShuffleError>;

/// Iterates the decoded batches of one reduce partition of one shuffle:
/// the record arrays of a Dataset shuffle (`B = BinaryArray`) or the
/// Arrow rows of a SQL one (`B = RecordBatch`). The blocks are fetched by
/// a tokio task (started on the first `next`) and decoded here, on the CPU
/// side.
pub struct ShuffleBatches<B = BinaryArray> {
    input: ShuffleInput,
    pending: Option<(ShuffleStore, tokio::runtime::Handle)>,
    rx: Option<mpsc::Receiver<Result<(BlockLocation, Bytes), ShuffleError>>>,
    decode: BlockDecoder<B>,
    decoded: std::vec::IntoIter<B>,
    ctx: TaskContext,
}

impl ShuffleBatches<BinaryArray> {
    /// Record arrays of `input`, read from `store` by a task on `runtime`.
    pub fn new(
        input: ShuffleInput,
        store: ShuffleStore,
        runtime: tokio::runtime::Handle,
        ctx: TaskContext,
    ) -> Self {
        ShuffleBatches::with_decoder(input, store, runtime, ctx, decode_block)
    }
}

impl ShuffleBatches<RecordBatch> {
    /// Arrow rows of `input` as they were written.
    pub fn record_batches(
        input: ShuffleInput,
        store: ShuffleStore,
        runtime: tokio::runtime::Handle,
        ctx: TaskContext,
    ) -> Self {
        ShuffleBatches::with_decoder(input, store, runtime, ctx, decode_batches)
    }
}

impl<B> ShuffleBatches<B> {
    fn with_decoder(
        input: ShuffleInput,
        store: ShuffleStore,
        runtime: tokio::runtime::Handle,
        ctx: TaskContext,
        decode: BlockDecoder<B>,
    ) -> Self {
        ShuffleBatches {
            input,
            pending: Some((store, runtime)),
            rx: None,
            decode,
            decoded: Vec::new().into_iter(),
            ctx,
        }
    }

    fn fail(&mut self, map_partition: Option<u32>, error: ShuffleError) {
        let error = match (map_partition, &error) {
            (Some(map_partition), ShuffleError::Missing { .. }) => PipelineError::FetchFailed {
                shuffle: self.input.shuffle,
                map_partition,
                message: error.to_string(),
            },
            _ => PipelineError::Shuffle(error.to_string()),
        };
        self.ctx.fail(error);
        self.rx = None;
    }
}

impl<B> Iterator for ShuffleBatches<B> {
    type Item = B;

    fn next(&mut self) -> Option<B> {
        // Per batch; dropping the receiver ends the fetching task, and the
        // unstarted case never starts it.
        if self.ctx.stop_if_killed() {
            self.pending = None;
            self.rx = None;
            self.decoded = Vec::new().into_iter();
            return None;
        }
        if let Some((store, runtime)) = self.pending.take() {
            let (tx, rx) = mpsc::channel(BLOCKS_IN_FLIGHT);
            let blocks = self.input.blocks.clone();
            runtime.spawn(async move {
                let mut stream = std::pin::pin!(fetch_blocks(&store, blocks, BLOCKS_IN_FLIGHT));
                while let Some(item) = stream.next().await {
                    let failed = item.is_err();
                    if tx.send(item).await.is_err() || failed {
                        return;
                    }
                }
            });
            self.rx = Some(rx);
        }
        loop {
            if let Some(array) = self.decoded.next() {
                return Some(array);
            }
            let item = self.rx.as_mut()?.blocking_recv();
            match item {
                None => {
                    self.rx = None;
                    return None;
                }
                Some(Err(e)) => {
                    // The stream does not say which block failed; name the
                    // first map partition whose object is missing.
                    let map = match &e {
                        ShuffleError::Missing { path } => self
                            .input
                            .blocks
                            .iter()
                            .find(|b| &b.path == path)
                            .map(|b| b.map_partition),
                        _ => None,
                    };
                    self.fail(map, e);
                    return None;
                }
                Some(Ok((block, bytes))) => {
                    Counters::add(&self.ctx.counters.bytes_read, bytes.len() as u64);
                    Counters::add(&self.ctx.counters.shuffle_bytes_read, bytes.len() as u64);
                    match (self.decode)(&block.path, bytes) {
                        Ok(arrays) => self.decoded = arrays.into_iter(),
                        Err(e) => {
                            self.fail(Some(block.map_partition), e);
                            return None;
                        }
                    }
                }
            }
        }
    }
}
