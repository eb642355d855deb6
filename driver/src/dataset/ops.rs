//! The typed operators behind the Dataset API, and the factories that
//! rebuild them on executors.
//!
//! Every factory here is a generic function; taking its address for a given
//! set of types (and closure type) monomorphizes it into the program binary,
//! and [`FnRef::new`] ships that address. Closures are conjured from their
//! zero-sized type with [`conjure_zst`]; explicit state travels as bincode.

use riffle_planner::PipelineError;
use riffle_planner::codec::{RecordBuffer, decode_record, encode_into};
use riffle_planner::function::{FnRef, conjure_zst};
use riffle_planner::pipeline::{
    BatchIter, BoxIter, ConcatOp, MapOutputSink, NarrowOp, Partition, ReduceOp, ResultOp,
    ShuffleWriteOp, SourceOp, TaskContext,
};
use rustc_hash::FxHashMap;
use std::any::Any;
use std::hash::{Hash, Hasher};
use std::marker::PhantomData;
use std::sync::Arc;

use super::Data;
use super::spill::{
    Ascending, Budget, ByHash, Descending, HashGroups, Order, Spiller, buffer_push, drain_by_hash,
    heap_bytes, key_hash, make_room, sort, spill_table,
};

/// Marks the types an operator works on, without owning any.
pub(crate) type Types<T> = PhantomData<fn() -> T>;

/// A result operator's function.
type FinishFn<T> = Box<dyn Fn(BoxIter<T>) -> Result<Vec<u8>, PipelineError> + Send + Sync>;

/// What every factory returns.
pub(crate) type Built = Result<Box<dyn Any + Send + Sync>, PipelineError>;

pub(crate) use riffle_planner::function::assert_zst;

/// The user's closure of type `F`, rebuilt on an executor from its type.
fn closure<F: Copy>() -> F {
    // SAFETY: this module's factories are the only callers, and a factory is
    // monomorphized for a closure type only by a Dataset method that was
    // handed a value of that type (and asserted it zero-sized), so a value of
    // `F` has existed in this program.
    unsafe { conjure_zst::<F>() }
}

/// Decodes a state blob.
pub(crate) fn state<S: Data>(bytes: &[u8]) -> Result<S, PipelineError> {
    decode_record(bytes)
}

/// Encodes a state blob for [`FnRef::new`].
pub(crate) fn encode_state<S: Data>(value: &S) -> Result<Vec<u8>, PipelineError> {
    let mut out = Vec::new();
    encode_into(value, &mut out)?;
    Ok(out)
}

// ---------------------------------------------------------------- narrow

/// A narrow operator as a function from one typed iterator to another.
struct IterOp<T, U> {
    f: Box<dyn Fn(BoxIter<T>) -> BoxIter<U> + Send + Sync>,
}

impl<T: 'static, U: 'static> NarrowOp for IterOp<T, U> {
    fn apply(&self, input: Partition, _ctx: &TaskContext) -> Result<Partition, PipelineError> {
        Ok(Partition::new((self.f)(input.into_typed::<T>()?)))
    }
}

/// Wraps an iterator transformation as a built narrow operator.
pub(crate) fn narrow<T: Data, U: Data>(
    f: impl Fn(BoxIter<T>) -> BoxIter<U> + Send + Sync + 'static,
) -> Built {
    let op: Box<dyn NarrowOp> = Box::new(IterOp { f: Box::new(f) });
    Ok(Box::new(op))
}

pub(crate) fn map_factory<T: Data, U: Data, F: Fn(T) -> U + Send + Sync + Copy + 'static>(
    _: &[u8],
) -> Built {
    narrow::<T, U>(|it| Box::new(it.map(closure::<F>())))
}

pub(crate) fn filter_factory<T: Data, F: Fn(&T) -> bool + Send + Sync + Copy + 'static>(
    _: &[u8],
) -> Built {
    narrow::<T, T>(|it| Box::new(it.filter(closure::<F>())))
}

pub(crate) fn flat_map_factory<T, U, I, F>(_: &[u8]) -> Built
where
    T: Data,
    U: Data,
    I: IntoIterator<Item = U> + 'static,
    I::IntoIter: Send,
    F: Fn(T) -> I + Send + Sync + Copy + 'static,
{
    narrow::<T, U>(|it| Box::new(it.flat_map(closure::<F>())))
}

pub(crate) fn map_partitions_factory<T, U, I, F>(_: &[u8]) -> Built
where
    T: Data,
    U: Data,
    I: Iterator<Item = U> + Send + 'static,
    F: Fn(BoxIter<T>) -> I + Send + Sync + Copy + 'static,
{
    narrow::<T, U>(|it| Box::new(closure::<F>()(it)))
}

pub(crate) fn map_with_factory<
    S: Data,
    T: Data,
    U: Data,
    F: Fn(&S, T) -> U + Send + Sync + Copy + 'static,
>(
    bytes: &[u8],
) -> Built {
    let s: Arc<S> = Arc::new(state(bytes)?);
    narrow::<T, U>(move |it| {
        let s = s.clone();
        let f = closure::<F>();
        Box::new(it.map(move |x| f(&s, x)))
    })
}

