//! This node in a cluster, as the engine keeps it: joining (a new
//! incarnation that fences any older one), the lease it renews, what it
//! does when it finds itself fenced, the takeover of nodes whose lease
//! lapsed, ending the sessions of lost nodes, draining, and where a new
//! session should go.
//!
//! Exactly once: a takeover is a compare-and-set on the lost node's
//! epoch, so one survivor wins it; every survivor then ends the lost
//! node's unfinished sessions, each a compare-and-set on its status, so
//! each session ends once, with one event, however many survivors (or
//! the lost node itself, coming back) try.

use std::time::Duration;

use tokio::time::Instant;

use super::engine::end_change;
use super::{CreateRequest, Engine};
use crate::browser::LaunchOptions;
use crate::domain::Result;
use crate::domain::session::{Actor, EndReason};
use crate::store::{NodeRow, Registration};

/// Where CreateSession should try to place a session, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Here,
    Node(String),
}

impl Engine {
    /// Starts this node's new incarnation. Run at start, before
    /// [`Engine::reconcile`], and again after being fenced.
    pub async fn join(&self) -> Result<()> {
        let node = &self.inner.node;
        let registration = Registration {
            id: node.id.clone(),
            grpc_url: node.grpc_url.clone(),
            relay_url: node.relay_url.clone(),
            capacity: self.inner.config.max_sessions as u64,
        };
        let epoch = self
            .inner
            .store
            .register_node(&registration, node.lease)
            .await?;
        node.set_epoch(epoch);
        node.set_nodes(self.inner.store.nodes().await?);
        tracing::info!(node.id = %node.id, node.epoch = epoch, "joined");
        Ok(())
    }

