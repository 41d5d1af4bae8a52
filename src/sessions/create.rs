//! CreateSession, as named steps: validate, reuse an idempotent retry,
//! reserve a browser (warm, or capacity for a cold launch), insert PENDING,
//! launch, go LIVE. A step that fails undoes what the steps before it did.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedMutexGuard, OwnedSemaphorePermit, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::Engine;
use super::engine::{LiveSession, Slot, SlotState, end_change, instant_of, record_end};
use super::pool::Pooled;
use super::presence::Presence;
use super::routes::Route;
use super::supervise::EndRules;
use crate::browser::{Browser, LaunchOptions};
use crate::domain::access::Caller;
use crate::domain::launch::Viewport;
use crate::domain::now_ms;
use crate::domain::session::{
    CreateParams, EndReason, Metadata, Session, SessionContext, SessionId, SessionStatus,
};
use crate::domain::{Error, Result, validate};
use crate::store::{Change, Inserted, NodeRefusal};

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
    pub context: Option<SessionContext>,
    pub egress_allow: Vec<String>,
    pub egress_deny: Vec<String>,
}

/// A browser the new session may have: a warm one, or the capacity to
/// launch one.
struct Reservation {
    id: SessionId,
    permit: OwnedSemaphorePermit,
    warm: Option<Arc<Browser>>,
}

type SlotGuard = OwnedMutexGuard<SlotState>;

impl Engine {
    /// Creates a session of the caller's project.
    pub async fn create(&self, caller: &Caller, request: CreateRequest) -> Result<Session> {
        let started = Instant::now();
        let params = self.validate(request)?;
        let project = &caller.project;
        // A retry gets its session even when the server is full. (Two
        // first tries racing are settled by the store's unique key.)
        if let Some(key) = &params.idempotency_key
            && let Some(existing) = self
                .inner
                .store
                .get_by_idempotency_key(project, key)
                .await?
        {
            return self.settled(existing).await;
        }
        // Refused before a browser is reserved, so a project over its quota
        // cannot make the warm pool churn. The insert checks atomically.
        if let Some(max) = self.inner.store.over_quota(project).await? {
            return Err(quota_refusal(project, max));
        }
        let mut options = LaunchOptions::from(&params);
        // A context's state must be in the profile before the browser
        // starts: never a warm browser.
        let reservation = self.reserve(&options, params.context.is_none()).await?;
        let from_pool = reservation.warm.is_some();
        let slot = Arc::new(Slot {
            state: Arc::new(tokio::sync::Mutex::new(SlotState::Pending)),
            project: caller.project.clone(),
        });
        let mut state = slot.state.clone().lock_owned().await;
        self.register(slot, &reservation).await?;
        let created = match self.insert_pending(&reservation, params, caller).await {
            Ok(created) => created,
            Err(failed) => {
                // A warm browser taken for nothing is not put back: it may
                // have been reached by a client already. Isolation first.
                if let Some(browser) = &reservation.warm {
                    browser.destroy().await;
                }
                self.abandon(reservation.id, state);
                return match failed {
                    Refused::Duplicate(existing) => self.settled(*existing).await,
                    Refused::Error(e) => Err(e),
                };
            }
        };
        let span = tracing::info_span!(
            "session",
            session.id = %created.id,
            // Recorded once, at the end: OpenTelemetry exports every
            // recorded value of a field as another attribute.
            session.project = %caller.project,
            session.status = tracing::field::Empty,
            session.end_reason = tracing::field::Empty,
            session.ended_by = tracing::field::Empty,
        );
        // Read after the insert claimed the context: a persisting session
        // starts from the version no other writer can change until it ends.
        let launched = match self.restore(&created, &mut options).await {
            Ok(base) => self
                .launch(&created, &options, reservation.warm, &span)
                .await
                .map(|browser| Launched { browser, base }),
            Err(cause) => Err(cause),
        };
        let launched = match launched {
            Ok(launched) => launched,
            Err(cause) => {
                let id = created.id;
                let change = end_change(
                    EndReason::LaunchFailed,
                    Some(cause.clone()),
                    caller.actor.clone(),
                );
                let committed = self.commit(id, change).await;
                record_end(&span, EndReason::LaunchFailed, &caller.actor);
                self.abandon(id, state);
                committed?;
                return Err(Error::LaunchFailed { id, cause });
            }
        };
        let session = self
            .go_live(
                created,
                launched,
                reservation.permit,
                span,
                &mut state,
                caller,
            )
            .await?;
        self.inner
            .metrics
            .session_created(started.elapsed(), from_pool);
        Ok(session)
    }

