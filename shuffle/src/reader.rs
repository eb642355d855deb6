//! The reduce side: range-read blocks and decode them.

use crate::error::{FetchError, ShuffleError};
use crate::ipc::{InMemory, IpcStream, Problem};
use crate::layout::ShuffleStore;
use arrow_array::{Array, BinaryArray, RecordBatch};
use arrow_schema::SchemaRef;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use object_store::ObjectStoreExt;
use object_store::path::Path;
use riffle_planner::BoxError;
use riffle_planner::task::{BlockInfo, BlockLocation};

/// Fetches blocks with at most `in_flight` requests outstanding, yielding
/// them in order, each checked against its length and checksum. Empty
/// blocks are skipped without a request. An error names the block.
pub fn fetch_blocks(
    store: &ShuffleStore,
    blocks: Vec<BlockLocation>,
    in_flight: usize,
) -> impl Stream<Item = Result<(BlockLocation, Bytes), FetchError>> + Send + 'static {
    fetch_blocks_within(store, blocks, in_flight, MAX_BYTES_IN_FLIGHT)
}

/// Bytes of blocks a reader fetches ahead of what it has consumed (Spark's
/// `spark.reducer.maxSizeInFlight`, 48 MiB there; smaller here, since it
/// is outside the memory pool, per running task). A single larger block is
/// still fetched, alone.
pub const MAX_BYTES_IN_FLIGHT: u64 = 16 << 20;

/// [`fetch_blocks`] holding at most `max_bytes` of fetched blocks that the
/// stream has not yielded yet (besides one block larger than that).
pub fn fetch_blocks_within(
    store: &ShuffleStore,
    blocks: Vec<BlockLocation>,
    in_flight: usize,
    max_bytes: u64,
) -> impl Stream<Item = Result<(BlockLocation, Bytes), FetchError>> + Send + 'static {
    fetch_blocks_held(store, blocks, in_flight, max_bytes).map(release)
}

/// Its share of a reader's byte budget, held by a fetched block until the
/// reader lets it go (drops it once it is done with the block).
pub type InFlight = Option<tokio::sync::OwnedSemaphorePermit>;

/// [`fetch_blocks_within`], each block yielded with its share of the
/// budget, so that blocks the consumer has not finished still count.
pub fn fetch_blocks_held(
    store: &ShuffleStore,
    blocks: Vec<BlockLocation>,
    in_flight: usize,
    max_bytes: u64,
) -> impl Stream<Item = (Result<(BlockLocation, Bytes), FetchError>, InFlight)> + Send + 'static {
    let (budget, total) = budget(max_bytes);
    let store = store.store.clone();
    futures::stream::iter(blocks.into_iter().filter(|b| b.len > 0))
        .map(move |block| {
            let store = store.clone();
            let budget = budget.clone();
            async move {
                // Held until the block is yielded; the semaphore is never
                // closed, so acquiring cannot fail.
                let permit = budget
                    .acquire_many_owned(units(block.len, total))
                    .await
                    .ok();
                (fetch_whole(&store, block).await, permit)
            }
        })
        .buffered(in_flight.max(1))
}

