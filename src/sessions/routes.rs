//! Where the CDP relay finds a live session's browser, the check of the
//! token it is given, and the connect_url that carries that token.

use std::path::PathBuf;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::Engine;
use super::presence::Presence;
use crate::browser::pipe::Pipe;
use crate::domain::access::Caller;
use crate::domain::session::{Session, SessionId, SessionStatus};

/// How the CDP relay reaches a live session's browser.
#[derive(Debug, Clone)]
pub struct Route {
    /// The session's browser, shared with browserd's own calls.
    pub browser: Pipe,
    /// The browser's profile directory: the one place on the host where
    /// the relay puts files for it and takes its downloads from.
    pub profile: PathBuf,
    /// Cancelled when the session ends: every relayed connection closes.
    pub closed: CancellationToken,
    /// Where the relay reports clients and their activity.
    pub presence: Arc<Presence>,
}

impl Engine {
    /// The relay target of a live session, if the token is right. A
    /// token is recomputed, never looked up: it works only while the
    /// session is live here, and nothing stored reveals it.
    pub fn route(&self, id: SessionId, token: &str) -> Option<Route> {
        let route = {
            let routes = self.inner.routes.read().expect("routes lock poisoned");
            routes.get(&id)?.clone()
        };
        let secret = &self.inner.config.secret;
        secret
            .verify_connect_token(&id.to_string(), token, std::time::SystemTime::now())
            .then_some(route)
    }

    /// The URL CDP clients connect to while `session` is LIVE, for a
    /// caller of its own project only, built whenever a session is shown:
    /// it is never stored. Its token expires with the session's current
    /// timeout.
    ///
    /// It names the relay of the node that runs the session, so a client
    /// needs no sticky load balancer. (`None` too when that node is not
    /// known here yet: [`Engine::know_owners`] first.)
    pub fn connect_url(&self, session: &Session, caller: &Caller) -> Option<String> {
        if session.status != SessionStatus::Live || !caller.owns(&session.project) {
            return None;
        }
        let relay = self.inner.node.relay_url_of(&session.node_id)?;
        let id = session.id.to_string();
        let token = self
            .inner
            .config
            .secret
            .connect_token(&id, session.expires_at());
        Some(format!("{relay}/devtools/browser/{id}?token={token}"))
    }

    /// Makes sure the nodes that run `sessions` are known here (their
    /// relay URLs), reading the nodes again when one started since the last
    /// heartbeat read them.
    pub(super) async fn know_owners<'a>(
        &self,
        sessions: impl IntoIterator<Item = &'a Session>,
    ) -> crate::domain::Result<()> {
        let node = &self.inner.node;
        let unknown = sessions
            .into_iter()
            .any(|s| s.status == SessionStatus::Live && node.relay_url_of(&s.node_id).is_none());
        if unknown {
            node.set_nodes(self.inner.store.nodes().await?);
        }
        Ok(())
    }
}
