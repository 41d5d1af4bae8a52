//! Reads of sessions: one, by idempotency key, a filtered page, and those
//! a previous process left unfinished.

use sea_orm::sea_query::Query;
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::entities::{session_metadata, sessions};
use super::rows::{millis, parse_id, to_session};
use super::{Result, Store, scoped_key, session_row};
use crate::domain::page_token::Cursor;
use crate::domain::session::{Session, SessionFilter, SessionId, SessionStatus};

/// A session a previous process left unfinished, with what is needed to
/// find and remove its browser.
#[derive(Debug, Clone)]
pub struct Unfinished {
    pub id: SessionId,
    pub browser_pid: Option<u32>,
    pub user_data_dir: Option<String>,
}

impl Store {
    pub async fn get(&self, id: SessionId) -> Result<Option<Session>> {
        session_row(&self.db, id)
            .await?
            .as_ref()
            .map(to_session)
            .transpose()
    }

    /// The session of `project` created with idempotency key `key`.
    pub async fn get_by_idempotency_key(
        &self,
        project: &str,
        key: &str,
    ) -> Result<Option<Session>> {
        sessions::Entity::find()
            .filter(sessions::Column::IdempotencyKey.eq(scoped_key(project, key)))
            .one(&self.db)
            .await?
            .as_ref()
            .map(to_session)
            .transpose()
    }

    /// Sessions matching `filter`, newest first, strictly after `after`.
    pub async fn list(
        &self,
        filter: &SessionFilter,
        limit: u64,
        after: Option<Cursor>,
    ) -> Result<Vec<Session>> {
        let mut query = sessions::Entity::find();
        for project in &filter.projects {
            query = query.filter(sessions::Column::Project.eq(project.as_str()));
        }
        if !filter.statuses.is_empty() {
            query = query
                .filter(sessions::Column::Status.is_in(filter.statuses.iter().map(|s| s.as_str())));
        }
        for (key, value) in &filter.metadata {
            query = query.filter(
                sessions::Column::Id.in_subquery(
                    Query::select()
                        .column(session_metadata::Column::SessionId)
                        .from(session_metadata::Entity)
                        .and_where(session_metadata::Column::Key.eq(key.as_str()))
                        .and_where(session_metadata::Column::Value.eq(value.as_str()))
                        .to_owned(),
                ),
            );
        }
        if let Some(cursor) = after {
            let created = millis(cursor.created_at);
            query = query.filter(
                Condition::any()
                    .add(sessions::Column::CreatedAt.lt(created))
                    .add(
                        Condition::all()
                            .add(sessions::Column::CreatedAt.eq(created))
                            .add(sessions::Column::Id.lt(cursor.id.to_string())),
                    ),
            );
        }
        query
            .order_by_desc(sessions::Column::CreatedAt)
            .order_by_desc(sessions::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?
            .iter()
            .map(to_session)
            .collect()
    }

    /// Sessions created by incarnations of `node_id` before `epoch` that
    /// never reached a terminal status.
    pub async fn unfinished(&self, node_id: &str, epoch: u64) -> Result<Vec<Unfinished>> {
        let rows = sessions::Entity::find()
            .filter(sessions::Column::NodeId.eq(node_id))
            .filter(sessions::Column::NodeEpoch.lt(epoch as i64))
            .filter(sessions::Column::Status.is_in([
                SessionStatus::Pending.as_str(),
                SessionStatus::Live.as_str(),
            ]))
            .all(&self.db)
            .await?;
        rows.into_iter()
            .map(|row| {
                Ok(Unfinished {
                    id: parse_id(&row.id)?,
                    browser_pid: row.browser_pid.map(|p| p as u32),
                    user_data_dir: row.user_data_dir,
                })
            })
            .collect()
    }
}
