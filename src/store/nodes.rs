//! The nodes of one database: each node's row and its lease, renewed by
//! heartbeats; the takeover of a node whose lease lapsed; and the fence an
//! insert passes. Every time here is the database's clock, so nodes whose
//! clocks disagree still agree on whose lease has lapsed.

use std::time::{Duration, SystemTime};

use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Set, Statement,
};

use super::change::{Inserted, NodeRefusal};
use super::entities::nodes;
use super::rows::{duration_ms, from_millis, parse_id};
use super::{Result, Store, StoreError};
use crate::domain::session::{SessionId, SessionStatus};

/// What a starting node announces about itself.
#[derive(Debug, Clone)]
pub struct Registration {
    pub id: String,
    /// Where other nodes reach its gRPC service.
    pub grpc_url: String,
    /// The base of its sessions' connect_urls.
    pub relay_url: String,
    /// Its --max-sessions.
    pub capacity: u64,
}

/// A node as the database last heard of it.
#[derive(Debug, Clone)]
pub struct NodeRow {
    pub id: String,
    pub epoch: u64,
    pub grpc_url: String,
    pub relay_url: String,
    pub capacity: u64,
    /// Sessions with a browser at its last heartbeat.
    pub sessions: u64,
    /// Warm browsers ready at its last heartbeat.
    pub warm: u64,
    pub draining: bool,
    pub started_at: SystemTime,
    /// Since its last heartbeat, by the database's clock.
    pub heartbeat_age: Duration,
    /// Whether its lease has run out (it may not have been taken over yet).
    pub lapsed: bool,
    /// Whether a survivor took it over (it has not started again since).
    pub lost: bool,
}

impl NodeRow {
    /// Whether it takes sessions now, as far as the database knows.
    pub fn placeable(&self) -> bool {
        !self.draining && !self.lapsed && !self.lost
    }
}

impl Store {
    /// Starts a new incarnation of node `node.id`: its row with a fresh
    /// lease, and an epoch above every earlier one, which fences any older
    /// process still running under that name. Returns the epoch.
    pub async fn register_node(&self, node: &Registration, lease: Duration) -> Result<u64> {
        let txn = self.write().await?;
        let now = db_now(&txn).await?;
        let existing = nodes::Entity::find_by_id(node.id.clone())
            .lock_exclusive()
            .all(&txn)
            .await?
            .pop();
        let epoch = existing.as_ref().map_or(1, |row| row.epoch + 1);
        let row = nodes::ActiveModel {
            id: Set(node.id.clone()),
            epoch: Set(epoch),
            grpc_url: Set(node.grpc_url.clone()),
            relay_url: Set(node.relay_url.clone()),
            capacity: Set(node.capacity as i64),
            sessions: Set(0),
            warm: Set(0),
            draining: Set(false),
            started_at: Set(now),
            heartbeat_at: Set(now),
            lease_expires_at: Set(now + duration_ms(lease)),
            lost_at: Set(None),
        };
        if existing.is_some() {
            row.update(&txn).await?;
        } else {
            row.insert(&txn).await?;
        }
        txn.commit().await?;
        Ok(epoch as u64)
    }

    /// Renews the lease of node `id`'s incarnation `epoch` and records its
    /// load. `None`: that incarnation is fenced (taken over, or started
    /// again elsewhere); else whether it is asked to drain.
    pub async fn heartbeat(
        &self,
        id: &str,
        epoch: u64,
        sessions: usize,
        warm: usize,
        lease: Duration,
    ) -> Result<Option<bool>> {
        let now = self.now_in_database().await?;
        let renewed = nodes::Entity::update_many()
            .col_expr(nodes::Column::HeartbeatAt, Expr::value(now))
            .col_expr(
                nodes::Column::LeaseExpiresAt,
                Expr::value(now + duration_ms(lease)),
            )
            .col_expr(nodes::Column::Sessions, Expr::value(sessions as i64))
            .col_expr(nodes::Column::Warm, Expr::value(warm as i64))
            .filter(nodes::Column::Id.eq(id))
            .filter(nodes::Column::Epoch.eq(epoch as i64))
            .filter(nodes::Column::LostAt.is_null())
            .exec(&self.db)
            .await?;
        if renewed.rows_affected != 1 {
            return Ok(None);
        }
        let row = nodes::Entity::find_by_id(id.to_owned())
            .all(&self.db)
            .await?
            .pop();
        Ok(row.map(|row| row.draining))
    }

    /// Every node this database knows, by id.
    pub async fn nodes(&self) -> Result<Vec<NodeRow>> {
        let now = self.now_in_database().await?;
        let rows = nodes::Entity::find()
            .order_by_asc(nodes::Column::Id)
            .all(&self.db)
            .await?;
        Ok(rows
            .into_iter()
            .map(|row| NodeRow {
                epoch: row.epoch.max(0) as u64,
                capacity: row.capacity.max(0) as u64,
                sessions: row.sessions.max(0) as u64,
                warm: row.warm.max(0) as u64,
                draining: row.draining,
                started_at: from_millis(row.started_at),
                heartbeat_age: Duration::from_millis((now - row.heartbeat_at).max(0) as u64),
                lapsed: row.lease_expires_at < now,
                lost: row.lost_at.is_some(),
                id: row.id,
                grpc_url: row.grpc_url,
                relay_url: row.relay_url,
            })
            .collect())
    }

