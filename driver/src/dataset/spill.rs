//! Spilling for the reduce-side operators: a memory budget per operator,
//! sorted runs on local disk, and the k-way merge that reads them back.
//!
//! An operator that buffers records (the hash table of `reduce_by_key` or
//! `group_by_key`, a sort's buffer, a join's sides) accounts what it holds
//! in its [`Budget`]: each record's heap data (its encoded size plus the
//! allocator's overhead) and its container's allocation (twice it: growing
//! and spilling both copy), estimated rather than measured, as Spark's
//! `SizeTracker` does. A container about to grow asks first ([`make_room`],
//! [`buffer_push`]). When the
//! executor's pool will not grow the operator's reservation (or the test
//! setting `force_spill_every` says so), the operator sorts what it holds
//! and hands it to its [`Spiller`], which writes it as one run (an Arrow IPC
//! stream of encoded records, `riffle_shuffle::spill`) and the operator
//! starts over empty. At the end [`Spiller::merge`] merges the runs and what
//! is still in memory into one stream in the same order.
//!
//! Hash tables have no key order, so they spill in the order of a 64-bit
//! hash of the key ([`key_hash`], [`ByHash`]); the merge then brings all
//! records of one hash together, and the operator combines those with equal
//! keys (two keys can share a hash; they stay apart), as Spark's
//! `ExternalAppendOnlyMap` does. Sorts spill in key order ([`Ascending`],
//! [`Descending`]), and ties keep their order of arrival: runs are merged
//! in the order they were written, earlier runs first.
//!
//! ```text
//!  records ──► buffer ──budget says no──► sort ──► run 0, run 1, ... (spill files)
//!                └── end ──► sort ──────────────────► k-way merge (≤ 64 runs at once) ──► operator
//! ```
//!
//! Spill files are deleted when dropped: when the merged stream ends or is
//! dropped, and when the task fails, is killed or unwinds.

use riffle_planner::PipelineError;
use riffle_planner::codec::{RecordBuffer, decode_record};
use riffle_planner::memory::{Reservation, SpillFile};
use riffle_planner::pipeline::{BoxIter, Counters, TaskContext};
use riffle_shuffle::spill::{RunReader, RunWriter};
use rustc_hash::FxHashMap;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::hash::{Hash, Hasher};
use std::marker::PhantomData;

/// Bytes a reservation grows by at a time: asking the pool for every
/// record would take its lock for every record.
const GROW_STEP: usize = 1 << 20;

/// Below this many bytes buffered an operator does not spill even when the
/// pool says no (a run of a handful of records would cost a file each); it
/// holds them unreserved instead.
const MIN_SPILL_BYTES: usize = 1 << 20;

/// Records per batch of a run; a merge holds one batch of every run it
/// reads, so batches are small.
const RUN_BATCH_RECORDS: usize = 1024;

/// Encoded bytes per batch of a run, whichever comes first.
const RUN_BATCH_BYTES: usize = 256 << 10;

/// Runs merged at once: more are first merged into fewer, in passes, so a
/// merge never holds more than this many open files and batches.
pub(crate) const MAX_FAN_IN: usize = 64;

