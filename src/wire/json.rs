//! The protobuf JSON mapping (as grpcurl prints it) of browserd's
//! messages: what the CLI prints for scripts and what the console's JSON
//! API answers, so both faces speak one shape.

use serde_json::{Value, json};

use crate::pb;

pub fn session_json(s: &pb::Session) -> Value {
    json!({
        "id": s.id,
        "project": s.project,
        "nodeId": s.node_id,
        "status": pb::SessionStatus::try_from(s.status).map_or("", |v| v.as_str_name()),
        "endReason": pb::EndReason::try_from(s.end_reason).map_or("", |v| v.as_str_name()),
        "error": s.error,
        "createdAt": s.created_at.as_ref().map(ToString::to_string),
        "startedAt": s.started_at.as_ref().map(ToString::to_string),
        "endedAt": s.ended_at.as_ref().map(ToString::to_string),
        "expiresAt": s.expires_at.as_ref().map(ToString::to_string),
        "timeout": s.timeout.as_ref().map(ToString::to_string),
        "inactivityTimeout": s.inactivity_timeout.as_ref().map(ToString::to_string),
        "keepAlive": s.keep_alive,
        "metadata": s.metadata,
        "viewport": s.viewport.as_ref().map(|v| json!({ "width": v.width, "height": v.height })),
        "userAgent": s.user_agent,
        "proxyUrl": s.proxy_url,
        "connectUrl": s.connect_url,
        "browserVersion": s.browser_version,
        "usage": s.usage.as_ref().map(ToString::to_string),
        "context": s.context.as_ref().map(|c| json!({ "contextId": c.context_id, "persist": c.persist })),
        "egress": s.egress.as_ref().map(|e| json!({ "allow": e.allow, "deny": e.deny })),
        // uint64 is a string in the protobuf JSON mapping.
        "egressUsage": s.egress_usage.as_ref().map(|u| json!({
            "bytesSent": u.bytes_sent.to_string(),
            "bytesReceived": u.bytes_received.to_string(),
            "requests": u.requests.to_string(),
            "refused": u.refused.to_string(),
        })),
    })
}

pub fn event_json(e: &pb::SessionEvent) -> Value {
    json!({
        // uint64 is a string in the protobuf JSON mapping.
        "sequence": e.sequence.to_string(),
        "occurredAt": e.occurred_at.as_ref().map(ToString::to_string),
        "sessionId": e.session_id,
        "fromStatus": pb::SessionStatus::try_from(e.from_status).map_or("", |v| v.as_str_name()),
        "toStatus": pb::SessionStatus::try_from(e.to_status).map_or("", |v| v.as_str_name()),
        "endReason": pb::EndReason::try_from(e.end_reason).map_or("", |v| v.as_str_name()),
        "session": e.session.as_ref().map(session_json),
        "kind": pb::EventKind::try_from(e.kind).map_or("", |v| v.as_str_name()),
        "actor": e.actor,
        "contextSave": e.context_save.as_ref().map(|save| json!({
            "contextId": save.context_id,
            // uint64 is a string in the protobuf JSON mapping.
            "version": save.version.to_string(),
            "sizeBytes": save.size_bytes.to_string(),
            "error": save.error,
        })),
    })
}

pub fn context_json(c: &pb::Context) -> Value {
    json!({
        "id": c.id,
        "name": c.name,
        "project": c.project,
        "metadata": c.metadata,
        "createdAt": c.created_at.as_ref().map(ToString::to_string),
        "updatedAt": c.updated_at.as_ref().map(ToString::to_string),
        "version": c.version.to_string(),
        "sizeBytes": c.size_bytes.to_string(),
        "savedBySessionId": c.saved_by_session_id,
        "writerSessionId": c.writer_session_id,
        "lastSaveError": c.last_save_error,
    })
}

pub fn project_json(p: &pb::Project) -> Value {
    json!({
        "name": p.name,
        "maxSessions": p.max_sessions,
        "createdAt": p.created_at.as_ref().map(ToString::to_string),
    })
}

pub fn node_json(n: &pb::Node) -> Value {
    json!({
        "id": n.id,
        "grpcUrl": n.grpc_url,
        "relayUrl": n.relay_url,
        "capacity": n.capacity,
        "liveSessions": n.live_sessions,
        "warmBrowsers": n.warm_browsers,
        "draining": n.draining,
        "lost": n.lost,
        "leaseAge": n.lease_age.as_ref().map(ToString::to_string),
        "startedAt": n.started_at.as_ref().map(ToString::to_string),
        "epoch": n.epoch.to_string(),
    })
}

pub fn key_json(k: &pb::ApiKey) -> Value {
    json!({
        "id": k.id,
        "project": k.project,
        "admin": k.admin,
        "description": k.description,
        "createdAt": k.created_at.as_ref().map(ToString::to_string),
        "revokedAt": k.revoked_at.as_ref().map(ToString::to_string),
    })
}
