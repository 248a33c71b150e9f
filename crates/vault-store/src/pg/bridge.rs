//! From the store's synchronous calls to tokio-postgres's futures.
//!
//! [`Engine`](crate::Engine) methods are called from plain threads (the committer, library
//! callers) and from inside the worker threads of another tokio runtime (the daemon's handlers
//! call the vault synchronously). `Handle::block_on` and `blocking_recv` panic in the latter, so
//! the engine owns a small runtime of its own: a call's future runs there (spawned, or queued to
//! a task that is already running) and the caller waits on a `std::sync::mpsc` channel, with a
//! bound, so no caller can wait for ever. A caller on a worker thread of a multi-threaded
//! runtime waits inside `block_in_place`: the runtime moves the worker's other tasks to another
//! thread meanwhile, so one handler waiting for the database does not hold up the others (with
//! two workers, two waiting handlers would otherwise stop the daemon).

use std::{
    future::Future,
    sync::mpsc::{self, RecvTimeoutError},
    time::Duration,
};

use tokio::runtime::{Builder, Handle, Runtime};

use crate::{StoreError, Unavailable};

/// Worker threads of the engine's runtime (at most; fewer on a smaller machine).
const MAX_WORKERS: usize = 4;

/// The engine's own runtime.
pub(crate) struct Bridge {
    /// `None` once shut down (in `Drop`).
    runtime: Option<Runtime>,
    handle: Handle,
}

impl Bridge {
    pub(crate) fn new() -> Result<Self, StoreError> {
        let workers = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .clamp(2, MAX_WORKERS);
        let runtime = Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name("cardvault-pg")
            .enable_all()
            .build()?;
        Ok(Self {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
        })
    }

    /// Runs `work` on the engine's runtime and waits for it, at most `limit` (the futures bound
    /// their own waits well below it; this is the backstop).
    pub(crate) fn run<T, F>(&self, limit: Duration, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        let (tx, rx) = mpsc::sync_channel(1);
        self.handle.spawn(async move {
            let _ = tx.send(work.await);
        });
        receive(&rx, limit)
    }

    /// The engine's runtime.
    pub(crate) fn handle(&self) -> &Handle {
        &self.handle
    }
}

/// Waits for the answer on `rx`, at most `limit`; a sender dropped unanswered (the runtime is
/// shutting down) reads as closed.
pub(crate) fn receive<T>(
    rx: &mpsc::Receiver<Result<T, StoreError>>,
    limit: Duration,
) -> Result<T, StoreError> {
    match wait(|| rx.recv_timeout(limit)) {
        Ok(result) => result,
        Err(RecvTimeoutError::Timeout) => {
            Err(StoreError::Unavailable(Unavailable::StatementTimeout))
        }
        Err(RecvTimeoutError::Disconnected) => Err(StoreError::Closed),
    }
}

/// Runs the blocking `f`; on a worker thread of a multi-threaded tokio runtime, the worker's other
/// tasks are handed to another thread meanwhile (`block_in_place`), so a synchronous call made
/// from an async handler does not stall the handlers queued behind it.
fn wait<R>(f: impl FnOnce() -> R) -> R {
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        // Without waiting: the engine may be dropped on another runtime's worker thread, where a
        // blocking shutdown panics. Open connections are closed with their tasks.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::Arc, time::Duration};

    use super::Bridge;
    use crate::{StoreError, Unavailable};

    #[test]
    fn a_caller_on_a_runtime_worker_does_not_hold_up_the_workers_other_tasks() {
        let bridge = Arc::new(Bridge::new().expect("bridge"));
        let outer = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let (tx, rx) = tokio::sync::oneshot::channel::<u32>();
        let answer = outer.block_on(async move {
            // The call waits on the runtime's only worker for what a task queued behind it
            // sends: it gets it only if the worker's other tasks run elsewhere meanwhile.
            let waiting = tokio::spawn(async move {
                bridge.run(Duration::from_secs(20), async move {
                    rx.await.map_err(|_| StoreError::Closed)
                })
            });
            tokio::spawn(async move {
                let _ = tx.send(7);
            });
            waiting.await.expect("task")
        });
        assert_eq!(answer.expect("answer"), 7);
    }

    #[test]
    fn a_call_works_from_inside_another_runtime_and_waits_are_bounded() {
        let bridge = Bridge::new().expect("bridge");
        let outer = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let n = outer.block_on(async { bridge.run(Duration::from_secs(5), async { Ok(7) }) });
        assert_eq!(n.expect("answer"), 7);
        let slow = bridge.run(Duration::from_millis(20), async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(())
        });
        assert!(matches!(
            slow,
            Err(StoreError::Unavailable(Unavailable::StatementTimeout))
        ));
        // Dropped inside a runtime: no panic.
        outer.block_on(async move { drop(bridge) });
    }
}
