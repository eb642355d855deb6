//! The build id: proof that two processes run the byte-identical program,
//! required before an executor may run shipped closures.

use std::hash::Hasher;
use std::io::Read;
use std::sync::OnceLock;

/// A hash of this process's executable file, computed once. Two processes
/// with equal build ids run the same code at the same offsets.
pub fn build_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| compute().unwrap_or_else(|e| format!("unknown ({e})")))
}

fn compute() -> std::io::Result<String> {
    let path = std::env::current_exe()?;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = rustc_hash::FxHasher::default();
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.write(&buf[..n]);
        len += n as u64;
    }
    Ok(format!("{:016x}-{len}", hasher.finish()))
}
