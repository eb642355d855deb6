//! Baseline: a straightforward single-threaded word count, std `HashMap`
//! and `split_whitespace`, printing the top N like the `wordcount` example.
//!
//! `wordcount_baseline TOP INPUT...`

use std::collections::HashMap;
use std::io::BufRead;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let top: usize = args.next().unwrap_or_else(|| "20".into()).parse()?;
    let mut counts: HashMap<String, u64> = HashMap::new();
    for path in riffle_benches::input_files(args)? {
        for line in riffle_benches::open(&path)?.lines() {
            for word in line?.split_whitespace() {
                *counts.entry(word.to_string()).or_insert(0) += 1;
            }
        }
    }
    let mut all: Vec<(String, u64)> = counts.into_iter().collect();
    all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    for (word, count) in all.into_iter().take(top) {
        println!("{word}\t{count}");
    }
    Ok(())
}