pub(crate) fn filter_with_factory<
    S: Data,
    T: Data,
    F: Fn(&S, &T) -> bool + Send + Sync + Copy + 'static,
>(
    bytes: &[u8],
) -> Built {
    let s: Arc<S> = Arc::new(state(bytes)?);
    narrow::<T, T>(move |it| {
        let s = s.clone();
        let f = closure::<F>();
        Box::new(it.filter(move |x| f(&s, x)))
    })
}

pub(crate) fn flat_map_with_factory<S, T, U, I, F>(bytes: &[u8]) -> Built
where
    S: Data,
    T: Data,
    U: Data,
    I: IntoIterator<Item = U> + 'static,
    I::IntoIter: Send,
    F: Fn(&S, T) -> I + Send + Sync + Copy + 'static,
{
    let s: Arc<S> = Arc::new(state(bytes)?);
    narrow::<T, U>(move |it| {
        let s = s.clone();
        let f = closure::<F>();
        Box::new(it.flat_map(move |x| f(&s, x)))
    })
}

pub(crate) fn key_by_factory<T: Data, K: Data, F: Fn(&T) -> K + Send + Sync + Copy + 'static>(
    _: &[u8],
) -> Built {
    narrow::<T, (K, T)>(|it| {
        let f = closure::<F>();
        Box::new(it.map(move |x| (f(&x), x)))
    })
}

pub(crate) fn map_values_factory<
    K: Data,
    V: Data,
    U: Data,
    F: Fn(V) -> U + Send + Sync + Copy + 'static,
>(
    _: &[u8],
) -> Built {
    narrow::<(K, V), (K, U)>(|it| {
        let f = closure::<F>();
        Box::new(it.map(move |(k, v)| (k, f(v))))
    })
}

/// Erases `T` to `()` pairs and back: used by `distinct` and `values`/`keys`.
pub(crate) fn pair_unit_factory<T: Data>(_: &[u8]) -> Built {
    narrow::<T, (T, ())>(|it| Box::new(it.map(|x| (x, ()))))
}

pub(crate) fn keys_factory<K: Data, V: Data>(_: &[u8]) -> Built {
    narrow::<(K, V), K>(|it| Box::new(it.map(|(k, _)| k)))
}

pub(crate) fn values_factory<K: Data, V: Data>(_: &[u8]) -> Built {
    narrow::<(K, V), V>(|it| Box::new(it.map(|(_, v)| v)))
}

struct Concat<T>(Types<T>);

impl<T: Data> ConcatOp for Concat<T> {
    fn concat(&self, inputs: Vec<Partition>) -> Result<Partition, PipelineError> {
        let iters = inputs
            .into_iter()
            .map(Partition::into_typed::<T>)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Partition::new::<T>(Box::new(iters.into_iter().flatten())))
    }
}

pub(crate) fn concat_factory<T: Data>(_: &[u8]) -> Built {
    let op: Box<dyn ConcatOp> = Box::new(Concat::<T>(PhantomData));
    Ok(Box::new(op))
}

// ---------------------------------------------------------------- sources

struct VecSource<T>(Types<T>);

impl<T: Data> SourceOp for VecSource<T> {
    fn open(&self, data: &[u8], ctx: &TaskContext) -> Result<Partition, PipelineError> {
        let values: Vec<T> = decode_record(data)?;
        riffle_planner::pipeline::Counters::add(&ctx.counters.records_read, values.len() as u64);
        Ok(Partition::new::<T>(Box::new(values.into_iter())))
    }
}

pub(crate) fn vec_source_factory<T: Data>(_: &[u8]) -> Built {
    let op: Box<dyn SourceOp> = Box::new(VecSource::<T>(PhantomData));
    Ok(Box::new(op))
}

// ---------------------------------------------------------------- shuffle: map side

/// The reduce partition of a key: deterministic in every process (FxHash of
/// the key's `Hash`), spread with a multiplicative step so that low-entropy
/// hashes still use every partition.
pub(crate) fn hash_partition<K: Hash>(key: &K, partitions: usize) -> usize {
    let mut h = rustc_hash::FxHasher::default();
    key.hash(&mut h);
    let mixed = h.finish().wrapping_mul(0x9E37_79B9_7F4A_7C15);
    ((mixed >> 32) as usize) % partitions.max(1)
}

/// Encoded bytes a map task buffers for one reduce partition before it
/// hands them to the map output (which encodes them, and spills if it must).
const PIECE_BYTES: usize = 64 << 10;

/// A map task's records per reduce partition, handed on in pieces of
/// about [`PIECE_BYTES`], so what it holds unencoded is bounded by the
/// number of partitions, not by its input.
struct Partitioned<'a, 'o> {
    buffers: Vec<RecordBuffer>,
    out: &'a mut MapOutputSink<'o>,
}

impl<'a, 'o> Partitioned<'a, 'o> {
    fn new(partitions: usize, out: &'a mut MapOutputSink<'o>) -> Self {
        Partitioned {
            buffers: (0..partitions).map(|_| RecordBuffer::default()).collect(),
            out,
        }
    }

