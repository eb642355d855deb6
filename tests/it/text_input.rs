//! Text inputs: splits, gzip, globs, and bad input.

use riffle::prelude::*;
use std::io::Write;

fn ctx() -> Context {
    Context::new("local[2]").unwrap()
}

fn write_gz(path: &std::path::Path, text: &str) {
    let file = std::fs::File::create(path).unwrap();
    let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    gz.write_all(text.as_bytes()).unwrap();
    gz.finish().unwrap();
}

#[test]
fn byte_range_splits_read_every_line_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.txt");
    // Lines of varying length, \n, \r\n and lone \r endings (Hadoop's
    // three), no final newline.
    let mut text = String::new();
    let mut expected = Vec::new();
    for i in 0..5000 {
        let line = format!("line {i} {}", "x".repeat(i % 37));
        text.push_str(&line);
        text.push_str(["\r\n", "\n", "\r"][i % 3]);
        expected.push(line);
    }
    text.push_str("last");
    expected.push("last".into());
    std::fs::write(&path, &text).unwrap();
    for split in [1u64, 7, 100, 4096, 1 << 30] {
        let ctx = Context::builder()
            .master("local[2]")
            .split_size(split.max(1))
            .build()
            .unwrap();
        let ds = ctx.text_file(path.to_str().unwrap()).unwrap();
        let lines = ds.collect().unwrap();
        assert_eq!(lines, expected, "split size {split}");
    }
}

#[test]
fn gzip_plain_globs_and_urls() {
    let dir = tempfile::tempdir().unwrap();
    write_gz(&dir.path().join("a.log.gz"), "a1\na2\n");
    std::fs::write(dir.path().join("b.log"), "b1\nb2\nb3\n").unwrap();
    std::fs::write(dir.path().join("empty.log"), "").unwrap();
    std::fs::write(dir.path().join("other.txt"), "zzz\n").unwrap();
    std::fs::write(dir.path().join("_SUCCESS"), "").unwrap();
    let ctx = ctx();
    let glob = format!("{}/*.log*", dir.path().display());
    let mut lines = ctx.text_file(&glob).unwrap().collect().unwrap();
    lines.sort();
    assert_eq!(lines, vec!["a1", "a2", "b1", "b2", "b3"]);
    // A directory: every file except hidden ones.
    assert_eq!(
        ctx.text_file(dir.path().to_str().unwrap())
            .unwrap()
            .count()
            .unwrap(),
        6
    );
    // A file:// URL.
    let url = format!("file://{}/b.log", dir.path().display());
    assert_eq!(ctx.text_file(&url).unwrap().count().unwrap(), 3);
    // An empty file is an empty dataset.
    let empty = ctx
        .text_file(dir.path().join("empty.log").to_str().unwrap())
        .unwrap();
    assert_eq!(empty.count().unwrap(), 0);
}

#[test]
fn missing_path_is_named() {
    let ctx = ctx();
    let err = ctx.text_file("/definitely/not/here.txt").err().unwrap();
    let msg = err.to_string();
    assert!(msg.contains("/definitely/not/here.txt"), "{msg}");
    assert!(msg.contains("no such file"), "{msg}");
    let err = ctx.text_file("/definitely/not/*.gz").err().unwrap();
    assert!(err.to_string().contains("no file matches"), "{err}");
}

#[test]
fn corrupt_gzip_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.gz");
    let mut bytes = Vec::new();
    {
        let mut gz = flate2::write::GzEncoder::new(&mut bytes, flate2::Compression::fast());
        gz.write_all("hello world\n".repeat(1000).as_bytes())
            .unwrap();
        gz.finish().unwrap();
    }
    let mid = bytes.len() / 2;
    bytes[mid..mid + 20].fill(0xAB);
    std::fs::write(&path, &bytes).unwrap();
    let ctx = ctx();
    let err = ctx
        .text_file(path.to_str().unwrap())
        .unwrap()
        .count()
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("broken.gz"), "{msg}");
    // The message names the stage, the partition, the executor and, after
    // Riffle's own words, the decoder's root cause.
    match &err {
        DriverError::TaskFailed {
            kind, partition, ..
        } => {
            assert_eq!(*kind, riffle::FailureKind::BadInput, "{msg}");
            assert_eq!(*partition, 0, "{msg}");
        }
        other => panic!("not a task failure: {other}"),
    }
    assert!(
        msg.contains("stage-0 task 0 (attempt 0) on executor-"),
        "{msg}"
    );
    let root = msg
        .split_once("corrupt gzip data: ")
        .map(|(_, cause)| cause.trim())
        .unwrap_or_default();
    assert!(!root.is_empty(), "no root cause: {msg}");
}

#[test]
fn non_utf8_lines_are_replaced_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("latin1.txt");
    std::fs::write(&path, b"caf\xe9\nok\n\xff\xfe\n").unwrap();
    let ctx = ctx();
    let lines = ctx
        .text_file(path.to_str().unwrap())
        .unwrap()
        .collect()
        .unwrap();
    assert_eq!(lines, vec!["caf\u{FFFD}", "ok", "\u{FFFD}\u{FFFD}"]);
    assert_eq!(ctx.last_job().invalid_utf8_lines, 2);
}
