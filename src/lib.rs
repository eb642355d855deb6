//! Riffle: a distributed dataflow engine in Rust, in the family of Spark and
//! Dask: typed, lazy datasets (RDD style) and SQL over Arrow, embedded on a
//! laptop with no set-up.
//!
//! ```no_run
//! use riffle::prelude::*;
//!
//! let ctx = Context::local()?;
//! let counts = ctx
//!     .text_file("logs/*.gz")?
//!     .flat_map(|line: String| line.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
//!     .map(|word| (word, 1u64))
//!     .reduce_by_key(|a, b| a + b)
//!     .collect()?;
//! # Ok::<(), riffle::DriverError>(())
//! ```
//!
//! This crate re-exports the driver API ([`prelude`]) and holds the `riffle`
//! command-line tool. See `ARCHITECTURE.md` for where everything lives.

pub mod datagen;

pub use riffle_driver::{Config, Context, ContextBuilder, Data, Dataset, DriverError, JobSummary};
pub use riffle_sql as sql;

/// Everything a job needs: `use riffle::prelude::*;`.
pub mod prelude {
    pub use riffle_driver::{Context, Data, Dataset, DriverError};
    pub use riffle_planner::pipeline::BoxIter;
}