    #[inline]
    fn push<T: serde::Serialize>(
        &mut self,
        partition: usize,
        record: &T,
    ) -> Result<(), PipelineError> {
        let buffer = &mut self.buffers[partition];
        buffer.push(record)?;
        if buffer.bytes() >= PIECE_BYTES {
            (self.out)(partition, buffer.finish())?;
        }
        Ok(())
    }

    fn finish(mut self) -> Result<(), PipelineError> {
        for (partition, buffer) in self.buffers.iter_mut().enumerate() {
            if !buffer.is_empty() {
                (self.out)(partition, buffer.finish())?;
            }
        }
        Ok(())
    }
}

/// Hash-partitions `(K, V)` records without combining.
struct HashWriter<K, V>(Types<(K, V)>);

impl<K: Data + Hash, V: Data> ShuffleWriteOp for HashWriter<K, V> {
    fn write(
        &self,
        input: Partition,
        partitions: usize,
        _: &TaskContext,
        out: &mut MapOutputSink<'_>,
    ) -> Result<(), PipelineError> {
        let mut out = Partitioned::new(partitions, out);
        for record in input.into_typed::<(K, V)>()? {
            out.push(hash_partition(&record.0, partitions), &record)?;
        }
        out.finish()
    }
}

pub(crate) fn hash_writer_factory<K: Data + Hash, V: Data>(_: &[u8]) -> Built {
    let op: Box<dyn ShuffleWriteOp> = Box::new(HashWriter::<K, V>(PhantomData));
    Ok(Box::new(op))
}

/// Spreads records round-robin (`repartition`), starting at a position
/// derived from the first record so that small map outputs do not all land
/// in partition 0.
struct RoundRobinWriter<T>(Types<T>);

impl<T: Data> ShuffleWriteOp for RoundRobinWriter<T> {
    fn write(
        &self,
        input: Partition,
        partitions: usize,
        _: &TaskContext,
        out: &mut MapOutputSink<'_>,
    ) -> Result<(), PipelineError> {
        let mut out = Partitioned::new(partitions, out);
        let mut next: Option<usize> = None;
        let mut scratch = Vec::new();
        for record in input.into_typed::<T>()? {
            let p = *next.get_or_insert_with(|| {
                scratch.clear();
                let _ = encode_into(&record, &mut scratch);
                hash_partition(&scratch, partitions)
            });
            out.push(p, &record)?;
            next = Some((p + 1) % partitions);
        }
        out.finish()
    }
}

pub(crate) fn round_robin_writer_factory<T: Data>(_: &[u8]) -> Built {
    let op: Box<dyn ShuffleWriteOp> = Box::new(RoundRobinWriter::<T>(PhantomData));
    Ok(Box::new(op))
}

/// How the values of one key combine (`reduce_by_key`, `aggregate_by_key`):
/// `create` makes a combiner from the first value, `merge_value` adds a
/// value, `merge` joins two combiners.
pub(crate) trait Combiner<V, C>: Send + Sync + 'static {
    fn create(&self, v: V) -> C;
    fn merge_value(&self, c: C, v: V) -> C;
    fn merge(&self, a: C, b: C) -> C;
}

/// `reduce_by_key`: the combiner is the value itself.
pub(crate) struct Reduce<F>(F);

impl<V, F: Fn(V, V) -> V + Send + Sync + 'static> Combiner<V, V> for Reduce<F> {
    fn create(&self, v: V) -> V {
        v
    }
    fn merge_value(&self, c: V, v: V) -> V {
        (self.0)(c, v)
    }
    fn merge(&self, a: V, b: V) -> V {
        (self.0)(a, b)
    }
}

/// `aggregate_by_key`: a zero value, a sequence and a combine function.
pub(crate) struct Aggregate<U, S, C> {
    zero: U,
    seq: S,
    comb: C,
}

impl<V, U, S, C> Combiner<V, U> for Aggregate<U, S, C>
where
    U: Clone + Send + Sync + 'static,
    S: Fn(U, V) -> U + Send + Sync + Copy + 'static,
    C: Fn(U, U) -> U + Send + Sync + Copy + 'static,
{
    fn create(&self, v: V) -> U {
        (self.seq)(self.zero.clone(), v)
    }
    fn merge_value(&self, c: U, v: V) -> U {
        (self.seq)(c, v)
    }
    fn merge(&self, a: U, b: U) -> U {
        (self.comb)(a, b)
    }
}

/// Builds a combiner from shipped state.
pub(crate) trait MakeCombiner<V, C>: 'static {
    type Combiner: Combiner<V, C>;
    fn make(state: &[u8]) -> Result<Self::Combiner, PipelineError>;
}

/// The `reduce_by_key` combiner for closure type `F`.
pub(crate) struct MakeReduce<F>(PhantomData<F>);

impl<V, F: Fn(V, V) -> V + Send + Sync + Copy + 'static> MakeCombiner<V, V> for MakeReduce<F> {
    type Combiner = Reduce<F>;
    fn make(_: &[u8]) -> Result<Reduce<F>, PipelineError> {
        Ok(Reduce(closure::<F>()))
    }
}

/// The `aggregate_by_key` combiner for closure types `S` and `C`, zero in state.
pub(crate) struct MakeAggregate<U, S, C>(Types<(U, S, C)>);

