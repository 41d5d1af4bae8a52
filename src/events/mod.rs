//! Event fan-out: the live broadcast of committed `SessionEvent`s and the
//! WatchSessions subscription that stitches the stored log and the live
//! broadcast together by sequence number.
//!
//! Why there is no gap and no duplicate at the seam: a subscriber joins the
//! broadcast *before* it reads the stored log, and the engine publishes each
//! event only after its transaction commits, in commit order. Every event
//! is therefore either in what the replay read, or arrives on the broadcast
//! afterwards (or both, and the sequence filter drops the second copy).

use std::sync::Arc;

use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::sessions::model::{EventFilter, SessionEvent};
use crate::store::{Store, StoreError};

/// Events handed to the gRPC layer ahead of the client reading them.
const STREAM_BUFFER: usize = 64;
/// Stored events read per query while replaying.
const REPLAY_BATCH: u64 = 500;

#[derive(Clone)]
pub struct EventHub {
    live: broadcast::Sender<Arc<SessionEvent>>,
}

/// Why a subscription ended early.
#[derive(Debug, thiserror::Error)]
pub enum WatchEnd {
    #[error(
        "subscriber fell more than --watch-buffer events behind; resume with after_sequence = {last_sequence}"
    )]
    Lagged { last_sequence: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl EventHub {
    /// `buffer`: events a subscriber may fall behind the engine before it
    /// is cut off with ABORTED.
    pub fn new(buffer: usize) -> Self {
        Self {
            live: broadcast::channel(buffer).0,
        }
    }

    /// Called by the engine after commit, in sequence order. Never waits.
    pub fn publish(&self, event: SessionEvent) {
        // No receiver is not an error: nobody is watching.
        let _ = self.live.send(Arc::new(event));
    }

    /// Open subscriptions (each holds one receiver until its stream ends).
    pub fn subscribers(&self) -> usize {
        self.live.receiver_count()
    }

    /// Starts a subscription. `after`: replay stored events after it first.
    /// The stream ends when the receiver is dropped, or once `stop` is
    /// cancelled and the events published before it are delivered.
    pub fn watch(
        &self,
        store: Store,
        filter: EventFilter,
        after: Option<u64>,
        stop: CancellationToken,
        tracker: &TaskTracker,
    ) -> mpsc::Receiver<Result<SessionEvent, WatchEnd>> {
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let mut live = self.live.subscribe();
        tracker.spawn(async move {
            let forward = async {
                let mut last = 0;
                if let Some(after) = after {
                    last = after;
                    loop {
                        if stop.is_cancelled() {
                            return Ok(());
                        }
                        let batch = store.events_after(last, REPLAY_BATCH).await?;
                        let done = (batch.len() as u64) < REPLAY_BATCH;
                        for event in batch {
                            last = event.sequence;
                            if filter.matches(&event) && tx.send(Ok(event)).await.is_err() {
                                return Ok(());
                            }
                        }
                        if done {
                            break;
                        }
                    }
                }
                loop {
                    // Biased towards the buffer: at shutdown, the events
                    // already published (the sessions' SHUTDOWN releases)
                    // are delivered before the stream ends.
                    let received = tokio::select! {
                        biased;
                        received = live.recv() => received,
                        () = stop.cancelled() => return Ok(()),
                    };
                    match received {
                        Ok(event) if event.sequence > last => {
                            last = event.sequence;
                            if filter.matches(&event)
                                && tx.send(Ok((*event).clone())).await.is_err()
                            {
                                return Ok(());
                            }
                        }
                        Ok(_) => {}
                        Err(broadcast::error::RecvError::Lagged(_)) => {
                            return Err(WatchEnd::Lagged {
                                last_sequence: last,
                            });
                        }
                        Err(broadcast::error::RecvError::Closed) => return Ok(()),
                    }
                }
            };
            tokio::select! {
                ended = forward => if let Err(end) = ended {
                    let _ = tx.send(Err(end)).await;
                },
                () = tx.closed() => {}
            }
        });
        rx
    }
}
