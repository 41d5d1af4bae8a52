//! A context as the rest of browserd sees it.

use std::time::SystemTime;

use crate::sessions::model::{ContextId, Metadata, SessionId};

/// Saved browser state of one project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    pub id: ContextId,
    pub name: String,
    pub project: String,
    pub metadata: Metadata,
    pub created_at: SystemTime,
    pub updated_at: SystemTime,
    /// 0 until a session saves; one more per save.
    pub version: u64,
    pub size_bytes: u64,
    pub saved_by: Option<SessionId>,
    /// The PENDING or LIVE session persisting to it.
    pub writer: Option<SessionId>,
    pub last_save_error: Option<String>,
}

/// A context's latest saved state, as a session starts from it.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub version: u64,
    /// Sealed; empty for version 0 (a new profile).
    pub data: Vec<u8>,
}
