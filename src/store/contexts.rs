//! Contexts and their saved versions: rows and the queries over them. A
//! version is written once, in the transaction of the event that records
//! it (see `Store::transition`), and never changed: a reader gets a whole
//! version or the one before.

use std::time::SystemTime;

use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Set, SqlErr,
};

use super::entities::{context_versions, contexts, sessions};
use super::rows::{from_millis, millis};
use super::{Result, Store, StoreError};
use crate::domain::context::{Context, Snapshot};
use crate::domain::session::{
    ContextId, ContextSave, EventKind, Metadata, SessionId, SessionStatus,
};

/// Versions kept per context: the latest, and the one before it (which a
/// session that started just before a save may still be reading).
const VERSIONS_KEPT: i64 = 2;

/// Why a context cannot be deleted or written now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContextBusy {
    /// No such context in that project.
    Missing,
    /// This PENDING or LIVE session uses it (or, for a writer, persists
    /// to it).
    UsedBy(SessionId),
}

impl Store {
    /// Creates a context; `None` when its project has one of that name.
    pub async fn create_context(&self, context: &Context) -> Result<Option<Context>> {
        let row = contexts::Model {
            id: context.id.to_string(),
            project: context.project.clone(),
            name: context.name.clone(),
            metadata: serde_json::to_string(&context.metadata).expect("a string map serialises"),
            created_at: millis(context.created_at),
            updated_at: millis(context.updated_at),
            version: 0,
            size_bytes: 0,
            saved_by_session_id: None,
            last_save_error: None,
        };
        match contexts::ActiveModel::from(row.clone())
            .insert(&self.db)
            .await
        {
            Ok(_) => Ok(Some(context.clone())),
            Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn context(&self, id: ContextId) -> Result<Option<Context>> {
        let Some(row) = context_row(&self.db, id).await? else {
            return Ok(None);
        };
        let writer = user(&self.db, id, true).await?;
        to_context(&row, writer).map(Some)
    }

    /// Contexts of the projects named (all of them must match: see
    /// `SessionFilter::projects`), with the metadata, by project and name,
    /// strictly after `after` (project, name).
    pub async fn contexts(
        &self,
        projects: &[String],
        metadata: &Metadata,
        limit: u64,
        after: Option<(String, String)>,
    ) -> Result<Vec<Context>> {
        let mut query = contexts::Entity::find();
        for project in projects {
            query = query.filter(contexts::Column::Project.eq(project.as_str()));
        }
        if let Some((project, name)) = after {
            query = query.filter(
                Condition::any()
                    .add(contexts::Column::Project.gt(project.clone()))
                    .add(
                        Condition::all()
                            .add(contexts::Column::Project.eq(project))
                            .add(contexts::Column::Name.gt(name)),
                    ),
            );
        }
        // Metadata is a small JSON map: filtered here rather than indexed.
        let rows = query
            .order_by_asc(contexts::Column::Project)
            .order_by_asc(contexts::Column::Name)
            .all(&self.db)
            .await?;
        let mut found = Vec::new();
        for row in &rows {
            let context = to_context(row, None)?;
            if metadata
                .iter()
                .all(|(k, v)| context.metadata.get(k).is_some_and(|mine| mine == v))
            {
                found.push(context);
                if found.len() as u64 == limit {
                    break;
                }
            }
        }
        for context in &mut found {
            context.writer = user(&self.db, context.id, true).await?;
        }
        Ok(found)
    }

    /// Deletes a context of `project` with its versions, unless a PENDING
    /// or LIVE session uses it.
    pub async fn delete_context(
        &self,
        id: ContextId,
        visible: impl Fn(&str) -> bool,
    ) -> Result<std::result::Result<(), ContextBusy>> {
        let txn = self.write().await?;
        let Some(row) = context_row_locked(&txn, id).await? else {
            return Ok(Err(ContextBusy::Missing));
        };
        if !visible(&row.project) {
            return Ok(Err(ContextBusy::Missing));
        }
        if let Some(session) = user(&txn, id, false).await? {
            return Ok(Err(ContextBusy::UsedBy(session)));
        }
        context_versions::Entity::delete_many()
            .filter(context_versions::Column::ContextId.eq(id.to_string()))
            .exec(&txn)
            .await?;
        contexts::Entity::delete_by_id(id.to_string())
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(Ok(()))
    }

    /// The latest saved state of a context.
    pub async fn snapshot(&self, id: ContextId) -> Result<Option<Snapshot>> {
        let Some(row) = context_row(&self.db, id).await? else {
            return Ok(None);
        };
        if row.version == 0 {
            return Ok(Some(Snapshot {
                version: 0,
                data: Vec::new(),
            }));
        }
        let version = context_versions::Entity::find_by_id((id.to_string(), row.version))
            .all(&self.db)
            .await?
            .pop()
            .ok_or_else(|| StoreError::Corrupt {
                id: id.to_string(),
                what: format!("context version {} is missing", row.version),
            })?;
        Ok(Some(Snapshot {
            version: row.version as u64,
            data: version.data,
        }))
    }
}

/// Checks, inside the transaction that inserts session `session`, that
/// context `id` exists in `project` and, for a writer, that no other
/// session persists to it. The context's row stays locked until the
/// transaction ends, so two writers racing on any nodes cannot both pass.
pub(super) async fn claim(
    txn: &sea_orm::DatabaseTransaction,
    id: ContextId,
    project: &str,
    persist: bool,
) -> Result<std::result::Result<(), ContextBusy>> {
    match context_row_locked(txn, id).await? {
        Some(row) if row.project == project => {}
        _ => return Ok(Err(ContextBusy::Missing)),
    }
    if persist && let Some(holder) = user(txn, id, true).await? {
        return Ok(Err(ContextBusy::UsedBy(holder)));
    }
    Ok(Ok(()))
}

/// Writes a new version saved by `session`, if the context is still at
/// `base` (what the session started from); returns the new version, or
/// `None` when the context moved on meanwhile (nothing written).
pub(super) async fn save(
    txn: &sea_orm::DatabaseTransaction,
    id: ContextId,
    base: u64,
    session: SessionId,
    data: &[u8],
    at: SystemTime,
) -> Result<Option<u64>> {
    let version = base as i64 + 1;
    let updated = contexts::Entity::update_many()
        .set(contexts::ActiveModel {
            version: Set(version),
            size_bytes: Set(data.len() as i64),
            updated_at: Set(millis(at)),
            saved_by_session_id: Set(Some(session.to_string())),
            last_save_error: Set(None),
            ..Default::default()
        })
        .filter(contexts::Column::Id.eq(id.to_string()))
        .filter(contexts::Column::Version.eq(base as i64))
        .exec(txn)
        .await?;
    if updated.rows_affected != 1 {
        return Ok(None);
    }
    context_versions::ActiveModel {
        context_id: Set(id.to_string()),
        version: Set(version),
        data: Set(data.to_vec()),
        session_id: Set(session.to_string()),
        created_at: Set(millis(at)),
    }
    .insert(txn)
    .await?;
    context_versions::Entity::delete_many()
        .filter(context_versions::Column::ContextId.eq(id.to_string()))
        .filter(context_versions::Column::Version.lte(version - VERSIONS_KEPT))
        .exec(txn)
        .await?;
    Ok(Some(version as u64))
}

/// Records why a save failed; the version stays.
pub(super) async fn save_failed(
    txn: &sea_orm::DatabaseTransaction,
    id: ContextId,
    error: &str,
) -> Result<u64> {
    contexts::Entity::update_many()
        .set(contexts::ActiveModel {
            last_save_error: Set(Some(error.to_owned())),
            ..Default::default()
        })
        .filter(contexts::Column::Id.eq(id.to_string()))
        .exec(txn)
        .await?;
    Ok(context_row(txn, id)
        .await?
        .map_or(0, |row| row.version as u64))
}

/// A PENDING or LIVE session using context `id` (persisting to it, with
/// `writer`).
async fn user(db: &impl ConnectionTrait, id: ContextId, writer: bool) -> Result<Option<SessionId>> {
    let mut query = sessions::Entity::find()
        .select_only()
        .column(sessions::Column::Id)
        .filter(sessions::Column::ContextId.eq(id.to_string()))
        .filter(sessions::Column::Status.is_in([
            SessionStatus::Pending.as_str(),
            SessionStatus::Live.as_str(),
        ]));
    if writer {
        query = query.filter(sessions::Column::ContextPersist.eq(true));
    }
    let ids: Vec<String> = query.into_tuple().all(db).await?;
    Ok(ids.first().and_then(|id| SessionId::parse(id)))
}

/// (Not `.one()`: see `session_row`.)
async fn context_row(db: &impl ConnectionTrait, id: ContextId) -> Result<Option<contexts::Model>> {
    Ok(contexts::Entity::find_by_id(id.to_string())
        .all(db)
        .await?
        .pop())
}

async fn context_row_locked(
    txn: &sea_orm::DatabaseTransaction,
    id: ContextId,
) -> Result<Option<contexts::Model>> {
    Ok(contexts::Entity::find_by_id(id.to_string())
        .lock_exclusive()
        .all(txn)
        .await?
        .pop())
}

fn to_context(row: &contexts::Model, writer: Option<SessionId>) -> Result<Context> {
    let corrupt = |what: String| StoreError::Corrupt {
        id: row.id.clone(),
        what,
    };
    Ok(Context {
        id: ContextId::parse(&row.id).ok_or_else(|| corrupt("id is not a UUID".into()))?,
        name: row.name.clone(),
        project: row.project.clone(),
        metadata: serde_json::from_str(&row.metadata)
            .map_err(|e| corrupt(format!("metadata: {e}")))?,
        created_at: from_millis(row.created_at),
        updated_at: from_millis(row.updated_at),
        version: row.version.max(0) as u64,
        size_bytes: row.size_bytes.max(0) as u64,
        saved_by: row
            .saved_by_session_id
            .as_deref()
            .and_then(SessionId::parse),
        writer,
        last_save_error: row.last_save_error.clone(),
    })
}

/// Saves a session's state to its context (or records why it could not
/// be), inside the transaction of the event that reports it.
pub(super) async fn save_context(
    txn: &sea_orm::DatabaseTransaction,
    session: SessionId,
    context_id: ContextId,
    base: u64,
    sealed: &std::result::Result<std::sync::Arc<Vec<u8>>, String>,
    at: SystemTime,
) -> Result<(EventKind, ContextSave)> {
    let failed = |version: u64, error: String| ContextSave {
        context_id: context_id.to_string(),
        version,
        size_bytes: 0,
        error: Some(error),
    };
    let error = match sealed {
        Ok(data) => match save(txn, context_id, base, session, data, at).await? {
            Some(version) => {
                let save = ContextSave {
                    context_id: context_id.to_string(),
                    version,
                    size_bytes: data.len() as u64,
                    error: None,
                };
                return Ok((EventKind::ContextSaved, save));
            }
            None => format!(
                "the context moved on from version {base} while this session ran; its state was not saved"
            ),
        },
        Err(error) => error.clone(),
    };
    let version = save_failed(txn, context_id, &error).await?;
    Ok((EventKind::ContextSaveFailed, failed(version, error)))
}
