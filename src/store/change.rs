//! What the engine asks the store to write: a session's change of state,
//! and what inserting a new session answers.

use std::time::{Duration, SystemTime};

use super::ContextBusy;
use crate::domain::egress::EgressUsage;
use crate::domain::session::{
    Actor, ContextId, EndReason, EventKind, Session, SessionEvent, SessionStatus,
};

/// A state change the engine has decided on.
#[derive(Debug, Clone)]
pub enum Change {
    Live {
        started_at: SystemTime,
        browser_version: String,
        browser_pid: u32,
        actor: Actor,
    },
    End {
        reason: EndReason,
        error: Option<String>,
        at: SystemTime,
        actor: Actor,
        /// What its browser's egress proxy carried, when it had one.
        egress_usage: Option<EgressUsage>,
    },
    /// A new hard timeout, counted from creation; the status stays.
    Extend {
        timeout: Duration,
        at: SystemTime,
        actor: Actor,
    },
    /// The session's browser state for its context: sealed bytes to save
    /// as the version after `base` (what the session started from), or
    /// why there are none. The status stays.
    SaveContext {
        context_id: ContextId,
        base: u64,
        sealed: std::result::Result<std::sync::Arc<Vec<u8>>, String>,
        at: SystemTime,
        actor: Actor,
    },
    /// A viewer joined (`joined`) or left the session's live view; the
    /// status stays.
    Viewer {
        joined: bool,
        at: SystemTime,
        actor: Actor,
    },
}

impl Change {
    /// An end that records what the browser's egress proxy carried.
    pub fn with_egress_usage(mut self, usage: Option<EgressUsage>) -> Self {
        if let Self::End { egress_usage, .. } = &mut self {
            *egress_usage = usage;
        }
        self
    }

    /// The status after this change, from `from`; `None` when the change
    /// does not apply to a session in `from`.
    pub(super) fn to_status(&self, from: SessionStatus) -> Option<SessionStatus> {
        let to = match self {
            Self::Live { .. } => SessionStatus::Live,
            Self::End { reason, .. } => reason.terminal_status(),
            Self::Extend { .. } | Self::SaveContext { .. } | Self::Viewer { .. } => {
                return (!from.is_terminal()).then_some(from);
            }
        };
        from.can_become(to).then_some(to)
    }

    pub(super) fn kind(&self) -> EventKind {
        match self {
            Self::Live { .. } | Self::End { .. } => EventKind::StatusChanged,
            Self::Extend { .. } => EventKind::Extended,
            Self::SaveContext { sealed, .. } => match sealed {
                Ok(_) => EventKind::ContextSaved,
                Err(_) => EventKind::ContextSaveFailed,
            },
            Self::Viewer { joined: true, .. } => EventKind::ViewerJoined,
            Self::Viewer { joined: false, .. } => EventKind::ViewerLeft,
        }
    }

    /// When it happened, which its event records.
    pub fn at(&self) -> SystemTime {
        match self {
            Self::Live { started_at, .. } => *started_at,
            Self::End { at, .. }
            | Self::Extend { at, .. }
            | Self::SaveContext { at, .. }
            | Self::Viewer { at, .. } => *at,
        }
    }

    /// Who caused it, as its event records it.
    pub(super) fn actor(&self) -> String {
        match self {
            Self::Live { actor, .. }
            | Self::Extend { actor, .. }
            | Self::SaveContext { actor, .. }
            | Self::Viewer { actor, .. } => actor.recorded(None),
            Self::End { reason, actor, .. } => actor.recorded(Some(*reason)),
        }
    }
}

pub enum Inserted {
    Created(SessionEvent),
    /// The idempotency key was already taken by this session.
    Duplicate(Session),
    /// The project already has this many PENDING or LIVE sessions, its
    /// quota.
    OverQuota(u32),
    /// The session's context does not exist in its project, or another
    /// session persists to it.
    Context(ContextBusy),
    /// This node may not place sessions: it drains, or it was fenced (its
    /// lease was taken over, or another process took its name).
    NotPlaced(NodeRefusal),
}

/// Why a node's insert was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeRefusal {
    Draining,
    Fenced,
}
