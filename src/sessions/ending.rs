//! How sessions end: one at a time (release, or a supervisor's verdict),
//! many at once (release-all, shutdown), and those a previous process left
//! unfinished (reconcile at start).

use std::time::Duration;

use super::Engine;
use super::engine::{LiveSession, SlotState, end_change, record_end};
use crate::browser;
use crate::domain::access::Caller;
use crate::domain::page_token::{self, MAX_PAGE_SIZE};
use crate::domain::session::{
    Actor, EndReason, Metadata, Session, SessionFilter, SessionId, SessionStatus,
};
use crate::domain::{Error, Result, validate};

/// How long shutdown keeps trying to store ends the database refused.
const BACKLOG_GRACE: Duration = Duration::from_secs(5);

impl Engine {
    /// Ends a session of this node. Returns the session as it is afterwards
    /// and whether this call ended it (false: it had already ended).
    pub async fn end(
        &self,
        id: SessionId,
        reason: EndReason,
        error: Option<String>,
        actor: Actor,
    ) -> Result<(Session, bool)> {
        let ended = self.end_if(id, reason, error, actor, |_| true).await?;
        match ended {
            Some(session) => Ok((session, true)),
            None => Ok((self.read(id).await?, false)),
        }
    }

    /// Ends a live session of this node if `still` holds for it once its
    /// slot is locked, which is when nothing else can change it. Returns
    /// the session as ended, or `None` when this call did not end it.
    pub(super) async fn end_if(
        &self,
        id: SessionId,
        reason: EndReason,
        error: Option<String>,
        actor: Actor,
        still: impl FnOnce(&LiveSession) -> bool,
    ) -> Result<Option<Session>> {
        let Some(slot) = self.slot(id) else {
            return Ok(None);
        };
        let mut state = slot.state.lock().await;
        match &*state {
            SlotState::Live(live) if still(live) => {}
            _ => return Ok(None),
        }
        let SlotState::Live(live) = std::mem::replace(&mut *state, SlotState::Ended) else {
            unreachable!("matched above, under the same lock");
        };
        live.supervisor.cancel();
        if let Some(route) = self.routes().remove(&id) {
            route.closed.cancel();
        }
        if reason.terminal_status() == SessionStatus::Released
            && let Some((context, base)) = live.persist
        {
            self.save_context(id, &live.browser, context, base, &actor)
                .await;
        }
        live.browser.destroy().await;
        // Read once the browser is gone: nothing more goes through.
        let egress_usage = live.browser.egress_usage();
        // The browser is gone: its capacity is free before anyone can learn
        // that the session ended and ask for another.
        let LiveSession { span, permit, .. } = *live;
        drop(permit);
        self.inner.pool.wake.notify_one();
        record_end(&span, reason, &actor);
        let change = end_change(reason, error, actor).with_egress_usage(egress_usage);
        let committed = self.commit(id, change).await;
        self.forget(id);
        Ok(committed?.map(|event| event.session))
    }

    /// Ends a session for browserd's own reasons.
    pub(super) async fn end_logged(&self, id: SessionId, reason: EndReason, error: Option<String>) {
        match self.end(id, reason, error, Actor::System).await {
            Ok(_) | Err(Error::EndDeferred(_)) => {}
            Err(e) => tracing::error!(session.id = %id, error = %e, "cannot end session"),
        }
    }

    pub async fn release(&self, caller: &Caller, id: SessionId) -> Result<Session> {
        self.may_act(caller, id).await?;
        let actor = caller.actor.clone();
        Ok(self.end(id, EndReason::Requested, None, actor).await?.0)
    }

    /// Releases every PENDING or LIVE session of this node the caller
    /// sees, of `project` when given, whose metadata matches. (The API
    /// asks every other node for theirs.)
    pub async fn release_all(
        &self,
        caller: &Caller,
        metadata: Metadata,
        project: &str,
    ) -> Result<Vec<SessionId>> {
        validate::metadata("metadata", &metadata)?;
        let filter = SessionFilter {
            statuses: vec![SessionStatus::Pending, SessionStatus::Live],
            metadata,
            projects: caller.scope("project", project)?,
        };
        let mut candidates = Vec::new();
        let mut cursor = None;
        loop {
            let page = self
                .inner
                .store
                .list(&filter, MAX_PAGE_SIZE, cursor)
                .await?;
            cursor = page.last().map(page_token::cursor_of);
            let done = (page.len() as u64) < MAX_PAGE_SIZE;
            let here = &self.inner.node.id;
            candidates.extend(
                page.into_iter()
                    .filter(|s| &s.node_id == here)
                    .map(|s| s.id),
            );
            if done {
                break;
            }
        }
        let ended = futures_util::future::join_all(
            candidates
                .into_iter()
                .map(|id| self.end(id, EndReason::ReleaseAll, None, caller.actor.clone())),
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

    /// Refuses new sessions, releases every session with
    /// END_REASON_SHUTDOWN (subscribers still receive those events), then
    /// ends watch streams. Returns once every browser is gone.
    pub async fn shutdown(&self) {
        let ids: Vec<SessionId> = {
            let slots = self.slots();
            self.inner.closing.cancel();
            slots.keys().copied().collect()
        };
        let ending = futures_util::future::join_all(
            ids.into_iter()
                .map(|id| self.end_logged(id, EndReason::Shutdown, None)),
        );
        tokio::join!(ending, self.stop_pool());
        if self.store_backlog_before_exit().await {
            // Every session of this node is stored ended: it leaves the
            // cluster rather than waiting to be found lost.
            let node = &self.inner.node;
            if let Err(e) = self.inner.store.leave(&node.id, node.epoch()).await {
                tracing::warn!(error = %e, "cannot remove this node from the cluster; it is taken over once its lease lapses");
            }
        }
        self.inner.events.flush().await;
        self.inner.stopping.cancel();
    }

    /// A last chance for ends the database could not take yet. What is
    /// still refused after it is lost with this process: the next start's
    /// reconciliation ends those sessions (NODE_LOST), so no row claims a
    /// browser that is gone.
    /// Returns whether every end is stored.
    async fn store_backlog_before_exit(&self) -> bool {
        let deadline = tokio::time::Instant::now() + BACKLOG_GRACE;
        while let Err(e) = self.store_backlog().await {
            if tokio::time::Instant::now() >= deadline {
                tracing::error!(error = %e, "exiting with session ends the database never took; the next start, or another node once this node's lease lapses, ends those sessions NODE_LOST");
                return false;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        true
    }

    /// Ends every session a previous process of this node left PENDING or
    /// LIVE (FAILED, NODE_LOST), after removing every browser and profile
    /// left in its profiles directory. Run once at start, after
    /// [`Engine::join`].
    pub async fn reconcile(&self) -> Result<usize> {
        if let Ok(entries) = std::fs::read_dir(&self.inner.config.profiles_dir) {
            for entry in entries.flatten() {
                browser::remove_leftover(&entry.path()).await;
            }
        }
        self.end_previous_incarnations().await
    }
}