    pub(super) fn validate(&self, request: CreateRequest) -> Result<CreateParams> {
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
            proxy: validate::proxy_url(request.proxy_url)?,
            idempotency_key: validate::text(
                "idempotency_key",
                request.idempotency_key,
                validate::IDEMPOTENCY_KEY_MAX_BYTES,
            )?,
            context: request.context,
            egress: validate::egress(request.egress_allow, request.egress_deny)?,
        })
    }

    /// A warm browser when one fits (and `warm_ok`), else capacity for a
    /// cold launch.
    async fn reserve(&self, options: &LaunchOptions, warm_ok: bool) -> Result<Reservation> {
        let pooled = if warm_ok && options.is_default() {
            self.take_pooled().await
        } else {
            None
        };
        Ok(match pooled {
            Some(Pooled {
                id,
                browser,
                permit,
                ..
            }) => Reservation {
                id,
                permit,
                warm: Some(browser),
            },
            None => Reservation {
                id: SessionId::new(),
                permit: self.acquire_capacity().await?,
                warm: None,
            },
        })
    }

    /// Makes the session known to this node, unless shutdown has begun.
    async fn register(&self, slot: Arc<Slot>, reservation: &Reservation) -> Result<()> {
        {
            // Checked under the lock that shutdown sets it under: every slot
            // is either refused here or seen by shutdown.
            let mut slots = self.slots();
            if !self.inner.closing.is_cancelled() {
                slots.insert(reservation.id, slot);
                return Ok(());
            }
        }
        if let Some(browser) = &reservation.warm {
            browser.destroy().await;
        }
        Err(Error::Unavailable("the server is shutting down".into()))
    }

    /// Stores the session PENDING with its creation event.
    async fn insert_pending(
        &self,
        reservation: &Reservation,
        params: CreateParams,
        caller: &Caller,
    ) -> Result<Session, Refused> {
        let session = Session {
            id: reservation.id,
            status: SessionStatus::Pending,
            end_reason: None,
            error: None,
            created_at: now_ms(),
            started_at: None,
            ended_at: None,
            timeout: params.timeout,
            inactivity_timeout: params.inactivity_timeout,
            keep_alive: params.keep_alive,
            metadata: params.metadata,
            viewport: params.viewport,
            user_agent: params.user_agent,
            // Never with its password: a session is stored, returned and
            // put in events as it is.
            proxy_url: params
                .proxy
                .as_ref()
                .map(crate::domain::launch::Proxy::shown),
            browser_version: None,
            project: caller.project.clone(),
            context: params.context,
            node_id: self.inner.node.id.clone(),
            egress: params.egress,
            egress_usage: None,
        };
        let _order = self.inner.commit_order.lock().await;
        // Behind ends still waiting to be stored, a new session would be
        // stored (and numbered) before them.
        self.caught_up().map_err(Refused::Error)?;
        let inserted = self
            .inner
            .store
            .insert(
                &session,
                params.idempotency_key.as_deref(),
                self.inner.node.epoch(),
                &self.profile(session.id),
                &caller.actor,
            )
            .await
            .map_err(|e| Refused::Error(e.into()))?;
        match inserted {
            Inserted::Created(event) => {
                self.committed(&event);
                Ok(event.session)
            }
            Inserted::Duplicate(existing) => Err(Refused::Duplicate(Box::new(existing))),
            Inserted::OverQuota(max) => Err(Refused::Error(quota_refusal(&caller.project, max))),
            Inserted::NotPlaced(refusal) => Err(Refused::Error(Error::NotPlaced(match refusal {
                NodeRefusal::Draining => "it drains",
                NodeRefusal::Fenced => "it lost its lease and is joining again",
            }))),
            Inserted::Context(busy) => {
                let context = session.context.map(|c| c.context_id.to_string());
                Err(Refused::Error(super::contexts::context_refusal(
                    context.unwrap_or_default(),
                    busy,
                )))
            }
        }
    }

    /// The reserved warm browser, or a new one. Errors are the cause, for
    /// the session's record and the caller.
    async fn launch(
        &self,
        session: &Session,
        options: &LaunchOptions,
        warm: Option<Arc<Browser>>,
        span: &tracing::Span,
    ) -> Result<Arc<Browser>, String> {
        if let Some(browser) = warm {
            return Ok(browser);
        }
        let launched = self
            .inner
            .launcher
            .launch(&self.profile(session.id), options)
            .instrument(span.clone())
            .await;
        launched.map(Arc::new).map_err(|e| {
            let cause = e.to_string();
            tracing::warn!(parent: span, error = %cause, "browser launch failed");
            cause
        })
    }

    /// Commits LIVE, opens the relay route and starts supervision.
    async fn go_live(
        &self,
        created: Session,
        launched: Launched,
        permit: OwnedSemaphorePermit,
        span: tracing::Span,
        state: &mut SlotGuard,
        caller: &Caller,
    ) -> Result<Session> {
        let Launched { browser, base } = launched;
        let id = created.id;
        // Before any client can reach it: its first request is judged
        // with the session's own rules.
        browser.assign_egress(id.to_string(), created.egress.clone());
        let live = self
            .commit(
                id,
                Change::Live {
                    started_at: now_ms(),
                    browser_version: browser.version().to_owned(),
                    browser_pid: browser.pid(),
                    actor: caller.actor.clone(),
                },
            )
            .await;
        let session = match live {
            Ok(Some(event)) => event.session,
            failed => {
                // Ended from outside this node (another node's reconcile) or
                // the store failed: either way this browser must not live on.
                browser.destroy().await;
                **state = SlotState::Ended;
                self.forget(id);
                if let Err(e) = failed {
                    // Stored PENDING, never LIVE: it ends FAILED, now or once
                    // the database is back.
                    let cause = format!("the browser started but going LIVE was not stored: {e}");
                    let change =
                        end_change(EndReason::LaunchFailed, Some(cause), caller.actor.clone());
                    let _ = self.commit(id, change).await;
                    record_end(&span, EndReason::LaunchFailed, &caller.actor);
                    return Err(e);
                }
                return Err(Error::Aborted(format!(
                    "session {id} ended while its browser was starting"
                )));
            }
        };
        let presence = Presence::new();
        self.routes().insert(
            id,
            Route {
                browser: browser.pipe().clone(),
                profile: browser.profile().to_owned(),
                closed: CancellationToken::new(),
                presence: presence.clone(),
            },
        );
        let deadline = watch::Sender::new(instant_of(session.expires_at()));
        let supervisor = CancellationToken::new();
        let rules = EndRules {
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
        let persist = session
            .context
            .filter(|c| c.persist)
            .zip(base)
            .map(|(c, base)| (c.context_id, base));
        **state = SlotState::Live(Box::new(LiveSession {
            browser,
            deadline,
            supervisor,
            span,
            permit,
            persist,
        }));
        Ok(session)
    }

    /// The session behind a reused idempotency key, once its launch (if
    /// still running on this node) has finished.
    async fn settled(&self, existing: Session) -> Result<Session> {
        if let Some(slot) = self.slot(existing.id) {
            drop(slot.state.lock().await);
        }
        let session = self.read(existing.id).await?;
        self.know_owners([&session]).await?;
        Ok(session)
    }

    /// Forgets a session whose creation stopped short of LIVE.
    fn abandon(&self, id: SessionId, mut state: SlotGuard) {
        *state = SlotState::Ended;
        self.forget(id);
    }

    fn profile(&self, id: SessionId) -> std::path::PathBuf {
        self.inner.config.profiles_dir.join(id.to_string())
    }
}

fn quota_refusal(project: &str, max: u32) -> Error {
    Error::ProjectQuota {
        project: project.to_owned(),
        max,
    }
}

/// A new session's browser, and the version of its context it was
/// restored from (`None`: no context).
struct Launched {
    browser: Arc<Browser>,
    base: Option<u64>,
}

/// Why a PENDING insert did not happen.
enum Refused {
    /// The idempotency key is already this session's.
    Duplicate(Box<Session>),
    Error(Error),
}

impl From<&CreateParams> for LaunchOptions {
    fn from(params: &CreateParams) -> Self {
        Self {
            viewport: params.viewport,
            user_agent: params.user_agent.clone(),
            proxy: params.proxy.clone(),
            restore: None,
        }
    }
}
