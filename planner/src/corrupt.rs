//! Corrupted copies of real encodings, for the hostile-input tests of every
//! crate's decoders (`hostile_input.rs` in planner and shuffle, the SQL
//! fragment test in `sql/tests/stages.rs`). Plain code, not a proptest
//! strategy, so the library needs no test-only dependency: each test draws
//! the parameters with its own generator.

/// One way to corrupt bytes, as drawn by a test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Corruption {
    /// Cut the bytes at the position.
    Truncate,
    /// Flip one bit (of eight) of the byte at the position.
    FlipBit,
    /// Overwrite the byte at the position.
    Overwrite,
    /// Overwrite a run starting at the position with the random bytes.
    OverwriteRun,
    /// Replace everything with the random bytes.
    Replace,
}

impl Corruption {
    /// Every kind, for drawing one by index (`ALL[i % ALL.len()]`).
    pub const ALL: [Corruption; 5] = [
        Corruption::Truncate,
        Corruption::FlipBit,
        Corruption::Overwrite,
        Corruption::OverwriteRun,
        Corruption::Replace,
    ];
}

/// A copy of `real` corrupted by `how` at `at` (taken modulo the length),
/// with `byte` for a single-byte change (its low 3 bits pick the flipped
/// bit) and `random` for runs and replacement. Empty input becomes
/// `random`.
pub fn corrupt(real: &[u8], how: Corruption, at: usize, byte: u8, random: &[u8]) -> Vec<u8> {
    if real.is_empty() {
        return random.to_vec();
    }
    let mut bytes = real.to_vec();
    let i = at % bytes.len();
    match how {
        Corruption::Truncate => bytes.truncate(i),
        Corruption::FlipBit => bytes[i] ^= 1 << (byte % 8),
        Corruption::Overwrite => bytes[i] = byte,
        Corruption::OverwriteRun => {
            let end = (i + random.len()).min(bytes.len());
            bytes[i..end].copy_from_slice(&random[..end - i]);
        }
        Corruption::Replace => bytes = random.to_vec(),
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_corruption_does_what_it_says() {
        let real = [1u8, 2, 3, 4];
        assert_eq!(corrupt(&real, Corruption::Truncate, 6, 0, &[]), [1, 2]);
        assert_eq!(corrupt(&real, Corruption::FlipBit, 1, 9, &[]), [1, 0, 3, 4]);
        assert_eq!(
            corrupt(&real, Corruption::Overwrite, 3, 7, &[]),
            [1, 2, 3, 7]
        );
        assert_eq!(
            corrupt(&real, Corruption::OverwriteRun, 2, 0, &[9, 9, 9]),
            [1, 2, 9, 9]
        );
        assert_eq!(corrupt(&real, Corruption::Replace, 0, 0, &[5]), [5]);
        assert_eq!(corrupt(&[], Corruption::FlipBit, 0, 0, &[5]), [5]);
    }
}
