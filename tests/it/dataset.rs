//! Every Dataset operation checked against a plain sequential computation.

use proptest::prelude::*;
use riffle::prelude::*;
use std::collections::{BTreeMap, HashMap, HashSet};

fn ctx() -> Context {
    Context::new("local[2]").unwrap()
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

#[test]
fn word_count_small() {
    let ctx = ctx();
    let lines = vec!["a b c".to_string(), "b c".to_string(), "c".to_string()];
    let counts = ctx
        .parallelize(lines, 2)
        .flat_map(|l: String| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .map(|w| (w, 1u64))
        .reduce_by_key(|a, b| a + b)
        .collect()
        .unwrap();
    assert_eq!(
        sorted(counts),
        vec![("a".into(), 1), ("b".into(), 2), ("c".into(), 3)]
    );
}

#[test]
fn narrow_operations_match_sequential() {
    let ctx = ctx();
    let input: Vec<i64> = (0..1000).collect();
    let ds = ctx.parallelize(input.clone(), 7);
    assert_eq!(ds.num_partitions(), 7);
    assert_eq!(
        ds.map(|x| x * 3).collect().unwrap(),
        input.iter().map(|x| x * 3).collect::<Vec<_>>()
    );
    assert_eq!(
        ds.filter(|x| x % 3 == 0).collect().unwrap(),
        input
            .iter()
            .copied()
            .filter(|x| x % 3 == 0)
            .collect::<Vec<_>>()
    );
    assert_eq!(
        ds.flat_map(|x| vec![x; (x % 3) as usize])
            .collect()
            .unwrap(),
        input
            .iter()
            .flat_map(|&x| vec![x; (x % 3) as usize])
            .collect::<Vec<_>>()
    );
    assert_eq!(
        ds.map_partitions(|it| std::iter::once(it.sum::<i64>()))
            .collect()
            .unwrap()
            .iter()
            .sum::<i64>(),
        input.iter().sum::<i64>()
    );
    assert_eq!(
        ds.map_with(10i64, |k, x| x + k).collect().unwrap(),
        input.iter().map(|x| x + 10).collect::<Vec<_>>()
    );
    assert_eq!(
        ds.filter_with(vec![1i64, 5, 999], |set, x| set.contains(x))
            .collect()
            .unwrap(),
        vec![1, 5, 999]
    );
    assert_eq!(
        ds.flat_map_with(2usize, |n, x| vec![x; *n])
            .count()
            .unwrap(),
        2 * input.len() as u64
    );
    assert_eq!(
        ds.key_by(|x| x % 2).map_values(|x| x + 1).take(3).unwrap(),
        vec![(0, 1), (1, 2), (0, 3)]
    );
    let u = ds.union(&ctx.parallelize(vec![-1i64, -2], 1));
    assert_eq!(u.num_partitions(), 8);
    assert_eq!(u.count().unwrap(), 1002);
    let c = ds.coalesce(3);
    assert_eq!(c.num_partitions(), 3);
    assert_eq!(c.collect().unwrap(), input);
    let r = ds.repartition(5);
    assert_eq!(r.num_partitions(), 5);
    assert_eq!(sorted(r.collect().unwrap()), input);
}

#[test]
fn actions_match_sequential() {
    let ctx = ctx();
    let input: Vec<u32> = (1..=100).collect();
    let ds = ctx.parallelize(input.clone(), 4);
    assert_eq!(ds.count().unwrap(), 100);
    assert_eq!(ds.first().unwrap(), Some(1));
    assert_eq!(ds.take(5).unwrap(), vec![1, 2, 3, 4, 5]);
    assert_eq!(ds.take(1000).unwrap(), input);
    assert_eq!(ds.reduce(|a, b| a + b).unwrap(), Some(5050));
    assert_eq!(ds.fold(0, |a, b| a + b).unwrap(), 5050);
    assert_eq!(ds.take_ordered(3).unwrap(), vec![1, 2, 3]);
    assert_eq!(
        ds.map(std::cmp::Reverse).take_ordered(2).unwrap(),
        vec![std::cmp::Reverse(100), std::cmp::Reverse(99)]
    );
    let empty = ctx.parallelize(Vec::<u32>::new(), 3);
    assert_eq!(empty.reduce(|a, b| a + b).unwrap(), None);
    assert_eq!(empty.first().unwrap(), None);
    assert_eq!(empty.count().unwrap(), 0);
    let by_value = ctx
        .parallelize(vec!["x".to_string(), "y".into(), "x".into()], 3)
        .count_by_value()
        .unwrap();
    assert_eq!(
        by_value,
        HashMap::from([("x".to_string(), 2), ("y".to_string(), 1)])
    );
    let by_key = ctx
        .parallelize(vec![(1, 'a'), (2, 'b'), (1, 'c')], 2)
        .count_by_key()
        .unwrap();
    assert_eq!(by_key, HashMap::from([(1, 2), (2, 1)]));
}

#[test]
fn keyed_operations_match_sequential() {
    let ctx = ctx();
    let pairs: Vec<(u8, i32)> = (0..500).map(|i| ((i * 7 % 13) as u8, i)).collect();
    let ds = ctx.parallelize(pairs.clone(), 6);
    let mut expected_sum: BTreeMap<u8, i32> = BTreeMap::new();
    for (k, v) in &pairs {
        *expected_sum.entry(*k).or_default() += v;
    }
    let sums = ds
        .aggregate_by_key(0i64, |a, v| a + v as i64, |a, b| a + b)
        .collect()
        .unwrap();
    assert_eq!(
        sorted(sums),
        expected_sum
            .iter()
            .map(|(k, v)| (*k, *v as i64))
            .collect::<Vec<_>>()
    );
    let folded = ds.fold_by_key(0, |a, b| a + b).collect().unwrap();
    assert_eq!(
        sorted(folded),
        expected_sum.clone().into_iter().collect::<Vec<_>>()
    );
    let right = ctx.parallelize(
        vec![
            (1u8, "one".to_string()),
            (2, "two".into()),
            (2, "deux".into()),
            (99, "none".into()),
        ],
        2,
    );
    let left_outer = ds
        .filter(|(k, _)| *k < 4)
        .left_outer_join(&right)
        .collect()
        .unwrap();
    let mut expected = Vec::new();
    for (k, v) in pairs.iter().filter(|(k, _)| *k < 4) {
        match k {
            1 => expected.push((*k, (*v, Some("one".to_string())))),
            2 => {
                expected.push((*k, (*v, Some("two".to_string()))));
                expected.push((*k, (*v, Some("deux".to_string()))));
            }
            _ => expected.push((*k, (*v, None))),
        }
    }
    assert_eq!(sorted(left_outer), sorted(expected));
    let keys = sorted(ds.keys().distinct().collect().unwrap());
    assert_eq!(keys, expected_sum.keys().copied().collect::<Vec<_>>());
    assert_eq!(ds.values().count().unwrap(), 500);
}

#[test]
fn sort_descending_and_with_strings() {
    let ctx = ctx();
    let words: Vec<String> = (0..300)
        .map(|i| format!("w{:03}", (i * 37) % 300))
        .collect();
    let ds = ctx.parallelize(words.clone(), 4);
    let asc = ds.sort_by(|w: &String| w.clone(), true).collect().unwrap();
    assert_eq!(asc, sorted(words.clone()));
    let desc = ds.sort_by(|w: &String| w.clone(), false).collect().unwrap();
    let mut expected = sorted(words);
    expected.reverse();
    assert_eq!(desc, expected);
}

#[test]
fn save_as_text_file_writes_parts_atomically() {
    let ctx = ctx();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let out_str = out.to_str().unwrap();
    ctx.parallelize((0..10).collect::<Vec<u32>>(), 3)
        .save_as_text_file(out_str)
        .unwrap();
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec!["_SUCCESS", "part-00000", "part-00001", "part-00002"]
    );
    let mut all = String::new();
    for p in 0..3 {
        all.push_str(&std::fs::read_to_string(out.join(format!("part-{p:05}"))).unwrap());
    }
    assert_eq!(all, (0..10).map(|i| format!("{i}\n")).collect::<String>());
    // Writing again into a non-empty directory is refused.
    let err = ctx
        .parallelize(vec![1], 1)
        .save_as_text_file(out_str)
        .unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");

    // A job that fails leaves nothing visible.
    let failed = dir.path().join("failed");
    let err = ctx
        .parallelize((0..10).collect::<Vec<u32>>(), 3)
        .map(|x| if x == 7 { panic!("boom at {x}") } else { x })
        .save_as_text_file(failed.to_str().unwrap())
        .unwrap_err();
    assert!(err.to_string().contains("boom at 7"), "{err}");
    let leftovers: Vec<_> = std::fs::read_dir(&failed)
        .map(|d| d.collect::<Vec<_>>())
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn explain_shows_stages_and_boundaries() {
    let ctx = ctx();
    let words = ctx
        .parallelize(vec!["a b".to_string()], 2)
        .flat_map(|l: String| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .map(|w| (w, 1u64));
    let counts = words.reduce_by_key(|a, b| a + b);
    let plan = counts.map(|(w, c)| (c, w)).to_debug_string();
    assert_eq!(plan.matches("Stage ").count(), 2, "{plan}");
    assert_eq!(plan.matches("boundary").count(), 1, "{plan}");
    assert!(
        plan.contains("parallelize(1 elements) -> flat_map -> map"),
        "{plan}"
    );
    assert!(plan.contains("reduce_by_key -> map"), "{plan}");

    // A join of two aggregations: 1 result stage + 2 join sides + 1 below the left side.
    let joined = counts.join(&words.group_by_key().map_values(|v: Vec<u64>| v.len()));
    let plan = joined.to_debug_string();
    assert_eq!(plan.matches("Stage ").count(), 5, "{plan}");
    assert_eq!(plan.matches("boundary").count(), 4, "{plan}");
    // Narrow operators never add stages.
    let plan = ctx
        .parallelize(vec![1], 1)
        .map(|x| x + 1)
        .filter(|x| *x > 0)
        .union(&ctx.parallelize(vec![2], 1))
        .coalesce(1)
        .to_debug_string();
    assert_eq!(plan.matches("Stage ").count(), 1, "{plan}");
}

#[test]
fn panicking_closure_fails_the_job_with_message_and_task() {
    let ctx = ctx();
    let err = ctx
        .parallelize((0..100).collect::<Vec<i32>>(), 4)
        .map(|x| if x == 42 { panic!("bad record {x}") } else { x })
        .count()
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("bad record 42"), "{msg}");
    assert!(msg.contains("task 1"), "{msg}");
    assert!(msg.contains("stage-0"), "{msg}");
    // The context (and process) survive and run the next job.
    assert_eq!(ctx.parallelize(vec![1, 2, 3], 2).count().unwrap(), 3);
}

/// Every wide operation on `input` against the sequential computation.
fn check_reduce_group_distinct_sort(
    ctx: &Context,
    input: Vec<(u8, i32)>,
    partitions: usize,
    skew: bool,
) -> Result<(), TestCaseError> {
    // Skewed keys: most records share one key.
    let input: Vec<(u8, i32)> = if skew {
        input
            .into_iter()
            .enumerate()
            .map(|(i, (k, v))| (if i % 5 == 0 { k } else { 7 }, v))
            .collect()
    } else {
        input
    };
    let ds = ctx.parallelize(input.clone(), partitions);

    let mut sums: HashMap<u8, i64> = HashMap::new();
    let mut groups: HashMap<u8, Vec<i32>> = HashMap::new();
    for (k, v) in &input {
        *sums.entry(*k).or_default() += *v as i64;
        groups.entry(*k).or_default().push(*v);
    }
    let got = ds
        .map_values(|v| v as i64)
        .reduce_by_key(|a, b| a + b)
        .collect()
        .unwrap();
    prop_assert_eq!(
        sorted(got),
        sorted(sums.clone().into_iter().collect::<Vec<_>>())
    );
    let got = ds
        .aggregate_by_key(0i64, |a, v| a + v as i64, |a, b| a + b)
        .collect()
        .unwrap();
    prop_assert_eq!(sorted(got), sorted(sums.into_iter().collect::<Vec<_>>()));

    let got: Vec<(u8, Vec<i32>)> = ds.group_by_key().map_values(sorted).collect().unwrap();
    let expected: Vec<(u8, Vec<i32>)> = groups.into_iter().map(|(k, v)| (k, sorted(v))).collect();
    prop_assert_eq!(sorted(got), sorted(expected));

    let got = ds.distinct().collect().unwrap();
    let expected: HashSet<(u8, i32)> = input.iter().copied().collect();
    prop_assert_eq!(
        sorted(got),
        sorted(expected.into_iter().collect::<Vec<_>>())
    );

    let got = ds
        .sort_by(|(_, v)| *v, true)
        .map(|(_, v)| v)
        .collect()
        .unwrap();
    prop_assert_eq!(
        got,
        sorted(input.iter().map(|(_, v)| *v).collect::<Vec<_>>())
    );
    let got = ds.sort_by_key(false).keys().collect().unwrap();
    let mut expected = sorted(input.iter().map(|(k, _)| *k).collect::<Vec<_>>());
    expected.reverse();
    prop_assert_eq!(got, expected);
    Ok(())
}

/// `join` and `left_outer_join` against nested loops.
fn check_join(
    ctx: &Context,
    left: Vec<(u8, u16)>,
    right: Vec<(u8, u16)>,
    lp: usize,
    rp: usize,
) -> Result<(), TestCaseError> {
    let l = ctx.parallelize(left.clone(), lp);
    let r = ctx.parallelize(right.clone(), rp);
    let mut expected = Vec::new();
    let mut outer = Vec::new();
    for (k, v) in &left {
        let mut matched = false;
        for (k2, w) in &right {
            if k == k2 {
                expected.push((*k, (*v, *w)));
                outer.push((*k, (*v, Some(*w))));
                matched = true;
            }
        }
        if !matched {
            outer.push((*k, (*v, None)));
        }
    }
    prop_assert_eq!(sorted(l.join(&r).collect().unwrap()), sorted(expected));
    prop_assert_eq!(
        sorted(l.left_outer_join(&r).collect().unwrap()),
        sorted(outer)
    );
    Ok(())
}

/// A context whose operators spill after every `n` records they buffer.
fn spilling_ctx(n: usize) -> Context {
    Context::builder()
        .master("local[2]")
        .force_spill_every(n)
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn prop_reduce_group_distinct_sort(
        input in prop::collection::vec((0u8..20, -1000i32..1000), 0..300),
        partitions in 1usize..8,
        skew in any::<bool>(),
    ) {
        check_reduce_group_distinct_sort(&ctx(), input, partitions, skew)?;
    }

    #[test]
    fn prop_join(
        left in prop::collection::vec((0u8..15, 0u16..100), 0..120),
        right in prop::collection::vec((0u8..15, 0u16..100), 0..120),
        lp in 1usize..6,
        rp in 1usize..6,
    ) {
        check_join(&ctx(), left, right, lp, rp)?;
    }

    /// The same with every operator spilling every few records: runs on
    /// disk, merges in several passes (more than 64 runs), colliding
    /// hashes, the sort-merge join.
    #[test]
    fn prop_reduce_group_distinct_sort_spilling(
        input in prop::collection::vec((0u8..20, -1000i32..1000), 5..300),
        partitions in 1usize..8,
        skew in any::<bool>(),
        every in 1usize..6,
    ) {
        let ctx = spilling_ctx(every);
        check_reduce_group_distinct_sort(&ctx, input.clone(), partitions, skew)?;
        // All records in one reduce task: at least `every` of them.
        ctx.parallelize(input, 1).group_by_key().count().unwrap();
        prop_assert!(ctx.last_job().spill_count > 0, "{}", ctx.last_job());
    }

    #[test]
    fn prop_join_spilling(
        left in prop::collection::vec((0u8..15, 0u16..100), 0..120),
        right in prop::collection::vec((0u8..15, 0u16..100), 5..120),
        lp in 1usize..6,
        rp in 1usize..6,
        every in 1usize..6,
    ) {
        let ctx = spilling_ctx(every);
        check_join(&ctx, left.clone(), right.clone(), lp, rp)?;
        let (l, r) = (ctx.parallelize(left, 1), ctx.parallelize(right, 1));
        l.join(&r).count().unwrap();
        prop_assert!(ctx.last_job().spill_count > 0, "{}", ctx.last_job());
    }
}

/// Spilled runs of a sort merge back stably: records of equal keys keep
/// the order they had in their partition.
#[test]
fn a_spilled_sort_keeps_equal_keys_in_arrival_order() {
    let ctx = spilling_ctx(7);
    let input: Vec<(u8, u32)> = (0..2000u32).map(|i| ((i % 3) as u8, i)).collect();
    // One input partition and one output partition: arrival order is the
    // input order.
    let got = ctx
        .parallelize(input.clone(), 1)
        .sort_by_key(true)
        .collect()
        .unwrap();
    let mut expected = input;
    expected.sort_by_key(|r| r.0);
    assert_eq!(got, expected);
    let job = ctx.last_job();
    assert!(job.spill_count > 100, "{job}");
    assert!(job.spilled_bytes > 0, "{job}");
}

#[test]
fn in_memory_shuffle_store() {
    let ctx = Context::builder()
        .master("local[3]")
        .shuffle_store("memory:///shuffle")
        .build()
        .unwrap();
    let counts = ctx
        .parallelize((0..1000u32).map(|i| (i % 10, 1u64)).collect::<Vec<_>>(), 5)
        .reduce_by_key(|a, b| a + b)
        .collect()
        .unwrap();
    assert_eq!(
        sorted(counts),
        (0..10).map(|k| (k, 100)).collect::<Vec<_>>()
    );
    let summary = ctx.last_job();
    assert_eq!(summary.stages, 2);
    assert!(summary.shuffle_bytes_written > 0);
}

#[test]
fn bad_master_is_a_clear_error() {
    let err = Context::new("locale[2]").err().unwrap();
    assert!(
        err.to_string().contains("unknown master \"locale[2]\""),
        "{err}"
    );
    let err = Context::new("local[0]").err().unwrap();
    assert!(err.to_string().contains("local[N]"), "{err}");
}
