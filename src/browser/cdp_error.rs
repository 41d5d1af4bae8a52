//! The one error of a CDP call, whichever way it went: over a browser's
//! pipe ([`super::pipe`], browserd's own calls) or over a WebSocket
//! (`browser::cdp`, the tests' and the bench's client). Apart from the
//! client so that the service keeps it when the client is left out of the
//! build.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum CdpError {
    #[error("cannot connect to the CDP WebSocket: {0}")]
    Connect(#[from] tokio_tungstenite::tungstenite::Error),
    #[error("the browser's CDP connection is closed")]
    Closed,
    #[error("the browser did not answer {method} within {timeout:?}")]
    Timeout { method: String, timeout: Duration },
    #[error("the browser refused {method}: {message}")]
    Refused { method: String, message: String },
}
