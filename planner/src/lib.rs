//! riffle-planner: the vocabulary every other Riffle crate shares.
//!
//! - [`ids`]: newtype ids for jobs, stages, shuffles and tasks.
//! - [`function`]: how a user closure travels to an executor, as a code offset
//!   inside the (identical) program binary plus its serialized state. All of
//!   Riffle's `unsafe` lives there.
//! - [`pipeline`]: the type-erased operator traits a stage is made of, and the
//!   [`pipeline::Partition`] that carries typed Rust values between them.
//! - [`task`]: the stage and task descriptors the driver sends and the
//!   statuses executors send back, always encoded to bytes (even in embedded
//!   mode) with [`task::encode`] / [`task::decode`].
//! - [`codec`]: the record encoding used at stage boundaries.
//! - [`memory`]: the memory pool and spill files operators draw from.
//! - [`failpoints`]: faults injected by tests and the chaos benchmark
//!   (`RIFFLE_FAILPOINTS`), off unless configured.
//!
//! ```text
//!   driver: Dataset<T> lineage --cut at shuffles--> StageSpec + TaskSpec (bytes)
//!                                                        |
//!   executor: decode -> FnRef::instantiate -> Partition iterators -> output
//! ```
//!
//! Architecture invariant: this crate does no I/O, starts no runtime and
//! knows nothing of networks or files.

pub mod codec;
pub mod corrupt;
pub mod decode_guard;
pub mod error;
pub mod failpoints;
pub mod function;
#[cfg(test)]
mod hostile_input;
pub mod ids;
pub mod memory;
pub mod pipeline;
pub mod proto;
pub mod task;

pub use error::{BoxError, PipelineError, report};
