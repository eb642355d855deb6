//! The CloudFront access-log table of the AWS Hive/EMR tutorial, with the
//! exact semantics of Hive's `RegexSerDe`.
//!
//! The tutorial's table is
//!
//! ```text
//! CREATE EXTERNAL TABLE cloudfront_logs (date DATE, time STRING,
//!   location STRING, bytes INT, request_ip STRING, method STRING,
//!   host STRING, uri STRING, status INT, referrer STRING, os STRING,
//!   browser STRING, browser_version STRING)
//! ROW FORMAT SERDE 'org.apache.hadoop.hive.serde2.RegexSerDe'
//! WITH SERDEPROPERTIES ("input.regex" = "<HIVE_REGEX>")
//! ```
//!
//! `RegexSerDe` compiles the regex with `Pattern.DOTALL` and applies
//! `Matcher.matches()` to each line: a line that does not match is a row of
//! NULLs, and a group that does not convert to its column type is NULL while
//! the rest of the row stays.
//!
//! Matching with the `regex` crate costs about 2 µs a line on this pattern,
//! so [`CloudFrontParser`] has a hand-written matcher that gives exactly the
//! same groups for every line without the ASCII control characters
//! `\t \n \x0B \f \r` (that is, with `' '` as the only character of `\s`),
//! and falls back to the translated Java regex for the others.
//!
//! Why the hand-written matcher is exact, with `' '` the only whitespace:
//!
//! 1. `^(?!#)`: the line must not start with `#`.
//! 2. `([^ ]+)\s+` ten times: a group can neither stop early (the next
//!    character would not be whitespace) nor a separator give back a space
//!    (the next group cannot start with one), so groups 1-10 are the first
//!    ten maximal runs of non-space characters; the line starts with one and
//!    the tenth is followed by a space (its end is `e10`).
//! 3. `\s+[^\(]+[\(]`: everything between `e10` and the `(` is a non-`(`, so
//!    the `(` is the first one at or after `e10`, at `p`, and the span
//!    `e10..p` needs at least one space and one more character: `p >= e10+2`.
//! 4. `([^\;]+).*\%20([^\/]+)[\/](.*)$`: with DOTALL `.` matches anything.
//!    For an end `o` of os (tried from the longest, up to the first `;`
//!    after `p`), `.*` tries the `%20` positions `i >= o` from the right; `i`
//!    is valid when the first `/` at or after `i+3` exists and is not at
//!    `i+3` (the browser is non-empty). With `I` the largest valid `i >= p+2`,
//!    the first `o` that succeeds is `min(first ';', I)` and the `.*` then
//!    stops at `I`: os = `p+1..min(first ';', I)`, browser = `I+3..slash`,
//!    version = `slash+1..`. No `I`, or a `;` right after `(`: no match.
//!
//! The tests check this against the regex on generated lines.

use std::fmt;

use crate::java_regex::{JavaFlags, JavaRegex};

/// The `input.regex` of the tutorial's table (a Java regular expression).
pub const HIVE_REGEX: &str = r"^(?!#)([^ ]+)\s+([^ ]+)\s+([^ ]+)\s+([^ ]+)\s+([^ ]+)\s+([^ ]+)\s+([^ ]+)\s+([^ ]+)\s+([^ ]+)\s+([^ ]+)\s+[^\(]+[\(]([^\;]+).*\%20([^\/]+)[\/](.*)$";

/// Whether `regex` is the tutorial's regex, as spelled in [`HIVE_REGEX`]
/// or as Hive reads the script's string literal: Hive's unescaping drops
/// the backslashes before `(`, `;` and `/`, all inside character classes
/// or standing for themselves, so both spellings match the same lines.
pub fn is_tutorial_regex(regex: &str) -> bool {
    regex == HIVE_REGEX
        || regex
            == HIVE_REGEX
                .replace(r"\(", "(")
                .replace(r"\;", ";")
                .replace(r"\/", "/")
}

/// The table's column names, in group order.
pub const COLUMN_NAMES: [&str; 13] = [
    "date",
    "time",
    "location",
    "bytes",
    "request_ip",
    "method",
    "host",
    "uri",
    "status",
    "referrer",
    "os",
    "browser",
    "browser_version",
];

