//! The only bridge between tokio and rayon.
//!
//! Async code calls [`run_cpu`] to run CPU-bound work on the executor's rayon
//! pool and awaits the result through a oneshot channel, so no tokio worker is
//! ever blocked by CPU work. Code on the rayon side never calls `block_on`;
//! it receives I/O results through bounded channels fed by tokio tasks.

use std::sync::Arc;

/// Runs `f` on `pool` and awaits its result. If the pool drops the job (it
/// is shutting down) the result is `None`.
pub async fn run_cpu<R, F>(pool: &Arc<rayon::ThreadPool>, f: F) -> Option<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    pool.spawn(move || {
        // The receiver may be gone if the task was cancelled; nothing to do.
        let _ = tx.send(f());
    });
    rx.await.ok()
}
