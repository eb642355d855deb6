//! Synthetic data sets behind `riffle gen`.
//!
//! [`cloudfront`] writes CloudFront access logs in the legacy format of the
//! AWS Hive/EMR tutorial (11 space-separated fields, the user agent with
//! `%20` for spaces), deterministic for a seed and generated in parallel.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use anyhow::{Context, bail};
use flate2::{Compression, write::GzEncoder};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

/// Options of `riffle gen cloudfront`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudFrontGenOptions {
    /// Log lines over all files, malformed ones included, headers excluded.
    pub lines: u64,
    /// Number of files (at least 1); lines are spread evenly.
    pub files: usize,
    /// The same options give the same files, byte for byte.
    pub seed: u64,
    /// Output directory, created if missing.
    pub out: PathBuf,
    /// Write gzip files (`.log.gz`, fastest level) instead of `.log`.
    pub gzip: bool,
    /// Write the directory as real-world tools leave them, to test that
    /// readers follow Hadoop's input conventions: marker files and
    /// directories holding log lines that are not data (`_SUCCESS`,
    /// `_temporary/`, `.staging/`, `_logs/`, `.crc` files), `\n`, `\r\n` and
    /// lone `\r` line ends, UTF-8 byte-order marks, dates without leading
    /// zeros (`2014-7-6`), file names with ` `, `#`, `?` and `%20`, and with
    /// `gzip`, NUL padding after the gzip stream and a 0-byte `.gz` file.
    pub wild: bool,
}

/// What a generator wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GenSummary {
    /// Log lines written (headers excluded), malformed ones included.
    pub lines: u64,
    /// Malformed lines among them (truncated, garbage, missing fields, bad
    /// values).
    pub malformed: u64,
    /// Uncompressed bytes written, headers included.
    pub bytes: u64,
    /// Bytes on disk (less than `bytes` with gzip).
    pub disk_bytes: u64,
    /// Files written.
    pub files: usize,
}

/// The two header lines each CloudFront log file starts with.
pub const CLOUDFRONT_HEADER: &str = "#Version: 1.0\n#Fields: date time x-edge-location sc-bytes c-ip cs-method cs(Host) cs-uri-stem sc-status cs(Referer) cs(User-Agent)\n";

const EDGES: &[&str] = &[
    "LHR3", "LHR5", "LHR50", "IAD12", "IAD2", "IAD53", "SFO4", "SFO5", "SFO20", "DFW3", "DFW50",
    "JFK1", "JFK5", "EWR2", "ORD51", "ATL50", "MIA3", "SEA4", "LAX1", "LAX3", "AMS1", "AMS50",
    "FRA2", "FRA6", "CDG3", "CDG50", "MAD50", "MXP4", "ARN1", "DUB2", "NRT4", "NRT12", "HKG1",
    "HKG50", "SIN2", "SIN3", "SYD1", "GRU1", "GRU2", "ICN50",
];
#[rustfmt::skip]
const HOSTS: &[&str] = &[
    "d111111abcdef8.cloudfront.net", "d2cw4qnzz1yn0d.cloudfront.net",
    "eabcd12345678.cloudfront.net", "d3kh1ax0a7klrg.cloudfront.net",
    "static.example.com", "media.example.org",
];
#[rustfmt::skip]
const DIRS: &[&str] = &[
    "", "/images", "/img/2014", "/css", "/js", "/static", "/video", "/assets/v2", "/docs", "/media",
];
#[rustfmt::skip]
const NAMES: &[&str] = &[
    "/index", "/logo", "/banner", "/test-image-1", "/test-image-2",
    "/main", "/thumb", "/hero", "/intro", "/sprite",
];
const EXTS: &[&str] = &[".html", ".jpeg", ".png", ".css", ".js", ".mp4"];
#[rustfmt::skip]
const REFERRERS: &[&str] = &[
    "http://www.example.com/", "http://www.example.com/products/index.html",
    "https://www.google.com/search?q=cloudfront", "http://www.bing.com/search?q=riffle+logs",
    "https://news.ycombinator.com/", "http://t.co/Xy9z", "https://www.facebook.com/",
    "http://blog.example.org/2014/07/launch",
];
/// (weight, (os, platform details)) of the user agent.
const OSES: &[(u32, (&str, &str))] = &[
    (40, ("Windows", "Windows%20NT%206.1")),
    (15, ("MacOS", "Intel%20Mac%20OS%20X%2010_9_3")),
    (10, ("OSX", "PPC%20Mac%20OS%20X%2010.5")),
    (10, ("Linux", "X11%20Linux%20x86_64")),
    (12, ("iOS", "CPU%20iPhone%20OS%207_1%20like%20Mac%20OS%20X")),
    (13, ("Android", "Linux%20Android%204.4.2")),
];
/// (browser, versions).
const BROWSERS: &[(&str, &[&str])] = &[
    ("Firefox", &["3.0.9", "30.0", "31.0"]),
    ("Chrome", &["35.0.1916.153", "36.0.1985.125"]),
    ("Safari", &["7.0.5", "6.1.5"]),
    ("IE", &["3.0.9", "9.0", "10.0", "11.0"]),
    ("Opera", &["12.16", "22.0.1471.70"]),
    ("Lynx", &["2.8.8"]),
];
/// (weight, status).
#[rustfmt::skip]
const STATUSES: &[(u32, &str)] = &[
    (850, "200"), (80, "304"), (40, "404"), (10, "206"), (8, "403"), (12, "500"),
];
/// July and August 2014, in seconds.
const SPAN_SECONDS: u64 = 62 * 86_400;

