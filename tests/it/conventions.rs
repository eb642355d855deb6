//! Real-world input files: Hadoop's input conventions and Hive's
//! conversions, through every reader (`text_file`, the CloudFront example,
//! the Hive script, CSV/Parquet/JSON tables), embedded and on
//! `local-cluster`.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;

const MASTERS: [&str; 2] = ["local[2]", "local-cluster[2,1]"];

/// Runs `program` and returns its stdout and stderr; fails the test,
/// showing stderr, if it fails.
fn run_ok(program: &Path, args: &[&str]) -> (String, String) {
    let out = Command::new(program).args(args).output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "{} {args:?} failed: {stderr}",
        program.display()
    );
    (stdout, stderr)
}

fn riffle_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_riffle"))
}

/// `riffle sql --master M --format csv -e SCRIPT`: the CSV rows (header
/// dropped) and stderr.
fn sql(master: &str, script: &str) -> (Vec<String>, String) {
    let (out, err) = run_ok(
        riffle_bin(),
        &["sql", "--master", master, "--format", "csv", "-e", script],
    );
    (out.lines().skip(1).map(str::to_string).collect(), err)
}

/// Writes `files` (path relative to `root`, bytes).
fn write_tree(root: &Path, files: &[(&str, &[u8])]) {
    for (name, bytes) in files {
        let path = root.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
}

fn gzip(text: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(text).unwrap();
    gz.finish().unwrap()
}

#[test]
fn text_inputs_follow_hadoop_conventions_in_every_reader() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("d");
    let mut padded = gzip(b"padded line\n");
    padded.extend([0u8; 300]);
    write_tree(
        &d,
        &[
            ("part-00000", b"apple banana\n"),
            ("_temporary/0/_temporary/attempt_1/part-00002", b"ghost\n"),
            (".staging/part-00003", b"ghost\n"),
            ("_logs/history", b"ghost\n"),
            (".part-00000.crc", b"ghost\n"),
            ("sub/_partial", b"ghost\n"),
            ("_SUCCESS", b""),
            ("c#d.log", b"cherry\n"),
            ("g?h.log", b"grape\n"),
            ("e%20g.log", b"elder\n"),
            ("cr.txt", b"b1\rb2\rb3"),
            ("bom.txt", b"\xEF\xBB\xBFhello world\r\nhello again\n"),
            ("hello.txt", b"hello\n"),
            ("empty.gz", b""),
            ("padded.gz", &padded),
        ],
    );
    write_tree(&dir.path().join("markers"), &[("_SUCCESS", b"")]);
    let d_path = d.to_str().unwrap();
    let mut expected_lines = vec![
        "apple banana",
        "b1",
        "b2",
        "b3",
        "cherry",
        "elder",
        "grape",
        "hello",
        "hello again",
        "hello world",
        "padded line",
    ];
    expected_lines.sort();
    let mut expected_words: BTreeMap<String, u64> = BTreeMap::new();
    for word in expected_lines.iter().flat_map(|l| l.split(' ')) {
        *expected_words.entry(word.to_string()).or_default() += 1;
    }
    assert_eq!(expected_words["hello"], 3);
    let markers = dir.path().join("markers");
    let markers = markers.to_str().unwrap();
    for master in MASTERS {
        // The Dataset reader (text_file), through the word-count example.
        let (out, _) = run_ok(
            &crate::examples::example("wordcount"),
            &["--master", master, "--top", "100", d_path],
        );
        let words: BTreeMap<String, u64> = out
            .lines()
            .map(|l| {
                let (w, n) = l.split_once('\t').unwrap();
                (w.to_string(), n.parse().unwrap())
            })
            .collect();
        assert_eq!(words, expected_words, "{master}");
        // The SQL text table, and a directory of markers only.
        let (lines, stderr) = sql(
            master,
            &format!(
                "CREATE EXTERNAL TABLE t (line STRING) ROW FORMAT SERDE 'org.apache.hadoop.hive.serde2.RegexSerDe' \
                 WITH SERDEPROPERTIES ('input.regex' = '(.*)') STORED AS TEXTFILE LOCATION '{d_path}'; \
                 CREATE EXTERNAL TABLE m (line STRING) ROW FORMAT SERDE 'org.apache.hadoop.hive.serde2.RegexSerDe' \
                 WITH SERDEPROPERTIES ('input.regex' = '(.*)') LOCATION '{markers}'; \
                 SELECT line FROM t ORDER BY line; SELECT count(*) FROM m"
            ),
        );
        let (rows, count) = lines.split_at(lines.len() - 2);
        assert_eq!(rows, expected_lines, "{master}");
        assert_eq!(count, ["count(*)", "0"], "{master}");
        if master == "local[2]" {
            assert!(stderr.contains("empty.gz: empty gzip file"), "{stderr}");
        }
        // Marker-only input through the Dataset reader too.
        let (out, _) = run_ok(
            &crate::examples::example("wordcount"),
            &["--master", master, markers],
        );
        assert_eq!(out, "", "{master}");
    }
}

