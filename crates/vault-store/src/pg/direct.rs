//! The committer's own connection, driven on the committer's thread: a group commit made outside
//! any tokio runtime (the committer is a plain thread) enters a runtime of its own with
//! `block_on`, so its statement goes out and its answer comes back on the same thread: one round
//! trip, no hand-off to the engine's runtime and back. The committer's own point reads (a job's
//! reads of the committed state) take it too. A call from inside a tokio runtime (where
//! `block_on` is not allowed), a read from any other thread, and everything while the connection
//! is disabled (`pool_max_size=1`: the pool's one connection is all the engine may have) take
//! the shared path (the pool, the queue of point reads).
//!
//! The bounds are the shared path's: the connection attempt, the operation limit on each
//! attempt, one more attempt on a fresh connection when the first one was lost before anything
//! could have been committed. A connection idle for [`IDLE_CHECK`] is checked with an empty
//! query before a group goes out on it, so a session the server ended meanwhile (a restart) is
//! found before anything is sent, not after.

use std::{
    thread::{self, ThreadId},
    time::{Duration, Instant},
};

use deadpool_postgres::ClientWrapper;
use parking_lot::Mutex;
use tokio::runtime::{Builder, Handle, Runtime};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{Inner, errors, errors::Fail};
use crate::{StoreError, Unavailable};

/// Run on the committer's connection once connected (see `Direct::connect`): each setting the
/// server offers with that value, the others left out, so that no server refuses the statement
/// (and logs an error on every connect).
const SESSION_SETTINGS: &str = "SELECT set_config(w.name, w.value, false) \
     FROM (VALUES ('plan_cache_mode', 'force_generic_plan'), \
                  ('default_toast_compression', 'lz4')) AS w(name, value) \
     JOIN pg_settings s ON s.name = w.name WHERE w.value = ANY(s.enumvals)";

/// How long a connection may sit unused before it is checked before use.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// The connection and the runtime that drives it.
pub(crate) struct Direct {
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    connect_timeout: Duration,
    state: Mutex<State>,
}

/// What a call is for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Use {
    /// A group commit (made by the committer): waits for the connection.
    Commit,
    /// A point read: only from the thread that commits, and only if the connection is free.
    Read,
}

struct State {
    /// `None` once shut down (in `Drop`), or disabled.
    runtime: Option<Runtime>,
    /// The thread that made the last commit.
    committer: Option<ThreadId>,
    client: Option<ClientWrapper>,
    used: Instant,
}

impl Direct {
    /// `enabled`: whether the engine may have this connection besides its pool.
    pub(crate) fn new(
        config: tokio_postgres::Config,
        tls: MakeRustlsConnect,
        connect_timeout: Duration,
        enabled: bool,
    ) -> Result<Self, StoreError> {
        let runtime = if enabled {
            Some(Builder::new_current_thread().enable_all().build()?)
        } else {
            None
        };
        Ok(Self {
            config,
            tls,
            connect_timeout,
            state: Mutex::new(State {
                runtime,
                committer: None,
                client: None,
                used: Instant::now(),
            }),
        })
    }

    /// Runs `work` on the connection from this thread; `None` when the caller must take the
    /// shared path (see the module's documentation).
    pub(crate) fn run<T>(
        &self,
        inner: &Inner,
        purpose: Use,
        mut work: impl AsyncFnMut(&ClientWrapper) -> Result<T, Fail>,
    ) -> Option<Result<T, StoreError>> {
        if Handle::try_current().is_ok() {
            return None;
        }
        let me = thread::current().id();
        let mut state = match purpose {
            Use::Commit => self.state.lock(),
            Use::Read => self.state.try_lock()?,
        };
        let State {
            runtime,
            committer,
            client,
            used,
        } = &mut *state;
        let runtime = runtime.as_ref()?;
        match purpose {
            Use::Commit => *committer = Some(me),
            Use::Read if *committer != Some(me) => return None,
            Use::Read => {}
        }
        Some(runtime.block_on(async {
            let mut attempt = 0u32;
            loop {
                let c = match client.take() {
                    Some(c) if !c.is_closed() => c,
                    _ => self.connect().await?,
                };
                let idle = used.elapsed() >= IDLE_CHECK;
                let outcome = tokio::time::timeout(inner.op_limit, async {
                    if idle {
                        c.simple_query("").await.map_err(|_| Fail::Retry)?;
                    }
                    work(&c).await
                })
                .await;
                *used = Instant::now();
                let fail = match outcome {
                    Ok(Ok(v)) => {
                        *client = Some(c);
                        return Ok(v);
                    }
                    Ok(Err(fail)) => fail,
                    // The connection may be mid-statement: dropped.
                    Err(_) => return Err(StoreError::Unavailable(Unavailable::StatementTimeout)),
                };
                match fail {
                    Fail::Retry => {
                        attempt += 1;
                        if attempt >= 2 {
                            return Err(StoreError::Unavailable(Unavailable::ConnectionLost));
                        }
                    }
                    Fail::Stop { error, discard } => {
                        if !discard {
                            *client = Some(c);
                        }
                        return Err(error);
                    }
                }
            }
        }))
    }

    async fn connect(&self) -> Result<ClientWrapper, StoreError> {
        let attempt = async {
            let (client, connection) = self.config.connect(self.tls.clone()).await?;
            let task = tokio::spawn(async move {
                let _ = connection.await;
            });
            // Generic plans: a group commit is one prepared statement of many parts over
            // arrays. Left to choose (`auto`), the server may plan it anew for each execution,
            // for the arrays at hand; its generic plan (index lookups per array element) is as
            // good for any size, and planning once per connection measured 5-16% more reveals
            // per second (docs/benchmarks.md). Servers older than PostgreSQL 12 lack it.
            //
            // lz4: a group with audit entries writes a block of them (about 1-4 KiB), past the
            // server's 2 KiB threshold for compressing a value; its default method, pglz, took
            // about 5% of this connection's server process under reveal load, and lz4 packs
            // these blocks as small (2.8 KiB to 1.5 KiB) in a fraction of the time. It applies
            // to the values this connection writes (reading needs no setting); a server built
            // without lz4, or older than PostgreSQL 14, does not offer it and keeps pglz.
            //
            // A server without `pg_settings` (another PostgreSQL-wire engine) refuses the
            // statement: it keeps its defaults, and the connection serves as before.
            let _ = client.simple_query(SESSION_SETTINGS).await;
            Ok::<_, tokio_postgres::Error>(ClientWrapper::new(client, task))
        };
        match tokio::time::timeout(self.connect_timeout, attempt).await {
            Ok(Ok(client)) => Ok(client),
            Ok(Err(e)) => Err(errors::from_connect(&e)),
            Err(_) => Err(StoreError::Unavailable(Unavailable::Connect)),
        }
    }
}

impl Drop for Direct {
    fn drop(&mut self) {
        let state = self.state.get_mut();
        state.client = None;
        // Without waiting: the engine may be dropped on another runtime's worker thread, where a
        // blocking shutdown panics.
        if let Some(rt) = state.runtime.take() {
            rt.shutdown_background();
        }
    }
}