impl<V, U, S, C> MakeCombiner<V, U> for MakeAggregate<U, S, C>
where
    U: Data + Clone,
    S: Fn(U, V) -> U + Send + Sync + Copy + 'static,
    C: Fn(U, U) -> U + Send + Sync + Copy + 'static,
{
    type Combiner = Aggregate<U, S, C>;
    fn make(bytes: &[u8]) -> Result<Self::Combiner, PipelineError> {
        Ok(Aggregate {
            zero: state(bytes)?,
            seq: closure::<S>(),
            comb: closure::<C>(),
        })
    }
}

/// Map-side combining: one hash table per map task, then hash-partitioned.
struct CombineWriter<K, V, C, M> {
    combiner: M,
    _types: Types<(K, V, C)>,
}

impl<K, V, C, M> ShuffleWriteOp for CombineWriter<K, V, C, M>
where
    K: Data + Hash + Eq,
    V: Data,
    C: Data,
    M: Combiner<V, C>,
{
    fn write(
        &self,
        input: Partition,
        partitions: usize,
        _: &TaskContext,
        out: &mut MapOutputSink<'_>,
    ) -> Result<(), PipelineError> {
        let mut out = Partitioned::new(partitions, out);
        let mut table: FxHashMap<K, Option<C>> =
            FxHashMap::with_capacity_and_hasher(COMBINE_TABLE_ENTRIES, Default::default());
        for (k, v) in input.into_typed::<(K, V)>()? {
            let inserted = upsert(
                &mut table,
                k,
                v,
                |v| self.combiner.create(v),
                |c, v| self.combiner.merge_value(c, v),
            );
            if inserted && table.len() >= COMBINE_TABLE_ENTRIES {
                flush(&mut table, &mut out, partitions)?;
            }
        }
        flush(&mut table, &mut out, partitions)?;
        out.finish()
    }
}

/// Adds `value` to the combiner of `key`: `create` for a new key, `merge`
/// otherwise. Combiners sit in an `Option` so that `merge` can take the old
/// one by value. Returns whether the key was new.
#[inline]
fn upsert<K: Hash + Eq, V, C>(
    table: &mut FxHashMap<K, Option<C>>,
    key: K,
    value: V,
    create: impl FnOnce(V) -> C,
    merge: impl FnOnce(C, V) -> C,
) -> bool {
    match table.entry(key) {
        std::collections::hash_map::Entry::Occupied(mut e) => {
            let slot = e.get_mut();
            if let Some(c) = slot.take() {
                *slot = Some(merge(c, value));
            }
            false
        }
        std::collections::hash_map::Entry::Vacant(e) => {
            e.insert(Some(create(value)));
            true
        }
    }
}

/// Entries of the map-side combining table before it is flushed. A table
/// that stays in the CPU caches makes every lookup cheap; frequent keys
/// still combine well (they are emitted once per flush), and keys that are
/// rare (most keys of a high-cardinality data set) would not have combined
/// anyway. The reduce side merges whatever the flushes emit.
const COMBINE_TABLE_ENTRIES: usize = 1 << 16;

fn flush<K: Data + Hash, C: Data>(
    table: &mut FxHashMap<K, Option<C>>,
    out: &mut Partitioned<'_, '_>,
    partitions: usize,
) -> Result<(), PipelineError> {
    for (k, c) in table.drain() {
        if let Some(c) = c {
            let p = hash_partition(&k, partitions);
            out.push(p, &(k, c))?;
        }
    }
    Ok(())
}

pub(crate) fn combine_writer_factory<K, V, C, M>(bytes: &[u8]) -> Built
where
    K: Data + Hash + Eq,
    V: Data,
    C: Data,
    M: MakeCombiner<V, C>,
{
    let op: Box<dyn ShuffleWriteOp> = Box::new(CombineWriter::<K, V, C, M::Combiner> {
        combiner: M::make(bytes)?,
        _types: PhantomData,
    });
    Ok(Box::new(op))
}

/// Range partitioning for sorts: `bounds` are the upper bounds (inclusive)
/// of every partition but the last, ascending.
struct RangeWriter<K, V> {
    bounds: Vec<K>,
    ascending: bool,
    _types: Types<V>,
}

impl<K: Data + Ord, V: Data> ShuffleWriteOp for RangeWriter<K, V> {
    fn write(
        &self,
        input: Partition,
        partitions: usize,
        _: &TaskContext,
        out: &mut MapOutputSink<'_>,
    ) -> Result<(), PipelineError> {
        let mut out = Partitioned::new(partitions, out);
        for record in input.into_typed::<(K, V)>()? {
            let p = self
                .bounds
                .partition_point(|b| *b < record.0)
                .min(partitions - 1);
            let p = if self.ascending {
                p
            } else {
                partitions - 1 - p
            };
            out.push(p, &record)?;
        }
        out.finish()
    }
}

/// Shipped state of a range writer.
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct RangeBounds<K> {
    pub(crate) bounds: Vec<K>,
    pub(crate) ascending: bool,
}

