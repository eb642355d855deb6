//! Why a record may fail: the written reasons, automatic and listed, and
//! the tally of a run.

use sqllogictest::TestErrorKind;
use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::sync::mpsc;
use std::time::Duration;

/// What became of one record.
pub enum Outcome {
    Passed,
    /// Failed for an automatic reason; the failure's text.
    Skipped(String),
    /// Failed as `known_failures.txt` says it does.
    Known(String, String),
    /// Failed with no written reason.
    Unexpected(String),
}

/// Counts of one file or run.
#[derive(Default)]
pub struct Tally {
    pub passed: usize,
    pub skipped: usize,
    pub known: usize,
    pub unexpected: usize,
}

impl Tally {
    pub fn count(&mut self, key: &str, outcome: &Outcome, report: &mut String) {
        match outcome {
            Outcome::Passed => self.passed += 1,
            Outcome::Skipped(reason) => {
                self.skipped += 1;
                let _ = writeln!(report, "SKIPPED {key}: {reason}");
            }
            Outcome::Known(reason, detail) => {
                self.known += 1;
                let _ = writeln!(report, "KNOWN {key}: {reason}\n{}", indent(detail));
            }
            Outcome::Unexpected(detail) => {
                self.unexpected += 1;
                let _ = writeln!(report, "UNEXPECTED {key}\n{}", indent(detail));
            }
        }
    }

    pub fn add(&mut self, other: &Tally) {
        self.passed += other.passed;
        self.skipped += other.skipped;
        self.known += other.known;
        self.unexpected += other.unexpected;
    }

    pub fn line(&self) -> String {
        format!(
            "{:>5} records: {:>5} passed, {:>4} skipped, {:>4} known failures, {:>3} unexpected",
            self.passed + self.skipped + self.known + self.unexpected,
            self.passed,
            self.skipped,
            self.known,
            self.unexpected
        )
    }
}

fn indent(text: &str) -> String {
    text.lines()
        .take(40)
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `known_failures.txt`: `file.slt:LINE reason` per line, `#` comments.
pub struct Known(BTreeMap<String, String>);

impl Known {
    pub fn load(path: &std::path::Path) -> Result<Known, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut map = BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match line.split_once(' ') {
                Some((key, reason)) if key.contains(".slt") && !reason.trim().is_empty() => {
                    map.insert(key.to_string(), reason.trim().to_string());
                }
                _ => {
                    return Err(format!(
                        "{}:{}: expected `file.slt:LINE reason`, got {line:?}",
                        path.display(),
                        i + 1
                    ));
                }
            }
        }
        Ok(Known(map))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.0.keys()
    }
}

/// What a file's earlier records tell about its later ones: the tables
/// whose data the package does not ship.
#[derive(Default)]
pub struct FileContext {
    missing_tables: HashSet<String>,
}

/// Tables DataFusion's runner registers in code for some files.
const RUNNER_TABLES: &[&str] = &[
    "strict_schema.",
    "public.approx_distinct_union_test'",
    "public.test_partition_table'",
    "public.table_with_many_types'",
];

const NOT_SHIPPED: &str = "data the package does not ship";

impl FileContext {
    /// The automatic reason for a failure, if one applies.
    pub fn reason(&self, sql: &str, kind: &TestErrorKind) -> Option<String> {
        let lower = sql.trim_start().to_ascii_lowercase();
        if lower.starts_with("explain") {
            return Some("EXPLAIN prints Riffle's distributed plan, not DataFusion's".into());
        }
        if let Some(path) = missing_path(sql) {
            return Some(format!("{NOT_SHIPPED}: {path}"));
        }
        let message = kind.to_string();
        if let Some(table) = RUNNER_TABLES
            .iter()
            .find(|t| message.contains(&format!("table 'datafusion.{t}")))
        {
            return Some(format!(
                "reads {table}, which DataFusion's runner makes in Rust code (`test_context.rs`), not from data in the package"
            ));
        }
        if let Some(table) = self.reads_missing(sql) {
            return Some(format!("reads {table}, whose {NOT_SHIPPED}"));
        }
        if let TestErrorKind::QueryResultMismatch {
            expected, actual, ..
        } = kind
            && !lower.contains("order by")
            && sorted_lines(expected) == sorted_lines(actual)
        {
            return Some("the same rows in another order, and the query sets none".into());
        }
        None
    }

