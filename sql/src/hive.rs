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

/// Drops `--` comments (to the end of the line, outside string literals)
/// before variables are substituted, as Hive's CLI drops comment lines
/// first: a comment may name an unset `${VAR}`.
pub fn strip_comment_lines(script: &str) -> String {
    let bytes = script.as_bytes();
    let mut out = String::with_capacity(script.len());
    let mut quote: Option<u8> = None;
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        match (quote, bytes[i]) {
            (Some(_), b'\\') => i += 1,
            (Some(q), c) if c == q => quote = None,
            (None, c @ (b'\'' | b'"')) => quote = Some(c),
            (None, b'-') if bytes.get(i + 1) == Some(&b'-') => {
                out.push_str(&script[start..i]);
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                start = i;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    out.push_str(&script[start.min(script.len())..]);
    out
}

/// The statements of a Hive script in the order Hive's CLI prepares them:
/// a byte-order mark and comment lines dropped, then `${VAR}` substituted,
/// then split at `;`.
///
/// Errors: an unset variable outside comments, an unterminated string.
pub fn prepare_script(
    script: &str,
    vars: &HashMap<String, String>,
) -> Result<Vec<String>, HiveError> {
    let script = script.strip_prefix('\u{feff}').unwrap_or(script);
    split_statements(&substitute(&strip_comment_lines(script), vars)?)
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
        .map(|s| strip_comment_lines(&s).trim().to_string())
        .filter(|s| !s.is_empty())
        .collect())
}

/// The value of a Hive string literal body, as Hive's `unescapeSQLString`
/// reads it: `\\`, `\'`, `\"`, `\n`, `\t`, `\r`, `\b`, `\0`, `\Z`, three
/// octal digits (`\001`) and `\uXXXX` become their characters, `\%` and
/// `\_` keep their backslash (for LIKE), and a backslash before any other
/// character is dropped.
pub fn unescape(body: &str) -> String {
    let mut out = String::with_capacity(body.len());
    let chars: Vec<char> = body.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        if c != '\\' {
            out.push(c);
            continue;
        }
        let octal = chars
            .get(i..i + 3)
            .filter(|d| d.iter().all(|c| c.is_digit(8)) && d[0] <= '1');
        if let Some(digits) = octal {
            let code = digits
                .iter()
                .fold(0, |n, d| n * 8 + d.to_digit(8).unwrap_or(0));
            out.push(char::from_u32(code).unwrap_or('\u{fffd}'));
            i += 3;
            continue;
        }
        if chars.get(i) == Some(&'u') {
            let hex: String = chars.iter().skip(i + 1).take(4).collect();
            if hex.len() == 4
                && let Ok(code) = u32::from_str_radix(&hex, 16)
            {
                out.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                i += 5;
                continue;
            }
        }
        match chars.get(i) {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('b') => out.push('\u{8}'),
            Some('0') => out.push('\0'),
            Some('Z') => out.push('\u{1a}'),
            Some(&c @ ('%' | '_')) => {
                out.push('\\');
                out.push(c);
            }
            Some(&c) => out.push(c),
            None => out.push('\\'),
        }
        i += 1;
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
        /// `input.regex.case.insensitive` is `true` (any case), as
        /// `Boolean.parseBoolean` reads it.
        case_insensitive: bool,
        /// SERDEPROPERTIES and TBLPROPERTIES keys Riffle does not read:
        /// the caller warns about each (Hive accepts them silently; a typo
        /// would otherwise go unnoticed).
        ignored_properties: Vec<String>,
        /// TBLPROPERTIES `skip.header.line.count`: lines skipped at the
        /// start of every file (Hive's header skipping).
        skip_header_lines: usize,
        /// The `LOCATION`.
        location: String,
    },
    /// `INSERT OVERWRITE DIRECTORY 'dir' [ROW FORMAT DELIMITED ...]
    /// [STORED AS TEXTFILE] <query>`.
    InsertOverwriteDirectory {
        /// The output directory.
        dir: String,
        /// How rows are written.
        format: TextFormat,
        /// The query whose rows are written.
        query: String,
    },
}

/// The delimiters of Hive's text output (`LazySimpleSerDe`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextFormat {
    /// Between fields: `\x01` unless `FIELDS TERMINATED BY` says otherwise.
    pub field_delimiter: char,
    /// A NULL: `\N` unless `NULL DEFINED AS` says otherwise.
    pub null: String,
}

impl Default for TextFormat {
    fn default() -> Self {
        TextFormat {
            field_delimiter: '\u{1}',
            null: "\\N".into(),
        }
    }
}

