//! Live view links (issue 18): one row per link, so a link can be revoked
//! and a revocation holds on every node. The link itself (its signed key)
//! is never stored: a row names what the link opens and until when, and
//! whether it was revoked. Rows of expired links are deleted as new links
//! are made.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum LiveViewLinks {
    Table,
    Id,
    SessionId,
    Project,
    TargetId,
    Control,
    CreatedAt,
    ExpiresAt,
    RevokedAt,
    CreatedBy,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(LiveViewLinks::Table)
                    .col(
                        ColumnDef::new(LiveViewLinks::Id)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(LiveViewLinks::SessionId).string().not_null())
                    .col(ColumnDef::new(LiveViewLinks::Project).string().not_null())
                    // NULL: every page of the session.
                    .col(ColumnDef::new(LiveViewLinks::TargetId).string())
                    .col(ColumnDef::new(LiveViewLinks::Control).boolean().not_null())
                    .col(
                        ColumnDef::new(LiveViewLinks::CreatedAt)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(LiveViewLinks::ExpiresAt)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(LiveViewLinks::RevokedAt).big_integer())
                    .col(ColumnDef::new(LiveViewLinks::CreatedBy).string().not_null())
                    .to_owned(),
            )
            .await?;
        // Expired links are deleted by time.
        manager
            .create_index(
                Index::create()
                    .name("idx_live_view_links_expires")
                    .table(LiveViewLinks::Table)
                    .col(LiveViewLinks::ExpiresAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(LiveViewLinks::Table).to_owned())
            .await
    }
}
