//! Proto <-> domain conversions, for the gRPC API, the console and the
//! CLI alike. Protos are destructured exhaustively, so a
//! new field breaks the build here instead of being silently dropped. A
//! value refused here is an [`Error::InvalidArgument`] like the engine's, so
//! it becomes a status (with its BadRequest detail) in the one place that
//! maps errors.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use crate::domain::error::untrusted;

use crate::domain::Error;
use crate::domain::access::{ApiKey, Project};
use crate::domain::context::Context;
use crate::domain::session::{
    ContextId, EndReason, EventKind, Metadata, Session, SessionEvent, SessionId, SessionStatus,
};
use crate::pb;

/// `field` names the request field, e.g. `session_ids[2]`. The id is
/// quoted escaped and bounded: it is untrusted and may be a megabyte.
pub fn session_id(field: &str, id: &str) -> Result<SessionId, Error> {
    SessionId::parse(id).ok_or_else(|| {
        Error::invalid(
            field,
            format!("\"{}\" is not a session id (a UUID)", untrusted(id)),
        )
    })
}

pub fn context_id(field: &str, id: &str) -> Result<ContextId, Error> {
    ContextId::parse(id).ok_or_else(|| {
        Error::invalid(
            field,
            format!("\"{}\" is not a context id (a UUID)", untrusted(id)),
        )
    })
}

/// An absent duration is `None`; a negative or malformed one is refused.
pub fn optional_duration(
    field: &str,
    value: Option<prost_types::Duration>,
) -> Result<Option<Duration>, Error> {
    value.map(|d| duration(field, d)).transpose()
}

fn duration(field: &str, value: prost_types::Duration) -> Result<Duration, Error> {
    let prost_types::Duration { seconds, nanos } = value;
    if seconds < 0 || !(0..1_000_000_000).contains(&nanos) {
        return Err(Error::invalid(
            field,
            format!("must be positive, got {seconds}s {nanos}ns"),
        ));
    }
    Ok(Duration::new(seconds as u64, nanos as u32))
}

/// A page size is a count: negative is refused.
pub fn page_size(value: i32) -> Result<u64, Error> {
    u64::try_from(value).map_err(|_| Error::invalid("page_size", "must not be negative"))
}

pub fn metadata(labels: std::collections::HashMap<String, String>) -> Metadata {
    labels.into_iter().collect()
}

/// Status filters: UNSPECIFIED or unknown values are refused.
pub fn statuses(values: &[i32]) -> Result<Vec<SessionStatus>, Error> {
    values
        .iter()
        .map(|&v| match pb::SessionStatus::try_from(v) {
            Ok(pb::SessionStatus::Pending) => Ok(SessionStatus::Pending),
            Ok(pb::SessionStatus::Live) => Ok(SessionStatus::Live),
            Ok(pb::SessionStatus::Released) => Ok(SessionStatus::Released),
            Ok(pb::SessionStatus::Failed) => Ok(SessionStatus::Failed),
            Ok(pb::SessionStatus::Unspecified) | Err(_) => Err(Error::invalid(
                "statuses",
                format!("{v} is not a session status (UNSPECIFIED is not a filter)"),
            )),
        })
        .collect()
}

/// Kind filters: UNSPECIFIED or unknown values are refused.
pub fn event_kinds(values: &[i32]) -> Result<Vec<EventKind>, Error> {
    values
        .iter()
        .map(|&v| match pb::EventKind::try_from(v) {
            Ok(pb::EventKind::StatusChanged) => Ok(EventKind::StatusChanged),
            Ok(pb::EventKind::Extended) => Ok(EventKind::Extended),
            Ok(pb::EventKind::ContextSaved) => Ok(EventKind::ContextSaved),
            Ok(pb::EventKind::ContextSaveFailed) => Ok(EventKind::ContextSaveFailed),
            Ok(pb::EventKind::ViewerJoined) => Ok(EventKind::ViewerJoined),
            Ok(pb::EventKind::ViewerLeft) => Ok(EventKind::ViewerLeft),
            Ok(pb::EventKind::Unspecified) | Err(_) => Err(Error::invalid(
                "kinds",
                format!("{v} is not an event kind (UNSPECIFIED is not a filter)"),
            )),
        })
        .collect()
}

fn pb_status(status: SessionStatus) -> pb::SessionStatus {
    match status {
        SessionStatus::Pending => pb::SessionStatus::Pending,
        SessionStatus::Live => pb::SessionStatus::Live,
        SessionStatus::Released => pb::SessionStatus::Released,
        SessionStatus::Failed => pb::SessionStatus::Failed,
    }
}

fn pb_reason(reason: Option<EndReason>) -> pb::EndReason {
    match reason {
        None => pb::EndReason::Unspecified,
        Some(EndReason::Requested) => pb::EndReason::Requested,
        Some(EndReason::ReleaseAll) => pb::EndReason::ReleaseAll,
        Some(EndReason::Timeout) => pb::EndReason::Timeout,
        Some(EndReason::Inactivity) => pb::EndReason::Inactivity,
        Some(EndReason::Disconnected) => pb::EndReason::Disconnected,
        Some(EndReason::Shutdown) => pb::EndReason::Shutdown,
        Some(EndReason::LaunchFailed) => pb::EndReason::LaunchFailed,
        Some(EndReason::BrowserCrashed) => pb::EndReason::BrowserCrashed,
        Some(EndReason::NodeLost) => pb::EndReason::NodeLost,
        Some(EndReason::ClientClosed) => pb::EndReason::ClientClosed,
    }
}