/// A calendar date (proleptic Gregorian), years 0 to 9999.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    year: i32,
    month: u8,
    day: u8,
}

impl Date {
    /// The date, if `month`/`day` exist in `year` and `year` is in 0..=9999.
    pub fn new(year: i32, month: u8, day: u8) -> Option<Date> {
        let valid = (0..=9999).contains(&year)
            && (1..=12).contains(&month)
            && day >= 1
            && day <= days_in_month(year, month);
        valid.then_some(Date { year, month, day })
    }

    /// Parses a date as Hive's `DATE` conversion does (Java's
    /// `java.sql.Date.valueOf`, [`crate::hive_types::java_date`]):
    /// `yyyy-[m]m-[d]d`, so `2014-7-6` is 2014-07-06 and a day past the
    /// month's end rolls over; anything else is `None` (a NULL `DATE`).
    pub fn parse(s: &str) -> Option<Date> {
        // The common shape (`2014-07-05`, a real day) without the general
        // parser's scans: this runs once per log line.
        let b = s.as_bytes();
        if b.len() == 10 && b[4] == b'-' && b[7] == b'-' {
            let digits = |range: std::ops::Range<usize>| {
                b[range].iter().try_fold(0u32, |acc, &c| {
                    c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
                })
            };
            if let (Some(year), Some(month), Some(day)) =
                (digits(0..4), digits(5..7), digits(8..10))
                && let Some(date) = Date::new(year as i32, month as u8, day as u8)
            {
                return Some(date);
            }
        }
        Date::from_days_since_epoch(crate::hive_types::java_date(s)?)
    }

    /// The year.
    pub fn year(&self) -> i32 {
        self.year
    }

    /// The month, 1 to 12.
    pub fn month(&self) -> u8 {
        self.month
    }

    /// The day of the month, from 1.
    pub fn day(&self) -> u8 {
        self.day
    }

    /// Days since 1970-01-01 (Arrow's `Date32`).
    pub fn days_since_epoch(&self) -> i32 {
        // Howard Hinnant's days_from_civil.
        let m = u32::from(self.month);
        let y = if m <= 2 { self.year - 1 } else { self.year };
        let era = y.div_euclid(400);
        let yoe = y.rem_euclid(400) as u32;
        let doy = (153 * ((m + 9) % 12) + 2) / 5 + u32::from(self.day) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe as i32 - 719_468
    }

