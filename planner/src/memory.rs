//! What a task's operators draw memory and spill files from.
//!
//! Every executor has one memory pool and one spill directory, shared by its
//! Dataset operators and its SQL fragments (the executor implements these
//! traits over DataFusion's `MemoryPool` and `DiskManager`). An operator that
//! holds records (a reduce-side hash table, a sort buffer, a join's build
//! side) takes a [`Reservation`], grows it as it buffers, and when the pool
//! says no it writes what it holds to a [`SpillFile`] and carries on, as
//! Spark's `Spillable` collections do under its unified memory manager.
//!
//! This module only names the contract; it does no I/O (the executor's
//! implementation creates the files).

use std::io;
use std::path::Path;
use std::sync::Arc;

/// One operator's claim on its executor's memory pool, in bytes.
///
/// Dropping it returns the memory to the pool.
pub trait Reservation: Send {
    /// Asks the pool for `bytes` more; false (and nothing reserved) when the
    /// pool, or this task's fair share of it, cannot give them.
    fn try_grow(&mut self, bytes: usize) -> bool;
    /// Bytes held now.
    fn size(&self) -> usize;
    /// Returns everything held to the pool (after a spill).
    fn free(&mut self);
}

/// A spill file in the executor's spill directory, deleted when dropped
/// (including when the task that made it fails, is killed or unwinds).
pub trait SpillFile: Send + Sync {
    /// Where the file is, for reading it back.
    fn path(&self) -> &Path;
    /// A writer appending to the file; every byte written counts against the
    /// executor's cap on spill space, and a write over the cap is an error
    /// naming the setting.
    fn writer(&self) -> io::Result<Box<dyn io::Write + Send>>;
}

/// Why a spill file could not be made.
pub type SpillError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The memory services of one executor, as a running task sees them.
pub trait TaskMemory: Send + Sync {
    /// A new, empty reservation for the operator named `consumer` (the name
    /// shows in the pool's error messages). Reservations made here may be
    /// spilled: the pool splits its memory fairly between them.
    fn reserve(&self, consumer: &str) -> Box<dyn Reservation>;

    /// A new spill file; fails when spilling is disabled or the directory
    /// cannot be written.
    fn spill_file(&self) -> Result<Box<dyn SpillFile>, SpillError>;

    /// Spark's `numElementsForceSpillThreshold`, a test setting: when set,
    /// an operator spills after every `n` records it buffers, whatever the
    /// pool says, so that tests exercise the spill paths on small data.
    fn force_spill_every(&self) -> Option<usize> {
        None
    }
}

/// No limit and nowhere to spill: what a task gets outside an executor
/// (unit tests of single operators).
#[derive(Debug, Default, Clone, Copy)]
pub struct Unbounded;

struct UnboundedReservation(usize);

impl Reservation for UnboundedReservation {
    fn try_grow(&mut self, bytes: usize) -> bool {
        self.0 += bytes;
        true
    }
    fn size(&self) -> usize {
        self.0
    }
    fn free(&mut self) {
        self.0 = 0;
    }
}

impl TaskMemory for Unbounded {
    fn reserve(&self, _: &str) -> Box<dyn Reservation> {
        Box::new(UnboundedReservation(0))
    }
    fn spill_file(&self) -> Result<Box<dyn SpillFile>, SpillError> {
        Err("this task has no spill directory".into())
    }
}

/// The memory services of a task, shared by its operators.
pub type SharedMemory = Arc<dyn TaskMemory>;
