//! What the daemon allows: connection, size and time limits, and who may connect.

use std::time::Duration;

/// Limits and access rules of [`serve`](crate::serve). `Default` is a sensible production setup.
#[derive(Clone, Debug)]
pub struct DaemonConfig {
    /// Connections served at once; further clients wait in the listen backlog.
    pub max_connections: usize,
    /// Connections one peer may hold at once: per uid on the Unix socket, per address on the TCP
    /// listener. Beyond it a new connection is closed at once, unanswered (counted in
    /// `/metrics` as `outcome="over_peer_limit"`).
    pub max_connections_per_peer: usize,
    /// How long a response write may wait for the peer to read. A client that sends requests
    /// (pipelined or not) and never reads the answers is disconnected after this, freeing its
    /// slot.
    pub write_timeout: Duration,
    /// Largest request body, except the batch route (413 beyond).
    pub max_body_bytes: usize,
    /// Largest `POST /v2/tokens/batch` body (413 beyond).
    pub max_batch_body_bytes: usize,
    /// Largest request head (request line and headers); at least 8192. Beyond it hyper answers
    /// 431 and closes the connection.
    pub max_header_bytes: usize,
    /// Time a client has to send a complete request head. hyper starts this timer whenever it
    /// waits for a head, including between requests on a keep-alive connection, so it is also
    /// the idle timeout of keep-alive connections (slowloris defence).
    pub header_read_timeout: Duration,
    /// Time to read a request body, and again to compute the response (408 / 503 beyond).
    pub request_timeout: Duration,
    /// On shutdown, how long in-flight requests may take to finish before their connections are
    /// dropped (the vault is flushed either way).
    pub shutdown_grace: Duration,
    /// Unix peers (by uid, from `SO_PEERCRED`) allowed to connect, in addition to the daemon's
    /// own uid, which is always allowed. Both lists empty: only the daemon's own uid.
    pub allow_uids: Vec<u32>,
    /// Unix peers allowed by primary gid (see `allow_uids`).
    pub allow_gids: Vec<u32>,
    /// How the binary should format logs. The library only emits `tracing` events; installing a
    /// subscriber is the binary's job.
    pub log_format: LogFormat,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            max_connections_per_peer: 256,
            write_timeout: Duration::from_secs(10),
            max_body_bytes: 1 << 20,
            max_batch_body_bytes: 4 << 20,
            max_header_bytes: 16 << 10,
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(10),
            allow_uids: Vec::new(),
            allow_gids: Vec::new(),
            log_format: LogFormat::Text,
        }
    }
}

/// Log output format (for the binary's subscriber).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}