/// The 64-bit hash runs of hash tables are ordered by (FxHash of the key,
/// mixed so that nearby hashes spread).
pub(crate) fn key_hash<K: Hash>(key: &K) -> u64 {
    let mut h = rustc_hash::FxHasher::default();
    key.hash(&mut h);
    h.finish().wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Estimated heap bytes of one record's data, whose encoding took
/// `encoded` bytes: the encoding stands for its strings and vectors, plus
/// the allocator's overhead. (A record with no heap data is
/// overestimated, which only makes it spill earlier.)
pub(crate) fn heap_bytes(encoded: usize) -> usize {
    encoded + 16
}

/// Bytes a hash table able to hold `capacity` entries of type `E`
/// allocates: hashbrown's buckets are a power of two at most 7/8 full, with
/// a control byte each.
pub(crate) fn table_bytes<E>(capacity: usize) -> usize {
    let buckets = if capacity < 8 {
        (capacity + 1).next_power_of_two()
    } else {
        (capacity * 8 / 7).next_power_of_two()
    };
    buckets * (size_of::<E>() + 1)
}

/// One operator's share of the executor's memory: its containers'
/// allocations plus its records' heap data.
pub(crate) struct Budget {
    reservation: Box<dyn Reservation>,
    heap: usize,
    container: usize,
    records: usize,
    force_every: Option<usize>,
}

impl Budget {
    /// An empty budget for `operator` (named in the pool's errors).
    pub(crate) fn new(ctx: &TaskContext, operator: &str) -> Self {
        Budget {
            reservation: ctx.memory.reserve(operator),
            heap: 0,
            container: 0,
            records: 0,
            force_every: ctx.memory.force_spill_every(),
        }
    }

    /// Accounts one more record whose heap data takes `heap` bytes; true
    /// when the operator must spill what it holds before going on.
    pub(crate) fn add(&mut self, heap: usize) -> bool {
        self.heap += heap;
        self.records += 1;
        if self.force_every.is_some_and(|n| self.records >= n) {
            return true;
        }
        !self.fits()
    }

    /// Accounts the operator's container as taking `bytes` (about to grow
    /// to that); true when it must spill instead of growing.
    pub(crate) fn container(&mut self, bytes: usize) -> bool {
        self.container = bytes;
        !self.fits()
    }

    /// Whether what is accounted fits the reservation, grown if need be
    /// (and the pool allows).
    fn fits(&mut self) -> bool {
        let used = self.heap + self.container;
        let reserved = self.reservation.size();
        if used <= reserved {
            return true;
        }
        let want = (used - reserved).max(GROW_STEP);
        self.reservation.try_grow(want) || used < MIN_SPILL_BYTES
    }

    /// After a spill: nothing is held (the containers were dropped).
    pub(crate) fn reset(&mut self) {
        self.heap = 0;
        self.container = 0;
        self.records = 0;
        self.reservation.free();
    }
}

/// The bytes a hash table of entries `E` is accounted at once it can hold
/// `capacity`: twice its allocation, since spilling it copies its entries
/// into a sorted run before the table is freed (and growing it holds the
/// old buckets while it copies).
pub(crate) fn hash_table_bytes<E>(capacity: usize) -> usize {
    2 * table_bytes::<E>(capacity)
}

/// Before inserting `key` into `table`: if the insert would make the table
/// grow and the budget will not hold the grown table, spills the table (in
/// hash order) first, so that it starts over small.
pub(crate) fn make_room<K, X>(
    table: &mut FxHashMap<K, X>,
    key: &K,
    budget: &mut Budget,
    spiller: &mut Spiller,
) -> Result<(), PipelineError>
where
    K: Hash + Eq + Serialize,
    X: Serialize,
{
    if table.len() < table.capacity() || table.contains_key(key) {
        return Ok(());
    }
    let grown = hash_table_bytes::<(K, X)>((table.capacity() * 2).max(3));
    if budget.container(grown) && !table.is_empty() {
        spill_table(table, budget, spiller)?;
    }
    Ok(())
}

/// Spills `table` as a run in hash order and frees it.
pub(crate) fn spill_table<K, X>(
    table: &mut FxHashMap<K, X>,
    budget: &mut Budget,
    spiller: &mut Spiller,
) -> Result<(), PipelineError>
where
    K: Hash + Eq + Serialize,
    X: Serialize,
{
    spiller.spill(drain_by_hash(table))?;
    budget.reset();
    Ok(())
}

/// Takes a hash table's entries as a run in [`ByHash`] order; the table
/// is left empty and its allocation freed.
pub(crate) fn drain_by_hash<K: Hash, X>(table: &mut FxHashMap<K, X>) -> Vec<(u64, (K, X))> {
    let mut run: Vec<(u64, (K, X))> = std::mem::take(table)
        .into_iter()
        .map(|(k, x)| (key_hash(&k), (k, x)))
        .collect();
    run.sort_unstable_by_key(|r| r.0);
    run
}

/// Appends `record` (with `heap` bytes of heap data) to a sort buffer,
/// spilling the buffer, sorted in `O`'s order, when the budget says so.
/// The buffer is accounted at twice its allocation: growing copies it, and
/// the stable sort takes half as much again.
pub(crate) fn buffer_push<T: Serialize, O: Order<T>>(
    buffer: &mut Vec<T>,
    record: T,
    heap: usize,
    budget: &mut Budget,
    spiller: &mut Spiller,
) -> Result<(), PipelineError> {
    if buffer.len() == buffer.capacity() {
        let grown = 2 * size_of::<T>() * (buffer.capacity() * 2).max(4);
        if budget.container(grown) && !buffer.is_empty() {
            spill_buffer::<T, O>(buffer, budget, spiller)?;
        }
    }
    buffer.push(record);
    if budget.add(heap) {
        spill_buffer::<T, O>(buffer, budget, spiller)?;
    }
    Ok(())
}

/// Spills a sort buffer as one sorted run and frees it.
fn spill_buffer<T: Serialize, O: Order<T>>(
    buffer: &mut Vec<T>,
    budget: &mut Budget,
    spiller: &mut Spiller,
) -> Result<(), PipelineError> {
    let mut run = std::mem::take(buffer);
    sort::<T, O>(&mut run);
    spiller.spill(run)?;
    budget.reset();
    Ok(())
}

/// How runs are ordered.
pub(crate) trait Order<T>: Send + 'static {
    /// The merge order of two records.
    fn cmp(a: &T, b: &T) -> Ordering;
}

