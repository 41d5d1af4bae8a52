//! The plain types every layer speaks: sessions and their events, live
//! view links, contexts and their browser state, projects, keys and
//! callers, launch values, page tokens, request bounds and the crate's
//! error. Parsed and validated once at a face; storage, the browser and
//! the services below work with these, never with protos or rows.
//!
//! Imports nothing of the crate: everything else imports this, so no
//! layer needs another's folder for a type.

pub mod access;
pub mod context;
pub mod egress;
pub mod error;
pub mod launch;
pub mod live_view;
pub(crate) mod page_token;
pub mod session;
pub(crate) mod validate;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use error::{Error, Result};

/// Now, at the millisecond precision the store keeps, so a session read
/// back equals the one written.
pub(crate) fn now_ms() -> SystemTime {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    UNIX_EPOCH + Duration::from_millis(since.as_millis() as u64)
}