/// The SERDEPROPERTIES keys Hive 2.3's `RegexSerDe` reads.
const REGEX_SERDE_KEYS: [&str; 2] = ["input.regex", "input.regex.case.insensitive"];

/// Recognizes the Hive-only statements; everything else is passed through.
pub fn rewrite(statement: &str) -> Result<Statement, HiveError> {
    static INSERT: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?is)^\s*INSERT\s+OVERWRITE\s+(?:LOCAL\s+)?DIRECTORY\s+'([^']*)'\s+(.*)$")
            .expect("constant regex")
    });
    static CREATE: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(
            r"(?is)^\s*CREATE\s+EXTERNAL\s+TABLE\s+(IF\s+NOT\s+EXISTS\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*\((.*)\)\s*(?:COMMENT\s+'(?:[^'\\]|\\.)*'\s*)?ROW\s+FORMAT\s+SERDE\s+'([^']*)'\s*WITH\s+SERDEPROPERTIES\s*\((.*)\)\s*(?:STORED\s+AS\s+TEXTFILE\s*)?LOCATION\s+'([^']*)'\s*(?:TBLPROPERTIES\s*\((.*)\)\s*)?$",
        )
        .expect("constant regex")
    });
    if let Some(c) = INSERT.captures(statement) {
        let (format, query) = row_format(&c[2])?;
        return Ok(Statement::InsertOverwriteDirectory {
            dir: c[1].to_string(),
            format,
            query: query.to_string(),
        });
    }
    let Some(c) = CREATE.captures(statement) else {
        if statement.to_ascii_uppercase().contains("ROW FORMAT") {
            return Err(HiveError::Unsupported(
                "only ROW FORMAT SERDE 'org.apache.hadoop.hive.serde2.RegexSerDe' WITH SERDEPROPERTIES (\"input.regex\" = \"...\") [STORED AS TEXTFILE] LOCATION '...' is supported".into(),
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
    let case_insensitive = properties
        .get("input.regex.case.insensitive")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let mut ignored_properties: Vec<String> = properties
        .keys()
        .filter(|k| !REGEX_SERDE_KEYS.contains(&k.as_str()))
        .cloned()
        .collect();
    let table_properties = match c.get(7) {
        Some(text) => parse_properties(text.as_str())?,
        None => HashMap::new(),
    };
    let mut skip_header_lines = 0;
    for (key, value) in &table_properties {
        let count = || {
            value.trim().parse::<usize>().map_err(|_| {
                HiveError::Unsupported(format!(
                    "TBLPROPERTIES {key:?} must be a count of lines, not {value:?}"
                ))
            })
        };
        match key.as_str() {
            "skip.header.line.count" => skip_header_lines = count()?,
            "skip.footer.line.count" if count()? > 0 => {
                return Err(HiveError::Unsupported(
                    "TBLPROPERTIES \"skip.footer.line.count\" is not supported".into(),
                ));
            }
            "skip.footer.line.count" => {}
            _ => ignored_properties.push(format!("TBLPROPERTIES {key}")),
        }
    }
    ignored_properties.sort();
    let columns = split_top_level(&c[3])
        .into_iter()
        .map(|col| column(&col))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Statement::CreateRegexTable {
        name: c[2].to_ascii_lowercase(),
        if_not_exists: c.get(1).is_some(),
        columns,
        regex,
        case_insensitive,
        ignored_properties,
        skip_header_lines,
        location: c[6].to_string(),
    })
}

/// One column definition: `name TYPE [COMMENT 'text']`.
fn column(definition: &str) -> Result<HiveColumn, HiveError> {
    static COLUMN: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?is)^`?([A-Za-z_][A-Za-z0-9_]*)`?\s+(.+?)(?:\s+COMMENT\s+(?:'(?:[^'\\]|\\.)*'|\x22(?:[^\x22\\]|\\.)*\x22))?$")
            .expect("constant regex")
    });
    let c = COLUMN.captures(definition.trim()).ok_or_else(|| {
        HiveError::Unsupported(format!(
            "column definition {definition:?} needs a name and a type"
        ))
    })?;
    Ok(HiveColumn {
        name: c[1].to_ascii_lowercase(),
        hive_type: c[2]
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_ascii_uppercase(),
    })
}

