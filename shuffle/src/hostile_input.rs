//! Hostile input never panics (issue 11): shuffle blocks, indexes and spill
//! runs written by the real writers, then truncated, bit-flipped,
//! overwritten or replaced by random bytes, decode to batches or to an
//! error naming the object, never a panic, an abort, an unbounded
//! allocation or a hang. Blocks are decoded directly, past the CRC-32 a
//! fetch checks: the decoder must hold on its own (a CRC is no defence
//! against bytes written to fail it). Case counts are bounded for CI.

use crate::layout::{ShuffleCompression, ShuffleStore};
use crate::reader::{BlockBatches, decode_block, read_index};
use crate::spill::{RunReader, RunWriter};
use crate::writer::{encode_batches, encode_map_output, put_map_output};
use arrow_array::{
    ArrayRef, BinaryArray, Int64Array, RecordBatch, StringArray, StringViewArray, StructArray,
};
use arrow_schema::{DataType, Field, Schema};
use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use proptest::prelude::*;
use riffle_planner::codec::RecordBuffer;
use riffle_planner::ids::{JobId, ShuffleId};
use std::sync::Arc;

/// The blocks of one real map output, each a complete IPC stream.
fn blocks_of(output: crate::writer::EncodedMapOutput) -> Vec<Vec<u8>> {
    let object = output.to_vec().unwrap();
    output
        .blocks
        .iter()
        .filter(|b| b.len > 0)
        .map(|b| object[b.offset as usize..(b.offset + b.len) as usize].to_vec())
        .collect()
}

/// Blocks of encoded records, as Dataset shuffles write them, compressed
/// and not (one of them highly compressible).
fn record_blocks() -> Vec<Vec<u8>> {
    let mut blocks = Vec::new();
    for compression in [ShuffleCompression::Lz4, ShuffleCompression::None] {
        let partitions = (0..3)
            .map(|p| {
                let mut buf = RecordBuffer::default();
                for i in 0..50u64 {
                    buf.push(&(format!("key-{p}-{i}"), i * 7, vec![i; p]))
                        .unwrap();
                }
                buf.finish()
            })
            .chain(std::iter::once(BinaryArray::from_vec(vec![
                &[0u8; 4096][..];
                64
            ])))
            .collect();
        blocks.extend(blocks_of(
            encode_map_output(partitions, compression).unwrap(),
        ));
    }
    blocks
}

/// Blocks of SQL rows: several column types, nulls, views, a struct.
fn sql_blocks() -> Vec<Vec<u8>> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
        Field::new("view", DataType::Utf8View, true),
        Field::new(
            "s",
            DataType::Struct(vec![Field::new("x", DataType::Int64, true)].into()),
            true,
        ),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from_iter_values(0..40)) as ArrayRef,
            Arc::new(StringArray::from_iter(
                (0..40).map(|i| (i % 3 != 0).then(|| format!("name {i}"))),
            )),
            Arc::new(StringViewArray::from_iter((0..40).map(|i| {
                (i % 5 != 0).then(|| format!("a longer string view {i}"))
            }))),
            Arc::new(StructArray::from(vec![(
                Arc::new(Field::new("x", DataType::Int64, true)),
                Arc::new(Int64Array::from_iter(
                    (0..40).map(|i| (i % 2 == 0).then_some(i)),
                )) as ArrayRef,
            )])),
        ],
    )
    .unwrap();
    let mut blocks = Vec::new();
    for compression in [ShuffleCompression::Lz4, ShuffleCompression::None] {
        let partitions = vec![vec![batch.clone(), batch.slice(5, 10)], vec![batch.clone()]];
        blocks.extend(blocks_of(
            encode_batches(&schema, partitions, compression).unwrap(),
        ));
    }
    blocks
}

