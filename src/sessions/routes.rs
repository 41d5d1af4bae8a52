//! Where the CDP relay finds a live session's browser, and the check of
//! the session token it is given.

use std::path::PathBuf;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::Engine;
use super::model::SessionId;
use super::presence::Presence;
use crate::browser::pipe::Pipe;

/// How the CDP relay reaches a live session's browser.
#[derive(Debug, Clone)]
pub struct Route {
    pub token: String,
    /// The session's browser, shared with browserd's own calls.
    pub browser: Pipe,
    /// The browser's profile directory: the one place on the host where
    /// the relay puts files for it and takes its downloads from.
    pub profile: PathBuf,
    /// Cancelled when the session ends: every relayed connection closes.
    pub closed: CancellationToken,
    /// Where the relay reports clients and their activity.
    pub presence: Arc<Presence>,
}

impl Engine {
    /// The relay target of a live session, if the token is right.
    pub fn route(&self, id: SessionId, token: &str) -> Option<Route> {
        let routes = self.inner.routes.read().expect("routes lock poisoned");
        let route = routes.get(&id)?;
        constant_time_eq(route.token.as_bytes(), token.as_bytes()).then(|| route.clone())
    }
}

/// Compares without an early exit, so the time taken does not tell how
/// much of a guessed token was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