#[test]
fn csv_parquet_and_json_tables_skip_hidden_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let csv = b"a,b\n1,x\n2,y\n";
    let json = b"{\"a\":1}\n{\"a\":2}\n";
    write_tree(
        root,
        &[
            ("csv/part-00000.csv", csv),
            ("csv/.hidden.csv", csv),
            ("csv/_tmp.csv", csv),
            ("csv/_SUCCESS", b""),
            ("json/part-00000.json", json),
            ("json/.part-00000.json", json),
            ("json/_temporary.json", json),
            ("only-markers/_SUCCESS", b""),
        ],
    );
    let path = |p: &str| root.join(p).display().to_string();
    // A Parquet file, and hidden copies of it.
    let parquet = path("parquet/part-00000.parquet");
    run_ok(
        riffle_bin(),
        &[
            "sql",
            "-e",
            &format!("COPY (SELECT 1 AS a UNION ALL SELECT 2) TO '{parquet}' STORED AS PARQUET"),
        ],
    );
    for hidden in [".part-00000.parquet", "_x.parquet"] {
        std::fs::copy(&parquet, root.join("parquet").join(hidden)).unwrap();
    }
    for master in MASTERS {
        let (rows, _) = sql(
            master,
            &format!(
                "CREATE EXTERNAL TABLE c (a INT, b VARCHAR) STORED AS CSV LOCATION '{}/' OPTIONS ('has_header' 'true'); \
                 CREATE EXTERNAL TABLE p STORED AS PARQUET LOCATION '{}/'; \
                 CREATE EXTERNAL TABLE j (a BIGINT) STORED AS JSON LOCATION '{}/'; \
                 CREATE EXTERNAL TABLE e (a INT, b VARCHAR) STORED AS CSV LOCATION '{}/' OPTIONS ('has_header' 'true'); \
                 SELECT count(*) FROM c; SELECT count(*) FROM p; SELECT count(*) FROM j; SELECT count(*) FROM e",
                path("csv"),
                path("parquet"),
                path("json"),
                path("only-markers")
            ),
        );
        let counts: Vec<&str> = rows
            .iter()
            .map(String::as_str)
            .filter(|r| *r != "count(*)")
            .collect();
        assert_eq!(counts, ["2", "2", "2", "0"], "{master}");
    }
}

