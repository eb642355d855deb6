//! Hive script compatibility: statement splitting, `${VAR}` substitution,
//! Hive string unescaping, and the two Hive statements DataFusion's parser
//! does not know: `CREATE EXTERNAL TABLE ... ROW FORMAT SERDE
//! 'org.apache.hadoop.hive.serde2.RegexSerDe' WITH SERDEPROPERTIES (...)`
//! and `INSERT OVERWRITE DIRECTORY '...' SELECT ...`.

use regex::Regex;
use std::collections::HashMap;
use std::sync::LazyLock;
use thiserror::Error;

/// A script or statement that cannot be understood.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum HiveError {
    /// A `${NAME}` with no value.
    #[error("variable ${{{name}}} is not set (use --var {name}=VALUE)")]
    UnsetVariable {
        /// The variable.
        name: String,
    },
    /// A string literal that does not end.
    #[error("unterminated string literal starting at byte {offset}")]
    UnterminatedString {
        /// Where it starts.
        offset: usize,
    },
    /// A Hive statement Riffle cannot run.
    #[error("{0}")]
    Unsupported(String),
}

/// Replaces `${NAME}` (and Hive's `${hivevar:NAME}`) with the variables'
/// values.
pub fn substitute(text: &str, vars: &HashMap<String, String>) -> Result<String, HiveError> {
    static VAR: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"\$\{(?:hivevar:)?([A-Za-z_][A-Za-z0-9_]*)\}").expect("constant regex")
    });
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for caps in VAR.captures_iter(text) {
        let (Some(whole), Some(name)) = (caps.get(0), caps.get(1)) else {
            continue;
        };
        let value = vars
            .get(name.as_str())
            .ok_or_else(|| HiveError::UnsetVariable {
                name: name.as_str().to_string(),
            })?;
        out.push_str(&text[last..whole.start()]);
        out.push_str(value);
        last = whole.end();
    }
    out.push_str(&text[last..]);
    Ok(out)
}

/// Splits a script into statements at `;` outside string literals and
/// comments (`--` to end of line). Empty statements are dropped.
pub fn split_statements(script: &str) -> Result<Vec<String>, HiveError> {
    let bytes = script.as_bytes();
    let mut statements = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            quote @ (b'\'' | b'"') => {
                let open = i;
                i += 1;
                loop {
                    match bytes.get(i) {
                        None => return Err(HiveError::UnterminatedString { offset: open }),
                        Some(b'\\') => i += 2,
                        Some(&c) if c == quote => {
                            i += 1;
                            break;
                        }
                        Some(_) => i += 1,
                    }
                }
                continue;
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b';' => {
                statements.push(script[start..i].to_string());
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    statements.push(script[start..].to_string());
    Ok(statements
        .into_iter()
        .map(|s| strip_comments(&s).trim().to_string())
        .filter(|s| !s.is_empty())
        .collect())
}

/// Removes `--` comment lines (only whole lines, so strings stay intact).
fn strip_comments(statement: &str) -> String {
    statement
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The value of a Hive string literal body, as Hive's `unescapeSQLString`
/// reads it: `\\`, `\'`, `\"`, `\n`, `\t`, `\r`, `\b`, `\0` and octal escapes
/// become their characters, `\%` and `\_` keep their backslash (for LIKE),
/// and a backslash before any other character is dropped.
pub fn unescape(body: &str) -> String {
    let mut out = String::with_capacity(body.len());
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('b') => out.push('\u{8}'),
            Some('0') => out.push('\0'),
            Some('Z') => out.push('\u{1a}'),
            Some(c @ ('%' | '_')) => {
                out.push('\\');
                out.push(c);
            }
            Some(c) => out.push(c),
            None => out.push('\\'),
        }
    }
    out
}

/// A column of a Hive table definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HiveColumn {
    /// Its name, lower-cased (Hive names are case-insensitive).
    pub name: String,
    /// Its Hive type, upper-cased (`STRING`, `INT`, `DATE`, ...).
    pub hive_type: String,
}

