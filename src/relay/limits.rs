//! The per-session connection cap: a leaked connect_url cannot make one
//! session's browser serve a crowd (the front door caps connections in
//! total).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::domain::session::SessionId;

/// Counts the relay's connections per session against their cap.
#[derive(Debug)]
pub struct Sessions {
    per_session: Mutex<HashMap<SessionId, usize>>,
    max_per_session: usize,
}

/// One connection to a session, counted until dropped.
#[derive(Debug)]
pub struct SessionSlot {
    sessions: Arc<Sessions>,
    id: SessionId,
}

impl Sessions {
    pub fn new(max_per_session: usize) -> Arc<Self> {
        Arc::new(Self {
            per_session: Mutex::new(HashMap::new()),
            max_per_session,
        })
    }

    /// A slot on session `id`, or `None` at the per-session cap.
    pub fn join(self: &Arc<Self>, id: SessionId) -> Option<SessionSlot> {
        let mut per_session = self.per_session.lock().expect("relay caps lock poisoned");
        let count = per_session.entry(id).or_insert(0);
        if *count >= self.max_per_session {
            return None;
        }
        *count += 1;
        Some(SessionSlot {
            sessions: self.clone(),
            id,
        })
    }

    pub fn max_per_session(&self) -> usize {
        self.max_per_session
    }
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        let mut per_session = self
            .sessions
            .per_session
            .lock()
            .expect("relay caps lock poisoned");
        if let Some(count) = per_session.get_mut(&self.id) {
            *count -= 1;
            if *count == 0 {
                per_session.remove(&self.id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_per_session_cap_counts_each_session_apart() {
        let sessions = Sessions::new(1);
        let (one, two) = (SessionId::new(), SessionId::new());
        let a = sessions.join(one).expect("first on one");
        assert!(sessions.join(one).is_none(), "one is full");
        let _b = sessions.join(two).expect("two has its own count");
        drop(a);
        assert!(sessions.join(one).is_some());
        assert!(sessions.per_session.lock().unwrap().len() <= 2);
    }
}
