//! The wire protocol (`proto/riffle/v1/rpc.proto`): generated messages and
//! the conversions between them and Riffle's own types (`convert.rs`).
//! Proto structs stay out of public APIs elsewhere.

pub mod convert;

/// Messages of package `riffle.v1`, generated at build time.
#[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
#[rustfmt::skip]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/riffle.v1.rs"));
}

/// Version of the protocol; registration with another version is refused.
pub const PROTOCOL_VERSION: u32 = 2;
