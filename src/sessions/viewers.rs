//! Live view links and their viewers: making a link (signed, scoped to a
//! session, one page or all, view or control, and an expiry), revoking
//! one, checking one when a viewer opens it, and the VIEWER_JOINED /
//! VIEWER_LEFT events, committed like every other change.
//!
//! A link's URL carries `<link id>.<mac>`: the MAC (HMAC-SHA256 with the
//! server secret, see [`crate::secret::ServerSecret::sign`]) covers every
//! field of the link's row, so neither a guessed id nor an edited row
//! opens anything, and no node needs more than the secret and the row to
//! check one. The row is what makes a link revocable everywhere.
//!
//! This file never streams a page: that is the console's, over the
//! route of the live session that [`Engine::open_live_view`] hands it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{Engine, Route};
use crate::browser::PageInfo;
use crate::domain::access::Caller;
use crate::domain::live_view::{
    LINK_RESOURCE, LIVE_VIEW_PATH, LinkRefusal, LiveViewLink, is_link_id,
};
use crate::domain::now_ms;
use crate::domain::session::{Actor, Session, SessionId, SessionStatus};
use crate::domain::{Error, Result};
use crate::store::Change;

/// What each link's MAC signs first, so no MAC made with the server
/// secret for another purpose is a link's.
const LINK_CONTEXT: &[u8] = b"browserd live view link v1\0";
/// Longest target id taken (Chromium's are 32 hex digits).
const TARGET_ID_MAX_BYTES: usize = 128;
impl Engine {
    /// Makes a live view link to a LIVE session the caller sees (see the
    /// CreateLiveViewLink rpc), and its URL.
    pub async fn create_live_view_link(
        &self,
        caller: &Caller,
        id: SessionId,
        target_id: Option<String>,
        control: bool,
        ttl: Option<Duration>,
    ) -> Result<(LiveViewLink, String)> {
        if let Some(target) = &target_id {
            check_target_id(target)?;
        }
        // The pages are known on the node that runs the session.
        self.may_act(caller, id).await?;
        let session = self.visible(caller, id).await?;
        if session.status != SessionStatus::Live {
            return Err(Error::NotLive {
                id,
                status: session.status,
            });
        }
        if let Some(target) = &target_id {
            let (pages, _) = self.pages(id).await?;
            if !pages.iter().any(|page| &page.target_id == target) {
                return Err(Error::invalid(
                    "target_id",
                    format!(
                        "the session has no open page {:?} (GetLiveDetails lists them)",
                        crate::domain::error::untrusted(target)
                    ),
                ));
            }
        }
        let link = self.new_link(caller, &session, target_id, control, ttl);
        self.inner
            .store
            .insert_live_view_links(std::slice::from_ref(&link))
            .await?;
        let url = self.live_view_url(&link, &session);
        Ok((link, url))
    }

    /// A control link per page of `session` for the caller, who may act
    /// on it ([`Engine::live_details`] checked): GetLiveDetails'
    /// `live_view_url`, valid until the session's current expiry, made in
    /// one write. A read must not fail for want of a write: when the links
    /// cannot be stored, the pages get none (empty URLs).
    pub async fn page_live_view_urls(
        &self,
        caller: &Caller,
        session: &Session,
        pages: &[PageInfo],
    ) -> Vec<String> {
        if pages.is_empty() {
            return Vec::new();
        }
        let links: Vec<_> = pages
            .iter()
            .map(|page| self.new_link(caller, session, Some(page.target_id.clone()), true, None))
            .collect();
        if let Err(e) = self.inner.store.insert_live_view_links(&links).await {
            tracing::warn!(session.id = %session.id, error = %e, "cannot store live view links; GetLiveDetails answers without them");
            return vec![String::new(); pages.len()];
        }
        links
            .iter()
            .map(|link| self.live_view_url(link, session))
            .collect()
    }

    /// Revokes a link to a session the caller sees; returns when it was
    /// revoked (the first time).
    pub async fn revoke_live_view_link(
        &self,
        caller: &Caller,
        link_id: &str,
    ) -> Result<SystemTime> {
        if !is_link_id(link_id) {
            return Err(Error::invalid("link_id", "a link id is 32 hex digits"));
        }
        let unknown = || Error::UnknownResource {
            kind: LINK_RESOURCE,
            name: link_id.to_owned(),
        };
        let link = self
            .inner
            .store
            .live_view_link(link_id)
            .await?
            .filter(|link| caller.sees(&link.project))
            .ok_or_else(unknown)?;
        let revoked = self
            .inner
            .store
            .revoke_live_view_link(&link.id, now_ms())
            .await?
            .and_then(|link| link.revoked_at)
            .ok_or_else(unknown)?;
        Ok(revoked)
    }