#[test]
fn hive_conversions_and_text_output_as_hive() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("types");
    write_tree(
        &data,
        &[(
            "types.txt",
            "abc|abcdef|ab|+127|32767|+9|9 |1.5d| 1.5 |TRUE|2014-7-5|2014-07-05 10:00:00|123.456\n\
             x|ab  |abcdefg|128|32768|2147483648|-9223372036854775808|inf|0x1p3|yes|2014-13-01|2014-07-05 25:00:00|999.995\n\
             y||||||||||2014-07-00|2014-07-05T10:00:00|\t1\n\
             z|||||||0.1|1e20|true|2014-7-6|2014-07-05 10:00:00.120|1.5\n\
             not a row\n"
                .as_bytes(),
        )],
    );
    write_tree(
        &dir.path().join("ci"),
        &[("ci.txt", b"ABC 1\nabc 2\nxyz 3\n")],
    );
    let script = format!(
        "-- for ${{DAY}}, which is not set
CREATE EXTERNAL TABLE types (
  s STRING COMMENT 'a string, with a comma', v VARCHAR(3), c CHAR(4), ti TINYINT, si SMALLINT,
  i INT, bi BIGINT, f FLOAT, d DOUBLE, b BOOLEAN, dt DATE, ts TIMESTAMP, dec DECIMAL(5,2))
ROW FORMAT SERDE 'org.apache.hadoop.hive.serde2.RegexSerDe'
WITH SERDEPROPERTIES ('input.regex' = '{fields}')
STORED AS TEXTFILE
LOCATION '{data}';
CREATE EXTERNAL TABLE ci (word STRING, n INT)
ROW FORMAT SERDE 'org.apache.hadoop.hive.serde2.RegexSerDe'
WITH SERDEPROPERTIES ('input.regex' = '(abc) (\\\\d+)', 'input.regex.case.insensitive' = 'true', 'inptu.regex' = 'typo')
LOCATION '{ci}';
INSERT OVERWRITE DIRECTORY '${{OUT}}/types' ROW FORMAT DELIMITED FIELDS TERMINATED BY ','
SELECT * FROM types ORDER BY s;
INSERT OVERWRITE DIRECTORY '${{OUT}}/ci' SELECT word, n FROM ci WHERE word IS NOT NULL ORDER BY n;
",
        fields = vec!["([^|]*)"; 13].join("\\\\|"),
        data = data.display(),
        ci = dir.path().join("ci").display(),
    );
    let script_path = dir.path().join("types.hql");
    std::fs::write(&script_path, script).unwrap();
    for master in MASTERS {
        let out = dir.path().join(format!("out-{}", master.len()));
        let (_, stderr) = run_ok(
            riffle_bin(),
            &[
                "sql",
                "--master",
                master,
                "--var",
                &format!("OUT={}", out.display()),
                "-f",
                script_path.to_str().unwrap(),
            ],
        );
        assert!(stderr.contains("\"inptu.regex\" is ignored"), "{stderr}");
        let written = std::fs::read_to_string(out.join("types/000000_0")).unwrap();
        assert_eq!(
            written,
            "abc,abc,ab  ,127,32767,9,\\N,1.5,1.5,true,2014-07-05,2014-07-05 10:00:00,123.46\n\
             x,ab ,abcd,\\N,\\N,\\N,-9223372036854775808,\\N,8.0,false,\\N,2014-07-06 01:00:00,\\N\n\
             y,,    ,\\N,\\N,\\N,\\N,\\N,\\N,false,\\N,\\N,\\N\n\
             z,,    ,\\N,\\N,\\N,\\N,0.1,1.0E20,true,2014-07-06,2014-07-05 10:00:00.12,1.50\n\
             \\N,\\N,\\N,\\N,\\N,\\N,\\N,\\N,\\N,\\N,\\N,\\N,\\N\n",
            "{master}"
        );
        let ci = std::fs::read_to_string(out.join("ci/000000_0")).unwrap();
        assert_eq!(ci, "ABC\u{1}1\nabc\u{1}2\n", "{master}");
    }
}

/// The tutorial's regex, rewritten for the `regex` crate by hand (Java's
/// `\s` is ASCII whitespace; the leading `(?!#)` becomes a prefix check).
const TUTORIAL: &str = r"^([^ ]+)[ \t\n\x0B\x0C\r]+([^ ]+)[ \t\n\x0B\x0C\r]+([^ ]+)[ \t\n\x0B\x0C\r]+([^ ]+)[ \t\n\x0B\x0C\r]+([^ ]+)[ \t\n\x0B\x0C\r]+([^ ]+)[ \t\n\x0B\x0C\r]+([^ ]+)[ \t\n\x0B\x0C\r]+([^ ]+)[ \t\n\x0B\x0C\r]+([^ ]+)[ \t\n\x0B\x0C\r]+([^ ]+)[ \t\n\x0B\x0C\r]+[^(]+[(]([^;]+).*%20([^/]+)[/](.*)$";

/// Requests per OS between 2014-07-05 and 2014-08-05 in the log files under
/// `dir`, counted without Riffle: hidden paths skipped, gzip members
/// decoded with the NUL padding cut off, lines split at any line end, the
/// byte-order mark dropped, dates checked by hand.
fn independent_count(dir: &Path) -> String {
    let regex = regex::Regex::new(&format!("(?s){TUTORIAL}")).unwrap();
    let line_end = regex::Regex::new(r"\r\n|\r|\n").unwrap();
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            for entry in std::fs::read_dir(&path).unwrap() {
                let entry = entry.unwrap().path();
                let name = entry.file_name().unwrap().to_string_lossy().into_owned();
                if !name.starts_with('_') && !name.starts_with('.') {
                    stack.push(entry);
                }
            }
            continue;
        }
        let mut bytes = std::fs::read(&path).unwrap();
        if path.extension().is_some_and(|e| e == "gz") {
            while bytes.last() == Some(&0) {
                bytes.pop();
            }
            let mut text = Vec::new();
            flate2::read::MultiGzDecoder::new(&bytes[..])
                .read_to_end(&mut text)
                .unwrap();
            bytes = text;
        }
        let text = String::from_utf8_lossy(&bytes);
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        for line in line_end.split(text) {
            let Some(groups) = regex.captures(line).filter(|_| !line.starts_with('#')) else {
                continue;
            };
            let parts: Vec<&str> = groups[1].split('-').collect();
            let number = |s: &str, len: std::ops::RangeInclusive<usize>| {
                (len.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| s.parse::<u32>().unwrap())
            };
            let date = match parts[..] {
                [y, m, d] => match (number(y, 4..=4), number(m, 1..=2), number(d, 1..=2)) {
                    (Some(y), Some(m), Some(d))
                        if (1..=12).contains(&m) && (1..=31).contains(&d) =>
                    {
                        Some((y, m, d))
                    }
                    _ => None,
                },
                _ => None,
            };
            if date.is_some_and(|d| ((2014, 7, 5)..=(2014, 8, 5)).contains(&d)) {
                *counts.entry(groups[11].to_string()).or_default() += 1;
            }
        }
    }
    counts
        .iter()
        .map(|(os, n)| format!("{os}\t{n}\n"))
        .collect()
}

