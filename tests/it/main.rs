//! Integration tests of the embedded engine. One test binary (modules
//! below), so DataFusion-sized dependencies are linked once.

mod dataset;
mod text_input;