pub(crate) fn range_writer_factory<K: Data + Ord, V: Data>(bytes: &[u8]) -> Built {
    let RangeBounds { bounds, ascending } = state::<RangeBounds<K>>(bytes)?;
    let op: Box<dyn ShuffleWriteOp> = Box::new(RangeWriter::<K, V> {
        bounds,
        ascending,
        _types: PhantomData,
    });
    Ok(Box::new(op))
}

// ---------------------------------------------------------------- shuffle: reduce side

/// Decodes the records of a batch iterator, each with the size of its
/// encoding (what the spilling operators account); a decoding error is
/// recorded in the task context and ends the iteration.
pub(crate) fn sized_records<T: Data>(batches: BatchIter, ctx: &TaskContext) -> BoxIter<(T, usize)> {
    let ctx = ctx.clone();
    Box::new(batches.flat_map(move |array| {
        let ctx = ctx.clone();
        riffle_planner::pipeline::Counters::add(
            &ctx.counters.records_read,
            arrow_array::Array::len(&array) as u64,
        );
        // Decoded one at a time from the fetched array, so a block is
        // held once, encoded, rather than also as a vector of values.
        (0..arrow_array::Array::len(&array)).map_while(move |i| {
            let bytes = array.value(i);
            match decode_record::<T>(bytes) {
                Ok(v) => Some((v, bytes.len())),
                Err(e) => {
                    ctx.fail(e);
                    None
                }
            }
        })
    }))
}

/// Decodes the records of a batch iterator; a decoding error is recorded in
/// the task context and ends the iteration.
pub(crate) fn records<T: Data>(batches: BatchIter, ctx: &TaskContext) -> BoxIter<T> {
    Box::new(sized_records::<T>(batches, ctx).map(|(v, _)| v))
}

fn single_input(mut inputs: Vec<BatchIter>) -> Result<BatchIter, PipelineError> {
    match (inputs.pop(), inputs.is_empty()) {
        (Some(input), true) => Ok(input),
        _ => Err(PipelineError::Internal(
            "expected exactly one shuffle input".into(),
        )),
    }
}

/// Passes records through (`repartition`).
struct PassReducer<T>(Types<T>);

impl<T: Data> ReduceOp for PassReducer<T> {
    fn reduce(
        &self,
        inputs: Vec<BatchIter>,
        ctx: &TaskContext,
    ) -> Result<Partition, PipelineError> {
        Ok(Partition::new::<T>(records::<T>(
            single_input(inputs)?,
            ctx,
        )))
    }
}

pub(crate) fn pass_reducer_factory<T: Data>(_: &[u8]) -> Built {
    let op: Box<dyn ReduceOp> = Box::new(PassReducer::<T>(PhantomData));
    Ok(Box::new(op))
}

/// Merges pre-combined values per key (`reduce_by_key`, `aggregate_by_key`,
/// `fold_by_key`, `distinct`). The table spills in hash order when the
/// executor's pool says no; the merge combines equal keys across runs.
struct CombineReduceOp<K, V, C, M> {
    combiner: Arc<M>,
    _types: Types<(K, V, C)>,
}

impl<K, V, C, M> ReduceOp for CombineReduceOp<K, V, C, M>
where
    K: Data + Hash + Eq,
    V: Data,
    C: Data,
    M: Combiner<V, C>,
{
    fn reduce(
        &self,
        inputs: Vec<BatchIter>,
        ctx: &TaskContext,
    ) -> Result<Partition, PipelineError> {
        const OPERATOR: &str = "reduce_by_key";
        let mut table: FxHashMap<K, Option<C>> = FxHashMap::default();
        let mut budget = Budget::new(ctx, OPERATOR);
        let mut spiller = Spiller::new(ctx, OPERATOR);
        let combiner = &self.combiner;
        for ((k, c), bytes) in sized_records::<(K, C)>(single_input(inputs)?, ctx) {
            make_room(&mut table, &k, &mut budget, &mut spiller)?;
            let new = upsert(&mut table, k, c, |c| c, |a, c| combiner.merge(a, c));
            if new && budget.add(heap_bytes(bytes)) {
                spill_table(&mut table, &mut budget, &mut spiller)?;
            }
        }
        if !spiller.spilled() {
            return Ok(Partition::new::<(K, C)>(Box::new(
                table.into_iter().filter_map(|(k, c)| c.map(|c| (k, c))),
            )));
        }
        let merged = spiller.merge::<_, ByHash>(drain_by_hash(&mut table), Some(budget))?;
        let combiner = self.combiner.clone();
        let groups = HashGroups::new(merged, move |a: Option<C>, b: Option<C>| match (a, b) {
            (Some(a), Some(b)) => Some(combiner.merge(a, b)),
            (a, b) => a.or(b),
        });
        Ok(Partition::new::<(K, C)>(Box::new(
            groups.filter_map(|(k, c)| c.map(|c| (k, c))),
        )))
    }
}

pub(crate) fn combine_reducer_factory<K, V, C, M>(bytes: &[u8]) -> Built
where
    K: Data + Hash + Eq,
    V: Data,
    C: Data,
    M: MakeCombiner<V, C>,
{
    let op: Box<dyn ReduceOp> = Box::new(CombineReduceOp::<K, V, C, M::Combiner> {
        combiner: Arc::new(M::make(bytes)?),
        _types: PhantomData,
    });
    Ok(Box::new(op))
}

