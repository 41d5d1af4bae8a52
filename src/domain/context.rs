//! A context as the rest of browserd sees it, and the browser state it
//! keeps.

use std::path::PathBuf;
use std::time::SystemTime;

use super::session::{ContextId, Metadata, SessionId};

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

/// The largest state, before compression, that is collected, sealed or
/// opened: the whole of it is held in memory, and zstd can expand a small
/// blob a thousandfold.
pub const MAX_UNPACKED: usize = 1 << 30;

/// What a session saves: its cookies and the state files of its profile.
#[derive(Clone, PartialEq, Eq)]
pub struct BrowserState {
    /// CDP `Network.Cookie[]` from `Storage.getCookies`, session cookies
    /// included; given back as they are to `Storage.setCookies`.
    pub cookies: serde_json::Value,
    /// Paths relative to the profile, with their contents.
    pub files: Vec<(PathBuf, Vec<u8>)>,
}

/// Cookie values and file contents are the user's secrets: only counts.
impl std::fmt::Debug for BrowserState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrowserState")
            .field("cookies", &self.cookies.as_array().map_or(0, Vec::len))
            .field("files", &self.files.len())
            .field(
                "file_bytes",
                &self.files.iter().map(|(_, d)| d.len()).sum::<usize>(),
            )
            .finish()
    }
}