/// The record batches of `blocks`, in order: blocks of up to
/// [`crate::pieces::PIECE_BYTES`] are fetched whole, ahead of the consumer
/// within `max_bytes` and `in_flight` requests (as [`fetch_blocks_held`]);
/// larger ones a piece at a time ([`crate::pieces`]), each holding two
/// pieces' share of the budget while it is read. Errors name the block.
pub fn fetch_batches(
    store: &ShuffleStore,
    blocks: Vec<BlockLocation>,
    in_flight: usize,
    max_bytes: u64,
) -> impl Stream<Item = Result<RecordBatch, Box<FetchError>>> + Send + 'static {
    use crate::pieces::{PIECE_BYTES, piecewise_batches};
    use futures::stream::BoxStream;
    enum Fetched {
        Whole(Result<(BlockLocation, Bytes), FetchError>),
        Large(BlockLocation),
    }
    let (budget, total) = budget(max_bytes);
    let objects = store.store.clone();
    let pieces_from = store.store.clone();
    futures::stream::iter(blocks.into_iter().filter(|b| b.len > 0))
        .map(move |block| {
            let store = objects.clone();
            let budget = budget.clone();
            async move {
                let large = block.len > PIECE_BYTES;
                // A large block holds what is left of one piece while the
                // next arrives.
                let held = if large { 2 * PIECE_BYTES } else { block.len };
                // The semaphore is never closed: acquiring cannot fail.
                let permit = budget.acquire_many_owned(units(held, total)).await.ok();
                if large {
                    return (Fetched::Large(block), permit);
                }
                (Fetched::Whole(fetch_whole(&store, block).await), permit)
            }
        })
        .buffered(in_flight.max(1))
        .flat_map(
            move |(fetched, permit)| -> BoxStream<'static, Result<RecordBatch, Box<FetchError>>> {
                match fetched {
                    Fetched::Whole(Err(e)) => {
                        futures::stream::once(async move { Err(Box::new(e)) }).boxed()
                    }
                    Fetched::Whole(Ok((block, bytes))) => {
                        match BlockBatches::new(&block.path, bytes) {
                            Err(source) => futures::stream::once(async move {
                                Err(Box::new(FetchError { block, source }))
                            })
                            .boxed(),
                            Ok(batches) => futures::stream::iter(batches.map(move |batch| {
                                let _held = &permit;
                                batch.map_err(|source| {
                                    Box::new(FetchError {
                                        block: block.clone(),
                                        source,
                                    })
                                })
                            }))
                            .boxed(),
                        }
                    }
                    Fetched::Large(block) => piecewise_batches(pieces_from.clone(), block)
                        .map(move |batch| {
                            let _held = &permit;
                            batch.map_err(Box::new)
                        })
                        .boxed(),
                }
            },
        )
}

/// A reader's byte budget as a semaphore of KiB permits (so that any
/// budget fits one), and its size in permits.
fn budget(max_bytes: u64) -> (std::sync::Arc<tokio::sync::Semaphore>, u32) {
    let total = u32::try_from(max_bytes.div_ceil(1024).max(1)).unwrap_or(u32::MAX);
    (
        std::sync::Arc::new(tokio::sync::Semaphore::new(total as usize)),
        total,
    )
}

/// The permits `bytes` hold of a budget of `total`: all of it at most, so
/// that a block larger than the budget is still fetched, alone.
fn units(bytes: u64, total: u32) -> u32 {
    u32::try_from(bytes.div_ceil(1024))
        .unwrap_or(u32::MAX)
        .min(total)
}

/// Fetches one whole block and checks it.
async fn fetch_whole(
    store: &std::sync::Arc<dyn object_store::ObjectStore>,
    block: BlockLocation,
) -> Result<(BlockLocation, Bytes), FetchError> {
    let path = Path::from(block.path.as_str());
    let range = block.offset..block.offset + block.len;
    let fetched = store
        .get_range(&path, range)
        .await
        .map_err(|e| ShuffleError::storage(&path, e))
        .and_then(|bytes| verify(&block, bytes));
    match fetched {
        Ok(bytes) => Ok((block, bytes)),
        Err(source) => Err(FetchError { block, source }),
    }
}

/// A fetched block's result, its place in the byte budget given back.
fn release<T>((result, _permit): (T, InFlight)) -> T {
    result
}

/// Checks a fetched block's length and CRC-32: a damaged block must fail
/// the fetch, never decode into wrong rows.
fn verify(block: &BlockLocation, bytes: Bytes) -> Result<Bytes, ShuffleError> {
    if bytes.len() as u64 != block.len {
        return Err(damaged(
            block,
            format!(
                "block at offset {} should be {} bytes, got {}",
                block.offset,
                block.len,
                bytes.len()
            ),
        ));
    }
    check_checksum(block, crc32fast::hash(&bytes))?;
    Ok(bytes)
}