/// Reads `(K, V)` records into a table of each key's values, spilling the
/// table in hash order when the budget says so.
fn group_into<K: Data + Hash + Eq, V: Data>(
    records: BoxIter<((K, V), usize)>,
    table: &mut FxHashMap<K, Vec<V>>,
    budget: &mut Budget,
    spiller: &mut Spiller,
) -> Result<(), PipelineError> {
    for ((k, v), bytes) in records {
        make_room(table, &k, budget, spiller)?;
        // A key's values are a vector that doubles as it grows.
        let held = heap_bytes(bytes) + 2 * size_of::<V>();
        table.entry(k).or_default().push(v);
        if budget.add(held) {
            spill_table(table, budget, spiller)?;
        }
    }
    Ok(())
}

/// Groups all values of a key (`group_by_key`). Spills like
/// [`CombineReduceOp`]; the values of one key are gathered in memory, so
/// they must fit (as in Spark).
struct GroupReducer<K, V>(Types<(K, V)>);

impl<K: Data + Hash + Eq, V: Data> ReduceOp for GroupReducer<K, V> {
    fn reduce(
        &self,
        inputs: Vec<BatchIter>,
        ctx: &TaskContext,
    ) -> Result<Partition, PipelineError> {
        const OPERATOR: &str = "group_by_key";
        let mut table: FxHashMap<K, Vec<V>> = FxHashMap::default();
        let mut budget = Budget::new(ctx, OPERATOR);
        let mut spiller = Spiller::new(ctx, OPERATOR);
        let input = sized_records::<(K, V)>(single_input(inputs)?, ctx);
        group_into(input, &mut table, &mut budget, &mut spiller)?;
        if !spiller.spilled() {
            return Ok(Partition::new::<(K, Vec<V>)>(Box::new(table.into_iter())));
        }
        let merged = spiller.merge::<_, ByHash>(drain_by_hash(&mut table), Some(budget))?;
        Ok(Partition::new::<(K, Vec<V>)>(Box::new(HashGroups::new(
            merged,
            |mut a: Vec<V>, b: Vec<V>| {
                a.extend(b);
                a
            },
        ))))
    }
}

pub(crate) fn group_reducer_factory<K: Data + Hash + Eq, V: Data>(_: &[u8]) -> Built {
    let op: Box<dyn ReduceOp> = Box::new(GroupReducer::<K, V>(PhantomData));
    Ok(Box::new(op))
}

/// The output records of one left record of a join, given the right
/// side's values of its key (none if the key has no match).
type Emit<K, V, W, O> = fn(K, V, Option<&Vec<W>>) -> Vec<O>;

fn emit_inner<K: Clone, V: Clone, W: Clone>(k: K, v: V, ws: Option<&Vec<W>>) -> Vec<(K, (V, W))> {
    ws.map(|ws| {
        ws.iter()
            .map(|w| (k.clone(), (v.clone(), w.clone())))
            .collect()
    })
    .unwrap_or_default()
}

fn emit_left_outer<K: Clone, V: Clone, W: Clone>(
    k: K,
    v: V,
    ws: Option<&Vec<W>>,
) -> Vec<(K, (V, Option<W>))> {
    match ws {
        Some(ws) => ws
            .iter()
            .map(|w| (k.clone(), (v.clone(), Some(w.clone()))))
            .collect(),
        None => vec![(k, (v, None))],
    }
}

/// Joins two hash-partitioned inputs: the right side is gathered per key,
/// the left side streams past it. `OUTER` keeps left records without a
/// match.
///
/// When the right side does not fit its share of memory it is spilled in
/// hash order, the left side is then sorted by hash too (spilling as it
/// must), and the two merged streams are joined one hash at a time: a
/// sort-merge join on the key's hash, which holds the right side's values
/// of one key at a time (those must fit, as in Spark's sort-merge join).
struct JoinReducer<K, V, W, const OUTER: bool>(Types<(K, V, W)>);

impl<K, V, W, const OUTER: bool> JoinReducer<K, V, W, OUTER>
where
    K: Data + Hash + Eq + Clone,
    V: Data + Clone,
    W: Data + Clone,
{
    fn join<O: Data>(
        left: BatchIter,
        right: BatchIter,
        ctx: &TaskContext,
        emit: Emit<K, V, W, O>,
    ) -> Result<Partition, PipelineError> {
        const OPERATOR: &str = "join";
        let mut table: FxHashMap<K, Vec<W>> = FxHashMap::default();
        let mut budget = Budget::new(ctx, OPERATOR);
        let mut right_runs = Spiller::new(ctx, OPERATOR);
        let right = sized_records::<(K, W)>(right, ctx);
        group_into(right, &mut table, &mut budget, &mut right_runs)?;
        let left = sized_records::<(K, V)>(left, ctx);
        if !right_runs.spilled() {
            let out = left.flat_map(move |((k, v), _)| {
                let ws = table.get(&k);
                emit(k, v, ws)
            });
            return Ok(Partition::new::<O>(Box::new(out)));
        }
        // The right side goes to disk whole, so the left side has the
        // budget to itself.
        right_runs.spill(drain_by_hash(&mut table))?;
        budget.reset();
        let right = HashGroups::new(
            right_runs.merge::<_, ByHash>(Vec::new(), None)?,
            |mut a: Vec<W>, b: Vec<W>| {
                a.extend(b);
                a
            },
        );
        let mut left_runs = Spiller::new(ctx, OPERATOR);
        let mut buffer: Vec<(u64, (K, V))> = Vec::new();
        for ((k, v), bytes) in left {
            let record = (key_hash(&k), (k, v));
            buffer_push::<_, ByHash>(
                &mut buffer,
                record,
                heap_bytes(bytes),
                &mut budget,
                &mut left_runs,
            )?;
        }
        sort::<_, ByHash>(&mut buffer);
        let left = left_runs.merge::<_, ByHash>(buffer, Some(budget))?;
        let right: BoxIter<(K, Vec<W>)> = Box::new(right);
        Ok(Partition::new::<O>(Box::new(HashJoin {
            left,
            right: right.peekable(),
            group_hash: None,
            group: Vec::new(),
            out: Vec::new().into_iter(),
            emit,
        })))
    }
}

