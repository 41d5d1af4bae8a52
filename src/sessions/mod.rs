//! The lifecycle engine: the only writer of session status.
//!
//! Handlers, timers, the CDP relay and the browser supervisor never change a
//! status themselves; they call the engine. Two mechanisms make "each
//! session ends exactly once, with exactly one event" hold under races:
//! - on this node, every session has a slot whose async mutex is held for
//!   the whole of a transition (including the browser's launch and its
//!   teardown), so a release racing a timeout or a crash runs strictly after
//!   it and finds the session ended;
//! - in the database, a transition is a compare-and-set on the status read
//!   in the same transaction, and its event is inserted in that transaction.
//!
//! Events are published after commit while `commit_order` is held, so live
//! subscribers see them in sequence order.

pub mod error;
pub mod model;
mod pool;
pub mod presence;
mod validate;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::browser::{self, Browser, LaunchOptions, Launcher, PageInfo};
use crate::events::{EventHub, EventStream};
use crate::store::{Change, Cursor, Inserted, Store};
use crate::telemetry::Metrics;
pub use error::{Error, Result};
use model::{
    CreateParams, EndReason, EventFilter, Metadata, Session, SessionEvent, SessionFilter,
    SessionId, SessionStatus, Viewport,
};
use pool::{Pooled, WarmPool};
use presence::Presence;

/// ListSessions page size when the caller gives none, and the most it gets.
pub const DEFAULT_PAGE_SIZE: u64 = 100;
pub const MAX_PAGE_SIZE: u64 = 1000;

/// Server-wide settings the engine enforces.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Owner recorded on every session row, so a restart finds its own.
    pub node_id: String,
    /// Each session's browser profile lives in `profiles_dir/<session id>`.
    pub profiles_dir: PathBuf,
    /// Base of every connect_url, e.g. `ws://127.0.0.1:50052`.
    pub cdp_base_url: String,
    pub default_timeout: Duration,
    pub max_timeout: Duration,
    pub max_sessions: usize,
    /// Release a session no client has connected to within this time.
    pub connect_timeout: Option<Duration>,
    /// Browsers kept launched for sessions with default options.
    pub warm_pool: usize,
    /// Events a subscriber may lag before ABORTED.
    pub watch_buffer: usize,
}

/// What a caller sent to CreateSession, parsed but not yet bounded.
#[derive(Debug, Clone, Default)]
pub struct CreateRequest {
    pub timeout: Option<Duration>,
    pub inactivity_timeout: Option<Duration>,
    pub keep_alive: bool,
    pub metadata: Metadata,
    pub viewport: Option<Viewport>,
    pub user_agent: String,
    pub proxy_url: String,
    pub idempotency_key: String,
}

/// How the CDP relay reaches a live session's browser.
#[derive(Debug, Clone)]
pub struct Route {
    pub token: String,
    pub upstream: String,
    /// Cancelled when the session ends: every relayed connection closes.
    pub closed: CancellationToken,
    /// Where the relay reports clients and their activity.
    pub presence: Arc<Presence>,
}

/// What ends a live session besides its hard timeout and its browser.
#[derive(Debug, Clone, Copy)]
struct Watch {
    keep_alive: bool,
    /// Only when shorter than the session's timeout (else it never fires).
    inactivity: Option<Duration>,
    /// Until the first client connects.
    connect_by: Option<Instant>,
}

#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    config: EngineConfig,
    store: Store,
    events: EventHub,
    launcher: Launcher,
    /// Sessions of this node that have not finished ending.
    slots: Mutex<HashMap<SessionId, Arc<Slot>>>,
    /// Live sessions' relay targets, read on every CDP connection.
    routes: RwLock<HashMap<SessionId, Route>>,
    /// One permit per session with a browser (launching or live), so the
    /// number of browsers never exceeds --max-sessions.
    capacity: Arc<Semaphore>,
    /// Browsers launched ahead of demand.
    pool: WarmPool,
    /// Held from commit to publish: live subscribers get sequence order.
    commit_order: tokio::sync::Mutex<()>,
    tracker: TaskTracker,
    /// Cancelled (under the `slots` lock) when shutdown begins: no new
    /// sessions, no new pooled browsers.
    closing: CancellationToken,
    /// The pool's refill task, which shutdown waits for.
    refill: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Cancelled once shutdown has released every session: watch streams,
    /// the relay and the gRPC server stop.
    stopping: CancellationToken,
    metrics: Metrics,
}