/// A statement after Hive rewriting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Statement {
    /// Plain SQL for DataFusion.
    Sql(String),
    /// `CREATE EXTERNAL TABLE ... ROW FORMAT SERDE '...RegexSerDe'`.
    CreateRegexTable {
        /// Table name (lower-cased).
        name: String,
        /// `IF NOT EXISTS` was given.
        if_not_exists: bool,
        /// The columns.
        columns: Vec<HiveColumn>,
        /// The `input.regex` property (unescaped Java regex).
        regex: String,
        /// The `LOCATION`.
        location: String,
    },
    /// `INSERT OVERWRITE DIRECTORY 'dir' <query>`.
    InsertOverwriteDirectory {
        /// The output directory.
        dir: String,
        /// The query whose rows are written.
        query: String,
    },
}

/// Recognizes the Hive-only statements; everything else is passed through.
pub fn rewrite(statement: &str) -> Result<Statement, HiveError> {
    static INSERT: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?is)^\s*INSERT\s+OVERWRITE\s+(?:LOCAL\s+)?DIRECTORY\s+'([^']*)'\s+(.*)$")
            .expect("constant regex")
    });
    static CREATE: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(
            r"(?is)^\s*CREATE\s+EXTERNAL\s+TABLE\s+(IF\s+NOT\s+EXISTS\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*\((.*)\)\s*ROW\s+FORMAT\s+SERDE\s+'([^']*)'\s*WITH\s+SERDEPROPERTIES\s*\((.*)\)\s*LOCATION\s+'([^']*)'\s*$",
        )
        .expect("constant regex")
    });
    if let Some(c) = INSERT.captures(statement) {
        return Ok(Statement::InsertOverwriteDirectory {
            dir: c[1].to_string(),
            query: c[2].to_string(),
        });
    }
    let Some(c) = CREATE.captures(statement) else {
        if statement.to_ascii_uppercase().contains("ROW FORMAT") {
            return Err(HiveError::Unsupported(
                "only ROW FORMAT SERDE 'org.apache.hadoop.hive.serde2.RegexSerDe' WITH SERDEPROPERTIES (\"input.regex\" = \"...\") LOCATION '...' is supported".into(),
            ));
        }
        return Ok(Statement::Sql(statement.to_string()));
    };
    let serde = &c[4];
    if !serde.ends_with("RegexSerDe") {
        return Err(HiveError::Unsupported(format!(
            "SerDe {serde} is not supported; Riffle reads org.apache.hadoop.hive.serde2.RegexSerDe tables"
        )));
    }
    let properties = parse_properties(&c[5])?;
    let regex = properties.get("input.regex").cloned().ok_or_else(|| {
        HiveError::Unsupported("RegexSerDe needs the \"input.regex\" property".into())
    })?;
    let columns = split_top_level(&c[3])
        .into_iter()
        .map(|col| {
            let mut parts = col.split_whitespace();
            match (parts.next(), parts.next()) {
                (Some(name), Some(ty)) => Ok(HiveColumn {
                    name: name.trim_matches('`').to_ascii_lowercase(),
                    hive_type: std::iter::once(ty)
                        .chain(parts)
                        .collect::<Vec<_>>()
                        .join(" ")
                        .to_ascii_uppercase(),
                }),
                _ => Err(HiveError::Unsupported(format!(
                    "column definition {col:?} needs a name and a type"
                ))),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Statement::CreateRegexTable {
        name: c[2].to_ascii_lowercase(),
        if_not_exists: c.get(1).is_some(),
        columns,
        regex,
        location: c[6].to_string(),
    })
}

/// Splits at commas that are not inside parentheses (`DECIMAL(10,2)`).
fn split_top_level(text: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut current = String::new();
    for ch in text.chars() {
        match ch {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(std::mem::take(&mut current).trim().to_string());
                continue;
            }
            _ => {}
        }
        current.push(ch);
    }
    if !current.trim().is_empty() {
        parts.push(current.trim().to_string());
    }
    parts
}

