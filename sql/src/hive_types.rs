//! Hive's column types and the conversions Hive 2.3's `RegexSerDe`
//! applies to each captured string, exactly: it calls Java's parsers and a
//! parser that throws gives NULL for that column (the row stays).
//!
//! | Hive type | Java conversion | Arrow type |
//! | --- | --- | --- |
//! | STRING | as is | Utf8 |
//! | VARCHAR(n) | `HiveVarchar`: first n code points | Utf8 |
//! | CHAR(n) | `HiveChar`: first n code points, padded with spaces to n | Utf8 |
//! | TINYINT .. BIGINT | `Byte.valueOf` .. `Long.valueOf` | Int8 .. Int64 |
//! | FLOAT, DOUBLE | `Float.valueOf`, `Double.valueOf` | Float32, Float64 |
//! | BOOLEAN | `Boolean.valueOf`: `true` in any case; anything else false, never NULL | Boolean |
//! | DATE | `java.sql.Date.valueOf`: `yyyy-[m]m-[d]d`, lenient days | Date32 |
//! | TIMESTAMP | `java.sql.Timestamp.valueOf`, lenient | Timestamp(ns), wall clock |
//! | DECIMAL(p,s) | `HiveDecimal.create`, then the column's precision and scale | Decimal128(p,s) |
//!
//! Sources: Hive 2.3 `serde2/RegexSerDe.java`, `common/type/HiveDecimal.java`
//! (storage-api 2.4), `HiveBaseChar.java`; OpenJDK 8 `java/sql/Date.java`,
//! `java/sql/Timestamp.java`, `Integer.parseInt`, `sun/misc/FloatingDecimal`.
//! Two deliberate differences: dates before the Gregorian reform of 1582 use
//! the proleptic Gregorian calendar (Java's hybrid calendar shifts them),
//! and a TIMESTAMP is a wall-clock time, never moved by a daylight-saving
//! gap of the JVM's time zone.

use arrow_schema::DataType;

/// A Hive column type `RegexSerDe` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HiveType {
    /// `STRING`.
    String,
    /// `VARCHAR(n)`: at most n characters (code points).
    Varchar(usize),
    /// `CHAR(n)`: exactly n characters, space-padded.
    Char(usize),
    /// `TINYINT`.
    TinyInt,
    /// `SMALLINT`.
    SmallInt,
    /// `INT` / `INTEGER`.
    Int,
    /// `BIGINT`.
    BigInt,
    /// `FLOAT`.
    Float,
    /// `DOUBLE` / `DOUBLE PRECISION`.
    Double,
    /// `BOOLEAN`.
    Boolean,
    /// `DATE`.
    Date,
    /// `TIMESTAMP`.
    Timestamp,
    /// `DECIMAL(p, s)`; plain `DECIMAL` is (10, 0).
    Decimal(u8, i8),
}

