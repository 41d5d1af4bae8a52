use super::model::{SessionId, SessionStatus};
use crate::store::StoreError;

/// Everything the engine can refuse or fail with. The API layer maps each
/// variant to one gRPC status code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
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
    StoreUnavailable(StoreError),
    /// The session ended on this node, but the database could not store it
    /// yet: browserd keeps the change and stores it, in order and with its
    /// original time, once the database is back.
    #[error(
        "session {0} has ended, but the database is unavailable: the end is stored once it is back"
    )]
    EndDeferred(SessionId),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for Error {
    fn from(error: StoreError) -> Self {
        if error.is_unavailable() {
            Self::StoreUnavailable(error)
        } else {
            Self::Store(error)
        }
    }
}

impl Error {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
