//! Persistence: SeaORM over SQLite or PostgreSQL, the only module that
//! speaks SQL. It stores what the engine decided and never decides itself:
//! a status change is a compare-and-set on the current status, written in
//! one transaction with its event, so two racing writers cannot both win.
//!
//! One file per concern: this one connects and writes sessions (insert,
//! the compare-and-set transition); `change` is what the engine asks to
//! write, `reads` the session reads, `log` the event log's reads and
//! pruning, `access` projects and keys, `contexts` contexts and their
//! versions, `links` live view links, `rows` and `entities` the tables.

mod access;
mod change;
mod contexts;
mod entities;
mod error;
mod links;
mod log;
mod nodes;
mod reads;
mod rows;

use std::path::Path;
use std::time::{Duration, SystemTime};

use migrations::{ERASING_SECRETS, Migrator, MigratorTrait};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectOptions, ConnectionTrait, Database, DatabaseConnection,
    EntityTrait, QueryFilter, Set, SqlErr, TransactionTrait,
};

use crate::domain::session::{
    Actor, ContextSave, EventKind, Session, SessionEvent, SessionId, SessionStatus,
};
use entities::{session_events, session_metadata, sessions};
use rows::{duration_ms, millis, parse_status, to_event};

pub use change::{Change, Inserted, NodeRefusal};
pub use contexts::ContextBusy;
pub use error::StoreError;
pub use log::EventWakeups;
pub use nodes::{NodeRow, Registration};
pub use reads::Unfinished;

type Result<T> = std::result::Result<T, StoreError>;

/// Database connections per browserd process.
const POOL_SIZE: u32 = 8;
/// How long a request waits for a database connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);

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
        node_epoch: u64,
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
            node_id: session.node_id.clone(),
            node_epoch: node_epoch as i64,
            browser_pid: None,
            user_data_dir: Some(user_data_dir.to_string_lossy().into_owned()),
            project: session.project.clone(),
            context_id: session.context.map(|c| c.context_id.to_string()),
            context_persist: session.context.is_some_and(|c| c.persist),
            egress: rows::egress_text(&session.egress),
            egress_usage: None,
        };
        let txn = self.write().await?;
        // The fence: a node that lost its lease (or was started again
        // elsewhere under its name) inserts nothing for the old incarnation,
        // and a draining node takes no new session.
        if let Some(refused) = nodes::may_place(&txn, &session.node_id, node_epoch).await? {
            txn.rollback().await?;
            return Ok(refused);
        }
        if let Some(max) = access::project_quota(&txn, &session.project, true).await?
            && access::running(&txn, &session.project).await? >= u64::from(max)
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
        // The fence: a browser launched by an incarnation that has since
        // been taken over must not bring its session back to life.
        if matches!(change, Change::Live { .. })
            && nodes::incarnation(&txn, &current.node_id, current.node_epoch as u64)
                .await?
                .is_none()
        {
            return Ok(None);
        }
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
                reason,
                error,
                at,
                egress_usage,
                ..
            } => {
                update.end_reason = Set(Some(reason.as_str().to_owned()));
                update.error = Set(error.clone());
                update.ended_at = Set(Some(millis(*at)));
                if let Some(usage) = egress_usage {
                    update.egress_usage = Set(Some(
                        serde_json::to_string(usage).expect("numbers serialise"),
                    ));
                }
            }
            Change::Extend { timeout, .. } => {
                update.timeout_ms = Set(duration_ms(*timeout));
                update.expires_at = Set(current.created_at + duration_ms(*timeout));
            }
            Change::SaveContext { .. } | Change::Viewer { .. } => {}
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
                let (kind, save) =
                    contexts::save_context(&txn, id, *context_id, *base, sealed, *at).await?;
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
}

/// The row of session `id`. Not `.one()`: it binds `LIMIT ?`, and SQLite
/// re-prepares (parses and plans anew) a statement whose LIMIT is a bound
/// parameter on every execution, which was most of a GetSession's cost. A
/// primary key matches one row at most anyway.
pub(super) async fn session_row(
    db: &impl ConnectionTrait,
    id: SessionId,
) -> Result<Option<sessions::Model>> {
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
    let sequence = log::next_sequence(txn).await?;
    let event = session_events::ActiveModel {
        sequence: Set(sequence),
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
    }
    .insert(txn)
    .await?;
    to_event(&event)
}

/// An idempotency key as stored: unique per project, not across them (a
/// project name has no `/`).
pub(super) fn scoped_key(project: &str, key: &str) -> String {
    format!("{project}/{key}")
}
