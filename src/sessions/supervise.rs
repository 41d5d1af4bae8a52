//! What ends a live session besides a request: its hard timeout (which
//! ExtendSession moves), its browser's loss, inactivity, and its last
//! client leaving. One supervisor task per live session watches them all.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Engine;
use super::engine::{LiveSession, SlotState, instant_of};
use super::presence::Presence;
use crate::browser::Browser;
use crate::domain::access::Caller;
use crate::domain::now_ms;
use crate::domain::session::{Actor, EndReason, Session, SessionId};
use crate::domain::{Error, Result, validate};
use crate::store::Change;

/// The end rules a session was created with, besides its hard timeout.
#[derive(Debug, Clone, Copy)]
pub(super) struct EndRules {
    pub keep_alive: bool,
    /// Only when shorter than the session's timeout (else it never fires).
    pub inactivity: Option<Duration>,
    /// Until the first client connects.
    pub connect_by: Option<Instant>,
}

impl Engine {
    /// Watches one live session until something ends it.
    pub(super) async fn supervise(
        self,
        id: SessionId,
        browser: Arc<Browser>,
        mut deadline: watch::Receiver<Instant>,
        stop: CancellationToken,
        presence: Arc<Presence>,
        rules: EndRules,
    ) {
        let (reason, error) = loop {
            let until = *deadline.borrow_and_update();
            let idle_at = rules.inactivity.map(|t| presence.last_activity() + t);
            let unclaimed_at = rules.connect_by.filter(|_| !presence.ever_connected());
            tokio::select! {
                () = tokio::time::sleep_until(until) => {
                    // Decided before the slot is locked: an ExtendSession
                    // that holds it now may be moving the deadline, so the
                    // deadline is checked again under the lock.
                    let due = |live: &LiveSession| *live.deadline.borrow() <= Instant::now();
                    match self.end_if(id, EndReason::Timeout, None, Actor::System, due).await {
                        Ok(Some(_)) | Err(Error::EndDeferred(_)) => return,
                        Ok(None) if stop.is_cancelled() => return,
                        Ok(None) => continue,
                        Err(e) => {
                            tracing::error!(session.id = %id, error = %e, "cannot end session");
                            return;
                        }
                    }
                }
                changed = deadline.changed() => if changed.is_err() { return },
                why = browser.lost() => break (EndReason::BrowserCrashed, Some(why)),
                () = sleep_until_some(idle_at) => {
                    // A client may have spoken while this task slept.
                    let idle_for = presence.last_activity().elapsed();
                    if rules.inactivity.is_some_and(|limit| idle_for >= limit) {
                        break (EndReason::Inactivity, None);
                    }
                }
                () = sleep_until_some(unclaimed_at) => if !presence.ever_connected() {
                    break (EndReason::Inactivity, None);
                },
                () = presence.changed() => if !rules.keep_alive && presence.abandoned() {
                    break (EndReason::Disconnected, None);
                },
                () = stop.cancelled() => return,
            }
        };
        self.end_logged(id, reason, error).await;
    }

    /// Sets a new hard timeout, counted from the session's creation, and
    /// emits an EXTENDED event. Atomic with expiry: it holds the slot that
    /// the timeout must take, and the timeout looks at the deadline again
    /// once it has it.
    pub async fn extend(
        &self,
        caller: &Caller,
        id: SessionId,
        timeout: Duration,
    ) -> Result<Session> {
        let timeout = validate::timeout("timeout", timeout, self.inner.config.max_timeout)?;
        self.may_act(caller, id).await?;
        if let Some(slot) = self.slot(id) {
            let state = slot.state.lock().await;
            if let SlotState::Live(live) = &*state {
                let current = self.read(id).await?;
                if current.created_at + timeout <= SystemTime::now() {
                    return Err(Error::invalid(
                        "timeout",
                        "the session would already have expired; give a longer timeout",
                    ));
                }
                let change = Change::Extend {
                    timeout,
                    at: now_ms(),
                    actor: caller.actor.clone(),
                };
                let event = self.commit(id, change).await?.ok_or(Error::NotFound(id))?;
                live.deadline
                    .send_replace(instant_of(event.session.expires_at()));
                return Ok(event.session);
            }
        }
        let session = self.read(id).await?;
        Err(Error::NotLive {
            id,
            status: session.status,
        })
    }
}

async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
