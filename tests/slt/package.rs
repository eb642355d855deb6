//! DataFusion's sqllogictest files, as crates.io ships them in the package
//! `datafusion-sqllogictest` of the exact DataFusion version Riffle links.
//! The package is downloaded from the registry cargo uses (never committed)
//! and checked against its published SHA-256 before it is unpacked.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The package: name-version, as crates.io names the archive.
pub const PACKAGE: &str = "datafusion-sqllogictest-55.2.0";
/// SHA-256 of the `.crate` archive (the `cksum` of the crates.io index).
const SHA256: &str = "b270cea4d8c2b2c42773e60164204386fb97d7936736e5f126ac751b86d7dabe";

/// The unpacked package (holding `test_files/`), downloaded on first use
/// into `<target dir>/slt/`.
pub fn unpacked() -> Result<PathBuf, String> {
    let base = target_dir()?.join("slt");
    let dir = base.join(PACKAGE);
    if dir.join("test_files").is_dir() {
        return Ok(dir);
    }
    std::fs::create_dir_all(&base).map_err(|e| format!("cannot create {}: {e}", base.display()))?;
    let archive = base.join(format!("{PACKAGE}.crate"));
    let url = format!(
        "https://static.crates.io/crates/{}/{PACKAGE}.crate",
        PACKAGE
            .rsplit_once('-')
            .map(|(name, _)| name)
            .unwrap_or(PACKAGE)
    );
    run(Command::new("curl")
        .args(["-sSfL", "--retry", "3", "-o"])
        .arg(&archive)
        .arg(&url))?;
    let sum = Command::new("sha256sum")
        .arg(&archive)
        .output()
        .map_err(|e| format!("sha256sum: {e}"))?;
    let sum = String::from_utf8_lossy(&sum.stdout);
    if sum.split_whitespace().next() != Some(SHA256) {
        let _ = std::fs::remove_file(&archive);
        return Err(format!(
            "{url}: checksum {sum} is not the published {SHA256}"
        ));
    }
    run(Command::new("tar")
        .arg("xzf")
        .arg(&archive)
        .arg("-C")
        .arg(&base))?;
    Ok(dir)
}

/// The target directory this test binary was built in
/// (`<target>/<profile>/deps/slt-<hash>`).
fn target_dir() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    exe.ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .ok_or_else(|| format!("{} is not inside a target directory", exe.display()))
}

fn run(command: &mut Command) -> Result<(), String> {
    let status = command.status().map_err(|e| format!("{command:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{command:?}: {status}"))
    }
}
