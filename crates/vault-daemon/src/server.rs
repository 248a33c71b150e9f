//! The accept loop and per-connection serving.

use std::{convert::Infallible, future::Future, sync::Arc, sync::atomic::Ordering::Relaxed};

use hyper::{server::conn::http1, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::UnixStream,
    sync::{OwnedSemaphorePermit, Semaphore},
};

use crate::{
    DaemonConfig, DaemonError, dispatch,
    net::listener::{Listener, Stream},
    net::peer_limit::{Peer, PeerLimit, PeerSlot},
    net::shutdown::{ConnGuard, Drain},
    net::write_timeout::WriteTimeout,
    state::State,
};

/// Serves the HTTP API on `listener` until `shutdown` completes, then stops accepting, lets
/// in-flight requests finish (up to [`DaemonConfig::shutdown_grace`]) and flushes the vault.
///
/// Every `201`/`204` the daemon sent was for a write already durable under the vault's
/// durability setting; the final flush covers the rest.
///
/// `gateway` is the payment gateway over the vault to serve (a
/// [`Vault`](vault_service::Vault) makes a fresh one): pass the same
/// [`Gateway`](vault_gateway::Gateway) the process uses in-process, as it holds the CVVs of
/// pending payments.
pub async fn serve(
    listener: Listener,
    gateway: impl Into<vault_gateway::Gateway>,
    config: DaemonConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    let own_uid = listener.owner_uid();
    let grace = config.shutdown_grace;
    let permits = Arc::new(Semaphore::new(config.max_connections.max(1)));
    let peers = PeerLimit::new(config.max_connections_per_peer);
    let write_timeout = config.write_timeout;
    let gateway = gateway.into();
    let vault = gateway.vault().clone();
    let state = Arc::new(State::new(gateway, config));
    let drain = Drain::new();
    tokio::pin!(shutdown);
    tracing::info!(listen = %listener.describe(), "cardvault daemon serving");
    let sweeper = tokio::spawn(sweep_transient(state.gateway.clone()));
    loop {
        let permit = tokio::select! {
            biased;
            () = &mut shutdown => break,
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            biased;
            () = &mut shutdown => break,
            r = listener.accept() => r,
        };
        match accepted {
            Ok(Stream::Unix(s)) => {
                if !peer_allowed(&s, own_uid, &state.config) {
                    state.metrics.connections_refused.fetch_add(1, Relaxed);
                    continue;
                }
                let uid = s.peer_cred().ok().map(|c| c.uid());
                let Some(slot) = uid.and_then(|u| peers.try_take(Peer::Uid(u))) else {
                    state
                        .metrics
                        .connections_over_peer_limit
                        .fetch_add(1, Relaxed);
                    continue;
                };
                let io = WriteTimeout::new(s, write_timeout);
                let held = (drain.guard(), permit, slot);
                tokio::spawn(connection(io, uid, state.clone(), held));
            }
            Ok(Stream::Tcp(s)) => {
                let slot = s
                    .peer_addr()
                    .ok()
                    .and_then(|a| peers.try_take(Peer::Addr(a.ip())));
                let Some(slot) = slot else {
                    state
                        .metrics
                        .connections_over_peer_limit
                        .fetch_add(1, Relaxed);
                    continue;
                };
                let io = WriteTimeout::new(s, write_timeout);
                let held = (drain.guard(), permit, slot);
                tokio::spawn(connection(io, None, state.clone(), held));
            }
            Err(e) => {
                // Out of descriptors or an aborted handshake: back off briefly, keep serving.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
    tracing::info!("shutting down: no new connections");
    sweeper.abort();
    listener.close();
    if !drain.drain(grace).await {
        tracing::warn!("shutdown grace period ended with requests still in flight");
    }
    let flushed = tokio::task::spawn_blocking(move || vault.flush())
        .await
        .map_err(|e| DaemonError::Io(std::io::Error::other(e)))?;
    flushed?;
    tracing::info!("vault flushed; daemon stopped");
    Ok(())
}

/// How often the transient entries are swept.
const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Every minute, removes what has run out: spent and expired sessions, old payment records,
/// stored idempotency answers past 24 hours, and CVVs whose session expired (which also leave
/// memory on their own when taken). Each pass reads only what is due. Card records are not
/// touched: their sweep is `cardvault sweep` (a scan of every record, run by the operator).
async fn sweep_transient(gateway: vault_gateway::Gateway) {
    let vault = gateway.vault().clone();
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // Counts of aggregated refusals (bad API keys, rate-limited logins) whose minute is over.
        gateway.flush_audit_counts();
        let (g, v) = (gateway.clone(), vault.clone());
        // Each sweep on its own: one failing must not keep the others from running.
        let swept =
            tokio::task::spawn_blocking(move || (g.sweep_sessions(), v.sweep_idempotency())).await;
        let Ok((sessions, idempotency)) = swept else {
            tracing::warn!("sweeping sessions panicked");
            continue;
        };
        for (what, r) in [("sessions", sessions), ("idempotency keys", idempotency)] {
            match r {
                Ok(0) => {}
                Ok(n) => tracing::debug!(removed = n, what, "swept"),
                Err(e) => tracing::warn!(error = %e, what, "sweep failed"),
            }
        }
    }
}

/// The daemon's own uid always; others only when listed by uid or primary gid.
fn peer_allowed(s: &UnixStream, own_uid: Option<u32>, config: &DaemonConfig) -> bool {
    match s.peer_cred() {
        Ok(cred) => {
            let ok = Some(cred.uid()) == own_uid
                || config.allow_uids.contains(&cred.uid())
                || config.allow_gids.contains(&cred.gid());
            if !ok {
                // Any local user can knock: at most one line a second, the rest counted.
                static REFUSED: crate::http::log_limit::LogLimit =
                    crate::http::log_limit::LogLimit::new();
                if let Some(left_out) = REFUSED.admit() {
                    tracing::warn!(
                        uid = cred.uid(),
                        gid = cred.gid(),
                        left_out,
                        "refused a connection from a peer not allowed"
                    );
                }
            }
            ok
        }
        Err(e) => {
            tracing::warn!(error = %e, "refused a connection without peer credentials");
            false
        }
    }
}

/// What a served connection holds until it ends: the drain guard, its global slot and its
/// peer's slot.
type Held = (ConnGuard, OwnedSemaphorePermit, PeerSlot);

async fn connection<S>(io: S, peer_uid: Option<u32>, state: Arc<State>, held: Held)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut guard, permit, slot) = held;
    state.metrics.connections_accepted.fetch_add(1, Relaxed);
    state.metrics.connections_open.fetch_add(1, Relaxed);
    http(io, peer_uid, state, &mut guard).await;
    drop((permit, slot));
    // `guard` goes last: once every guard is gone `serve` flushes and returns, and by then no
    // connection may still hold the vault.
    drop(guard);
}

async fn http<S>(io: S, peer_uid: Option<u32>, state: Arc<State>, guard: &mut ConnGuard)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc_state = state.clone();
    let svc = service_fn(move |req| {
        let st = svc_state.clone();
        // The peer's uid is visible to the handlers (for audit entries) through a task-local.
        async move {
            let resp = crate::state::PEER_UID
                .scope(peer_uid, dispatch::handle(st, req))
                .await;
            Ok::<_, Infallible>(resp)
        }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(state.config.header_read_timeout)
        .max_buf_size(state.config.max_header_bytes.max(8192))
        .max_headers(100)
        // A client may shut its write side once the request is sent and still get the answer.
        .half_close(true);
    let conn = builder.serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = guard.signal.changed() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended with an error");
    }
    state.metrics.connections_open.fetch_sub(1, Relaxed);
}
