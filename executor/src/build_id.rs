//! The build id: proof that two processes run the byte-identical program,
//! required before an executor may run shipped closures (see the safety
//! argument in [`riffle_planner::function`]).
//!
//! The id hashes the *running* image: on Linux `/proc/self/exe` opens the
//! inode the process was started from even if the file at that path was
//! replaced since (a rebuild, a redeploy), so the id describes the code
//! that runs. It is computed once; `riffle::init()` computes it at start-up,
//! before anything could have replaced the file on other systems.
//!
//! Only the part of the file the loader maps is hashed: every loadable
//! segment (code, read-only data, initialized data) and the headers before
//! them, found with the `object` crate. The debug sections after them
//! (six sevenths of a release build with line tables, 660 of 785 MB) do
//! not run and cannot move a function; hashing them made every process
//! start a few tenths of a second slower. A file `object` cannot read is
//! hashed whole.

use std::io::Read;
use std::sync::OnceLock;
use thiserror::Error;

/// Why this process has no build id. Without one it can neither ship
/// closures nor run shipped ones: two binaries that failed the same way
/// must never look alike.
#[derive(Debug, Clone, Error)]
#[error("cannot compute the build id from the running executable {path}: {message}")]
pub struct BuildIdError {
    /// The file that was read.
    pub path: String,
    /// The cause.
    pub message: String,
}

/// The BLAKE3 hash of this process's loaded image (see the module
/// documentation) and its length in bytes, as `<64 hex digits>-<length>`,
/// computed once. Two processes with equal build ids run the same code at
/// the same offsets.
///
/// # Errors
///
/// [`BuildIdError`] when the executable cannot be read; the error is cached
/// too, so every caller sees the same answer.
pub fn build_id() -> Result<&'static str, BuildIdError> {
    static ID: OnceLock<Result<String, BuildIdError>> = OnceLock::new();
    ID.get_or_init(compute)
        .as_ref()
        .map(String::as_str)
        .map_err(Clone::clone)
}

/// The running executable: `/proc/self/exe` where it exists (the running
/// inode), else the path the standard library reports.
fn executable() -> std::io::Result<std::path::PathBuf> {
    let proc_exe = std::path::Path::new("/proc/self/exe");
    if proc_exe.exists() {
        Ok(proc_exe.to_path_buf())
    } else {
        std::env::current_exe()
    }
}

fn compute() -> Result<String, BuildIdError> {
    let fail = |path: &str, e: std::io::Error| BuildIdError {
        path: path.to_string(),
        message: e.to_string(),
    };
    let path = executable().map_err(|e| fail("(current executable)", e))?;
    let shown = path.display().to_string();
    let file = std::fs::File::open(&path).map_err(|e| fail(&shown, e))?;
    let image = loaded_image_len(&file).map_err(|e| fail(&shown, e))?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut reader = (&file).take(image.unwrap_or(u64::MAX));
    let mut len = 0u64;
    loop {
        let n = reader.read(&mut buf).map_err(|e| fail(&shown, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        len += n as u64;
    }
    if len == 0 || image.is_some_and(|image| len != image) {
        return Err(BuildIdError {
            path: shown,
            message: format!("read {len} bytes of a {} byte image", image.unwrap_or(0)),
        });
    }
    Ok(format!("{}-{len}", hasher.finalize().to_hex()))
}

/// Where the last loadable segment of `file` ends (its file range), or
/// `None` if `object` cannot read the file as an executable; the file is
/// read back at offset 0.
fn loaded_image_len(file: &std::fs::File) -> std::io::Result<Option<u64>> {
    use object::{Object, ObjectSegment};
    use std::io::{Seek, SeekFrom};
    let cache = object::ReadCache::new(file);
    let end = match object::File::parse(&cache) {
        Ok(parsed) => parsed
            .segments()
            .map(|segment| {
                let (offset, size) = segment.file_range();
                offset.saturating_add(size)
            })
            .max()
            .filter(|&end| end > 0),
        Err(_) => None,
    };
    drop(cache);
    let mut file = file;
    file.seek(SeekFrom::Start(0))?;
    Ok(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_is_stable_and_names_the_running_binary() {
        let id = build_id().unwrap();
        assert_eq!(build_id().unwrap(), id);
        let (hash, len) = id.split_once('-').unwrap();
        assert_eq!(hash.len(), 64, "{id}");
        // The loaded image: more than the ELF header, at most the file.
        let exe = std::fs::metadata(std::env::current_exe().unwrap()).unwrap();
        let len = len.parse::<u64>().unwrap();
        assert!(len > 4096 && len <= exe.len(), "{len} of {}", exe.len());
    }
}
