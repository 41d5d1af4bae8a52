//! The warm pool: browsers launched ahead of demand, so a CreateSession
//! whose options fit takes one instead of waiting for Chromium to start.
//!
//! A pooled browser holds a capacity permit (the pool counts against
//! --max-sessions), is supervised while it waits (one that dies is removed
//! and replaced, never handed out), already carries the id of the session
//! it will become (its profile directory is named by it, like every
//! session's), and serves one session only: isolation first.
//!
//! The refill task keeps the pool full until shutdown, one launch at a
//! time and only with capacity to spare, so refilling never starves live
//! sessions of CPU or of permits.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Engine;
use crate::browser::{Browser, LaunchOptions};
use crate::domain::session::SessionId;
use crate::domain::{Error, Result};

/// How long after the last warm hand-out a refill waits.
const REFILL_QUIET: Duration = Duration::from_millis(150);
/// First wait after a failed pool launch; doubled on each failure.
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

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

impl Engine {
    /// A ready pooled browser, if any; dead ones met on the way are removed.
    pub(super) async fn take_pooled(&self) -> Option<Pooled> {
        let (found, dead) = self.inner.pool.take();
        futures_util::future::join_all(dead.iter().map(|p| p.browser.destroy())).await;
        found
    }

    /// A permit for one more browser. At capacity, an idle pooled browser
    /// gives up its permit rather than the request being refused.
    pub(super) async fn acquire_capacity(&self) -> Result<OwnedSemaphorePermit> {
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

    /// Starts the engine's background work: the warm pool's refill, the
    /// task that stores ends the database refused, the node's lease, the
    /// event tail, and retention.
    pub fn start_background(&self) {
        let tracker = &self.inner.tracker;
        tracker.spawn(self.clone().keep_storing_backlog());
        tracker.spawn(self.clone().keep_lease());
        tracker.spawn(
            self.inner
                .events
                .clone()
                .tail(self.inner.store.clone(), self.inner.stopping.clone()),
        );
        tracker.spawn(self.clone().keep_pruning());
        if self.inner.config.warm_pool == 0 {
            return;
        }
        let engine = self.clone();
        let task = tracker.spawn(async move { engine.refill_pool().await });
        *self.inner.refill.lock().expect("refill lock") = Some(task);
    }

    /// For shutdown, once `closing` is cancelled: a refill launch under way
    /// is finished and its browser destroyed (browserd must not exit with a
    /// browser half started), then every waiting browser is.
    pub(super) async fn stop_pool(&self) {
        let refill = self.inner.refill.lock().expect("refill lock").take();
        if let Some(task) = refill
            && let Err(e) = task.await
        {
            tracing::error!(error = %e, "the warm pool's refill task failed");
        }
        let pooled = self.inner.pool.drain();
        futures_util::future::join_all(pooled.iter().map(|p| p.browser.destroy())).await;
    }

    async fn refill_pool(self) {
        let inner = &self.inner;
        let options = LaunchOptions::default();
        let mut backoff = BACKOFF_MIN;
        while !inner.closing.is_cancelled() {
            if let Some(quiet) = inner.pool.quiet_after(REFILL_QUIET) {
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
                    backoff = BACKOFF_MIN;
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
                    backoff = (backoff * 2).min(BACKOFF_MAX);
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
}
