//! Event fan-out: the tail of the stored event log, the live broadcast it
//! feeds, and the WatchSessions subscription that stitches the stored log
//! and the live broadcast together by sequence number.
//!
//! Every node's events reach every node's subscribers the same way: one
//! task per node, the tail, reads the log after the last event it
//! published, in sequence order, and broadcasts what it reads. It reads
//! when this node commits an event, when PostgreSQL notifies that another
//! node did (a wake-up only: the log is the truth, and a lost notification
//! is caught by the next read or the periodic one), and every
//! [`TAIL_POLL`]. Sequence order is commit order (see `store::log`), so a
//! read never passes over an event that commits later.
//!
//! Why there is no gap and no duplicate at the seam: a subscriber joins the
//! broadcast *before* it reads the stored log, and the tail publishes only
//! committed events, in sequence order. Every event is therefore either in
//! what the replay read, or arrives on the broadcast afterwards (or both,
//! and the sequence filter drops the second copy).

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, broadcast, watch};
use tokio_stream::Stream;
use tokio_util::sync::CancellationToken;

use crate::domain::session::{EventFilter, SessionEvent};
use crate::store::{Store, StoreError};

/// Stored events read per query while replaying or tailing.
const REPLAY_BATCH: u64 = 500;

/// How often the tail reads the log with no wake-up: the bound on how late
/// another node's event arrives if its notification is lost.
pub const TAIL_POLL: Duration = Duration::from_secs(1);

/// How long shutdown waits for the tail to publish this node's last events.
const FLUSH_GRACE: Duration = Duration::from_secs(2);

#[derive(Clone)]
pub struct EventHub {
    live: broadcast::Sender<Arc<SessionEvent>>,
    /// Wakes the tail: this node committed an event.
    committed: Arc<Notify>,
    /// The highest sequence this node committed.
    newest_here: Arc<watch::Sender<u64>>,
    /// The highest sequence the tail published.
    published: Arc<watch::Sender<u64>>,
}

/// A subscription's events, in sequence order; an error ends it.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<Arc<SessionEvent>, WatchEnd>> + Send>>;