/// Records `(hash, _)` by hash.
pub(crate) struct ByHash;

impl<T> Order<(u64, T)> for ByHash {
    fn cmp(a: &(u64, T), b: &(u64, T)) -> Ordering {
        a.0.cmp(&b.0)
    }
}

/// Records `(key, _)` by ascending key.
pub(crate) struct Ascending;

impl<K: Ord, V> Order<(K, V)> for Ascending {
    fn cmp(a: &(K, V), b: &(K, V)) -> Ordering {
        a.0.cmp(&b.0)
    }
}

/// Records `(key, _)` by descending key.
pub(crate) struct Descending;

impl<K: Ord, V> Order<(K, V)> for Descending {
    fn cmp(a: &(K, V), b: &(K, V)) -> Ordering {
        b.0.cmp(&a.0)
    }
}

/// Sorts `records` in `O`'s order, stably.
pub(crate) fn sort<T, O: Order<T>>(records: &mut [T]) {
    records.sort_by(O::cmp);
}

/// The runs one operator has spilled, in the order written.
pub(crate) struct Spiller {
    ctx: TaskContext,
    operator: &'static str,
    runs: Vec<Box<dyn SpillFile>>,
}

impl Spiller {
    /// No runs yet, for `operator` (named in errors).
    pub(crate) fn new(ctx: &TaskContext, operator: &'static str) -> Self {
        Spiller {
            ctx: ctx.clone(),
            operator,
            runs: Vec::new(),
        }
    }

    /// Whether anything was spilled.
    pub(crate) fn spilled(&self) -> bool {
        !self.runs.is_empty()
    }

    fn error(&self, source: impl Into<riffle_planner::BoxError>) -> PipelineError {
        PipelineError::Spill {
            operator: self.operator.to_string(),
            source: source.into(),
        }
    }

    /// Writes `records`, already in merge order, as the next run.
    pub(crate) fn spill<T: Serialize>(
        &mut self,
        records: impl IntoIterator<Item = T>,
    ) -> Result<(), PipelineError> {
        let run = self.write_run(records)?;
        self.runs.push(run);
        Ok(())
    }

