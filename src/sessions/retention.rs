//! Bounded history: ended sessions and old events are pruned once they are
//! older than --retention, in small batches, so the log, replays from 0 and
//! the idempotency keys (which go with their sessions) stay bounded.
//! Pruning never holds the engine's locks: it deletes only what no
//! transition can touch any more.

use std::time::{Duration, SystemTime};

use super::Engine;

/// Rows deleted per statement: short transactions, never a long lock.
const PRUNE_BATCH: u64 = 500;

impl Engine {
    /// Prunes, every tenth of the retention period (between 100 ms and 10
    /// minutes), until shutdown.
    pub(super) async fn keep_pruning(self) {
        let Some(retention) = self.inner.config.retention else {
            return;
        };
        let every = (retention / 10).clamp(Duration::from_millis(100), Duration::from_secs(600));
        loop {
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = self.inner.closing.cancelled() => return,
            }
            let cutoff = SystemTime::now() - retention;
            loop {
                match self.inner.store.prune(cutoff, PRUNE_BATCH).await {
                    Ok((sessions, events)) => {
                        if sessions > 0 || events > 0 {
                            tracing::debug!(
                                sessions,
                                events,
                                "pruned history older than --retention"
                            );
                        }
                        if (sessions.max(events) as u64) < PRUNE_BATCH {
                            break;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot prune history now; trying again later");
                        break;
                    }
                }
            }
        }
    }
}