/// Fails unless `checksum`, the CRC-32 of the bytes read, is the one the
/// map task recorded for `block`.
pub(crate) fn check_checksum(block: &BlockLocation, checksum: u32) -> Result<(), ShuffleError> {
    if checksum == block.checksum {
        return Ok(());
    }
    Err(damaged(
        block,
        format!(
            "block at offset {} ({} bytes) has CRC-32 {checksum:08x}, expected {:08x}",
            block.offset, block.len, block.checksum
        ),
    ))
}

/// `block` is damaged: `message` says how.
pub(crate) fn damaged(block: &BlockLocation, message: String) -> ShuffleError {
    ShuffleError::Corrupt {
        path: block.path.clone(),
        message,
        source: None,
    }
}

/// The record batches of one block (a complete IPC stream), decoded one
/// at a time as they are asked for, so a large block is held once, encoded
/// (batches are zero-copy slices of it). Every message is checked against
/// the block's bytes before Arrow decodes it ([`crate::ipc`]): a damaged or
/// hostile block is a [`ShuffleError::Corrupt`] naming the object and the
/// message, never a panic or an allocation of what it merely declares.
pub struct BlockBatches {
    stream: IpcStream<InMemory>,
    path: String,
}

pub(crate) fn corrupt(path: &str, problem: Problem) -> ShuffleError {
    ShuffleError::Corrupt {
        path: path.to_string(),
        message: format!("not a valid Arrow IPC stream: {}", problem.message),
        source: problem.source.map(|e| Box::new(e) as BoxError),
    }
}

impl BlockBatches {
    /// Starts decoding `bytes`, a block of the object at `path`.
    pub fn new(path: &str, bytes: Bytes) -> Result<Self, ShuffleError> {
        let stream = IpcStream::open(InMemory::new(bytes)).map_err(|p| corrupt(path, p))?;
        Ok(BlockBatches {
            stream,
            path: path.to_string(),
        })
    }

    /// The object the block belongs to.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The schema the block declares.
    pub fn schema(&self) -> SchemaRef {
        self.stream.schema()
    }
}

impl Iterator for BlockBatches {
    type Item = Result<RecordBatch, ShuffleError>;

    fn next(&mut self) -> Option<Self::Item> {
        let path = &self.path;
        self.stream
            .next_batch()
            .map_err(|p| corrupt(path, p))
            .transpose()
    }
}

/// The schema of `bytes`, an IPC stream with no batches (a schema shipped
/// in a plan), checked as a block is; errors name `what`.
pub fn read_schema(what: &str, bytes: Bytes) -> Result<SchemaRef, ShuffleError> {
    Ok(BlockBatches::new(what, bytes)?.schema())
}

/// Decodes one block (a complete IPC stream) into record batches.
pub fn decode_batches(path: &str, bytes: Bytes) -> Result<Vec<RecordBatch>, ShuffleError> {
    BlockBatches::new(path, bytes)?.collect()
}

/// The binary record column of a batch of a block of `path`.
pub fn record_column(path: &str, batch: RecordBatch) -> Result<BinaryArray, ShuffleError> {
    batch
        .columns()
        .first()
        .and_then(|c| c.as_any().downcast_ref::<BinaryArray>())
        .cloned()
        .ok_or_else(|| ShuffleError::Corrupt {
            path: path.to_string(),
            message: "block does not hold a binary record column".into(),
            source: None,
        })
}

/// Decodes one block of encoded records into their binary arrays.
pub fn decode_block(path: &str, bytes: Bytes) -> Result<Vec<BinaryArray>, ShuffleError> {
    BlockBatches::new(path, bytes)?
        .map(|batch| batch.and_then(|b| record_column(path, b)))
        .collect()
}

/// The largest index object read: an index is the map task's
/// `MapStatus` blocks, which also travel to the driver in one gRPC message
/// (64 MiB by default), so a larger one cannot be genuine and is refused
/// before it is downloaded.
pub const MAX_INDEX_BYTES: u64 = 64 << 20;

