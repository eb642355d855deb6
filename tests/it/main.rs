//! Integration tests of the Dataset API, run on the embedded engine.

mod dataset;
