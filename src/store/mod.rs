//! Persistence: SeaORM over SQLite or PostgreSQL, the only module that
//! speaks SQL. It stores what the engine decided and never decides itself:
//! a status change is a compare-and-set on the current status, written in
//! one transaction with its event, so two racing writers cannot both win.

mod access;
mod contexts;
mod entities;
mod error;
mod log;
mod rows;

use std::path::Path;
use std::time::{Duration, SystemTime};

use migrations::{ERASING_SECRETS, Migrator, MigratorTrait};
use sea_orm::sea_query::Query;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectOptions, ConnectionTrait, Database,
    DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set, SqlErr,
    TransactionTrait,
};

use crate::sessions::model::{
    Actor, ContextId, ContextSave, EndReason, EventKind, Session, SessionEvent, SessionFilter,
    SessionId, SessionStatus,
};
use entities::{projects, session_events, session_metadata, sessions};
use rows::{duration_ms, millis, parse_id, parse_status, to_event, to_session};

pub use contexts::ContextBusy;
pub use error::StoreError;

type Result<T> = std::result::Result<T, StoreError>;

/// Database connections per browserd process.
const POOL_SIZE: u32 = 8;
/// How long a request waits for a database connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);

/// A state change the engine has decided on.
#[derive(Debug, Clone)]
pub enum Change {
    Live {
        started_at: SystemTime,
        browser_version: String,
        browser_pid: u32,
        actor: Actor,
    },
    End {
        reason: EndReason,
        error: Option<String>,
        at: SystemTime,
        actor: Actor,
    },
    /// A new hard timeout, counted from creation; the status stays.
    Extend {
        timeout: Duration,
        at: SystemTime,
        actor: Actor,
    },
    /// The session's browser state for its context: sealed bytes to save
    /// as the version after `base` (what the session started from), or
    /// why there are none. The status stays.
    SaveContext {
        context_id: ContextId,
        base: u64,
        sealed: std::result::Result<std::sync::Arc<Vec<u8>>, String>,
        at: SystemTime,
        actor: Actor,
    },
}

impl Change {
    /// The status after this change, from `from`; `None` when the change
    /// does not apply to a session in `from`.
    fn to_status(&self, from: SessionStatus) -> Option<SessionStatus> {
        let to = match self {
            Self::Live { .. } => SessionStatus::Live,
            Self::End { reason, .. } => reason.terminal_status(),
            Self::Extend { .. } | Self::SaveContext { .. } => {
                return (!from.is_terminal()).then_some(from);
            }
        };
        from.can_become(to).then_some(to)
    }

    fn kind(&self) -> EventKind {
        match self {
            Self::Live { .. } | Self::End { .. } => EventKind::StatusChanged,
            Self::Extend { .. } => EventKind::Extended,
            Self::SaveContext { sealed, .. } => match sealed {
                Ok(_) => EventKind::ContextSaved,
                Err(_) => EventKind::ContextSaveFailed,
            },
        }
    }

    /// When it happened, which its event records.
    pub fn at(&self) -> SystemTime {
        match self {
            Self::Live { started_at, .. } => *started_at,
            Self::End { at, .. } | Self::Extend { at, .. } | Self::SaveContext { at, .. } => *at,
        }
    }

    /// Who caused it, as its event records it.
    fn actor(&self) -> String {
        match self {
            Self::Live { actor, .. }
            | Self::Extend { actor, .. }
            | Self::SaveContext { actor, .. } => actor.recorded(None),
            Self::End { reason, actor, .. } => actor.recorded(Some(*reason)),
        }
    }
}

pub enum Inserted {
    Created(SessionEvent),
    /// The idempotency key was already taken by this session.
    Duplicate(Session),
    /// The project already has this many PENDING or LIVE sessions, its
    /// quota.
    OverQuota(u32),
    /// The session's context does not exist in its project, or another
    /// session persists to it.
    Context(ContextBusy),
}

/// Where a ListSessions page ends; the next page starts strictly after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: SystemTime,
    pub id: SessionId,
}

/// A session a previous process left unfinished, with what is needed to
/// find and remove its browser.
#[derive(Debug, Clone)]
pub struct Unfinished {
    pub id: SessionId,
    pub browser_pid: Option<u32>,
    pub user_data_dir: Option<String>,
}

#[derive(Clone)]
pub struct Store {
    db: DatabaseConnection,
}

impl Store {
    /// A transaction that will write. On SQLite it takes the write lock at
    /// BEGIN, where the busy timeout waits for it: a deferred transaction
    /// that reads first and then writes fails at once (SQLITE_BUSY) if
    /// another writer committed in between, and that read as UNAVAILABLE
    /// (seen with pruning every 100 ms beside a release).
    async fn write(&self) -> Result<sea_orm::DatabaseTransaction> {
        let options = sea_orm::TransactionOptions {
            sqlite_transaction_mode: Some(sea_orm::SqliteTransactionMode::Immediate),
            ..Default::default()
        };
        Ok(self.db.begin_with_options(options).await?)
    }

