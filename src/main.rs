//! riffle CLI
fn main() {}
