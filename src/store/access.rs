//! Projects and API keys: rows and the queries over them.

use std::time::SystemTime;

use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set, SqlErr,
};

use super::entities::sessions;
use super::entities::{api_keys, projects};
use super::rows::{from_millis, millis};
use super::{Result, Store};
use crate::domain::access::{ApiKey, Project};
use crate::domain::session::SessionStatus;

impl Store {
    /// Creates a project; `None` when the name is taken.
    pub async fn create_project(
        &self,
        name: &str,
        max_sessions: Option<u32>,
        at: SystemTime,
    ) -> Result<Option<Project>> {
        let row = projects::Model {
            name: name.to_owned(),
            max_sessions: max_sessions.map(|m| m as i32),
            created_at: millis(at),
        };
        match projects::ActiveModel::from(row.clone())
            .insert(&self.db)
            .await
        {
            Ok(_) => Ok(Some(to_project(&row))),
            Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn projects(&self) -> Result<Vec<Project>> {
        Ok(projects::Entity::find()
            .order_by_asc(projects::Column::Name)
            .all(&self.db)
            .await?
            .iter()
            .map(to_project)
            .collect())
    }

    /// Sets a project's quota; `None` when there is no such project.
    pub async fn set_project_quota(
        &self,
        name: &str,
        max_sessions: Option<u32>,
    ) -> Result<Option<Project>> {
        let txn = self.write().await?;
        let updated = projects::Entity::update_many()
            .col_expr(
                projects::Column::MaxSessions,
                max_sessions.map(|m| m as i32).into(),
            )
            .filter(projects::Column::Name.eq(name))
            .exec(&txn)
            .await?;
        let row = if updated.rows_affected == 1 {
            projects::Entity::find_by_id(name.to_owned())
                .all(&txn)
                .await?
                .pop()
        } else {
            None
        };
        txn.commit().await?;
        Ok(row.as_ref().map(to_project))
    }

    /// The quota `project` is at, if it has one and is at or over it: a
    /// cheap early refusal, before a browser is reserved. (The insert
    /// checks again, atomically.)
    pub async fn over_quota(&self, project: &str) -> Result<Option<u32>> {
        let Some(max) = project_quota(&self.db, project, false).await? else {
            return Ok(None);
        };
        let over = running(&self.db, project).await? >= u64::from(max);
        Ok(over.then_some(max))
    }

    /// Stores a new key's record and hash; false when its project does not
    /// exist.
    pub async fn insert_api_key(&self, key: &ApiKey, hash: &str) -> Result<bool> {
        let txn = self.write().await?;
        let project = projects::Entity::find_by_id(key.project.clone())
            .all(&txn)
            .await?;
        if project.is_empty() {
            return Ok(false);
        }
        api_keys::ActiveModel {
            id: Set(key.id.clone()),
            project: Set(key.project.clone()),
            admin: Set(key.admin),
            hash: Set(hash.to_owned()),
            description: Set(key.description.clone()),
            created_at: Set(millis(key.created_at)),
            revoked_at: Set(key.revoked_at.map(millis)),
        }
        .insert(&txn)
        .await?;
        txn.commit().await?;
        Ok(true)
    }

    /// A key's record and stored hash. (Not `.one()`: see `session_row`.)
    pub async fn api_key(&self, id: &str) -> Result<Option<(ApiKey, String)>> {
        let row = api_keys::Entity::find_by_id(id.to_owned())
            .all(&self.db)
            .await?
            .pop();
        Ok(row.map(|row| (to_api_key(&row), row.hash)))
    }

    /// Keys, newest first; of one project when given.
    pub async fn api_keys(&self, project: Option<&str>) -> Result<Vec<ApiKey>> {
        let mut query = api_keys::Entity::find();
        if let Some(project) = project {
            query = query.filter(api_keys::Column::Project.eq(project));
        }
        Ok(query
            .order_by_desc(api_keys::Column::CreatedAt)
            .order_by_desc(api_keys::Column::Id)
            .all(&self.db)
            .await?
            .iter()
            .map(to_api_key)
            .collect())
    }

    /// Whether any key that is not revoked exists.
    pub async fn any_api_key(&self) -> Result<bool> {
        use sea_orm::PaginatorTrait;
        Ok(api_keys::Entity::find()
            .filter(api_keys::Column::RevokedAt.is_null())
            .count(&self.db)
            .await?
            > 0)
    }

    /// Revokes a key at `at` (a revoked key keeps its first revocation
    /// time); `None` when there is no such key.
    pub async fn revoke_api_key(&self, id: &str, at: SystemTime) -> Result<Option<ApiKey>> {
        let txn = self.write().await?;
        api_keys::Entity::update_many()
            .col_expr(api_keys::Column::RevokedAt, Some(millis(at)).into())
            .filter(api_keys::Column::Id.eq(id))
            .filter(api_keys::Column::RevokedAt.is_null())
            .exec(&txn)
            .await?;
        let row = api_keys::Entity::find_by_id(id.to_owned())
            .all(&txn)
            .await?
            .pop();
        txn.commit().await?;
        Ok(row.as_ref().map(to_api_key))
    }
}

fn to_project(row: &projects::Model) -> Project {
    Project {
        name: row.name.clone(),
        max_sessions: row.max_sessions.and_then(|m| u32::try_from(m).ok()),
        created_at: from_millis(row.created_at),
    }
}

fn to_api_key(row: &api_keys::Model) -> ApiKey {
    ApiKey {
        id: row.id.clone(),
        project: row.project.clone(),
        admin: row.admin,
        description: row.description.clone(),
        created_at: from_millis(row.created_at),
        revoked_at: row.revoked_at.map(from_millis),
    }
}

/// A project's session quota; with `lock`, its row stays locked until the
/// transaction ends (PostgreSQL: `FOR UPDATE`; SQLite's write transaction
/// is serialised already), so creates count one after the other.
pub(super) async fn project_quota(
    db: &impl ConnectionTrait,
    project: &str,
    lock: bool,
) -> Result<Option<u32>> {
    let mut query = projects::Entity::find_by_id(project.to_owned());
    if lock {
        query = query.lock_exclusive();
    }
    let rows = query.all(db).await?;
    Ok(rows
        .first()
        .and_then(|p| p.max_sessions)
        .and_then(|max| u32::try_from(max).ok())
        .filter(|max| *max > 0))
}

/// How many of a project's sessions are PENDING or LIVE.
pub(super) async fn running(db: &impl ConnectionTrait, project: &str) -> Result<u64> {
    use sea_orm::PaginatorTrait;
    Ok(sessions::Entity::find()
        .filter(sessions::Column::Project.eq(project))
        .filter(sessions::Column::Status.is_in([
            SessionStatus::Pending.as_str(),
            SessionStatus::Live.as_str(),
        ]))
        .count(db)
        .await?)
}