/// Writes `opts.files` CloudFront log files `cloudfront-NNNNN.log[.gz]` with
/// `opts.lines` log lines in total into `opts.out`, in parallel.
///
/// Lines run in time order over July and August 2014 within each file;
/// about 0.1% are malformed. Files from an earlier run with more files are
/// not removed.
pub fn cloudfront(opts: &CloudFrontGenOptions) -> anyhow::Result<GenSummary> {
    if opts.files == 0 {
        bail!("gen cloudfront: --files must be at least 1");
    }
    fs::create_dir_all(&opts.out)
        .with_context(|| format!("creating output directory {}", opts.out.display()))?;
    let files = opts.files as u64;
    let per_file: Vec<GenSummary> = (0..opts.files)
        .into_par_iter()
        .map(|index| {
            let lines = opts.lines / files + u64::from((index as u64) < opts.lines % files);
            cloudfront_file(opts, index, lines)
        })
        .collect::<anyhow::Result<_>>()?;
    if opts.wild {
        write_markers(opts)?;
    }
    Ok(per_file
        .iter()
        .fold(GenSummary::default(), |a, s| GenSummary {
            lines: a.lines + s.lines,
            malformed: a.malformed + s.malformed,
            bytes: a.bytes + s.bytes,
            disk_bytes: a.disk_bytes + s.disk_bytes,
            files: a.files + s.files,
        }))
}