/// The merge step of a spilled join: both sides in hash order.
struct HashJoin<K, V, W, O> {
    left: BoxIter<(u64, (K, V))>,
    right: std::iter::Peekable<BoxIter<(K, Vec<W>)>>,
    /// The hash whose right-side keys are in `group`.
    group_hash: Option<u64>,
    group: Vec<(K, Vec<W>)>,
    out: std::vec::IntoIter<O>,
    emit: Emit<K, V, W, O>,
}

impl<K: Hash + Eq, V, W, O> Iterator for HashJoin<K, V, W, O> {
    type Item = O;

    fn next(&mut self) -> Option<O> {
        loop {
            if let Some(o) = self.out.next() {
                return Some(o);
            }
            let (hash, (k, v)) = self.left.next()?;
            if self.group_hash != Some(hash) {
                self.group.clear();
                // Right keys of smaller hashes have no left partner left.
                while self.right.next_if(|(rk, _)| key_hash(rk) < hash).is_some() {}
                while let Some(entry) = self.right.next_if(|(rk, _)| key_hash(rk) == hash) {
                    self.group.push(entry);
                }
                self.group_hash = Some(hash);
            }
            let ws = self.group.iter().find(|(rk, _)| *rk == k).map(|(_, ws)| ws);
            self.out = (self.emit)(k, v, ws).into_iter();
        }
    }
}

impl<K, V, W, const OUTER: bool> ReduceOp for JoinReducer<K, V, W, OUTER>
where
    K: Data + Hash + Eq + Clone,
    V: Data + Clone,
    W: Data + Clone,
{
    fn reduce(
        &self,
        mut inputs: Vec<BatchIter>,
        ctx: &TaskContext,
    ) -> Result<Partition, PipelineError> {
        let (right, left) = match (inputs.pop(), inputs.pop(), inputs.is_empty()) {
            (Some(r), Some(l), true) => (r, l),
            _ => {
                return Err(PipelineError::Internal(
                    "a join expects two shuffle inputs".into(),
                ));
            }
        };
        if OUTER {
            Self::join(left, right, ctx, emit_left_outer::<K, V, W>)
        } else {
            Self::join(left, right, ctx, emit_inner::<K, V, W>)
        }
    }
}

pub(crate) fn join_reducer_factory<K, V, W, const OUTER: bool>(_: &[u8]) -> Built
where
    K: Data + Hash + Eq + Clone,
    V: Data + Clone,
    W: Data + Clone,
{
    let op: Box<dyn ReduceOp> = Box::new(JoinReducer::<K, V, W, OUTER>(PhantomData));
    Ok(Box::new(op))
}

/// Sorts one range partition by key (stable, so equal keys keep their order
/// of arrival); an external sort when the buffer outgrows its budget.
struct SortReducer<K, V> {
    ascending: bool,
    _types: Types<(K, V)>,
}

impl<K: Data + Ord, V: Data> SortReducer<K, V> {
    fn sort<O: Order<(K, V)>>(
        input: BoxIter<((K, V), usize)>,
        ctx: &TaskContext,
    ) -> Result<Partition, PipelineError> {
        const OPERATOR: &str = "sort_by";
        let mut budget = Budget::new(ctx, OPERATOR);
        let mut spiller = Spiller::new(ctx, OPERATOR);
        let mut buffer: Vec<(K, V)> = Vec::new();
        for (record, bytes) in input {
            buffer_push::<_, O>(
                &mut buffer,
                record,
                heap_bytes(bytes),
                &mut budget,
                &mut spiller,
            )?;
        }
        sort::<_, O>(&mut buffer);
        if !spiller.spilled() {
            return Ok(Partition::new::<(K, V)>(Box::new(buffer.into_iter())));
        }
        Ok(Partition::new::<(K, V)>(
            spiller.merge::<_, O>(buffer, Some(budget))?,
        ))
    }
}