impl HiveType {
    /// Parses a column type as written in `CREATE TABLE` (any case).
    ///
    /// Errors: a type `RegexSerDe` does not read (complex types, `BINARY`)
    /// or bad parameters (`VARCHAR(0)`, `DECIMAL(39, 0)`), with the reason.
    pub fn parse(text: &str) -> Result<HiveType, String> {
        let t: String = text
            .to_ascii_uppercase()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        let (name, params) = match t.split_once('(') {
            Some((name, rest)) => {
                let inner = rest
                    .strip_suffix(')')
                    .ok_or_else(|| format!("type {text}: unbalanced parentheses"))?;
                let params = inner
                    .split(',')
                    .map(|p| p.trim().parse::<u32>())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| format!("type {text}: parameters must be numbers"))?;
                (name.trim().to_string(), Some(params))
            }
            None => (t.clone(), None),
        };
        let length = |max: u32| -> Result<usize, String> {
            match params.as_deref() {
                Some([n]) if (1..=max).contains(n) => Ok(*n as usize),
                _ => Err(format!("type {text}: needs a length from 1 to {max}")),
            }
        };
        let plain = |ty: HiveType| match params {
            None => Ok(ty),
            Some(_) => Err(format!("type {text}: {name} takes no parameters")),
        };
        match name.as_str() {
            "STRING" => plain(HiveType::String),
            "VARCHAR" => Ok(HiveType::Varchar(length(65_535)?)),
            "CHAR" => Ok(HiveType::Char(length(255)?)),
            "TINYINT" => plain(HiveType::TinyInt),
            "SMALLINT" => plain(HiveType::SmallInt),
            "INT" | "INTEGER" => plain(HiveType::Int),
            "BIGINT" => plain(HiveType::BigInt),
            "FLOAT" => plain(HiveType::Float),
            "DOUBLE" | "DOUBLE PRECISION" => plain(HiveType::Double),
            "BOOLEAN" => plain(HiveType::Boolean),
            "DATE" => plain(HiveType::Date),
            "TIMESTAMP" => plain(HiveType::Timestamp),
            "DECIMAL" | "NUMERIC" => {
                let (p, s) = match params.as_deref() {
                    None => (10, 0),
                    Some([p]) => (*p, 0),
                    Some([p, s]) => (*p, *s),
                    Some(_) => return Err(format!("type {text}: DECIMAL(precision, scale)")),
                };
                if !(1..=38).contains(&p) || s > p {
                    return Err(format!(
                        "type {text}: precision must be 1 to 38 and scale 0 to the precision"
                    ));
                }
                Ok(HiveType::Decimal(p as u8, s as i8))
            }
            "BINARY" => Err(format!(
                "type {text}: RegexSerDe cannot convert text to BINARY (Hive fails on the first matching row)"
            )),
            _ => Err(format!(
                "type {text} is not supported in a RegexSerDe table (primitive types only)"
            )),
        }
    }

    /// The Arrow type of the column.
    pub fn arrow_type(self) -> DataType {
        match self {
            HiveType::String | HiveType::Varchar(_) | HiveType::Char(_) => DataType::Utf8,
            HiveType::TinyInt => DataType::Int8,
            HiveType::SmallInt => DataType::Int16,
            HiveType::Int => DataType::Int32,
            HiveType::BigInt => DataType::Int64,
            HiveType::Float => DataType::Float32,
            HiveType::Double => DataType::Float64,
            HiveType::Boolean => DataType::Boolean,
            HiveType::Date => DataType::Date32,
            HiveType::Timestamp => DataType::Timestamp(arrow_schema::TimeUnit::Nanosecond, None),
            HiveType::Decimal(p, s) => DataType::Decimal128(p, s),
        }
    }
}

/// Code points of the first digit (zero) of each run of ten decimal
/// digits (Unicode category Nd) in the Basic Multilingual Plane, as of
/// Unicode 6.2 (Java 8's `Character.digit`).
const DIGIT_ZEROS: [u32; 35] = [
    0x0030, 0x0660, 0x06F0, 0x07C0, 0x0966, 0x09E6, 0x0A66, 0x0AE6, 0x0B66, 0x0BE6, 0x0C66, 0x0CE6,
    0x0D66, 0x0E50, 0x0ED0, 0x0F20, 0x1040, 0x1090, 0x17E0, 0x1810, 0x1946, 0x19D0, 0x1A80, 0x1A90,
    0x1B50, 0x1BB0, 0x1C40, 0x1C50, 0xA620, 0xA8D0, 0xA900, 0xA9D0, 0xAA50, 0xABF0, 0xFF10,
];

/// Java's `Character.digit(c, 10)`.
fn java_digit(c: char) -> Option<u32> {
    if c.is_ascii_digit() {
        return Some(c as u32 - '0' as u32);
    }
    let code = c as u32;
    DIGIT_ZEROS
        .iter()
        .find(|&&zero| (zero..zero + 10).contains(&code))
        .map(|zero| code - zero)
}

