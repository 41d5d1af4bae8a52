//! How sessions end: one at a time (release, or a supervisor's verdict),
//! many at once (release-all, shutdown), and those a previous process left
//! unfinished (reconcile at start).

use super::engine::{LiveSession, SlotState, end_change, record_end};
use super::model::{EndReason, Metadata, Session, SessionFilter, SessionId, SessionStatus};
use super::{Engine, Error, MAX_PAGE_SIZE, Result, page_token, validate};
use crate::browser;

impl Engine {
    /// Ends a session of this node. Returns the session as it is afterwards
    /// and whether this call ended it (false: it had already ended).
    pub async fn end(
        &self,
        id: SessionId,
        reason: EndReason,
        error: Option<String>,
    ) -> Result<(Session, bool)> {
        if let Some(slot) = self.slot(id) {
            let mut state = slot.state.lock().await;
            if let SlotState::Live(live) = std::mem::replace(&mut *state, SlotState::Ended) {
                live.supervisor.cancel();
                if let Some(route) = self.routes().remove(&id) {
                    route.closed.cancel();
                }
                live.browser.destroy().await;
                // The browser is gone: its capacity is free before anyone
                // can learn that the session ended and ask for another.
                let LiveSession { span, permit, .. } = *live;
                drop(permit);
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

    pub(super) async fn end_logged(&self, id: SessionId, reason: EndReason, error: Option<String>) {
        if let Err(e) = self.end(id, reason, error).await {
            tracing::error!(session.id = %id, error = %e, "cannot end session");
        }
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
            cursor = page.last().map(page_token::cursor_of);
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
        self.inner.stopping.cancel();
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
}