/// `"key" = "value", ...` (either quote), values unescaped.
fn parse_properties(text: &str) -> Result<HashMap<String, String>, HiveError> {
    let mut out = HashMap::new();
    let mut strings = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if let quote @ (b'\'' | b'"') = bytes[i] {
            let open = i;
            i += 1;
            let start = i;
            loop {
                match bytes.get(i) {
                    None => return Err(HiveError::UnterminatedString { offset: open }),
                    Some(b'\\') => i += 2,
                    Some(&c) if c == quote => break,
                    Some(_) => i += 1,
                }
            }
            strings.push(unescape(&text[start..i]));
        }
        i += 1;
    }
    for pair in strings.chunks(2) {
        if let [k, v] = pair {
            out.insert(k.clone(), v.clone());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRIPT: &str = r#"CREATE EXTERNAL TABLE IF NOT EXISTS cloudfront_logs (DateObject Date, Time STRING, Location STRING, Bytes INT, RequestIP STRING, Method STRING, Host STRING, Uri STRING, Status INT, Referrer STRING, OS String, Browser String, BrowserVersion String)
ROW FORMAT SERDE 'org.apache.hadoop.hive.serde2.RegexSerDe'
WITH SERDEPROPERTIES ("input.regex" = "^(?!#)([^ ]+)\\s+([^ ]+)\\s+([^ ]+)\\s+([^ ]+)\\s+([^ ]+)\\s+([^ ]+)\\s+([^ ]+)\\s+([^ ]+)\\s+([^ ]+)\\s+([^ ]+)\\s+[^\(]+[\(]([^\;]+).*\%20([^\/]+)[\/](.*)$")
LOCATION '${INPUT}/cloudfront/data';
INSERT OVERWRITE DIRECTORY '${OUTPUT}/os_requests/' SELECT os, COUNT(*) count FROM cloudfront_logs WHERE dateobject BETWEEN '2014-07-05' AND '2014-08-05' GROUP BY os;
"#;

    #[test]
    fn the_tutorial_script() {
        let vars = HashMap::from([
            ("INPUT".to_string(), "/in".to_string()),
            ("OUTPUT".to_string(), "/out".to_string()),
        ]);
        let script = substitute(SCRIPT, &vars).unwrap();
        let statements = split_statements(&script).unwrap();
        assert_eq!(statements.len(), 2, "{statements:?}");
        match rewrite(&statements[0]).unwrap() {
            Statement::CreateRegexTable {
                name,
                if_not_exists,
                columns,
                regex,
                location,
            } => {
                assert_eq!(name, "cloudfront_logs");
                assert!(if_not_exists);
                assert_eq!(columns.len(), 13);
                assert_eq!(
                    columns[0],
                    HiveColumn {
                        name: "dateobject".into(),
                        hive_type: "DATE".into()
                    }
                );
                assert_eq!(columns[10].name, "os");
                assert_eq!(location, "/in/cloudfront/data");
                assert!(regex.starts_with(r"^(?!#)([^ ]+)\s+([^ ]+)"), "{regex}");
                // The scan recognizes it and takes the exact fast path.
                assert!(crate::cloudfront::is_tutorial_regex(&regex), "{regex}");
                assert!(
                    regex.ends_with(r"[^(]+[(]([^;]+).*\%20([^/]+)[/](.*)$"),
                    "{regex}"
                );
            }
            other => panic!("{other:?}"),
        }
        match rewrite(&statements[1]).unwrap() {
            Statement::InsertOverwriteDirectory { dir, query } => {
                assert_eq!(dir, "/out/os_requests/");
                assert!(query.starts_with("SELECT os, COUNT(*) count"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_scripts() {
        assert_eq!(
            substitute("${NOPE}", &HashMap::new()).unwrap_err(),
            HiveError::UnsetVariable {
                name: "NOPE".into()
            }
        );
        assert!(matches!(
            split_statements("SELECT 'oops"),
            Err(HiveError::UnterminatedString { offset: 7 })
        ));
        let err = rewrite("CREATE EXTERNAL TABLE t (a INT) ROW FORMAT SERDE 'x.JsonSerDe' WITH SERDEPROPERTIES ('a'='b') LOCATION '/x'")
            .unwrap_err();
        assert!(err.to_string().contains("x.JsonSerDe"), "{err}");
        assert_eq!(
            rewrite("SELECT 1").unwrap(),
            Statement::Sql("SELECT 1".into())
        );
        assert_eq!(split_statements("a; -- c;\n b ;").unwrap(), vec!["a", "b"]);
    }
}
