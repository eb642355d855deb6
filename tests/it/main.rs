//! Integration tests of the embedded engine. One test binary (modules
//! below), so DataFusion-sized dependencies are linked once.

// Test helpers outside `#[test]` functions unwrap freely too.
#![allow(clippy::unwrap_used)]

mod auth;
mod chaos;
mod cluster;
mod conventions;
mod dataset;
mod examples;
mod faults;
mod memory;
mod s3;
mod scheduling;
mod sql;
mod text_input;
mod tls;
mod tpch;
mod ui;
mod wire;

/// Runs `scripts/install-test-deps.sh`, which installs what the tests need
/// besides Rust (the README's test command must work on a fresh machine);
/// `why` names what needs it, for the failure message.
pub(crate) fn install_test_deps(why: &str) {
    let root = env!("CARGO_MANIFEST_DIR");
    let status = std::process::Command::new("bash")
        .arg(format!("{root}/scripts/install-test-deps.sh"))
        .status()
        .expect("running scripts/install-test-deps.sh");
    assert!(
        status.success(),
        "scripts/install-test-deps.sh failed: {why}"
    );
}
