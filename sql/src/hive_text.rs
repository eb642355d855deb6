//! Rows as Hive's text output writes them (`LazySimpleSerDe`, what
//! `INSERT OVERWRITE DIRECTORY` produces): fields joined by the format's
//! delimiter, one line per row, NULL as `\N`, and every value spelled as
//! Hive's Java code spells it:
//!
//! - DOUBLE and FLOAT as `Double.toString` / `Float.toString`: `0.1`,
//!   `100.0`, `1.0E20`, `1.0E-5`, `NaN`, `Infinity`;
//! - TIMESTAMP as `yyyy-MM-dd HH:mm:ss` with fractional seconds only when
//!   there are some, trailing zeros trimmed (`TimestampWritable.toString`);
//! - DATE as `yyyy-MM-dd`, BOOLEAN as `true` / `false`;
//! - everything else as Arrow displays it.

use crate::hive::TextFormat;
use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType,
};
use arrow_array::{Array, RecordBatch};
use arrow_schema::{ArrowError, DataType, TimeUnit};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};

/// The text of `batches` in `format`, each row ending in `\n`.
///
/// Errors: a column Arrow cannot display.
pub fn rows(batches: &[RecordBatch], format: &TextFormat) -> Result<String, ArrowError> {
    let mut text = String::new();
    let options = FormatOptions::default();
    for batch in batches {
        let columns = batch
            .columns()
            .iter()
            .map(|c| Ok((c.as_ref(), ArrayFormatter::try_new(c.as_ref(), &options)?)))
            .collect::<Result<Vec<_>, ArrowError>>()?;
        for row in 0..batch.num_rows() {
            for (i, (array, formatter)) in columns.iter().enumerate() {
                if i > 0 {
                    text.push(format.field_delimiter);
                }
                if array.is_null(row) {
                    text.push_str(&format.null);
                    continue;
                }
                match value(*array, row) {
                    Some(hive) => text.push_str(&hive),
                    None => text.push_str(&formatter.value(row).to_string()),
                }
            }
            text.push('\n');
        }
    }
    Ok(text)
}

/// The Hive spelling of a non-null value where it differs from Arrow's.
fn value(array: &dyn Array, row: usize) -> Option<String> {
    Some(match array.data_type() {
        DataType::Float64 => java_double(array.as_primitive::<Float64Type>().value(row)),
        DataType::Float32 => java_float(array.as_primitive::<Float32Type>().value(row)),
        DataType::Timestamp(unit, None) => {
            let (seconds, nanos) = match unit {
                TimeUnit::Second => (array.as_primitive::<TimestampSecondType>().value(row), 0),
                TimeUnit::Millisecond => {
                    let v = array.as_primitive::<TimestampMillisecondType>().value(row);
                    (v.div_euclid(1_000), v.rem_euclid(1_000) * 1_000_000)
                }
                TimeUnit::Microsecond => {
                    let v = array.as_primitive::<TimestampMicrosecondType>().value(row);
                    (v.div_euclid(1_000_000), v.rem_euclid(1_000_000) * 1_000)
                }
                TimeUnit::Nanosecond => {
                    let v = array.as_primitive::<TimestampNanosecondType>().value(row);
                    (v.div_euclid(1_000_000_000), v.rem_euclid(1_000_000_000))
                }
            };
            hive_timestamp(seconds, nanos as u32)?
        }
        _ => return None,
    })
}

/// `yyyy-MM-dd HH:mm:ss[.fffffffff]`, fraction trimmed of trailing zeros
/// and left out when zero (Hive's `TimestampWritable.toString`).
fn hive_timestamp(seconds: i64, nanos: u32) -> Option<String> {
    let day = i32::try_from(seconds.div_euclid(86_400)).ok()?;
    let date = crate::cloudfront::Date::from_days_since_epoch(day)?;
    let time = seconds.rem_euclid(86_400);
    let mut text = format!(
        "{date} {:02}:{:02}:{:02}",
        time / 3600,
        time / 60 % 60,
        time % 60
    );
    if nanos > 0 {
        let fraction = format!("{nanos:09}");
        text.push('.');
        text.push_str(fraction.trim_end_matches('0'));
    }
    Some(text)
}

/// Java's `Double.toString`: the shortest digits that read back as the
/// same value, in plain notation for magnitudes in [10^-3, 10^7) (always
/// with a fractional part: `100.0`) and in computerized scientific notation
/// otherwise (`1.0E20`, `1.234E-5`). JDK 8's algorithm prints a longer
/// string for a few values (integers from 2^53, some near rounding
/// boundaries such as `1e23`); the value read back is the same.
pub fn java_double(value: f64) -> String {
    java_text(value)
}

/// Java's `Float.toString`, with the float's own shortest digits (JDK 8
/// adds a digit to many floats from 10^7 up).
pub fn java_float(value: f32) -> String {
    java_text(value)
}