/// Why a subscription ended early.
#[derive(Debug, thiserror::Error)]
pub enum WatchEnd {
    #[error(
        "subscriber fell more than --watch-buffer events behind; resume with after_sequence = {last_sequence}"
    )]
    Lagged { last_sequence: u64 },
    /// Retention pruned events the replay had not read yet.
    #[error("events after {after} were pruned; the log now starts at {oldest}")]
    Pruned { after: u64, oldest: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl EventHub {
    /// `buffer`: events a subscriber may fall behind the engine before it
    /// is cut off with ABORTED.
    pub fn new(buffer: usize) -> Self {
        Self {
            live: broadcast::channel(buffer).0,
            committed: Arc::new(Notify::new()),
            newest_here: Arc::new(watch::Sender::new(0)),
            published: Arc::new(watch::Sender::new(0)),
        }
    }

    /// Called by the engine after it committed event `sequence`: wakes the
    /// tail. Never waits.
    pub fn committed(&self, sequence: u64) {
        self.newest_here.send_if_modified(|newest| {
            let newer = sequence > *newest;
            *newest = (*newest).max(sequence);
            newer
        });
        self.committed.notify_one();
    }

    /// Publishes the log's events after the newest one stored now, from
    /// every node, until `stop`. Run once per node.
    pub async fn tail(self, store: Store, stop: CancellationToken) {
        let mut last = loop {
            match store.newest_sequence().await {
                Ok(newest) => break newest,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read where the event log ends; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(TAIL_POLL) => {}
                        () = stop.cancelled() => return,
                    }
                }
            }
        };
        self.published.send_replace(last);
        let mut others = OtherNodes::NotListening;
        loop {
            if let OtherNodes::NotListening = others {
                others = match store.event_wakeups().await {
                    Ok(Some(listener)) => OtherNodes::Listening(listener),
                    Ok(None) => OtherNodes::None,
                    Err(e) => {
                        tracing::debug!(error = %e, "cannot listen for other nodes' events yet");
                        OtherNodes::NotListening
                    }
                };
            }
            match self.publish_after(&store, last).await {
                Ok(newest) => last = newest,
                Err(e) => tracing::debug!(error = %e, "cannot read the event log now"),
            }
            // With no other node (SQLite: only this process writes)
            // nothing else can add to the log.
            let poll = !matches!(others, OtherNodes::None);
            let other_node = async {
                match &mut others {
                    OtherNodes::Listening(listener) => {
                        if listener.next().await.is_err() {
                            others = OtherNodes::NotListening;
                        }
                    }
                    OtherNodes::None | OtherNodes::NotListening => std::future::pending().await,
                }
            };
            tokio::select! {
                () = self.committed.notified() => {}
                () = other_node => {}
                () = tokio::time::sleep(TAIL_POLL), if poll => {}
                () = stop.cancelled() => return,
            }
        }
    }

    /// Broadcasts every stored event after `last`; returns the last one.
    async fn publish_after(&self, store: &Store, mut last: u64) -> Result<u64, StoreError> {
        loop {
            let batch = store.events_after(last, REPLAY_BATCH).await?;
            let full = batch.len() as u64 == REPLAY_BATCH;
            for event in batch {
                last = event.sequence;
                self.broadcast(event);
            }
            self.published.send_replace(last);
            if !full {
                return Ok(last);
            }
        }
    }

    fn broadcast(&self, event: SessionEvent) {
        // No receiver is not an error: nobody is watching.
        let _ = self.live.send(Arc::new(event));
    }

    /// Waits (a little) until the tail has published every event this node
    /// committed: at shutdown, before watch streams end.
    pub async fn flush(&self) {
        let newest = *self.newest_here.borrow();
        let mut published = self.published.subscribe();
        let caught_up = published.wait_for(|published| *published >= newest);
        if tokio::time::timeout(FLUSH_GRACE, caught_up).await.is_err() {
            tracing::warn!("stopping before this node's last events were published");
        }
    }

    /// Open subscriptions (each holds one receiver until its stream ends).
    pub fn subscribers(&self) -> usize {
        self.live.receiver_count()
    }

    /// Starts a subscription. `after`: replay stored events after it first;
    /// `None`: only events committed from now on. The stream ends once
    /// `stop` is cancelled and the events published before it are
    /// delivered.
    ///
    /// "Now" is the log's end as stored, read after joining the broadcast:
    /// the tail may not have published every event committed before this
    /// call yet, and those must not arrive as if they were new. (Every
    /// event after that end is published after the join, by the seam
    /// argument above, so none is lost.)
    ///
    /// The stream is polled by the gRPC response itself, not by a task of
    /// its own: with a thousand subscribers, a forwarding task per
    /// subscriber doubled the wake-ups and copies of every event.
    pub async fn watch(
        &self,
        store: Store,
        filter: EventFilter,
        after: Option<u64>,
        stop: CancellationToken,
    ) -> Result<EventStream, StoreError> {
        let live = self.live.subscribe();
        let last = match after {
            Some(after) => after,
            None => store.newest_sequence().await?,
        };
        let subscriber = Subscriber {
            live,
            store,
            filter,
            last,
            replay: after.map(|_| Replay {
                read: Vec::new().into_iter(),
                more: true,
            }),
            stop,
        };
        Ok(Box::pin(futures_util::stream::unfold(
            Some(subscriber),
            |subscriber| async move {
                let mut subscriber = subscriber?;
                let item = subscriber.next().await?;
                let goes_on = item.is_ok();
                Some((item, goes_on.then_some(subscriber)))
            },
        )))
    }
}

/// How the tail hears that another node added to the log.
enum OtherNodes {
    /// There is none: the database is this process's alone (SQLite).
    None,
    /// PostgreSQL notifies.
    Listening(crate::store::EventWakeups),
    /// Not yet, or the listener failed: the tail polls and tries again.
    NotListening,
}

struct Subscriber {
    /// Joined before the stored log is read: see the module comment.
    live: broadcast::Receiver<Arc<SessionEvent>>,
    store: Store,
    filter: EventFilter,
    /// The sequence of the last event delivered or filtered out.
    last: u64,
    /// Until the stored log is exhausted.
    replay: Option<Replay>,
    stop: CancellationToken,
}

struct Replay {
    /// The batch read last, not yet delivered.
    read: std::vec::IntoIter<SessionEvent>,
    /// Whether the store may hold more after it.
    more: bool,
}

impl Subscriber {
    /// The next stored events after the last one delivered, unless
    /// retention has pruned some of them first (the check at subscription
    /// cannot see a prune that overtakes a long replay).
    async fn read_batch(store: &Store, last: u64) -> Result<Vec<SessionEvent>, WatchEnd> {
        let batch = store.events_after(last, REPLAY_BATCH).await?;
        if batch.first().is_some_and(|e| e.sequence == last + 1) {
            return Ok(batch);
        }
        match store.oldest_sequence().await? {
            Some(oldest) if oldest > last + 1 => Err(WatchEnd::Pruned {
                after: last,
                oldest,
            }),
            _ => Ok(batch),
        }
    }