    /// Takes over node `id`'s incarnation `epoch` if its lease has lapsed:
    /// marks it lost and bumps its epoch, which fences it. Several
    /// survivors may try at once; exactly one gets `true`.
    pub async fn take_over(&self, id: &str, epoch: u64) -> Result<bool> {
        let now = self.now_in_database().await?;
        let taken = nodes::Entity::update_many()
            .col_expr(
                nodes::Column::Epoch,
                sea_orm::sea_query::ExprTrait::add(Expr::col(nodes::Column::Epoch), 1),
            )
            .col_expr(nodes::Column::LostAt, Expr::value(now))
            .filter(nodes::Column::Id.eq(id))
            .filter(nodes::Column::Epoch.eq(epoch as i64))
            .filter(nodes::Column::LeaseExpiresAt.lt(now))
            .filter(nodes::Column::LostAt.is_null())
            .exec(&self.db)
            .await?;
        Ok(taken.rows_affected == 1)
    }

    /// Removes the row of node `id`'s incarnation `epoch`, which stopped
    /// with every session ended: it is not lost, it is gone.
    pub async fn leave(&self, id: &str, epoch: u64) -> Result<()> {
        nodes::Entity::delete_many()
            .filter(nodes::Column::Id.eq(id))
            .filter(nodes::Column::Epoch.eq(epoch as i64))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// The PENDING or LIVE sessions of every lost node (made by the
    /// incarnation that was taken over, or an earlier one), with their
    /// node: one query, however many nodes were ever lost.
    pub async fn lost_sessions(&self) -> Result<Vec<(SessionId, String)>> {
        let backend = self.db.get_database_backend();
        let sql = format!(
            "SELECT s.id AS id, s.node_id AS node_id FROM sessions s \
             JOIN nodes n ON n.id = s.node_id \
             WHERE n.lost_at IS NOT NULL AND s.node_epoch < n.epoch \
             AND s.status IN ('{}', '{}')",
            SessionStatus::Pending.as_str(),
            SessionStatus::Live.as_str(),
        );
        let rows = self
            .db
            .query_all_raw(Statement::from_string(backend, sql))
            .await?;
        rows.iter()
            .map(|row| {
                let id: String = row.try_get("", "id")?;
                Ok((parse_id(&id)?, row.try_get("", "node_id")?))
            })
            .collect()
    }

    /// Forgets nodes lost before `cutoff`: long since swept, and listed
    /// only until then.
    pub(super) async fn prune_lost_nodes(&self, cutoff: i64) -> Result<()> {
        nodes::Entity::delete_many()
            .filter(nodes::Column::LostAt.lt(cutoff))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Asks node `id` to drain (or to take sessions again). `false`: no
    /// such node.
    pub async fn set_draining(&self, id: &str, draining: bool) -> Result<bool> {
        let updated = nodes::Entity::update_many()
            .col_expr(nodes::Column::Draining, Expr::value(draining))
            .filter(nodes::Column::Id.eq(id))
            .exec(&self.db)
            .await?;
        Ok(updated.rows_affected == 1)
    }

    async fn now_in_database(&self) -> Result<i64> {
        db_now(&self.db).await
    }
}

/// Refuses an insert by a node that drains, or whose incarnation is not
/// the current one.
pub(super) async fn may_place(
    txn: &sea_orm::DatabaseTransaction,
    node_id: &str,
    epoch: u64,
) -> Result<Option<Inserted>> {
    Ok(match incarnation(txn, node_id, epoch).await? {
        Some(false) => None,
        Some(true) => Some(Inserted::NotPlaced(NodeRefusal::Draining)),
        None => Some(Inserted::NotPlaced(NodeRefusal::Fenced)),
    })
}

/// Whether node `node_id`'s incarnation `epoch` is the current one (not
/// taken over, not started again), and if so whether it drains. The
/// node's row stays share-locked until the transaction ends (PostgreSQL:
/// `FOR SHARE`), so a takeover waits for it, and the survivor, which looks
/// for the lost node's sessions after its takeover commits, finds what
/// this transaction wrote.
pub(super) async fn incarnation(
    txn: &sea_orm::DatabaseTransaction,
    node_id: &str,
    epoch: u64,
) -> Result<Option<bool>> {
    let row = nodes::Entity::find_by_id(node_id.to_owned())
        .lock_shared()
        .all(txn)
        .await?
        .pop();
    Ok(row
        .filter(|row| row.epoch as u64 == epoch && row.lost_at.is_none())
        .map(|row| row.draining))
}

/// The database's clock, in milliseconds since the Unix epoch.
async fn db_now(db: &impl ConnectionTrait) -> Result<i64> {
    let backend = db.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => {
            "SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT) AS now"
        }
        _ => "SELECT CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER) AS now",
    };
    let row = db
        .query_one_raw(Statement::from_string(backend, sql))
        .await?
        .ok_or_else(|| StoreError::Corrupt {
            id: "clock".into(),
            what: "the database returned no time".into(),
        })?;
    Ok(row.try_get("", "now")?)
}