/// Reads a map task's index object (used to validate outputs).
pub async fn read_index(
    store: &ShuffleStore,
    data_path: &Path,
) -> Result<Vec<BlockInfo>, ShuffleError> {
    let index_path = ShuffleStore::index_path(data_path);
    let object = store
        .store
        .get(&index_path)
        .await
        .map_err(|e| ShuffleError::storage(&index_path, e))?;
    if object.meta.size > MAX_INDEX_BYTES {
        return Err(ShuffleError::Corrupt {
            path: index_path.to_string(),
            message: format!(
                "the index is {} bytes, more than the {MAX_INDEX_BYTES} an index can be",
                object.meta.size
            ),
            source: None,
        });
    }
    let bytes = object
        .bytes()
        .await
        .map_err(|e| ShuffleError::storage(&index_path, e))?;
    riffle_planner::task::decode(&bytes).map_err(|e| ShuffleError::Corrupt {
        path: index_path.to_string(),
        message: "not a valid index".into(),
        source: Some(Box::new(e)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::ShuffleCompression;
    use crate::writer::{encode_map_output, put_map_output};
    use object_store::memory::InMemory;
    use riffle_planner::codec::{RecordBuffer, decode_array};
    use riffle_planner::ids::{JobId, ShuffleId};
    use std::sync::Arc;

    /// Writes and reads back one map output, compressed and not.
    async fn round_trip(per_partition: Vec<Vec<String>>) {
        for compression in [ShuffleCompression::Lz4, ShuffleCompression::None] {
            round_trip_with(&per_partition, compression).await;
        }
    }

    async fn round_trip_with(per_partition: &[Vec<String>], compression: ShuffleCompression) {
        let store = ShuffleStore::new(Arc::new(InMemory::new()), Path::from("shuffle"))
            .with_compression(compression);
        let arrays = per_partition
            .iter()
            .map(|records| {
                let mut buf = RecordBuffer::default();
                for r in records {
                    buf.push(r).unwrap();
                }
                buf.finish()
            })
            .collect();
        let encoded = encode_map_output(arrays, store.compression).unwrap();
        let path = store.data_path(JobId(1), ShuffleId(2), 3, 0);
        let status = put_map_output(&store, path.clone(), encoded).await.unwrap();
        assert_eq!(read_index(&store, &path).await.unwrap(), status.blocks);
        assert_eq!(status.blocks.len(), per_partition.len());
        for (p, expected) in per_partition.iter().enumerate() {
            let info = status.blocks[p];
            assert_eq!(info.rows as usize, expected.len());
            let Some(loc) = status.block_location(3, p) else {
                assert!(expected.is_empty());
                continue;
            };
            let fetched: Vec<_> = fetch_blocks(&store, vec![loc], 4).collect().await;
            let mut got = Vec::new();
            for item in fetched {
                let (block, bytes) = item.unwrap();
                for array in decode_block(&block.path, bytes).unwrap() {
                    got.extend(decode_array::<String>(&array).map(Result::unwrap));
                }
            }
            assert_eq!(&got, expected);
        }
    }

    #[tokio::test]
    async fn round_trip_with_empty_partitions() {
        round_trip(vec![
            vec![],
            vec!["a".into(), "b".into()],
            vec![],
            vec!["c".into()],
        ])
        .await;
    }

    #[tokio::test]
    async fn round_trip_many_partitions() {
        let parts = (0..300)
            .map(|p| (0..(p % 7)).map(|i| format!("{p}-{i}")).collect())
            .collect();
        round_trip(parts).await;
    }

    #[tokio::test]
    async fn round_trip_partitions_larger_than_a_chunk() {
        // Several MiB per partition: the streams span many chunks of the
        // writer's sink, and blocks start inside chunks.
        let parts = (0..3)
            .map(|p| {
                (0..120_000)
                    .map(|i| format!("{p}-{i}-{}", "x".repeat(i % 50)))
                    .collect()
            })
            .collect();
        round_trip(parts).await;
    }

    #[test]
    fn chunked_sink_keeps_every_byte_in_order() {
        use crate::writer::Chunks;
        use std::io::Write;
        let mut sink = Chunks::default();
        let mut expected = Vec::new();
        for i in 0..2000usize {
            let piece: Vec<u8> = (0..(i * 37) % 9000).map(|j| (i + j) as u8).collect();
            sink.write_all(&piece).unwrap();
            expected.extend_from_slice(&piece);
        }
        assert_eq!(sink.len(), expected.len());
        let chunks = sink.into_chunks();
        assert!(chunks.len() > 1);
        assert_eq!(chunks.concat(), expected);
    }

    #[tokio::test]
    async fn missing_output_is_named() {
        let store = ShuffleStore::new(Arc::new(InMemory::new()), Path::from("s"));
        let loc = BlockLocation {
            path: "s/nope.data".into(),
            map_partition: 4,
            offset: 0,
            len: 10,
            checksum: 0,
        };
        let res: Vec<_> = fetch_blocks(&store, vec![loc], 1).collect().await;
        let err = res.into_iter().next().unwrap().unwrap_err();
        assert!(matches!(err.source, ShuffleError::Missing { .. }), "{err}");
        assert!(err.to_string().contains("s/nope.data"));
        match err.into_pipeline_error(ShuffleId(2)) {
            riffle_planner::PipelineError::FetchFailed {
                shuffle,
                map_partition,
                data_path,
                ..
            } => assert_eq!(
                (shuffle, map_partition, data_path.as_str()),
                (ShuffleId(2), 4, "s/nope.data")
            ),
            other => panic!("{other}"),
        }
    }

    #[tokio::test]
    async fn a_flipped_byte_fails_the_fetch_instead_of_decoding() {
        use object_store::{ObjectStoreExt, PutPayload};
        let store = ShuffleStore::new(Arc::new(InMemory::new()), Path::from("s"))
            .with_compression(ShuffleCompression::None);
        let mut buf = RecordBuffer::default();
        for i in 0..100u32 {
            buf.push(&format!("record-{i}")).unwrap();
        }
        let encoded = encode_map_output(vec![buf.finish()], store.compression).unwrap();
        let path = store.data_path(JobId(1), ShuffleId(1), 0, 0);
        let status = put_map_output(&store, path.clone(), encoded).await.unwrap();
        let loc = status.block_location(0, 0).unwrap();
        // Flip one byte in the middle of the block (inside the values
        // buffer, where Arrow itself would decode a different string).
        let mut bytes = store
            .store
            .get(&path)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .to_vec();
        let middle = (loc.offset + loc.len / 2) as usize;
        bytes[middle] ^= 0x20;
        store
            .store
            .put(&path, PutPayload::from(bytes))
            .await
            .unwrap();
        let res: Vec<_> = fetch_blocks(&store, vec![loc], 1).collect().await;
        let err = res.into_iter().next().unwrap().unwrap_err();
        assert!(matches!(err.source, ShuffleError::Corrupt { .. }), "{err}");
        assert!(riffle_planner::report(&err).contains("CRC-32"), "{err}");
        assert!(matches!(
            err.into_pipeline_error(ShuffleId(1)),
            riffle_planner::PipelineError::FetchFailed {
                map_partition: 0,
                ..
            }
        ));
    }

    #[test]
    fn compression_follows_the_store_unless_set() {
        let url = |u: &str| url::Url::parse(u).unwrap();
        let resolve = ShuffleCompression::resolve;
        assert_eq!(
            resolve(None, &url("file:///tmp/s")).unwrap(),
            ShuffleCompression::None
        );
        assert_eq!(
            resolve(None, &url("memory:///s")).unwrap(),
            ShuffleCompression::None
        );
        assert_eq!(
            resolve(None, &url("s3://b/s")).unwrap(),
            ShuffleCompression::Lz4
        );
        assert_eq!(
            resolve(Some("LZ4"), &url("file:///s")).unwrap(),
            ShuffleCompression::Lz4
        );
        assert_eq!(
            resolve(Some("none"), &url("s3://b/s")).unwrap(),
            ShuffleCompression::None
        );
        let err = resolve(Some("zstd"), &url("s3://b/s"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("RIFFLE_SHUFFLE_COMPRESSION") && err.contains("zstd"),
            "{err}"
        );
    }

    #[test]
    fn corrupt_block_is_an_error() {
        let err = decode_block("x.data", Bytes::from_static(b"not arrow")).unwrap_err();
        assert!(err.to_string().contains("x.data"));
    }
}