    /// Connects and applies pending migrations.
    pub async fn connect(url: &str) -> Result<Self> {
        let mut opts = ConnectOptions::new(url.to_owned());
        // A fixed-size pool on both backends: a pool that grows under load
        // and shrinks when idle looks, from outside, like a descriptor leak.
        opts.sqlx_logging(false)
            .max_connections(POOL_SIZE)
            .min_connections(POOL_SIZE)
            // A database out of reach fails a request in seconds, as
            // UNAVAILABLE, rather than holding it for sqlx's 30 s.
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_timeout(ACQUIRE_TIMEOUT);
        if url.starts_with("sqlite:") {
            // An embedded database cannot drop a pooled connection, so the
            // ping sqlx sends before handing one out (a round trip to the
            // connection's worker thread) buys nothing.
            opts.test_before_acquire(false);
            // WAL lets readers run beside the single writer; the busy timeout
            // makes a second writer wait instead of failing.
            opts.map_sqlx_sqlite_opts(|o| {
                o.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                    .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(10))
                    .foreign_keys(true)
            });
        }
        let db = Database::connect(opts).await?;
        let erasing = Migrator::get_pending_migrations(&db)
            .await?
            .iter()
            .any(|m| ERASING_SECRETS.contains(&m.name()));
        Migrator::up(&db, None).await?;
        if erasing && url.starts_with("sqlite:") {
            // What a migration deleted must not stay readable in the file.
            db.execute_unprepared("VACUUM").await?;
            db.execute_unprepared("PRAGMA wal_checkpoint(TRUNCATE)")
                .await?;
        }
        Ok(Self { db })
    }

    /// Inserts a new PENDING session and its creation event, or returns the
    /// session of its project that already holds the idempotency key, or
    /// refuses it when its project is at its quota. The quota is counted
    /// in the inserting transaction with the project's row locked (on
    /// SQLite the transaction holds the write lock), so creates racing on
    /// any number of nodes cannot overshoot it.
    pub async fn insert(
        &self,
        session: &Session,
        idempotency_key: Option<&str>,
        node_id: &str,
        user_data_dir: &Path,
        actor: &Actor,
    ) -> Result<Inserted> {
        let row = sessions::Model {
            id: session.id.to_string(),
            status: session.status.as_str().to_owned(),
            end_reason: None,
            error: None,
            created_at: millis(session.created_at),
            started_at: None,
            ended_at: None,
            expires_at: millis(session.expires_at()),
            timeout_ms: duration_ms(session.timeout),
            inactivity_timeout_ms: session.inactivity_timeout.map(duration_ms),
            keep_alive: session.keep_alive,
            metadata: serde_json::to_string(&session.metadata).expect("a string map serialises"),
            viewport_width: session.viewport.width as i32,
            viewport_height: session.viewport.height as i32,
            user_agent: session.user_agent.clone(),
            proxy_url: session.proxy_url.clone(),
            idempotency_key: idempotency_key.map(|key| scoped_key(&session.project, key)),
            browser_version: None,
            node_id: node_id.to_owned(),
            browser_pid: None,
            user_data_dir: Some(user_data_dir.to_string_lossy().into_owned()),
            project: session.project.clone(),
            context_id: session.context.map(|c| c.context_id.to_string()),
            context_persist: session.context.is_some_and(|c| c.persist),
        };
        let txn = self.write().await?;
        if let Some(max) = project_quota(&txn, &session.project, true).await?
            && running(&txn, &session.project).await? >= u64::from(max)
        {
            txn.rollback().await?;
            return Ok(Inserted::OverQuota(max));
        }
        if let Some(context) = session.context
            && let Err(busy) =
                contexts::claim(&txn, context.context_id, &session.project, context.persist).await?
        {
            txn.rollback().await?;
            return Ok(Inserted::Context(busy));
        }
        let inserted = sessions::ActiveModel::from(row.clone()).insert(&txn).await;
        match inserted {
            Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
                txn.rollback().await?;
                let key = idempotency_key.unwrap_or_default();
                return match self.get_by_idempotency_key(&session.project, key).await? {
                    Some(existing) => Ok(Inserted::Duplicate(existing)),
                    None => Err(e.into()),
                };
            }
            other => other?,
        };
        if !session.metadata.is_empty() {
            session_metadata::Entity::insert_many(session.metadata.iter().map(|(k, v)| {
                session_metadata::ActiveModel {
                    session_id: Set(row.id.clone()),
                    key: Set(k.clone()),
                    value: Set(v.clone()),
                }
            }))
            .exec(&txn)
            .await?;
        }
        let event = insert_event(
            &txn,
            EventKind::StatusChanged,
            None,
            &row,
            session.created_at,
            actor.recorded(None),
            None,
        )
        .await?;
        txn.commit().await?;
        Ok(Inserted::Created(event))
    }

    /// Applies `change` if the session is in a status it may change from,
    /// and records its event in the same transaction. `None`: the session
    /// does not exist or is already past that point; nothing was written.
    pub async fn transition(&self, id: SessionId, change: &Change) -> Result<Option<SessionEvent>> {
        let txn = self.write().await?;
        let Some(current) = session_row(&txn, id).await? else {
            return Ok(None);
        };
        let from = parse_status(&current)?;
        let Some(to) = change.to_status(from) else {
            return Ok(None);
        };
        let mut update = sessions::ActiveModel {
            status: Set(to.as_str().to_owned()),
            ..Default::default()
        };
        match change {
            Change::Live {
                started_at,
                browser_version,
                browser_pid,
                ..
            } => {
                update.started_at = Set(Some(millis(*started_at)));
                update.browser_version = Set(Some(browser_version.clone()));
                update.browser_pid = Set(Some(*browser_pid as i32));
            }
            Change::End {
                reason, error, at, ..
            } => {
                update.end_reason = Set(Some(reason.as_str().to_owned()));
                update.error = Set(error.clone());
                update.ended_at = Set(Some(millis(*at)));
            }
            Change::Extend { timeout, .. } => {
                update.timeout_ms = Set(duration_ms(*timeout));
                update.expires_at = Set(current.created_at + duration_ms(*timeout));
            }
            Change::SaveContext { .. } => {}
        }
        // The status we read is part of the condition: under PostgreSQL's
        // read-committed isolation a concurrent writer may have moved it.
        let updated = sessions::Entity::update_many()
            .set(update)
            .filter(sessions::Column::Id.eq(id.to_string()))
            .filter(sessions::Column::Status.eq(from.as_str()))
            .exec(&txn)
            .await?;
        if updated.rows_affected != 1 {
            return Ok(None);
        }
        let row = session_row(&txn, id)
            .await?
            .ok_or_else(|| StoreError::Corrupt {
                id: id.to_string(),
                what: "row vanished inside its transaction".into(),
            })?;
        let (kind, saved) = match change {
            Change::SaveContext {
                context_id,
                base,
                sealed,
                at,
                ..
            } => {
                let (kind, save) = save_context(&txn, id, *context_id, *base, sealed, *at).await?;
                (kind, Some(save))
            }
            _ => (change.kind(), None),
        };
        let event = insert_event(
            &txn,
            kind,
            Some(from),
            &row,
            change.at(),
            change.actor(),
            saved.as_ref(),
        )
        .await?;
        txn.commit().await?;
        Ok(Some(event))
    }

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

    /// Sessions owned by `node_id` that never reached a terminal status.
    pub async fn unfinished(&self, node_id: &str) -> Result<Vec<Unfinished>> {
        let rows = sessions::Entity::find()
            .filter(sessions::Column::NodeId.eq(node_id))
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

/// The row of session `id`. Not `.one()`: it binds `LIMIT ?`, and SQLite
/// re-prepares (parses and plans anew) a statement whose LIMIT is a bound
/// parameter on every execution, which was most of a GetSession's cost. A
/// primary key matches one row at most anyway.
async fn session_row(db: &impl ConnectionTrait, id: SessionId) -> Result<Option<sessions::Model>> {
    let mut rows = sessions::Entity::find_by_id(id.to_string()).all(db).await?;
    Ok(rows.pop())
}

async fn insert_event(
    txn: &sea_orm::DatabaseTransaction,
    kind: EventKind,
    from: Option<SessionStatus>,
    row: &sessions::Model,
    occurred_at: SystemTime,
    actor: String,
    context_save: Option<&ContextSave>,
) -> Result<SessionEvent> {
    let event = session_events::ActiveModel {
        session_id: Set(row.id.clone()),
        occurred_at: Set(millis(occurred_at)),
        from_status: Set(from.map(|s| s.as_str().to_owned())),
        to_status: Set(row.status.clone()),
        end_reason: Set(row.end_reason.clone()),
        snapshot: Set(serde_json::to_string(row).expect("a row serialises")),
        kind: Set(kind.as_str().to_owned()),
        actor: Set(actor),
        context_save: Set(context_save
            .map(|save| serde_json::to_string(save).expect("a context save serialises"))),
        ..Default::default()
    }
    .insert(txn)
    .await?;
    to_event(&event)
}

/// An idempotency key as stored: unique per project, not across them (a
/// project name has no `/`).
fn scoped_key(project: &str, key: &str) -> String {
    format!("{project}/{key}")
}

/// A project's session quota; with `lock`, its row stays locked until the
/// transaction ends (PostgreSQL: `FOR UPDATE`; SQLite's write transaction
/// is serialised already), so creates count one after the other.
async fn project_quota(
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
async fn running(db: &impl ConnectionTrait, project: &str) -> Result<u64> {
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

/// Saves a session's state to its context (or records why it could not
/// be), inside the transaction of the event that reports it.
async fn save_context(
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
        Ok(data) => match contexts::save(txn, context_id, base, session, data, at).await? {
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
    let version = contexts::save_failed(txn, context_id, &error).await?;
    Ok((EventKind::ContextSaveFailed, failed(version, error)))
}
