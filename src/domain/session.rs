//! Domain types of the session lifecycle. Parsed and validated once at the
//! API boundary; everything below works with these, never with protos or
//! database rows.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime};

use uuid::Uuid;

use super::egress::{EgressRules, EgressUsage};
use super::launch::{Proxy, Viewport};

/// An id that is a UUID, parsed once at the boundary and shown hyphenated.
macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Uuid);

        impl $name {
            pub fn new() -> Self {
                Self(Uuid::new_v4())
            }

            pub fn parse(s: &str) -> Option<Self> {
                Uuid::parse_str(s).ok().map(Self)
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }
    };
}

uuid_id!(
    /// A session's id.
    SessionId
);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionStatus {
    Pending,
    Live,
    Released,
    Failed,
}

impl SessionStatus {
    pub const ALL: [SessionStatus; 4] = [Self::Pending, Self::Live, Self::Released, Self::Failed];

    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Released | Self::Failed)
    }

    /// The lifecycle graph: PENDING -> LIVE -> RELEASED, and FAILED or
    /// RELEASED from either PENDING or LIVE. Terminal states are final.
    pub fn can_become(self, to: SessionStatus) -> bool {
        use SessionStatus::*;
        matches!(
            (self, to),
            (Pending, Live) | (Pending | Live, Released | Failed)
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Live => "LIVE",
            Self::Released => "RELEASED",
            Self::Failed => "FAILED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EndReason {
    Requested,
    ReleaseAll,
    Timeout,
    Inactivity,
    Disconnected,
    Shutdown,
    LaunchFailed,
    BrowserCrashed,
    NodeLost,
    /// A CDP client sent `Browser.close`: a release, whatever `keep_alive`.
    ClientClosed,
}

impl EndReason {
    pub const ALL: [EndReason; 10] = [
        Self::Requested,
        Self::ReleaseAll,
        Self::Timeout,
        Self::Inactivity,
        Self::Disconnected,
        Self::Shutdown,
        Self::LaunchFailed,
        Self::BrowserCrashed,
        Self::NodeLost,
        Self::ClientClosed,
    ];

    /// The terminal status a session ends in for this reason: the normal
    /// ends are RELEASED, the broken ones FAILED.
    pub fn terminal_status(self) -> SessionStatus {
        match self {
            Self::Requested
            | Self::ReleaseAll
            | Self::Timeout
            | Self::Inactivity
            | Self::Disconnected
            | Self::Shutdown
            | Self::ClientClosed => SessionStatus::Released,
            Self::LaunchFailed | Self::BrowserCrashed | Self::NodeLost => SessionStatus::Failed,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "REQUESTED",
            Self::ReleaseAll => "RELEASE_ALL",
            Self::Timeout => "TIMEOUT",
            Self::Inactivity => "INACTIVITY",
            Self::Disconnected => "DISCONNECTED",
            Self::Shutdown => "SHUTDOWN",
            Self::LaunchFailed => "LAUNCH_FAILED",
            Self::BrowserCrashed => "BROWSER_CRASHED",
            Self::NodeLost => "NODE_LOST",
            Self::ClientClosed => "CLIENT_CLOSED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

pub type Metadata = BTreeMap<String, String>;

/// Limits on caller-supplied metadata, so a label map can't grow a row or an
/// event without bound. Documented in the proto and docs/configuration.md.
pub const METADATA_MAX_ENTRIES: usize = 16;
pub const METADATA_MAX_KEY_BYTES: usize = 64;
pub const METADATA_MAX_VALUE_BYTES: usize = 256;

/// What a caller asked for, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateParams {
    pub timeout: Duration,
    pub inactivity_timeout: Option<Duration>,
    pub keep_alive: bool,
    pub metadata: Metadata,
    pub viewport: Viewport,
    pub user_agent: Option<String>,
    /// With its credentials: only the launch sees them.
    pub proxy: Option<Proxy>,
    pub idempotency_key: Option<String>,
    pub context: Option<SessionContext>,
    pub egress: EgressRules,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: SessionId,
    pub status: SessionStatus,
    pub end_reason: Option<EndReason>,
    pub error: Option<String>,
    pub created_at: SystemTime,
    pub started_at: Option<SystemTime>,
    pub ended_at: Option<SystemTime>,
    pub timeout: Duration,
    pub inactivity_timeout: Option<Duration>,
    pub keep_alive: bool,
    pub metadata: Metadata,
    pub viewport: Viewport,
    pub user_agent: Option<String>,
    pub proxy_url: Option<String>,
    pub browser_version: Option<String>,
    /// The project it belongs to; only that project's keys (and admin
    /// keys) see it.
    pub project: String,
    /// The saved browser state it started from, and whether it saves back.
    pub context: Option<SessionContext>,
    /// The node that runs (or ran) its browser.
    pub node_id: String,
    /// Its narrowing of the server's egress policy.
    pub egress: EgressRules,
    /// Its traffic through the egress proxy: stored when it ends, read
    /// from the browser while it runs on this node; `None` without one.
    pub egress_usage: Option<EgressUsage>,
}

uuid_id!(
    /// A context's id.
    ContextId
);

/// Which context a session uses, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionContext {
    pub context_id: ContextId,
    /// Saves its state back when it ends normally.
    pub persist: bool,
}

/// A save of a session's state to its context, as its event records it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ContextSave {
    pub context_id: String,
    /// The context's version after it (unchanged when it failed).
    pub version: u64,
    pub size_bytes: u64,
    /// Why it failed; `None` when it succeeded.
    pub error: Option<String>,
}

impl Session {
    pub fn expires_at(&self) -> SystemTime {
        self.created_at + self.timeout
    }

    /// Browser time: from LIVE to the end, or to `now` while still running.
    pub fn usage(&self, now: SystemTime) -> Duration {
        match self.started_at {
            None => Duration::ZERO,
            Some(start) => self
                .ended_at
                .unwrap_or(now)
                .duration_since(start)
                .unwrap_or_default(),
        }
    }

    pub fn matches_metadata(&self, filter: &Metadata) -> bool {
        filter
            .iter()
            .all(|(k, v)| self.metadata.get(k).is_some_and(|mine| mine == v))
    }
}

/// What an event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A lifecycle transition.
    StatusChanged,
    /// A new timeout (ExtendSession); the status is unchanged.
    Extended,
    /// The session's state was saved to its context.
    ContextSaved,
    /// Saving the session's state to its context failed.
    ContextSaveFailed,
    /// A viewer opened the session's live view.
    ViewerJoined,
    /// A viewer closed the session's live view.
    ViewerLeft,
}

