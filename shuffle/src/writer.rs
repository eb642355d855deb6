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
use riffle_planner::memory::{Reservation, SharedMemory, SpillFile};
use riffle_planner::pipeline::Counters;
use riffle_planner::task::{BlockInfo, MapStatus};
use std::io::Write as _;
use std::sync::{Arc, LazyLock};

/// The schema of every shuffle stream: one column of encoded records.
pub static RECORD_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![Field::new(
        "record",
        DataType::Binary,
        false,
    )]))
});

/// A map output encoded, ready to be stored: in memory, or (when it
/// outgrew its task's share of memory) partly in a local spill file.
pub struct EncodedMapOutput {
    /// The data object's pieces, in order.
    pub parts: Vec<Part>,
    /// Per reduce partition: byte range and rows.
    pub blocks: Vec<BlockInfo>,
    /// The spill file the [`Part::Spilled`] pieces are in; deleted when
    /// the output is dropped.
    pub spill: Option<Box<dyn SpillFile>>,
}

/// A piece of a data object.
pub enum Part {
    /// Bytes in memory.
    Memory(Bytes),
    /// `len` bytes at `offset` of the output's spill file.
    Spilled {
        /// Where in the file.
        offset: u64,
        /// How many bytes.
        len: u64,
    },
}

/// Bytes read from a spill file at a time while storing.
const SPILL_READ_BYTES: usize = 4 << 20;

impl EncodedMapOutput {
    /// Length of the data object in bytes.
    pub fn len(&self) -> u64 {
        self.blocks.iter().map(|b| b.len).sum()
    }

    /// True when the data object is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The data object's bytes in one contiguous buffer (for results that
    /// go back to the driver, which are never spilled).
    pub fn to_vec(&self) -> Result<Vec<u8>, ShuffleError> {
        let mut out = Vec::with_capacity(self.len() as usize);
        let mut reader = SpillReader::default();
        for part in &self.parts {
            match part {
                Part::Memory(bytes) => out.extend_from_slice(bytes),
                Part::Spilled { offset, len } => {
                    let mut at = 0;
                    while at < *len {
                        let piece = reader.read(self, offset + at, len - at)?;
                        at += piece.len() as u64;
                        out.extend_from_slice(&piece);
                    }
                }
            }
        }
        Ok(out)
    }
}

/// Reads spilled pieces of a map output back, at most
/// [`SPILL_READ_BYTES`] at a time, through one open file.
#[derive(Default)]
struct SpillReader {
    file: Option<std::fs::File>,
}