/// Reads `[ROW FORMAT DELIMITED clauses] [STORED AS TEXTFILE]` off the
/// front of what follows `INSERT OVERWRITE DIRECTORY 'dir'`; returns the
/// format and the query after it.
fn row_format(text: &str) -> Result<(TextFormat, &str), HiveError> {
    let mut format = TextFormat::default();
    let mut rest = Words(text);
    if rest.keywords(&["ROW", "FORMAT", "DELIMITED"]) {
        loop {
            if rest.keywords(&["FIELDS", "TERMINATED", "BY"]) {
                format.field_delimiter = delimiter(&rest.string("FIELDS TERMINATED BY")?);
                if rest.keywords(&["ESCAPED", "BY"]) {
                    return Err(HiveError::Unsupported(
                        "ESCAPED BY is not supported in INSERT OVERWRITE DIRECTORY".into(),
                    ));
                }
            } else if rest.keywords(&["COLLECTION", "ITEMS", "TERMINATED", "BY"]) {
                // Only complex types use it; Riffle writes none.
                rest.string("COLLECTION ITEMS TERMINATED BY")?;
            } else if rest.keywords(&["MAP", "KEYS", "TERMINATED", "BY"]) {
                rest.string("MAP KEYS TERMINATED BY")?;
            } else if rest.keywords(&["LINES", "TERMINATED", "BY"]) {
                if rest.string("LINES TERMINATED BY")? != "\n" {
                    // Hive's own rule.
                    return Err(HiveError::Unsupported(
                        "LINES TERMINATED BY only supports newline '\\n' right now".into(),
                    ));
                }
            } else if rest.keywords(&["NULL", "DEFINED", "AS"]) {
                format.null = rest.string("NULL DEFINED AS")?;
            } else {
                break;
            }
        }
    } else if rest.keywords(&["ROW", "FORMAT"]) {
        return Err(HiveError::Unsupported(
            "INSERT OVERWRITE DIRECTORY supports ROW FORMAT DELIMITED only".into(),
        ));
    }
    if rest.keywords(&["STORED", "AS"]) && !rest.keywords(&["TEXTFILE"]) {
        return Err(HiveError::Unsupported(
            "INSERT OVERWRITE DIRECTORY writes STORED AS TEXTFILE only".into(),
        ));
    }
    Ok((format, rest.0.trim_start()))
}

/// A delimiter as Hive's `LazySerDeParameters.getByte` reads it: a number
/// (`'9'`, `'44'`) is that byte, anything else its first character.
fn delimiter(text: &str) -> char {
    match text.parse::<i8>() {
        Ok(byte) => char::from(byte as u8),
        Err(_) => text.chars().next().unwrap_or('\u{1}'),
    }
}

/// What is left of a statement, read a word or string at a time.
struct Words<'a>(&'a str);

impl Words<'_> {
    /// Consumes `words` (case-insensitive, whole words) if they come next.
    fn keywords(&mut self, words: &[&str]) -> bool {
        let mut rest = self.0;
        for word in words {
            rest = rest.trim_start();
            let Some(head) = rest.get(..word.len()) else {
                return false;
            };
            let boundary = rest[word.len()..]
                .chars()
                .next()
                .is_none_or(|c| !c.is_alphanumeric() && c != '_');
            if !head.eq_ignore_ascii_case(word) || !boundary {
                return false;
            }
            rest = &rest[word.len()..];
        }
        self.0 = rest;
        true
    }

    /// Consumes a quoted string (either quote), unescaped.
    fn string(&mut self, after: &str) -> Result<String, HiveError> {
        let rest = self.0.trim_start();
        let missing = || HiveError::Unsupported(format!("{after} needs a quoted string"));
        let quote = rest
            .chars()
            .next()
            .filter(|c| *c == '\'' || *c == '"')
            .ok_or_else(missing)?;
        let bytes = rest.as_bytes();
        let mut i = 1;
        loop {
            match bytes.get(i) {
                None => return Err(missing()),
                Some(b'\\') => i += 2,
                Some(&c) if c == quote as u8 => break,
                Some(_) => i += 1,
            }
        }
        self.0 = &rest[i + 1..];
        Ok(unescape(&rest[1..i]))
    }
}

