//! The warm pool: browsers launched ahead of demand, so a CreateSession
//! whose options fit takes one instead of waiting for Chromium to start.
//!
//! A pooled browser holds a capacity permit (the pool counts against
//! --max-sessions), is supervised while it waits (one that dies is removed
//! and replaced, never handed out), already carries the id of the session
//! it will become (its profile directory is named by it, like every
//! session's), and serves one session only: isolation first.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use tokio::sync::{Notify, OwnedSemaphorePermit, watch};
use tokio_util::sync::CancellationToken;

use super::model::SessionId;
use crate::browser::Browser;

pub struct Pooled {
    pub id: SessionId,
    pub browser: Arc<Browser>,
    pub permit: OwnedSemaphorePermit,
    /// Cancelled when it leaves the pool: its watcher stands down.
    pub left: CancellationToken,
}

pub struct WarmPool {
    ready: Mutex<VecDeque<Pooled>>,
    /// When a browser was last taken: refills wait for a quiet moment.
    last_take: Mutex<Option<Instant>>,
    /// Wakes the refiller: a browser was taken or lost, or capacity freed.
    pub wake: Notify,
    /// How many browsers are ready, for readiness reporting.
    count: watch::Sender<usize>,
}

impl Default for WarmPool {
    fn default() -> Self {
        Self {
            ready: Mutex::default(),
            last_take: Mutex::default(),
            wake: Notify::new(),
            count: watch::Sender::new(0),
        }
    }
}

impl WarmPool {
    /// The oldest ready browser that is still alive. Dead ones found on
    /// the way are returned too, for the caller to destroy.
    pub fn take(&self) -> (Option<Pooled>, Vec<Pooled>) {
        let mut ready = self.ready.lock().expect("pool lock poisoned");
        let mut dead = Vec::new();
        let found = loop {
            match ready.pop_front() {
                Some(pooled) if pooled.browser.is_alive() => break Some(pooled),
                Some(pooled) => dead.push(pooled),
                None => break None,
            }
        };
        self.count.send_replace(ready.len());
        drop(ready);
        if found.is_some() {
            *self.last_take.lock().expect("pool lock poisoned") = Some(Instant::now());
        }
        for left in found.iter().chain(&dead) {
            left.left.cancel();
        }
        self.wake.notify_one();
        (found, dead)
    }

    pub fn push(&self, pooled: Pooled) {
        let mut ready = self.ready.lock().expect("pool lock poisoned");
        ready.push_back(pooled);
        self.count.send_replace(ready.len());
    }

    /// Removes the browser of session `id` if it is still waiting here.
    pub fn remove(&self, id: SessionId) -> Option<Pooled> {
        let mut ready = self.ready.lock().expect("pool lock poisoned");
        let at = ready.iter().position(|p| p.id == id)?;
        let removed = ready.remove(at);
        self.count.send_replace(ready.len());
        drop(ready);
        if let Some(left) = &removed {
            left.left.cancel();
        }
        self.wake.notify_one();
        removed
    }

    /// When a refill may start: a Chromium launch takes ~0.5 s of CPU, and
    /// starting one while sessions are being handed out (a burst) would
    /// slow exactly the requests the pool exists to speed up.
    pub fn quiet_after(&self, quiet: Duration) -> Option<Instant> {
        let last = (*self.last_take.lock().expect("pool lock poisoned"))?;
        Some(last + quiet).filter(|at| *at > Instant::now())
    }

    pub fn len(&self) -> usize {
        *self.count.borrow()
    }

    pub fn count(&self) -> watch::Receiver<usize> {
        self.count.subscribe()
    }

    /// Everything still waiting, for shutdown.
    pub fn drain(&self) -> Vec<Pooled> {
        let mut ready = self.ready.lock().expect("pool lock poisoned");
        let drained: Vec<Pooled> = ready.drain(..).collect();
        self.count.send_replace(0);
        drop(ready);
        for left in &drained {
            left.left.cancel();
        }
        drained
    }
}
