//! Who is connected to a live session, and when a client last spoke.
//!
//! The CDP relay reports here; the session's supervisor reads it to decide
//! on INACTIVITY and DISCONNECTED. Recording is an atomic store per client
//! frame, so it costs the relay nothing measurable.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use tokio::sync::Notify;
use tokio::time::Instant;

#[derive(Debug)]
pub struct Presence {
    /// Activity is kept as nanoseconds since `base`, to fit an atomic.
    base: Instant,
    last_activity: AtomicU64,
    clients: AtomicUsize,
    ever_connected: AtomicBool,
    /// Signalled when a client connects or disconnects.
    changed: Notify,
}

/// Held by the relay while a client is connected.
pub struct ClientGuard {
    presence: Arc<Presence>,
    /// Set when the browser closed the connection rather than the client.
    browser_gone: bool,
}

impl Presence {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            base: Instant::now(),
            last_activity: AtomicU64::new(0),
            clients: AtomicUsize::new(0),
            ever_connected: AtomicBool::new(false),
            changed: Notify::new(),
        })
    }

    pub fn connect(self: &Arc<Self>) -> ClientGuard {
        self.clients.fetch_add(1, Ordering::SeqCst);
        self.ever_connected.store(true, Ordering::SeqCst);
        self.touch();
        self.changed.notify_one();
        ClientGuard {
            presence: self.clone(),
            browser_gone: false,
        }
    }

    /// A frame from a client. Frames from the browser do not count.
    pub fn touch(&self) {
        let since = self.base.elapsed().as_nanos() as u64;
        self.last_activity.fetch_max(since, Ordering::Relaxed);
    }

    pub fn last_activity(&self) -> Instant {
        self.base + std::time::Duration::from_nanos(self.last_activity.load(Ordering::Relaxed))
    }

    pub fn ever_connected(&self) -> bool {
        self.ever_connected.load(Ordering::SeqCst)
    }

    /// True once a client has connected and every client has since left.
    pub fn abandoned(&self) -> bool {
        self.ever_connected.load(Ordering::SeqCst) && self.clients.load(Ordering::SeqCst) == 0
    }

    /// Resolves after the next connect or disconnect (or one that happened
    /// since the last call: the single waiter never misses a change).
    pub async fn changed(&self) {
        self.changed.notified().await
    }
}

impl ClientGuard {
    /// The browser side closed this client's connection: the client did not
    /// leave, the browser went away, and that is the supervisor's to find
    /// (as a crash), not a disconnect.
    pub fn browser_gone(mut self) {
        self.browser_gone = true;
    }
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.presence.clients.fetch_sub(1, Ordering::SeqCst);
        if !self.browser_gone {
            self.presence.touch();
            self.presence.changed.notify_one();
        }
    }
}