    /// The date `days` after 1970-01-01, if its year is in 0..=9999.
    pub fn from_days_since_epoch(days: i32) -> Option<Date> {
        // Howard Hinnant's civil_from_days.
        let z = i64::from(days) + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        Date::new(
            i32::try_from(year).ok()?,
            u8::try_from(month).ok()?,
            u8::try_from(day).ok()?,
        )
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

fn days_in_month(year: i32, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

/// Hive's `Integer.valueOf` for an `INT` column
/// ([`crate::hive_types::java_integer`]): an optional sign and decimal
/// digits within `i32`, else NULL.
fn parse_int(s: &str) -> Option<i32> {
    crate::hive_types::java_integer(s, i32::MIN.into(), i32::MAX.into()).map(|v| v as i32)
}

/// One row of the table. All fields are NULL (`None`) when the line does not
/// match; a field whose text does not convert to its type is NULL alone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CloudFrontRecord {
    /// `date DATE` (group 1).
    pub date: Option<Date>,
    /// `time STRING` (group 2).
    pub time: Option<String>,
    /// `location STRING`, the edge location (group 3).
    pub location: Option<String>,
    /// `bytes INT` (group 4).
    pub bytes: Option<i32>,
    /// `request_ip STRING` (group 5).
    pub request_ip: Option<String>,
    /// `method STRING` (group 6).
    pub method: Option<String>,
    /// `host STRING` (group 7).
    pub host: Option<String>,
    /// `uri STRING` (group 8).
    pub uri: Option<String>,
    /// `status INT` (group 9).
    pub status: Option<i32>,
    /// `referrer STRING` (group 10).
    pub referrer: Option<String>,
    /// `os STRING` (group 11).
    pub os: Option<String>,
    /// `browser STRING` (group 12).
    pub browser: Option<String>,
    /// `browser_version STRING` (group 13).
    pub browser_version: Option<String>,
}

impl CloudFrontRecord {
    /// Converts the 13 groups of a matching line into a row.
    pub fn from_groups(groups: &[&str; 13]) -> CloudFrontRecord {
        let s = |i: usize| Some(groups[i].to_owned());
        CloudFrontRecord {
            date: Date::parse(groups[0]),
            time: s(1),
            location: s(2),
            bytes: parse_int(groups[3]),
            request_ip: s(4),
            method: s(5),
            host: s(6),
            uri: s(7),
            status: parse_int(groups[8]),
            referrer: s(9),
            os: s(10),
            browser: s(11),
            browser_version: s(12),
        }
    }

    /// Whether every field is NULL (the row of a line that does not match).
    pub fn is_all_null(&self) -> bool {
        *self == CloudFrontRecord::default()
    }
}

/// Byte ranges of the 13 groups in the line.
type Spans = [(usize, usize); 13];

/// Outcome of the hand-written matcher.
#[derive(Debug, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // a return value on the stack; boxing would allocate
enum Fast {
    /// The line does not match.
    NoMatch,
    /// The line matches with these groups.
    Match(Spans),
    /// The line has whitespace other than `' '`: use the regex.
    Fallback,
}

/// The hand-written equivalent of [`HIVE_REGEX`] (see the module docs).
fn fast_match(line: &str) -> Fast {
    let b = line.as_bytes();
    // `\t \n \x0B \f \r` are the bytes 9 to 13; a fold vectorizes.
    if b.iter()
        .fold(false, |acc, &c| acc | (c.wrapping_sub(9) < 5))
    {
        return Fast::Fallback;
    }
    let n = b.len();
    if n == 0 || b[0] == b' ' || b[0] == b'#' {
        return Fast::NoMatch;
    }
    let mut spans: Spans = [(0, 0); 13];
    let mut pos = 0;
    for (k, span) in spans.iter_mut().take(10).enumerate() {
        let start = pos;
        while pos < n && b[pos] != b' ' {
            pos += 1;
        }
        *span = (start, pos);
        if pos == n {
            return Fast::NoMatch;
        }
        if k < 9 {
            while pos < n && b[pos] == b' ' {
                pos += 1;
            }
            if pos == n {
                return Fast::NoMatch;
            }
        }
    }
    let e10 = pos;
    let Some(p) = b[e10..].iter().position(|&c| c == b'(').map(|o| e10 + o) else {
        return Fast::NoMatch;
    };
    if p < e10 + 2 {
        return Fast::NoMatch;
    }
    let os_start = p + 1;
    let semi = b[os_start..]
        .iter()
        .position(|&c| c == b';')
        .map_or(n, |o| os_start + o);
    if semi == os_start {
        return Fast::NoMatch;
    }
    // The largest valid `%20` position, at least os_start + 1.
    let min_i = os_start + 1;
    if n < min_i + 5 {
        return Fast::NoMatch;
    }
    let mut next_slash = usize::MAX; // first '/' at or after i + 3
    let mut i = n - 3;
    let (pct, slash) = loop {
        if i + 3 < n && b[i + 3] == b'/' {
            next_slash = i + 3;
        }
        let valid_slash = next_slash != usize::MAX && next_slash > i + 3;
        if valid_slash && b[i] == b'%' && b[i + 1] == b'2' && b[i + 2] == b'0' {
            break (i, next_slash);
        }
        if i == min_i {
            return Fast::NoMatch;
        }
        i -= 1;
    };
    spans[10] = (os_start, semi.min(pct));
    spans[11] = (pct + 3, slash);
    spans[12] = (slash + 1, n);
    Fast::Match(spans)
}

/// Parses CloudFront access-log lines into [`CloudFrontRecord`]s exactly as
/// Hive's `RegexSerDe` with [`HIVE_REGEX`] does.
#[derive(Debug, Clone)]
pub struct CloudFrontParser {
    regex: JavaRegex,
}

impl Default for CloudFrontParser {
    fn default() -> Self {
        Self::new()
    }
}

impl CloudFrontParser {
    /// Compiles the parser.
    pub fn new() -> Self {
        let regex = JavaRegex::with_flags(HIVE_REGEX, JavaFlags::HIVE)
            .expect("HIVE_REGEX is a constant supported by the translator");
        CloudFrontParser { regex }
    }

    /// The translated regex the parser falls back to.
    pub fn java_regex(&self) -> &JavaRegex {
        &self.regex
    }

    /// The 13 groups of `line` (without its line terminator), or `None` when
    /// it does not match. Allocation-free for lines without `\t \n \x0B \f \r`.
    pub fn groups<'a>(&self, line: &'a str) -> Option<[&'a str; 13]> {
        match fast_match(line) {
            Fast::NoMatch => None,
            Fast::Match(spans) => Some(spans.map(|(a, b)| &line[a..b])),
            Fast::Fallback => self.regex_groups(line),
        }
    }

    /// The groups by the regex alone (the reference for the fast path).
    fn regex_groups<'a>(&self, line: &'a str) -> Option<[&'a str; 13]> {
        let caps = self.regex.captures(line)?;
        // Every group of HIVE_REGEX takes part in every match.
        Some(std::array::from_fn(|i| {
            caps.get(i + 1).map_or("", |m| m.as_str())
        }))
    }

