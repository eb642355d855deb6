//! The map side: encode one array per reduce partition into one object.

use crate::error::ShuffleError;
use crate::layout::{ShuffleCompression, ShuffleStore};
use arrow_array::{Array, ArrayRef, BinaryArray, RecordBatch};
use arrow_ipc::CompressionType;
use arrow_ipc::writer::{IpcWriteOptions, StreamWriter};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use arrow_select::coalesce::BatchCoalescer;
use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use riffle_planner::task::{BlockInfo, MapStatus};
use std::sync::{Arc, LazyLock};

/// The schema of every shuffle stream: one column of encoded records.
pub static RECORD_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![Field::new(
        "record",
        DataType::Binary,
        false,
    )]))
});

/// A map output encoded in memory, ready to be stored.
pub struct EncodedMapOutput {
    /// The data object's bytes, as a list of chunks (see [`Chunks`]).
    pub data: PutPayload,
    /// Per reduce partition: byte range and rows.
    pub blocks: Vec<BlockInfo>,
}

impl EncodedMapOutput {
    /// The data object's bytes in one contiguous buffer.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.data.content_length());
        for chunk in self.data.iter() {
            out.extend_from_slice(chunk);
        }
        out
    }
}

/// Smallest and largest chunk an IPC stream is written into: chunks grow
/// with the stream (each as large as all before it), so the many small
/// partitions of a wide shuffle stay small and large ones take few chunks.
const MIN_CHUNK_BYTES: usize = 64 << 10;
const MAX_CHUNK_BYTES: usize = 4 << 20;

/// An `io::Write` sink that fills fixed-size chunks instead of one growing
/// `Vec`. A `Vec` grown to the size of a map output copies it again at
/// every doubling and touches fresh pages each time: clearing those pages
/// in the kernel was a third of a TPC-H join stage's time (perf). Full
/// chunks become `Bytes` without a copy, and the stored object is the
/// list of chunks.
#[derive(Default)]
pub struct Chunks {
    done: Vec<Bytes>,
    current: Vec<u8>,
    len: usize,
}

impl Chunks {
    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The chunks, in order.
    pub fn into_chunks(mut self) -> Vec<Bytes> {
        if !self.current.is_empty() {
            self.done
                .push(Bytes::from(std::mem::take(&mut self.current)));
        }
        self.done
    }
}