#[test]
fn wild_cloudfront_logs_agree_with_an_independent_count() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("in/cloudfront/data");
    riffle::datagen::cloudfront(&riffle::datagen::CloudFrontGenOptions {
        lines: 8000,
        files: 4,
        seed: 11,
        out: data.clone(),
        gzip: false,
        wild: true,
    })
    .unwrap();
    // The issue's example: two requests from Linux on 2014-7-6.
    let linux = "2014-7-6 10:00:00 LHR3 4260 10.0.0.1 GET d111111abcdef8.cloudfront.net /index.html 200 - Mozilla/5.0%20(Linux;%20U;%20X11%20Linux%20x86_64;%20en-US;%20rv:1.9.0.9)%20Gecko/2009040821%20Firefox/3.0.9";
    let only_linux = dir.path().join("linux/cloudfront/data");
    write_tree(
        &only_linux,
        &[("linux.log", format!("{linux}\r\n{linux}\r\n").as_bytes())],
    );
    let expected = independent_count(&data);
    assert!(expected.contains("Linux\t"), "{expected}");
    assert_eq!(independent_count(&only_linux), "Linux\t2\n");
    for master in MASTERS {
        for (input, expected) in [(&data, expected.as_str()), (&only_linux, "Linux\t2\n")] {
            let (example, _) = run_ok(
                &crate::examples::example("cloudfront"),
                &["--master", master, input.to_str().unwrap()],
            );
            assert_eq!(example, expected, "cloudfront example on {master}");
            let root = input.parent().unwrap().parent().unwrap();
            let hive = crate::sql::hive_cloudfront_report(master, root);
            assert_eq!(hive, expected, "Hive script on {master}");
        }
    }
}

#[test]
fn text_tables_list_their_location_per_query_and_skip_header_lines() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write_tree(
        root,
        &[
            ("hdr/a.txt", b"name,n\nalice,1\nbob,2"),
            ("hdr/b.txt", b"name,n\r\ncarol,3\r\n"),
            ("grow/1.txt", b"one\n"),
        ],
    );
    let grow = root.join("grow");
    for master in MASTERS {
        let (rows, _) = sql(
            master,
            &format!(
                "CREATE EXTERNAL TABLE h (name STRING, n INT) ROW FORMAT SERDE 'org.apache.hadoop.hive.serde2.RegexSerDe' \
                 WITH SERDEPROPERTIES ('input.regex' = '([^,]*),(.*)') LOCATION 'file:{}/../hdr' \
                 TBLPROPERTIES ('skip.header.line.count' = '1'); \
                 SELECT name, n FROM h ORDER BY n",
                // `..` and `file:` as users and Hive write paths.
                grow.display()
            ),
        );
        assert_eq!(rows, ["alice,1", "bob,2", "carol,3"], "{master}");
        // A table reads what its location holds at each query, as Hive's
        // do: here, after the script overwrote it.
        std::fs::remove_dir_all(&grow).unwrap();
        write_tree(&grow, &[("1.txt", b"one\n")]);
        let (rows, _) = sql(
            master,
            &format!(
                "CREATE EXTERNAL TABLE g (line STRING) ROW FORMAT SERDE 'org.apache.hadoop.hive.serde2.RegexSerDe' \
                 WITH SERDEPROPERTIES ('input.regex' = '(.*)') LOCATION '{g}'; \
                 SELECT count(*) FROM g; \
                 INSERT OVERWRITE DIRECTORY '{g}' SELECT 'two' UNION ALL SELECT 'three'; \
                 SELECT line FROM g ORDER BY line",
                g = grow.display()
            ),
        );
        assert_eq!(rows, ["1", "line", "three", "two"], "{master}");
    }
    // The Dataset reader resolves `..` too.
    let (out, _) = run_ok(
        &crate::examples::example("wordcount"),
        &[
            "--master",
            "local[2]",
            &format!("{}/../hdr/a.txt", grow.display()),
        ],
    );
    assert!(out.contains("alice,1\t1"), "{out}");
}