/// What [`java_text`] needs of `f32` and `f64`.
trait JavaFloat: Copy + std::fmt::Display + std::fmt::LowerExp {
    /// NaN, infinite, sign bit, zero, and |v| in [10^-3, 10^7).
    fn class(self) -> (bool, bool, bool, bool, bool);
}

macro_rules! java_float_impl {
    ($($t:ty),*) => {$(
        impl JavaFloat for $t {
            fn class(self) -> (bool, bool, bool, bool, bool) {
                let plain = (1e-3..1e7).contains(&self.abs());
                (self.is_nan(), self.is_infinite(), self.is_sign_negative(), self == 0.0, plain)
            }
        }
    )*};
}
java_float_impl!(f32, f64);

fn java_text<F: JavaFloat>(value: F) -> String {
    let (nan, infinite, negative, zero, plain_range) = value.class();
    let sign = if negative { "-" } else { "" };
    if nan {
        return "NaN".into();
    }
    if infinite {
        return format!("{sign}Infinity");
    }
    if zero {
        return format!("{sign}0.0");
    }
    let plain = format!("{value}");
    if plain_range {
        return if plain.contains('.') {
            plain
        } else {
            format!("{plain}.0")
        };
    }
    // Rust's `{:e}` is `[-]d[.ddd]e[-]x` with the shortest digits.
    let scientific = format!("{value:e}");
    let scientific = scientific.trim_start_matches('-');
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((scientific, "0"));
    let mantissa = if mantissa.contains('.') {
        mantissa.to_string()
    } else {
        format!("{mantissa}.0")
    };
    format!("{sign}{mantissa}E{exponent}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{
        BooleanArray, Date32Array, Float32Array, Float64Array, Int64Array, StringArray,
        TimestampNanosecondArray,
    };
    use std::sync::Arc;

    #[test]
    fn doubles_as_java_writes_them() {
        for (value, java) in [
            (0.1, "0.1"),
            (1.0, "1.0"),
            (100.0, "100.0"),
            (1e20, "1.0E20"),
            (1.5e20, "1.5E20"),
            (1e7, "1.0E7"),
            (9999999.0, "9999999.0"),
            (0.001, "0.001"),
            (0.0001, "1.0E-4"),
            (-2.5e-10, "-2.5E-10"),
            (123456.789, "123456.789"),
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (f64::NAN, "NaN"),
            (f64::NEG_INFINITY, "-Infinity"),
            (f64::MAX, "1.7976931348623157E308"),
            (f64::MIN_POSITIVE, "2.2250738585072014E-308"),
        ] {
            assert_eq!(java_double(value), java, "{value:?}");
        }
        assert_eq!(java_float(0.1), "0.1");
        assert_eq!(java_float(1e10), "1.0E10");
        assert_eq!(java_float(3.4028235e38), "3.4028235E38");
    }

    #[test]
    fn rows_in_hive_text() {
        let batch = RecordBatch::try_from_iter(vec![
            (
                "ts",
                Arc::new(TimestampNanosecondArray::from(vec![
                    Some(1_404_554_400_000_000_000),
                    Some(1_404_554_400_120_000_000),
                    None,
                ])) as _,
            ),
            (
                "d",
                Arc::new(Float64Array::from(vec![Some(1e20), Some(0.1), None])) as _,
            ),
            (
                "f",
                Arc::new(Float32Array::from(vec![Some(1.5), None, Some(2.0)])) as _,
            ),
            (
                "b",
                Arc::new(BooleanArray::from(vec![Some(true), Some(false), None])) as _,
            ),
            (
                "day",
                Arc::new(Date32Array::from(vec![Some(16256), None, Some(0)])) as _,
            ),
            (
                "n",
                Arc::new(Int64Array::from(vec![Some(-7), None, Some(0)])) as _,
            ),
            (
                "s",
                Arc::new(StringArray::from(vec![Some("a b"), Some(""), None])) as _,
            ),
        ])
        .unwrap();
        let hive = rows(std::slice::from_ref(&batch), &TextFormat::default()).unwrap();
        assert_eq!(
            hive,
            "2014-07-05 10:00:00\u{1}1.0E20\u{1}1.5\u{1}true\u{1}2014-07-05\u{1}-7\u{1}a b\n\
             2014-07-05 10:00:00.12\u{1}0.1\u{1}\\N\u{1}false\u{1}\\N\u{1}\\N\u{1}\n\
             \\N\u{1}\\N\u{1}2.0\u{1}\\N\u{1}1970-01-01\u{1}0\u{1}\\N\n"
        );
        let csv = TextFormat {
            field_delimiter: ',',
            null: "NULL".into(),
        };
        let text = rows(&[batch], &csv).unwrap();
        assert!(
            text.ends_with("NULL,NULL,2.0,NULL,1970-01-01,0,NULL\n"),
            "{text}"
        );
    }
}