fn mutated(corpus: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    let n = corpus.len();
    (
        0..n,
        0..5u8,
        any::<prop::sample::Index>(),
        any::<u8>(),
        prop::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(move |(which, how, at, byte, random)| {
            let how = riffle_planner::corrupt::Corruption::ALL[usize::from(how)];
            riffle_planner::corrupt::corrupt(
                &corpus[which],
                how,
                at.index(usize::MAX),
                byte,
                &random,
            )
        })
}

fn cases(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

const PATH: &str = "shuffle/job-1/shuffle-2/map-3/attempt-0.data";

/// Every batch of a block, or the first error, which must name the
/// object.
fn decode_all(bytes: Vec<u8>) -> Result<(), TestCaseError> {
    let result = BlockBatches::new(PATH, Bytes::from(bytes))
        .and_then(|batches| batches.collect::<Result<Vec<_>, _>>());
    if let Err(e) = result {
        let text = riffle_planner::report(&e);
        prop_assert!(text.contains(PATH) && text.contains("corrupt"), "{text}");
    }
    Ok(())
}

proptest! {
    #![proptest_config(cases(384))]

    #[test]
    fn record_blocks_decode_or_say_why(bytes in mutated(record_blocks())) {
        if let Err(e) = decode_block(PATH, Bytes::from(bytes)) {
            let text = riffle_planner::report(&e);
            prop_assert!(text.contains(PATH), "{text}");
        }
    }

    #[test]
    fn sql_blocks_decode_or_say_why(bytes in mutated(sql_blocks())) {
        decode_all(bytes)?;
    }

    #[test]
    fn indexes_read_back_or_say_why(bytes in mutated(real_indexes())) {
        let store = ShuffleStore::new(
            Arc::new(object_store::memory::InMemory::new()),
            Path::from("shuffle"),
        );
        let data = store.data_path(JobId(1), ShuffleId(2), 3, 0);
        let index = ShuffleStore::index_path(&data);
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let result = rt.block_on(async {
            store.store.put(&index, PutPayload::from(bytes)).await.unwrap();
            read_index(&store, &data).await
        });
        if let Err(e) = result {
            let text = riffle_planner::report(&e);
            prop_assert!(text.contains(index.as_ref()) && text.contains("index"), "{text}");
        }
    }
}

proptest! {
    // Each case writes and reads a file: fewer of them.
    #![proptest_config(cases(128))]

    #[test]
    fn spill_runs_read_back_or_say_why(bytes in mutated(vec![real_run()])) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run-0");
        std::fs::write(&path, &bytes).unwrap();
        let result = RunReader::open(&path).and_then(|r| r.collect::<Result<Vec<_>, _>>());
        if let Err(e) = result {
            let text = riffle_planner::report(&e);
            prop_assert!(text.contains("run-0") && text.contains("spill run"), "{text}");
        }
    }
}

/// Real index objects, as `put_map_output` stores them.
fn real_indexes() -> Vec<Vec<u8>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    [2usize, 40]
        .into_iter()
        .map(|partitions| {
            let store = ShuffleStore::new(
                Arc::new(object_store::memory::InMemory::new()),
                Path::from("shuffle"),
            );
            let arrays = (0..partitions)
                .map(|p| BinaryArray::from_vec(vec![&b"record"[..]; p % 3]))
                .collect();
            let encoded = encode_map_output(arrays, ShuffleCompression::Lz4).unwrap();
            let data = store.data_path(JobId(1), ShuffleId(2), 3, 0);
            rt.block_on(async {
                put_map_output(&store, data.clone(), encoded).await.unwrap();
                let index = ShuffleStore::index_path(&data);
                store
                    .store
                    .get(&index)
                    .await
                    .unwrap()
                    .bytes()
                    .await
                    .unwrap()
                    .to_vec()
            })
        })
        .collect()
}

/// A real spill run of two batches.
fn real_run() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run");
    let file = std::fs::File::create(&path).unwrap();
    let mut run = RunWriter::new(Box::new(file), &path).unwrap();
    run.write(BinaryArray::from_iter_values([b"a".as_slice(), b"bc"]))
        .unwrap();
    run.write(BinaryArray::from_iter_values([b"record".as_slice(); 20]))
        .unwrap();
    run.finish().unwrap();
    std::fs::read(&path).unwrap()
}

/// The error decoding `bytes` as a block, as one line.
fn block_error(bytes: Vec<u8>) -> String {
    let result = BlockBatches::new(PATH, Bytes::from(bytes))
        .and_then(|batches| batches.collect::<Result<Vec<_>, _>>());
    riffle_planner::report(&result.unwrap_err())
}

/// Where the first record batch message of `block` starts, its metadata
/// and its body.
fn first_batch(block: &[u8]) -> (usize, std::ops::Range<usize>, std::ops::Range<usize>) {
    let mut at = 0;
    loop {
        let len = u32::from_le_bytes(block[at + 4..at + 8].try_into().unwrap()) as usize;
        let meta = at + 8..at + 8 + len;
        let message = arrow_ipc::root_as_message(&block[meta.clone()]).unwrap();
        let body = meta.end..meta.end + message.bodyLength() as usize;
        if message.header_type() == arrow_ipc::MessageHeader::RecordBatch {
            return (at, meta, body);
        }
        at = body.end;
    }
}

