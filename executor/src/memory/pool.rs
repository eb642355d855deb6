//! The executor's memory pool: DataFusion's fair-spill policy, with the
//! reservations of SQL operators weighted.
//!
//! The policy is `FairSpillPool`'s (datafusion-execution
//! `memory_pool/pool.rs`): an unspillable reservation may take whatever is
//! free; a spillable one at most an even share of what unspillable ones
//! leave, so that running tasks split the memory. What differs is that the
//! pool is seen through [`PoolView`]s, each with a weight by which its
//! reservations count.
//!
//! Dataset operators account what they hold exactly (weight 1). DataFusion's
//! operators account what their tables hold *after* a batch is added, and a
//! hash table grows by doubling: at the moment it grows, the old and the new
//! table are both alive, three times what was reserved, and right after it
//! the table holds twice what fit. The hash aggregation of a high-cardinality
//! `GROUP BY` under a 512 MiB limit was killed this way with a pool of 300
//! MiB (`benches/spill.sh`). So SQL reservations count [`SQL_WEIGHT`] times
//! against the pool: a SQL operator spills at a third of the share a Dataset
//! operator gets, which bounds its real peak by that share. Spark makes the
//! same trade the other way round, by keeping 40% of the heap outside its
//! unified pool (`spark.memory.fraction`).

use datafusion::common::DataFusionError;
use datafusion::execution::memory_pool::{
    MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation,
};
use std::sync::{Arc, Mutex, MutexGuard};

/// How many times its size a SQL operator's reservation counts against the
/// pool (see the module's documentation).
pub const SQL_WEIGHT: usize = 3;

/// The pool's bytes, in weighted units, shared by its views.
#[derive(Debug, Default)]
struct Counts {
    /// Weighted bytes of spillable reservations.
    spillable: usize,
    /// Weighted bytes of unspillable reservations.
    unspillable: usize,
    /// Spillable consumers registered, over all views.
    spillers: usize,
}

/// One executor's pool, `size` bytes.
#[derive(Debug)]
pub struct FairPool {
    size: usize,
    counts: Mutex<Counts>,
}

impl FairPool {
    /// A pool of `size` bytes.
    pub fn new(size: usize) -> Arc<FairPool> {
        Arc::new(FairPool {
            size,
            counts: Mutex::new(Counts::default()),
        })
    }

    /// A view whose reservations count `weight` times their size.
    pub fn view(self: &Arc<Self>, name: &'static str, weight: usize) -> PoolView {
        PoolView {
            pool: self.clone(),
            name,
            weight: weight.max(1),
        }
    }

    /// Weighted bytes reserved now.
    pub fn reserved(&self) -> usize {
        let c = self.counts();
        c.spillable + c.unspillable
    }

    fn counts(&self) -> MutexGuard<'_, Counts> {
        // The counts are plain numbers updated in one step: a panic
        // elsewhere while the lock was held cannot leave them torn.
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// [`FairPool`] as one kind of operator sees it: a DataFusion
/// `MemoryPool` whose reservations count `weight` times their size.
#[derive(Debug)]
pub struct PoolView {
    pool: Arc<FairPool>,
    name: &'static str,
    weight: usize,
}

impl PoolView {
    fn weighted(&self, bytes: usize) -> usize {
        bytes.saturating_mul(self.weight)
    }

    fn exhausted(
        &self,
        r: &MemoryReservation,
        additional: usize,
        available: usize,
    ) -> DataFusionError {
        // Operators that can spill look for exactly this variant.
        DataFusionError::ResourcesExhausted(format!(
            "cannot reserve {additional} more bytes for {} (holding {} bytes, counted {}x): \
             {} bytes of the executor's {}-byte memory pool are available to it \
             (RIFFLE_EXECUTOR_MEMORY, --memory)",
            r.consumer().name(),
            r.size(),
            self.weight,
            available / self.weight,
            self.pool.size,
        ))
    }
}

impl std::fmt::Display for PoolView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (a {}-byte pool, reservations counted {}x)",
            self.name, self.pool.size, self.weight
        )
    }
}

