//! The map side: encode one array per reduce partition into one object.

use crate::error::ShuffleError;
use crate::layout::ShuffleStore;
use arrow_array::{Array, ArrayRef, BinaryArray, RecordBatch};
use arrow_ipc::CompressionType;
use arrow_ipc::writer::{IpcWriteOptions, StreamWriter};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
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
    /// The data object's bytes.
    pub data: Bytes,
    /// Per reduce partition: byte range and rows.
    pub blocks: Vec<BlockInfo>,
}

/// Encodes one array of encoded records per reduce partition (CPU work:
/// call it from the rayon side). Empty partitions take no bytes.
pub fn encode_map_output(partitions: Vec<BinaryArray>) -> Result<EncodedMapOutput, ShuffleError> {
    let batches = partitions
        .into_iter()
        .map(|array| {
            if array.is_empty() {
                return Ok(Vec::new());
            }
            RecordBatch::try_new(RECORD_SCHEMA.clone(), vec![Arc::new(array) as ArrayRef])
                .map(|b| vec![b])
                .map_err(|e| ShuffleError::Encode(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    encode_batches(&RECORD_SCHEMA, batches)
}

/// Encodes the record batches of each reduce partition, of any schema, as
/// one complete LZ4 Arrow IPC stream per non-empty partition.
pub fn encode_batches(
    schema: &SchemaRef,
    partitions: Vec<Vec<RecordBatch>>,
) -> Result<EncodedMapOutput, ShuffleError> {
    let options = IpcWriteOptions::default()
        .try_with_compression(Some(CompressionType::LZ4_FRAME))
        .map_err(|e| ShuffleError::Encode(e.to_string()))?;
    let mut data = Vec::new();
    let mut blocks = Vec::with_capacity(partitions.len());
    for batches in partitions {
        let offset = data.len() as u64;
        let rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
        if rows > 0 {
            let mut writer = StreamWriter::try_new_with_options(&mut data, schema, options.clone())
                .map_err(|e| ShuffleError::Encode(e.to_string()))?;
            for batch in batches.iter().filter(|b| b.num_rows() > 0) {
                writer
                    .write(batch)
                    .map_err(|e| ShuffleError::Encode(e.to_string()))?;
            }
            writer
                .finish()
                .map_err(|e| ShuffleError::Encode(e.to_string()))?;
        }
        blocks.push(BlockInfo {
            offset,
            len: data.len() as u64 - offset,
            rows,
        });
    }
    Ok(EncodedMapOutput {
        data: Bytes::from(data),
        blocks,
    })
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
        .put(&data_path, PutPayload::from_bytes(output.data))
        .await
        .map_err(|e| ShuffleError::storage(&data_path, e))?;
    let index_path = ShuffleStore::index_path(&data_path);
    let index = riffle_planner::task::encode(&output.blocks)
        .map_err(|e| ShuffleError::Encode(e.to_string()))?;
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