fn cloudfront_file(
    opts: &CloudFrontGenOptions,
    index: usize,
    lines: u64,
) -> anyhow::Result<GenSummary> {
    let suffix = if opts.gzip { ".gz" } else { "" };
    let awkward = if opts.wild {
        ["", " #1", "?", "%20x"][index % 4]
    } else {
        ""
    };
    let path = opts
        .out
        .join(format!("cloudfront-{index:05}{awkward}.log{suffix}"));
    let shape = if opts.wild {
        Shape {
            line_end: [&b"\n"[..], b"\r\n", b"\r"][index % 3],
            bom: index % 2 == 1,
            short_dates: true,
        }
    } else {
        Shape::PLAIN
    };
    let context = || format!("writing {}", path.display());
    let file = File::create(&path).with_context(context)?;
    let writer = BufWriter::with_capacity(1 << 20, file);
    let seed = opts.seed ^ (index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut summary = if opts.gzip {
        let mut gz = GzEncoder::new(writer, Compression::fast());
        let summary = write_lines(&mut gz, &mut rng, lines, shape).with_context(context)?;
        let mut file = gz
            .finish()
            .and_then(|w| w.into_inner().map_err(|e| e.into_error()))
            .with_context(context)?;
        if opts.wild {
            // Padding as block devices and some archivers leave it.
            file.write_all(&[0; 512]).with_context(context)?;
        }
        summary
    } else {
        let mut writer = writer;
        let summary = write_lines(&mut writer, &mut rng, lines, shape).with_context(context)?;
        writer.flush().with_context(context)?;
        summary
    };
    summary.disk_bytes = fs::metadata(&path).with_context(context)?.len();
    summary.files = 1;
    Ok(summary)
}

/// How a file's text is laid out.
#[derive(Debug, Clone, Copy)]
struct Shape {
    /// What ends each line.
    line_end: &'static [u8],
    /// A UTF-8 byte-order mark starts the file.
    bom: bool,
    /// Some dates without leading zeros (`2014-7-6`).
    short_dates: bool,
}

impl Shape {
    const PLAIN: Shape = Shape {
        line_end: b"\n",
        bom: false,
        short_dates: false,
    };
}

/// Marker files and directories other tools leave next to data: each holds
/// valid log lines (or junk) that a reader must not count.
fn write_markers(opts: &CloudFrontGenOptions) -> anyhow::Result<()> {
    let mut rng = SmallRng::seed_from_u64(opts.seed ^ 0x005E_ED0F_0DD5);
    let mut ghost = Vec::new();
    write_lines(&mut ghost, &mut rng, 50, Shape::PLAIN)?;
    let files: [(&str, &[u8]); 6] = [
        ("_SUCCESS", b""),
        ("_temporary/0/_temporary/attempt_1/part-00002", &ghost),
        (".staging/cloudfront-99999.log", &ghost),
        ("_logs/history/cloudfront.log", &ghost),
        (".cloudfront-00000.log.crc", b"crc\x00\x01junk"),
        ("sub/_partial.log", &ghost),
    ];
    for (name, bytes) in files {
        let path = opts.out.join(name);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
    }
    if opts.gzip {
        let path = opts.out.join("empty-00000.log.gz");
        fs::write(&path, b"").with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn write_lines<W: Write>(
    w: &mut W,
    rng: &mut SmallRng,
    lines: u64,
    shape: Shape,
) -> std::io::Result<GenSummary> {
    const CHUNK: usize = 1 << 20;
    let mut buf = Vec::with_capacity(CHUNK + 4096);
    let mut summary = GenSummary {
        lines,
        ..GenSummary::default()
    };
    if shape.bom {
        buf.extend_from_slice(b"\xEF\xBB\xBF");
    }
    for header in CLOUDFRONT_HEADER.lines() {
        buf.extend_from_slice(header.as_bytes());
        buf.extend_from_slice(shape.line_end);
    }
    let step = (SPAN_SECONDS / lines.max(1)).max(1);
    for j in 0..lines {
        let base = (u128::from(j) * u128::from(SPAN_SECONDS) / u128::from(lines)) as u64;
        let time = base + rng.random_range(0..step);
        if rng.random_range(0..1000) == 0 {
            summary.malformed += 1;
            malformed_line(&mut buf, rng, time);
        } else {
            let start = buf.len();
            log_line(&mut buf, rng, time, true);
            if shape.short_dates && rng.random_range(0..4) == 0 {
                shorten_date(&mut buf, start);
            }
        }
        buf.extend_from_slice(shape.line_end);
        if buf.len() >= CHUNK {
            w.write_all(&buf)?;
            summary.bytes += buf.len() as u64;
            buf.clear();
        }
    }
    w.write_all(&buf)?;
    summary.bytes += buf.len() as u64;
    Ok(summary)
}

/// Drops the leading zeros of the month and day of the line at `start`
/// (`2014-07-06` becomes `2014-7-6`), as some log writers do.
fn shorten_date(buf: &mut Vec<u8>, start: usize) {
    if buf[start + 8] == b'0' {
        buf.remove(start + 8);
    }
    if buf[start + 5] == b'0' {
        buf.remove(start + 5);
    }
}

/// A malformed line: truncated, garbage, missing fields or bad values.
fn malformed_line(buf: &mut Vec<u8>, rng: &mut SmallRng, time: u64) {
    let start = buf.len();
    match rng.random_range(0..4) {
        0 => {
            log_line(buf, rng, time, true);
            let len = rng.random_range(1..buf.len() - start);
            buf.truncate(start + len);
        }
        1 => {
            for _ in 0..rng.random_range(1..120) {
                buf.push(rng.random_range(b' '..=b'~'));
            }
        }
        2 => log_line(buf, rng, time, false),
        _ => {
            log_line(buf, rng, time, true);
            // A day 3x (mostly invalid) and a non-numeric byte count.
            buf[start + 8] = b'3';
            let spaces = buf[start..].iter().enumerate().filter(|&(_, &c)| c == b' ');
            if let Some(third) = spaces.map(|(i, _)| start + i).nth(2) {
                buf.insert(third + 1, b'x');
            }
        }
    }
}

/// One log line at `time` seconds after 2014-07-01T00:00:00 (without the
/// referrer and user agent unless `complete`).
fn log_line(buf: &mut Vec<u8>, rng: &mut SmallRng, time: u64, complete: bool) {
    let day = time / 86_400;
    let (month, day) = if day < 31 {
        (7, day + 1)
    } else {
        (8, day - 30)
    };
    buf.extend_from_slice(b"2014-0");
    push_u64(buf, month);
    buf.push(b'-');
    push_2(buf, day);
    buf.push(b' ');
    push_2(buf, time / 3600 % 24);
    buf.push(b':');
    push_2(buf, time / 60 % 60);
    buf.push(b':');
    push_2(buf, time % 60);
    buf.push(b' ');
    push(buf, pick(rng, EDGES));
    let bytes = match rng.random_range(0..10) {
        0..=4 => rng.random_range(200..5_000),
        5..=8 => rng.random_range(5_000..200_000),
        _ => rng.random_range(200_000..20_000_000),
    };
    push_u64(buf, bytes);
    buf.push(b' ');
    let ip: u32 = rng.random();
    let first = match ip >> 29 {
        0 => 10,
        1 => 192,
        _ => u64::from(ip >> 24) % 223 + 1,
    };
    push_u64(buf, first);
    for shift in [16, 8, 0] {
        buf.push(b'.');
        push_u64(buf, u64::from((ip >> shift) & 0xFF));
    }
    buf.push(b' ');
    let method = match rng.random_range(0..100) {
        0..=89 => "GET",
        90..=96 => "HEAD",
        _ => "POST",
    };
    push(buf, method);
    push(buf, pick(rng, HOSTS));
    // 600 URIs, the first 60 much more popular.
    let mut uri = rng.random_range(0..DIRS.len() * NAMES.len() * EXTS.len());
    if rng.random_bool(0.5) {
        uri %= 60;
    }
    buf.extend_from_slice(DIRS[uri % DIRS.len()].as_bytes());
    buf.extend_from_slice(NAMES[uri / DIRS.len() % NAMES.len()].as_bytes());
    push(buf, EXTS[uri / (DIRS.len() * NAMES.len())]);
    push(buf, weighted(rng, STATUSES));
    if !complete {
        buf.truncate(buf.len() - 1);
        return;
    }
    if rng.random_bool(0.5) {
        push(buf, "-");
    } else {
        push(buf, pick(rng, REFERRERS));
    }
    let (os, details) = weighted(rng, OSES);
    buf.extend_from_slice(b"Mozilla/5.0%20(");
    buf.extend_from_slice(os.as_bytes());
    buf.extend_from_slice(b";%20U;%20");
    buf.extend_from_slice(details.as_bytes());
    buf.extend_from_slice(b";%20en-US;%20rv:1.9.0.9)%20Gecko/2009040821%20");
    let (browser, versions) = BROWSERS[rng.random_range(0..BROWSERS.len())];
    buf.extend_from_slice(browser.as_bytes());
    buf.push(b'/');
    buf.extend_from_slice(pick(rng, versions).as_bytes());
}

/// Pushes `field` and a space.
fn push(buf: &mut Vec<u8>, field: &str) {
    buf.extend_from_slice(field.as_bytes());
    buf.push(b' ');
}

fn pick<'a>(rng: &mut SmallRng, items: &[&'a str]) -> &'a str {
    items[rng.random_range(0..items.len())]
}