    fn write_run<T: Serialize>(
        &self,
        records: impl IntoIterator<Item = T>,
    ) -> Result<Box<dyn SpillFile>, PipelineError> {
        let file = self.ctx.memory.spill_file().map_err(|e| self.error(e))?;
        let out = file.writer().map_err(|e| self.error(e))?;
        let mut run = RunWriter::new(out, file.path()).map_err(|e| self.error(e))?;
        let mut buffer = RecordBuffer::default();
        let mut bytes = 0;
        for record in records {
            buffer.push(&record)?;
            if buffer.len() >= RUN_BATCH_RECORDS || buffer.bytes() >= RUN_BATCH_BYTES {
                run.write(buffer.finish()).map_err(|e| self.error(e))?;
            }
        }
        if !buffer.is_empty() {
            run.write(buffer.finish()).map_err(|e| self.error(e))?;
        }
        bytes += run.finish().map_err(|e| self.error(e))?;
        let counters = &self.ctx.counters;
        Counters::add(&counters.spilled_bytes, bytes);
        Counters::add(&counters.spill_count, 1);
        Ok(file)
    }

    /// Merges every run and `last` (what is still in memory, already in
    /// `O`'s order) into one stream in `O`'s order; equal records come in
    /// the order they were spilled, `last` after every run. More than
    /// [`MAX_FAN_IN`] runs are first merged into fewer runs, in passes.
    /// `keep` (the operator's budget) is held until the stream is dropped,
    /// since `last` is still in memory.
    pub(crate) fn merge<T, O>(
        mut self,
        last: Vec<T>,
        keep: Option<Budget>,
    ) -> Result<BoxIter<T>, PipelineError>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        O: Order<T>,
    {
        while self.runs.len() >= MAX_FAN_IN {
            let first: Vec<_> = self.runs.drain(..MAX_FAN_IN).collect();
            let merged = Merge::<T, O>::new(&self.ctx, first, Vec::new(), None)?;
            let run = self.write_run(merged)?;
            if let Some(e) = self.ctx.take_error() {
                return Err(e);
            }
            self.runs.insert(0, run);
        }
        Ok(Box::new(Merge::<T, O>::new(
            &self.ctx, self.runs, last, keep,
        )?))
    }
}

/// Reads one run back, a batch at a time.
struct RunCursor<T> {
    reader: RunReader,
    batch: std::vec::IntoIter<T>,
}

impl<T: DeserializeOwned> RunCursor<T> {
    fn next(&mut self) -> Result<Option<T>, PipelineError> {
        loop {
            if let Some(record) = self.batch.next() {
                return Ok(Some(record));
            }
            let Some(array) = self.reader.next() else {
                return Ok(None);
            };
            let array = array.map_err(|e| PipelineError::Spill {
                operator: "reading a spill run".into(),
                source: Box::new(e),
            })?;
            self.batch = array
                .iter()
                .map(|v| decode_record(v.unwrap_or_default()))
                .collect::<Result<Vec<T>, _>>()?
                .into_iter();
        }
    }
}

/// Where the merge takes records from.
enum Source<T> {
    /// Boxed: a reader's buffers dwarf an iterator.
    Run(Box<RunCursor<T>>),
    Memory(std::vec::IntoIter<T>),
}

impl<T: DeserializeOwned> Source<T> {
    fn next(&mut self) -> Result<Option<T>, PipelineError> {
        match self {
            Source::Run(cursor) => cursor.next(),
            Source::Memory(records) => Ok(records.next()),
        }
    }
}

/// The head of one source in the merge's heap.
struct Head<T, O> {
    record: T,
    source: usize,
    _order: PhantomData<fn() -> O>,
}