struct Slot {
    state: Arc<tokio::sync::Mutex<SlotState>>,
}

enum SlotState {
    /// The creating call holds the lock while the browser launches.
    Pending,
    Live(Box<LiveSession>),
    Ended,
}

struct LiveSession {
    browser: Arc<Browser>,
    deadline: watch::Sender<Instant>,
    supervisor: CancellationToken,
    span: tracing::Span,
    _permit: OwnedSemaphorePermit,
}

impl Engine {
    pub fn new(
        config: EngineConfig,
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
                    routes: RwLock::default(),
                    capacity,
                    pool: WarmPool::default(),
                    commit_order: tokio::sync::Mutex::new(()),
                    tracker,
                    closing: CancellationToken::new(),
                    refill: Mutex::default(),
                    stopping,
                    metrics,
                }
            }),
        }
    }

    /// Ends every session a previous process of this node left PENDING or
    /// LIVE (FAILED, NODE_LOST), after removing its browser and profile; then
    /// clears profile directories no session owns. Run once at start.
    pub async fn reconcile(&self) -> Result<usize> {
        let unfinished = self
            .inner
            .store
            .unfinished(&self.inner.config.node_id)
            .await?;
        for session in &unfinished {
            if let Some(dir) = &session.user_data_dir {
                browser::remove_leftover(std::path::Path::new(dir));
            }
            let error = "browserd stopped without ending this session".to_owned();
            self.commit(session.id, end_change(EndReason::NodeLost, Some(error)))
                .await?;
        }
        if let Ok(entries) = std::fs::read_dir(&self.inner.config.profiles_dir) {
            for entry in entries.flatten() {
                browser::remove_leftover(&entry.path());
            }
        }
        Ok(unfinished.len())
    }

    pub async fn create(&self, request: CreateRequest) -> Result<Session> {
        let started = Instant::now();
        let params = self.validate(request)?;
        // A retry gets its session even when the server is full. (Two
        // first tries racing are settled by the store's unique key.)
        if let Some(key) = &params.idempotency_key
            && let Some(existing) = self.inner.store.get_by_idempotency_key(key).await?
        {
            return self.settled(existing).await;
        }
        let pooled = if fits_pool(&params) {
            self.take_pooled().await
        } else {
            None
        };
        let (id, permit, warm) = match pooled {
            Some(Pooled {
                id,
                browser,
                permit,
                ..
            }) => (id, permit, Some(browser)),
            None => (SessionId::new(), self.acquire_capacity().await?, None),
        };
        let from_pool = warm.is_some();

        let now = now_ms();
        let session = Session {
            id,
            status: SessionStatus::Pending,
            end_reason: None,
            error: None,
            created_at: now,
            started_at: None,
            ended_at: None,
            timeout: params.timeout,
            inactivity_timeout: params.inactivity_timeout,
            keep_alive: params.keep_alive,
            metadata: params.metadata,
            viewport: params.viewport,
            user_agent: params.user_agent,
            proxy_url: params.proxy_url,
            connect_url: None,
            browser_version: None,
        };
        let profile = self.inner.config.profiles_dir.join(id.to_string());

        let slot = Arc::new(Slot {
            state: Arc::new(tokio::sync::Mutex::new(SlotState::Pending)),
        });
        let mut state = slot.state.clone().lock_owned().await;
        {
            // Checked under the lock that shutdown sets it under: every slot
            // is either refused here or seen by shutdown.
            let mut slots = self.slots();
            if !self.inner.closing.is_cancelled() {
                slots.insert(id, slot);
            } else {
                drop(slots);
                if let Some(browser) = &warm {
                    browser.destroy().await;
                }
                return Err(Error::Unavailable("the server is shutting down".into()));
            }
        }
        let inserted = {
            let _order = self.inner.commit_order.lock().await;
            let inserted = self
                .inner
                .store
                .insert(
                    &session,
                    params.idempotency_key.as_deref(),
                    &self.inner.config.node_id,
                    &profile,
                )
                .await;
            if let Ok(Inserted::Created(event)) = &inserted {
                self.inner.events.publish(event.clone());
            }
            inserted
        };
        let created = match inserted {
            Ok(Inserted::Created(event)) => event.session,
            failed => {
                // A warm browser taken for nothing is not put back: it may
                // have been reached by a client already. Isolation first.
                if let Some(browser) = &warm {
                    browser.destroy().await;
                }
                self.slots().remove(&id);
                drop(state);
                return match failed {
                    Ok(Inserted::Duplicate(existing)) => self.settled(existing).await,
                    Err(e) => Err(e.into()),
                    Ok(Inserted::Created(_)) => unreachable!("matched above"),
                };
            }
        };

        let span = tracing::info_span!(
            "session",
            session.id = %id,
            // Recorded once, at the end: OpenTelemetry exports every
            // recorded value of a field as another attribute.
            session.status = tracing::field::Empty,
            session.end_reason = tracing::field::Empty,
        );
        let options = LaunchOptions {
            viewport: created.viewport,
            user_agent: created.user_agent.clone(),
            proxy_url: created.proxy_url.clone(),
        };
        let launched = match warm {
            Some(browser) => Ok(browser),
            None => self
                .inner
                .launcher
                .launch(&profile, &options)
                .instrument(span.clone())
                .await
                .map(Arc::new),
        };
        let browser = match launched {
            Ok(browser) => browser,
            Err(e) => {
                let cause = e.to_string();
                tracing::warn!(parent: &span, error = %cause, "browser launch failed");
                let committed = self
                    .commit(id, end_change(EndReason::LaunchFailed, Some(cause.clone())))
                    .await;
                record_end(&span, EndReason::LaunchFailed);
                *state = SlotState::Ended;
                self.slots().remove(&id);
                committed?;
                return Err(Error::LaunchFailed { id, cause });
            }
        };

        let token = uuid::Uuid::new_v4().simple().to_string();
        let connect_url = format!(
            "{}/devtools/browser/{id}?token={token}",
            self.inner.config.cdp_base_url
        );
        let live = self
            .commit(
                id,
                Change::Live {
                    started_at: now_ms(),
                    connect_url,
                    browser_version: browser.version().to_owned(),
                    browser_pid: browser.pid(),
                },
            )
            .await;
        let session = match live {
            Ok(Some(event)) => event.session,
            failed => {
                // Ended from outside this node (another node's reconcile) or
                // the store failed: either way this browser must not live on.
                browser.destroy().await;
                *state = SlotState::Ended;
                self.slots().remove(&id);
                failed?;
                return Err(Error::Aborted(format!(
                    "session {id} ended while its browser was starting"
                )));
            }
        };
        let presence = Presence::new();
        self.routes().insert(
            id,
            Route {
                token,
                upstream: browser.ws_url().to_owned(),
                closed: CancellationToken::new(),
                presence: presence.clone(),
            },
        );
        let deadline = watch::Sender::new(instant_of(session.expires_at()));
        let supervisor = CancellationToken::new();
        let rules = Watch {
            keep_alive: session.keep_alive,
            inactivity: session.inactivity_timeout.filter(|t| *t < session.timeout),
            connect_by: self
                .inner
                .config
                .connect_timeout
                .map(|t| Instant::now() + t),
        };
        self.inner.tracker.spawn(
            self.clone()
                .supervise(
                    id,
                    browser.clone(),
                    deadline.subscribe(),
                    supervisor.clone(),
                    presence,
                    rules,
                )
                .instrument(span.clone()),
        );
        *state = SlotState::Live(Box::new(LiveSession {
            browser,
            deadline,
            supervisor,
            span,
            _permit: permit,
        }));
        self.inner
            .metrics
            .session_created(started.elapsed(), from_pool);
        Ok(session)
    }

    /// Watches one live session until something ends it: the hard timeout,
    /// the browser's loss, inactivity, or its last client leaving.
    async fn supervise(
        self,
        id: SessionId,
        browser: Arc<Browser>,
        mut deadline: watch::Receiver<Instant>,
        stop: CancellationToken,
        presence: Arc<Presence>,
        rules: Watch,
    ) {
        let (reason, error) = loop {
            let until = *deadline.borrow_and_update();
            let idle_at = rules.inactivity.map(|t| presence.last_activity() + t);
            let unclaimed_at = rules.connect_by.filter(|_| !presence.ever_connected());
            tokio::select! {
                () = tokio::time::sleep_until(until) => break (EndReason::Timeout, None),
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

    async fn end_logged(&self, id: SessionId, reason: EndReason, error: Option<String>) {
        if let Err(e) = self.end(id, reason, error).await {
            tracing::error!(session.id = %id, error = %e, "cannot end session");
        }
    }

    /// Ends a session of this node. Returns the session as it is afterwards
    /// and whether this call ended it (false: it had already ended).
    pub async fn end(
        &self,
        id: SessionId,
        reason: EndReason,
        error: Option<String>,
    ) -> Result<(Session, bool)> {
        let slot = self.slots().get(&id).cloned();
        if let Some(slot) = slot {
            let mut state = slot.state.lock().await;
            if let SlotState::Live(live) = std::mem::replace(&mut *state, SlotState::Ended) {
                live.supervisor.cancel();
                if let Some(route) = self.routes().remove(&id) {
                    route.closed.cancel();
                }
                live.browser.destroy().await;
                // The browser is gone: its capacity is free before anyone
                // can learn that the session ended and ask for another.
                let LiveSession { span, _permit, .. } = *live;
                drop(_permit);
                self.inner.pool.wake.notify_one();
                let committed = self.commit(id, end_change(reason, error)).await;
                record_end(&span, reason);
                self.slots().remove(&id);
                if let Some(event) = committed? {
                    return Ok((event.session, true));
                }
            }
        }
        let session = self.inner.store.get(id).await?.ok_or(Error::NotFound(id))?;
        Ok((session, false))
    }

    pub async fn release(&self, id: SessionId) -> Result<Session> {
        Ok(self.end(id, EndReason::Requested, None).await?.0)
    }

    /// Releases every PENDING or LIVE session whose metadata matches.
    pub async fn release_all(&self, metadata: Metadata) -> Result<Vec<SessionId>> {
        validate::metadata("metadata", &metadata)?;
        let filter = SessionFilter {
            statuses: vec![SessionStatus::Pending, SessionStatus::Live],
            metadata,
        };
        let mut candidates = Vec::new();
        let mut cursor = None;
        loop {
            let page = self
                .inner
                .store
                .list(&filter, MAX_PAGE_SIZE, cursor)
                .await?;
            cursor = page.last().map(cursor_of);
            let done = (page.len() as u64) < MAX_PAGE_SIZE;
            candidates.extend(page.into_iter().map(|s| s.id));
            if done {
                break;
            }
        }
        let ended = futures_util::future::join_all(
            candidates
                .into_iter()
                .map(|id| self.end(id, EndReason::ReleaseAll, None)),
        )
        .await;
        let mut released = Vec::new();
        for outcome in ended {
            match outcome {
                Ok((session, true)) => released.push(session.id),
                Ok((_, false)) | Err(Error::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(released)
    }

    pub async fn extend(&self, id: SessionId, timeout: Duration) -> Result<Session> {
        let timeout = validate::timeout("timeout", timeout, self.inner.config.max_timeout)?;
        let slot = self.slots().get(&id).cloned();
        if let Some(slot) = slot {
            let state = slot.state.lock().await;
            if let SlotState::Live(live) = &*state {
                let current = self.get(id).await?;
                if current.created_at + timeout <= SystemTime::now() {
                    return Err(Error::invalid(
                        "timeout",
                        "the session would already have expired; give a longer timeout",
                    ));
                }
                let session = self
                    .inner
                    .store
                    .set_timeout(id, timeout)
                    .await?
                    .ok_or(Error::NotFound(id))?;
                live.deadline.send_replace(instant_of(session.expires_at()));
                return Ok(session);
            }
        }
        let session = self.get(id).await?;
        Err(Error::NotLive {
            id,
            status: session.status,
        })
    }

    pub async fn get(&self, id: SessionId) -> Result<Session> {
        self.inner.store.get(id).await?.ok_or(Error::NotFound(id))
    }

    /// One page of sessions, newest first, and the token of the next page.
    pub async fn list(
        &self,
        filter: SessionFilter,
        page_size: u64,
        page_token: &str,
    ) -> Result<(Vec<Session>, String)> {
        validate::metadata("metadata", &filter.metadata)?;
        let after = decode_page_token(page_token)?;
        let limit = match page_size {
            0 => DEFAULT_PAGE_SIZE,
            n => n.min(MAX_PAGE_SIZE),
        };
        let sessions = self.inner.store.list(&filter, limit, after).await?;
        let next = match sessions.last() {
            Some(last) if sessions.len() as u64 == limit => encode_page_token(cursor_of(last)),
            _ => String::new(),
        };
        Ok((sessions, next))
    }

    pub async fn live_details(&self, id: SessionId) -> Result<(Vec<PageInfo>, String)> {
        let slot = self.slots().get(&id).cloned();
        let live = match slot {
            Some(slot) => match &*slot.state.lock().await {
                SlotState::Live(live) => Some(live.browser.clone()),
                SlotState::Pending | SlotState::Ended => None,
            },
            None => None,
        };
        let session = self.get(id).await?;
        let (Some(browser), Some(connect_url)) = (live, session.connect_url) else {
            return Err(Error::NotLive {
                id,
                status: session.status,
            });
        };
        let pages = browser
            .pages()
            .await
            .map_err(|e| Error::Unavailable(e.to_string()))?;
        Ok((pages, connect_url))
    }

    /// Starts a WatchSessions subscription.
    pub async fn watch(&self, filter: EventFilter, after: Option<u64>) -> Result<EventStream> {
        validate::metadata("metadata", &filter.metadata)?;
        if let Some(after) = after
            && let Some(oldest) = self.inner.store.oldest_sequence().await?
            && after.saturating_add(1) < oldest
        {
            return Err(Error::OutOfRange(format!(
                "after_sequence {after} is older than the retained event log, which starts at {oldest}"
            )));
        }
        Ok(self.inner.events.watch(
            self.inner.store.clone(),
            filter,
            after,
            self.inner.stopping.clone(),
        ))
    }

    /// The relay target of a live session, if the token is right.
    pub fn route(&self, id: SessionId, token: &str) -> Option<Route> {
        let routes = self.inner.routes.read().expect("routes lock poisoned");
        let route = routes.get(&id)?;
        constant_time_eq(route.token.as_bytes(), token.as_bytes()).then(|| route.clone())
    }

    /// Refuses new sessions, releases every session with
    /// END_REASON_SHUTDOWN (subscribers still receive those events), then
    /// ends watch streams. Returns once every browser is gone.
    pub async fn shutdown(&self) {
        let ids: Vec<SessionId> = {
            let slots = self.slots();
            self.inner.closing.cancel();
            slots.keys().copied().collect()
        };
        // A refill launch under way is finished and its browser destroyed:
        // browserd must not exit with a browser half started.
        let refill = self.inner.refill.lock().expect("refill lock").take();
        let ending = futures_util::future::join_all(
            ids.into_iter()
                .map(|id| self.end_logged(id, EndReason::Shutdown, None)),
        );
        let refilled = async {
            if let Some(task) = refill
                && let Err(e) = task.await
            {
                tracing::error!(error = %e, "the warm pool's refill task failed");
            }
        };
        tokio::join!(ending, refilled);
        let pooled = self.inner.pool.drain();
        futures_util::future::join_all(pooled.iter().map(|p| p.browser.destroy())).await;
        self.inner.stopping.cancel();
    }

    fn validate(&self, request: CreateRequest) -> Result<CreateParams> {
        let config = &self.inner.config;
        let timeout = validate::timeout(
            "timeout",
            request.timeout.unwrap_or(config.default_timeout),
            config.max_timeout,
        )?;
        let inactivity_timeout = request
            .inactivity_timeout
            .map(|t| validate::timeout("inactivity_timeout", t, config.max_timeout))
            .transpose()?;
        validate::metadata("metadata", &request.metadata)?;
        Ok(CreateParams {
            timeout,
            inactivity_timeout,
            keep_alive: request.keep_alive,
            metadata: request.metadata,
            viewport: validate::viewport(request.viewport.unwrap_or(Viewport::DEFAULT))?,
            user_agent: validate::text(
                "user_agent",
                request.user_agent,
                validate::USER_AGENT_MAX_BYTES,
            )?,
            proxy_url: validate::proxy_url(request.proxy_url)?,
            idempotency_key: validate::text(
                "idempotency_key",
                request.idempotency_key,
                validate::IDEMPOTENCY_KEY_MAX_BYTES,
            )?,
        })
    }

    /// A ready pooled browser, if any; dead ones met on the way are removed.
    async fn take_pooled(&self) -> Option<Pooled> {
        let (found, dead) = self.inner.pool.take();
        futures_util::future::join_all(dead.iter().map(|p| p.browser.destroy())).await;
        found
    }

    /// A permit for one more browser. At capacity, an idle pooled browser
    /// gives up its permit rather than the request being refused.
    async fn acquire_capacity(&self) -> Result<OwnedSemaphorePermit> {
        if let Ok(permit) = self.inner.capacity.clone().try_acquire_owned() {
            return Ok(permit);
        }
        match self.take_pooled().await {
            Some(evicted) => {
                evicted.browser.destroy().await;
                Ok(evicted.permit)
            }
            None => Err(Error::ResourceExhausted(self.inner.config.max_sessions)),
        }
    }

    /// The number of warm browsers ready, and the number wanted.
    pub fn pool_readiness(&self) -> (watch::Receiver<usize>, usize) {
        (self.inner.pool.count(), self.inner.config.warm_pool)
    }

    /// Keeps `warm_pool` browsers ready until shutdown. Launches one at a
    /// time, and only with capacity to spare, so refilling never starves
    /// live sessions of CPU or of permits.
    pub fn start_pool(&self) {
        if self.inner.config.warm_pool == 0 {
            return;
        }
        let engine = self.clone();
        let task = self
            .inner
            .tracker
            .spawn(async move { engine.refill_pool().await });
        *self.inner.refill.lock().expect("refill lock") = Some(task);
    }

    async fn refill_pool(self) {
        let inner = &self.inner;
        let options = LaunchOptions {
            viewport: Viewport::DEFAULT,
            user_agent: None,
            proxy_url: None,
        };
        let mut backoff = POOL_BACKOFF_MIN;
        while !inner.closing.is_cancelled() {
            if let Some(quiet) = inner.pool.quiet_after(POOL_REFILL_QUIET) {
                tokio::select! {
                    () = tokio::time::sleep_until(quiet) => {}
                    () = inner.closing.cancelled() => return,
                }
                continue;
            }
            let permit = if inner.pool.len() < inner.config.warm_pool {
                inner.capacity.clone().try_acquire_owned().ok()
            } else {
                None
            };
            let Some(permit) = permit else {
                tokio::select! {
                    () = inner.pool.wake.notified() => {}
                    () = inner.closing.cancelled() => return,
                }
                continue;
            };
            let id = SessionId::new();
            let profile = inner.config.profiles_dir.join(id.to_string());
            match inner.launcher.launch(&profile, &options).await {
                Ok(browser) => {
                    backoff = POOL_BACKOFF_MIN;
                    let browser = Arc::new(browser);
                    let left = CancellationToken::new();
                    // Pushed under the lock shutdown sets `closing` under:
                    // a browser that finished launching as shutdown began
                    // is either drained by it or destroyed here.
                    let pushed = {
                        let _slots = self.slots();
                        let open = !inner.closing.is_cancelled();
                        if open {
                            inner.pool.push(Pooled {
                                id,
                                browser: browser.clone(),
                                permit,
                                left: left.clone(),
                            });
                        }
                        open
                    };
                    if !pushed {
                        browser.destroy().await;
                        return;
                    }
                    inner
                        .tracker
                        .spawn(self.clone().watch_pooled(id, browser, left));
                }
                Err(e) => {
                    // A broken browser install must not become a hot loop.
                    tracing::warn!(error = %e, retry_in = ?backoff, "warm pool launch failed");
                    drop(permit);
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = inner.closing.cancelled() => return,
                    }
                    backoff = (backoff * 2).min(POOL_BACKOFF_MAX);
                }
            }
        }
    }

    /// Removes a pooled browser that dies while it waits.
    async fn watch_pooled(self, id: SessionId, browser: Arc<Browser>, left: CancellationToken) {
        tokio::select! {
            why = browser.lost() => {
                if let Some(dead) = self.inner.pool.remove(id) {
                    tracing::warn!(%why, "a warm pool browser died; replacing it");
                    dead.browser.destroy().await;
                }
            }
            // Taken by a session (whose supervisor watches it now), or
            // drained at shutdown.
            () = left.cancelled() => {}
        }
    }

    /// The session behind a reused idempotency key, once its launch (if
    /// still running on this node) has finished.
    async fn settled(&self, existing: Session) -> Result<Session> {
        let slot = self.slots().get(&existing.id).cloned();
        if let Some(slot) = slot {
            drop(slot.state.lock().await);
        }
        self.get(existing.id).await
    }

    /// Persists a transition and publishes its event, in sequence order.
    async fn commit(&self, id: SessionId, change: Change) -> Result<Option<SessionEvent>> {
        let _order = self.inner.commit_order.lock().await;
        let event = self.inner.store.transition(id, change).await?;
        if let Some(event) = &event {
            if let Some(reason) = event.session.end_reason {
                self.inner.metrics.session_ended(reason.as_str());
            }
            self.inner.events.publish(event.clone());
        }
        Ok(event)
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<SessionId, Arc<Slot>>> {
        self.inner.slots.lock().expect("slots lock poisoned")
    }

    fn routes(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<SessionId, Route>> {
        self.inner.routes.write().expect("routes lock poisoned")
    }
}

/// How long after the last warm hand-out a refill waits.
const POOL_REFILL_QUIET: Duration = Duration::from_millis(150);
/// First wait after a failed pool launch; doubled on each failure.
const POOL_BACKOFF_MIN: Duration = Duration::from_millis(250);
const POOL_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Whether a pooled browser (default launch options) can serve `params`.
fn fits_pool(params: &CreateParams) -> bool {
    params.viewport == Viewport::DEFAULT
        && params.user_agent.is_none()
        && params.proxy_url.is_none()
}

async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn end_change(reason: EndReason, error: Option<String>) -> Change {
    Change::End {
        reason,
        error,
        at: now_ms(),
    }
}

fn record_end(span: &tracing::Span, reason: EndReason) {
    span.record("session.status", reason.terminal_status().as_str());
    span.record("session.end_reason", reason.as_str());
}

/// Now, at the millisecond precision the store keeps, so a session read
/// back equals the one written.
fn now_ms() -> SystemTime {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    UNIX_EPOCH + Duration::from_millis(since.as_millis() as u64)
}

fn instant_of(at: SystemTime) -> Instant {
    Instant::now() + at.duration_since(SystemTime::now()).unwrap_or_default()
}

fn cursor_of(session: &Session) -> Cursor {
    Cursor {
        created_at: session.created_at,
        id: session.id,
    }
}

/// Page tokens are opaque to clients: hex of `v1:<created ms>:<id>`.
fn encode_page_token(cursor: Cursor) -> String {
    let ms = cursor
        .created_at
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    format!("v1:{ms}:{}", cursor.id)
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn decode_page_token(token: &str) -> Result<Option<Cursor>> {
    if token.is_empty() {
        return Ok(None);
    }
    let invalid = || Error::invalid("page_token", "not a token this server issued");
    if !token.len().is_multiple_of(2) || !token.is_ascii() {
        return Err(invalid());
    }
    let bytes = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&token[i..i + 2], 16))
        .collect::<Result<Vec<u8>, _>>()
        .map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let mut parts = text.splitn(3, ':');
    let (Some("v1"), Some(ms), Some(id)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(invalid());
    };
    let ms: u64 = ms.parse().map_err(|_| invalid())?;
    let id = SessionId::parse(id).ok_or_else(invalid)?;
    Ok(Some(Cursor {
        created_at: UNIX_EPOCH + Duration::from_millis(ms),
        id,
    }))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_reject_what_they_did_not_issue() {
        let cursor = Cursor {
            created_at: UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
            id: SessionId::new(),
        };
        let token = encode_page_token(cursor);
        assert_eq!(decode_page_token(&token).unwrap(), Some(cursor));
        assert_eq!(decode_page_token("").unwrap(), None);
        for bad in ["zz", "abc", "76313a", &token[..token.len() - 2]] {
            assert!(
                matches!(decode_page_token(bad), Err(Error::InvalidArgument { .. })),
                "{bad} must be refused"
            );
        }
    }
}
