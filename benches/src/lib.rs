//! riffle-benches: macro benchmarks that compare Riffle with baselines in
//! the same run (see `benches/embedded.sh`), and the baseline programs
//! themselves (`src/bin/*_baseline.rs`).

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// The files named on the command line: each argument a file or a directory
/// of files (hidden files skipped), sorted.
pub fn input_files(args: impl Iterator<Item = String>) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for arg in args {
        let path = PathBuf::from(arg);
        if path.is_dir() {
            for entry in std::fs::read_dir(&path)? {
                let p = entry?.path();
                let hidden = p
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with('.') || n.starts_with('_'));
                if p.is_file() && !hidden {
                    files.push(p);
                }
            }
        } else {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// A buffered reader of a plain or gzip (`.gz`) file.
pub fn open(path: &Path) -> std::io::Result<Box<dyn BufRead>> {
    let file = std::fs::File::open(path)?;
    let reader: Box<dyn Read> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(flate2::read::MultiGzDecoder::new(file))
    } else {
        Box::new(file)
    };
    Ok(Box::new(BufReader::with_capacity(1 << 16, reader)))
}