impl<T, O: Order<T>> Ord for Head<T, O> {
    /// `BinaryHeap` pops the greatest: the smallest record, then the
    /// earliest source.
    fn cmp(&self, other: &Self) -> Ordering {
        O::cmp(&other.record, &self.record).then(other.source.cmp(&self.source))
    }
}

impl<T, O: Order<T>> PartialOrd for Head<T, O> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<T, O: Order<T>> PartialEq for Head<T, O> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl<T, O: Order<T>> Eq for Head<T, O> {}

/// A k-way merge of runs and one in-memory tail.
struct Merge<T, O> {
    heap: BinaryHeap<Head<T, O>>,
    sources: Vec<Source<T>>,
    ctx: TaskContext,
    /// Deleted when the merge is dropped.
    _files: Vec<Box<dyn SpillFile>>,
    _budget: Option<Budget>,
}

impl<T: DeserializeOwned, O: Order<T>> Merge<T, O> {
    fn new(
        ctx: &TaskContext,
        files: Vec<Box<dyn SpillFile>>,
        last: Vec<T>,
        budget: Option<Budget>,
    ) -> Result<Self, PipelineError> {
        let mut sources = Vec::with_capacity(files.len() + 1);
        for file in &files {
            let reader = RunReader::open(file.path()).map_err(|e| PipelineError::Spill {
                operator: "reading a spill run".into(),
                source: Box::new(e),
            })?;
            sources.push(Source::Run(Box::new(RunCursor {
                reader,
                batch: Vec::new().into_iter(),
            })));
        }
        sources.push(Source::Memory(last.into_iter()));
        let mut merge = Merge {
            heap: BinaryHeap::with_capacity(sources.len()),
            sources,
            ctx: ctx.clone(),
            _files: files,
            _budget: budget,
        };
        for source in 0..merge.sources.len() {
            merge.refill(source)?;
        }
        Ok(merge)
    }

    fn refill(&mut self, source: usize) -> Result<(), PipelineError> {
        if let Some(record) = self.sources[source].next()? {
            self.heap.push(Head {
                record,
                source,
                _order: PhantomData,
            });
        }
        Ok(())
    }
}

impl<T: DeserializeOwned, O: Order<T>> Iterator for Merge<T, O> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        if self.ctx.stop_if_killed() {
            return None;
        }
        let head = self.heap.pop()?;
        if let Err(e) = self.refill(head.source) {
            // Recorded for the runner, which then commits nothing.
            self.ctx.fail(e);
            self.heap.clear();
            return None;
        }
        Some(head.record)
    }
}

/// Groups a stream in [`ByHash`] order into the records of one key at a
/// time, combining records of equal keys with `combine` (keys that only
/// share a hash stay apart).
pub(crate) struct HashGroups<K, X, F> {
    merged: std::iter::Peekable<BoxIter<(u64, (K, X))>>,
    pending: Vec<(K, X)>,
    combine: F,
}

impl<K: Eq, X, F: FnMut(X, X) -> X> HashGroups<K, X, F> {
    /// Groups `merged`.
    pub(crate) fn new(merged: BoxIter<(u64, (K, X))>, combine: F) -> Self {
        HashGroups {
            merged: merged.peekable(),
            pending: Vec::new(),
            combine,
        }
    }
}

impl<K: Eq, X, F: FnMut(X, X) -> X> Iterator for HashGroups<K, X, F> {
    type Item = (K, X);

