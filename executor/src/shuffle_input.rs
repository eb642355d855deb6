//! The reduce side's input: fetched shuffle blocks as batch iterators.

use arrow_array::{BinaryArray, RecordBatch};
use futures::StreamExt;
use riffle_planner::pipeline::{Counters, TaskContext};
use riffle_planner::task::{BlockLocation, ShuffleInput};

/// A fetched block, or why it could not be.
type Fetched = Result<(BlockLocation, bytes::Bytes), FetchError>;
use riffle_shuffle::reader::{
    BlockBatches, InFlight, MAX_BYTES_IN_FLIGHT, fetch_blocks_held, record_column,
};
use riffle_shuffle::{FetchError, ShuffleError, ShuffleStore};
use tokio::sync::mpsc;

/// Range requests outstanding per shuffle input.
const BLOCKS_IN_FLIGHT: usize = 8;

/// Decodes one fetched block.
type BlockDecoder<B> = fn(&str, RecordBatch) -> Result<B, ShuffleError>;

fn whole_batch(_: &str, batch: RecordBatch) -> Result<RecordBatch, ShuffleError> {
    Ok(batch)
}

/// Iterates the decoded batches of one reduce partition of one shuffle:
/// the record arrays of a Dataset shuffle (`B = BinaryArray`) or the
/// Arrow rows of a SQL one (`B = RecordBatch`). The blocks are fetched by
/// a tokio task (started on the first `next`) and decoded here, on the CPU
/// side.
pub struct ShuffleBatches<B = BinaryArray> {
    input: ShuffleInput,
    pending: Option<(ShuffleStore, tokio::runtime::Handle)>,
    rx: Option<mpsc::Receiver<(Fetched, InFlight)>>,
    decode: BlockDecoder<B>,
    /// The block being decoded, with its share of the in-flight budget
    /// (given back when the next block is taken).
    current: Option<(BlockLocation, BlockBatches, InFlight)>,
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
        ShuffleBatches::with_decoder(input, store, runtime, ctx, record_column)
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
        ShuffleBatches::with_decoder(input, store, runtime, ctx, whole_batch)
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
            current: None,
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
            self.current = None;
            return None;
        }
        if let Some((store, runtime)) = self.pending.take() {
            // The channel holds one block; every fetched block keeps its
            // share of the byte budget until this reader is done with it,
            // so fetched-but-unread blocks stay within the budget (or are
            // one block larger than it).
            let (tx, rx) = mpsc::channel(1);
            let blocks = self.input.blocks.clone();
            runtime.spawn(async move {
                let mut stream = std::pin::pin!(fetch_blocks_held(
                    &store,
                    blocks,
                    BLOCKS_IN_FLIGHT,
                    MAX_BYTES_IN_FLIGHT
                ));
                while let Some(item) = stream.next().await {
                    let failed = item.0.is_err();
                    if tx.send(item).await.is_err() || failed {
                        return;
                    }
                }
            });
            self.rx = Some(rx);
        }
        loop {
            if let Some((block, batches, _)) = self.current.as_mut() {
                match batches.next() {
                    Some(Ok(batch)) => match (self.decode)(&block.path, batch) {
                        Ok(item) => return Some(item),
                        Err(source) => {
                            let block = block.clone();
                            self.fail(FetchError { block, source });
                            return None;
                        }
                    },
                    Some(Err(source)) => {
                        let block = block.clone();
                        self.fail(FetchError { block, source });
                        return None;
                    }
                    None => self.current = None,
                }
            }
            let item = self.rx.as_mut()?.blocking_recv();
            match item {
                None => {
                    self.rx = None;
                    return None;
                }
                Some((Err(e), _)) => {
                    self.fail(e);
                    return None;
                }
                Some((Ok((block, bytes)), permit)) => {
                    Counters::add(&self.ctx.counters.bytes_read, bytes.len() as u64);
                    Counters::add(&self.ctx.counters.shuffle_bytes_read, bytes.len() as u64);
                    match BlockBatches::new(&block.path, bytes) {
                        Ok(batches) => self.current = Some((block, batches, permit)),
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
