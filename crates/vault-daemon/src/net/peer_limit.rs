//! Connections held at once per peer: per uid on the Unix socket (`SO_PEERCRED`), per address on
//! the TCP listener. One peer cannot take every connection slot.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex},
};

/// Who a connection belongs to, for the per-peer cap.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Peer {
    /// A Unix-socket peer, by uid.
    Uid(u32),
    /// A TCP peer, by address.
    Addr(IpAddr),
}

/// Open connections per peer, capped.
#[derive(Clone)]
pub(crate) struct PeerLimit {
    cap: usize,
    open: Arc<Mutex<HashMap<Peer, usize>>>,
}

/// Holds one of a peer's connection places; gives it back on drop.
pub(crate) struct PeerSlot {
    peer: Peer,
    open: Arc<Mutex<HashMap<Peer, usize>>>,
}

impl PeerLimit {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            cap: cap.max(1),
            open: Arc::default(),
        }
    }

    /// A place for one more connection of `peer`, or `None` when it already holds `cap`.
    pub(crate) fn try_take(&self, peer: Peer) -> Option<PeerSlot> {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = open.entry(peer).or_insert(0);
        if *n >= self.cap {
            return None;
        }
        *n += 1;
        Some(PeerSlot {
            peer,
            open: self.open.clone(),
        })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = open.get_mut(&self.peer) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.peer);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn each_peer_has_its_own_cap() {
        let limit = PeerLimit::new(2);
        let a1 = limit.try_take(Peer::Uid(1)).unwrap();
        let _a2 = limit.try_take(Peer::Uid(1)).unwrap();
        assert!(limit.try_take(Peer::Uid(1)).is_none());
        let _b = limit.try_take(Peer::Uid(2)).unwrap();
        let _c = limit.try_take(Peer::Addr([127, 0, 0, 1].into())).unwrap();
        drop(a1);
        assert!(limit.try_take(Peer::Uid(1)).is_some());
        assert_eq!(limit.open.lock().unwrap().get(&Peer::Uid(1)), Some(&1));
    }
}
