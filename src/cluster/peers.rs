//! Calls carried to the node that owns a session, or to every node: a
//! gRPC client per peer, and the request it is sent. A forwarded call
//! carries the caller's own `authorization`, so the owner authenticates
//! and scopes it exactly as if it had been called directly; the nodes
//! trust each other with nothing more. It also carries
//! [`FORWARDED_HEADER`], which only ever narrows what the receiver does
//! (answer here, never forward again), so a client that sends it itself
//! gains nothing. The caller's deadline (`grpc-timeout`) goes along.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::{Request, Status};

use super::Membership;
use crate::pb::session_service_client::SessionServiceClient;
use crate::store::Store;

/// Names the node that forwarded a call; its receiver answers it itself.
pub const FORWARDED_HEADER: &str = "x-browserd-forwarded-by";

/// How long a peer has to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

pub struct Peers {
    membership: Arc<Membership>,
    store: Store,
    /// For `https://` peers: the roots their certificates chain to.
    tls: Option<ClientTlsConfig>,
    /// One channel per peer URL, connected on first use and reused.
    channels: Mutex<HashMap<String, Channel>>,
}

impl Peers {
    pub fn new(membership: Arc<Membership>, store: Store, tls: Option<ClientTlsConfig>) -> Self {
        Self {
            membership,
            store,
            tls,
            channels: Mutex::default(),
        }
    }

    /// Whether `metadata` is a call another node forwarded here.
    pub fn forwarded(metadata: &MetadataMap) -> bool {
        metadata.contains_key(FORWARDED_HEADER)
    }

    /// Sends a call to node `node` as the caller whose `metadata` it
    /// carries: the node's answer unchanged, or a failure to reach it said
    /// with the node's name.
    pub async fn call<Req, Res, Fut>(
        &self,
        node: &str,
        metadata: &MetadataMap,
        message: Req,
        call: impl FnOnce(SessionServiceClient<Channel>, Request<Req>) -> Fut,
    ) -> Result<tonic::Response<Res>, Status>
    where
        Fut: std::future::Future<Output = Result<tonic::Response<Res>, Status>>,
    {
        let client = self.client(node).await?;
        answered(node, call(client, self.request(metadata, message)).await)
    }

    /// The message of a call as forwarded: the caller's credentials and
    /// deadline, and this node's name.
    fn request<T>(&self, metadata: &MetadataMap, message: T) -> Request<T> {
        let mut request = Request::new(message);
        if let Some(timeout) = metadata
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(grpc_timeout)
        {
            request.set_timeout(timeout);
        }
        let forwarded = request.metadata_mut();
        if let Some(key) = metadata.get("authorization") {
            forwarded.insert("authorization", key.clone());
        }
        if let Ok(id) = MetadataValue::try_from(self.membership.id.as_str()) {
            forwarded.insert(FORWARDED_HEADER, id);
        }
        request
    }

    /// A SessionService client of node `id`.
    async fn client(&self, id: &str) -> Result<SessionServiceClient<Channel>, Status> {
        let node = match self.membership.node(id) {
            Some(node) => node,
            None => {
                // A node that started since the last heartbeat read.
                let nodes = self.store.nodes().await.map_err(|e| {
                    Status::unavailable(format!("cannot read the cluster's nodes: {e}"))
                })?;
                let node = nodes.iter().find(|n| n.id == id).cloned();
                self.membership.set_nodes(nodes);
                node.ok_or_else(|| {
                    Status::unavailable(format!("node {id:?} is not part of this cluster"))
                })?
            }
        };
        let channel = self.channel(&node.grpc_url)?;
        Ok(SessionServiceClient::new(channel))
    }

    fn channel(&self, url: &str) -> Result<Channel, Status> {
        let mut channels = self.channels.lock().expect("peer channels lock poisoned");
        if let Some(channel) = channels.get(url) {
            return Ok(channel.clone());
        }
        let bad = |e: tonic::transport::Error| {
            Status::internal(format!(
                "a node advertises an unusable address {url:?}: {e}"
            ))
        };
        let mut endpoint = Endpoint::from_shared(url.to_owned())
            .map_err(bad)?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true);
        if url.starts_with("https://")
            && let Some(tls) = &self.tls
        {
            endpoint = endpoint.tls_config(tls.clone()).map_err(bad)?;
        }
        let channel = endpoint.connect_lazy();
        channels.insert(url.to_owned(), channel.clone());
        Ok(channel)
    }
}

/// A `grpc-timeout` header's duration (`<digits><H|M|S|m|u|n>`).
fn grpc_timeout(value: &str) -> Option<Duration> {
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Whether `status` is this node's failure to reach a peer (made here, with
/// its cause), rather than the peer's own answer.
pub fn not_reached(status: &Status) -> bool {
    std::error::Error::source(status).is_some()
}

/// A forwarded call's outcome as the caller gets it: the peer's answers
/// unchanged; a failure to reach it said with the node's name.
fn answered<T>(node: &str, outcome: Result<T, Status>) -> Result<T, Status> {
    outcome.map_err(|status| {
        if not_reached(&status) {
            Status::unavailable(format!(
                "node {node:?} cannot be reached ({}); if it is lost, its sessions end with END_REASON_NODE_LOST once its lease lapses",
                status.message()
            ))
        } else {
            status
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_is_read_in_every_unit_and_garbage_is_ignored() {
        assert_eq!(grpc_timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(grpc_timeout("3M"), Some(Duration::from_secs(180)));
        assert_eq!(grpc_timeout("30S"), Some(Duration::from_secs(30)));
        assert_eq!(grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(grpc_timeout("7u"), Some(Duration::from_micros(7)));
        assert_eq!(grpc_timeout("9n"), Some(Duration::from_nanos(9)));
        for bad in ["", "S", "12", "1.5S", "-1S", "99999999999999999999H"] {
            assert_eq!(grpc_timeout(bad), None, "{bad:?}");
        }
    }
}