/// Java's `Long.parseLong` with the range check of `Integer.parseInt`,
/// `Short.parseShort` or `Byte.parseByte`: an optional `+`/`-`, then
/// decimal digits (any script's), nothing else; `None` where Java throws.
pub fn java_integer(s: &str, min: i64, max: i64) -> Option<i64> {
    let (negative, digits) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() {
        return None;
    }
    // Accumulated negatively, as Java does, so that MIN parses.
    let mut value: i64 = 0;
    for c in digits.chars() {
        let d = java_digit(c)? as i64;
        value = value.checked_mul(10)?.checked_sub(d)?;
    }
    let value = if negative {
        value
    } else {
        value.checked_neg()?
    };
    (min..=max).contains(&value).then_some(value)
}

/// Java's `String.trim`: every character up to U+0020 off both ends.
fn java_trim(s: &str) -> &str {
    s.trim_matches(|c: char| c <= ' ')
}

/// Java's `Double.valueOf` (`FloatingDecimal.readJavaFormatString`):
/// trimmed; `NaN`, `Infinity`; decimal with optional exponent and one
/// trailing `f`/`F`/`d`/`D`; hexadecimal with a binary exponent.
pub fn java_double(s: &str) -> Option<f64> {
    match java_float_literal(s)? {
        FloatLiteral::Special(v) => Some(v),
        FloatLiteral::Decimal(text) => text.parse::<f64>().ok(),
        FloatLiteral::Hex {
            negative,
            mantissa,
            exponent,
        } => Some(signed(negative, scale2(mantissa as f64, exponent))),
    }
}

/// Java's `Float.valueOf`: as [`java_double`], rounded once, straight to
/// `f32`.
pub fn java_float(s: &str) -> Option<f32> {
    match java_float_literal(s)? {
        FloatLiteral::Special(v) => Some(v as f32),
        FloatLiteral::Decimal(text) => text.parse::<f32>().ok(),
        FloatLiteral::Hex {
            negative,
            mantissa,
            exponent,
        } => Some(signed(negative, scale2(f64::from(mantissa as f32), exponent)) as f32),
    }
}

fn signed(negative: bool, v: f64) -> f64 {
    if negative { -v } else { v }
}

/// `value * 2^exponent` (exact unless the result leaves `f64`'s range).
fn scale2(value: f64, exponent: i64) -> f64 {
    let mut v = value;
    let mut e = exponent.clamp(-2200, 2200);
    while e != 0 {
        let step = e.clamp(-1000, 1000);
        v *= 2f64.powi(step as i32);
        e -= step;
    }
    v
}

/// A floating-point literal Java accepts.
enum FloatLiteral<'a> {
    /// NaN or an infinity.
    Special(f64),
    /// A decimal literal Rust's parser reads the same way (sign, digits,
    /// dot, exponent; suffix removed).
    Decimal(&'a str),
    /// A hexadecimal literal: `mantissa * 2^exponent`, the mantissa cut to
    /// 64 bits with a sticky low bit so that rounding stays correct.
    Hex {
        negative: bool,
        mantissa: u64,
        exponent: i64,
    },
}

fn java_float_literal(s: &str) -> Option<FloatLiteral<'_>> {
    let t = java_trim(s);
    let (negative, body) = match t.as_bytes().first()? {
        b'-' => (true, &t[1..]),
        b'+' => (false, &t[1..]),
        _ => (false, t),
    };
    match body {
        "NaN" => return Some(FloatLiteral::Special(f64::NAN)),
        "Infinity" => return Some(FloatLiteral::Special(signed(negative, f64::INFINITY))),
        _ => {}
    }
    if let Some(hex) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        let (mantissa, exponent) = hex_literal(hex)?;
        return Some(FloatLiteral::Hex {
            negative,
            mantissa,
            exponent,
        });
    }
    let number = t.strip_suffix(['f', 'F', 'd', 'D']).unwrap_or(t);
    let unsigned = number.strip_prefix(['+', '-']).unwrap_or(number);
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(i) => (&unsigned[..i], Some(&unsigned[i + 1..])),
        None => (unsigned, None),
    };
    let dots = mantissa.bytes().filter(|&b| b == b'.').count();
    let mantissa_ok = dots <= 1
        && mantissa.bytes().any(|b| b.is_ascii_digit())
        && mantissa.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit())
    });
    (mantissa_ok && exponent_ok).then_some(FloatLiteral::Decimal(number))
}

