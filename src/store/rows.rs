//! Rows to domain types and back: the one place that knows how a
//! session, an event or an instant is written down in the database.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::entities::{session_events, sessions};
use super::{Result, StoreError};
use crate::domain::egress::EgressRules;
use crate::domain::launch::Viewport;
use crate::domain::session::{
    ContextId, EndReason, EventKind, Metadata, Session, SessionContext, SessionEvent, SessionId,
    SessionStatus,
};

pub(super) fn to_event(row: &session_events::Model) -> Result<SessionEvent> {
    let corrupt = |what: &str| StoreError::Corrupt {
        id: row.session_id.clone(),
        what: what.to_owned(),
    };
    let snapshot: sessions::Model =
        serde_json::from_str(&row.snapshot).map_err(|e| corrupt(&format!("snapshot: {e}")))?;
    let session = to_session(&snapshot)?;
    Ok(SessionEvent {
        sequence: row.sequence as u64,
        kind: EventKind::parse(&row.kind).ok_or_else(|| corrupt("kind"))?,
        occurred_at: from_millis(row.occurred_at),
        actor: row.actor.clone(),
        context_save: match &row.context_save {
            None => None,
            Some(json) => Some(
                serde_json::from_str(json).map_err(|e| corrupt(&format!("context_save: {e}")))?,
            ),
        },
        from_status: match &row.from_status {
            None => None,
            Some(s) => Some(SessionStatus::parse(s).ok_or_else(|| corrupt("from_status"))?),
        },
        to_status: session.status,
        end_reason: session.end_reason,
        session,
    })
}

pub(super) fn parse_id(id: &str) -> Result<SessionId> {
    SessionId::parse(id).ok_or_else(|| StoreError::Corrupt {
        id: id.to_owned(),
        what: "id is not a UUID".into(),
    })
}

pub(super) fn parse_status(row: &sessions::Model) -> Result<SessionStatus> {
    SessionStatus::parse(&row.status).ok_or_else(|| StoreError::Corrupt {
        id: row.id.clone(),
        what: format!("status {:?}", row.status),
    })
}

pub(super) fn to_session(row: &sessions::Model) -> Result<Session> {
    let corrupt = |what: String| StoreError::Corrupt {
        id: row.id.clone(),
        what,
    };
    let end_reason = match &row.end_reason {
        None => None,
        Some(r) => Some(EndReason::parse(r).ok_or_else(|| corrupt(format!("end_reason {r:?}")))?),
    };
    let metadata: Metadata =
        serde_json::from_str(&row.metadata).map_err(|e| corrupt(format!("metadata: {e}")))?;
    Ok(Session {
        id: parse_id(&row.id)?,
        status: parse_status(row)?,
        end_reason,
        error: row.error.clone(),
        created_at: from_millis(row.created_at),
        started_at: row.started_at.map(from_millis),
        ended_at: row.ended_at.map(from_millis),
        timeout: Duration::from_millis(row.timeout_ms.max(0) as u64),
        inactivity_timeout: row
            .inactivity_timeout_ms
            .map(|ms| Duration::from_millis(ms.max(0) as u64)),
        keep_alive: row.keep_alive,
        metadata,
        viewport: Viewport {
            width: row.viewport_width as u32,
            height: row.viewport_height as u32,
        },
        user_agent: row.user_agent.clone(),
        proxy_url: row.proxy_url.clone(),
        browser_version: row.browser_version.clone(),
        project: row.project.clone(),
        context: match &row.context_id {
            None => None,
            Some(id) => Some(SessionContext {
                context_id: ContextId::parse(id)
                    .ok_or_else(|| corrupt(format!("context_id {id:?}")))?,
                persist: row.context_persist,
            }),
        },
        node_id: row.node_id.clone(),
        egress: match &row.egress {
            None => EgressRules::default(),
            Some(text) => {
                serde_json::from_str(text).map_err(|e| corrupt(format!("egress: {e}")))?
            }
        },
        egress_usage: match &row.egress_usage {
            None => None,
            Some(text) => Some(
                serde_json::from_str(text).map_err(|e| corrupt(format!("egress_usage: {e}")))?,
            ),
        },
    })
}

/// A session's egress rules as a row keeps them (each as written);
/// `None` for none.
pub(super) fn egress_text(rules: &EgressRules) -> Option<String> {
    (!rules.is_empty()).then(|| serde_json::to_string(rules).expect("strings serialise"))
}

pub(super) fn millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as i64
}

pub(super) fn from_millis(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

pub(super) fn duration_ms(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}
