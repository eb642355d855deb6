//! Integration tests of the embedded engine. One test binary (modules
//! below), so DataFusion-sized dependencies are linked once.

// Test helpers outside `#[test]` functions unwrap freely too.
#![allow(clippy::unwrap_used)]

mod chaos;
mod cluster;
mod dataset;
mod examples;
mod faults;
mod s3;
mod scheduling;
mod sql;
mod text_input;
mod tpch;
mod ui;
mod wire;
