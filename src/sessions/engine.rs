//! The engine's state and its one commit path: every status change is
//! persisted with its event, in the order this node made them.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, SystemTime};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::pool::WarmPool;
use super::routes::Route;
use crate::browser::{Browser, Launcher};
use crate::domain::session::{Actor, ContextId, EndReason, SessionEvent, SessionId};
use crate::domain::{Error, Result, now_ms};
use crate::events::EventHub;
use crate::store::{Change, Store};
use crate::telemetry::Metrics;

/// Server-wide settings the engine enforces.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Each session's browser profile lives in `profiles_dir/<session id>`.
    pub profiles_dir: PathBuf,
    /// Signs each live session's connect token.
    pub secret: Arc<crate::secret::ServerSecret>,
    pub default_timeout: Duration,
    pub max_timeout: Duration,
    pub max_sessions: usize,
    /// Release a session no client has connected to within this time.
    pub connect_timeout: Option<Duration>,
    /// Browsers kept launched for sessions with default options.
    pub warm_pool: usize,
    /// Events a subscriber may lag before ABORTED.
    pub watch_buffer: usize,
    /// How long ended sessions and old events are kept; `None`: forever.
    pub retention: Option<Duration>,
    /// Seals saved context state (derived from the server secret).
    pub seal_key: Arc<crate::contexts::seal::SealKey>,
    /// Largest saved context state, sealed, in bytes; a bigger save fails
    /// (CONTEXT_SAVE_FAILED) and the context keeps its version.
    pub context_max_size: usize,
}

#[derive(Clone)]
pub struct Engine {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub config: EngineConfig,
    pub store: Store,
    pub events: EventHub,
    pub launcher: Launcher,
    /// Sessions of this node that have not finished ending.
    pub slots: Mutex<HashMap<SessionId, Arc<Slot>>>,
    /// Notified when a slot goes: a drain waits for the last.
    pub slots_changed: Notify,
    /// This node in the cluster: its name, incarnation and peers.
    pub node: Arc<crate::cluster::Membership>,
    /// Live sessions' relay targets, read on every CDP connection.
    pub routes: RwLock<HashMap<SessionId, Route>>,
    /// One permit per session with a browser (launching or live), so the
    /// number of browsers never exceeds --max-sessions.
    pub capacity: Arc<Semaphore>,
    /// Browsers launched ahead of demand.
    pub pool: WarmPool,
    /// Held around each commit: a change waits behind the ends the
    /// backlog holds, so this node's changes are stored in the order made.
    pub commit_order: tokio::sync::Mutex<()>,
    /// Ends made on this node that the database could not store yet, in
    /// the order they were made. While it holds any, every later change
    /// waits behind them (order), and reads are refused (a stored LIVE may
    /// be a lie). Only ends are kept: a browser that is gone must not be
    /// forgotten, while a change that did not happen (going live, an
    /// extension) is simply refused.
    pub backlog: Mutex<VecDeque<(SessionId, Change)>>,
    /// Wakes the task that stores the backlog.
    pub backlog_added: Notify,
    pub tracker: TaskTracker,
    /// Cancelled (under the `slots` lock) when shutdown begins: no new
    /// sessions, no new pooled browsers.
    pub closing: CancellationToken,
    /// The pool's refill task, which shutdown waits for.
    pub refill: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Cancelled once shutdown has released every session: watch streams,
    /// the relay and the gRPC server stop.
    pub stopping: CancellationToken,
    pub metrics: Metrics,
}

/// A session of this node. Its async mutex is held for the whole of a
/// transition, the browser's launch and teardown included, so enders that
/// race run one after the other and the later ones find it ended.
pub(super) struct Slot {
    pub state: Arc<tokio::sync::Mutex<SlotState>>,
    /// The session's project, so a caller's right to end or extend it is
    /// checked without the database, which may be down (an end is still
    /// made then, and stored later).
    pub project: String,
}

pub(super) enum SlotState {
    /// The creating call holds the lock while the browser launches.
    Pending,
    Live(Box<LiveSession>),
    Ended,
}

pub(super) struct LiveSession {
    pub browser: Arc<Browser>,
    /// The hard timeout, which ExtendSession moves and the supervisor obeys.
    pub deadline: watch::Sender<Instant>,
    pub supervisor: CancellationToken,
    pub span: tracing::Span,
    pub permit: OwnedSemaphorePermit,
    /// The context it saves to when it ends normally, and the version it
    /// started from (the save is the version after it, or fails).
    pub persist: Option<(ContextId, u64)>,
}

impl Engine {
    pub fn new(
        config: EngineConfig,
        node: Arc<crate::cluster::Membership>,
        store: Store,
        launcher: Launcher,
        tracker: TaskTracker,
        stopping: CancellationToken,
    ) -> Self {
        let capacity = Arc::new(Semaphore::new(config.max_sessions));
        let events = EventHub::new(config.watch_buffer);
        Self {
            inner: Arc::new_cyclic(|inner: &Weak<Inner>| {
                let (live, subscribers) = (inner.clone(), inner.clone());
                let metrics = Metrics::new(
                    move || {
                        live.upgrade()
                            .map(|inner| inner.routes.read().map_or(0, |r| r.len()) as u64)
                    },
                    move || {
                        subscribers
                            .upgrade()
                            .map(|inner| inner.events.subscribers() as u64)
                    },
                );
                Inner {
                    config,
                    store,
                    events,
                    launcher,
                    slots: Mutex::default(),
                    slots_changed: Notify::new(),
                    node,
                    routes: RwLock::default(),
                    capacity,
                    pool: WarmPool::default(),
                    commit_order: tokio::sync::Mutex::new(()),
                    backlog: Mutex::default(),
                    backlog_added: Notify::new(),
                    tracker,
                    closing: CancellationToken::new(),
                    refill: Mutex::default(),
                    stopping,
                    metrics,
                }
            }),
        }
    }

