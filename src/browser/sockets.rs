//! Which local connections come from browserd's own browsers. A session's
//! page can open connections to anything its browser can reach, browserd's
//! own listeners included, and it does so from processes of browserd's
//! making: from inside, as far as a socket's owner or address shows, it
//! can look like browserd's own user on loopback. Whatever a listener
//! grants for being local (files by path in the relay, the console of an
//! open server) it grants only to a connection that no browser's process
//! holds, found by process, not by uid.
//!
//! It reads the process table; it decides nothing about what a
//! connection may do.

use std::net::SocketAddr;

use super::process::ProcessGroups;
use super::process_table::{self, Holder};

/// Tells browsers' connections from everyone else's.
#[derive(Clone)]
pub struct Sockets {
    groups: ProcessGroups,
}

impl std::fmt::Debug for Sockets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sockets").finish_non_exhaustive()
    }
}

impl Sockets {
    pub(super) fn new(groups: ProcessGroups) -> Self {
        Self { groups }
    }

    /// Whether the connection from `peer` accepted on `local` may be a
    /// browser's: a browser's process holds it, or browserd cannot tell.
    pub async fn may_be_a_browser(&self, peer: SocketAddr, local: SocketAddr) -> bool {
        self.holder(peer, local).await != Holder::Other
    }

    /// Whether the connection from `peer` accepted on `local` is a client
    /// of browserd's own user on this host: its socket was made by
    /// browserd's uid (in `/proc/net/tcp`), and no browser's process holds
    /// it (a page's own connection is made by its browser, which, when
    /// browserd is not root and has no ids of its own to give browsers,
    /// would have browserd's uid). `false` when either cannot be told.
    pub async fn of_own_user(&self, peer: SocketAddr, local: SocketAddr) -> bool {
        let owner = tokio::task::spawn_blocking(move || process_table::socket_owner(peer, local))
            .await
            .ok()
            .flatten();
        // SAFETY: geteuid has no preconditions.
        let own = owner == Some(unsafe { libc::geteuid() });
        own && self.holder(peer, local).await == Holder::Other
    }

    async fn holder(&self, peer: SocketAddr, local: SocketAddr) -> Holder {
        let groups = self.groups.pgids();
        tokio::task::spawn_blocking(move || process_table::tcp_peer_holder(peer, local, &groups))
            .await
            .unwrap_or(Holder::Unknown)
    }
}
