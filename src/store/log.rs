//! The event log: how an event gets its sequence, its reads (replay
//! batches, where the log starts and ends), the wake-up other nodes send
//! when they add to it, and what retention deletes.
//!
//! # Why a sequence is commit order
//! A PostgreSQL sequence (or an identity column) hands out numbers at
//! insert, not at commit: with transactions on several nodes, event 8 can
//! commit before event 7, and a reader that tails by sequence would pass
//! 7 by for ever. Here an event's sequence comes from the one row of
//! `event_counter`, incremented inside the event's own transaction, as its
//! last write before commit. The row stays locked until that transaction
//! ends, so the next event's transaction waits for it: a number is taken
//! only once every smaller number is committed (or rolled back, which
//! hands the number back). Whoever sees event N therefore already sees
//! every event before it, and reading `sequence > last` in order never
//! skips one. On SQLite, whose writers are serialised anyway, the same
//! code costs nothing more. The price on PostgreSQL is that event writes
//! are serialised cluster-wide for the few statements between the
//! counter and the commit.

use std::time::SystemTime;

use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    Statement,
};

use super::entities::{session_events, session_metadata, sessions};
use super::rows::{millis, to_event};
use super::{Result, Store, StoreError};
use crate::domain::session::{SessionEvent, SessionStatus};

/// The channel PostgreSQL NOTIFYs after each event's commit: a wake-up
/// for every node's event tail, never the event itself.
pub(super) const EVENTS_CHANNEL: &str = "browserd_events";

/// The next event sequence, taken in `txn` (see the module comment). Call
/// it as the transaction's last write: the counter stays locked until
/// commit.
pub(super) async fn next_sequence(txn: &sea_orm::DatabaseTransaction) -> Result<i64> {
    let backend = txn.get_database_backend();
    let row = txn
        .query_one_raw(Statement::from_string(
            backend,
            "UPDATE event_counter SET sequence = sequence + 1 WHERE id = 1 RETURNING sequence",
        ))
        .await?
        .ok_or_else(|| StoreError::Corrupt {
            id: "event_counter".into(),
            what: "the counter row is missing".into(),
        })?;
    if backend == DbBackend::Postgres {
        // Delivered at commit, and only then.
        txn.execute_unprepared(&format!("NOTIFY {EVENTS_CHANNEL}"))
            .await?;
    }
    Ok(row.try_get("", "sequence")?)
}

impl Store {
    /// The newest sequence stored (0 when none ever was): where a new event
    /// tail starts.
    pub async fn newest_sequence(&self) -> Result<u64> {
        let row = self
            .db
            .query_one_raw(Statement::from_string(
                self.db.get_database_backend(),
                "SELECT sequence FROM event_counter WHERE id = 1",
            ))
            .await?;
        let sequence: i64 = match row {
            Some(row) => row.try_get("", "sequence")?,
            None => 0,
        };
        Ok(sequence.max(0) as u64)
    }

    /// Wake-ups when another node commits events (PostgreSQL's LISTEN);
    /// `None` on SQLite, where only this process writes.
    pub async fn event_wakeups(&self) -> Result<Option<EventWakeups>> {
        if self.db.get_database_backend() != DbBackend::Postgres {
            return Ok(None);
        }
        let pool = self.db.get_postgres_connection_pool();
        let mut listener = sea_orm::sqlx::postgres::PgListener::connect_with(pool)
            .await
            .map_err(listen_error)?;
        listener
            .listen(EVENTS_CHANNEL)
            .await
            .map_err(listen_error)?;
        Ok(Some(EventWakeups { listener }))
    }

    /// Up to `limit` events with a sequence above `after`, in order.
    pub async fn events_after(&self, after: u64, limit: u64) -> Result<Vec<SessionEvent>> {
        session_events::Entity::find()
            .filter(session_events::Column::Sequence.gt(after as i64))
            .order_by_asc(session_events::Column::Sequence)
            .limit(limit)
            .all(&self.db)
            .await?
            .iter()
            .map(to_event)
            .collect()
    }