    /// The next event that passes the filter; `None` when the stream ends.
    async fn next(&mut self) -> Option<Result<Arc<SessionEvent>, WatchEnd>> {
        while let Some(replay) = &mut self.replay {
            if let Some(event) = replay.read.next() {
                self.last = event.sequence;
                if self.filter.matches(&event) {
                    return Some(Ok(Arc::new(event)));
                }
            } else if !replay.more {
                self.replay = None;
            } else if self.stop.is_cancelled() {
                return None;
            } else {
                let batch = match Self::read_batch(&self.store, self.last).await {
                    Ok(batch) => batch,
                    Err(e) => return Some(Err(e)),
                };
                replay.more = batch.len() as u64 == REPLAY_BATCH;
                replay.read = batch.into_iter();
            }
        }
        loop {
            // Biased towards the buffer: at shutdown, the events already
            // published (the sessions' SHUTDOWN releases) are delivered
            // before the stream ends.
            let received = tokio::select! {
                biased;
                received = self.live.recv() => received,
                () = self.stop.cancelled() => return None,
            };
            match received {
                Ok(event) if event.sequence > self.last => {
                    self.last = event.sequence;
                    if self.filter.matches(&event) {
                        return Some(Ok(event));
                    }
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    return Some(Err(WatchEnd::Lagged {
                        last_sequence: self.last,
                    }));
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use tokio_stream::StreamExt;

    use super::*;
    use crate::domain::launch::Viewport;
    use crate::domain::session::{Session, SessionId, SessionStatus};

    async fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("db").display());
        let store = Store::connect(&url).await.expect("store");
        (dir, store)
    }

    fn event(sequence: u64) -> SessionEvent {
        let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        SessionEvent {
            sequence,
            kind: crate::domain::session::EventKind::StatusChanged,
            occurred_at: at,
            from_status: None,
            to_status: SessionStatus::Pending,
            end_reason: None,
            actor: "system".into(),
            context_save: None,
            session: Session {
                id: SessionId::new(),
                status: SessionStatus::Pending,
                end_reason: None,
                error: None,
                created_at: at,
                started_at: None,
                ended_at: None,
                timeout: Duration::from_secs(60),
                inactivity_timeout: None,
                keep_alive: false,
                metadata: Default::default(),
                viewport: Viewport::DEFAULT,
                user_agent: None,
                proxy_url: None,
                browser_version: None,
                project: "default".into(),
                context: None,
                node_id: "node".into(),
                egress: Default::default(),
                egress_usage: None,
            },
        }
    }

    const BUFFER: usize = 16;

    async fn sequence_of_next(events: &mut EventStream) -> u64 {
        match events.next().await {
            Some(Ok(event)) => event.sequence,
            other => panic!("expected an event, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn live_events_arrive_in_order_until_the_subscriber_falls_behind() {
        let (_dir, store) = store().await;
        let hub = EventHub::new(BUFFER);
        let mut events = hub
            .watch(
                store,
                EventFilter::default(),
                None,
                CancellationToken::new(),
            )
            .await
            .expect("watch");
        for sequence in 1..=3 {
            hub.broadcast(event(sequence));
        }
        for sequence in 1..=3 {
            assert_eq!(sequence_of_next(&mut events).await, sequence);
        }
        // One more than the live buffer holds, while the subscriber reads
        // nothing.
        for sequence in 4..=BUFFER as u64 + 4 {
            hub.broadcast(event(sequence));
        }
        match events.next().await {
            Some(Err(WatchEnd::Lagged { last_sequence: 3 })) => {}
            other => panic!("expected Lagged after 3, got {other:?}"),
        }
        assert!(events.next().await.is_none(), "ABORTED ends the stream");
    }

    #[tokio::test]
    async fn at_shutdown_the_events_already_published_are_delivered_first() {
        let (_dir, store) = store().await;
        let hub = EventHub::new(BUFFER);
        let stop = CancellationToken::new();
        let mut events = hub
            .watch(store, EventFilter::default(), None, stop.clone())
            .await
            .expect("watch");
        hub.broadcast(event(1));
        hub.broadcast(event(2));
        stop.cancel();
        assert_eq!(sequence_of_next(&mut events).await, 1);
        assert_eq!(sequence_of_next(&mut events).await, 2);
        assert!(events.next().await.is_none());
    }
}