/// The part of a hexadecimal literal after `0x`,
/// `(hex+ [.] | hex* . hex+) (p|P) [+|-] digits [f|F|d|D]`, as a mantissa
/// and a binary exponent.
fn hex_literal(rest: &str) -> Option<(u64, i64)> {
    let rest = rest.strip_suffix(['f', 'F', 'd', 'D']).unwrap_or(rest);
    let p = rest.find(['p', 'P'])?;
    let (digits, exponent) = (&rest[..p], &rest[p + 1..]);
    let exponent_digits = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
    if exponent_digits.is_empty() || !exponent_digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let hex = |s: &str| s.bytes().all(|b| b.is_ascii_hexdigit());
    if !hex(int) || !hex(frac) || (int.is_empty() && frac.is_empty()) {
        return None;
    }
    // Huge exponents saturate: the result is 0 or infinite either way.
    let exponent: i64 = exponent
        .parse::<i64>()
        .unwrap_or(if exponent.starts_with('-') {
            -100_000
        } else {
            100_000
        });
    let mut mantissa: u64 = 0;
    let mut shift: i64 = 0;
    let mut sticky = false;
    for (i, b) in int.bytes().chain(frac.bytes()).enumerate() {
        let d = u64::from((b as char).to_digit(16).unwrap_or(0));
        let in_fraction = i >= int.len();
        if mantissa >> 60 == 0 {
            mantissa = mantissa << 4 | d;
            if in_fraction {
                shift -= 4;
            }
        } else {
            sticky |= d != 0;
            if !in_fraction {
                shift += 4;
            }
        }
    }
    Some((mantissa | u64::from(sticky), exponent.saturating_add(shift)))
}

/// Java's `Boolean.valueOf`: `true` in any case is true, anything else
/// (the empty string, `yes`, `1`, a group that did not match) is false.
pub fn java_boolean(s: Option<&str>) -> bool {
    s.is_some_and(|s| s.eq_ignore_ascii_case("true"))
}