    /// Persists a change and has its event published.
    /// `None`: the session was already past that point; nothing changed.
    ///
    /// An end the database cannot take now is kept in the backlog and
    /// stored once it can, with its original time (`EndDeferred`).
    pub(super) async fn commit(
        &self,
        id: SessionId,
        change: Change,
    ) -> Result<Option<SessionEvent>> {
        let _order = self.inner.commit_order.lock().await;
        let deferrable = matches!(change, Change::End { .. });
        if deferrable && !self.backlog().is_empty() {
            self.defer(id, change);
            return Err(Error::EndDeferred(id));
        }
        self.caught_up()?;
        match self.inner.store.transition(id, &change).await {
            Ok(event) => {
                if let Some(event) = &event {
                    self.committed(event);
                }
                Ok(event)
            }
            Err(e) if deferrable => {
                tracing::warn!(session.id = %id, error = %e, "cannot store a session's end now; it is kept and stored once the database is back");
                self.defer(id, change);
                Err(Error::EndDeferred(id))
            }
            Err(e) => Err(e.into()),
        }
    }

    fn defer(&self, id: SessionId, change: Change) {
        self.backlog().push_back((id, change));
        self.inner.backlog_added.notify_one();
    }

    /// After `event` committed: the tail publishes it (see [`crate::events`]).
    pub(super) fn committed(&self, event: &SessionEvent) {
        if let Some(reason) = event.session.end_reason {
            self.inner.metrics.session_ended(reason.as_str());
        }
        self.inner.events.committed(event.sequence);
    }

    /// Stores the backlog, oldest first. Err: the database still refuses
    /// (what is left stays, in order).
    pub(super) async fn store_backlog(&self) -> Result<()> {
        let _order = self.inner.commit_order.lock().await;
        loop {
            let Some((id, change)) = self.backlog().front().cloned() else {
                return Ok(());
            };
            // An end stored by an attempt whose answer was lost is found
            // ended: CAS makes the retry a no-op, not a second event.
            let event = self.inner.store.transition(id, &change).await?;
            self.backlog().pop_front();
            if let Some(event) = &event {
                self.committed(event);
            }
        }
    }

    /// Stores the backlog whenever it has something, until shutdown (which
    /// makes a last attempt itself).
    pub(super) async fn keep_storing_backlog(self) {
        let mut backoff = BACKLOG_RETRY_MIN;
        loop {
            if self.backlog().is_empty() {
                tokio::select! {
                    () = self.inner.backlog_added.notified() => {}
                    () = self.inner.stopping.cancelled() => return,
                }
                continue;
            }
            match self.store_backlog().await {
                Ok(()) => {
                    tracing::info!("stored the changes made while the database was unavailable");
                    backoff = BACKLOG_RETRY_MIN;
                }
                Err(e) => {
                    tracing::debug!(error = %e, retry_in = ?backoff, "the database still refuses the backlog");
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = self.inner.stopping.cancelled() => return,
                    }
                    backoff = (backoff * 2).min(BACKLOG_RETRY_MAX);
                }
            }
        }
    }

    /// Refuses a read while ends made here wait to be stored: the database
    /// would still show those sessions as they were.
    pub(super) fn caught_up(&self) -> Result<()> {
        if self.backlog().is_empty() {
            Ok(())
        } else {
            Err(Error::Unavailable(CATCHING_UP.into()))
        }
    }

    fn backlog(&self) -> std::sync::MutexGuard<'_, VecDeque<(SessionId, Change)>> {
        self.inner.backlog.lock().expect("backlog lock poisoned")
    }

    pub(super) fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<SessionId, Arc<Slot>>> {
        self.inner.slots.lock().expect("slots lock poisoned")
    }

    /// Removes a session that has finished ending (or never started) from
    /// this node.
    pub(super) fn forget(&self, id: SessionId) {
        self.slots().remove(&id);
        self.inner.slots_changed.notify_waiters();
    }

    pub(super) fn slot(&self, id: SessionId) -> Option<Arc<Slot>> {
        self.slots().get(&id).cloned()
    }

    pub(super) fn routes(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<SessionId, Route>> {
        self.inner.routes.write().expect("routes lock poisoned")
    }
}

/// First and longest wait between attempts to store the backlog.
const BACKLOG_RETRY_MIN: Duration = Duration::from_millis(100);
const BACKLOG_RETRY_MAX: Duration = Duration::from_secs(1);

const CATCHING_UP: &str =
    "the database was unavailable and is catching up on changes made meanwhile; retry shortly";

pub(super) fn end_change(reason: EndReason, error: Option<String>, actor: Actor) -> Change {
    Change::End {
        reason,
        error,
        at: now_ms(),
        actor,
        egress_usage: None,
    }
}

pub(super) fn record_end(span: &tracing::Span, reason: EndReason, actor: &Actor) {
    span.record("session.status", reason.terminal_status().as_str());
    span.record("session.end_reason", reason.as_str());
    span.record("session.ended_by", actor.recorded(Some(reason)));
}

pub(super) fn instant_of(at: SystemTime) -> Instant {
    Instant::now() + at.duration_since(SystemTime::now()).unwrap_or_default()
}