    fn next(&mut self) -> Option<(K, X)> {
        if let Some(done) = self.pending.pop() {
            return Some(done);
        }
        let (hash, first) = self.merged.next()?;
        self.pending.push(first);
        while let Some((_, (k, x))) = self.merged.next_if(|(h, _)| *h == hash) {
            match self.pending.iter().position(|(p, _)| *p == k) {
                Some(i) => {
                    let (key, old) = self.pending.swap_remove(i);
                    let combined = (self.combine)(old, x);
                    self.pending.push((key, combined));
                }
                None => self.pending.push((k, x)),
            }
        }
        self.pending.pop()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use riffle_planner::memory::{SpillError, TaskMemory, Unbounded};
    use std::path::{Path, PathBuf};
    use std::sync::Arc;

    /// Spill files in a test directory, every record forced.
    struct TestMemory {
        dir: PathBuf,
        next: std::sync::atomic::AtomicUsize,
    }

    struct TestFile(PathBuf);

    impl SpillFile for TestFile {
        fn path(&self) -> &Path {
            &self.0
        }
        fn writer(&self) -> std::io::Result<Box<dyn std::io::Write + Send>> {
            Ok(Box::new(std::fs::File::create(&self.0)?))
        }
    }

    impl Drop for TestFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    impl TaskMemory for TestMemory {
        fn reserve(&self, consumer: &str) -> Box<dyn Reservation> {
            Unbounded.reserve(consumer)
        }
        fn spill_file(&self) -> Result<Box<dyn SpillFile>, SpillError> {
            let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(Box::new(TestFile(self.dir.join(format!("run-{n}")))))
        }
        fn force_spill_every(&self) -> Option<usize> {
            Some(3)
        }
    }

    fn context(dir: &Path) -> TaskContext {
        TaskContext::new(Arc::new(TestMemory {
            dir: dir.to_path_buf(),
            next: Default::default(),
        }))
    }

    #[test]
    fn a_merge_of_many_runs_is_sorted_and_stable_and_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = context(dir.path());
        let mut spiller = Spiller::new(&ctx, "test");
        // 200 runs of 3 (more than MAX_FAN_IN: merged in passes); keys
        // repeat so that stability shows in the values.
        let records: Vec<(u32, u32)> = (0..600).map(|i| ((i * 7919) % 50, i)).collect();
        for chunk in records.chunks(3) {
            let mut run = chunk.to_vec();
            sort::<_, Ascending>(&mut run);
            spiller.spill(run).unwrap();
        }
        let mut last = vec![(3, 1000), (0, 1001)];
        sort::<_, Ascending>(&mut last);
        let merged: Vec<(u32, u32)> = spiller.merge::<_, Ascending>(last, None).unwrap().collect();
        let mut expected = records.clone();
        expected.extend([(3, 1000), (0, 1001)]);
        expected.sort_by_key(|r| r.0);
        assert_eq!(merged, expected);
        assert!(ctx.take_error().is_none());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        assert!(
            ctx.counters
                .spill_count
                .load(std::sync::atomic::Ordering::Relaxed)
                >= 200
        );
    }

    #[test]
    fn hash_groups_combine_equal_keys_and_keep_colliding_keys_apart() {
        // Keys 1 and 2 share hash 5.
        let merged: BoxIter<(u64, (u32, u32))> = Box::new(
            vec![
                (5, (1, 10)),
                (5, (2, 20)),
                (5, (1, 1)),
                (7, (3, 3)),
                (9, (4, 4)),
                (9, (4, 4)),
            ]
            .into_iter(),
        );
        let mut groups: Vec<(u32, u32)> = HashGroups::new(merged, |a, b| a + b).collect();
        groups.sort();
        assert_eq!(groups, vec![(1, 11), (2, 20), (3, 3), (4, 8)]);
    }

    #[test]
    fn a_damaged_run_fails_the_task_instead_of_ending_short() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = context(dir.path());
        let mut spiller = Spiller::new(&ctx, "test");
        spiller.spill((0..5000u32).map(|i| (i, i))).unwrap();
        let path = dir.path().join("run-0");
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let merged: Vec<(u32, u32)> = match spiller.merge::<_, Ascending>(Vec::new(), None) {
            Ok(m) => m.collect(),
            Err(e) => {
                ctx.fail(e);
                Vec::new()
            }
        };
        assert!(merged.len() < 5000);
        let err = ctx.take_error().expect("the damage is an error");
        assert!(riffle_planner::report(&err).contains("spill"), "{err}");
    }
}