    /// The link a key (`<link id>.<mac>`) opens now, and the route of its
    /// session's browser, which must be live on this node.
    pub async fn open_live_view(
        &self,
        key: &str,
    ) -> std::result::Result<(LiveViewLink, Route), LinkRefusal> {
        let (id, mac) = key.split_once('.').ok_or(LinkRefusal::Unknown)?;
        if !is_link_id(id) {
            return Err(LinkRefusal::Unknown);
        }
        let link = self
            .inner
            .store
            .live_view_link(id)
            .await
            .map_err(|e| LinkRefusal::Unavailable(e.to_string()))?
            .ok_or(LinkRefusal::Unknown)?;
        let parts = signed_parts(&link);
        let parts: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        if !self.inner.config.secret.verify(LINK_CONTEXT, &parts, mac) {
            return Err(LinkRefusal::Unknown);
        }
        if link.revoked_at.is_some() {
            return Err(LinkRefusal::Revoked);
        }
        if SystemTime::now() >= link.expires_at {
            return Err(LinkRefusal::Expired);
        }
        let route = self
            .inner
            .routes
            .read()
            .expect("routes lock poisoned")
            .get(&link.session_id)
            .cloned()
            .ok_or(LinkRefusal::Ended)?;
        Ok((link, route))
    }

    /// Records that a viewer joined or left a session's live view (an
    /// EVENT_KIND_VIEWER_JOINED / _LEFT event). Nothing is recorded for a
    /// session that has ended meanwhile.
    pub async fn viewer_changed(&self, id: SessionId, joined: bool, actor: Actor) -> Result<()> {
        let change = Change::Viewer {
            joined,
            at: now_ms(),
            actor,
        };
        self.commit(id, change).await.map(drop)
    }

    fn new_link(
        &self,
        caller: &Caller,
        session: &Session,
        target_id: Option<String>,
        control: bool,
        ttl: Option<Duration>,
    ) -> LiveViewLink {
        let now = now_ms();
        let until_session_ends = session.expires_at();
        let expires_at = match ttl.filter(|ttl| !ttl.is_zero()) {
            Some(ttl) => (now + ttl).min(until_session_ends),
            None => until_session_ends,
        };
        LiveViewLink {
            id: new_link_id(),
            session_id: session.id,
            project: session.project.clone(),
            target_id,
            control,
            created_at: now,
            expires_at,
            revoked_at: None,
            created_by: caller.actor.recorded(None),
        }
    }

    /// The URL of a link to `session`: the live view page on the relay's
    /// listener of the node that runs it, over http(s), with the key in the
    /// fragment.
    fn live_view_url(&self, link: &LiveViewLink, session: &Session) -> String {
        let parts = signed_parts(link);
        let parts: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        let mac = self.inner.config.secret.sign(LINK_CONTEXT, &parts);
        let node = &self.inner.node;
        let relay = node
            .relay_url_of(&session.node_id)
            .unwrap_or_else(|| node.relay_url.clone());
        format!("{}{LIVE_VIEW_PATH}#{}.{mac}", http_base(&relay), link.id)
    }

    /// The host name of this node's public relay URL (`--cdp-public-url`).
    pub fn public_host(&self) -> Option<String> {
        let relay = &self.inner.node.relay_url;
        let authority = relay.split_once("://")?.1.split('/').next()?;
        Some(crate::domain::live_view::host_name(authority).to_owned())
    }

    /// This node's console base URL (`http(s)://host:port`), from its
    /// relay's.
    pub fn console_base(&self) -> String {
        http_base(&self.inner.node.relay_url)
    }
}

/// What a link's MAC covers: every field a viewer's rights depend on.
fn signed_parts(link: &LiveViewLink) -> [Vec<u8>; 6] {
    let millis = |at: SystemTime| {
        at.duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis()
            .to_be_bytes()
            .to_vec()
    };
    [
        link.id.as_bytes().to_vec(),
        link.session_id.to_string().into_bytes(),
        link.project.as_bytes().to_vec(),
        link.target_id.clone().unwrap_or_default().into_bytes(),
        vec![u8::from(link.control), u8::from(link.target_id.is_some())],
        millis(link.expires_at),
    ]
}

/// `ws://…` as `http://…`, `wss://…` as `https://…`.
fn http_base(relay: &str) -> String {
    if let Some(rest) = relay.strip_prefix("wss://") {
        format!("https://{rest}")
    } else if let Some(rest) = relay.strip_prefix("ws://") {
        format!("http://{rest}")
    } else {
        relay.to_owned()
    }
}

fn new_link_id() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the OS has randomness");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn check_target_id(target: &str) -> Result<()> {
    let ok = !target.is_empty()
        && target.len() <= TARGET_ID_MAX_BYTES
        && target
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "target_id",
            format!(
                "{:?} is not a CDP target id (1 to {TARGET_ID_MAX_BYTES} letters, digits, - and _)",
                crate::domain::error::untrusted(target)
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_urls_become_console_urls() {
        assert_eq!(http_base("ws://127.0.0.1:1"), "http://127.0.0.1:1");
        assert_eq!(http_base("wss://h.example"), "https://h.example");
    }

    #[test]
    fn link_ids_are_lowercase_hex_of_16_bytes() {
        let id = new_link_id();
        assert!(is_link_id(&id), "{id}");
        assert!(!is_link_id(&id.to_uppercase()));
        assert!(!is_link_id(&id[1..]));
        assert!(check_target_id("ABCDEF0123").is_ok());
        assert!(check_target_id("a/b").is_err());
        assert!(check_target_id("").is_err());
    }
}