impl std::io::Write for Chunks {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut rest = buf;
        while !rest.is_empty() {
            if self.current.capacity() == 0 {
                let size = self.len.clamp(MIN_CHUNK_BYTES, MAX_CHUNK_BYTES);
                self.current = Vec::with_capacity(size);
            }
            let room = self.current.capacity() - self.current.len();
            let (now, later) = rest.split_at(room.min(rest.len()));
            self.current.extend_from_slice(now);
            rest = later;
            if self.current.len() == self.current.capacity() {
                self.done
                    .push(Bytes::from(std::mem::take(&mut self.current)));
            }
        }
        self.len += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Encodes one array of encoded records per reduce partition (CPU work:
/// call it from the rayon side). Empty partitions take no bytes.
pub fn encode_map_output(
    partitions: Vec<BinaryArray>,
    compression: ShuffleCompression,
) -> Result<EncodedMapOutput, ShuffleError> {
    let batches = partitions
        .into_iter()
        .map(|array| {
            if array.is_empty() {
                return Ok(Vec::new());
            }
            RecordBatch::try_new(RECORD_SCHEMA.clone(), vec![Arc::new(array) as ArrayRef])
                .map(|b| vec![b])
                .map_err(encode_error)
        })
        .collect::<Result<Vec<_>, _>>()?;
    encode_batches(&RECORD_SCHEMA, batches, compression)
}

/// Encodes the record batches of each reduce partition, of any schema, as
/// one complete Arrow IPC stream per non-empty partition, batch for batch
/// (no re-packing).
pub fn encode_batches(
    schema: &SchemaRef,
    partitions: Vec<Vec<RecordBatch>>,
    compression: ShuffleCompression,
) -> Result<EncodedMapOutput, ShuffleError> {
    let mut builder =
        MapOutputBuilder::new(schema.clone(), partitions.len(), compression)?.without_coalescing();
    for (p, batches) in partitions.into_iter().enumerate() {
        for batch in batches {
            builder.push(p, batch)?;
        }
    }
    builder.finish()
}

/// Rows per batch that [`MapOutputBuilder`] packs pieces into.
pub const TARGET_BATCH_ROWS: usize = 8192;

/// Builds one map output from batches pushed as they are produced, one
/// LZ4 Arrow IPC stream per reduce partition.
///
/// Pieces of a partitioned batch are small, and after a join or a `take`
/// their string views still point into the whole source buffers; encoding
/// them as they are would write those buffers again for every piece (a
/// join's output grew tenfold that way). So by default each partition
/// re-packs its pieces into batches of [`TARGET_BATCH_ROWS`] rows with
/// compacted views ([`BatchCoalescer`]), and full batches are encoded at
/// once: what a map task holds is compressed bytes, not arrays.
pub struct MapOutputBuilder {
    schema: SchemaRef,
    options: IpcWriteOptions,
    coalesce: bool,
    partitions: Vec<PartitionBuffer>,
}

struct PartitionBuffer {
    coalescer: Option<BatchCoalescer>,
    writer: Option<StreamWriter<Chunks>>,
    rows: u64,
}

impl MapOutputBuilder {
    /// A builder for `partitions` reduce partitions of `schema`.
    pub fn new(
        schema: SchemaRef,
        partitions: usize,
        compression: ShuffleCompression,
    ) -> Result<Self, ShuffleError> {
        let codec = match compression {
            ShuffleCompression::Lz4 => Some(CompressionType::LZ4_FRAME),
            ShuffleCompression::None => None,
        };
        let options = IpcWriteOptions::default()
            .try_with_compression(codec)
            .map_err(|e| ShuffleError::encode("setting the IPC compression", e))?;
        // A batch without columns carries only its row count, which the
        // coalescer cannot re-pack: such batches are written as they are.
        let coalesce = !schema.fields().is_empty();
        let partitions = (0..partitions)
            .map(|_| PartitionBuffer {
                coalescer: None,
                writer: None,
                rows: 0,
            })
            .collect();
        Ok(MapOutputBuilder {
            schema,
            options,
            coalesce,
            partitions,
        })
    }

    /// Writes batches as they come, without re-packing (for batches that
    /// are already large and compact).
    pub fn without_coalescing(mut self) -> Self {
        self.coalesce = false;
        self
    }

    /// Number of reduce partitions.
    pub fn partitions(&self) -> usize {
        self.partitions.len()
    }

    /// Adds `batch` to reduce partition `partition`.
    pub fn push(&mut self, partition: usize, batch: RecordBatch) -> Result<(), ShuffleError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let count = self.partitions.len();
        let Some(buffer) = self.partitions.get_mut(partition) else {
            return Err(ShuffleError::encode_message(format!(
                "reduce partition {partition} is out of range (the output has {count})"
            )));
        };
        buffer.rows += batch.num_rows() as u64;
        if !self.coalesce {
            return write_batch(&self.schema, &self.options, &mut buffer.writer, &batch);
        }
        let coalescer = buffer
            .coalescer
            .get_or_insert_with(|| BatchCoalescer::new(self.schema.clone(), TARGET_BATCH_ROWS));
        coalescer.push_batch(batch).map_err(encode_error)?;
        while let Some(full) = coalescer.next_completed_batch() {
            write_batch(&self.schema, &self.options, &mut buffer.writer, &full)?;
        }
        Ok(())
    }

    /// Flushes every partition and lays the streams out in one object.
    pub fn finish(self) -> Result<EncodedMapOutput, ShuffleError> {
        let mut streams = Vec::with_capacity(self.partitions.len());
        for mut buffer in self.partitions {
            if let Some(mut coalescer) = buffer.coalescer.take() {
                coalescer.finish_buffered_batch().map_err(encode_error)?;
                while let Some(batch) = coalescer.next_completed_batch() {
                    write_batch(&self.schema, &self.options, &mut buffer.writer, &batch)?;
                }
            }
            let chunks = match buffer.writer {
                Some(mut writer) => {
                    writer.finish().map_err(encode_error)?;
                    writer.into_inner().map_err(encode_error)?
                }
                None => Chunks::default(),
            };
            streams.push((chunks, buffer.rows));
        }
        // The object is the partitions' chunks one after the other: laid
        // out without copying a byte.
        let mut data = Vec::new();
        let mut blocks = Vec::with_capacity(streams.len());
        let mut offset = 0u64;
        for (chunks, rows) in streams {
            let len = chunks.len() as u64;
            let chunks = chunks.into_chunks();
            let mut crc = crc32fast::Hasher::new();
            for chunk in &chunks {
                crc.update(chunk);
            }
            blocks.push(BlockInfo {
                offset,
                len,
                rows,
                checksum: crc.finalize(),
            });
            offset += len;
            data.extend(chunks);
        }
        Ok(EncodedMapOutput {
            data: PutPayload::from_iter(data),
            blocks,
        })
    }
}

fn write_batch(
    schema: &SchemaRef,
    options: &IpcWriteOptions,
    writer: &mut Option<StreamWriter<Chunks>>,
    batch: &RecordBatch,
) -> Result<(), ShuffleError> {
    let writer = match writer {
        Some(writer) => writer,
        None => writer.insert(
            StreamWriter::try_new_with_options(Chunks::default(), schema, options.clone())
                .map_err(encode_error)?,
        ),
    };
    writer.write(batch).map_err(encode_error)
}

fn encode_error(e: arrow_schema::ArrowError) -> ShuffleError {
    ShuffleError::encode("writing Arrow IPC", e)
}

/// Stores an encoded map output: the data object, then its index. The index
/// goes last so that a reader that trusts it finds the data complete.
pub async fn put_map_output(
    store: &ShuffleStore,
    data_path: Path,
    output: EncodedMapOutput,
) -> Result<MapStatus, ShuffleError> {
    store
        .store
        .put(&data_path, output.data)
        .await
        .map_err(|e| ShuffleError::storage(&data_path, e))?;
    let index_path = ShuffleStore::index_path(&data_path);
    let index = riffle_planner::task::encode(&output.blocks)
        .map_err(|e| ShuffleError::encode("the index", e))?;
    store
        .store
        .put(&index_path, PutPayload::from(index))
        .await
        .map_err(|e| ShuffleError::storage(&index_path, e))?;
    Ok(MapStatus {
        data_path: data_path.to_string(),
        blocks: output.blocks,
    })
}
