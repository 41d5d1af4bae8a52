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
    #[error("{0}")]
    OutOfRange(String),
    #[error(transparent)]
    Store(#[from] StoreError),
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
