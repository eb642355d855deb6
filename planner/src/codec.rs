//! Record encoding at stage boundaries.
//!
//! Typed records are plain Rust values inside a stage. Where they cross a
//! stage boundary they are encoded with bincode (standard configuration) into
//! one Arrow binary column, built directly from a values buffer and an offsets
//! buffer with no per-record copy.

use crate::error::PipelineError;
use arrow_array::BinaryArray;
use arrow_array::builder::BinaryBuilder;
use serde::Serialize;
use serde::de::DeserializeOwned;

const CONFIG: bincode::config::Configuration = bincode::config::standard();

/// Appends the encoding of `value` to `out`.
pub fn encode_into<T: Serialize>(value: &T, out: &mut Vec<u8>) -> Result<(), PipelineError> {
    bincode::serde::encode_into_std_write(value, out, CONFIG)
        .map(|_| ())
        .map_err(|e| PipelineError::codec("encoding a record", e))
}

/// Decodes one record from exactly `bytes`.
pub fn decode_record<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, PipelineError> {
    bincode::serde::decode_from_slice(bytes, CONFIG)
        .map(|(v, _)| v)
        .map_err(|e| PipelineError::codec("decoding a record", e))
}

/// Accumulates encoded records for one output partition.
#[derive(Default)]
pub struct RecordBuffer {
    builder: Option<BinaryBuilder>,
    scratch: Vec<u8>,
    rows: usize,
    bytes: usize,
}

impl RecordBuffer {
    /// Encodes and appends one record.
    pub fn push<T: Serialize>(&mut self, value: &T) -> Result<(), PipelineError> {
        self.scratch.clear();
        encode_into(value, &mut self.scratch)?;
        self.builder
            .get_or_insert_with(BinaryBuilder::new)
            .append_value(&self.scratch);
        self.rows += 1;
        self.bytes += self.scratch.len();
        Ok(())
    }

    /// Number of records pushed so far.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Encoded bytes pushed so far.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// True when nothing has been pushed.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Takes the records pushed so far as one Arrow array.
    pub fn finish(&mut self) -> BinaryArray {
        self.rows = 0;
        self.bytes = 0;
        match self.builder.as_mut() {
            Some(b) => b.finish(),
            None => BinaryArray::from_iter_values(std::iter::empty::<&[u8]>()),
        }
    }
}

/// Decodes every record of an Arrow binary array.
pub fn decode_array<T: DeserializeOwned>(
    array: &BinaryArray,
) -> impl Iterator<Item = Result<T, PipelineError>> + '_ {
    array.iter().map(|v| decode_record(v.unwrap_or_default()))
}
