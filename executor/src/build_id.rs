//! The build id: proof that two processes run the byte-identical program,
//! required before an executor may run shipped closures (see the safety
//! argument in [`riffle_planner::function`]).
//!
//! The id hashes the *running* image: on Linux `/proc/self/exe` opens the
//! inode the process was started from even if the file at that path was
//! replaced since (a rebuild, a redeploy), so the id describes the code
//! that runs. It is computed once; `riffle::init()` computes it at start-up,
//! before anything could have replaced the file on other systems.

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

/// The BLAKE3 hash of this process's executable and its length in bytes,
/// as `<64 hex digits>-<length>`, computed once. Two processes with equal
/// build ids run the same code at the same offsets.
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
    let mut file = std::fs::File::open(&path).map_err(|e| fail(&shown, e))?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(|e| fail(&shown, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        len += n as u64;
    }
    if len == 0 {
        return Err(BuildIdError {
            path: shown,
            message: "the file is empty".into(),
        });
    }
    Ok(format!("{}-{len}", hasher.finalize().to_hex()))
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
        let exe = std::fs::metadata(std::env::current_exe().unwrap()).unwrap();
        assert_eq!(len.parse::<u64>().unwrap(), exe.len());
    }
}
