//! The driver's I/O runtime, usable from any caller.
//!
//! The blocking API (`collect`, `text_file`, `ctx.sql`) drives async work
//! on the context's own runtime. `Runtime::block_on` panics when called
//! from inside another tokio runtime, and dropping a runtime there panics
//! too; [`IoRuntime`] does neither, so a `Context` works the same from
//! `main`, from a `#[tokio::main]` program and from a `#[tokio::test]`.

use std::future::Future;

/// A multi-threaded tokio runtime whose blocking entry points are safe to
/// call from inside another runtime.
pub(crate) struct IoRuntime(Option<tokio::runtime::Runtime>);

impl IoRuntime {
    /// A runtime with `workers` threads named `riffle-io`.
    pub(crate) fn new(workers: usize) -> std::io::Result<IoRuntime> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name("riffle-io")
            // Stage planning recurses over the lineage on these threads
            // (it ran on the caller's 8 MiB main thread before).
            .thread_stack_size(8 << 20)
            .enable_all()
            .build()?;
        Ok(IoRuntime(Some(runtime)))
    }

    fn runtime(&self) -> &tokio::runtime::Runtime {
        match &self.0 {
            Some(rt) => rt,
            // Only `Drop` takes the runtime out.
            None => unreachable!("the I/O runtime is used after drop"),
        }
    }

    /// A handle for spawning onto the runtime.
    pub(crate) fn handle(&self) -> &tokio::runtime::Handle {
        self.runtime().handle()
    }

    /// Runs `future` to completion on this runtime. From inside another
    /// runtime (where blocking that runtime's thread on ours would panic)
    /// it runs on a scoped helper thread instead.
    pub(crate) fn block_on<F>(&self, future: F) -> F::Output
    where
        F: Future + Send,
        F::Output: Send,
    {
        block_on(self.handle(), future)
    }
}

/// Runs `future` to completion on the runtime of `handle`, from any
/// thread: from inside another runtime (where blocking its thread would
/// panic) it runs on a scoped helper thread instead.
pub(crate) fn block_on<F>(handle: &tokio::runtime::Handle, future: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    if tokio::runtime::Handle::try_current().is_err() {
        return handle.block_on(future);
    }
    std::thread::scope(|s| match s.spawn(|| handle.block_on(future)).join() {
        Ok(output) => output,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

impl Drop for IoRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            if tokio::runtime::Handle::try_current().is_ok() {
                // Dropping would block inside the caller's runtime.
                rt.shutdown_background();
            } else {
                drop(rt);
            }
        }
    }
}