/// Splits at commas that are not inside parentheses (`DECIMAL(10,2)`) or
/// quotes (`COMMENT 'a, b'`).
fn split_top_level(text: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut current = String::new();
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for ch in text.chars() {
        if let Some(q) = quote {
            current.push(ch);
            match ch {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                _ if ch == q => quote = None,
                _ => {}
            }
            continue;
        }
        match ch {
            '\'' | '"' => quote = Some(ch),
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
        let statements = prepare_script(SCRIPT, &vars).unwrap();
        assert_eq!(statements.len(), 2, "{statements:?}");
        match rewrite(&statements[0]).unwrap() {
            Statement::CreateRegexTable {
                name,
                if_not_exists,
                columns,
                regex,
                location,
                case_insensitive,
                ignored_properties,
                skip_header_lines,
            } => {
                assert_eq!(skip_header_lines, 0);
                assert!(!case_insensitive);
                assert!(ignored_properties.is_empty());
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
            Statement::InsertOverwriteDirectory { dir, query, format } => {
                assert_eq!(format, TextFormat::default());
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

    #[test]
    fn comment_lines_go_before_variables_are_substituted() {
        let vars = HashMap::from([("T".to_string(), "x".to_string())]);
        let script =
            "-- for ${DAY}\nSELECT 1 FROM ${T}; -- ${ALSO_UNSET}\n  -- indented ${DAY}\nSELECT 2";
        assert_eq!(
            prepare_script(script, &vars).unwrap(),
            vec!["SELECT 1 FROM x", "SELECT 2"]
        );
        // Outside a comment line an unset variable is still an error.
        assert!(prepare_script("SELECT '${DAY}'", &vars).is_err());
    }

    #[test]
    fn create_table_accepts_hive_clauses() {
        let statement = r#"CREATE EXTERNAL TABLE t (
            a STRING COMMENT 'the a, with a comma',
            b INT comment "b's",
            c DECIMAL(10, 2),
            d VARCHAR(5)
        ) COMMENT 'a table'
        ROW FORMAT SERDE 'org.apache.hadoop.hive.serde2.RegexSerDe'
        WITH SERDEPROPERTIES ("input.regex" = "(.*) (.*) (.*) (.*)", "input.regex.case.insensitive" = "TRUE", "inptu.regex" = "typo")
        STORED AS TEXTFILE
        LOCATION '/data'
        TBLPROPERTIES ('skip.header.line.count' = '2', 'comment' = 'x')"#;
        let Statement::CreateRegexTable {
            columns,
            case_insensitive,
            ignored_properties,
            skip_header_lines,
            location,
            ..
        } = rewrite(statement).unwrap()
        else {
            panic!("not a regex table");
        };
        let types: Vec<(&str, &str)> = columns
            .iter()
            .map(|c| (c.name.as_str(), c.hive_type.as_str()))
            .collect();
        assert_eq!(
            types,
            [
                ("a", "STRING"),
                ("b", "INT"),
                ("c", "DECIMAL(10, 2)"),
                ("d", "VARCHAR(5)")
            ]
        );
        assert!(case_insensitive);
        assert_eq!(ignored_properties, ["TBLPROPERTIES comment", "inptu.regex"]);
        assert_eq!(skip_header_lines, 2);
        assert_eq!(location, "/data");
    }

    #[test]
    fn insert_overwrite_directory_with_a_row_format() {
        let rewritten = rewrite(
            "INSERT OVERWRITE DIRECTORY '/out' ROW FORMAT DELIMITED FIELDS TERMINATED BY ',' NULL DEFINED AS 'null' STORED AS TEXTFILE SELECT a FROM t",
        )
        .unwrap();
        assert_eq!(
            rewritten,
            Statement::InsertOverwriteDirectory {
                dir: "/out".into(),
                format: TextFormat {
                    field_delimiter: ',',
                    null: "null".into()
                },
                query: "SELECT a FROM t".into()
            }
        );
        let delimiter = |clause: &str| {
            match rewrite(&format!(
            "INSERT OVERWRITE DIRECTORY '/o' ROW FORMAT DELIMITED FIELDS TERMINATED BY {clause} SELECT 1"
        ))
        .unwrap()
        {
            Statement::InsertOverwriteDirectory { format, .. } => format.field_delimiter,
            other => panic!("{other:?}"),
        }
        };
        assert_eq!(delimiter(r"'\t'"), '\t');
        assert_eq!(delimiter(r"'\001'"), '\u{1}');
        assert_eq!(delimiter("'9'"), '\t');
        assert_eq!(delimiter("'|'"), '|');
        for bad in [
            "ROW FORMAT DELIMITED LINES TERMINATED BY ';' SELECT 1",
            "ROW FORMAT SERDE 'x' SELECT 1",
            "STORED AS PARQUET SELECT 1",
            "ROW FORMAT DELIMITED FIELDS TERMINATED BY SELECT 1",
        ] {
            let err = rewrite(&format!("INSERT OVERWRITE DIRECTORY '/o' {bad}")).unwrap_err();
            assert!(matches!(err, HiveError::Unsupported(_)), "{bad}: {err}");
        }
    }
}