impl<K: Data + Ord, V: Data> ReduceOp for SortReducer<K, V> {
    fn reduce(
        &self,
        inputs: Vec<BatchIter>,
        ctx: &TaskContext,
    ) -> Result<Partition, PipelineError> {
        let input = sized_records::<(K, V)>(single_input(inputs)?, ctx);
        if self.ascending {
            Self::sort::<Ascending>(input, ctx)
        } else {
            Self::sort::<Descending>(input, ctx)
        }
    }
}

pub(crate) fn sort_reducer_factory<K: Data + Ord, V: Data>(bytes: &[u8]) -> Built {
    let ascending: bool = state(bytes)?;
    let op: Box<dyn ReduceOp> = Box::new(SortReducer::<K, V> {
        ascending,
        _types: PhantomData,
    });
    Ok(Box::new(op))
}

// ---------------------------------------------------------------- results

/// A result operator as a function from the partition's iterator to bytes.
struct ResultFn<T> {
    f: FinishFn<T>,
}

impl<T: 'static> ResultOp for ResultFn<T> {
    fn finish(&self, input: Partition, _ctx: &TaskContext) -> Result<Vec<u8>, PipelineError> {
        (self.f)(input.into_typed::<T>()?)
    }
}

pub(crate) fn result<T: Data>(
    f: impl Fn(BoxIter<T>) -> Result<Vec<u8>, PipelineError> + Send + Sync + 'static,
) -> Built {
    let op: Box<dyn ResultOp> = Box::new(ResultFn { f: Box::new(f) });
    Ok(Box::new(op))
}

pub(crate) fn collect_factory<T: Data>(bytes: &[u8]) -> Built {
    let limit: Option<u64> = state(bytes)?;
    result::<T>(move |it| {
        let values: Vec<T> = match limit {
            Some(n) => it.take(n as usize).collect(),
            None => it.collect(),
        };
        encode_state(&values)
    })
}

pub(crate) fn count_factory<T: Data>(_: &[u8]) -> Built {
    result::<T>(|it| encode_state(&(it.count() as u64)))
}

pub(crate) fn reduce_factory<T: Data, F: Fn(T, T) -> T + Send + Sync + Copy + 'static>(
    _: &[u8],
) -> Built {
    result::<T>(|it| encode_state(&it.reduce(closure::<F>())))
}

pub(crate) fn fold_factory<T: Data + Clone, F: Fn(T, T) -> T + Send + Sync + Copy + 'static>(
    bytes: &[u8],
) -> Built {
    let zero: T = state(bytes)?;
    result::<T>(move |it| encode_state(&it.fold(zero.clone(), closure::<F>())))
}

pub(crate) fn text_factory<T: Data + std::fmt::Display>(_: &[u8]) -> Built {
    result::<T>(|it| {
        use std::io::Write;
        let mut out = Vec::new();
        for x in it {
            // Writing to a Vec cannot fail.
            let _ = writeln!(out, "{x}");
        }
        Ok(out)
    })
}

/// Shipped state of the sampling job that precedes a sort.
pub(crate) fn sample_factory<K: Data + Clone, V: Data>(bytes: &[u8]) -> Built {
    let per_partition: u64 = state(bytes)?;
    result::<(K, V)>(move |it| {
        // Reservoir sampling with a fixed seed: the sample (and so the
        // partition bounds) is the same on every run over the same data.
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::SmallRng::seed_from_u64(0x5249_4646);
        let mut sample: Vec<K> = Vec::new();
        let mut seen = 0u64;
        for (k, _) in it {
            seen += 1;
            if (sample.len() as u64) < per_partition {
                sample.push(k);
            } else {
                let j = rng.random_range(0..seen);
                if j < per_partition {
                    sample[j as usize] = k;
                }
            }
        }
        encode_state(&(seen, sample))
    })
}

/// Builds the `FnRef` of a convenience factory that takes no state.
pub(crate) fn stateless(factory: riffle_planner::function::Factory, name: &str) -> FnRef {
    FnRef::new(factory, Vec::new(), name)
}

pub(crate) fn take_ordered_factory<T: Data + Ord>(bytes: &[u8]) -> Built {
    let n: u64 = state(bytes)?;
    result::<T>(move |it| encode_state(&smallest(it, n as usize)))
}

/// The `n` smallest values, ascending, in `O(len log n)` time and `O(n)`
/// memory.
pub(crate) fn smallest<T: Ord>(values: impl Iterator<Item = T>, n: usize) -> Vec<T> {
    let mut heap = std::collections::BinaryHeap::with_capacity(n + 1);
    if n == 0 {
        return Vec::new();
    }
    for v in values {
        if heap.len() < n {
            heap.push(v);
        } else if heap.peek().is_some_and(|max| v < *max) {
            heap.pop();
            heap.push(v);
        }
    }
    heap.into_sorted_vec()
}

pub(crate) fn map_partitions_with_factory<S, T, U, I, F>(bytes: &[u8]) -> Built
where
    S: Data,
    T: Data,
    U: Data,
    I: Iterator<Item = U> + Send + 'static,
    F: Fn(&S, BoxIter<T>) -> I + Send + Sync + Copy + 'static,
{
    let s: S = state(bytes)?;
    let s = Arc::new(s);
    narrow::<T, U>(move |it| Box::new(closure::<F>()(&s, it)))
}
