//! Reads: one session, a page of sessions, a live browser's pages, and
//! WatchSessions subscriptions. Nothing here changes a session.

use super::Engine;
use super::engine::SlotState;
use crate::browser::PageInfo;
use crate::domain::access::Caller;
use crate::domain::page_token::{self, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
use crate::domain::session::{EventFilter, Session, SessionFilter, SessionId, SessionStatus};
use crate::domain::{Error, Result, validate};
use crate::events::EventStream;

impl Engine {
    /// A session, whoever asks: for browserd's own use (and the relay's,
    /// whose clients hold the session's token).
    pub async fn read(&self, id: SessionId) -> Result<Session> {
        self.caught_up()?;
        self.inner.store.get(id).await?.ok_or(Error::NotFound(id))
    }

    /// A session the caller may see. Another project's is NOT_FOUND, the
    /// same answer as for an id that does not exist, so ids do not leak.
    pub(super) async fn visible(&self, caller: &Caller, id: SessionId) -> Result<Session> {
        let session = self.read(id).await?;
        if !caller.sees(&session.project) {
            return Err(Error::NotFound(id));
        }
        self.know_owners([&session]).await?;
        Ok(session)
    }

    /// Refuses a caller that may not act on session `id` (NOT_FOUND), from
    /// this node's memory when the session runs here, and an action on a
    /// session another node runs (`Elsewhere`: the API forwards it there).
    pub(super) async fn may_act(&self, caller: &Caller, id: SessionId) -> Result<()> {
        match self.slot(id) {
            Some(slot) if caller.sees(&slot.project) => Ok(()),
            Some(_) => Err(Error::NotFound(id)),
            None => {
                let session = self.visible(caller, id).await?;
                if session.status.is_terminal() || session.node_id == self.inner.node.id {
                    Ok(())
                } else {
                    Err(Error::Elsewhere {
                        id,
                        node: session.node_id,
                    })
                }
            }
        }
    }

    pub async fn get(&self, caller: &Caller, id: SessionId) -> Result<Session> {
        Ok(self.with_live_usage(self.visible(caller, id).await?))
    }

    /// A session with what its browser's egress proxy has carried so far,
    /// when it runs here (the row has it only once it ends). A slot busy
    /// with a transition is not waited for.
    fn with_live_usage(&self, mut session: Session) -> Session {
        if session.status == SessionStatus::Live
            && let Some(slot) = self.slot(session.id)
            && let Ok(state) = slot.state.try_lock()
            && let SlotState::Live(live) = &*state
        {
            session.egress_usage = live.browser.egress_usage();
        }
        session
    }

    /// One page of the sessions the caller sees (of `project`, when
    /// given), newest first, and the token of the next page.
    pub async fn list(
        &self,
        caller: &Caller,
        mut filter: SessionFilter,
        project: &str,
        page_size: u64,
        page_token: &str,
    ) -> Result<(Vec<Session>, String)> {
        validate::metadata("metadata", &filter.metadata)?;
        filter.projects = caller.scope("project", project)?;
        let after = page_token::decode(page_token)?;
        self.caught_up()?;
        let limit = match page_size {
            0 => DEFAULT_PAGE_SIZE,
            n => n.min(MAX_PAGE_SIZE),
        };
        let sessions = self.inner.store.list(&filter, limit, after).await?;
        self.know_owners(&sessions).await?;
        let sessions: Vec<Session> = sessions
            .into_iter()
            .map(|s| self.with_live_usage(s))
            .collect();
        let next = match sessions.last() {
            Some(last) if sessions.len() as u64 == limit => {
                page_token::encode(page_token::cursor_of(last))
            }
            _ => String::new(),
        };
        Ok((sessions, next))
    }

    /// A live session's pages, and the session, for a caller who may act
    /// on it (its connect_url is [`Engine::connect_url`]'s to give).
    pub async fn live_details(
        &self,
        caller: &Caller,
        id: SessionId,
    ) -> Result<(Vec<PageInfo>, Session)> {
        self.may_act(caller, id).await?;
        self.pages(id).await
    }

    /// A live session's pages, whoever asks (the relay's discovery, whose
    /// clients hold the session's token), and the session.
    pub async fn pages(&self, id: SessionId) -> Result<(Vec<PageInfo>, Session)> {
        let live = match self.slot(id) {
            Some(slot) => match &*slot.state.lock().await {
                SlotState::Live(live) => Some(live.browser.clone()),
                SlotState::Pending | SlotState::Ended => None,
            },
            None => None,
        };
        let session = self.read(id).await?;
        let (Some(browser), SessionStatus::Live) = (live, session.status) else {
            return Err(Error::NotLive {
                id,
                status: session.status,
            });
        };
        let pages = browser
            .pages()
            .await
            .map_err(|e| Error::Unavailable(e.to_string()))?;
        Ok((pages, session))
    }

    /// Starts a WatchSessions subscription to the events of the sessions
    /// the caller sees (of `project`, when given).
    pub async fn watch(
        &self,
        caller: &Caller,
        mut filter: EventFilter,
        project: &str,
        after: Option<u64>,
    ) -> Result<EventStream> {
        validate::metadata("metadata", &filter.metadata)?;
        filter.projects = caller.scope("project", project)?;
        self.caught_up()?;
        if let Some(after) = after
            && let Some(oldest) = self.inner.store.oldest_sequence().await?
            && after.saturating_add(1) < oldest
        {
            return Err(Error::OutOfRange { after, oldest });
        }
        let events = self.inner.events.watch(
            self.inner.store.clone(),
            filter,
            after,
            self.inner.stopping.clone(),
        );
        Ok(events.await?)
    }
}