pub(crate) fn timestamp(at: SystemTime) -> prost_types::Timestamp {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    prost_types::Timestamp {
        seconds: since.as_secs() as i64,
        nanos: since.subsec_nanos() as i32,
    }
}

pub(crate) fn pb_duration(d: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: d.as_secs().min(i64::MAX as u64) as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

/// `connect_url`: the session's, from the engine (it is never stored).
pub fn to_pb_session(session: &Session, connect_url: Option<String>) -> pb::Session {
    let Session {
        id,
        status,
        end_reason,
        error,
        created_at,
        started_at,
        ended_at,
        timeout,
        inactivity_timeout,
        keep_alive,
        metadata,
        viewport,
        user_agent,
        proxy_url,
        browser_version,
        project,
        context,
        node_id,
        egress,
        egress_usage,
    } = session;
    pb::Session {
        id: id.to_string(),
        status: pb_status(*status).into(),
        end_reason: pb_reason(*end_reason).into(),
        error: error.clone().unwrap_or_default(),
        created_at: Some(timestamp(*created_at)),
        started_at: started_at.map(timestamp),
        ended_at: ended_at.map(timestamp),
        expires_at: Some(timestamp(session.expires_at())),
        timeout: Some(pb_duration(*timeout)),
        inactivity_timeout: inactivity_timeout.map(pb_duration),
        keep_alive: *keep_alive,
        metadata: metadata.clone().into_iter().collect(),
        viewport: Some(pb::Viewport {
            width: viewport.width,
            height: viewport.height,
        }),
        user_agent: user_agent.clone().unwrap_or_default(),
        connect_url: connect_url.unwrap_or_default(),
        browser_version: browser_version.clone().unwrap_or_default(),
        usage: Some(pb_duration(session.usage(SystemTime::now()))),
        proxy_url: proxy_url.clone().unwrap_or_default(),
        project: project.clone(),
        context: context.map(|c| pb::SessionContext {
            context_id: c.context_id.to_string(),
            persist: c.persist,
        }),
        node_id: node_id.clone(),
        egress: (!egress.is_empty()).then(|| pb::EgressRules {
            allow: egress.allow.iter().map(ToString::to_string).collect(),
            deny: egress.deny.iter().map(ToString::to_string).collect(),
        }),
        egress_usage: egress_usage.map(|u| pb::EgressUsage {
            bytes_sent: u.bytes_sent,
            bytes_received: u.bytes_received,
            requests: u.requests,
            refused: u.refused,
        }),
    }
}

/// An event as subscribers get it: its snapshot never carries a
/// connect_url (a subscriber is not necessarily the session's owner, and
/// a replayed event outlives its token's use).
pub fn to_pb_event(event: &SessionEvent) -> pb::SessionEvent {
    let SessionEvent {
        sequence,
        kind,
        occurred_at,
        from_status,
        to_status,
        end_reason,
        actor,
        context_save,
        session,
    } = event;
    pb::SessionEvent {
        sequence: *sequence,
        occurred_at: Some(timestamp(*occurred_at)),
        session_id: session.id.to_string(),
        from_status: from_status
            .map(pb_status)
            .unwrap_or(pb::SessionStatus::Unspecified)
            .into(),
        to_status: pb_status(*to_status).into(),
        end_reason: pb_reason(*end_reason).into(),
        session: Some(to_pb_session(session, None)),
        actor: actor.clone(),
        context_save: context_save.as_ref().map(|save| pb::ContextSave {
            context_id: save.context_id.clone(),
            version: save.version,
            size_bytes: save.size_bytes,
            error: save.error.clone().unwrap_or_default(),
        }),
        kind: match kind {
            EventKind::StatusChanged => pb::EventKind::StatusChanged,
            EventKind::Extended => pb::EventKind::Extended,
            EventKind::ContextSaved => pb::EventKind::ContextSaved,
            EventKind::ContextSaveFailed => pb::EventKind::ContextSaveFailed,
            EventKind::ViewerJoined => pb::EventKind::ViewerJoined,
            EventKind::ViewerLeft => pb::EventKind::ViewerLeft,
        }
        .into(),
    }
}

pub(crate) fn to_pb_project(project: &Project) -> pb::Project {
    let Project {
        name,
        max_sessions,
        created_at,
    } = project;
    pb::Project {
        name: name.clone(),
        max_sessions: max_sessions.unwrap_or(0),
        created_at: Some(timestamp(*created_at)),
    }
}

pub(crate) fn to_pb_key(key: &ApiKey) -> pb::ApiKey {
    let ApiKey {
        id,
        project,
        admin,
        description,
        created_at,
        revoked_at,
    } = key;
    pb::ApiKey {
        id: id.clone(),
        project: project.clone(),
        admin: *admin,
        description: description.clone().unwrap_or_default(),
        created_at: Some(timestamp(*created_at)),
        revoked_at: revoked_at.map(timestamp),
    }
}

pub(crate) fn to_pb_context(context: &Context) -> pb::Context {
    let Context {
        id,
        name,
        project,
        metadata,
        created_at,
        updated_at,
        version,
        size_bytes,
        saved_by,
        writer,
        last_save_error,
    } = context;
    pb::Context {
        id: id.to_string(),
        name: name.clone(),
        project: project.clone(),
        metadata: metadata.clone().into_iter().collect(),
        created_at: Some(timestamp(*created_at)),
        updated_at: Some(timestamp(*updated_at)),
        version: *version,
        size_bytes: *size_bytes,
        saved_by_session_id: saved_by.map(|id| id.to_string()).unwrap_or_default(),
        writer_session_id: writer.map(|id| id.to_string()).unwrap_or_default(),
        last_save_error: last_save_error.clone().unwrap_or_default(),
    }
}
