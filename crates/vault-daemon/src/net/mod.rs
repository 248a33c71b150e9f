//! The network side: the listening socket and peer credentials, the per-peer connection
//! bound, the write timeout, and graceful shutdown.

pub(crate) mod listener;
pub(crate) mod peer_limit;
pub(crate) mod shutdown;
pub(crate) mod write_timeout;