    /// Deletes up to `batch` sessions that ended before `cutoff` (their
    /// metadata goes with them, and their idempotency keys are free again),
    /// and up to `batch` of the oldest events: a prefix of the log, up to
    /// the first event at or after `cutoff`, and never the newest event,
    /// so the log always tells where it starts. Returns how many rows of
    /// each went.
    pub async fn prune(&self, cutoff: SystemTime, batch: u64) -> Result<(usize, usize)> {
        let cutoff = millis(cutoff);
        self.prune_lost_nodes(cutoff).await?;
        let ended: Vec<String> = sessions::Entity::find()
            .select_only()
            .column(sessions::Column::Id)
            .filter(sessions::Column::Status.is_in([
                SessionStatus::Released.as_str(),
                SessionStatus::Failed.as_str(),
            ]))
            .filter(sessions::Column::EndedAt.lt(cutoff))
            .limit(batch)
            .into_tuple()
            .all(&self.db)
            .await?;
        if !ended.is_empty() {
            // Metadata first: a foreign key's cascade is not relied on.
            session_metadata::Entity::delete_many()
                .filter(session_metadata::Column::SessionId.is_in(ended.clone()))
                .exec(&self.db)
                .await?;
            sessions::Entity::delete_many()
                .filter(sessions::Column::Id.is_in(ended.clone()))
                .exec(&self.db)
                .await?;
        }
        let Some(newest) = self
            .sequence_bound(session_events::Entity::find(), true)
            .await?
        else {
            return Ok((ended.len(), 0));
        };
        let recent =
            session_events::Entity::find().filter(session_events::Column::OccurredAt.gte(cutoff));
        let first_recent = self.sequence_bound(recent, false).await?;
        let upto = first_recent.unwrap_or(newest).min(newest) - 1;
        let old: Vec<i64> = session_events::Entity::find()
            .select_only()
            .column(session_events::Column::Sequence)
            .filter(session_events::Column::Sequence.lte(upto))
            .order_by_asc(session_events::Column::Sequence)
            .limit(batch)
            .into_tuple()
            .all(&self.db)
            .await?;
        if !old.is_empty() {
            session_events::Entity::delete_many()
                .filter(session_events::Column::Sequence.is_in(old.clone()))
                .exec(&self.db)
                .await?;
        }
        Ok((ended.len(), old.len()))
    }

    /// The oldest sequence still stored; `None` when the log is empty.
    pub async fn oldest_sequence(&self) -> Result<Option<u64>> {
        let oldest = self.sequence_bound(session_events::Entity::find(), false);
        Ok(oldest.await?.map(|sequence| sequence as u64))
    }

    /// The largest (`newest`) or smallest sequence among the events `query`
    /// selects, read as an aggregate: no event row is loaded.
    async fn sequence_bound(
        &self,
        query: sea_orm::Select<session_events::Entity>,
        newest: bool,
    ) -> Result<Option<i64>> {
        let column = session_events::Column::Sequence;
        let bound = query
            .select_only()
            .column_as(if newest { column.max() } else { column.min() }, "sequence")
            .into_tuple::<Option<i64>>()
            .one(&self.db)
            .await?;
        Ok(bound.flatten())
    }
}

/// PostgreSQL notifications that the event log grew.
pub struct EventWakeups {
    listener: sea_orm::sqlx::postgres::PgListener,
}

impl EventWakeups {
    /// Waits for the next wake-up. A lost connection (notifications may
    /// have been missed meanwhile) is a wake-up too: the caller reads the
    /// log, which is the truth, either way. Err: the listener cannot
    /// reconnect for now.
    pub async fn next(&mut self) -> Result<()> {
        self.listener
            .try_recv()
            .await
            .map(drop)
            .map_err(|e| listen_error(e).into())
    }
}

fn listen_error(e: sea_orm::sqlx::Error) -> sea_orm::DbErr {
    sea_orm::DbErr::Conn(sea_orm::RuntimeErr::SqlxError(e.into()))
}