fn weighted<T: Copy>(rng: &mut SmallRng, items: &[(u32, T)]) -> T {
    let total: u32 = items.iter().map(|(w, _)| w).sum();
    let mut r = rng.random_range(0..total);
    for &(weight, item) in items {
        if r < weight {
            return item;
        }
        r -= weight;
    }
    items[items.len() - 1].1
}

fn push_2(buf: &mut Vec<u8>, v: u64) {
    buf.push(b'0' + (v / 10 % 10) as u8);
    buf.push(b'0' + (v % 10) as u8);
}

fn push_u64(buf: &mut Vec<u8>, mut v: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    buf.extend_from_slice(&digits[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::path::Path;

    fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
        let mut files: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().into_string().unwrap(),
                    fs::read(e.path()).unwrap(),
                )
            })
            .collect();
        files.sort();
        files
    }

    fn opts(out: &Path, seed: u64, gzip: bool) -> CloudFrontGenOptions {
        CloudFrontGenOptions {
            lines: 20_001,
            files: 3,
            seed,
            out: out.to_owned(),
            gzip,
            wild: false,
        }
    }

    #[test]
    fn deterministic_with_headers_and_parsable_lines() -> anyhow::Result<()> {
        let (a, b, c) = (
            tempfile::tempdir()?,
            tempfile::tempdir()?,
            tempfile::tempdir()?,
        );
        let summary = cloudfront(&opts(a.path(), 7, false))?;
        assert_eq!(cloudfront(&opts(b.path(), 7, false))?, summary);
        cloudfront(&opts(c.path(), 8, false))?;
        let (fa, fb) = (files(a.path()), files(b.path()));
        assert_eq!(fa, fb);
        assert_ne!(fa, files(c.path()));
        let names: Vec<&str> = fa.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "cloudfront-00000.log",
                "cloudfront-00001.log",
                "cloudfront-00002.log"
            ]
        );
        assert_eq!((summary.lines, summary.files), (20_001, 3));
        assert!(
            summary.malformed > 2 && summary.malformed < 60,
            "{summary:?}"
        );
        let parser = riffle_sql::cloudfront::CloudFrontParser::new();
        let (mut lines, mut parsed, mut bytes) = (0, 0, 0);
        for (_, data) in &fa {
            bytes += data.len() as u64;
            let text = std::str::from_utf8(data)?;
            assert!(text.starts_with(CLOUDFRONT_HEADER) && text.ends_with('\n'));
            for line in text.lines().skip(2) {
                lines += 1;
                parsed += u64::from(parser.parse_os_and_date(line).is_some());
            }
        }
        assert_eq!(
            (lines, bytes, summary.disk_bytes),
            (20_001, summary.bytes, summary.bytes)
        );
        assert!(
            parsed + summary.malformed >= lines && parsed < lines,
            "{parsed} {summary:?}"
        );
        Ok(())
    }

    #[test]
    fn gzip_holds_the_same_text() -> anyhow::Result<()> {
        let (plain, gz) = (tempfile::tempdir()?, tempfile::tempdir()?);
        let summary = cloudfront(&opts(plain.path(), 3, false))?;
        let gz_summary = cloudfront(&opts(gz.path(), 3, true))?;
        assert_eq!(gz_summary.bytes, summary.bytes);
        assert!(gz_summary.disk_bytes < summary.bytes / 3);
        for ((_, text), (name, data)) in files(plain.path()).iter().zip(files(gz.path())) {
            assert!(name.ends_with(".log.gz"));
            let mut decoded = Vec::new();
            flate2::read::GzDecoder::new(&data[..]).read_to_end(&mut decoded)?;
            assert_eq!(&decoded, text);
        }
        Ok(())
    }
}
