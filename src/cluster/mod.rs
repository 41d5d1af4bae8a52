//! Several nodes, one service: what this node knows of the cluster it is
//! part of. PostgreSQL is the only thing the nodes share; SQLite is the
//! single-node case of the same code (one node row, no peers).
//!
//! - Each node holds a lease in its `nodes` row, renewed by heartbeats,
//!   with an epoch that every start and every takeover bumps. The engine
//!   runs the heartbeat, takes over nodes whose lease lapsed and ends their
//!   sessions (`sessions::nodes`); [`Membership`] is the state it shares
//!   with the rest of browserd: this node's incarnation and whether it
//!   drains, and the other nodes as the last heartbeat read them.
//! - A session belongs to the node that runs its browser. Reads come from
//!   the database on any node; actions on another node's session are
//!   forwarded to its owner over gRPC by [`peers`], with the caller's own
//!   credentials, so the owner checks them as if called directly.
//! - Events reach every node through the event log's tail
//!   ([`crate::events`]).
//!
//! This module must not decide a session's fate: it only says who owns
//! what and carries calls there.

pub mod peers;

use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::store::NodeRow;

pub use peers::{FORWARDED_HEADER, Peers};

/// This node's place in the cluster, shared by the engine, the API and the
/// relay.
pub struct Membership {
    /// `--node-id`: the owner recorded on every session this node creates.
    pub id: String,
    /// Where other nodes reach this node's gRPC service.
    pub grpc_url: String,
    /// The base of this node's connect_urls.
    pub relay_url: String,
    /// How long a lease lasts without a heartbeat.
    pub lease: Duration,
    /// The current incarnation; 0 until registered.
    epoch: AtomicU64,
    /// Asked to drain through the database (AdminService.DrainNode).
    asked_to_drain: AtomicBool,
    /// Stopping (SIGTERM or SIGINT): takes no new session, for good.
    leaving: AtomicBool,
    /// Every node's row as the last heartbeat read it.
    nodes: RwLock<Vec<NodeRow>>,
}

impl Membership {
    pub fn new(id: String, grpc_url: String, relay_url: String, lease: Duration) -> Self {
        Self {
            id,
            grpc_url,
            relay_url,
            lease,
            epoch: AtomicU64::new(0),
            asked_to_drain: AtomicBool::new(false),
            leaving: AtomicBool::new(false),
            nodes: RwLock::default(),
        }
    }

    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    pub fn set_epoch(&self, epoch: u64) {
        self.epoch.store(epoch, Ordering::Release);
    }

    /// Whether this node takes no new session.
    pub fn draining(&self) -> bool {
        self.asked_to_drain.load(Ordering::Acquire) || self.leaving.load(Ordering::Acquire)
    }

    pub fn set_asked_to_drain(&self, draining: bool) {
        self.asked_to_drain.store(draining, Ordering::Release);
    }

    pub fn set_leaving(&self) {
        self.leaving.store(true, Ordering::Release);
    }

    /// Every node as last read, this one included.
    pub fn nodes(&self) -> Vec<NodeRow> {
        self.nodes.read().expect("nodes lock poisoned").clone()
    }

    pub fn set_nodes(&self, nodes: Vec<NodeRow>) {
        *self.nodes.write().expect("nodes lock poisoned") = nodes;
    }

    /// Node `id` as last read.
    pub fn node(&self, id: &str) -> Option<NodeRow> {
        let nodes = self.nodes.read().expect("nodes lock poisoned");
        nodes.iter().find(|n| n.id == id).cloned()
    }

    /// The base of the connect_urls of node `id`'s sessions, when known.
    pub fn relay_url_of(&self, id: &str) -> Option<String> {
        if id == self.id {
            return Some(self.relay_url.clone());
        }
        self.node(id).map(|n| n.relay_url)
    }

    /// The other nodes that take sessions now, as last read, the one with
    /// the most room first. A node that looked full at its last heartbeat
    /// is still listed, last: it may have room by now, and asking costs one
    /// call. With `warm`, only those with a warm browser and room.
    pub fn placeable_peers(&self, warm: bool) -> Vec<NodeRow> {
        let mut peers: Vec<NodeRow> = self
            .nodes()
            .into_iter()
            .filter(|n| n.id != self.id && n.placeable())
            .filter(|n| !warm || (n.warm > 0 && n.sessions < n.capacity))
            .collect();
        peers.sort_by_key(|n| std::cmp::Reverse(n.capacity.saturating_sub(n.sessions)));
        peers
    }

    /// The other nodes that hold their lease, for calls that reach every
    /// node. (A node whose lease lapsed is about to be taken over, and its
    /// sessions ended NODE_LOST.)
    pub fn running_peers(&self) -> Vec<NodeRow> {
        self.nodes()
            .into_iter()
            .filter(|n| n.id != self.id && !n.lost && !n.lapsed)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;

    fn node(id: &str, sessions: u64, warm: u64) -> NodeRow {
        NodeRow {
            id: id.into(),
            epoch: 1,
            grpc_url: format!("http://{id}:50051"),
            relay_url: format!("ws://{id}:50052"),
            capacity: 4,
            sessions,
            warm,
            draining: false,
            started_at: SystemTime::UNIX_EPOCH,
            heartbeat_age: Duration::ZERO,
            lapsed: false,
            lost: false,
        }
    }

    fn ids(nodes: &[NodeRow]) -> Vec<&str> {
        nodes.iter().map(|n| n.id.as_str()).collect()
    }

    #[test]
    fn peers_are_placed_on_by_room_and_never_when_gone_or_draining() {
        let here = Membership::new(
            "a".into(),
            "http://a:50051".into(),
            "ws://a:50052".into(),
            Duration::from_secs(10),
        );
        let draining = NodeRow {
            draining: true,
            ..node("d", 0, 1)
        };
        let lapsed = NodeRow {
            lapsed: true,
            ..node("e", 0, 1)
        };
        let lost = NodeRow {
            lost: true,
            ..node("f", 0, 1)
        };
        here.set_nodes(vec![
            node("a", 0, 2),
            node("b", 3, 0),
            node("c", 1, 1),
            node("full", 4, 1),
            draining,
            lapsed,
            lost,
        ]);
        // Full-looking nodes last: their count may be a heartbeat old.
        assert_eq!(ids(&here.placeable_peers(false)), ["c", "b", "full"]);
        assert_eq!(ids(&here.placeable_peers(true)), ["c"]);
        // Release-all reaches every node holding its lease, draining ones
        // included (their sessions still run).
        assert_eq!(ids(&here.running_peers()), ["b", "c", "full", "d"]);
        assert_eq!(here.relay_url_of("a").as_deref(), Some("ws://a:50052"));
        assert_eq!(here.relay_url_of("c").as_deref(), Some("ws://c:50052"));
        assert_eq!(here.relay_url_of("z"), None);
    }
}
