//! Baseline: the CloudFront OS report as a straightforward single-threaded
//! program with the `regex` crate's captures and a `HashMap`.
//!
//! `cloudfront_baseline FROM TO INPUT...` (dates as yyyy-mm-dd)

use riffle::sql::cloudfront::Date;
use std::collections::HashMap;
use std::io::BufRead;

/// The tutorial's regex without its `(?!#)` look-ahead, which the `regex`
/// crate does not support; lines starting with `#` are skipped instead.
const REGEX: &str = r"^([^ ]+)\s+([^ ]+)\s+([^ ]+)\s+([^ ]+)\s+([^ ]+)\s+([^ ]+)\s+([^ ]+)\s+([^ ]+)\s+([^ ]+)\s+([^ ]+)\s+[^\(]+[\(]([^\;]+).*\%20([^\/]+)[\/](.*)$";

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let date = |s: Option<String>, default: &str| {
        let s = s.unwrap_or_else(|| default.into());
        Date::parse(&s).ok_or_else(|| anyhow::anyhow!("bad date {s}"))
    };
    let from = date(args.next(), "2014-07-05")?;
    let to = date(args.next(), "2014-08-05")?;
    let re = regex::Regex::new(REGEX)?;
    let mut counts: HashMap<String, u64> = HashMap::new();
    for path in riffle_benches::input_files(args)? {
        for line in riffle_benches::open(&path)?.lines() {
            let line = line?;
            if line.starts_with('#') {
                continue;
            }
            let Some(caps) = re.captures(&line) else {
                continue;
            };
            // A date that does not convert is NULL and never in range.
            if Date::parse(&caps[1]).is_some_and(|d| from <= d && d <= to) {
                *counts.entry(caps[11].to_string()).or_insert(0) += 1;
            }
        }
    }
    let mut all: Vec<_> = counts.into_iter().collect();
    all.sort();
    for (os, n) in all {
        println!("{os}\t{n}");
    }
    Ok(())
}