    /// A table named in `sql` whose data the package does not ship.
    fn reads_missing(&self, sql: &str) -> Option<&String> {
        let lower = sql.to_ascii_lowercase();
        let words: HashSet<&str> = lower
            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .collect();
        self.missing_tables
            .iter()
            .find(|t| words.contains(t.as_str()))
    }

    /// Remembers a table whose data the package does not ship: created
    /// over a missing location (DataFusion makes an empty table of it), or
    /// from such a table.
    pub fn note(&mut self, sql: &str, outcome: &Outcome) {
        let Some(name) = created_table(sql) else {
            return;
        };
        let from_missing = matches!(outcome, Outcome::Skipped(reason) if reason.contains(NOT_SHIPPED))
            || self.reads_missing(sql).is_some();
        if from_missing || missing_path(sql).is_some() {
            self.missing_tables.insert(name);
        }
    }
}

/// A data path in the statement, relative to the package, that is not there.
fn missing_path(sql: &str) -> Option<&str> {
    quoted(sql).find(|p| {
        (p.starts_with("../") || p.starts_with("data/")) && !std::path::Path::new(p).exists()
    })
}

fn sorted_lines(text: &str) -> Vec<&str> {
    let mut lines: Vec<&str> = text.lines().map(str::trim_end).collect();
    lines.sort_unstable();
    lines
}

/// The single-quoted strings of a statement.
fn quoted(sql: &str) -> impl Iterator<Item = &str> {
    sql.split('\'').skip(1).step_by(2)
}

/// The table or view a `CREATE ...` statement makes, lowercased.
fn created_table(sql: &str) -> Option<String> {
    let words: Vec<String> = sql
        .split_whitespace()
        .map(|w| w.to_ascii_lowercase())
        .collect();
    if words.first().map(String::as_str) != Some("create") {
        return None;
    }
    let at = words.iter().position(|w| w == "table" || w == "view")?;
    let mut rest = words[at + 1..].iter();
    let mut name = rest.next()?;
    if name == "if" {
        name = rest.nth(2)?;
    }
    let name = name.split('(').next().unwrap_or(name);
    Some(name.trim_matches('"').to_string())
}

/// DataFusion's result check (`df_value_validator`): each row's cells
/// joined by one space, trailing spaces dropped, and `<slt:ignore>` in the
/// expected text matching anything.
pub fn validator(
    normalizer: sqllogictest::Normalizer,
    actual: &[Vec<String>],
    expected: &[String],
) -> bool {
    const IGNORE: &str = "<slt:ignore>";
    let expected: Vec<String> = expected.iter().map(normalizer).collect();
    let actual: Vec<String> = actual
        .iter()
        .map(|row| row.join(" ").trim_end().to_string())
        .collect();
    if !expected.iter().any(|l| l.contains(IGNORE)) {
        return actual == expected;
    }
    let expected = expected.join("\n");
    let actual = actual.join("\n");
    let mut at = 0;
    for (i, piece) in expected.split(IGNORE).enumerate() {
        if piece.is_empty() {
            continue;
        }
        match actual[at..].find(piece) {
            // The text before the first marker must start the output.
            Some(found) if i > 0 || found == 0 => at += found + piece.len(),
            _ => return false,
        }
    }
    true
}

/// Ends the process, naming `what`, if the guard lives longer than `limit`.
pub fn watchdog(limit: Duration, what: String) -> mpsc::Sender<()> {
    let (tx, rx) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
            eprintln!("slt: a record ran for more than {limit:?}, stopping: {what}");
            std::process::exit(1);
        }
    });
    tx
}
