//! Events that are not status transitions (ExtendSession's): each event
//! records its kind (existing events were all transitions); and indexes
//! for retention, which prunes by time.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Sessions {
    Table,
    EndedAt,
}

#[derive(DeriveIden)]
enum SessionEvents {
    Table,
    Kind,
    OccurredAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(SessionEvents::Table)
                    .add_column(
                        ColumnDef::new(SessionEvents::Kind)
                            .string()
                            .not_null()
                            .default("STATUS_CHANGED"),
                    )
                    .to_owned(),
            )
            .await?;
        // Retention finds what to prune by time.
        manager
            .create_index(
                Index::create()
                    .name("idx_session_events_occurred")
                    .table(SessionEvents::Table)
                    .col(SessionEvents::OccurredAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_sessions_ended")
                    .table(Sessions::Table)
                    .col(Sessions::EndedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("idx_sessions_ended")
                    .table(Sessions::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name("idx_session_events_occurred")
                    .table(SessionEvents::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(SessionEvents::Table)
                    .drop_column(SessionEvents::Kind)
                    .to_owned(),
            )
            .await
    }
}