/// Days from 1970-01-01 to the first of `month` (1-12) of `year`
/// (proleptic Gregorian; Howard Hinnant's `days_from_civil`).
fn days_to_month(year: i64, month: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date part of `Date.valueOf` and `Timestamp.valueOf`:
/// `yyyy-[m]m-[d]d`, a four-character year, month 1-12, day 1-31, each
/// read by `Integer.parseInt`; a day past the month's end rolls over
/// (`2014-02-31` is 2014-03-03). Days since 1970-01-01.
fn java_date_days(s: &str) -> Option<i64> {
    let first = s.find('-').filter(|&i| i > 0)?;
    let second = first + 1 + s[first + 1..].find('-')?;
    if second + 1 >= s.len() {
        return None;
    }
    let (year, month, day) = (&s[..first], &s[first + 1..second], &s[second + 1..]);
    let chars = |t: &str| t.chars().count();
    if chars(year) != 4 || !(1..=2).contains(&chars(month)) || !(1..=2).contains(&chars(day)) {
        return None;
    }
    let year = java_integer(year, i32::MIN.into(), i32::MAX.into())?;
    let month = java_integer(month, 1, 12)?;
    let day = java_integer(day, 1, 31)?;
    Some(days_to_month(year, month) + day - 1)
}

/// Java's `java.sql.Date.valueOf`, as days since 1970-01-01 (no trimming).
pub fn java_date(s: &str) -> Option<i32> {
    i32::try_from(java_date_days(s)?).ok()
}

/// Java's `java.sql.Timestamp.valueOf`, as nanoseconds since 1970-01-01
/// 00:00 of the wall clock: trimmed; `date time` split at the first space;
/// `h:m:s[.fraction]` with hour, minute and second read by
/// `Integer.parseInt` and rolled over leniently (`25:00:00` is the next
/// day's 01:00), a fraction of 1 to 9 digits.
pub fn java_timestamp(s: &str) -> Option<i64> {
    let t = java_trim(s);
    let space = t.find(' ')?;
    let days = java_date_days(&t[..space])?;
    let time = &t[space + 1..];
    let first = time.find(':').filter(|&i| i > 0)?;
    let second = first + 1 + time[first + 1..].find(':')?;
    if second + 1 >= time.len() {
        return None;
    }
    let int = |t: &str| java_integer(t, i32::MIN.into(), i32::MAX.into());
    let hour = int(&time[..first])?;
    let minute = int(&time[first + 1..second])?;
    let rest = &time[second + 1..];
    let (seconds, nanos) = match rest.find('.') {
        Some(dot) => {
            let fraction = &rest[dot + 1..];
            let count = fraction.chars().count();
            let first_is_digit = fraction.chars().next().and_then(java_digit).is_some();
            if !(1..=9).contains(&count) || !first_is_digit {
                return None;
            }
            let padded = format!("{fraction}{}", "0".repeat(9 - count));
            (int(&rest[..dot])?, int(&padded)?)
        }
        None => (int(rest)?, 0),
    };
    let total_seconds = days * 86_400 + hour * 3_600 + minute * 60 + seconds;
    total_seconds.checked_mul(1_000_000_000)?.checked_add(nanos)
}

/// Hive 2.3's `HiveDecimal.create(String)` followed by the column's
/// `DECIMAL(precision, scale)`: ASCII spaces trimmed; `[+|-] digits [.
/// digits] [e [+|-] digits]` (an exponent of at most two significant
/// digits); more than 38 integer digits is NULL; then rounded half-up to
/// `scale` digits, NULL if more than `precision - scale` integer digits
/// remain. The unscaled value.
pub fn hive_decimal(s: &str, precision: u8, scale: i8) -> Option<i128> {
    const MAX: i64 = 38;
    let t = s.trim_matches(' ');
    let (negative, body) = match t.as_bytes().first()? {
        b'-' => (true, &t[1..]),
        b'+' => (false, &t[1..]),
        _ => (false, t),
    };
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let ascii = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if !ascii(int) || !ascii(frac) || (int.is_empty() && frac.is_empty()) {
        return None;
    }
    let exponent: i64 = match exponent {
        None => 0,
        Some(e) => {
            let (neg, digits) = match e.as_bytes().first()? {
                b'-' => (true, &e[1..]),
                b'+' => (false, &e[1..]),
                _ => (false, e),
            };
            let significant = digits.trim_start_matches('0');
            if digits.is_empty() || !ascii(digits) || significant.len() > 2 {
                return None;
            }
            let v: i64 = significant.parse().unwrap_or(0);
            if neg { -v } else { v }
        }
    };
    // All digits, and how many of them are fractional after the exponent.
    let digits: Vec<u8> = int.bytes().chain(frac.bytes()).map(|b| b - b'0').collect();
    let mut frac_digits = frac.len() as i64 - exponent;
    let lead = digits.iter().take_while(|&&d| d == 0).count();
    let mut digits = digits[lead..].to_vec();
    if frac_digits < 0 {
        digits.extend(std::iter::repeat_n(0, (-frac_digits) as usize));
        frac_digits = 0;
    }
    let int_digits = (digits.len() as i64 - frac_digits).max(0);
    if int_digits > MAX {
        return None;
    }
    // HiveDecimal keeps at most 38 digits: round the fraction to fit.
    let digits = round_half_up(&digits, &mut frac_digits, (MAX - int_digits).max(0));
    let digits = round_half_up(&digits, &mut frac_digits, i64::from(scale));
    let int_digits = (digits.len() as i64 - frac_digits).max(0);
    let int_digits = digits[..int_digits as usize]
        .iter()
        .skip_while(|&&d| d == 0)
        .count() as i64;
    if int_digits > i64::from(precision) - i64::from(scale) {
        return None;
    }
    // Pad the fraction to the scale and read the unscaled value.
    let mut unscaled: i128 = 0;
    for &d in &digits {
        unscaled = unscaled * 10 + i128::from(d);
    }
    for _ in frac_digits..i64::from(scale) {
        unscaled *= 10;
    }
    Some(if negative { -unscaled } else { unscaled })
}

/// `digits` (with `frac` fractional ones) rounded half-up to at most
/// `keep` fractional digits; `frac` is updated.
fn round_half_up(digits: &[u8], frac: &mut i64, keep: i64) -> Vec<u8> {
    if *frac <= keep {
        return digits.to_vec();
    }
    let drop = (*frac - keep) as usize;
    let mut out: Vec<u8> = if drop >= digits.len() {
        Vec::new()
    } else {
        digits[..digits.len() - drop].to_vec()
    };
    let first_dropped = digits.len().checked_sub(drop).and_then(|i| digits.get(i));
    if first_dropped.is_some_and(|&d| d >= 5) {
        let mut i = out.len();
        loop {
            if i == 0 {
                out.insert(0, 1);
                break;
            }
            i -= 1;
            if out[i] == 9 {
                out[i] = 0;
            } else {
                out[i] += 1;
                break;
            }
        }
    }
    *frac = keep;
    // Keep at least the fractional digits' places.
    while (out.len() as i64) < keep {
        out.insert(0, 0);
    }
    out
}

/// `HiveVarchar`: the first `n` characters (code points).
pub fn hive_varchar(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((end, _)) => &s[..end],
        None => s,
    }
}

