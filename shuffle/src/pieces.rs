//! Large blocks fetched and decoded a piece at a time.
//!
//! A reduce task fetching a block whole holds all of it until its last
//! batch is read. Blocks are a map task's output for one reduce partition,
//! so with few reduce partitions (SQL's default is one per core) they reach
//! hundreds of MiB: two such blocks in flight killed a `GROUP BY` under a
//! 512 MiB limit. A block larger than [`PIECE_BYTES`] is instead fetched in
//! ranges of about that size, and decoded as soon as the next message
//! (schema, dictionaries, record batch) is whole, so what a reader holds is
//! about two pieces (the rest of one while the next arrives). Spark's answer to the same
//! problem is the same: blocks above `spark.network.maxRemoteBlockSizeFetchToMem`
//! are streamed instead of fetched into memory.
//!
//! The block's CRC-32 covers all of it, and no batch of a damaged block may
//! be used (a consumer that stops early, under a `LIMIT`, would never see a
//! check at the end). So the block is read twice: once a piece at a time to
//! check its CRC-32, holding nothing, then again to decode. The second read
//! of a local shuffle comes from the page cache; a checksum per piece
//! written by the map side would save it. Every message is also framed and
//! checked by [`IpcStream`] against the bytes really there.

use crate::error::{FetchError, ShuffleError};
use crate::ipc::{IpcStream, Problem, Source};
use crate::reader::{check_checksum, damaged};
use arrow_array::RecordBatch;
use arrow_buffer::Buffer;
use arrow_ipc::MessageHeader;
use bytes::BytesMut;
use futures::Stream;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use riffle_planner::task::BlockLocation;
use std::sync::Arc;

/// Blocks larger than this are fetched a piece of about this size at a
/// time (bytes).
pub const PIECE_BYTES: u64 = 4 << 20;

/// The fetched bytes of a block not yet taken by its decoder.
struct Queue {
    fetched: BytesMut,
    /// Bytes of the block the decoder has not taken (fetched or not).
    untaken: u64,
}

impl Source for Queue {
    fn remaining(&self) -> u64 {
        self.untaken
    }

    fn take(&mut self, n: usize) -> std::io::Result<Buffer> {
        if self.fetched.len() < n {
            // Cannot happen: whole messages are fetched before decoding.
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the message was not fetched",
            ));
        }
        self.untaken -= n as u64;
        Ok(Buffer::from(self.fetched.split_to(n).freeze()))
    }
}

/// One large block being read.
struct Pieces {
    store: Arc<dyn ObjectStore>,
    path: Path,
    block: BlockLocation,
    /// Bytes of the block fetched so far (for decoding).
    fetched: u64,
    /// Whether the block's CRC-32 has been checked.
    verified: bool,
    /// The queue until the schema is whole, then the decoder owning it.
    state: State,
    done: bool,
}

enum State {
    Opening(Queue),
    Reading(IpcStream<Queue>),
    Gone,
}

/// The record batches of `block`, fetched from `store` a piece at a time
/// (see the module's documentation); errors name the block.
pub fn piecewise_batches(
    store: Arc<dyn ObjectStore>,
    block: BlockLocation,
) -> impl Stream<Item = Result<RecordBatch, FetchError>> + Send + 'static {
    let pieces = Pieces {
        store,
        path: Path::from(block.path.as_str()),
        fetched: 0,
        verified: false,
        state: State::Opening(Queue {
            fetched: BytesMut::new(),
            untaken: block.len,
        }),
        block,
        done: false,
    };
    futures::stream::unfold(pieces, |mut pieces| async move {
        if pieces.done {
            return None;
        }
        match pieces.next_batch().await {
            Ok(Some(batch)) => Some((Ok(batch), pieces)),
            Ok(None) => None,
            Err(source) => {
                pieces.done = true;
                let block = pieces.block.clone();
                Some((Err(FetchError { block, source }), pieces))
            }
        }
    })
}

impl Pieces {
    fn queue(&mut self) -> Option<&mut Queue> {
        match &mut self.state {
            State::Opening(queue) => Some(queue),
            State::Reading(stream) => Some(stream.source_mut()),
            State::Gone => None,
        }
    }

