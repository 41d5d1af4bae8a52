//! The event log's own reads and its pruning: replay batches, where the
//! log starts, and what retention deletes.

use std::time::SystemTime;

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::entities::{session_events, session_metadata, sessions};
use super::rows::{millis, to_event};
use super::{Result, Store};
use crate::sessions::model::{SessionEvent, SessionStatus};

impl Store {
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