    /// The row of `line` (without its line terminator).
    pub fn parse(&self, line: &str) -> CloudFrontRecord {
        self.groups(line)
            .map(|groups| CloudFrontRecord::from_groups(&groups))
            .unwrap_or_default()
    }

    /// The `date` and `os` of `line`, or `None` when the line does not match
    /// or its date is NULL (the os of a matching line is never NULL).
    /// Allocation-free for lines without `\t \n \x0B \f \r`.
    pub fn parse_os_and_date<'a>(&self, line: &'a str) -> Option<(Date, &'a str)> {
        let (date, os) = match fast_match(line) {
            Fast::NoMatch => return None,
            Fast::Match(spans) => (
                &line[spans[0].0..spans[0].1],
                &line[spans[10].0..spans[10].1],
            ),
            Fast::Fallback => {
                let groups = self.regex_groups(line)?;
                (groups[0], groups[10])
            }
        };
        Some((Date::parse(date)?, os))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LINE: &str = "2014-07-05 20:00:00 LHR3 4260 10.0.0.15 GET eabcd12345678.cloudfront.net /test-image-1.jpeg 200 - Mozilla/5.0%20(MacOS;%20U;%20Windows%20NT%205.1;%20en-US;%20rv:1.9.0.9)%20Gecko/2009040821%20IE/3.0.9";

    fn owned(s: &str) -> Option<String> {
        Some(s.to_owned())
    }

    #[test]
    fn normal_line() {
        let parser = CloudFrontParser::new();
        let r = parser.parse(LINE);
        assert_eq!(
            r,
            CloudFrontRecord {
                date: Date::new(2014, 7, 5),
                time: owned("20:00:00"),
                location: owned("LHR3"),
                bytes: Some(4260),
                request_ip: owned("10.0.0.15"),
                method: owned("GET"),
                host: owned("eabcd12345678.cloudfront.net"),
                uri: owned("/test-image-1.jpeg"),
                status: Some(200),
                referrer: owned("-"),
                os: owned("MacOS"),
                browser: owned("IE"),
                browser_version: owned("3.0.9"),
            }
        );
        assert!(matches!(fast_match(LINE), Fast::Match(_)));
        assert_eq!(parser.groups(LINE), parser.regex_groups(LINE));
        assert_eq!(
            parser.parse_os_and_date(LINE),
            Some((Date::new(2014, 7, 5).unwrap(), "MacOS"))
        );
    }

    #[test]
    fn header_lines_are_null_rows() {
        let parser = CloudFrontParser::new();
        for line in [
            "#Version: 1.0",
            "#Fields: date time x-edge-location sc-bytes c-ip cs-method cs(Host) cs-uri-stem sc-status cs(Referer) cs(User-Agent)",
            &format!("#{LINE}"),
            "",
        ] {
            assert!(parser.parse(line).is_all_null(), "{line}");
            assert_eq!(parser.parse_os_and_date(line), None);
        }
    }

    #[test]
    fn fewer_fields_is_a_null_row() {
        let parser = CloudFrontParser::new();
        let line = "2014-07-05 20:00:00 LHR3 4260 10.0.0.15 GET host /a.jpeg 200 Mozilla/5.0%20(MacOS;%20U)%20IE/3.0.9";
        assert!(parser.parse(line).is_all_null());
        assert!(parser.parse("2014-07-05 20:00:00 LHR3").is_all_null());
        // A leading space also fails group 1.
        assert!(parser.parse(&format!(" {LINE}")).is_all_null());
    }

    #[test]
    fn bad_date_and_bad_int_are_null_fields() {
        let parser = CloudFrontParser::new();
        for bad in [
            "2014-00-05",
            "2014-13-01",
            "14-07-05",
            "2014/07/05",
            "2014-7-",
        ] {
            let line = LINE.replacen("2014-07-05", bad, 1);
            let r = parser.parse(&line);
            assert_eq!(r.date, None, "{bad}");
            assert_eq!(r.os.as_deref(), Some("MacOS"));
            assert_eq!(r.bytes, Some(4260));
            assert_eq!(parser.parse_os_and_date(&line), None);
        }
        assert_eq!(
            parser
                .parse(&LINE.replacen("2014-07-05", "2016-02-29", 1))
                .date,
            Date::new(2016, 2, 29)
        );
        // Hive reads dates with Java's lenient `Date.valueOf`.
        for (lenient, date) in [("2014-7-05", (2014, 7, 5)), ("2014-02-30", (2014, 3, 2))] {
            let line = LINE.replacen("2014-07-05", lenient, 1);
            assert_eq!(parser.parse(&line).date, Date::new(date.0, date.1, date.2));
        }
        let line = LINE
            .replacen(" 4260 ", " 42x0 ", 1)
            .replacen(" 200 ", " 99999999999 ", 1);
        let r = parser.parse(&line);
        assert_eq!((r.bytes, r.status), (None, None));
        assert_eq!(r.date, Date::new(2014, 7, 5));
        assert_eq!(r.browser_version.as_deref(), Some("3.0.9"));
        let r = parser.parse(
            &LINE
                .replacen(" 4260 ", " +4260 ", 1)
                .replacen(" 200 ", " -0 ", 1),
        );
        assert_eq!((r.bytes, r.status), (Some(4260), Some(0)));
    }

    #[test]
    fn tabs_between_fields_use_the_regex() {
        let parser = CloudFrontParser::new();
        let line = LINE.replace(' ', "\t");
        assert_eq!(fast_match(&line), Fast::Fallback);
        let r = parser.parse(&line);
        assert_eq!(r.date, Date::new(2014, 7, 5));
        assert_eq!(r.referrer.as_deref(), Some("-"));
        assert_eq!(r.os.as_deref(), Some("MacOS"));
        // `[^ ]+` takes tabs too: with tabs inside a field the groups shift.
        let line = LINE.replacen(' ', "\t", 1);
        assert_eq!(parser.groups(&line), parser.regex_groups(&line));
        assert_eq!(parser.parse(&line).time.as_deref(), Some("20:00:00"));
    }

    #[test]
    fn non_ascii_lines() {
        let parser = CloudFrontParser::new();
        let line = LINE.replace("/test-image-1.jpeg", "/é-\u{a0}-\u{2028}.jpeg");
        assert!(matches!(fast_match(&line), Fast::Match(_)));
        assert_eq!(parser.groups(&line), parser.regex_groups(&line));
        assert_eq!(
            parser.parse(&line).uri.as_deref(),
            Some("/é-\u{a0}-\u{2028}.jpeg")
        );
        // DOTALL: `.*` crosses a carriage return inside the line.
        let line = LINE.replace("3.0.9", "3.0\r.9");
        assert_eq!(fast_match(&line), Fast::Fallback);
        assert_eq!(
            parser.parse(&line).browser_version.as_deref(),
            Some("3.0\r.9")
        );
    }

    #[test]
    fn os_and_browser_backtracking() {
        let parser = CloudFrontParser::new();
        let cases = [
            // No `;`: os runs up to the last valid `%20`.
            (
                "Mozilla/5.0%20(Linux%20x86)%20Gecko/1%20Firefox/3",
                Some(("Linux%20x86)%20Gecko/1", "Firefox", "3")),
            ),
            // The last `%20` has no `/` after it: an earlier one is used.
            ("M%20(OS;%20A/1%20B", Some(("OS", "A", "1%20B"))),
            // `%20/`: empty browser, not valid.
            ("M%20(OS;%20A/1%20/x", Some(("OS", "A", "1%20/x"))),
            // `%20` inside the os span.
            ("M (a%20b/c", Some(("a", "b", "c"))),
            ("M (;%20b/c", None),
            ("(%20b/c", None),
            ("M (%20b/c", None),
            ("M (x%20b/", Some(("x", "b", ""))),
        ];
        for (tail, expected) in cases {
            let line = format!("2014-07-05 t l 1 ip m h u 200 -  {tail}");
            let groups = parser.groups(&line);
            assert_eq!(groups, parser.regex_groups(&line), "{line}");
            assert_eq!(groups.map(|g| (g[10], g[11], g[12])), expected, "{line}");
        }
    }

    #[test]
    fn date_type() {
        let d = Date::parse("2014-07-05").unwrap();
        assert_eq!(d.to_string(), "2014-07-05");
        assert_eq!((d.year(), d.month(), d.day()), (2014, 7, 5));
        assert!(Date::parse("2014-08-01").unwrap() > d);
        assert_eq!(Date::new(1970, 1, 1).unwrap().days_since_epoch(), 0);
        assert_eq!(d.days_since_epoch(), 16_256);
        assert_eq!(Date::new(1969, 12, 31).unwrap().days_since_epoch(), -1);
        for days in [-719_528, -1, 0, 1, 16_256, 2_932_896] {
            let date = Date::from_days_since_epoch(days).unwrap();
            assert_eq!(date.days_since_epoch(), days, "{date}");
        }
        assert_eq!(Date::from_days_since_epoch(-719_529), None);
        assert_eq!(Date::from_days_since_epoch(2_932_897), None);
        for bad in [
            "2014-07-05 ",
            "2014-00-10",
            "2014-13-01",
            "2014-7-",
            "2014-07-00",
            "",
        ] {
            assert_eq!(Date::parse(bad), None, "{bad:?}");
        }
        // As Java's `Date.valueOf`: one-digit months and days, rollover.
        for (lenient, date) in [
            ("2014-7-6", "2014-07-06"),
            ("2014-07-5", "2014-07-05"),
            ("+014-07-05", "0014-07-05"),
            ("1900-02-29", "1900-03-01"),
            ("2000-02-29", "2000-02-29"),
        ] {
            assert_eq!(
                Date::parse(lenient).unwrap().to_string(),
                date,
                "{lenient:?}"
            );
        }
    }

    /// Realistic lines the generators mutate.
    const BASES: &[&str] = &[
        LINE,
        "2014-07-05 20:00:00 LHR3 4260 10.0.0.15 GET eabcd12345678.cloudfront.net /test-image-1.jpeg 200 - Mozilla/5.0%20(Windows;%20U;%20Windows%20NT%205.1;%20en-US;%20rv:1.9.0.9)%20Gecko/2009040821%20Firefox/3.0.9",
        "2014-08-12 03:14:15 IAD12 12 192.168.1.7 HEAD d111111abcdef8.cloudfront.net /a/b%20c.png 304 http://www.example.com/x%20y Mozilla/5.0%20(iOS;%20CPU%20OS%207_0)%20Gecko/2009040821%20Safari/7.0",
        "2014-07-31 23:59:59 SFO4 -5 10.1.2.3 POST h /u 500 - Mozilla/5.0%20(Linux)%20Gecko/2009040821%20Chrome/35.0.1916.153",
        "2014-07-01 00:00:00 A 1 B C D E 200 F  G (os;x)%20b/v",
        "#Version: 1.0",
    ];

    const ALPHABET: &[char] = &[
        ' ', '(', ')', '/', ';', '%', '2', '0', '#', '\t', 'a', 'b', 'c', '-', ':', '.', '\r',
        '\u{a0}', 'é', '\u{85}', '\u{2028}', '\x0B', '\x0C', '\n', '\0',
    ];

    const FRAGMENTS: &[&str] = &["%20", " ", "  ", "(", ";", "/", "%2", "%20/", " (", "#"];

    /// Applies one mutation (`op`, at a position chosen by `at`, with
    /// `what` selecting the inserted text) to `line`.
    fn mutate(line: &mut Vec<char>, op: u8, at: usize, what: usize, ascii: char) {
        let pos = if line.is_empty() {
            0
        } else {
            at % (line.len() + 1)
        };
        let c = match what % 3 {
            0 => ascii,
            _ => ALPHABET[what % ALPHABET.len()],
        };
        match op % 5 {
            0 => line.insert(pos, c),
            1 if pos < line.len() => line[pos] = c,
            2 if pos < line.len() => {
                line.remove(pos);
            }
            3 => {
                for (k, f) in FRAGMENTS[what % FRAGMENTS.len()].chars().enumerate() {
                    line.insert(pos + k, f);
                }
            }
            _ => line.truncate(pos),
        }
    }

    fn check(parser: &CloudFrontParser, line: &str) -> Fast {
        let expected = parser.regex_groups(line);
        let fast = fast_match(line);
        match &fast {
            Fast::NoMatch => assert_eq!(expected, None, "{line:?}"),
            Fast::Match(spans) => {
                assert_eq!(Some(spans.map(|(a, b)| &line[a..b])), expected, "{line:?}");
            }
            Fast::Fallback => {}
        }
        assert_eq!(parser.groups(line), expected, "{line:?}");
        let record = parser.parse(line);
        assert_eq!(
            record,
            expected
                .map(|g| CloudFrontRecord::from_groups(&g))
                .unwrap_or_default()
        );
        let os_and_date = record.date.zip(record.os.clone());
        assert_eq!(
            parser
                .parse_os_and_date(line)
                .map(|(d, os)| (d, os.to_owned())),
            os_and_date,
            "{line:?}"
        );
        fast
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn fast_path_equals_regex_on_mutated_lines(
            base in 0..BASES.len(),
            mutations in prop::collection::vec(
                (any::<u8>(), any::<usize>(), any::<usize>(), proptest::char::range(' ', '~')),
                0..6,
            ),
        ) {
            let parser = CloudFrontParser::new();
            let mut line: Vec<char> = BASES[base].chars().collect();
            for (op, at, what, ascii) in mutations {
                mutate(&mut line, op, at, what, ascii);
            }
            let line: String = line.into_iter().collect();
            check(&parser, &line);
        }

        #[test]
        fn fast_path_equals_regex_on_random_lines(
            line in "([a-c0-9 ]{1,4} ){9,11}[ a-c(;/%20#]{0,30}",
        ) {
            check(&CloudFrontParser::new(), &line);
        }
    }

    /// Many mutated lines with a fixed seed: the fast path must agree with
    /// the regex, and both its outcomes must be well covered.
    #[test]
    fn fast_path_coverage() {
        let parser = CloudFrontParser::new();
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let (mut matched, mut unmatched, mut fallback) = (0, 0, 0);
        for _ in 0..20_000 {
            let base = BASES[(next() % BASES.len() as u64) as usize];
            let mut line: Vec<char> = base.chars().collect();
            for _ in 0..next() % 4 {
                let ascii = char::from(b' ' + (next() % 95) as u8);
                mutate(
                    &mut line,
                    next() as u8,
                    next() as usize,
                    next() as usize,
                    ascii,
                );
            }
            let line: String = line.into_iter().collect();
            match check(&parser, &line) {
                Fast::Match(_) => matched += 1,
                Fast::NoMatch => unmatched += 1,
                Fast::Fallback => fallback += 1,
            }
        }
        assert!(matched > 8_000, "{matched} {unmatched} {fallback}");
        assert!(unmatched > 3_000, "{matched} {unmatched} {fallback}");
        assert!(fallback > 1_000, "{matched} {unmatched} {fallback}");
    }
}