    async fn next_batch(&mut self) -> Result<Option<RecordBatch>, ShuffleError> {
        if !self.verified {
            self.verify().await?;
            self.verified = true;
        }
        let opening = matches!(self.state, State::Opening(_));
        let Some(queue) = self.queue() else {
            return Ok(None);
        };
        // A declared length past the block's end is the decoder's to
        // report: fetch no more than there is.
        let need = wanted(&queue.fetched, !opening).min(queue.untaken);
        self.fill(need).await?;
        let path = self.block.path.clone();
        let corrupt = move |p: Problem| crate::reader::corrupt(&path, p);
        if let State::Opening(_) = self.state {
            let State::Opening(queue) = std::mem::replace(&mut self.state, State::Gone) else {
                unreachable!("matched above")
            };
            self.state = State::Reading(IpcStream::open(queue).map_err(&corrupt)?);
            return Box::pin(self.next_batch()).await;
        }
        let State::Reading(stream) = &mut self.state else {
            return Ok(None);
        };
        stream.next_batch().map_err(corrupt)
    }

    /// Reads the block a piece at a time, keeping nothing, and checks its
    /// length and CRC-32.
    async fn verify(&self) -> Result<(), ShuffleError> {
        let mut crc = crc32fast::Hasher::new();
        let mut at = 0;
        while at < self.block.len {
            let end = (at + PIECE_BYTES).min(self.block.len);
            crc.update(&self.piece(at, end).await?);
            at = end;
        }
        check_checksum(&self.block, crc.finalize())
    }

    /// Bytes `at..end` of the block, which must all be there.
    async fn piece(&self, at: u64, end: u64) -> Result<bytes::Bytes, ShuffleError> {
        let range = self.block.offset + at..self.block.offset + end;
        let piece = self
            .store
            .get_range(&self.path, range)
            .await
            .map_err(|e| ShuffleError::storage(&self.path, e))?;
        if piece.len() as u64 != end - at {
            return Err(damaged(
                &self.block,
                format!(
                    "block at offset {} should be {} bytes, got {} at byte {at}",
                    self.block.offset,
                    self.block.len,
                    piece.len(),
                ),
            ));
        }
        Ok(piece)
    }

    /// Fetches pieces until `need` bytes are queued or the block is all
    /// fetched.
    async fn fill(&mut self, need: u64) -> Result<(), ShuffleError> {
        loop {
            let queued = self.queue().map_or(0, |q| q.fetched.len() as u64);
            if queued >= need || self.fetched == self.block.len {
                return Ok(());
            }
            let want = (need - queued).max(PIECE_BYTES);
            let end = self.fetched.saturating_add(want).min(self.block.len);
            let piece = self.piece(self.fetched, end).await?;
            self.fetched = end;
            if let Some(queue) = self.queue() {
                queue.fetched.extend_from_slice(&piece);
            }
        }
    }
}

