use riffle::prelude::*;
use std::collections::HashMap;

fn ctx() -> Context {
    Context::new("local[2]").unwrap()
}

#[test]
fn word_count_small() {
    let ctx = ctx();
    let lines = vec!["a b c".to_string(), "b c".to_string(), "c".to_string()];
    let mut counts = ctx
        .parallelize(lines, 2)
        .flat_map(|l: String| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .map(|w| (w, 1u64))
        .reduce_by_key(|a, b| a + b)
        .collect()
        .unwrap();
    counts.sort();
    assert_eq!(counts, vec![("a".into(), 1), ("b".into(), 2), ("c".into(), 3)]);
    let by_value: HashMap<String, u64> = ctx
        .parallelize(vec!["x".to_string(), "y".into(), "x".into()], 3)
        .count_by_value()
        .unwrap();
    assert_eq!(by_value["x"], 2);
}
