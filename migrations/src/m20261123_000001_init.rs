use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Sessions {
    Table,
    Id,
    Status,
    EndReason,
    Error,
    CreatedAt,
    StartedAt,
    EndedAt,
    ExpiresAt,
    TimeoutMs,
    InactivityTimeoutMs,
    KeepAlive,
    Metadata,
    ViewportWidth,
    ViewportHeight,
    UserAgent,
    ProxyUrl,
    IdempotencyKey,
    ConnectUrl,
    BrowserVersion,
    NodeId,
    BrowserPid,
    UserDataDir,
}

#[derive(DeriveIden)]
enum SessionMetadata {
    Table,
    SessionId,
    Key,
    Value,
}

#[derive(DeriveIden)]
enum SessionEvents {
    Table,
    Sequence,
    SessionId,
    OccurredAt,
    FromStatus,
    ToStatus,
    EndReason,
    Snapshot,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Sessions::Table)
                    .col(
                        ColumnDef::new(Sessions::Id)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Sessions::Status).string().not_null())
                    .col(ColumnDef::new(Sessions::EndReason).string())
                    .col(ColumnDef::new(Sessions::Error).text())
                    // Instants are Unix milliseconds: exact, ordered and the
                    // same on both backends.
                    .col(ColumnDef::new(Sessions::CreatedAt).big_integer().not_null())
                    .col(ColumnDef::new(Sessions::StartedAt).big_integer())
                    .col(ColumnDef::new(Sessions::EndedAt).big_integer())
                    .col(ColumnDef::new(Sessions::ExpiresAt).big_integer().not_null())
                    .col(ColumnDef::new(Sessions::TimeoutMs).big_integer().not_null())
                    .col(ColumnDef::new(Sessions::InactivityTimeoutMs).big_integer())
                    .col(ColumnDef::new(Sessions::KeepAlive).boolean().not_null())
                    .col(ColumnDef::new(Sessions::Metadata).text().not_null())
                    .col(ColumnDef::new(Sessions::ViewportWidth).integer().not_null())
                    .col(
                        ColumnDef::new(Sessions::ViewportHeight)
                            .integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Sessions::UserAgent).text())
                    .col(ColumnDef::new(Sessions::ProxyUrl).text())
                    .col(
                        ColumnDef::new(Sessions::IdempotencyKey)
                            .string()
                            .unique_key(),
                    )
                    .col(ColumnDef::new(Sessions::ConnectUrl).text())
                    .col(ColumnDef::new(Sessions::BrowserVersion).string())
                    .col(ColumnDef::new(Sessions::NodeId).string().not_null())
                    .col(ColumnDef::new(Sessions::BrowserPid).integer())
                    .col(ColumnDef::new(Sessions::UserDataDir).text())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_sessions_created")
                    .table(Sessions::Table)
                    .col(Sessions::CreatedAt)
                    .col(Sessions::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_sessions_status")
                    .table(Sessions::Table)
                    .col(Sessions::Status)
                    .to_owned(),
            )
            .await?;

        // Metadata is kept as rows too, so list and release-all filters run
        // in SQL on both backends instead of parsing JSON.
        manager
            .create_table(
                Table::create()
                    .table(SessionMetadata::Table)
                    .col(
                        ColumnDef::new(SessionMetadata::SessionId)
                            .string()
                            .not_null(),
                    )
                    .col(ColumnDef::new(SessionMetadata::Key).string().not_null())
                    .col(ColumnDef::new(SessionMetadata::Value).text().not_null())
                    .primary_key(
                        Index::create()
                            .col(SessionMetadata::SessionId)
                            .col(SessionMetadata::Key),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(SessionMetadata::Table, SessionMetadata::SessionId)
                            .to(Sessions::Table, Sessions::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_session_metadata_kv")
                    .table(SessionMetadata::Table)
                    .col(SessionMetadata::Key)
                    .col(SessionMetadata::Value)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(SessionEvents::Table)
                    .col(
                        ColumnDef::new(SessionEvents::Sequence)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(SessionEvents::SessionId).string().not_null())
                    .col(
                        ColumnDef::new(SessionEvents::OccurredAt)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(SessionEvents::FromStatus).string())
                    .col(ColumnDef::new(SessionEvents::ToStatus).string().not_null())
                    .col(ColumnDef::new(SessionEvents::EndReason).string())
                    .col(ColumnDef::new(SessionEvents::Snapshot).text().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_session_events_session")
                    .table(SessionEvents::Table)
                    .col(SessionEvents::SessionId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(SessionEvents::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(SessionMetadata::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Sessions::Table).to_owned())
            .await
    }
}