/// Overwrites the one occurrence of `old` (little-endian) in `bytes`.
fn replace_i64(bytes: &mut [u8], old: i64, new: i64) {
    let old = old.to_le_bytes();
    let at: Vec<usize> = (0..bytes.len() - 7)
        .filter(|&i| bytes[i..i + 8] == old)
        .collect();
    assert_eq!(at.len(), 1, "{old:?} occurs once");
    bytes[at[0]..at[0] + 8].copy_from_slice(&new.to_le_bytes());
}

#[test]
fn a_declared_metadata_length_is_not_allocated() {
    // Arrow's StreamReader resized its buffer to this 2 GiB before reading.
    let bytes = vec![0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f];
    let e = block_error(bytes);
    assert!(
        e.contains("2147483647-byte metadata") && e.contains(PATH),
        "{e}"
    );
}

#[test]
fn a_negative_or_huge_body_length_is_refused() {
    // Arrow's StreamReader allocated `bodyLength as usize` up front: a
    // negative length aborted the process.
    let block = record_blocks().remove(0);
    let (_, meta, body) = first_batch(&block);
    for bad in [-8, 1 << 50] {
        let mut bytes = block.clone();
        replace_i64(&mut bytes[meta.clone()], body.len() as i64, bad);
        let e = block_error(bytes);
        assert!(e.contains("body"), "{e}");
    }
}

#[test]
fn a_buffer_outside_its_body_is_refused() {
    // Arrow sliced buffers with `Buffer::slice_with_length`, which panics
    // out of range.
    let block = record_blocks().remove(3); // uncompressed records
    let (_, meta, body) = first_batch(&block);
    let message = arrow_ipc::root_as_message(&block[meta.clone()]).unwrap();
    let last = message
        .header_as_record_batch()
        .unwrap()
        .buffers()
        .unwrap()
        .iter()
        .next_back()
        .unwrap();
    assert!(last.offset() + last.length() <= body.len() as i64);
    let mut bytes = block.clone();
    replace_i64(&mut bytes[meta], last.length(), last.length() + 4096);
    let e = block_error(bytes);
    assert!(e.contains("outside the"), "{e}");
}

#[test]
fn a_declared_decompressed_size_is_not_allocated() {
    // Arrow reserved each LZ4 buffer's declared size before decompressing:
    // 2^62 bytes was a capacity overflow, 2^40 an allocation failure.
    let block = record_blocks().remove(0); // LZ4 records
    let (_, meta, body) = first_batch(&block);
    let message = arrow_ipc::root_as_message(&block[meta]).unwrap();
    let buffer = message
        .header_as_record_batch()
        .unwrap()
        .buffers()
        .unwrap()
        .iter()
        .find(|b| b.length() > 8)
        .unwrap();
    let prefix = body.start + buffer.offset() as usize;
    for bad in [1i64 << 62, 1 << 40, -2] {
        let mut bytes = block.clone();
        bytes[prefix..prefix + 8].copy_from_slice(&bad.to_le_bytes());
        let e = block_error(bytes);
        assert!(e.contains("decompressed"), "{e}");
    }
}

#[test]
fn a_block_cut_at_a_message_boundary_is_truncated_not_shorter() {
    // Arrow took the end of the input for the end of the stream: a block
    // cut after a batch decoded as fewer rows.
    let block = record_blocks().remove(0);
    let (_, _, body) = first_batch(&block);
    let e = block_error(block[..body.end].to_vec());
    assert!(e.contains("without its end-of-stream marker"), "{e}");
    let mut longer = block.clone();
    longer.extend_from_slice(b"trailing");
    assert!(block_error(longer).contains("follow the end-of-stream marker"));
}

#[test]
fn real_blocks_decode_whole() {
    // The checks refuse nothing the writers produce: 4 KiB records of
    // zeros compress about 250:1.
    for block in record_blocks() {
        decode_block(PATH, Bytes::from(block)).unwrap();
    }
    for block in sql_blocks() {
        BlockBatches::new(PATH, Bytes::from(block))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
    }
}
