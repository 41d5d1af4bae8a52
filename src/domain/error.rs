//! The crate's error: everything the engine, access and contexts can
//! refuse or fail with, and how untrusted text is quoted in it.

use super::session::{SessionId, SessionStatus};

/// A storage failure, carried as the store gave it. Boxed so that the
/// domain names no storage type: the store converts its own errors (see
/// `From<StoreError>` in the store).
pub type StoreFault = Box<dyn std::error::Error + Send + Sync>;

/// Everything the engine (and access and contexts) can refuse or fail
/// with. The API layer maps each variant to one gRPC status code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    PermissionDenied(String),
    /// A project or key that does not exist (a session is [`Error::NotFound`]).
    #[error("{kind} {name:?} not found")]
    UnknownResource { kind: &'static str, name: String },
    #[error("{kind} {name:?} already exists")]
    AlreadyExists { kind: &'static str, name: String },
    #[error("project quota reached: project {project:?} may have at most {max} sessions at once")]
    ProjectQuota { project: String, max: u32 },
    /// A context in use: by its writer (a second `persist`), or by any
    /// session (a delete).
    #[error("context {context} is in use by session {session}: {what}")]
    ContextBusy {
        context: String,
        session: String,
        what: &'static str,
    },
    #[error("{field}: {reason}")]
    InvalidArgument { field: String, reason: String },
    #[error("session {0} not found")]
    NotFound(SessionId),
    #[error("session limit reached: this server runs at most {0} sessions at once")]
    ResourceExhausted(usize),
    #[error("session {id} is {}, not LIVE", status.as_str())]
    NotLive {
        id: SessionId,
        status: SessionStatus,
    },
    /// The session runs on another node, which the call must be
    /// forwarded to.
    #[error("session {id} runs on node {node:?}")]
    Elsewhere { id: SessionId, node: String },
    /// This node takes no new session: it drains, or it lost its lease.
    #[error("this node takes no new session: {0}")]
    NotPlaced(&'static str),
    #[error("session {id} failed: the browser did not launch: {cause}")]
    LaunchFailed { id: SessionId, cause: String },
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Aborted(String),
    #[error(
        "after_sequence {after} is older than the retained event log, which starts at {oldest}"
    )]
    OutOfRange { after: u64, oldest: u64 },
    /// The database cannot be reached, or refuses writes, for now.
    #[error("the database is unavailable; retry shortly")]
    StoreUnavailable(StoreFault),
    /// The session ended on this node, but the database could not store it
    /// yet: browserd keeps the change and stores it, in order and with its
    /// original time, once the database is back.
    #[error(
        "session {0} has ended, but the database is unavailable: the end is stored once it is back"
    )]
    EndDeferred(SessionId),
    #[error(transparent)]
    Store(StoreFault),
}

impl Error {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// At most this many bytes of an untrusted string are quoted back in a
/// status message or a log line (after escaping).
pub const UNTRUSTED_SHOWN_BYTES: usize = 64;

/// Untrusted text as it may be quoted: escaped (`\n`, `\u{202e}`, so it
/// cannot break or reorder a log line) and cut to about
/// [`UNTRUSTED_SHOWN_BYTES`], marked with `…` when cut.
pub fn untrusted(value: &str) -> String {
    let mut shown = String::new();
    for c in value.chars() {
        // escape_debug writes `\n`, `\u{0}`; bidi controls it may leave
        // as they are, so those are spelled out.
        let escaped: String = if is_forbidden(c) && !c.is_control() {
            c.escape_unicode().collect()
        } else {
            c.escape_debug().collect()
        };
        if shown.len() + escaped.len() > UNTRUSTED_SHOWN_BYTES {
            shown.push('…');
            break;
        }
        shown.push_str(&escaped);
    }
    shown
}

/// Characters no text field accepts: control characters (NUL truncates C
/// strings, a newline forges log lines and headers) and the bidi controls
/// that make text read differently from what it is (Trojan Source).
pub fn is_forbidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
        )
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
