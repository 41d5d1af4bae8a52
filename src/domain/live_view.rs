//! Live view links as values: a link's record, why one opens nothing,
//! and where the live view page is. Signing, checking and streaming are
//! the engine's and the console's.

use std::time::SystemTime;

use super::session::{Actor, SessionId};

/// `google.rpc.ResourceInfo.resource_type` of a link.
pub const LINK_RESOURCE: &str = "browserd.v1.LiveViewLink";
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

pub fn is_link_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// The name in a `Host` header, without its port (`[::1]:80` → `::1`).
pub(crate) fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    host.rsplit_once(':').map_or(host, |(name, _)| name)
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;

    #[test]
    fn a_host_header_s_name_is_read_without_its_port() {
        assert_eq!(host_name("127.0.0.1:50052"), "127.0.0.1");
        assert_eq!(host_name("localhost"), "localhost");
        assert_eq!(host_name("[::1]:50052"), "::1");
        assert_eq!(host_name("[::1]"), "::1");
        assert_eq!(
            host_name("browsers.example.com:443"),
            "browsers.example.com"
        );
    }

    #[test]
    fn a_link_for_one_page_shows_that_page_only() {
        let mut link = LiveViewLink {
            id: "0".repeat(32),
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
