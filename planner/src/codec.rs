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

/// Bytes bincode may claim per input byte when decoding valid input. Its
/// limit counts the fixed width of every integer decoded (8 for a `u64`
/// even when the varint on the wire is one byte; 16 at most, for a `u128`)
/// and the declared length of every string or byte buffer, which it
/// allocates *before* reading. So valid input of `n` bytes claims at most
/// `16 * n`, while a hostile length prefix claims what it declares and is
/// refused by the limit before the allocation.
const CLAIM_PER_INPUT_BYTE: usize = 16;

/// The largest input [`decode_bounded`] accepts: 4 GiB. Records live in
/// Arrow binary arrays (32-bit offsets, under 2 GiB each) and descriptors
/// in gRPC messages (64 MiB by default), so nothing legitimate comes near.
pub const MAX_DECODE_INPUT: usize = 1 << 32;

/// Why bincode bytes did not decode.
#[derive(Debug, thiserror::Error)]
pub enum DecodeFailure {
    /// A length prefix (of a string, a byte buffer) declares more than the
    /// input could hold: corrupt or hostile bytes, refused before
    /// allocating what it declares.
    #[error(
        "a length in the {input}-byte input declares more than it can hold \
         (limit {limit} bytes)"
    )]
    LengthTooLarge {
        /// Length of the input.
        input: usize,
        /// The limit the decode ran with.
        limit: usize,
    },
    /// The input is larger than [`MAX_DECODE_INPUT`].
    #[error("the input is {input} bytes, larger than the {MAX_DECODE_INPUT} bytes Riffle decodes")]
    InputTooLarge {
        /// Length of the input.
        input: usize,
    },
    /// Any other malformation (truncated, an invalid enum tag, bad UTF-8).
    #[error("{0}")]
    Bincode(bincode::error::DecodeError),
}

/// Decodes a `T` from the start of `bytes` (bincode, standard
/// configuration), returning it and the bytes it used, with what the
/// decode may allocate bounded by the input's length.
///
/// bincode's limit is a const generic, so it cannot be `bytes.len()`
/// itself: the smallest of a few limits (1 MiB, 16 MiB, 256 MiB, 4 GiB,
/// 64 GiB) that is at least [`CLAIM_PER_INPUT_BYTE`] times the input is
/// used. Valid input never reaches it; a corrupt length prefix can make the
/// decode allocate at most that limit (so at most 1 MiB, or 256 times the
/// input) before it fails. Sequences are not preallocated beyond 1 MiB by
/// serde, so strings and byte buffers are the only unbounded case, and the
/// limit covers them.
pub fn decode_bounded<T: DeserializeOwned>(bytes: &[u8]) -> Result<(T, usize), DecodeFailure> {
    decode_limited(bytes, false)
}

/// [`decode_bounded`], and with `guard` through [`crate::decode_guard`]
/// too (user record types, whose nesting Riffle does not know).
fn decode_limited<T: DeserializeOwned>(
    bytes: &[u8],
    guard: bool,
) -> Result<(T, usize), DecodeFailure> {
    let input = bytes.len();
    if input > MAX_DECODE_INPUT {
        return Err(DecodeFailure::InputTooLarge { input });
    }
    let claim = input.saturating_mul(CLAIM_PER_INPUT_BYTE);
    macro_rules! with_first_limit_above_claim {
        ($($limit:expr),*) => {$(
            if claim <= $limit {
                let config = CONFIG.with_limit::<{ $limit }>();
                let decoded = match guard {
                    true => decode_guarded(bytes, config),
                    false => bincode::serde::decode_from_slice(bytes, config),
                };
                return decoded
                    .map_err(|e| match e {
                        bincode::error::DecodeError::LimitExceeded => {
                            DecodeFailure::LengthTooLarge { input, limit: $limit }
                        }
                        e => DecodeFailure::Bincode(e),
                    });
            }
        )*};
    }
    with_first_limit_above_claim!(1 << 20, 1 << 24, 1 << 28, 1 << 32, 1 << 36);
    Err(DecodeFailure::InputTooLarge { input })
}

/// Decodes a `T` from the start of `bytes` with `config`, through
/// [`crate::decode_guard`]: at most [`crate::decode_guard::MAX_DEPTH`]
/// levels of nesting, and at most a million elements (of sequences and
/// maps, and fields of structs and tuples) plus eight per input byte (each
/// takes at least one byte unless it is zero-sized, so only a sequence of
/// more than a million zero-sized values, a `Vec<()>`, is refused that is
/// not corrupt).
fn decode_guarded<T: DeserializeOwned, C: bincode::config::Config>(
    bytes: &[u8],
    config: C,
) -> Result<(T, usize), bincode::error::DecodeError> {
    use crate::decode_guard::{Budget, Guarded};
    let used = std::cell::Cell::new(0);
    let reader = CountingReader {
        rest: bytes,
        used: &used,
    };
    let mut decoder = bincode::serde::OwnedSerdeDecoder::from_reader(reader, config);
    let budget = Budget::new((1 << 20) + 8 * bytes.len() as u64);
    let value = T::deserialize(Guarded {
        inner: decoder.as_deserializer(),
        budget: &budget,
    })?;
    Ok((value, used.get()))
}

/// A bincode reader over a slice that counts the bytes it gave out.
struct CountingReader<'a, 'c> {
    rest: &'a [u8],
    used: &'c std::cell::Cell<usize>,
}

impl bincode::de::read::Reader for CountingReader<'_, '_> {
    fn read(&mut self, bytes: &mut [u8]) -> Result<(), bincode::error::DecodeError> {
        let Some((head, tail)) = self.rest.split_at_checked(bytes.len()) else {
            return Err(bincode::error::DecodeError::UnexpectedEnd {
                additional: bytes.len() - self.rest.len(),
            });
        };
        bytes.copy_from_slice(head);
        self.rest = tail;
        self.used.set(self.used.get() + bytes.len());
        Ok(())
    }

    fn peek_read(&mut self, n: usize) -> Option<&[u8]> {
        self.rest.get(..n)
    }

    fn consume(&mut self, n: usize) {
        let n = n.min(self.rest.len());
        self.rest = &self.rest[n..];
        self.used.set(self.used.get() + n);
    }
}

/// Appends the encoding of `value` to `out`.
pub fn encode_into<T: Serialize>(value: &T, out: &mut Vec<u8>) -> Result<(), PipelineError> {
    bincode::serde::encode_into_std_write(value, out, CONFIG)
        .map(|_| ())
        .map_err(|e| PipelineError::codec("encoding a record", e))
}

/// Decodes one record from exactly `bytes`: bounded as [`decode_bounded`]
/// is, and refused past [`crate::decode_guard::MAX_DEPTH`] levels of
/// nesting or an implausible number of elements (a record type may be
/// recursive, or hold zero-sized values).
pub fn decode_record<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, PipelineError> {
    decode_limited(bytes, true)
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
