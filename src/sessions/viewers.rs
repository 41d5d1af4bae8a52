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
//! This file never streams a page: that is [`crate::console`]'s, over the
//! route of the live session that [`Engine::open_live_view`] hands it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::engine::now_ms;
use super::model::{Actor, Session, SessionId, SessionStatus};
use super::{Engine, Error, Result, Route};
use crate::access::Caller;
use crate::browser::PageInfo;
use crate::store::Change;

/// What each link's MAC signs first, so no MAC made with the server
/// secret for another purpose is a link's.
const LINK_CONTEXT: &[u8] = b"browserd live view link v1\0";
/// `google.rpc.ResourceInfo.resource_type` of a link.
pub const LINK_RESOURCE: &str = "browserd.v1.LiveViewLink";
/// Longest target id taken (Chromium's are 32 hex digits).
const TARGET_ID_MAX_BYTES: usize = 128;
/// The path of the live view page on the relay's listener; the link's key
/// follows `#`, which browsers keep to themselves.
pub const LIVE_VIEW_PATH: &str = "/console/live";

/// A live view link, as stored. Its key is never stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveViewLink {
    /// 32 hex digits.
    pub id: String,
    pub session_id: SessionId,
    /// The session's project: who may revoke it.
    pub project: String,
    /// The one page it shows; `None`: every page of the session.
    pub target_id: Option<String>,
    /// Whether its viewers may send input.
    pub control: bool,
    pub created_at: SystemTime,
    pub expires_at: SystemTime,
    pub revoked_at: Option<SystemTime>,
    /// Who made it, as events record actors.
    pub created_by: String,
}

impl LiveViewLink {
    /// Whether the link may show page `target_id`.
    pub fn shows(&self, target_id: &str) -> bool {
        self.target_id
            .as_deref()
            .is_none_or(|only| only == target_id)
    }

    /// What its viewers' events record them as.
    pub fn actor(&self) -> Actor {
        Actor::Viewer(self.id.clone())
    }

    fn signed_parts(&self) -> [Vec<u8>; 6] {
        let millis = |at: SystemTime| {
            at.duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis()
                .to_be_bytes()
                .to_vec()
        };
        [
            self.id.as_bytes().to_vec(),
            self.session_id.to_string().into_bytes(),
            self.project.as_bytes().to_vec(),
            self.target_id.clone().unwrap_or_default().into_bytes(),
            vec![u8::from(self.control), u8::from(self.target_id.is_some())],
            millis(self.expires_at),
        ]
    }
}

/// Why a link opens nothing. Only a link whose MAC is right learns more
/// than "unknown".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkRefusal {
    #[error("unknown live view link")]
    Unknown,
    #[error("this live view link has expired")]
    Expired,
    #[error("this live view link was revoked")]
    Revoked,
    #[error("the session of this live view link has ended (or runs on another node)")]
    Ended,
    #[error("cannot check the link now: {0}")]
    Unavailable(String),
}

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
                        super::error::untrusted(target)
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
        let parts = link.signed_parts();
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
        let parts = link.signed_parts();
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
        Some(crate::console::host_name(authority).to_owned())
    }

    /// This node's console base URL (`http(s)://host:port`), from its
    /// relay's.
    pub fn console_base(&self) -> String {
        http_base(&self.inner.node.relay_url)
    }
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

pub fn is_link_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
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
                super::error::untrusted(target)
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

    #[test]
    fn a_link_for_one_page_shows_that_page_only() {
        let mut link = LiveViewLink {
            id: new_link_id(),
            session_id: SessionId::new(),
            project: "p".into(),
            target_id: Some("A".into()),
            control: false,
            created_at: UNIX_EPOCH,
            expires_at: UNIX_EPOCH,
            revoked_at: None,
            created_by: "key/x".into(),
        };
        assert!(link.shows("A"));
        assert!(!link.shows("B"));
        link.target_id = None;
        assert!(link.shows("B"));
    }
}
