//! Graceful shutdown: tell every connection to finish its current request and close, then wait
//! for them (up to a deadline). The same shape as mini-redis: a `watch` to broadcast the signal
//! and an `mpsc` whose senders, one per connection, are dropped as connections end.

use std::time::Duration;

use tokio::sync::{mpsc, watch};

/// Owned by `serve`.
pub(crate) struct Drain {
    signal: watch::Sender<bool>,
    done_tx: mpsc::Sender<()>,
    done_rx: mpsc::Receiver<()>,
}

/// Held by each connection task for its lifetime.
pub(crate) struct ConnGuard {
    /// Changes to `true` when the daemon stops.
    pub(crate) signal: watch::Receiver<bool>,
    _done: mpsc::Sender<()>,
}

impl Drain {
    pub(crate) fn new() -> Self {
        let (signal, _) = watch::channel(false);
        let (done_tx, done_rx) = mpsc::channel(1);
        Self {
            signal,
            done_tx,
            done_rx,
        }
    }

    pub(crate) fn guard(&self) -> ConnGuard {
        ConnGuard {
            signal: self.signal.subscribe(),
            _done: self.done_tx.clone(),
        }
    }

    /// Signals every connection and waits until all have ended, or `grace` has passed. Returns
    /// true when every connection ended in time.
    pub(crate) async fn drain(self, grace: Duration) -> bool {
        let Self {
            signal,
            done_tx,
            mut done_rx,
        } = self;
        let _ = signal.send(true);
        drop(done_tx);
        // `recv` yields `None` once every guard is dropped; nothing is ever sent.
        tokio::time::timeout(grace, done_rx.recv()).await.is_ok()
    }
}
