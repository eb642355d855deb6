//! The reduce side's input: fetched shuffle blocks as batch iterators.

use arrow_array::{BinaryArray, RecordBatch};
use bytes::Bytes;
use futures::StreamExt;
use riffle_planner::pipeline::{Counters, TaskContext};
use riffle_planner::task::{BlockLocation, ShuffleInput};
use riffle_shuffle::reader::{decode_batches, decode_block, fetch_blocks};
use riffle_shuffle::{FetchError, ShuffleError, ShuffleStore};
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
    rx: Option<mpsc::Receiver<Result<(BlockLocation, Bytes), FetchError>>>,
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

    /// Ends the input with `error`: a missing or damaged block is a fetch
    /// failure naming its map output, anything else a retryable error.
    fn fail(&mut self, error: FetchError) {
        self.ctx.fail(error.into_pipeline_error(self.input.shuffle));
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
            // One fetched block waits here; the rest of what is fetched
            // ahead is bounded in bytes by the fetch itself.
            let (tx, rx) = mpsc::channel(1);
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
                    self.fail(e);
                    return None;
                }
                Some(Ok((block, bytes))) => {
                    Counters::add(&self.ctx.counters.bytes_read, bytes.len() as u64);
                    Counters::add(&self.ctx.counters.shuffle_bytes_read, bytes.len() as u64);
                    match (self.decode)(&block.path, bytes) {
                        Ok(arrays) => self.decoded = arrays.into_iter(),
                        Err(source) => {
                            self.fail(FetchError { block, source });
                            return None;
                        }
                    }
                }
            }
        }
    }
}