impl SpillReader {
    fn read(
        &mut self,
        output: &EncodedMapOutput,
        offset: u64,
        left: u64,
    ) -> Result<Bytes, ShuffleError> {
        use std::io::{Read, Seek, SeekFrom};
        let spill = output
            .spill
            .as_ref()
            .ok_or_else(|| ShuffleError::encode_message("a spilled map output lost its file"))?;
        let path = spill.path();
        let error = |e: std::io::Error| ShuffleError::Spill {
            path: path.display().to_string(),
            message: "reading a spilled map output".into(),
            source: Box::new(e),
        };
        let file = match &mut self.file {
            Some(file) => file,
            None => self.file.insert(std::fs::File::open(path).map_err(error)?),
        };
        file.seek(SeekFrom::Start(offset)).map_err(error)?;
        let mut buf = vec![0; left.min(SPILL_READ_BYTES as u64) as usize];
        file.read_exact(&mut buf).map_err(error)?;
        Ok(Bytes::from(buf))
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
    /// Bytes allocated: the full chunks plus the capacity of the one being
    /// filled (which is what a memory budget must count).
    pub fn allocated(&self) -> usize {
        self.len - self.current.len() + self.current.capacity()
    }

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
    spill: Option<MapSpill>,
}

struct PartitionBuffer {
    coalescer: Option<BatchCoalescer>,
    writer: Option<StreamWriter<Chunks>>,
    rows: u64,
    /// What of this partition's stream went to the spill file, in order.
    spilled: Vec<(u64, u64)>,
    /// CRC-32 of the stream so far (spilled bytes included).
    crc: crc32fast::Hasher,
}

/// Spilling of a map output that outgrows its task's share of memory, as
/// Spark's sort-based shuffle writer spills: the encoded bytes of every
/// partition so far are appended to one local file (each partition's
/// stream stays in order), and the stored object is put together from the
/// file and what is left in memory.
struct MapSpill {
    memory: SharedMemory,
    counters: Arc<Counters>,
    /// Registered with the first bytes: a fair pool splits its memory
    /// between registered reservations, and a map task whose operators
    /// are still working (an aggregation emits at its end) must not halve
    /// their share with an empty one.
    reservation: Option<Box<dyn Reservation>>,
    /// Encoded bytes held in memory after the last batch.
    held: usize,
    file: Option<(Box<dyn SpillFile>, Box<dyn std::io::Write + Send>)>,
    file_len: u64,
}

/// Bytes a map output's reservation grows by at a time.
const SPILL_GROW_STEP: usize = 1 << 20;

/// A map output holding less than this does not spill (a file for a few
/// kilobytes costs more than it saves).
const MIN_SPILL_BYTES: usize = 1 << 20;

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
                spilled: Vec::new(),
                crc: crc32fast::Hasher::new(),
            })
            .collect();
        Ok(MapOutputBuilder {
            schema,
            options,
            coalesce,
            partitions,
            spill: None,
        })
    }

    /// Accounts the encoded output in `memory`'s pool, and spills it to a
    /// local file when the pool will not hold more; spilled bytes and
    /// files are added to `counters`.
    pub fn with_spilling(mut self, memory: SharedMemory, counters: Arc<Counters>) -> Self {
        self.spill = Some(MapSpill {
            reservation: None,
            memory,
            counters,
            held: 0,
            file: None,
            file_len: 0,
        });
        self
    }

    /// After a batch was encoded: accounts its bytes and spills everything
    /// encoded so far if the pool will not hold it.
    fn account(&mut self) -> Result<(), ShuffleError> {
        let Some(spill) = self.spill.as_mut() else {
            return Ok(());
        };
        spill.held = self
            .partitions
            .iter()
            .filter_map(|p| p.writer.as_ref().map(|w| w.get_ref().allocated()))
            .sum();
        if spill.memory.force_spill_every().is_some() && spill.held > 0 {
            // The test setting: every batch goes to disk.
            return self.spill_all();
        }
        let reservation = spill
            .reservation
            .get_or_insert_with(|| spill.memory.reserve("shuffle write"));
        let reserved = reservation.size();
        if spill.held <= reserved {
            return Ok(());
        }
        let want = (spill.held - reserved).max(SPILL_GROW_STEP);
        if reservation.try_grow(want) || spill.held < MIN_SPILL_BYTES {
            return Ok(());
        }
        self.spill_all()
    }

    /// Appends every partition's encoded bytes so far to the spill file.
    fn spill_all(&mut self) -> Result<(), ShuffleError> {
        let Some(spill) = self.spill.as_mut() else {
            return Ok(());
        };
        if spill.file.is_none() {
            let file = spill.memory.spill_file().map_err(|e| ShuffleError::Spill {
                path: "(spill directory)".into(),
                message: "creating a spill file for a map output".into(),
                source: e,
            })?;
            let out = file.writer().map_err(|e| ShuffleError::Spill {
                path: file.path().display().to_string(),
                message: "opening a spill file".into(),
                source: Box::new(e),
            })?;
            spill.file = Some((file, out));
            Counters::add(&spill.counters.spill_count, 1);
        }
        let Some((file, out)) = spill.file.as_mut() else {
            return Ok(());
        };
        let before = spill.file_len;
        for partition in &mut self.partitions {
            let Some(writer) = partition.writer.as_mut() else {
                continue;
            };
            let chunks = std::mem::take(writer.get_mut()).into_chunks();
            let len: usize = chunks.iter().map(Bytes::len).sum();
            if len == 0 {
                continue;
            }
            for chunk in &chunks {
                partition.crc.update(chunk);
                out.write_all(chunk).map_err(|e| ShuffleError::Spill {
                    path: file.path().display().to_string(),
                    message: "spilling a map output".into(),
                    source: Box::new(e),
                })?;
            }
            partition.spilled.push((spill.file_len, len as u64));
            spill.file_len += len as u64;
        }
        out.flush().map_err(|e| ShuffleError::Spill {
            path: file.path().display().to_string(),
            message: "spilling a map output".into(),
            source: Box::new(e),
        })?;
        Counters::add(&spill.counters.spilled_bytes, spill.file_len - before);
        spill.held = 0;
        if let Some(reservation) = spill.reservation.as_mut() {
            reservation.free();
        }
        Ok(())
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
            write_batch(&self.schema, &self.options, &mut buffer.writer, &batch)?;
        } else {
            let coalescer = buffer
                .coalescer
                .get_or_insert_with(|| BatchCoalescer::new(self.schema.clone(), TARGET_BATCH_ROWS));
            coalescer.push_batch(batch).map_err(encode_error)?;
            while let Some(full) = coalescer.next_completed_batch() {
                write_batch(&self.schema, &self.options, &mut buffer.writer, &full)?;
            }
        }
        self.account()
    }

    /// Flushes every partition and lays the streams out in one object.
    pub fn finish(mut self) -> Result<EncodedMapOutput, ShuffleError> {
        let mut streams = Vec::with_capacity(self.partitions.len());
        let spill = self.spill.take();
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
            streams.push((chunks, buffer.rows, buffer.spilled, buffer.crc));
        }
        // The object is the partitions' chunks one after the other (after
        // what each spilled): laid out without copying a byte.
        let mut parts = Vec::new();
        let mut blocks = Vec::with_capacity(streams.len());
        let mut offset = 0u64;
        for (chunks, rows, spilled, mut crc) in streams {
            let mut len = chunks.len() as u64;
            for (at, n) in spilled {
                parts.push(Part::Spilled { offset: at, len: n });
                len += n;
            }
            for chunk in chunks.into_chunks() {
                crc.update(&chunk);
                parts.push(Part::Memory(chunk));
            }
            blocks.push(BlockInfo {
                offset,
                len,
                rows,
                checksum: crc.finalize(),
            });
            offset += len;
        }
        Ok(EncodedMapOutput {
            parts,
            blocks,
            // The reservation goes back to the pool: what is left in memory
            // is handed to the store next.
            spill: spill.and_then(|s| s.file.map(|(file, _)| file)),
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
    if output.spill.is_none() {
        let data = PutPayload::from_iter(output.parts.iter().filter_map(|p| match p {
            Part::Memory(bytes) => Some(bytes.clone()),
            Part::Spilled { .. } => None,
        }));
        store
            .store
            .put(&data_path, data)
            .await
            .map_err(|e| ShuffleError::storage(&data_path, e))?;
    } else {
        // Too large to hold: uploaded in parts, read back from the spill
        // file a piece at a time.
        let upload = store
            .store
            .put_multipart(&data_path)
            .await
            .map_err(|e| ShuffleError::storage(&data_path, e))?;
        let mut writer = object_store::WriteMultipart::new(upload);
        let mut reader = SpillReader::default();
        let storage = |e| ShuffleError::storage(&data_path, e);
        for part in &output.parts {
            match part {
                Part::Memory(bytes) => writer.put(bytes.clone()),
                Part::Spilled { offset, len } => {
                    let mut at = 0;
                    while at < *len {
                        let piece = reader.read(&output, offset + at, len - at)?;
                        at += piece.len() as u64;
                        writer.put(piece);
                        // Holds a few parts, not the whole file.
                        writer.wait_for_capacity(4).await.map_err(storage)?;
                    }
                }
            }
        }
        writer.finish().await.map_err(storage)?;
    }
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