impl EventKind {
    pub const ALL: [EventKind; 6] = [
        Self::StatusChanged,
        Self::Extended,
        Self::ContextSaved,
        Self::ContextSaveFailed,
        Self::ViewerJoined,
        Self::ViewerLeft,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::StatusChanged => "STATUS_CHANGED",
            Self::Extended => "EXTENDED",
            Self::ContextSaved => "CONTEXT_SAVED",
            Self::ContextSaveFailed => "CONTEXT_SAVE_FAILED",
            Self::ViewerJoined => "VIEWER_JOINED",
            Self::ViewerLeft => "VIEWER_LEFT",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionEvent {
    pub sequence: u64,
    pub kind: EventKind,
    pub occurred_at: SystemTime,
    pub from_status: Option<SessionStatus>,
    pub to_status: SessionStatus,
    pub end_reason: Option<EndReason>,
    /// Who caused it, as recorded (see [`Actor::recorded`]); empty for
    /// events stored before actors were.
    pub actor: String,
    /// For the context-save kinds: the save.
    pub context_save: Option<ContextSave>,
    /// The session right after the transition.
    pub session: Session,
}

/// Who caused a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// A call made with this API key (its id).
    Key(String),
    /// A call without a key, on a server running open.
    Anonymous,
    /// A CDP client, through the relay (its `Browser.close`).
    CdpClient,
    /// browserd itself: a timeout, a crash, shutdown…
    System,
    /// Someone holding a live view link (its id), who has no key.
    Viewer(String),
}

impl Actor {
    /// As an event records it: `key/<id>`, `anonymous`, `cdp-client`, or
    /// `system/<end reason in lower case>`.
    pub fn recorded(&self, reason: Option<EndReason>) -> String {
        match self {
            Self::Key(id) => format!("key/{id}"),
            Self::Anonymous => "anonymous".into(),
            Self::CdpClient => "cdp-client".into(),
            Self::Viewer(link) => format!("viewer/{link}"),
            Self::System => match reason {
                Some(reason) => format!("system/{}", reason.as_str().to_ascii_lowercase()),
                None => "system".into(),
            },
        }
    }
}

/// Which sessions a List or ReleaseAll call is about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionFilter {
    /// Empty: any status.
    pub statuses: Vec<SessionStatus>,
    pub metadata: Metadata,
    /// Every project named here must be the session's: the one asked for
    /// and, for a project key, its own (two different names match
    /// nothing).
    pub projects: Vec<String>,
}

/// Which events a WatchSessions stream delivers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Empty: every session.
    pub session_ids: Vec<SessionId>,
    /// Matched against `to_status`; empty: any.
    pub statuses: Vec<SessionStatus>,
    pub metadata: Metadata,
    /// Empty: any.
    pub kinds: Vec<EventKind>,
    /// As in [`SessionFilter::projects`].
    pub projects: Vec<String>,
}

impl EventFilter {
    pub fn matches(&self, event: &SessionEvent) -> bool {
        self.projects.iter().all(|p| *p == event.session.project)
            && (self.session_ids.is_empty() || self.session_ids.contains(&event.session.id))
            && (self.statuses.is_empty() || self.statuses.contains(&event.to_status))
            && (self.kinds.is_empty() || self.kinds.contains(&event.kind))
            && event.session.matches_metadata(&self.metadata)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_states_are_final_and_only_pending_goes_live() {
        for from in SessionStatus::ALL {
            for to in SessionStatus::ALL {
                let allowed = from.can_become(to);
                if from.is_terminal() {
                    assert!(!allowed, "{from:?} -> {to:?} must be refused");
                }
                if to == SessionStatus::Live {
                    assert_eq!(allowed, from == SessionStatus::Pending);
                }
                if to == SessionStatus::Pending {
                    assert!(!allowed, "nothing goes back to PENDING");
                }
            }
        }
    }

    #[test]
    fn every_end_reason_ends_in_a_terminal_status_and_round_trips() {
        for reason in EndReason::ALL {
            assert!(reason.terminal_status().is_terminal());
            assert_eq!(EndReason::parse(reason.as_str()), Some(reason));
        }
        for status in SessionStatus::ALL {
            assert_eq!(SessionStatus::parse(status.as_str()), Some(status));
        }
        for kind in EventKind::ALL {
            assert_eq!(EventKind::parse(kind.as_str()), Some(kind));
        }
    }
}