/// How many queued bytes the decoder's next step needs: the next message
/// (`batch` false: the schema), or (`batch` true) every message up to and
/// including the next record batch or the end-of-stream marker. A framing
/// that cannot be read asks for everything, so that [`IpcStream`] sees all
/// there is and names what is wrong.
fn wanted(queued: &[u8], batch: bool) -> u64 {
    let word = |at: usize| -> Option<u32> {
        let bytes = queued.get(at..at.checked_add(4)?)?;
        Some(u32::from_le_bytes(bytes.try_into().ok()?))
    };
    let mut at = 0usize;
    loop {
        let Some(first) = word(at) else {
            return at as u64 + 8;
        };
        let (prefix, len) = if first == u32::MAX {
            match word(at + 4) {
                Some(len) => (8, len),
                None => return at as u64 + 8,
            }
        } else {
            (4, first)
        };
        if len == 0 {
            return (at + prefix) as u64;
        }
        let metadata = at + prefix;
        let body = metadata + len as usize;
        let Some(bytes) = queued.get(metadata..body) else {
            return body as u64;
        };
        let Ok(message) = arrow_ipc::root_as_message(bytes) else {
            return u64::MAX;
        };
        let Ok(body_len) = usize::try_from(message.bodyLength()) else {
            return u64::MAX;
        };
        let Some(end) = body.checked_add(body_len) else {
            return u64::MAX;
        };
        if !batch || message.header_type() != MessageHeader::DictionaryBatch {
            return end as u64;
        }
        if queued.len() < end {
            return end as u64;
        }
        at = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::{ShuffleCompression, ShuffleStore};
    use crate::reader::{fetch_batches, record_column};
    use crate::writer::{encode_map_output, put_map_output};
    use futures::StreamExt;
    use object_store::PutPayload;
    use object_store::memory::InMemory;
    use riffle_planner::codec::{RecordBuffer, decode_array};
    use riffle_planner::ids::{JobId, ShuffleId};

    /// A map output of two partitions: `big` records of 100 bytes (many
    /// pieces) and 3 small ones; the store and the blocks' locations.
    async fn written(
        big: usize,
        compression: ShuffleCompression,
    ) -> (ShuffleStore, Vec<BlockLocation>) {
        let store = ShuffleStore::new(Arc::new(InMemory::new()), Path::from("shuffle"))
            .with_compression(compression);
        let mut large = RecordBuffer::default();
        for i in 0..big {
            large.push(&format!("{i:0100}")).unwrap();
        }
        let mut small = RecordBuffer::default();
        for r in ["a", "b", "c"] {
            small.push(&r.to_string()).unwrap();
        }
        let encoded = encode_map_output(vec![large.finish(), small.finish()], compression).unwrap();
        let path = store.data_path(JobId(1), ShuffleId(2), 0, 0);
        let status = put_map_output(&store, path, encoded).await.unwrap();
        let blocks = (0..2).filter_map(|p| status.block_location(0, p)).collect();
        (store, blocks)
    }

    async fn read(
        store: &ShuffleStore,
        blocks: Vec<BlockLocation>,
    ) -> Result<Vec<String>, Box<FetchError>> {
        let mut out = Vec::new();
        let mut batches = std::pin::pin!(fetch_batches(store, blocks, 4, 1 << 20));
        while let Some(batch) = batches.next().await {
            let batch = batch?;
            let column = record_column("test", batch).unwrap();
            out.extend(decode_array::<String>(&column).map(Result::unwrap));
        }
        Ok(out)
    }

    #[tokio::test]
    async fn a_block_larger_than_a_piece_reads_back_whole_and_in_order() {
        for compression in [ShuffleCompression::None, ShuffleCompression::Lz4] {
            let (store, blocks) = written(120_000, compression).await;
            if compression == ShuffleCompression::None {
                assert!(blocks[0].len > 2 * PIECE_BYTES, "{}", blocks[0].len);
            }
            let got = read(&store, blocks).await.unwrap();
            assert_eq!(got.len(), 120_003);
            assert!(
                got[..120_000]
                    .iter()
                    .enumerate()
                    .all(|(i, r)| *r == format!("{i:0100}"))
            );
            assert_eq!(&got[120_000..], ["a", "b", "c"]);
        }
    }

    #[tokio::test]
    async fn a_damaged_or_truncated_large_block_fails_naming_it() {
        let (store, blocks) = written(120_000, ShuffleCompression::None).await;
        let path = Path::from(blocks[0].path.as_str());
        let mut bytes = store
            .store
            .get(&path)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .to_vec();
        // One flipped byte in the last piece: only the CRC can tell.
        let last = (blocks[0].offset + blocks[0].len - 100) as usize;
        bytes[last] ^= 1;
        store
            .store
            .put(&path, PutPayload::from(bytes.clone()))
            .await
            .unwrap();
        // The damage is found before any batch is handed out, so a consumer
        // that stops early (a LIMIT) never uses one.
        let first = std::pin::pin!(fetch_batches(&store, blocks.clone(), 4, 1 << 20))
            .next()
            .await;
        assert!(matches!(first, Some(Err(_))), "{first:?}");
        let err = read(&store, blocks.clone()).await.unwrap_err();
        assert_eq!(err.block.path, blocks[0].path);
        assert!(
            err.to_string().contains("CRC-32") || format!("{:?}", err.source).contains("CRC-32"),
            "{err:?}"
        );
        // A block whose object is shorter than its location says.
        bytes.truncate((blocks[0].offset + blocks[0].len / 2) as usize);
        store
            .store
            .put(&path, PutPayload::from(bytes))
            .await
            .unwrap();
        let err = read(&store, blocks.clone()).await.unwrap_err();
        assert_eq!(err.block.path, blocks[0].path, "{err:?}");
    }

    #[test]
    fn the_wanted_bytes_of_a_framing_that_is_garbage_are_everything() {
        assert_eq!(wanted(&[], true), 8);
        assert_eq!(wanted(&[0xff, 0xff, 0xff, 0xff, 8, 0, 0, 0], false), 16);
        assert_eq!(wanted(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0], true), 8);
        let garbage = [0xff, 0xff, 0xff, 0xff, 4, 0, 0, 0, 1, 2, 3, 4];
        assert_eq!(wanted(&garbage, true), u64::MAX);
    }
}