    /// Renews the lease every quarter of it until shutdown; takes over the
    /// nodes whose lease lapsed and ends the sessions of lost nodes.
    ///
    /// A node takes over others only once its own lease has been renewed
    /// without a break for a whole lease: after an outage of the database
    /// every node gets a lease's time to renew before anyone is judged lost.
    pub(super) async fn keep_lease(self) {
        let node = self.inner.node.clone();
        let mut healthy_since: Option<Instant> = None;
        loop {
            tokio::select! {
                () = tokio::time::sleep(node.lease / 4) => {}
                () = self.inner.closing.cancelled() => return,
            }
            let sessions = self.slots().len();
            let warm = *self.inner.pool.count().borrow();
            let beat = self
                .inner
                .store
                .heartbeat(&node.id, node.epoch(), sessions, warm, node.lease)
                .await;
            match beat {
                Ok(Some(draining)) => {
                    healthy_since.get_or_insert_with(Instant::now);
                    node.set_asked_to_drain(draining);
                }
                Ok(None) => {
                    healthy_since = None;
                    self.fenced().await;
                    continue;
                }
                Err(e) => {
                    healthy_since = None;
                    tracing::warn!(error = %e, "cannot renew this node's lease");
                    continue;
                }
            }
            let nodes = match self.inner.store.nodes().await {
                Ok(nodes) => nodes,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the cluster's nodes");
                    continue;
                }
            };
            node.set_nodes(nodes.clone());
            if healthy_since.is_some_and(|since| since.elapsed() >= node.lease) {
                self.take_over(&nodes).await;
            }
            self.end_lost_sessions().await;
        }
    }

    /// Takes over every other node whose lease lapsed.
    async fn take_over(&self, nodes: &[NodeRow]) {
        let lapsed = nodes
            .iter()
            .filter(|n| n.id != self.inner.node.id && n.lapsed && !n.lost);
        for lost in lapsed {
            match self.inner.store.take_over(&lost.id, lost.epoch).await {
                Ok(true) => tracing::warn!(
                    node.lost = %lost.id,
                    silent_for = ?lost.heartbeat_age,
                    "took over a node whose lease lapsed; its sessions end NODE_LOST"
                ),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(node.lost = %lost.id, error = %e, "cannot take over a node")
                }
            }
        }
    }

    /// Ends (FAILED, NODE_LOST) the unfinished sessions of every lost node.
    /// The row that marks a node lost stays (until retention prunes it, or
    /// the node starts again), so a survivor that dies half-way is finished
    /// by the next one.
    async fn end_lost_sessions(&self) {
        let lost = match self.inner.store.lost_sessions().await {
            Ok(lost) => lost,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read lost nodes' sessions");
                return;
            }
        };
        for (id, node) in lost {
            let error = format!("node {node} stopped renewing its lease");
            let change = end_change(EndReason::NodeLost, Some(error), Actor::System);
            if let Err(e) = self.commit(id, change).await {
                tracing::warn!(session.id = %id, error = %e, "cannot end a lost node's session");
            }
        }
    }

    /// This node's incarnation was taken over (it stopped renewing its
    /// lease long enough, or another process started under its name): its
    /// sessions are, or are being, ended by others. It kills its browsers
    /// (whose ends are no-ops where a survivor was first), joins again as a
    /// new incarnation, and ends what its old one left.
    async fn fenced(&self) {
        tracing::error!(
            node.id = %self.inner.node.id,
            "this node lost its lease to another node: ending its sessions (NODE_LOST) and joining again"
        );
        let live: Vec<_> = self.slots().keys().copied().collect();
        let error = "this node lost its lease".to_owned();
        futures_util::future::join_all(
            live.into_iter()
                .map(|id| self.end_logged(id, EndReason::NodeLost, Some(error.clone()))),
        )
        .await;
        if let Err(e) = self.join().await {
            tracing::warn!(error = %e, "cannot join again yet");
            return;
        }
        if let Err(e) = self.end_previous_incarnations().await {
            tracing::warn!(error = %e, "cannot end what this node's previous incarnation left");
        }
    }

    /// Ends (FAILED, NODE_LOST) the sessions this node's earlier
    /// incarnations left unfinished; returns how many.
    pub(super) async fn end_previous_incarnations(&self) -> Result<usize> {
        let node = &self.inner.node;
        let unfinished = self.inner.store.unfinished(&node.id, node.epoch()).await?;
        for session in &unfinished {
            let error = "browserd stopped without ending this session".to_owned();
            let change = end_change(EndReason::NodeLost, Some(error), Actor::System);
            self.commit(session.id, change).await?;
        }
        Ok(unfinished.len())
    }

    /// Stops taking new sessions at once (other nodes stop placing here at
    /// their next read of the nodes), then waits up to `timeout` for this
    /// node's sessions to end on their own.
    pub async fn drain(&self, timeout: Duration) {
        let node = &self.inner.node;
        node.set_leaving();
        if let Err(e) = self.inner.store.set_draining(&node.id, true).await {
            tracing::warn!(error = %e, "cannot record in the database that this node drains");
        }
        let deadline = Instant::now() + timeout;
        tracing::info!(sessions = self.slots().len(), ?timeout, "draining");
        loop {
            // Registered before the check: a slot that goes between the
            // check and the wait still wakes it.
            let changed = self.inner.slots_changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.slots().is_empty() || Instant::now() >= deadline {
                return;
            }
            tokio::select! {
                () = changed => {}
                () = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    /// Asks node `id` to drain, or to take sessions again. `false`: no
    /// such node.
    pub async fn set_draining(&self, id: &str, draining: bool) -> Result<bool> {
        let found = self.inner.store.set_draining(id, draining).await?;
        if id == self.inner.node.id {
            self.inner.node.set_asked_to_drain(draining);
        }
        Ok(found)
    }

    /// Every node the database knows.
    pub async fn nodes(&self) -> Result<Vec<NodeRow>> {
        Ok(self.inner.store.nodes().await?)
    }

    /// Where a session asked for with `request` should be created, in the
    /// order to try: this node while it has room (first only when it has a
    /// warm browser or the session could not use one), other nodes with a
    /// warm browser, then other nodes with room, the roomiest first. This
    /// node comes last even when full or draining, for its refusal. The
    /// nodes are read afresh whenever another node may be the first choice.
    pub async fn placement(&self, request: &CreateRequest) -> Result<Vec<Target>> {
        let node = &self.inner.node;
        let room_here = !node.draining() && self.slots().len() < self.inner.config.max_sessions;
        let warm_here = *self.inner.pool.count().borrow() > 0;
        let could_be_warm = request.context.is_none()
            && self
                .validate(request.clone())
                .is_ok_and(|params| LaunchOptions::from(&params).is_default());
        let mut order = Vec::new();
        if room_here && (warm_here || !could_be_warm) {
            order.push(Target::Here);
        } else {
            node.set_nodes(self.inner.store.nodes().await?);
        }
        if could_be_warm {
            order.extend(
                node.placeable_peers(true)
                    .into_iter()
                    .map(|n| Target::Node(n.id)),
            );
        }
        if room_here && !order.contains(&Target::Here) {
            order.push(Target::Here);
        }
        for peer in node.placeable_peers(false) {
            let target = Target::Node(peer.id);
            if !order.contains(&target) {
                order.push(target);
            }
        }
        if !order.contains(&Target::Here) {
            order.push(Target::Here);
        }
        Ok(order)
    }

    /// The other nodes that hold their lease, read afresh: a call that must
    /// reach every node (release-all) cannot miss one that just joined.
    pub async fn running_peers(&self) -> Result<Vec<NodeRow>> {
        let node = &self.inner.node;
        node.set_nodes(self.inner.store.nodes().await?);
        Ok(node.running_peers())
    }
}
