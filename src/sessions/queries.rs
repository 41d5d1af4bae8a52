//! Reads: one session, a page of sessions, a live browser's pages, and
//! WatchSessions subscriptions. Nothing here changes a session.

use super::engine::SlotState;
use super::model::{EventFilter, Session, SessionFilter, SessionId};
use super::{DEFAULT_PAGE_SIZE, Engine, Error, MAX_PAGE_SIZE, Result, page_token, validate};
use crate::browser::PageInfo;
use crate::events::EventStream;

impl Engine {
    pub async fn get(&self, id: SessionId) -> Result<Session> {
        self.caught_up()?;
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
        let after = page_token::decode(page_token)?;
        self.caught_up()?;
        let limit = match page_size {
            0 => DEFAULT_PAGE_SIZE,
            n => n.min(MAX_PAGE_SIZE),
        };
        let sessions = self.inner.store.list(&filter, limit, after).await?;
        let next = match sessions.last() {
            Some(last) if sessions.len() as u64 == limit => {
                page_token::encode(page_token::cursor_of(last))
            }
            _ => String::new(),
        };
        Ok((sessions, next))
    }

    pub async fn live_details(&self, id: SessionId) -> Result<(Vec<PageInfo>, String)> {
        let live = match self.slot(id) {
            Some(slot) => match &*slot.state.lock().await {
                SlotState::Live(live) => Some(live.browser.clone()),
                SlotState::Pending | SlotState::Ended => None,
            },
            None => None,
        };
        let session = self.get(id).await?;
        let (Some(browser), Some(connect_url)) = (live, self.connect_url(&session)) else {
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
        self.caught_up()?;
        if let Some(after) = after
            && let Some(oldest) = self.inner.store.oldest_sequence().await?
            && after.saturating_add(1) < oldest
        {
            return Err(Error::OutOfRange { after, oldest });
        }
        Ok(self.inner.events.watch(
            self.inner.store.clone(),
            filter,
            after,
            self.inner.stopping.clone(),
        ))
    }
}
