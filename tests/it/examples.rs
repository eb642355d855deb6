//! The examples' command lines and outputs (the contract in the README),
//! run as the compiled example binaries that `cargo test` builds.

use riffle::sql::cloudfront::{CloudFrontParser, Date};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

/// `target/<profile>/examples/NAME`, next to this test's `deps/` directory.
pub(crate) fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    dir.join("examples").join(name)
}

fn run(name: &str, args: &[&str]) -> (String, String) {
    let out = Command::new(example(name)).args(args).output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "{name} {args:?} failed: {stderr}");
    (stdout, stderr)
}

fn generate(dir: &std::path::Path, lines: u64, files: usize, gzip: bool) {
    riffle::datagen::cloudfront(&riffle::datagen::CloudFrontGenOptions {
        lines,
        files,
        seed: 3,
        out: dir.to_path_buf(),
        gzip,
        wild: false,
    })
    .unwrap();
}

#[test]
fn wordcount_prints_top_words_like_a_sequential_count() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), 5_000, 2, false);
    generate(&dir.path().join("gz"), 3_000, 1, true);
    let input = dir.path().join("*.log");
    let gz = dir.path().join("gz");
    let (stdout, _) = run(
        "wordcount",
        &[
            "--master",
            "local[2]",
            "--top",
            "7",
            input.to_str().unwrap(),
            gz.to_str().unwrap(),
        ],
    );
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for path in riffle_files(dir.path()) {
        for line in read_lines(&path) {
            for w in line.split_whitespace() {
                *counts.entry(w.to_string()).or_default() += 1;
            }
        }
    }
    let mut all: Vec<(String, u64)> = counts.into_iter().collect();
    all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let expected: String = all
        .iter()
        .take(7)
        .map(|(w, c)| format!("{w}\t{c}\n"))
        .collect();
    assert_eq!(stdout, expected);
}

#[test]
fn wordcount_without_input_generates_sample_data() {
    let (stdout, stderr) = run("wordcount", &["--master", "local[2]"]);
    assert_eq!(stdout.lines().count(), 20, "{stdout}");
    assert!(stderr.contains("generated a sample data set"), "{stderr}");
}

#[test]
fn cloudfront_report_matches_hive_semantics() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), 8_000, 3, false);
    generate(&dir.path().join("gz"), 4_000, 2, true);
    let (stdout, stderr) = run(
        "cloudfront",
        &[
            "--master",
            "local[2]",
            "--from",
            "2014-07-10",
            "--to",
            "2014-08-20",
            dir.path().join("*.log").to_str().unwrap(),
            dir.path().join("gz").to_str().unwrap(),
        ],
    );
    let parser = CloudFrontParser::new();
    let (from, to) = (
        Date::parse("2014-07-10").unwrap(),
        Date::parse("2014-08-20").unwrap(),
    );
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    let (mut read, mut unmatched) = (0, 0);
    for path in riffle_files(dir.path()) {
        for line in read_lines(&path) {
            read += 1;
            let record = parser.parse(&line);
            if record.is_all_null() {
                unmatched += 1;
            }
            if record.date.is_some_and(|d| from <= d && d <= to) {
                *expected.entry(record.os.unwrap()).or_default() += 1;
            }
        }
    }
    let expected: String = expected
        .iter()
        .map(|(os, n)| format!("{os}\t{n}\n"))
        .collect();
    assert_eq!(stdout, expected);
    assert!(
        stderr.contains(&format!("{read} lines read, {unmatched} did not match")),
        "{stderr}"
    );
}

/// Every log file under `dir`, recursively.
fn riffle_files(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(riffle_files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn read_lines(path: &std::path::Path) -> Vec<String> {
    use std::io::Read;
    let mut bytes = Vec::new();
    let file = std::fs::File::open(path).unwrap();
    if path.extension().is_some_and(|e| e == "gz") {
        flate2::read::MultiGzDecoder::new(file)
            .read_to_end(&mut bytes)
            .unwrap();
    } else {
        std::io::BufReader::new(file)
            .read_to_end(&mut bytes)
            .unwrap();
    }
    String::from_utf8(bytes)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}