/// `HiveChar`: the first `n` characters, padded with spaces to `n`.
pub fn hive_char(s: &str, n: usize) -> String {
    let mut out = hive_varchar(s, n).to_string();
    let len = out.chars().count();
    out.extend(std::iter::repeat_n(' ', n - len));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(s: &str) -> Option<String> {
        java_date(s).map(|d| {
            crate::cloudfront::Date::from_days_since_epoch(d)
                .map(|d| d.to_string())
                .unwrap_or_default()
        })
    }

    fn timestamp(s: &str) -> Option<String> {
        java_timestamp(s).map(|ns| {
            let seconds = ns.div_euclid(1_000_000_000);
            let day =
                crate::cloudfront::Date::from_days_since_epoch(seconds.div_euclid(86_400) as i32)
                    .unwrap();
            let t = seconds.rem_euclid(86_400);
            format!(
                "{day} {:02}:{:02}:{:02}.{}",
                t / 3600,
                t / 60 % 60,
                t % 60,
                ns.rem_euclid(1_000_000_000)
            )
        })
    }

    #[test]
    fn dates_as_java_sql_date_reads_them() {
        for (input, expected) in [
            ("2014-07-05", Some("2014-07-05")),
            ("2014-7-5", Some("2014-07-05")),
            ("2014-07-5", Some("2014-07-05")),
            ("2014-7-6", Some("2014-07-06")),
            ("2014-02-31", Some("2014-03-03")),
            ("2016-02-30", Some("2016-03-01")),
            ("2014-+7-05", Some("2014-07-05")),
            ("+014-07-05", Some("0014-07-05")),
            ("٢٠١٤-07-05", Some("2014-07-05")),
            ("2014-13-01", None),
            ("2014-00-10", None),
            ("2014-07-00", None),
            ("2014-07-32", None),
            ("2014-7-", None),
            ("2014-07-05 ", None),
            (" 2014-07-05", None),
            ("2014-07-05 10:00:00", None),
            ("14-07-05", None),
            ("02014-07-05", None),
            ("2014/07/05", None),
            ("2014-07-5x", None),
            ("", None),
            ("-", None),
        ] {
            assert_eq!(date(input).as_deref(), expected, "{input:?}");
        }
    }

    #[test]
    fn timestamps_as_java_sql_timestamp_reads_them() {
        for (input, expected) in [
            ("2014-07-05 10:00:00", Some("2014-07-05 10:00:00.0")),
            ("2014-7-5 1:2:3", Some("2014-07-05 01:02:03.0")),
            (" 2014-07-05 10:00:00 ", Some("2014-07-05 10:00:00.0")),
            (
                "2014-07-05 10:00:00.123456789",
                Some("2014-07-05 10:00:00.123456789"),
            ),
            (
                "2014-07-05 10:00:00.5",
                Some("2014-07-05 10:00:00.500000000"),
            ),
            ("2014-07-05 25:00:00", Some("2014-07-06 01:00:00.0")),
            ("2014-07-05 10:61:00", Some("2014-07-05 11:01:00.0")),
            ("2014-07-05 -1:00:00", Some("2014-07-04 23:00:00.0")),
            ("2014-02-31 10:00:00", Some("2014-03-03 10:00:00.0")),
            ("2014-07-05 10:00:00.1234567891", None),
            ("2014-07-05 10:00:00.", None),
            ("2014-07-05 10:00", None),
            ("2014-07-05T10:00:00", None),
            ("2014-07-05  10:00:00", None),
            ("2014-07-05 10:00:00.5a", None),
            ("2014-07-05 10:00:00.-5", None),
            ("2014-07-05", None),
        ] {
            assert_eq!(timestamp(input).as_deref(), expected, "{input:?}");
        }
    }

    #[test]
    fn integers_as_java_parses_them() {
        let bigint = |s| java_integer(s, i64::MIN, i64::MAX);
        let int = |s| java_integer(s, i32::MIN.into(), i32::MAX.into());
        assert_eq!(bigint("9"), Some(9));
        assert_eq!(bigint("+9"), Some(9));
        assert_eq!(bigint("-0"), Some(0));
        assert_eq!(bigint("00012"), Some(12));
        assert_eq!(bigint("٣٤"), Some(34));
        assert_eq!(bigint("１２"), Some(12));
        assert_eq!(bigint("9223372036854775807"), Some(i64::MAX));
        assert_eq!(bigint("-9223372036854775808"), Some(i64::MIN));
        for bad in [
            "9 ",
            " 9",
            "",
            "-",
            "+",
            "1.0",
            "1e3",
            "0x10",
            "1_0",
            "𝟏",
            "9223372036854775808",
        ] {
            assert_eq!(bigint(bad), None, "{bad:?}");
        }
        assert_eq!(int("2147483648"), None);
        assert_eq!(java_integer("32768", -32768, 32767), None);
        assert_eq!(java_integer("-128", -128, 127), Some(-128));
        assert_eq!(java_integer("+127", -128, 127), Some(127));
        assert_eq!(java_integer("128", -128, 127), None);
    }

    #[test]
    fn floats_as_java_parses_them() {
        for (input, expected) in [
            (" 1.5 ", Some(1.5)),
            ("\t1.5\n", Some(1.5)),
            ("1.5d", Some(1.5)),
            ("1.5F", Some(1.5)),
            ("1e5d", Some(1e5)),
            ("0x1p3", Some(8.0)),
            ("0X1.8P1", Some(3.0)),
            ("-0x1p3", Some(-8.0)),
            ("0x.8p1", Some(1.0)),
            ("0x1p3f", Some(8.0)),
            ("Infinity", Some(f64::INFINITY)),
            ("+Infinity", Some(f64::INFINITY)),
            ("-Infinity", Some(f64::NEG_INFINITY)),
            (".5", Some(0.5)),
            ("5.", Some(5.0)),
            ("+.5e1", Some(5.0)),
            ("1.e2", Some(100.0)),
            ("1e400", Some(f64::INFINITY)),
            ("1e-400", Some(0.0)),
            ("1.5dd", None),
            ("1.5x", None),
            ("1e5 d", None),
            ("0x1", None),
            ("inf", None),
            ("nan", None),
            ("INFINITY", None),
            ("Infinityd", None),
            ("1,5", None),
            ("1e", None),
            ("1e+", None),
            (".", None),
            ("٣", None),
            ("", None),
            (" ", None),
        ] {
            assert_eq!(java_double(input), expected, "{input:?}");
        }
        assert!(java_double("NaN").unwrap().is_nan());
        assert!(java_double("-NaN").unwrap().is_nan());
        assert!(java_double("-0").unwrap().is_sign_negative());
        assert_eq!(java_float("3.5e38"), Some(f32::INFINITY));
        assert_eq!(java_float("16777217"), Some(16_777_216.0));
        // Rounded once, straight to f32.
        assert_eq!(java_float("1.000000059604644775390626"), Some(1.000_000_1));
        assert_eq!(java_double("0x1.fffffffffffff8p0"), Some(2.0));
    }

    #[test]
    fn booleans_are_never_null() {
        for (input, expected) in [
            (Some("true"), true),
            (Some("TRUE"), true),
            (Some("tRuE"), true),
            (Some("yes"), false),
            (Some("1"), false),
            (Some("t"), false),
            (Some(""), false),
            (Some(" true"), false),
            (None, false),
        ] {
            assert_eq!(java_boolean(input), expected, "{input:?}");
        }
    }

    #[test]
    fn decimals_as_hive_reads_them() {
        let d = |s, p, sc| hive_decimal(s, p, sc);
        assert_eq!(d("123.456", 5, 2), Some(12346));
        assert_eq!(d("999.995", 5, 2), None);
        assert_eq!(d("1234", 5, 2), None);
        assert_eq!(d("-0.005", 5, 2), Some(-1));
        assert_eq!(d("0.001", 5, 2), Some(0));
        assert_eq!(d("1.5", 5, 2), Some(150));
        assert_eq!(d(" 1.5", 10, 0), Some(2));
        assert_eq!(d(" 1.4 ", 10, 0), Some(1));
        assert_eq!(d("1.5E-3", 10, 4), Some(15));
        assert_eq!(d("1e2", 10, 0), Some(100));
        assert_eq!(d("1e37", 38, 0), Some(10i128.pow(37)));
        assert_eq!(d(".5", 10, 1), Some(5));
        assert_eq!(d("5.", 10, 0), Some(5));
        for bad in [
            "\t1", "", ".", "-", "1 e5", "- 1", "0e100", "1e-100", "1e38", "1e99", "NaN", "1d",
            "1,5", "٣",
        ] {
            assert_eq!(d(bad, 38, 0), None, "{bad:?}");
        }
    }

    #[test]
    fn char_and_varchar_count_code_points() {
        assert_eq!(hive_varchar("abcdef", 3), "abc");
        assert_eq!(hive_varchar("ab  ", 3), "ab ");
        assert_eq!(hive_varchar("😀😀😀😀", 3), "😀😀😀");
        assert_eq!(hive_char("ab", 5), "ab   ");
        assert_eq!(hive_char("abcdefg", 5), "abcde");
        assert_eq!(hive_char("", 3), "   ");
    }

    #[test]
    fn types_parse_and_bad_types_are_refused() {
        assert_eq!(HiveType::parse("varchar(5)"), Ok(HiveType::Varchar(5)));
        assert_eq!(
            HiveType::parse("DECIMAL(10, 2)"),
            Ok(HiveType::Decimal(10, 2))
        );
        assert_eq!(HiveType::parse("decimal"), Ok(HiveType::Decimal(10, 0)));
        assert_eq!(HiveType::parse("Int"), Ok(HiveType::Int));
        for bad in [
            "BINARY",
            "ARRAY<INT>",
            "VARCHAR",
            "CHAR(0)",
            "DECIMAL(39,0)",
            "DECIMAL(5,6)",
            "INT(3)",
            "BLOB",
        ] {
            let e = HiveType::parse(bad).unwrap_err();
            assert!(e.contains(bad), "{bad}: {e}");
        }
    }
}
