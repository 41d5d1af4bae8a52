//! Live view links: their rows, written when links are made, read each
//! time one is opened (and while it is watched), and marked when revoked.

use std::time::{Duration, SystemTime};

use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set};

use super::entities::live_view_links;
use super::rows::{from_millis, millis};
use super::{Result, Store, StoreError};
use crate::domain::live_view::LiveViewLink;
use crate::domain::session::SessionId;

/// How long the row of an expired link is kept (so revoking it still
/// answers, and a late viewer is told it expired rather than unknown).
const EXPIRED_KEPT: Duration = Duration::from_secs(24 * 60 * 60);

impl Store {
    /// Stores new links, and deletes the rows of links expired for a day:
    /// the table holds recent links only.
    pub async fn insert_live_view_links(&self, links: &[LiveViewLink]) -> Result<()> {
        let txn = self.write().await?;
        if let Some(first) = links.first() {
            let cutoff = first.created_at.checked_sub(EXPIRED_KEPT);
            if let Some(cutoff) = cutoff {
                live_view_links::Entity::delete_many()
                    .filter(live_view_links::Column::ExpiresAt.lt(millis(cutoff)))
                    .exec(&txn)
                    .await?;
            }
        }
        for link in links {
            live_view_links::ActiveModel {
                id: Set(link.id.clone()),
                session_id: Set(link.session_id.to_string()),
                project: Set(link.project.clone()),
                target_id: Set(link.target_id.clone()),
                control: Set(link.control),
                created_at: Set(millis(link.created_at)),
                expires_at: Set(millis(link.expires_at)),
                revoked_at: Set(None),
                created_by: Set(link.created_by.clone()),
            }
            .insert(&txn)
            .await?;
        }
        txn.commit().await?;
        Ok(())
    }

    pub async fn live_view_link(&self, id: &str) -> Result<Option<LiveViewLink>> {
        let mut rows = live_view_links::Entity::find_by_id(id.to_owned())
            .all(&self.db)
            .await?;
        rows.pop().map(|row| to_link(&row)).transpose()
    }

    /// Marks a link revoked (once: a second revocation keeps the first
    /// time) and returns it; `None` when there is no such link.
    pub async fn revoke_live_view_link(
        &self,
        id: &str,
        at: SystemTime,
    ) -> Result<Option<LiveViewLink>> {
        let txn = self.write().await?;
        live_view_links::Entity::update_many()
            .col_expr(live_view_links::Column::RevokedAt, Some(millis(at)).into())
            .filter(live_view_links::Column::Id.eq(id))
            .filter(live_view_links::Column::RevokedAt.is_null())
            .exec(&txn)
            .await?;
        let row = live_view_links::Entity::find_by_id(id.to_owned())
            .all(&txn)
            .await?
            .pop();
        txn.commit().await?;
        row.map(|row| to_link(&row)).transpose()
    }
}

fn to_link(row: &live_view_links::Model) -> Result<LiveViewLink> {
    Ok(LiveViewLink {
        id: row.id.clone(),
        session_id: SessionId::parse(&row.session_id).ok_or_else(|| StoreError::Corrupt {
            id: row.session_id.clone(),
            what: format!("live view link {}: session id", row.id),
        })?,
        project: row.project.clone(),
        target_id: row.target_id.clone(),
        control: row.control,
        created_at: from_millis(row.created_at),
        expires_at: from_millis(row.expires_at),
        revoked_at: row.revoked_at.map(from_millis),
        created_by: row.created_by.clone(),
    })
}