impl MemoryPool for PoolView {
    fn name(&self) -> &str {
        self.name
    }

    fn register(&self, consumer: &MemoryConsumer) {
        if consumer.can_spill() {
            self.pool.counts().spillers += 1;
        }
    }

    fn unregister(&self, consumer: &MemoryConsumer) {
        if consumer.can_spill() {
            let mut c = self.pool.counts();
            c.spillers = c.spillers.saturating_sub(1);
        }
    }

    fn grow(&self, r: &MemoryReservation, additional: usize) {
        let bytes = self.weighted(additional);
        let mut c = self.pool.counts();
        if r.consumer().can_spill() {
            c.spillable += bytes;
        } else {
            c.unspillable += bytes;
        }
    }

    fn shrink(&self, r: &MemoryReservation, shrink: usize) {
        let bytes = self.weighted(shrink);
        let mut c = self.pool.counts();
        if r.consumer().can_spill() {
            c.spillable = c.spillable.saturating_sub(bytes);
        } else {
            c.unspillable = c.unspillable.saturating_sub(bytes);
        }
    }

    fn try_grow(&self, r: &MemoryReservation, additional: usize) -> datafusion::common::Result<()> {
        let mut c = self.pool.counts();
        if r.consumer().can_spill() {
            // An even share of what unspillable reservations leave.
            let share = self.pool.size.saturating_sub(c.unspillable) / c.spillers.max(1);
            if self.weighted(r.size() + additional) > share {
                return Err(self.exhausted(r, additional, share));
            }
            c.spillable += self.weighted(additional);
        } else {
            let free = self.pool.size.saturating_sub(c.unspillable + c.spillable);
            if self.weighted(additional) > free {
                return Err(self.exhausted(r, additional, free));
            }
            c.unspillable += self.weighted(additional);
        }
        Ok(())
    }

    fn reserved(&self) -> usize {
        self.pool.reserved()
    }

    fn memory_limit(&self) -> MemoryLimit {
        MemoryLimit::Finite(self.pool.size / self.weight)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spillers_share_what_unspillable_reservations_leave_and_sql_counts_thrice() {
        let pool = FairPool::new(1200);
        let dataset: Arc<dyn MemoryPool> = Arc::new(pool.view("dataset", 1));
        let sql: Arc<dyn MemoryPool> = Arc::new(pool.view("sql", SQL_WEIGHT));
        let d = MemoryConsumer::new("d")
            .with_can_spill(true)
            .register(&dataset);
        let s = MemoryConsumer::new("s").with_can_spill(true).register(&sql);
        // Two spillers: a share of 600 each; the SQL one's bytes count 3x.
        assert!(d.try_grow(600).is_ok());
        assert!(d.try_grow(1).is_err());
        assert!(s.try_grow(200).is_ok());
        let err = s.try_grow(1).unwrap_err();
        assert!(
            matches!(err, DataFusionError::ResourcesExhausted(_)),
            "{err}"
        );
        assert!(err.to_string().contains("RIFFLE_EXECUTOR_MEMORY"), "{err}");
        assert_eq!(pool.reserved(), 1200);
        // An unspillable reservation takes what is free, and shrinks the
        // spillers' shares.
        s.free();
        let u = MemoryConsumer::new("u").register(&sql);
        assert!(u.try_grow(200).is_ok());
        assert!(u.try_grow(1).is_err());
        drop(u);
        d.free();
        let fixed = MemoryConsumer::new("fixed").register(&dataset);
        fixed.grow(600);
        assert!(s.try_grow(100).is_ok(), "a share of (1200 - 600) / 2 = 300");
        assert!(s.try_grow(1).is_err());
        drop((s, d, fixed));
        assert_eq!(pool.reserved(), 0);
    }
}
