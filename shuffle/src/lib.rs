//! riffle-shuffle: shuffle output over `object_store`.
//!
//! Each map task writes exactly ONE data object plus a small index. The data
//! object is the concatenation of one complete, LZ4-compressed Arrow IPC
//! stream per reduce partition; the index (also returned to the driver in
//! the task's [`riffle_planner::task::MapStatus`]) gives each stream's byte
//! range and row count. Reducers are told the exact keys and ranges and
//! range-read only their slices: nothing is ever found by listing.
//!
//! ```text
//!  map task m:  [p0 stream][p1 stream]...[pR-1 stream]  -> {h}/job-J/shuffle-S/map-m/attempt-A.data
//!               index: [(offset,len,rows); R]           -> .../attempt-A.index
//!  reduce r:    get_range(data_m, range_r) for every m, decode, hand batches to the ReduceOp
//! ```
//!
//! It also holds what every reader of input files shares: listing by
//! Hadoop's conventions ([`stores::ObjectStores::list_files`]) and text
//! lines, byte-order marks and gzip members ([`lines`]), and the format of
//! the runs operators spill to local disk ([`spill`]).
//!
//! Architecture invariant: this crate knows storage, not scheduling.

pub mod error;
#[cfg(test)]
mod hostile_input;
mod ipc;
pub mod layout;
pub mod lines;
pub mod pieces;
pub mod reader;
pub mod spill;
pub mod stores;
pub mod writer;

pub use error::{FetchError, ShuffleError};
pub use layout::{ShuffleCompression, ShuffleStore};
